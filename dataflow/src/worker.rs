//! What every worker thread does: replay its share of the files, then follow the live source.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use timely::worker::Worker;

use std::collections::HashMap;
use topsellers_model::{LatestLists, Purchase, Snapshot};
use topsellers_operators::Time;
use topsellers_sinks::Metrics;
use topsellers_sources::files::{units_for_worker, Opener, ReadUnit};
use topsellers_sources::generator::{Catalog, Generator, GeneratorConfig, Rate};
use topsellers_sources::{BadRecord, DeadLetter};

use crate::aggregates::Aggregates;
use crate::config::Scoring;
use crate::kafka_live::{self, KafkaLive};
use crate::render::{self, Expiry};

/// The files to replay before live input, and the time they are replayed up to.
#[derive(Clone, Debug)]
pub struct Backfill {
    /// Every unit of every file; each worker reads its share.
    pub units: Vec<ReadUnit>,
    /// The event time the replay is complete at (inclusive): its snapshot is published before
    /// live input starts. Purchases after it are skipped (counted). With Kafka after the
    /// backfill it is the hand-over time T0 − 1 ([`crate::handover`]), else the history's
    /// largest event time.
    pub until_ms: i64,
    /// Purchases at or before this time are skipped (batch: `as_of − retention`).
    pub after_ms: Option<i64>,
}

/// The live source that follows the backfill.
#[derive(Clone)]
pub enum Live {
    /// Synthetic purchases at the wall clock.
    Generator {
        /// How to generate.
        config: GeneratorConfig,
        /// Shared names and popularity, built once per process.
        catalog: Arc<Catalog>,
    },
    /// Purchases from a Kafka topic, partitions shared among the workers.
    Kafka(KafkaLive),
}

/// What the workers of this process are to do (the same on every worker).
#[derive(Clone)]
pub struct Job {
    /// Scores and lists.
    pub scoring: Scoring,
    /// Retention handling.
    pub expiry: Expiry,
    /// Files first, if any.
    pub backfill: Option<Backfill>,
    /// Then live input, if any; without it, workers idle (keep serving) until stopped, or
    /// exit after the backfill when `exit_after_backfill`.
    pub live: Option<Live>,
    /// Stop once the backfill snapshot is published (batch mode).
    pub exit_after_backfill: bool,
    /// How often live input time advances.
    pub epoch_ms: u64,
    /// Records handed to the dataflow at once.
    pub batch_size: usize,
    /// The first worker of every process: they receive every list.
    pub leaders: Vec<usize>,
}

/// State shared by the workers of one process and the threads around them.
pub struct Shared {
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where bad records go.
    pub dead_letter: Arc<DeadLetter>,
    /// Set to stop (SIGINT/SIGTERM, or a worker failed).
    pub stop: Arc<AtomicBool>,
    /// Snapshots to the serving side (leaders only).
    pub snapshots: Sender<Snapshot>,
    /// The time of the last snapshot this process's leader handed on.
    pub published: AtomicI64,
    /// Set once this process's leader has handed on the backfill snapshot.
    pub backfill_done: AtomicBool,
    /// Backfill progress: units and rows read by all workers of this process.
    pub units_read: AtomicU64,
    /// Files whose every unit has been read.
    pub files_read: AtomicU64,
    /// Units left per file (by path or URL), to count files done.
    units_left: Mutex<HashMap<String, u64>>,
    /// Rows read (valid, bad and ignored).
    pub rows_read: AtomicU64,
    /// Bytes read: of text files as they are read, of Parquet row groups once each is done.
    pub bytes_read: AtomicU64,
    /// Purchases outside the backfill's time window (expired, or owned by Kafka), skipped.
    pub skipped: Arc<AtomicU64>,
    /// The first error a worker hit; the run fails with it.
    pub error: Mutex<Option<String>>,
    /// The next backfill unit for a worker to claim (one process: see `run_worker`).
    next_unit: AtomicUsize,
}

