//! Reading a TOML config file (`--config`, `workers.toml`) into typed structs: the parser that
//! names the key's path and the line, and the error that always names the file (or flag) and
//! the key. A leaf module, so that the config and the cluster layout can both use it.

use std::path::{Path, PathBuf};

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
    /// The file is not valid TOML for this schema (unknown key, wrong type, bad duration, …).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The key's path and the parser's message (which names the line).
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

/// Parses `text` (the contents of `path`) as `T`; an error names the key's path and the line.
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        path: path.into(),
        message: message.trim_end().replace('\n', " "),
    };
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        if key.is_empty() || key == "." {
            parse_error(inner.to_string())
        } else {
            parse_error(format!("key `{key}`: {inner}"))
        }
    })
}
