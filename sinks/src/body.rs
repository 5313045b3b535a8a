//! The response body: up to two `Bytes` chunks sent as they are, without copying.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// A response body of zero, one or two chunks (a sliced list and its closing `]}`).
#[derive(Debug, Default)]
pub struct Body {
    chunks: [Option<Bytes>; 2],
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
        }
    }

    /// Two chunks, sent in order.
    pub fn two(first: Bytes, second: Bytes) -> Body {
        Body {
            chunks: [Some(first), Some(second)],
        }
    }

    /// Bytes left to send.
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
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        for slot in &mut this.chunks {
            if let Some(chunk) = slot.take() {
                if !chunk.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len() as u64)
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
}
