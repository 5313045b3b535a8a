//! Tests of the HTTP API: [`handle`] called directly, and one real socket.

use super::*;
use crate::server::{connect_for_test, serve_on_loopback};
use crate::table::TableConfig;
use crate::test_util::{list, profiles, snapshot, H};
use http_body_util::{BodyExt, Empty};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::pin;

fn state() -> AppState {
    let table = ServingTable::new(profiles(), 3, TableConfig::default());
    AppState::for_test(Arc::new(table), &HttpConfig::default())
}

pub(super) fn published() -> AppState {
    let state = state();
    state.table.apply(&snapshot(
        H,
        vec![
            list(
                0,
                "books/fiction",
                &[("a", 8), ("b", 6), ("c", 4), ("d", 2)],
            ),
            list(1, "books/fiction", &[("z", 1)]),
            list(0, "bücher/sci fi", &[("x\"y", 2)]),
            list(0, "", &[("a", 8)]),
        ],
    ));
    state
}

pub(super) fn get(state: &AppState, uri: &str) -> Response<Body> {
    request(state, Method::GET, uri, &[])
}

pub(super) fn request(
    state: &AppState,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Response<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(()).unwrap();
    futures_lite_block_on(handle(state, req))
}

/// `handle` never awaits anything, so one poll finishes it.
fn futures_lite_block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = std::task::Waker::noop();
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("handle awaited"),
    }
}

pub(super) fn json_body(response: &Response<Body>) -> Value {
    serde_json::from_slice(&response.body().to_vec())
        .unwrap_or_else(|e| panic!("{e}: {:?}", response.body().to_vec()))
}

pub(super) fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn item_ids(doc: &Value) -> Vec<&str> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["item_id"].as_str().unwrap())
        .collect()
}

#[test]
fn not_ready_before_the_first_snapshot() {
    let state = state();
    for uri in ["/v1/top", "/v1/top/books", "/v1/categories"] {
        let response = get(&state, uri);
        assert_eq!(response.status(), 503, "{uri}");
        assert_eq!(
            json_body(&response),
            json!({"error": "not ready: no snapshot published yet"})
        );
    }
    assert_eq!(get(&state, "/healthz").status(), 200);
    let ready = get(&state, "/readyz");
    assert_eq!(ready.status(), 503);
    assert_eq!(json_body(&ready)["ready"], false);
    assert_eq!(json_body(&ready)["reason"], "starting");
    state.readiness.set_ready("caught up");
    let ready = get(&state, "/readyz");
    assert_eq!(ready.status(), 200);
    assert_eq!(json_body(&ready)["ready"], true);
}

#[test]
fn top_lists() {
    let state = published();
    let response = get(&state, "/v1/top/books/fiction");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    assert_eq!(header(&response, "cache-control"), "public, max-age=1");
    assert!(header(&response, "etag").starts_with('"'));
    let doc = json_body(&response);
    assert_eq!(doc["category"], "books/fiction");
    assert_eq!(doc["profile"], "1h");
    assert_eq!(doc["as_of"], "1970-01-01T01:00:00.000Z");
    assert_eq!(item_ids(&doc), ["a", "b", "c"]); // k = 3
    assert_eq!(
        doc["items"][0],
        json!({"rank": 1, "item_id": "a", "score": 4.0})
    );

    // Root, both spellings, and a known ancestor without its own list.
    for uri in ["/v1/top", "/v1/top/"] {
        let doc = json_body(&get(&state, uri));
        assert_eq!(doc["category"], "");
        assert_eq!(item_ids(&doc), ["a"]);
    }
    let books = get(&state, "/v1/top/books");
    assert_eq!(books.status(), 200);
    assert_eq!(json_body(&books)["items"], json!([]));

    // Profiles.
    let doc = json_body(&get(&state, "/v1/top/books/fiction?profile=1d"));
    assert_eq!(doc["profile"], "1d");
    assert_eq!(item_ids(&doc), ["z"]);
    let unknown = get(&state, "/v1/top/books/fiction?profile=9d");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        json_body(&unknown),
        json!({"error": "unknown profile \"9d\""})
    );

    // Percent-encoded unicode segments.
    for uri in [
        "/v1/top/b%C3%BCcher/sci%20fi",
        "/v1/top/b%c3%bccher/sci%20fi?utm_source=x",
    ] {
        let doc = json_body(&get(&state, uri));
        assert_eq!(doc["category"], "bücher/sci fi");
        assert_eq!(item_ids(&doc), ["x\"y"]);
    }

    // Unknown category.
    let missing = get(&state, "/v1/top/toys");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        json_body(&missing),
        json!({"error": "unknown category \"toys\""})
    );
}

