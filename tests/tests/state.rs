//! Durable state, run the way an operator runs it: the `topsellers` binary with `--state`, a
//! real broker, SIGKILL and SIGTERM, restarts onto other worker counts. The served lists are
//! checked against the brute-force oracle over everything produced, and the dead-letter file
//! against the bad messages produced.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use topsellers_tests::broker::{create_topic, fast_properties, produce, Broker};
use topsellers_tests::{
    assert_no_problems, default_as_of, free_loopback_addresses, generate, get, jsonl_line, metric,
    oracle_problems, topsellers_exe, wait_until, write_parts, Fmt, History, Params, Proc, Rec,
    Spec, DAY,
};

const R: i64 = 2 * DAY;
const K: usize = 5;
const PARTITIONS: i32 = 3;
/// A liveness bound: how long a start may take to serve everything produced.
const PATIENCE: Duration = Duration::from_secs(120);

/// Messages that break the data contract.
const BAD: &[&[u8]] = &[
    b"not a purchase",
    br#"{"item_id":"x","category":"a//b","ts":1790000000000}"#,
    br#"{"item_id":"","category":"a","ts":1790000000000}"#,
    br#"{"item_id":"x","category":"a","ts":1790000000000,"quantity":"two"}"#,
    b"x,books,yesterday,1",
    b"\xff\xfe,books,1790000000000",
];

/// Bad rows of a history file (one per line).
const LAKE_BAD: &str = "{\"item_id\":\"x\",\"category\":\"a\"}\nnot json\n";

/// One service's files and settings.
struct Setup {
    /// Whether the state is on the test S3 server.
    on_s3: bool,
    dir: tempfile::TempDir,
    config: PathBuf,
    dead_letter: PathBuf,
    params: Params,
}

impl Setup {
    /// A config reading `lake` (if any) and then `topic`, keeping its state in the temp dir
    /// with checkpoints every `interval`.
    fn new(broker: &str, topic: &str, lake: Option<&[Rec]>, interval: &str, seed: u64) -> Setup {
        Setup::with_state(broker, topic, lake, interval, seed, None)
    }

    /// [`Setup::new`] with the state at `state` (e.g. an `s3://` URL) instead.
    fn with_state(
        broker: &str,
        topic: &str,
        lake: Option<&[Rec]>,
        interval: &str,
        seed: u64,
        state: Option<String>,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let params = Params::new(K, 1, 300);
        let mut text = format!(
            "[scoring]\nhalf_lives = [\"1h\", \"7d\"]\ntop_k = {K}\nretention = \"2d\"\n\
             allowed_lateness = \"0s\"\n"
        );
        if let Some(lake) = lake {
            let lake_dir = dir.path().join("lake");
            write_parts(&lake_dir, &[Fmt::Parquet, Fmt::Jsonl], lake, 3, seed);
            // Bad rows in the history too: written while it is first read.
            std::fs::write(lake_dir.join("bad.jsonl"), LAKE_BAD).unwrap();
            text.push_str(&format!(
                "[[sources]]\ntype = \"files\"\npaths = [{:?}]\n",
                lake_dir.display().to_string()
            ));
        }
        text.push_str(&format!(
            "[[sources]]\ntype = \"kafka\"\nbrokers = {broker:?}\ntopic = {topic:?}\n\
             group = \"{topic}-group\"\n[sources.properties]\n"
        ));
        for (key, value) in fast_properties() {
            text.push_str(&format!("{key:?} = {value:?}\n"));
        }
        let dead_letter = dir.path().join("dead-letter.jsonl");
        let on_s3 = state.is_some();
        if on_s3 {
            text.push_str(&format!(
                "[lake.s3]\nendpoint = {:?}\n",
                topsellers_tests::s3::endpoint()
            ));
        }
        let state = state.unwrap_or_else(|| dir.path().join("state").display().to_string());
        text.push_str(&format!(
            "[state]\ndir = {state:?}\ninterval = {interval:?}\n[dead_letter]\npath = {:?}\n\
             [runtime]\nbatch_size = 300\n",
            dead_letter.display().to_string()
        ));
        let config = dir.path().join("topsellers.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            on_s3,
            dir,
            config,
            dead_letter,
            params,
        }
    }