impl Shared {
    /// Shared state around the given snapshot channel.
    pub fn new(
        metrics: Arc<Metrics>,
        dead_letter: Arc<DeadLetter>,
        stop: Arc<AtomicBool>,
        snapshots: Sender<Snapshot>,
    ) -> Self {
        Shared {
            metrics,
            dead_letter,
            stop,
            snapshots,
            published: AtomicI64::new(i64::MIN),
            backfill_done: AtomicBool::new(false),
            units_read: AtomicU64::new(0),
            files_read: AtomicU64::new(0),
            units_left: Mutex::new(HashMap::new()),
            rows_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            skipped: Arc::new(AtomicU64::new(0)),
            error: Mutex::new(None),
            next_unit: AtomicUsize::new(0),
        }
    }

    /// Counts the units of each file, so that [`Shared::unit_done`] can tell when a file is.
    pub fn expect_units(&self, units: &[ReadUnit]) {
        let mut left = self.units_left.lock();
        for unit in units {
            *left.entry(unit.location.to_string()).or_default() += 1;
        }
    }

    /// Counts one unit read (and its file, if it was the file's last unit).
    fn unit_done(&self, unit: &ReadUnit) {
        self.units_read.fetch_add(1, Ordering::Relaxed);
        let mut left = self.units_left.lock();
        if let Some(count) = left.get_mut(&unit.location.to_string()) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.files_read.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Fails the run with `message` (the first failure wins) and stops every worker.
    pub fn fail(&self, message: String) {
        tracing::error!("{message}");
        self.error.lock().get_or_insert(message);
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn bad(&self, bad: &mut Vec<BadRecord>) {
        for record in bad.drain(..) {
            self.dead_letter.record(&record);
            self.metrics.add_bad_records(1);
        }
    }
}

/// Batches in flight before a worker waits for the dataflow to catch up.
const MAX_BATCHES_IN_FLIGHT: u64 = 2;

/// Runs one worker: builds the dataflow, replays the backfill, then follows the live source.
///
/// A panic (a bug) fails the run and stops the other workers, which would otherwise wait for
/// this one forever, before it goes on to end the thread.
pub fn run_worker(worker: &mut Worker, job: &Job, shared: &Arc<Shared>) {
    let index = worker.index();
    let run = std::panic::AssertUnwindSafe(|| work(worker, job, shared));
    if let Err(panic) = std::panic::catch_unwind(run) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        shared.fail(format!("worker {index} failed (a bug): {message}"));
        std::panic::resume_unwind(panic);
    }
}

/// What [`run_worker`] runs.
fn work(worker: &mut Worker, job: &Job, shared: &Arc<Shared>) {
    let index = worker.index();
    let peers = worker.peers();
    let leader = job.leaders.contains(&index);
    // Snapshots of the backfill's internal rounds (their times count batches, not events) are
    // merged and handed on as one, at the backfill's own time: a reader never sees them.
    let hold_until = job.backfill.as_ref().map(|b| b.until_ms.max(0));
    let mut held = LatestLists::default();
    let sink = {
        let shared = Arc::clone(shared);
        move |mut snapshot: Snapshot| {
            if !leader {
                return;
            }
            if hold_until.is_some_and(|until| snapshot.time_ms < until) {
                held.extend(snapshot.lists);
                return;
            }
            if !held.is_empty() {
                held.extend(snapshot.lists.drain(..));
                snapshot.lists = held.take_sorted();
            }
            let time = snapshot.time_ms;
            // Blocks when the serving side is behind: backpressure, not unbounded memory.
            if shared.snapshots.send(snapshot).is_ok() {
                shared.published.store(time, Ordering::SeqCst);
            }
        }
    };
    let mut graph = render::build(worker, &job.scoring, job.expiry, job.leaders.clone(), sink);
    let mut purchases = Vec::with_capacity(job.batch_size);
    let mut bad = Vec::new();

    // Backfill: the logical clock counts batches (capped at the cut-off), so the dataflow
    // digests the history as it streams in; every purchase keeps its own event time.
    if let Some(backfill) = &job.backfill {
        let mut clock: Time = 0;
        // With the input cut to a fixed window (batch), nothing ever expires: sum each
        // (item, category) here and hand the dataflow one exact update per pair.
        let mut aggregates =
            (job.expiry == Expiry::PreFiltered).then(|| Aggregates::new(&job.scoring));
        let until = backfill.until_ms.max(0) as Time;
        let inside = |ts_ms: i64| {
            ts_ms <= backfill.until_ms && backfill.after_ms.is_none_or(|after| ts_ms > after)
        };
        let read_started = Instant::now();
        // In one process, workers claim units as they go, so that one that drew quick units
        // does not idle while another still reads. Across processes, each worker reads the
        // units of its global index (nobody to share a counter with).
        let units: Box<dyn Iterator<Item = ReadUnit>> = if job.leaders.len() == 1 {
            let (all, shared) = (backfill.units.clone(), Arc::clone(shared));
            Box::new(std::iter::from_fn(move || {
                all.get(shared.next_unit.fetch_add(1, Ordering::Relaxed))
                    .cloned()
            }))
        } else {
            Box::new(units_for_worker(&backfill.units, index, peers).into_iter())
        };
        for (unit, opened) in Opener::new(units) {
            let mut reader = match opened {
                Ok(reader) => reader,
                Err(e) => {
                    shared.fail(format!("cannot read {}: {e}", unit.location));
                    return worker.drop_dataflow(graph.id);
                }
            };
            let (mut rows_before, mut bytes_before) = (0, 0);
            loop {
                if shared.stopped() {
                    return worker.drop_dataflow(graph.id);
                }
                let (mut accepted, mut outside) = (0, 0);
                let read = match &mut aggregates {
                    // Summed straight from the reader's buffers: nothing allocated per purchase.
                    Some(sums) => reader.visit_batch(
                        &mut |purchase| {
                            if inside(purchase.ts_ms) {
                                sums.add(purchase);
                                accepted += 1;
                            } else {
                                outside += 1;
                            }
                        },
                        &mut bad,
                        job.batch_size,
                    ),
                    None => reader
                        .next_batch(&mut purchases, &mut bad, job.batch_size)
                        .inspect(|_| {
                            for purchase in purchases.drain(..) {
                                if inside(purchase.ts_ms) {
                                    let (event, quantity) = purchase.into_update();
                                    graph.purchases.update(event, quantity);
                                    accepted += 1;
                                } else {
                                    outside += 1;
                                }
                            }
                        }),
                };
                let more = match read {
                    Ok(more) => more,
                    Err(e) => {
                        shared.fail(format!("cannot read {}: {e}", unit.location));
                        return worker.drop_dataflow(graph.id);
                    }
                };
                shared.bad(&mut bad);
                shared.skipped.fetch_add(outside, Ordering::Relaxed);
                shared.metrics.add_purchases(accepted);
                let rows = reader.rows_read();
                shared
                    .rows_read
                    .fetch_add(rows - rows_before, Ordering::Relaxed);
                rows_before = rows;
                let bytes = reader.bytes_read();
                shared
                    .bytes_read
                    .fetch_add(bytes.saturating_sub(bytes_before), Ordering::Relaxed);
                bytes_before = bytes_before.max(bytes);
                if aggregates.is_some() {
                    // Nothing entered the dataflow yet: read on.
                    if !more {
                        break;
                    }
                    continue;
                }
                clock = (clock + 1).min(until);
                graph.purchases.advance_to(clock);
                graph.purchases.flush();
                let behind = clock.saturating_sub(MAX_BATCHES_IN_FLIGHT);
                while graph.probe.less_than(&behind) && !shared.stopped() {
                    worker.step();
                }
                worker.step();
                if !more {
                    break;
                }
            }
            shared.metrics.add_ignored_records(reader.ignored());
            // The rest of the unit's size (all of it for Parquet), so that bytes add up.
            shared.bytes_read.fetch_add(
                unit.size.bytes.saturating_sub(bytes_before),
                Ordering::Relaxed,
            );
            shared.unit_done(&unit);
        }
        if let Some(mut sums) = aggregates.take() {
            let pairs = sums.len();
            tracing::debug!(
                "worker {index}: read its share in {:.2}s, {pairs} (item, category) pairs",
                read_started.elapsed().as_secs_f64(),
            );
            graph.size_hint.expect(pairs);
            for (event, count) in sums.into_updates() {
                graph.purchases.update(event, count);
            }
        }
        // Complete the backfill's snapshot before anything live enters.
        graph.purchases.advance_to(until + 1);
        graph.purchases.flush();
        while shared.published.load(Ordering::SeqCst) < backfill.until_ms.max(0)
            && !shared.stopped()
        {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        shared.backfill_done.store(true, Ordering::SeqCst);
        tracing::debug!(
            "worker {index}: backfill published after {:.2}s",
            read_started.elapsed().as_secs_f64()
        );
        if job.exit_after_backfill {
            return worker.drop_dataflow(graph.id);
        }
    } else {
        shared.backfill_done.store(true, Ordering::SeqCst);
    }

    match &job.live {
        Some(Live::Generator { config, catalog }) => {
            let mut generator = match Generator::new(Arc::clone(catalog), config, index, peers) {
                Ok(generator) => generator,
                Err(e) => return shared.fail(format!("generator: {e}")),
            };
            let lateness = job.scoring.lateness_ms;
            let epoch = Duration::from_millis(job.epoch_ms);
            let unthrottled = matches!(config.rate, Rate::Max);
            // In a cluster, purchases at or after the input's next time wait here for their
            // epoch: entered early, they make the frontier stop at their own times, and the
            // snapshot times would depend on how each process saw progress, not on the epochs
            // alone. One process has nobody to agree with, and enters them at once: an A/B run at
            // load 5 showed holding them back ~15% slower (noisy: the workers then digest an
            // epoch only after it is generated).
            let hold_ahead = job.leaders.len() > 1;
            let mut ahead: Vec<Purchase> = Vec::new();
            while !shared.stopped() {
                let started = Instant::now();
                let now_ms = wall_clock_ms();
                generator.poll(now_ms, &mut purchases, job.batch_size);
                let current = *graph.purchases.time();
                shared.metrics.add_purchases(purchases.len() as u64);
                // The generator never emits an event time after the wall clock: that is its
                // watermark, so time moves even when no purchase arrives. Rounding it down to
                // the epoch makes every worker advance to the same times, so the frontier (and
                // a snapshot) moves once per epoch rather than once per worker.
                let next =
                    (align((now_ms - lateness).max(0) as Time, job.epoch_ms) + 1).max(current);
                purchases.append(&mut ahead);
                for purchase in purchases.drain(..) {
                    if !hold_ahead || (purchase.ts_ms.max(0) as Time) < next {
                        enter(&mut graph, purchase, current);
                    } else {
                        ahead.push(purchase);
                    }
                }
                graph.purchases.advance_to(next);
                graph.purchases.flush();
                // Let the dataflow finish the previous epoch before starting another.
                while graph.probe.less_than(&current) && !shared.stopped() {
                    worker.step_or_park(Some(Duration::from_millis(1)));
                }
                if unthrottled {
                    worker.step();
                } else {
                    while let Some(left) = epoch.checked_sub(started.elapsed()) {
                        if shared.stopped() || left.is_zero() {
                            break;
                        }
                        worker.step_or_park(Some(left));
                    }
                }
            }
        }
        Some(Live::Kafka(kafka)) => kafka_live::follow(worker, &mut graph, job, shared, kafka),
        None => {
            while !shared.stopped() {
                worker.step_or_park(Some(Duration::from_millis(50)));
            }
        }
    }
    // Stop without draining: closing the input would retract everything still retained.
    worker.drop_dataflow(graph.id);
}

/// Enters a live purchase at its own event time, or at the current input time if it is late.
fn enter(graph: &mut render::Graph, purchase: Purchase, current: Time) {
    let time = (purchase.ts_ms.max(0) as Time).max(current);
    let (event, quantity) = purchase.into_update();
    graph.purchases.update_at(event, time, quantity);
}

/// `time` rounded down to a multiple of `epoch_ms`.
pub(crate) fn align(time: Time, epoch_ms: u64) -> Time {
    time - time % epoch_ms.max(1)
}

/// Milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
