//! What the workers do, decided once from the settings: `batch` (the lists as of one time) or
//! `serve` (a backfill, then a live source, until stopped), with which inputs and windows.

use std::sync::Arc;

use topsellers_sources::files::Pruned;
use topsellers_sources::generator::Catalog;
use topsellers_sources::SourceConfig;

use crate::config::{Scoring, Settings};
use crate::error::DriverError;
use crate::handover::Handover;
use crate::input::backfill::{Backfill, Window};
use crate::input::generator::GeneratorInput;
use crate::input::kafka::KafkaInput;
use crate::input::Pace;
use crate::lake;
use crate::state::manifest::HistoryRef;
use crate::state::{Restored, StateError};
use topsellers_sources::files::FilesConfig;
use topsellers_sources::kafka::StartAt;

/// The live source that follows the backfill.
#[derive(Clone, Debug)]
pub enum Live {
    /// Synthetic purchases at the wall clock.
    Generator(GeneratorInput),
    /// Purchases from a Kafka topic, partitions shared among the workers.
    Kafka(KafkaInput),
}

/// The two ways the workers run.
#[derive(Clone, Debug)]
// Built once per start and shared by reference: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Mode {
    /// The files' lists as of one time: the input is cut to the retention window of that time
    /// and summed per (leaf, item) as it is read, nothing ever expires, the ranking is built
    /// once, and the workers end once the snapshot is published.
    Batch {
        /// The files, the as-of time (`until_ms`) and the window.
        backfill: Backfill,
    },
    /// The live service: each purchase counts from its time and is retracted at
    /// `ts + retention`; the history first, then the live source, until stopped.
    Serve {
        /// The history, if any.
        backfill: Option<Backfill>,
        /// Then live input, if any; without it, the workers idle (the lists keep being served)
        /// until stopped.
        live: Option<Live>,
    },
}

/// What the workers of this process are to do (the same on every worker).
#[derive(Clone, Debug)]
pub struct Job {
    /// Scores and lists.
    pub scoring: Scoring,
    /// Batch or serve.
    pub mode: Mode,
    /// How live input is handed to the dataflow.
    pub pace: Pace,
    /// The first worker of every process: they receive every list.
    pub leaders: Vec<usize>,
}

impl Job {
    /// Whether the job runs in one process (no peers to agree with).
    pub fn one_process(&self) -> bool {
        self.leaders.len() == 1
    }

    /// The backfill, if any.
    pub fn backfill(&self) -> Option<&Backfill> {
        match &self.mode {
            Mode::Batch { backfill } => Some(backfill),
            Mode::Serve { backfill, .. } => backfill.as_ref(),
        }
    }

    /// Completes the backfill at `until_ms`, the cut-off the processes of a cluster agreed on
    /// (see [`crate::cluster::Hello::restored`]): later than this process's own when another
    /// process restored a later checkpoint. Purchases that have expired by then are not read.
    pub fn agree_backfill_until(&mut self, until_ms: i64) {
        let retention_ms = self.scoring.retention_ms;
        let backfill = match &mut self.mode {
            Mode::Batch { backfill } => Some(backfill),
            Mode::Serve { backfill, .. } => backfill.as_mut(),
        };
        if let Some(backfill) = backfill.filter(|b| b.until_ms < until_ms) {
            tracing::info!(
                "the cluster's backfill completes at {until_ms} ms (a later checkpoint of \
                 another process), not {} ms",
                backfill.until_ms
            );
            backfill.complete_at(until_ms, retention_ms);
        }
    }
}

/// A `serve` job and what planning it found.
#[derive(Debug)]
pub struct ServePlan {
    /// The job.
    pub job: Job,
    /// What the backfill does not read at all (older than the retention).
    pub pruned: Pruned,
    /// The history the state (if any) is built from, by reference.
    pub history: Option<HistoryRef>,
}

/// A `batch` job and what planning it found.
#[derive(Debug)]
pub struct BatchPlan {
    /// The job.
    pub job: Job,
    /// The time the lists are as of.
    pub as_of_ms: i64,
    /// What is not read at all (older than the retention).
    pub pruned: Pruned,
}

