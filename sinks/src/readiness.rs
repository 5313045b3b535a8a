//! Whether this process is ready to serve (`/readyz`), and why not.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Readiness flag plus a reason or progress text, e.g. `backfill: 1.2M of 10M rows`.
#[derive(Debug)]
pub struct Readiness {
    ready: AtomicBool,
    reason: Mutex<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new("starting")
    }
}

impl Readiness {
    /// Not ready, for `reason`.
    pub fn new(reason: impl Into<String>) -> Readiness {
        Readiness {
            ready: AtomicBool::new(false),
            reason: Mutex::new(reason.into()),
        }
    }

    /// Marks the process ready (e.g. backfill caught up), with a note.
    pub fn set_ready(&self, note: impl Into<String>) {
        *self.reason.lock() = note.into();
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the process not ready, for `reason`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.reason.lock() = reason.into();
        self.ready.store(false, Ordering::Release);
    }

    /// Updates the reason or progress text without changing readiness.
    pub fn set_progress(&self, text: impl Into<String>) {
        *self.reason.lock() = text.into();
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The current reason or progress text.
    pub fn reason(&self) -> String {
        self.reason.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.reason(), "starting");
        readiness.set_progress("backfill: 1.2M of 10M rows");
        assert!(!readiness.is_ready());
        assert_eq!(readiness.reason(), "backfill: 1.2M of 10M rows");
        readiness.set_ready("caught up");
        assert!(readiness.is_ready());
        readiness.set_not_ready("lost Kafka");
        assert!(!readiness.is_ready());
        assert_eq!(readiness.reason(), "lost Kafka");
    }
}
