//! The config file (TOML): every key documented and defaulted, read once into types (durations
//! as [`Duration`]), checked once into [`Settings`]; flags override it.

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topsellers_model::{HalfLife, Profiles};
use topsellers_sinks::{
    ChangelogConfig, ExperimentConfig, Experiments, HttpConfig, MoversConfig, TableConfig,
};
use topsellers_sources::{AvailabilityConfig, LakeConfig, SourceConfig};

use crate::cluster::Seat;
use crate::config_file::from_toml;
pub use crate::config_file::ConfigError;

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
    /// Durable state: checkpoints, and the start from them (off by default).
    #[serde(default)]
    pub state: crate::state::StateConfig,
    /// Item availability: unavailable items are hidden from every list (off by default).
    #[serde(default)]
    pub availability: AvailabilityConfig,
    /// Decay-rate experiments served by `/v1/top?experiment=NAME&visitor=ID` (none by
    /// default).
    #[serde(default)]
    pub experiments: Vec<ExperimentConfig>,
    /// `/v1/movers`: on by default; its least short-profile score.
    #[serde(default)]
    pub movers: MoversConfig,
}

/// Scores, lists and retention (DESIGN.md, "Score and ranking").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    /// Half-life of each decay profile; each profile is named by its text (`"7d"`) and has its
    /// own top-k tables. The first one is the API's default. Default: `["7d"]`.
    #[serde(default = "default_half_lives")]
    pub half_lives: Vec<HalfLife>,
    /// List length per category. Default: 100.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// How long a purchase counts at all. Default: `"365d"`.
    #[serde(
        default = "default_retention",
        with = "topsellers_model::duration::text"
    )]
    pub retention: Duration,
    /// How far behind the largest event time seen the watermark stays, so that slightly late
    /// purchases still land in the snapshot of their own time. Default: `"0s"`.
    #[serde(default, with = "topsellers_model::duration::text")]
    pub allowed_lateness: Duration,
    /// How far ahead of the wall clock (when read) a purchase's `ts` may be; a purchase further
    /// ahead is a bad record (dead-lettered, counted) and never moves a watermark or the
    /// default as-of. Default: `"1h"`.
    #[serde(
        default = "default_max_future",
        with = "topsellers_model::duration::text"
    )]
    pub max_future: Duration,
}

fn default_half_lives() -> Vec<HalfLife> {
    vec![HalfLife {
        name: "7d".into(),
        duration: Duration::from_secs(7 * 86_400),
    }]
}
fn default_top_k() -> usize {
    100
}
fn default_retention() -> Duration {
    Duration::from_secs(365 * 86_400)
}
fn default_max_future() -> Duration {
    topsellers_model::DEFAULT_MAX_FUTURE
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            half_lives: default_half_lives(),
            top_k: default_top_k(),
            retention: default_retention(),
            allowed_lateness: Duration::ZERO,
            max_future: default_max_future(),
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
    /// How often live input time advances (and a snapshot can be published); at least 1 ms.
    /// Default: `"100ms"`.
    #[serde(default = "default_epoch", with = "topsellers_model::duration::text")]
    pub epoch: Duration,
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
fn default_epoch() -> Duration {
    Duration::from_millis(100)
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
    pub profiles: Profiles,
    /// List length (what the API serves).
    pub k: usize,
    /// Candidates the dataflow keeps per list: `k`, plus `table.buffer` when an availability
    /// input is configured (a hidden item's place is filled from them).
    pub candidates: usize,
    /// Retention in ms.
    pub retention_ms: i64,
    /// Allowed lateness in ms.
    pub lateness_ms: i64,
    /// How far ahead of the wall clock a `ts` may be (`scoring.max_future`).
    pub max_future: Duration,
    /// Whether listed items carry their scores under every profile (for `/v1/movers`: on
    /// with `movers.enabled` and two or more profiles).
    pub carry_scores: bool,
}

impl Scoring {
    /// Puts this process's bound on future event times in force (every source checks it as it
    /// reads): call before reading any input.
    pub fn apply_max_future(&self) {
        topsellers_model::set_max_future(self.max_future);
    }
}

/// Most worker threads a process may run, and most HTTP threads.
const MAX_THREADS: usize = 1024;

/// The range of every numeric key: an absurd value is a config error naming the key, never an
/// allocation or a thread count that aborts the process at start (README, "Configuration").
const MAX_TOP_K: usize = 100_000;
/// `runtime.batch_size`: records a worker buffers at once (allocated up front).
const MAX_BATCH: usize = 1_000_000;
/// `runtime.snapshot_queue`: the queue's slots are allocated up front.
const MAX_SNAPSHOT_QUEUE: usize = 1024;
/// `table.shards`.
const MAX_SHARDS: usize = 4096;
/// `table.buffer`.
const MAX_BUFFER: usize = 100_000;
/// `http.cache_max_age`: one year, in seconds.
const MAX_CACHE_AGE: u64 = 365 * 86_400;
const ZERO: Duration = Duration::ZERO;
const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Retention, half-lives, lateness and the future bound: 100 years (36500d).
const LONGEST: Duration = Duration::from_secs(36_500 * 86_400);

/// `value` if in `range`, else the message of a config error.
fn count<T: PartialOrd + std::fmt::Display>(
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is out of range {}..={}",
            range.start(),
            range.end()
        ))
    }
}