/// Plans `run`: from a restored checkpoint if there is one ([`plan_restore`]); otherwise
/// lists the history (if any) and finds its latest event time, resolves the hand-over to Kafka,
/// prunes what has expired by the backfill's cut-off, and sets up the live source.
pub fn plan_serve(
    settings: &Settings,
    restored: Option<&Restored>,
) -> Result<ServePlan, DriverError> {
    if let Some(restored) = restored {
        return plan_restore(settings, restored);
    }
    let scoring = settings.scoring();
    let units = lake::units(&settings.sources, &settings.lake)?;
    let kafka = kafka_source(settings);
    let history_max_ms = if units.is_empty() {
        None
    } else {
        let max_ms = latest_event_time(settings, &units)?;
        if max_ms < 0 {
            return Err(DriverError::BeforeEpoch {
                what: "the input's latest event time",
                ms: max_ms,
            });
        }
        Some(max_ms)
    };
    // With Kafka after the history, the history owns `ts < T0` and Kafka `ts >= T0`.
    let handover = kafka.and_then(|kafka| Handover::resolve(kafka.handover, history_max_ms));
    if let Some(handover) = handover {
        tracing::info!(
            "hand-over at {} ({} ms): the history owns purchases before it, Kafka from it on",
            topsellers_model::format_rfc3339_ms(handover.t0_ms),
            handover.t0_ms
        );
    }
    let mut pruned = Pruned::default();
    let mut history = None;
    let backfill = history_max_ms.map(|max_ms| {
        // Without Kafka, everything up to the history's latest event time (inclusive).
        let until_ms = handover.map_or(max_ms, Handover::backfill_until_ms);
        history = Some(HistoryRef {
            paths: history_paths(settings),
            units: units.len(),
            listing: listing(&units),
            until_ms,
            handover_ms: handover.map(|h| h.t0_ms),
        });
        // Purchases at or before `until − retention` have expired by the time the backfill's
        // snapshot is published: neither they nor the units holding only them are read.
        let after_ms = until_ms.saturating_sub(scoring.retention_ms);
        let (units, dropped) = lake::prune(units, after_ms, &settings.lake);
        pruned = dropped;
        Backfill::new(units, until_ms, after_ms)
    });
    let live = live_source(settings, handover)?;
    Ok(ServePlan {
        job: job(settings, Mode::Serve { backfill, live }),
        pruned,
        history,
    })
}

/// Plans a restart from `restored`: the history it was built from and its segments are read
/// again (what has expired by the checkpoint's time is not), entered at the checkpoint's time,
/// and the live source resumes where the checkpoint stands.
fn plan_restore(settings: &Settings, restored: &Restored) -> Result<ServePlan, DriverError> {
    let manifest = &restored.manifest;
    let dir = settings.state.dir.clone().unwrap_or_default();
    let time_ms = manifest.time_ms.max(0);
    let after_ms = time_ms.saturating_sub(settings.scoring().retention_ms);
    let configured = history_paths(settings);
    let mut parts = Vec::new();
    let mut pruned = Pruned::default();
    if let Some(history) = &manifest.history {
        if !configured.is_empty() && configured != history.paths {
            tracing::warn!(
                "the state was built from the history {:?}: it is read again, not {configured:?}",
                history.paths
            );
        }
        let files = SourceConfig::Files(FilesConfig::new(history.paths.clone()));
        let units = lake::units(&[files], &settings.lake)?;
        if units.len() != history.units || listing(&units) != history.listing {
            return Err(StateError::HistoryChanged {
                dir,
                why: format!(
                    "{} read units now, {} when the state was built, or their sizes differ",
                    units.len(),
                    history.units
                ),
            }
            .into());
        }
        // In a cluster every process must list the same units of the history (its workers
        // share them by index), whatever its own checkpoint's time: pruned as when it was first
        // read. The windows still leave out what has expired.
        let in_cluster = settings
            .runtime
            .cluster
            .as_ref()
            .is_some_and(crate::cluster::Seat::is_cluster);
        let prune_ms = if in_cluster {
            history
                .until_ms
                .saturating_sub(settings.scoring().retention_ms)
        } else {
            after_ms
        };
        let (units, dropped) = lake::prune(units, prune_ms, &settings.lake);
        pruned = dropped;
        let window = Window {
            after_ms,
            until_ms: history.until_ms,
        };
        parts.push((units, window));
    } else if !configured.is_empty() {
        tracing::warn!(
            "the state holds no history: --input {configured:?} is not read (rebuild the state \
             with an empty state directory to add one)"
        );
    }
    let segments = Window {
        after_ms,
        until_ms: time_ms,
    };
    let backfill = Backfill::again(parts, vec![(restored.segments.clone(), segments)], time_ms);
    let handover = manifest
        .history
        .as_ref()
        .and_then(|h| h.handover_ms)
        .map(|t0_ms| Handover { t0_ms });
    let mut live = live_source(settings, handover)?;
    if let (Some(Live::Kafka(kafka)), Some(positions)) = (&mut live, &manifest.kafka) {
        if positions.topic != kafka.config.topic {
            return Err(StateError::Mismatch {
                dir,
                what: "kafka.topic",
                state: positions.topic.clone(),
                config: kafka.config.topic.clone(),
            }
            .into());
        }
        kafka.start = StartAt::Offsets {
            next: positions.next.clone(),
            unread_from_earliest: positions.unread_from_earliest,
        };
    }
    Ok(ServePlan {
        job: job(
            settings,
            Mode::Serve {
                backfill: Some(backfill),
                live,
            },
        ),
        pruned,
        history: manifest.history.clone(),
    })
}

