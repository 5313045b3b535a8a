//! One worker's partition reader: its own consumer, manually assigned the partitions it owns.
//!
//! Worker `index` of `peers` (counted over every process) owns the partitions `p` with
//! `p % peers == index`: no consumer-group rebalances ever move a partition, and a process
//! restart gets the same assignment. The reader parses messages, feeds the watermark tracker,
//! notes offsets by input time, and commits those whose purchases are published.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};
use topsellers_model::Purchase;

use super::committer::Committer;
use super::config::{KafkaConfig, StartFrom};
use super::dead_letter_topic::DeadLetterTopic;
use super::offsets::PendingOffsets;
use super::payload::{message_position, PayloadParser};
use super::shared::KafkaShared;
use super::watermark::{Watermark, WatermarkTracker};
use super::KafkaSourceError;
use crate::bad::BadRecord;

/// How long one metadata request may take before it is retried.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);
/// First and largest wait between connection attempts (doubling, with jitter, so that the
/// workers of many processes do not retry in step).
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));
/// Longest single wait inside a round, so the worker keeps stepping the dataflow.
const POLL_SLICE: Duration = Duration::from_millis(5);
/// Least time between two logged consumer errors.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The consumer's callbacks: statistics (lag), commit results, logs.
struct Context {
    shared: Arc<KafkaShared>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        topsellers_kafka::log_client(level, fac, message);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.shared.topic) else {
            return;
        };
        for (&partition, stats) in &topic.partitions {
            if partition < 0 || !stats.desired {
                continue;
            }
            let lag = if stats.hi_offset >= 0 && stats.app_offset >= 0 {
                (stats.hi_offset - stats.app_offset).max(0)
            } else {
                stats.consumer_lag
            };
            if lag >= 0 {
                self.shared.set_lag(partition, lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for Context {}

/// Reads the partitions one worker owns.
pub struct PartitionReader {
    consumer: Arc<BaseConsumer<Context>>,
    topic: String,
    partitions: Vec<i32>,
    committer: Option<Committer>,
    commit_interval: Duration,
    parser: PayloadParser,
    marks: WatermarkTracker,
    offsets: PendingOffsets,
    /// Partitions whose end was reached since their last message.
    at_end: BTreeSet<i32>,
    shared: Arc<KafkaShared>,
    dead_letters: Option<Arc<DeadLetterTopic>>,
    last_commit: Instant,
    caught_up: bool,
    ignored: u64,
    last_error_log: Option<Instant>,
    /// The largest event time read so far.
    max_seen: i64,
    /// Per partition, the next offset after the last message read (read, not published).
    next: BTreeMap<i32, i64>,
    /// A hand-over's T0 and, per partition not checked yet, its earliest retained offset.
    gap_check: Option<(i64, BTreeMap<i32, i64>)>,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// The input time a purchase with event time `ts` enters the dataflow at: its event time
/// rounded up to the epoch, but no later than `max_seen` (the largest event time read so far,
/// at least `ts`), and no earlier than `current` (the input time now: a late purchase enters
/// now, and keeps its own `ts` for its weight).
///
/// ## Correctness
/// The result is never before `ts`, so a snapshot of time `T` never holds a purchase after `T`.
/// Snapshots come at epoch multiples while partitions are active (an event at `ts ≤ T` has
/// `⌈ts⌉ ≤ T`) and at the largest event time seen once all are idle (`≤ max_seen`), so
/// rounding delays no purchase past the snapshot it belongs to; it only makes the times in
/// one round few (one per epoch spanned), which is what the dataflow's cost depends on.
pub fn input_time(ts: i64, current: i64, epoch_ms: i64, max_seen: i64) -> i64 {
    let epoch = epoch_ms.max(1);
    let up = ts.max(0).saturating_add(epoch - 1) / epoch * epoch;
    up.min(max_seen.max(ts)).max(current).max(ts)
}

/// What one [`PartitionReader::read_round`] reads: until `max` messages were read, `deadline`
/// passed, or (with `until`) the reader's watermark reached `until`.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    /// The worker's input time now.
    pub current: i64,
    /// The granularity input times advance by (ms).
    pub epoch_ms: i64,
    /// Most messages read.
    pub max: usize,
    /// When the round ends at the latest.
    pub deadline: Instant,
    /// The event time whose crossing by the watermark ends the round early: the next time the
    /// worker's input can advance to, so that what can be served is handed on at once instead
    /// of at the deadline.
    pub until: Option<i64>,
}

/// Where each owned partition starts reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// As configured ([`KafkaConfig::start`]: the group's committed offset, else `fallback`;
    /// or the earliest or latest offset).
    #[default]
    Configured,
    /// From the earliest retained offset, whatever the group committed: a hand-over from a
    /// backfill at `t0_ms` needs every purchase with `ts ≥ T0` (older ones are skipped by the
    /// caller). A partition that has deleted messages (its earliest offset is past 0) and whose
    /// first purchase is already at or after T0 may have lost purchases: that is reported
    /// ([`KafkaShared::handover_gaps`]).
    Handover {
        /// T0, epoch ms.
        t0_ms: i64,
    },
    /// From these next offsets (a restored state's); partitions not listed start at their
    /// earliest offset (`unread_from_earliest`: the state was written during a hand-over) or
    /// as configured.
    Offsets {
        /// Per partition, the next offset to read.
        next: BTreeMap<i32, i64>,
        /// Where a partition without an offset here starts.
        unread_from_earliest: bool,
    },
}

/// Who a reader is and where it starts.
#[derive(Clone, Copy, Debug)]
pub struct ReaderSpec<'a> {
    /// The source.
    pub config: &'a KafkaConfig,
    /// How far behind the largest event time the watermark stays.
    pub lateness_ms: i64,
    /// This worker's index among all workers (of every process).
    pub index: usize,
    /// All workers.
    pub peers: usize,
    /// Where its partitions start.
    pub start: &'a StartAt,
}

/// Whether the first purchase read from a partition may leave purchases of the hand-over
/// missing: the partition has deleted messages (`low > 0`, its earliest retained offset) and
/// that first purchase is already at or after T0, so deleted ones may have been too.
pub fn handover_gap(low: i64, first_ts_ms: i64, t0_ms: i64) -> bool {
    low > 0 && first_ts_ms >= t0_ms
}

/// Which partitions worker `index` of `peers` owns out of `count`.
pub fn owned_partitions(count: usize, index: usize, peers: usize) -> Vec<i32> {
    (0..count)
        .filter(|p| p % peers.max(1) == index)
        .map(|p| p as i32)
        .collect()
}

impl PartitionReader {
    /// Connects (retrying with backoff, with one clear log line per attempt, until the topic's
    /// metadata is read or the run stops) and assigns the partitions worker `index` of `peers`
    /// owns. `wait` waits up to the given time between attempts and says whether the run is
    /// stopping (it returns at once when it is). `None` if stopped first.
    pub fn connect(
        spec: ReaderSpec<'_>,
        shared: Arc<KafkaShared>,
        dead_letters: Option<Arc<DeadLetterTopic>>,
        wait: &dyn Fn(Duration) -> bool,
    ) -> Result<Option<PartitionReader>, KafkaSourceError> {
        let ReaderSpec {
            config,
            lateness_ms,
            index,
            peers,
            start,
        } = spec;
        let client_id = format!("topsellers-worker-{index}");
        let client = config.client(&[
            ("group.id", &config.group),
            ("client.id", &client_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", config.fallback.as_str()),
            ("statistics.interval.ms", "5000"),
            ("allow.auto.create.topics", "false"),
        ]);
        let consumer: Arc<BaseConsumer<Context>> = Arc::new(
            client
                .create_with_context(Context {
                    shared: shared.clone(),
                })
                .map_err(KafkaSourceError::Client)?,
        );
        let Some(count) = partition_count(&consumer, config, index, wait) else {
            return Ok(None);
        };
        let partitions = owned_partitions(count, index, peers);
        let configured = match config.start {
            StartFrom::Committed => Offset::Stored,
            StartFrom::Earliest => Offset::Beginning,
            StartFrom::Latest => Offset::End,
        };
        let mut assignment = TopicPartitionList::new();
        let mut starts = Vec::new();
        for &p in &partitions {
            let offset = match start {
                StartAt::Configured => configured,
                StartAt::Handover { .. } => Offset::Beginning,
                StartAt::Offsets {
                    next,
                    unread_from_earliest,
                } => match next.get(&p) {
                    Some(&n) => Offset::Offset(n),
                    None if *unread_from_earliest => Offset::Beginning,
                    None => configured,
                },
            };
            starts.push((p, offset));
            assignment
                .add_partition_offset(&config.topic, p, offset)
                .map_err(KafkaSourceError::Client)?;
            shared.own(p);
        }
        consumer
            .assign(&assignment)
            .map_err(KafkaSourceError::Client)?;
        tracing::info!(
            worker = index,
            "kafka: reading partitions {partitions:?} of {} ({count} in all) from {}, starting at {}",
            config.topic,
            config.brokers,
            describe_start(start, config.start, &starts)
        );
        let gap_check = match start {
            StartAt::Handover { t0_ms } => Some((
                *t0_ms,
                earliest_offsets(&consumer, &config.topic, &partitions),
            )),
            _ => None,
        };
        let committer = if config.commit {
            Some(
                Committer::spawn(
                    consumer.clone(),
                    config.topic.clone(),
                    shared.clone(),
                    index,
                    config.commit_interval,
                )
                .map_err(KafkaSourceError::Thread)?,
            )
        } else {
            None
        };
        let now = Instant::now();
        Ok(Some(PartitionReader {
            consumer,
            committer,
            topic: config.topic.clone(),
            marks: WatermarkTracker::new(&partitions, lateness_ms, config.idle_timeout, now),
            partitions,
            commit_interval: config.commit_interval,
            parser: PayloadParser::new(config.format),
            offsets: PendingOffsets::new(),
            at_end: BTreeSet::new(),
            shared,
            dead_letters,
            last_commit: now,
            caught_up: false,
            ignored: 0,
            last_error_log: None,
            max_seen: i64::MIN,
            next: BTreeMap::new(),
            gap_check,
        }))
    }

    /// Per partition, the next offset after the last message read: where a reader resuming
    /// after this one's purchases starts.
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.next
    }

    /// The partitions this reader owns.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// Reads messages for one [`Round`], calling `between` whenever nothing is waiting (so the
    /// caller can step its dataflow). Valid purchases go to `purchases` with the input time to
    /// enter them at (see [`input_time`]), bad messages to `bad` (and the dead-letter topic).
    /// Returns the messages read.
    pub fn read_round(
        &mut self,
        round: Round,
        purchases: &mut Vec<(Purchase, i64)>,
        bad: &mut Vec<BadRecord>,
        mut between: impl FnMut(),
    ) -> usize {
        let Round {
            current,
            epoch_ms,
            max,
            deadline,
            until,
        } = round;
        let mut read = 0;
        let mut seen: Vec<i32> = Vec::new();
        while read < max.max(1) {
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                break;
            };
            let polled = if self.partitions.is_empty() {
                None
            } else {
                self.consumer.poll(left.min(POLL_SLICE))
            };
            match polled {
                None => {
                    if self.partitions.is_empty() {
                        std::thread::sleep(left.min(POLL_SLICE));
                    }
                    between();
                }
                Some(Ok(message)) => {
                    read += 1;
                    let (partition, offset) = (message.partition(), message.offset());
                    self.at_end.remove(&partition);
                    self.next.insert(partition, offset + 1);
                    match self.parser.parse(message.payload()) {
                        Ok(Some(purchase)) => {
                            let purchase_ts = purchase.ts_ms;
                            self.check_gap(partition, purchase.ts_ms);
                            self.max_seen = self.max_seen.max(purchase.ts_ms);
                            let input_time =
                                input_time(purchase.ts_ms, current, epoch_ms, self.max_seen);
                            self.marks.observe(partition, purchase.ts_ms, now);
                            self.offsets.note(partition, offset, Some(input_time));
                            if !seen.contains(&partition) {
                                seen.push(partition);
                            }
                            purchases.push((purchase, input_time));
                            if until.is_some_and(|until| {
                                purchase_ts >= until
                                    && self.marks.watermark(now, None).time() >= Some(until)
                            }) {
                                break;
                            }
                        }
                        Ok(None) => {
                            self.ignored += 1;
                            self.offsets.note(partition, offset, None);
                        }
                        Err(error) => {
                            let position = message_position(&self.topic, partition, offset);
                            let record = BadRecord::from_bytes(
                                position,
                                error,
                                message.payload().unwrap_or_default(),
                            );
                            if let Some(topic) = &self.dead_letters {
                                topic.send(&record);
                            }
                            self.shared.bad_messages.fetch_add(1, Ordering::Relaxed);
                            self.offsets.note(partition, offset, None);
                            bad.push(record);
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.at_end.insert(partition);
                }
                Some(Err(error)) => self.log_error(&error),
            }
        }
        self.offsets.seal();
        for partition in seen {
            if let Some(max) = self.marks.partition_max(partition) {
                self.shared.saw_event(partition, max);
            }
        }
        self.shared
            .messages
            .fetch_add(read as u64, Ordering::Relaxed);
        read
    }

    /// How far the worker's input time may advance at `now` (see [`WatermarkTracker`]); when
    /// every owned partition is idle, it follows `elsewhere`, the largest event time any
    /// reader of the cluster is known to have seen (or this process's readers, whichever is
    /// larger).
    pub fn watermark(&self, now: Instant, elsewhere: Option<i64>) -> Watermark {
        self.marks
            .watermark(now, elsewhere.max(self.shared.max_event_ms()))
    }

    /// The largest event time this reader has read.
    pub fn max_seen(&self) -> Option<i64> {
        self.marks.max_seen()
    }

    /// Whether every owned partition has been read to its end (or has been idle) at least
    /// once since the start; latched.
    pub fn caught_up(&mut self, now: Instant) -> bool {
        if !self.caught_up {
            self.caught_up = self
                .partitions
                .iter()
                .all(|p| self.at_end.contains(p) || self.marks.is_idle(*p, now));
        }
        self.caught_up
    }

    /// Zero-quantity messages read since the last call.
    pub fn take_ignored(&mut self) -> u64 {
        std::mem::take(&mut self.ignored)
    }

    /// Releases the offsets whose purchases are in the served snapshot of time `published` (or
    /// an earlier one; `input_now` is this worker's input time now, see [`PendingOffsets`]) and,
    /// when the commit interval has passed, hands them to the commit thread.
    pub fn commit(&mut self, published: i64, input_now: i64, now: Instant) {
        self.offsets.release(published, input_now);
        if now.duration_since(self.last_commit) < self.commit_interval {
            return;
        }
        self.last_commit = now;
        if let Some(committer) = &self.committer {
            let released = self.offsets.take_released();
            if !released.is_empty() {
                committer.commit(released);
            }
        }
    }

    /// Commits what `published` releases and waits for the commit (at shutdown).
    pub fn close(&mut self, published: i64, input_now: i64) {
        self.offsets.release(published, input_now);
        if let Some(mut committer) = self.committer.take() {
            committer.commit(self.offsets.take_released());
            committer.close();
        }
    }

    /// On a hand-over, checks the first purchase of a partition for a possible gap.
    fn check_gap(&mut self, partition: i32, ts_ms: i64) {
        let Some((t0_ms, unchecked)) = &mut self.gap_check else {
            return;
        };
        let Some(low) = unchecked.remove(&partition) else {
            return;
        };
        if handover_gap(low, ts_ms, *t0_ms) {
            tracing::warn!(
                topic = %self.topic,
                partition,
                "kafka: partition {partition} starts at offset {low} (older messages were deleted) \
                 with a purchase at {} ms, at or after the hand-over T0 {t0_ms} ms: purchases \
                 between T0 and it may be missing from the lists",
                ts_ms
            );
            self.shared.handover_gap(partition);
        }
    }

    fn log_error(&mut self, error: &KafkaError) {
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_INTERVAL)
        {
            self.last_error_log = Some(now);
            tracing::warn!(%error, topic = %self.topic, "kafka consumer error (the client reconnects by itself)");
        }
    }
}

/// How the log line says where the partitions start.
fn describe_start(start: &StartAt, configured: StartFrom, starts: &[(i32, Offset)]) -> String {
    match start {
        StartAt::Configured => format!("{configured:?}"),
        StartAt::Handover { t0_ms } => format!(
            "the earliest offset (hand-over at {t0_ms} ms: purchases before it are skipped, \
             committed offsets are not used)"
        ),
        StartAt::Offsets { .. } => format!("the restored state's offsets {starts:?}"),
    }
}

/// The earliest retained offset of each partition (as reported within a few seconds; a
/// partition whose answer does not come is not checked).
fn earliest_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
) -> BTreeMap<i32, i64> {
    partitions
        .iter()
        .filter_map(|&p| match consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT) {
            Ok((low, _high)) => Some((p, low)),
            Err(error) => {
                tracing::warn!(%error, partition = p, "kafka: cannot read the earliest offset; the hand-over gap is not checked for it");
                None
            }
        })
        .collect()
}