/// Ok if `value` is in `range`, else the message of a config error (durations in the config's
/// own syntax).
fn duration(value: Duration, range: std::ops::RangeInclusive<Duration>) -> Result<(), String> {
    if range.contains(&value) {
        return Ok(());
    }
    let text = |d: &Duration| topsellers_model::duration::format_duration(millis(*d));
    Err(format!(
        "{} is out of range {}..={}",
        text(&value),
        text(range.start()),
        text(range.end())
    ))
}

/// The largest `http.max_connections` accepted (it is lowered further to stay below the
/// open-file limit at start).
const MAX_HTTP_CONNECTIONS: usize = 1_000_000;

/// A config whose every value has been checked, with what checking derived: what the drivers
/// start from. Reads as the [`Config`] it holds.
#[derive(Debug, Clone)]
pub struct Settings {
    config: Config,
    scoring: Scoring,
    experiments: Experiments,
}

impl Settings {
    /// The checked scoring settings.
    pub fn scoring(&self) -> &Scoring {
        &self.scoring
    }

    /// The checked experiments (with their exposure counters).
    pub fn experiments(&self) -> &Experiments {
        &self.experiments
    }

    /// The config itself.
    pub fn into_config(self) -> Config {
        self.config
    }
}

impl Deref for Settings {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Config {
    /// The candidates kept beyond `top_k`: `table.buffer` with an availability input, else 0.
    fn buffer(&self) -> usize {
        if self.availability.is_set() {
            self.table.buffer
        } else {
            0
        }
    }

    /// Reads and checks a config file; unknown keys and bad values are errors naming the key
    /// and the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::read(path)?;
        Ok(config.check(&path.display().to_string())?.into_config())
    }

    /// Reads a config file into types (every duration, every key known) without the range
    /// checks of [`Config::check`], for callers that apply flags first and check once.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        from_toml(&text, path)
    }

    /// Checks every value; `origin` names the file (or "command line") in errors.
    pub fn check(self, origin: &str) -> Result<Settings, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.into(),
            key: key.into(),
            message,
        };
        let s = &self.scoring;
        let profiles = Profiles::from_half_lives(&s.half_lives)
            .map_err(|e| invalid("scoring.half_lives", e.to_string()))?;
        self.check_ranges()
            .map_err(|(key, message)| invalid(key, message))?;
        let h = &self.http;
        topsellers_sinks::Cors::new(&h.cors_origins)
            .map_err(|e| invalid("http.cors_origins", e.to_string()))?;
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
                SourceConfig::Kafka(kafka) => {
                    kafka
                        .validate()
                        .map_err(|e| invalid("sources.kafka", e.to_string()))?;
                    for (key, value) in [
                        ("kafka.idle_timeout", kafka.idle_timeout),
                        ("kafka.commit_interval", kafka.commit_interval),
                    ] {
                        duration(value, MS..=DAY)
                            .map_err(|e| invalid(&format!("sources.{key}"), e))?;
                    }
                }
                SourceConfig::Files(_) => {}
            }
        }
        let experiments = self.check_api(&profiles, origin)?;
        let carry_scores = self.movers.enabled && profiles.len() >= 2;
        let scoring = Scoring {
            profiles,
            k: s.top_k,
            candidates: s.top_k + self.buffer(),
            retention_ms: millis(s.retention),
            lateness_ms: millis(s.allowed_lateness),
            max_future: s.max_future,
            carry_scores,
        };
        Ok(Settings {
            config: self,
            scoring,
            experiments,
        })
    }
}

