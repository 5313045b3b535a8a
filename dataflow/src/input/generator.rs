//! Live input from the built-in generator: synthetic purchases at the wall clock, each worker
//! generating its share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::worker::Worker;
use topsellers_model::purchase::Event;
use topsellers_model::{wall_clock_ms, Purchase};
use topsellers_operators::Time;
use topsellers_sources::generator::{Catalog, Generator, GeneratorConfig, Rate};

use super::{align, enter, Follow, Logger};
use crate::context::Context;
use crate::error::RunError;
use crate::graph::Graph;

/// The generator of one process: its settings and the catalog its workers share.
#[derive(Clone, Debug)]
pub struct GeneratorInput {
    /// How to generate.
    pub config: GeneratorConfig,
    /// Shared names and popularity, built once per process.
    pub catalog: Arc<Catalog>,
}

/// Generates this worker's share of purchases until stopped. The lateness holds the input
/// time back behind the wall clock; in a cluster, purchases wait for their epoch (see below).
pub fn follow(
    worker: &mut Worker,
    graph: &mut Graph<Event>,
    input: &GeneratorInput,
    how: Follow,
    log: &mut Option<Logger>,
    ctx: &Context,
) {
    let Follow {
        pace,
        lateness_ms,
        cluster,
    } = how;
    let (index, peers) = (worker.index(), worker.peers());
    let mut generator =
        match Generator::new(Arc::clone(&input.catalog), &input.config, index, peers) {
            Ok(generator) => generator,
            Err(source) => {
                return ctx.fail(RunError::Generator {
                    worker: index,
                    source,
                })
            }
        };
    let epoch = Duration::from_millis(pace.epoch_ms);
    let unthrottled = matches!(input.config.rate, Rate::Max);
    // In a cluster, purchases at or after the input's next time wait here for their epoch:
    // entered early, they make the frontier stop at their own times, and the snapshot times
    // would depend on how each process saw progress, not on the epochs alone. One process has
    // nobody to agree with, and enters them at once: an A/B run at load 5 showed holding them
    // back ~15% slower (noisy: the workers then digest an epoch only after it is generated).
    let hold_ahead = cluster;
    let mut ahead: Vec<Purchase> = Vec::new();
    let mut purchases = Vec::with_capacity(pace.batch_size);
    while !ctx.stopped() {
        let started = Instant::now();
        let now_ms = wall_clock_ms();
        generator.poll(now_ms, &mut purchases, pace.batch_size);
        let current = *graph.input.time();
        ctx.metrics.add_purchases(purchases.len() as u64);
        // The generator never emits an event time after the wall clock: that is its
        // watermark, so time moves even when no purchase arrives. Rounding it down to the
        // epoch makes every worker advance to the same times, so the frontier (and a snapshot)
        // moves once per epoch rather than once per worker.
        let next = (align((now_ms - lateness_ms).max(0) as Time, pace.epoch_ms) + 1).max(current);
        purchases.append(&mut ahead);
        for purchase in purchases.drain(..) {
            let ts = purchase.ts_ms.max(0) as Time;
            if !hold_ahead || ts < next {
                enter(graph, log, purchase, ts, current);
            } else {
                ahead.push(purchase);
            }
        }
        // Let the dataflow finish the previous epoch before starting another.
        graph.advance(worker, next, current, &ctx.stop);
        if let Some(log) = log {
            // What waits `ahead` is not entered yet: it is logged when it is.
            log.cut_if_asked(None, next);
        }
        if !unthrottled {
            while let Some(left) = epoch.checked_sub(started.elapsed()) {
                if ctx.stopped() || left.is_zero() {
                    break;
                }
                worker.step_or_park(Some(left));
            }
        }
    }
}
