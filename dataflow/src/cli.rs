//! Command-line interface: `run`, `batch`, `generate`; flags override the config file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use topsellers_model::{parse_duration, parse_time_ms, HalfLife};

use topsellers_sources::files::FilesConfig;
use topsellers_sources::generator::{GeneratorConfig, Rate};
use topsellers_sources::{KafkaConfig, SourceConfig};

use crate::cluster::{Layout, Seat, WorkersArg, PROCESS_ENV};
use crate::config::{Config, ConfigError, Settings};

/// The demo's purchases per second (`topsellers run` with no input, source or config).
pub const DEMO_RATE: u64 = 2_000;
/// The demo's retention, unless `--retention` or a config file gives one.
pub const DEMO_RETENTION: Duration = Duration::from_secs(3600);

/// The generator `topsellers run` starts when nothing else is configured: a lively store at a
/// rate whose hour of purchases stays small (2,000/s × 1 h = 7.2M purchases).
fn demo_generator() -> GeneratorConfig {
    GeneratorConfig {
        rate: Rate::PerSecond(DEMO_RATE),
        ..GeneratorConfig::default()
    }
}

/// Best sellers right now, per category: purchases in, decayed top-k lists out over HTTP.
#[derive(Debug, Parser)]
#[command(name = "topsellers", version, about)]
pub struct Cli {
    /// Log lines as text (default) or as one JSON object per line (for a log pipeline).
    /// Logs go to stderr; `RUST_LOG` sets the level (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-29T12:00:00Z  INFO topsellers::run: …` (colour only on a terminal).
    Text,
    /// `{"timestamp":"…","level":"INFO","fields":{"message":"…"},"target":"…"}`.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve live top-k lists over HTTP (no flags: a generated store on 127.0.0.1:8080).
    Run(RunArgs),
    /// Compute the lists from files as of a time and write them as JSON Lines.
    Batch(BatchArgs),
    /// Write synthetic purchase history to a file.
    Generate(GenerateArgs),
    /// Start every process of a workers.toml that lives on this host (development): `run`
    /// flags are passed on, logs are prefixed `[pI]`, and all stop when one does.
    Cluster(ClusterArgs),
}

/// Flags that mean the same in `run` and `batch`.
#[derive(Debug, Args, Default)]
pub struct ScoringArgs {
    /// Config file (TOML); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Half-life of a decay profile (repeat for several), e.g. 7d, 6h. Default: 7d.
    #[arg(long = "half-life", value_name = "DURATION")]
    pub half_lives: Vec<HalfLife>,
    /// List length per category. Default: 100.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// How long a purchase counts at all. Default: 365d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retention: Option<Duration>,
    /// Worker threads (default 2), or a workers.toml cluster layout.
    #[arg(long, value_name = "N|FILE")]
    pub workers: Option<WorkersArg>,
    /// JSON Lines file for bad records ("" for none). Default: dead-letter.jsonl.
    #[arg(long = "dead-letter", value_name = "FILE")]
    pub dead_letter: Option<String>,
}

/// `topsellers run`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Scoring, workers and config.
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Replay these files or directories first (JSONL, CSV, Parquet), then keep serving.
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<String>,
    /// Where to serve HTTP. Default: 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Generator rate: purchases per second, or `max`. Turns the generator on.
    #[arg(long, value_name = "N|max")]
    pub rate: Option<Rate>,
    /// Write top-k changes as JSON Lines to this file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub changelog: Option<String>,
    /// Send changed top-k lists to this Kafka topic (keyed `profile/category`; brokers: the
    /// Kafka source's, or `changelog.brokers`).
    #[arg(long = "changelog-topic", value_name = "NAME")]
    pub changelog_topic: Option<String>,
    /// Read live purchases from Kafka: bootstrap brokers `host:port[,…]` (needs `--topic`).
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The Kafka topic purchases arrive on.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// The Kafka consumer group (committed offsets). Default: topsellers.
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// The hand-over time T0 from the `--input` history to Kafka (RFC 3339 or epoch ms): the
    /// history owns purchases before it, Kafka those at or after it (older messages are
    /// skipped). Default: the largest event time in the history.
    #[arg(long, value_name = "TIME")]
    pub handover: Option<String>,
    /// Which process of the `--workers` file this is (0-based).
    #[arg(long, value_name = "I", env = PROCESS_ENV)]
    pub process: Option<usize>,
    /// Keep checkpoints in this folder (or `s3://bucket/prefix`) and start from the newest
    /// one: the lists are served at once, nothing is read twice or lost.
    #[arg(long, value_name = "DIR")]
    pub state: Option<String>,
}

