//! Kafka client plumbing shared by the sources (purchases, the dead-letter topic) and the sinks
//! (the changelog topic): client properties, librdkafka's log lines, one producer, and reading a
//! topic to its end once.
#![warn(missing_docs)]

mod follow;
mod read;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

pub use follow::{FollowError, Follower};
pub use rdkafka::config::ClientConfig;
pub use rdkafka::error::KafkaError as Error;
pub use read::{read_to_end, ReadError};

/// Client properties: `bootstrap.servers`, then `defaults`, then `properties` (the configured
/// ones, which override both); librdkafka's own logging at warnings and up.
pub fn client_config<'a>(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in properties {
        client.set(key, value);
    }
    client.set_log_level(RDKafkaLogLevel::Warning);
    client
}

/// `client` as a consumer that reads partitions it assigns itself from their beginning: no
/// auto commit or offset store, end-of-partition events, no topic auto-creation, and (unless
/// the properties name one) `group` as `group.id`, never joined and never committed to.
pub(crate) fn reader_config(client: &ClientConfig, group: &str) -> ClientConfig {
    let mut config = client.clone();
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false");
    if config.get("group.id").is_none() {
        config.set("group.id", group);
    }
    config
}

/// librdkafka's own log lines, at debug level: connection failures are retried by the client
/// and reported by the callers in one clear line instead.
pub fn log_client(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!(target: "librdkafka", "{fac}: {message}")
        }
        _ => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
    }
}

/// Whether the `n`-th failure (1-based) is logged: the first ten, then one in a thousand.
fn log_failure(n: u64) -> bool {
    n <= 10 || n % 1000 == 0
}

/// Counts (and sparsely logs) messages that were not delivered.
struct Counting {
    failures: Arc<AtomicU64>,
    what: &'static str,
}

impl ClientContext for Counting {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_client(level, fac, message);
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if log_failure(n) {
                tracing::warn!(%error, failures = n, "a {} could not be delivered", self.what);
            }
        }
    }
}

/// A producer to one topic that never stalls its caller for long: a message that cannot be
/// queued within `queue_full_wait` (the client's queue stays full), or is not delivered, is
/// dropped and counted in [`Producer::failures`] rather than blocking the pipeline. Pending
/// messages are flushed when it is dropped.
///
/// It is idempotent (`enable.idempotence`, unless the properties say otherwise): the client's
/// retries can neither duplicate a message nor reorder the messages of a partition, so the
/// last message of a key on a compacted topic is the last one sent.
pub struct Producer {
    producer: ThreadedProducer<Counting>,
    topic: String,
    what: &'static str,
    failures: Arc<AtomicU64>,
    queue_full_wait: Duration,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.topic)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

/// `client` with `enable.idempotence = true` unless it sets it itself.
fn idempotent(client: &ClientConfig) -> ClientConfig {
    let mut client = client.clone();
    if client.get("enable.idempotence").is_none() {
        client.set("enable.idempotence", "true");
    }
    client
}

/// How often a full queue is tried again.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(5);

/// How long a dropped producer waits for its queued messages.
const FLUSH_ON_DROP: Duration = Duration::from_secs(10);

impl Producer {
    /// A producer for `topic` made from `client` (no broker contact yet). `what` names a
    /// message in logs ("dead letter", "top-k change").
    pub fn new(
        client: &ClientConfig,
        topic: &str,
        what: &'static str,
        queue_full_wait: Duration,
    ) -> Result<Producer, KafkaError> {
        let failures = Arc::new(AtomicU64::new(0));
        let producer = idempotent(client).create_with_context(Counting {
            failures: failures.clone(),
            what,
        })?;
        Ok(Producer {
            producer,
            topic: topic.to_owned(),
            what,
            failures,
            queue_full_wait,
        })
    }

    /// Messages not delivered (queue full too long, or delivery failed).
    pub fn failures(&self) -> Arc<AtomicU64> {
        self.failures.clone()
    }

    /// Queues one message; retries every few ms while the client's queue is full, for at most
    /// `queue_full_wait`.
    pub fn send(&self, key: &[u8], payload: &[u8]) {
        let record = || BaseRecord::to(&self.topic).key(key).payload(payload);
        let mut retries = ConstantBuilder::default()
            .with_delay(QUEUE_FULL_RETRY)
            .with_max_times(
                (self.queue_full_wait.as_millis() / QUEUE_FULL_RETRY.as_millis()).max(1) as usize,
            )
            .build();
        loop {
            let error = match self.producer.send(record()) {
                Ok(()) => return,
                Err((error, _)) => error,
            };
            let full = matches!(
                error,
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
            );
            match retries.next().filter(|_| full) {
                Some(delay) => std::thread::sleep(delay),
                None => {
                    let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if log_failure(n) {
                        tracing::warn!(%error, topic = %self.topic, failures = n, "cannot queue a {}", self.what);
                    }
                    return;
                }
            }
        }
    }

    /// Waits (at most `timeout`) until every queued message is delivered.
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, topic = %self.topic, "messages still queued ({}s)", self.what);
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.flush(FLUSH_ON_DROP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_override_defaults() {
        let properties = [
            ("fetch.wait.max.ms".to_owned(), "10".to_owned()),
            ("enable.partition.eof".to_owned(), "false".to_owned()),
        ];
        let client = client_config(
            "b:1",
            &[("enable.partition.eof", "true")],
            properties.iter().map(|(k, v)| (k, v)),
        );
        assert_eq!(client.get("bootstrap.servers"), Some("b:1"));
        assert_eq!(client.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(client.get("enable.partition.eof"), Some("false"));
    }

    #[test]
    fn producers_are_idempotent_unless_configured_otherwise() {
        let client = client_config("b:1", &[], []);
        assert_eq!(idempotent(&client).get("enable.idempotence"), Some("true"));
        let off = [("enable.idempotence".to_owned(), "false".to_owned())];
        let client = client_config("b:1", &[], off.iter().map(|(k, v)| (k, v)));
        assert_eq!(idempotent(&client).get("enable.idempotence"), Some("false"));
    }

    /// Nothing listens on the broker address: the client's queue (one message) fills, and what
    /// cannot be queued within the wait is dropped and counted, without blocking for long.
    #[test]
    fn a_full_queue_drops_and_counts_after_the_wait() {
        let client = client_config(
            "127.0.0.1:1",
            &[
                ("queue.buffering.max.messages", "1"),
                ("message.timeout.ms", "60000"),
            ],
            [],
        );
        let producer = Producer::new(&client, "t", "test message", Duration::from_millis(50))
            .expect("a producer without contacting the broker");
        let started = std::time::Instant::now();
        for _ in 0..4 {
            producer.send(b"k", b"v");
        }
        assert_eq!(producer.failures().load(Ordering::Relaxed), 3);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(log_failure(1) && log_failure(10) && !log_failure(11) && log_failure(2000));
        // Do not wait for the undeliverable message on drop.
        std::mem::forget(producer);
    }
}
