//! `type = "kafka"`: which brokers and topic, where to start, how to watermark, what to commit.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SettingError;

/// `[[sources]] type = "kafka"`: live purchases from a Kafka topic, one purchase per message.
///
/// Each worker reads the partitions `p` with `p % workers == index` (workers counted over all
/// processes) through its own consumer with a manual assignment: no consumer-group rebalances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]` (`bootstrap.servers`). (`--kafka`)
    pub brokers: String,
    /// The topic purchases arrive on. (`--topic`)
    pub topic: String,
    /// Consumer group whose committed offsets are the start position and are committed to.
    /// Default: `"topsellers"`. (`--group`)
    #[serde(default = "default_group")]
    pub group: String,
    /// Where each partition starts: `"committed"` (the group's committed offset, else
    /// `fallback`), `"earliest"` or `"latest"` (committed offsets ignored). Default: `"committed"`.
    #[serde(default)]
    pub start: StartFrom,
    /// Where a partition without a committed offset starts under `start = "committed"`:
    /// `"earliest"` or `"latest"`. Default: `"earliest"`.
    #[serde(default = "default_fallback")]
    pub fallback: Fallback,
    /// Payload format: `"auto"` (a message starting with `{` is JSON, anything else a CSV line),
    /// `"json"` or `"csv"` (`item_id,category,ts[,quantity[,order_id]]`, no header).
    /// Default: `"auto"`.
    #[serde(default)]
    pub format: PayloadFormat,
    /// A partition with no new purchase for this long stops holding the watermark back; when
    /// all are idle the watermark moves to the largest event time seen. Default: `"2s"`.
    #[serde(default = "default_idle_timeout", with = "idle_timeout_text")]
    pub idle_timeout: Duration,
    /// Commit offsets (of purchases already in a published snapshot) to the group. Default: true.
    #[serde(default = "default_commit")]
    pub commit: bool,
    /// How often offsets are committed. Default: `"1s"`.
    #[serde(default = "default_commit_interval", with = "commit_interval_text")]
    pub commit_interval: Duration,
    /// Topic bad messages are also written to (besides the dead-letter file); unset: none.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: Option<String>,
    /// The hand-over time T0 (RFC 3339 or epoch ms) when a backfill (`--input`, `files`
    /// sources) comes first: the history owns purchases with `ts < T0`, this topic those with
    /// `ts >= T0`; older messages are skipped (counted), whatever offset a partition starts
    /// from. Unset: the largest event time of the history (no backfill: no cut). (`--handover`)
    /// Kept as epoch ms.
    #[serde(default, with = "handover_text")]
    pub handover: Option<i64>,
    /// Any librdkafka client property (`"fetch.wait.max.ms" = "10"`, `"security.protocol"`,
    /// …), applied last: they override what the keys above set.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Where a partition starts reading.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The group's committed offset, else [`KafkaConfig::fallback`].
    #[default]
    Committed,
    /// The oldest message the broker keeps.
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

/// Where a partition without a committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// The oldest message the broker keeps.
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

impl Fallback {
    /// The `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Earliest => "earliest",
            Fallback::Latest => "latest",
        }
    }
}

/// How a message's payload is read.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// JSON if the payload starts with `{` (after whitespace), else a CSV line.
    #[default]
    Auto,
    /// One JSON object (the data contract's fields).
    Json,
    /// One CSV line: `item_id,category,ts[,quantity[,order_id]]`.
    Csv,
}

topsellers_model::duration_key!(idle_timeout_text, "kafka.idle_timeout");
topsellers_model::duration_key!(commit_interval_text, "kafka.commit_interval");
topsellers_model::time_key!(handover_text, "kafka.handover");

