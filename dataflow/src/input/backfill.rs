//! The history, replayed before live input (`run`) or summed for one as-of time (`batch`): each
//! worker reads its share of the read units, the purchases inside the window count.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use timely::worker::Worker;
use topsellers_model::purchase::Event;
use topsellers_operators::{PairSums, SizeHint, Time};
use topsellers_sources::files::{Opener, ReadUnit};
use topsellers_sources::{BadRecord, RecordReader, SourceError};

use super::aggregates::Aggregates;
use crate::config::Scoring;
use crate::context::Context;
use crate::error::RunError;
use crate::graph::Graph;

/// Which event times count: `after_ms < ts <= until_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Purchases at or before this time are skipped: expired by the cut-off.
    pub after_ms: i64,
    /// Purchases after this time are skipped (owned by Kafka, or after the as-of time).
    pub until_ms: i64,
}

impl Window {
    fn contains(self, ts_ms: i64) -> bool {
        ts_ms <= self.until_ms && ts_ms > self.after_ms
    }
}

/// The files to read and, per file, the window of event times that counts.
#[derive(Clone, Debug)]
pub struct Backfill {
    /// Every unit of every file; each worker reads its share.
    pub units: Vec<ReadUnit>,
    /// Per unit, the window that counts.
    windows: Vec<Window>,
    /// The event time the backfill is complete at (inclusive): its snapshot is published
    /// before live input starts. With Kafka after it, the hand-over time T0 − 1
    /// ([`crate::handover`]); else the history's largest event time (`run`), the as-of time
    /// (`batch`), or a restored checkpoint's time.
    pub until_ms: i64,
    /// Whether bad records go to the dead-letter file (not when a restart reads the history
    /// again: they went there when it was first read).
    pub dead_letters: bool,
    /// The next unit for a worker of this process to claim (see [`Backfill::share`]).
    next_unit: Arc<AtomicUsize>,
    /// Units from this index on are this process's own (a restored checkpoint's segments):
    /// in a cluster, only its workers read them; the ones before, every process lists alike.
    local_from: usize,
}

