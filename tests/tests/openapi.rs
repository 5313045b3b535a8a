//! The OpenAPI contract (`sinks/openapi.json`) against real answers: a `topsellers run`
//! process (files, the publisher held by a failpoint until the test lets it go) is sent a
//! table of requests covering every route and method of the spec, errors included, and each
//! answer's status, headers, content type and body are validated against what the spec says
//! for that path, method and status (JSON Schemas by the `jsonschema` crate). Also what
//! browsers and CDNs rely on, end to end: compressed bodies equal to the identity body byte for
//! byte, an entity tag per coding, CORS, `Retry-After`.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use topsellers_tests::{
    encode_segment, free_loopback_addresses, generate, http, raw_http, top_path, topsellers_exe,
    wait_until, write_parts, Fmt, Proc, Response, Spec, DAY,
};

const PATIENCE: Duration = Duration::from_secs(120);

/// The spec as kept in the repository.
fn spec() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sinks/openapi.json");
    serde_json::from_slice(&std::fs::read(path).expect("sinks/openapi.json")).expect("JSON")
}

/// The OpenAPI document and what it says of answers.
struct Contract {
    spec: Value,
    /// (path template, method) of every request checked.
    covered: BTreeSet<(String, String)>,
    problems: Vec<String>,
}

impl Contract {
    fn new() -> Contract {
        Contract {
            spec: spec(),
            covered: BTreeSet::new(),
            problems: Vec::new(),
        }
    }

