//! The config file (TOML): every key documented, defaulted, and checked; flags override it.

use std::path::{Path, PathBuf};

use crate::cluster::Seat;
use serde::{Deserialize, Serialize};
use topsellers_model::{parse_duration_ms, Profile};
use topsellers_sinks::{ChangelogConfig, HttpConfig, TableConfig};
use topsellers_sources::{LakeConfig, SourceConfig};

/// A config that could not be used: always names the file (or flag) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// A value is out of range.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        /// The file, or "command line".
        origin: String,
        /// The key, e.g. `scoring.top_k`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration of a `topsellers` process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Scores, lists and retention.
    #[serde(default)]
    pub scoring: ScoringConfig,
    /// Inputs: `files` sources are replayed first (backfill); one live source (`generator` or
    /// `kafka`) follows. With no sources at all, `run` uses the generator.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// How the history (files, folders, `s3://` prefixes) is read: S3 settings, pruning.
    #[serde(default)]
    pub lake: LakeConfig,
    /// The HTTP server.
    #[serde(default)]
    pub http: HttpConfig,
    /// The serving table.
    #[serde(default)]
    pub table: TableConfig,
    /// The top-k changelog (off by default).
    #[serde(default)]
    pub changelog: ChangelogConfig,
    /// Where bad records go.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// Workers, epochs and buffers.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// Scores, lists and retention (DESIGN.md, "Score and ranking").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    /// Half-life of each decay profile; each profile is named by its text (`"7d"`) and has its
    /// own top-k tables. The first one is the API's default. Default: `["7d"]`.
    #[serde(default = "default_half_lives")]
    pub half_lives: Vec<String>,
    /// List length per category. Default: 100.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// How long a purchase counts at all. Default: `"365d"`.
    #[serde(default = "default_retention")]
    pub retention: String,
    /// How far behind the largest event time seen the watermark stays, so that slightly late
    /// purchases still land in the snapshot of their own time. Default: `"0s"`.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: String,
}

fn default_half_lives() -> Vec<String> {
    vec!["7d".into()]
}
fn default_top_k() -> usize {
    100
}
fn default_retention() -> String {
    "365d".into()
}
fn default_lateness() -> String {
    "0s".into()
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            half_lives: default_half_lives(),
            top_k: default_top_k(),
            retention: default_retention(),
            allowed_lateness: default_lateness(),
        }
    }
}

/// Where bad records go (besides the log and the `topsellers_bad_records_total` counter).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON Lines file bad records are appended to; `""` for none. Default: `"dead-letter.jsonl"`.
    #[serde(default = "default_dead_letter")]
    pub path: String,
}

fn default_dead_letter() -> String {
    "dead-letter.jsonl".into()
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            path: default_dead_letter(),
        }
    }
}

impl DeadLetterConfig {
    /// The file, if any.
    pub fn file(&self) -> Option<&Path> {
        (!self.path.is_empty()).then(|| Path::new(&self.path))
    }
}

/// Workers, epochs and buffers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads in this process. Default: 2.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How often live input time advances (and a snapshot can be published). Default: `"100ms"`.
    #[serde(default = "default_epoch")]
    pub epoch: String,
    /// Records a worker hands to the dataflow at once. Default: 50000.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Snapshots that may wait between the workers and the serving table before the workers
    /// block (backpressure, not unbounded memory). Default: 16.
    #[serde(default = "default_snapshot_queue")]
    pub snapshot_queue: usize,
    /// Threads serving HTTP. Default: 1.
    #[serde(default = "default_http_threads")]
    pub http_threads: usize,
    /// This process's seat in a multi-process layout (`--workers workers.toml`); not a config
    /// file key.
    #[serde(skip)]
    pub cluster: Option<Seat>,
}

fn default_workers() -> usize {
    2
}
fn default_epoch() -> String {
    "100ms".into()
}
fn default_batch() -> usize {
    50_000
}
fn default_snapshot_queue() -> usize {
    16
}
fn default_http_threads() -> usize {
    1
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: default_workers(),
            epoch: default_epoch(),
            batch_size: default_batch(),
            snapshot_queue: default_snapshot_queue(),
            http_threads: default_http_threads(),
            cluster: None,
        }
    }
}

/// The scoring settings, checked and in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// The decay profiles, in configured order.
    pub profiles: Vec<Profile>,
    /// List length.
    pub k: usize,
    /// Retention in ms.
    pub retention_ms: i64,
    /// Allowed lateness in ms.
    pub lateness_ms: i64,
}

