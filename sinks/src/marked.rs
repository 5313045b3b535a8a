//! `/v1/top…?include_unavailable=true`: the list with its hidden items, for internal tools.
//! Rendered per request from the list's candidates (not pre-rendered like the public view).

use hyper::{Request, Response};

use crate::body::Body;
use crate::http::{cacheable, AppState};
use crate::rendered::RenderedList;

/// The first `limit` (at most k) candidates of `list` by score, unavailable ones included,
/// each marked `"available":true|false`; with its own entity tag (`If-None-Match` → 304).
pub(crate) fn response<B>(
    state: &AppState,
    req: &Request<B>,
    list: &RenderedList,
    limit: usize,
) -> Response<Body> {
    let table = &state.table;
    let profile = &table.profiles()[list.list().profile];
    let limit = limit.min(table.k());
    let (body, etag) = match table.availability() {
        Some(availability) => list.marked(limit, profile, |item| availability.is_available(item)),
        None => list.marked(limit, profile, |_| true),
    };
    cacheable(state, req, etag, || Body::one(body))
}
