//! Item availability: the latest `available` flag of every item ever marked, shared by the
//! reader that feeds it and the serving table that hides unavailable items.
//!
//! The latest `ts` per item wins; on equal `ts` an `available: false` wins over `true`, so the
//! result does not depend on the order records are read in (files, partitions). An item never
//! marked is available. One entry per item ever marked (available ones too: their `ts` decides
//! against older records read later).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::RwLock;
use topsellers_model::RankedItem;

/// The items one [`Availability::apply`] changed.
type Changed = Vec<Arc<str>>;

/// One item's latest mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    ts_ms: i64,
    available: bool,
}

impl Mark {
    /// Whether `self` replaces `old`: a later `ts`, or the same `ts` saying unavailable.
    fn wins_over(self, old: Mark) -> bool {
        self.ts_ms > old.ts_ms || (self.ts_ms == old.ts_ms && !self.available && old.available)
    }
}

/// The availability map (see the module docs), with a channel announcing the items whose
/// availability changed (the publisher re-renders the lists holding them).
#[derive(Debug)]
pub struct Availability {
    marks: RwLock<HashMap<Arc<str>, Mark>>,
    unavailable: AtomicU64,
    records: AtomicU64,
    changes: (Sender<Changed>, Receiver<Changed>),
}

impl Default for Availability {
    fn default() -> Self {
        Availability {
            marks: RwLock::new(HashMap::new()),
            unavailable: AtomicU64::new(0),
            records: AtomicU64::new(0),
            changes: crossbeam_channel::unbounded(),
        }
    }
}

impl Availability {
    /// An empty map: every item available.
    pub fn new() -> Availability {
        Availability::default()
    }

    /// Applies records `(item_id, available, ts_ms)` in order; returns the items whose
    /// availability changed (each once), which are also announced on [`Self::changes`].
    pub fn apply<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, bool, i64)>,
    ) -> Vec<Arc<str>> {
        let mut changed: HashMap<Arc<str>, bool> = HashMap::new();
        {
            let mut marks = self.marks.write();
            for (item_id, available, ts_ms) in records {
                self.records.fetch_add(1, Ordering::Relaxed);
                let new = Mark { ts_ms, available };
                let (key, was) = match marks.get_key_value(item_id) {
                    Some((_, old)) if !new.wins_over(*old) => continue,
                    Some((key, old)) => (key.clone(), old.available),
                    None => (Arc::from(item_id), true),
                };
                marks.insert(key.clone(), new);
                if was != available {
                    if available {
                        self.unavailable.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        self.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    // Keeps the availability before the call: a flip back within one call
                    // is no change at all.
                    changed.entry(key).or_insert(was);
                }
            }
            changed.retain(|key, was| marks.get(&**key).is_some_and(|mark| mark.available != *was));
        }
        let changed: Vec<Arc<str>> = changed.into_keys().collect();
        if !changed.is_empty() {
            let _ = self.changes.0.send(changed.clone());
        }
        changed
    }

    /// Whether `item_id` is available (never marked: yes).
    pub fn is_available(&self, item_id: &str) -> bool {
        self.marks
            .read()
            .get(item_id)
            .is_none_or(|mark| mark.available)
    }

    /// Items marked unavailable now.
    pub fn unavailable_count(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// Records applied so far (stale ones included).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Items marked so far (available or not).
    pub fn marked_count(&self) -> usize {
        self.marks.read().len()
    }

    /// Where the changed items of each [`Self::apply`] are announced.
    pub fn changes(&self) -> Receiver<Vec<Arc<str>>> {
        self.changes.1.clone()
    }

    /// The positions in `candidates` of the items shown: the first `k` available ones.
    pub fn shown(&self, candidates: &[RankedItem], k: usize) -> Vec<u32> {
        if self.unavailable_count() == 0 {
            return (0..candidates.len().min(k) as u32).collect();
        }
        let marks = self.marks.read();
        candidates
            .iter()
            .enumerate()
            .filter(|(_, item)| marks.get(&*item.item_id).is_none_or(|mark| mark.available))
            .map(|(at, _)| at as u32)
            .take(k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// Brute force: for each item, the record with the largest (ts, unavailable) decides.
    fn oracle(records: &[(String, bool, i64)]) -> HashMap<String, bool> {
        let mut best: HashMap<String, (i64, bool)> = HashMap::new();
        for (item, available, ts) in records {
            let key = (*ts, !*available);
            let entry = best.entry(item.clone()).or_insert(key);
            if key > *entry {
                *entry = key;
            }
        }
        best.into_iter()
            .map(|(item, (_, un))| (item, !un))
            .collect()
    }

    #[test]
    fn latest_ts_wins_in_any_order_and_ties_hide() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let records: Vec<(String, bool, i64)> = (0..rng.random_range(0..40))
                .map(|_| {
                    (
                        format!("i{}", rng.random_range(0..6)),
                        rng.random_bool(0.5),
                        rng.random_range(0..8),
                    )
                })
                .collect();
            let want = oracle(&records);
            let mut shuffled = records.clone();
            shuffled.shuffle(&mut rng);
            let map = Availability::new();
            // In chunks, as a reader applies them; every change is announced.
            let changes = map.changes();
            let mut now: HashMap<String, bool> = HashMap::new();
            for chunk in shuffled.chunks(rng.random_range(1..5)) {
                let before: HashMap<String, bool> = (0..6)
                    .map(|i| format!("i{i}"))
                    .map(|i| (i.clone(), map.is_available(&i)))
                    .collect();
                let changed = map.apply(chunk.iter().map(|(i, a, t)| (i.as_str(), *a, *t)));
                for i in 0..6 {
                    let item = format!("i{i}");
                    let flipped = before[&item] != map.is_available(&item);
                    assert_eq!(
                        flipped,
                        changed.iter().any(|c| **c == *item),
                        "{item} {chunk:?}"
                    );
                    now.insert(item.clone(), map.is_available(&item));
                }
                if !changed.is_empty() {
                    assert_eq!(changes.try_recv().unwrap().len(), changed.len());
                }
            }
            for (item, available) in &now {
                assert_eq!(
                    want.get(item).copied().unwrap_or(true),
                    *available,
                    "{item}"
                );
            }
            let hidden = now.values().filter(|a| !**a).count() as u64;
            assert_eq!(map.unavailable_count(), hidden);
        }
    }

    #[test]
    fn tie_rule() {
        let map = Availability::new();
        map.apply([("a", false, 5), ("a", true, 5)]);
        assert!(!map.is_available("a"));
        map.apply([("a", true, 4)]);
        assert!(!map.is_available("a"));
        map.apply([("a", true, 6)]);
        assert!(map.is_available("a"));
        assert!(map.is_available("never"));
        assert_eq!(map.records(), 4);
        assert_eq!(map.marked_count(), 1);
    }
}
