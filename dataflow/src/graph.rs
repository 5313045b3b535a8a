//! Builds a worker's dataflow from the scoring settings: a thin dispatcher over
//! `topsellers-operators`, and the one step every input loop takes to drive it.

use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::ExchangeData;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::worker::Worker;

use topsellers_model::purchase::Event;
use topsellers_model::Snapshot;
use topsellers_operators::{
    BulkLocalTopK, DecayedLocalTopK, LocalChange, MergeTopK, PairSums, SizeHint, Snapshots, Time,
    TopKConfig,
};

use crate::config::Scoring;
use crate::stop::Stop;

/// The handles a worker drives its dataflow with; `D` is what enters it.
pub struct Graph<D: ExchangeData> {
    /// Updates in: `(datum, time, difference)`.
    pub input: InputSession<Time, D, i64>,
    /// Reports how far the top-k lists are complete.
    pub probe: ProbeHandle<Time>,
    /// The dataflow's id, to drop it without draining pending retractions.
    pub id: usize,
}

/// Longest a worker parks while it waits for the dataflow (it is woken by progress from other
/// workers and by a stop before that).
const PARK: Duration = Duration::from_millis(1);

impl<D: ExchangeData> Graph<D> {
    /// The step of every input loop: moves the input to `to` (handing over what was entered),
    /// then steps `worker` until the dataflow has finished every time before `done`, or a stop.
    pub fn advance(&mut self, worker: &mut Worker, to: Time, done: Time, stop: &Stop) {
        self.input.advance_to(to);
        self.input.flush();
        while self.probe.less_than(&done) && !stop.is_stopped() {
            worker.step_or_park(Some(PARK));
        }
        worker.step();
    }

    /// Steps `worker` until `ready` holds or a stop; whether `ready` held.
    pub fn step_until(&self, worker: &mut Worker, stop: &Stop, ready: impl Fn() -> bool) -> bool {
        while !ready() {
            if stop.is_stopped() {
                return false;
            }
            worker.step_or_park(Some(PARK));
        }
        true
    }
}

/// `purchases → decayed_local_topk → merge_topk → snapshots`: the live service (and its
/// backfill), where each purchase is retracted at `ts + retention`. `sink` gets the snapshots
/// on the workers listed in `leaders`.
pub fn build_serving(
    worker: &mut Worker,
    scoring: &Scoring,
    leaders: Vec<usize>,
    sink: impl FnMut(Snapshot) + 'static,
) -> Graph<Event> {
    let topk = TopKConfig::new(&scoring.profiles, scoring.k, Some(scoring.retention_ms));
    build(worker, scoring.k, leaders, sink, |purchases| {
        purchases.decayed_local_topk(&topk)
    })
}

/// `sums per (leaf, item) → bulk_local_topk → merge_topk → snapshots`: batch, whose input is
/// already cut to the retention window of one as-of time and summed. `hint` sizes the ranking
/// stage's tables.
pub fn build_batch(
    worker: &mut Worker,
    scoring: &Scoring,
    hint: SizeHint,
    sink: impl FnMut(Snapshot) + 'static,
) -> Graph<PairSums> {
    let topk = TopKConfig::new(&scoring.profiles, scoring.k, None);
    build(worker, scoring.k, vec![0], sink, |sums| {
        sums.bulk_local_topk(&topk, hint)
    })
}

/// An input, the local stage `local` makes of it, then the shared tail: merge, snapshots.
fn build<D: ExchangeData>(
    worker: &mut Worker,
    k: usize,
    leaders: Vec<usize>,
    sink: impl FnMut(Snapshot) + 'static,
    local: impl for<'scope> FnOnce(
        differential_dataflow::VecCollection<'scope, Time, D, i64>,
    ) -> StreamVec<'scope, Time, LocalChange>,
) -> Graph<D> {
    let id = worker.next_dataflow_index();
    let probe = ProbeHandle::new();
    let input = worker.dataflow::<Time, _, _>(|scope| {
        let (input, collection) = scope.new_collection::<D, i64>();
        local(collection)
            .merge_topk(k)
            .probe_with(&probe)
            .snapshots(leaders, sink);
        input
    });
    Graph { input, probe, id }
}
