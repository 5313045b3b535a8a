//! `[availability] topic`: availability records from a Kafka topic that every serving process
//! reads whole, from the beginning of every partition (assigned, no consumer group, nothing
//! committed): a latest-state-per-item topic, best compacted and keyed by `item_id`, so that a
//! restart rebuilds the map without a checkpoint. A bad message is a bad record at
//! `topic/partition/offset`.

use std::time::Duration;

use topsellers_kafka::{FollowError, Follower};

use crate::availability::{parse_record, AvailabilityRecord};
use crate::bad::BadRecord;
use crate::kafka::message_position;

/// How long reaching the brokers at start may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The availability topic, followed.
#[derive(Debug)]
pub struct AvailabilityTopic {
    follower: Follower,
    topic: String,
}

/// The availability topic cannot be followed.
#[derive(Debug, thiserror::Error)]
#[error("availability topic {topic} on {brokers}: {source}")]
pub struct AvailabilityTopicError {
    topic: String,
    brokers: String,
    #[source]
    source: Box<FollowError>,
}

impl AvailabilityTopic {
    /// Assigns every partition of `topic` on `brokers` at its beginning; `properties`
    /// (librdkafka consumer properties) are applied last.
    pub fn open<'a>(
        brokers: &str,
        topic: &str,
        properties: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<AvailabilityTopic, AvailabilityTopicError> {
        let client = topsellers_kafka::client_config(brokers, &[], properties);
        let follower = Follower::open(&client, topic, CONNECT_TIMEOUT).map_err(|source| {
            AvailabilityTopicError {
                topic: topic.to_owned(),
                brokers: brokers.to_owned(),
                source: Box::new(source),
            }
        })?;
        Ok(AvailabilityTopic {
            follower,
            topic: topic.to_owned(),
        })
    }

    /// Whether every partition has been read to the end it had when the process started.
    pub fn caught_up(&self) -> bool {
        self.follower.caught_up()
    }

    /// Reads what is ready (waiting at most `wait` for the first message) into `records` and
    /// `bad`.
    pub fn poll(
        &mut self,
        wait: Duration,
        records: &mut Vec<AvailabilityRecord>,
        bad: &mut Vec<BadRecord>,
    ) {
        let topic = &self.topic;
        let (_, error) =
            self.follower.poll(wait, |partition, offset, payload| {
                match parse_record(payload) {
                    Ok(record) => records.push(record),
                    Err(error) => bad.push(BadRecord::from_bytes(
                        message_position(topic, partition, offset),
                        error,
                        payload,
                    )),
                }
            });
        if let Some(error) = error {
            tracing::debug!(%error, "availability topic {topic}: client error (retried)");
        }
    }
}
