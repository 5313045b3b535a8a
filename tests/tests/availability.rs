//! Hiding unavailable items, end to end through the `topsellers` binary and HTTP, against a
//! brute-force oracle computed here: random purchases (a files backfill) and random
//! availability records, first from a file and a Kafka topic filled before the start (read
//! from the beginning before `/readyz` turns ready), then flipped live on the topic in rounds
//! (records with random, often stale, `ts`). After every round each served list must be the
//! oracle's: the top `k + buffer` by exact score, minus the items whose latest record (by
//! `ts`, `false` winning a tie) says unavailable, first `k`. `?include_unavailable=true` must
//! list the first `k` by score with their marks. At 1, 2 and 4 workers. Bad availability
//! records (in the file and on the topic) are dead-lettered with their positions.
//!
//! Scores are random sums at distinct millisecond times, so no two items tie (a tie at the
//! `k + buffer` cut would make the candidates ambiguous). Waits are generous liveness bounds.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use topsellers_tests::broker::{create_topic, fast_properties, produce, Broker};
use topsellers_tests::{
    assert_no_problems, compare, free_loopback_addresses, get, metric, oracle, served_lists,
    topsellers_exe, wait_until, write_file, Expected, Fmt, Got, Proc, Rec, DAY, HOUR,
};

const K: usize = 4;
const BUFFER: usize = 3;
const HALF_LIVES: [(&str, i64); 2] = [("1h", HOUR), ("7d", 7 * DAY)];
const RETENTION: (&str, i64) = ("2d", 2 * DAY);
const ITEMS: usize = 40;
const PARTITIONS: i32 = 2;
/// A liveness bound for every wait.
const PATIENCE: Duration = Duration::from_secs(180);
/// The last purchase's time (a fixed, recent-enough past).
const END: i64 = 1_790_000_000_000;

/// One availability record as the test means it.
#[derive(Clone, Debug)]
struct Mark {
    item: String,
    available: bool,
    ts: i64,
}

impl Mark {
    fn json(&self) -> String {
        format!(
            "{{\"item_id\":\"{}\",\"available\":{},\"ts\":{}}}",
            self.item, self.available, self.ts
        )
    }
}

fn item(n: usize) -> String {
    format!("sku-{n}")
}

/// Random purchases of `ITEMS` items in a small category tree over the last day, each at its
/// own millisecond, a few of them returns.
fn purchases(rng: &mut SmallRng) -> Vec<Rec> {
    let categories = ["a/x", "a/y", "b", "b/z/w"];
    let mut times: Vec<i64> = (0..1200).map(|n| END - n * 61_003).collect();
    times.sort_unstable();
    times
        .into_iter()
        .map(|ts| {
            let quantity = if rng.random_bool(0.05) {
                -1
            } else {
                rng.random_range(1..4)
            };
            // Popularity skewed so that lists have clear leaders and a long tail.
            let n = (rng.random_range(0.0f64..1.0).powi(2) * ITEMS as f64) as usize;
            Rec::new(
                &item(n),
                categories[rng.random_range(0..categories.len())],
                ts,
                quantity,
            )
        })
        .collect()
}

/// `n` random records, `ts` in `[from, to)`, ~40% unavailable.
fn marks(rng: &mut SmallRng, n: usize, from: i64, to: i64) -> Vec<Mark> {
    (0..n)
        .map(|_| Mark {
            item: item(rng.random_range(0..ITEMS)),
            available: rng.random_bool(0.6),
            ts: rng.random_range(from..to),
        })
        .collect()
}

/// The oracle's availability: per item the record with the largest `ts` decides, `false`
/// winning a tie; an item without records is available.
fn available(marks: &[Mark]) -> HashMap<String, bool> {
    let mut latest: HashMap<String, (i64, bool)> = HashMap::new();
    for mark in marks {
        let key = (mark.ts, !mark.available);
        let entry = latest.entry(mark.item.clone()).or_insert(key);
        *entry = (*entry).max(key);
    }
    latest
        .into_iter()
        .map(|(item, (_, unavailable))| (item, !unavailable))
        .collect()
}

/// The oracle's lists as shown: of each list's first `K + BUFFER` by score, the available ones.
fn shown(full: &Expected, open: &HashMap<String, bool>) -> Expected {
    let mut want = full.clone();
    for entries in want.lists.values_mut() {
        entries.truncate(K + BUFFER);
        entries.retain(|e| open.get(&e.item_id).copied().unwrap_or(true));
    }
    want
}

