//! `topsellers run`: plan, serve, start the workers; then serve until stopped, and shut down in
//! order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use topsellers_model::format_rfc3339_ms;
use topsellers_sinks::{Changelog, MetricKind, Metrics, Readiness, ServingTable};
use topsellers_sources::files::Pruned;
use topsellers_sources::DeadLetter;

use crate::cluster::{self, Hello};
use crate::config::{Config, Settings};
use crate::context::Context;
use crate::error::DriverError;
use crate::job::{self, Job, Live, ServePlan};
use crate::lake;
use crate::progress::{self, BackfillProgress};
use crate::serve::{watch_readiness, ReadyWhen, Serving};
use crate::state::checkpoint::{Checkpointer, Setup, Sinks};
use crate::state::manifest::ScoringPrint;
use crate::state::{restore, Restored, Store};
use crate::stop::Stop;
use crate::workers::{self, Membership, Workers};

/// A running service: workers, publisher and HTTP server.
pub struct Service {
    /// Where HTTP is served (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    /// The table HTTP serves.
    pub table: Arc<ServingTable>,
    /// The process's counters.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` says.
    pub readiness: Arc<Readiness>,
    ctx: Arc<Context>,
    watcher: JoinHandle<()>,
    workers: Workers,
    serving: Serving,
    progress: Option<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
}

/// Starts everything `config` describes and returns once HTTP is listening (the backfill
/// continues in the background: see [`Service::is_ready`]).
pub fn start(config: &Config) -> Result<Service, DriverError> {
    start_with_stop(config, Stop::new())
}

/// [`start`], stopping when `stop` is set (e.g. by a signal handler).
pub fn start_with_stop(config: &Config, stop: Stop) -> Result<Service, DriverError> {
    let settings = config.clone().check("config")?;
    Service::start(&settings, stop)
}

impl Service {
    /// Starts the service `settings` describe, stopping when `stop` is set.
    pub fn start(settings: &Settings, stop: Stop) -> Result<Service, DriverError> {
        let started = Instant::now();
        settings.scoring().apply_max_future();
        let state = open_state(settings)?;
        let restored = state.as_ref().and_then(|(_, restored)| restored.as_ref());
        let from_checkpoint = restored.is_some();
        let ServePlan {
            job,
            pruned,
            history,
        } = job::plan_serve(settings, restored)?;
        let kafka = match &job.mode {
            job::Mode::Serve {
                live: Some(Live::Kafka(kafka)),
                ..
            } => Some(kafka.clone()),
            _ => None,
        };
        let metrics = Arc::new(Metrics::new());
        if let Some(kafka) = &kafka {
            kafka.register_metrics(&metrics);
        }
        let (dead_letter, changelog) = open_outputs(settings, kafka.as_ref(), &metrics)?;
        register_pruned(&metrics, pruned);
        let (table, availability) = serving_table(settings, &metrics);
        let restored_note = match &state {
            Some((_, Some(restored))) => {
                Some(restore_outputs(restored, &table, &dead_letter, &metrics)?)
            }
            Some((store, None)) => {
                crate::state::begin(store, &dead_letter)?;
                None
            }
            None => None,
        };
        // After the restore, which cuts the dead-letter file back; before HTTP listens, so
        // that nothing is served before the files are read.
        let availability_read = crate::availability::start(
            settings,
            availability.as_ref(),
            kafka.as_ref().map(|k| &*k.config.brokers),
            (&table, &dead_letter, &stop),
        )?;
        let backfill = job.backfill();
        let readiness = Arc::new(Readiness::new(match (&restored_note, backfill) {
            (Some(note), _) => note.clone(),
            (None, Some(_)) => "backfill starting".into(),
            (None, None) => "starting".into(),
        }));
        let (snapshots, received) = crossbeam_channel::bounded(settings.runtime.snapshot_queue);
        let mut ctx = Context::new(stop.clone(), metrics.clone(), dead_letter, snapshots);
        let serving = Serving::start(
            &settings.http,
            (settings.experiments(), &settings.movers),
            settings.runtime.http_threads,
            &table,
            &metrics,
            &readiness,
            (received, ctx.served_cell()),
            changelog,
            &stop,
        )?;
        let checkpointer = match state {
            Some((store, restored)) => {
                let setup = checkpoint_setup(settings, &job, history, restored);
                let (checkpoints, checkpointer, progress) =
                    start_checkpointer(setup, store, &table, &ctx)?;
                ctx = ctx.with_checkpoints(checkpoints, progress);
                Some(checkpointer)
            }
            None => None,
        };
        let ctx = Arc::new(ctx);
        let when = ReadyWhen {
            backfill_until: backfill.map(|b| b.until_ms),
            workload: backfill.map(|b| lake::workload(&b.units)),
            kafka: kafka.map(|kafka| (kafka, settings.runtime.workers)),
            restored: restored_note,
            started,
            availability: availability_read,
        };
        let progress = start_progress(backfill, &when, &ctx, &metrics)?;
        let workers = start_workers(settings, job, &ctx, &readiness, from_checkpoint)?;
        let addr = serving.addr;
        let watcher = watch_readiness(table.clone(), readiness.clone(), ctx.clone(), when, addr)?;
        Ok(Service {
            addr,
            table,
            metrics,
            readiness,
            ctx,
            watcher,
            workers,
            serving,
            progress,
            checkpointer,
        })
    }

