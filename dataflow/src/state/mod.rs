//! Durable state (`run --state DIR`): checkpoints of what a restart needs, and the start from
//! one.
//!
//! A checkpoint is a consistent pairing of *what was read* with *where reading stopped*:
//! - every purchase the live sources entered since the start of the history's window, in
//!   segment files (Parquet, one per worker and checkpoint: each checkpoint writes what changed
//!   since the last one), and the bad records among them, appended to the dead-letter file
//!   (whose length the checkpoint records);
//! - each source's position: per Kafka partition the next offset after the last message read
//!   (every worker cuts its own log and positions at once, and a partition belongs to one
//!   worker, so the pairs of all workers together are consistent);
//! - the history (`--input`) by reference: its paths, a fingerprint of its listing, and the
//!   window and hand-over time it was read for;
//! - the served lists, so that a restart serves at once.
//!
//! The lists served at time `T` are a function of the purchases entered (each counts from its
//! time, and until `ts + retention`), so a restart rebuilds the operators' state exactly by
//! entering the same purchases again: the history's through the bulk path, the segments'
//! likewise, as seeds at the checkpoint's time; then every source resumes at its position.
//! Nothing is read twice and nothing is lost, whatever moment the process was killed at: a
//! checkpoint counts only once its manifest (written last, atomically) is in place.

pub mod checkpoint;
pub mod lists;
pub mod manifest;
pub mod restore;
pub mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use checkpoint::{Checkpoints, Cut, WorkerLog};

/// Before the first checkpoint, the dead-letter file's length when this state began: a start
/// that finds no checkpoint but this file cuts the dead-letter file back to it (a process killed
/// before its first checkpoint wrote bad records that its restart writes again).
pub const DEAD_LETTER_START: &str = "dead-letter-start";

/// Pairs a state without checkpoints with the dead-letter file: cuts the file back to the
/// length it had when the state began (if a start already began it), else notes the length.
pub fn begin(
    store: &Store,
    dead_letter: &topsellers_sources::DeadLetter,
) -> Result<(), StateError> {
    let io = |e: std::io::Error| StateError::Store {
        dir: store.name(),
        source: topsellers_sources::SourceError::io(&"the dead-letter file".to_owned(), e),
    };
    match store.get(DEAD_LETTER_START)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let len: u64 = text.trim().parse().map_err(|_| StateError::Corrupt {
                dir: store.name(),
                file: DEAD_LETTER_START.into(),
                why: format!("not a length: {text:?}"),
            })?;
            dead_letter.truncate(len).map_err(io)
        }
        None => {
            let len = dead_letter.append(&[]).map_err(io)?;
            if let Some(len) = len {
                store.put(DEAD_LETTER_START, len.to_string().into_bytes())?;
            }
            Ok(())
        }
    }
}
pub use manifest::Manifest;
pub use restore::Restored;
pub use store::Store;

/// `[state]`: where and how often checkpoints are written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Where checkpoints are kept: a local folder (created if missing) or `s3://bucket/prefix`
    /// (reached as `[lake.s3]` says). One per process of a cluster. Unset: no state, a restart
    /// starts from the sources. (`--state`)
    #[serde(default)]
    pub dir: Option<String>,
    /// How often a checkpoint is written (and once more at shutdown). Default: `"10s"`.
    #[serde(
        default = "default_interval",
        with = "topsellers_model::duration::text"
    )]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: None,
            interval: default_interval(),
        }
    }
}

/// A state that cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory cannot be reached.
    #[error("state {dir}: {source}")]
    Store {
        /// The directory or URL.
        dir: String,
        /// Why.
        #[source]
        source: topsellers_sources::SourceError,
    },
    /// A file of the state is damaged or missing.
    #[error("state {dir}: {file}: {why}")]
    Corrupt {
        /// The directory or URL.
        dir: String,
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// The state was written by another format version.
    #[error(
        "state {dir}: format version {found}, this topsellers reads version {supported}: start \
         with an empty state directory to rebuild it from the sources"
    )]
    Version {
        /// The directory or URL.
        dir: String,
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The state was written under another scoring config.
    #[error(
        "state {dir} was written with {what} = {state}, the config says {config}: the lists \
         would be wrong. Start with the config the state was written with, or with an empty \
         state directory (or without --state) to rebuild it from the sources"
    )]
    Mismatch {
        /// The directory or URL.
        dir: String,
        /// The setting, e.g. `scoring.half_lives`.
        what: &'static str,
        /// Its value in the state.
        state: String,
        /// Its value now.
        config: String,
    },
    /// The history the state was built from is no longer the same.
    #[error(
        "state {dir}: the history it was built from changed ({why}): it cannot be re-read as it \
         was. Restore the files, or start with an empty state directory to rebuild from the \
         history as it is now"
    )]
    HistoryChanged {
        /// The directory or URL.
        dir: String,
        /// What changed.
        why: String,
    },
    /// The cluster layout differs from the one the state was written by.
    #[error("state {dir}: {why}")]
    Layout {
        /// The directory or URL.
        dir: String,
        /// What differs.
        why: String,
    },
}
