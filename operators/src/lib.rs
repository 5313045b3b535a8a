//! topsellers' own dataflow operators: retention, decayed per-category top-k, merge, snapshots.
//!
//! The pipeline they form (see `topsellers::render`):
//!
//! ```text
//! purchases ─ decayed_local_topk (by item; retention inside) ─ merge_topk (by category) ─ snapshots
//! ```
//!
//! Batch input, cut to a fixed window, takes `bulk_local_topk` instead of `decayed_local_topk`.
//!
//! Logical time is event time in milliseconds (`u64`). A purchase is the update
//! `(Event, t, q)` with `t = max(ts, input time)` and the integer quantity `q` as its
//! difference, so returns cancel exactly; each purchase is retracted at `ts + retention`.
#![warn(missing_docs)]

pub mod bulk_topk;
pub mod decayed_topk;
mod expiry;
mod ids;
pub mod merge_topk;
#[cfg(test)]
mod oracle;
pub mod purchase_run;
pub mod snapshots;
pub mod stash;

use topsellers_model::purchase::Event;

pub use bulk_topk::{BulkLocalTopK, PairSums, SizeHint};
pub use decayed_topk::{DecayedLocalTopK, LocalChange, PairSeed, TopKConfig};
pub use merge_topk::MergeTopK;
pub use purchase_run::{PurchaseRun, RunBuilder};
pub use snapshots::Snapshots;

/// The dataflow's logical time: event time in milliseconds since the Unix epoch.
pub type Time = u64;

/// Routes a purchase update to the worker that owns its item: every stage keyed by item
/// (`decayed_local_topk`, and `bulk_local_topk` through [`route_hash`]) must agree on it.
pub(crate) fn by_item((event, _time, _diff): &(Event, Time, i64)) -> u64 {
    route_hash(event.item_id.as_bytes())
}

/// Stable 64-bit hash used to route records to workers (the same in every process).
pub fn route_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
