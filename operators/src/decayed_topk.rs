//! `decayed_local_topk`: exact forward-decayed scores per (category, item) and each category's
//! local top-k, per decay profile, on the worker that owns the item; emits only changes.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use topsellers_model::purchase::Event;
use topsellers_model::{ancestors, DecayedSum, RankedItem, ScoreKey};

use crate::stash::{frontier_time, TimeStash};
use crate::{route_hash, Time};

/// What the top-k stages compute.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKConfig {
    /// Half-life of each decay profile, in milliseconds (each > 0).
    pub half_lives_ms: Vec<i64>,
    /// List length per category.
    pub k: usize,
    /// Retention in milliseconds: a purchase stops counting at `ts + retention`.
    pub retention_ms: i64,
}

/// A change to one worker's local top-k of one (profile, category).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalChange {
    /// Profile index.
    pub profile: u32,
    /// Category path.
    pub category: Arc<str>,
    /// The entry entering (`diff = +1`) or leaving (`diff = −1`) the local top-k; `None` with
    /// `diff = 0` announces a category seen for the first time (so it is known, even while no
    /// item in it has a positive score).
    pub entry: Option<RankedItem>,
    /// +1, −1, or 0 for an announcement.
    pub diff: i64,
}

/// Per-worker decayed scores and local top-k lists.
pub trait DecayedLocalTopK<'scope> {
    /// Routes purchases by `item_id`, keeps `Σ q·2^(ts/h)` per (category, item) for every
    /// ancestor category of the purchase's leaf (and the root `""`), and emits the changes to
    /// each category's local top-k, at the last time of each completed round.
    ///
    /// ## Correctness
    /// Updates are applied only once the input frontier has passed their time, so the output
    /// at time `T` reflects exactly the updates at times `≤ T`. An update at a time
    /// `≥ ts + retention` is a retention retraction (see [`crate::RetainFor`]): when the last
    /// live purchase of a (category, item) has been retracted its sum is reset to exactly zero.
    /// Every category keeps its full ranking (not only the top k), because returns and expiry
    /// pull lower items back into the top k.
    fn decayed_local_topk(self, config: &TopKConfig) -> StreamVec<'scope, Time, LocalChange>;
}

impl<'scope> DecayedLocalTopK<'scope> for VecCollection<'scope, Time, Event, i64> {
    fn decayed_local_topk(self, config: &TopKConfig) -> StreamVec<'scope, Time, LocalChange> {
        let mut state = LocalTopK::new(config.clone());
        let route = Exchange::new(|(event, _time, _diff): &(Event, Time, i64)| {
            route_hash(event.item_id.as_bytes())
        });
        self.inner
            .unary_frontier::<CapacityContainerBuilder<Vec<LocalChange>>, _, _, _>(
                route,
                "DecayedLocalTopK",
                |_capability, _info| {
                    let mut stash = TimeStash::default();
                    let mut complete = Vec::new();
                    let mut changes = Vec::new();
                    move |(input, frontier), output| {
                        input.for_each_stamp(|capability, batches| {
                            if let Some(capability) = capability.retain_least(0) {
                                for batch in batches {
                                    stash.extend(
                                        capability.clone(),
                                        batch
                                            .drain(..)
                                            .map(|(event, time, diff)| ((event, diff), time)),
                                    );
                                }
                            }
                        });
                        if let Some(emit_at) =
                            stash.drain_complete(frontier_time(frontier), &mut complete)
                        {
                            for ((event, diff), time) in complete.drain(..) {
                                state.apply(&event, time, diff);
                            }
                            state.finish_round(&mut changes);
                            output.session(&emit_at).give_iterator(changes.drain(..));
                        }
                    }
                },
            )
    }
}

/// Dense ids for repeated strings; ids are local to one worker.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> (u32, bool) {
        if let Some(&id) = self.ids.get(name) {
            return (id, false);
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        (id, true)
    }

    fn intern_arc(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.ids.get(&**name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name.clone(), id);
        id
    }

    fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }
}

/// The ranking order: score descending, then `item_id` ascending.
type RankKey = (Reverse<ScoreKey>, Arc<str>);

/// One category's rankings and last emitted top-k, per profile.
struct CategoryState {
    ranking: Vec<BTreeSet<RankKey>>,
    shown: Vec<Vec<RankedItem>>,
    dirty: Vec<bool>,
}

/// A (category, item) touched in the current round, with its keys before the round.
struct Touched {
    slot: u32,
    category: u32,
    item: u32,
    old_keys_at: usize,
}

/// The operator's state: see [`DecayedLocalTopK`].
struct LocalTopK {
    config: TopKConfig,
    profiles: usize,
    items: Interner,
    categories: Interner,
    /// Leaf category → ids of itself, its ancestors and the root.
    lineage: FxHashMap<Arc<str>, Box<[u32]>>,
    /// (category, item) → slot in `live` / `sums`.
    slots: FxHashMap<(u32, u32), u32>,
    /// Live purchases counted in each slot (insertions minus retention retractions).
    live: Vec<i64>,
    /// `profiles` sums per slot.
    sums: Vec<DecayedSum>,
    free: Vec<u32>,
    states: Vec<CategoryState>,
    /// Slots touched this round, and their keys before it (flattened, `profiles` per slot).
    touched: Vec<Touched>,
    touched_slots: FxHashSet<u32>,
    old_keys: Vec<Option<ScoreKey>>,
    touched_categories: Vec<u32>,
    announced: Vec<u32>,
}

