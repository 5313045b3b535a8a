//! Writing checkpoints. Every interval the checkpointer asks the workers to cut their logs;
//! each hands over, between two of its rounds, what it entered since its last cut and where its
//! sources stand. Once every worker of the process has, the checkpointer writes the segments,
//! appends the bad records to the dead-letter file, writes the lists that changed, and last the
//! manifest; then it removes what the last two manifests no longer name.
//!
//! ## Correctness
//! A worker's cut pairs exactly the purchases it entered (and bad records it met) with the
//! positions after the messages they came from, and a Kafka partition belongs to one worker:
//! so the union of the cuts is consistent whatever moment each worker cut at. A crash before the
//! manifest leaves the previous checkpoint in force, and everything after it is read again; a
//! crash after it reads nothing twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use topsellers_model::{wall_clock_ms, Purchase};
use topsellers_operators::Time;
use topsellers_sinks::{MetricKind, Metrics, ServingTable};
use topsellers_sources::{BadRecord, DeadLetter};

use super::lists;
use super::manifest::{self, FileRef, HistoryRef, KafkaPositions, Manifest, ScoringPrint};
use super::store::Store;
use super::StateError;
use crate::progress::BackfillProgress;
use crate::stop::Stop;

/// How long a stopping process waits for its workers' last cuts before it gives the final
/// checkpoint up (the previous one stays in force).
const LAST_CUTS_WAIT: Duration = Duration::from_secs(30);

/// List files (one of every list, then changes) after which the lists are written whole again.
const MAX_LIST_FILES: usize = 16;

/// Segments of one level merged into one of the next (size-tiered: each purchase is rewritten
/// about `log_MERGE(checkpoints)` times, and a state of a year at 10 s holds a few hundred files,
/// not millions).
const MERGE: usize = 32;

/// Segments are not merged past this many bytes at once (big ones stay as they are).
const MAX_MERGE_BYTES: u64 = 256 << 20;

/// For tests that kill the process during a checkpoint: with
/// `TOPSELLERS_FAILPOINT_CHECKPOINT_PAUSE_MS` set, every checkpoint waits that long between
/// appending its bad records and writing its lists and manifest (the window where a crash must
/// leave the previous checkpoint in force and the dead-letter file cut back on restart).
fn failpoint_pause() {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("TOPSELLERS_FAILPOINT_CHECKPOINT_PAUSE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
    });
    if let Some(pause) = pause {
        std::thread::sleep(*pause);
    }
}

/// What a worker logged since its last cut.
#[derive(Debug)]
pub struct WorkerLog {
    purchases: Vec<Purchase>,
    bad: Vec<BadRecord>,
    /// The latest input time a logged purchase entered at.
    max_time_ms: i64,
    /// The last checkpoint this worker cut for.
    cut: u64,
}

impl Default for WorkerLog {
    fn default() -> Self {
        WorkerLog {
            purchases: Vec::new(),
            bad: Vec::new(),
            max_time_ms: i64::MIN,
            cut: 0,
        }
    }
}

impl WorkerLog {
    /// Logs a purchase entered at input time `at`.
    pub fn entered(&mut self, purchase: &Purchase, at: Time) {
        self.purchases.push(purchase.clone());
        self.max_time_ms = self.max_time_ms.max(at as i64);
    }

    /// Logs bad records (taking them): they reach the dead-letter file with the checkpoint.
    pub fn bad(&mut self, bad: &mut Vec<BadRecord>) {
        self.bad.append(bad);
    }
}

/// A worker's cut: what it logged, and where its sources stand.
#[derive(Debug)]
pub struct Cut {
    /// The checkpoint it is for (`u64::MAX`: the worker's last, it is stopping).
    pub sequence: u64,
    /// The worker's index.
    pub worker: usize,
    /// Purchases entered since its last cut.
    pub purchases: Vec<Purchase>,
    /// Bad records met since.
    pub bad: Vec<BadRecord>,
    /// Per Kafka partition it read, the next offset.
    pub kafka: BTreeMap<i32, i64>,
    /// At or after every input time it entered a purchase at, and its current input time.
    pub time_ms: i64,
}

