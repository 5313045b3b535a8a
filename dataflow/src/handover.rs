//! The hand-over from the history (backfill) to a live Kafka source at a cut-off time T0.
//!
//! The history owns the purchases with `ts < T0`, Kafka those with `ts >= T0`: the backfill
//! skips (counts) history purchases at or after T0, the Kafka reader skips (counts) messages
//! before T0, whatever offsets its partitions start from. Every purchase that is in the
//! history or on the topic (or both) is thus counted exactly once, as long as the topic still
//! holds everything from T0 on.

/// The cut-off between the history and Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handover {
    /// T0 in epoch ms: the first event time Kafka owns.
    pub t0_ms: i64,
}

impl Handover {
    /// T0 from the configured time (`--handover`, `handover` of the Kafka source), else the
    /// history's largest event time; `None` without either (no history: Kafka owns all).
    pub fn resolve(configured_ms: Option<i64>, history_max_ms: Option<i64>) -> Option<Handover> {
        configured_ms
            .or(history_max_ms)
            .map(|t0_ms| Handover { t0_ms })
    }

    /// Whether a purchase of the history at `ts_ms` is replayed by the backfill.
    pub fn history_owns(self, ts_ms: i64) -> bool {
        ts_ms < self.t0_ms
    }

    /// Whether a purchase read from Kafka at `ts_ms` enters the dataflow.
    pub fn kafka_owns(self, ts_ms: i64) -> bool {
        !self.history_owns(ts_ms)
    }

    /// The backfill's cut-off (inclusive): T0 − 1. Its snapshot is published at this time, and
    /// live input starts at T0.
    pub fn backfill_until_ms(self) -> i64 {
        self.t0_ms.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t0_is_configured_else_the_history_max() {
        assert_eq!(
            Handover::resolve(Some(5), Some(9)),
            Some(Handover { t0_ms: 5 })
        );
        assert_eq!(
            Handover::resolve(Some(12), Some(9)),
            Some(Handover { t0_ms: 12 })
        );
        assert_eq!(
            Handover::resolve(None, Some(9)),
            Some(Handover { t0_ms: 9 })
        );
        assert_eq!(
            Handover::resolve(Some(3), None),
            Some(Handover { t0_ms: 3 })
        );
        assert_eq!(Handover::resolve(None, None), None);
    }

    #[test]
    fn every_time_has_exactly_one_owner() {
        let handover = Handover { t0_ms: 1_000 };
        assert_eq!(handover.backfill_until_ms(), 999);
        for ts in [i64::MIN, -1, 0, 998, 999, 1_000, 1_001, i64::MAX] {
            assert_ne!(
                handover.history_owns(ts),
                handover.kafka_owns(ts),
                "ts {ts}"
            );
            // The backfill's inclusive cut-off agrees with the rule.
            assert_eq!(
                handover.history_owns(ts),
                ts <= handover.backfill_until_ms()
            );
        }
        assert!(handover.history_owns(999) && handover.kafka_owns(1_000));
    }
}
