//! The service serves the same lists as `batch::compute` (retention by pre-filtering) on the
//! same purchases, and both agree with the brute-force oracle:
//!
//! - after the backfill of files (which, like batch, reads only the retention window);
//! - after live purchases (Kafka, after a history handed over to it) moved event time on by
//!   more than the retention: every purchase of the history, and some of the topic's, leaves
//!   the lists by retraction at `ts + retention` on the live side, which no pre-filter does.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use topsellers::{Config, Stop};
use topsellers_sources::{KafkaConfig, SourceConfig};
use topsellers_tests::broker::{create_topic, fast_properties, produce, Broker};
use topsellers_tests::{
    assert_no_problems, batch_lists, compare, default_as_of, generate, jsonl_line, same_lists,
    served_lists, served_lists_at, wait_until, write_parts, Fmt, Got, Params, Rec, Spec, DAY,
};

const R: i64 = 2 * DAY;

fn run_vs_batch(seed: u64, workers: usize, k: usize, batch_size: usize) {
    run_vs_batch_sized(seed, workers, k, batch_size, 2000);
}

fn run_vs_batch_sized(seed: u64, workers: usize, k: usize, batch_size: usize, purchases: usize) {
    let history = generate(&Spec::new(seed, purchases, R, false));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::ParquetInt, Fmt::Csv],
        &history.records,
        5,
        seed,
    );
    let params = Params::new(k, workers, batch_size);
    let config = params.config(&paths, "");
    let context = format!("seed {seed} workers {workers} k {k} batch {batch_size}");

    let (summary, batch) = batch_lists(&config, None, &params);
    let until = default_as_of(&history.records).unwrap();
    assert_eq!(summary.as_of_ms, until, "{context}");

    let service = topsellers::run::start(&config).expect("start");
    let published = wait_until(Duration::from_secs(30), || {
        service.table.published_time_ms() == Some(until)
    });
    assert!(
        published,
        "{context}: backfill snapshot not published in 30 s"
    );
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    let served =
        served_lists_at(service.addr, &names, until).unwrap_or_else(|e| panic!("{context}: {e}"));
    service.stop();
    service.shutdown().expect("shutdown");

    assert_no_problems(
        &same_lists(&served, &batch),
        &format!("{context}: served vs batch"),
    );
    let want = params.oracle(&history.records, until);
    assert_no_problems(
        &compare(&served, &want, k, 2),
        &format!("{context}: served vs oracle"),
    );
}

#[test]
fn one_worker_serves_what_batch_computes() {
    run_vs_batch(61, 1, 4, 50_000);
    run_vs_batch(62, 1, 1000, 41);
}

#[test]
fn two_workers_serve_what_batch_computes() {
    run_vs_batch(63, 2, 4, 50_000);
    run_vs_batch(64, 2, 1000, 53);
    run_vs_batch(65, 2, 2, 7);
}

#[test]
fn small_random_services_serve_what_batch_computes() {
    let mut rng = SmallRng::seed_from_u64(7);
    for seed in 200..208 {
        let workers = rng.random_range(1..=3);
        let k = [1, 2, 3, 1000][rng.random_range(0..4)];
        let batch_size = [1, 5, 50_000][rng.random_range(0..3)];
        run_vs_batch_sized(seed, workers, k, batch_size, 300);
    }
}

/// How long the live service may take to read the topic and publish (a liveness bound).
const PATIENCE: Duration = Duration::from_secs(180);

/// The served lists as of the newest list served (lists unchanged since an earlier snapshot
/// are rendered as of it: their scores are decayed on), and that time.
fn served_now(service: &topsellers::run::Service, params: &Params) -> (i64, Got) {
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    let lists = served_lists(service.addr, &names, "served_now");
    let as_of = lists.values().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
    let mut got = Got::new();
    for ((profile, category), (rendered, items)) in lists {
        let decay = (-((as_of - rendered) as f64) / params.half_lives[profile].1 as f64).exp2();
        let items = items.into_iter().map(|(id, s)| (id, s * decay)).collect();
        got.insert((profile, category), items);
    }
    (as_of, got)
}

