//! The operators' test oracle: DESIGN.md's score and ranking by brute force, one purchase at a
//! time in f64, sharing no code with what it checks (no `DecayedSum`, no `ScoreKey`, no
//! `ancestors`; [`rendered`] only reads the operators' keys as scores): for every purchase
//! counted as of `T` (`T − R < ts ≤ T`, or every `ts ≤ T` without a retention),
//! `q · 2^(−(T − ts)/h)` is added to its leaf, every ancestor and the root `""`; items with a
//! positive sum are ranked by score descending, then `item_id` ascending (bytes).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use topsellers_model::ScoreKey;

/// A listed entry as the operators rank it (`decayed_topk::RankKey`, spelled out here so that
/// the oracle depends on no operator module).
type RankKey = (Reverse<ScoreKey>, Arc<str>);

/// One purchase (a return if `quantity < 0`).
#[derive(Clone, Debug)]
pub(crate) struct Buy {
    pub(crate) item: String,
    pub(crate) leaf: String,
    pub(crate) ts_ms: i64,
    pub(crate) quantity: i64,
}

impl Buy {
    pub(crate) fn new(item: &str, leaf: &str, ts_ms: i64, quantity: i64) -> Buy {
        Buy {
            item: item.into(),
            leaf: leaf.into(),
            ts_ms,
            quantity,
        }
    }
}

/// One expected entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    item: String,
    score: f64,
    /// `Σ |term|`: the scale of the terms, which bounds the f64 summation's error.
    mag: f64,
}

impl Entry {
    /// So close to zero (relative to its terms) that f64 cannot tell its sign: such an item
    /// may or may not be listed.
    fn ambiguous(&self) -> bool {
        self.score.abs() <= 1e-12 * self.mag
    }
}

/// (profile, category) → every item with a positive (or ambiguous) score, ranked.
pub(crate) type Expected = BTreeMap<(u32, String), Vec<Entry>>;

/// Lists of the code under test: (profile, category) → (item, score as of `T`), in its order.
pub(crate) type Got = BTreeMap<(u32, String), Vec<(String, f64)>>;

/// `leaf`, each ancestor, and the root `""`.
fn lineage(leaf: &str) -> Vec<String> {
    let mut out = vec![leaf.to_owned()];
    let mut rest = leaf;
    while let Some(at) = rest.rfind('/') {
        rest = &rest[..at];
        out.push(rest.to_owned());
    }
    out.push(String::new());
    out
}

/// The expected lists as of `as_of_ms` (see the module's docs).
pub(crate) fn expected(
    buys: &[Buy],
    as_of_ms: i64,
    half_lives_ms: &[i64],
    retention_ms: Option<i64>,
) -> Expected {
    let counted =
        |b: &&Buy| b.ts_ms <= as_of_ms && retention_ms.is_none_or(|r| b.ts_ms > as_of_ms - r);
    let mut lists = Expected::new();
    for (profile, &h) in half_lives_ms.iter().enumerate() {
        let mut sums: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for buy in buys.iter().filter(counted) {
            let term = buy.quantity as f64 * (-((as_of_ms - buy.ts_ms) as f64) / h as f64).exp2();
            for category in lineage(&buy.leaf) {
                let sum = sums.entry((category, buy.item.clone())).or_default();
                sum.0 += term;
                sum.1 += term.abs();
            }
        }
        for ((category, item), (score, mag)) in sums {
            let entry = Entry { item, score, mag };
            if entry.score > 0.0 || entry.ambiguous() {
                lists
                    .entry((profile as u32, category))
                    .or_default()
                    .push(entry);
            }
        }
    }
    for list in lists.values_mut() {
        list.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.item.as_bytes().cmp(b.item.as_bytes()))
        });
    }
    lists
}

/// Local top-k lists as the merge stage keeps them (see `decayed_topk::tests::replay`), with
/// their scores decayed to `as_of_ms`.
pub(crate) fn rendered(
    lists: &FxHashMap<(u32, Arc<str>), BTreeSet<RankKey>>,
    half_lives_ms: &[i64],
    as_of_ms: i64,
) -> Got {
    lists
        .iter()
        .map(|((profile, category), list)| {
            let h = half_lives_ms[*profile as usize];
            let items = list
                .iter()
                .map(|(score, item)| (item.to_string(), score.0.score_at(as_of_ms, h)))
                .collect();
            ((*profile, category.to_string()), items)
        })
        .collect()
}