/// `topsellers cluster`: the flags of `run`; `--workers FILE` is required.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// What every process runs.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `topsellers batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Files or directories to read (JSONL, CSV, Parquet).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Where to write the lists (JSON Lines).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// The time the lists are computed as of: RFC 3339 or epoch ms. Default: the largest event
    /// time in the input.
    #[arg(long = "as-of", value_name = "TIME", value_parser = parse_time_ms)]
    pub as_of: Option<i64>,
    /// Scoring, workers and config.
    #[command(flatten)]
    pub scoring: ScoringArgs,
}

/// `topsellers generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many purchases.
    #[arg(long, value_name = "N")]
    pub events: u64,
    /// The file to write.
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    /// File format (default: from the extension, else jsonl).
    #[arg(long, value_name = "jsonl|csv|parquet")]
    pub format: Option<String>,
    /// Random seed (the same seed gives the same purchases).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event times spread over this span before `--end`.
    #[arg(long, default_value = "30d", value_name = "DURATION", value_parser = parse_duration)]
    pub span: Duration,
    /// Latest event time: RFC 3339 or epoch ms. Default: now.
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub end: Option<i64>,
    /// Distinct items.
    #[arg(long, value_name = "N")]
    pub items: Option<u64>,
    /// Levels of the category tree.
    #[arg(long, value_name = "N")]
    pub depth: Option<u32>,
    /// Children per category.
    #[arg(long, value_name = "N")]
    pub fanout: Option<u32>,
}

impl ScoringArgs {
    /// The config file (or defaults) with these flags applied, seated at `process` of a
    /// `--workers` file; not checked yet (the caller checks the whole, once).
    pub fn config(&self, process: Option<usize>) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::read(path)?,
            None => Config::default(),
        };
        if !self.half_lives.is_empty() {
            config.scoring.half_lives = self.half_lives.clone();
        }
        if let Some(k) = self.top {
            config.scoring.top_k = k;
        }
        if let Some(retention) = self.retention {
            config.scoring.retention = retention;
        }
        match &self.workers {
            Some(WorkersArg::Threads(threads)) => config.runtime.workers = *threads,
            Some(WorkersArg::File(path)) => {
                let seat = Layout::load(path)?.seat(path, process)?;
                config.runtime.workers = seat.layout.threads;
                config.http.listen = seat.me().http.clone();
                config.runtime.cluster = Some(seat);
            }
            None => {}
        }
        if let Some(path) = &self.dead_letter {
            config.dead_letter.path = path.clone();
        }
        Ok(config)
    }

    /// Where errors of the checked whole say the settings came from.
    fn origin(&self) -> String {
        match &self.config {
            Some(path) => format!("{} (with command-line flags)", path.display()),
            None => "command line".into(),
        }
    }
}

impl RunArgs {
    /// The effective settings of `run`: file, then flags; the generator when nothing else;
    /// checked once.
    pub fn config(&self) -> Result<Settings, ConfigError> {
        self.config_at(self.process)
    }