impl Backfill {
    /// Reads `units` for the purchases with `after_ms < ts <= until_ms`.
    pub fn new(units: Vec<ReadUnit>, until_ms: i64, after_ms: i64) -> Backfill {
        let windows = vec![Window { after_ms, until_ms }; units.len()];
        Backfill {
            local_from: units.len(),
            units,
            windows,
            until_ms,
            dead_letters: true,
            next_unit: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reads every `(units, window)` part of `shared` (the history: in a cluster, every
    /// process lists the same units and the workers share them) and of `local` (this
    /// process's own: in a cluster, read by its workers alone), completing at `until_ms`; bad
    /// records are counted, not written again.
    pub fn again(
        shared: Vec<(Vec<ReadUnit>, Window)>,
        local: Vec<(Vec<ReadUnit>, Window)>,
        until_ms: i64,
    ) -> Backfill {
        let (mut units, mut windows) = (Vec::new(), Vec::new());
        let (shared_len, mut local_from) = (shared.len(), 0);
        for (at, (part, window)) in shared.into_iter().chain(local).enumerate() {
            windows.extend(std::iter::repeat_n(window, part.len()));
            units.extend(part);
            if at < shared_len {
                local_from = units.len();
            }
        }
        Backfill {
            units,
            windows,
            until_ms,
            dead_letters: false,
            next_unit: Arc::new(AtomicUsize::new(0)),
            local_from,
        }
    }

    /// How many units every process of a cluster lists alike (and its workers share).
    pub fn shared_units(&self) -> usize {
        self.local_from
    }

    /// Completes at `until_ms` instead (a cluster's agreed cut-off, not before this one's):
    /// purchases expired by then (`ts <= until_ms - retention_ms`) are not read.
    pub fn complete_at(&mut self, until_ms: i64, retention_ms: i64) {
        self.until_ms = self.until_ms.max(until_ms);
        let after_ms = self.until_ms.saturating_sub(retention_ms);
        for window in &mut self.windows {
            window.after_ms = window.after_ms.max(after_ms);
        }
    }

    /// The logical time the backfill's snapshot is published at.
    fn until(&self) -> Time {
        self.until_ms.max(0) as Time
    }

    /// The units worker `index` of `peers` reads, by their index. In one process, workers
    /// claim units as they go, so that one that drew quick units does not idle while another
    /// still reads. Across processes (`one_process` false), each worker reads the shared units
    /// of its global index (nobody to share a counter with), and the workers of a process claim
    /// its own units (a restored checkpoint's segments) as they go.
    fn share(
        &self,
        index: usize,
        peers: usize,
        one_process: bool,
    ) -> Box<dyn Iterator<Item = usize>> {
        if one_process {
            let (count, next) = (self.units.len(), Arc::clone(&self.next_unit));
            Box::new(std::iter::from_fn(move || {
                Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&at| at < count)
            }))
        } else {
            let (shared, count) = (self.local_from, self.units.len());
            let next = Arc::clone(&self.next_unit);
            let own = std::iter::from_fn(move || {
                Some(shared + next.fetch_add(1, Ordering::Relaxed)).filter(|&at| at < count)
            });
            Box::new(
                (0..shared)
                    .filter(move |at| at % peers.max(1) == index)
                    .chain(own),
            )
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
    let started = std::time::Instant::now();
    let (mut pairs, mut purchases, mut bytes) = (0, 0, 0);
    for seed in sums.into_seeds() {
        pairs += 1;
        purchases += seed.purchases.len();
        bytes += seed.purchases.encoded_len();
        seeds.update(seed, 1);
    }
    tracing::debug!(
        "worker {}: {pairs} seeds made in {:.2}s, {purchases} purchases in {bytes} bytes",
        worker.index(),
        started.elapsed().as_secs_f64()
    );
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
    let share = backfill.share(index, peers, one_process);
    let read = read_share(backfill, share, index, ctx, |reader, window, bad| {
        let (mut inside, mut outside) = (0, 0);
        // Summed straight from the reader's buffers: nothing allocated per purchase.
        let more = reader.visit_batch(
            &mut |purchase| {
                if window.contains(purchase.ts_ms) {
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

/// Reads the units `share` names, handing each to `batch` (with its window) until it has no
/// more; counts progress, bad and ignored records. `false` when stopped or failed (the failure
/// is reported).
fn read_share(
    backfill: &Backfill,
    share: Box<dyn Iterator<Item = usize>>,
    worker: usize,
    ctx: &Context,
    mut batch: impl FnMut(
        &mut dyn RecordReader,
        Window,
        &mut Vec<BadRecord>,
    ) -> Result<Read, SourceError>,
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
    // The opener reads a unit ahead: the windows of the units it was handed, in order.
    let windows = Rc::new(RefCell::new(VecDeque::new()));
    let units = {
        let (windows, all) = (windows.clone(), backfill.units.clone());
        let per_unit = backfill.windows.clone();
        share.map(move |at| {
            windows.borrow_mut().push_back(per_unit[at]);
            all[at].clone()
        })
    };
    for (unit, opened) in Opener::new(units) {
        let window = windows.borrow_mut().pop_front().expect("a window per unit");
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(e) => return failed(&unit, e),
        };
        let (mut rows_before, mut bytes_before) = (0, 0);
        loop {
            if ctx.stopped() {
                return false;
            }
            let read = match batch(&mut *reader, window, &mut bad) {
                Ok(read) => read,
                Err(e) => return failed(&unit, e),
            };
            if backfill.dead_letters {
                ctx.bad(&mut bad);
            } else {
                ctx.metrics.add_bad_records(bad.len() as u64);
                bad.clear();
            }
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
        failpoint_hold(ctx);
    }
    true
}

/// For tests that must see a backfill in progress: with `TOPSELLERS_FAILPOINT_BACKFILL_HOLD`
/// naming a file, each unit read is followed by a wait while that file exists (until a stop).
fn failpoint_hold(ctx: &Context) {
    static HOLD: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let hold =
        HOLD.get_or_init(|| std::env::var_os("TOPSELLERS_FAILPOINT_BACKFILL_HOLD").map(Into::into));
    if let Some(file) = hold {
        while file.exists() && !ctx.stopped() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
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