    /// `topsellers run --config … --workers N --http ADDR [extra]`, logging to the temp dir.
    fn start(&self, workers: usize, http: &str, extra: &[&str]) -> Proc {
        self.start_with(workers, http, extra, &[])
    }

    /// [`Setup::start`] with environment variables.
    fn start_with(&self, workers: usize, http: &str, extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(topsellers_exe());
        if self.on_s3 {
            command.envs(topsellers_tests::s3::credentials());
        }
        command.envs(env.iter().copied());
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(["--workers", &workers.to_string(), "--http", http])
            .args(extra)
            .env("RUST_LOG", "info,topsellers::state=debug");
        Proc::start(&mut command, self.dir.path().join("topsellers.log"))
    }

    /// Process `process` of the cluster `workers` describes (its HTTP address is there), with
    /// environment variables, logging to `p<process>.log` in the temp dir.
    fn start_process(&self, workers: &Path, process: usize, env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(topsellers_exe());
        command
            .envs(env.iter().copied())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--workers")
            .arg(workers)
            .args(["--process", &process.to_string()])
            .env("RUST_LOG", "info,topsellers::state=debug");
        Proc::start(
            &mut command,
            self.dir.path().join(format!("p{process}.log")),
        )
    }

    /// The dead-letter file's lines by position.
    fn dead_letters(&self) -> BTreeMap<String, usize> {
        dead_letters_in(std::slice::from_ref(&self.dead_letter))
    }
}

/// The lines of the dead-letter files `paths`, together, by position.
/// Every bad record, the topic's `topic_bad` and the lake's, is in `dead` exactly once.
fn assert_each_bad_record_once(dead: &BTreeMap<String, usize>, topic_bad: usize) {
    let repeated: Vec<_> = dead.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        repeated.is_empty(),
        "dead letters written more than once: {repeated:?}"
    );
    let lake_bad = LAKE_BAD.lines().count();
    assert_eq!(
        dead.len(),
        topic_bad + lake_bad,
        "each bad record once: {dead:?}"
    );
}

fn dead_letters_in(paths: &[PathBuf]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a dead letter that is not JSON: {line:?}: {e}"));
            let position = value["position"].as_str().expect("position").to_owned();
            *out.entry(position).or_insert(0) += 1;
        }
    }
    out
}

/// Each record as a JSON message on a random partition, with `BAD` mixed in `copies` times
/// each; how many bad messages there are.
fn messages(
    seed: u64,
    records: &[Rec],
    copies: usize,
    partitions: i32,
) -> (Vec<(i32, Vec<u8>)>, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut messages: Vec<(i32, Vec<u8>)> = records
        .iter()
        .map(|rec| {
            (
                rng.random_range(0..partitions),
                jsonl_line(&mut rng, rec).into_bytes(),
            )
        })
        .collect();
    for payload in BAD.iter().cycle().take(BAD.len() * copies) {
        let at = rng.random_range(0..=messages.len());
        messages.insert(at, (rng.random_range(0..partitions), payload.to_vec()));
    }
    (messages, BAD.len() * copies)
}

/// [`wait_for_oracle`] for every process of a cluster, the `p`-th serving at `addrs[p]`.
fn wait_for_cluster_oracle(
    addrs: &[SocketAddr],
    procs: &[Proc],
    params: &Params,
    history: &History,
    context: &str,
) {
    for (p, (&addr, proc)) in addrs.iter().zip(procs).enumerate() {
        wait_for_oracle(
            addr,
            proc,
            params,
            &history.records,
            &history.twins,
            &format!("{context}, process {p}"),
        );
    }
}

fn ready(http: SocketAddr) -> bool {
    std::net::TcpStream::connect(http).is_ok() && get(http, "/readyz").status == 200
}

