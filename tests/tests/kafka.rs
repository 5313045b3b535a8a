//! Kafka end to end, against a real broker (tansu, started per test on loopback): purchases
//! produced over several partitions, out of order, with returns, zero quantities and bad
//! messages (JSON and CSV payloads); `topsellers run` with a Kafka source serves, on every
//! category, the brute-force oracle's lists as of the last event time; the dead-letter file and
//! topic hold exactly the bad messages; offsets are committed once published and a restarted
//! process resumes from them. Also: the broker down at start, and restarted mid-stream; and the
//! hand-over from a lake (backfill) to a topic that overlaps it in time.
//!
//! Waits are bounded (generous) liveness limits, never timing assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use topsellers::run::Service;
use topsellers::Config;
use topsellers_sources::kafka::StartFrom;
use topsellers_sources::{KafkaConfig, SourceConfig};
use topsellers_tests::broker::{create_topic, fast_properties, produce, read_topic, Broker};
use topsellers_tests::{
    assert_no_problems, compare, default_as_of, generate, http, jsonl_line, metric,
    oracle_problems, rfc3339, served_lists, start_service as start, top_items, top_path,
    wait_until, write_parts, Fmt, Params, Rec, Served, Spec, StopOnDrop, DAY,
};

const R: i64 = 2 * DAY;

const K: usize = 5;
const PARTITIONS: i32 = 3;
/// How long the service may take to consume and publish everything (a liveness bound).
const PATIENCE: Duration = Duration::from_secs(180);

/// Messages that break the data contract, one way each.
const BAD: &[&[u8]] = &[
    b"not a purchase",
    b"",
    b"   ",
    br#"{"item_id":"x","category":"a//b","ts":1790000000000}"#,
    br#"{"item_id":"","category":"a","ts":1790000000000}"#,
    br#"{"category":"a","ts":1790000000000}"#,
    br#"{"item_id":"x","category":"a","ts":1790000000000,"quantity":"two"}"#,
    br#"{"item_id":"x","category":"/a","ts":1790000000000}"#,
    br#"{"item_id":"x","category":"a","ts":-5}"#,
    br#"{"item_id":"x","category":"a","ts":1790000000000"#,
    b"x,books,yesterday,1",
    b"x,books,1790000000000,1.5",
    b"x,,1790000000000",
    b"\xff\xfe,books,1790000000000",
];

/// Purchases and bad messages to produce, as (partition, payload).
struct Data {
    records: Vec<Rec>,
    twins: Vec<(String, String)>,
    messages: Vec<(i32, Vec<u8>)>,
    bad: Vec<(i32, Vec<u8>)>,
}

/// One CSV line (no header, no newline): `item_id,category,ts,quantity`.
fn csv_line(rng: &mut SmallRng, rec: &Rec) -> String {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let ts = if rng.random_bool(0.5) {
        rec.ts.to_string()
    } else {
        topsellers_tests::rfc3339(rec.ts, 0)
    };
    writer
        .write_record([&rec.item_id, &rec.category, &ts, &rec.quantity.to_string()])
        .expect("csv");
    let text = String::from_utf8(writer.into_inner().expect("csv")).expect("utf-8");
    text.trim_end().to_owned()
}

fn data(seed: u64, purchases: usize) -> Data {
    let history = generate(&Spec::new(seed, purchases, R, false));
    encode(seed, history.records, history.twins, BAD)
}

/// Each record as a JSON or CSV message on a random partition, with `bad` mixed in.
fn encode(
    seed: u64,
    records: Vec<Rec>,
    twins: Vec<(String, String)>,
    bad_payloads: &[&[u8]],
) -> Data {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut messages: Vec<(i32, Vec<u8>)> = records
        .iter()
        .map(|rec| {
            let payload = if rng.random_bool(0.7) {
                jsonl_line(&mut rng, rec)
            } else {
                csv_line(&mut rng, rec)
            };
            (rng.random_range(0..PARTITIONS), payload.into_bytes())
        })
        .collect();
    let mut bad = Vec::new();
    for payload in bad_payloads {
        let at = rng.random_range(0..=messages.len());
        let message = (rng.random_range(0..PARTITIONS), payload.to_vec());
        bad.push(message.clone());
        messages.insert(at, message);
    }
    Data {
        records,
        twins,
        messages,
        bad,
    }
}

