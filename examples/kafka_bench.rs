//! Kafka benchmark: end-to-end throughput from a topic, and freshness (produce → visible over
//! HTTP) at a steady rate, against a running broker.
//!
//! Run with (the script starts a tansu broker on loopback and stops it afterwards):
//! `scripts/kafka-broker run cargo run --release -p topsellers-examples --example kafka_bench -- throughput 3000000`
//! `scripts/kafka-broker run cargo run --release -p topsellers-examples --example kafka_bench -- freshness 100000 30`
//!
//! The broker address comes from `TOPSELLERS_TEST_KAFKA`. Purchases: the built-in generator's
//! model as in `bench/live.toml` (1M items, Zipf popularity, trends, 1% returns; a category tree
//! 3 levels deep with fanout 22, 10,648 leaves, plus the root), JSON payloads on 4 partitions,
//! one profile (7d), k = 100 (`TOP_K` overrides), 2 workers (`WORKERS` overrides).
//!
//! - `throughput N`: produces N purchases first (event times spread over an hour, slightly out
//!   of order), then starts topsellers and reports purchases/s until every purchase is read and
//!   the snapshot covering them is published (up to the smallest per-partition maximum event
//!   time: the rest needs the idle timeout, reported separately).
//! - `freshness RATE SECONDS`: starts topsellers, produces RATE purchases/s with event time =
//!   now, and every 100 ms a probe purchase in a category of its own; reports how long each
//!   probe took from being sent to being listed by `GET /v1/top/probe/N` (p50, p99, max).
//!   With `TRACE=1` a plain consumer also notes when each probe reaches it (the producer's and
//!   broker's share, p50/p99), and the served snapshot's age is sampled at every poll; the
//!   extra consumer costs CPU, so the figure itself is measured without it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use topsellers::config::{DeadLetterConfig, RuntimeConfig, ScoringConfig};
use topsellers::Config;
use topsellers_examples::get;
use topsellers_model::Purchase;
use topsellers_sinks::HttpConfig;
use topsellers_sources::generator::{Catalog, Generator, GeneratorConfig, Rate};
use topsellers_sources::{history, KafkaConfig, SourceConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: i32 = 4;

fn main() -> Result<()> {
    let brokers = std::env::var("TOPSELLERS_TEST_KAFKA")
        .context("TOPSELLERS_TEST_KAFKA is not set: run under `scripts/kafka-broker run`")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("throughput") => {
            throughput(&brokers, args.get(1).map_or(Ok(3_000_000), |n| n.parse())?)
        }
        Some("freshness") => freshness(
            &brokers,
            args.get(1).map_or(Ok(100_000), |n| n.parse())?,
            args.get(2).map_or(Ok(30), |n| n.parse())?,
        ),
        _ => bail!("usage: kafka_bench throughput N | freshness RATE SECONDS"),
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// xorshift64*: picks partitions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The generator settings of `bench/live.toml`.
fn generator_config() -> GeneratorConfig {
    GeneratorConfig {
        rate: Rate::Max,
        items: 1_000_000,
        depth: 3,
        fanout: 22,
        ..GeneratorConfig::default()
    }
}

/// A purchase as the JSON message a shop would send.
fn json(p: &Purchase) -> String {
    format!(
        r#"{{"item_id":"{}","category":"{}","ts":{},"quantity":{}}}"#,
        p.item_id, p.category, p.ts_ms, p.quantity
    )
}

fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for result in runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))? {
        result.map_err(|(name, e)| anyhow::anyhow!("create {name}: {e}"))?;
    }
    Ok(())
}