/// Waits until the service at `http` serves the oracle's lists over `records` (it may still be
/// catching up); panics with the problems (and the log) after [`PATIENCE`].
fn wait_for_oracle(
    http: SocketAddr,
    proc: &Proc,
    params: &Params,
    records: &[Rec],
    twins: &[(String, String)],
    context: &str,
) {
    let until = default_as_of(records).expect("purchases");
    let mut problems = vec!["not ready".to_owned()];
    let served = wait_until(PATIENCE, || {
        if !ready(http) {
            return false;
        }
        problems = oracle_problems(http, params, records, twins, until);
        problems.is_empty()
    });
    if !served {
        let log = proc.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "{context}: log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        assert_no_problems(&problems, context);
    }
}

/// The lake holds the first part of `records` by time, the topic everything from a little
/// before the lake's end (the hand-over is at the lake's last time), in an order shuffled by
/// `rng`: late events.
fn lake_and_topic(records: &[Rec], rng: &mut SmallRng) -> (Vec<Rec>, Vec<Rec>) {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| r.ts);
    let n = sorted.len();
    let lake = sorted[..n * 2 / 5].to_vec();
    let mut on_topic = sorted[n / 3..].to_vec();
    on_topic.shuffle(rng);
    (lake, on_topic)
}

/// The issue's proof: a stream with returns, late events and bad messages, a history read
/// first, and the service SIGKILLed at random moments (during the backfill, mid-stream, during
/// a checkpoint: they are written every 100 ms) and restarted each time with the same state on
/// 1, 2 or 4 workers. At the end the served lists are the oracle's over everything produced,
/// each purchase once, and the dead-letter file holds each bad message exactly once.
#[test]
fn sigkill_at_random_moments_loses_and_double_counts_nothing() {
    let seed = 91;
    let history = generate(&Spec::new(seed, 2400, R, false));
    let mut rng = SmallRng::seed_from_u64(seed);
    let (lake, on_topic) = lake_and_topic(&history.records, &mut rng);
    // Many bad messages: most checkpoints append some.
    let (messages, bad) = messages(seed, &on_topic, 15, PARTITIONS);
    let broker = Broker::start();
    let topic = format!("state-kill-{}", std::process::id());
    create_topic(&broker.addr, &topic, PARTITIONS);
    let setup = Setup::new(&broker.addr, &topic, Some(&lake), "100ms", seed);
    let http: SocketAddr = free_loopback_addresses(1)[0].parse().unwrap();

    let bursts: Vec<&[(i32, Vec<u8>)]> = messages.chunks(messages.len() / 8 + 1).collect();
    let mut produced = 0;
    let kills = 12;
    // Checkpoints every 100 ms, each pausing 150 ms after it appended its bad records: most
    // kills land inside one.
    let pause = [("TOPSELLERS_FAILPOINT_CHECKPOINT_PAUSE_MS", "150")];
    for round in 0..kills {
        let workers = [1, 2, 4][rng.random_range(0..3)];
        let mut proc = setup.start_with(workers, &http.to_string(), &[], &pause);
        if let Some(burst) = bursts.get(produced) {
            produce(&broker.addr, &topic, burst);
            produced += 1;
        }
        // Early (the backfill, or reading the state back), mid-stream, or later.
        let wait = match round % 3 {
            0 => rng.random_range(20..300),
            1 => rng.random_range(300..1500),
            _ => rng.random_range(1500..3000),
        };
        std::thread::sleep(Duration::from_millis(wait));
        proc.child.kill().expect("SIGKILL");
        proc.child.wait().expect("reaped");
    }
    for burst in &bursts[produced..] {
        produce(&broker.addr, &topic, burst);
    }
    let proc = setup.start(2, &http.to_string(), &[]);
    wait_for_oracle(
        http,
        &proc,
        &setup.params,
        &history.records,
        &history.twins,
        &format!("after {kills} SIGKILLs"),
    );
    assert_each_bad_record_once(&setup.dead_letters(), bad);
    let log = proc.log();
    assert!(
        log.matches("restoring checkpoint").count() >= 3,
        "most starts restored a checkpoint:\n{log}"
    );
}