impl LocalTopK {
    fn new(config: TopKConfig) -> Self {
        let profiles = config.half_lives_ms.len();
        LocalTopK {
            config,
            profiles,
            items: Interner::default(),
            categories: Interner::default(),
            lineage: FxHashMap::default(),
            slots: FxHashMap::default(),
            live: Vec::new(),
            sums: Vec::new(),
            free: Vec::new(),
            states: Vec::new(),
            touched: Vec::new(),
            touched_slots: FxHashSet::default(),
            old_keys: Vec::new(),
            touched_categories: Vec::new(),
            announced: Vec::new(),
        }
    }

    fn lineage(&mut self, leaf: &Arc<str>) -> Box<[u32]> {
        if let Some(ids) = self.lineage.get(leaf) {
            return ids.clone();
        }
        let mut ids = Vec::new();
        for category in ancestors(leaf) {
            let (id, new) = self.categories.intern(category);
            if new {
                self.states.push(CategoryState {
                    ranking: vec![BTreeSet::new(); self.profiles],
                    shown: vec![Vec::new(); self.profiles],
                    dirty: vec![false; self.profiles],
                });
                self.announced.push(id);
            }
            ids.push(id);
        }
        let ids: Box<[u32]> = ids.into();
        self.lineage.insert(leaf.clone(), ids.clone());
        ids
    }

    /// Applies one update (a purchase, a return, or a retention retraction).
    fn apply(&mut self, event: &Event, time: Time, quantity: i64) {
        let retraction = time as i64 >= event.ts_ms.saturating_add(self.config.retention_ms);
        let item = self.items.intern_arc(&event.item_id);
        let lineage = self.lineage(&event.category);
        for &category in lineage.iter() {
            let slot = self.slot(category, item);
            let base = slot as usize * self.profiles;
            for (profile, &half_life) in self.config.half_lives_ms.iter().enumerate() {
                self.sums[base + profile].add(event.ts_ms, quantity, half_life);
            }
            self.live[slot as usize] += if retraction { -1 } else { 1 };
        }
    }

    /// The slot of (category, item), created if new, and noted as touched with its old keys.
    fn slot(&mut self, category: u32, item: u32) -> u32 {
        let slot = match self.slots.get(&(category, item)) {
            Some(&slot) => slot,
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => slot,
                    None => {
                        self.live.push(0);
                        self.sums
                            .extend(std::iter::repeat_n(DecayedSum::default(), self.profiles));
                        (self.live.len() - 1) as u32
                    }
                };
                self.slots.insert((category, item), slot);
                slot
            }
        };
        if self.touched_slots.insert(slot) {
            let base = slot as usize * self.profiles;
            let old_keys_at = self.old_keys.len();
            self.old_keys.extend(
                self.sums[base..base + self.profiles]
                    .iter()
                    .map(DecayedSum::key),
            );
            self.touched.push(Touched {
                slot,
                category,
                item,
                old_keys_at,
            });
        }
        slot
    }

    /// Re-ranks what the round touched and emits the changes to every local top-k.
    fn finish_round(&mut self, out: &mut Vec<LocalChange>) {
        for category in self.announced.drain(..) {
            for profile in 0..self.profiles {
                out.push(LocalChange {
                    profile: profile as u32,
                    category: self.categories.name(category).clone(),
                    entry: None,
                    diff: 0,
                });
            }
        }
        let k = self.config.k;
        for touched in self.touched.drain(..) {
            let base = touched.slot as usize * self.profiles;
            let item_name = self.items.name(touched.item);
            let state = &mut self.states[touched.category as usize];
            let mut any_dirty = false;
            for profile in 0..self.profiles {
                let old = self.old_keys[touched.old_keys_at + profile];
                let new = self.sums[base + profile].key();
                if old == new {
                    continue;
                }
                let ranking = &mut state.ranking[profile];
                let shown = &state.shown[profile];
                // The top k changes only if the item was in it, enters it, or it is not full.
                let boundary = shown.last().map(RankedItem::rank_key);
                let in_top = |key: &Option<ScoreKey>| match (key, &boundary) {
                    (Some(key), Some(boundary)) => (Reverse(*key), item_name.clone()) <= *boundary,
                    _ => false,
                };
                if shown.len() < k || in_top(&old) || in_top(&new) {
                    state.dirty[profile] = true;
                    any_dirty = true;
                }
                if let Some(old) = old {
                    ranking.remove(&(Reverse(old), item_name.clone()));
                }
                if let Some(new) = new {
                    ranking.insert((Reverse(new), item_name.clone()));
                }
            }
            if any_dirty {
                self.touched_categories.push(touched.category);
            }
            if self.live[touched.slot as usize] == 0 {
                // Every purchase of this (category, item) has expired: forget it exactly.
                for sum in &mut self.sums[base..base + self.profiles] {
                    sum.clear();
                }
                self.slots.remove(&(touched.category, touched.item));
                self.free.push(touched.slot);
            }
        }
        self.touched_slots.clear();
        self.old_keys.clear();

        self.touched_categories.sort_unstable();
        self.touched_categories.dedup();
        for &category in &self.touched_categories {
            let name = self.categories.name(category);
            let state = &mut self.states[category as usize];
            for profile in 0..self.profiles {
                if !std::mem::take(&mut state.dirty[profile]) {
                    continue;
                }
                let fresh: Vec<RankedItem> = state.ranking[profile]
                    .iter()
                    .take(k)
                    .map(|(Reverse(score), item_id)| RankedItem {
                        item_id: item_id.clone(),
                        score: *score,
                    })
                    .collect();
                emit_difference(profile as u32, name, &state.shown[profile], &fresh, out);
                state.shown[profile] = fresh;
            }
        }
        self.touched_categories.clear();
    }
}