    /// Follows a `$ref` to `#/components/…`.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(pointer) => self
                .spec
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {pointer}")),
            None => value,
        }
    }

    /// The spec's path template matching a request path: an exact path first, else a template
    /// whose last segment `{param}` takes the rest (one or more segments).
    fn template(&self, path: &str) -> Option<String> {
        let paths = self.spec["paths"].as_object().expect("paths");
        // `/v1/top/` is the root's list, as `/v1/top`.
        let path = match path.strip_suffix('/') {
            Some(trimmed) if trimmed.starts_with("/v1/top") => trimmed,
            _ => path,
        };
        if paths.contains_key(path) {
            return Some(path.to_owned());
        }
        paths
            .keys()
            .find(|template| {
                template
                    .rfind("/{")
                    .filter(|_| template.ends_with('}'))
                    .is_some_and(|at| {
                        path.strip_prefix(&template[..=at])
                            .is_some_and(|rest| !rest.is_empty())
                    })
            })
            .cloned()
    }

    /// Errors of `instance` against `schema` (refs into the spec's components resolved).
    fn schema_errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.spec["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    /// Validates one answer to `method target`; problems are collected.
    fn check(&mut self, method: &str, target: &str, response: &Response) {
        let context = format!("{method} {target} → {}", response.status);
        let problems = self.problems_of(method, target, response);
        self.problems
            .extend(problems.into_iter().map(|p| format!("{context}: {p}")));
    }

    fn problems_of(&mut self, method: &str, target: &str, response: &Response) -> Vec<String> {
        let path = target.split('?').next().unwrap_or_default();
        let status = response.status.to_string();
        let Some(template) = self.template(path) else {
            // Not a route of the spec: a JSON 404.
            let not_found = json!({"$ref": "#/components/responses/NotFound"});
            return match status.as_str() {
                "404" => self.answer_problems(&not_found, method, response),
                _ => vec![format!(
                    "{path} is no route of the spec but answered {status}"
                )],
            };
        };
        let documented = if method == "HEAD" {
            "get"
        } else {
            &method.to_ascii_lowercase()
        };
        let operation = &self.spec["paths"][&template][documented];
        if operation.is_null() {
            // A method the spec does not list for the route: 405.
            let not_allowed = json!({"$ref": "#/components/responses/MethodNotAllowed"});
            return match status.as_str() {
                "405" => self.answer_problems(&not_allowed, method, response),
                _ => vec![format!(
                    "{method} is not in the spec for {template} but answered {status}"
                )],
            };
        }
        self.covered.insert((template, documented.to_owned()));
        let answer = operation["responses"][&status].clone();
        if answer.is_null() {
            return vec![format!("status {status} is not documented")];
        }
        self.answer_problems(&answer, method, response)
    }

    /// What is wrong with `response` as the documented `answer` (a Response Object).
    fn answer_problems(&self, answer: &Value, method: &str, response: &Response) -> Vec<String> {
        let answer = self.resolve(answer).clone();
        let mut problems = Vec::new();
        for (name, header) in answer["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            let value = response.header(&name.to_ascii_lowercase());
            match value {
                None if header["required"] == true => {
                    problems.push(format!("required header {name} missing"));
                }
                None => {}
                Some(value) => {
                    let schema = &header["schema"];
                    let instance = if schema["type"] == "integer" {
                        value.parse::<i64>().map_or(json!(value), |n| json!(n))
                    } else {
                        json!(value)
                    };
                    for error in self.schema_errors(schema, &instance) {
                        problems.push(format!("header {name}: {value:?}: {error}"));
                    }
                }
            }
        }
        let content = answer["content"].as_object();
        let body = decoded(response);
        let Some(content) = content else {
            if !body.is_empty() {
                problems.push(format!("no body documented, got {} bytes", body.len()));
            }
            return problems;
        };
        let media = response
            .header("content-type")
            .and_then(|t| t.split(';').next())
            .unwrap_or_default()
            .trim();
        let Some(entry) = content.get(media).or_else(|| content.get("*/*")) else {
            problems.push(format!(
                "content type {media:?}, documented {:?}",
                content.keys().collect::<Vec<_>>()
            ));
            return problems;
        };
        if method == "HEAD" {
            if !body.is_empty() {
                problems.push("a body in answer to HEAD".into());
            }
            return problems;
        }
        let instance = if media == "application/json" {
            match serde_json::from_slice(&body) {
                Ok(doc) => doc,
                Err(e) => {
                    problems.push(format!("body is not JSON: {e}"));
                    return problems;
                }
            }
        } else {
            json!(String::from_utf8_lossy(&body))
        };
        for error in self.schema_errors(&entry["schema"], &instance) {
            problems.push(format!("body: {error}"));
        }
        problems
    }

    /// (path, method) pairs of the spec no checked request covered.
    fn uncovered(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (path, item) in self.spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if method == "parameters" {
                    continue;
                }
                if !self.covered.contains(&(path.clone(), method.clone())) {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        missing
    }
}

/// The body, decompressed if it says it is compressed.
fn decoded(response: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    match response.header("content-encoding") {
        // A 304 and the answer to HEAD have no body whatever the coding.
        _ if response.body.is_empty() => return Vec::new(),
        None => return response.body.clone(),
        Some("gzip") => flate2::read::GzDecoder::new(&response.body[..])
            .read_to_end(&mut out)
            .expect("gzip body"),
        Some("br") => brotli::Decompressor::new(&response.body[..], 4096)
            .read_to_end(&mut out)
            .expect("brotli body"),
        Some(other) => panic!("unexpected content-encoding {other}"),
    };
    out
}

/// A `topsellers run` over a generated history in files, its publisher held (every list
/// answer 503) until [`Service::release`].
struct Service {
    proc: Proc,
    addr: SocketAddr,
    hold: PathBuf,
    categories: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(seed: u64, http_extra: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let history = generate(&Spec::new(seed, 3000, 2 * DAY, false));
        let paths = write_parts(
            &dir.path().join("in"),
            &[Fmt::Jsonl],
            &history.records,
            2,
            seed,
        );
        let listen = free_loopback_addresses(1).remove(0);
        let config = format!(
            "[scoring]\nhalf_lives = [\"1h\", \"7d\"]\ntop_k = 100\nretention = \"2d\"\n\
             [[sources]]\ntype = \"files\"\npaths = {paths:?}\n\
             [http]\nlisten = \"{listen}\"\n{http_extra}\n",
            paths = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        );
        let config_path = dir.path().join("topsellers.toml");
        std::fs::write(&config_path, config).unwrap();
        let hold = dir.path().join("publish.hold");
        std::fs::write(&hold, "").unwrap();
        let mut command = Command::new(topsellers_exe());
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("TOPSELLERS_FAILPOINT_PUBLISH_HOLD", &hold);
        let proc = Proc::start(&mut command, dir.path().join("stderr.log"));
        let addr: SocketAddr = listen.parse().unwrap();
        let up = wait_until(PATIENCE, || {
            std::net::TcpStream::connect(addr).is_ok()
                && http(addr, "GET", "/healthz", &[]).status == 200
        });
        assert!(up, "not serving:\n{}", proc.log());
        // The top-level categories, most purchases first (their lists are the longest).
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for record in &history.records {
            let top = record.category.split('/').next().unwrap_or_default();
            *counts.entry(top.to_owned()).or_default() += 1;
        }
        let mut categories: Vec<(usize, String)> =
            counts.into_iter().map(|(c, n)| (n, c)).collect();
        categories.sort_by(|a, b| b.cmp(a));
        let categories = categories.into_iter().map(|(_, c)| c).collect();
        Service {
            proc,
            addr,
            hold,
            categories,
            _dir: dir,
        }
    }

    /// Lets the publisher go and waits until the backfill is served and the process ready.
    fn release(&self) {
        std::fs::remove_file(&self.hold).unwrap();
        let ready = wait_until(PATIENCE, || {
            http(self.addr, "GET", "/readyz", &[]).status == 200
        });
        assert!(ready, "not ready:\n{}", self.proc.log());
    }
}

/// Sends requests to a service and checks every answer against the contract.
struct Client<'a> {
    addr: SocketAddr,
    contract: &'a mut Contract,
}

