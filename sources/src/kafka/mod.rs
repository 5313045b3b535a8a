//! The Kafka source: purchases from a topic, partitions owned one per worker, watermarks per partition.
//!
//! - [`KafkaConfig`]: `[[sources]] type = "kafka"` (brokers, topic, group, start position,
//!   payload format, idle timeout, commits, dead-letter topic, any librdkafka property);
//! - [`PartitionReader`]: one worker's consumer, manually assigned the partitions `p` with
//!   `p % workers == index`;
//! - [`WatermarkTracker`]: per-partition watermarks with an idle timeout (pure, clock injected);
//! - [`PendingOffsets`]: offsets held until their purchases are in a published snapshot;
//! - [`PayloadParser`]: a message's JSON object or CSV line, through the file readers' rules;
//! - [`DeadLetterTopic`]: bad messages to a topic;
//! - [`KafkaShared`]: progress and counters shared by the readers of a process.

mod committer;
mod config;
mod consumer;
mod dead_letter_topic;
mod offsets;
mod payload;
mod shared;
mod watermark;

pub use config::{Fallback, KafkaConfig, PayloadFormat, StartFrom};
pub use consumer::{
    handover_gap, input_time, owned_partitions, PartitionReader, ReaderSpec, Round, StartAt,
};
pub use dead_letter_topic::DeadLetterTopic;
pub use offsets::PendingOffsets;
pub use payload::{message_position, PayloadParser};
pub use shared::{KafkaShared, PartitionGauges};
pub use watermark::{Watermark, WatermarkTracker};

/// An error that stops the Kafka source (as opposed to a bad message, which is counted and
/// skipped, or a lost connection, which the client retries).
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// The client could not be created or configured (e.g. an unknown property): retrying
    /// does not help.
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The commit thread could not be started.
    #[error("cannot start the Kafka commit thread: {0}")]
    Thread(std::io::Error),
}
