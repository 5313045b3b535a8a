//! The HTTP API over real sockets: a `run::start` service replaying files, queried with raw
//! HTTP/1.1 requests; lists checked against the brute-force oracle.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use topsellers_tests::{
    assert_no_problems, check_twins, compare, default_as_of, generate, http, known_categories,
    metric, parent_of, parse_rfc3339, top_items, top_path, wait_until, write_parts, Fmt, Got,
    History, Params, Rec, Response, Spec, DAY,
};

const R: i64 = 2 * DAY;
const K: usize = 5;

/// Counts the `/v1/top` answers by status, to check `topsellers_http_requests_total`.
struct Client {
    addr: SocketAddr,
    top: BTreeMap<u16, u64>,
}

impl Client {
    fn call(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let response = http(self.addr, method, target, headers);
        let path = target.split('?').next().unwrap_or_default();
        if path == "/v1/top" || path.starts_with("/v1/top/") {
            *self.top.entry(response.status).or_default() += 1;
        }
        response
    }

    fn get(&mut self, target: &str) -> Response {
        self.call("GET", target, &[])
    }

    /// Asserts an error status with a JSON body carrying an `error` text.
    fn error(&mut self, method: &str, target: &str, status: u16) {
        let response = self.call(method, target, &[]);
        assert_eq!(
            response.status,
            status,
            "{method} {target}: {}",
            response.text()
        );
        let doc = response.json();
        assert!(
            doc["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {target}: error body {doc}"
        );
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    history: History,
    paths: Vec<PathBuf>,
    bad_lines: u64,
}

/// A category whose segments need care in a URL: `%`, `+`, `?`, `#`, `;`, space, non-ASCII.
const SPECIAL: &str = "spécial/100% sûr?/plus+minus #1;x";

fn fixture(seed: u64) -> Fixture {
    let mut history = generate(&Spec::new(seed, 1500, R, false));
    let a = history.anchor_ms;
    for (item, ts, q) in [
        ("p", a - 5, 2),
        ("q", a - 7, 3),
        ("p", a - 9, 1),
        ("r", a, 1),
    ] {
        history.records.push(Rec::new(item, SPECIAL, ts, q));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::Csv, Fmt::Parquet],
        &history.records,
        4,
        seed,
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "not json\n{\"item_id\":\"\",\"category\":\"a\",\"ts\":1}\n{\"item_id\":\"i\",\"category\":\"a//b\",\"ts\":1}\n",
    )
    .unwrap();
    paths.push(bad);
    Fixture {
        dir,
        history,
        paths,
        bad_lines: 3,
    }
}

#[test]
fn http_api_serves_the_oracle_lists() {
    let f = fixture(51);
    let params = Params::new(K, 2, 300);
    let dead = f.dir.path().join("dead.jsonl");
    let config = params.config(&f.paths, &dead.display().to_string());
    let service = topsellers::run::start(&config).expect("start");
    let until = default_as_of(&f.history.records).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || service
            .table
            .published_time_ms()
            == Some(until)),
        "the backfill snapshot ({until}) was not published in 30 s: {:?}",
        service.table.published_time_ms()
    );
    let mut c = Client {
        addr: service.addr,
        top: BTreeMap::new(),
    };
    let want = params.oracle(&f.history.records, until);

    // Health and readiness (200 exactly when it says ready).
    let health = c.get("/healthz");
    assert_eq!(health.status, 200);
    let readyz = c.get("/readyz");
    let ready = readyz.json()["ready"].as_bool().expect("ready flag");
    assert_eq!(
        readyz.status,
        if ready { 200 } else { 503 },
        "{}",
        readyz.text()
    );

    // Categories: every category with a counted purchase, none never seen, a consistent tree.
    let response = c.get("/v1/categories");
    assert_eq!(response.status, 200, "{}", response.text());
    let doc = response.json();
    let entries = doc["categories"].as_array().expect("categories array");
    let mut listed: BTreeMap<String, (serde_json::Value, BTreeSet<String>)> = BTreeMap::new();
    for entry in entries {
        let cat = entry["category"].as_str().expect("category").to_owned();
        let children: BTreeSet<String> = entry["children"]
            .as_array()
            .expect("children")
            .iter()
            .map(|c| c.as_str().expect("child").to_owned())
            .collect();
        assert!(
            listed
                .insert(cat.clone(), (entry["parent"].clone(), children))
                .is_none(),
            "{cat:?} listed twice"
        );
    }
    let counted: BTreeSet<String> = want.lists.keys().map(|(_, c)| c.clone()).collect();
    let ever = known_categories(&f.history.records);
    for cat in &counted {
        assert!(listed.contains_key(cat), "/v1/categories misses {cat:?}");
    }
    assert!(listed.contains_key(&f.history.cancelled_category));
    for (cat, (parent, children)) in &listed {
        assert!(ever.contains(cat), "/v1/categories lists unknown {cat:?}");
        if cat.is_empty() {
            assert!(
                parent.is_null() || parent == "",
                "root's parent is {parent}"
            );
        } else {
            assert_eq!(parent, parent_of(cat), "parent of {cat:?}");
            assert!(
                listed.contains_key(parent_of(cat)),
                "parent of {cat:?} not listed"
            );
        }
        let expected: BTreeSet<String> = listed
            .keys()
            .filter(|other| !other.is_empty() && parent_of(other) == cat)
            .cloned()
            .collect();
        assert_eq!(children, &expected, "children of {cat:?}");
    }

    // Every list of every profile, with percent-encoded (unicode) paths.
    let mut got = Got::new();
    for cat in listed.keys() {
        for (profile, (name, _)) in params.half_lives.iter().enumerate() {
            let target = format!("{}?profile={name}", top_path(cat));
            let response = c.get(&target);
            assert_eq!(response.status, 200, "{target}: {}", response.text());
            assert!(
                response
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{target}: content type"
            );
            let doc = response.json();
            assert_eq!(doc["category"], cat.as_str(), "{target}");
            assert_eq!(doc["profile"], *name, "{target}");
            let as_of = doc["as_of"].as_str().and_then(parse_rfc3339);
            assert_eq!(as_of, Some(until), "{target}: as_of {}", doc["as_of"]);
            got.insert((profile, cat.clone()), top_items(&doc));
        }
    }
    assert_no_problems(&compare(&got, &want, K, 2), "HTTP lists");
    assert_no_problems(&check_twins(&got, &f.history.twins), "HTTP lists");
    assert!(got[&(0, f.history.cancelled_category.clone())].is_empty());

    // The root, three ways; the default profile is the first.
    let root = c.get("/v1/top");
    assert_eq!(root.status, 200);
    let root_doc = root.json();
    assert_eq!(root_doc["category"], "");
    assert_eq!(root_doc["profile"], "1h");
    assert_eq!(top_items(&root_doc), got[&(0, String::new())]);
    let slash = c.get("/v1/top/");
    assert_eq!(slash.status, 200);
    assert_eq!(slash.json(), root_doc);
    assert_eq!(c.get("/v1/top?profile=1h").json(), root_doc);
    assert_eq!(
        got[&(0, String::new())].len(),
        K,
        "the root has a full list"
    );

    // Lower-case percent-encoding of a non-ASCII category means the same.
    let unicode = listed
        .keys()
        .find(|c| !c.is_ascii() && !got[&(0, (*c).clone())].is_empty())
        .expect("a non-ASCII category with items")
        .clone();
    let path = top_path(&unicode);
    let mut lower = String::new();
    let mut hex_left = 0;
    for ch in path.chars() {
        if hex_left > 0 {
            lower.push(ch.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            hex_left = if ch == '%' { 2 } else { 0 };
            lower.push(ch);
        }
    }
    assert_ne!(lower, path);
    let response = c.get(&lower);
    assert_eq!(response.status, 200, "{lower}");
    assert_eq!(top_items(&response.json()), got[&(0, unicode.clone())]);

    // Reserved characters: every segment encoded; a literal `+` in a path is a plus.
    let special = c.get(&top_path(SPECIAL));
    assert_eq!(special.status, 200, "{}", special.text());
    let special_items = top_items(&special.json());
    assert_eq!(special.json()["category"], SPECIAL);
    assert_eq!(
        special_items
            .iter()
            .map(|(i, _)| i.as_str())
            .collect::<Vec<_>>(),
        ["p", "q", "r"],
        "p: 2 at −5 ms and 1 at −9 ms beats q: 3 at −7 ms"
    );
    let literal_plus = top_path(SPECIAL).replace("%2B", "+");
    assert_ne!(literal_plus, top_path(SPECIAL));
    let response = c.get(&literal_plus);
    assert_eq!(response.status, 200, "{literal_plus}");
    assert_eq!(top_items(&response.json()), special_items);
    let parent = c.get(&top_path("spécial/100% sûr?"));
    assert_eq!(parent.status, 200, "{}", parent.text());
    assert_eq!(top_items(&parent.json()), special_items);

    // limit: 1, k, more than k (clamped); 0, negative, text: 400.
    for (limit, n) in [(1, 1), (K, K), (K + 10, K), (1_000_000, K)] {
        let response = c.get(&format!("/v1/top?limit={limit}"));
        assert_eq!(response.status, 200, "limit {limit}");
        let items = top_items(&response.json());
        assert_eq!(items, got[&(0, String::new())][..n], "limit {limit}");
    }
    for bad in ["0", "-1", "abc", "", "1.5"] {
        c.error("GET", &format!("/v1/top?limit={bad}"), 400);
    }
    // profile: the second; unknown is a 404.
    let second = c.get("/v1/top?profile=7d");
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["profile"], "7d");
    assert_eq!(top_items(&second.json()), got[&(1, String::new())]);
    c.error("GET", "/v1/top?profile=9d", 404);
    c.error("GET", &format!("{}?profile=nope", top_path(&unicode)), 404);
    // Unknown categories.
    c.error("GET", "/v1/top/does/not/exist", 404);
    c.error("GET", &top_path(&format!("{unicode}/nope")), 404);
    // Methods and routes.
    c.error("POST", "/v1/top", 405);
    c.error("DELETE", &top_path(&unicode), 405);
    c.error("POST", "/v1/categories", 405);
    c.error("GET", "/v2/top", 404);
    c.error("GET", "/v1/topx", 404);
    c.error("GET", "/index.html", 404);
    c.error("GET", "/assets/nope.js", 404);

    // Entity tags and caching.
    let tagged = c.get(&top_path(&unicode));
    let etag = tagged.header("etag").expect("ETag").to_owned();
    assert!(tagged.header("cache-control").is_some(), "Cache-Control");
    let cached = c.call(
        "GET",
        &top_path(&unicode),
        &[("If-None-Match", etag.as_str())],
    );
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty(), "304 with a body");
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    for header in [
        format!("\"nope\", {etag}"),
        format!("W/{etag}"),
        "*".to_owned(),
    ] {
        let cached = c.call(
            "GET",
            &top_path(&unicode),
            &[("If-None-Match", header.as_str())],
        );
        assert_eq!(cached.status, 304, "If-None-Match: {header}");
    }
    let other = c.call("GET", &top_path(&unicode), &[("If-None-Match", "\"nope\"")]);
    assert_eq!(other.status, 200);
    assert_eq!(other.body, tagged.body);
    let limited = c.get(&format!("{}?limit=1", top_path("")));
    let limited_tag = limited.header("etag").expect("ETag").to_owned();
    assert_ne!(
        limited_tag,
        root.header("etag").unwrap(),
        "a shorter document has another tag"
    );
    let categories = c.get("/v1/categories");
    let tag = categories
        .header("etag")
        .expect("categories ETag")
        .to_owned();
    let cached = c.call("GET", "/v1/categories", &[("If-None-Match", tag.as_str())]);
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    // Metrics.
    let response = c.get("/metrics");
    assert_eq!(response.status, 200);
    let text = response.text();
    // Purchases at or before `until − R` have expired by the backfill's snapshot: they are
    // skipped (or their files never read), not ingested.
    let valid = f
        .history
        .records
        .iter()
        .filter(|r| r.quantity != 0 && r.ts > until - R)
        .count() as f64;
    assert_eq!(
        metric(&text, "topsellers_purchases_total"),
        Some(valid),
        "{text}"
    );
    assert_eq!(
        metric(&text, "topsellers_bad_records_total"),
        Some(f.bad_lines as f64),
        "{text}"
    );
    for (status, count) in &c.top {
        let series = format!("topsellers_http_requests_total{{route=\"top\",status=\"{status}\"}}");
        assert_eq!(
            metric(&text, &series),
            Some(*count as f64),
            "{series}\n{text}"
        );
    }
    let watermark = metric(&text, "topsellers_watermark_seconds").expect("watermark");
    assert!(
        (watermark - until as f64 / 1000.0).abs() < 1e-3,
        "watermark {watermark} vs the backfill's last event time {until}"
    );
    assert!(
        metric(&text, "topsellers_publish_lag_seconds").is_some(),
        "{text}"
    );
    assert_eq!(service.metrics.purchases_total(), valid as u64);

    // Dead letters of the service.
    service.stop();
    service.shutdown().expect("shutdown");
    let dead_letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead_letters.lines().count() as u64, f.bad_lines);
}

/// `Service::is_ready` (and `/readyz`) must turn true once the backfill snapshot is served.
#[test]
fn readiness_flips_once_the_backfill_is_served() {
    let f = fixture(52);
    let params = Params::new(K, 2, 50_000);
    let config = params.config(&f.paths, "");
    let service = topsellers::run::start(&config).expect("start");
    let until = default_as_of(&f.history.records).unwrap();
    assert!(wait_until(Duration::from_secs(30), || service
        .table
        .published_time_ms()
        == Some(until)));
    let health = http(service.addr, "GET", "/healthz", &[]);
    assert_eq!(health.status, 200);
    let ready = wait_until(Duration::from_secs(10), || service.is_ready());
    let readyz = http(service.addr, "GET", "/readyz", &[]);
    service.stop();
    service.shutdown().expect("shutdown");
    assert!(
        ready,
        "is_ready() still false 10 s after the backfill snapshot was published"
    );
    assert_eq!(readyz.status, 200, "/readyz: {}", readyz.text());
}
