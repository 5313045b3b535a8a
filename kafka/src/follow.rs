//! Following a whole topic from its beginning, on every partition, without a consumer group: a
//! latest-state-per-key topic (compacted) that every process reads in full, e.g. item
//! availability.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

use crate::read::Quiet;

/// A consumer assigned every partition of a topic at its beginning.
pub struct Follower {
    consumer: BaseConsumer<Quiet>,
    topic: String,
    /// Partitions not yet read to the end they had when first reached.
    behind: HashSet<i32>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("topic", &self.topic)
            .field("behind", &self.behind)
            .finish_non_exhaustive()
    }
}

/// The topic could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The client failed (metadata, assignment).
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    NoTopic(String),
}

impl Follower {
    /// Assigns every partition of `topic` (counted now: new partitions need a restart) at its
    /// beginning; no group is joined and nothing is committed. Fails when the brokers cannot
    /// be reached within `timeout` or the topic does not exist.
    pub fn open(
        client: &ClientConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<Follower, FollowError> {
        let config = crate::reader_config(client, "topsellers-topic-follower");
        let consumer: BaseConsumer<Quiet> = config.create_with_context(Quiet)?;
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| {
                t.error().map(RDKafkaErrorCode::from)
                    != Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                    && !t.partitions().is_empty()
            })
            .ok_or_else(|| FollowError::NoTopic(topic.to_owned()))?;
        if let Some(code) = found.error() {
            return Err(KafkaError::MetadataFetch(code.into()).into());
        }
        let behind: HashSet<i32> = found.partitions().iter().map(|p| p.id()).collect();
        let mut assignment = TopicPartitionList::new();
        for &partition in &behind {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Follower {
            consumer,
            topic: topic.to_owned(),
            behind,
        })
    }

    /// Whether every partition has been read to the end it had when first reached.
    pub fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }

    /// Polls for at most `wait`, handing `visit` each message as (partition, offset, payload)
    /// until none is ready; returns how many were visited. Transient client errors are
    /// retried by the client (the last one is returned for logging).
    pub fn poll(
        &mut self,
        wait: Duration,
        mut visit: impl FnMut(i32, i64, &[u8]),
    ) -> (usize, Option<KafkaError>) {
        let (mut visited, mut last) = (0, None);
        let mut timeout = wait;
        while let Some(result) = self.consumer.poll(timeout) {
            timeout = Duration::ZERO;
            match result {
                Ok(message) => {
                    visit(
                        message.partition(),
                        message.offset(),
                        message.payload().unwrap_or_default(),
                    );
                    visited += 1;
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.behind.remove(&partition);
                }
                Err(error) => last = Some(error),
            }
            if visited >= 65_536 {
                break;
            }
        }
        (visited, last)
    }
}
