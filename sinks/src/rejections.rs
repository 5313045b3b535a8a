//! Requests and connections turned away before any route answered them, by reason, and the
//! connections open: `topsellers_http_rejected_total{reason}`, `topsellers_http_connections`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::metrics::{MetricKind, Metrics};

/// Why a request or connection was turned away before the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A malformed request line or header (400, written by hyper).
    BadRequest,
    /// The request target is too long (414).
    UriTooLong,
    /// The request head is too large or has too many headers (431).
    HeadersTooLarge,
    /// No complete request head within `http.header_read_timeout` (408 or closed).
    HeaderTimeout,
    /// A reply not drained by the client within `http.write_timeout` (connection closed).
    WriteTimeout,
    /// Accepted beyond `http.max_connections` (closed at once).
    TooManyConnections,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 6] = [
        Reason::BadRequest,
        Reason::UriTooLong,
        Reason::HeadersTooLarge,
        Reason::HeaderTimeout,
        Reason::WriteTimeout,
        Reason::TooManyConnections,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::UriTooLong => "uri_too_long",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::HeaderTimeout => "header_timeout",
            Reason::WriteTimeout => "write_timeout",
            Reason::TooManyConnections => "too_many_connections",
        }
    }

    /// The reason of a connection error hyper reports after it answered a request it could
    /// not parse itself (hyper's own 400, 414 and 431, with empty bodies); `None` for other
    /// errors (a client gone, an I/O error: not a rejection, or counted where it happened).
    pub fn of_hyper_error(error: &hyper::Error) -> Option<Reason> {
        if error.is_parse_too_large() {
            // `is_parse_too_large` covers both; only the message tells them apart.
            Some(if error.to_string().contains("URI too long") {
                Reason::UriTooLong
            } else {
                Reason::HeadersTooLarge
            })
        } else if error.is_parse() {
            Some(Reason::BadRequest)
        } else {
            None
        }
    }
}

/// The counters, shared by the accept loop, every connection and the handler.
#[derive(Debug, Default)]
pub struct Rejections {
    counts: [AtomicU64; Reason::ALL.len()],
    open: AtomicU64,
}

impl Rejections {
    /// Counters at zero, registered in `metrics`.
    pub fn registered(metrics: &Metrics) -> Arc<Rejections> {
        let rejections = Arc::new(Rejections::default());
        let family = rejections.clone();
        metrics.register_family(
            "topsellers_http_rejected_total",
            "HTTP requests and connections turned away before any route answered, by reason.",
            MetricKind::Counter,
            Box::new(move || {
                Reason::ALL
                    .iter()
                    .map(|&reason| {
                        (
                            format!("reason=\"{}\"", reason.as_str()),
                            family.count(reason) as f64,
                        )
                    })
                    .collect()
            }),
        );
        let open = rejections.clone();
        metrics.register_extra(
            "topsellers_http_connections",
            "HTTP connections open.",
            MetricKind::Gauge,
            Box::new(move || open.open() as f64),
        );
        rejections
    }

    /// Counts one rejection.
    pub fn count_one(&self, reason: Reason) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections so far for `reason`.
    pub fn count(&self, reason: Reason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }

    /// Sets the number of connections open.
    pub(crate) fn set_open(&self, open: usize) {
        self.open.store(open as u64, Ordering::Relaxed);
    }

    /// Connections open.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}