/// The topic's partition count, retrying until it is known or `wait` says the run stops.
fn partition_count(
    consumer: &BaseConsumer<Context>,
    config: &KafkaConfig,
    index: usize,
    wait: &dyn Fn(Duration) -> bool,
) -> Option<usize> {
    if index == 0 {
        tracing::info!(
            "kafka: connecting to {} for topic {:?}",
            config.brokers,
            config.topic
        );
    }
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF.0)
        .with_max_delay(BACKOFF.1)
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempt = 0u32;
    loop {
        if wait(Duration::ZERO) {
            return None;
        }
        attempt += 1;
        let delay = backoff.next().unwrap_or(BACKOFF.1);
        let problem = match consumer.fetch_metadata(Some(&config.topic), METADATA_TIMEOUT) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == config.topic) {
                Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => {
                    return Some(topic.partitions().len());
                }
                Some(topic) => format!(
                    "topic {:?} is not available ({:?})",
                    config.topic,
                    topic.error()
                ),
                None => format!("topic {:?} does not exist", config.topic),
            },
            Err(error) => format!("cannot reach the brokers: {error}"),
        };
        if index == 0 {
            tracing::warn!(
                "kafka {}: {problem}; attempt {attempt}, retrying in {delay:.1?} (/readyz stays not ready until connected)",
                config.brokers
            );
        } else {
            tracing::debug!(
                worker = index,
                "kafka {}: {problem}; retrying",
                config.brokers
            );
        }
        if wait(delay) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_times_round_up_to_the_epoch_within_what_was_seen() {
        assert_eq!(input_time(1001, 0, 100, 5000), 1100);
        assert_eq!(input_time(1100, 0, 100, 5000), 1100);
        assert_eq!(
            input_time(1001, 0, 100, 1050),
            1050,
            "capped at the largest seen"
        );
        assert_eq!(input_time(1001, 0, 100, 1001), 1001);
        assert_eq!(input_time(1001, 2000, 100, 5000), 2000, "late: now");
        assert_eq!(input_time(1001, 0, 1, 5000), 1001);
        for ts in [0, 1, 99, 100, 101, 12_345] {
            for max_seen in [ts, ts + 3, ts + 1000] {
                let t = input_time(ts, 0, 100, max_seen);
                assert!(t >= ts && t <= max_seen.max(ts), "{ts} {max_seen} {t}");
            }
        }
    }

    #[test]
    fn a_gap_needs_deleted_messages_and_a_first_purchase_at_or_after_t0() {
        assert!(handover_gap(10, 1000, 1000));
        assert!(handover_gap(1, 2000, 1000));
        assert!(
            !handover_gap(0, 2000, 1000),
            "nothing deleted: nothing missing"
        );
        assert!(!handover_gap(10, 999, 1000), "older purchases still there");
    }

    #[test]
    fn partitions_by_index() {
        assert_eq!(owned_partitions(5, 0, 2), vec![0, 2, 4]);
        assert_eq!(owned_partitions(5, 1, 2), vec![1, 3]);
        assert_eq!(owned_partitions(2, 3, 4), Vec::<i32>::new());
        assert_eq!(owned_partitions(3, 0, 1), vec![0, 1, 2]);
    }

    #[test]
    fn properties_override_defaults() {
        let mut config = KafkaConfig::new("b:1", "t");
        config
            .properties
            .insert("fetch.wait.max.ms".into(), "10".into());
        config
            .properties
            .insert("enable.partition.eof".into(), "false".into());
        let client = config.client(&[("enable.partition.eof", "true")]);
        assert_eq!(client.get("bootstrap.servers"), Some("b:1"));
        assert_eq!(client.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(client.get("enable.partition.eof"), Some("false"));
    }
}