/// A unique topic name per test run.
fn topic(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Creates the topic `name` (made unique per run, [`PARTITIONS`] partitions) on `broker`.
fn new_topic(broker: &Broker, name: &str) -> String {
    let topic = topic(name);
    create_topic(&broker.addr, &topic, PARTITIONS);
    topic
}

fn service_config(params: &Params, kafka: KafkaConfig, dead_letter: &str) -> Config {
    let mut config = params.config(&[], dead_letter);
    config.sources = vec![SourceConfig::Kafka(kafka)];
    config
}

fn kafka_config(brokers: &str, topic: &str) -> KafkaConfig {
    let mut kafka = KafkaConfig::new(brokers, topic);
    kafka.group = format!("{topic}-group");
    for (key, value) in fast_properties() {
        kafka.properties.insert(key.into(), value.into());
    }
    kafka
}

/// Waits until the served snapshot is as of `until` or later.
fn wait_published(service: &Service, until: i64, context: &str) {
    let published = wait_until(PATIENCE, || {
        service
            .table
            .published_time_ms()
            .is_some_and(|p| p >= until)
    });
    assert!(
        published,
        "{context}: the snapshot of the last event time {until} was not published within {PATIENCE:?}: published {:?}, readiness {:?}, metrics:\n{}",
        service.table.published_time_ms(),
        service.readiness.reason(),
        service.metrics.render_prometheus(0)
    );
}

/// Waits until the service has read `messages` Kafka messages.
fn wait_read(service: &Service, messages: usize, context: &str) {
    let read = wait_until(PATIENCE, || {
        metric(
            &service.metrics.render_prometheus(0),
            "topsellers_kafka_messages_total",
        ) == Some(messages as f64)
    });
    assert!(
        read,
        "{context}: {messages} messages not read within {PATIENCE:?}:\n{}",
        service.metrics.render_prometheus(0)
    );
}

/// Waits until the snapshot of `until` is served, all `messages` are read, and `/readyz` says
/// ready.
fn wait_caught_up(service: &Service, until: i64, messages: usize, context: &str) {
    wait_published(service, until, context);
    wait_read(service, messages, context);
    assert!(
        wait_until(PATIENCE, || service.is_ready()),
        "{context}: not ready: {}",
        service.readiness.reason()
    );
}

/// Every list the service serves.
fn served(addr: SocketAddr, params: &Params, context: &str) -> Served {
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    served_lists(addr, &names, context)
}

/// The served lists equal the oracle's as of the newest snapshot served, which is at or after
/// the last event time `until` (after it only when purchases arrived late, after every
/// partition had been idle: they enter at the current input time). A list that did not change
/// since an earlier snapshot is rendered as of that snapshot (same ranking, scores decayed
/// less): its scores are decayed on here. Retried until it holds (a snapshot may be on its way).
fn check_oracle(
    service: &Service,
    params: &Params,
    records: &[Rec],
    twins: &[(String, String)],
    context: &str,
) {
    let until = default_as_of(records).expect("purchases");
    let started = std::time::Instant::now();
    loop {
        let problems = oracle_problems(service.addr, params, records, twins, until);
        if problems.is_empty() {
            return;
        }
        if started.elapsed() > PATIENCE {
            assert_no_problems(&problems, &format!("{context}: served vs oracle"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Bad messages as the multiset of (partition, record text).
fn bad_multiset(bad: &[(i32, Vec<u8>)]) -> BTreeMap<(i32, String), usize> {
    let mut out = BTreeMap::new();
    for (partition, payload) in bad {
        *out.entry((*partition, String::from_utf8_lossy(payload).into_owned()))
            .or_insert(0) += 1;
    }
    out
}

/// Dead letters (file lines or topic values) as the same multiset; checks positions.
fn dead_multiset<'a>(
    topic: &str,
    lines: impl Iterator<Item = &'a [u8]>,
) -> BTreeMap<(i32, String), usize> {
    let mut out = BTreeMap::new();
    for line in lines {
        let doc: serde_json::Value = serde_json::from_slice(line).expect("dead letter JSON");
        let position = doc["position"].as_str().expect("position");
        let rest = position
            .strip_prefix(&format!("{topic}/"))
            .unwrap_or_else(|| panic!("position {position:?} names the topic {topic}"));
        let (partition, offset) = rest.split_once('/').expect("partition/offset");
        offset.parse::<i64>().expect("offset");
        assert!(
            doc["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{doc}"
        );
        let record = doc["record"].as_str().expect("record").to_owned();
        *out.entry((partition.parse().expect("partition"), record))
            .or_insert(0) += 1;
    }
    out
}

/// Messages produced per partition.
fn counts(messages: &[(i32, Vec<u8>)]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for (partition, _) in messages {
        *out.entry(*partition).or_insert(0) += 1;
    }
    out
}

/// The group's committed offsets.
fn committed(brokers: &str, topic: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

fn kafka_end_to_end(seed: u64, workers: usize) {
    let context = format!("seed {seed} workers {workers}");
    let broker = Broker::start();
    let topic = topic(&format!("purchases-{workers}"));
    let dead_topic = format!("{topic}-dead");
    create_topic(&broker.addr, &topic, PARTITIONS);
    create_topic(&broker.addr, &dead_topic, 1);
    let data = data(seed, 2500);
    produce(&broker.addr, &topic, &data.messages);

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let params = Params::new(K, workers, 500);
    let mut kafka = kafka_config(&broker.addr, &topic);
    kafka.dead_letter_topic = Some(dead_topic.clone());
    let group = kafka.group.clone();
    let changelog_topic = format!("{topic}-topk");
    create_topic(&broker.addr, &changelog_topic, 1);
    let mut config = service_config(&params, kafka.clone(), &dead.display().to_string());
    config.changelog.topic = Some(changelog_topic.clone());
    let (service, _stop) = start(&config);
    let until = default_as_of(&data.records).unwrap();
    wait_caught_up(&service, until, data.messages.len(), &context);
    check_oracle(&service, &params, &data.records, &data.twins, &context);

    // Counters and gauges; offsets are committed while running.
    assert!(
        wait_until(PATIENCE, || metric(
            &service.metrics.render_prometheus(0),
            "topsellers_kafka_commits_total"
        )
        .is_some_and(|n| n >= 1.0)),
        "{context}: no offset commit"
    );
    let text = http(service.addr, "GET", "/metrics", &[]).text();
    // With Kafka's families too, the scrape passes the strict parser.
    topsellers_tests::check_exposition(&text);
    let valid = data.records.iter().filter(|r| r.quantity != 0).count();
    let zero = data.records.len() - valid;
    for (series, want) in [
        ("topsellers_purchases_total", valid),
        ("topsellers_bad_records_total", BAD.len()),
        ("topsellers_ignored_records_total", zero),
        ("topsellers_kafka_messages_total", data.messages.len()),
        ("topsellers_kafka_bad_messages_total", BAD.len()),
        ("topsellers_kafka_dead_letter_failures_total", 0),
        ("topsellers_kafka_commit_failures_total", 0),
    ] {
        assert_eq!(
            metric(&text, series),
            Some(want as f64),
            "{context}: {series}\n{text}"
        );
    }
    for p in 0..PARTITIONS {
        let series = format!(
            "topsellers_kafka_event_time_lag_seconds{{topic=\"{topic}\",partition=\"{p}\"}}"
        );
        assert!(
            metric(&text, &series).is_some(),
            "{context}: {series}\n{text}"
        );
    }
    assert!(
        text.contains("topsellers_kafka_commit_failures_total"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "topsellers_changelog_topic_failures_total"),
        Some(0.0),
        "{text}"
    );
    let final_lists = served(service.addr, &params, &context);
    service.stop();
    service.shutdown().expect("shutdown");

    // The changelog topic, compacted by key, holds the served lists.
    let mut latest: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (_, key, value) in read_topic(&broker.addr, &changelog_topic, 1) {
        let key = String::from_utf8(key).expect("utf-8 key");
        latest.insert(key, serde_json::from_slice(&value).expect("changelog JSON"));
    }
    let mut keys = BTreeSet::new();
    for ((profile, cat), (_, items)) in &final_lists {
        let name = params.half_lives[*profile].0;
        let key = format!("{name}/{cat}");
        let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
        match latest.get(&key) {
            Some(doc) => {
                assert_eq!(
                    doc["category"].as_str(),
                    Some(cat.as_str()),
                    "{context}: {key}"
                );
                assert_eq!(doc["profile"].as_str(), Some(name), "{context}: {key}");
                let logged: Vec<&str> = doc["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|item| item["item_id"].as_str().expect("item_id"))
                    .collect();
                assert_eq!(logged, ids, "{context}: changelog key {key}");
            }
            None => assert!(
                ids.is_empty(),
                "{context}: no changelog message for {key}: {ids:?}"
            ),
        }
        keys.insert(key);
    }
    let unknown: Vec<&String> = latest.keys().filter(|k| !keys.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "{context}: changelog keys not served: {unknown:?}"
    );

    // Dead letters: exactly the bad messages, in the file and on the topic.
    let file = std::fs::read(&dead).expect("dead-letter file");
    let lines: Vec<&[u8]> = file
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        dead_multiset(&topic, lines.into_iter()),
        bad_multiset(&data.bad),
        "{context}: dead-letter file"
    );
    let letters = read_topic(&broker.addr, &dead_topic, BAD.len());
    assert_eq!(
        dead_multiset(&topic, letters.iter().map(|(_, _, v)| v.as_slice())),
        bad_multiset(&data.bad),
        "{context}: dead-letter topic"
    );
    for (_, key, value) in &letters {
        let doc: serde_json::Value = serde_json::from_slice(value).unwrap();
        assert_eq!(doc["position"].as_str().unwrap().as_bytes(), key.as_slice());
    }

    // Everything was published, so every offset is committed.
    assert_eq!(
        committed(&broker.addr, &topic, &group),
        counts(&data.messages),
        "{context}: committed offsets"
    );

    if workers == 1 {
        // A restarted process resumes from the committed offsets: it reads only what is new.
        let mut rng = SmallRng::seed_from_u64(seed + 1);
        let later = until + 1_000;
        let extra: Vec<Rec> = (0..20)
            .map(|i| Rec::new(&format!("late-{i}"), "restart/check", later + i, 1))
            .collect();
        let messages: Vec<(i32, Vec<u8>)> = extra
            .iter()
            .map(|rec| {
                (
                    rng.random_range(0..PARTITIONS),
                    jsonl_line(&mut rng, rec).into_bytes(),
                )
            })
            .collect();
        produce(&broker.addr, &topic, &messages);
        let config = service_config(&params, kafka, "");
        let (service, _stop) = start(&config);
        wait_published(&service, later + 19, &format!("{context}: restart"));
        let text = http(service.addr, "GET", "/metrics", &[]).text();
        assert_eq!(
            metric(&text, "topsellers_kafka_messages_total"),
            Some(extra.len() as f64),
            "{context}: the restarted process read only the new messages\n{text}"
        );
        let list = http(service.addr, "GET", &top_path("restart/check"), &[]).json();
        assert_eq!(top_items(&list).len(), K, "{list}");
        service.stop();
        service.shutdown().expect("shutdown");
    }
}

#[test]
fn one_worker_serves_the_oracle_from_kafka() {
    kafka_end_to_end(71, 1);
}

#[test]
fn two_workers_serve_the_oracle_from_kafka() {
    kafka_end_to_end(72, 2);
}

#[test]
fn four_workers_three_partitions_serve_the_oracle_from_kafka() {
    kafka_end_to_end(73, 4);
}

#[test]
fn broker_down_at_start_then_up() {
    let context = "broker down at start";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let topic = topic("late-broker");
    let params = Params::new(K, 2, 500);
    let (service, _stop) = start(&service_config(&params, kafka_config(&addr, &topic), ""));
    // Nothing listens yet: not ready, and says why.
    let readyz = http(service.addr, "GET", "/readyz", &[]);
    assert_eq!(readyz.status, 503, "{}", readyz.text());
    assert!(
        wait_until(PATIENCE, || service
            .readiness
            .reason()
            .contains("connecting")),
        "{}",
        service.readiness.reason()
    );
    let broker = Broker::start_on(port);
    create_topic(&broker.addr, &topic, PARTITIONS);
    let data = data(74, 1500);
    produce(&broker.addr, &topic, &data.messages);
    let until = default_as_of(&data.records).unwrap();
    wait_caught_up(&service, until, data.messages.len(), context);
    check_oracle(&service, &params, &data.records, &data.twins, context);
    service.stop();
    service.shutdown().expect("shutdown");
}

/// The broker killed and started again mid-stream, on storage that survives it (S3): the
/// service reconnects and reads on from where it was, and the topic keeps the first burst.
#[test]
fn broker_restart_mid_stream() {
    two_bursts(Broker::start_persistent(), true);
}

/// A quiet period between two bursts: every partition goes idle, the lists are served as of
/// the first burst's last purchase, and the second burst (some of it arriving on a worker that
/// followed the other's event time, so late) is served in full.
#[test]
fn quiet_period_between_bursts() {
    two_bursts(Broker::start(), false);
}

/// The earlier half of a history (by time), then (after a broker restart, if `restart`) the
/// rest; the lists end equal to the oracle's and every message is read exactly once.
fn two_bursts(mut broker: Broker, restart: bool) {
    let context = if restart {
        "broker restart"
    } else {
        "two bursts"
    };
    let topic = topic(if restart { "restart" } else { "bursts" });
    create_topic(&broker.addr, &topic, PARTITIONS);
    // The earlier half of the purchases (by time) before the restart, the rest after; each
    // half out of order, with bad messages.
    let history = generate(&Spec::new(75, 2000, R, false));
    let mut records = history.records.clone();
    records.sort_by_key(|r| r.ts);
    let later = records.split_off(records.len() / 2);
    let mut rng = SmallRng::seed_from_u64(75);
    records.shuffle(&mut rng);
    let mut later_shuffled = later;
    later_shuffled.shuffle(&mut rng);
    let first = encode(75, records, Vec::new(), &BAD[..5]);
    let second = encode(76, later_shuffled, Vec::new(), &BAD[5..]);
    produce(&broker.addr, &topic, &first.messages);

    let params = Params::new(K, 2, 500);
    let (service, _stop) = start(&service_config(
        &params,
        kafka_config(&broker.addr, &topic),
        "",
    ));
    wait_published(&service, default_as_of(&first.records).unwrap(), context);
    if restart {
        broker.restart();
    }
    produce(&broker.addr, &topic, &second.messages);
    let until = default_as_of(&history.records).unwrap();
    wait_published(&service, until, context);
    // Every message read exactly once (none lost, none twice), then the lists are the oracle's.
    wait_read(
        &service,
        first.messages.len() + second.messages.len(),
        context,
    );
    check_oracle(&service, &params, &history.records, &history.twins, context);
    let text = http(service.addr, "GET", "/metrics", &[]).text();
    assert_eq!(
        metric(&text, "topsellers_kafka_bad_messages_total"),
        Some(BAD.len() as f64),
        "{context}\n{text}"
    );
    service.stop();
    service.shutdown().expect("shutdown");
    if restart {
        // The broker kept what it had before the restart: read from the beginning, the topic
        // holds both bursts, each message once. (The checks above alone need not show a loss:
        // the service had read the first burst before the restart.)
        let mut want: Vec<(i32, Vec<u8>)> = first.messages.clone();
        want.extend(second.messages.iter().cloned());
        want.sort();
        let mut got: Vec<(i32, Vec<u8>)> = read_topic(&broker.addr, &topic, want.len())
            .into_iter()
            .map(|(partition, _, payload)| (partition, payload))
            .collect();
        got.sort();
        assert!(
            got == want,
            "{context}: the topic after the restart holds {} messages, {} produced",
            got.len(),
            want.len()
        );
    }
}

/// The hand-over from the lake to Kafka. The lake holds the purchases up to some time; the
/// topic holds everything from a time well before that on (as a topic with retention would),
/// so the two overlap. With T0 the lake's largest event time (default) or a configured time
/// inside the overlap (`explicit`), every purchase counts exactly once: the served lists are
/// the oracle's over the distinct purchases, the topic's purchases before T0 are skipped (and
/// counted), and so are the lake's at or after T0.
fn handover(seed: u64, workers: usize, explicit: bool) {
    let context = format!("handover seed {seed} workers {workers} explicit {explicit}");
    let history = generate(&Spec::new(seed, 2500, R, false));
    let mut sorted = history.records.clone();
    sorted.sort_by_key(|r| r.ts);
    let n = sorted.len();
    let (topic_from, lake_to) = (n * 2 / 5, n * 3 / 4);
    let mut lake = sorted[..lake_to].to_vec();
    let mut on_topic = sorted[topic_from..].to_vec();
    let t0 = if explicit {
        sorted[(topic_from + lake_to) / 2].ts
    } else {
        default_as_of(&lake).expect("purchases")
    };
    assert!(
        on_topic[0].ts < t0 && t0 <= lake[lake.len() - 1].ts,
        "{context}: lake and topic overlap around T0"
    );
    let mut rng = SmallRng::seed_from_u64(seed);
    lake.shuffle(&mut rng);
    on_topic.shuffle(&mut rng);
    let valid = |r: &&Rec| r.quantity != 0;
    let topic_skipped = on_topic.iter().filter(valid).filter(|r| r.ts < t0).count();
    let expired = t0 - 1 - R;
    let lake_skipped = lake
        .iter()
        .filter(valid)
        .filter(|r| r.ts >= t0 || r.ts <= expired)
        .count();
    assert!(
        topic_skipped > 0,
        "{context}: the topic holds purchases before T0"
    );

    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    write_parts(
        &lake_dir,
        &[Fmt::Parquet, Fmt::Jsonl, Fmt::Csv],
        &lake,
        3,
        seed,
    );
    let broker = Broker::start();
    let topic = new_topic(&broker, &format!("handover-{workers}-{explicit}"));
    let data = encode(seed, on_topic, Vec::new(), &[]);
    produce(&broker.addr, &topic, &data.messages);

    let params = Params::new(K, workers, 500);
    let mut kafka = kafka_config(&broker.addr, &topic);
    if explicit {
        // RFC 3339 in another offset than UTC: the same instant.
        kafka.handover = Some(topsellers_model::parse_time_ms(&rfc3339(t0, 120)).unwrap());
    }
    let mut config = params.config(&[lake_dir], "");
    config.sources.push(SourceConfig::Kafka(kafka));
    let (service, _stop) = start(&config);
    let until = default_as_of(&history.records).expect("purchases");
    wait_caught_up(&service, until, data.messages.len(), &context);
    // The union of lake and topic, each purchase once: the generated history itself.
    check_oracle(
        &service,
        &params,
        &history.records,
        &history.twins,
        &context,
    );
    let text = http(service.addr, "GET", "/metrics", &[]).text();
    for (series, want) in [
        ("topsellers_kafka_handover_skipped_total", topic_skipped),
        ("topsellers_backfill_skipped_total", lake_skipped),
        ("topsellers_backfill_pruned_rows_total", 0),
    ] {
        assert_eq!(
            metric(&text, series),
            Some(want as f64),
            "{context}: {series}\n{text}"
        );
    }
    service.stop();
    service.shutdown().expect("shutdown");
}

#[test]
fn handover_at_the_lakes_last_time_counts_each_purchase_once() {
    handover(81, 1, false);
}

#[test]
fn handover_at_a_configured_time_counts_each_purchase_once() {
    handover(82, 2, true);
}

/// The restart the README describes, without a state: a first run follows the whole topic
/// with group G and commits its offsets (at the topic's end); the restart replays a lake that
/// holds only the first part of the purchases, then Kafka with the same group G. Every
/// partition must start early enough to see every purchase from T0 on (not at G's commits,
/// which lie past T0): the lists are the oracle's over everything, each purchase once
/// (including those at exactly T0, which are both in the lake and on the topic).
#[test]
fn restart_with_a_lake_and_the_same_group_loses_nothing() {
    let seed = 83;
    let context = "restart with the same group";
    let history = generate(&Spec::new(seed, 2000, R, false));
    let mut sorted = history.records.clone();
    sorted.sort_by_key(|r| r.ts);
    let lake = sorted[..sorted.len() * 3 / 5].to_vec();
    let t0 = default_as_of(&lake).expect("purchases");
    assert!(
        sorted.iter().filter(|r| r.ts == t0).count() >= 1,
        "{context}: a purchase at exactly T0"
    );
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    write_parts(&lake_dir, &[Fmt::Parquet, Fmt::Jsonl], &lake, 2, seed);
    let broker = Broker::start();
    let topic = new_topic(&broker, "restart-group");
    let data = encode(seed, history.records.clone(), history.twins.clone(), &[]);
    produce(&broker.addr, &topic, &data.messages);
    let params = Params::new(K, 2, 500);
    let kafka = kafka_config(&broker.addr, &topic);
    let group = kafka.group.clone();
    let until = default_as_of(&history.records).expect("purchases");

    // The first run: the whole topic, committed.
    let first = service_config(&params, kafka.clone(), "");
    let (service, stop) = start(&first);
    wait_caught_up(&service, until, data.messages.len(), context);
    let committed_all = wait_until(PATIENCE, || {
        committed(&broker.addr, &topic, &group)
            .values()
            .sum::<i64>()
            == data.messages.len() as i64
    });
    assert!(
        committed_all,
        "{context}: the first run committed the whole topic"
    );
    service.stop();
    service.shutdown().expect("shutdown");
    drop(stop);

    // The restart: the lake's part, then Kafka with the same group.
    let mut config = params.config(&[lake_dir], "");
    config.sources.push(SourceConfig::Kafka(kafka));
    let (service, _stop) = start(&config);
    wait_caught_up(&service, until, data.messages.len(), context);
    check_oracle(&service, &params, &history.records, &history.twins, context);
    let text = http(service.addr, "GET", "/metrics", &[]).text();
    let on_topic_before_t0 = history
        .records
        .iter()
        .filter(|r| r.quantity != 0 && r.ts < t0)
        .count();
    assert_eq!(
        metric(&text, "topsellers_kafka_handover_skipped_total"),
        Some(on_topic_before_t0 as f64),
        "{context}: the topic's purchases before T0 are the lake's\n{text}"
    );
    assert_eq!(
        metric(&text, "topsellers_kafka_handover_gap_partitions"),
        Some(0.0),
        "{context}: nothing was deleted from the topic\n{text}"
    );
    service.stop();
    service.shutdown().expect("shutdown");
}

/// An empty topic: there is nothing to catch up on, so the service turns ready (serving empty
/// lists); then the first purchase is served.
#[test]
fn an_empty_topic_turns_ready() {
    let context = "empty topic";
    let broker = Broker::start();
    let topic = new_topic(&broker, "empty");
    let params = Params::new(K, 2, 500);
    let (service, _stop) = start(&service_config(
        &params,
        kafka_config(&broker.addr, &topic),
        "",
    ));
    assert!(
        wait_until(PATIENCE, || service.is_ready()),
        "{context}: not ready: {}",
        service.readiness.reason()
    );
    let home = http(service.addr, "GET", "/v1/top", &[]);
    assert_eq!(home.status, 200, "{context}: {}", home.text());
    assert!(top_items(&home.json()).is_empty(), "{}", home.text());

    let records = vec![Rec::new("sku-1", "books", 1_790_000_000_000, 2)];
    let mut rng = SmallRng::seed_from_u64(1);
    produce(
        &broker.addr,
        &topic,
        &[(1, jsonl_line(&mut rng, &records[0]).into_bytes())],
    );
    wait_published(&service, records[0].ts, context);
    check_oracle(&service, &params, &records, &[], context);
    service.stop();
    service.shutdown().expect("shutdown");
}

/// One wave of purchases for [`offsets_are_committed_only_after_their_purchases_are_served`]:
/// categories `w{wave}/g{j}`, each on one partition, a few competing items each, quantities
/// with returns, event times out of order within the wave's own ten minutes.
fn commit_wave(rng: &mut SmallRng, wave: i64, base_ms: i64) -> Vec<(i32, Rec)> {
    let mut out = Vec::new();
    for j in 0..6 {
        let partition = j % PARTITIONS;
        for _ in 0..rng.random_range(10..30) {
            let item = format!("item-{}", rng.random_range(0..8));
            let ts = base_ms + wave * 600_000 + rng.random_range(0..300_000);
            let quantity = if rng.random_bool(0.15) {
                -1
            } else {
                rng.random_range(1..4)
            };
            out.push((
                partition,
                Rec::new(&item, &format!("w{wave}/g{j}"), ts, quantity),
            ));
        }
    }
    out.shuffle(rng);
    out
}

/// What is wrong with what the service serves, given the group's committed offsets: every
/// category whose purchases (its own and its descendants') all lie below the committed
/// offsets must be served, with the oracle's lists over the purchases below those offsets.
/// `sent`: per partition, the purchases in offset order. Returns the problems and how many
/// categories were checked.
fn commit_problems(
    service: &Service,
    params: &Params,
    sent: &BTreeMap<i32, Vec<Rec>>,
    committed: &BTreeMap<i32, i64>,
) -> (Vec<String>, usize) {
    let mut below = Vec::new();
    let mut above: BTreeSet<String> = BTreeSet::new();
    for (partition, records) in sent {
        let upto = committed.get(partition).copied().unwrap_or(0).max(0) as usize;
        assert!(
            upto <= records.len(),
            "partition {partition}: committed {upto}, only {} sent",
            records.len()
        );
        below.extend(records[..upto].iter().cloned());
        for rec in &records[upto..] {
            above.extend(topsellers_tests::ancestors(&rec.category));
        }
    }
    let complete: BTreeSet<String> = below
        .iter()
        .flat_map(|rec| topsellers_tests::ancestors(&rec.category))
        .filter(|cat| !above.contains(cat))
        .collect();
    let mut problems = Vec::new();
    let mut got_at: BTreeMap<i64, topsellers_tests::Got> = BTreeMap::new();
    for cat in &complete {
        for (profile, (name, _)) in params.half_lives.iter().enumerate() {
            let target = format!("{}?profile={name}", top_path(cat));
            let response = http(service.addr, "GET", &target, &[]);
            if response.status != 200 {
                problems.push(format!(
                    "{target}: committed, but answers {}: {}",
                    response.status,
                    response.text()
                ));
                continue;
            }
            let doc = response.json();
            let as_of = doc["as_of"]
                .as_str()
                .and_then(topsellers_tests::parse_rfc3339)
                .expect("as_of");
            got_at
                .entry(as_of)
                .or_default()
                .insert((profile, cat.clone()), top_items(&doc));
        }
    }
    for (as_of, got) in got_at {
        let mut want = params.oracle(&below, as_of);
        want.lists.retain(|(_, cat), _| complete.contains(cat));
        // Only the lists answered as of this time: the profiles of one category may have
        // been answered as of different times (a publish between the two requests).
        want.lists.retain(|key, _| got.contains_key(key));
        problems.extend(
            compare(&got, &want, params.k, params.half_lives.len())
                .into_iter()
                .map(|p| format!("as of {as_of}: {p}")),
        );
    }
    (problems, complete.len())
}

/// An offset is committed only once the purchases before it are served, checked while the
/// stream runs: purchases arrive in waves; while each wave is read, the group's committed
/// offsets are polled from the broker, and each time every category whose purchases all lie
/// below them must already be served with the oracle's lists over those purchases. Commits
/// are frequent (100 ms) and publishing slow (1 s), so that a commit ahead of the served lists
/// has a wide window to show.
///
/// The operators stamp a round's changes at their last complete time (`f − 1`), which can be
/// later than the input time a purchase entered at, so offsets take one hop per stamping
/// operator (sources/src/kafka/offsets.rs). The lists of one category are compared per
/// (profile, category) at each answer's own `as_of`: comparing both profiles of a category
/// at the time one of them was answered failed about one run in three (a publish between the
/// two requests), which was the test's error, not the service's.
#[test]
fn offsets_are_committed_only_after_their_purchases_are_served() {
    let context = "commits while running";
    let broker = Broker::start();
    let topic = new_topic(&broker, "commits");
    let params = Params::new(K, 2, 50);
    let mut kafka = kafka_config(&broker.addr, &topic);
    kafka.commit_interval = Duration::from_millis(100);
    let group = kafka.group.clone();
    let mut config = service_config(&params, kafka, "");
    config.table.publish_interval = Duration::from_secs(1);
    let (service, _stop) = start(&config);

    let mut rng = SmallRng::seed_from_u64(1717);
    let base_ms = 1_790_000_000_000;
    let mut sent: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let (mut checks, mut checked_categories) = (0, 0);
    for wave in 0..5 {
        let purchases = commit_wave(&mut rng, wave, base_ms);
        let messages: Vec<(i32, Vec<u8>)> = purchases
            .iter()
            .map(|(p, rec)| (*p, jsonl_line(&mut rng, rec).into_bytes()))
            .collect();
        produce(&broker.addr, &topic, &messages);
        for (partition, rec) in purchases {
            sent.entry(partition).or_default().push(rec);
        }
        let ends: BTreeMap<i32, i64> = sent.iter().map(|(p, r)| (*p, r.len() as i64)).collect();
        // Offsets first, then the lists: what was committed by then must be served by now.
        let mut problems = Vec::new();
        let all_committed = wait_until(PATIENCE, || {
            let offsets = committed(&broker.addr, &topic, &group);
            let (found, categories) = commit_problems(&service, &params, &sent, &offsets);
            checks += 1;
            checked_categories += categories;
            problems = found;
            !problems.is_empty() || offsets == ends
        });
        if !problems.is_empty() {
            // A reordered topic would break the offsets assumed, not the service.
            assert_topic_order(&broker.addr, &topic, &sent, context);
        }
        assert_no_problems(&problems, &format!("{context}: wave {wave}"));
        assert!(
            all_committed,
            "{context}: wave {wave} was not committed within {PATIENCE:?}: {:?} of {ends:?}",
            committed(&broker.addr, &topic, &group)
        );
    }
    assert!(
        checks > 5 && checked_categories > 0,
        "{context}: the checks saw no committed category ({checks} polls)"
    );
    assert_topic_order(&broker.addr, &topic, &sent, context);
    service.stop();
    service.shutdown().expect("shutdown");
}

/// The broker holds each partition's messages in the order `sent` lists them (the offsets
/// [`commit_problems`] assumes): no produce retry reordered or doubled one.
fn assert_topic_order(brokers: &str, topic: &str, sent: &BTreeMap<i32, Vec<Rec>>, context: &str) {
    let total: usize = sent.values().map(Vec::len).sum();
    let mut on_topic: BTreeMap<i32, Vec<(String, String, i64)>> = BTreeMap::new();
    for (partition, _, payload) in read_topic(brokers, topic, total) {
        let doc: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        let ts = doc["ts"]
            .as_i64()
            .or_else(|| doc["ts"].as_str().and_then(topsellers_tests::parse_rfc3339))
            .expect("ts");
        let item = match &doc["item_id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let category = doc["category"].as_str().expect("category").to_owned();
        on_topic
            .entry(partition)
            .or_default()
            .push((item, category, ts));
    }
    let expected: BTreeMap<i32, Vec<(String, String, i64)>> = sent
        .iter()
        .map(|(p, recs)| {
            let rows = recs
                .iter()
                .map(|r| (r.item_id.clone(), r.category.clone(), r.ts))
                .collect();
            (*p, rows)
        })
        .collect();
    assert!(
        on_topic == expected,
        "{context}: the topic's order differs from the order sent"
    );
}

/// Commits `next` offsets for `group` (as an earlier consumer of the group would have).
fn commit_for_group(brokers: &str, topic: &str, group: &str, next: &BTreeMap<i32, i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for (&partition, &offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("partition");
    }
    consumer
        .commit(&list, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    assert_eq!(&committed(brokers, topic, group), next, "committed");
}

/// A topic holding `data`, and the group having committed half of each partition.
///
/// Each partition's last message is produced on its own: tansu answers a partition's end
/// offset (`latest`) with the base offset of its last record batch plus one, which is the
/// true end only when that batch holds one message.
fn topic_half_committed(broker: &Broker, name: &str, data: &Data) -> (String, KafkaConfig) {
    let topic = new_topic(broker, name);
    let mut last: BTreeMap<i32, usize> = BTreeMap::new();
    for (at, (partition, _)) in data.messages.iter().enumerate() {
        last.insert(*partition, at);
    }
    let (alone, batched): (Vec<_>, Vec<_>) = data
        .messages
        .iter()
        .enumerate()
        .partition(|(at, (partition, _))| last[partition] == *at);
    let batched: Vec<(i32, Vec<u8>)> = batched.into_iter().map(|(_, m)| m.clone()).collect();
    produce(&broker.addr, &topic, &batched);
    for (_, message) in alone {
        produce(&broker.addr, &topic, std::slice::from_ref(message));
    }
    let kafka = kafka_config(&broker.addr, &topic);
    let half: BTreeMap<i32, i64> = counts(&data.messages)
        .into_iter()
        .map(|(p, n)| (p, n / 2))
        .collect();
    commit_for_group(&broker.addr, &topic, &kafka.group, &half);
    (topic, kafka)
}

/// `start = "earliest"`: every partition starts at its first message, whatever the group
/// committed (here: half of each partition), so the lists are the oracle's over everything.
#[test]
fn start_earliest_reads_the_whole_topic_whatever_the_group_committed() {
    let context = "start earliest";
    let broker = Broker::start();
    let data = data(121, 1500);
    let (_topic, mut kafka) = topic_half_committed(&broker, "start-earliest", &data);
    kafka.start = StartFrom::Earliest;
    let params = Params::new(K, 2, 500);
    let (service, _stop) = start(&service_config(&params, kafka, ""));
    let until = default_as_of(&data.records).unwrap();
    wait_caught_up(&service, until, data.messages.len(), context);
    check_oracle(&service, &params, &data.records, &data.twins, context);
    service.stop();
    service.shutdown().expect("shutdown");
}

/// `start = "latest"`: only what is produced after the start is read, neither the old messages
/// nor those after the group's commits (half of each partition): once the service is ready,
/// a new history is produced, and the lists are the oracle's over it alone.
#[test]
fn start_latest_reads_only_what_is_produced_after_the_start() {
    let context = "start latest";
    let broker = Broker::start();
    let old = data(122, 1000);
    let (topic, mut kafka) = topic_half_committed(&broker, "start-latest", &old);
    kafka.start = StartFrom::Latest;
    let params = Params::new(K, 2, 500);
    let (service, _stop) = start(&service_config(&params, kafka, ""));
    assert!(
        wait_until(PATIENCE, || service.is_ready()),
        "{context}: not ready: {}",
        service.readiness.reason()
    );
    // A new history, all of it later than the old one.
    let old_until = default_as_of(&old.records).unwrap();
    let history = generate(&Spec::new(123, 800, R, false));
    let first = history.records.iter().map(|r| r.ts).min().unwrap();
    let shift = old_until + 1000 - first;
    let records: Vec<Rec> = history
        .records
        .into_iter()
        .map(|r| Rec {
            ts: r.ts + shift,
            ..r
        })
        .collect();
    let new = encode(123, records, history.twins, &[]);
    produce(&broker.addr, &topic, &new.messages);
    let until = default_as_of(&new.records).unwrap();
    wait_caught_up(&service, until, new.messages.len(), context);
    check_oracle(&service, &params, &new.records, &new.twins, context);
    let text = http(service.addr, "GET", "/metrics", &[]).text();
    assert_eq!(
        metric(&text, "topsellers_kafka_messages_total"),
        Some(new.messages.len() as f64),
        "{context}: only the new messages are read\n{text}"
    );
    service.stop();
    service.shutdown().expect("shutdown");
}

/// A purchase dated 9999-12-31T23:59:59Z among normal ones (issue 14, point 1): it is a bad
/// record (dead-lettered with the reason, counted), the lists are the oracle's over the normal
/// purchases, its offset is committed like any other, and a process restarted with the same
/// group turns ready (instead of waiting forever behind a watermark at year 9999).
#[test]
fn a_far_future_purchase_is_dead_lettered_and_a_restart_turns_ready() {
    let context = "far future";
    let broker = Broker::start();
    let topic = new_topic(&broker, "far-future");
    let history = generate(&Spec::new(97, 1500, R, false));
    let category = history.records[0].category.clone();
    let json = format!(
        r#"{{"item_id":"from-the-future","category":{},"ts":"9999-12-31T23:59:59Z","quantity":1000}}"#,
        serde_json::Value::from(category.clone())
    );
    let future: [&[u8]; 2] = [
        json.as_bytes(),
        b"from-the-future-csv,books,9999-12-31T23:59:59Z,1000",
    ];
    let data = encode(97, history.records, history.twins, &future);
    produce(&broker.addr, &topic, &data.messages);

    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let params = Params::new(K, 2, 500);
    let kafka = kafka_config(&broker.addr, &topic);
    let group = kafka.group.clone();
    let config = service_config(&params, kafka.clone(), &dead.display().to_string());
    let (service, stop) = start(&config);
    let until = default_as_of(&data.records).unwrap();
    wait_caught_up(&service, until, data.messages.len(), context);
    check_oracle(&service, &params, &data.records, &data.twins, context);
    let text = http(service.addr, "GET", "/metrics", &[]).text();
    for series in [
        "topsellers_bad_records_total",
        "topsellers_kafka_bad_messages_total",
    ] {
        assert_eq!(
            metric(&text, series),
            Some(future.len() as f64),
            "{context}: {series}\n{text}"
        );
    }
    // The snapshot served is of the normal purchases' time, not of year 9999.
    assert!(
        service
            .table
            .published_time_ms()
            .is_some_and(|t| t < until + DAY),
        "{context}: published as of {:?}",
        service.table.published_time_ms()
    );
    wait_committed_all(&broker.addr, &topic, &group, &data.messages, context);
    service.stop();
    service.shutdown().expect("shutdown");
    drop(stop);
    let file = std::fs::read(&dead).expect("dead-letter file");
    let lines: Vec<&[u8]> = file
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        dead_multiset(&topic, lines.iter().copied()),
        bad_multiset(&data.bad),
        "{context}: dead-letter file"
    );
    for line in &lines {
        let doc: serde_json::Value = serde_json::from_slice(line).unwrap();
        let error = doc["error"].as_str().unwrap();
        assert!(
            error.contains("ahead of the wall clock") && error.contains("max_future"),
            "{context}: the reason: {error}"
        );
    }

    // Restarted with the same group, one purchase later: it reads only that one (the far
    // future one's offset was committed), turns ready and serves it.
    let later = produce_one_after(&broker.addr, &topic, until);
    let (service, _stop) = restart_ready(&params, kafka, context);
    served_alone(&service, later, context);
    wait_read(&service, 1, context);
    service.stop();
    service.shutdown().expect("shutdown");
}

/// A restart at the end of its topic (every offset committed, no state) turns ready, and a
/// purchase produced after that — its event time ahead of the input time the quiet restart left
/// — is served. It was read and never published: the operators' stash held the output frontier
/// at the message's time (the input time) until some round completed, and none did, so the
/// worker waiting for the frontier to pass its input time waited for ever.
#[test]
fn a_purchase_after_a_restart_at_the_end_of_the_topic_is_served() {
    let context = "restart at the end";
    let broker = Broker::start();
    let topic = new_topic(&broker, "restart-end");
    let data = data(98, 600);
    produce(&broker.addr, &topic, &data.messages);
    let params = Params::new(K, 2, 500);
    let kafka = kafka_config(&broker.addr, &topic);
    let group = kafka.group.clone();
    let (service, stop) = start(&service_config(&params, kafka.clone(), ""));
    let until = default_as_of(&data.records).unwrap();
    wait_caught_up(&service, until, data.messages.len(), context);
    wait_committed_all(&broker.addr, &topic, &group, &data.messages, context);
    service.stop();
    service.shutdown().expect("shutdown");
    drop(stop);
    let (service, _stop) = restart_ready(&params, kafka, context);
    let later = produce_one_after(&broker.addr, &topic, until);
    served_alone(&service, later, context);
}

/// Waits until `group` has committed every message of `messages` on `topic`.
fn wait_committed_all(
    brokers: &str,
    topic: &str,
    group: &str,
    messages: &[(i32, Vec<u8>)],
    context: &str,
) {
    assert!(
        wait_until(PATIENCE, || committed(brokers, topic, group)
            == counts(messages)),
        "{context}: committed {:?}, produced {:?}",
        committed(brokers, topic, group),
        counts(messages)
    );
}

/// Starts the service again with `kafka` (the same group) and waits until it is ready.
fn restart_ready(params: &Params, kafka: KafkaConfig, context: &str) -> (Service, StopOnDrop) {
    let (service, stop) = start(&service_config(params, kafka, ""));
    assert!(
        wait_until(PATIENCE, || service.is_ready()),
        "{context}: the restart is not ready: {}",
        service.readiness.reason()
    );
    (service, stop)
}

/// Produces one purchase of `after-restart` in `restart/check`, a second after `until`, to
/// partition 0; its event time.
fn produce_one_after(brokers: &str, topic: &str, until: i64) -> i64 {
    let later = until + 1_000;
    let rec = Rec::new("after-restart", "restart/check", later, 2);
    let mut rng = SmallRng::seed_from_u64(3);
    produce(
        brokers,
        topic,
        &[(0, jsonl_line(&mut rng, &rec).into_bytes())],
    );
    later
}

/// Waits until the snapshot of `later` is published, then checks that `restart/check` lists
/// exactly the purchase [`produce_one_after`] made.
fn served_alone(service: &Service, later: i64, context: &str) {
    wait_published(service, later, context);
    let list = http(service.addr, "GET", &top_path("restart/check"), &[]).json();
    assert_eq!(
        top_items(&list)
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["after-restart"],
        "{context}: the purchase after the restart is listed: {list}"
    );
}
