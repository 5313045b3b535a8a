//! The top-k changelog as a Kafka topic: one message per changed list, keyed `profile/category`.
//!
//! The value is the list's `/v1/top` document, rendered by the same code as the HTTP answer
//! ([`RenderedList`]): `{"category":…,"profile":…,"as_of":…,"items":[{"rank":1,"item_id":…,"score":…},…]}`
//! with scores as of the snapshot's time. A list that empties is sent with `"items":[]` (not a
//! tombstone). On a compacted topic the latest message of each key is the current list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use topsellers_model::{Profile, TopKList};

use crate::rendered::RenderedList;

/// How long a full producer queue is waited for before a change is dropped (counted).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

/// Counts failed deliveries; keeps librdkafka's log lines at debug level.
struct Context {
    failures: Arc<AtomicU64>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", "{fac}: {message}")
            }
            _ => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= 10 || n % 1000 == 0 {
                tracing::warn!(%error, failures = n, "a top-k change could not be written to the changelog topic");
            }
        }
    }
}

/// Sends changed lists to a topic.
pub struct KafkaChangelog {
    producer: ThreadedProducer<Context>,
    topic: String,
    failures: Arc<AtomicU64>,
}

impl std::fmt::Debug for KafkaChangelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaChangelog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The changelog topic could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("changelog topic: {0}")]
pub struct KafkaChangelogError(#[from] KafkaError);

impl KafkaChangelog {
    /// A producer for `topic` on `brokers`; `properties` (librdkafka producer properties) are
    /// applied last.
    pub fn open<'a>(
        brokers: &str,
        topic: &str,
        properties: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<KafkaChangelog, KafkaChangelogError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "20");
        for (key, value) in properties {
            client.set(key, value);
        }
        client.set_log_level(RDKafkaLogLevel::Warning);
        let failures = Arc::new(AtomicU64::new(0));
        let producer = client.create_with_context(Context {
            failures: failures.clone(),
        })?;
        Ok(KafkaChangelog {
            producer,
            topic: topic.to_owned(),
            failures,
        })
    }

    /// Changes that could not be written (queue full, or delivery failed).
    pub fn failures(&self) -> Arc<AtomicU64> {
        self.failures.clone()
    }

    /// The message key of a list: `profile/category` (`7d/books/fiction`; the root: `7d/`).
    pub fn key(profile: &Profile, category: &str) -> String {
        format!("{}/{category}", profile.name)
    }

    /// Queues `list` (its full `/v1/top` document as of `time_ms`).
    pub fn send(&self, list: &TopKList, profile: &Profile, time_ms: i64) {
        let rendered = RenderedList::render(list, profile, time_ms, usize::MAX);
        let key = Self::key(profile, &list.category);
        let value = rendered.full();
        let mut record = BaseRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(value.as_ref());
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < QUEUE_FULL_WAIT =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => {
                    let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if n <= 10 || n % 1000 == 0 {
                        tracing::warn!(%error, key, failures = n, "cannot queue a top-k change for the changelog topic");
                    }
                    return;
                }
            }
        }
    }

    /// Waits (at most `timeout`) until every queued change is delivered.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, topic = %self.topic, "top-k changes still queued for the changelog topic");
        }
    }
}

impl Drop for KafkaChangelog {
    fn drop(&mut self) {
        self.flush(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_profile_and_category() {
        let profile = Profile {
            name: "7d".into(),
            half_life_ms: 7 * 86_400_000,
        };
        assert_eq!(
            KafkaChangelog::key(&profile, "books/sci fi"),
            "7d/books/sci fi"
        );
        assert_eq!(KafkaChangelog::key(&profile, ""), "7d/");
    }

    #[test]
    fn a_topic_without_brokers_is_an_error() {
        use crate::changelog::{Changelog, ChangelogConfig, ChangelogError};
        let config = ChangelogConfig {
            topic: Some("changes".into()),
            ..ChangelogConfig::default()
        };
        assert!(matches!(
            Changelog::open(&config),
            Err(ChangelogError::NoBrokers)
        ));
        // A producer is created without contacting the brokers.
        let changelog = Changelog::open_with_brokers(&config, Some("127.0.0.1:1"))
            .unwrap()
            .unwrap();
        assert!(changelog.topic_failures().is_some());
    }
}
