//! `topsellers run`: backfill, live input, the serving table and HTTP, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use timely::communication::allocator::zero_copy::initialize::CommsGuard;
use timely::WorkerConfig;

use topsellers_sinks::{
    run_publisher, serve, AppState, Changelog, MetricKind, Metrics, Readiness, ServingTable,
};
use topsellers_sources::files::Pruned;
use topsellers_sources::generator::Catalog;
use topsellers_sources::{DeadLetter, SourceConfig};

use crate::cli::RunArgs;
use crate::cluster::{self, Hello, PeerLoss};
use crate::config::Config;
use crate::handover::Handover;
use crate::history;
use crate::kafka_live::KafkaLive;
use crate::progress::{self, Workload};
use crate::render::Expiry;
use crate::worker::{run_worker, Backfill, Job, Live, Shared};

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
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    watcher: JoinHandle<()>,
    workers: timely::communication::WorkerGuards<()>,
    /// The network threads, and what a lost peer reported (clusters only).
    comms: Option<(CommsGuard, PeerLoss)>,
    publisher: JoinHandle<topsellers_sinks::PublishSummary>,
    progress: Option<JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
    http: tokio::task::JoinHandle<()>,
}

/// Starts everything `config` describes and returns once HTTP is listening (the backfill
/// continues in the background: see [`Service::is_ready`]).
pub fn start(config: &Config) -> Result<Service> {
    start_with_stop(config, Arc::new(AtomicBool::new(false)))
}

