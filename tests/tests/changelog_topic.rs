//! The changelog topic, read back from a real broker (tansu) and compacted by key (the last
//! message of each key, as a compacted topic keeps it), holds exactly the lists the service
//! serves (and the served lists are the brute-force oracle's):
//!
//! - after the first start;
//! - after a restart whose lists differ from the previous run's: without a state, a Kafka
//!   source resumes from the committed offsets, so the lists of the previous run's purchases
//!   are empty now (their categories unknown), and must be empty on the topic too;
//! - after lists empty while running: purchases expire as event time moves on, and a return
//!   cancels an item.
//!
//! Waits are bounded (generous) liveness limits, never timing assertions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use topsellers::run::Service;
use topsellers::Config;
use topsellers_sources::{KafkaConfig, SourceConfig};
use topsellers_tests::broker::{create_topic, fast_properties, produce, read_to_end, Broker};
use topsellers_tests::{
    assert_no_problems, default_as_of, generate, jsonl_line, metric, oracle_problems, served_lists,
    start_service as start, Params, Rec, Spec, DAY, HOUR,
};

const K: usize = 4;
const PARTITIONS: i32 = 2;
/// How long the service may take to consume, publish and send everything (a liveness bound).
const PATIENCE: Duration = Duration::from_secs(180);

/// A service reading `topic` (group `group`), sending its lists to `changelog`.
fn config(params: &Params, brokers: &str, topic: &str, changelog: &str) -> Config {
    let mut kafka = KafkaConfig::new(brokers, topic);
    kafka.group = format!("{topic}-group");
    for (key, value) in fast_properties() {
        kafka.properties.insert(key.into(), value.into());
    }
    let mut config = params.config(&[], "");
    config.sources = vec![SourceConfig::Kafka(kafka)];
    config.changelog.topic = Some(changelog.to_owned());
    config
}

/// Each record as a JSON message on a random partition.
fn messages(seed: u64, records: &[Rec]) -> Vec<(i32, Vec<u8>)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    records
        .iter()
        .map(|rec| {
            (
                rng.random_range(0..PARTITIONS),
                jsonl_line(&mut rng, rec).into_bytes(),
            )
        })
        .collect()
}

/// A generated history moved in time so that its last purchase is at `last`.
fn history_ending_at(seed: u64, purchases: usize, last: i64) -> Vec<Rec> {
    let mut records = generate(&Spec::new(seed, purchases, 2 * DAY, false)).records;
    let shift = last - default_as_of(&records).expect("purchases");
    for rec in &mut records {
        rec.ts += shift;
    }
    records
}

/// Waits until the service has read `messages` messages and served the snapshot of `until`.
fn wait_caught_up(service: &Service, until: i64, messages: usize, context: &str) {
    let caught_up = topsellers_tests::wait_until(PATIENCE, || {
        service
            .table
            .published_time_ms()
            .is_some_and(|p| p >= until)
            && metric(
                &service.metrics.render_prometheus(0),
                "topsellers_kafka_messages_total",
            ) == Some(messages as f64)
    });
    assert!(
        caught_up,
        "{context}: {messages} messages and the snapshot of {until} not served within \
         {PATIENCE:?}: published {:?}, readiness {:?}, metrics:\n{}",
        service.table.published_time_ms(),
        service.readiness.reason(),
        service.metrics.render_prometheus(0)
    );
}

/// The served lists are the oracle's over `records` (retried: a snapshot may be on its way).
fn check_oracle(service: &Service, params: &Params, records: &[Rec], context: &str) {
    let until = default_as_of(records).expect("purchases");
    let mut problems = Vec::new();
    let agrees = topsellers_tests::wait_until(PATIENCE, || {
        problems = oracle_problems(service.addr, params, records, &[], until);
        problems.is_empty()
    });
    if !agrees {
        assert_no_problems(&problems, &format!("{context}: served vs oracle"));
    }
}

/// The topic's messages compacted by key: the last value of each key.
fn compacted(brokers: &str, topic: &str) -> BTreeMap<String, serde_json::Value> {
    let mut latest = BTreeMap::new();
    let all = read_to_end(brokers, topic);
    for (_, key, value) in all {
        let key = String::from_utf8(key).expect("utf-8 key");
        let doc = serde_json::from_slice(&value)
            .unwrap_or_else(|e| panic!("{key}: not JSON ({e}): {value:?}"));
        latest.insert(key, doc);
    }
    latest
}

/// A list document's items as (item, score).
fn items(doc: &serde_json::Value) -> Vec<(String, f64)> {
    doc["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {doc}"))
        .iter()
        .map(|item| {
            (
                item["item_id"].as_str().expect("item_id").to_owned(),
                item["score"].as_f64().expect("score"),
            )
        })
        .collect()
}

