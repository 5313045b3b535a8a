//! Purchase history in files: which units to read, and the largest event time among them.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use anyhow::{Context, Result};

use topsellers_sources::files::{self, FilesConfig, ReadUnit};
use topsellers_sources::SourceConfig;

use crate::progress::Workload;

/// Every read unit of every `files` source, in a stable order.
pub fn units(sources: &[SourceConfig]) -> Result<Vec<ReadUnit>> {
    let mut all = Vec::new();
    for source in sources {
        if let SourceConfig::Files(files) = source {
            all.extend(files_units(files)?);
        }
    }
    Ok(all)
}

fn files_units(files: &FilesConfig) -> Result<Vec<ReadUnit>> {
    files
        .units()
        .with_context(|| format!("cannot list input {:?}", files.paths))
}

/// What a set of units holds, for progress reporting.
pub fn workload(units: &[ReadUnit]) -> Workload {
    let rows = units
        .iter()
        .map(|u| u.size_hint().rows)
        .sum::<Option<u64>>();
    Workload {
        units: units.len() as u64,
        rows,
    }
}

/// The largest event time in `units` (`None` if they hold none), read on `threads` threads
/// (see [`topsellers_sources::files::max_event_time`]). Bad records are not reported here: the
/// real read reports them once.
pub fn max_event_time(units: &[ReadUnit], threads: usize) -> Result<Option<i64>> {
    let next = AtomicUsize::new(0);
    let max = AtomicI64::new(i64::MIN);
    std::thread::scope(|scope| -> Result<()> {
        let readers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(unit) = units.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let latest = files::max_event_time(unit)
                            .with_context(|| format!("cannot read {}", unit.path.display()))?;
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
                .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
        }
        Ok(())
    })?;
    let max = max.load(Ordering::Relaxed);
    Ok((max != i64::MIN).then_some(max))
}