/// Whether two scores agree to 1e-9 relative (plus the f64 sum's own error bound).
fn close(a: f64, b: f64, mag: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12 * mag
}

/// Listed entries with the scores they carry under every profile, as the merge stage keeps
/// them: (profile, category, item) → carried keys (see `RankedItem::scores`).
pub(crate) type Carried = BTreeMap<(u32, String, String), Option<Box<[Option<ScoreKey>]>>>;

/// Every listed entry whose carried scores (decayed to `as_of_ms`) differ from the brute
/// force's score of its (category, item) under each profile: a key where the oracle has a
/// positive score, none where it has none (an ambiguous score may be either).
pub(crate) fn carried_problems(
    carried: &Carried,
    want: &Expected,
    half_lives_ms: &[i64],
    as_of_ms: i64,
) -> Vec<String> {
    let mut problems = Vec::new();
    for ((profile, category, item), scores) in carried {
        let at = format!("profile {profile} category {category:?} item {item:?}");
        let Some(scores) = scores else {
            problems.push(format!("{at}: carries no scores"));
            continue;
        };
        if scores.len() != half_lives_ms.len() {
            problems.push(format!("{at}: carries {} scores", scores.len()));
            continue;
        }
        for (p, (key, &h)) in scores.iter().zip(half_lives_ms).enumerate() {
            let own = want
                .get(&(p as u32, category.clone()))
                .and_then(|list| list.iter().find(|e| e.item == *item));
            match (key, own) {
                (Some(key), Some(own)) => {
                    let got = key.score_at(as_of_ms, h);
                    if !close(got, own.score, own.mag) {
                        problems.push(format!(
                            "{at}: carries {got} for profile {p}, the oracle says {}",
                            own.score
                        ));
                    }
                }
                (None, Some(own)) if !own.ambiguous() => problems.push(format!(
                    "{at}: carries nothing for profile {p}, the oracle says {}",
                    own.score
                )),
                (Some(key), None) => problems.push(format!(
                    "{at}: carries {} for profile {p}, the oracle has no positive score",
                    key.score_at(as_of_ms, h)
                )),
                _ => {}
            }
        }
    }
    problems
}

/// Every way `got` differs from `want`'s top `k`: per list, no item twice; as many items as
/// the oracle has positive scores (up to `k`); position by position the oracle's item with
/// its score, or an item whose score ties with it within the tolerance (f64 cannot order
/// those: [`check_twins`] checks the tie-break); every listed item at its own score. Lists the
/// oracle has nothing for must be empty.
pub(crate) fn compare(got: &Got, want: &Expected, k: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let keys: BTreeSet<&(u32, String)> = got.keys().chain(want.keys()).collect();
    for key in keys {
        let at = format!("profile {} category {:?}", key.0, key.1);
        let have = got.get(key).map_or(&[][..], Vec::as_slice);
        let full = want.get(key).map_or(&[][..], Vec::as_slice);
        let mut seen = BTreeSet::new();
        for (item, _) in have {
            if !seen.insert(item) {
                problems.push(format!("{at}: {item:?} listed twice: {have:?}"));
            }
        }
        let required = full.iter().filter(|e| !e.ambiguous()).count();
        let (min_len, max_len) = (required.min(k), full.len().min(k));
        if have.len() < min_len || have.len() > max_len {
            problems.push(format!(
                "{at}: {} items listed, expected {min_len}..={max_len}\n got:  {have:?}\n want: {:?}",
                have.len(),
                &full[..full.len().min(k + 2)]
            ));
            continue;
        }
        for (pos, (item, score)) in have.iter().enumerate() {
            let expected = &full[pos];
            let Some(own) = full.iter().find(|e| e.item == *item) else {
                problems.push(format!(
                    "{at} rank {}: {item:?} (score {score}) has no positive oracle score",
                    pos + 1
                ));
                continue;
            };
            if !close(*score, own.score, own.mag) {
                problems.push(format!(
                    "{at} rank {}: {item:?} listed at {score}, its oracle score is {}",
                    pos + 1,
                    own.score
                ));
            }
            let tied = close(own.score, expected.score, own.mag.max(expected.mag));
            if *item != expected.item && !tied {
                problems.push(format!(
                    "{at} rank {}: {item:?} ({}) where the oracle ranks {:?} ({})",
                    pos + 1,
                    own.score,
                    expected.item,
                    expected.score
                ));
            }
        }
    }
    problems
}

