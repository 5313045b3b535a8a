//! `/v1/top…?include_unavailable=true`: the list with its hidden items, for internal tools.
//! Rendered per request from the list's candidates (not pre-rendered like the public view).

use bytes::Bytes;

use crate::etag::ETag;
use crate::rendered::RenderedList;
use crate::table::ServingTable;

/// The document of the first `limit` (at most k) candidates of `list` by score, unavailable
/// ones included, each marked `"available":true|false`, with its own entity tag.
pub(crate) fn document(table: &ServingTable, list: &RenderedList, limit: usize) -> (Bytes, ETag) {
    let profile = &table.profiles()[list.list().profile];
    let limit = limit.min(table.k());
    match table.availability() {
        Some(availability) => list.marked(limit, profile, |item| availability.is_available(item)),
        None => list.marked(limit, profile, |_| true),
    }
}
