//! The purchases `decayed_local_topk` still counts, by the time each stops counting.
//!
//! Every purchase is retracted on its own at `ts + retention`; the retention is the same for
//! all, so the queue orders by `ts` alone. A live purchase is one 24-byte entry of a heap. A
//! seed (a backfill's or a restore's (leaf, item) pair, entered in bulk) keeps its purchases
//! as a run in time order, and only the run's next purchase sits in a heap: a year of
//! history is one heap entry per pair instead of one per purchase, and the purchases stay in
//! the few bytes each the seed brought them in (a [`PurchaseRun`]: no copy, no per-purchase
//! heap work), decoded as they expire.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::purchase_run::{Cursor, PurchaseRun};

/// One purchase to retract: compact (ids, not text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Expiry {
    /// The purchase's event time (ms).
    pub ts_ms: i64,
    /// Its quantity (negative for a return).
    pub quantity: i64,
    /// The item's dense id.
    pub item: u32,
    /// The leaf category's dense id.
    pub leaf: u32,
}

/// A seeded pair's purchases in time order, as a [`PurchaseRun`]'s bytes; those before
/// `next` are retracted.
#[derive(Debug)]
struct Run {
    item: u32,
    leaf: u32,
    next: Cursor,
    purchases: Box<[u8]>,
}

impl Run {
    /// The next purchase to retract, and the cursor past it.
    fn peek(&self) -> Option<((i64, i64), Cursor)> {
        self.next.next(&self.purchases)
    }
}

/// Pending retractions: single purchases and runs of seeded ones, merged by time.
#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    singles: BinaryHeap<Reverse<Expiry>>,
    /// Runs by index (a finished run's index is reused).
    runs: Vec<Run>,
    free_runs: Vec<u32>,
    /// `(ts_ms of the run's next purchase, run index)`.
    heads: BinaryHeap<Reverse<(i64, u32)>>,
    /// Heads of runs added since the last [`ExpiryQueue::seal`], heaped in bulk then.
    new_heads: Vec<Reverse<(i64, u32)>>,
}

impl ExpiryQueue {
    /// Queues one purchase.
    pub fn push(&mut self, expiry: Expiry) {
        self.singles.push(Reverse(expiry));
    }

    /// Queues a seed's purchases (in any order) of `item` in `leaf`; call
    /// [`ExpiryQueue::seal`] before asking the queue anything.
    pub fn push_run(&mut self, item: u32, leaf: u32, purchases: PurchaseRun) {
        // A pair's purchases mostly come in time order: then this costs nothing.
        let purchases = purchases.sorted();
        let Some((head, _)) = purchases.iter().next() else {
            return;
        };
        let run = Run {
            item,
            leaf,
            next: Cursor::default(),
            purchases: purchases.into_bytes(),
        };
        let index = match self.free_runs.pop() {
            Some(index) => {
                self.runs[index as usize] = run;
                index
            }
            None => {
                self.runs.push(run);
                (self.runs.len() - 1) as u32
            }
        };
        self.new_heads.push(Reverse((head, index)));
    }

    /// Makes room for `runs` more runs.
    pub fn reserve_runs(&mut self, runs: usize) {
        self.new_heads.reserve(runs);
        self.runs.reserve(runs.saturating_sub(self.free_runs.len()));
    }

    /// Heaps the runs added since the last call (in bulk: linear, not one by one).
    pub fn seal(&mut self) {
        if self.new_heads.is_empty() {
            return;
        }
        let mut heads = BinaryHeap::from(std::mem::take(&mut self.new_heads));
        self.heads.append(&mut heads);
    }

    /// The earliest pending purchase's time.
    pub fn next_ts(&self) -> Option<i64> {
        debug_assert!(self.new_heads.is_empty(), "seal() first");
        let single = self.singles.peek().map(|Reverse(e)| e.ts_ms);
        let run = self.heads.peek().map(|Reverse((ts_ms, _))| *ts_ms);
        earliest(single, run)
    }