/// What the workers share with the checkpointer.
#[derive(Debug)]
pub struct Checkpoints {
    requested: AtomicU64,
    cuts: Sender<Cut>,
    /// Workers that park while idle: a request wakes them.
    parked: Mutex<Vec<Thread>>,
}

impl Checkpoints {
    /// Whether the worker of `log` is asked to cut.
    pub fn due(&self, log: &WorkerLog) -> bool {
        self.requested.load(Ordering::SeqCst) > log.cut
    }

    /// Hands the worker's log over (emptying it), with the next offsets of its Kafka
    /// partitions and its current input time. `last`: the worker is stopping.
    pub fn cut(
        &self,
        log: &mut WorkerLog,
        worker: usize,
        kafka: Option<&BTreeMap<i32, i64>>,
        current: Time,
        last: bool,
    ) {
        let requested = self.requested.load(Ordering::SeqCst);
        log.cut = requested;
        let cut = Cut {
            sequence: if last { u64::MAX } else { requested },
            worker,
            purchases: std::mem::take(&mut log.purchases),
            bad: std::mem::take(&mut log.bad),
            kafka: kafka.cloned().unwrap_or_default(),
            time_ms: log.max_time_ms.max(current as i64),
        };
        // The checkpointer is gone only when the process is failing anyway.
        let _ = self.cuts.send(cut);
    }

    /// Makes a request unpark the calling thread (a worker that parks while idle).
    pub fn wake_on_request(&self) {
        self.parked.lock().push(std::thread::current());
    }

    fn request(&self, sequence: u64) {
        self.requested.store(sequence, Ordering::SeqCst);
        for thread in self.parked.lock().iter() {
            thread.unpark();
        }
    }
}

/// What the checkpointer writes besides what the workers hand over.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The scoring the lists and sums are for.
    pub scoring: ScoringPrint,
    /// Retention in ms (segments expire as a whole after their last purchase).
    pub retention_ms: i64,
    /// The history read first, if any.
    pub history: Option<HistoryRef>,
    /// The Kafka topic, if the live source is Kafka, and whether its unread partitions start
    /// at their earliest offset.
    pub kafka: Option<(String, bool)>,
    /// This process's seat: (process, processes).
    pub process: (usize, usize),
    /// Worker threads of this process: a checkpoint waits for a cut of each.
    pub workers: usize,
    /// How often.
    pub interval: Duration,
    /// The checkpoint restored at start, if any: the new ones continue it.
    pub restored: Option<Manifest>,
}

/// What the checkpointer works with.
pub struct Sinks {
    /// Where the files go.
    pub store: Store,
    /// The served lists.
    pub table: Arc<ServingTable>,
    /// The dead-letter file.
    pub dead_letter: Arc<DeadLetter>,
    /// Checkpoints start once the backfill is done.
    pub backfill: Arc<BackfillProgress>,
    /// The process's stop signal: a last checkpoint is written on the way out.
    pub stop: Stop,
    /// Checkpoint metrics go here.
    pub metrics: Arc<Metrics>,
}

/// The checkpointer thread.
pub struct Checkpointer {
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the checkpointer; returns what the workers cut through.
    pub fn spawn(setup: Setup, sinks: Sinks) -> std::io::Result<(Arc<Checkpoints>, Checkpointer)> {
        let (cuts, received) = crossbeam_channel::unbounded();
        let checkpoints = Arc::new(Checkpoints {
            requested: AtomicU64::new(0),
            cuts,
            parked: Mutex::new(Vec::new()),
        });
        let stats = Arc::new(Stats::default());
        stats.register(&sinks.metrics);
        let mut writer = Writer::new(setup, sinks, stats);
        let handle = checkpoints.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || writer.run(&handle, &received))?;
        Ok((checkpoints, Checkpointer { thread }))
    }

    /// Waits for the last checkpoint (written once the workers have stopped).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the checkpoint thread panicked; the last checkpoint stays in force");
        }
    }
}

