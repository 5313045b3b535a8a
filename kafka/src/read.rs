//! Reading a topic once, from its beginning to its end: e.g. a compacted changelog topic's keys
//! when a process starts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};

use crate::log_client;

/// The topic could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client failed (metadata, offsets, assignment).
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    /// Not every partition was read to its end in time.
    #[error("{read} messages read, partitions {left:?} not read to their end within {timeout:?}{}", last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Timeout {
        /// Messages read (and visited) before giving up.
        read: u64,
        /// Partitions not read to their end.
        left: Vec<i32>,
        /// How long it tried.
        timeout: Duration,
        /// The last error the client reported while reading, if any.
        last: Option<Box<KafkaError>>,
    },
}

/// librdkafka's log lines go through [`log_client`].
pub(crate) struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_client(level, fac, message);
    }
}

impl ConsumerContext for Quiet {}

/// Time left until `deadline` (at least a millisecond, so that a call is not made with zero).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Reads every message of `topic` up to the end of each partition as the broker reports it
/// when the reader gets there (the partition-EOF of the client: end offsets are not asked
/// for), partition by partition in offset order, handing `visit` each (key, value). A topic
/// that does not exist holds nothing. `client` gives the brokers and client properties (no
/// group is joined, nothing is committed). Gives up after `timeout`. Returns how many messages
/// were read.
pub fn read_to_end(
    client: &ClientConfig,
    topic: &str,
    timeout: Duration,
    mut visit: impl FnMut(&[u8], &[u8]),
) -> Result<u64, ReadError> {
    let deadline = Instant::now() + timeout;
    let config = crate::reader_config(client, "topsellers-topic-reader");
    let consumer: BaseConsumer<Quiet> = config.create_with_context(Quiet)?;
    let metadata = consumer.fetch_metadata(Some(topic), left(deadline))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(0);
    };
    match found.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(0),
        Some(code) => return Err(KafkaError::MetadataFetch(code).into()),
    }
    let mut reading: HashSet<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if reading.is_empty() {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    for &partition in &reading {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut read = 0;
    let mut last = None;
    while !reading.is_empty() {
        if Instant::now() >= deadline {
            let mut left: Vec<i32> = reading.into_iter().collect();
            left.sort_unstable();
            return Err(ReadError::Timeout {
                read,
                left,
                timeout,
                last,
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                visit(
                    message.key().unwrap_or_default(),
                    message.payload().unwrap_or_default(),
                );
                read += 1;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                reading.remove(&partition);
            }
            // Transient (a connection dropped): the client retries; given up at the deadline.
            Some(Err(error)) => last = Some(Box::new(error)),
            None => {}
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens: the metadata request fails, as an error.
    #[test]
    fn an_unreachable_broker_is_an_error() {
        let client = crate::client_config("127.0.0.1:1", &[], []);
        let result = read_to_end(&client, "t", Duration::from_millis(500), |_, _| {});
        assert!(result.is_err(), "{result:?}");
    }
}
