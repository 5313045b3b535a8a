//! The dead-letter topic: bad messages as the dead-letter file's JSON lines, keyed by position.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use topsellers_kafka::Producer;

use super::config::KafkaConfig;
use super::KafkaSourceError;
use crate::bad::BadRecord;
use crate::dead_letter::json_line;

/// How long a full producer queue is waited for before a dead letter is dropped (counted).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(5);

/// Writes bad messages to a topic. Value: the same JSON object as a dead-letter file line,
/// `{"position":"topic/partition/offset","error":…,"record":…}`; key: the position.
#[derive(Debug)]
pub struct DeadLetterTopic {
    producer: Producer,
}

impl DeadLetterTopic {
    /// A producer for `config.dead_letter_topic` on the source's brokers (with its
    /// `properties`), or `None` when no dead-letter topic is configured.
    pub fn open(config: &KafkaConfig) -> Result<Option<DeadLetterTopic>, KafkaSourceError> {
        let Some(topic) = &config.dead_letter_topic else {
            return Ok(None);
        };
        let client = config.client(&[("linger.ms", "20")]);
        let producer = Producer::new(&client, topic, "dead letter", QUEUE_FULL_WAIT)
            .map_err(KafkaSourceError::Client)?;
        Ok(Some(DeadLetterTopic { producer }))
    }

    /// Queues `bad` for the topic (never blocks for long; a dead letter that cannot be queued
    /// or delivered is counted and logged).
    pub fn send(&self, bad: &BadRecord) {
        self.producer.send(bad.position.as_bytes(), &json_line(bad));
    }

    /// Dead letters that could not be written to the topic.
    pub fn failures(&self) -> Arc<AtomicU64> {
        self.producer.failures()
    }

    /// Waits (at most `timeout`) until every queued dead letter is delivered.
    pub fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
    }
}