/// Emits `−1` for entries of `old` missing from `new` and `+1` for entries of `new` missing
/// from `old`; both lists are in ranking order.
fn emit_difference(
    profile: u32,
    category: &Arc<str>,
    old: &[RankedItem],
    new: &[RankedItem],
    out: &mut Vec<LocalChange>,
) {
    let change = |entry: &RankedItem, diff| LocalChange {
        profile,
        category: category.clone(),
        entry: Some(entry.clone()),
        diff,
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.rank_key().cmp(&b.rank_key()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                out.push(change(&old[i], -1));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(change(&new[j], 1));
                j += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(item: &str, category: &str, ts_ms: i64) -> Event {
        Event {
            item_id: item.into(),
            category: category.into(),
            ts_ms,
        }
    }

    fn config(k: usize) -> TopKConfig {
        TopKConfig {
            half_lives_ms: vec![1000, 5000],
            k,
            retention_ms: 10_000,
        }
    }

    /// Applies the changes to a map of local top-k lists, as the merge stage would.
    fn replay(lists: &mut FxHashMap<(u32, Arc<str>), BTreeSet<RankKey>>, changes: &[LocalChange]) {
        for change in changes {
            let list = lists
                .entry((change.profile, change.category.clone()))
                .or_default();
            if let Some(entry) = &change.entry {
                if change.diff > 0 {
                    assert!(list.insert(entry.rank_key()), "inserted twice: {change:?}");
                } else {
                    assert!(list.remove(&entry.rank_key()), "removed absent: {change:?}");
                }
            }
        }
    }

    #[test]
    fn rolls_up_ranks_and_expires() {
        let mut state = LocalTopK::new(config(2));
        let mut out = Vec::new();
        state.apply(&event("a", "x/y", 0), 0, 1);
        state.apply(&event("b", "x/y", 0), 0, 2);
        state.apply(&event("c", "x/z", 0), 0, 3);
        state.finish_round(&mut out);
        let mut lists = FxHashMap::default();
        replay(&mut lists, &out);
        let names = |lists: &FxHashMap<(u32, Arc<str>), BTreeSet<RankKey>>,
                     category: &str|
         -> Vec<String> {
            lists[&(0, Arc::from(category))]
                .iter()
                .map(|(_, item)| item.to_string())
                .collect()
        };
        assert_eq!(names(&lists, ""), ["c", "b"]);
        assert_eq!(names(&lists, "x"), ["c", "b"]);
        assert_eq!(names(&lists, "x/y"), ["b", "a"]);
        assert_eq!(names(&lists, "x/z"), ["c"]);
        // Every category is announced once per profile.
        assert_eq!(out.iter().filter(|c| c.entry.is_none()).count(), 4 * 2);

        // c is returned: a comes back into the root's top 2.
        out.clear();
        state.apply(&event("c", "x/z", 0), 1, -3);
        state.finish_round(&mut out);
        replay(&mut lists, &out);
        assert_eq!(names(&lists, ""), ["b", "a"]);
        assert!(names(&lists, "x/z").is_empty());

        // Everything expires: all lists empty, all slots freed.
        out.clear();
        for (item, category, quantity) in [
            ("a", "x/y", 1),
            ("b", "x/y", 2),
            ("c", "x/z", 3),
            ("c", "x/z", -3),
        ] {
            state.apply(&event(item, category, 0), 10_000, -quantity);
        }
        state.finish_round(&mut out);
        replay(&mut lists, &out);
        assert!(lists.values().all(BTreeSet::is_empty));
        assert!(state.slots.is_empty());
    }

    #[test]
    fn ties_break_by_item_id() {
        let mut state = LocalTopK::new(config(2));
        let mut out = Vec::new();
        for item in ["b", "c", "a"] {
            state.apply(&event(item, "x", 500), 500, 1);
        }
        state.finish_round(&mut out);
        let mut lists = FxHashMap::default();
        replay(&mut lists, &out);
        let top: Vec<&str> = lists[&(0, Arc::from("x"))]
            .iter()
            .map(|(_, item)| &**item)
            .collect();
        assert_eq!(top, ["a", "b"]);
    }
}
