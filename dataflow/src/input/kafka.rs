//! Live input from Kafka: each worker reads its partitions, advances its input time to their
//! watermark, and commits offsets once their purchases are served.
//!
//! ## Correctness
//! A purchase enters at `max(ts, input time)` and keeps its own `ts` for its weight, so no
//! advance of the input time can lose or double-count one; the watermark only decides how
//! complete a snapshot of time `T` is. Workers advance independently; the dataflow's frontier
//! is the minimum over all workers (of every process), so a snapshot waits for the slowest
//! partition that is not idle. A worker whose partitions are all idle (or that owns none)
//! follows the largest event time seen (or input time entered: a late purchase enters at the
//! current time) by any worker of the cluster, as the workers report it to each other through
//! the dataflow ([`gossip`](crate::gossip)); so once every partition is idle, every worker of
//! every process reaches the last purchase's time, and a snapshot of it is published
//! everywhere. A process is ready once every worker of the cluster has caught up and that
//! snapshot is served.
//! An offset is committed only once the snapshot covering its purchase is served (applied to
//! the serving table: [`Context::served`](crate::context::Context::served); see
//! [`PendingOffsets`](topsellers_sources::kafka::PendingOffsets)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::worker::Worker;
use topsellers_model::purchase::Event;
use topsellers_model::wall_clock_ms;
use topsellers_operators::Time;
use topsellers_sinks::{MetricKind, Metrics};
use topsellers_sources::kafka::{
    DeadLetterTopic, KafkaConfig, KafkaShared, PartitionGauges, PartitionReader, ReaderSpec, Round,
    StartAt, Watermark,
};

use super::{align, Follow, Logger};
use crate::context::Context;
use crate::error::RunError;
use crate::gossip::{Gossip, Report, View};
use crate::graph::Graph;
use crate::handover::Handover;

/// Reads one counter of [`KafkaShared`].
type ReadCounter = fn(&KafkaShared) -> u64;
/// One partition's value of a per-partition gauge, given the wall clock in ms.
type ReadPartition = fn(&PartitionGauges, i64) -> Option<f64>;

/// The Kafka source of one process: its config and what its workers share.
#[derive(Clone, Debug)]
pub struct KafkaInput {
    /// Brokers, topic, group, …
    pub config: KafkaConfig,
    /// Progress and counters of this process's readers.
    pub shared: Arc<KafkaShared>,
    /// Where bad messages go besides the dead-letter file, if configured.
    pub dead_letters: Option<Arc<DeadLetterTopic>>,
    /// The hand-over from the history, if any: messages before its T0 are skipped.
    pub handover: Option<Handover>,
    /// Where the partitions start.
    pub start: StartAt,
    /// Messages skipped because the history owns their time (before T0).
    pub handover_skipped: Arc<AtomicU64>,
}