#[test]
fn limits() {
    let state = published();
    let full_etag = header(&get(&state, "/v1/top/books/fiction"), "etag").to_owned();
    for n in 1..=3 {
        let response = get(&state, &format!("/v1/top/books/fiction?limit={n}"));
        assert_eq!(response.status(), 200);
        let doc = json_body(&response);
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), n);
        for (at, item) in items.iter().enumerate() {
            assert_eq!(item["rank"], at + 1);
        }
        assert_eq!(header(&response, "etag") == full_etag, n == 3);
    }
    let clamped = get(&state, "/v1/top/books/fiction?limit=1000");
    assert_eq!(item_ids(&json_body(&clamped)).len(), 3);
    assert_eq!(header(&clamped, "etag"), full_etag);
    for bad in ["limit=0", "limit=-1", "limit=2.5", "limit=abc", "limit="] {
        let response = get(&state, &format!("/v1/top/books/fiction?{bad}"));
        assert_eq!(response.status(), 400, "{bad}");
        assert!(json_body(&response)["error"]
            .as_str()
            .unwrap()
            .contains("limit"));
    }
    for bad in [
        "/v1/top/books//fiction",
        "/v1/top/books/",
        "/v1/top/a%2Fb",
        "/v1/top/%FF",
    ] {
        let response = get(&state, bad);
        assert_eq!(response.status(), 400, "{bad}");
        assert!(json_body(&response)["error"].is_string());
    }
}

#[test]
fn etags_and_not_modified() {
    let state = published();
    let first = get(&state, "/v1/top/books/fiction?limit=2");
    let etag = header(&first, "etag").to_owned();
    assert_eq!(
        header(&get(&state, "/v1/top/books/fiction?limit=2"), "etag"),
        etag,
        "stable"
    );
    for value in [etag.as_str(), "*", &format!("\"other\", W/{etag}")] {
        let response = request(
            &state,
            Method::GET,
            "/v1/top/books/fiction?limit=2",
            &[("if-none-match", value)],
        );
        assert_eq!(response.status(), 304, "{value}");
        assert!(response.body().is_empty());
        assert_eq!(header(&response, "etag"), etag);
        assert_eq!(header(&response, "cache-control"), "public, max-age=1");
    }
    let other = request(
        &state,
        Method::GET,
        "/v1/top/books/fiction?limit=2",
        &[("if-none-match", "\"nope\"")],
    );
    assert_eq!(other.status(), 200);

    // A new list under the same key changes the tag; the old tag no longer matches.
    state.table.apply(&snapshot(
        H + 1,
        vec![list(0, "books/fiction", &[("q", 1)])],
    ));
    let changed = request(
        &state,
        Method::GET,
        "/v1/top/books/fiction?limit=2",
        &[("if-none-match", &etag)],
    );
    assert_eq!(changed.status(), 200);
    assert_ne!(header(&changed, "etag"), etag);
    assert_eq!(item_ids(&json_body(&changed)), ["q"]);

    // Categories have tags too.
    let categories = get(&state, "/v1/categories");
    let tag = header(&categories, "etag").to_owned();
    let again = request(
        &state,
        Method::GET,
        "/v1/categories",
        &[("if-none-match", &tag)],
    );
    assert_eq!(again.status(), 304);
}

#[test]
fn categories_tree() {
    let state = published();
    let response = get(&state, "/v1/categories");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    assert_eq!(
        json_body(&response),
        json!({"categories": [
            {"category": "", "parent": null, "children": ["books", "bücher"]},
            {"category": "books", "parent": "", "children": ["books/fiction"]},
            {"category": "books/fiction", "parent": "books", "children": []},
            {"category": "bücher", "parent": "", "children": ["bücher/sci fi"]},
            {"category": "bücher/sci fi", "parent": "bücher", "children": []},
        ]})
    );
}

