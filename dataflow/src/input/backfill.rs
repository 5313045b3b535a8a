//! The history, replayed before live input (`run`) or summed for one as-of time (`batch`): each
//! worker reads its share of the read units, the purchases inside the window count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use timely::worker::Worker;
use topsellers_model::purchase::Event;
use topsellers_operators::{PairSums, SizeHint, Time};
use topsellers_sources::files::{units_for_worker, Opener, ReadUnit};
use topsellers_sources::{BadRecord, RecordReader, SourceError};

use super::aggregates::Aggregates;
use crate::config::Scoring;
use crate::context::Context;
use crate::error::RunError;
use crate::graph::Graph;

/// The files to read and the window of event times that counts.
#[derive(Clone, Debug)]
pub struct Backfill {
    /// Every unit of every file; each worker reads its share.
    pub units: Vec<ReadUnit>,
    /// The event time the replay is complete at (inclusive): its snapshot is published before
    /// live input starts. Purchases after it are skipped (counted). With Kafka after the
    /// backfill it is the hand-over time T0 − 1 ([`crate::handover`]); else the history's
    /// largest event time (`run`) or the as-of time (`batch`).
    pub until_ms: i64,
    /// Purchases at or before this time are skipped: expired by `until_ms` (`until − retention`).
    pub after_ms: i64,
    /// The next unit for a worker of this process to claim (see [`Backfill::share`]).
    next_unit: Arc<AtomicUsize>,
}