impl KafkaInput {
    /// Opens the dead-letter topic's producer, if any (no broker contact: connecting happens,
    /// with retries, in the workers). `handover`: the cut-off from a backfill, if any; then
    /// every partition starts early enough to see each purchase from T0 on (its earliest
    /// offset, not the group's commit, which may lie past T0).
    pub fn new(
        config: &KafkaConfig,
        handover: Option<Handover>,
    ) -> Result<KafkaInput, topsellers_sources::kafka::KafkaSourceError> {
        let shared = Arc::new(KafkaShared::new(config.topic.clone()));
        let dead_letters = DeadLetterTopic::open(config)?.map(Arc::new);
        let start = match handover {
            Some(handover) => StartAt::Handover {
                t0_ms: handover.t0_ms,
            },
            None => StartAt::Configured,
        };
        Ok(KafkaInput {
            config: config.clone(),
            shared,
            dead_letters,
            handover,
            start,
            handover_skipped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// What `/readyz` adds once ready: partitions whose hand-over may have lost purchases.
    pub fn ready_note(&self) -> Option<String> {
        let gaps = self.shared.handover_gaps();
        (!gaps.is_empty()).then(|| {
            format!(
                "kafka: partitions {gaps:?} of {} start past the hand-over time (older messages \
                 were deleted): purchases may be missing",
                self.config.topic
            )
        })
    }

    /// Why `/readyz` is not ready yet (`None`: connected, every worker of the cluster caught
    /// up, and the snapshot of the catch-up time published). `workers`: this process's worker
    /// threads.
    pub fn not_ready(&self, workers: usize, published: Option<i64>) -> Option<String> {
        let s = &self.shared;
        let connected = s.connected.load(Ordering::SeqCst);
        if connected < workers {
            return Some(format!(
                "kafka: connecting to {} ({connected} of {workers} workers connected)",
                self.config.brokers
            ));
        }
        // Every worker of the cluster: a process serves every list, each of which may need
        // purchases from another process's partitions.
        let caught_up = s.caught_up.load(Ordering::SeqCst);
        let peers = s.peers.load(Ordering::SeqCst).max(workers);
        if caught_up < peers {
            let lag: Option<i64> = s.partitions().values().map(|g| g.lag).sum();
            let lag = lag.map_or(String::new(), |lag| format!(", {lag} messages behind here"));
            let of = if peers > workers {
                format!("{caught_up} of {peers} workers of the cluster caught up")
            } else {
                format!("{caught_up} of {peers} workers caught up")
            };
            return Some(format!(
                "kafka: catching up on {} ({of}, {} messages read here{lag})",
                self.config.topic,
                s.messages.load(Ordering::Relaxed)
            ));
        }
        let at = s.caught_up_at_ms.load(Ordering::SeqCst);
        if published.is_none_or(|p| p < at) {
            return Some("kafka: caught up, publishing".into());
        }
        None
    }

    /// Registers the Kafka gauges and counters with `/metrics`.
    pub fn register_metrics(&self, metrics: &Metrics) {
        let counters: [(&str, &str, ReadCounter); 4] = [
            (
                "topsellers_kafka_messages_total",
                "Kafka messages read (valid, ignored and bad); rate() gives messages/s.",
                |s| s.messages.load(Ordering::Relaxed),
            ),
            (
                "topsellers_kafka_bad_messages_total",
                "Kafka messages that broke the data contract (dead letters).",
                |s| s.bad_messages.load(Ordering::Relaxed),
            ),
            (
                "topsellers_kafka_commits_total",
                "Offset commits that succeeded.",
                |s| s.commits.load(Ordering::Relaxed),
            ),
            (
                "topsellers_kafka_commit_failures_total",
                "Offset commits that failed.",
                |s| s.commit_failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            let shared = self.shared.clone();
            metrics.register_extra(
                name,
                help,
                MetricKind::Counter,
                Box::new(move || read(&shared) as f64),
            );
        }
        metrics.register_counter(
            "topsellers_kafka_dead_letter_failures_total",
            "Dead letters that could not be written to the dead-letter topic.",
            self.dead_letters
                .as_ref()
                .map_or_else(Default::default, |topic| topic.failures()),
        );
        metrics.register_counter(
            "topsellers_kafka_handover_skipped_total",
            "Kafka purchases skipped because they are older than the hand-over time T0 (the history owns them).",
            self.handover_skipped.clone(),
        );
        let shared = self.shared.clone();
        metrics.register_extra(
            "topsellers_kafka_handover_gap_partitions",
            "Partitions that start past the hand-over time T0 with older messages deleted: purchases from T0 on may be missing.",
            MetricKind::Gauge,
            Box::new(move || shared.handover_gaps().len() as f64),
        );
        let families: [(&str, &str, ReadPartition); 3] = [
            (
                "topsellers_kafka_partition_lag_messages",
                "Messages between the consumer's position and the partition's end, as last reported by the broker.",
                |g, _| g.lag.map(|lag| lag as f64),
            ),
            (
                "topsellers_kafka_committed_offset",
                "Per partition, the offset last committed to the group this run (the next to read; with a state, restarts resume from the state's offsets instead).",
                |g, _| g.committed.map(|next| next as f64),
            ),
            (
                "topsellers_kafka_event_time_lag_seconds",
                "Wall clock minus the largest event time read from the partition.",
                |g, now| g.max_event_ms.map(|ts| (now - ts) as f64 / 1000.0),
            ),
        ];
        for (name, help, read) in families {
            let shared = self.shared.clone();
            metrics.register_family(
                name,
                help,
                MetricKind::Gauge,
                Box::new(move || {
                    let topic = &shared.topic;
                    let now = wall_clock_ms();
                    shared
                        .partitions()
                        .into_iter()
                        .filter_map(|(p, g)| {
                            read(&g, now)
                                .map(|v| (format!("topic=\"{topic}\",partition=\"{p}\""), v))
                        })
                        .collect()
                }),
            );
        }
    }
}

/// Reads this worker's partitions until stopped: enters each purchase at its input time,
/// advances the input to the partitions' watermark (or, all idle, to the largest time any
/// worker of the cluster has reported), and commits offsets once served.
pub fn follow(
    worker: &mut Worker,
    graph: &mut Graph<Event>,
    kafka: &KafkaInput,
    how: Follow,
    log: &mut Option<Logger>,
    ctx: &Context,
) {
    let Follow {
        pace, lateness_ms, ..
    } = how;
    let spec = ReaderSpec {
        config: &kafka.config,
        lateness_ms,
        index: worker.index(),
        peers: worker.peers(),
        start: &kafka.start,
    };
    let connected = PartitionReader::connect(
        spec,
        kafka.shared.clone(),
        kafka.dead_letters.clone(),
        &|wait| ctx.stop.wait_timeout(wait),
    );
    let mut reader = match connected {
        Ok(Some(reader)) => reader,
        Ok(None) => return,
        Err(source) => {
            return ctx.fail(RunError::Kafka {
                worker: worker.index(),
                source,
            })
        }
    };
    kafka.shared.peers.store(worker.peers(), Ordering::SeqCst);
    kafka.shared.connected.fetch_add(1, Ordering::SeqCst);
    let epoch = Duration::from_millis(pace.epoch_ms);
    let mut purchases = Vec::with_capacity(pace.batch_size);
    let mut bad = Vec::new();
    // What this worker tells the others.
    let mut own = Report::default();
    while !ctx.stopped() {
        let current = *graph.input.time();
        let round = Round {
            current: current as i64,
            epoch_ms: pace.epoch_ms as i64,
            max: pace.batch_size,
            deadline: Instant::now() + epoch,
            until: live_boundary(current, pace.epoch_ms, wall_clock_ms()),
        };
        reader.read_round(round, &mut purchases, &mut bad, || {
            worker.step();
        });
        let entered = enter_round(graph, kafka, &mut purchases, current, log, ctx);
        own.max_entered_ms = own.max_entered_ms.max(entered.map(|at| at as i64));
        super::bad(ctx, log, &mut bad);
        ctx.metrics.add_ignored_records(reader.take_ignored());

        let now = Instant::now();
        let heard = graph.gossip.as_ref().map(Gossip::view).unwrap_or_default();
        let target = next_time(&reader, kafka, &heard, now, current, pace.epoch_ms);
        if own.caught_up_ms.is_none() && reader.caught_up(now) {
            own.caught_up_ms = Some(target as i64 - 1);
        }
        own.max_event_ms = reader.max_seen();
        if let Some(gossip) = &mut graph.gossip {
            gossip.tell(own);
        }
        kafka
            .shared
            .heard_caught_up(heard.caught_up, heard.caught_up_ms);
        // Let the dataflow finish the previous round before reading more (backpressure).
        graph.advance(worker, target, current, &ctx.stop);
        reader.commit(ctx.served(), target as i64, Instant::now());
        if let Some(log) = log {
            log.cut_if_asked(Some(reader.positions()), target);
        }
    }
    if let Some(log) = log {
        log.finish(Some(reader.positions()), *graph.input.time());
    }
    reader.close(ctx.served(), *graph.input.time() as i64);
}

/// How close to the wall clock (ms) the next epoch boundary must be for a round to end as soon
/// as the watermark crosses it: reading live, the purchases then go on at once (not up to an
/// epoch later); catching up on a backlog, rounds stay a full epoch (or batch) long.
const LIVE_WINDOW_MS: i64 = 1_000;

/// The next epoch boundary above `current`, if it is within [`LIVE_WINDOW_MS`] of `wall_ms`:
/// the event time whose crossing lets this worker's input advance.
fn live_boundary(current: Time, epoch_ms: u64, wall_ms: i64) -> Option<i64> {
    let epoch = epoch_ms.max(1);
    let boundary = i64::try_from(current.div_ceil(epoch).checked_mul(epoch)?).ok()?;
    (boundary >= wall_ms.saturating_sub(LIVE_WINDOW_MS)).then_some(boundary)
}

/// The input time this worker moves to after a round that began at `current`, given what it
/// `heard` from every worker of the cluster.
fn next_time(
    reader: &PartitionReader,
    kafka: &KafkaInput,
    heard: &View,
    now: Instant,
    current: Time,
    epoch_ms: u64,
) -> Time {
    match reader.watermark(now, heard.max_event_ms) {
        // Nothing read anywhere and every partition idle (an empty topic, or a restart at its
        // end), or no partition owned and nothing heard of: nothing to wait for. The input
        // leaves time 0 once, so that a snapshot (of what is there) is published; it does not
        // creep on.
        Watermark::Quiet => current.max(1),
        Watermark::Hold if reader.partitions().is_empty() => current.max(1),
        Watermark::Hold => current,
        // Rounded down to the epoch: workers of similar watermarks then advance to the same
        // times, so the frontier (and a snapshot) moves once per epoch, not once per worker.
        Watermark::Active(w) => align(w.max(0) as Time, epoch_ms) + 1,
        // Everything here is idle: publish up to the last purchase any worker of the cluster
        // read exactly, and past anything any worker entered late (at its then current time:
        // another worker may hold such purchases at a time after every event time).
        Watermark::Idle(w) => {
            let entered = heard
                .max_entered_ms
                .max(kafka.shared.max_entered_ms())
                .unwrap_or(0);
            w.max(entered).max(0) as Time + 1
        }
    }
    .max(current)
}

/// Enters a round's purchases at their input times (no earlier than `current`), skipping those
/// the history owns; the latest input time one entered at.
fn enter_round(
    graph: &mut Graph<Event>,
    kafka: &KafkaInput,
    purchases: &mut Vec<(topsellers_model::Purchase, i64)>,
    current: Time,
    log: &mut Option<Logger>,
    ctx: &Context,
) -> Option<Time> {
    let mut count = 0;
    let mut skipped = 0;
    let mut entered_max: Option<Time> = None;
    for (purchase, at) in purchases.drain(..) {
        // The history owns purchases before the hand-over: they were backfilled (or are
        // deliberately left out), whatever offset this partition started from.
        if kafka
            .handover
            .is_some_and(|handover| !handover.kafka_owns(purchase.ts_ms))
        {
            skipped += 1;
            continue;
        }
        count += 1;
        let at = super::enter(graph, log, purchase, at.max(0) as Time, current);
        entered_max = entered_max.max(Some(at));
    }
    if let Some(at) = entered_max {
        kafka.shared.entered(at as i64);
    }
    ctx.metrics.add_purchases(count);
    if skipped > 0 {
        kafka.handover_skipped.fetch_add(skipped, Ordering::Relaxed);
    }
    entered_max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_ends_early_only_at_a_boundary_near_the_wall_clock() {
        // Live: the next boundary above the input time, whether or not it sits on one.
        assert_eq!(live_boundary(1_000_001, 100, 1_000_050), Some(1_000_100));
        assert_eq!(live_boundary(1_000_000, 100, 1_000_050), Some(1_000_000));
        assert_eq!(live_boundary(999_999, 1, 1_000_050), Some(999_999));
        // Within the window behind the wall clock, and ahead of it.
        assert_eq!(live_boundary(999_001, 100, 1_000_000), Some(999_100));
        assert_eq!(live_boundary(2_000_001, 100, 1_000_000), Some(2_000_100));
        // A backlog: full rounds.
        assert_eq!(live_boundary(900_001, 100, 1_000_000), None);
        assert_eq!(live_boundary(0, 100, 1_000_000), None);
        // No overflow at the end of time.
        assert_eq!(live_boundary(u64::MAX, 100, 0), None);
    }
}
