//! The driver's errors: what stops a run, naming what it is about (the worker and the unit or
//! source); a config that cannot be used ([`ConfigError`], from `config_file`) names the file and key.

use std::path::PathBuf;

pub use crate::config_file::ConfigError;
use topsellers_sources::kafka::KafkaSourceError;
use topsellers_sources::{SettingError, SourceError};

/// What stops a run: the first failure of a worker or of the threads around them.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A unit of the history (a file, or a Parquet row group) could not be read.
    #[error("worker {worker}: cannot read {unit}: {source}")]
    Read {
        /// The worker that read it.
        worker: usize,
        /// The file (path or object URL).
        unit: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// The Kafka source could not be used (a client that cannot be configured).
    #[error("worker {worker}: kafka source: {source}")]
    Kafka {
        /// The worker whose reader failed.
        worker: usize,
        /// Why.
        #[source]
        source: KafkaSourceError,
    },
    /// The generator could not start.
    #[error("worker {worker}: generator: {source}")]
    Generator {
        /// The worker.
        worker: usize,
        /// Why.
        #[source]
        source: SettingError,
    },
    /// A worker panicked: a bug.
    #[error("worker {worker} failed (a bug): {message}")]
    Panic {
        /// The worker.
        worker: usize,
        /// The panic's message.
        message: String,
    },
    /// Another process of the cluster is gone.
    #[error("{0}")]
    PeerLost(String),
}

/// Why `run` or `batch` could not start, or ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The settings cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The availability input (`[availability] paths`) cannot be read.
    #[error("availability input: {0}")]
    Availability(#[source] SourceError),
    /// The availability topic (`[availability] topic`) cannot be followed.
    #[error("availability topic: {0}")]
    AvailabilityTopic(String),
    /// An input path could not be listed.
    #[error("cannot list input {paths:?}: {source}")]
    ListInput {
        /// The configured paths.
        paths: Vec<String>,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// A file could not be read while planning (its latest event time).
    #[error("cannot read {unit}: {source}")]
    ReadInput {
        /// The file (path or object URL).
        unit: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// A time the run is cut at lies before 1970 (the dataflow's time starts there).
    #[error("{what} {ms} is before 1970")]
    BeforeEpoch {
        /// What time: "the input's latest event time", "as-of time".
        what: &'static str,
        /// The time, epoch ms.
        ms: i64,
    },
    /// The generator's settings cannot make a catalog.
    #[error("generator config: {0}")]
    Generator(#[source] SettingError),
    /// The Kafka source cannot be set up.
    #[error("kafka source: {0}")]
    Kafka(#[source] KafkaSourceError),
    /// The dead-letter file cannot be opened.
    #[error("cannot open the dead-letter file {path:?}: {source}")]
    DeadLetter {
        /// The configured path.
        path: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// Bad records could not all be written to the dead-letter file (e.g. a full disk).
    #[error("the dead-letter output is incomplete: {0}")]
    DeadLetterIncomplete(#[source] SourceError),
    /// The changelog cannot be opened.
    #[error("cannot open the changelog: {0}")]
    Changelog(#[source] topsellers_sinks::ChangelogError),
    /// The HTTP address cannot be listened on.
    #[error("cannot listen on {address} (http.listen / --http): {source}")]
    Listen {
        /// The configured address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread or runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What: "the HTTP runtime", "the publisher thread", …
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Timely could not start the workers.
    #[error("cannot start the workers: {0}")]
    Workers(String),
    /// The processes of the cluster could not connect.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ConnectError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The service did not turn ready in time, or failed first.
    #[error("{0}")]
    NotReady(String),
    /// A thread around the workers panicked (a bug).
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    /// The batch output could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
