//! The top-k changelog as a Kafka topic: one message per changed list, keyed `profile/category`.
//!
//! The value is the list's `/v1/top` document, rendered by the same code as the HTTP answer
//! ([`RenderedList`]): `{"category":…,"profile":…,"as_of":…,"items":[{"rank":1,"item_id":…,"score":…},…]}`
//! with scores as of the snapshot's time. A list that empties is sent with `"items":[]` (not a
//! tombstone). On a compacted topic the latest message of each key is the current list.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use topsellers_kafka::Producer;
use topsellers_model::{Profile, TopKList};

use crate::rendered::RenderedList;

/// How long a full producer queue is waited for before a change is dropped (counted).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

/// Sends changed lists to a topic.
#[derive(Debug)]
pub struct KafkaChangelog {
    producer: Producer,
}

/// The changelog topic could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("changelog topic: {0}")]
pub struct KafkaChangelogError(#[from] topsellers_kafka::Error);

impl KafkaChangelog {
    /// A producer for `topic` on `brokers`; `properties` (librdkafka producer properties) are
    /// applied last.
    pub fn open<'a>(
        brokers: &str,
        topic: &str,
        properties: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<KafkaChangelog, KafkaChangelogError> {
        let client = topsellers_kafka::client_config(brokers, &[("linger.ms", "20")], properties);
        let producer = Producer::new(&client, topic, "top-k change", QUEUE_FULL_WAIT)?;
        Ok(KafkaChangelog { producer })
    }

    /// Changes that could not be written (queue full, or delivery failed).
    pub fn failures(&self) -> Arc<AtomicU64> {
        self.producer.failures()
    }

    /// The message key of a list: `profile/category` (`7d/books/fiction`; the root: `7d/`).
    pub fn key(profile: &Profile, category: &str) -> String {
        format!("{}/{category}", profile.name)
    }

    /// Queues `list` (its full `/v1/top` document as of `time_ms`).
    pub fn send(&self, list: &TopKList, profile: &Profile, time_ms: i64) {
        let rendered = RenderedList::render(list, profile, time_ms, usize::MAX);
        let key = Self::key(profile, &list.category);
        self.producer.send(key.as_bytes(), rendered.full());
    }

    /// Waits (at most `timeout`) until every queued change is delivered.
    pub fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
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