fn producer(brokers: &str) -> Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?)
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    payload: &str,
) {
    let mut record = BaseRecord::<(), str>::to(topic)
        .partition(partition)
        .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn service_config(brokers: &str, topic: &str) -> anyhow::Result<Config> {
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let mut kafka = KafkaConfig::new(brokers, topic);
    kafka.group = format!("{topic}-bench");
    for (key, value) in [
        ("fetch.wait.max.ms", "10"),
        ("fetch.queue.backoff.ms", "10"),
    ] {
        kafka.properties.insert(key.into(), value.into());
    }
    Ok(Config {
        scoring: ScoringConfig {
            half_lives: vec!["7d".parse()?],
            top_k: std::env::var("TOP_K")
                .ok()
                .and_then(|k| k.parse().ok())
                .unwrap_or(100),
            ..ScoringConfig::default()
        },
        sources: vec![SourceConfig::Kafka(kafka)],
        http: HttpConfig {
            listen: "127.0.0.1:0".into(),
            ..HttpConfig::default()
        },
        dead_letter: DeadLetterConfig {
            path: String::new(),
        },
        runtime: RuntimeConfig {
            workers,
            ..RuntimeConfig::default()
        },
        ..Config::default()
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn throughput(brokers: &str, n: u64) -> Result<()> {
    let topic = format!("bench-throughput-{}", std::process::id());
    create_topic(brokers, &topic)?;
    let producer = producer(brokers)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Event times over `SPAN_MS` (default an hour) ending now.
    let span: i64 = std::env::var("SPAN_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_600_000);
    let config = generator_config();
    let catalog = Arc::new(Catalog::new(&config)?);
    let mut partition_max: BTreeMap<i32, i64> = BTreeMap::new();
    let started = Instant::now();
    for purchase in history(catalog, &config, n, wall_ms(), span)? {
        let partition = (rng.next() % PARTITIONS as u64) as i32;
        let max = partition_max.entry(partition).or_insert(purchase.ts_ms);
        *max = (*max).max(purchase.ts_ms);
        send(&producer, &topic, partition, &json(&purchase));
    }
    producer.flush(Duration::from_secs(300))?;
    println!(
        "produced {n} purchases in {:.1} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    let covered = *partition_max.values().min().expect("partitions");
    let last = *partition_max.values().max().expect("partitions");

    let stop = topsellers::Stop::new();
    let started = Instant::now();
    let service =
        topsellers::run::start_with_stop(&service_config(brokers, &topic)?, stop.clone())?;
    let mut read_all = None;
    loop {
        let published = service.table.published_time_ms().unwrap_or(i64::MIN);
        let read = service.metrics.purchases_total();
        if read_all.is_none() && read >= n * 99 / 100 && published >= covered {
            read_all = Some(started.elapsed());
        }
        if published >= last {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("not done after 30 min: read {read}, published {published}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = started.elapsed();
    let read_all = read_all.unwrap_or(total);
    println!(
        "consumed and published {n} purchases in {:.2} s: {:.0} purchases/s (2 workers); \
         the last event time served after {:.2} s (includes the idle timeout); load {}",
        read_all.as_secs_f64(),
        n as f64 / read_all.as_secs_f64(),
        total.as_secs_f64(),
        load()
    );
    stop.stop();
    service.shutdown()?;
    Ok(())
}

/// A plain consumer of every partition from its end: when each probe arrived.
fn trace_probes(
    brokers: &str,
    topic: &str,
    done: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Vec<(u64, Instant)>>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-trace"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(topic, p, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    Ok(std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !done.load(Ordering::Relaxed) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(10)) {
                let payload = message.payload().unwrap_or_default();
                if let Some(rest) = payload.strip_prefix(b"{\"item_id\":\"probe-".as_slice()) {
                    let digits: Vec<u8> = rest
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .copied()
                        .collect();
                    if let Ok(n) = String::from_utf8_lossy(&digits).parse() {
                        seen.push((n, Instant::now()));
                    }
                }
            }
        }
        seen
    }))
}

fn freshness(brokers: &str, rate: u64, seconds: u64) -> Result<()> {
    let topic = format!("bench-freshness-{}", std::process::id());
    create_topic(brokers, &topic)?;
    let stop = topsellers::Stop::new();
    let service =
        topsellers::run::start_with_stop(&service_config(brokers, &topic)?, stop.clone())?;
    let addr = service.addr;
    let producer = Arc::new(producer(brokers)?);
    let done = Arc::new(AtomicBool::new(false));

    // Load: `rate` purchases per second in 10 ms slices, event time = now.
    let load_thread = {
        let (producer, topic, done) = (producer.clone(), topic.clone(), done.clone());
        let config = generator_config();
        let mut generator = Generator::new(Arc::new(Catalog::new(&config)?), &config, 0, 1)?;
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut sent = 0u64;
            let mut batch = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                generator.poll(wall_ms(), &mut batch, due.saturating_sub(sent) as usize);
                for purchase in batch.drain(..) {
                    let partition = (sent % PARTITIONS as u64) as i32;
                    send(&producer, &topic, partition, &json(&purchase));
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent as f64 / started.elapsed().as_secs_f64()
        })
    };
    // With `TRACE=1`, a plain consumer of the topic notes when each probe reaches a client:
    // the broker's share of the freshness (it costs CPU, so it is off for the figure).
    let delivered = (std::env::var("TRACE").as_deref() == Ok("1"))
        .then(|| trace_probes(brokers, &topic, done.clone()))
        .transpose()?;
    // Probes: one every 100 ms, each in a category of its own, polled over HTTP until listed.
    let warmup = Duration::from_secs(5);
    std::thread::sleep(warmup);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    let mut next_probe = 0u64;
    let mut next_at = Instant::now();
    let mut sent_at = BTreeMap::new();
    let mut staleness = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) || !pending.is_empty() {
        if let Some(published) = service.table.published_time_ms() {
            staleness.push(wall_ms() - published);
        }
        if started.elapsed() < Duration::from_secs(seconds) && Instant::now() >= next_at {
            let payload = format!(
                r#"{{"item_id":"probe-{next_probe}","category":"probe/{next_probe}","ts":{},"quantity":1}}"#,
                wall_ms()
            );
            send(
                &producer,
                &topic,
                (next_probe % PARTITIONS as u64) as i32,
                &payload,
            );
            pending.push((next_probe, Instant::now()));
            sent_at.insert(next_probe, Instant::now());
            next_probe += 1;
            next_at += Duration::from_millis(100);
        }
        pending.retain(|(n, sent)| {
            let listed = matches!(get(addr, &format!("/v1/top/probe/{n}")), Ok((200, body)) if body.contains("probe-"));
            if listed {
                latencies.push(sent.elapsed());
            }
            !listed && sent.elapsed() < Duration::from_secs(60)
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    let text = service.metrics.render_prometheus(wall_ms());
    for line in text
        .lines()
        .filter(|l| l.contains("lag") && !l.starts_with('#'))
    {
        println!("  {line}");
    }
    done.store(true, Ordering::Relaxed);
    let achieved = load_thread.join().expect("load thread");
    if let Some(delivered) = delivered {
        let seen = delivered.join().expect("trace thread");
        let mut delivery: Vec<Duration> = seen
            .iter()
            .filter_map(|(n, at)| Some(at.duration_since(*sent_at.get(n)?)))
            .collect();
        delivery.sort();
        staleness.sort();
        if !delivery.is_empty() && !staleness.is_empty() {
            let q = |v: &[Duration], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
            let s = |q: f64| staleness[((staleness.len() as f64 - 1.0) * q).round() as usize];
            println!(
                "trace: {} probes delivered to a plain consumer: p50 {:?}, p99 {:?}; served \
                 snapshot age (wall - snapshot time, every poll): p50 {} ms, p99 {} ms",
                delivery.len(),
                q(&delivery, 0.5),
                q(&delivery, 0.99),
                s(0.5),
                s(0.99)
            );
        }
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    if latencies.is_empty() {
        bail!("no probe became visible");
    }
    println!(
        "freshness at {achieved:.0} purchases/s (2 workers), {} probes: p50 {:?}, p99 {:?}, max {:?}; ingested {}; load {}",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().expect("probes"),
        service.metrics.purchases_total(),
        load()
    );
    // For scripts/bench-suite.sh: one machine-readable last line.
    println!(
        "RESULT rate={achieved:.0} probes={} p50_s={:.3} p99_s={:.3} max_s={:.3} load={}",
        latencies.len(),
        at(0.5).as_secs_f64(),
        at(0.99).as_secs_f64(),
        latencies.last().expect("probes").as_secs_f64(),
        load().split_whitespace().next().unwrap_or("?")
    );
    stop.stop();
    service.shutdown()?;
    Ok(())
}
