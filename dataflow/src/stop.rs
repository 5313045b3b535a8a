//! The one stop signal of a process: set once (a signal, a failed worker, a lost peer, a caller),
//! waited on without polling by threads, tasks and parked workers alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

/// A cloneable handle on the process's stop signal.
///
/// Threads block on it ([`Stop::wait`], [`Stop::wait_timeout`]), async tasks await it
/// ([`Stop::stopped`], which hyper's graceful shutdown awaits directly), and timely workers
/// park in `step_or_park` after [`Stop::wake_on_stop`]: stopping unparks them.
#[derive(Clone, Debug)]
pub struct Stop(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Read on hot paths without a lock.
    stopped: AtomicBool,
    /// Guards the waits on `changed`.
    lock: Mutex<()>,
    changed: Condvar,
    /// For async waiters.
    watch: watch::Sender<bool>,
    /// Threads parked (timely workers) that stopping must wake.
    parked: Mutex<Vec<Thread>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    /// A signal not yet set.
    pub fn new() -> Stop {
        Stop(Arc::new(Inner {
            stopped: AtomicBool::new(false),
            lock: Mutex::new(()),
            changed: Condvar::new(),
            watch: watch::Sender::new(false),
            parked: Mutex::new(Vec::new()),
        }))
    }

    /// Sets the signal (idempotent): every waiter returns, every registered thread is unparked.
    pub fn stop(&self) {
        if self.0.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // A waiter between its check and its wait holds the lock: taking it here means the
        // notification below reaches it.
        drop(self.0.lock.lock());
        self.0.changed.notify_all();
        self.0.watch.send_replace(true);
        for thread in self.0.parked.lock().iter() {
            thread.unpark();
        }
    }

    /// Whether the signal is set.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Blocks until the signal is set.
    pub fn wait(&self) {
        let mut guard = self.0.lock.lock();
        while !self.is_stopped() {
            self.0.changed.wait(&mut guard);
        }
    }

    /// Blocks until the signal is set or `timeout` passes; whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.0.lock.lock();
        while !self.is_stopped() {
            if self.0.changed.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
        self.is_stopped()
    }

    /// Resolves once the signal is set.
    pub async fn stopped(&self) {
        let mut receiver = self.0.watch.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while we hold it.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }

    /// Makes stopping unpark the calling thread (a timely worker that parks in
    /// `step_or_park`); if the signal is already set, that is seen on its next check.
    pub fn wake_on_stop(&self) {
        self.0.parked.lock().push(std::thread::current());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_waiter_returns_once_stopped() {
        let stop = Stop::new();
        assert!(!stop.is_stopped());
        assert!(!stop.wait_timeout(Duration::from_millis(5)));
        let waiter = {
            let stop = stop.clone();
            std::thread::spawn(move || stop.wait())
        };
        let parked = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                stop.wake_on_stop();
                let started = Instant::now();
                while !stop.is_stopped() {
                    std::thread::park_timeout(Duration::from_secs(60));
                }
                started.elapsed()
            })
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let task = {
            let stop = stop.clone();
            std::thread::spawn(move || runtime.block_on(stop.stopped()))
        };
        std::thread::sleep(Duration::from_millis(50));
        stop.stop();
        stop.stop();
        waiter.join().unwrap();
        task.join().unwrap();
        assert!(parked.join().unwrap() < Duration::from_secs(30));
        assert!(stop.wait_timeout(Duration::from_secs(60)));
        // A signal already set resolves at once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(stop.stopped());
    }
}
