//! The outputs of topsellers: serving table, HTTP API, top-k changelog (file or Kafka topic), publisher, metrics.
#![warn(missing_docs)]

mod api_error;
mod assets;
pub mod availability;
mod body;
mod categories;
pub mod changelog;
mod conditional;
mod cors;
mod duty;
mod encoding;
mod etag;
pub mod experiments;
pub mod fd_limit;
pub mod http;
mod json;
pub mod kafka_changelog;
pub mod list_json;
mod live_stream;
mod marked;
pub mod metrics;
pub mod movers;
mod openapi;
mod process_metrics;
pub mod publisher;
mod readiness;
pub mod rejections;
mod rendered;
mod request;
mod server;
pub mod table;
#[cfg(test)]
mod test_util;
mod timed_io;

pub use api_error::{ApiError, RETRY_AFTER_SECS};
pub use availability::Availability;
pub use body::Body;
pub use categories::CategoriesDoc;
pub use changelog::{Changelog, ChangelogConfig, ChangelogError};
pub use cors::{Cors, CorsError};
pub use encoding::{negotiate, Coding, Encoded};
pub use etag::ETag;
pub use experiments::{ExperimentConfig, ExperimentError, Experiments};
pub use http::{handle, AppState, HttpConfig};
pub use kafka_changelog::KafkaChangelog;
pub use metrics::{MetricKind, Metrics, Route, SamplesFn, ValueFn};
pub use movers::MoversConfig;
pub use openapi::OPENAPI_JSON;
pub use publisher::{run_publisher, PublishSummary};
pub use readiness::Readiness;
pub use rejections::{Reason, Rejections};
pub use rendered::RenderedList;
pub use server::{serve, serve_with_drain, DEFAULT_DRAIN};
pub use table::{ServingTable, TableConfig};
