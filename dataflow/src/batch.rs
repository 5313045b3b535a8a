//! `topsellers batch`: the lists as of one time, from files, written as JSON Lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use topsellers_model::{format_rfc3339_ms, LatestLists, Profile, Profiles, Snapshot, TopKList};
use topsellers_sinks::{list_json, Metrics};
use topsellers_sources::files::Pruned;
use topsellers_sources::DeadLetter;

use crate::cli::BatchArgs;
use crate::config::{Config, Settings};
use crate::context::Context;
use crate::error::DriverError;
use crate::job::{self, BatchPlan};
use crate::lake;
use crate::progress;
use crate::stop::Stop;
use crate::workers;

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
pub fn batch(args: &BatchArgs) -> Result<BatchSummary, DriverError> {
    write_batch(&args.config()?, args.as_of, &args.output)
}

/// Computes the lists of `config`'s files as of `as_of` (default: the largest event time in
/// them) and writes them to `output`.
///
/// The lines go to a temporary file beside `output`, renamed once the run has ended without
/// error, so a failed run never leaves half a result under the output's name. They are
/// written while the workers tear their state down.
pub fn batch_to_file(
    config: &Config,
    as_of: Option<i64>,
    output: &Path,
) -> Result<BatchSummary, DriverError> {
    write_batch(&config.clone().check("config")?, as_of, output)
}

