//! Every way an API request can fail, mapped in one place to a status and a JSON body.

use bytes::Bytes;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::body::Body;
use crate::json;

/// Seconds a client is asked to wait (`Retry-After`) after a 503: an answer before the first
/// snapshot, or `/readyz` while not ready. Short: the first snapshot usually follows within
/// a second or two, and a retry costs the server next to nothing.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The `Retry-After` header value of every 503.
pub(crate) fn retry_after() -> HeaderValue {
    HeaderValue::from(RETRY_AFTER_SECS)
}

/// A failed API request; [`ApiError::response`] turns it into `{"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No snapshot has been published yet (503).
    #[error("not ready: no snapshot published yet")]
    NotReady,
    /// The answer cannot be given yet for another reason, said (503).
    #[error("not available: {0}")]
    Unavailable(String),
    /// The path matches no route (404).
    #[error("no such route: {0}")]
    NoSuchRoute(String),
    /// A known route was asked with a method other than GET or HEAD (405).
    #[error("method {0} not allowed: use GET or HEAD")]
    MethodNotAllowed(String),
    /// A malformed path or query parameter (400).
    #[error("{0}")]
    BadRequest(String),
    /// The category is not known to the table (404).
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    /// No profile has this name (404).
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// No experiment has this name (404).
    #[error("unknown experiment {0:?}")]
    UnknownExperiment(String),
    /// The request target (bytes, limit) is longer than the server reads (414).
    #[error("request target of {0} bytes is longer than the {1} allowed")]
    UriTooLong(usize, usize),
    /// The request's headers (bytes, limit) are larger than the server reads (431).
    #[error("request headers of {0} bytes are larger than the {1} allowed")]
    HeadersTooLarge(usize, usize),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotReady | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoSuchRoute(_)
            | ApiError::UnknownCategory(_)
            | ApiError::UnknownProfile(_)
            | ApiError::UnknownExperiment(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UriTooLong(..) => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge(..) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The response: the status, `{"error":"<message>"}`, not cacheable; 405 also says
    /// `Allow: GET, HEAD`, 503 `Retry-After`.
    pub fn response(&self) -> Response<Body> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(b"{\"error\":");
        json::push_str(&mut body, &self.to_string());
        body.push(b'}');
        let mut response = Response::new(Body::one(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, ApiError::MethodNotAllowed(_)) {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, retry_after());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_status_and_json() {
        let cases = [
            (
                ApiError::NotReady,
                503,
                "not ready: no snapshot published yet",
            ),
            (ApiError::NoSuchRoute("/x".into()), 404, "no such route: /x"),
            (
                ApiError::Unavailable("later".into()),
                503,
                "not available: later",
            ),
            (
                ApiError::MethodNotAllowed("POST".into()),
                405,
                "method POST not allowed: use GET or HEAD",
            ),
            (
                ApiError::BadRequest("limit must be a positive integer".into()),
                400,
                "limit must be a positive integer",
            ),
            (
                ApiError::UnknownCategory("bücher".into()),
                404,
                "unknown category \"bücher\"",
            ),
            (
                ApiError::UnknownProfile("9d".into()),
                404,
                "unknown profile \"9d\"",
            ),
            (
                ApiError::UnknownExperiment("decay".into()),
                404,
                "unknown experiment \"decay\"",
            ),
            (
                ApiError::UriTooLong(9000, 8192),
                414,
                "request target of 9000 bytes is longer than the 8192 allowed",
            ),
            (
                ApiError::HeadersTooLarge(40000, 32768),
                431,
                "request headers of 40000 bytes are larger than the 32768 allowed",
            ),
        ];
        for (error, status, message) in cases {
            let response = error.response();
            assert_eq!(response.status().as_u16(), status);
            let body: serde_json::Value =
                serde_json::from_slice(&response.body().to_vec()).unwrap();
            assert_eq!(body, serde_json::json!({ "error": message }));
            assert_eq!(response.headers().contains_key(ALLOW), status == 405);
            assert_eq!(
                response
                    .headers()
                    .get(RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                (status == 503).then_some("1")
            );
        }
    }
}
