//! `topsellers run`: backfill, live input, the serving table and HTTP, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use timely::WorkerConfig;

use topsellers_sinks::{
    run_publisher, serve, AppState, Changelog, MetricKind, Metrics, Readiness, ServingTable,
};
use topsellers_sources::generator::Catalog;
use topsellers_sources::{DeadLetter, SourceConfig};

use crate::cli::RunArgs;
use crate::config::Config;
use crate::history;
use crate::kafka_live::KafkaLive;
use crate::progress;
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

    let units = history::units(&config.sources)?;
    let backfill = if units.is_empty() {
        None
    } else {
        let until_ms = history::max_event_time(&units, workers)?.unwrap_or(0);
        if until_ms < 0 {
            bail!("the input's latest event time {until_ms} is before 1970");
        }
        Some(Backfill {
            units,
            until_ms,
            after_ms: None,
        })
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
            Some(Live::Kafka(KafkaLive::new(kafka).context("kafka source")?))
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
        metrics.register_extra(
            "topsellers_changelog_topic_failures_total",
            "Top-k changes that could not be written to the changelog topic.",
            MetricKind::Counter,
            Box::new(move || failures.load(Ordering::Relaxed) as f64),
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
    let progress = backfill
        .as_ref()
        .map(|b| progress::spawn(shared.clone(), history::workload(&b.units)));
    let backfill_until = backfill.as_ref().map(|b| b.until_ms);
    let job = Job {
        scoring,
        expiry: Expiry::Retract,
        backfill,
        live,
        exit_after_backfill: false,
        epoch_ms: config.epoch_ms(),
        batch_size: config.runtime.batch_size,
        leaders: vec![0],
    };
    let worker_shared = shared.clone();
    let workers = timely::execute(
        timely::Config {
            communication: timely::CommunicationConfig::Process(workers),
            worker: WorkerConfig::default(),
        },
        move |worker| run_worker(worker, &job, &worker_shared),
    )
    .map_err(|e| anyhow!("cannot start the workers: {e}"))?;
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
                    track_readiness(&table, &readiness, &shared, backfill_until, live, addr);
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
        publisher,
        progress,
        runtime,
        http,
    })
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
            publisher,
            progress,
            runtime,
            http,
            ..
        } = self;
        let results = workers.join();
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
        for result in results {
            result.map_err(|e| anyhow!("a worker failed: {e}"))?;
        }
        match error {
            Some(error) => Err(anyhow!(error)),
            None => Ok(()),
        }
    }
}

/// Turns `/readyz` ready once the backfill's snapshot is served (and live input runs; for
/// Kafka: every worker connected and caught up, and that served).
fn track_readiness(
    table: &ServingTable,
    readiness: &Readiness,
    shared: &Shared,
    backfill_until: Option<i64>,
    kafka: Option<(&KafkaLive, usize)>,
    addr: SocketAddr,
) {
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
    } else if backfill_until.is_some() {
        let rows = shared.rows_read.load(Ordering::Relaxed);
        readiness.set_progress(format!("backfill: {rows} rows read"));
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
    let service = start_with_stop(&config, stop)?;
    tracing::info!(
        "topsellers is up: curl http://{addr}/v1/top (home page), http://{addr}/v1/categories, http://{addr}/metrics",
        addr = service.addr
    );
    service.wait()
}
