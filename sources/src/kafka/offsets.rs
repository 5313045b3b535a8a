//! Offsets waiting for their purchases to be published: committed only once they are served.
//!
//! For each partition the reader notes, message by message, the offset and the input time
//! (bad and ignored messages carry none); a round is sealed into a queue entry holding the
//! *running maximum* of input times up to its last offset, so the queue is sorted by time and
//! an offset is released only when everything before it is published too.
//!
//! A purchase entered at input time `t` is *not* always in the snapshot of time `t`: each of
//! the operators between the input and the lists stamps a round's changes at its last complete
//! time (`f − 1` for its input frontier `f`, see `operators/src/stash.rs`), which can be later
//! than `t`. So the rule takes hops. Once a snapshot `≥ t` is served, the first operator has
//! processed the purchase (its capability at `≤ t` would otherwise hold the snapshot back) and
//! stamped it at most at the input time then, minus one (no operator's frontier is ahead of
//! the input's); the entry is re-keyed to that bound. Once a snapshot reaches it, the next
//! operator has processed it, and so on: after [`HOPS`] re-keys (one per stamping operator)
//! a served snapshot holds the purchase's last change.

/// Re-keys an entry takes before it is released: one per operator between the input and the
/// served lists that stamps later than its input (`decayed_local_topk`, `merge_topk`).
pub const HOPS: u8 = 2;

use std::collections::{BTreeMap, VecDeque};

/// Per-partition commit bookkeeping for one worker.
#[derive(Clone, Debug, Default)]
pub struct PendingOffsets {
    partitions: BTreeMap<i32, Pending>,
}

#[derive(Clone, Debug)]
struct Pending {
    /// Largest input time of any message noted so far.
    running_max: i64,
    /// The open round: (running max, next offset to read).
    open: Option<(i64, i64)>,
    /// Sealed rounds, oldest first, time ascending: (time, next offset, hops left).
    sealed: VecDeque<(i64, i64, u8)>,
    /// The next offset whose messages before it are all published, not yet taken.
    released: Option<i64>,
}

impl PendingOffsets {
    /// Nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// The message at `offset` of `partition` was handled; `input_time` is the time its
    /// purchase entered the dataflow at (`None`: nothing entered, e.g. a bad message).
    pub fn note(&mut self, partition: i32, offset: i64, input_time: Option<i64>) {
        let pending = self.partitions.entry(partition).or_insert(Pending {
            running_max: i64::MIN,
            open: None,
            sealed: VecDeque::new(),
            released: None,
        });
        if let Some(t) = input_time {
            pending.running_max = pending.running_max.max(t);
        }
        pending.open = Some((pending.running_max, offset + 1));
    }

    /// Closes the current round of every partition (call once per round: fewer, larger
    /// entries than one per message).
    pub fn seal(&mut self) {
        for pending in self.partitions.values_mut() {
            if let Some((time, next)) = pending.open.take() {
                match pending.sealed.back_mut() {
                    Some(last) if last.0 == time && last.2 == HOPS => last.1 = next,
                    _ => pending.sealed.push_back((time, next, HOPS)),
                }
            }
        }
    }

    /// Moves the sealed rounds on as far as `published` (the time of the last snapshot served)
    /// allows: a round at or before it is released if it has no hops left, else re-keyed to
    /// `input_now − 1` (`input_now`: this worker's input time now, which no operator's stamp
    /// so far exceeds). See the module's documentation.
    pub fn release(&mut self, published: i64, input_now: i64) {
        for pending in self.partitions.values_mut() {
            while let Some(&(time, next, hops)) = pending.sealed.front() {
                if time > published {
                    break;
                }
                if hops == 0 {
                    pending.released = Some(next);
                    pending.sealed.pop_front();
                    continue;
                }
                // Re-key every round now due (their order stays: the key only grows).
                let bound = input_now.saturating_sub(1).max(time);
                for round in pending.sealed.iter_mut() {
                    if round.0 > published {
                        break;
                    }
                    *round = (bound, round.1, round.2 - u8::from(round.2 > 0));
                }
                if bound > published {
                    break;
                }
            }
        }
    }

