//! The JSON of top-k lists, in every shape a list leaves the service in: the `/v1/top`
//! document (HTTP and the changelog topic), the changelog's rank-slot operations, and
//! `batch`'s lines. One escaping (`serde_json`'s, byte for byte), one number format, and one
//! rule for the score shown: the item's forward score decayed to the time of the list.
//!
//! Hand-written rather than `serde_json`: a batch writes about a million lines and the
//! publisher renders every changed list (~11k per publish at 100k purchases/s), and
//! `serde_json::to_writer` of a derived `Serialize` document of the same shape took 1.23× the
//! time (`examples/render_bench.rs`: 11,000 top-100 lists, 8.5 vs 6.9 µs per list, medians of 5
//! alternating rounds, 2026-11-30); the writer also records where each item ends, so that a
//! `limit` is served as a prefix of the rendered bytes. The batch output's test and the
//! example check both give the same documents.

use topsellers_model::{format_rfc3339_ms, Profile, RankedItem, TopKList};

use crate::json;

/// What a changelog line does to a rank slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotOp {
    /// The slot's item leaves it.
    Remove,
    /// An item takes the (empty) slot.
    Insert,
}

/// Appends the `/v1/top` document of `category` holding `items` (best first), scores as of
/// `as_of_ms`: `{"category":…,"profile":…,"as_of":…,"items":[{"rank":1,"item_id":…,"score":…},…]}`.
/// An item given with `Some(available)` also carries `"available":true|false` (the
/// `include_unavailable` view). Returns where the items start (just after `"items":[`) and
/// where each item ends (just after its `}`), so that a prefix of the items can be served
/// without rendering again.
pub fn push_document<'a>(
    out: &mut Vec<u8>,
    category: &str,
    items: impl Iterator<Item = (&'a RankedItem, Option<bool>)>,
    profile: &Profile,
    as_of_ms: i64,
) -> (usize, Vec<usize>) {
    out.extend_from_slice(b"{\"category\":");
    json::push_str(out, category);
    out.extend_from_slice(b",\"profile\":");
    json::push_str(out, &profile.name);
    out.extend_from_slice(b",\"as_of\":\"");
    out.extend_from_slice(format_rfc3339_ms(as_of_ms).as_bytes());
    out.extend_from_slice(b"\",\"items\":[");
    let items_start = out.len();
    let mut item_ends = Vec::with_capacity(items.size_hint().0);
    for (at, (item, available)) in items.enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.push(b'{');
        push_entry(
            out,
            at + 1,
            &item.item_id,
            Some(score(item, profile, as_of_ms)),
        );
        match available {
            Some(true) => out.extend_from_slice(b",\"available\":true"),
            Some(false) => out.extend_from_slice(b",\"available\":false"),
            None => {}
        }
        out.push(b'}');
        item_ends.push(out.len());
    }
    out.extend_from_slice(DOCUMENT_TAIL);
    (items_start, item_ends)
}

/// What closes a document's (possibly cut short) items array and the document.
pub const DOCUMENT_TAIL: &[u8] = b"]}";

/// Appends `batch`'s lines of `list`, one per rank, scores as of `as_of_ms`:
/// `{"profile":"7d","category":"books","rank":1,"item_id":"…","score":12.5}`.
pub fn push_rank_lines(out: &mut Vec<u8>, list: &TopKList, profile: &Profile, as_of_ms: i64) {
    if list.items.is_empty() {
        return;
    }
    // What the lines of one list share is rendered (and escaped) once per list.
    let head_at = out.len();
    out.extend_from_slice(b"{\"profile\":");
    json::push_str(out, &profile.name);
    out.extend_from_slice(b",\"category\":");
    json::push_str(out, &list.category);
    out.push(b',');
    let head = head_at..out.len();
    for (rank, item) in list.items.iter().enumerate() {
        if rank > 0 {
            out.extend_from_within(head.clone());
        }
        push_entry(
            out,
            rank + 1,
            &item.item_id,
            Some(score(item, profile, as_of_ms)),
        );
        out.extend_from_slice(b"}\n");
    }
}

/// The start of every changelog line of a snapshot: `{"time":"…","time_ms":…`.
pub fn changelog_time(time_ms: i64) -> Vec<u8> {
    let mut time = Vec::with_capacity(64);
    time.extend_from_slice(b"{\"time\":\"");
    time.extend_from_slice(format_rfc3339_ms(time_ms).as_bytes());
    time.extend_from_slice(b"\",\"time_ms\":");
    json::push_int(&mut time, time_ms);
    time
}

/// Appends one changelog line after its `time` (see [`changelog_time`]): `…,"profile":…,
/// "category":…,"op":"remove"|"insert","rank":…,"item_id":…` and, for an insert, the item's
/// `"score"`.
#[allow(clippy::too_many_arguments)]
pub fn push_slot_op(
    out: &mut Vec<u8>,
    time: &[u8],
    profile: &Profile,
    category: &str,
    op: SlotOp,
    rank: usize,
    item_id: &str,
    score: Option<f64>,
) {
    out.extend_from_slice(time);
    out.extend_from_slice(b",\"profile\":");
    json::push_str(out, &profile.name);
    out.extend_from_slice(b",\"category\":");
    json::push_str(out, category);
    out.extend_from_slice(match op {
        SlotOp::Remove => b",\"op\":\"remove\",",
        SlotOp::Insert => b",\"op\":\"insert\",",
    });
    push_entry(out, rank, item_id, score);
    out.extend_from_slice(b"}\n");
}

/// The score shown for `item` in a list as of `as_of_ms`.
pub fn score(item: &RankedItem, profile: &Profile, as_of_ms: i64) -> f64 {
    item.score.score_at(as_of_ms, profile.half_life_ms)
}

/// `"rank":R,"item_id":"…"[,"score":S]`: what every shape says of one entry.
fn push_entry(out: &mut Vec<u8>, rank: usize, item_id: &str, score: Option<f64>) {
    out.extend_from_slice(b"\"rank\":");
    json::push_int(out, rank);
    out.extend_from_slice(b",\"item_id\":");
    json::push_str(out, item_id);
    if let Some(score) = score {
        out.extend_from_slice(b",\"score\":");
        json::push_f64(out, score);
    }
}
