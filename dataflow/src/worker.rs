//! What every worker thread does: build its dataflow, then run the job's phases in order.

use std::sync::Arc;

use timely::worker::Worker;
use topsellers_model::{LatestLists, Snapshot};
use topsellers_operators::SizeHint;

use crate::context::Context;
use crate::error::RunError;
use crate::graph;
use crate::input::backfill::{self, Backfill};
use crate::input::{generator, kafka, Follow, Logger};
use crate::job::{Job, Live, Mode};

/// Runs one worker.
///
/// A panic (a bug) fails the run and stops the other workers, which would otherwise wait for
/// this one forever, before it goes on to end the thread.
pub fn run_worker(worker: &mut Worker, job: &Job, ctx: &Arc<Context>) {
    let index = worker.index();
    ctx.stop.wake_on_stop();
    let run = std::panic::AssertUnwindSafe(|| match &job.mode {
        Mode::Batch { backfill } => batch(worker, job, backfill, ctx),
        Mode::Serve { backfill, live } => serve(worker, job, backfill.as_ref(), live.as_ref(), ctx),
    });
    if let Err(panic) = std::panic::catch_unwind(run) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        ctx.fail(RunError::Panic {
            worker: index,
            message,
        });
        std::panic::resume_unwind(panic);
    }
}

/// `batch`: the history summed, ranked once, published once.
fn batch(worker: &mut Worker, job: &Job, backfill: &Backfill, ctx: &Arc<Context>) {
    let hint = SizeHint::default();
    let sink = snapshot_sink(worker.index(), job, Some(backfill), ctx);
    let mut graph = graph::build_batch(worker, &job.scoring, hint.clone(), sink);
    let published = backfill::aggregate(
        worker,
        &mut graph,
        &hint,
        backfill,
        &job.scoring,
        job.one_process(),
        job.pace.batch_size,
        ctx,
    );
    if published {
        ctx.backfill.finish();
    }
    worker.drop_dataflow(graph.id);
}

/// `serve`: the phases in order, each ending early on a stop or a failure.
///
/// 1. (a saved state would be restored here, before anything is read);
/// 2. the backfill: the history up to its cut-off, published as one snapshot;
/// 3. the live source, until stopped.
fn serve(
    worker: &mut Worker,
    job: &Job,
    backfill: Option<&Backfill>,
    live: Option<&Live>,
    ctx: &Arc<Context>,
) {
    let sink = snapshot_sink(worker.index(), job, backfill, ctx);
    let mut graph = graph::build_serving(worker, &job.scoring, job.leaders.clone(), sink);
    let replayed = backfill.is_none_or(|backfill| {
        backfill::seed(
            worker,
            &mut graph,
            backfill,
            &job.scoring,
            job.one_process(),
            job.pace.batch_size,
            ctx,
        )
    });
    if replayed {
        ctx.backfill.finish();
        let how = Follow {
            pace: job.pace,
            lateness_ms: job.scoring.lateness_ms,
            cluster: !job.one_process(),
        };
        let mut log = Logger::new(ctx, worker.index());
        match live {
            Some(Live::Generator(input)) => {
                generator::follow(worker, &mut graph, input, how, &mut log, ctx)
            }
            Some(Live::Kafka(input)) => {
                kafka::follow(worker, &mut graph, input, how, &mut log, ctx)
            }
            None => {
                while !ctx.stopped() {
                    worker.step_or_park(None);
                    if let Some(log) = &mut log {
                        log.cut_if_asked(None, *graph.input.time());
                    }
                }
            }
        }
        // Whatever ended the live phase, the log so far is handed over with where it stands.
        if let Some(log) = &mut log {
            log.finish(None, *graph.input.time());
        }
    }
    // Stop without draining: closing the input would retract everything still retained.
    worker.drop_dataflow(graph.id);
}

/// Where this worker's snapshots go: on a leader (the first worker of a process), to the
/// serving side. Snapshots of the backfill's internal rounds (their times count batches, not
/// events) are merged and handed on as one, at the backfill's own time: a reader never sees
/// them.
fn snapshot_sink(
    index: usize,
    job: &Job,
    backfill: Option<&Backfill>,
    ctx: &Arc<Context>,
) -> impl FnMut(Snapshot) + 'static {
    let leader = job.leaders.contains(&index);
    let mut hold_until = backfill.map(|b| b.until_ms.max(0));
    let mut held = LatestLists::default();
    let ctx = Arc::clone(ctx);
    move |mut snapshot: Snapshot| {
        if !leader {
            return;
        }
        if hold_until.is_some_and(|until| snapshot.time_ms < until) {
            held.extend(snapshot.lists);
            return;
        }
        if let Some(until) = hold_until.take() {
            // The backfill's snapshot: every category is announced in it, so it holds every
            // list there is (a list a restored checkpoint served and missing here is empty).
            held.extend(snapshot.lists.drain(..));
            snapshot.lists = held.take_sorted();
            snapshot.whole = snapshot.time_ms >= until;
        }
        ctx.publish(snapshot);
    }
}
