//! The serving side of `run`: the HTTP server, the publisher thread that applies snapshots to
//! the table and the changelog, and the thread that keeps `/readyz` up to date.

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use topsellers_model::Snapshot;
use topsellers_sinks::{
    run_publisher, serve, AppState, Changelog, Experiments, HttpConfig, Metrics, MoversConfig,
    PublishSummary, Readiness, ServingTable,
};

use crate::context::Context;
use crate::error::DriverError;
use crate::input::kafka::KafkaInput;
use crate::progress::{self, Workload};
use crate::stop::Stop;

/// How long in-flight HTTP requests may take to finish once stopping, at most.
const HTTP_DRAIN: Duration = Duration::from_secs(6);

/// How often `/readyz` and the backfill gauges are brought up to date.
const READINESS_TICK: Duration = Duration::from_millis(20);

/// HTTP and the publisher, running.
pub struct Serving {
    /// Where HTTP is served (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    http: tokio::task::JoinHandle<()>,
    publisher: JoinHandle<PublishSummary>,
}

impl Serving {
    /// Binds HTTP first, so that a bad or busy address fails before any work starts, then
    /// serves `table` until `stop`, and starts the publisher on `snapshots` (it ends once every
    /// sender is gone), which notes in `served` the time of each snapshot it applied.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: &HttpConfig,
        (experiments, movers): (&Experiments, &MoversConfig),
        threads: usize,
        table: &Arc<ServingTable>,
        metrics: &Arc<Metrics>,
        readiness: &Arc<Readiness>,
        snapshots: (Receiver<Snapshot>, Arc<AtomicI64>),
        changelog: Option<Changelog>,
        stop: &Stop,
    ) -> Result<Serving, DriverError> {
        let (snapshots, served) = snapshots;
        // Before any socket: the connection cap is kept below the limit in force.
        topsellers_sinks::fd_limit::raise_open_file_limit();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("http")
            .enable_all()
            .build()
            .map_err(|source| DriverError::Start {
                what: "the HTTP runtime",
                source,
            })?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&config.listen))
            .and_then(|listener| listener.local_addr().map(|addr| (listener, addr)));
        let (listener, addr) = listener.map_err(|source| DriverError::Listen {
            address: config.listen.clone(),
            source,
        })?;
        let state = Arc::new(
            AppState::new(table.clone(), metrics.clone(), readiness.clone(), config)
                .with_experiments(experiments.clone())
                .with_movers(movers.clone()),
        );
        let shutdown = {
            let stop = stop.clone();
            async move { stop.stopped().await }
        };
        let http = runtime.spawn(serve(listener, state, shutdown));
        let publisher = {
            let (table, metrics) = (table.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("publisher".into())
                .spawn(move || run_publisher(snapshots, table, changelog, metrics, served))
                .map_err(|source| DriverError::Start {
                    what: "the publisher thread",
                    source,
                })?
        };
        Ok(Serving {
            addr,
            runtime,
            http,
            publisher,
        })
    }

    /// Waits for the publisher (which ends once every snapshot sender is gone: drop them
    /// first), then for in-flight HTTP requests (bounded).
    pub fn shutdown(self) -> Result<PublishSummary, DriverError> {
        let summary = self
            .publisher
            .join()
            .map_err(|_| DriverError::Panicked("publisher"))?;
        let http = self.http;
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(HTTP_DRAIN, http).await });
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(summary)
    }
}

/// What `/readyz` waits for.
pub struct ReadyWhen {
    /// The backfill's cut-off: its snapshot must be served.
    pub backfill_until: Option<i64>,
    /// The backfill's size, for progress.
    pub workload: Option<Workload>,
    /// The Kafka source and this process's worker count: connected and caught up.
    pub kafka: Option<(KafkaInput, usize)>,
    /// What `/readyz` says of a restored checkpoint until ready (its lists are served).
    pub restored: Option<String>,
    /// When the process started (the restore's duration is measured from it).
    pub started: Instant,
    /// Set once the availability topic has been read to its end (`None`: no topic).
    pub availability: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Keeps `/readyz` (and the backfill gauges) up to date until `stop`.
pub fn watch_readiness(
    table: Arc<ServingTable>,
    readiness: Arc<Readiness>,
    ctx: Arc<Context>,
    when: ReadyWhen,
    addr: SocketAddr,
) -> Result<JoinHandle<()>, DriverError> {
    std::thread::Builder::new()
        .name("readiness".into())
        .spawn(move || {
            let mut restored_at: Option<Duration> = None;
            loop {
                if when.restored.is_some() && restored_at.is_none() && ctx.backfill.is_done() {
                    // The state is back in the operators: how long that took.
                    let took = when.started.elapsed();
                    restored_at = Some(took);
                    tracing::info!("state restored in {:.2}s", took.as_secs_f64());
                    ctx.metrics.register_extra(
                        "topsellers_restore_duration_seconds",
                        "Seconds from the start until the restored checkpoint's state was back in the operators.",
                        topsellers_sinks::MetricKind::Gauge,
                        Box::new(move || took.as_secs_f64()),
                    );
                }
                track_readiness(&table, &readiness, &ctx, &when, addr);
                if ctx.stop.wait_timeout(READINESS_TICK) {
                    return;
                }
            }
        })
        .map_err(|source| DriverError::Start {
            what: "the readiness thread",
            source,
        })
}

/// Turns `/readyz` ready once the backfill's snapshot is served (and live input runs; for
/// Kafka: every worker connected and caught up, and that served); until then it says how far
/// the backfill is.
fn track_readiness(
    table: &ServingTable,
    readiness: &Readiness,
    ctx: &Context,
    when: &ReadyWhen,
    addr: SocketAddr,
) {
    if let Some(work) = when.workload {
        ctx.metrics
            .set_backfill_progress(ctx.backfill.rows_read(), work.rows.unwrap_or(0));
    }
    let kafka = when.kafka.as_ref();
    if readiness.is_ready() {
        // A hand-over gap can show after ready (a partition's first purchase comes later).
        if let Some(note) = kafka.and_then(|(kafka, _)| kafka.ready_note()) {
            let note = format!("backfill done, live; {note}");
            if readiness.reason() != note {
                readiness.set_ready(note);
            }
        }
        return;
    }
    let published = table.published_time_ms();
    let backfill_done = ctx.backfill.is_done();
    let caught_up = backfill_done
        && match when.backfill_until {
            Some(until) => published.is_some_and(|p| p >= until),
            None => published.is_some(),
        };
    if let Some(reason) = kafka.and_then(|(kafka, workers)| kafka.not_ready(*workers, published)) {
        if backfill_done {
            readiness.set_progress(reason);
            return;
        }
    }
    let availability_behind = when
        .availability
        .as_ref()
        .is_some_and(|read| !read.load(std::sync::atomic::Ordering::Acquire));
    if caught_up && availability_behind {
        readiness.set_progress("reading the availability topic to its end");
    } else if caught_up {
        readiness.set_ready("backfill done, live");
        tracing::info!("ready: serving on http://{addr}/v1/top");
    } else if let Some(work) = when.workload {
        let progress = progress::describe(&ctx.backfill, work);
        readiness.set_progress(match &when.restored {
            Some(restored) => format!("{restored}: reading the state back, {progress}"),
            None => progress,
        });
    }
}
