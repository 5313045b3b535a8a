//! `[availability]` in `run`: the map of item availability every serving process holds whole,
//! filled from the configured files at start and from the availability topic, followed on a
//! thread of its own (the service turns ready once both are read to their end). The serving
//! table hides the items it marks unavailable; the dataflow never sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use topsellers_sinks::{Availability, MetricKind, Metrics, ServingTable};
use topsellers_sources::availability::{read_files, AvailabilityConfig};
use topsellers_sources::availability_topic::AvailabilityTopic;
use topsellers_sources::{DeadLetter, S3Config};

use crate::stop::Stop;

use crate::error::DriverError;

/// A metric of the map: name, help, kind, value.
type Gauge = (
    &'static str,
    &'static str,
    MetricKind,
    fn(&Availability) -> f64,
);

/// A map for `config` (`None` when no availability input is configured), its gauges
/// registered in `metrics`.
pub fn open(config: &AvailabilityConfig, metrics: &Metrics) -> Option<Arc<Availability>> {
    if !config.is_set() {
        return None;
    }
    let availability = Arc::new(Availability::new());
    let gauges: [Gauge; 3] = [
        (
            "topsellers_availability_unavailable_items",
            "Items marked unavailable now (hidden from every list).",
            MetricKind::Gauge,
            |a| a.unavailable_count() as f64,
        ),
        (
            "topsellers_availability_marked_items",
            "Items with an availability record (available or not).",
            MetricKind::Gauge,
            |a| a.marked_count() as f64,
        ),
        (
            "topsellers_availability_records_total",
            "Valid availability records applied (older than an item's latest included).",
            MetricKind::Counter,
            |a| a.records() as f64,
        ),
    ];
    for (name, help, kind, value) in gauges {
        let map = availability.clone();
        metrics.register_extra(name, help, kind, Box::new(move || value(&map)));
    }
    Some(availability)
}

/// Reads the availability files, then starts following the topic (see [`load_files`] and
/// [`follow_topic`]); the flag `/readyz` waits for, if there is a topic.
pub fn start(
    settings: &crate::config::Settings,
    availability: Option<&Arc<Availability>>,
    default_brokers: Option<&str>,
    (table, dead_letter, stop): (&ServingTable, &Arc<DeadLetter>, &Stop),
) -> Result<Option<Arc<AtomicBool>>, DriverError> {
    let Some(availability) = availability else {
        return Ok(None);
    };
    let config = &settings.availability;
    load_files(config, &settings.lake.s3, availability, table, dead_letter)?;
    follow_topic(config, default_brokers, availability, dead_letter, stop)
}

/// Reads the configured files into `availability` (latest `ts` per item wins), dead-letters
/// their bad records (counted, logged with their positions) and re-renders the lists `table`
/// already serves (a restored checkpoint's) that hold a changed item. A file that cannot be
/// read, or is not JSON Lines, is an error naming it.
pub fn load_files(
    config: &AvailabilityConfig,
    s3: &S3Config,
    availability: &Availability,
    table: &ServingTable,
    dead_letter: &DeadLetter,
) -> Result<(), DriverError> {
    let mut changed = Vec::new();
    let read = read_files(config, s3, |records| {
        changed.extend(
            availability.apply(
                records
                    .iter()
                    .map(|r| (r.item_id.as_str(), r.available, r.ts_ms)),
            ),
        );
    })
    .map_err(DriverError::Availability)?;
    dead_letter.record_all(&read.bad);
    dead_letter.flush();
    table.availability_changed(&changed);
    tracing::info!(
        "availability: {} records from {} files, {} items unavailable, {} bad records",
        read.records,
        read.files,
        availability.unavailable_count(),
        read.bad.len()
    );
    Ok(())
}

/// How long one poll of the availability topic waits for a message.
const POLL: Duration = Duration::from_millis(100);

/// Starts following `[availability] topic` (if set) into `availability` on a thread of its own
/// until `stop`; `default_brokers` are the Kafka source's. Returns the flag that turns true
/// once every partition has been read to the end it had at the start (`/readyz` waits for it).
/// Bad messages are dead-lettered at `topic/partition/offset`.
pub fn follow_topic(
    config: &AvailabilityConfig,
    default_brokers: Option<&str>,
    availability: &Arc<Availability>,
    dead_letter: &Arc<DeadLetter>,
    stop: &Stop,
) -> Result<Option<Arc<AtomicBool>>, DriverError> {
    let Some(topic) = &config.topic else {
        return Ok(None);
    };
    let brokers = config
        .brokers
        .as_deref()
        .or(default_brokers)
        .ok_or_else(|| {
            DriverError::AvailabilityTopic(
                "no brokers: set availability.brokers (or use a kafka source)".into(),
            )
        })?;
    let mut reader = AvailabilityTopic::open(brokers, topic, &config.properties)
        .map_err(|e| DriverError::AvailabilityTopic(e.to_string()))?;
    let caught_up = Arc::new(AtomicBool::new(false));
    let (map, dead_letter, stop, flag) = (
        availability.clone(),
        dead_letter.clone(),
        stop.clone(),
        caught_up.clone(),
    );
    let topic = topic.clone();
    std::thread::Builder::new()
        .name("availability".into())
        .spawn(move || {
            let (mut records, mut bad) = (Vec::new(), Vec::new());
            while !stop.is_stopped() {
                reader.poll(POLL, &mut records, &mut bad);
                map.apply(
                    records
                        .iter()
                        .map(|r| (r.item_id.as_str(), r.available, r.ts_ms)),
                );
                if !bad.is_empty() {
                    dead_letter.record_all(&bad);
                    dead_letter.flush();
                }
                records.clear();
                bad.clear();
                if !flag.load(Ordering::Relaxed) && reader.caught_up() {
                    tracing::info!(
                        "availability topic {topic}: read to its end, {} items unavailable",
                        map.unavailable_count()
                    );
                    flag.store(true, Ordering::Release);
                }
            }
        })
        .map_err(|source| DriverError::Start {
            what: "the availability thread",
            source,
        })?;
    Ok(Some(caught_up))
}
