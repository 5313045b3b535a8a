//! Tests of `/v1/stream` (and of the page's routes): [`handle`] called directly, and a real
//! socket for the shutdown.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, Response};
use serde_json::Value;

use crate::body::Body;
use crate::http::{handle, AppState, HttpConfig};
use crate::rejections::Reason;
use crate::server::{connect_for_test, serve_on_loopback};
use crate::table::{ServingTable, TableConfig};
use crate::test_util::{list, profiles, snapshot, H};

fn published() -> AppState {
    let table = ServingTable::new(profiles(), 3, TableConfig::default());
    table.apply(&snapshot(
        H,
        vec![
            list(0, "books/fiction", &[("a", 8), ("b", 6), ("c", 4)]),
            list(1, "books/fiction", &[("z", 1)]),
            list(0, "toys", &[("t", 1)]),
        ],
    ));
    AppState::for_test(Arc::new(table), &HttpConfig::default())
}

/// `handle` never awaits anything, so one poll finishes it.
fn call(state: &AppState, method: Method, uri: &str, headers: &[(&str, &str)]) -> Response<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut future = pin!(handle(state, builder.body(()).unwrap()));
    let waker = std::task::Waker::noop();
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
    {
        std::task::Poll::Ready(response) => response,
        std::task::Poll::Pending => panic!("handle awaited"),
    }
}

