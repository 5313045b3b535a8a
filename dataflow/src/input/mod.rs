//! The input loops a worker runs, one per kind of input, each driving its dataflow with
//! [`Graph::advance`](crate::graph::Graph::advance): the history (`backfill`, and its batch
//! pre-aggregation in `aggregates`), then a live source (`generator` or `kafka`).
//!
//! A loop receives what it needs (its source, the [`Pace`], the process's
//! [`Context`](crate::context::Context)), never the whole job.

pub(crate) mod aggregates;
pub mod backfill;
pub mod generator;
pub mod kafka;

use topsellers_model::Purchase;
use topsellers_operators::Time;

use crate::graph::Graph;
use topsellers_model::purchase::Event;

/// How live input is handed to the dataflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// How often input time advances, in ms (≥ 1).
    pub epoch_ms: u64,
    /// Records entered at once.
    pub batch_size: usize,
}

/// `time` rounded down to a multiple of `epoch_ms`.
pub(crate) fn align(time: Time, epoch_ms: u64) -> Time {
    time - time % epoch_ms.max(1)
}

/// Enters a live purchase at its own event time, or at `current` (the input time) if it is
/// late: it keeps its own timestamp for its weight either way.
pub(crate) fn enter(graph: &mut Graph<Event>, purchase: Purchase, current: Time) {
    let time = (purchase.ts_ms.max(0) as Time).max(current);
    let (event, quantity) = purchase.into_update();
    graph.input.update_at(event, time, quantity);
}