#[test]
fn methods_routes_and_head() {
    let state = published();
    for uri in [
        "/v1/top/books",
        "/v1/categories",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        let response = request(&state, Method::POST, uri, &[]);
        assert_eq!(response.status(), 405, "{uri}");
        assert_eq!(header(&response, "allow"), "GET, HEAD");
        assert!(json_body(&response)["error"]
            .as_str()
            .unwrap()
            .contains("POST"));
    }
    for uri in ["/x", "/v1/topx", "/v1", "/index.html", "/v1/streams"] {
        let response = get(&state, uri);
        assert_eq!(response.status(), 404);
        assert_eq!(
            json_body(&response),
            json!({"error": format!("no such route: {uri}")})
        );
    }
    assert_eq!(request(&state, Method::DELETE, "/nope", &[]).status(), 404);

    let full_len = get(&state, "/v1/top/books/fiction?limit=2").body().len();
    let head = request(&state, Method::HEAD, "/v1/top/books/fiction?limit=2", &[]);
    assert_eq!(head.status(), 200);
    assert!(head.body().is_empty());
    assert_eq!(header(&head, "content-length"), full_len.to_string());
    assert!(!header(&head, "etag").is_empty());

    let health = get(&state, "/healthz");
    assert_eq!(json_body(&health), json!({"status": "ok"}));
}

#[test]
fn metrics_count_requests() {
    let state = published();
    state.metrics.add_purchases(12);
    get(&state, "/v1/top");
    get(&state, "/v1/top");
    get(&state, "/v1/top/nope");
    get(&state, "/v1/top?limit=0");
    get(&state, "/elsewhere");
    get(&state, "/v1/categories");
    request(&state, Method::PUT, "/healthz", &[]);
    let response = get(&state, "/metrics");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(response.body().to_vec()).unwrap();
    for line in [
        "topsellers_purchases_total 12",
        "topsellers_http_requests_total{route=\"top\",status=\"200\"} 2",
        "topsellers_http_requests_total{route=\"top\",status=\"404\"} 1",
        "topsellers_http_requests_total{route=\"top\",status=\"400\"} 1",
        "topsellers_http_requests_total{route=\"other\",status=\"404\"} 1",
        "topsellers_http_requests_total{route=\"categories\",status=\"200\"} 1",
        "topsellers_http_requests_total{route=\"healthz\",status=\"405\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert_eq!(state.metrics.requests(Route::Metrics, 200), 1);
}

#[test]
fn cache_max_age_is_configurable() {
    let table = Arc::new(ServingTable::new(profiles(), 3, TableConfig::default()));
    table.apply(&snapshot(0, vec![]));
    let config: HttpConfig = serde_json::from_str("{\"cache_max_age\": 30}").unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080");
    assert!(serde_json::from_str::<HttpConfig>("{\"port\": 1}").is_err());
    let state = AppState::for_test(table, &config);
    let response = get(&state, "/v1/top");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "public, max-age=30");
}

#[tokio::test]
async fn serves_a_real_socket_and_shuts_down_gracefully() {
    let state = Arc::new(published());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = serve_on_loopback(
        state.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    )
    .await;

    let (mut sender, client) = connect_for_test(addr).await;
    for limit in [1, 2] {
        let req = Request::get(format!("/v1/top/books/fiction?limit={limit}"))
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("etag"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["items"].as_array().unwrap().len(), limit);
    }

    // Shutdown closes the idle keep-alive connection and the server returns.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), client)
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert_eq!(state.metrics.requests(Route::Top, 200), 2);
}

