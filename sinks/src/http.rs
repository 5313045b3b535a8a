//! The HTTP API: the routing function [`handle`] and its settings; the server that calls it
//! is `server.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use topsellers_model::{format_rfc3339_ms, wall_clock_ms};

use crate::api_error::{retry_after, ApiError};
use crate::assets;
use crate::body::Body;
use crate::conditional::conditional;
use crate::cors::Cors;
use crate::encoding::{self, Coding, Encoded};
use crate::etag::ETag;
use crate::experiments::Experiments;
use crate::live_stream;
use crate::metrics::{Metrics, Route};
use crate::movers::MoversConfig;
pub use crate::readiness::Readiness;
use crate::rejections::Rejections;
use crate::request::{check_head, decode_category, TopQuery};
use crate::table::ServingTable;
use crate::timed_io::Timeouts;

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

fn prometheus() -> HeaderValue {
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8")
}

fn no_store() -> HeaderValue {
    HeaderValue::from_static("no-store")
}

/// HTTP server settings (`[http]` in the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `max-age` in seconds of the `Cache-Control: public, max-age=N` sent with `/v1` answers.
    #[serde(default = "default_cache_max_age")]
    pub cache_max_age: u64,
    /// Connections open at once; more are closed as soon as they are accepted (counted). Kept
    /// below the open-file limit less room for the process's other files. Default: 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a client may take to send a complete request head, from the connection's
    /// start or the first byte of a later request; then 408 and the connection is closed.
    /// Default: `"30s"`.
    #[serde(
        default = "default_header_read_timeout",
        with = "topsellers_model::duration::text"
    )]
    pub header_read_timeout: Duration,
    /// How long writing a reply may make no progress (a client that does not read its
    /// answers); then the connection is closed. Default: `"30s"`.
    #[serde(
        default = "default_write_timeout",
        with = "topsellers_model::duration::text"
    )]
    pub write_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests before it is closed;
    /// above common load-balancer idle timeouts (60 s), so that they close first.
    /// Default: `"75s"`.
    #[serde(
        default = "default_keep_alive_timeout",
        with = "topsellers_model::duration::text"
    )]
    pub keep_alive_timeout: Duration,
    /// Whether each list is also kept gzip- and brotli-compressed (compressed once when it is
    /// rendered, served by `Accept-Encoding`). Costs the publisher time per changed list.
    /// Default: `true`.
    #[serde(default = "default_compression")]
    pub compression: bool,
    /// Origins whose pages may read the API from a browser (CORS), e.g.
    /// `["https://shop.example"]`, or `["*"]` for any. Default: empty, no CORS headers and
    /// `OPTIONS` not allowed.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

fn default_compression() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_cache_max_age() -> u64 {
    1
}

fn default_max_connections() -> usize {
    10_000
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_keep_alive_timeout() -> Duration {
    Duration::from_secs(75)
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            cache_max_age: default_cache_max_age(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            write_timeout: default_write_timeout(),
            keep_alive_timeout: default_keep_alive_timeout(),
            compression: default_compression(),
            cors_origins: Vec::new(),
        }
    }
}

/// Everything a request handler reads, shared by all connections.
#[derive(Debug)]
pub struct AppState {
    /// The lists served.
    pub table: Arc<ServingTable>,
    /// Counters, including the requests served.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` answers.
    pub readiness: Arc<Readiness>,
    /// Requests and connections turned away before the handler, by reason.
    pub rejections: Arc<Rejections>,
    /// The decay-rate experiments `?experiment=` picks profiles by (none by default).
    pub experiments: Experiments,
    /// `/v1/movers` settings (default: on, `min_score` 3).
    pub movers: MoversConfig,
    cache_control: HeaderValue,
    cors: Cors,
    pub(crate) max_connections: usize,
    pub(crate) timeouts: Timeouts,
    /// Set when the server stops: live streams (`/v1/stream`) end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// State for unit tests: `table` with fresh metrics, the default readiness and `config`.
    #[cfg(test)]
    pub(crate) fn for_test(table: Arc<ServingTable>, config: &HttpConfig) -> AppState {
        AppState::new(
            table,
            Arc::new(Metrics::new()),
            Arc::new(Readiness::default()),
            config,
        )
    }

