//! `topsellers batch`: the lists as of one time, from files, written as JSON Lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::RecvTimeoutError;
use timely::WorkerConfig;

use topsellers_model::{
    format_rfc3339_ms, parse_time_ms, LatestLists, Profile, Snapshot, TopKList,
};
use topsellers_sinks::Metrics;
use topsellers_sources::files::{FilesConfig, Pruned};
use topsellers_sources::{DeadLetter, SourceConfig};

use crate::cli::BatchArgs;
use crate::config::Config;
use crate::history;
use crate::progress;
use crate::render::Expiry;
use crate::worker::{run_worker, Backfill, Job, Shared};

/// What a batch run did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSummary {
    /// The time the lists are as of (epoch ms).
    pub as_of_ms: i64,
    /// Valid purchases counted (inside the retention window up to `as_of`).
    pub purchases: u64,
    /// Valid purchases outside the window (after `as_of`, or expired), skipped.
    pub skipped: u64,
    /// Bad records (in the dead-letter file).
    pub bad_records: u64,
    /// Files and row groups not read at all: wholly older than `as_of − retention`.
    pub pruned: Pruned,
    /// Lines written.
    pub lines: u64,
}

/// Runs `topsellers batch` from its command-line arguments.
pub fn batch(args: &BatchArgs) -> Result<BatchSummary> {
    let mut config = args.config()?;
    config.sources = vec![SourceConfig::Files(FilesConfig::new(args.inputs.clone()))];
    let as_of = args
        .as_of
        .as_deref()
        .map(|text| parse_time_ms(text).context("--as-of"))
        .transpose()?;
    batch_to_file(&config, as_of, &args.output)
}