    /// [`RunArgs::config`] as process `process` of a `--workers` file.
    pub fn config_at(&self, process: Option<usize>) -> Result<Settings, ConfigError> {
        let mut config = self.scoring.config(process)?;
        if !self.inputs.is_empty() {
            config
                .sources
                .push(SourceConfig::Files(FilesConfig::new(self.inputs.clone())));
        }
        self.apply_kafka(&mut config, &self.origin())?;
        if let Some(rate) = &self.rate {
            let generator = config.sources.iter_mut().find_map(|s| match s {
                SourceConfig::Generator(g) => Some(g),
                _ => None,
            });
            match generator {
                Some(generator) => generator.rate = *rate,
                None => config
                    .sources
                    .push(SourceConfig::Generator(GeneratorConfig {
                        rate: *rate,
                        ..GeneratorConfig::default()
                    })),
            }
        }
        if config.sources.is_empty() {
            config
                .sources
                .push(SourceConfig::Generator(demo_generator()));
        }
        // A generated store keeps an hour of purchases unless told otherwise: with the
        // year-long default retention nothing it generates would ever expire (memory grows
        // with the purchases inside the window: see the README's Limitations).
        let generated_only = config
            .sources
            .iter()
            .all(|s| matches!(s, SourceConfig::Generator(_)));
        if generated_only && self.scoring.retention.is_none() && self.scoring.config.is_none() {
            config.scoring.retention = DEMO_RETENTION;
        }
        if let Some(http) = &self.http {
            config.http.listen = http.clone();
        }
        if let Some(changelog) = &self.changelog {
            config.changelog.path = Some(changelog.clone());
        }
        if let Some(topic) = &self.changelog_topic {
            config.changelog.topic = Some(topic.clone());
        }
        if let Some(dir) = &self.state {
            config.state.dir = Some(dir.clone());
        }
        // Every process of a cluster writes its own files (they may share a host or a mount).
        if let Some(seat) = config.runtime.cluster.clone().filter(Seat::is_cluster) {
            if !config.dead_letter.path.is_empty() {
                config.dead_letter.path = seat.per_process(&config.dead_letter.path);
            }
            // One process sends the changelog topic: every process has every list.
            if seat.process != 0 {
                config.changelog.topic = None;
            }
            if let Some(path) = config.changelog.path.as_mut().filter(|p| *p != "-") {
                *path = seat.per_process(path);
            }
            // One state directory per process: each checkpoints its own workers.
            if let Some(dir) = config.state.dir.as_mut() {
                *dir = if dir.starts_with("s3://") || dir.starts_with("s3a://") {
                    format!("{}/p{}", dir.trim_end_matches('/'), seat.process)
                } else {
                    seat.per_process(dir)
                };
            }
        }
        config.check(&self.origin())
    }

    /// `--kafka`, `--topic`, `--group`: a Kafka source, or changes to the configured one.
    fn apply_kafka(&self, config: &mut Config, origin: &str) -> Result<(), ConfigError> {
        let configured = config.sources.iter_mut().find_map(|s| match s {
            SourceConfig::Kafka(kafka) => Some(kafka),
            _ => None,
        });
        let kafka = match (configured, &self.kafka, &self.topic) {
            (Some(kafka), _, _) => kafka,
            (None, Some(brokers), Some(topic)) => {
                config
                    .sources
                    .push(SourceConfig::Kafka(KafkaConfig::new(brokers, topic)));
                return self.apply_kafka(config, origin);
            }
            (None, None, None) if self.group.is_none() && self.handover.is_none() => return Ok(()),
            (None, _, _) => {
                return Err(ConfigError::Invalid {
                    origin: origin.into(),
                    key: "--kafka".into(),
                    message: "--topic, --group and --handover need --kafka BROKERS (or a kafka source in the config file)".into(),
                })
            }
        };
        if let Some(brokers) = &self.kafka {
            kafka.brokers = brokers.clone();
        }
        if let Some(topic) = &self.topic {
            kafka.topic = topic.clone();
        }
        if let Some(group) = &self.group {
            kafka.group = group.clone();
        }
        if let Some(handover) = &self.handover {
            let ms = parse_time_ms(handover).map_err(|e| ConfigError::Invalid {
                origin: origin.into(),
                key: "--handover".into(),
                message: e.to_string(),
            })?;
            kafka.handover = Some(ms);
        }
        Ok(())
    }

    fn origin(&self) -> String {
        self.scoring.origin()
    }
}

impl BatchArgs {
    /// The effective settings of `batch`: the config's scoring and runtime with the inputs as
    /// its only source (one process: a cluster layout is refused), checked once.
    pub fn config(&self) -> Result<Settings, ConfigError> {
        let mut config = self.scoring.config(Some(0))?;
        if let Some(seat) = config.runtime.cluster.as_ref().filter(|s| s.is_cluster()) {
            return Err(cluster_refused(seat, "batch"));
        }
        config.sources = vec![SourceConfig::Files(FilesConfig::new(self.inputs.clone()))];
        config.check(&self.scoring.origin())
    }
}

