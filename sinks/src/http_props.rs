//! Property tests of the request parsing (path, percent-decoding, query string) on arbitrary
//! input: no panic, and every answer a status with a JSON error body when it is an error.
//! `PROPTEST_CASES=100000 cargo test --release -p topsellers-sinks props` runs longer.

use std::future::Future;
use std::pin::pin;

use proptest::prelude::*;

use super::*;
use crate::table::TableConfig;
use crate::test_util::{list, profiles, snapshot, H};

fn published() -> AppState {
    let table = ServingTable::new(profiles(), 3, TableConfig::default());
    let state = AppState::for_test(Arc::new(table), &HttpConfig::default());
    state.table.apply(&snapshot(
        H,
        vec![
            list(0, "books/fiction", &[("a", 8), ("b", 6)]),
            list(0, "bücher/sci fi", &[("x", 2)]),
            list(0, "", &[("a", 8)]),
        ],
    ));
    state
}

/// `handle` never awaits anything, so one poll finishes it.
fn answer(state: &AppState, uri: &str) -> Option<Response<Body>> {
    let req = Request::builder().uri(uri).body(()).ok()?; // not a URI hyper would pass on
    let mut future = pin!(handle(state, req));
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(response) => Some(response),
        std::task::Poll::Pending => panic!("handle awaited"),
    }
}

/// Path and query material: percent escapes (valid, invalid, of invalid UTF-8), separators,
/// the API's own words, arbitrary characters.
fn uri_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z/ ]{0,6}",
        2 => prop::sample::select(vec![
            "%", "%2", "%2F", "%zz", "%ff", "%C3%A9", "%00", "?", "&", "=", "+", "#", "..", "//",
            "limit=", "profile=", "limit=3", "profile=7d", "books", "fiction", "bücher",
            "category=", "app.js",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

/// Cases per property: 512, or `PROPTEST_CASES` (proptest's own variable, which an explicit
/// `with_cases` would override).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_path_and_query_gets_an_answer(rest in uri_text(), prefix in prop::sample::select(
        vec!["/v1/top", "/v1/top/", "/v1/categories", "/metrics", "/", "", "/v1/stream?category=",
            "/v1/stream?", "/assets/"]))
    {
        let state = published();
        let uri = format!("{prefix}{rest}");
        if let Some(response) = answer(&state, &uri) {
            let status = response.status();
            prop_assert!(status.is_success() || status.is_client_error() || status == 304,
                "{uri:?}: {status}");
            if status.is_client_error() {
                let body: serde_json::Value = serde_json::from_slice(&response.body().to_vec())
                    .map_err(|e| TestCaseError::fail(format!("{uri:?}: {e}")))?;
                prop_assert!(body["error"].is_string(), "{uri:?}: {body}");
            }
        }
    }

    #[test]
    fn request_parts_never_panic(text in uri_text()) {
        let _ = crate::request::decode_category(&text);
        let _ = crate::request::TopQuery::parse(Some(&text));
    }
}
