//! `merge_topk`: each category's global top-k from the workers' local top-k lists.

use std::cmp::Reverse;
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
    /// Entry → multiplicity (1 while some worker lists it).
    entries: BTreeMap<(Reverse<ScoreKey>, Arc<str>), i64>,
    shown: Vec<RankedItem>,
    announced: bool,
    /// Changed in the current round (and so listed in `touched`).
    dirty: bool,
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
                let mut complete = Vec::new();
                let mut categories: FxHashMap<(u32, Arc<str>), CategoryState> =
                    FxHashMap::default();
                let mut touched: Vec<(u32, Arc<str>)> = Vec::new();
                move |(input, frontier), output| {
                    // Local changes take effect at their message's time.
                    stash.absorb(input, |change, time| (change, time));
                    let Some(emit_at) =
                        stash.drain_complete(frontier_time(frontier), &mut complete)
                    else {
                        return;
                    };
                    for (change, _time) in complete.drain(..) {
                        let key = (change.profile, change.category);
                        let state = categories.entry(key.clone()).or_default();
                        if let Some(entry) = change.entry {
                            let count = state.entries.entry(entry.rank_key()).or_insert(0);
                            *count += change.diff;
                            if *count == 0 {
                                state.entries.remove(&entry.rank_key());
                            }
                        }
                        if !state.dirty {
                            state.dirty = true;
                            touched.push(key);
                        }
                    }
                    let mut session = output.session(&emit_at);
                    for key in touched.drain(..) {
                        let state = categories.get_mut(&key).expect("touched categories exist");
                        state.dirty = false;
                        let fresh: Vec<RankedItem> = state
                            .entries
                            .iter()
                            .filter(|(_, &count)| count > 0)
                            .take(k)
                            .map(|((Reverse(score), item_id), _)| RankedItem {
                                item_id: item_id.clone(),
                                score: *score,
                            })
                            .collect();
                        if fresh != state.shown || !state.announced {
                            state.announced = true;
                            state.shown = fresh.clone();
                            session.give(TopKList {
                                profile: key.0 as usize,
                                category: key.1,
                                items: fresh,
                            });
                        }
                    }
                }
            },
        )
    }
}
