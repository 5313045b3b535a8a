//! Updates held by their data time until the input frontier passes it, under one capability.

use std::collections::BTreeMap;

use timely::communication::Pull;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::InputHandleCore;
use timely::dataflow::operators::Capability;

use crate::Time;

/// Stashed updates by time.
pub type Rounds<D> = BTreeMap<Time, Vec<D>>;

/// Pending updates, grouped by the time they take effect (which may lie ahead of the
/// message's capability: a purchase whose event time is ahead of the input time).
///
/// ## Correctness
/// The stash holds exactly one capability, at a time no later than its earliest pending update,
/// so it can always emit the result of a round; it downgrades that capability to the next
/// pending time after each round, so an update far ahead holds the output frontier only at its
/// own time, never earlier.
pub struct TimeStash<D> {
    pending: Rounds<D>,
    capability: Option<Capability<Time>>,
}

impl<D> Default for TimeStash<D> {
    fn default() -> Self {
        TimeStash {
            pending: BTreeMap::new(),
            capability: None,
        }
    }
}

impl<D> TimeStash<D> {
    /// Adds updates received under `capability` (whose time is at most each update's time).
    pub fn extend(
        &mut self,
        capability: Capability<Time>,
        updates: impl IntoIterator<Item = (D, Time)>,
    ) {
        // Updates of one batch mostly share a time: keep the last bucket at hand.
        let mut bucket: Option<(Time, &mut Vec<D>)> = None;
        let mut added = 0;
        for (data, time) in updates {
            match &mut bucket {
                Some((at, list)) if *at == time => list.push(data),
                _ => {
                    let list = self.pending.entry(time).or_default();
                    list.push(data);
                    bucket = Some((time, list));
                }
            }
            added += 1;
        }
        if added > 0 {
            self.hold(capability);
        }
    }

    /// Keeps `capability` if it is earlier than the one held (or none is), then holds it only
    /// at the earliest pending time: an update ahead of its message's time (a purchase whose
    /// event time is ahead of the input time) must not hold the output frontier at the
    /// message's time until some round completes — when it is the only one pending, no round
    /// completes before the frontier passes its own time, and a worker waiting for the
    /// frontier to pass its input time waited for ever (seen: a Kafka restart at the end of
    /// its topic, then one purchase).
    fn hold(&mut self, capability: Capability<Time>) {
        match &self.capability {
            Some(held) if held.time() <= capability.time() => {}
            _ => self.capability = Some(capability),
        }
        if let (Some(held), Some((&next, _))) =
            (self.capability.as_mut(), self.pending.first_key_value())
        {
            if *held.time() < next {
                held.downgrade(&next);
            }
        }
    }

    /// Stashes every message waiting on `input`: `at` turns each record and its message's time
    /// into the datum to stash and the time it takes effect.
    pub fn absorb<R, P>(
        &mut self,
        input: &mut InputHandleCore<Time, Vec<R>, P>,
        at: impl FnMut(R, Time) -> (D, Time),
    ) where
        P: Pull<Message<Time, Vec<R>>>,
    {
        // No time is open: nothing is applied, everything is stashed.
        self.absorb_applying(input, None, at, |_| {});
    }

    /// Like [`absorb`](Self::absorb), but hands the updates at `open`, the input frontier's
    /// least time, to `apply` instead of stashing them, and opens a round at `open` for them
    /// (which [`take_complete`](Self::take_complete) returns once the frontier passes `open`,
    /// with whatever else was stashed at that time).
    ///
    /// No update earlier than `open` can arrive any more, so an operator whose state takes
    /// updates in any order can add them at once; it must first have finished every round
    /// before `open` (`take_complete(Some(open))`), so that those see none of them. Spares a
    /// copy of every update when the input arrives at its frontier's time, as a backfill does.
    pub fn absorb_applying<R, P>(
        &mut self,
        input: &mut InputHandleCore<Time, Vec<R>, P>,
        open: Option<Time>,
        mut at: impl FnMut(R, Time) -> (D, Time),
        mut apply: impl FnMut(D),
    ) where
        P: Pull<Message<Time, Vec<R>>>,
    {
        input.for_each_stamp(|capability, batches| {
            if let Some(capability) = capability.retain_least(0) {
                let time = *capability.time();
                let mut applied = false;
                for batch in batches {
                    let later = batch
                        .drain(..)
                        .map(|r| at(r, time))
                        .filter_map(|(data, t)| {
                            if Some(t) == open {
                                apply(data);
                                applied = true;
                                None
                            } else {
                                Some((data, t))
                            }
                        });
                    self.extend(capability.clone(), later);
                }
                if let (true, Some(open)) = (applied, open) {
                    self.pending.entry(open).or_default();
                    self.hold(capability);
                }
            }
        });
    }

