//! Conditional answers: a 200 with its body, or a 304 when the request's `If-None-Match`
//! names the current entity tag; both carry the tag and a `Cache-Control`. Shared by the API
//! routes and the live page's files.

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};

use crate::body::Body;
use crate::etag::ETag;

/// A 200 with `body()` as `content_type`, or a 304 (no body, `body` not called) if one of the
/// request's `If-None-Match` fields matches `etag`; both carry `etag` and `cache_control`.
pub(crate) fn conditional<B>(
    req: &Request<B>,
    etag: ETag,
    content_type: HeaderValue,
    cache_control: HeaderValue,
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
        response.headers_mut().insert(CONTENT_TYPE, content_type);
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_bytes(etag.as_bytes()) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, cache_control);
    response
}