/// The served lists decayed to the newest `as_of` among them, and that time.
fn served(addr: SocketAddr) -> (i64, Got) {
    let names: Vec<&str> = HALF_LIVES.iter().map(|(name, _)| *name).collect();
    let lists = served_lists(addr, &names, "availability");
    let as_of = lists.values().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
    let got = lists
        .into_iter()
        .map(|((profile, cat), (rendered, items))| {
            let decay = (-((as_of - rendered) as f64) / HALF_LIVES[profile].1 as f64).exp2();
            let items = items.into_iter().map(|(i, s)| (i, s * decay)).collect();
            ((profile, cat), items)
        })
        .collect();
    (as_of, got)
}

/// What is wrong with the served lists and the `include_unavailable` view, against the oracle
/// over `records` and `marks`.
fn problems(addr: SocketAddr, records: &[Rec], marks: &[Mark]) -> Vec<String> {
    let (as_of, got) = served(addr);
    let half_lives: Vec<i64> = HALF_LIVES.iter().map(|(_, h)| *h).collect();
    let full = oracle(records, as_of, &half_lives, RETENTION.1);
    let open = available(marks);
    let mut problems = compare(&got, &shown(&full, &open), K, HALF_LIVES.len());
    if as_of < END {
        problems.push(format!(
            "served as of {as_of}, before the last purchase {END}"
        ));
    }
    // Hidden items listed, marked: the first k by score.
    for ((profile, cat), entries) in &full.lists {
        let target = format!(
            "{}?profile={}&include_unavailable=true",
            topsellers_tests::top_path(cat),
            HALF_LIVES[*profile].0
        );
        let doc = get(addr, &target).json();
        let have: Vec<(String, bool)> = doc["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["item_id"].as_str().unwrap_or("?").to_owned(),
                            i["available"].as_bool().unwrap_or(true),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, bool)> = entries
            .iter()
            .take(K)
            .map(|e| {
                let flag = open.get(&e.item_id).copied().unwrap_or(true);
                (e.item_id.clone(), flag)
            })
            .collect();
        if have != want {
            problems.push(format!("{target}: {have:?}, want {want:?}"));
        }
    }
    problems
}

/// Polls until the served lists are the oracle's; fails with the last problems.
fn check(addr: SocketAddr, records: &[Rec], marks: &[Mark], service: &Proc, context: &str) {
    let mut last = Vec::new();
    let agrees = wait_until(PATIENCE, || {
        last = problems(addr, records, marks);
        last.is_empty()
    });
    if !agrees {
        eprintln!("{}", service.log());
        assert_no_problems(&last, context);
    }
}

/// Waits until the service has applied `valid` availability records.
fn wait_records(addr: SocketAddr, valid: usize, service: &Proc, context: &str) {
    let mut seen = None;
    let applied = wait_until(PATIENCE, || {
        seen = metric(
            &get(addr, "/metrics").text(),
            "topsellers_availability_records_total",
        );
        seen == Some(valid as f64)
    });
    assert!(
        applied,
        "{context}: {seen:?} availability records applied, {valid} sent; log:\n{}",
        service.log()
    );
}

