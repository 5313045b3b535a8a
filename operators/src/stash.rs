//! Updates held by their data time until the input frontier passes it, under one capability.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use timely::dataflow::operators::Capability;

use crate::Time;

/// An update and the logical time at which it takes effect.
struct Timed<D> {
    time: Time,
    data: D,
}

impl<D> PartialEq for Timed<D> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time
    }
}
impl<D> Eq for Timed<D> {}
impl<D> PartialOrd for Timed<D> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<D> Ord for Timed<D> {
    // Reversed: the heap pops the earliest time first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.time.cmp(&self.time)
    }
}

/// Pending updates, keyed by the time they take effect (which may lie far ahead of the
/// message's capability: retention retractions sit here until their time comes).
///
/// ## Correctness
/// The stash holds exactly one capability, at a time no later than its earliest pending update,
/// so it can always emit the result of a round; it downgrades that capability to the next
/// pending time after each round, so a far-future retraction holds the output frontier only at
/// its own time, never earlier.
pub struct TimeStash<D> {
    pending: BinaryHeap<Timed<D>>,
    capability: Option<Capability<Time>>,
}

impl<D> Default for TimeStash<D> {
    fn default() -> Self {
        TimeStash {
            pending: BinaryHeap::new(),
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
        let before = self.pending.len();
        self.pending
            .extend(updates.into_iter().map(|(data, time)| Timed { time, data }));
        if self.pending.len() == before {
            return;
        }
        match &self.capability {
            Some(held) if held.time() <= capability.time() => {}
            _ => self.capability = Some(capability),
        }
    }

    /// Number of pending updates.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
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
        let mut latest = None;
        while let Some(next) = self.pending.peek() {
            if frontier.is_some_and(|f| next.time >= f) {
                break;
            }
            let Timed { time, data } = self.pending.pop().expect("peeked");
            latest = Some(time);
            out.push((data, time));
        }
        let latest = latest?;
        let held = self
            .capability
            .as_mut()
            .expect("pending updates hold a capability");
        let emit_at = frontier.map_or(latest, |f| f - 1).max(*held.time());
        let emit = held.delayed(&emit_at);
        match self.pending.peek() {
            Some(next) => held.downgrade(&next.time),
            None => self.capability = None,
        }
        Some(emit)
    }
}

/// The least time of a totally ordered frontier, or `None` if it is empty.
pub fn frontier_time(
    frontier: &timely::progress::frontier::MutableAntichain<Time>,
) -> Option<Time> {
    frontier.frontier().iter().next().copied()
}
