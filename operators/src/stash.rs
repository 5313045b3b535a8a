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

    /// Keeps `capability` if it is earlier than the one held (or none is).
    fn hold(&mut self, capability: Capability<Time>) {
        match &self.capability {
            Some(held) if held.time() <= capability.time() => {}
            _ => self.capability = Some(capability),
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
    /// frontier's least time, `None` once the input is closed), appending it to `out` with its
    /// time. Returns a capability at the time the round's result is to be emitted at, `f − 1`
    /// (the last complete time), or for a closed input the latest time drained; `None` when
    /// nothing was complete.
    pub fn drain_complete(
        &mut self,
        frontier: Option<Time>,
        out: &mut Vec<(D, Time)>,
    ) -> Option<Capability<Time>> {
        let (emit, complete) = self.take_complete(frontier)?;
        for (time, updates) in complete {
            out.extend(updates.into_iter().map(|data| (data, time)));
        }
        Some(emit)
    }

    /// What [`drain_complete`](Self::drain_complete) drains, as the stashed lists by time
    /// (no copy: a big round is consumed, and freed, list by list).
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
