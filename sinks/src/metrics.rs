//! Process-wide counters and gauges, cheap to bump, rendered as Prometheus text (format 0.0.4).
//!
//! The exposition is written here rather than by `prometheus-client`: that crate encodes only
//! OpenMetrics (counters typed without their `_total` suffix, a closing `# EOF`, another
//! content type; adding the Prometheus format is client_rust PR #293, unmerged), and the
//! served format is the Prometheus text format its scrapers and tests read. The hot path is
//! atomics either way (the HTTP counters a lock-free table per route and status).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::process_metrics::ProcessSample;

/// The routes HTTP requests are counted under (`route` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// `/v1/top…`
    Top,
    /// `/v1/categories`
    Categories,
    /// `/v1/movers…`
    Movers,
    /// `/healthz`
    Healthz,
    /// `/readyz`
    Readyz,
    /// `/metrics`
    Metrics,
    /// `/v1/stream` (counted when the stream starts)
    Stream,
    /// `/` and `/assets/…` (the live page)
    Page,
    /// `/openapi.json`
    OpenApi,
    /// Anything else.
    Other,
}

impl Route {
    /// Every route, in label order.
    pub const ALL: [Route; 10] = [
        Route::Top,
        Route::Categories,
        Route::Movers,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Stream,
        Route::Page,
        Route::OpenApi,
        Route::Other,
    ];

    /// The `route` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Top => "top",
            Route::Categories => "categories",
            Route::Movers => "movers",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Stream => "stream",
            Route::Page => "page",
            Route::OpenApi => "openapi",
            Route::Other => "other",
        }
    }
}

