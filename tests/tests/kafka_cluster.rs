//! Kafka in a cluster, against a real broker (tansu) and the `topsellers` binary: 2 processes ×
//! 2 threads reading a topic of 1, 2 or 4 partitions, so that some workers (and, with 1 or 2
//! partitions, a whole process) own no partition or only ones that go quiet. Every process must
//! serve the brute-force oracle's lists as of the last purchase (the topic is quiet after it)
//! and turn ready.
//!
//! Waits are bounded (generous) liveness limits, never timing assertions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use topsellers_tests::broker::{create_topic, fast_properties, produce, Broker};
use topsellers_tests::{
    assert_no_problems, cluster_layout, default_as_of, generate, get, jsonl_line, oracle_problems,
    served_lists, topsellers_exe, wait_until, Params, Proc, Spec, DAY,
};

const K: usize = 5;
/// A liveness bound: how long the cluster may take to serve everything produced.
const PATIENCE: Duration = Duration::from_secs(150);

/// The config file: the scoring of `params` and the Kafka source.
fn config_file(dir: &Path, params: &Params, brokers: &str, topic: &str) -> PathBuf {
    let half_lives: Vec<String> = params
        .half_lives
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    let mut text = format!(
        "[scoring]\nhalf_lives = [{}]\ntop_k = {}\nretention = {:?}\nallowed_lateness = \"0s\"\n\
         [dead_letter]\npath = \"\"\n[runtime]\nbatch_size = {}\n\
         [[sources]]\ntype = \"kafka\"\nbrokers = {brokers:?}\ntopic = {topic:?}\n\
         group = \"{topic}-group\"\n[sources.properties]\n",
        half_lives.join(", "),
        params.k,
        params.retention.0,
        params.batch_size
    );
    for (key, value) in fast_properties() {
        text.push_str(&format!("{key:?} = {value:?}\n"));
    }
    let path = dir.join("topsellers.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn ready(http: SocketAddr) -> bool {
    std::net::TcpStream::connect(http).is_ok() && get(http, "/readyz").status == 200
}

/// The last lines of every process's log.
fn log_tails(procs: &[Proc]) -> String {
    procs
        .iter()
        .enumerate()
        .map(|(p, proc)| {
            let log = proc.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- process {p}:\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A 2-process × 2-thread cluster reading `partitions` partitions of a topic that holds a random
/// history (returns, zero quantities, out of order) and then goes quiet: both processes turn
/// ready and serve the oracle's lists as of the last purchase (at least), the same lists. The
/// purchases at the last event time all go to the last partition (read by process 1), so that
/// the other workers have to learn that time from it.
fn cluster_reads_kafka(seed: u64, partitions: i32) {
    let context = format!("2 processes × 2 threads, {partitions} partitions");
    let broker = Broker::start();
    let topic = format!("cluster-{partitions}-{}", std::process::id());
    create_topic(&broker.addr, &topic, partitions);
    let history = generate(&Spec::new(seed, 1500, 2 * DAY, false));
    let until = default_as_of(&history.records).expect("purchases");
    let mut rng = SmallRng::seed_from_u64(seed);
    let messages: Vec<(i32, Vec<u8>)> = history
        .records
        .iter()
        .map(|rec| {
            let partition = if rec.ts == until {
                partitions - 1
            } else {
                rng.random_range(0..partitions)
            };
            (partition, jsonl_line(&mut rng, rec).into_bytes())
        })
        .collect();
    produce(&broker.addr, &topic, &messages);

    let dir = tempfile::tempdir().unwrap();
    let params = Params::new(K, 2, 300);
    let config = config_file(dir.path(), &params, &broker.addr, &topic);
    let (workers, http) = cluster_layout(dir.path(), 2, 2);
    let procs: Vec<Proc> = (0..2)
        .map(|p| {
            let mut command = Command::new(topsellers_exe());
            command
                .arg("run")
                .arg("--config")
                .arg(&config)
                .arg("--workers")
                .arg(&workers)
                .args(["--process", &p.to_string()])
                .env("RUST_LOG", "info");
            Proc::start(&mut command, dir.path().join(format!("p{p}.log")))
        })
        .collect();
    let addrs: Vec<SocketAddr> = http.iter().map(|a| a.parse().unwrap()).collect();

    // Every process turns ready (nothing is left to catch up on: the topic is quiet).
    for (p, &addr) in addrs.iter().enumerate() {
        let up = wait_until(PATIENCE, || ready(addr));
        let reason = std::net::TcpStream::connect(addr)
            .map(|_| get(addr, "/readyz").text())
            .unwrap_or_default();
        assert!(
            up,
            "{context}: process {p} not ready ({reason}); logs:\n{}",
            log_tails(&procs)
        );
    }
    // Every process serves the oracle's lists as of the last purchase's time or later.
    for (p, &addr) in addrs.iter().enumerate() {
        let mut problems = Vec::new();
        let served = wait_until(PATIENCE, || {
            problems = oracle_problems(addr, &params, &history.records, &history.twins, until);
            problems.is_empty()
        });
        if !served {
            eprintln!("{}", log_tails(&procs));
            assert_no_problems(&problems, &format!("{context}: process {p} vs oracle"));
        }
    }
    // The same lists, at the same snapshot time, everywhere (waiting out a publish in flight).
    let names: Vec<&str> = params.half_lives.iter().map(|(n, _)| *n).collect();
    let same = wait_until(PATIENCE, || {
        let first = served_lists(addrs[0], &names, &context);
        addrs[1..]
            .iter()
            .all(|&addr| served_lists(addr, &names, &context) == first)
    });
    assert!(same, "{context}: the processes serve different lists");
}

/// Process 1's workers own no partition: they must follow the others' event time.
#[test]
fn kafka_cluster_with_one_partition_serves_the_oracle_on_every_process() {
    cluster_reads_kafka(111, 1);
}

/// Two partitions for four workers: one process owns both.
#[test]
fn kafka_cluster_with_two_partitions_serves_the_oracle_on_every_process() {
    cluster_reads_kafka(112, 2);
}

/// One partition per worker: once the topic is quiet, every worker must reach the last
/// purchase's time, whichever process read it.
#[test]
fn kafka_cluster_on_a_quiet_topic_serves_the_last_purchase_on_every_process() {
    cluster_reads_kafka(113, 4);
}
