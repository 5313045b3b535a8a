//! Builds a worker's dataflow from the scoring settings: a thin dispatcher over
//! `topsellers-operators`, and the one step every input loop takes to drive it.

use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::ExchangeData;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use topsellers_model::purchase::Event;
use topsellers_model::Snapshot;
use topsellers_operators::{
    BulkLocalTopK, DecayedLocalTopK, MergeTopK, PairSeed, PairSums, SizeHint, Snapshots, Time,
    TopKConfig,
};

use crate::config::Scoring;
use crate::gossip::Gossip;
use crate::stop::Stop;

/// The handles a worker drives its dataflow with; `D` is what enters it.
pub struct Graph<D: ExchangeData> {
    /// Updates in: `(datum, time, difference)`.
    pub input: InputSession<Time, D, i64>,
    /// Seeds in (the serving dataflow's bulk input: see [`PairSeed`]), entered at the input's
    /// current time.
    pub seeds: Option<InputSession<Time, PairSeed, i64>>,
    /// Reports how far the top-k lists are complete.
    pub probe: ProbeHandle<Time>,
    /// What the live readers of every worker tell each other (the serving dataflow's).
    pub gossip: Option<Gossip>,
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
        self.advance_inputs(to);
        while self.probe.less_than(&done) && !stop.is_stopped() {
            worker.step_or_park(Some(PARK));
        }
        worker.step();
    }

    /// Moves every input to `to` and hands over what was entered.
    pub fn advance_inputs(&mut self, to: Time) {
        self.input.advance_to(to);
        self.input.flush();
        if let Some(seeds) = &mut self.seeds {
            seeds.advance_to(to);
            seeds.flush();
        }
        if let Some(gossip) = &mut self.gossip {
            gossip.advance_to(to);
        }
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

/// `purchases (+ seeds) → decayed_local_topk → merge_topk → snapshots`: the live service,
/// where each purchase is retracted at `ts + retention`; a backfill enters its history as
/// seeds. `sink` gets the snapshots on the workers listed in `leaders`. Beside it, the live
/// readers' [`Gossip`].
pub fn build_serving(
    worker: &mut Worker,
    scoring: &Scoring,
    leaders: Vec<usize>,
    sink: impl FnMut(Snapshot) + 'static,
) -> Graph<Event> {
    // The operators keep `candidates` (k + the availability buffer); the table shows k.
    let mut topk = TopKConfig::new(
        &scoring.profiles,
        scoring.candidates,
        Some(scoring.retention_ms),
    );
    topk.carry_scores = scoring.carry_scores;
    let id = worker.next_dataflow_index();
    let probe = ProbeHandle::new();
    let (input, seeds, gossip) = worker.dataflow::<Time, _, _>(|scope| {
        let (input, purchases) = scope.new_collection::<Event, i64>();
        let (seed_input, seeds) = scope.new_collection::<PairSeed, i64>();
        // A seed's time is its message's: it is entered at the input's current time.
        let seeds = seeds.inner.map(|(seed, _time, _count)| seed);
        purchases
            .decayed_local_topk(seeds, &topk)
            .merge_topk(scoring.candidates)
            .probe_with(&probe)
            .snapshots(leaders, sink);
        (input, seed_input, Gossip::build(&scope))
    });
    Graph {
        input,
        seeds: Some(seeds),
        probe,
        gossip: Some(gossip),
        id,
    }
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
    let id = worker.next_dataflow_index();
    let probe = ProbeHandle::new();
    let input = worker.dataflow::<Time, _, _>(|scope| {
        let (input, sums) = scope.new_collection::<PairSums, i64>();
        sums.bulk_local_topk(&topk, hint)
            .merge_topk(scoring.k)
            .probe_with(&probe)
            .snapshots(vec![0], sink);
        input
    });
    Graph {
        input,
        seeds: None,
        probe,
        gossip: None,
        id,
    }
}