    /// Asks everything to stop (as SIGINT does).
    pub fn stop(&self) {
        self.ctx.stop.stop();
    }

    /// Whether the backfill is served and the live source is running.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Waits until the service is ready (backfill served), at most `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), DriverError> {
        let started = Instant::now();
        while !self.is_ready() {
            if let Some(error) = self.ctx.error_message() {
                return Err(DriverError::NotReady(format!(
                    "topsellers failed before it was ready: {error}"
                )));
            }
            if started.elapsed() > timeout {
                return Err(DriverError::NotReady(format!(
                    "topsellers was not ready within {timeout:?}: {}",
                    self.readiness.reason()
                )));
            }
            self.ctx.stop.wait_timeout(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits until stopped, then shuts down in order: workers, publisher, HTTP (bounded drain).
    pub fn wait(self) -> Result<(), DriverError> {
        self.ctx.stop.wait();
        self.shutdown()
    }

    /// Stops and shuts down now.
    pub fn shutdown(self) -> Result<(), DriverError> {
        self.stop();
        let Service {
            ctx,
            watcher,
            workers,
            serving,
            progress,
            checkpointer,
            ..
        } = self;
        let joined = workers.join();
        // The workers have handed over their last cuts: the last checkpoint is written now.
        if let Some(checkpointer) = checkpointer {
            checkpointer.join();
        }
        let _ = watcher.join();
        let error = ctx.take_error();
        ctx.dead_letter.flush();
        // The last snapshot sender goes with `ctx`: the publisher then drains and ends.
        drop(ctx);
        let summary = serving.shutdown()?;
        if let Some(progress) = progress {
            let _ = progress.join();
        }
        tracing::info!(snapshots = summary.snapshots, "stopped");
        // The first error says why.
        match error {
            Some(error) => Err(error.into()),
            None => joined,
        }
    }
}

/// The serving table, hiding unavailable items when `[availability]` has an input (then with
/// the map it filters with).
fn serving_table(
    settings: &Settings,
    metrics: &Metrics,
) -> (
    Arc<ServingTable>,
    Option<Arc<topsellers_sinks::Availability>>,
) {
    let scoring = settings.scoring();
    let availability = crate::availability::open(&settings.availability, metrics);
    let mut table = ServingTable::new(scoring.profiles.clone(), scoring.k, settings.table.clone())
        .with_compression(settings.http.compression);
    if let Some(availability) = &availability {
        table = table.with_availability(availability.clone());
    }
    (Arc::new(table), availability)
}

/// This process's seat: (process, processes) of its cluster, `(0, 1)` alone.
fn seat(settings: &Settings) -> (usize, usize) {
    settings
        .runtime
        .cluster
        .as_ref()
        .filter(|seat| seat.is_cluster())
        .map_or((0, 1), |seat| (seat.process, seat.layout.process.len()))
}

/// The state directory and the checkpoint to start from, if `[state] dir` is set.
fn open_state(settings: &Settings) -> Result<Option<(Store, Option<Restored>)>, DriverError> {
    let Some(dir) = &settings.state.dir else {
        return Ok(None);
    };
    let store = Store::open(dir, &settings.lake.s3)?;
    let seat = seat(settings);
    let restored = restore::load(
        &store,
        settings.scoring(),
        (seat, settings.runtime.workers),
        &settings.lake,
    )?;
    match &restored {
        Some(restored) => tracing::info!(
            "state {}: restoring checkpoint {} of {} (lists as of {}, {} segments)",
            store.name(),
            restored.manifest.sequence,
            format_rfc3339_ms(restored.manifest.written_at_ms),
            format_rfc3339_ms(restored.lists.time_ms),
            restored.manifest.segments.len()
        ),
        None => tracing::info!(
            "state {}: no checkpoint yet, starting from the sources",
            store.name()
        ),
    }
    Ok(Some((store, restored)))
}

/// Serves the restored lists at once, cuts the dead-letter file back to the checkpoint's
/// length, and shows the restored Kafka offsets; returns what `/readyz` says meanwhile.
fn restore_outputs(
    restored: &Restored,
    table: &ServingTable,
    dead_letter: &DeadLetter,
    metrics: &Metrics,
) -> Result<String, DriverError> {
    if !restored.lists.lists.is_empty() || restored.lists.time_ms != i64::MIN {
        table.apply(&restored.lists);
    }
    if let Some(bytes) = restored.manifest.dead_letter_bytes {
        dead_letter
            .truncate(bytes)
            .map_err(|source| DriverError::Output {
                path: "the dead-letter file".into(),
                source,
            })?;
    }
    if let Some(kafka) = &restored.manifest.kafka {
        let (topic, next) = (kafka.topic.clone(), kafka.next.clone());
        metrics.register_family(
            "topsellers_kafka_restored_offset",
            "Per partition, the next offset the restored checkpoint resumed from.",
            MetricKind::Gauge,
            Box::new(move || {
                next.iter()
                    .map(|(p, n)| (format!("topic=\"{topic}\",partition=\"{p}\""), *n as f64))
                    .collect()
            }),
        );
    }
    Ok(format!(
        "restored the lists of checkpoint {} (as of {}), catching up",
        restored.manifest.sequence,
        format_rfc3339_ms(restored.lists.time_ms.max(0))
    ))
}

/// What the checkpointer writes besides the workers' cuts.
fn checkpoint_setup(
    settings: &Settings,
    job: &Job,
    history: Option<crate::state::manifest::HistoryRef>,
    restored: Option<Restored>,
) -> Setup {
    let kafka = match &job.mode {
        job::Mode::Serve {
            live: Some(Live::Kafka(kafka)),
            ..
        } => Some((kafka.config.topic.clone(), kafka.handover.is_some())),
        _ => None,
    };
    let seat = seat(settings);
    Setup {
        scoring: ScoringPrint::of(settings.scoring()),
        retention_ms: settings.scoring().retention_ms,
        history,
        kafka,
        process: seat,
        workers: settings.runtime.workers,
        interval: settings.state.interval,
        restored: restored.map(|r| r.manifest),
    }
}

/// Starts the checkpointer; returns what the workers cut through and the backfill progress it
/// watches (checkpoints start once the backfill is done).
fn start_checkpointer(
    setup: Setup,
    store: Store,
    table: &Arc<ServingTable>,
    ctx: &Context,
) -> Result<
    (
        Arc<crate::state::Checkpoints>,
        Checkpointer,
        Arc<BackfillProgress>,
    ),
    DriverError,
> {
    let progress = Arc::new(BackfillProgress::default());
    let sinks = Sinks {
        store,
        table: table.clone(),
        dead_letter: ctx.dead_letter.clone(),
        backfill: progress.clone(),
        stop: ctx.stop.clone(),
        metrics: ctx.metrics.clone(),
    };
    let (checkpoints, checkpointer) =
        Checkpointer::spawn(setup, sinks).map_err(|source| DriverError::Start {
            what: "the checkpoint thread",
            source,
        })?;
    Ok((checkpoints, checkpointer, progress))
}

/// The backfill's progress reporter (and its counters in `/metrics`), if there is a backfill.
fn start_progress(
    backfill: Option<&crate::input::backfill::Backfill>,
    when: &ReadyWhen,
    ctx: &Context,
    metrics: &Metrics,
) -> Result<Option<JoinHandle<()>>, DriverError> {
    let (Some(backfill), Some(work)) = (backfill, when.workload) else {
        return Ok(None);
    };
    ctx.backfill.expect_units(&backfill.units);
    metrics.register_counter(
        "topsellers_backfill_skipped_total",
        "History purchases outside the backfill's window: expired by its cut-off, or at or after the hand-over time (Kafka owns them).",
        ctx.backfill.skipped().clone(),
    );
    progress::spawn(ctx.backfill.clone(), work, ctx.stop.clone())
        .map(Some)
        .map_err(|source| DriverError::Start {
            what: "the progress thread",
            source,
        })
}

/// The dead-letter file and the changelog (with its topic's failures in `/metrics`).
fn open_outputs(
    settings: &Settings,
    kafka: Option<&crate::input::kafka::KafkaInput>,
    metrics: &Metrics,
) -> Result<(Arc<DeadLetter>, Option<Changelog>), DriverError> {
    let dead_letter = DeadLetter::open(settings.dead_letter.file()).map_err(|source| {
        DriverError::DeadLetter {
            path: settings.dead_letter.path.clone(),
            source,
        }
    })?;
    metrics.register_counter(
        "topsellers_dead_letter_write_failures_total",
        "Bad records that could not be written to the dead-letter file (e.g. a full disk).",
        dead_letter.write_failures(),
    );
    let changelog =
        Changelog::open_with_brokers(&settings.changelog, kafka.map(|k| &*k.config.brokers))
            .map_err(DriverError::Changelog)?;
    if let Some(failures) = changelog.as_ref().and_then(Changelog::topic_failures) {
        metrics.register_counter(
            "topsellers_changelog_topic_failures_total",
            "Top-k changes that could not be written to the changelog topic.",
            failures,
        );
    }
    Ok((Arc::new(dead_letter), changelog))
}

/// Starts the workers; in a cluster, connects to the peers first.
/// `restored`: the job starts from a checkpoint of this process's state.
fn start_workers(
    settings: &Settings,
    job: Job,
    ctx: &Arc<Context>,
    readiness: &Readiness,
    restored: bool,
) -> Result<Workers, DriverError> {
    let threads = settings.runtime.workers;
    let Some(seat) = settings
        .runtime
        .cluster
        .as_ref()
        .filter(|seat| seat.is_cluster())
    else {
        return workers::start(job, ctx, threads, None);
    };
    let backfill = job.backfill();
    let hello = Hello {
        process: seat.process as u64,
        processes: seat.layout.process.len() as u64,
        threads: threads as u64,
        config: fingerprint(settings),
        units: backfill.map_or(0, |b| b.shared_units()) as u64,
        until_ms: backfill.map_or(i64::MIN, |b| b.until_ms),
        restored: u64::from(restored),
    };
    readiness.set_progress(format!(
        "connecting to the other {} processes",
        seat.layout.process.len() - 1
    ));
    workers::start(job, ctx, threads, Some(Membership { seat, hello }))
}

/// A hash of what must be the same on every process: scoring and sources.
fn fingerprint(config: &Config) -> u64 {
    // The candidates kept per list (availability's buffer) shape the merged lists too.
    let buffer = config.availability.is_set().then_some(config.table.buffer);
    let text = format!("{:?}{:?}{buffer:?}", config.scoring, config.sources);
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// Makes what pruning skipped visible in `/metrics`.
fn register_pruned(metrics: &Metrics, pruned: Pruned) {
    let counters = [
        (
            "topsellers_backfill_pruned_files_total",
            "Files of the history not read at all: wholly older than the retention.",
            pruned.files,
        ),
        (
            "topsellers_backfill_pruned_row_groups_total",
            "Parquet row groups of the history not read at all: wholly older than the retention.",
            pruned.row_groups,
        ),
        (
            "topsellers_backfill_pruned_rows_total",
            "Rows in the pruned Parquet row groups.",
            pruned.rows,
        ),
    ];
    for (name, help, value) in counters {
        metrics.register_extra(
            name,
            help,
            MetricKind::Counter,
            Box::new(move || value as f64),
        );
    }
}

/// `topsellers run`: start, log where to look, serve until SIGINT/SIGTERM.
pub fn run(settings: &Settings, stop: Stop) -> Result<(), DriverError> {
    cluster::launcher::stop_with_launcher(stop.clone());
    let service = Service::start(settings, stop.clone())?;
    tracing::info!(
        "listening on http://{}: /readyz answers 503 until the lists are served",
        service.addr
    );
    // "Up" only once it serves: before, that URL answers 503.
    while !service.is_ready() {
        if stop.wait_timeout(Duration::from_millis(100)) {
            return service.wait();
        }
    }
    tracing::info!(
        "topsellers is up: curl http://{addr}/v1/top (home page), http://{addr}/v1/categories, http://{addr}/metrics",
        addr = service.addr
    );
    service.wait()
}