impl Client<'_> {
    fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let response = http(self.addr, method, target, headers);
        self.contract.check(method, target, &response);
        response
    }

    /// Sends a request and asserts its status.
    fn expect(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        status: u16,
    ) -> Response {
        let response = self.send(method, target, headers);
        assert_eq!(
            response.status,
            status,
            "{method} {target}: {}",
            String::from_utf8_lossy(&decoded(&response))
        );
        response
    }
}

/// One request of the table: method, target, headers, the status expected.
type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);

#[test]
fn every_route_answers_as_the_contract_says() {
    // An experiment, so that `?experiment=` answers 200 as well as its errors.
    let service = Service::start(
        61,
        "[[experiments]]\nname = \"decay\"\nweights = { \"1h\" = 1, \"7d\" = 1 }\n",
    );
    let mut contract = Contract::new();
    let mut c = Client {
        addr: service.addr,
        contract: &mut contract,
    };
    // Before the first snapshot.
    for target in [
        "/v1/top",
        "/v1/top/x",
        "/v1/categories",
        "/readyz",
        "/v1/movers",
        "/v1/movers/x",
        "/v1/stream?category=x",
    ] {
        c.expect("GET", target, &[], 503);
    }
    service.release();

    let category = top_path(&service.categories[0]);
    let special = format!("/v1/top/{}", encode_segment("100% sûr?"));
    let long_target = format!("/v1/top?utm={}", "x".repeat(9000));
    let movers = category.replacen("/v1/top", "/v1/movers", 1);
    let stream = format!(
        "/v1/stream?category={}&limit=5",
        encode_segment(&service.categories[0])
    );
    let table: &[Row] = &[
        ("GET", "/v1/top?experiment=decay&visitor=v-1", &[], 200),
        ("GET", "/v1/top?experiment=nope&visitor=v-1", &[], 404),
        ("GET", "/v1/top?experiment=decay", &[], 400),
        (
            "GET",
            "/v1/top?experiment=decay&visitor=v&profile=1h",
            &[],
            400,
        ),
        ("GET", "/v1/top?include_unavailable=true&limit=5", &[], 200),
        ("GET", "/v1/top?include_unavailable=maybe", &[], 400),
        ("GET", "/v1/movers", &[], 200),
        ("GET", "/v1/movers?short=1h&long=7d&limit=3", &[], 200),
        ("GET", &movers, &[], 200),
        ("HEAD", &movers, &[], 200),
        ("GET", "/v1/movers?short=9d", &[], 404),
        ("GET", "/v1/movers/no/such/category", &[], 404),
        ("GET", "/v1/movers?limit=x", &[], 400),
        // A stream's head (its body never ends): status, type and headers.
        ("HEAD", &stream, &[], 200),
        ("GET", "/v1/stream?category=no/such/category", &[], 404),
        ("GET", "/v1/stream?category=x&limit=0", &[], 400),
        ("GET", "/v1/stream?category=x&profile=9d", &[], 404),
        ("GET", "/", &[], 200),
        ("GET", "/assets/app.js", &[], 200),
        ("GET", "/assets/style.css", &[], 200),
        ("GET", "/assets/nope.js", &[], 404),
        ("GET", "/v1/top", &[], 200),
        ("GET", "/v1/top/", &[], 200),
        ("GET", "/v1/top?limit=3&profile=7d", &[], 200),
        (
            "GET",
            "/v1/top?limit=100000",
            &[("accept-encoding", "br")],
            200,
        ),
        ("GET", "/v1/top", &[("accept-encoding", "gzip")], 200),
        ("HEAD", "/v1/top", &[], 200),
        ("GET", &category, &[], 200),
        (
            "GET",
            &format!("{category}?limit=2"),
            &[("accept-encoding", "gzip, br")],
            200,
        ),
        ("HEAD", &category, &[], 200),
        ("GET", "/v1/top?limit=0", &[], 400),
        ("GET", "/v1/top?limit=abc", &[], 400),
        ("GET", "/v1/top/a%2Fb", &[], 400),
        ("GET", "/v1/top/books//x", &[], 400),
        ("GET", "/v1/top?profile=9d", &[], 404),
        ("GET", "/v1/top/no/such/category", &[], 404),
        ("GET", &special, &[], 404),
        ("GET", &long_target, &[], 414),
        ("GET", "/v1/categories", &[], 200),
        ("GET", "/healthz", &[], 200),
        ("GET", "/readyz", &[], 200),
        ("GET", "/metrics", &[], 200),
        ("GET", "/openapi.json", &[], 200),
        ("GET", "/openapi.json", &[("accept-encoding", "br")], 200),
        ("GET", "/nowhere", &[], 404),
        ("GET", "/v1/topx", &[], 404),
        ("POST", "/v1/top", &[], 405),
        ("DELETE", "/v1/categories", &[], 405),
    ];
    for (method, target, headers, status) in table {
        c.expect(method, target, headers, *status);
    }
    // Without [http] cors_origins OPTIONS is not allowed.
    let spec_paths: Vec<String> = c.contract.spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for path in &spec_paths {
        let target = path
            .replace("{category}", "books")
            .replace("{file}", "app.js");
        c.expect(
            "OPTIONS",
            &target,
            &[("origin", "https://shop.example")],
            405,
        );
    }
    // Conditional requests: 304 for the current tag.
    for target in [
        "/v1/top",
        "/v1/top?limit=2",
        category.as_str(),
        "/v1/categories",
        "/openapi.json",
        "/",
        "/assets/app.js",
        movers.as_str(),
    ] {
        for coding in ["identity", "gzip", "br"] {
            let first = c.expect("GET", target, &[("accept-encoding", coding)], 200);
            let etag = first.header("etag").expect("an ETag").to_owned();
            c.expect(
                "GET",
                target,
                &[("accept-encoding", coding), ("if-none-match", &etag)],
                304,
            );
        }
    }
    // Headers too large: 431 (JSON, from the server, below hyper's own limit).
    let big = "v".repeat(40 * 1024);
    c.expect("GET", "/v1/top", &[("x-big", &big)], 431);

    // The spec served is the file kept in the repository.
    let served = http(service.addr, "GET", "/openapi.json", &[]);
    let kept =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../sinks/openapi.json")).unwrap();
    assert!(
        served.body == kept,
        "/openapi.json is not sinks/openapi.json"
    );

    assert!(
        contract.problems.is_empty(),
        "answers not as the contract says:\n{}",
        contract.problems.join("\n")
    );
    let uncovered = contract.uncovered();
    assert!(
        uncovered.is_empty(),
        "routes of the spec no request of the table covers: {uncovered:?}"
    );
}

