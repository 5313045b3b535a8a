//! The response body: up to two `Bytes` chunks sent as they are, without copying, then, for a
//! streamed answer (`/v1/stream`), the chunks of a [`Chunks`] source until it ends.

use std::convert::Infallible;
use std::fmt::Debug;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::timed_io::StreamingGuard;

/// The chunks of a streamed body after its first: `Ready(None)` ends the body.
pub(crate) trait Chunks: Send + Debug {
    /// The next chunk, if any.
    fn poll_chunk(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>>;
}

/// A response body of zero, one or two chunks (a sliced list and its closing `]}`), and for a
/// streamed answer the chunks of a [`Chunks`] source after them.
#[derive(Debug, Default)]
pub struct Body {
    chunks: [Option<Bytes>; 2],
    stream: Option<Pin<Box<dyn Chunks>>>,
    /// Tells the connection's deadlines that a streamed answer is under way, while held.
    guard: Option<StreamingGuard>,
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body::default()
    }

    /// One chunk.
    pub fn one(chunk: Bytes) -> Body {
        Body {
            chunks: [Some(chunk), None],
            ..Body::default()
        }
    }

    /// Two chunks, sent in order.
    pub fn two(first: Bytes, second: Bytes) -> Body {
        Body {
            chunks: [Some(first), Some(second)],
            ..Body::default()
        }
    }

    /// `first`, then the chunks of `rest`, until it ends.
    pub(crate) fn streamed(first: Bytes, rest: impl Chunks + 'static) -> Body {
        Body {
            chunks: [Some(first), None],
            stream: Some(Box::pin(rest)),
            guard: None,
        }
    }

    /// Whether chunks may follow from a [`Chunks`] source (the length is not known).
    pub fn is_streamed(&self) -> bool {
        self.stream.is_some()
    }

    /// Holds `guard` as long as the body lives.
    pub(crate) fn hold(&mut self, guard: StreamingGuard) {
        self.guard = Some(guard);
    }

    /// Bytes left to send, leaving aside those still to come from a [`Chunks`] source.
    pub fn len(&self) -> usize {
        self.chunks.iter().flatten().map(Bytes::len).sum()
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The remaining bytes in one buffer (a copy; for tests and logs).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flatten()
            .flat_map(|chunk| chunk.iter().copied())
            .collect()
    }
}

impl From<Bytes> for Body {
    fn from(chunk: Bytes) -> Body {
        Body::one(chunk)
    }
}

impl From<(Bytes, Option<Bytes>)> for Body {
    fn from((first, second): (Bytes, Option<Bytes>)) -> Body {
        Body {
            chunks: [Some(first), second],
            ..Body::default()
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        for slot in &mut this.chunks {
            if let Some(chunk) = slot.take() {
                if !chunk.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
            }
        }
        let Some(stream) = &mut this.stream else {
            return Poll::Ready(None);
        };
        loop {
            match stream.as_mut().poll_chunk(cx) {
                Poll::Ready(Some(chunk)) if chunk.is_empty() => continue,
                Poll::Ready(Some(chunk)) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Poll::Ready(None) => {
                    this.stream = None;
                    this.guard = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.len() as u64;
        if self.stream.is_some() {
            let mut hint = SizeHint::new();
            hint.set_lower(len);
            hint
        } else {
            SizeHint::with_exact(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn sends_chunks_in_order() {
        let body = Body::two(Bytes::from_static(b"[1,2"), Bytes::from_static(b"]"));
        assert_eq!(body.len(), 5);
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), &b"[1,2]"[..]);
        let empty = Body::from((Bytes::new(), None));
        assert!(hyper::body::Body::is_end_stream(&empty));
        assert!(empty.collect().await.unwrap().to_bytes().is_empty());
    }

    #[derive(Debug)]
    struct Queue(std::collections::VecDeque<&'static [u8]>);

    impl Chunks for Queue {
        fn poll_chunk(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Bytes>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Bytes::from_static))
        }
    }

    #[tokio::test]
    async fn streams_until_the_source_ends() {
        let rest = Queue([&b"b"[..], b"", b"c"].into());
        let body = Body::streamed(Bytes::from_static(b"a"), rest);
        assert!(body.is_streamed());
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), None);
        assert!(!hyper::body::Body::is_end_stream(&body));
        assert_eq!(body.collect().await.unwrap().to_bytes(), &b"abc"[..]);
    }
}
