//! Starts this process's timely workers on a job, alone or as one process of a cluster, and
//! joins them.

use std::sync::Arc;
use std::time::Duration;

use timely::communication::allocator::zero_copy::initialize::CommsGuard;
use timely::communication::WorkerGuards;
use timely::WorkerConfig;

use crate::cluster::{self, Hello, PeerLoss, Seat};
use crate::context::Context;
use crate::error::{DriverError, RunError};
use crate::job::Job;
use crate::worker::run_worker;

/// How long a lost peer waits for this process's own stop before it counts as a failure: a
/// peer that stops closes its connections, and when the whole cluster stops, the others'
/// signal may arrive a moment later than its.
const PEER_STOP_GRACE: Duration = Duration::from_millis(300);

/// The running workers of this process.
pub struct Workers {
    guards: WorkerGuards<()>,
    /// The network threads, and what a lost peer reported (clusters only).
    comms: Option<(CommsGuard, PeerLoss)>,
}

/// Where this process sits in a cluster, and what it tells its peers.
pub struct Membership<'a> {
    /// This process's seat in the layout.
    pub seat: &'a Seat,
    /// What must agree among the processes.
    pub hello: Hello,
}

/// Starts `threads` workers on `job`; in a cluster, connects to the peers first (this blocks
/// until every process is there, or the layout's `connect_timeout`), and completes the
/// backfill at the cut-off the processes agreed on.
pub fn start(
    mut job: Job,
    ctx: &Arc<Context>,
    threads: usize,
    cluster: Option<Membership<'_>>,
) -> Result<Workers, DriverError> {
    let connected = match cluster {
        None => None,
        Some(Membership { seat, hello }) => {
            let loss = {
                let ctx = Arc::clone(ctx);
                PeerLoss::new(move |message| report_loss(&ctx, message))
            };
            let (sockets, until_ms) = cluster::connect(seat, hello, loss.clone())?;
            tracing::info!(
                "process {} of {} connected to its peers",
                seat.process,
                seat.layout.process.len()
            );
            job.agree_backfill_until(until_ms);
            Some((seat, sockets, loss))
        }
    };
    let worker_ctx = Arc::clone(ctx);
    let work = move |worker: &mut timely::worker::Worker| run_worker(worker, &job, &worker_ctx);
    let started =
        match connected {
            None => timely::execute(
                timely::Config {
                    communication: timely::CommunicationConfig::Process(threads),
                    worker: WorkerConfig::default(),
                },
                work,
            )
            .map(|guards| (guards, None)),
            Some((seat, sockets, loss)) => {
                let (builders, comms) = cluster::allocators(sockets, seat.process, threads)
                    .map_err(|source| DriverError::Start {
                        what: "the cluster's network threads",
                        source,
                    })?;
                timely::execute::execute_from(builders, Box::new(()), WorkerConfig::default(), work)
                    .map(|guards| (guards, Some((comms, loss))))
            }
        };
    let (guards, comms) = started.map_err(DriverError::Workers)?;
    Ok(Workers { guards, comms })
}

impl Workers {
    /// Waits for every worker to end. A peer that is gone makes the workers panic (reported
    /// as the lost peer); one that stopped cleanly (the whole cluster stopping) does not.
    pub fn join(self) -> Result<(), DriverError> {
        let results = self.guards.join();
        let lost = self.comms.and_then(|(comms, loss)| {
            close_network(comms);
            loss.message().map(str::to_owned)
        });
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(error) => Err(match lost {
                Some(lost) => RunError::PeerLost(lost).into(),
                None => DriverError::Workers(format!("a worker failed: {error}")),
            }),
        }
    }
}

/// Fails the run with `message` (a lost peer), unless this process is stopping anyway.
fn report_loss(ctx: &Context, message: String) {
    if ctx.stop.wait_timeout(PEER_STOP_GRACE) {
        tracing::info!("while stopping: {message}");
    } else {
        ctx.fail(RunError::PeerLost(message));
    }
}

/// Joins the network threads, for at most a few seconds: after a peer is lost they panic (by
/// design) or wait on a connection that is gone, and this process is exiting anyway.
fn close_network(comms: CommsGuard) {
    let (done, joined) = crossbeam_channel::bounded::<()>(1);
    let closing = std::thread::Builder::new()
        .name("timely:close".into())
        .spawn(move || {
            drop(comms);
            let _ = done.send(());
        });
    if closing.is_ok() {
        // Disconnected: a network thread panicked (a peer is gone); that is reported already.
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            joined.recv_timeout(Duration::from_secs(5))
        {
            tracing::warn!("the network threads did not finish within 5 s; leaving them");
        }
    }
}