/// Computes the lists of `config`'s files as of `as_of` (default: the largest event time in
/// them) and writes them to `output`.
///
/// The lines go to a temporary file beside `output`, renamed once the run has ended without
/// error, so a failed run never leaves half a result under the output's name. They are
/// written while the workers tear their state down.
pub fn batch_to_file(config: &Config, as_of: Option<i64>, output: &Path) -> Result<BatchSummary> {
    let started = Instant::now();
    let mut running = Running::start(config, as_of)?;
    let (summary, lists) = match running.lists() {
        Ok(done) => done,
        Err(e) => {
            // The workers have stopped (or published nothing): join them before failing.
            let _ = running.finish();
            return Err(e);
        }
    };
    let partial = partial_path(output);
    let writing = Instant::now();
    let written = write_file(&partial, &lists, &running.profiles, summary.as_of_ms);
    tracing::debug!("output written in {:.2}s", writing.elapsed().as_secs_f64());
    let finished = running.finish();
    let lines = match written.and_then(|lines| finished.map(|_| lines)) {
        Ok(lines) => lines,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, output).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            output.display()
        )
    })?;
    let summary = BatchSummary { lines, ..summary };
    tracing::info!(
        "batch: {} purchases as of {} ({} skipped outside the window, {} bad records), {} lines to {} in {:.2}s",
        summary.purchases,
        format_rfc3339_ms(summary.as_of_ms),
        summary.skipped,
        summary.bad_records,
        summary.lines,
        output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// `output` with `.partial` appended to its name.
fn partial_path(output: &Path) -> std::path::PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

/// Writes the lines to `path`; returns how many.
fn write_file(path: &Path, lists: &[TopKList], profiles: &[Profile], as_of_ms: i64) -> Result<u64> {
    let mut out = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    write_lines(&mut out, lists, profiles, as_of_ms)
        .and_then(|lines| out.flush().map(|_| lines))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the dataflow over the files and returns the final lists.
pub fn compute(
    config: &Config,
    as_of: Option<i64>,
) -> Result<(BatchSummary, Vec<TopKList>, Vec<Profile>)> {
    let mut running = Running::start(config, as_of)?;
    let lists = running.lists();
    let finished = running.finish();
    let (summary, lists) = lists?;
    let profiles = finished?;
    Ok((summary, lists, profiles))
}

/// A batch dataflow under way.
struct Running {
    as_of_ms: i64,
    pruned: Pruned,
    profiles: Vec<Profile>,
    metrics: Arc<Metrics>,
    dead_letter: Arc<DeadLetter>,
    shared: Arc<Shared>,
    snapshots: crossbeam_channel::Receiver<Snapshot>,
    /// Joins the workers.
    joiner: std::thread::JoinHandle<Result<()>>,
    reporter: std::thread::JoinHandle<()>,
}

impl Running {
    /// Lists the input, works out `as_of` and the pruning, and starts the workers.
    fn start(config: &Config, as_of: Option<i64>) -> Result<Running> {
        let scoring = config.check("config")?;
        let workers = config.runtime.workers;
        let units = history::units(&config.sources, &config.lake)?;
        let as_of_ms = match as_of {
            Some(as_of) => as_of,
            None => history::max_event_time(&units, workers, config.lake.prune)?.unwrap_or(0),
        };
        if as_of_ms < 0 {
            bail!("as-of time {as_of_ms} is before 1970");
        }
        let after_ms = as_of_ms.saturating_sub(scoring.retention_ms);
        let (units, pruned) = history::prune(units, after_ms, &config.lake);
        let metrics = Arc::new(Metrics::new());
        let dead_letter = Arc::new(DeadLetter::open(config.dead_letter.file()).with_context(
            || {
                format!(
                    "cannot open the dead-letter file {:?}",
                    config.dead_letter.path
                )
            },
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, snapshots) =
            crossbeam_channel::bounded::<Snapshot>(config.runtime.snapshot_queue);
        let shared = Arc::new(Shared::new(
            metrics.clone(),
            dead_letter.clone(),
            stop,
            sender,
        ));
        shared.expect_units(&units);
        let reporter = progress::spawn(shared.clone(), history::workload(&units));
        let job = Job {
            expiry: Expiry::PreFiltered,
            backfill: Some(Backfill {
                units,
                until_ms: as_of_ms,
                after_ms: Some(after_ms),
            }),
            live: None,
            exit_after_backfill: true,
            epoch_ms: config.epoch_ms(),
            batch_size: config.runtime.batch_size,
            leaders: vec![0],
            scoring: scoring.clone(),
        };
        let worker_shared = shared.clone();
        let guards = timely::execute(
            timely::Config {
                communication: timely::CommunicationConfig::Process(workers),
                worker: WorkerConfig::default(),
            },
            move |worker| run_worker(worker, &job, &worker_shared),
        )
        .map_err(|e| anyhow!("cannot start the workers: {e}"))?;
        let joiner = std::thread::spawn(move || {
            for result in guards.join() {
                result.map_err(|e| anyhow!("a worker failed: {e}"))?;
            }
            Ok(())
        });
        Ok(Running {
            as_of_ms,
            pruned,
            profiles: scoring.profiles,
            metrics,
            dead_letter,
            shared,
            snapshots,
            joiner,
            reporter,
        })
    }

    /// Waits for the lists as of `as_of` (the workers publish them once, when the whole input
    /// is in), or for the workers to end without them (an error).
    fn lists(&mut self) -> Result<(BatchSummary, Vec<TopKList>)> {
        let mut latest = LatestLists::default();
        loop {
            match self.snapshots.recv_timeout(Duration::from_millis(20)) {
                Ok(snapshot) => {
                    let last = snapshot.time_ms >= self.as_of_ms;
                    latest.extend(snapshot.lists);
                    if last {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) if !self.joiner.is_finished() => {}
                // The workers have ended: whatever they published is in the channel.
                Err(_) => {
                    latest.extend(self.snapshots.try_iter().flat_map(|s| s.lists));
                    break;
                }
            }
        }
        if let Some(error) = self.shared.error.lock().clone() {
            bail!(error);
        }
        let summary = BatchSummary {
            as_of_ms: self.as_of_ms,
            purchases: self.metrics.purchases_total(),
            skipped: self.shared.skipped.load(Ordering::Relaxed),
            bad_records: self.metrics.bad_records_total(),
            pruned: self.pruned,
            lines: 0,
        };
        Ok((summary, latest.take_sorted()))
    }

    /// Waits for the workers to end; returns the profiles, or the first error.
    fn finish(self) -> Result<Vec<Profile>> {
        // Nothing more is read: a late snapshot must fail to send, not block a worker.
        drop(self.snapshots);
        let joined = self
            .joiner
            .join()
            .map_err(|_| anyhow!("the worker joiner panicked"))?;
        self.shared.backfill_done.store(true, Ordering::SeqCst);
        let _ = self.reporter.join();
        if let Some(error) = self.shared.error.lock().take() {
            bail!(error);
        }
        joined?;
        self.dead_letter.flush();
        Ok(self.profiles)
    }
}

/// Writes one line per (profile, category, rank), scores decayed to `as_of_ms`:
/// `{"profile":"7d","category":"books","rank":1,"item_id":"…","score":12.5}`.
pub fn write_lines(
    out: &mut impl Write,
    lists: &[TopKList],
    profiles: &[Profile],
    as_of_ms: i64,
) -> std::io::Result<u64> {
    let mut lines = 0;
    // What the lines of one list share is rendered (and escaped) once per list.
    let mut head = Vec::new();
    for list in lists {
        let profile = &profiles[list.profile];
        head.clear();
        head.extend_from_slice(b"{\"profile\":");
        serde_json::to_writer(&mut head, &profile.name)?;
        head.extend_from_slice(b",\"category\":");
        serde_json::to_writer(&mut head, &*list.category)?;
        head.extend_from_slice(b",\"rank\":");
        for (rank, item) in list.items.iter().enumerate() {
            out.write_all(&head)?;
            write!(out, "{}", rank + 1)?;
            out.write_all(b",\"item_id\":")?;
            serde_json::to_writer(&mut *out, &*item.item_id)?;
            out.write_all(b",\"score\":")?;
            let score = item.score.score_at(as_of_ms, profile.half_life_ms);
            serde_json::to_writer(&mut *out, &score)?;
            out.write_all(b"}\n")?;
            lines += 1;
        }
    }
    Ok(lines)
}