/// Exact ties (twins: items with identical purchases, made in the same order, so that their
/// scores are equal to the bit) must rank by `item_id`: where both twins are listed the smaller
/// id comes first, and where only one is (the `k` boundary) it is the smaller one.
pub(crate) fn check_twins(got: &Got, twins: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for ((profile, category), items) in got {
        for (small, large) in twins {
            assert!(
                small.as_bytes() < large.as_bytes(),
                "twins are (smaller, larger)"
            );
            let pos = |id: &str| items.iter().position(|(item, _)| item == id);
            match (pos(small), pos(large)) {
                (Some(s), Some(l)) if s > l => problems.push(format!(
                    "profile {profile} category {category:?}: {large:?} ranked before its \
                     twin {small:?}: {items:?}"
                )),
                (None, Some(_)) => problems.push(format!(
                    "profile {profile} category {category:?}: {large:?} listed without its \
                     twin {small:?}: {items:?}"
                )),
                _ => {}
            }
        }
    }
    problems
}

/// Panics with the first problems, if any.
pub(crate) fn assert_none(problems: &[String], context: &str) {
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(8).map(String::as_str).collect();
        panic!(
            "{context}: {} problem(s):\n{}",
            problems.len(),
            shown.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle itself, on a case worked out by hand.
    #[test]
    fn hand_worked_lists() {
        let buys = [
            Buy::new("b", "x/y", 0, 2),
            Buy::new("a", "x/y", 1000, 1),
            Buy::new("a", "x/z", 0, 1),
            Buy::new("c", "x/z", 1000, 1),
            Buy::new("c", "x/z", 1000, -1),
            Buy::new("d", "w", -1, 5),   // expired (retention 1001)
            Buy::new("e", "w", 1001, 5), // after the as-of time
        ];
        let want = expected(&buys, 1000, &[1000], Some(1001));
        let names = |category: &str| -> Vec<(&str, f64)> {
            want.get(&(0, category.to_owned()))
                .map(|list| list.iter().map(|e| (e.item.as_str(), e.score)).collect())
                .unwrap_or_default()
        };
        // a: 1 + 0.5 in x, b: 2 · 0.5 in x; c cancels (exactly 0: it may be listed or not).
        assert_eq!(names(""), [("a", 1.5), ("b", 1.0), ("c", 0.0)]);
        assert_eq!(names("x"), [("a", 1.5), ("b", 1.0), ("c", 0.0)]);
        assert_eq!(names("x/y"), [("a", 1.0), ("b", 1.0)]);
        assert_eq!(names("x/z"), [("a", 0.5), ("c", 0.0)]);
        assert!(names("w").is_empty());
        let got: Got = [(
            (0, "x/y".to_owned()),
            vec![("b".into(), 1.0), ("a".into(), 1.0)],
        )]
        .into_iter()
        .collect();
        // The other lists are missing; a tie (here exact) is not for `compare` to order ...
        let problems = compare(&got, &want, 2);
        assert!(problems.iter().any(|p| p.contains("category \"x\"")));
        assert!(!problems.iter().any(|p| p.contains("x/y")), "{problems:?}");
        // ... but twins rank by item.
        let twins = [("a".to_owned(), "b".to_owned())];
        assert_eq!(check_twins(&got, &twins).len(), 1);
        let one: Got = [((0, "x/y".to_owned()), vec![("b".into(), 1.0)])]
            .into_iter()
            .collect();
        assert_eq!(check_twins(&one, &twins).len(), 1);
    }
}
