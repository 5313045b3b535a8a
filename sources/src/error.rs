//! Errors that stop a source: unreadable files, bad schemas, bad configuration.

use std::path::{Path, PathBuf};

/// A configuration value that breaks a rule; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad configuration `{field}`: {message}")]
pub struct SettingError {
    /// The field, e.g. `generator.fanout`.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl SettingError {
    /// A new error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        SettingError {
            field,
            message: message.into(),
        }
    }
}

/// An error that stops reading a file or starting a source (as opposed to a bad record, which is
/// counted and skipped). Every variant about a file names the file: its path, or its object URL
/// (`s3://bucket/key`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file (path or object URL).
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required column is missing from a CSV header or a Parquet schema.
    #[error("{path}: required column `{column}` is missing")]
    MissingColumn {
        /// The file (path or object URL).
        path: String,
        /// The column.
        column: &'static str,
    },
    /// A Parquet column has a type this reader cannot take.
    #[error("{path}: column `{column}` has unsupported type {found}")]
    UnsupportedColumnType {
        /// The file (path or object URL).
        path: String,
        /// The column.
        column: &'static str,
        /// The type found.
        found: String,
    },
    /// The Parquet file could not be read (corrupt footer, bad page, …).
    #[error("{path}: parquet error: {message}")]
    Parquet {
        /// The file (path or object URL).
        path: String,
        /// The parquet library's message.
        message: String,
    },
    /// The file's format cannot be told from its extension and none was configured.
    #[error(
        "{path}: unknown file format (use .jsonl/.ndjson/.json, .csv, .parquet/.pq, or set `format`)"
    )]
    UnknownFormat {
        /// The file (path or object URL).
        path: String,
    },
    /// The path does not exist.
    #[error("{path}: no such file, directory or object prefix")]
    NotFound {
        /// The path or object URL.
        path: String,
    },
    /// The object store could not be reached or refused a request (listing, reading).
    #[error("{path}: object store error: {message}")]
    ObjectStore {
        /// The object URL or prefix.
        path: String,
        /// The object store's message.
        message: String,
    },
    /// A CSV quoted field runs on for more lines than any record may span: a stray `"` that
    /// would swallow every row after it. The whole file is refused rather than read wrong.
    #[error(
        "{position}: a quoted field opened in this record is still open {lines} lines later \
         (a record may span at most {max} lines): a stray '\"'? Fix or remove the file"
    )]
    UnterminatedQuote {
        /// `file:line` where the record starts.
        position: String,
        /// Lines the record ran on for.
        lines: u64,
        /// The bound.
        max: u64,
    },
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] SettingError),
}

/// Something an error can name: a local path, an object URL, or its text.
pub trait Place {
    /// The text errors show.
    fn place(&self) -> String;
}

impl Place for Path {
    fn place(&self) -> String {
        self.display().to_string()
    }
}

impl Place for PathBuf {
    fn place(&self) -> String {
        self.display().to_string()
    }
}

impl Place for str {
    fn place(&self) -> String {
        self.to_owned()
    }
}

impl Place for String {
    fn place(&self) -> String {
        self.clone()
    }
}

impl SourceError {
    /// An [`SourceError::Io`] for `path`.
    pub fn io(path: &(impl Place + ?Sized), source: std::io::Error) -> Self {
        SourceError::Io {
            path: path.place(),
            source,
        }
    }

    /// A [`SourceError::Parquet`] for `path`.
    pub fn parquet(path: &(impl Place + ?Sized), error: impl std::fmt::Display) -> Self {
        SourceError::Parquet {
            path: path.place(),
            message: error.to_string(),
        }
    }

    /// A [`SourceError::ObjectStore`] for `path`.
    pub fn object_store(path: &(impl Place + ?Sized), error: impl std::fmt::Display) -> Self {
        SourceError::ObjectStore {
            path: path.place(),
            message: error.to_string(),
        }
    }
}
