//! The default `topsellers run` — no input, no source, no config: the generator with its
//! defaults — turns ready and serves lists that keep moving: ranked lists of the generator's
//! items (`item-N`) with positive, non-increasing scores, at most the default k (100), in
//! categories of the default tree (depth 3, fanout 8), snapshots whose time advances, purchases
//! counted; SIGTERM stops it cleanly. (Only `--http` is given, for a free port; it runs in an
//! empty directory, where its default dead-letter file goes.)

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use topsellers_tests::{
    check_exposition, free_loopback_addresses, get, metric, parse_rfc3339, top_items, top_path,
    topsellers_exe, wait_until, Proc,
};

/// Generous liveness bound.
const PATIENCE: Duration = Duration::from_secs(120);

/// A served list is well formed: at most 100 items of the generator, positive scores, best
/// first. Returns its `as_of`.
fn check_list(doc: &serde_json::Value, what: &str) -> i64 {
    let items = top_items(doc);
    assert!(items.len() <= 100, "{what}: {} items", items.len());
    for (id, score) in &items {
        let n = id.strip_prefix("item-").map(str::parse::<u64>);
        assert!(
            n.is_some_and(|n| n.is_ok_and(|n| n < 100_000)),
            "{what}: {id} is not an item of the default generator"
        );
        assert!(*score > 0.0, "{what}: {id} scores {score}");
    }
    assert!(
        items.windows(2).all(|w| w[0].1 >= w[1].1),
        "{what}: not best first: {items:?}"
    );
    let ids: BTreeSet<&String> = items.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), items.len(), "{what}: an item twice: {items:?}");
    doc["as_of"]
        .as_str()
        .and_then(parse_rfc3339)
        .unwrap_or_else(|| panic!("{what}: as_of in {doc}"))
}

#[test]
fn the_default_run_serves_the_generators_lists() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_loopback_addresses(1).remove(0);
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let mut command = Command::new(topsellers_exe());
    command
        .args(["run", "--http", &http])
        .current_dir(dir.path());
    let mut service = Proc::start(&mut command, dir.path().join("stderr.log"));
    let ready = wait_until(PATIENCE, || {
        std::net::TcpStream::connect(addr).is_ok() && get(addr, "/readyz").status == 200
    });
    assert!(ready, "not ready; log:\n{}", service.log());

    // Purchases flow and the served time moves on.
    let purchases = || metric(&get(addr, "/metrics").text(), "topsellers_purchases_total");
    let top = get(addr, "/v1/top");
    assert_eq!(top.status, 200, "{}", top.text());
    let first = check_list(&top.json(), "/v1/top");
    let (counted, mut later) = (purchases().unwrap_or(0.0), first);
    let moved = wait_until(PATIENCE, || {
        let top = get(addr, "/v1/top");
        later = check_list(&top.json(), "/v1/top");
        later > first && purchases().is_some_and(|now| now > counted)
    });
    assert!(
        moved,
        "the served time stays at {first} ({later}) or no purchases counted; log:\n{}",
        service.log()
    );
    assert!(
        !top_items(&get(addr, "/v1/top").json()).is_empty(),
        "an empty root list"
    );

    // The default tree: depth 3, fanout 8, every category bought in before long.
    let categories = || -> Vec<String> {
        get(addr, "/v1/categories").json()["categories"]
            .as_array()
            .expect("categories")
            .iter()
            .map(|c| c["category"].as_str().expect("category").to_owned())
            .collect()
    };
    let all = 1 + 8 + 64 + 512;
    let mut listed = Vec::new();
    let complete = wait_until(PATIENCE, || {
        listed = categories();
        listed.len() >= all
    });
    assert!(complete, "{} categories, not {all}", listed.len());
    let categories = listed;
    assert_eq!(categories.len(), all, "{categories:?}");
    let deepest = categories
        .iter()
        .map(|c| {
            if c.is_empty() {
                0
            } else {
                c.split('/').count()
            }
        })
        .max();
    assert_eq!(
        deepest,
        Some(3),
        "the default tree is 3 deep: {categories:?}"
    );
    for category in categories.iter().filter(|c| !c.is_empty()).take(20) {
        let target = top_path(category);
        let list = get(addr, &target);
        assert_eq!(list.status, 200, "{target}: {}", list.text());
        check_list(&list.json(), &target);
    }

    // /metrics passes a strict text-format parser and promtool's naming rules, and has the
    // request-duration histogram, the process metrics and the build info.
    let samples = check_exposition(&get(addr, "/metrics").text());
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    };
    let tops = value(
        "topsellers_http_request_duration_seconds_count",
        &[("route", "top")],
    );
    assert!(
        tops.is_some_and(|n| n >= 20.0),
        "top requests timed: {tops:?}"
    );
    assert!(value("process_resident_memory_bytes", &[]).is_some_and(|b| b > 1e6));
    assert!(value("process_open_fds", &[]).is_some_and(|n| n >= 3.0));
    assert!(value("process_cpu_seconds_total", &[]).is_some());
    assert_eq!(value("topsellers_build_info", &[]), Some(1.0));

    let pid = nix::unistd::Pid::from_raw(service.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = service.exit_within(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: {status:?}; log:\n{}",
        service.log()
    );
}

/// SIGHUP (a closed terminal, a supervisor) drains like SIGTERM: exit 0, a log line, and the
/// last checkpoint written on the way out (the interval is far longer than the run).
#[test]
fn sighup_drains_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_loopback_addresses(1).remove(0);
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[state]\ninterval = \"1h\"\n").unwrap();
    let mut command = Command::new(topsellers_exe());
    command
        .args(["run", "--http", &http, "--config"])
        .arg(&config)
        .arg("--state")
        .arg(&state)
        .current_dir(dir.path());
    let mut service = Proc::start(&mut command, dir.path().join("stderr.log"));
    let ready = wait_until(PATIENCE, || {
        std::net::TcpStream::connect(addr).is_ok() && get(addr, "/readyz").status == 200
    });
    assert!(ready, "not ready; log:\n{}", service.log());
    let manifests = || {
        std::fs::read_dir(&state)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("manifest-"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(manifests(), 0, "a checkpoint before the signal");
    check_exposition(&get(addr, "/metrics").text());
    let pid = nix::unistd::Pid::from_raw(service.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let status = service.exit_within(PATIENCE);
    let log = service.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGHUP: {status:?}; log:\n{log}"
    );
    assert!(log.contains("SIGHUP: stopping"), "no log line; log:\n{log}");
    assert!(manifests() > 0, "no checkpoint on the way out; log:\n{log}");
}