/// Checkpoint figures for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    written: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    last_ms: AtomicU64,
    last_bytes: AtomicU64,
    last_duration_us: AtomicU64,
    state_bytes: AtomicU64,
}

/// Reads one figure of [`Stats`].
type ReadStat = fn(&Stats) -> f64;

impl Stats {
    fn register(self: &Arc<Self>, metrics: &Metrics) {
        metrics.register_counter(
            "topsellers_checkpoints_total",
            "Checkpoints written.",
            self.written.clone(),
        );
        metrics.register_counter(
            "topsellers_checkpoint_failures_total",
            "Checkpoints that could not be written (the previous one stays in force).",
            self.failures.clone(),
        );
        let gauges: [(&str, &str, ReadStat); 4] = [
            (
                "topsellers_checkpoint_last_timestamp_seconds",
                "Wall-clock time the last checkpoint was written (Unix seconds).",
                |s| s.last_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "topsellers_checkpoint_last_duration_seconds",
                "How long writing the last checkpoint took.",
                |s| s.last_duration_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "topsellers_checkpoint_last_bytes",
                "Bytes the last checkpoint wrote (what changed since the one before).",
                |s| s.last_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "topsellers_state_bytes",
                "Bytes of every file the last checkpoint consists of.",
                |s| s.state_bytes.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, read) in gauges {
            let stats = self.clone();
            metrics.register_extra(
                name,
                help,
                MetricKind::Gauge,
                Box::new(move || read(&stats)),
            );
        }
    }
}

/// The checkpointer's state.
struct Writer {
    setup: Setup,
    sinks: Sinks,
    stats: Arc<Stats>,
    /// The last manifest written (or restored).
    last: Option<Manifest>,
    /// The one before it (its files are kept too).
    before: Option<Manifest>,
    /// What the workers handed over since the last checkpoint.
    pending: Vec<Cut>,
    /// Per worker, the sequence of its latest cut.
    cut_for: BTreeMap<usize, u64>,
}

impl Writer {
    fn new(setup: Setup, sinks: Sinks, stats: Arc<Stats>) -> Writer {
        Writer {
            last: setup.restored.clone(),
            before: None,
            setup,
            sinks,
            stats,
            pending: Vec::new(),
            cut_for: BTreeMap::new(),
        }
    }

    fn sequence(&self) -> u64 {
        self.last.as_ref().map_or(0, |m| m.sequence)
    }

    fn run(&mut self, checkpoints: &Checkpoints, cuts: &Receiver<Cut>) {
        let stop = self.sinks.stop.clone();
        loop {
            let stopping = stop.wait_timeout(self.setup.interval);
            // Not before the backfill's snapshot is *served*: a checkpoint holds the served
            // lists, and one written between the backfill's end and the publisher applying its
            // snapshot held none, so a restart from it served nothing until caught up.
            if !self.sinks.backfill.is_done() || self.sinks.table.published_time_ms().is_none() {
                if stopping {
                    tracing::info!(
                        "stopped before the first snapshot was served: no checkpoint (a restart \
                         reads the sources again)"
                    );
                    return;
                }
                continue;
            }
            let sequence = self.sequence() + 1;
            checkpoints.request(sequence);
            let complete = if stopping {
                self.collect(cuts, u64::MAX, Some(Instant::now() + LAST_CUTS_WAIT))
            } else {
                self.collect(cuts, sequence, None)
            };
            if !complete {
                tracing::warn!(
                    "stopping: not every worker handed over its last cut within {LAST_CUTS_WAIT:?}; \
                     the last checkpoint ({}) stays in force",
                    self.sequence()
                );
                return;
            }
            self.checkpoint(sequence);
            if stopping || stop.is_stopped() && self.all_last() {
                return;
            }
        }
    }

