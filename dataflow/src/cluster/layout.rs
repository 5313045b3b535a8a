//! `workers.toml`: threads per process, each process's addresses, and which process this is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config_file::{from_toml, ConfigError};

/// The environment variable that says which process of `workers.toml` this is (as `--process`).
pub const PROCESS_ENV: &str = "TOPSELLERS_PROCESS";

/// The cluster layout (`workers.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Worker threads in every process.
    pub threads: usize,
    /// How many `[[process]]` entries the file must list (optional: guards against a truncated
    /// or mixed-up file on one host).
    #[serde(default)]
    pub processes: Option<usize>,
    /// How long a process waits for its peers to be reachable at start. Default: `"60s"`.
    #[serde(
        default = "default_connect_timeout",
        with = "topsellers_model::duration::text"
    )]
    pub connect_timeout: Duration,
    /// The processes, in index order.
    #[serde(default, rename = "process")]
    pub process: Vec<ProcessAddr>,
}

/// The longest `connect_timeout` accepted.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn default_connect_timeout() -> Duration {
    Duration::from_secs(60)
}

/// One process of the cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessAddr {
    /// `host:port` where this process exchanges dataflow data with the others.
    pub timely: String,
    /// `host:port` where this process serves HTTP.
    pub http: String,
}

/// This process's place in a checked layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Seat {
    /// The layout.
    pub layout: Layout,
    /// This process's index.
    pub process: usize,
    /// The file the layout came from (for error messages).
    pub file: PathBuf,
}

