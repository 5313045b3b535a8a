//! Per-partition watermarks with an idle timeout: how far a worker's input time may advance.
//!
//! Each owned partition's watermark is the largest event time seen on it minus the allowed
//! lateness. The worker's watermark is the smallest over its *active* partitions; a partition
//! with no new purchase for the idle timeout stops counting. When every owned partition is
//! idle (or the worker owns none), the watermark is the largest event time seen at all (by
//! this worker, or by any worker of the cluster: the caller passes that in), so the last
//! purchases of a quiet hour are served. The clock is a parameter: the tracker is pure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a worker may advance its input time to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watermark {
    /// Nothing known yet (an active partition has seen nothing): hold.
    Hold,
    /// Every purchase with event time ≤ this has been read, save late ones (active partitions).
    Active(i64),
    /// Every owned partition is idle: the largest event time seen anywhere.
    Idle(i64),
    /// Every owned partition is idle and nothing was seen anywhere: a quiet topic, caught up.
    Quiet,
}

impl Watermark {
    /// The time, if any.
    pub fn time(self) -> Option<i64> {
        match self {
            Watermark::Hold | Watermark::Quiet => None,
            Watermark::Active(t) | Watermark::Idle(t) => Some(t),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    max_ts: Option<i64>,
    last_seen: Instant,
}

/// Tracks the watermark of the partitions one worker owns.
#[derive(Clone, Debug)]
pub struct WatermarkTracker {
    lateness_ms: i64,
    idle_timeout: Duration,
    marks: BTreeMap<i32, Mark>,
}

impl WatermarkTracker {
    /// A tracker for `partitions`, all considered active from `now` (a partition that stays
    /// empty turns idle after the timeout).
    pub fn new(partitions: &[i32], lateness_ms: i64, idle_timeout: Duration, now: Instant) -> Self {
        let marks = partitions
            .iter()
            .map(|&p| {
                (
                    p,
                    Mark {
                        max_ts: None,
                        last_seen: now,
                    },
                )
            })
            .collect();
        WatermarkTracker {
            lateness_ms: lateness_ms.max(0),
            idle_timeout,
            marks,
        }
    }

    /// A purchase with event time `ts_ms` was read from `partition` at `now`.
    pub fn observe(&mut self, partition: i32, ts_ms: i64, now: Instant) {
        let mark = self.marks.entry(partition).or_insert(Mark {
            max_ts: None,
            last_seen: now,
        });
        mark.max_ts = Some(mark.max_ts.map_or(ts_ms, |m| m.max(ts_ms)));
        mark.last_seen = mark.last_seen.max(now);
    }

    /// The largest event time seen on any owned partition.
    pub fn max_seen(&self) -> Option<i64> {
        self.marks.values().filter_map(|m| m.max_ts).max()
    }

    /// The largest event time seen on `partition`.
    pub fn partition_max(&self, partition: i32) -> Option<i64> {
        self.marks.get(&partition).and_then(|m| m.max_ts)
    }

    /// Whether `partition` has had no new purchase for the idle timeout at `now`.
    pub fn is_idle(&self, partition: i32, now: Instant) -> bool {
        self.marks
            .get(&partition)
            .is_none_or(|m| now.saturating_duration_since(m.last_seen) >= self.idle_timeout)
    }

    /// The watermark at `now`; `elsewhere` is the largest event time other workers have seen
    /// (used only when every owned partition is idle).
    pub fn watermark(&self, now: Instant, elsewhere: Option<i64>) -> Watermark {
        let mut lowest: Option<i64> = None;
        let mut any_active = false;
        for (&partition, mark) in &self.marks {
            if self.is_idle(partition, now) {
                continue;
            }
            any_active = true;
            match mark.max_ts {
                None => return Watermark::Hold,
                Some(max) => {
                    let w = max.saturating_sub(self.lateness_ms);
                    lowest = Some(lowest.map_or(w, |l| l.min(w)));
                }
            }
        }
        if any_active {
            return lowest.map_or(Watermark::Hold, Watermark::Active);
        }
        match self.max_seen().max(elsewhere) {
            Some(max) => Watermark::Idle(max),
            // Owning no partition, a worker has nothing of its own to say.
            None if self.marks.is_empty() => Watermark::Hold,
            None => Watermark::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn minimum_over_active_partitions_minus_lateness() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(&[0, 1], 10, 2 * S, t0);
        assert_eq!(w.watermark(t0, None), Watermark::Hold);
        w.observe(0, 1000, t0);
        // Partition 1 has seen nothing and is not idle yet: hold.
        assert_eq!(w.watermark(t0, Some(5000)), Watermark::Hold);
        w.observe(1, 500, t0);
        assert_eq!(w.watermark(t0, None), Watermark::Active(490));
        w.observe(1, 400, t0); // out of order: the maximum stays
        assert_eq!(w.watermark(t0, None), Watermark::Active(490));
        w.observe(1, 2000, t0);
        assert_eq!(w.watermark(t0, None), Watermark::Active(990));
        assert_eq!(w.max_seen(), Some(2000));
        assert_eq!(w.partition_max(1), Some(2000));
    }

    #[test]
    fn idle_partitions_stop_counting() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(&[0, 1, 2], 0, 2 * S, t0);
        w.observe(0, 100, t0);
        w.observe(1, 900, t0 + S);
        // Partition 2 never sends: after the timeout it no longer holds anything back.
        assert_eq!(w.watermark(t0 + S, None), Watermark::Hold);
        assert_eq!(w.watermark(t0 + 2 * S, None), Watermark::Active(900));
        assert!(w.is_idle(0, t0 + 2 * S) && w.is_idle(2, t0 + 2 * S));
        assert!(!w.is_idle(1, t0 + 2 * S));
        // Everyone idle: the largest event time seen, here or elsewhere.
        assert_eq!(w.watermark(t0 + 3 * S, None), Watermark::Idle(900));
        assert_eq!(w.watermark(t0 + 3 * S, Some(1200)), Watermark::Idle(1200));
        assert_eq!(w.watermark(t0 + 3 * S, Some(10)), Watermark::Idle(900));
        // A purchase wakes its partition up.
        w.observe(0, 150, t0 + 3 * S);
        assert_eq!(w.watermark(t0 + 3 * S, Some(1200)), Watermark::Active(150));
    }

    #[test]
    fn idle_partitions_that_never_saw_anything_are_quiet() {
        let t0 = Instant::now();
        let w = WatermarkTracker::new(&[0, 1], 0, 2 * S, t0);
        assert_eq!(w.watermark(t0 + S, None), Watermark::Hold);
        assert_eq!(w.watermark(t0 + 2 * S, None), Watermark::Quiet);
        assert_eq!(w.watermark(t0 + 2 * S, Some(5)), Watermark::Idle(5));
        assert_eq!(Watermark::Quiet.time(), None);
    }

    #[test]
    fn no_partitions_follow_the_others() {
        let t0 = Instant::now();
        let w = WatermarkTracker::new(&[], 50, 2 * S, t0);
        assert_eq!(w.watermark(t0, None), Watermark::Hold);
        assert_eq!(w.watermark(t0, Some(7)), Watermark::Idle(7));
        assert_eq!(Watermark::Idle(7).time(), Some(7));
        assert_eq!(Watermark::Hold.time(), None);
    }
}
