//! The dead-letter topic: bad messages as the dead-letter file's JSON lines, keyed by position.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::config::KafkaConfig;
use super::shared::KafkaShared;
use super::KafkaSourceError;
use crate::bad::BadRecord;
use crate::dead_letter::json_line;

/// How long a full producer queue is waited for before a dead letter is dropped (counted).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(5);

/// Counts failed deliveries.
struct Context {
    shared: Arc<KafkaShared>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::consumer::log_client(level, fac, message);
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.shared
                .dead_letter_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "a dead letter could not be written to the dead-letter topic");
        }
    }
}

/// Writes bad messages to a topic. Value: the same JSON object as a dead-letter file line,
/// `{"position":"topic/partition/offset","error":…,"record":…}`; key: the position.
pub struct DeadLetterTopic {
    producer: ThreadedProducer<Context>,
    topic: String,
    shared: Arc<KafkaShared>,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterTopic")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterTopic {
    /// A producer for `config.dead_letter_topic` on the source's brokers (with its
    /// `properties`), or `None` when no dead-letter topic is configured.
    pub fn open(
        config: &KafkaConfig,
        shared: Arc<KafkaShared>,
    ) -> Result<Option<DeadLetterTopic>, KafkaSourceError> {
        let Some(topic) = config.dead_letter_topic.clone() else {
            return Ok(None);
        };
        let client = super::consumer::client_config(config, &[("linger.ms", "20")]);
        let producer = client
            .create_with_context(Context {
                shared: shared.clone(),
            })
            .map_err(KafkaSourceError::Client)?;
        Ok(Some(DeadLetterTopic {
            producer,
            topic,
            shared,
        }))
    }

    /// Queues `bad` for the topic (never blocks for long; a dead letter that cannot be queued
    /// is counted and logged).
    pub fn send(&self, bad: &BadRecord) {
        let value = json_line(bad);
        let mut record = BaseRecord::to(&self.topic)
            .key(bad.position.as_bytes())
            .payload(&value);
        let started = std::time::Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < QUEUE_FULL_WAIT =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    self.shared
                        .dead_letter_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, position = %bad.position, "cannot queue a dead letter for the dead-letter topic");
                    return;
                }
            }
        }
    }

    /// Waits (at most `timeout`) until every queued dead letter is delivered.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, topic = %self.topic, "dead letters still queued for the dead-letter topic");
        }
    }
}

impl Drop for DeadLetterTopic {
    fn drop(&mut self) {
        self.flush(Duration::from_secs(5));
    }
}
