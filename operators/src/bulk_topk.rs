//! `bulk_local_topk`: each category's local top-k from input that never expires (batch), with
//! the ranking built once per round by selection instead of maintained incrementally.

use std::cell::Cell;
use std::cmp::{Ordering, Reverse};
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use rustc_hash::FxHashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use serde::{Deserialize, Serialize};
use topsellers_model::{ancestors, DecayedSum, RankedItem, ScoreKey};

use crate::decayed_topk::{LocalChange, TopKConfig};
use crate::ids::DenseIds;
use crate::stash::{frontier_time, TimeStash};
use crate::{route_hash, Time};

/// Purchases of one item in one leaf category, already summed (batch pre-aggregation): what
/// [`bulk_local_topk`](BulkLocalTopK::bulk_local_topk) takes. The update's difference counts
/// the purchases (one purchase is a sum of one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairSums {
    /// The item bought.
    pub item_id: Arc<str>,
    /// The leaf category path.
    pub category: Arc<str>,
    /// The latest event time among the purchases, epoch ms.
    pub latest_ms: i64,
    /// Their forward sums `Σ q·2^(t/h)`, one per decay profile, in profile order.
    pub sums: Box<[DecayedSum]>,
}

/// Per-worker exact decayed sums and local top-k lists, for input that never expires.
pub trait BulkLocalTopK<'scope> {
    /// What [`decayed_local_topk`](crate::DecayedLocalTopK::decayed_local_topk) computes, for
    /// input already cut to a fixed window (`config.retention_ms` is ignored: nothing
    /// expires), in the same output form, so that `merge_topk` follows unchanged.
    ///
    /// Routes sums by `item_id` and adds each to its leaf, every ancestor and the root. When a round's input is complete it
    /// selects the top k of every category the round touched from all of the category's
    /// items, and emits the difference from what it emitted before. Selection is linear in a
    /// category's items, so a round costs what it touches plus the size of those categories:
    /// ideal for a backfill that arrives in one round, wasteful for a trickle of small rounds
    /// (the live service uses `decayed_local_topk`).
    ///
    /// `hint` tells how many updates to expect, so that the state is sized once.
    fn bulk_local_topk(
        self,
        config: &TopKConfig,
        hint: SizeHint,
    ) -> StreamVec<'scope, Time, LocalChange>;
}

/// How many updates a worker's [`bulk_local_topk`](BulkLocalTopK::bulk_local_topk) is to
/// expect, set by the worker before it enters them, so that the operator sizes its tables
/// once instead of regrowing them step by step (each regrowth copies them into fresh memory).
/// Only a hint: the updates a worker enters, which are routed to all workers, are a fair guess
/// of those it receives.
#[derive(Clone, Default)]
pub struct SizeHint(Rc<Cell<usize>>);

impl SizeHint {
    /// Expects `updates` more updates.
    pub fn expect(&self, updates: usize) {
        self.0.set(self.0.get() + updates);
    }
}

impl<'scope> BulkLocalTopK<'scope> for VecCollection<'scope, Time, PairSums, i64> {
    fn bulk_local_topk(
        self,
        config: &TopKConfig,
        hint: SizeHint,
    ) -> StreamVec<'scope, Time, LocalChange> {
        let mut state = BulkTopK::new(config);
        let route = Exchange::new(|(pair, _time, _diff): &(PairSums, Time, i64)| {
            route_hash(pair.item_id.as_bytes())
        });
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<LocalChange>>, _, _, _>(
                route,
                "BulkLocalTopK",
                |_capability, _info| {
                    let mut stash = TimeStash::default();
                    move |(input, frontier), output| {
                        state.reserve(hint.0.take());
                        let open = frontier_time(frontier);
                        // Rounds before `open` first: the input's updates at `open` are added
                        // as they are taken in, and those rounds must not see them.
                        if let Some((emit_at, complete)) = stash.take_complete(open) {
                            state.reserve(complete.values().map(Vec::len).sum());
                            for updates in complete.into_values() {
                                for pair in updates {
                                    state.add(&pair);
                                }
                            }
                            // Straight into the output's buffers: a backfill's changes are
                            // about as many as its lists' entries.
                            let mut session = output.session(&emit_at);
                            state.finish_round(|change| session.give(change));
                        }
                        stash.absorb_applying(
                            input,
                            open,
                            |(pair, time, _count), _| (pair, time),
                            |pair| state.add(&pair),
                        );
                    }
                },
            )
    }
}

