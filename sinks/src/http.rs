//! The HTTP API: the routing function [`handle`] and the hyper 1 server [`serve`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use topsellers_model::{format_rfc3339_ms, wall_clock_ms};

use crate::api_error::ApiError;
use crate::body::Body;
use crate::etag::ETag;
use crate::metrics::{Metrics, Route};
pub use crate::readiness::Readiness;
use crate::request::{decode_category, TopQuery};
use crate::table::ServingTable;

/// How long in-flight connections may take to finish once shutdown starts, by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

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
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_cache_max_age() -> u64 {
    1
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            cache_max_age: default_cache_max_age(),
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
    cache_control: HeaderValue,
}

impl AppState {
    /// State for serving `table` with the settings of `config`.
    pub fn new(
        table: Arc<ServingTable>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        config: &HttpConfig,
    ) -> AppState {
        let cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", config.cache_max_age))
                .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=1"));
        AppState {
            table,
            metrics,
            readiness,
            cache_control,
        }
    }
}

/// Answers one request (no socket involved): routes it, builds the response, counts it in
/// the metrics. Never fails and never panics on any input.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Body> {
    respond(state, &req)
}

fn respond<B>(state: &AppState, req: &Request<B>) -> Response<Body> {
    let started = std::time::Instant::now();
    let path = req.uri().path();
    let route = match path {
        "/v1/categories" => Route::Categories,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        _ if path
            .strip_prefix("/v1/top")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) =>
        {
            Route::Top
        }
        _ => Route::Other,
    };
    let method = req.method();
    let head = method == Method::HEAD;
    let result = if route == Route::Other {
        Err(ApiError::NoSuchRoute(path.to_owned()))
    } else if method != Method::GET && !head {
        Err(ApiError::MethodNotAllowed(method.as_str().to_owned()))
    } else {
        match route {
            Route::Top => top(state, req, &path["/v1/top".len()..]),
            Route::Categories => categories(state, req),
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
            Route::Other => Err(ApiError::NoSuchRoute(path.to_owned())),
        }
    };
    let mut response = result.unwrap_or_else(|error| error.response());
    if head && response.status() != StatusCode::NOT_MODIFIED {
        let len = response.body().len();
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
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
    let profile = match &query.profile {
        None => 0,
        Some(name) => state
            .table
            .profile_index(name)
            .ok_or_else(|| ApiError::UnknownProfile(name.to_string()))?,
    };
    let list = state
        .table
        .get(profile, &category)
        .ok_or_else(|| ApiError::UnknownCategory(category.to_string()))?;
    let limit = query.limit.unwrap_or_else(|| state.table.k());
    let etag = list.etag(limit);
    Ok(cacheable(state, req, etag, || list.chunks(limit).into()))
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
    }
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
    let not_modified = req
        .headers()
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|value| etag.matches_if_none_match(value.as_bytes()));
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(body());
        response.headers_mut().insert(CONTENT_TYPE, json());
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_bytes(etag.as_bytes()) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, state.cache_control.clone());
    response
}

fn ok(content_type: HeaderValue, cache_control: HeaderValue, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::one(body));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response.headers_mut().insert(CACHE_CONTROL, cache_control);
    response
}

/// Serves HTTP/1.1 (keep-alive) on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight connections finish for up to [`DEFAULT_DRAIN`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_drain(listener, state, shutdown, DEFAULT_DRAIN).await;
}

/// [`serve`] with a chosen drain time; connections still open after it are dropped.
pub async fn serve_with_drain(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(connections = connections.len(), "HTTP server shutting down");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            ?drain,
            "connections still open after the drain time; closing them"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "http_props.rs"]
mod props;
