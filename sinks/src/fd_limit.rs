//! The process's open-file limit (RLIMIT_NOFILE): raised to the hard limit at start, and the
//! HTTP connection cap kept below it so that stuck clients can never take every descriptor.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept free for everything but HTTP connections: the listener, the runtime's
/// epoll and wake-up descriptors, log and dead-letter files, state files, Kafka and S3
/// connections, files read by the backfill.
pub const RESERVED_FDS: u64 = 128;

/// Raises the soft open-file limit to the hard one (a service default is often a soft 1024
/// under a far larger hard limit) and logs the change. Returns the soft limit in force after,
/// or `None` if it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    if soft >= hard {
        tracing::debug!(limit = soft, "open-file limit already at its hard limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                from = soft,
                to = hard,
                "raised the open-file limit (RLIMIT_NOFILE)"
            );
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit (RLIMIT_NOFILE)");
            Some(soft)
        }
    }
}

/// The connection cap in force: `configured`, lowered (with a warning naming the key) so that
/// the connections plus [`RESERVED_FDS`] stay below the current soft open-file limit.
pub fn connection_cap(configured: usize) -> usize {
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return configured;
    };
    let cap = cap_below(configured, soft);
    if cap < configured {
        tracing::warn!(
            configured,
            cap,
            open_file_limit = soft,
            "http.max_connections lowered to stay below the open-file limit"
        );
    }
    cap
}

/// `configured`, at most the limit less [`RESERVED_FDS`] (half the limit when it is tiny),
/// and at least 1.
fn cap_below(configured: usize, limit: u64) -> usize {
    let room = if limit > 2 * RESERVED_FDS {
        limit - RESERVED_FDS
    } else {
        limit / 2
    };
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_stays_below_the_limit() {
        assert_eq!(cap_below(10_000, 1024), 896);
        assert_eq!(cap_below(500, 1024), 500);
        assert_eq!(cap_below(10_000, 256), 128);
        assert_eq!(cap_below(10_000, 100), 50);
        assert_eq!(cap_below(10_000, 1), 1);
        assert_eq!(cap_below(10_000, u64::MAX), 10_000);
    }
}