    /// State for serving `table` with the settings of `config`; registers the rejection
    /// counters in `metrics` (build one per `Metrics`).
    pub fn new(
        table: Arc<ServingTable>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        config: &HttpConfig,
    ) -> AppState {
        let cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", config.cache_max_age))
                .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=1"));
        let rejections = Rejections::registered(&metrics);
        // Checked with the rest of the config before this; a bad list here turns CORS off.
        let cors = Cors::new(&config.cors_origins).unwrap_or_else(|error| {
            tracing::error!(%error, "http.cors_origins: CORS is off");
            Cors::Off
        });
        AppState {
            table,
            metrics,
            readiness,
            rejections,
            experiments: Experiments::default(),
            movers: MoversConfig::default(),
            cache_control,
            cors,
            max_connections: config.max_connections,
            timeouts: Timeouts {
                header_read: config.header_read_timeout,
                keep_alive: config.keep_alive_timeout,
                write: config.write_timeout,
            },
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl AppState {
    /// Serves `experiments` (`?experiment=`) and registers their exposure counters.
    pub fn with_experiments(mut self, experiments: Experiments) -> AppState {
        experiments.register(&self.metrics);
        self.experiments = experiments;
        self
    }

    /// Serves `/v1/movers` as `movers` says.
    pub fn with_movers(mut self, movers: MoversConfig) -> AppState {
        self.movers = movers;
        self
    }
}

/// Answers one request (no socket involved): routes it, builds the response, counts it in
/// the metrics. Never fails and never panics on any input.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Body> {
    respond(state, &req)
}

fn respond<B>(state: &AppState, req: &Request<B>) -> Response<Body> {
    if let Err((reason, error)) = check_head(req) {
        // Turned away before routing: counted as a rejection, not under a route.
        state.rejections.count_one(reason);
        return error.response();
    }
    let started = std::time::Instant::now();
    let path = req.uri().path();
    let route = match path {
        "/v1/categories" => Route::Categories,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/v1/stream" => Route::Stream,
        _ if assets::is_page(path) => Route::Page,
        "/openapi.json" => Route::OpenApi,
        _ if path
            .strip_prefix("/v1/top")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) =>
        {
            Route::Top
        }
        _ if path
            .strip_prefix("/v1/movers")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) =>
        {
            Route::Movers
        }
        _ => Route::Other,
    };
    let method = req.method();
    let head = method == Method::HEAD;
    let result = if route == Route::Other {
        Err(ApiError::NoSuchRoute(path.to_owned()))
    } else if method == Method::OPTIONS && state.cors.is_on() {
        Ok(state.cors.preflight(req.headers()))
    } else if method != Method::GET && !head {
        Err(ApiError::MethodNotAllowed(method.as_str().to_owned()))
    } else {
        match route {
            Route::Top => top(state, req, &path["/v1/top".len()..]),
            Route::Movers => {
                let rest = &path["/v1/movers".len()..];
                crate::movers::answer(&state.table, &state.movers, rest, req.uri().query())
                    .map(|(etag, body)| cacheable(state, req, etag, || Body::one(body)))
            }
            Route::Categories => categories(state, req),
            Route::Stream => live_stream::open(&state.table, &state.stopping, req),
            Route::Page => assets::serve(&state.table, req, path),
            Route::Healthz => Ok(ok(
                json(),
                no_store(),
                Bytes::from_static(b"{\"status\":\"ok\"}"),
            )),
            Route::Readyz => Ok(readyz(state)),
            Route::Metrics => Ok(ok(
                prometheus(),
                no_store(),
                Bytes::from(state.metrics.render_prometheus(wall_clock_ms())),
            )),
            Route::OpenApi => {
                let doc = crate::openapi::doc();
                Ok(negotiated(
                    state,
                    req,
                    doc.etag,
                    true,
                    || Some(&doc.encoded),
                    || Body::one(doc.json.clone()),
                ))
            }
            Route::Other => Err(ApiError::NoSuchRoute(path.to_owned())),
        }
    };
    let mut response = result.unwrap_or_else(|error| error.response());
    state.cors.decorate(req.headers(), &mut response);
    if head && response.status() != StatusCode::NOT_MODIFIED {
        if !response.body().is_streamed() {
            let len = response.body().len();
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        *response.body_mut() = Body::empty();
    }
    state
        .metrics
        .count_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// `/v1/top[/{category}]`; `rest` is what follows `/v1/top`.
fn top<B>(state: &AppState, req: &Request<B>, rest: &str) -> Result<Response<Body>, ApiError> {
    if state.table.published_time_ms().is_none() {
        return Err(ApiError::NotReady);
    }
    let category = decode_category(rest)?;
    let query = TopQuery::parse(req.uri().query())?;
    let profile = match (&query.profile, &query.experiment) {
        (None, None) => 0,
        (Some(name), None) => state
            .table
            .profile_index(name)
            .ok_or_else(|| ApiError::UnknownProfile(name.to_string()))?,
        (_, Some(experiment)) => experiment_profile(state, &query, experiment)?,
    };
    let list = state
        .table
        .get(profile, &category)
        .ok_or_else(|| ApiError::UnknownCategory(category.to_string()))?;
    let limit = query.limit.unwrap_or_else(|| state.table.k());
    let mut response = if query.include_unavailable {
        let (body, etag) = crate::marked::document(&state.table, &list, limit);
        cacheable(state, req, etag, || Body::one(body))
    } else {
        let compressible = list.compressible(limit);
        negotiated(
            state,
            req,
            list.etag(limit),
            compressible,
            || list.encoded(limit),
            || list.chunks(limit).into(),
        )
    };
    if let (Some(experiment), Some(visitor)) = (&query.experiment, &query.visitor) {
        state.experiments.expose(experiment, visitor);
        let name = &state.table.profiles()[profile].name;
        if let Ok(value) = HeaderValue::from_str(name) {
            response.headers_mut().insert(PROFILE_HEADER, value);
        }
    }
    Ok(response)
}

/// The header naming the profile an experiment picked.
const PROFILE_HEADER: &str = "x-topsellers-profile";

/// The profile `?experiment=` picks for `?visitor=`: 400 without a visitor or with
/// `?profile=` too, 404 for an unknown experiment.
fn experiment_profile(
    state: &AppState,
    query: &TopQuery<'_>,
    experiment: &str,
) -> Result<usize, ApiError> {
    if query.profile.is_some() {
        return Err(ApiError::BadRequest(
            "profile and experiment exclude each other: the experiment picks the profile"
                .to_owned(),
        ));
    }
    let visitor = query.visitor.as_deref().unwrap_or_default();
    if visitor.is_empty() {
        return Err(ApiError::BadRequest(
            "experiment needs a non-empty visitor".to_owned(),
        ));
    }
    state
        .experiments
        .assign(experiment, visitor)
        .ok_or_else(|| ApiError::UnknownExperiment(experiment.to_owned()))
}

/// `/v1/categories`.
fn categories<B>(state: &AppState, req: &Request<B>) -> Result<Response<Body>, ApiError> {
    if state.table.published_time_ms().is_none() {
        return Err(ApiError::NotReady);
    }
    let doc = state.table.categories_doc();
    Ok(cacheable(state, req, doc.etag, || {
        Body::one(doc.json.clone())
    }))
}

/// `/readyz`: 200 once the driver says ready, else 503 with the reason.
fn readyz(state: &AppState) -> Response<Body> {
    let ready = state.readiness.is_ready();
    let as_of = state.table.published_time_ms().map(format_rfc3339_ms);
    let doc =
        serde_json::json!({ "ready": ready, "reason": state.readiness.reason(), "as_of": as_of });
    let mut response = ok(json(), no_store(), Bytes::from(doc.to_string()));
    if !ready {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert(RETRY_AFTER, retry_after());
    }
    response
}

/// [`cacheable`] in the coding the request prefers among `encoded`'s copies (identity when
/// the document is not `compressible` or `encoded` gives none): the copy as body, the
/// identity tag suffixed per coding, `Content-Encoding`, and `Vary: Accept-Encoding` for a
/// compressible document whichever coding was chosen.
fn negotiated<'a, B>(
    state: &AppState,
    req: &Request<B>,
    etag: ETag,
    compressible: bool,
    encoded: impl FnOnce() -> Option<&'a Encoded>,
    identity: impl FnOnce() -> Body,
) -> Response<Body> {
    // The copies are asked for (and made, the first time) only by a request that accepts one.
    let wants = compressible && encoding::negotiate(req.headers(), true, true) != Coding::Identity;
    let copies = if wants { encoded() } else { None };
    let coding = copies.map_or(Coding::Identity, |copies| copies.choose(req.headers()));
    let copy = copies.and_then(|copies| copies.get(coding));
    let etag = etag.with_suffix(coding.etag_suffix());
    let mut response = cacheable(state, req, etag, || match copy {
        Some(copy) => Body::one(copy.clone()),
        None => identity(),
    });
    encoding::mark(&mut response, coding, compressible);
    response
}

/// A 200 with `body`, or a 304 if the request's `If-None-Match` matches `etag`; both carry
/// the entity tag and the configured `Cache-Control`.
fn cacheable<B>(
    state: &AppState,
    req: &Request<B>,
    etag: ETag,
    body: impl FnOnce() -> Body,
) -> Response<Body> {
    conditional(req, etag, json(), state.cache_control.clone(), body)
}

fn ok(content_type: HeaderValue, cache_control: HeaderValue, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::one(body));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response.headers_mut().insert(CACHE_CONTROL, cache_control);
    response
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "http_props.rs"]
mod props;

#[cfg(test)]
#[path = "http_browser_tests.rs"]
mod browser_tests;