fn get(state: &AppState, uri: &str) -> Response<Body> {
    call(state, Method::GET, uri, &[])
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

/// The next chunk of a streamed body, `None` at its end.
async fn next_chunk(body: &mut Body) -> Option<Bytes> {
    let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("no chunk within a minute")?;
    Some(frame.unwrap().into_data().unwrap())
}

/// The `/v1/top` documents of `list` events in `chunk`.
fn list_events(chunk: &[u8]) -> Vec<Vec<u8>> {
    let text = std::str::from_utf8(chunk).unwrap();
    text.split("\n\n")
        .filter_map(|event| {
            let mut lines = event.lines();
            (lines.next() == Some("event: list")).then(|| {
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                assert_eq!(lines.next(), None, "{event:?}");
                data.as_bytes().to_vec()
            })
        })
        .collect()
}

#[test]
fn refuses_like_top_before_the_stream_starts() {
    let unpublished = AppState::for_test(
        Arc::new(ServingTable::new(profiles(), 3, TableConfig::default())),
        &HttpConfig::default(),
    );
    let state = published();
    let cases = [
        (&unpublished, "/v1/stream", 503),
        (&state, "/v1/stream?category=nope", 404),
        (&state, "/v1/stream?category=books&profile=2y", 404),
        (&state, "/v1/stream?limit=0", 400),
        (&state, "/v1/stream?category=%FF", 400),
        (&state, "/v1/stream/books", 404),
    ];
    for (state, uri, status) in cases {
        let response = get(state, uri);
        assert_eq!(response.status(), status, "{uri}");
        assert_eq!(
            header(&response, "content-type"),
            "application/json",
            "{uri}"
        );
        assert!(!response.body().is_streamed(), "{uri}");
        let doc: Value = serde_json::from_slice(&response.body().to_vec()).unwrap();
        assert!(doc["error"].is_string(), "{uri}: {doc}");
    }
    let post = call(&state, Method::POST, "/v1/stream", &[]);
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn sends_the_top_document_then_each_change_then_ends_when_the_server_stops() {
    let state = published();
    let query = "category=books/fiction&profile=1h&limit=2";
    let mut response = get(&state, &format!("/v1/stream?{query}"));
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body = response.body_mut();
    let first = next_chunk(body).await.unwrap();
    assert!(first.starts_with(b"retry: "), "{first:?}");
    let top = get(&state, "/v1/top/books/fiction?profile=1h&limit=2");
    assert_eq!(list_events(&first), [top.body().to_vec()]);

    // A publish that leaves this list alone sends nothing; the next that changes it does.
    state
        .table
        .apply(&snapshot(H + 1000, vec![list(0, "toys", &[("u", 2)])]));
    state.table.apply(&snapshot(
        H + 2000,
        vec![list(0, "books/fiction", &[("c", 9), ("a", 8)])],
    ));
    let second = next_chunk(body).await.unwrap();
    let top = get(&state, "/v1/top/books/fiction?profile=1h&limit=2");
    assert_eq!(list_events(&second), [top.body().to_vec()]);
    let doc: Value = serde_json::from_slice(top.body().to_vec().as_slice()).unwrap();
    assert_eq!(doc["items"][0]["item_id"], "c");

    state.stopping.send_replace(true);
    assert_eq!(next_chunk(body).await, None);
}

#[test]
fn head_of_a_stream_has_no_body_and_no_length() {
    let state = published();
    let response = call(&state, Method::HEAD, "/v1/stream", &[]);
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert!(response.headers().get("content-length").is_none());
    assert!(response.body().is_empty() && !response.body().is_streamed());
}

#[tokio::test]
async fn shutdown_with_an_open_stream_ends_it_and_returns() {
    let state = Arc::new(published());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A drain time far beyond the test's patience: the stream must end on its own.
    let (addr, server) = serve_on_loopback(
        state.clone(),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(3600),
    )
    .await;
    let (mut sender, client) = connect_for_test(addr).await;
    let req = Request::get("/v1/stream?category=toys")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(list_events(first.data_ref().unwrap()).len(), 1);

    stop.send(()).unwrap();
    // The body ends cleanly (the last chunk, not a cut connection) and the server returns.
    let rest = tokio::time::timeout(Duration::from_secs(60), body.collect())
        .await
        .expect("the stream did not end when the server stopped");
    assert!(rest.is_ok(), "{rest:?}");
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the server did not return")
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(60), client).await;
}

#[tokio::test]
async fn a_stream_outlives_the_keep_alive_timeout() {
    let table = published().table;
    let config = HttpConfig {
        keep_alive_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let state = Arc::new(AppState::for_test(table, &config));
    let (addr, server) = serve_on_loopback(
        state.clone(),
        std::future::pending(),
        Duration::from_secs(1),
    )
    .await;
    let (mut sender, client) = connect_for_test(addr).await;
    let req = Request::get("/v1/stream?category=toys")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(list_events(first.data_ref().unwrap()).len(), 1);
    // Silent for ten keep-alive timeouts: a streamed answer is not an idle connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    state
        .table
        .apply(&snapshot(H + 1000, vec![list(0, "toys", &[("u", 2)])]));
    let second = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("no event within a minute")
        .expect("the stream was closed")
        .expect("the connection failed");
    let events = list_events(second.data_ref().unwrap());
    let doc: Value = serde_json::from_slice(&events[0]).unwrap();
    assert_eq!(doc["items"][0]["item_id"], "u");
    server.abort();
    client.abort();
}

#[tokio::test]
async fn a_stream_whose_client_stops_reading_is_closed_by_the_write_timeout() {
    let table = ServingTable::new(profiles(), 1000, TableConfig::default());
    let ids: Vec<String> = (0..1000).map(|i| format!("{i:0>200}")).collect();
    // Every publish reorders the 1000 items: a new document of about 240 KB each time.
    let publish = |at: i64| {
        let items: Vec<(&str, i64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), 1 + ((i as i64 + at) % 1000)))
            .collect();
        snapshot(H + at, vec![list(0, "toys", &items)])
    };
    table.apply(&publish(0));
    let config = HttpConfig {
        write_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let state = Arc::new(AppState::for_test(Arc::new(table), &config));
    let (addr, server) = serve_on_loopback(
        state.clone(),
        std::future::pending(),
        Duration::from_secs(1),
    )
    .await;
    // A client that asks for the stream and never reads.
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut socket,
        b"GET /v1/stream?category=toys HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .unwrap();
    let closed = async {
        let mut at = 1;
        while state.rejections.count(Reason::WriteTimeout) == 0 {
            state.table.apply(&publish(at));
            at += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while state.rejections.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), closed)
        .await
        .expect("the connection of a client that does not read stayed open");
    drop(socket);
    server.abort();
}

#[test]
fn serves_the_page_with_types_and_entity_tags() {
    let state = published();
    for (uri, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/index.html", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/profiles.json", "application/json"),
    ] {
        let response = get(&state, uri);
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(header(&response, "content-type"), content_type, "{uri}");
        assert_eq!(header(&response, "cache-control"), "no-cache", "{uri}");
        let etag = header(&response, "etag").to_owned();
        assert!(etag.starts_with('"'), "{uri}: {etag}");
        assert!(!response.body().is_empty(), "{uri}");
        let again = call(&state, Method::GET, uri, &[("if-none-match", &etag)]);
        assert_eq!(again.status(), 304, "{uri}");
        assert!(again.body().is_empty(), "{uri}");
    }
    let profiles: Value =
        serde_json::from_slice(&get(&state, "/assets/profiles.json").body().to_vec()).unwrap();
    assert_eq!(
        profiles,
        serde_json::json!({"profiles":[{"name":"1h","half_life_ms":H},{"name":"1d","half_life_ms":24 * H}],"k":3})
    );
    for missing in [
        "/assets/",
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/index.html",
    ] {
        let response = get(&state, missing);
        assert_eq!(response.status(), 404, "{missing}");
        assert_eq!(header(&response, "content-type"), "application/json");
    }
}