impl Config {
    /// Checks the range of every numeric key outside `[[sources]]`: the key and the message of
    /// the first value out of range.
    fn check_ranges(&self) -> Result<(), (&'static str, String)> {
        let (s, r, h, t) = (&self.scoring, &self.runtime, &self.http, &self.table);
        count(s.top_k, 1..=MAX_TOP_K).map_err(|e| ("scoring.top_k", e))?;
        let mut durations = vec![
            ("scoring.retention", s.retention, MS..=LONGEST),
            (
                "scoring.allowed_lateness",
                s.allowed_lateness,
                ZERO..=LONGEST,
            ),
            ("scoring.max_future", s.max_future, ZERO..=LONGEST),
            ("runtime.epoch", r.epoch, MS..=HOUR),
            ("http.header_read_timeout", h.header_read_timeout, MS..=DAY),
            ("http.write_timeout", h.write_timeout, MS..=DAY),
            ("http.keep_alive_timeout", h.keep_alive_timeout, MS..=DAY),
            ("table.refresh", t.refresh, ZERO..=DAY),
            ("table.publish_interval", t.publish_interval, ZERO..=HOUR),
            ("state.interval", self.state.interval, MS..=DAY),
        ];
        durations.extend(
            s.half_lives
                .iter()
                .map(|h| ("scoring.half_lives", h.duration, MS..=LONGEST)),
        );
        for (key, value, range) in durations {
            duration(value, range).map_err(|e| (key, e))?;
        }
        for (key, value, range) in [
            ("runtime.workers", r.workers, 1..=MAX_THREADS),
            ("runtime.http_threads", r.http_threads, 1..=MAX_THREADS),
            ("runtime.batch_size", r.batch_size, 1..=MAX_BATCH),
            (
                "runtime.snapshot_queue",
                r.snapshot_queue,
                1..=MAX_SNAPSHOT_QUEUE,
            ),
            (
                "http.max_connections",
                h.max_connections,
                1..=MAX_HTTP_CONNECTIONS,
            ),
            ("table.shards", t.shards, 1..=MAX_SHARDS),
            ("table.buffer", t.buffer, 0..=MAX_BUFFER),
        ] {
            count(value, range).map_err(|e| (key, e))?;
        }
        count(h.cache_max_age, 0..=MAX_CACHE_AGE).map_err(|e| ("http.cache_max_age", e))?;
        Ok(())
    }

    /// Checks what the API serves besides the lists: `[[experiments]]` (against the
    /// profiles) and `[movers]`.
    fn check_api(&self, profiles: &Profiles, origin: &str) -> Result<Experiments, ConfigError> {
        let min_score = self.movers.min_score;
        if !(min_score.is_finite() && min_score >= 0.0) {
            return Err(ConfigError::Invalid {
                origin: origin.into(),
                key: "movers.min_score".into(),
                message: format!("{min_score} must be a finite number >= 0"),
            });
        }
        Experiments::new(&self.experiments, profiles).map_err(|e| ConfigError::Invalid {
            origin: origin.into(),
            key: e.key,
            message: e.message,
        })
    }
}

impl RuntimeConfig {
    /// The epoch length in ms (at least 1).
    pub fn epoch_ms(&self) -> u64 {
        (millis(self.epoch) as u64).max(1)
    }
}