/// A ranked entry: score descending, then the item's text ascending (see [`BulkTopK::order`]).
type Entry = (Reverse<ScoreKey>, u32);

/// The leaf in `item_homes` of an item seen in more than one leaf.
const SEVERAL_LEAVES: u32 = u32::MAX;

/// The operator's state: see [`BulkLocalTopK`].
///
/// Sums are kept per (leaf, item) only. Most items sit in one leaf, and then their score in
/// every ancestor is that leaf's sum: it is looked up, not stored again per ancestor. Items in
/// several leaves are rolled up per category when it is ranked.
struct BulkTopK {
    half_lives: Vec<i64>,
    k: usize,
    items: DenseIds,
    categories: DenseIds,
    /// Leaf category → its index in `lineages`.
    leaves: FxHashMap<Arc<str>, u32>,
    /// Per leaf: the ids of itself, its ancestors and the root.
    lineages: Vec<Box<[u32]>>,
    /// (leaf, item) → slot in `sums`, for the items in several leaves only: the slot of an
    /// item in one leaf, most of them, is in `item_homes` (no lookup in a big table).
    slots: FxHashMap<u64, u32>,
    /// `half_lives.len()` sums per slot.
    sums: Vec<DecayedSum>,
    /// Item of each slot.
    slot_items: Vec<u32>,
    /// Per item: its leaf and slot, or [`SEVERAL_LEAVES`] once it has more than one leaf.
    item_homes: Vec<(u32, u32)>,
    /// Per category: the slots of every leaf at or below it.
    members: Vec<Vec<u32>>,
    /// Per category and profile (`category · profiles + profile`): the top k last emitted.
    shown: Vec<Vec<Entry>>,
    /// Per category: whether the current round touched it.
    dirty: Vec<bool>,
    /// Categories the current round touched, in order of first touch.
    touched: Vec<u32>,
    /// Categories first seen this round, to announce.
    announced: Vec<u32>,
}

impl BulkTopK {
    fn new(config: &TopKConfig) -> Self {
        BulkTopK {
            half_lives: config.half_lives_ms.clone(),
            k: config.k,
            items: DenseIds::default(),
            categories: DenseIds::default(),
            leaves: FxHashMap::default(),
            lineages: Vec::new(),
            slots: FxHashMap::default(),
            sums: Vec::new(),
            slot_items: Vec::new(),
            item_homes: Vec::new(),
            members: Vec::new(),
            shown: Vec::new(),
            dirty: Vec::new(),
            touched: Vec::new(),
            announced: Vec::new(),
        }
    }

    /// Makes room for a round of `updates` (at most a slot and an item each), so that a
    /// backfill's tables do not grow step by step.
    fn reserve(&mut self, updates: usize) {
        self.slot_items.reserve(updates);
        self.sums.reserve(updates * self.half_lives.len());
        self.items.reserve(updates);
        self.item_homes.reserve(updates);
    }

    /// The index in `lineages` of `leaf`'s.
    fn lineage(&mut self, leaf: &Arc<str>) -> usize {
        if let Some(&at) = self.leaves.get(leaf) {
            return at as usize;
        }
        let profiles = self.half_lives.len();
        let mut ids = Vec::new();
        for category in ancestors(leaf) {
            let (id, new) = self.categories.intern(category);
            if new {
                self.members.push(Vec::new());
                self.shown.extend((0..profiles).map(|_| Vec::new()));
                self.dirty.push(false);
                self.announced.push(id);
            }
            ids.push(id);
        }
        self.lineages.push(ids.into());
        self.leaves
            .insert(leaf.clone(), (self.lineages.len() - 1) as u32);
        self.lineages.len() - 1
    }

