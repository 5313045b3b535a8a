//! While the backfill runs — held mid-way by the test failpoint
//! (`TOPSELLERS_FAILPOINT_BACKFILL_HOLD`: after each unit read, the backfill waits while a file
//! exists), so that it is seen in progress for certain — `/readyz` answers 503 with the
//! backfill's progress (some rows read, not all), `/metrics` counts the rows read so far, and
//! `/v1/top` answers 503 (no snapshot yet); once released, the service turns ready and serves
//! the oracle's lists. From local files and from S3.
//!
//! The service runs as a child process (`topsellers run`): the failpoint is read from its
//! environment, which a test must not change in its own process.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use topsellers_tests::s3::{self, TestBucket};
use topsellers_tests::{
    assert_no_problems, compare, default_as_of, free_loopback_addresses, generate, get, metric,
    served_lists_at, topsellers_exe, wait_until, write_hive_parquet, write_parts, Fmt, History,
    Params, Proc, Spec, DAY,
};

const K: usize = 5;
/// Generous liveness bound for starting, reading and publishing.
const PATIENCE: Duration = Duration::from_secs(120);

/// `/readyz`'s reason, if it answers 503 with one.
fn not_ready_reason(addr: std::net::SocketAddr) -> Option<String> {
    if std::net::TcpStream::connect(addr).is_err() {
        return None;
    }
    let response = get(addr, "/readyz");
    if response.status != 503 {
        return None;
    }
    response.json()["reason"].as_str().map(str::to_owned)
}

/// The rows read that a `backfill: 1,204/5,000 rows …` reason reports.
fn rows_in(reason: &str) -> Option<u64> {
    let count = reason
        .strip_prefix("backfill: ")?
        .split(['/', ' '])
        .next()?;
    count.replace(',', "").parse().ok()
}

/// Runs `topsellers run` on `inputs` with the backfill held, checks what it answers while
/// held, releases it and checks the served lists against the oracle.
fn held_backfill(history: &History, inputs: &[String], env: &[(String, String)], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let http = free_loopback_addresses(1).remove(0);
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let params = Params::new(K, 2, 100);
    let mut command = Command::new(topsellers_exe());
    command
        .args([
            "run",
            "--http",
            &http,
            "--workers",
            "2",
            "--dead-letter",
            "",
        ])
        .args(params.scoring_flags())
        .env("TOPSELLERS_FAILPOINT_BACKFILL_HOLD", &hold)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)));
    for input in inputs {
        command.args(["--input", input]);
    }
    let service = Proc::start(&mut command, dir.path().join("stderr.log"));

    // Held: some rows read, not all, and no snapshot.
    let mut reason = String::new();
    let seen = wait_until(PATIENCE, || {
        reason = not_ready_reason(addr).unwrap_or_default();
        rows_in(&reason).is_some_and(|rows| rows > 0)
    });
    assert!(
        seen,
        "{what}: /readyz never reported backfill progress (last reason {reason:?}); log:\n{}",
        service.log()
    );
    let metrics = get(addr, "/metrics").text();
    let read = metric(&metrics, "topsellers_backfill_rows_read").expect("rows read");
    let total = metric(&metrics, "topsellers_backfill_rows_planned").expect("rows total");
    assert!(
        read > 0.0 && (total == 0.0 || read < total),
        "{what}: held mid-way, {read} of {total} rows read:\n{metrics}"
    );
    for target in ["/v1/top", "/v1/top?profile=7d"] {
        let top = get(addr, target);
        assert_eq!(
            top.status,
            503,
            "{what}: {target} during the backfill: {}",
            top.text()
        );
    }
    let readyz = get(addr, "/readyz");
    assert_eq!(readyz.status, 503, "{what}: {}", readyz.text());
    // The log says "up" only once it serves, and has no colour codes (it is not a terminal).
    let log = service.log();
    assert!(!log.contains("is up"), "{what}: \"up\" while 503:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "{what}: colour codes in a log file:\n{log}"
    );
    assert!(
        readyz.json()["as_of"].is_null(),
        "{what}: nothing served yet: {}",
        readyz.text()
    );

    // Released: ready, serving the oracle's lists.
    std::fs::remove_file(&hold).unwrap();
    let ready = wait_until(PATIENCE, || get(addr, "/readyz").status == 200);
    assert!(
        ready,
        "{what}: not ready after release; log:\n{}",
        service.log()
    );
    let up = wait_until(PATIENCE, || service.log().contains("topsellers is up"));
    assert!(up, "{what}: no \"up\" once ready; log:\n{}", service.log());
    let until = default_as_of(&history.records).unwrap();
    let names: Vec<&str> = params.half_lives.iter().map(|(n, _)| *n).collect();
    let served = served_lists_at(addr, &names, until).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_no_problems(
        &compare(&served, &params.oracle(&history.records, until), K, 2),
        &format!("{what}: served vs oracle"),
    );
}

#[test]
fn a_held_backfill_from_files_reports_progress_and_answers_503() {
    let history = generate(&Spec::new(91, 2000, 2 * DAY, false));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::Csv, Fmt::ParquetInt],
        &history.records,
        6,
        91,
    );
    let inputs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    held_backfill(&history, &inputs, &[], "local files");
}

#[test]
fn a_held_backfill_from_s3_reports_progress_and_answers_503() {
    let history = generate(&Spec::new(92, 2000, 2 * DAY, false));
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    write_hive_parquet(&lake, &history.records, 16);
    let bucket = TestBucket::create();
    bucket.put_dir(Path::new(&lake), "purchases");
    let mut env = vec![("AWS_ENDPOINT_URL".to_owned(), s3::endpoint())];
    env.extend(s3::credentials());
    held_backfill(&history, &[bucket.url("purchases")], &env, "s3 parquet");
}