/// Gzip and brotli bodies decompress to the identity body byte for byte, each coding has its
/// own tag (304 for it, 200 for another's), CORS headers go to the configured origin only and
/// preflights are answered, and every 503 says `Retry-After`. The answers are checked
/// against the contract too (the preflight's 204 among them).
#[test]
fn browsers_and_caches_get_compressed_lists_cors_and_retry_after() {
    let service = Service::start(62, "cors_origins = [\"https://shop.example\"]");
    let mut contract = Contract::new();
    let mut c = Client {
        addr: service.addr,
        contract: &mut contract,
    };
    for target in ["/v1/top", "/v1/categories", "/readyz"] {
        let response = c.expect("GET", target, &[], 503);
        assert_eq!(response.header("retry-after"), Some("1"), "{target}");
    }
    service.release();
    assert_eq!(
        c.expect("GET", "/readyz", &[], 200).header("retry-after"),
        None
    );

    let category = top_path(&service.categories[0]);
    for target in [
        "/v1/top",
        category.as_str(),
        "/v1/top?profile=7d",
        "/openapi.json",
    ] {
        let plain = c.expect("GET", target, &[], 200);
        let tag = plain.header("etag").expect("ETag").to_owned();
        assert!(
            plain.body.len() >= 256,
            "{target}: too short to be compressed"
        );
        for (accept, coding, suffix) in [
            ("gzip, deflate, br, zstd", "br", "-br"),
            ("gzip", "gzip", "-gz"),
            ("br;q=0.1, gzip;q=0.9", "gzip", "-gz"),
            ("identity", "", ""),
        ] {
            let response = c.expect("GET", target, &[("accept-encoding", accept)], 200);
            assert_eq!(response.header("content-encoding").unwrap_or(""), coding);
            assert!(
                decoded(&response) == plain.body,
                "{target} {accept}: the decompressed body differs from the identity body"
            );
            assert!(response
                .header("vary")
                .is_some_and(|v| v.contains("Accept-Encoding")));
            let etag = response.header("etag").unwrap().to_owned();
            assert_eq!(etag, format!("{}{suffix}\"", tag.trim_end_matches('"')));
            let again = [
                ("accept-encoding", accept),
                ("if-none-match", etag.as_str()),
            ];
            c.expect("GET", target, &again, 304);
            let other = if suffix == "-br" {
                tag.clone()
            } else {
                format!("{}-br\"", tag.trim_end_matches('"'))
            };
            let stale = [
                ("accept-encoding", accept),
                ("if-none-match", other.as_str()),
            ];
            c.expect("GET", target, &stale, 200);
            let head = c.expect("HEAD", target, &[("accept-encoding", accept)], 200);
            assert_eq!(
                head.header("content-length"),
                Some(response.body.len().to_string().as_str())
            );
        }
    }

    // CORS: the configured origin, not another; preflights on every route.
    let shop = [("origin", "https://shop.example")];
    let allowed = c.expect("GET", "/v1/top", &shop, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let denied = c.expect("GET", "/v1/top", &[("origin", "https://evil.example")], 200);
    assert_eq!(denied.header("access-control-allow-origin"), None);
    let error = c.expect("GET", "/v1/top/no/such", &shop, 404);
    assert_eq!(
        error.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let preflight = [
        ("origin", "https://shop.example"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "if-none-match"),
    ];
    for target in [
        "/v1/top",
        &category,
        "/v1/categories",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let response = c.expect("OPTIONS", target, &preflight, 204);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("https://shop.example")
        );
        assert_eq!(
            response.header("access-control-allow-methods"),
            Some("GET, HEAD")
        );
        assert!(response.header("access-control-max-age").is_some());
        let refused = c.expect(
            "OPTIONS",
            target,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            204,
        );
        assert_eq!(refused.header("access-control-allow-origin"), None);
        assert_eq!(refused.header("access-control-allow-methods"), None);
    }
    assert!(
        contract.problems.is_empty(),
        "answers not as the contract says:\n{}",
        contract.problems.join("\n")
    );
    // A raw request to be sure the server, not the client library, sent the coding.
    let raw = raw_http(
        service.addr,
        b"GET /v1/top HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(raw.header("content-encoding"), Some("br"));
}

/// The coverage check itself: with no request sent, every route and method of the spec is
/// missing.
#[test]
fn the_coverage_check_names_every_route_not_requested() {
    let contract = Contract::new();
    let missing = contract.uncovered();
    for expected in [
        "get /v1/top",
        "options /v1/top/{category}",
        "get /metrics",
        "get /openapi.json",
        "get /v1/movers/{category}",
        "get /v1/stream",
        "get /",
        "get /assets/{file}",
    ] {
        assert!(
            missing.contains(&expected.to_owned()),
            "{expected} in {missing:?}"
        );
    }
}