    /// Adds the sums of one (leaf, item).
    fn add(&mut self, pair: &PairSums) {
        let (item, new_item) = self.items.intern_shared(&pair.item_id);
        let lineage = self.lineage(&pair.category);
        let leaf = self.lineages[lineage][0];
        let profiles = self.half_lives.len();
        let key = |leaf: u32| (u64::from(leaf) << 32) | u64::from(item);
        let slot = if new_item {
            let slot = self.new_slot(item, lineage);
            self.item_homes.push((leaf, slot));
            slot
        } else {
            match self.item_homes[item as usize] {
                (home, slot) if home == leaf => slot,
                (home, slot) => {
                    if home != SEVERAL_LEAVES {
                        // A second leaf: the first one's slot joins the table.
                        self.slots.insert(key(home), slot);
                        self.item_homes[item as usize].0 = SEVERAL_LEAVES;
                    }
                    match self.slots.get(&key(leaf)) {
                        Some(&slot) => slot,
                        None => {
                            let slot = self.new_slot(item, lineage);
                            self.slots.insert(key(leaf), slot);
                            slot
                        }
                    }
                }
            }
        } as usize;
        let sums = &mut self.sums[slot * profiles..(slot + 1) * profiles];
        for (sum, part) in sums.iter_mut().zip(pair.sums.iter()) {
            sum.merge(part);
        }
        for &category in self.lineages[lineage].iter() {
            if !self.dirty[category as usize] {
                self.dirty[category as usize] = true;
                self.touched.push(category);
            }
        }
    }

    /// A new (leaf, item) slot, listed in the members of the leaf and its ancestors.
    fn new_slot(&mut self, item: u32, lineage: usize) -> u32 {
        let slot = self.slot_items.len() as u32;
        self.slot_items.push(item);
        self.sums.extend(std::iter::repeat_n(
            DecayedSum::default(),
            self.half_lives.len(),
        ));
        for &category in self.lineages[lineage].iter() {
            self.members[category as usize].push(slot);
        }
        slot
    }

    /// The ranking order of two entries: score descending, then `item_id` ascending.
    fn order(items: &DenseIds, a: &Entry, b: &Entry) -> Ordering {
        a.0.cmp(&b.0)
            .then_with(|| items.name(a.1).cmp(items.name(b.1)))
    }

    /// Selects the top k of every touched category and emits the changes.
    fn finish_round(&mut self, mut emit: impl FnMut(LocalChange)) {
        let profiles = self.half_lives.len();
        for category in self.announced.drain(..) {
            for profile in 0..profiles {
                emit(LocalChange {
                    profile: profile as u32,
                    category: self.categories.name(category).clone(),
                    entry: None,
                    diff: 0,
                });
            }
        }
        let mut ranked: Vec<Entry> = Vec::new();
        let mut rolled: FxHashMap<u32, DecayedSum> = FxHashMap::default();
        for category in std::mem::take(&mut self.touched) {
            self.dirty[category as usize] = false;
            let name = self.categories.name(category).clone();
            for profile in 0..profiles {
                ranked.clear();
                rolled.clear();
                for &slot in &self.members[category as usize] {
                    let (item, sum) = (
                        self.slot_items[slot as usize],
                        &self.sums[slot as usize * profiles + profile],
                    );
                    if self.item_homes[item as usize].0 == SEVERAL_LEAVES {
                        rolled.entry(item).or_default().merge(sum);
                    } else if let Some(key) = sum.key() {
                        ranked.push((Reverse(key), item));
                    }
                }
                ranked.extend(
                    rolled
                        .iter()
                        .filter_map(|(&item, sum)| Some((Reverse(sum.key()?), item))),
                );
                let order = |a: &Entry, b: &Entry| Self::order(&self.items, a, b);
                if ranked.len() > self.k {
                    ranked.select_nth_unstable_by(self.k, order);
                    ranked.truncate(self.k);
                }
                ranked.sort_unstable_by(order);
                let shown = &mut self.shown[category as usize * profiles + profile];
                diff_sorted(shown, &ranked, order, |entry, diff| {
                    emit(LocalChange {
                        profile: profile as u32,
                        category: name.clone(),
                        entry: Some(RankedItem {
                            item_id: self.items.name(entry.1).clone(),
                            score: entry.0 .0,
                            scores: None,
                        }),
                        diff,
                    });
                });
                shown.clone_from(&ranked);
            }
        }
    }
}

