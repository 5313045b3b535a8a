//! Hostile HTTP clients against the real `topsellers run` under a small open-file limit
//! (`ulimit -n 256`, soft and hard): clients that send requests and never read the answers
//! cannot keep a fresh client out nor hold descriptors; requests hyper refuses before the
//! handler (bad request line, long target, large headers, slow heads) are counted in
//! `/metrics` and answered with JSON where the server writes the answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use topsellers_tests::{
    free_loopback_addresses, get, metric, raw_http, topsellers_exe, wait_until, Proc,
};

/// Generous liveness bound.
const PATIENCE: Duration = Duration::from_secs(120);

/// The open-file limit the server runs under (soft and hard, so it cannot raise it).
const NOFILE: u32 = 256;

/// Connections that send a request and never read: more than the open-file limit.
const STUCK: usize = 300;

/// `topsellers run` (the generator) in `dir` under `ulimit -n NOFILE`, with `config` as its
/// config file if given; waits until it serves lists.
fn start(dir: &Path, config: Option<&str>) -> (Proc, SocketAddr) {
    start_under(&format!("ulimit -n {NOFILE}"), dir, config)
}

/// [`start`] with `limits` (shell `ulimit` commands) instead.
fn start_under(limits: &str, dir: &Path, config: Option<&str>) -> (Proc, SocketAddr) {
    let http = free_loopback_addresses(1).remove(0);
    let addr: SocketAddr = http.parse().unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" \"$@\""))
        .arg(topsellers_exe())
        .args(["run", "--http", &http])
        .current_dir(dir);
    if let Some(text) = config {
        let path = dir.join("topsellers.toml");
        std::fs::write(&path, text).unwrap();
        command.arg("--config").arg(&path);
    }
    let service = Proc::start(&mut command, dir.join("stderr.log"));
    let ready = wait_until(PATIENCE, || status_of(addr, "/readyz") == Some(200));
    assert!(ready, "not ready; log:\n{}", service.log());
    (service, addr)
}

/// The status of `GET target` on a new connection, or `None` if the server does not answer
/// within a few seconds (refused, closed, or not accepting).
fn status_of(addr: SocketAddr, target: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A connection that sends `requests` pipelined GETs of `target` and never reads an answer.
fn stuck_client(addr: SocketAddr, target: &str, requests: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").repeat(requests);
    let _ = stream.write_all(request.as_bytes());
    Some(stream)
}

/// Descriptors the process holds.
fn open_fds(service: &Proc) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", service.child.id()))
        .map(Iterator::count)
        .unwrap_or(0)
}

fn rejected(addr: SocketAddr, reason: &str) -> f64 {
    let text = get(addr, "/metrics").text();
    metric(
        &text,
        &format!("topsellers_http_rejected_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no rejection count for {reason} in\n{text}"))
}

/// With the default settings: more stuck connections than the open-file limit leave the
/// process below the limit (the connection cap) and a fresh client is answered without
/// waiting for any timeout (idle connections are shed when the cap is reached).
#[test]
fn clients_that_never_read_do_not_keep_a_fresh_client_out() {
    let dir = tempfile::tempdir().unwrap();
    let (service, addr) = start(dir.path(), None);
    let baseline = open_fds(&service);
    let stuck: Vec<TcpStream> = (0..STUCK)
        .filter_map(|_| stuck_client(addr, "/metrics", 1))
        .collect();
    let opened = Instant::now();
    let mut peak = open_fds(&service);
    let served = wait_until(PATIENCE, || {
        peak = peak.max(open_fds(&service));
        status_of(addr, "/healthz") == Some(200)
    });
    let waited = opened.elapsed();
    eprintln!(
        "{} stuck connections: a fresh client served after {:.1} s; descriptors {baseline} at \
         rest, {peak} at most (limit {NOFILE})",
        stuck.len(),
        waited.as_secs_f64()
    );
    assert!(
        served,
        "no fresh client served in {PATIENCE:?} with {} stuck connections; log:\n{}",
        stuck.len(),
        service.log()
    );
    assert!(
        peak < NOFILE as usize - 16,
        "{peak} descriptors held: the connection cap does not keep room below the limit"
    );
    assert!(
        rejected(addr, "too_many_connections") >= 1.0,
        "refused connections are not counted"
    );
    assert!(
        !service.log().contains("Too many open files"),
        "{}",
        service.log()
    );
    drop(stuck);
}