/// [`batch_to_file`] with settings already checked.
fn write_batch(
    settings: &Settings,
    as_of: Option<i64>,
    output: &Path,
) -> Result<BatchSummary, DriverError> {
    let started = Instant::now();
    let mut running = Running::start(settings, as_of)?;
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
    std::fs::rename(&partial, output).map_err(|source| DriverError::Output {
        path: output.to_owned(),
        source,
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
fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

/// Writes the lines to `path`; returns how many.
fn write_file(
    path: &Path,
    lists: &[TopKList],
    profiles: &[Profile],
    as_of_ms: i64,
) -> Result<u64, DriverError> {
    let failed = |source| DriverError::Output {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(failed)?);
    write_lines(&mut out, lists, profiles, as_of_ms)
        .and_then(|lines| out.flush().map(|_| lines))
        .map_err(failed)
}

/// Runs the dataflow over the files and returns the final lists.
pub fn compute(
    config: &Config,
    as_of: Option<i64>,
) -> Result<(BatchSummary, Vec<TopKList>, Profiles), DriverError> {
    let settings = config.clone().check("config")?;
    let mut running = Running::start(&settings, as_of)?;
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
    profiles: Profiles,
    metrics: Arc<Metrics>,
    ctx: Arc<Context>,
    snapshots: crossbeam_channel::Receiver<Snapshot>,
    /// Joins the workers.
    joiner: JoinHandle<Result<(), DriverError>>,
    reporter: JoinHandle<()>,
}

impl Running {
    /// Plans the job (the input, `as_of`, the pruning) and starts the workers.
    fn start(settings: &Settings, as_of: Option<i64>) -> Result<Running, DriverError> {
        settings.scoring().apply_max_future();
        if settings.availability.is_set() {
            // The batch output is the lists as ranked (top_k each, no buffer): availability is
            // a serving concern, applied by `run`.
            tracing::warn!(
                "[availability] is ignored by batch: its lists are ranked by purchases only \
                 (every item listed, available or not)"
            );
        }
        let BatchPlan {
            job,
            as_of_ms,
            pruned,
        } = job::plan_batch(settings, as_of)?;
        let metrics = Arc::new(Metrics::new());
        let dead_letter = Arc::new(DeadLetter::open(settings.dead_letter.file()).map_err(
            |source| DriverError::DeadLetter {
                path: settings.dead_letter.path.clone(),
                source,
            },
        )?);
        let (sender, snapshots) = crossbeam_channel::bounded(settings.runtime.snapshot_queue);
        let stop = Stop::new();
        let ctx = Arc::new(Context::new(
            stop.clone(),
            metrics.clone(),
            dead_letter,
            sender,
        ));
        let units = job
            .backfill()
            .map(|b| b.units.as_slice())
            .unwrap_or_default();
        ctx.backfill.expect_units(units);
        let reporter = progress::spawn(ctx.backfill.clone(), lake::workload(units), stop).map_err(
            |source| DriverError::Start {
                what: "the progress thread",
                source,
            },
        )?;
        let workers = workers::start(job, &ctx, settings.runtime.workers, None)?;
        let joiner = std::thread::spawn(move || workers.join());
        Ok(Running {
            as_of_ms,
            pruned,
            profiles: settings.scoring().profiles.clone(),
            metrics,
            ctx,
            snapshots,
            joiner,
            reporter,
        })
    }

    /// Waits for the lists as of `as_of` (the workers publish them once, when the whole input
    /// is in), or for the workers to end without them (an error).
    fn lists(&mut self) -> Result<(BatchSummary, Vec<TopKList>), DriverError> {
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
        if let Some(error) = self.ctx.take_error() {
            return Err(error.into());
        }
        let summary = BatchSummary {
            as_of_ms: self.as_of_ms,
            purchases: self.metrics.purchases_total(),
            skipped: self
                .ctx
                .backfill
                .skipped()
                .load(std::sync::atomic::Ordering::Relaxed),
            bad_records: self.metrics.bad_records_total(),
            pruned: self.pruned,
            lines: 0,
        };
        Ok((summary, latest.take_sorted()))
    }

    /// Waits for the workers to end; returns the profiles, or the first error.
    fn finish(self) -> Result<Profiles, DriverError> {
        // Nothing more is read: a late snapshot must fail to send, not block a worker.
        drop(self.snapshots);
        let joined = self
            .joiner
            .join()
            .map_err(|_| DriverError::Panicked("worker joiner"))?;
        self.ctx.backfill.finish();
        let _ = self.reporter.join();
        if let Some(error) = self.ctx.take_error() {
            return Err(error.into());
        }
        joined?;
        // Every bad record must be in the dead-letter file: a failed write fails the batch.
        self.ctx
            .dead_letter
            .finish()
            .map_err(DriverError::DeadLetterIncomplete)?;
        Ok(self.profiles)
    }
}

/// Writes one line per (profile, category, rank), scores decayed to `as_of_ms`:
/// `{"profile":"7d","category":"books","rank":1,"item_id":"…","score":12.5}`.
///
/// Rendering the lines costs far more than writing them, so two threads render chunks of lists
/// in turn while this one writes the chunks out in order.
pub fn write_lines(
    out: &mut impl Write,
    lists: &[TopKList],
    profiles: &[Profile],
    as_of_ms: i64,
) -> std::io::Result<u64> {
    const LISTS_PER_CHUNK: usize = 256;
    const RENDERERS: usize = 2;
    let chunks: Vec<&[TopKList]> = lists.chunks(LISTS_PER_CHUNK).collect();
    std::thread::scope(|scope| {
        let rendered: Vec<_> = (0..RENDERERS)
            .map(|first| {
                // A chunk or two ahead per renderer: bounded memory.
                let (send, receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
                let chunks = &chunks;
                scope.spawn(move || {
                    for chunk in chunks.iter().skip(first).step_by(RENDERERS) {
                        let mut text = Vec::with_capacity(chunk.len() * 8192);
                        for list in *chunk {
                            list_json::push_rank_lines(
                                &mut text,
                                list,
                                &profiles[list.profile],
                                as_of_ms,
                            );
                        }
                        if send.send(text).is_err() {
                            return; // The writer failed: it reports why.
                        }
                    }
                });
                receive
            })
            .collect();
        for at in 0..chunks.len() {
            let text = rendered[at % RENDERERS]
                .recv()
                .map_err(|_| std::io::Error::other(format!("rendering lists {at} failed")))?;
            out.write_all(&text)?;
        }
        Ok(lists.iter().map(|list| list.items.len() as u64).sum())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use topsellers_model::{Profile, RankedItem, ScoreKey, TopKList};

    use super::write_lines;

    /// Many lists (several chunks per renderer), texts that need escaping, lists without
    /// entries: the lines are those of one `serde_json` object per entry, in order.
    #[test]
    fn lines_equal_one_json_object_per_entry_in_order() {
        let mut rng = SmallRng::seed_from_u64(3);
        let profiles = vec![
            Profile {
                name: "7d".into(),
                half_life_ms: 7 * 86_400_000,
            },
            Profile {
                name: "1\"h".into(),
                half_life_ms: 3_600_000,
            },
        ];
        let texts = ["books", "a/\"quoted\"", "bücher/ä\\b", "tab\there", "x"];
        let lists: Vec<TopKList> = (0..1500)
            .map(|i| TopKList {
                profile: rng.random_range(0..profiles.len()),
                category: format!("{}/{i}", texts[rng.random_range(0..texts.len())]).into(),
                items: (0..rng.random_range(0..12))
                    .map(|j| RankedItem {
                        item_id: Arc::from(format!("{}{j}", texts[rng.random_range(0..5)])),
                        score: ScoreKey {
                            exp: rng.random_range(2900..3000),
                            mantissa: rng.random_range(1.0..2.0),
                        },
                        scores: None,
                    })
                    .collect(),
            })
            .collect();
        let as_of_ms = 1_780_000_000_000;
        let mut want = Vec::new();
        for list in &lists {
            let profile = &profiles[list.profile];
            for (rank, item) in list.items.iter().enumerate() {
                want.push(serde_json::json!({
                    "profile": profile.name,
                    "category": &*list.category,
                    "rank": rank + 1,
                    "item_id": &*item.item_id,
                    "score": item.score.score_at(as_of_ms, profile.half_life_ms),
                }));
            }
        }
        let mut got = Vec::new();
        let lines = write_lines(&mut got, &lists, &profiles, as_of_ms).unwrap();
        let got = String::from_utf8(got).unwrap();
        assert_eq!(lines as usize, want.len());
        assert_eq!(got.lines().count(), want.len());
        for (line, want) in got.lines().zip(&want) {
            let mut parsed: serde_json::Value = serde_json::from_str(line).unwrap();
            // The score to the bit (serde_json's parser may round the last digit).
            let score = line
                .rsplit_once("\"score\":")
                .unwrap()
                .1
                .trim_end_matches('}');
            let want_score = want["score"].as_f64().unwrap();
            assert_eq!(score.parse::<f64>().unwrap(), want_score, "{line}");
            parsed["score"] = want["score"].clone();
            assert_eq!(&parsed, want, "{line}");
            // The documented order of the fields.
            let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap();
            let order = ["profile", "category", "rank", "item_id", "score"].map(at);
            assert!(order.is_sorted(), "{line}");
        }
    }
}