    /// Removes every update whose time the frontier has passed (`frontier` is the input
    /// frontier's least time, `None` once the input is closed): the stashed lists by time (no
    /// copy: a big round is consumed, and freed, list by list), with a capability at the time
    /// the round's result is to be emitted at, `f − 1` (the last complete time), or for a
    /// closed input the latest time taken; `None` when nothing was complete.
    pub fn take_complete(
        &mut self,
        frontier: Option<Time>,
    ) -> Option<(Capability<Time>, Rounds<D>)> {
        let complete = match frontier {
            Some(f) => {
                let later = self.pending.split_off(&f);
                std::mem::replace(&mut self.pending, later)
            }
            None => std::mem::take(&mut self.pending),
        };
        let latest = *complete.last_key_value()?.0;
        let held = self
            .capability
            .as_mut()
            .expect("pending updates hold a capability");
        let emit_at = frontier.map_or(latest, |f| f - 1).max(*held.time());
        let emit = held.delayed(&emit_at);
        match self.pending.first_key_value() {
            Some((&next, _)) => held.downgrade(&next),
            None => self.capability = None,
        }
        Some((emit, complete))
    }
}

/// The least time of a totally ordered frontier, or `None` if it is empty.
pub fn frontier_time(
    frontier: &timely::progress::frontier::MutableAntichain<Time>,
) -> Option<Time> {
    frontier.frontier().iter().next().copied()
}

#[cfg(test)]
mod tests {
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::ProbeHandle;

    use super::*;

    /// An update whose time lies ahead of its message's time holds the output frontier at its
    /// own time, not at the message's, even when no round completes in between (the only
    /// update pending): the frontier passes any earlier time the input passes.
    #[test]
    fn an_update_ahead_of_its_message_holds_the_frontier_only_at_its_own_time() {
        timely::execute_directly(|worker| {
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, stream) = scope.new_input::<(u64, Time)>();
                stream
                    .unary_frontier::<CapacityContainerBuilder<Vec<(u64, Time)>>, _, _, _>(
                        Pipeline,
                        "Stash",
                        |_capability, _info| {
                            let mut stash = TimeStash::default();
                            move |(input, frontier), output| {
                                stash.absorb(input, |update, _| update);
                                let frontier = frontier_time(frontier);
                                if let Some((emit, complete)) = stash.take_complete(frontier) {
                                    let mut session = output.session(&emit);
                                    for (time, updates) in complete {
                                        session.give_iterator(
                                            updates.into_iter().map(|data| (data, time)),
                                        );
                                    }
                                }
                            }
                        },
                    )
                    .probe_with(&probe);
                input
            });
            input.advance_to(1);
            input.send((7, 1_000)); // under the capability of time 1, taking effect at 1000
            input.advance_to(500);
            for _ in 0..1_000 {
                if !probe.less_than(&500) {
                    break;
                }
                worker.step();
            }
            assert!(
                !probe.less_than(&500),
                "the output frontier is held before 500 by an update at 1000"
            );
            assert!(
                probe.less_than(&1_000),
                "the update at 1000 still holds 1000"
            );
            input.advance_to(2_000);
            for _ in 0..1_000 {
                if !probe.less_than(&2_000) {
                    break;
                }
                worker.step();
            }
            assert!(!probe.less_than(&2_000), "emitted once complete");
        });
    }
}