    /// Removes every pending purchase whose time is `due` (a predicate monotone in time: true
    /// up to some time, false after), giving each to `retract`, earliest first.
    pub fn pop_due(&mut self, due: impl Fn(i64) -> bool, mut retract: impl FnMut(Expiry)) {
        debug_assert!(self.new_heads.is_empty(), "seal() first");
        loop {
            let single = self.singles.peek().map(|Reverse(e)| e.ts_ms);
            let run = self.heads.peek().map(|Reverse((ts_ms, _))| *ts_ms);
            match (single, run) {
                (Some(s), r) if r.is_none_or(|r| s <= r) => {
                    if !due(s) {
                        return;
                    }
                    let Reverse(expiry) = self.singles.pop().expect("peeked");
                    retract(expiry);
                }
                (_, Some(r)) => {
                    if !due(r) {
                        return;
                    }
                    let Reverse((_, index)) = self.heads.pop().expect("peeked");
                    // The run's purchases up to the next other one, without heap work.
                    let other = self.heads.peek().map(|Reverse((ts_ms, _))| *ts_ms);
                    let until = earliest(single, other);
                    let run = &mut self.runs[index as usize];
                    while let Some(((ts_ms, quantity), after)) = run.peek() {
                        if !due(ts_ms) || until.is_some_and(|s| ts_ms > s) {
                            break;
                        }
                        run.next = after;
                        retract(Expiry {
                            ts_ms,
                            quantity,
                            item: run.item,
                            leaf: run.leaf,
                        });
                    }
                    match run.peek() {
                        Some(((ts_ms, _), _)) => self.heads.push(Reverse((ts_ms, index))),
                        None => {
                            run.purchases = Box::default();
                            self.free_runs.push(index);
                        }
                    }
                }
                (None, None) => return,
                (Some(_), None) => unreachable!("matched by the first arm"),
            }
        }
    }

    /// Whether nothing is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.singles.is_empty() && self.heads.is_empty() && self.new_heads.is_empty()
    }
}

/// The earlier of two times, either maybe absent.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random singles and runs, popped at random rising limits, against a sorted list of all.
    #[test]
    fn pops_everything_due_in_time_order_once() {
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut queue = ExpiryQueue::default();
            let mut all: Vec<Expiry> = Vec::new();
            let mut popped: Vec<Expiry> = Vec::new();
            let mut limit = 0i64;
            for _round in 0..rng.random_range(1..8) {
                for _ in 0..rng.random_range(0..20) {
                    let item = rng.random_range(0..5u32);
                    let leaf = rng.random_range(0..3u32);
                    if rng.random_bool(0.5) {
                        let e = Expiry {
                            ts_ms: limit + rng.random_range(0..100),
                            quantity: rng.random_range(-3..4),
                            item,
                            leaf,
                        };
                        all.push(e);
                        queue.push(e);
                    } else {
                        let run: Vec<(i64, i64)> = (0..rng.random_range(0..6))
                            .map(|_| (limit + rng.random_range(0..100), rng.random_range(-3..4)))
                            .collect();
                        all.extend(run.iter().map(|&(ts_ms, quantity)| Expiry {
                            ts_ms,
                            quantity,
                            item,
                            leaf,
                        }));
                        queue.push_run(item, leaf, PurchaseRun::new(&run));
                    }
                }
                queue.seal();
                limit += rng.random_range(0..60);
                let before = popped.len();
                queue.pop_due(|ts| ts < limit, |e| popped.push(e));
                // In time order, and everything left is not due.
                assert!(popped[before..]
                    .windows(2)
                    .all(|w| w[0].ts_ms <= w[1].ts_ms));
                assert!(queue.next_ts().is_none_or(|ts| ts >= limit), "seed {seed}");
            }
            queue.pop_due(|_| true, |e| popped.push(e));
            assert!(queue.is_empty());
            all.sort();
            popped.sort();
            assert_eq!(all, popped, "seed {seed}: each purchase exactly once");
        }
    }
}
