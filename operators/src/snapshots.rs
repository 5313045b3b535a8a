//! `snapshots`: gathers top-k lists by time and hands out a complete [`Snapshot`] per round.

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use topsellers_model::{LatestLists, Snapshot, TopKList};

use crate::stash::frontier_time;
use crate::Time;

/// Publishes top-k lists as snapshots.
pub trait Snapshots {
    /// Sends every list to each worker in `leaders` (the first worker of every process, so that
    /// every process serves every category), and on each worker calls `sink` with one
    /// [`Snapshot`] per frontier advance: every list that changed at times the frontier has
    /// passed, as of the last complete time. A snapshot with no lists reports that time moved.
    ///
    /// ## Correctness
    /// A snapshot for time `T` is handed out only once the input frontier has passed `T`, so
    /// it holds every change up to `T` from every worker and nothing later. When a list changed
    /// more than once in the round, only its latest version is kept.
    fn snapshots(self, leaders: Vec<usize>, sink: impl FnMut(Snapshot) + 'static);
}

impl<'scope> Snapshots for StreamVec<'scope, Time, TopKList> {
    fn snapshots(self, leaders: Vec<usize>, mut sink: impl FnMut(Snapshot) + 'static) {
        let copies = self.flat_map(move |list: TopKList| {
            let last = leaders.len().saturating_sub(1);
            let mut list = Some(list);
            leaders
                .clone()
                .into_iter()
                .enumerate()
                .map(move |(i, leader)| {
                    let copy = if i == last { list.take() } else { list.clone() };
                    (leader as u64, copy.expect("one list per leader"))
                })
                .collect::<Vec<_>>()
        });
        let route = Exchange::new(|(leader, _list): &(u64, TopKList)| *leader);
        let mut pending: BTreeMap<Time, Vec<TopKList>> = BTreeMap::new();
        let mut published: Option<Time> = None;
        copies.sink(route, "Snapshots", move |(input, frontier)| {
            input.for_each_stamp(|capability, batches| {
                if let Some(&time) = capability.least() {
                    let lists = pending.entry(time).or_default();
                    for batch in batches {
                        lists.extend(batch.drain(..).map(|(_, list)| list));
                    }
                }
            });
            let frontier = frontier_time(frontier);
            // The last complete time: everything before the frontier, or all once it is empty.
            let complete = match frontier {
                Some(0) => return,
                Some(f) => f - 1,
                None => match pending.last_key_value() {
                    Some((&time, _)) => time.max(published.unwrap_or(0)),
                    None => return,
                },
            };
            if published.is_some_and(|p| p >= complete) && pending.is_empty() {
                return;
            }
            let later = pending.split_off(&(complete + 1));
            let rounds = std::mem::replace(&mut pending, later);
            let mut latest = LatestLists::default();
            latest.extend(rounds.into_values().flatten());
            let lists = latest.take_sorted();
            published = Some(complete);
            sink(Snapshot {
                time_ms: complete as i64,
                lists,
                whole: false,
            });
        });
    }
}
