//! What the operator reads: `--log-format json` writes one JSON object per line (every line),
//! and a user's error is one line on stderr with exit status 1 — never a backtrace, even with
//! `RUST_BACKTRACE=1` set.

use std::process::Command;
use std::time::Duration;

use topsellers_tests::{free_loopback_addresses, get, topsellers_exe, wait_until, Proc};

/// Generous liveness bound.
const PATIENCE: Duration = Duration::from_secs(120);

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_loopback_addresses(1).remove(0);
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let mut command = Command::new(topsellers_exe());
    command
        .args(["--log-format", "json", "run", "--http", &http])
        .current_dir(dir.path());
    let mut service = Proc::start(&mut command, dir.path().join("stderr.log"));
    let up = wait_until(PATIENCE, || {
        std::net::TcpStream::connect(addr).is_ok()
            && get(addr, "/readyz").status == 200
            && service.log().contains("topsellers is up")
    });
    assert!(up, "not up; log:\n{}", service.log());
    let pid = nix::unistd::Pid::from_raw(service.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = service.exit_within(PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = service.log();
    let mut messages = Vec::new();
    for line in log.lines() {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nlog:\n{log}"));
        assert!(object["level"].is_string(), "no level: {line}");
        assert!(object["timestamp"].is_string(), "no timestamp: {line}");
        messages.push(
            object["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    assert!(
        messages.iter().any(|m| m.starts_with("topsellers is up")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("SIGTERM: stopping")),
        "{messages:?}"
    );
}

#[test]
fn a_users_error_is_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[scoring]\ntop_k = 0\n").unwrap();
    for args in [
        vec!["batch", "no-such-file.jsonl", "--output", "out.jsonl"],
        vec!["run", "--config", "bad.toml"],
        vec!["--log-format", "json", "batch", "missing.csv", "-o", "x"],
    ] {
        let output = Command::new(topsellers_exe())
            .args(&args)
            .current_dir(dir.path())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .expect("run topsellers");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("Error: "), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("backtrace") && !stderr.contains("Caused by"),
            "{args:?}: a backtrace for a user's error:\n{stderr}"
        );
    }
}

/// A folder's files of another format are skipped with a warning naming each, at the default
/// level; compressed JSON Lines and CSV among them are read.
#[test]
fn skipped_files_are_named_and_compressed_ones_read() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let line = "{\"item_id\":\"i\",\"category\":\"a\",\"ts\":1000}\n";
    std::fs::write(input.join("a.jsonl"), line).unwrap();
    std::fs::write(input.join("notes.txt"), line).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(line.as_bytes()).unwrap();
    std::fs::write(input.join("b.jsonl.gz"), gz.finish().unwrap()).unwrap();
    let csv = "item_id,category,ts\nj,a,1000\n";
    std::fs::write(
        input.join("c.csv.zst"),
        zstd::encode_all(csv.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let output = Command::new(topsellers_exe())
        .args(["batch", "in", "--output", "out.jsonl", "--dead-letter", ""])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run topsellers");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipping a file of unknown format") && stderr.contains("notes.txt"),
        "{stderr}"
    );
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let root: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["category"] == "")
        .collect();
    // i twice (plain and gzip), j once (zstd CSV); the .txt file not read.
    let score = |item: &str| {
        root.iter()
            .find(|v| v["item_id"] == item)
            .and_then(|v| v["score"].as_f64())
    };
    // Within rounding: the two purchases of i may be summed on different workers.
    let near = |got: Option<f64>, want: f64| got.is_some_and(|got| (got - want).abs() < 1e-12);
    assert!(near(score("i"), 2.0), "{out}");
    assert!(near(score("j"), 1.0), "{out}");
}