fn default_group() -> String {
    "topsellers".into()
}
fn default_fallback() -> Fallback {
    Fallback::Earliest
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_commit() -> bool {
    true
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_dead_letter_topic() -> Option<String> {
    None
}

impl KafkaConfig {
    /// The client properties for this source: `bootstrap.servers`, then `defaults`, then the
    /// configured `properties` (which override both).
    pub fn client(&self, defaults: &[(&str, &str)]) -> rdkafka::config::ClientConfig {
        topsellers_kafka::client_config(&self.brokers, defaults, &self.properties)
    }

    /// A config for `brokers` and `topic` with every other key at its default.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            group: default_group(),
            start: StartFrom::default(),
            fallback: default_fallback(),
            format: PayloadFormat::default(),
            idle_timeout: default_idle_timeout(),
            commit: default_commit(),
            commit_interval: default_commit_interval(),
            dead_letter_topic: default_dead_letter_topic(),
            handover: None,
            properties: BTreeMap::new(),
        }
    }

    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.brokers.trim().is_empty() {
            return Err(SettingError::new("kafka.brokers", "must not be empty"));
        }
        check_topic("kafka.topic", &self.topic)?;
        if self.group.trim().is_empty() {
            return Err(SettingError::new("kafka.group", "must not be empty"));
        }
        if let Some(topic) = &self.dead_letter_topic {
            check_topic("kafka.dead_letter_topic", topic)?;
        }
        positive("kafka.idle_timeout", self.idle_timeout)?;
        positive("kafka.commit_interval", self.commit_interval)?;
        Ok(())
    }
}

fn positive(field: &'static str, duration: Duration) -> Result<(), SettingError> {
    if duration.is_zero() {
        return Err(SettingError::new(field, "must be positive"));
    }
    Ok(())
}

/// Kafka's rule for topic names: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(field: &'static str, topic: &str) -> Result<(), SettingError> {
    let legal = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if topic.is_empty() || topic.len() > 249 || !legal || topic == "." || topic == ".." {
        return Err(SettingError::new(
            field,
            format!("{topic:?} is not a Kafka topic name (1..=249 of a-z A-Z 0-9 . _ -)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strictness() {
        let c: KafkaConfig = serde_json::from_str(r#"{"brokers":"b:9092","topic":"t"}"#).unwrap();
        assert_eq!(c, KafkaConfig::new("b:9092", "t"));
        assert_eq!(c.idle_timeout, Duration::from_secs(2));
        assert_eq!(c.commit_interval, Duration::from_secs(1));
        assert!(c.validate().is_ok());
        assert!(
            serde_json::from_str::<KafkaConfig>(r#"{"brokers":"b","topic":"t","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<KafkaConfig>(r#"{"brokers":"b"}"#).is_err());
        let c: KafkaConfig = serde_json::from_str(
            r#"{"brokers":"b","topic":"t","start":"earliest","fallback":"latest","format":"csv",
                "properties":{"fetch.wait.max.ms":"10"}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.start, c.fallback, c.format),
            (StartFrom::Earliest, Fallback::Latest, PayloadFormat::Csv)
        );
        assert_eq!(c.properties["fetch.wait.max.ms"], "10");
        let c: KafkaConfig = serde_json::from_str(
            r#"{"brokers":"b","topic":"t","handover":"2026-11-22T13:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.handover, Some(1_795_352_400_000));
        assert_eq!(KafkaConfig::new("b", "t").handover, None);
        // Text that is not a time or duration is refused when read, naming the key.
        for (text, key) in [
            (
                r#"{"brokers":"b","topic":"t","handover":"yesterday"}"#,
                "kafka.handover",
            ),
            (
                r#"{"brokers":"b","topic":"t","idle_timeout":"soon"}"#,
                "kafka.idle_timeout",
            ),
            (
                r#"{"brokers":"b","topic":"t","commit_interval":"1"}"#,
                "kafka.commit_interval",
            ),
        ] {
            let error = serde_json::from_str::<KafkaConfig>(text).unwrap_err();
            assert!(error.to_string().contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let base = KafkaConfig::new("b:1", "t");
        for (config, key) in [
            (
                KafkaConfig {
                    topic: "a/b".into(),
                    ..base.clone()
                },
                "kafka.topic",
            ),
            (
                KafkaConfig {
                    idle_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "kafka.idle_timeout",
            ),
            (
                KafkaConfig {
                    dead_letter_topic: Some(String::new()),
                    ..base.clone()
                },
                "kafka.dead_letter_topic",
            ),
            (
                KafkaConfig {
                    brokers: " ".into(),
                    ..base.clone()
                },
                "kafka.brokers",
            ),
        ] {
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, key, "{error}");
        }
    }
}