/// A history up to `A − R` in files, the rest (from the files' last time, `T0`) on a Kafka
/// topic: the backfill enters the files' purchases, and the topic moves event time on to `A`,
/// by which every one of them has expired (retracted on the live side, never pre-filtered).
/// At the end the service serves batch's lists (over the whole history, as files) and the
/// oracle's.
fn live_expiry_vs_batch(seed: u64, workers: usize, k: usize, batch_size: usize) {
    let context = format!("live expiry: seed {seed} workers {workers} k {k} batch {batch_size}");
    let history = generate(&Spec::new(seed, 1500, R, false));
    let a = history.anchor_ms;
    let lake: Vec<Rec> = history
        .records
        .iter()
        .filter(|r| r.ts <= a - R)
        .cloned()
        .collect();
    // The service's default hand-over: the files own purchases before T0, the topic from it on.
    let t0 = default_as_of(&lake).expect("purchases before A − R");
    let on_topic: Vec<Rec> = history
        .records
        .iter()
        .filter(|r| r.ts >= t0)
        .cloned()
        .collect();
    let backfilled = lake
        .iter()
        .filter(|r| r.quantity != 0 && r.ts > t0 - R && r.ts < t0)
        .count();
    assert!(
        backfilled > 50,
        "{context}: {backfilled} purchases to backfill"
    );
    let until = default_as_of(&history.records).expect("purchases");
    assert!(
        until - R >= t0,
        "{context}: the topic must outlive the files' purchases"
    );

    let dir = tempfile::tempdir().unwrap();
    let formats = [Fmt::Jsonl, Fmt::ParquetInt, Fmt::Csv];
    let lake_paths = write_parts(&dir.path().join("lake"), &formats, &lake, 3, seed);
    let all_paths = write_parts(&dir.path().join("all"), &formats, &history.records, 3, seed);
    let broker = Broker::start();
    let topic = format!("run-vs-batch-{seed}-{}", std::process::id());
    create_topic(&broker.addr, &topic, 3);
    let mut rng = SmallRng::seed_from_u64(seed);
    let messages: Vec<(i32, Vec<u8>)> = on_topic
        .iter()
        .map(|rec| {
            (
                rng.random_range(0..3),
                jsonl_line(&mut rng, rec).into_bytes(),
            )
        })
        .collect();
    produce(&broker.addr, &topic, &messages);

    let params = Params::new(k, workers, batch_size);
    let mut kafka = KafkaConfig::new(&broker.addr, &topic);
    kafka.group = format!("{topic}-group");
    for (key, value) in fast_properties() {
        kafka.properties.insert(key.into(), value.into());
    }
    let mut config: Config = params.config(&lake_paths, "");
    config.sources.push(SourceConfig::Kafka(kafka));
    let stop = Stop::new();
    let service = topsellers::run::start_with_stop(&config, stop.clone()).expect("start");
    let read = wait_until(PATIENCE, || {
        service
            .table
            .published_time_ms()
            .is_some_and(|p| p >= until)
            && topsellers_tests::metric(
                &service.metrics.render_prometheus(0),
                "topsellers_kafka_messages_total",
            ) == Some(messages.len() as f64)
    });
    if !read {
        stop.stop();
        panic!(
            "{context}: the topic ({} messages) not read and the snapshot of {until} not \
             served within {PATIENCE:?}: published {:?}, metrics:\n{}",
            messages.len(),
            service.table.published_time_ms(),
            service.metrics.render_prometheus(0)
        );
    }

    let batch_config = params.config(&all_paths, "");
    let mut problems = Vec::new();
    // Retried: a snapshot may be on its way.
    let agrees = wait_until(PATIENCE, || {
        let (as_of, served) = served_now(&service, &params);
        let (_, batch) = batch_lists(&batch_config, Some(as_of), &params);
        problems = same_lists(&served, &batch);
        problems.extend(
            compare(&served, &params.oracle(&history.records, as_of), k, 2)
                .into_iter()
                .map(|p| format!("vs oracle: {p}")),
        );
        problems.is_empty()
    });
    stop.stop();
    service.shutdown().expect("shutdown");
    if !agrees {
        assert_no_problems(&problems, &format!("{context}: served vs batch"));
    }
}

#[test]
fn purchases_expiring_on_the_live_side_leave_what_batch_computes() {
    live_expiry_vs_batch(71, 1, 4, 50_000);
    live_expiry_vs_batch(72, 2, 1000, 41);
    live_expiry_vs_batch(73, 4, 2, 7);
}
