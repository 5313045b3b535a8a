//! What the Kafka readers of one process share: progress for `/readyz`, the largest event time
//! seen, and the counters and gauges `/metrics` reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Per-partition gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionGauges {
    /// Messages between the consumer's position and the partition's end, as the broker last
    /// reported it (librdkafka statistics); `None` until reported.
    pub lag: Option<i64>,
    /// The largest event time read from the partition, epoch ms.
    pub max_event_ms: Option<i64>,
    /// The offset last committed to the group (the next to read), if any this run.
    pub committed: Option<i64>,
}

/// Shared by every worker's reader in this process (`Arc<KafkaShared>`).
#[derive(Debug)]
pub struct KafkaShared {
    /// The topic read.
    pub topic: String,
    max_event_ms: AtomicI64,
    max_entered_ms: AtomicI64,
    /// Workers that have their partition assignment (connected).
    pub connected: AtomicUsize,
    /// Workers, of every process of the cluster, that have read everything that was there
    /// when they started, or found it idle (caught up), as last heard by this process.
    pub caught_up: AtomicUsize,
    /// Workers of every process of the cluster (0 until a worker has connected).
    pub peers: AtomicUsize,
    /// The largest input time a worker (of any process) had when it caught up: readiness
    /// waits for a snapshot at least this recent.
    pub caught_up_at_ms: AtomicI64,
    /// Messages read (valid, ignored and bad).
    pub messages: AtomicU64,
    /// Bad messages.
    pub bad_messages: AtomicU64,
    /// Offset commits that succeeded.
    pub commits: AtomicU64,
    /// Offset commits that failed.
    pub commit_failures: AtomicU64,
    partitions: Mutex<BTreeMap<i32, PartitionGauges>>,
    /// Partitions whose hand-over may have lost purchases (see `StartAt::Handover`).
    gaps: Mutex<Vec<i32>>,
}

impl KafkaShared {
    /// Nothing read yet from `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        KafkaShared {
            topic: topic.into(),
            max_event_ms: AtomicI64::new(i64::MIN),
            max_entered_ms: AtomicI64::new(i64::MIN),
            connected: AtomicUsize::new(0),
            caught_up: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
            caught_up_at_ms: AtomicI64::new(i64::MIN),
            messages: AtomicU64::new(0),
            bad_messages: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            partitions: Mutex::new(BTreeMap::new()),
            gaps: Mutex::new(Vec::new()),
        }
    }

    /// The largest event time any reader of this process has seen.
    pub fn max_event_ms(&self) -> Option<i64> {
        Some(self.max_event_ms.load(Ordering::SeqCst)).filter(|&t| t != i64::MIN)
    }

    /// The latest input time any worker of this process entered a purchase at (a late
    /// purchase enters at the then current time, after its event time).
    pub fn max_entered_ms(&self) -> Option<i64> {
        Some(self.max_entered_ms.load(Ordering::SeqCst)).filter(|&t| t != i64::MIN)
    }

    /// A worker entered purchases up to input time `time_ms`.
    pub fn entered(&self, time_ms: i64) {
        self.max_entered_ms.fetch_max(time_ms, Ordering::SeqCst);
    }

    /// Raises the largest event time seen to `ts_ms` (and that of `partition`).
    pub fn saw_event(&self, partition: i32, ts_ms: i64) {
        self.max_event_ms.fetch_max(ts_ms, Ordering::SeqCst);
        let mut partitions = self.partitions.lock();
        let gauges = partitions.entry(partition).or_default();
        gauges.max_event_ms = Some(gauges.max_event_ms.map_or(ts_ms, |m| m.max(ts_ms)));
    }

    /// Records a commit of `next` for `partition`.
    pub fn set_committed(&self, partition: i32, next: i64) {
        self.partitions
            .lock()
            .entry(partition)
            .or_default()
            .committed = Some(next);
    }

    /// Records the lag the broker reported for `partition`.
    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.partitions.lock().entry(partition).or_default().lag = Some(lag);
    }

    /// Makes `partition` known (so that it shows in `/metrics` before anything is read).
    pub fn own(&self, partition: i32) {
        self.partitions.lock().entry(partition).or_default();
    }

    /// Every known partition's gauges.
    pub fn partitions(&self) -> BTreeMap<i32, PartitionGauges> {
        self.partitions.lock().clone()
    }

    /// Notes that `partition` started past the hand-over's T0 (purchases may be missing).
    pub fn handover_gap(&self, partition: i32) {
        let mut gaps = self.gaps.lock();
        if !gaps.contains(&partition) {
            gaps.push(partition);
            gaps.sort_unstable();
        }
    }

    /// The partitions whose hand-over may have lost purchases.
    pub fn handover_gaps(&self) -> Vec<i32> {
        self.gaps.lock().clone()
    }

    /// A worker of this process heard that `workers` workers of the cluster have caught up,
    /// the latest at input time `time_ms` (what is heard only grows).
    pub fn heard_caught_up(&self, workers: usize, time_ms: Option<i64>) {
        if let Some(time_ms) = time_ms {
            self.caught_up_at_ms.fetch_max(time_ms, Ordering::SeqCst);
        }
        self.caught_up.fetch_max(workers, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges() {
        let s = KafkaShared::new("t");
        assert_eq!(s.max_event_ms(), None);
        s.own(2);
        s.saw_event(0, 50);
        s.saw_event(0, 40);
        s.saw_event(1, 70);
        s.set_lag(0, 12);
        assert_eq!(s.max_event_ms(), Some(70));
        assert_eq!(s.max_entered_ms(), None);
        s.entered(90);
        s.entered(80);
        assert_eq!(s.max_entered_ms(), Some(90));
        let p = s.partitions();
        assert_eq!(
            p[&0],
            PartitionGauges {
                lag: Some(12),
                max_event_ms: Some(50),
                committed: None,
            }
        );
        assert_eq!(p[&2], PartitionGauges::default());
        s.heard_caught_up(1, Some(10));
        s.heard_caught_up(2, Some(5));
        s.heard_caught_up(1, None);
        assert_eq!(s.caught_up.load(Ordering::SeqCst), 2);
        assert_eq!(s.caught_up_at_ms.load(Ordering::SeqCst), 10);
    }
}
