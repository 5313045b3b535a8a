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

use std::collections::BTreeMap;
use std::sync::Arc;

use topsellers_model::purchase::Event;
use topsellers_model::Purchase;
use topsellers_operators::Time;
use topsellers_sources::BadRecord;

use crate::context::Context;
use crate::graph::Graph;
use crate::state::{Checkpoints, WorkerLog};

/// How live input is handed to the dataflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// How often input time advances, in ms (≥ 1).
    pub epoch_ms: u64,
    /// Records entered at once.
    pub batch_size: usize,
}

/// How a live input runs: its pace, the watermark's lag, and whether other processes take part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follow {
    /// How input is handed to the dataflow.
    pub pace: Pace,
    /// How far behind the largest event time the watermark stays.
    pub lateness_ms: i64,
    /// Whether other processes take part (a cluster).
    pub cluster: bool,
}

/// `time` rounded down to a multiple of `epoch_ms`.
pub(crate) fn align(time: Time, epoch_ms: u64) -> Time {
    time - time % epoch_ms.max(1)
}

/// Enters a live purchase at `at` (no earlier than `current`, the input time: a late purchase
/// enters now), logging it for checkpoints; it keeps its own timestamp for its weight.
pub(crate) fn enter(
    graph: &mut Graph<Event>,
    log: &mut Option<Logger>,
    purchase: Purchase,
    at: Time,
    current: Time,
) -> Time {
    let time = at.max(current);
    if let Some(log) = log {
        log.entered(&purchase, time);
    }
    let (event, quantity) = purchase.into_update();
    graph.input.update_at(event, time, quantity);
    time
}

/// A worker's log for checkpoints (with a state directory): the purchases it entered and the
/// bad records it met, handed over when the checkpointer asks.
#[derive(Debug)]
pub struct Logger {
    checkpoints: Arc<Checkpoints>,
    log: WorkerLog,
    worker: usize,
    finished: bool,
}

impl Logger {
    /// The log of worker `worker`, if the process keeps a state.
    pub fn new(ctx: &Context, worker: usize) -> Option<Logger> {
        let checkpoints = ctx.checkpoints.clone()?;
        checkpoints.wake_on_request();
        Some(Logger {
            checkpoints,
            log: WorkerLog::default(),
            worker,
            finished: false,
        })
    }

    /// Logs a purchase entered at input time `at`.
    pub fn entered(&mut self, purchase: &Purchase, at: Time) {
        self.log.entered(purchase, at);
    }

    /// Hands the log over if the checkpointer asks; `kafka` are the next offsets of the
    /// worker's partitions, `current` its input time.
    pub fn cut_if_asked(&mut self, kafka: Option<&BTreeMap<i32, i64>>, current: Time) {
        if self.checkpoints.due(&self.log) {
            self.checkpoints
                .cut(&mut self.log, self.worker, kafka, current, false);
        }
    }

    /// The last cut: the worker stops (once; later calls do nothing).
    pub fn finish(&mut self, kafka: Option<&BTreeMap<i32, i64>>, current: Time) {
        if !self.finished {
            self.finished = true;
            self.checkpoints
                .cut(&mut self.log, self.worker, kafka, current, true);
        }
    }
}

/// Bad records met by a live input: counted, logged and written now, or, with a state, counted
/// and logged now and written with the checkpoint that pairs them with the sources' positions.
pub(crate) fn bad(ctx: &Context, log: &mut Option<Logger>, bad: &mut Vec<BadRecord>) {
    match log {
        Some(logger) => {
            ctx.note_bad(bad);
            logger.log.bad(bad);
        }
        None => ctx.bad(bad),
    }
}
