//! The live page and `/v1/stream`, end to end against the real binary on the demo
//! (`topsellers run --half-life 1d --half-life 30d`, the generator at a modest rate):
//! - a stream's first `list` event is the `/v1/top` document, a later one a changed list, and
//!   SIGTERM with the stream open ends it cleanly (its last chunk, not a cut connection: the
//!   drain did not have to abort it) and the process exits;
//! - the page, in a real headless Chromium driven by selenium (`tests/page_browser.py`): it
//!   clicks into a category and each profile's column shows `/v1/top/{category}` for that
//!   profile (ids and order), and keeps updating live.
//!
//! The python with selenium comes from `TOPSELLERS_BROWSER_PYTHON` (set by `./scripts/test`),
//! else from `scripts/browser-python`, which installs Chromium (apt-get) and selenium (PyPI,
//! into `.tools/`). If neither works the test FAILS: the browser test is part of the suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use topsellers_tests::{free_loopback_addresses, get, topsellers_exe, wait_until, Proc};

/// Generous liveness bound.
const PATIENCE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo with two profiles, purchases at a modest rate; its address once ready and the
/// home page lists an item.
fn demo(dir: &Path) -> (Proc, SocketAddr) {
    let http = free_loopback_addresses(1).remove(0);
    let addr: SocketAddr = http.parse().unwrap();
    let mut command = Command::new(topsellers_exe());
    command
        .args(["run", "--half-life", "1d", "--half-life", "30d"])
        .args(["--rate", "300", "--http", &http])
        .current_dir(dir);
    let service = Proc::start(&mut command, dir.join("stderr.log"));
    let ready = wait_until(PATIENCE, || {
        TcpStream::connect(addr).is_ok() && get(addr, "/readyz").status == 200
    });
    assert!(ready, "not ready; log:\n{}", service.log());
    let bought = wait_until(PATIENCE, || {
        let top = get(addr, "/v1/top").json();
        top["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    });
    assert!(bought, "no purchase listed; log:\n{}", service.log());
    (service, addr)
}

/// A client of `/v1/stream`: reads the chunked body chunk by chunk (the server sends whole
/// events per chunk).
struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    fn open(addr: SocketAddr, target: &str) -> EventStream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(stream, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("response head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        EventStream { reader }
    }

    /// The next chunk; `None` at the body's last chunk (a clean end). Panics if the
    /// connection is cut instead.
    fn chunk(&mut self) -> Option<String> {
        let mut size = String::new();
        self.reader.read_line(&mut size).expect("chunk size");
        assert!(!size.is_empty(), "the connection was cut mid-stream");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).expect("chunk");
        data.truncate(size);
        (size > 0).then(|| String::from_utf8(data).expect("UTF-8"))
    }

    /// The document of the next `list` event (comments and `retry:` skipped).
    fn next_list(&mut self) -> serde_json::Value {
        loop {
            let chunk = self.chunk().expect("the stream ended");
            for event in chunk.split("\n\n") {
                let mut lines = event.lines();
                if lines.next() == Some("event: list") {
                    let data = lines.next().and_then(|l| l.strip_prefix("data: "));
                    return serde_json::from_str(data.expect("data line")).expect("JSON data");
                }
            }
        }
    }
}

#[test]
fn a_stream_sends_top_then_changes_and_ends_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, addr) = demo(dir.path());
    let target = "/v1/stream?category=&profile=30d&limit=5";

    // The first event is /v1/top's document. The root list changes at almost every publish,
    // so /v1/top read just after may already be newer: tried again until they meet.
    let mut attempts = 0;
    let (mut stream, first) = loop {
        attempts += 1;
        let mut stream = EventStream::open(addr, target);
        let first = stream.next_list();
        let top = get(addr, "/v1/top?profile=30d&limit=5").json();
        if first == top {
            break (stream, first);
        }
        assert!(
            first["as_of"] != top["as_of"] && attempts < 50,
            "the first event differs from /v1/top at the same time:\n{first}\n{top}"
        );
    };
    assert_eq!(first["profile"], "30d");
    assert_eq!(first["category"], "");
    assert!(!first["items"].as_array().unwrap().is_empty(), "{first}");

    // A later event is a changed list of the same category and profile, at a later time.
    let later = stream.next_list();
    assert_ne!(later, first);
    assert_eq!(later["profile"], "30d");
    assert_eq!(later["category"], "");
    assert!(later["as_of"].as_str() > first["as_of"].as_str(), "{later}");
    assert!(later["items"].as_array().unwrap().len() <= 5, "{later}");

    // SIGTERM with the stream open: the stream ends with its last chunk and the process
    // exits without the drain having had to abort a connection.
    let pid = nix::unistd::Pid::from_raw(service.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    while stream.chunk().is_some() {}
    let status = service.exit_within(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: {status:?}; log:\n{}",
        service.log()
    );
    assert!(
        !service.log().contains("still open after the drain time"),
        "a stream held the drain; log:\n{}",
        service.log()
    );
}

/// The python with selenium, installing it (and Chromium) if needed; panics if it cannot.
fn browser_python() -> PathBuf {
    if let Some(path) = std::env::var_os("TOPSELLERS_BROWSER_PYTHON") {
        return path.into();
    }
    let out = Command::new(repo().join("scripts/browser-python"))
        .output()
        .expect("run scripts/browser-python");
    assert!(
        out.status.success(),
        "FAILED to install the headless browser (chromium, chromium-driver, selenium): the \
         live-page test cannot run:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
}

#[test]
fn the_page_shows_each_profiles_top_list_in_a_real_browser() {
    let python = browser_python();
    let dir = tempfile::tempdir().unwrap();
    let (service, addr) = demo(dir.path());
    let out = Command::new(&python)
        .arg(repo().join("tests/page_browser.py"))
        .args(["--url", &format!("http://{addr}")])
        .output()
        .expect("run tests/page_browser.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the page check failed:\n{}\n{stdout}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        service.log()
    );
    // What the browser saw: both profiles' columns, each equal to /v1/top for a category two
    // clicks deep.
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON line");
    assert_eq!(seen["profiles"], serde_json::json!(["1d", "30d"]));
    let category = seen["category"].as_str().unwrap();
    assert_eq!(category.split('/').count(), 2, "{seen}");
    for profile in ["1d", "30d"] {
        let list = &seen["lists"][profile];
        assert_eq!(list["category"], category, "{seen}");
        assert_eq!(list["shown"], list["top"], "{seen}");
        assert!(!list["shown"].as_array().unwrap().is_empty(), "{seen}");
    }
    assert_eq!(seen["ready"], true, "{seen}");
}