impl Backfill {
    /// Reads `units` for the purchases with `after_ms < ts <= until_ms`.
    pub fn new(units: Vec<ReadUnit>, until_ms: i64, after_ms: i64) -> Backfill {
        Backfill {
            units,
            until_ms,
            after_ms,
            next_unit: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether a purchase at `ts_ms` counts.
    fn inside(&self, ts_ms: i64) -> bool {
        ts_ms <= self.until_ms && ts_ms > self.after_ms
    }

    /// The logical time the backfill's snapshot is published at.
    fn until(&self) -> Time {
        self.until_ms.max(0) as Time
    }

    /// The units worker `index` of `peers` reads. In one process, workers claim units as they
    /// go, so that one that drew quick units does not idle while another still reads. Across
    /// processes (`one_process` false), each worker reads the units of its global index
    /// (nobody to share a counter with).
    fn share(
        &self,
        index: usize,
        peers: usize,
        one_process: bool,
    ) -> Box<dyn Iterator<Item = ReadUnit>> {
        if one_process {
            let (all, next) = (self.units.clone(), Arc::clone(&self.next_unit));
            Box::new(std::iter::from_fn(move || {
                all.get(next.fetch_add(1, Ordering::Relaxed)).cloned()
            }))
        } else {
            Box::new(units_for_worker(&self.units, index, peers).into_iter())
        }
    }
}

/// What one batch of reading did.
struct Read {
    /// Whether the unit may have more.
    more: bool,
    /// Purchases inside the window.
    inside: u64,
    /// Purchases outside it (skipped).
    outside: u64,
}

/// Reads this worker's share of `backfill` into the serving dataflow the way `batch` reads:
/// summed per (item, leaf category) as it is read, then one seed per pair at the cut-off (each
/// purchase still expires on its own, at `ts + retention`), ranked once; then completes the
/// backfill's snapshot. `false` when stopped or failed (the failure is reported).
pub fn seed(
    worker: &mut Worker,
    graph: &mut Graph<Event>,
    backfill: &Backfill,
    scoring: &Scoring,
    one_process: bool,
    batch_size: usize,
    ctx: &Context,
) -> bool {
    let Some(sums) = sum_share(
        worker,
        backfill,
        Aggregates::recording(scoring),
        one_process,
        batch_size,
        ctx,
    ) else {
        return false;
    };
    // Seeds are entered at the input's current time: the cut-off.
    graph.advance_inputs(backfill.until());
    let seeds = graph
        .seeds
        .as_mut()
        .expect("the serving dataflow takes seeds");
    for seed in sums.into_seeds() {
        seeds.update(seed, 1);
    }
    complete(worker, graph, backfill, ctx)
}

/// Sums this worker's share of `backfill` per (item, leaf category) as it reads, then hands the
/// dataflow one exact update per pair (nothing expires: batch input is cut to the window), and
/// completes the snapshot. `false` when stopped or failed (the failure is reported).
#[allow(clippy::too_many_arguments)]
pub fn aggregate(
    worker: &mut Worker,
    graph: &mut Graph<PairSums>,
    hint: &SizeHint,
    backfill: &Backfill,
    scoring: &Scoring,
    one_process: bool,
    batch_size: usize,
    ctx: &Context,
) -> bool {
    let Some(mut sums) = sum_share(
        worker,
        backfill,
        Aggregates::new(scoring),
        one_process,
        batch_size,
        ctx,
    ) else {
        return false;
    };
    hint.expect(sums.pairs());
    for (pair, count) in sums.into_updates() {
        graph.input.update(pair, count);
    }
    complete(worker, graph, backfill, ctx)
}

/// Reads this worker's share of `backfill`'s units into `sums`, purchases inside the window
/// only. `None` when stopped or failed (the failure is reported).
fn sum_share(
    worker: &Worker,
    backfill: &Backfill,
    mut sums: Aggregates,
    one_process: bool,
    batch_size: usize,
    ctx: &Context,
) -> Option<Aggregates> {
    let started = std::time::Instant::now();
    let (index, peers) = (worker.index(), worker.peers());
    let units = backfill.share(index, peers, one_process);
    let read = read_share(units, index, ctx, |reader, bad| {
        let (mut inside, mut outside) = (0, 0);
        // Summed straight from the reader's buffers: nothing allocated per purchase.
        let more = reader.visit_batch(
            &mut |purchase| {
                if backfill.inside(purchase.ts_ms) {
                    sums.add(purchase);
                    inside += 1;
                } else {
                    outside += 1;
                }
            },
            bad,
            batch_size,
        )?;
        Ok(Read {
            more,
            inside,
            outside,
        })
    });
    if !read {
        return None;
    }
    tracing::debug!(
        "worker {index}: read its share in {:.2}s, {} (item, category) pairs",
        started.elapsed().as_secs_f64(),
        sums.pairs(),
    );
    Some(sums)
}

/// Reads `units`, handing each to `batch` until it has no more; counts progress, bad and
/// ignored records. `false` when stopped or failed (the failure is reported).
fn read_share(
    units: Box<dyn Iterator<Item = ReadUnit>>,
    worker: usize,
    ctx: &Context,
    mut batch: impl FnMut(&mut dyn RecordReader, &mut Vec<BadRecord>) -> Result<Read, SourceError>,
) -> bool {
    let mut bad = Vec::new();
    let failed = |unit: &ReadUnit, source| {
        ctx.fail(RunError::Read {
            worker,
            unit: unit.location.to_string(),
            source,
        });
        false
    };
    for (unit, opened) in Opener::new(units) {
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(e) => return failed(&unit, e),
        };
        let (mut rows_before, mut bytes_before) = (0, 0);
        loop {
            if ctx.stopped() {
                return false;
            }
            let read = match batch(&mut *reader, &mut bad) {
                Ok(read) => read,
                Err(e) => return failed(&unit, e),
            };
            ctx.bad(&mut bad);
            ctx.metrics.add_purchases(read.inside);
            let (rows, bytes) = (reader.rows_read(), reader.bytes_read());
            ctx.backfill.add(
                rows - rows_before,
                bytes.saturating_sub(bytes_before),
                read.outside,
            );
            rows_before = rows;
            bytes_before = bytes_before.max(bytes);
            if !read.more {
                break;
            }
        }
        ctx.metrics.add_ignored_records(reader.ignored());
        // The rest of the unit's size (all of it for Parquet), so that bytes add up.
        ctx.backfill
            .unit_done(&unit, unit.size.bytes.saturating_sub(bytes_before));
    }
    true
}

/// Completes the backfill's snapshot before anything live enters: moves the input past the
/// cut-off and waits until this process has handed the snapshot on.
fn complete<D: differential_dataflow::ExchangeData>(
    worker: &mut Worker,
    graph: &mut Graph<D>,
    backfill: &Backfill,
    ctx: &Context,
) -> bool {
    graph.advance_inputs(backfill.until() + 1);
    let until = backfill.until_ms.max(0);
    graph.step_until(worker, &ctx.stop, || ctx.published() >= until)
}
