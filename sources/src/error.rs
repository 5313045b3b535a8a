//! Errors that stop a source: unreadable files, bad schemas, bad configuration.

use std::path::{Path, PathBuf};

/// A configuration value that breaks a rule; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad configuration `{field}`: {message}")]
pub struct ConfigError {
    /// The field, e.g. `generator.fanout`.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

/// An error that stops reading a file or starting a source (as opposed to a bad record, which is
/// counted and skipped). Every variant about a file names the file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required column is missing from a CSV header or a Parquet schema.
    #[error("{}: required column `{column}` is missing", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
    },
    /// A Parquet column has a type this reader cannot take.
    #[error("{}: column `{column}` has unsupported type {found}", path.display())]
    UnsupportedColumnType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// The type found.
        found: String,
    },
    /// The Parquet file could not be read (corrupt footer, bad page, …).
    #[error("{}: parquet error: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The parquet library's message.
        message: String,
    },
    /// The file's format cannot be told from its extension and none was configured.
    #[error(
        "{}: unknown file format (use .jsonl/.ndjson/.json, .csv, .parquet/.pq, or set `format`)",
        path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The path does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl SourceError {
    /// An [`SourceError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        SourceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`SourceError::Parquet`] for `path`.
    pub fn parquet(path: &Path, error: impl std::fmt::Display) -> Self {
        SourceError::Parquet {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }
}