    /// Receives cuts until every worker has cut for `sequence` (or made its last cut); while
    /// not stopping, a stop turns the wait into one for the last cuts. Whether they came.
    fn collect(
        &mut self,
        cuts: &Receiver<Cut>,
        mut sequence: u64,
        mut deadline: Option<Instant>,
    ) -> bool {
        loop {
            let done = self.cut_for.len() == self.setup.workers
                && self.cut_for.values().all(|&s| s >= sequence);
            if done {
                return true;
            }
            let tick = Duration::from_millis(100);
            match cuts.recv_timeout(tick) {
                Ok(cut) => {
                    self.cut_for.insert(cut.worker, cut.sequence);
                    self.pending.push(cut);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return false;
                    }
                    if deadline.is_none() && self.sinks.stop.is_stopped() {
                        // Workers stop at their next round: wait for their last cuts.
                        sequence = u64::MAX;
                        deadline = Some(Instant::now() + LAST_CUTS_WAIT);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    fn all_last(&self) -> bool {
        self.cut_for.values().all(|&s| s == u64::MAX)
    }

    /// Writes checkpoint `sequence` from the pending cuts.
    fn checkpoint(&mut self, sequence: u64) {
        let started = Instant::now();
        match self.write(sequence) {
            Ok((manifest, written)) => {
                let took = started.elapsed();
                tracing::debug!(
                    sequence,
                    bytes = written,
                    ms = took.as_millis() as u64,
                    "checkpoint written"
                );
                let state_bytes = manifest
                    .segments
                    .iter()
                    .chain(&manifest.lists)
                    .map(|f| f.bytes)
                    .sum();
                self.stats.written.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .last_ms
                    .store(wall_clock_ms().max(0) as u64, Ordering::Relaxed);
                self.stats.last_bytes.store(written, Ordering::Relaxed);
                self.stats
                    .last_duration_us
                    .store(took.as_micros() as u64, Ordering::Relaxed);
                self.stats.state_bytes.store(state_bytes, Ordering::Relaxed);
                let first = self.last.is_none();
                self.before = self.last.replace(manifest);
                if first {
                    // The manifest holds the dead-letter file's length from now on.
                    let _ = self.sinks.store.delete(super::DEAD_LETTER_START);
                }
                self.collect_garbage();
            }
            Err(error) => {
                // What was handed over stays pending: the next checkpoint writes it.
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "cannot write checkpoint {sequence}; retried with the next");
            }
        }
    }

    /// Writes the files and the manifest of checkpoint `sequence`; returns the manifest and
    /// the bytes written.
    fn write(&mut self, sequence: u64) -> Result<(Manifest, u64), StateError> {
        let store = &self.sinks.store;
        let previous = self.last.as_ref();
        let mut written = 0;
        let mut time_ms = previous.map_or(i64::MIN, |m| m.time_ms);
        let mut next = previous
            .and_then(|m| m.kafka.as_ref())
            .map(|k| k.next.clone())
            .unwrap_or_default();
        let mut segments = previous.map(|m| m.segments.clone()).unwrap_or_default();
        let mut bad = Vec::new();
        for (at, cut) in self.pending.iter().enumerate() {
            time_ms = time_ms.max(cut.time_ms);
            next.extend(cut.kafka.iter().map(|(&p, &n)| (p, n)));
            bad.extend(cut.bad.iter().cloned());
            if cut.purchases.is_empty() {
                continue;
            }
            let name = format!("segment-{sequence:012}-w{}-{at}.parquet", cut.worker);
            let bytes = topsellers_sources::writer::parquet_bytes(&cut.purchases, &name).map_err(
                |source| StateError::Store {
                    dir: store.name(),
                    source,
                },
            )?;
            let max_ts = cut
                .purchases
                .iter()
                .map(|p| p.ts_ms)
                .max()
                .unwrap_or(i64::MIN);
            written += bytes.len() as u64;
            segments.push(FileRef::put(
                store,
                name,
                bytes,
                cut.purchases.len() as u64,
                max_ts,
            )?);
        }
        // Segments whose every purchase has expired are no longer needed.
        let retention = self.setup.retention_ms;
        segments.retain(|s| s.max_ts_ms.saturating_add(retention) > time_ms);
        self.merge_segments(&mut segments, sequence, time_ms, &mut written)?;
        let dead_letter_bytes = match self.sinks.dead_letter.append(&bad) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Err(StateError::Store {
                    dir: store.name(),
                    source: topsellers_sources::SourceError::io(
                        &"the dead-letter file".to_owned(),
                        e,
                    ),
                })
            }
        };
        failpoint_pause();
        let lists = match self.write_lists(sequence, previous, &mut written) {
            Ok(lists) => lists,
            Err(error) => return Err(self.undo_dead_letters(error)),
        };
        let manifest = Manifest {
            version: manifest::FORMAT_VERSION,
            sequence,
            written_at_ms: wall_clock_ms(),
            time_ms,
            scoring: self.setup.scoring.clone(),
            history: self.setup.history.clone(),
            kafka: self
                .setup
                .kafka
                .as_ref()
                .map(|(topic, unread_from_earliest)| KafkaPositions {
                    topic: topic.clone(),
                    next,
                    unread_from_earliest: *unread_from_earliest,
                }),
            segments,
            lists,
            dead_letter_bytes,
            process: self.setup.process,
            threads: Some(self.setup.workers),
        };
        if let Err(error) = manifest.write(store) {
            return Err(self.undo_dead_letters(error));
        }
        self.pending.clear();
        Ok((manifest, written))
    }

    /// A checkpoint failed after its bad records were appended: the dead-letter file is cut
    /// back to the last checkpoint's length (the records stay pending, and are appended with
    /// the next one). Returns `error`.
    fn undo_dead_letters(&self, error: StateError) -> StateError {
        if let Some(bytes) = self.last.as_ref().and_then(|m| m.dead_letter_bytes) {
            if let Err(e) = self.sinks.dead_letter.truncate(bytes) {
                tracing::error!(%e, "cannot cut the dead-letter file back after a failed checkpoint");
            }
        }
        error
    }

    /// Merges the oldest [`MERGE`] segments of a level into one of the next, leaving out the
    /// purchases that have expired by `time_ms` (the same purchases otherwise: the checkpoint
    /// stays the same cut).
    fn merge_segments(
        &self,
        segments: &mut Vec<FileRef>,
        sequence: u64,
        time_ms: i64,
        written: &mut u64,
    ) -> Result<(), StateError> {
        let store = &self.sinks.store;
        for level in 0..8 {
            let oldest: Vec<usize> = (0..segments.len())
                .filter(|&at| segments[at].level == level)
                .take(MERGE)
                .collect();
            let bytes: u64 = oldest.iter().map(|&at| segments[at].bytes).sum();
            if oldest.len() < MERGE || bytes > MAX_MERGE_BYTES {
                continue;
            }
            let mut purchases = Vec::new();
            for &at in &oldest {
                let file = &segments[at];
                let read = topsellers_sources::writer::purchases_from_parquet(
                    file.read(store)?,
                    &file.name,
                )
                .map_err(|source| StateError::Store {
                    dir: store.name(),
                    source,
                })?;
                let retention = self.setup.retention_ms;
                purchases.extend(
                    read.into_iter()
                        .filter(|p| p.ts_ms.saturating_add(retention) > time_ms),
                );
            }
            let name = format!("segment-{sequence:012}-merged-l{}.parquet", level + 1);
            let encoded =
                topsellers_sources::writer::parquet_bytes(&purchases, &name).map_err(|source| {
                    StateError::Store {
                        dir: store.name(),
                        source,
                    }
                })?;
            *written += encoded.len() as u64;
            let max_ts = purchases.iter().map(|p| p.ts_ms).max().unwrap_or(i64::MIN);
            let mut merged = FileRef::put(store, name, encoded, purchases.len() as u64, max_ts)?;
            merged.level = level + 1;
            tracing::debug!(
                level,
                files = oldest.len(),
                rows = purchases.len(),
                "merged segments"
            );
            let first = oldest[0];
            for &at in oldest.iter().rev() {
                segments.remove(at);
            }
            segments.insert(first.min(segments.len()), merged);
        }
        Ok(())
    }

    /// The list files of checkpoint `sequence`: the previous ones and a file of the lists that
    /// changed since, or every list anew (the first time, or once there are many files).
    fn write_lists(
        &self,
        sequence: u64,
        previous: Option<&Manifest>,
        written: &mut u64,
    ) -> Result<Vec<FileRef>, StateError> {
        let table = &self.sinks.table;
        let time_ms = table.published_time_ms().unwrap_or(i64::MIN);
        let mut files = previous.map(|m| m.lists.clone()).unwrap_or_default();
        let (lists, whole) = if files.is_empty() || files.len() >= MAX_LIST_FILES {
            // Taken first: what changes from now on is in the next file.
            table.take_changed();
            (table.lists(), true)
        } else {
            (table.take_changed(), false)
        };
        if !whole && lists.is_empty() {
            return Ok(files);
        }
        let name = format!("lists-{sequence:012}.bin");
        let count = lists.len() as u64;
        let bytes = lists::encode(time_ms, lists).map_err(|e| StateError::Store {
            dir: self.sinks.store.name(),
            source: topsellers_sources::SourceError::io(&name, e),
        })?;
        *written += bytes.len() as u64;
        let file = FileRef::put(&self.sinks.store, name, bytes, count, time_ms)?;
        if whole {
            files.clear();
        }
        files.push(file);
        Ok(files)
    }

    /// Removes the files that neither of the last two manifests names, older manifests, and
    /// temporary files of unfinished writes.
    fn collect_garbage(&self) {
        let store = &self.sinks.store;
        let Ok(names) = store.list() else {
            return;
        };
        let kept: Vec<&Manifest> = self.last.iter().chain(&self.before).collect();
        let keep = |name: &str| {
            kept.iter()
                .any(|m| manifest::file_name(m.sequence) == name || m.files().any(|f| f == name))
        };
        for name in names {
            let ours = manifest::sequence_of(&name).is_some()
                || name.starts_with("segment-")
                || name.starts_with("lists-")
                || (name.starts_with('.') && name.ends_with(".tmp"));
            if ours && !keep(&name) {
                if let Err(error) = store.delete(&name) {
                    tracing::warn!(%error, "cannot remove an old state file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use topsellers_model::{RankedItem, ScoreKey, Snapshot, TopKList};
    use topsellers_sinks::TableConfig;
    use topsellers_sources::files::{LakeConfig, S3Config};

    use super::*;
    use crate::config::{Config, Settings};
    use crate::state::restore;

    const DAY_MS: i64 = 86_400_000;

    /// A checkpointer of one worker writing into a fresh directory, with what it needs, not
    /// started: the tests hand it cuts and call [`Writer::checkpoint`] themselves.
    struct Fixture {
        _dir: tempfile::TempDir,
        settings: Settings,
        store: Store,
        writer: Writer,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let settings = Config::default().check("test").unwrap();
        let scoring = settings.scoring();
        let store = Store::open(
            &dir.path().join("state").display().to_string(),
            &S3Config::default(),
        )
        .unwrap();
        let table = Arc::new(ServingTable::new(
            scoring.profiles.clone(),
            scoring.k,
            TableConfig::default(),
        ));
        let setup = Setup {
            scoring: ScoringPrint::of(scoring),
            retention_ms: scoring.retention_ms,
            history: None,
            kafka: Some(("t".into(), false)),
            process: (0, 1),
            workers: 1,
            interval: Duration::from_secs(3600),
            restored: None,
        };
        let sinks = Sinks {
            store: store.clone(),
            table,
            dead_letter: Arc::new(DeadLetter::open(None).unwrap()),
            backfill: Arc::new(BackfillProgress::default()),
            stop: Stop::new(),
            metrics: Arc::new(Metrics::new()),
        };
        let writer = Writer::new(setup, sinks, Arc::new(Stats::default()));
        Fixture {
            _dir: dir,
            settings,
            store,
            writer,
        }
    }

    /// `n` purchases at `ts_ms`, items `first..first + n`.
    fn purchases(first: usize, n: usize, ts_ms: i64) -> Vec<Purchase> {
        (first..first + n)
            .map(|i| Purchase {
                item_id: format!("item-{i}").into(),
                category: format!("books/c{}", i % 50).into(),
                ts_ms,
                quantity: 1 + (i % 3) as i64,
            })
            .collect()
    }

    /// `n` lists of categories `first..first + n`, of ten items each.
    fn lists(first: usize, n: usize) -> Vec<TopKList> {
        (first..first + n)
            .map(|c| TopKList {
                profile: 0,
                category: format!("books/c{c}").into(),
                items: (0..10)
                    .map(|i| RankedItem {
                        item_id: format!("item-{c}-{i}").into(),
                        score: ScoreKey {
                            exp: 10 - i,
                            mantissa: 1.5,
                        },
                        scores: None,
                    })
                    .collect(),
            })
            .collect()
    }

    impl Fixture {
        /// Serves `lists` as of `time_ms`, then writes checkpoint `sequence` of `purchases`
        /// entered up to `time_ms`, partition 0 read up to `offset`; the bytes it wrote.
        fn checkpoint(
            &mut self,
            sequence: u64,
            purchases: Vec<Purchase>,
            lists: Vec<TopKList>,
            time_ms: i64,
            offset: i64,
        ) -> u64 {
            self.writer.sinks.table.apply(&Snapshot {
                time_ms,
                lists,
                whole: false,
            });
            self.writer.pending.push(Cut {
                sequence,
                worker: 0,
                purchases,
                bad: Vec::new(),
                kafka: BTreeMap::from([(0, offset)]),
                time_ms,
            });
            self.writer.checkpoint(sequence);
            assert_eq!(
                self.writer.sequence(),
                sequence,
                "checkpoint {sequence} written"
            );
            self.writer.stats.last_bytes.load(Ordering::Relaxed)
        }

        fn restore(&self) -> Result<Option<restore::Restored>, StateError> {
            restore::load(
                &self.store,
                self.settings.scoring(),
                ((0, 1), 1),
                &LakeConfig::default(),
            )
        }

        fn manifest(&self, sequence: u64) -> Manifest {
            Manifest::read(&self.store, &manifest::file_name(sequence)).unwrap()
        }

        /// The names in the directory that are not manifests.
        fn data_files(&self) -> Vec<String> {
            let mut names: Vec<String> = self
                .store
                .list()
                .unwrap()
                .into_iter()
                .filter(|name| manifest::sequence_of(name).is_none())
                .collect();
            names.sort();
            names
        }
    }

    /// What the manifests `sequences` name, sorted and without repeats.
    fn named(fixture: &Fixture, sequences: &[u64]) -> Vec<String> {
        let mut names: Vec<String> = sequences
            .iter()
            .flat_map(|&s| {
                fixture
                    .manifest(s)
                    .files()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn the_last_two_checkpoints_are_kept_and_nothing_else() {
        let mut f = fixture();
        let retention = f.settings.scoring().retention_ms;
        let t = 400 * DAY_MS;
        f.checkpoint(1, purchases(0, 100, t), lists(0, 20), t, 10);
        // Checkpoint 1's purchases have expired by checkpoint 2's time: 2 no longer names
        // their segment, 1 (kept) still does.
        let t2 = t + retention + 1;
        f.checkpoint(2, purchases(100, 100, t2), lists(0, 20), t2, 20);
        let first_segment = f.manifest(1).segments[0].name.clone();
        assert!(!f.manifest(2).files().any(|name| name == first_segment));
        assert!(f.data_files().contains(&first_segment), "kept for 1");
        f.checkpoint(3, purchases(200, 100, t2), lists(5, 1), t2 + 1, 30);
        let manifests: Vec<String> = Manifest::names(&f.store).unwrap();
        assert_eq!(
            manifests,
            [manifest::file_name(3), manifest::file_name(2)],
            "the last two manifests"
        );
        assert_eq!(f.data_files(), named(&f, &[3, 2]), "their files, no others");
        assert!(!f.data_files().contains(&first_segment), "removed with 1");
        // Every list file written whole again after MAX_LIST_FILES: the old ones go too.
        for sequence in 4..4 + MAX_LIST_FILES as u64 {
            f.checkpoint(
                sequence,
                Vec::new(),
                lists(sequence as usize, 1),
                t2 + 2,
                40,
            );
        }
        let last = 3 + MAX_LIST_FILES as u64;
        assert_eq!(Manifest::names(&f.store).unwrap().len(), 2);
        assert_eq!(f.data_files(), named(&f, &[last, last - 1]));
    }

    #[test]
    fn a_damaged_newest_checkpoint_gives_way_to_the_one_before() {
        let mut f = fixture();
        let t = 400 * DAY_MS;
        f.checkpoint(1, purchases(0, 100, t), lists(0, 20), t, 10);
        f.checkpoint(2, purchases(100, 100, t + 1), lists(3, 2), t + 1, 20);
        let restored = f.restore().unwrap().expect("a checkpoint");
        assert_eq!(restored.manifest.sequence, 2);
        assert_eq!(restored.manifest.kafka.as_ref().unwrap().next[&0], 20);
        assert_eq!(restored.lists.time_ms, t + 1);

        // A data file only the newest names (its own segment), damaged: the one before.
        let own = f.manifest(2).segments.last().unwrap().name.clone();
        assert!(!f.manifest(1).files().any(|name| name == own));
        let bytes = f.store.get(&own).unwrap().unwrap();
        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        f.store.put(&own, damaged).unwrap();
        let restored = f.restore().unwrap().expect("the one before");
        assert_eq!(restored.manifest.sequence, 1);
        assert_eq!(restored.manifest.kafka.as_ref().unwrap().next[&0], 10);
        assert_eq!(restored.lists.time_ms, t, "checkpoint 1's lists");
        f.store.put(&own, bytes).unwrap();
        assert_eq!(f.restore().unwrap().unwrap().manifest.sequence, 2);

        // The newest manifest damaged: the one before.
        let name = manifest::file_name(2);
        let text = String::from_utf8(f.store.get(&name).unwrap().unwrap()).unwrap();
        f.store
            .put(
                &name,
                text.replacen("\"sequence\":2", "\"sequence\":7", 1).into(),
            )
            .unwrap();
        assert_eq!(f.restore().unwrap().unwrap().manifest.sequence, 1);
        // Cut short (a torn write on a store that is not atomic): likewise.
        f.store
            .put(&name, text.as_bytes()[..text.len() / 2].to_vec())
            .unwrap();
        assert_eq!(f.restore().unwrap().unwrap().manifest.sequence, 1);

        // Both damaged (a file they share): refused, never an empty start.
        let shared = f.manifest(1).segments[0].name.clone();
        f.store.put(&shared, b"not parquet".to_vec()).unwrap();
        let error = f.restore().expect_err("no intact checkpoint").to_string();
        assert!(
            error.contains(&name),
            "names the newest damaged file: {error}"
        );
    }

    /// A checkpoint writes what changed since the one before: after a first one of many
    /// purchases and lists, one of a few new purchases and one changed list writes a small
    /// fraction of the bytes (rewriting the whole state each time would not).
    #[test]
    fn a_checkpoint_writes_what_changed_not_the_whole_state() {
        let mut f = fixture();
        let t = 400 * DAY_MS;
        let first = f.checkpoint(1, purchases(0, 20_000, t), lists(0, 500), t, 20_000);
        let second = f.checkpoint(2, purchases(20_000, 20, t + 1), lists(7, 1), t + 1, 20_020);
        let state: u64 = {
            let manifest = f.manifest(2);
            manifest
                .segments
                .iter()
                .chain(&manifest.lists)
                .map(|file| file.bytes)
                .sum()
        };
        assert!(
            second * 20 < first && second * 20 < state,
            "checkpoint 2 wrote {second} bytes, checkpoint 1 {first}, the state is {state}"
        );
        // Nothing new: nothing written but the manifest.
        let third = f.checkpoint(3, Vec::new(), Vec::new(), t + 2, 20_020);
        assert_eq!(third, 0);
    }
}
