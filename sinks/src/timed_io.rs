//! A connection's socket with the `[http]` deadlines that hyper 1 does not have: a reply not
//! drained within the write timeout, a keep-alive connection idle for the keep-alive timeout,
//! and a request head not complete within the header-read timeout all end the connection.
//!
//! hyper's own `header_read_timeout` runs from the end of one response to the end of the next
//! request head, so it is also the idle timeout (hyperium/hyper#3828) and the two cannot
//! differ; it is switched off and both are kept here. The phases:
//! - waiting for the first request: its head must be complete within the header-read timeout;
//! - idle after a response: the next request's first byte must come within the keep-alive
//!   timeout, then its head within the header-read timeout;
//! - busy (from the handler's call, which [`HeadMark`] reports, to the end of the response):
//!   no read deadline; a write that cannot proceed must proceed within the write timeout.
//!   It ends when the written response is flushed — except for a streamed answer
//!   (`/v1/stream`, while its [`StreamingGuard`] lives): it stays busy between its chunks, so
//!   neither the keep-alive timeout nor shedding closes it; only the write timeout does (a
//!   client that stops reading).
//!
//! A connection waiting for a request (first or next: nothing of it received yet) is also
//! closed at once when the server is full and signals [`Shed`], as nginx closes keep-alive
//! connections when it runs out: a client that sends a request and never reads the answer
//! looks idle, and must not keep a fresh client out for the whole keep-alive timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::{sleep, Instant, Sleep};

use crate::rejections::{Reason, Rejections};

/// The deadlines of one connection (`[http]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// From accept (or the next request's first byte) to a complete request head.
    pub header_read: Duration,
    /// From the end of a response to the next request's first byte.
    pub keep_alive: Duration,
    /// How long a write may make no progress.
    pub write: Duration,
}

/// Set by the service when hyper hands it a request: the head is complete; and while a
/// streamed answer is being sent.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadMark {
    head: Arc<AtomicBool>,
    streaming: Arc<AtomicBool>,
}

impl HeadMark {
    /// A request head was complete and handed to the handler.
    pub(crate) fn mark(&self) {
        self.head.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.head.swap(false, Ordering::AcqRel)
    }

    /// A streamed answer starts; it is under way until the guard is dropped (with its body).
    pub(crate) fn streaming(&self) -> StreamingGuard {
        self.streaming.store(true, Ordering::Release);
        StreamingGuard(self.streaming.clone())
    }

    fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::Acquire)
    }
}

/// Held by a streamed body: while it lives the connection is busy (see the module doc).
#[derive(Debug)]
pub(crate) struct StreamingGuard(Arc<AtomicBool>);

impl Drop for StreamingGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Signalled by the accept loop when the connection cap is reached: every connection waiting
/// for a request closes.
pub(crate) type Shed = Arc<Notify>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing of the first request yet.
    First,
    /// A response was sent; nothing of the next request yet.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// A request is being answered.
    Busy,
}