/// With short timeouts: connections whose replies are never drained (write timeout), idle
/// ones (keep-alive timeout), silent ones and slow heads (header-read timeout) are all closed
/// by the server while their clients still hold them; a slow head gets a JSON 408; each is
/// counted.
#[test]
fn stuck_connections_are_closed_by_the_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[http]\nheader_read_timeout = \"1s\"\nwrite_timeout = \"1s\"\nkeep_alive_timeout = \"2s\"\nmax_connections = 100\n";
    let (service, addr) = start(dir.path(), Some(config));
    // Large answers (the generator's category tree fills in within seconds).
    let large = wait_until(PATIENCE, || get(addr, "/v1/categories").body.len() > 30_000);
    assert!(large, "the category tree never grew");
    let baseline = open_fds(&service);
    let mut clients = Vec::new();
    // Replies that cannot all fit in the socket buffers (2000 × 30 KB), never read.
    clients.extend((0..20).filter_map(|_| stuck_client(addr, "/v1/categories", 2000)));
    // One request each, answer never read: idle afterwards.
    clients.extend((0..40).filter_map(|_| stuck_client(addr, "/metrics", 1)));
    // Silent connections and heads that never end.
    clients.extend((0..10).filter_map(|_| stuck_client(addr, "/healthz", 0)));
    for _ in 0..10 {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ");
            clients.push(stream);
        }
    }
    let opened = Instant::now();
    let mut peak = 0;
    let held = wait_until(PATIENCE, || {
        peak = peak.max(open_fds(&service));
        peak >= baseline + 40
    });
    assert!(
        held,
        "the server never held the connections ({peak} descriptors)"
    );
    let released = wait_until(PATIENCE, || open_fds(&service) <= baseline + 4);
    eprintln!(
        "{} stuck connections: descriptors {baseline} at rest, {peak} held, {} after {:.1} s",
        clients.len(),
        open_fds(&service),
        opened.elapsed().as_secs_f64()
    );
    assert!(
        released,
        "descriptors still held ({} vs {baseline} at rest) while the clients stay; log:\n{}",
        open_fds(&service),
        service.log()
    );
    assert_eq!(status_of(addr, "/healthz"), Some(200));
    for reason in ["write_timeout", "header_timeout"] {
        assert!(
            rejected(addr, reason) >= 1.0,
            "no {reason} counted; log:\n{}",
            service.log()
        );
    }

    // A slow head is answered 408 with a JSON body, then closed.
    let before = rejected(addr, "header_timeout");
    let response = raw_http(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .expect("a 408 before the close");
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(response.json()["error"].is_string(), "{}", response.text());
    assert!(rejected(addr, "header_timeout") > before);
    drop(clients);
}

/// Requests refused before the handler, sent as raw bytes: each is counted in
/// `topsellers_http_rejected_total{reason}`; the 414 and 431 the handler writes carry JSON
/// bodies, and hyper's own (malformed line, target over 64 KiB, head over its buffer or over
/// 100 headers) are at least counted.
#[test]
fn requests_refused_before_the_handler_are_counted_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_service, addr) = start(dir.path(), None);
    let long = |n: usize| "a".repeat(n);
    let cases: [(Vec<u8>, u16, &str, bool); 5] = [
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "bad_request", false),
        (
            format!(
                "GET /v1/top?x={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                long(10_000)
            )
            .into_bytes(),
            414,
            "uri_too_long",
            true,
        ),
        (
            format!("GET /v1/top?x={} HTTP/1.1\r\nHost: t\r\n\r\n", long(70_000)).into_bytes(),
            414,
            "uri_too_long",
            false,
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
                long(40_000)
            )
            .into_bytes(),
            431,
            "headers_too_large",
            true,
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
            "headers_too_large",
            false,
        ),
    ];
    for (request, status, reason, json) in cases {
        let before = rejected(addr, reason);
        let what = String::from_utf8_lossy(&request[..request.len().min(40)]).into_owned();
        let response = raw_http(addr, &request).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(response.status, status, "{what}: {}", response.text());
        if json {
            let body = response.json();
            assert!(body["error"].is_string(), "{what}: {body}");
        }
        assert_eq!(rejected(addr, reason), before + 1.0, "{what}: not counted");
    }
}

/// The soft and hard open-file limits of a running process (`/proc/PID/limits`).
fn open_file_limits(service: &Proc) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", service.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in\n{limits}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// A soft open-file limit below the hard one (a common service default: 1024 soft under a
/// far larger hard limit) is raised to the hard one at start, and the connection cap follows
/// the raised limit.
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    // 1000 connections fit below 4096 descriptors, not below 256.
    let config = "[http]\nmax_connections = 1000\n";
    let (service, addr) = start_under(
        "ulimit -Sn 256 && ulimit -Hn 4096",
        dir.path(),
        Some(config),
    );
    assert_eq!(
        open_file_limits(&service),
        (4096, 4096),
        "log:\n{}",
        service.log()
    );
    assert_eq!(status_of(addr, "/healthz"), Some(200));
    assert!(
        !service
            .log()
            .contains("http.max_connections lowered to stay below the open-file limit"),
        "the cap followed the soft limit before the raise; log:\n{}",
        service.log()
    );
}
