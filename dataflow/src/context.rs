//! What the workers of one process share with the threads around them: the stop signal, the
//! first error, backfill progress, and where snapshots and bad records go.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use topsellers_model::Snapshot;
use topsellers_sinks::Metrics;
use topsellers_sources::{BadRecord, DeadLetter};

use crate::error::RunError;
use crate::progress::BackfillProgress;
use crate::state::Checkpoints;
use crate::stop::Stop;

/// Shared by the workers of one process and the threads around them (`Arc<Context>`).
#[derive(Debug)]
pub struct Context {
    /// Set to stop (a signal, a failure, a caller).
    pub stop: Stop,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where bad records go.
    pub dead_letter: Arc<DeadLetter>,
    /// How far the backfill is.
    pub backfill: Arc<BackfillProgress>,
    /// Where the workers hand their logs for checkpoints (with a state directory).
    pub checkpoints: Option<Arc<Checkpoints>>,
    /// Snapshots to the serving side (leaders only).
    snapshots: Sender<Snapshot>,
    /// The time of the last snapshot this process's leader handed on.
    published: AtomicI64,
    /// The time of the last snapshot in the serving table (set by the publisher once applied).
    served: Arc<AtomicI64>,
    /// The first failure; the run fails with it.
    error: Mutex<Option<RunError>>,
}

impl Context {
    /// A context sending snapshots to `snapshots`, without checkpoints (see
    /// [`Context::with_checkpoints`]).
    pub fn new(
        stop: Stop,
        metrics: Arc<Metrics>,
        dead_letter: Arc<DeadLetter>,
        snapshots: Sender<Snapshot>,
    ) -> Context {
        Context {
            stop,
            metrics,
            dead_letter,
            backfill: Arc::new(BackfillProgress::default()),
            checkpoints: None,
            snapshots,
            published: AtomicI64::new(i64::MIN),
            served: Arc::new(AtomicI64::new(i64::MIN)),
            error: Mutex::new(None),
        }
    }

    /// The same context with checkpoints, counting the backfill in `backfill` (which the
    /// checkpointer watches).
    pub fn with_checkpoints(
        self,
        checkpoints: Arc<Checkpoints>,
        backfill: Arc<BackfillProgress>,
    ) -> Context {
        Context {
            checkpoints: Some(checkpoints),
            backfill,
            ..self
        }
    }

    /// Hands a snapshot to the serving side, blocking while it is behind (backpressure, not
    /// unbounded memory); once taken, its time counts as published.
    pub fn publish(&self, snapshot: Snapshot) {
        let time = snapshot.time_ms;
        if self.snapshots.send(snapshot).is_ok() {
            self.published.store(time, Ordering::SeqCst);
        }
    }

    /// The time of the last snapshot handed on (`i64::MIN` before the first).
    pub fn published(&self) -> i64 {
        self.published.load(Ordering::SeqCst)
    }

    /// The time of the last snapshot of this run that `/v1/top` serves, i.e. that the
    /// publisher applied to the table (`i64::MIN` before the first): it may lag
    /// [`Context::published`] by the publish interval.
    pub fn served(&self) -> i64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Where the publisher notes what it applied (see [`Context::served`]).
    pub fn served_cell(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.served)
    }

    /// Fails the run with `error` (the first failure wins) and stops everything.
    pub fn fail(&self, error: RunError) {
        tracing::error!("{error}");
        self.error.lock().get_or_insert(error);
        self.stop.stop();
    }

    /// Takes the first failure, if any.
    pub fn take_error(&self) -> Option<RunError> {
        self.error.lock().take()
    }

    /// The first failure's message, if any (leaving it in place).
    pub fn error_message(&self) -> Option<String> {
        self.error.lock().as_ref().map(ToString::to_string)
    }

    /// Whether the run is to stop.
    pub fn stopped(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Counts, logs and writes out bad records.
    /// They reach the file now (not when a buffer fills or the run ends), so that the file is
    /// current and a failed write shows in `/metrics` while the service runs.
    pub fn bad(&self, bad: &mut Vec<BadRecord>) {
        if bad.is_empty() {
            return;
        }
        for record in bad.drain(..) {
            self.dead_letter.record(&record);
            self.metrics.add_bad_records(1);
        }
        self.dead_letter.flush();
    }

    /// Counts and logs bad records, leaving them in `bad` to be written later (with a
    /// checkpoint).
    pub fn note_bad(&self, bad: &[BadRecord]) {
        for record in bad {
            self.dead_letter.note(record);
        }
        self.metrics.add_bad_records(bad.len() as u64);
    }
}