/// SIGTERM writes a last checkpoint; the next start (on another worker count) serves the lists
/// at once, reads no message again, turns ready on the quiet topic, and goes on with what comes
/// next.
#[test]
fn sigterm_checkpoints_and_the_next_start_reads_nothing_twice() {
    let seed = 92;
    let history = generate(&Spec::new(seed, 1500, R, false));
    let mut sorted = history.records.clone();
    sorted.sort_by_key(|r| r.ts);
    let (first, second) = sorted.split_at(sorted.len() * 2 / 3);
    let broker = Broker::start();
    let topic = format!("state-term-{}", std::process::id());
    create_topic(&broker.addr, &topic, PARTITIONS);
    // An interval longer than the test: only the last checkpoint is written.
    let setup = Setup::new(&broker.addr, &topic, None, "1h", seed);
    let http: SocketAddr = free_loopback_addresses(1)[0].parse().unwrap();
    let (early, bad) = messages(seed, first, 1, PARTITIONS);
    produce(&broker.addr, &topic, &early);
    let mut proc = setup.start(1, &http.to_string(), &[]);
    wait_for_oracle(http, &proc, &setup.params, first, &[], "first run");
    sigterm(&proc);
    let status = proc.exit_within(Duration::from_secs(60)).expect("stops");
    assert!(
        status.success(),
        "SIGTERM exits cleanly: {status}\n{}",
        proc.log()
    );
    assert_eq!(setup.dead_letters().len(), bad, "bad messages written once");

    // The restart: lists at once, nothing read again, ready on the quiet topic.
    let restarted = std::time::Instant::now();
    let proc = setup.start(4, &http.to_string(), &[]);
    let serving = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(http).is_ok() && get(http, "/v1/top").status == 200
    });
    assert!(serving, "the restored lists are served:\n{}", proc.log());
    assert!(
        wait_until(Duration::from_secs(30), || ready(http)),
        "a quiet topic after a restart turns ready: {}\n{}",
        get(http, "/readyz").text(),
        proc.log()
    );
    let readyz = get(http, "/readyz");
    assert!(
        readyz.status == 200 && readyz.json()["reason"] == "backfill done, live",
        "live: {}",
        readyz.text()
    );
    let problems = oracle_problems(
        http,
        &setup.params,
        first,
        &[],
        default_as_of(first).unwrap(),
    );
    assert_no_problems(&problems, "restored lists");
    let text = get(http, "/metrics").text();
    assert_eq!(
        metric(&text, "topsellers_kafka_messages_total"),
        Some(0.0),
        "nothing read twice\n{text}"
    );
    // The first run read every message produced, and checkpointed on SIGTERM: each partition
    // resumed after its last message (the topic's offsets count from 0).
    let mut on_partition = BTreeMap::new();
    for (partition, _) in &early {
        *on_partition.entry(*partition).or_insert(0) += 1;
    }
    for (partition, count) in on_partition {
        let series = format!(
            "topsellers_kafka_restored_offset{{topic=\"{topic}\",partition=\"{partition}\"}}"
        );
        assert_eq!(
            metric(&text, &series),
            Some(count as f64),
            "{series}\n{text}"
        );
    }
    let restore = metric(&text, "topsellers_restore_duration_seconds");
    assert!(
        restore.is_some_and(|s| s > 0.0 && s < restarted.elapsed().as_secs_f64()),
        "restore duration {restore:?}\n{text}"
    );
    // What comes next counts, once.
    let (late, _) = messages(seed + 1, second, 1, PARTITIONS);
    let late: Vec<_> = late
        .into_iter()
        .filter(|(_, payload)| !BAD.contains(&payload.as_slice()))
        .collect();
    produce(&broker.addr, &topic, &late);
    wait_for_oracle(
        http,
        &proc,
        &setup.params,
        &sorted,
        &[],
        "after the restart",
    );
    assert_eq!(
        setup.dead_letters().len(),
        bad,
        "bad messages still written once"
    );
}

