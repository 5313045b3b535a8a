//! Offsets waiting for their purchases to be published: committed only once they are served.
//!
//! A purchase entered into the dataflow at input time `t` is in every snapshot of time `≥ t`.
//! For each partition the reader notes, message by message, the offset and the input time
//! (bad and ignored messages carry none); a round is sealed into a queue entry holding the
//! *running maximum* of input times up to its last offset, so the queue is sorted by time and
//! an offset is released only when everything before it is published too.

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
    /// Sealed rounds, oldest first, running max ascending.
    sealed: VecDeque<(i64, i64)>,
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
                    Some(last) if last.0 == time => last.1 = next,
                    _ => pending.sealed.push_back((time, next)),
                }
            }
        }
    }

    /// Releases every sealed round whose running maximum is at or before `published` (the
    /// time of the last snapshot handed to the serving side).
    pub fn release(&mut self, published: i64) {
        for pending in self.partitions.values_mut() {
            while let Some(&(time, next)) = pending.sealed.front() {
                if time > published {
                    break;
                }
                pending.released = Some(next);
                pending.sealed.pop_front();
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
        o.release(99);
        assert_eq!(o.take_released(), vec![(1, 6)]);
        o.release(200);
        assert_eq!(o.take_released(), vec![(1, 7)]);
        o.release(300);
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
        o.release(6);
        assert_eq!(o.take_released(), vec![]);
        o.release(7);
        assert_eq!(o.take_released(), vec![(3, 5)]);
    }

    #[test]
    fn only_bad_messages_release_at_once() {
        let mut o = PendingOffsets::new();
        o.note(2, 0, None);
        o.note(2, 1, None);
        o.seal();
        o.release(i64::MIN);
        assert_eq!(o.take_released(), vec![(2, 2)]);
    }
}
