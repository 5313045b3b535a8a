//! Builds the dataflow from the scoring settings: a thin dispatcher over `topsellers-operators`.

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use topsellers_model::purchase::Event;
use topsellers_model::Snapshot;
use topsellers_operators::{
    BulkLocalTopK, DecayedLocalTopK, MergeTopK, SizeHint, Snapshots, Time, TopKConfig,
};

use crate::config::Scoring;

/// The handles a worker drives its dataflow with.
pub struct Graph {
    /// Purchases in: `(event, time, quantity)`.
    pub purchases: InputSession<Time, Event, i64>,
    /// Reports how far the top-k lists are complete.
    pub probe: ProbeHandle<Time>,
    /// The dataflow's id, to drop it without draining pending retractions.
    pub id: usize,
    /// How many updates to expect (batch: see [`SizeHint`]).
    pub size_hint: SizeHint,
}

/// What the graph does with retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Retract each purchase at `ts + retention` (live service, backfill).
    Retract,
    /// The input is already cut to the retention window of a fixed as-of time (batch).
    PreFiltered,
}

/// Builds `purchases → decayed_local_topk (bulk_local_topk for batch) → merge_topk → snapshots`
/// on `worker`.
/// `sink` gets the snapshots on the workers listed in `leaders`.
pub fn build(
    worker: &mut Worker,
    scoring: &Scoring,
    expiry: Expiry,
    leaders: Vec<usize>,
    sink: impl FnMut(Snapshot) + 'static,
) -> Graph {
    let id = worker.next_dataflow_index();
    let probe = ProbeHandle::new();
    let size_hint = SizeHint::default();
    let topk = TopKConfig {
        half_lives_ms: scoring.profiles.iter().map(|p| p.half_life_ms).collect(),
        k: scoring.k,
        retention_ms: match expiry {
            Expiry::Retract => Some(scoring.retention_ms),
            Expiry::PreFiltered => None,
        },
    };
    let purchases = worker.dataflow::<Time, _, _>(|scope| {
        let (input, purchases) = scope.new_collection::<Event, i64>();
        let local = match expiry {
            Expiry::Retract => purchases.decayed_local_topk(&topk),
            Expiry::PreFiltered => purchases.bulk_local_topk(&topk, size_hint.clone()),
        };
        local
            .merge_topk(scoring.k)
            .probe_with(&probe)
            .snapshots(leaders, sink);
        input
    });
    Graph {
        purchases,
        probe,
        id,
        size_hint,
    }
}