/// The configured Kafka source, if any.
fn kafka_source(settings: &Settings) -> Option<&topsellers_sources::KafkaConfig> {
    settings.sources.iter().find_map(|source| match source {
        SourceConfig::Kafka(kafka) => Some(kafka),
        _ => None,
    })
}

/// The paths of every `files` source.
fn history_paths(settings: &Settings) -> Vec<String> {
    settings
        .sources
        .iter()
        .filter_map(|source| match source {
            SourceConfig::Files(files) => Some(files.paths.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A hash of a listing: each unit's location, row group and size, in order.
fn listing(units: &[topsellers_sources::ReadUnit]) -> u64 {
    let mut text = String::new();
    for unit in units {
        text.push_str(&format!(
            "{}\u{0}{:?}\u{0}{}\u{0}{}\n",
            unit.location, unit.row_group, unit.file_bytes, unit.size.bytes
        ));
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// The live source: the generator, or Kafka (which skips what `handover` gives the history).
fn live_source(
    settings: &Settings,
    handover: Option<Handover>,
) -> Result<Option<Live>, DriverError> {
    Ok(
        match settings
            .sources
            .iter()
            .find(|source| !matches!(source, SourceConfig::Files(_)))
        {
            Some(SourceConfig::Generator(generator)) => Some(Live::Generator(GeneratorInput {
                config: generator.clone(),
                catalog: Arc::new(Catalog::new(generator).map_err(DriverError::Generator)?),
            })),
            Some(SourceConfig::Kafka(kafka)) => Some(Live::Kafka(
                KafkaInput::new(kafka, handover).map_err(DriverError::Kafka)?,
            )),
            _ => None,
        },
    )
}

/// Plans `batch`: lists the files, takes `as_of` (default: their latest event time), and
/// prunes what has expired by then.
pub fn plan_batch(settings: &Settings, as_of: Option<i64>) -> Result<BatchPlan, DriverError> {
    let units = lake::units(&settings.sources, &settings.lake)?;
    let as_of_ms = match as_of {
        Some(as_of) => as_of,
        None => latest_event_time(settings, &units)?,
    };
    if as_of_ms < 0 {
        return Err(DriverError::BeforeEpoch {
            what: "as-of time",
            ms: as_of_ms,
        });
    }
    let after_ms = as_of_ms.saturating_sub(settings.scoring().retention_ms);
    let (units, pruned) = lake::prune(units, after_ms, &settings.lake);
    let backfill = Backfill::new(units, as_of_ms, after_ms);
    Ok(BatchPlan {
        job: job(settings, Mode::Batch { backfill }),
        as_of_ms,
        pruned,
    })
}

/// The latest event time in `units` (0 if they hold none).
fn latest_event_time(
    settings: &Settings,
    units: &[topsellers_sources::ReadUnit],
) -> Result<i64, DriverError> {
    Ok(lake::max_event_time(units, settings.runtime.workers, settings.lake.prune)?.unwrap_or(0))
}

fn job(settings: &Settings, mode: Mode) -> Job {
    let seat = settings
        .runtime
        .cluster
        .as_ref()
        .filter(|seat| seat.is_cluster());
    Job {
        scoring: settings.scoring().clone(),
        mode,
        pace: Pace {
            epoch_ms: settings.runtime.epoch_ms(),
            batch_size: settings.runtime.batch_size,
        },
        leaders: seat.map_or(vec![0], |s| s.layout.leaders()),
    }
}