impl Config {
    /// Reads a config file; unknown keys and bad values are errors naming the key and the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.check(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks every value; `origin` names the file (or "command line") in errors.
    pub fn check(&self, origin: &str) -> Result<Scoring, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.into(),
            key: key.into(),
            message,
        };
        let duration = |key: &str, text: &str| {
            parse_duration_ms(text).map_err(|e| invalid(key, e.to_string()))
        };
        let s = &self.scoring;
        if s.half_lives.is_empty() {
            return Err(invalid(
                "scoring.half_lives",
                "at least one half-life is needed".into(),
            ));
        }
        let mut profiles = Vec::new();
        for text in &s.half_lives {
            let half_life_ms = duration("scoring.half_lives", text)?;
            if half_life_ms <= 0 {
                return Err(invalid(
                    "scoring.half_lives",
                    format!("half-life {text:?} must be positive"),
                ));
            }
            if profiles.iter().any(|p: &Profile| p.name == text.trim()) {
                return Err(invalid(
                    "scoring.half_lives",
                    format!("half-life {text:?} is listed twice"),
                ));
            }
            profiles.push(Profile {
                name: text.trim().to_owned(),
                half_life_ms,
            });
        }
        if s.top_k == 0 || s.top_k > 100_000 {
            return Err(invalid(
                "scoring.top_k",
                format!("{} is out of range 1..=100000", s.top_k),
            ));
        }
        let retention_ms = duration("scoring.retention", &s.retention)?;
        if retention_ms <= 0 {
            return Err(invalid("scoring.retention", "must be positive".into()));
        }
        let lateness_ms = duration("scoring.allowed_lateness", &s.allowed_lateness)?;
        duration("runtime.epoch", &self.runtime.epoch)?;
        duration("table.refresh", &self.table.refresh)?;
        duration("table.publish_interval", &self.table.publish_interval)?;
        if self.runtime.workers == 0 || self.runtime.workers > 1024 {
            return Err(invalid(
                "runtime.workers",
                format!("{} is out of range 1..=1024", self.runtime.workers),
            ));
        }
        if self.runtime.batch_size == 0 {
            return Err(invalid("runtime.batch_size", "must be positive".into()));
        }
        if self.runtime.snapshot_queue == 0 {
            return Err(invalid("runtime.snapshot_queue", "must be positive".into()));
        }
        if self.runtime.http_threads == 0 {
            return Err(invalid("runtime.http_threads", "must be positive".into()));
        }
        let live = self
            .sources
            .iter()
            .filter(|s| !matches!(s, SourceConfig::Files(_)))
            .count();
        if live > 1 {
            return Err(invalid(
                "sources",
                "at most one live source (generator or kafka) may be configured".into(),
            ));
        }
        for source in &self.sources {
            match source {
                SourceConfig::Generator(generator) => generator
                    .validate()
                    .map_err(|e| invalid("sources.generator", e.to_string()))?,
                SourceConfig::Kafka(kafka) => kafka
                    .validate()
                    .map_err(|e| invalid("sources.kafka", e.to_string()))?,
                SourceConfig::Files(_) => {}
            }
        }
        Ok(Scoring {
            profiles,
            k: s.top_k,
            retention_ms,
            lateness_ms,
        })
    }

    /// The epoch length in ms (checked by [`Config::check`]).
    pub fn epoch_ms(&self) -> u64 {
        parse_duration_ms(&self.runtime.epoch).unwrap_or(100).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topsellers.example.toml");
        let config = Config::load(&path).unwrap();
        let defaults = Config {
            sources: config.sources.clone(),
            ..Config::default()
        };
        assert_eq!(config, defaults, "the example documents the defaults");
    }

    #[test]
    fn kafka_source_with_properties() {
        let file = write(
            "[[sources]]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"purchases\"\ndead_letter_topic = \"purchases-dead\"\n[sources.properties]\n\"fetch.wait.max.ms\" = \"10\"\n",
        );
        let config = Config::load(file.path()).unwrap();
        let SourceConfig::Kafka(kafka) = &config.sources[0] else {
            panic!("{config:?}")
        };
        assert_eq!(kafka.topic, "purchases");
        assert_eq!(kafka.dead_letter_topic.as_deref(), Some("purchases-dead"));
        assert_eq!(kafka.properties["fetch.wait.max.ms"], "10");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let file = write("[scoring]\ntop_kk = 5\n");
        let message = Config::load(file.path()).unwrap_err().to_string();
        assert!(message.contains("top_kk"), "{message}");
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("[scoring]\ntop_k = 0\n", "scoring.top_k"),
            (
                "[scoring]\nhalf_lives = [\"7 days\"]\n",
                "scoring.half_lives",
            ),
            ("[scoring]\nhalf_lives = []\n", "scoring.half_lives"),
            ("[scoring]\nretention = \"0s\"\n", "scoring.retention"),
            ("[runtime]\nworkers = 0\n", "runtime.workers"),
            (
                "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\nidle_timeout = \"soon\"\n",
                "kafka.idle_timeout",
            ),
            (
                "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\n[[sources]]\ntype = \"generator\"\n",
                "at most one live source",
            ),
        ] {
            let file = write(text);
            let message = Config::load(file.path()).unwrap_err().to_string();
            assert!(message.contains(key), "{text}: {message}");
        }
    }
}
