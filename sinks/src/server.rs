//! The hyper 1 server: accepts connections (at most `http.max_connections`, backing off on
//! accept errors), serves each with the `[http]` deadlines, drains on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::fd_limit::connection_cap;
use crate::http::{handle, AppState};
use crate::rejections::{Reason, Rejections};
use crate::timed_io::{HeadMark, Shed, TimedIo};

/// How long in-flight connections may take to finish once shutdown starts, by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// Serves HTTP/1.1 (keep-alive) on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight connections finish for up to [`DEFAULT_DRAIN`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_drain(listener, state, shutdown, DEFAULT_DRAIN).await;
}

/// For unit tests: serves `state` on an ephemeral loopback port (see [`serve_with_drain`]) in a
/// task; its address and the task.
#[cfg(test)]
pub(crate) async fn serve_on_loopback(
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_with_drain(listener, state, shutdown, drain));
    (addr, server)
}

/// For unit tests: an HTTP/1 client connection to `addr`, and the task driving it.
#[cfg(test)]
pub(crate) async fn connect_for_test(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    (sender, tokio::spawn(connection))
}

/// [`serve`] with a chosen drain time; connections still open after it are dropped.
pub async fn serve_with_drain(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = http1::Builder::new();
    // The header-read and keep-alive deadlines are kept by `TimedIo` (see there why).
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let cap = connection_cap(state.max_connections);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let mut refusals = RateLimitedLog::default();
    let shed = Shed::default();
    let mut shutdown = pin!(shutdown);
    loop {
        state.rejections.set_open(connections.len());
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        backoff.failed(&error).await;
                        continue;
                    }
                };
                backoff.succeeded();
                if connections.len() >= cap {
                    // Closed at once, and the connections waiting for a request close too, so
                    // that the next client finds room (the retry of this one, most often).
                    drop(stream);
                    shed.notify_waiters();
                    state.rejections.count_one(Reason::TooManyConnections);
                    refusals.log(|suppressed| {
                        tracing::warn!(
                            cap,
                            suppressed,
                            "http.max_connections reached: closing new and idle connections"
                        );
                    });
                    continue;
                }
                let connection = graceful.watch(connect(&builder, stream, &state, &shed));
                let rejections = state.rejections.clone();
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        count_error(&rejections, &error);
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(connections = connections.len(), "HTTP server shutting down");
    // Live streams end now, so that their connections can finish.
    state.stopping.send_replace(true);
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

/// One accepted connection, with its deadlines, ready to be polled.
fn connect(
    builder: &http1::Builder,
    stream: TcpStream,
    state: &Arc<AppState>,
    shed: &Shed,
) -> impl GracefulConnection<Error = hyper::Error> {
    let _ = stream.set_nodelay(true);
    let mark = HeadMark::default();
    let io = TimedIo::new(
        stream,
        state.timeouts,
        mark.clone(),
        state.rejections.clone(),
        shed.clone(),
    );
    let state = state.clone();
    let service = service_fn(move |req| {
        mark.mark();
        let state = state.clone();
        let mark = mark.clone();
        async move {
            let mut response = handle(&state, req).await;
            if response.body().is_streamed() {
                response.body_mut().hold(mark.streaming());
            }
            Ok::<_, Infallible>(response)
        }
    });
    builder.serve_connection(TokioIo::new(io), service)
}

/// Counts a connection that hyper ended with an error; rejections it answered itself
/// (400/414/431, empty bodies) are counted here, deadlines where they fired.
fn count_error(rejections: &Rejections, error: &hyper::Error) {
    match Reason::of_hyper_error(error) {
        Some(reason) => rejections.count_one(reason),
        None => tracing::debug!(%error, "connection ended with an error"),
    }
}

/// Sleeps after a failed accept (e.g. out of file descriptors: the connection stays in the
/// backlog, and retrying at once would spin), doubling up to a second; logs at most every
/// ten seconds, with the number of failures not logged.
#[derive(Default)]
struct AcceptBackoff {
    delay: Option<Duration>,
    log: RateLimitedLog,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    async fn failed(&mut self, error: &std::io::Error) {
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.delay = Some(delay);
        self.log.log(|suppressed| {
            tracing::warn!(%error, suppressed, ?delay, "accept failed; backing off");
        });
        tokio::time::sleep(delay).await;
    }

    fn succeeded(&mut self) {
        self.delay = None;
    }
}

/// A log line at most every [`RateLimitedLog::EVERY`]; the lines skipped are counted and
/// reported in the next one.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn log(&mut self, line: impl FnOnce(u64)) {
        if self.last.is_some_and(|last| last.elapsed() < Self::EVERY) {
            self.suppressed += 1;
            return;
        }
        line(self.suppressed);
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_log_reports_what_it_skipped() {
        let mut log = RateLimitedLog::default();
        let mut lines = Vec::new();
        for _ in 0..5 {
            log.log(|suppressed| lines.push(suppressed));
        }
        assert_eq!(lines, [0]);
        assert_eq!(log.suppressed, 4);
        log.last = Some(Instant::now() - RateLimitedLog::EVERY);
        log.log(|suppressed| lines.push(suppressed));
        assert_eq!(lines, [0, 4]);
    }
}
