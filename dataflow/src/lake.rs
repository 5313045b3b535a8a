//! Purchase history in files and the lake: which units to read, the largest event time among
//! them, and which units are too old to read at all.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use topsellers_sources::files::{self, LakeConfig, Pruned, ReadUnit};
use topsellers_sources::SourceConfig;

use crate::error::DriverError;
use crate::progress::Workload;

/// Every read unit of every `files` source, in a stable order (S3 reached as `lake` says).
pub fn units(sources: &[SourceConfig], lake: &LakeConfig) -> Result<Vec<ReadUnit>, DriverError> {
    let mut all = Vec::new();
    for source in sources {
        if let SourceConfig::Files(files) = source {
            all.extend(
                files
                    .units(&lake.s3)
                    .map_err(|source| DriverError::ListInput {
                        paths: files.paths.clone(),
                        source,
                    })?,
            );
        }
    }
    Ok(all)
}

/// What a set of units holds, for progress reporting.
pub fn workload(units: &[ReadUnit]) -> Workload {
    let rows = units
        .iter()
        .map(|u| u.size_hint().rows)
        .sum::<Option<u64>>();
    let files: std::collections::HashSet<String> =
        units.iter().map(|u| u.location.to_string()).collect();
    Workload {
        units: units.len() as u64,
        files: files.len() as u64,
        rows,
        bytes: units.iter().map(|u| u.size_hint().bytes).sum(),
    }
}

/// Drops the units (when `lake.prune`) none of whose purchases can be after `after_ms` (see
/// [`files::prune`]), and logs what was skipped.
pub fn prune(units: Vec<ReadUnit>, after_ms: i64, lake: &LakeConfig) -> (Vec<ReadUnit>, Pruned) {
    if !lake.prune {
        return (units, Pruned::default());
    }
    let (units, pruned) = files::prune(units, after_ms, true);
    if pruned.units() > 0 {
        tracing::info!(
            "pruned {} files and {} row groups ({} rows, {} bytes) older than {}: {} by dt= \
             partition, {} by ts statistics",
            pruned.files,
            pruned.row_groups,
            pruned.rows,
            pruned.bytes,
            topsellers_model::format_rfc3339_ms(after_ms),
            pruned.by_partition,
            pruned.by_statistics
        );
    }
    (units, pruned)
}

/// The largest event time among the valid purchases of `units` (`None` if they hold none),
/// read on `threads` threads (see [`topsellers_sources::files::max_event_time`]): a bad record
/// (or one with quantity 0) never sets it, so units are read, not taken at their word.
///
/// Units are read newest bound first (a Parquet row group's `ts` statistics, and its `dt=` day
/// when `trust_partitions`: what any of its rows can hold, bad ones included), and a unit whose
/// bound is not after the largest valid time found so far is not read: most often only the
/// newest row group is. A unit whose bound is before 1970 holds no valid purchase. Bad records
/// are not reported here: the real read reports them once.
pub fn max_event_time(
    units: &[ReadUnit],
    threads: usize,
    trust_partitions: bool,
) -> Result<Option<i64>, DriverError> {
    // No valid purchase is before 1970: −1 is "none found yet".
    let max = AtomicI64::new(-1);
    let bound = |u: &ReadUnit| u.max_ts_bound(trust_partitions).unwrap_or(i64::MAX);
    let mut rest: Vec<&ReadUnit> = units.iter().collect();
    rest.sort_by_key(|u| std::cmp::Reverse(bound(u)));
    let next = AtomicUsize::new(0);
    let (read, passed) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| -> Result<(), DriverError> {
        let readers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<(), DriverError> {
                    while let Some(unit) = rest.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if bound(unit) <= max.load(Ordering::Relaxed) {
                            passed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        read.fetch_add(1, Ordering::Relaxed);
                        let latest = files::max_event_time(unit).map_err(|source| {
                            DriverError::ReadInput {
                                unit: unit.location.to_string(),
                                source,
                            }
                        })?;
                        if let Some(latest) = latest {
                            max.fetch_max(latest, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for reader in readers {
            reader
                .join()
                .map_err(|_| DriverError::Panicked("event-time reader"))??;
        }
        Ok(())
    })?;
    tracing::debug!(
        "latest event time: {} of {} units read, {} passed over by their bound",
        read.load(Ordering::Relaxed),
        units.len(),
        passed.load(Ordering::Relaxed)
    );
    let max = max.load(Ordering::Relaxed);
    Ok((max >= 0).then_some(max))
}