/// The state on S3 (an S3-compatible server on loopback): a SIGKILL and a restart lose and
/// double-count nothing, as on a local disk.
#[test]
fn a_state_on_s3_survives_a_sigkill() {
    let seed = 94;
    let history = generate(&Spec::new(seed, 1200, R, false));
    let mut sorted = history.records.clone();
    sorted.sort_by_key(|r| r.ts);
    let (first, second) = sorted.split_at(sorted.len() / 2);
    let broker = Broker::start();
    let topic = format!("state-s3-{}", std::process::id());
    create_topic(&broker.addr, &topic, PARTITIONS);
    let bucket = topsellers_tests::s3::TestBucket::create();
    let setup = Setup::with_state(
        &broker.addr,
        &topic,
        None,
        "200ms",
        seed,
        Some(bucket.url("state/")),
    );
    let http: SocketAddr = free_loopback_addresses(1)[0].parse().unwrap();
    let (early, bad) = messages(seed, first, 2, PARTITIONS);
    produce(&broker.addr, &topic, &early);
    let mut proc = setup.start(2, &http.to_string(), &[]);
    wait_for_oracle(http, &proc, &setup.params, first, &[], "on S3, first run");
    // Long enough for a checkpoint after the last purchase.
    std::thread::sleep(Duration::from_millis(800));
    proc.child.kill().expect("SIGKILL");
    proc.child.wait().expect("reaped");
    let (late, more_bad) = messages(seed + 1, second, 2, PARTITIONS);
    produce(&broker.addr, &topic, &late);
    let proc = setup.start(1, &http.to_string(), &[]);
    wait_for_oracle(
        http,
        &proc,
        &setup.params,
        &sorted,
        &[],
        "on S3, after a SIGKILL",
    );
    let log = proc.log();
    assert!(
        log.contains("restoring checkpoint"),
        "restored from S3:\n{log}"
    );
    let dead = setup.dead_letters();
    assert!(
        dead.values().all(|&n| n == 1),
        "each bad record once: {dead:?}"
    );
    assert_eq!(dead.len(), bad + more_bad, "{dead:?}");
}

/// A state written under another scoring is refused at start, with an error that says what
/// differs and how to rebuild; the state is left as it was.
#[test]
fn a_state_of_another_scoring_is_refused() {
    let broker = Broker::start();
    let topic = format!("state-refuse-{}", std::process::id());
    create_topic(&broker.addr, &topic, 1);
    let setup = Setup::new(&broker.addr, &topic, None, "1h", 93);
    let http = free_loopback_addresses(1).remove(0);
    let mut proc = setup.start(1, &http, &[]);
    assert!(wait_until(PATIENCE, || ready(http.parse().unwrap())));
    sigterm(&proc);
    assert!(proc
        .exit_within(Duration::from_secs(60))
        .expect("stops")
        .success());
    let state = setup.dir.path().join("state");
    let before = listing(&state);
    assert!(
        before.iter().any(|name| name.starts_with("manifest-")),
        "{before:?}"
    );
    for (flags, key) in [
        (&["--top", "7"][..], "scoring.top_k"),
        (&["--half-life", "1h"][..], "scoring.half_lives"),
        (&["--retention", "3d"][..], "scoring.retention"),
    ] {
        let mut proc = setup.start(1, &http, flags);
        let status = proc.exit_within(Duration::from_secs(60)).expect("exits");
        let log = proc.log();
        assert!(!status.success(), "{flags:?}: refused\n{log}");
        let last = log.lines().last().unwrap_or_default();
        assert!(
            log.contains(key) && log.contains("empty state directory"),
            "{flags:?}: the error names {key} and how to rebuild: {last}"
        );
        assert_eq!(listing(&state), before, "{flags:?}: the state is untouched");
    }
}