    /// The released offsets not taken yet, as (partition, next offset to read): what to commit.
    pub fn take_released(&mut self) -> Vec<(i32, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|(&p, pending)| pending.released.take().map(|next| (p, next)))
            .collect()
    }

    /// Rounds still waiting for a snapshot, over all partitions.
    pub fn waiting(&self) -> usize {
        self.partitions.values().map(|p| p.sealed.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_in_order_once_published() {
        let mut o = PendingOffsets::new();
        o.note(0, 10, Some(100));
        o.note(0, 11, Some(300)); // far ahead: holds 11.. until 300 is published
        o.note(1, 5, None); // bad message: nothing to wait for
        o.seal();
        o.note(0, 12, Some(150)); // late: running max stays 300
        o.note(1, 6, Some(120));
        o.seal();
        // With the input no further on, the hops cost nothing.
        o.release(99, 99);
        assert_eq!(o.take_released(), vec![(1, 6)]);
        o.release(200, 200);
        assert_eq!(o.take_released(), vec![(1, 7)]);
        o.release(300, 300);
        assert_eq!(o.take_released(), vec![(0, 13)]);
        assert_eq!(o.waiting(), 0);
        assert_eq!(o.take_released(), vec![]);
    }

    #[test]
    fn rounds_with_the_same_time_merge() {
        let mut o = PendingOffsets::new();
        for offset in 0..5 {
            o.note(3, offset, Some(7));
            o.seal();
        }
        assert_eq!(o.waiting(), 1);
        o.release(6, 7);
        assert_eq!(o.take_released(), vec![]);
        o.release(7, 8);
        assert_eq!(o.take_released(), vec![(3, 5)]);
    }

    #[test]
    fn only_bad_messages_release_at_once() {
        let mut o = PendingOffsets::new();
        o.note(2, 0, None);
        o.note(2, 1, None);
        o.seal();
        o.release(i64::MIN, i64::MIN);
        assert_eq!(o.take_released(), vec![(2, 2)]);
    }

    /// The operators may stamp a purchase entered at `t` as late as the input time when they
    /// process it: a snapshot at `t` is not enough, one per hop at the input time then is.
    #[test]
    fn a_round_waits_one_snapshot_per_stamping_operator() {
        let mut o = PendingOffsets::new();
        o.note(0, 0, Some(10));
        o.seal();
        // Served 10 while the input is at 15: the first operator stamped it at most at 14.
        o.release(10, 15);
        assert_eq!(o.take_released(), vec![]);
        // Served 14 while the input is at 20: the second operator stamped it at most at 19.
        o.release(14, 20);
        assert_eq!(o.take_released(), vec![]);
        o.release(18, 25);
        assert_eq!(o.take_released(), vec![]);
        o.release(19, 30);
        assert_eq!(o.take_released(), vec![(0, 1)]);
        // A later round never overtakes an earlier one.
        o.note(0, 1, Some(40));
        o.seal();
        o.note(0, 2, Some(50));
        o.seal();
        o.release(45, 60); // the first re-keyed to 59; the second not due yet
        o.release(59, 70); // the first to 69 (last hop), the second to 69 (one left)
        assert_eq!(o.take_released(), vec![]);
        o.release(69, 80); // the first released; the second to 79
        assert_eq!(o.take_released(), vec![(0, 2)]);
        o.release(79, 90);
        assert_eq!(o.take_released(), vec![(0, 3)]);
        // With the input no further on than what is served, every hop is taken at once.
        o.note(0, 3, Some(95));
        o.seal();
        o.release(95, 96);
        assert_eq!(o.take_released(), vec![(0, 4)]);
        assert_eq!(o.waiting(), 0);
    }
}