/// What differs between the compacted topic and the served lists: every served list is the
/// latest message of its key (same items in the same order; scores the same once decayed to
/// the same time; no message only where the list is empty), and every key of a list that is
/// not served (an unknown category) holds an empty list.
fn differences(
    addr: SocketAddr,
    brokers: &str,
    topic: &str,
    params: &Params,
    context: &str,
) -> Vec<String> {
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    let served = served_lists(addr, &names, context);
    let mut topic_lists = compacted(brokers, topic);
    let mut problems = Vec::new();
    for ((profile, category), (as_of, want)) in &served {
        let (name, half_life) = params.half_lives[*profile];
        let key = format!("{name}/{category}");
        let Some(doc) = topic_lists.remove(&key) else {
            if !want.is_empty() {
                problems.push(format!("{key}: no message, served {want:?}"));
            }
            continue;
        };
        if doc["category"].as_str() != Some(category) || doc["profile"].as_str() != Some(name) {
            problems.push(format!("{key}: the message names another list: {doc}"));
        }
        let sent_at = doc["as_of"]
            .as_str()
            .and_then(topsellers_tests::parse_rfc3339)
            .unwrap_or_else(|| panic!("{key}: as_of in {doc}"));
        let decay = (-((as_of - sent_at) as f64) / half_life as f64).exp2();
        let got = items(&doc);
        let ids =
            |list: &[(String, f64)]| list.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
        if ids(&got) != ids(want) {
            problems.push(format!(
                "{key}: the topic holds {:?} (as of {sent_at}), served {:?} (as of {as_of})",
                ids(&got),
                ids(want)
            ));
            continue;
        }
        for ((id, score), (_, served_score)) in got.iter().zip(want) {
            let decayed = score * decay;
            if (decayed - served_score).abs() > 1e-9 * decayed.abs().max(served_score.abs()) {
                problems.push(format!(
                    "{key}: {id} scores {score} as of {sent_at} on the topic ({decayed} decayed \
                     to {as_of}), served {served_score}"
                ));
            }
        }
    }
    for (key, doc) in topic_lists {
        if !items(&doc).is_empty() {
            problems.push(format!("{key}: not served, but the topic lists {doc}"));
        }
    }
    problems
}

/// Polls until the compacted topic holds the served lists.
fn check_topic(service: &Service, brokers: &str, topic: &str, params: &Params, context: &str) {
    let mut problems = Vec::new();
    let agrees = topsellers_tests::wait_until(PATIENCE, || {
        problems = differences(service.addr, brokers, topic, params, context);
        problems.is_empty()
    });
    let text = service.metrics.render_prometheus(0);
    if !agrees {
        let failures = metric(&text, "topsellers_changelog_topic_failures_total");
        assert_no_problems(
            &problems,
            &format!("{context}: compacted changelog topic vs served (failures {failures:?})"),
        );
    }
    assert_eq!(
        metric(&text, "topsellers_changelog_topic_failures_total"),
        Some(0.0),
        "{context}:\n{text}"
    );
}

#[test]
fn the_compacted_changelog_topic_holds_the_served_lists_after_a_restart_and_as_lists_empty() {
    let broker = Broker::start();
    let topic = format!("purchases-changelog-{}", std::process::id());
    let changelog = format!("{topic}-topk");
    create_topic(&broker.addr, &topic, PARTITIONS);
    create_topic(&broker.addr, &changelog, 1);
    let mut produced = 0;

    // First run (1 worker): a history, plus a category no later purchase is in.
    let first_last = 1_790_000_000_000;
    let mut first = history_ending_at(81, 600, first_last);
    first.push(Rec::new("lonely", "first-run/only", first_last - HOUR, 3));
    let batch = messages(81, &first);
    produced += batch.len();
    produce(&broker.addr, &topic, &batch);
    let mut params = Params::new(K, 1, 97);
    {
        let (service, _stop) = start(&config(&params, &broker.addr, &topic, &changelog));
        wait_caught_up(&service, first_last, produced, "first run");
        check_oracle(&service, &params, &first, "first run");
        check_topic(&service, &broker.addr, &changelog, &params, "first run");
        service.stop();
        service.shutdown().expect("shutdown");
    }

    // Restart (2 workers) without a state: it resumes after the committed offsets, and its
    // lists are those of the new purchases only, a week later (the first run's have expired
    // anyway): every list of the first run that it does not fill is empty now.
    let second_last = first_last + 7 * DAY;
    let second = history_ending_at(82, 600, second_last);
    let batch = messages(82, &second);
    produce(&broker.addr, &topic, &batch);
    params.workers = 2;
    let (service, _stop) = start(&config(&params, &broker.addr, &topic, &changelog));
    wait_caught_up(&service, second_last, batch.len(), "after the restart");
    let mut seen: Vec<Rec> = first.iter().chain(&second).cloned().collect();
    check_oracle(&service, &params, &seen, "after the restart");
    check_topic(
        &service,
        &broker.addr,
        &changelog,
        &params,
        "after the restart",
    );

    // Lists that fill, then empty while it runs: an item bought, then returned (its score
    // turns negative); a purchase that expires as purchases a retention later move event
    // time on (and with it every purchase before).
    let t = second_last + 1_000;
    let filling = vec![
        Rec::new("soon-gone", "short/lived", t, 1),
        Rec::new("given-back", "returned/item", t, 2),
    ];
    let batch = messages(83, &filling);
    produce(&broker.addr, &topic, &batch);
    wait_caught_up(&service, t, second.len() + batch.len(), "lists filling");
    seen.extend(filling.iter().cloned());
    check_oracle(&service, &params, &seen, "lists filling");
    check_topic(&service, &broker.addr, &changelog, &params, "lists filling");

    let later = t + params.retention.1 + 1;
    let emptying = vec![
        Rec::new("given-back", "returned/item", t + 1_000, -2),
        Rec::new("much-later", "later/on", later, 1),
    ];
    let read_before = second.len() + filling.len();
    let batch = messages(84, &emptying);
    produce(&broker.addr, &topic, &batch);
    wait_caught_up(&service, later, read_before + batch.len(), "lists emptying");
    seen.extend(emptying.iter().cloned());
    check_oracle(&service, &params, &seen, "lists emptying");
    for category in ["short/lived", "returned/item"] {
        let list = topsellers_tests::http(
            service.addr,
            "GET",
            &topsellers_tests::top_path(category),
            &[],
        )
        .json();
        assert!(
            items(&list).is_empty(),
            "{category} should be empty now: {list}"
        );
    }
    check_topic(
        &service,
        &broker.addr,
        &changelog,
        &params,
        "lists emptying",
    );
    service.stop();
    service.shutdown().expect("shutdown");
}