/// Upper bounds (seconds) of the request-duration histogram's buckets (`le`), +Inf aside.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One route's request durations: counts per bucket (not cumulative; the last is +Inf) and
/// the sum in nanoseconds.
#[derive(Default)]
struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let at = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, route: Route) {
        let name = "topsellers_http_request_duration_seconds";
        let route = route.as_str();
        let mut cumulative = 0;
        for (at, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(at)
                .map_or_else(|| "+Inf".to_owned(), |le| le.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {cumulative}");
    }
}

/// Status codes counted in the lock-free table; others go to a small locked map.
const COMMON_STATUSES: [u16; 7] = [200, 304, 400, 404, 405, 500, 503];

/// Whether an extra metric is a counter or a gauge (`# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// The value of an extra metric, read at scrape time.
pub type ValueFn = Box<dyn Fn() -> f64 + Send + Sync>;

/// The samples of a labelled metric family, read at scrape time: each is the label set
/// without braces (`topic="t",partition="0"`) and the value.
pub type SamplesFn = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

/// How an extra metric is read.
enum ExtraValue {
    /// One unlabelled sample.
    One(ValueFn),
    /// Labelled samples.
    Family(SamplesFn),
}

/// A metric registered by another part of the program.
struct Extra {
    name: String,
    help: String,
    kind: MetricKind,
    value: ExtraValue,
}

/// Everything `/metrics` reports. Share it with `Arc`; every update is an atomic operation.
pub struct Metrics {
    purchases_total: AtomicU64,
    bad_records_total: AtomicU64,
    ignored_records_total: AtomicU64,
    snapshots_total: AtomicU64,
    watermark_ms: AtomicI64,
    last_publish_wall_ms: AtomicI64,
    backfill_rows: AtomicU64,
    backfill_total_rows: AtomicU64,
    http: [[AtomicU64; COMMON_STATUSES.len()]; Route::ALL.len()],
    http_uncommon: Mutex<BTreeMap<(Route, u16), u64>>,
    latency: [Latency; Route::ALL.len()],
    extras: RwLock<Vec<Extra>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("purchases_total", &self.purchases_total())
            .field("bad_records_total", &self.bad_records_total())
            .field("snapshots_total", &self.snapshots_total())
            .field("watermark_ms", &self.watermark_ms())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All counters at zero, no watermark, no publish yet.
    pub fn new() -> Metrics {
        Metrics {
            purchases_total: AtomicU64::new(0),
            bad_records_total: AtomicU64::new(0),
            ignored_records_total: AtomicU64::new(0),
            snapshots_total: AtomicU64::new(0),
            watermark_ms: AtomicI64::new(i64::MIN),
            last_publish_wall_ms: AtomicI64::new(i64::MIN),
            backfill_rows: AtomicU64::new(0),
            backfill_total_rows: AtomicU64::new(0),
            http: Default::default(),
            http_uncommon: Mutex::new(BTreeMap::new()),
            latency: Default::default(),
            extras: RwLock::new(Vec::new()),
        }
    }

    /// Counts `n` valid purchases ingested.
    pub fn add_purchases(&self, n: u64) {
        self.purchases_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bad records.
    pub fn add_bad_records(&self, n: u64) {
        self.bad_records_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` ignored records (e.g. quantity 0).
    pub fn add_ignored_records(&self, n: u64) {
        self.ignored_records_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one published snapshot.
    pub fn inc_snapshots(&self) {
        self.add_snapshots(1);
    }

    /// Counts `n` published snapshots.
    pub fn add_snapshots(&self, n: u64) {
        self.snapshots_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the event time the published snapshot is complete up to.
    pub fn set_watermark_ms(&self, ms: i64) {
        self.watermark_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets the wall-clock time of the last publish.
    pub fn set_last_publish_wall_ms(&self, ms: i64) {
        self.last_publish_wall_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets the backfill progress: rows read so far and rows in all (0 if unknown).
    pub fn set_backfill_progress(&self, rows_read: u64, rows_total: u64) {
        self.backfill_rows.store(rows_read, Ordering::Relaxed);
        self.backfill_total_rows
            .store(rows_total, Ordering::Relaxed);
    }

    /// Counts one HTTP request answered with `status` on `route` in `elapsed` (the handler's
    /// time, from the request's head to the response's).
    pub fn count_request(&self, route: Route, status: u16, elapsed: Duration) {
        self.latency[route as usize].observe(elapsed);
        match COMMON_STATUSES.iter().position(|&common| common == status) {
            Some(at) => {
                self.http[route as usize][at].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                *self
                    .http_uncommon
                    .lock()
                    .entry((route, status))
                    .or_insert(0) += 1
            }
        }
    }

    /// Valid purchases ingested.
    pub fn purchases_total(&self) -> u64 {
        self.purchases_total.load(Ordering::Relaxed)
    }

    /// Bad records seen.
    pub fn bad_records_total(&self) -> u64 {
        self.bad_records_total.load(Ordering::Relaxed)
    }

    /// Ignored records seen.
    pub fn ignored_records_total(&self) -> u64 {
        self.ignored_records_total.load(Ordering::Relaxed)
    }

    /// Snapshots published.
    pub fn snapshots_total(&self) -> u64 {
        self.snapshots_total.load(Ordering::Relaxed)
    }

    /// The published watermark, if any.
    pub fn watermark_ms(&self) -> Option<i64> {
        Some(self.watermark_ms.load(Ordering::Relaxed)).filter(|&ms| ms != i64::MIN)
    }

    /// The wall-clock time of the last publish, if any.
    pub fn last_publish_wall_ms(&self) -> Option<i64> {
        Some(self.last_publish_wall_ms.load(Ordering::Relaxed)).filter(|&ms| ms != i64::MIN)
    }

    /// Backfill progress: (rows read, rows in all).
    pub fn backfill_progress(&self) -> (u64, u64) {
        (
            self.backfill_rows.load(Ordering::Relaxed),
            self.backfill_total_rows.load(Ordering::Relaxed),
        )
    }

    /// Requests answered with `status` on `route`.
    pub fn requests(&self, route: Route, status: u16) -> u64 {
        match COMMON_STATUSES.iter().position(|&common| common == status) {
            Some(at) => self.http[route as usize][at].load(Ordering::Relaxed),
            None => self
                .http_uncommon
                .lock()
                .get(&(route, status))
                .copied()
                .unwrap_or(0),
        }
    }

    /// Adds a metric computed at scrape time, e.g. a Kafka consumer lag. `name` should start
    /// with `topsellers_` and be unique.
    pub fn register_extra(&self, name: &str, help: &str, kind: MetricKind, value_fn: ValueFn) {
        self.extras.write().push(Extra {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            value: ExtraValue::One(value_fn),
        });
    }

    /// Adds a counter that reads `count` at scrape time (a counter kept by a source or sink).
    pub fn register_counter(&self, name: &str, help: &str, count: Arc<AtomicU64>) {
        self.register_extra(
            name,
            help,
            MetricKind::Counter,
            Box::new(move || count.load(Ordering::Relaxed) as f64),
        );
    }

    /// Adds a labelled metric family computed at scrape time, e.g. a lag per Kafka partition.
    /// Label values must be escaped already.
    pub fn register_family(&self, name: &str, help: &str, kind: MetricKind, samples: SamplesFn) {
        self.extras.write().push(Extra {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            value: ExtraValue::Family(samples),
        });
    }

    /// Renders every metric in the Prometheus text format (version 0.0.4). Times are
    /// seconds with a millisecond fraction; `now_wall_ms` is the wall clock for the lag.
    pub fn render_prometheus(&self, now_wall_ms: i64) -> String {
        let mut out = String::with_capacity(4096);
        let counters = [
            (
                "topsellers_purchases_total",
                "Valid purchases ingested.",
                self.purchases_total(),
            ),
            (
                "topsellers_bad_records_total",
                "Records that broke the data contract.",
                self.bad_records_total(),
            ),
            (
                "topsellers_ignored_records_total",
                "Valid records that change nothing (quantity 0).",
                self.ignored_records_total(),
            ),
            (
                "topsellers_snapshots_total",
                "Snapshots published to the serving table.",
                self.snapshots_total(),
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {value}");
        }
        let seconds = |ms: i64| ms as f64 / 1000.0;
        let watermark = self.watermark_ms().map(seconds);
        let last_publish = self.last_publish_wall_ms();
        let gauges = [
            (
                "topsellers_watermark_seconds",
                "Event time the published snapshot is complete up to (Unix seconds).",
                watermark,
            ),
            (
                "topsellers_last_publish_timestamp_seconds",
                "Wall-clock time of the last publish (Unix seconds).",
                last_publish.map(seconds),
            ),
            (
                "topsellers_publish_lag_seconds",
                "Wall clock minus the time of the last publish.",
                last_publish.map(|ms| seconds(now_wall_ms.saturating_sub(ms))),
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            if let Some(value) = value {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        let (rows_read, rows_total) = self.backfill_progress();
        header(
            &mut out,
            "topsellers_backfill_rows_read",
            "Rows read by the backfill so far.",
            "gauge",
        );
        let _ = writeln!(out, "topsellers_backfill_rows_read {rows_read}");
        header(
            &mut out,
            "topsellers_backfill_rows_planned",
            "Rows the backfill will read in all (0 if unknown).",
            "gauge",
        );
        let _ = writeln!(out, "topsellers_backfill_rows_planned {rows_total}");

        header(
            &mut out,
            "topsellers_http_requests_total",
            "HTTP requests answered, by route and status.",
            "counter",
        );
        let mut by_label: BTreeMap<(Route, u16), u64> = self.http_uncommon.lock().clone();
        for route in Route::ALL {
            for (at, status) in COMMON_STATUSES.iter().enumerate() {
                let count = self.http[route as usize][at].load(Ordering::Relaxed);
                if count > 0 {
                    by_label.insert((route, *status), count);
                }
            }
        }
        for ((route, status), count) in by_label {
            let _ = writeln!(
                out,
                "topsellers_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                route.as_str()
            );
        }

        header(
            &mut out,
            "topsellers_http_request_duration_seconds",
            "Time to answer an HTTP request (routing to response), by route.",
            "histogram",
        );
        for route in Route::ALL {
            self.latency[route as usize].render(&mut out, route);
        }
        header(
            &mut out,
            "topsellers_build_info",
            "The running build: its version (always 1).",
            "gauge",
        );
        let _ = writeln!(
            out,
            "topsellers_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(process) = ProcessSample::read() {
            process.render(&mut out);
        }

        for extra in self.extras.read().iter() {
            header(&mut out, &extra.name, &extra.help, extra.kind.as_str());
            match &extra.value {
                ExtraValue::One(value) => sample(&mut out, &extra.name, value()),
                ExtraValue::Family(samples) => {
                    for (labels, value) in samples() {
                        sample(&mut out, &format!("{}{{{labels}}}", extra.name), value);
                    }
                }
            }
        }
        out
    }
}

/// Writes one sample line (`NaN`, `+Inf`, `-Inf` as the format spells them).
fn sample(out: &mut String, series: &str, value: f64) {
    let _ = match value {
        v if v.is_nan() => writeln!(out, "{series} NaN"),
        v if v.is_infinite() => writeln!(out, "{series} {}Inf", if v > 0.0 { "+" } else { "-" }),
        v => writeln!(out, "{series} {v}"),
    };
}

/// Writes the `# HELP` and `# TYPE` lines (help text escaped as the format asks).
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The sample value of an unlabelled or labelled series, parsed from the text.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_counters_and_gauges() {
        let metrics = Metrics::new();
        let text = metrics.render_prometheus(0);
        assert_eq!(sample(&text, "topsellers_purchases_total"), Some(0.0));
        assert_eq!(sample(&text, "topsellers_watermark_seconds"), None);
        assert!(text.contains("# TYPE topsellers_watermark_seconds gauge"));

        metrics.add_purchases(5);
        metrics.add_purchases(2);
        metrics.add_bad_records(1);
        metrics.add_ignored_records(3);
        metrics.inc_snapshots();
        metrics.set_watermark_ms(1_763_816_400_123);
        metrics.set_last_publish_wall_ms(10_000);
        metrics.set_backfill_progress(1_200_000, 10_000_000);
        metrics.count_request(Route::Top, 200, Duration::from_micros(50));
        metrics.count_request(Route::Top, 200, Duration::from_millis(3));
        metrics.count_request(Route::Top, 304, Duration::from_secs(9));
        metrics.count_request(Route::Other, 418, Duration::ZERO);
        let text = metrics.render_prometheus(12_500);
        assert_eq!(sample(&text, "topsellers_purchases_total"), Some(7.0));
        assert_eq!(sample(&text, "topsellers_bad_records_total"), Some(1.0));
        assert_eq!(sample(&text, "topsellers_ignored_records_total"), Some(3.0));
        assert_eq!(sample(&text, "topsellers_snapshots_total"), Some(1.0));
        assert!(
            text.contains("topsellers_watermark_seconds 1763816400.123\n"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "topsellers_last_publish_timestamp_seconds"),
            Some(10.0)
        );
        assert_eq!(sample(&text, "topsellers_publish_lag_seconds"), Some(2.5));
        assert_eq!(
            sample(&text, "topsellers_backfill_rows_read"),
            Some(1_200_000.0)
        );
        assert_eq!(
            sample(&text, "topsellers_backfill_rows_planned"),
            Some(10_000_000.0)
        );
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    "topsellers_http_request_duration_seconds_bucket{{route=\"top\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.0001"), Some(1.0));
        assert_eq!(bucket("0.0025"), Some(1.0));
        assert_eq!(bucket("0.005"), Some(2.0));
        assert_eq!(bucket("2.5"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(3.0));
        assert_eq!(
            sample(
                &text,
                "topsellers_http_request_duration_seconds_count{route=\"top\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                "topsellers_http_request_duration_seconds_sum{route=\"top\"}"
            ),
            Some(9.00305)
        );
        assert!(text.contains("topsellers_build_info{version=\""), "{text}");
        assert_eq!(
            sample(
                &text,
                "topsellers_http_requests_total{route=\"top\",status=\"200\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "topsellers_http_requests_total{route=\"top\",status=\"304\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "topsellers_http_requests_total{route=\"other\",status=\"418\"}"
            ),
            Some(1.0)
        );
        assert_eq!(metrics.requests(Route::Top, 200), 2);
        assert_eq!(metrics.requests(Route::Other, 418), 1);
        assert_eq!(metrics.requests(Route::Healthz, 200), 0);
        // Every line is a comment or `name[{labels}] value`.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }

    #[test]
    fn extras() {
        let metrics = Metrics::new();
        let lag = Arc::new(AtomicU64::new(42));
        let read = lag.clone();
        metrics.register_extra(
            "topsellers_kafka_lag",
            "Kafka consumer lag.",
            MetricKind::Gauge,
            Box::new(move || read.load(Ordering::Relaxed) as f64),
        );
        metrics.register_extra(
            "topsellers_nan",
            "Not a number.",
            MetricKind::Counter,
            Box::new(|| f64::NAN),
        );
        let text = metrics.render_prometheus(0);
        assert!(text.contains("# TYPE topsellers_kafka_lag gauge\ntopsellers_kafka_lag 42\n"));
        assert!(text.contains("topsellers_nan NaN\n"));
        metrics.register_family(
            "topsellers_kafka_partition_lag_messages",
            "Lag.",
            MetricKind::Gauge,
            Box::new(|| {
                vec![
                    ("partition=\"0\"".into(), 3.0),
                    ("partition=\"1\"".into(), 0.0),
                ]
            }),
        );
        let text = metrics.render_prometheus(0);
        assert!(
            text.contains("# TYPE topsellers_kafka_partition_lag_messages gauge\ntopsellers_kafka_partition_lag_messages{partition=\"0\"} 3\ntopsellers_kafka_partition_lag_messages{partition=\"1\"} 0\n"),
            "{text}"
        );
        lag.store(7, Ordering::Relaxed);
        assert_eq!(
            sample(&metrics.render_prometheus(0), "topsellers_kafka_lag"),
            Some(7.0)
        );
    }
}