/// Whole milliseconds of a configured duration (saturating).
pub(crate) fn millis(duration: Duration) -> i64 {
    duration.as_millis().min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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

    /// The example with its commented-out settings (`# key = …`, `# [section]`,
    /// `# [[sources]]`, `# "quoted" = …`) uncommented.
    fn uncommented_example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topsellers.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let setting = |line: &str| {
            let (key, rest) = line.split_once(" = ")?;
            let bare = key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            let quoted = key.len() > 1 && key.starts_with('"') && key.ends_with('"');
            (!key.is_empty() && (bare || quoted) && !rest.is_empty()).then_some(())
        };
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || setting(rest).is_some() => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every key path under `value` (`section.key`; a source's keys as `sources.TYPE.key`;
    /// `properties` tables are free-form, so a leaf).
    fn key_paths(value: &serde_json::Value, at: &str, out: &mut BTreeSet<String>) {
        let serde_json::Value::Object(map) = value else {
            return;
        };
        for (key, inner) in map {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match inner {
                serde_json::Value::Array(sources) if path == "sources" => {
                    for source in sources {
                        let kind = source["type"].as_str().expect("a source type");
                        key_paths(source, &format!("sources.{kind}"), out);
                    }
                }
                serde_json::Value::Object(_) if key != "properties" => {
                    key_paths(inner, &path, out);
                }
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    /// Every setting the config has is in the example (commented out where it has no
    /// default), including each source type's, and everything the example sets (commented or
    /// not) is a setting: an undocumented key fails here.
    #[test]
    fn the_example_documents_every_key_of_every_section_and_source() {
        let example: toml::Value = toml::from_str(&uncommented_example()).unwrap();
        let parsed: Config = toml::from_str(&uncommented_example())
            .unwrap_or_else(|e| panic!("the uncommented example: {e}"));
        let kinds: Vec<&str> = example["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["files", "kafka", "generator"],
            "one block per source type"
        );
        let mut documented = BTreeSet::new();
        key_paths(
            &serde_json::to_value(&example).unwrap(),
            "",
            &mut documented,
        );
        let all = Config {
            sources: vec![
                SourceConfig::Files(topsellers_sources::FilesConfig::new(Vec::new())),
                SourceConfig::Kafka(topsellers_sources::KafkaConfig::new("b", "t")),
                SourceConfig::Generator(Default::default()),
            ],
            ..Config::default()
        };
        let mut keys = BTreeSet::new();
        key_paths(&serde_json::to_value(&all).unwrap(), "", &mut keys);
        let undocumented: Vec<&String> = keys.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "not in the example: {undocumented:?}"
        );
        let unknown: Vec<&String> = documented.difference(&keys).collect();
        assert!(
            unknown.is_empty(),
            "in the example, not settings: {unknown:?}"
        );
        // The live generator block documents the generator's defaults.
        assert_eq!(
            parsed.sources[2],
            SourceConfig::Generator(Default::default()),
            "the example's generator block holds the defaults"
        );
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
            // Absurd sizes are config errors, not an abort at start.
            ("[runtime]\nhttp_threads = 100000\n", "runtime.http_threads"),
            ("[runtime]\nworkers = 5000\n", "runtime.workers"),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            (
                "[http]\nmax_connections = 100000000\n",
                "http.max_connections",
            ),
            ("[http]\nwrite_timeout = \"0s\"\n", "http.write_timeout"),
            ("[http]\nkeep_alive_timeout = \"soon\"\n", "http.keep_alive_timeout"),
            (
                "[http]\nheader_read_timeout = \"0s\"\n",
                "http.header_read_timeout",
            ),
            (
                "[http]\ncors_origins = [\"shop.example\"]\n",
                "http.cors_origins",
            ),
            ("[http]\ncompression = \"yes\"\n", "compression"),
            ("[scoring]\nretention = \"1 year\"\n", "scoring.retention"),
            ("[runtime]\nepoch = \"soon\"\n", "runtime.epoch"),
            (
                "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\nidle_timeout = \"soon\"\n",
                "kafka.idle_timeout",
            ),
            (
                "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\n[[sources]]\ntype = \"generator\"\n",
                "at most one live source",
            ),
            (
                "[[experiments]]\nname = \"decay\"\nweights = { \"7d\" = 1, \"1d\" = 1 }\n",
                "experiments[0].weights",
            ),
            (
                "[[experiments]]\nname = \"decay\"\nweights = {}\n",
                "experiments[0].weights",
            ),
            (
                "[[experiments]]\nname = \"d\"\nweights = { \"7d\" = 1 }\n[[experiments]]\nname = \"d\"\nweights = { \"7d\" = 2 }\n",
                "experiments[1].name",
            ),
            (
                "[[experiments]]\nname = \"d\"\nweights = { \"7d\" = -1 }\n",
                "experiments",
            ),
            ("[movers]\nmin_score = -1.0\n", "movers.min_score"),
            // Every numeric key has a range: absurd values name the key instead of aborting
            // at start (a huge allocation, an overflowing timer) or doing nothing useful.
            ("[scoring]\ntop_k = 100000000\n", "scoring.top_k"),
            ("[scoring]\nhalf_lives = [\"100000d\"]\n", "scoring.half_lives"),
            ("[scoring]\nretention = \"100000d\"\n", "scoring.retention"),
            (
                "[scoring]\nallowed_lateness = \"100000d\"\n",
                "scoring.allowed_lateness",
            ),
            ("[scoring]\nmax_future = \"100000d\"\n", "scoring.max_future"),
            ("[runtime]\nepoch = \"0s\"\n", "runtime.epoch"),
            ("[runtime]\nepoch = \"2h\"\n", "runtime.epoch"),
            ("[runtime]\nbatch_size = 0\n", "runtime.batch_size"),
            (
                "[runtime]\nbatch_size = 1000000000000\n",
                "runtime.batch_size",
            ),
            ("[runtime]\nsnapshot_queue = 0\n", "runtime.snapshot_queue"),
            (
                "[runtime]\nsnapshot_queue = 1000000000000\n",
                "runtime.snapshot_queue",
            ),
            ("[runtime]\nhttp_threads = 0\n", "runtime.http_threads"),
            (
                "[http]\ncache_max_age = 100000000000\n",
                "http.cache_max_age",
            ),
            (
                "[http]\nheader_read_timeout = \"100000000d\"\n",
                "http.header_read_timeout",
            ),
            ("[http]\nwrite_timeout = \"100000000d\"\n", "http.write_timeout"),
            (
                "[http]\nkeep_alive_timeout = \"100000000d\"\n",
                "http.keep_alive_timeout",
            ),
            ("[table]\nshards = 0\n", "table.shards"),
            ("[table]\nshards = 1000000000000\n", "table.shards"),
            ("[table]\nbuffer = 1000000000000\n", "table.buffer"),
            ("[table]\nrefresh = \"100000000d\"\n", "table.refresh"),
            (
                "[table]\npublish_interval = \"100000000d\"\n",
                "table.publish_interval",
            ),
            ("[state]\ninterval = \"0s\"\n", "state.interval"),
            ("[state]\ninterval = \"100000000d\"\n", "state.interval"),
            (
                "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\nidle_timeout = \"100000000d\"\n",
                "kafka.idle_timeout",
            ),
            (
                "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:1\"\ntopic = \"t\"\ncommit_interval = \"100000000d\"\n",
                "kafka.commit_interval",
            ),
            (
                "[[experiments]]\nname = \"d\"\nweights = { \"7d\" = 9223372036854775807, \"1d\" = 9223372036854775807, \"1h\" = 9223372036854775807 }\n[scoring]\nhalf_lives = [\"7d\", \"1d\", \"1h\"]\n",
                "experiments[0].weights",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nrate = 0\n",
                "generator.rate",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nrate = 100000000000000\n",
                "generator.rate",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nitems = 0\n",
                "generator.items",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nitems = 100000000000\n",
                "generator.items",
            ),
            (
                "[[sources]]\ntype = \"generator\"\ndepth = 0\n",
                "generator.depth",
            ),
            (
                "[[sources]]\ntype = \"generator\"\ndepth = 100\n",
                "generator.depth",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nfanout = 0\n",
                "generator.fanout",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nfanout = 100000\n",
                "generator.fanout",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nzipf_exponent = 1e300\n",
                "generator.zipf_exponent",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nzipf_exponent = -1.0\n",
                "generator.zipf_exponent",
            ),
            (
                "[[sources]]\ntype = \"generator\"\ntrending_items = 4000000000\n",
                "generator.trending_items",
            ),
            (
                "[[sources]]\ntype = \"generator\"\ntrending_share = 2.0\n",
                "generator.trending_share",
            ),
            (
                "[[sources]]\ntype = \"generator\"\ntrend_period = \"0s\"\n",
                "generator.trend_period",
            ),
            (
                "[[sources]]\ntype = \"generator\"\ntrend_period = \"100000000d\"\n",
                "generator.trend_period",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nreturns_fraction = -0.5\n",
                "generator.returns_fraction",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nlate_fraction = 1.5\n",
                "generator.late_fraction",
            ),
            (
                "[[sources]]\ntype = \"generator\"\nmax_lateness = \"100000000d\"\n",
                "generator.max_lateness",
            ),
            ("[movers]\nmin_scor = 1.0\n", "min_scor"),
        ] {
            let file = write(text);
            let message = Config::load(file.path()).unwrap_err().to_string();
            assert!(message.contains(key), "{text}: {message}");
        }
    }
}