fn toml_list(paths: &[&Path]) -> String {
    let quoted: Vec<String> = paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn run_case(broker: &Broker, seed: u64, workers: usize) {
    let context = format!("seed {seed}, {workers} workers");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let records = purchases(&mut rng);
    let input = dir.path().join("purchases.jsonl");
    write_file(&input, Fmt::Jsonl, &records, seed);

    // Before the start: a file (with a bad line) and a topic (with a bad message).
    let mut all = marks(&mut rng, 25, 0, 1000);
    let file = dir.path().join("availability.jsonl");
    let mut text = String::new();
    for (at, mark) in all.iter().enumerate() {
        text.push_str(&mark.json());
        text.push('\n');
        if at == 0 {
            text.push_str("{\"item_id\":\"sku-1\",\"available\":\"no\",\"ts\":5}\n");
        }
    }
    std::fs::write(&file, text).unwrap();
    let topic = format!("availability-{seed}-{workers}");
    create_topic(&broker.addr, &topic, PARTITIONS);
    let before = marks(&mut rng, 25, 0, 1000);
    let mut messages: Vec<(i32, Vec<u8>)> = before
        .iter()
        .map(|m| (rng.random_range(0..PARTITIONS), m.json().into_bytes()))
        .collect();
    messages.push((0, b"not json".to_vec()));
    produce(&broker.addr, &topic, &messages);
    all.extend(before);

    let dead = dir.path().join("dead.jsonl");
    let properties: String = fast_properties()
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}\n"))
        .collect();
    let config = dir.path().join("topsellers.toml");
    std::fs::write(
        &config,
        format!(
            "[scoring]\nhalf_lives = [\"1h\", \"7d\"]\ntop_k = {K}\nretention = {:?}\n\n\
             [[sources]]\ntype = \"files\"\npaths = {}\n\n\
             [table]\nbuffer = {BUFFER}\n\n\
             [availability]\npaths = {}\ntopic = {topic:?}\nbrokers = {:?}\n\n\
             [availability.properties]\n{properties}\n\
             [dead_letter]\npath = {:?}\n",
            RETENTION.0,
            toml_list(&[&input]),
            toml_list(&[&file]),
            broker.addr,
            dead.display().to_string(),
        ),
    )
    .unwrap();
    let http = free_loopback_addresses(1).remove(0);
    let addr: SocketAddr = http.parse().unwrap();
    let mut command = Command::new(topsellers_exe());
    command
        .args(["run", "--config"])
        .arg(&config)
        .args(["--http", &http, "--workers", &workers.to_string()])
        .env("RUST_LOG", "info");
    let service = Proc::start(&mut command, dir.path().join("stderr.log"));
    // Nothing listens until the availability file is read: a refused connection is "not yet".
    let ready = wait_until(PATIENCE, || {
        std::net::TcpStream::connect(addr).is_ok() && get(addr, "/readyz").status == 200
    });
    assert!(ready, "{context}: not ready; log:\n{}", service.log());
    // Ready means the file and the topic as it was are read.
    let metrics = get(addr, "/metrics").text();
    assert_eq!(
        metric(&metrics, "topsellers_availability_records_total"),
        Some(all.len() as f64),
        "{context}: records applied when ready"
    );
    check(
        addr,
        &records,
        &all,
        &service,
        &format!("{context}, at start"),
    );

    // Live flips, in rounds; later rounds reach further in time, and stale records (older
    // than an item's latest) are mixed in.
    for round in 1..=4_i64 {
        let batch = marks(&mut rng, 12, round * 300, 1000 + round * 300);
        let mut messages: Vec<(i32, Vec<u8>)> = batch
            .iter()
            .map(|m| (rng.random_range(0..PARTITIONS), m.json().into_bytes()))
            .collect();
        if round == 2 {
            messages.push((
                1,
                b"{\"item_id\":\"\",\"available\":true,\"ts\":1}".to_vec(),
            ));
        }
        produce(&broker.addr, &topic, &messages);
        all.extend(batch);
        let context = format!("{context}, round {round}");
        wait_records(addr, all.len(), &service, &context);
        check(addr, &records, &all, &service, &context);
    }

    // Restock everything: every list is the plain top k again.
    let restock: Vec<Mark> = (0..ITEMS)
        .map(|n| Mark {
            item: item(n),
            available: true,
            ts: 10_000,
        })
        .collect();
    let messages: Vec<(i32, Vec<u8>)> = restock
        .iter()
        .map(|m| (rng.random_range(0..PARTITIONS), m.json().into_bytes()))
        .collect();
    produce(&broker.addr, &topic, &messages);
    all.extend(restock);
    wait_records(addr, all.len(), &service, &context);
    check(
        addr,
        &records,
        &all,
        &service,
        &format!("{context}, restocked"),
    );

    // The bad records: counted, dead-lettered with their positions.
    let dead_letters = std::fs::read_to_string(&dead).unwrap_or_default();
    let positions: BTreeMap<String, String> = dead_letters
        .lines()
        .map(|line| {
            let doc: serde_json::Value = serde_json::from_str(line).expect("dead letter JSON");
            (
                doc["position"].as_str().unwrap_or("").to_owned(),
                doc["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want_file = format!("{}:2", file.display());
    assert!(
        positions.contains_key(&want_file),
        "{context}: {want_file} not dead-lettered: {dead_letters}"
    );
    let on_topic = positions
        .keys()
        .filter(|p| p.starts_with(&format!("{topic}/")))
        .count();
    assert_eq!(on_topic, 2, "{context}: topic dead letters: {dead_letters}");
    drop(service);
}

#[test]
fn unavailable_items_are_hidden_and_backfilled_at_1_2_and_4_workers() {
    let broker = Broker::start();
    for (seed, workers) in [(1, 1), (2, 2), (3, 4)] {
        run_case(&broker, seed, workers);
    }
}
