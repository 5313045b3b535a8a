//! `merge_topk`: each category's global top-k from the workers' local top-k lists.

use std::cmp::Reverse;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use topsellers_model::{RankedItem, ScoreKey, TopKList};

use crate::decayed_topk::LocalChange;
use crate::stash::{frontier_time, TimeStash};
use crate::{route_hash, Time};

/// Merges local top-k lists into global ones.
pub trait MergeTopK<'scope> {
    /// Routes local changes by (profile, category) and emits each category's new top-k list
    /// whenever it changes (and once when the category first appears, possibly empty).
    ///
    /// ## Correctness
    /// Every item lives on exactly one worker (routed by `item_id`), so the global top k of a
    /// category is contained in the union of the local top k lists: merging at most
    /// `workers × k` entries per category is exact. Changes are applied only once the
    /// frontier has passed their time; a `+1` and a `−1` of one entry within a round cancel.
    fn merge_topk(self, k: usize) -> StreamVec<'scope, Time, TopKList>;
}

#[derive(Default)]
struct CategoryState {
    /// Entry → multiplicity (1 while some worker lists it) and the item's scores under every
    /// profile as of its latest `+1` (see [`RankedItem::scores`]).
    entries: BTreeMap<(Reverse<ScoreKey>, Arc<str>), (i64, Scores)>,
    shown: Vec<RankedItem>,
    announced: bool,
    /// Changed in the current round (and so listed in `touched`).
    dirty: bool,
}

/// What a ranked item carries besides its own score.
type Scores = Option<Box<[Option<ScoreKey>]>>;

/// The merge's state: per (profile, category).
type Categories = FxHashMap<(u32, Arc<str>), CategoryState>;

/// Applies one local change, listing its category in `touched` the first time in a round.
///
/// Texts are moved, not cloned, where they can be: an `Arc` clone writes to memory that
/// another worker may be writing to.
fn apply(categories: &mut Categories, touched: &mut Vec<(u32, Arc<str>)>, change: LocalChange) {
    let key = (change.profile, change.category);
    let state = match categories.get_mut(&key) {
        Some(state) => state,
        None => categories.entry(key.clone()).or_default(),
    };
    if let Some(RankedItem {
        item_id,
        score,
        scores,
    }) = change.entry
    {
        match state.entries.entry((Reverse(score), item_id)) {
            Entry::Vacant(vacant) => {
                if change.diff != 0 {
                    vacant.insert((change.diff, scores));
                }
            }
            Entry::Occupied(mut occupied) => {
                let (count, carried) = occupied.get_mut();
                *count += change.diff;
                if change.diff > 0 {
                    // A re-announced entry (same score, other profiles' scores changed):
                    // the newest `+1` is the item's state, whichever order its `−1` came in.
                    *carried = scores;
                }
                if *count == 0 {
                    occupied.remove();
                }
            }
        }
    }
    if !state.dirty {
        state.dirty = true;
        touched.push(key);
    }
}

impl CategoryState {
    /// Ends a round that touched the category: its new top k, if it differs from the one
    /// shown (or the category was never shown).
    fn refresh(&mut self, k: usize) -> Option<Vec<RankedItem>> {
        self.dirty = false;
        let fresh: Vec<RankedItem> = self
            .entries
            .iter()
            .filter(|(_, (count, _))| *count > 0)
            .take(k)
            .map(|((Reverse(score), item_id), (_, scores))| RankedItem {
                item_id: item_id.clone(),
                score: *score,
                scores: scores.clone(),
            })
            .collect();
        if fresh == self.shown && self.announced {
            return None;
        }
        self.announced = true;
        self.shown.clone_from(&fresh);
        Some(fresh)
    }
}

impl<'scope> MergeTopK<'scope> for StreamVec<'scope, Time, LocalChange> {
    fn merge_topk(self, k: usize) -> StreamVec<'scope, Time, TopKList> {
        let route = Exchange::new(|change: &LocalChange| {
            route_hash(change.category.as_bytes()).wrapping_add(change.profile as u64)
        });
        self.unary_frontier::<CapacityContainerBuilder<Vec<TopKList>>, _, _, _>(
            route,
            "MergeTopK",
            |_capability, _info| {
                let mut stash = TimeStash::default();
                let mut categories = Categories::default();
                let mut touched: Vec<(u32, Arc<str>)> = Vec::new();
                move |(input, frontier), output| {
                    let open = frontier_time(frontier);
                    // Rounds before `open` first: changes at `open` are applied as they are
                    // taken in, and those rounds must not see them.
                    if let Some((emit_at, complete)) = stash.take_complete(open) {
                        for change in complete.into_values().flatten() {
                            apply(&mut categories, &mut touched, change);
                        }
                        let mut session = output.session(&emit_at);
                        for key in touched.drain(..) {
                            let state = categories.get_mut(&key).expect("touched categories exist");
                            if let Some(items) = state.refresh(k) {
                                session.give(TopKList {
                                    profile: key.0 as usize,
                                    category: key.1,
                                    items,
                                });
                            }
                        }
                    }
                    // Local changes take effect at their message's time.
                    stash.absorb_applying(
                        input,
                        open,
                        |change, time| (change, time),
                        |change| apply(&mut categories, &mut touched, change),
                    );
                }
            },
        )
    }
}
