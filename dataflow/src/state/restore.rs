//! Reading the newest usable checkpoint at start: its manifest, checked against the config, its
//! lists (served at once), and its segments as units to read again.

use topsellers_model::{LatestLists, Snapshot};
use topsellers_sources::files::{Format, LakeConfig};
use topsellers_sources::ReadUnit;

use super::lists;
use super::manifest::{Manifest, ScoringPrint};
use super::store::Store;
use super::StateError;
use crate::config::Scoring;

/// A checkpoint to start from.
#[derive(Debug)]
pub struct Restored {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its lists, as one snapshot of the newest list file's time.
    pub lists: Snapshot,
    /// Its segments, as read units.
    pub segments: Vec<ReadUnit>,
}

/// The newest checkpoint in `store` whose files are all intact, if there is any. A damaged
/// newest checkpoint gives way to the one before (logged); another format version or another
/// scoring is refused (an error saying what differs and how to rebuild), and so is another seat
/// in a cluster: `seat` is ((process, processes), threads per process).
pub fn load(
    store: &Store,
    scoring: &Scoring,
    seat: ((usize, usize), usize),
    lake: &LakeConfig,
) -> Result<Option<Restored>, StateError> {
    let names = Manifest::names(store)?;
    let mut damaged = None;
    for name in &names {
        let manifest = match Manifest::read(store, name) {
            Ok(manifest) => manifest,
            Err(error @ StateError::Corrupt { .. }) => {
                tracing::warn!(%error, "state: a damaged checkpoint, trying the one before");
                damaged.get_or_insert(error);
                continue;
            }
            Err(error) => return Err(error),
        };
        check(store, &manifest, scoring, seat)?;
        match read_files(store, &manifest, lake) {
            Ok((lists, segments)) => {
                return Ok(Some(Restored {
                    manifest,
                    lists,
                    segments,
                }))
            }
            Err(error @ StateError::Corrupt { .. }) => {
                tracing::warn!(%error, "state: a damaged checkpoint, trying the one before");
                damaged.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    match damaged {
        // Checkpoints were there, none usable: never silently start empty.
        Some(error) => Err(error),
        None => Ok(None),
    }
}

/// Refuses a checkpoint written for another scoring or another seat of a cluster.
fn check(
    store: &Store,
    manifest: &Manifest,
    scoring: &Scoring,
    (process, threads): ((usize, usize), usize),
) -> Result<(), StateError> {
    if let Some((what, state, config)) = manifest.scoring.difference(&ScoringPrint::of(scoring)) {
        return Err(StateError::Mismatch {
            dir: store.name(),
            what,
            state,
            config,
        });
    }
    if manifest.process != process {
        return Err(StateError::Layout {
            dir: store.name(),
            why: format!(
                "it holds process {} of {}, this is process {} of {}: give every process its \
                 own state directory, and restart a cluster with the layout it was written by",
                manifest.process.0, manifest.process.1, process.0, process.1
            ),
        });
    }
    // A Kafka partition belongs to the worker `p % (processes × threads)`: in a cluster another
    // thread count moves partitions to processes whose state holds no offset for them (they
    // would start from the group's commit or the earliest offset: lost or double-counted).
    let written = manifest.threads.filter(|_| process.1 > 1);
    if let Some(written) = written.filter(|&written| written != threads) {
        return Err(StateError::Layout {
            dir: store.name(),
            why: format!(
                "it was written by a cluster of {written} threads per process, this one runs \
                 {threads}: Kafka partitions would move to processes whose state holds no \
                 offset for them. Restart the cluster with threads = {written}, or with empty \
                 state directories to rebuild from the sources"
            ),
        });
    }
    Ok(())
}

/// The checkpoint's lists (every list file checked and applied in order) and its segments as
/// read units (every one checked against its size and hash first).
fn read_files(
    store: &Store,
    manifest: &Manifest,
    lake: &LakeConfig,
) -> Result<(Snapshot, Vec<ReadUnit>), StateError> {
    let mut latest = LatestLists::default();
    let mut time_ms = i64::MIN;
    for file in &manifest.lists {
        let snapshot = lists::decode(&file.read(store)?).map_err(|e| StateError::Corrupt {
            dir: store.name(),
            file: file.name.clone(),
            why: e.to_string(),
        })?;
        time_ms = time_ms.max(snapshot.time_ms);
        latest.extend(snapshot.lists);
    }
    let mut locations = Vec::with_capacity(manifest.segments.len());
    for segment in &manifest.segments {
        segment.read(store)?;
        locations.push(store.location(&segment.name));
    }
    let segments = if locations.is_empty() {
        Vec::new()
    } else {
        topsellers_sources::list_units_with(&locations, Some(Format::Parquet), &lake.s3).map_err(
            |source| StateError::Store {
                dir: store.name(),
                source,
            },
        )?
    };
    Ok((
        Snapshot {
            time_ms,
            lists: latest.take_sorted(),
            whole: true,
        },
        segments,
    ))
}