/// `?experiment=&visitor=` serves the profile the documented hash picks, names it in
/// `X-Topsellers-Profile` and counts the exposure; misuse is a JSON 4xx.
#[test]
fn experiments_pick_the_profile() {
    use crate::experiments::{ExperimentConfig, Experiments};
    let config = ExperimentConfig {
        name: "decay".into(),
        weights: [("1h".to_owned(), 50), ("1d".to_owned(), 50)].into(),
    };
    let experiments = Experiments::new(&[config], &profiles()).unwrap();
    let state = published().with_experiments(experiments.clone());
    let mut seen = [0u64; 2];
    for visitor in ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"] {
        let uri = format!("/v1/top/books/fiction?experiment=decay&visitor={visitor}");
        let response = get(&state, &uri);
        assert_eq!(response.status(), 200, "{uri}");
        let want = experiments.assign("decay", visitor).unwrap();
        let name = ["1h", "1d"][want];
        assert_eq!(header(&response, "x-topsellers-profile"), name);
        assert_eq!(json_body(&response)["profile"], name);
        seen[want] += 1;
    }
    assert!(seen.iter().all(|&n| n > 0), "both profiles seen: {seen:?}");
    assert_eq!(experiments.exposures("decay", "1h"), seen[0]);
    assert_eq!(experiments.exposures("decay", "1d"), seen[1]);
    let metrics = state.metrics.render_prometheus(0);
    let series = format!(
        "topsellers_experiment_exposures_total{{experiment=\"decay\",profile=\"1h\"}} {}",
        seen[0]
    );
    assert!(metrics.contains(&series), "{metrics}");
    for (uri, status) in [
        ("/v1/top/books?experiment=nope&visitor=v1", 404),
        ("/v1/top/books?experiment=decay", 400),
        ("/v1/top/books?experiment=decay&visitor=", 400),
        ("/v1/top/books?experiment=decay&visitor=v1&profile=1h", 400),
        ("/v1/top/nope?experiment=decay&visitor=v1", 404),
    ] {
        let response = get(&state, uri);
        assert_eq!(response.status(), status, "{uri}");
        assert!(json_body(&response)["error"].is_string(), "{uri}");
        assert!(response.headers().get("x-topsellers-profile").is_none());
    }
    assert_eq!(
        experiments.exposures("decay", "1h") + experiments.exposures("decay", "1d"),
        8,
        "errors are not exposures"
    );
}

/// `/v1/movers`: 503 before the first snapshot and for lists without carried scores, 404 when
/// off or for an unknown profile or category; with one profile as both short and long every
/// momentum is 1 and the order is the list's.
#[test]
fn movers_route_answers_and_refuses() {
    let state = state();
    assert_eq!(get(&state, "/v1/movers").status(), 503);
    state.table.apply(&snapshot(
        H,
        vec![list(0, "books", &[("a", 8), ("b", 6), ("c", 2)])],
    ));
    let response = get(&state, "/v1/movers/books");
    assert_eq!(response.status(), 503, "the test lists carry no scores");
    assert!(json_body(&response)["error"]
        .as_str()
        .unwrap()
        .contains("carry"));
    let response = get(&state, "/v1/movers/books?short=1h&long=1h&limit=2");
    assert_eq!(response.status(), 200);
    let doc = json_body(&response);
    assert_eq!((&doc["short"], &doc["long"]), (&json!("1h"), &json!("1h")));
    assert_eq!(item_ids(&doc), ["a", "b"], "momentum 1 each: by item_id");
    assert_eq!(doc["items"][0]["momentum"], 1.0);
    assert_eq!(
        doc["items"][0]["score"], 4.0,
        "min_score 3 keeps a (4) and b (3)"
    );
    assert!(!header(&response, "etag").is_empty());
    for (uri, status) in [
        ("/v1/movers?short=9d", 404),
        ("/v1/movers/toys", 404),
        ("/v1/movers?limit=x", 400),
    ] {
        let response = get(&state, uri);
        assert_eq!(response.status(), status, "{uri}");
        assert!(json_body(&response)["error"].is_string());
    }
    let off = state.with_movers(crate::movers::MoversConfig {
        enabled: false,
        ..Default::default()
    });
    assert_eq!(get(&off, "/v1/movers/books").status(), 404);
}

/// With an availability input, an unavailable item is never a mover; restocked, it is again.
#[test]
fn unavailable_items_are_never_movers() {
    let availability = Arc::new(crate::availability::Availability::new());
    let table = ServingTable::new(profiles(), 3, TableConfig::default())
        .with_availability(availability.clone());
    let state = AppState::for_test(Arc::new(table), &HttpConfig::default());
    state.table.apply(&snapshot(
        H,
        vec![list(0, "books", &[("a", 8), ("b", 6), ("c", 2)])],
    ));
    let movers = |state: &AppState| {
        let response = get(state, "/v1/movers/books?short=1h&long=1h");
        assert_eq!(response.status(), 200);
        let doc = json_body(&response);
        item_ids(&doc)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    assert_eq!(movers(&state), ["a", "b"]);
    availability.apply([("a", false, 1)]);
    assert_eq!(movers(&state), ["b"]);
    availability.apply([("a", true, 2)]);
    assert_eq!(movers(&state), ["a", "b"]);
}