impl ClusterArgs {
    /// The layout file, which `cluster` requires (and `--process`, which it must not have).
    pub fn workers_file(&self) -> Result<&std::path::Path, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            origin: "command line".into(),
            key: "--workers".into(),
            message: message.into(),
        };
        if self.run.process.is_some() {
            return Err(ConfigError::Invalid {
                origin: "command line".into(),
                key: "--process".into(),
                message: format!(
                    "`cluster` starts every local process itself: drop --process / {PROCESS_ENV}"
                ),
            });
        }
        if self.run.http.is_some() {
            return Err(ConfigError::Invalid {
                origin: "command line".into(),
                key: "--http".into(),
                message: "every process would listen on it: give each process its own `http` \
                          in the workers.toml instead"
                    .into(),
            });
        }
        match &self.run.scoring.workers {
            Some(WorkersArg::File(path)) => Ok(path),
            _ => Err(invalid("`cluster` needs --workers workers.toml")),
        }
    }
}

fn cluster_refused(seat: &Seat, command: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: seat.file.display().to_string(),
        key: "process".into(),
        message: format!(
            "`{command}` runs in one process, and {} are listed: use --workers THREADS",
            seat.layout.process.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_processes() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text =
            "threads = 1\n[[process]]\ntimely = \"127.0.0.1:2101\"\nhttp = \"127.0.0.1:8080\"\n\
                    [[process]]\ntimely = \"127.0.0.1:2102\"\nhttp = \"127.0.0.1:8081\"\n";
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn a_cluster_process_serves_and_writes_its_own() {
        let file = two_processes();
        let args = RunArgs {
            scoring: ScoringArgs {
                workers: Some(WorkersArg::File(file.path().into())),
                ..ScoringArgs::default()
            },
            changelog: Some("changes.jsonl".into()),
            process: Some(1),
            ..RunArgs::default()
        };
        let config = args.config().unwrap().into_config();
        assert_eq!(config.http.listen, "127.0.0.1:8081");
        assert_eq!(config.runtime.workers, 1);
        assert_eq!(config.dead_letter.path, "dead-letter.p1.jsonl");
        assert_eq!(config.changelog.path.as_deref(), Some("changes.p1.jsonl"));
        assert_eq!(config.runtime.cluster.unwrap().process, 1);
    }

    #[test]
    fn batch_refuses_a_cluster_layout() {
        let file = two_processes();
        let args = BatchArgs {
            inputs: vec!["x.jsonl".into()],
            output: "out.jsonl".into(),
            as_of: None,
            scoring: ScoringArgs {
                workers: Some(WorkersArg::File(file.path().into())),
                ..ScoringArgs::default()
            },
        };
        let message = args.config().unwrap_err().to_string();
        assert!(message.contains("one process"), "{message}");
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["topsellers", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run(args) => Ok(args),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 17, point 5: more half-lives than the operators take (16) is a config error
    /// naming the key and where the settings came from, for `run` and `batch`, from flags or
    /// from a file; not a worker's panic once the dataflow starts.
    #[test]
    fn too_many_half_lives_are_a_config_error() {
        let flags = |n: usize| -> Vec<String> {
            (1..=n)
                .flat_map(|h| ["--half-life".to_owned(), format!("{h}h")])
                .collect()
        };
        let run = |args: &[String]| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_args(&args).unwrap().config().map(|_| ())
        };
        let batch = |args: &[String]| {
            let args: Vec<&str> = ["in.jsonl", "--output", "out.jsonl"]
                .into_iter()
                .chain(args.iter().map(String::as_str))
                .collect();
            let cli = Cli::try_parse_from(["topsellers", "batch"].iter().chain(&args)).unwrap();
            let Command::Batch(args) = cli.command else {
                panic!("{:?}", cli.command)
            };
            args.config().map(|_| ())
        };
        let file = tempfile::NamedTempFile::new().unwrap();
        let listed: Vec<String> = (1..=17).map(|h| format!("\"{h}h\"")).collect();
        let text = format!("[scoring]\nhalf_lives = [{}]\n", listed.join(", "));
        std::fs::write(file.path(), text).unwrap();
        let path = file.path().display().to_string();
        let from_file = vec!["--config".to_owned(), path.clone()];
        for (args, origin) in [(flags(17), "command line"), (from_file, path.as_str())] {
            for result in [run(&args), batch(&args)] {
                let message = result.unwrap_err().to_string();
                for part in ["scoring.half_lives", origin, "17"] {
                    assert!(message.contains(part), "{args:?}: {message}");
                }
            }
        }
        assert!(run(&flags(16)).is_ok() && batch(&flags(16)).is_ok());
    }

    #[test]
    fn kafka_flags_make_a_kafka_source() {
        let args = run_args(&["--kafka", "b:9092", "--topic", "t", "--group", "g"]).unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.sources.len(), 1, "no generator next to Kafka");
        let SourceConfig::Kafka(kafka) = &config.sources[0] else {
            panic!("{:?}", config.sources)
        };
        assert_eq!(
            (&*kafka.brokers, &*kafka.topic, &*kafka.group),
            ("b:9092", "t", "g")
        );
        let args = run_args(&[
            "--kafka",
            "b:9092",
            "--topic",
            "t",
            "--changelog-topic",
            "c",
        ]);
        let config = args.unwrap().config().unwrap();
        assert_eq!(config.changelog.topic.as_deref(), Some("c"));
        assert!(
            run_args(&["--kafka", "b:9092"]).is_err(),
            "--kafka needs --topic"
        );
        let message = run_args(&["--topic", "t"])
            .unwrap()
            .config()
            .unwrap_err()
            .to_string();
        assert!(message.contains("--kafka"), "{message}");
    }

    #[test]
    fn handover_flag_sets_the_kafka_sources_cut_off() {
        let args = run_args(&[
            "--input",
            "history/",
            "--kafka",
            "b:9092",
            "--topic",
            "t",
            "--handover",
            "2026-11-22T13:00:00Z",
        ]);
        let config = args.unwrap().config().unwrap();
        let kafka = config
            .sources
            .iter()
            .find_map(|s| match s {
                SourceConfig::Kafka(kafka) => Some(kafka),
                _ => None,
            })
            .unwrap();
        assert_eq!(kafka.handover, Some(1_795_352_400_000));
        let bad = run_args(&["--kafka", "b:9092", "--topic", "t", "--handover", "soon"]);
        let message = bad.unwrap().config().unwrap_err().to_string();
        assert!(message.contains("handover"), "{message}");
        let message = run_args(&["--input", "history/", "--handover", "0"])
            .unwrap()
            .config()
            .unwrap_err()
            .to_string();
        assert!(message.contains("--handover"), "{message}");
    }

    /// The demo does not grow forever: a generated store keeps an hour of purchases (a year
    /// at the old default of 20,000/s would hold 630 billion) unless a retention is given.
    #[test]
    fn a_generated_store_keeps_an_hour_unless_told_otherwise() {
        let settings = |args: &[&str]| run_args(args).unwrap().config().unwrap().into_config();
        let generator = |config: &Config| match &config.sources[..] {
            [SourceConfig::Generator(g)] => g.rate,
            other => panic!("{other:?}"),
        };
        let demo = settings(&[]);
        assert_eq!(demo.scoring.retention, Duration::from_secs(3600));
        assert_eq!(generator(&demo), Rate::PerSecond(2_000));
        // Purchases inside the window, at most: 7.2 million (24-byte expiry entries: 173 MB).
        let Rate::PerSecond(rate) = generator(&demo) else {
            unreachable!()
        };
        assert!(rate * demo.scoring.retention.as_secs() <= 10_000_000);
        let fast = settings(&["--rate", "50000"]);
        assert_eq!(fast.scoring.retention, Duration::from_secs(3600));
        assert_eq!(generator(&fast), Rate::PerSecond(50_000));
        let told = settings(&["--retention", "30d"]);
        assert_eq!(told.scoring.retention, Duration::from_secs(30 * 86_400));
        // With history to replay, the retention is the contract's default.
        let files = settings(&["--input", "history/"]);
        assert_eq!(files.scoring.retention, Duration::from_secs(365 * 86_400));
    }
}