/// The reply sent when a started request head does not complete in time.
const TIMEOUT_REPLY: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: 51\r\n\r\n{\"error\":\"request head not received in time (408)\"}";

/// `T` (a socket) with the deadlines.
pub(crate) struct TimedIo<T> {
    inner: T,
    timeouts: Timeouts,
    mark: HeadMark,
    rejections: Arc<Rejections>,
    phase: Phase,
    /// Some byte of the current response was written.
    wrote: bool,
    /// The last write could not proceed.
    write_pending: bool,
    read_deadline: Pin<Box<Sleep>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
    shed: Shed,
    /// While waiting for a request: completes when the server sheds waiting connections.
    shed_wait: Option<Pin<Box<OwnedNotified>>>,
}

impl<T> TimedIo<T> {
    /// Wraps `inner`, just accepted.
    pub(crate) fn new(
        inner: T,
        timeouts: Timeouts,
        mark: HeadMark,
        rejections: Arc<Rejections>,
        shed: Shed,
    ) -> TimedIo<T> {
        TimedIo {
            shed_wait: Some(Box::pin(shed.clone().notified_owned())),
            shed,
            inner,
            timeouts,
            mark,
            rejections,
            phase: Phase::First,
            wrote: false,
            write_pending: false,
            read_deadline: Box::pin(sleep(timeouts.header_read)),
            write_deadline: None,
        }
    }

    fn enter(&mut self, phase: Phase, after: Duration) {
        tracing::trace!(?phase, from = ?self.phase, "connection phase");
        self.phase = phase;
        self.read_deadline.as_mut().reset(Instant::now() + after);
        self.shed_wait = match phase {
            Phase::First | Phase::Idle => Some(Box::pin(self.shed.clone().notified_owned())),
            Phase::Head | Phase::Busy => None,
        };
    }

    /// A write made progress: a response is being sent (again, after a flush).
    fn wrote_some(&mut self) {
        self.wrote = true;
        if self.phase == Phase::Idle {
            self.phase = Phase::Busy;
            self.shed_wait = None;
        }
    }

    /// Everything written so far is flushed: once a response was written, the connection
    /// waits for the next request. hyper does not read again before the client sends
    /// (it waits on the socket's wake-up), so the deadlines are registered here, with the
    /// connection task's waker, to wake it when they pass.
    fn flushed(&mut self, cx: &mut Context<'_>) {
        if self.phase != Phase::Busy || !self.wrote || self.mark.is_streaming() {
            return;
        }
        let keep_alive = self.timeouts.keep_alive;
        self.enter(Phase::Idle, keep_alive);
        if let Some(shed) = &mut self.shed_wait {
            let _ = shed.as_mut().poll(cx);
        }
        let _ = self.read_deadline.as_mut().poll(cx);
    }

    /// Notes a request handed to the handler since the last call.
    fn sync_head_mark(&mut self) {
        if self.mark.take() {
            self.phase = Phase::Busy;
            self.wrote = false;
            self.shed_wait = None;
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.sync_head_mark();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let started = buf.filled().len() > before
                    && (matches!(this.phase, Phase::First | Phase::Idle)
                        || (this.phase == Phase::Busy && this.wrote && !this.write_pending));
                if started {
                    let header_read = this.timeouts.header_read;
                    this.enter(Phase::Head, header_read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if this.phase == Phase::Busy {
                    if !this.wrote || this.write_pending || this.mark.is_streaming() {
                        return Poll::Pending;
                    }
                    let keep_alive = this.timeouts.keep_alive;
                    this.enter(Phase::Idle, keep_alive);
                }
                if let Some(shed) = &mut this.shed_wait {
                    if shed.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(timed_out(
                            "closed while waiting for a request: the server is full",
                        )));
                    }
                }
                ready!(this.read_deadline.as_mut().poll(cx));
                match this.phase {
                    Phase::Idle => Poll::Ready(Err(timed_out("keep-alive idle timeout"))),
                    _ => {
                        this.rejections.count_one(Reason::HeaderTimeout);
                        if this.phase == Phase::Head {
                            // Best effort: the client may be gone or not reading.
                            let _ = Pin::new(&mut this.inner).poll_write(cx, TIMEOUT_REPLY);
                        }
                        Poll::Ready(Err(timed_out("header read timeout")))
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> TimedIo<T> {
    /// Passes a write-side poll through, failing it once it has made no progress for the
    /// write timeout.
    fn timed<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        self.sync_head_mark();
        match poll(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_pending = false;
                self.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.write_pending = true;
                let write = self.timeouts.write;
                let deadline = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(sleep(write)));
                ready!(deadline.as_mut().poll(cx));
                self.rejections.count_one(Reason::WriteTimeout);
                Poll::Ready(Err(timed_out("write timeout: the client is not reading")))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.timed(cx, |inner, cx| inner.poll_write(cx, buf));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote_some();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.timed(cx, |inner, cx| inner.poll_write_vectored(cx, bufs));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote_some();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.timed(cx, |inner, cx| inner.poll_flush(cx));
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.flushed(cx);
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_reply_is_a_complete_json_response() {
        let text = std::str::from_utf8(TIMEOUT_REPLY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(doc["error"].is_string(), "{doc}");
    }
}
