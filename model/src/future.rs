//! How far ahead of the wall clock an event time may be: `scoring.max_future`.
//!
//! One purchase dated 9999 would otherwise take every list over (its weight dwarfs every
//! other), move the watermark and the default as-of to 9999 and make every later purchase
//! "expired on arrival". The contract makes it a bad record: a `ts` more than `max_future`
//! ahead of the wall clock *when the record is read* is refused by every source alike.
//!
//! The bound is process-wide (set once from the config at start). Reading the clock per
//! record would cost a batch of 50M rows a second, so the check compares with a cached
//! bound (`now + max_future` at the last look); the clock only moves forward, so a `ts` under
//! the cached bound is under the true one, and only a `ts` past it reads the clock again.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use crate::record_error::RecordError;
use crate::time::{format_rfc3339_ms, wall_clock_ms};

/// The default `scoring.max_future`: one hour.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(3600);

static MAX_FUTURE_MS: AtomicI64 = AtomicI64::new(3_600_000);
/// `wall clock + max_future` at the last look (`i64::MIN`: look now).
static CACHED_BOUND_MS: AtomicI64 = AtomicI64::new(i64::MIN);

/// Sets the bound for this process (from `scoring.max_future`).
pub fn set_max_future(max_future: Duration) {
    let ms = i64::try_from(max_future.as_millis()).unwrap_or(i64::MAX);
    MAX_FUTURE_MS.store(ms, Relaxed);
    CACHED_BOUND_MS.store(i64::MIN, Relaxed);
}

/// The bound in force.
pub fn max_future() -> Duration {
    Duration::from_millis(MAX_FUTURE_MS.load(Relaxed).max(0) as u64)
}

/// Refuses a `ts` more than `max_future` ahead of the wall clock now.
#[inline]
pub fn check_not_future(ts_ms: i64) -> Result<(), RecordError> {
    if ts_ms <= CACHED_BOUND_MS.load(Relaxed) {
        return Ok(());
    }
    check_against_clock(ts_ms, wall_clock_ms())
}

#[cold]
fn check_against_clock(ts_ms: i64, now_ms: i64) -> Result<(), RecordError> {
    let max_future_ms = MAX_FUTURE_MS.load(Relaxed);
    let bound = now_ms.saturating_add(max_future_ms);
    CACHED_BOUND_MS.fetch_max(bound, Relaxed);
    if ts_ms <= bound {
        return Ok(());
    }
    Err(RecordError::TimestampInFuture {
        ts: format_rfc3339_ms(ts_ms),
        ahead_ms: ts_ms.saturating_sub(now_ms),
        max_future_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ts_past_the_bound_is_refused_and_the_cache_never_admits_it() {
        // The only test in this crate that sets the bound (it is process-wide).
        set_max_future(Duration::from_secs(3600));
        let now = wall_clock_ms();
        assert_eq!(check_not_future(now), Ok(()));
        assert_eq!(check_not_future(now + 3_500_000), Ok(()));
        assert!(matches!(
            check_not_future(now + 3_700_000),
            Err(RecordError::TimestampInFuture {
                max_future_ms: 3_600_000,
                ..
            })
        ));
        assert!(check_not_future(i64::MAX).is_err());
        // Lowering the bound forgets the cached one.
        set_max_future(Duration::ZERO);
        assert!(check_not_future(now + 60_000).is_err());
        assert_eq!(check_not_future(now - 1), Ok(()));
        // An explicit clock: exactly at the bound is fine, one ms past is not.
        set_max_future(Duration::from_millis(10));
        assert_eq!(check_against_clock(1_010, 1_000), Ok(()));
        let error = check_against_clock(1_011, 1_000).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ts 1970-01-01T00:00:01.011Z is 11 ms ahead of the wall clock (at most scoring.max_future = 10 ms)"
        );
        set_max_future(DEFAULT_MAX_FUTURE);
    }
}
