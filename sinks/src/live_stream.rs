//! `GET /v1/stream?category=PATH&profile=NAME&limit=N`: one (profile, category) list as
//! server-sent events. An `event: list` whose `data:` is the `/v1/top` document is sent at
//! connect and each time the served document changes (woken by the table's publish sequence,
//! compared by entity tag so that a publish that left this list alone sends nothing), and a
//! comment every [`KEEP_ALIVE`] so that proxies and browsers keep an idle stream open. The
//! stream ends when the server stops (the `stopping` signal), or when the connection ends.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::api_error::ApiError;
use crate::body::{Body, Chunks};
use crate::etag::ETag;
use crate::rendered::RenderedList;
use crate::request::TopQuery;
use crate::table::ServingTable;

/// How long a stream may stay silent before a keep-alive comment is sent.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment.
const COMMENT: &[u8] = b": keep-alive\n\n";

/// Sent first: how long a browser's `EventSource` waits before reconnecting a lost stream.
const RETRY: &[u8] = b"retry: 2000\n\n";

/// Answers `/v1/stream`: the errors of `/v1/top` (503 before the first snapshot, 400 for a
/// bad parameter, 404 for an unknown category or profile) before the stream starts, else a
/// `text/event-stream` that starts with the current list.
/// `stopping` is the server's stop signal.
pub(crate) fn open<B>(
    table: &Arc<ServingTable>,
    stopping: &watch::Sender<bool>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    if table.published_time_ms().is_none() {
        return Err(ApiError::NotReady);
    }
    let query = req.uri().query();
    let category = category_param(query)?;
    let top = TopQuery::parse(query)?;
    let profile = match &top.profile {
        None => 0,
        Some(name) => table
            .profile_index(name)
            .ok_or_else(|| ApiError::UnknownProfile(name.to_string()))?,
    };
    let limit = top.limit.unwrap_or_else(|| table.k());
    // Subscribed before the first list is read: a publish after the read wakes the stream.
    let mut publishes = table.subscribe();
    publishes.borrow_and_update();
    let list = table
        .get(profile, &category)
        .ok_or_else(|| ApiError::UnknownCategory(category.to_string()))?;
    let mut first = RETRY.to_vec();
    first.extend_from_slice(&event(&list, limit));
    let source = Source {
        table: table.clone(),
        profile,
        category: Arc::from(&*category),
        limit,
        sent: list.etag(limit),
        publishes,
        stopping: stopping.subscribe(),
    };
    let mut response = Response::new(Body::streamed(Bytes::from(first), Events::new(source)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx not to buffer the stream.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// The `category` parameter, percent-decoded (`+` is a space); absent is the root `""`.
fn category_param(query: Option<&str>) -> Result<Cow<'_, str>, ApiError> {
    let mut category = Cow::Borrowed("");
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "category" {
            if value.contains(char::REPLACEMENT_CHARACTER) {
                return Err(ApiError::BadRequest(
                    "category is not UTF-8 once decoded".to_owned(),
                ));
            }
            category = value;
        }
    }
    Ok(category)
}

/// One `list` event holding the `/v1/top` document of `list` cut to `limit` items (the
/// document is one line: JSON strings escape line breaks).
fn event(list: &RenderedList, limit: usize) -> Vec<u8> {
    let (head, tail) = list.chunks(limit);
    let mut out = Vec::with_capacity(head.len() + 32);
    out.extend_from_slice(b"event: list\ndata: ");
    out.extend_from_slice(&head);
    out.extend_from_slice(tail.as_deref().unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    out
}

/// What a stream watches, and the entity tag of the document it sent last.
struct Source {
    table: Arc<ServingTable>,
    profile: usize,
    category: Arc<str>,
    limit: usize,
    sent: ETag,
    publishes: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
}

impl Source {
    /// The next chunk: the list once its document changes, or a comment after
    /// [`KEEP_ALIVE`] of silence; `None` once the server stops (or the table is gone).
    async fn next(mut self) -> Option<(Bytes, Source)> {
        enum Woken {
            Stopping,
            Published,
            Silent,
        }
        let keep_alive = Instant::now() + KEEP_ALIVE;
        loop {
            let woken = tokio::select! {
                biased;
                _ = self.stopping.wait_for(|stopping| *stopping) => Woken::Stopping,
                changed = self.publishes.changed() => match changed {
                    Ok(()) => Woken::Published,
                    Err(_) => Woken::Stopping,
                },
                () = sleep_until(keep_alive) => Woken::Silent,
            };
            match woken {
                Woken::Stopping => return None,
                Woken::Published => {
                    if let Some(event) = self.changed_event() {
                        return Some((event, self));
                    }
                }
                Woken::Silent => return Some((Bytes::from_static(COMMENT), self)),
            }
        }
    }

    /// The list's event if its document differs from the one sent last.
    fn changed_event(&mut self) -> Option<Bytes> {
        let list = self.table.get(self.profile, &self.category)?;
        let etag = list.etag(self.limit);
        if etag == self.sent {
            return None;
        }
        self.sent = etag;
        Some(Bytes::from(event(&list, self.limit)))
    }
}

type Next = Pin<Box<dyn Future<Output = Option<(Bytes, Source)>> + Send>>;

/// The chunks after the first: [`Source::next`] over and over (a future is created, not
/// run, so this needs no runtime until it is polled).
struct Events {
    next: Option<Next>,
    category: Arc<str>,
}

impl Events {
    fn new(source: Source) -> Events {
        Events {
            category: source.category.clone(),
            next: Some(Box::pin(source.next())),
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("category", &self.category)
            .field("ended", &self.next.is_none())
            .finish()
    }
}

impl Chunks for Events {
    fn poll_chunk(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        let Some(next) = &mut this.next else {
            return Poll::Ready(None);
        };
        match ready!(next.as_mut().poll(cx)) {
            Some((chunk, source)) => {
                this.next = Some(Box::pin(source.next()));
                Poll::Ready(Some(chunk))
            }
            None => {
                this.next = None;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
#[path = "live_stream_tests.rs"]
mod tests;