impl Layout {
    /// Reads and checks a `workers.toml`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Layout, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let workers: Layout = from_toml(&text, path)?;
        workers.check(path)?;
        Ok(workers)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            origin: path.display().to_string(),
            key,
            message,
        };
        if self.threads == 0 || self.threads > 1024 {
            return Err(invalid(
                "threads".into(),
                format!("{} is out of range 1..=1024", self.threads),
            ));
        }
        // Waited on as `now + connect_timeout`: an absurd value would overflow the clock.
        if self.connect_timeout.is_zero() || self.connect_timeout > MAX_CONNECT_TIMEOUT {
            return Err(invalid(
                "connect_timeout".into(),
                format!("{:?} is out of range 1ms..=1d", self.connect_timeout),
            ));
        }
        if self.process.is_empty() {
            return Err(invalid(
                "process".into(),
                "no [[process]] listed: list one per process (host)".into(),
            ));
        }
        if let Some(declared) = self.processes {
            if declared != self.process.len() {
                return Err(invalid(
                    "processes".into(),
                    format!(
                        "says {declared} processes but {} [[process]] entries are listed",
                        self.process.len()
                    ),
                ));
            }
        }
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (index, process) in self.process.iter().enumerate() {
            for (field, address) in [("timely", &process.timely), ("http", &process.http)] {
                let key = format!("process[{index}].{field}");
                check_address(address).map_err(|message| invalid(key.clone(), message))?;
                if let Some(first) = seen.insert(address, key.clone()) {
                    return Err(invalid(
                        key,
                        format!("{address} is already used by {first}: every address must differ"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Total workers over all processes.
    pub fn peers(&self) -> usize {
        self.threads * self.process.len()
    }

    /// How long to wait for peers at start.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The global index of each process's first worker: they receive every list, so that every
    /// process serves every category.
    pub fn leaders(&self) -> Vec<usize> {
        (0..self.process.len()).map(|p| p * self.threads).collect()
    }

    /// This layout seated at `process` (from `--process` or [`PROCESS_ENV`]); with one process
    /// listed, `None` means that one.
    pub fn seat(self, path: &Path, process: Option<usize>) -> Result<Seat, ConfigError> {
        let count = self.process.len();
        let process = match process {
            Some(process) if process < count => process,
            Some(process) => {
                return Err(ConfigError::Invalid {
                    origin: path.display().to_string(),
                    key: "process".into(),
                    message: format!(
                        "--process / {PROCESS_ENV} is {process}, but only processes 0..={} are listed",
                        count - 1
                    ),
                })
            }
            None if count == 1 => 0,
            None => {
                return Err(ConfigError::Invalid {
                    origin: path.display().to_string(),
                    key: "process".into(),
                    message: format!(
                        "{count} processes are listed: say which one this is with --process I or {PROCESS_ENV}=I (or start them all with `topsellers cluster`)"
                    ),
                })
            }
        };
        Ok(Seat {
            layout: self,
            process,
            file: path.into(),
        })
    }
}

impl Seat {
    /// This process's addresses.
    pub fn me(&self) -> &ProcessAddr {
        &self.layout.process[self.process]
    }

    /// Whether this is a real multi-process cluster.
    pub fn is_cluster(&self) -> bool {
        self.layout.process.len() > 1
    }

    /// `path` with this process's index before its extension (`dead-letter.jsonl` →
    /// `dead-letter.p1.jsonl`), so that processes sharing a host (or a mount) write their own
    /// files.
    pub fn per_process(&self, path: &str) -> String {
        let path = Path::new(path);
        let tag = format!("p{}", self.process);
        let name = match (path.file_stem(), path.extension()) {
            (Some(stem), Some(ext)) => {
                format!("{}.{tag}.{}", stem.to_string_lossy(), ext.to_string_lossy())
            }
            _ => format!(
                "{}.{tag}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
        };
        path.with_file_name(name).display().to_string()
    }

    /// The key naming a process's timely address in errors, e.g. `workers.toml: process[1].timely`.
    pub fn timely_key(&self, process: usize) -> String {
        format!("{}: process[{process}].timely", self.file.display())
    }
}

/// A `host:port` with a numeric port.
fn check_address(address: &str) -> Result<(), String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{address:?} is not host:port")),
    }
}

/// `--workers`: a thread count, or the path of a `workers.toml`.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkersArg {
    /// Worker threads in this single process.
    Threads(usize),
    /// A cluster layout file.
    File(PathBuf),
}

impl std::str::FromStr for WorkersArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.parse() {
            Ok(threads) => WorkersArg::Threads(threads),
            Err(_) => WorkersArg::File(text.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (tempfile::NamedTempFile, Result<Layout, ConfigError>) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let loaded = Layout::load(file.path());
        (file, loaded)
    }

    /// The error names the file and `key`.
    fn fails_on(text: &str, key: &str) {
        let (file, loaded) = load(text);
        let message = loaded.expect_err(text).to_string();
        assert!(
            message.contains(key) && message.contains(&file.path().display().to_string()),
            "{text}: {message}"
        );
    }

    const TWO: &str = r#"
        threads = 2
        [[process]]
        timely = "127.0.0.1:2101"
        http = "127.0.0.1:8080"
        [[process]]
        timely = "127.0.0.1:2102"
        http = "127.0.0.1:8081"
    "#;

    #[test]
    fn the_repository_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers.toml");
        let workers = Layout::load(&path).unwrap();
        assert_eq!(workers.threads, 2);
        assert_eq!(workers.process[0].http, "127.0.0.1:8080");
        let seat = workers.seat(&path, None).unwrap();
        assert!(!seat.is_cluster());
    }

    #[test]
    fn a_layout_seats_each_process() {
        let (file, loaded) = load(TWO);
        let workers = loaded.unwrap();
        assert_eq!(workers.peers(), 4);
        assert_eq!(workers.leaders(), vec![0, 2]);
        assert_eq!(workers.connect_timeout(), Duration::from_secs(60));
        let seat = workers.clone().seat(file.path(), Some(1)).unwrap();
        assert_eq!(seat.me().http, "127.0.0.1:8081");
        assert_eq!(
            seat.per_process("out/dead-letter.jsonl"),
            "out/dead-letter.p1.jsonl"
        );
        assert_eq!(seat.per_process("changes"), "changes.p1");
        assert!(seat.is_cluster());
        for process in [None, Some(2)] {
            let message = workers
                .clone()
                .seat(file.path(), process)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("process") && message.contains(PROCESS_ENV),
                "{message}"
            );
        }
    }

    #[test]
    fn errors_name_file_and_key() {
        fails_on("threads = 0\n", "threads");
        fails_on("threads = 2\nthredas = 1\n", "thredas");
        fails_on("threads = 2\n", "process");
        fails_on(&format!("processes = 3\n{TWO}"), "processes");
        fails_on(
            &format!("connect_timeout = \"soon\"\n{TWO}"),
            "connect_timeout",
        );
        fails_on(
            &format!("connect_timeout = \"0ms\"\n{TWO}"),
            "connect_timeout",
        );
        fails_on(
            &format!("connect_timeout = \"100000000d\"\n{TWO}"),
            "connect_timeout",
        );
        fails_on(
            &TWO.replace("127.0.0.1:2102", "127.0.0.1:2101"),
            "process[1].timely",
        );
        fails_on(
            &TWO.replace("127.0.0.1:8081", "127.0.0.1:2101"),
            "process[1].http",
        );
        fails_on(
            &TWO.replace("127.0.0.1:2102", "127.0.0.1"),
            "process[1].timely",
        );
        let (_, loaded) = load(&format!("processes = 2\n{TWO}"));
        loaded.unwrap();
    }
}
