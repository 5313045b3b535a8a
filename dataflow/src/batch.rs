//! `topsellers batch`: the lists as of one time, from files, written as JSON Lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
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

/// One output line: `{"profile":"7d","category":"books","rank":1,"item_id":"…","score":12.5}`.
#[derive(Serialize)]
struct Line<'a> {
    profile: &'a str,
    category: &'a str,
    rank: usize,
    item_id: &'a str,
    score: f64,
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
pub fn batch_to_file(config: &Config, as_of: Option<i64>, output: &Path) -> Result<BatchSummary> {
    let started = Instant::now();
    let (summary, lists, profiles) = compute(config, as_of)?;
    let mut out = BufWriter::new(
        File::create(output).with_context(|| format!("cannot create {}", output.display()))?,
    );
    let lines = write_lines(&mut out, &lists, &profiles, summary.as_of_ms)
        .and_then(|lines| out.flush().map(|_| lines))
        .with_context(|| format!("cannot write {}", output.display()))?;
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

/// Runs the dataflow over the files and returns the final lists.
pub fn compute(
    config: &Config,
    as_of: Option<i64>,
) -> Result<(BatchSummary, Vec<TopKList>, Vec<Profile>)> {
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
    let dead_letter = Arc::new(
        DeadLetter::open(config.dead_letter.file()).with_context(|| {
            format!(
                "cannot open the dead-letter file {:?}",
                config.dead_letter.path
            )
        })?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (snapshots, received) =
        crossbeam_channel::bounded::<Snapshot>(config.runtime.snapshot_queue);
    let collector = std::thread::spawn(move || {
        let mut latest = LatestLists::default();
        for snapshot in received {
            latest.extend(snapshot.lists);
        }
        latest
    });
    let shared = Arc::new(Shared::new(
        metrics.clone(),
        dead_letter.clone(),
        stop,
        snapshots,
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
    let results = guards.join();
    shared.backfill_done.store(true, Ordering::SeqCst);
    let _ = reporter.join();
    if let Some(error) = shared.error.lock().take() {
        bail!(error);
    }
    for result in results {
        result.map_err(|e| anyhow!("a worker failed: {e}"))?;
    }
    let skipped = shared.skipped.load(Ordering::Relaxed);
    drop(shared);
    dead_letter.flush();
    let lists = collector
        .join()
        .map_err(|_| anyhow!("the collector thread panicked"))?
        .take_sorted();
    let summary = BatchSummary {
        as_of_ms,
        purchases: metrics.purchases_total(),
        skipped,
        bad_records: metrics.bad_records_total(),
        pruned,
        lines: 0,
    };
    Ok((summary, lists, scoring.profiles))
}

/// Writes one line per (profile, category, rank), scores decayed to `as_of_ms`.
pub fn write_lines(
    out: &mut impl Write,
    lists: &[TopKList],
    profiles: &[Profile],
    as_of_ms: i64,
) -> std::io::Result<u64> {
    let mut lines = 0;
    for list in lists {
        let profile = &profiles[list.profile];
        for (rank, item) in list.items.iter().enumerate() {
            let line = Line {
                profile: &profile.name,
                category: &list.category,
                rank: rank + 1,
                item_id: &item.item_id,
                score: item.score.score_at(as_of_ms, profile.half_life_ms),
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
            lines += 1;
        }
    }
    Ok(lines)
}