fn sigterm(proc: &Proc) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proc.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A checkpoint holds the served lists, so none may be written between the backfill's end
/// and the publisher serving its snapshot: one that was (seen once in nine restarts of a
/// year's history) held no lists, and a restart from it served nothing until caught up. Here
/// the publisher is held after the backfill (a failpoint); if a checkpoint is written
/// meanwhile the service is killed at once, else once the snapshot is served and checkpointed.
/// Either way the restart, its re-read of the history held too, must serve the restored lists
/// — the oracle's — before it is ready.
#[test]
fn a_restart_serves_the_checkpoints_lists_before_it_is_ready() {
    let seed = 94;
    let history = generate(&Spec::new(seed, 900, R, false));
    let broker = Broker::start();
    let topic = format!("state-served-{}", std::process::id());
    create_topic(&broker.addr, &topic, PARTITIONS);
    let setup = Setup::new(&broker.addr, &topic, Some(&history.records), "200ms", seed);
    let http: SocketAddr = free_loopback_addresses(1)[0].parse().unwrap();
    let publish_hold = setup.dir.path().join("publish.hold");
    std::fs::write(&publish_hold, "").unwrap();
    let hold_env = publish_hold.display().to_string();
    let mut proc = setup.start_with(
        2,
        &http.to_string(),
        &[],
        &[("TOPSELLERS_FAILPOINT_PUBLISH_HOLD", &hold_env)],
    );
    let checkpoints = || {
        std::net::TcpStream::connect(http).is_ok()
            && metric(
                &get(http, "/metrics").text(),
                "topsellers_checkpoints_total",
            )
            .is_some_and(|n| n >= 1.0)
    };
    // Many checkpoint intervals with the backfill's snapshot unserved.
    let early = wait_until(Duration::from_secs(5), checkpoints);
    if !early {
        std::fs::remove_file(&publish_hold).unwrap();
        assert!(
            wait_until(PATIENCE, || ready(http) && checkpoints()),
            "no checkpoint once served:\n{}",
            proc.log()
        );
    }
    proc.child.kill().expect("SIGKILL");
    proc.child.wait().expect("reaped");
    let newest = listing(&setup.dir.path().join("state"))
        .iter()
        .filter_map(|name| {
            name.strip_prefix("manifest-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .max()
        .map_or(0u64, |sequence| sequence);

    let backfill_hold = setup.dir.path().join("backfill.hold");
    std::fs::write(&backfill_hold, "").unwrap();
    let backfill_env = backfill_hold.display().to_string();
    let restarted = (std::time::Instant::now(), wall_seconds());
    let proc = setup.start_with(
        1,
        &http.to_string(),
        &[],
        &[("TOPSELLERS_FAILPOINT_BACKFILL_HOLD", &backfill_env)],
    );
    let serving = wait_until(PATIENCE, || {
        std::net::TcpStream::connect(http).is_ok() && get(http, "/v1/top").status == 200
    });
    let readyz = get(http, "/readyz");
    assert!(
        serving && readyz.status == 503,
        "restored lists not served before ready (early checkpoint: {early}; /readyz {}: {}):\n{}",
        readyz.status,
        readyz.text(),
        proc.log()
    );
    // The history's last purchase is at T0, which the (empty) topic owns: the lists are the
    // purchases before it, as of T0 − 1.
    let t0 = default_as_of(&history.records).unwrap();
    let below: Vec<Rec> = history
        .records
        .iter()
        .filter(|r| r.ts < t0)
        .cloned()
        .collect();
    let problems = oracle_problems(http, &setup.params, &below, &history.twins, t0 - 1);
    assert_no_problems(&problems, "the restored lists");
    // What /readyz says meanwhile: the newest checkpoint's lists are served, the state is read
    // back.
    let reason = readyz.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let restoring = format!("restored the lists of checkpoint {newest} (as of ");
    assert!(
        newest >= 1
            && reason.starts_with(&restoring)
            && reason.contains("), catching up: reading the state back"),
        "/readyz while restoring: {reason:?} (newest checkpoint {newest})"
    );
    std::fs::remove_file(&backfill_hold).unwrap();
    assert!(
        wait_until(PATIENCE, || ready(http)),
        "not ready after the hold:\n{}",
        proc.log()
    );
    let readyz = get(http, "/readyz");
    assert_eq!(
        readyz.json()["reason"],
        "backfill done, live",
        "{}",
        readyz.text()
    );
    // The restart's figures: how long the restore took (it waited for the hold), and the
    // checkpoints it writes from then on.
    assert!(
        wait_until(PATIENCE, || checkpoints_written(http) >= 1.0),
        "no checkpoint after the restart:\n{}",
        proc.log()
    );
    let text = get(http, "/metrics").text();
    let restore = metric(&text, "topsellers_restore_duration_seconds");
    assert!(
        restore.is_some_and(|s| s > 0.0 && s <= restarted.0.elapsed().as_secs_f64()),
        "restore duration {restore:?}\n{text}"
    );
    let written_at = metric(&text, "topsellers_checkpoint_last_timestamp_seconds");
    assert!(
        written_at.is_some_and(|at| at >= restarted.1 && at <= wall_seconds()),
        "last checkpoint at {written_at:?}, restarted at {}\n{text}",
        restarted.1
    );
    let (last, state) = (
        metric(&text, "topsellers_checkpoint_last_bytes"),
        metric(&text, "topsellers_state_bytes"),
    );
    assert!(
        last.zip(state)
            .is_some_and(|(last, state)| last <= state && state > 0.0),
        "last checkpoint {last:?} bytes, state {state:?} bytes\n{text}"
    );
    let problems = oracle_problems(http, &setup.params, &below, &history.twins, t0 - 1);
    assert_no_problems(&problems, "after the restart");
}

/// `topsellers_checkpoints_total` of the service at `http` (0 while it does not answer).
fn checkpoints_written(http: SocketAddr) -> f64 {
    if std::net::TcpStream::connect(http).is_err() {
        return 0.0;
    }
    metric(
        &get(http, "/metrics").text(),
        "topsellers_checkpoints_total",
    )
    .unwrap_or(0.0)
}

/// In a cluster every process checkpoints its own workers' part of the cut into its own
/// directory (`--state DIR` → `DIR.pI`), on its own schedule. A 2-process × 2-thread cluster
/// reading a history and then a topic with returns, late events and bad messages is SIGKILLed
/// twice mid-stream (each process at its own moment, after at least one checkpoint each, often
/// during one), more purchases produced while it is down, and restarted with the same state:
/// at the end every process serves the oracle's lists over everything produced, and the
/// processes' dead-letter files together hold each bad record once.
#[test]
fn a_cluster_killed_mid_stream_restores_every_process_part() {
    let seed = 96;
    let history = generate(&Spec::new(seed, 2000, R, false));
    let mut rng = SmallRng::seed_from_u64(seed);
    let (lake, on_topic) = lake_and_topic(&history.records, &mut rng);
    let mut bad = 0;
    let parts: Vec<Vec<(i32, Vec<u8>)>> = on_topic
        .chunks(on_topic.len() / 4 + 1)
        .enumerate()
        .map(|(at, part)| {
            let (messages, part_bad) = messages(seed + at as u64, part, 2, PARTITIONS);
            bad += part_bad;
            messages
        })
        .collect();
    let broker = Broker::start();
    let topic = format!("state-cluster-{}", std::process::id());
    create_topic(&broker.addr, &topic, PARTITIONS);
    let setup = Setup::new(&broker.addr, &topic, Some(&lake), "200ms", seed);
    let (workers, http) = topsellers_tests::cluster_layout(setup.dir.path(), 2, 2);
    let addrs: Vec<SocketAddr> = http.iter().map(|a| a.parse().unwrap()).collect();
    // Checkpoints every 200 ms, each pausing 100 ms after it appended its bad records.
    let pause = [("TOPSELLERS_FAILPOINT_CHECKPOINT_PAUSE_MS", "100")];
    let start = || -> Vec<Proc> {
        (0..2)
            .map(|p| setup.start_process(&workers, p, &pause))
            .collect()
    };
    let mut parts = parts.iter();
    produce(&broker.addr, &topic, parts.next().unwrap());
    for round in 0..2 {
        let mut procs = start();
        for (p, &addr) in addrs.iter().enumerate() {
            assert!(
                wait_until(PATIENCE, || checkpoints_written(addr) >= 1.0),
                "round {round}: process {p} wrote no checkpoint:\n{}",
                procs[p].log()
            );
        }
        produce(&broker.addr, &topic, parts.next().unwrap());
        // Each process at its own moment while the part is read.
        for proc in &mut procs {
            std::thread::sleep(Duration::from_millis(rng.random_range(50..1200)));
            proc.child.kill().expect("SIGKILL");
            proc.child.wait().expect("reaped");
        }
    }
    for part in parts {
        produce(&broker.addr, &topic, part);
    }
    let procs = start();
    wait_for_cluster_oracle(
        &addrs,
        &procs,
        &setup.params,
        &history,
        "after two SIGKILLs of the cluster",
    );
    for (p, proc) in procs.iter().enumerate() {
        let log = proc.log();
        assert!(
            log.matches("restoring checkpoint").count() >= 2,
            "process {p} restored its checkpoints:\n{log}"
        );
    }
    let files: Vec<PathBuf> = (0..2)
        .map(|p| setup.dir.path().join(format!("dead-letter.p{p}.jsonl")))
        .collect();
    assert_each_bad_record_once(&dead_letters_in(&files), bad);
}

/// The wall clock, Unix seconds.
fn wall_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A cluster's Kafka partitions belong to workers by global index (`p % workers`), so another
/// thread count per process moves partitions to other processes, whose checkpoints hold no
/// offsets for them: restarted as 2 × 1, a 2 × 2 cluster's state read the moved partitions
/// again from their earliest offset (after a hand-over) and double-counted them. Every process
/// refuses instead, naming the thread count.
#[test]
fn a_cluster_state_is_refused_with_other_threads() {
    let seed = 97;
    let history = generate(&Spec::new(seed, 800, R, false));
    let broker = Broker::start();
    let topic = format!("state-threads-{}", std::process::id());
    create_topic(&broker.addr, &topic, 4);
    let (messages, _) = messages(seed, &history.records, 0, 4);
    produce(&broker.addr, &topic, &messages);
    let mut sorted = history.records.clone();
    sorted.sort_by_key(|r| r.ts);
    let lake = sorted[..sorted.len() / 3].to_vec();
    let setup = Setup::new(&broker.addr, &topic, Some(&lake), "1h", seed);
    let (workers, http) = topsellers_tests::cluster_layout(setup.dir.path(), 2, 2);
    let addrs: Vec<SocketAddr> = http.iter().map(|a| a.parse().unwrap()).collect();
    let mut procs: Vec<Proc> = (0..2)
        .map(|p| setup.start_process(&workers, p, &[]))
        .collect();
    wait_for_cluster_oracle(&addrs, &procs, &setup.params, &history, "2 × 2");
    for proc in &procs {
        sigterm(proc);
    }
    for proc in &mut procs {
        assert!(proc.exit_within(Duration::from_secs(60)).is_some(), "stops");
    }
    let text = std::fs::read_to_string(&workers).unwrap();
    std::fs::write(&workers, text.replace("threads = 2", "threads = 1")).unwrap();
    let mut procs: Vec<Proc> = (0..2)
        .map(|p| setup.start_process(&workers, p, &[]))
        .collect();
    for (p, proc) in procs.iter_mut().enumerate() {
        let status = proc.exit_within(PATIENCE);
        let log = proc.log();
        assert!(
            status.is_some_and(|s| !s.success())
                && log.contains("2 threads per process")
                && log.contains("empty state"),
            "process {p}: another thread count is refused:\n{log}"
        );
    }
}