/// [`start`], stopping when `stop` is set (e.g. by a signal handler).
pub fn start_with_stop(config: &Config, stop: Arc<AtomicBool>) -> Result<Service> {
    let scoring = config.check("config")?;
    let workers = config.runtime.workers;

    let units = history::units(&config.sources, &config.lake)?;
    let kafka_source = config.sources.iter().find_map(|source| match source {
        SourceConfig::Kafka(kafka) => Some(kafka),
        _ => None,
    });
    let history_max_ms = if units.is_empty() {
        None
    } else {
        let max_ms = history::max_event_time(&units, workers, config.lake.prune)?.unwrap_or(0);
        if max_ms < 0 {
            bail!("the input's latest event time {max_ms} is before 1970");
        }
        Some(max_ms)
    };
    // With Kafka after the history, the history owns `ts < T0` and Kafka `ts >= T0`.
    let handover = match kafka_source {
        Some(kafka) => Handover::resolve(
            kafka
                .handover_ms()
                .map_err(|e| anyhow!("kafka source: {e}"))?,
            history_max_ms,
        ),
        None => None,
    };
    if let Some(handover) = handover {
        tracing::info!(
            "hand-over at {} ({} ms): the history owns purchases before it, Kafka from it on",
            topsellers_model::format_rfc3339_ms(handover.t0_ms),
            handover.t0_ms
        );
    }
    let mut pruned = Pruned::default();
    let backfill = match history_max_ms {
        None => None,
        Some(max_ms) => {
            // Without Kafka, everything up to the history's latest event time (inclusive).
            let until_ms = handover.map_or(max_ms, Handover::backfill_until_ms);
            // Purchases at or before `until − retention` have expired by the time the
            // backfill's snapshot is published: neither they nor the units holding only them
            // are read.
            let after_ms = until_ms.saturating_sub(scoring.retention_ms);
            let (units, dropped) = history::prune(units, after_ms, &config.lake);
            pruned = dropped;
            Some(Backfill {
                units,
                until_ms,
                after_ms: Some(after_ms),
            })
        }
    };
    let live = match config
        .sources
        .iter()
        .find(|source| !matches!(source, SourceConfig::Files(_)))
    {
        Some(SourceConfig::Generator(generator)) => {
            let catalog = Catalog::new(generator).context("generator config")?;
            Some(Live::Generator {
                config: generator.clone(),
                catalog: Arc::new(catalog),
            })
        }
        Some(SourceConfig::Kafka(kafka)) => {
            let mut live = KafkaLive::new(kafka).context("kafka source")?;
            live.handover = handover;
            Some(Live::Kafka(live))
        }
        _ => None,
    };
    let kafka = match &live {
        Some(Live::Kafka(kafka)) => Some(kafka.clone()),
        _ => None,
    };

    let metrics = Arc::new(Metrics::new());
    if let Some(kafka) = &kafka {
        kafka.register_metrics(&metrics);
    }
    let dead_letter = Arc::new(
        DeadLetter::open(config.dead_letter.file()).with_context(|| {
            format!(
                "cannot open the dead-letter file {:?}",
                config.dead_letter.path
            )
        })?,
    );
    register_pruned(&metrics, pruned);
    let table = Arc::new(ServingTable::new(
        scoring.profiles.clone(),
        scoring.k,
        config.table.clone(),
    )?);
    let readiness = Arc::new(Readiness::new(if backfill.is_some() {
        "backfill starting"
    } else {
        "starting"
    }));
    let changelog = Changelog::open_with_brokers(
        &config.changelog,
        kafka.as_ref().map(|k| &*k.config.brokers),
    )
    .context("cannot open the changelog")?;
    if let Some(failures) = changelog.as_ref().and_then(Changelog::topic_failures) {
        metrics.register_counter(
            "topsellers_changelog_topic_failures_total",
            "Top-k changes that could not be written to the changelog topic.",
            failures,
        );
    }

    // HTTP first, so that a bad or busy address fails before any work starts.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime.http_threads)
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&config.http.listen))
        .with_context(|| {
            format!(
                "cannot listen on {} (http.listen / --http)",
                config.http.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState::new(
        table.clone(),
        metrics.clone(),
        readiness.clone(),
        &config.http,
    ));
    let http = runtime.spawn(serve(listener, state, stopped(stop.clone())));

    let (snapshots, received) = crossbeam_channel::bounded(config.runtime.snapshot_queue);
    let publisher = {
        let (table, metrics) = (table.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || run_publisher(received, table, changelog, metrics))?
    };
    let shared = Arc::new(Shared::new(
        metrics.clone(),
        dead_letter,
        stop.clone(),
        snapshots,
    ));
    if let Some(backfill) = &backfill {
        shared.expect_units(&backfill.units);
        metrics.register_counter(
            "topsellers_backfill_skipped_total",
            "History purchases outside the backfill's window: expired by its cut-off, or at or after the hand-over time (Kafka owns them).",
            shared.skipped.clone(),
        );
    }
    let workload = backfill.as_ref().map(|b| history::workload(&b.units));
    let progress = workload.map(|work| progress::spawn(shared.clone(), work));
    let backfill_until = backfill.as_ref().map(|b| b.until_ms);
    let seat = config
        .runtime
        .cluster
        .as_ref()
        .filter(|seat| seat.is_cluster());
    let hello = Hello {
        process: seat.map_or(0, |s| s.process) as u64,
        processes: seat.map_or(1, |s| s.workers.process.len()) as u64,
        threads: workers as u64,
        config: fingerprint(config),
        units: backfill.as_ref().map_or(0, |b| b.units.len()) as u64,
        until_ms: backfill_until.unwrap_or(i64::MIN),
    };
    let job = Job {
        scoring,
        expiry: Expiry::Retract,
        backfill,
        live,
        exit_after_backfill: false,
        epoch_ms: config.epoch_ms(),
        batch_size: config.runtime.batch_size,
        leaders: seat.map_or(vec![0], |s| s.workers.leaders()),
    };
    let worker_shared = shared.clone();
    let work = move |worker: &mut timely::worker::Worker| run_worker(worker, &job, &worker_shared);
    let (workers, comms) = match seat {
        None => {
            let guards = timely::execute(
                timely::Config {
                    communication: timely::CommunicationConfig::Process(workers),
                    worker: WorkerConfig::default(),
                },
                work,
            );
            (guards, None)
        }
        Some(seat) => {
            readiness.set_progress(format!(
                "connecting to the other {} processes",
                seat.workers.process.len() - 1
            ));
            let loss = {
                let shared = shared.clone();
                PeerLoss::new(move |message| report_loss(&shared, message))
            };
            let sockets = cluster::connect(seat, hello, loss.clone())?;
            tracing::info!(
                "process {} of {} connected to its peers",
                seat.process,
                seat.workers.process.len()
            );
            let (builders, comms) = cluster::allocators(sockets, seat.process, workers)
                .context("cannot start the cluster's network threads")?;
            let guards = timely::execute::execute_from(
                builders,
                Box::new(()),
                WorkerConfig::default(),
                work,
            );
            (guards, Some((comms, loss)))
        }
    };
    let workers = workers.map_err(|e| anyhow!("cannot start the workers: {e}"))?;
    let local_workers = config.runtime.workers;
    let watcher = {
        let (table, readiness, shared, stop) = (
            table.clone(),
            readiness.clone(),
            shared.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("readiness".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let live = kafka.as_ref().map(|k| (k, local_workers));
                    track_readiness(
                        &table,
                        &readiness,
                        &shared,
                        backfill_until,
                        workload,
                        live,
                        addr,
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            })?
    };
    Ok(Service {
        addr,
        table,
        metrics,
        readiness,
        stop,
        shared,
        watcher,
        workers,
        comms,
        publisher,
        progress,
        runtime,
        http,
    })
}

/// A hash of what must be the same on every process: scoring and sources.
fn fingerprint(config: &Config) -> u64 {
    let text = format!("{:?}{:?}", config.scoring, config.sources);
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// Fails the run with `message` (a lost peer), unless this process is stopping anyway: a peer
/// that stops closes its connections, and when the whole cluster stops, the others' signal may
/// arrive a moment later than its.
fn report_loss(shared: &Shared, message: String) {
    let grace = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < grace {
        if shared.stop.load(Ordering::SeqCst) {
            tracing::info!("while stopping: {message}");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.fail(message);
}

impl Service {
    /// Asks everything to stop (as SIGINT does).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the backfill is served and the live source is running.
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Waits until the service is ready (backfill served), at most `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        while !self.is_ready() {
            if let Some(error) = self.shared.error.lock().clone() {
                bail!("topsellers failed before it was ready: {error}");
            }
            if started.elapsed() > timeout {
                bail!(
                    "topsellers was not ready within {timeout:?}: {}",
                    self.readiness.reason()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits until stopped, then shuts down in order: workers, publisher, HTTP (bounded drain).
    pub fn wait(self) -> Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.shutdown()
    }

    /// Stops and shuts down now.
    pub fn shutdown(self) -> Result<()> {
        self.stop();
        let Service {
            shared,
            watcher,
            workers,
            comms,
            publisher,
            progress,
            runtime,
            http,
            ..
        } = self;
        let results = workers.join();
        let lost = comms.and_then(|(comms, loss)| {
            close_network(comms);
            loss.message().map(str::to_owned)
        });
        let _ = watcher.join();
        let error = shared.error.lock().take();
        shared.dead_letter.flush();
        // The last sender goes with `shared`: the publisher then drains and ends.
        drop(shared);
        let summary = publisher
            .join()
            .map_err(|_| anyhow!("the publisher thread panicked"))?;
        if let Some(progress) = progress {
            let _ = progress.join();
        }
        let _ =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(6), http).await });
        runtime.shutdown_timeout(Duration::from_secs(1));
        tracing::info!(snapshots = summary.snapshots, "stopped");
        // The first error says why. A peer that is gone makes the workers panic; one that
        // stopped cleanly (the whole cluster stopping) does not.
        if let Some(error) = error {
            bail!(error);
        }
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            bail!(lost.unwrap_or_else(|| format!("a worker failed: {e}")));
        }
        Ok(())
    }
}

/// Joins the network threads, for at most a few seconds: after a peer is lost they panic (by
/// design) or wait on a connection that is gone, and this process is exiting anyway.
fn close_network(comms: CommsGuard) {
    let (done, joined) = crossbeam_channel::bounded::<()>(1);
    let closing = std::thread::Builder::new()
        .name("timely:close".into())
        .spawn(move || {
            drop(comms);
            let _ = done.send(());
        });
    if closing.is_ok() {
        // Disconnected: a network thread panicked (a peer is gone); that is reported already.
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            joined.recv_timeout(Duration::from_secs(5))
        {
            tracing::warn!("the network threads did not finish within 5 s; leaving them");
        }
    }
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

/// Turns `/readyz` ready once the backfill's snapshot is served (and live input runs; for
/// Kafka: every worker connected and caught up, and that served); until then it says how far
/// the backfill is.
fn track_readiness(
    table: &ServingTable,
    readiness: &Readiness,
    shared: &Shared,
    backfill_until: Option<i64>,
    workload: Option<Workload>,
    kafka: Option<(&KafkaLive, usize)>,
    addr: SocketAddr,
) {
    if let Some(work) = workload {
        let rows = shared.rows_read.load(Ordering::Relaxed);
        shared
            .metrics
            .set_backfill_progress(rows, work.rows.unwrap_or(0));
    }
    if readiness.is_ready() {
        return;
    }
    let published = table.published_time_ms();
    let caught_up = shared.backfill_done.load(Ordering::SeqCst)
        && match backfill_until {
            Some(until) => published.is_some_and(|p| p >= until),
            None => published.is_some(),
        };
    if let Some(reason) = kafka.and_then(|(kafka, workers)| kafka.not_ready(workers, published)) {
        if shared.backfill_done.load(Ordering::SeqCst) {
            readiness.set_progress(reason);
            return;
        }
    }
    if caught_up {
        readiness.set_ready("backfill done, live");
        tracing::info!("ready: serving on http://{addr}/v1/top");
    } else if let Some(work) = workload {
        readiness.set_progress(progress::describe(shared, work));
    }
}

/// Resolves once `stop` is set.
async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `topsellers run`: start, log where to look, serve until SIGINT/SIGTERM.
pub fn run(args: &RunArgs) -> Result<()> {
    let config = args.config()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    cluster::launcher::stop_with_launcher(stop.clone());
    let service = start_with_stop(&config, stop)?;
    tracing::info!(
        "topsellers is up: curl http://{addr}/v1/top (home page), http://{addr}/v1/categories, http://{addr}/metrics",
        addr = service.addr
    );
    service.wait()
}
