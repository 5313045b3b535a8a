//! The top-k changelog as a Kafka topic: one message per changed list, keyed `profile/category`.
//!
//! The value is the list's `/v1/top` document, rendered by the same code as the HTTP answer
//! ([`RenderedList`]): `{"category":…,"profile":…,"as_of":…,"items":[{"rank":1,"item_id":…,"score":…},…]}`
//! with scores as of the snapshot's time. A list that empties is sent with `"items":[]` (not a
//! tombstone). On a compacted topic the latest message of each key is the current list.
//!
//! When it opens, the topic is read to its end once (on a thread of its own, while the service
//! starts), for the keys whose latest message lists items: lists an earlier run sent that may
//! be empty now. The [`Changelog`](crate::Changelog) sends `"items":[]` for those its first
//! snapshot does not fill.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::IgnoredAny;
use topsellers_kafka::Producer;
use topsellers_model::{Profile, TopKList};

use crate::rendered::RenderedList;

/// How long a full producer queue is waited for before a change is dropped (counted).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

/// How long reading the topic's keys at the start may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A key of the topic: (profile name, category).
pub type TopicKey = (String, String);

/// Sends changed lists to a topic.
#[derive(Debug)]
pub struct KafkaChangelog {
    producer: Producer,
    /// Reads the keys that list items on the topic (see the module docs); taken once.
    listed: Option<JoinHandle<HashSet<TopicKey>>>,
}

/// The part of a list document that says whether it lists items.
#[derive(serde::Deserialize)]
struct Items {
    items: Vec<IgnoredAny>,
}

/// The keys of `topic` whose latest message lists items (or is not a list document), read to
/// the topic's end; what could be read when reading fails (logged and counted in `failures`).
fn listed_keys(
    client: &topsellers_kafka::ClientConfig,
    topic: &str,
    failures: &AtomicU64,
) -> HashSet<TopicKey> {
    let mut listed = HashSet::new();
    let result = topsellers_kafka::read_to_end(client, topic, READ_TIMEOUT, |key, value| {
        let Some((profile, category)) = std::str::from_utf8(key)
            .ok()
            .and_then(|key| key.split_once('/'))
        else {
            return;
        };
        let key = (profile.to_owned(), category.to_owned());
        match serde_json::from_slice::<Items>(value) {
            Ok(doc) if doc.items.is_empty() => listed.remove(&key),
            _ => listed.insert(key),
        };
    });
    match result {
        Ok(read) => tracing::info!(
            "changelog topic {topic}: {read} messages read, {} lists from earlier runs",
            listed.len()
        ),
        Err(error) => {
            failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                %error,
                "changelog topic {topic}: cannot read the lists earlier runs left on it; \
                 those that are empty now and were not read stay on it"
            );
        }
    }
    listed
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
        let listed = {
            let (topic, failures) = (topic.to_owned(), producer.failures());
            std::thread::Builder::new()
                .name("changelog-keys".into())
                .spawn(move || listed_keys(&client, &topic, &failures))
                .map_err(|e| {
                    KafkaChangelogError(topsellers_kafka::Error::ClientCreation(e.to_string()))
                })?
        };
        Ok(KafkaChangelog {
            producer,
            listed: Some(listed),
        })
    }

    /// The keys that listed items on the topic before this process sent anything (lists of
    /// earlier runs), once: waits for the read started by [`KafkaChangelog::open`] (which
    /// gives up after 30 s); later calls return nothing.
    pub fn take_listed(&mut self) -> HashSet<TopicKey> {
        self.listed
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
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

    /// Queues an empty list for `category` under a profile called `profile` (one this process
    /// may not have: a list of an earlier run's configuration).
    pub fn send_empty(&self, profile: &str, category: &str, time_ms: i64) {
        let profile = Profile {
            name: profile.to_owned(),
            half_life_ms: 1,
        };
        let list = TopKList {
            profile: 0,
            category: category.into(),
            items: Vec::new(),
        };
        self.send(&list, &profile, time_ms);
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
