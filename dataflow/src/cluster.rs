//! `workers.toml`: threads per process and each process's addresses.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;

/// The cluster layout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// Worker threads in every process.
    pub threads: usize,
    /// The processes, in index order.
    #[serde(default, rename = "process")]
    pub processes: Vec<ProcessAddr>,
}

/// One process of the cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessAddr {
    /// `host:port` where this process exchanges dataflow data.
    pub timely: String,
    /// `host:port` where this process serves HTTP.
    pub http: String,
}

impl Workers {
    /// Reads and checks a `workers.toml`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Workers, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let workers: Workers = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: path.display().to_string(),
            key: key.into(),
            message,
        };
        if workers.threads == 0 || workers.threads > 1024 {
            return Err(invalid(
                "threads",
                format!("{} is out of range 1..=1024", workers.threads),
            ));
        }
        if workers.processes.len() > 1 {
            return Err(invalid(
                "process",
                format!(
                    "{} processes listed: this build runs one process; multi-process clusters are not supported yet",
                    workers.processes.len()
                ),
            ));
        }
        Ok(workers)
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

    #[test]
    fn the_repository_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers.toml");
        let workers = Workers::load(&path).unwrap();
        assert_eq!(workers.threads, 2);
        assert_eq!(workers.processes[0].http, "127.0.0.1:8080");
    }

    #[test]
    fn errors_name_file_and_key() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "threads = 0\n").unwrap();
        let message = Workers::load(file.path()).unwrap_err().to_string();
        assert!(
            message.contains("threads") && message.contains(&file.path().display().to_string()),
            "{message}"
        );
        std::fs::write(file.path(), "threads = 2\nthredas = 1\n").unwrap();
        let message = Workers::load(file.path()).unwrap_err().to_string();
        assert!(message.contains("thredas"), "{message}");
    }
}