/// Calls `emit(entry, −1)` for each entry of `old` not in `new` and `emit(entry, +1)` for each
/// of `new` not in `old`; both are sorted by `order`.
fn diff_sorted<T: PartialEq>(
    old: &[T],
    new: &[T],
    order: impl Fn(&T, &T) -> Ordering,
    mut emit: impl FnMut(&T, i64),
) {
    let (mut o, mut n) = (0, 0);
    while o < old.len() || n < new.len() {
        let step = match (old.get(o), new.get(n)) {
            (Some(a), Some(b)) if a == b => Ordering::Equal,
            (Some(a), Some(b)) => order(a, b),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match step {
            Ordering::Equal => {
                o += 1;
                n += 1;
            }
            Ordering::Less => {
                emit(&old[o], -1);
                o += 1;
            }
            Ordering::Greater => {
                emit(&new[n], 1);
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::decayed_topk::tests::replay;
    use crate::decayed_topk::RankKey;
    use crate::oracle::{self, Buy};

    type Lists = FxHashMap<(u32, Arc<str>), BTreeSet<RankKey>>;

    #[test]
    fn rounds_of_random_purchases_match_brute_force() {
        let config = TopKConfig {
            half_lives_ms: vec![1000, 2000],
            k: 3,
            retention_ms: None,
            carry_scores: false,
        };
        let leaves = ["a/x", "a/y", "b/z", "a/x/deep", "c"];
        let twins = [("i0".to_owned(), "j0".to_owned())];
        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut state = BulkTopK::new(&config);
            let mut lists = Lists::default();
            let mut purchases = Vec::new();
            for _round in 0..4 {
                let mut out = Vec::new();
                for _ in 0..rng.random_range(0..25) {
                    let item: Arc<str> = format!("i{}", rng.random_range(0..10)).into();
                    let leaf: Arc<str> = leaves[rng.random_range(0..leaves.len())].into();
                    // Whole multiples of both half-lives: every weight, and so every sum, is
                    // exact, and ties are real ties.
                    let ts_ms = rng.random_range(0..6) * 2000;
                    let quantity = [-2, -1, 1, 1, 2, 3][rng.random_range(0..6)];
                    // One purchase, summed as batch pre-aggregation sums many.
                    let sums = config
                        .half_lives_ms
                        .iter()
                        .map(|&h| {
                            let mut sum = DecayedSum::default();
                            sum.add(ts_ms, quantity, h);
                            sum
                        })
                        .collect();
                    let pair = PairSums {
                        item_id: item.clone(),
                        category: leaf.clone(),
                        latest_ms: ts_ms,
                        sums,
                    };
                    state.add(&pair);
                    purchases.push(Buy::new(&item, &leaf, ts_ms, quantity));
                    if &*item == "i0" {
                        // Its twin: the same purchases, so exactly the same scores.
                        state.add(&PairSums {
                            item_id: "j0".into(),
                            ..pair
                        });
                        purchases.push(Buy::new("j0", &leaf, ts_ms, quantity));
                    }
                }
                state.finish_round(|change| out.push(change));
                replay(&mut lists, &out);
                // Scores rendered at a time after every purchase (nothing expires here).
                let as_of = 12_000;
                let want = oracle::expected(&purchases, as_of, &config.half_lives_ms, None);
                let got = oracle::rendered(&lists, &config.half_lives_ms, as_of);
                let mut problems = oracle::compare(&got, &want, config.k);
                problems.extend(oracle::check_twins(&got, &twins));
                oracle::assert_none(&problems, &format!("seed {seed}"));
            }
        }
    }
}
