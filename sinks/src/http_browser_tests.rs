//! Tests of what browsers and CDNs rely on: compressed bodies chosen by `Accept-Encoding`
//! with an entity tag per coding, CORS, and `Retry-After` on 503s ([`handle`] called directly).

use std::io::Read;

use super::tests::{get, header, json_body, published, request};
use super::*;
use crate::table::TableConfig;
use crate::test_util::{list, profiles, snapshot, H};

/// A published top-100 list under "big" (large enough to be compressed), served with `config`
/// (compression as it says).
fn big(config: &HttpConfig) -> AppState {
    let table = ServingTable::new(profiles(), 100, TableConfig::default())
        .with_compression(config.compression);
    let names: Vec<String> = (0..150).map(|i| format!("sku-{i:05}")).collect();
    let items: Vec<(&str, i64)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), 1000 - i as i64))
        .collect();
    table.apply(&snapshot(H, vec![list(0, "big", &items)]));
    AppState::for_test(Arc::new(table), config)
}

fn with_suffix(etag: &str, suffix: &str) -> String {
    format!("{}{suffix}\"", etag.trim_end_matches('"'))
}

fn decoded(response: &Response<Body>) -> Vec<u8> {
    let body = response.body().to_vec();
    let mut out = Vec::new();
    match header(response, "content-encoding") {
        "" => return body,
        "gzip" => flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap(),
        "br" => brotli::Decompressor::new(&body[..], 4096)
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unexpected coding {other}"),
    };
    out
}

fn vary(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_whole_list_is_served_in_the_preferred_coding_with_its_own_tag() {
    let state = big(&HttpConfig::default());
    let plain = get(&state, "/v1/top/big");
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(vary(&plain), ["Accept-Encoding"]);
    let identity = plain.body().to_vec();
    assert_eq!(json_body(&plain)["items"].as_array().unwrap().len(), 100);
    let tag = header(&plain, "etag").to_owned();
    for (accept, coding, suffix) in [
        ("gzip, deflate, br, zstd", "br", "-br"),
        ("gzip", "gzip", "-gz"),
        ("br;q=0.5, gzip", "gzip", "-gz"),
        ("br;q=0, gzip;q=0", "", ""),
        ("identity", "", ""),
        ("*", "br", "-br"),
    ] {
        let response = request(
            &state,
            Method::GET,
            "/v1/top/big",
            &[("accept-encoding", accept)],
        );
        assert_eq!(response.status(), 200, "{accept}");
        assert_eq!(header(&response, "content-encoding"), coding, "{accept}");
        assert_eq!(decoded(&response), identity, "{accept}: the same document");
        assert_eq!(vary(&response), ["Accept-Encoding"], "{accept}");
        let etag = header(&response, "etag").to_owned();
        assert_eq!(etag, with_suffix(&tag, suffix), "{accept}");
        if !coding.is_empty() {
            assert!(response.body().len() < identity.len() / 3, "{accept}");
        }
        // 304 for the tag of the coding that would be served, not for another coding's.
        let again = request(
            &state,
            Method::GET,
            "/v1/top/big",
            &[("accept-encoding", accept), ("if-none-match", &etag)],
        );
        assert_eq!(again.status(), 304, "{accept}");
        assert_eq!(header(&again, "etag"), etag);
        assert_eq!(header(&again, "content-encoding"), "");
        assert!(again.body().is_empty());
        for other in ["", "-gz", "-br"].iter().filter(|&&s| s != suffix) {
            let miss = request(
                &state,
                Method::GET,
                "/v1/top/big",
                &[
                    ("accept-encoding", accept),
                    ("if-none-match", &with_suffix(&tag, other)),
                ],
            );
            assert_eq!(miss.status(), 200, "{accept} with the {other:?} tag");
        }
        // HEAD says the length of the body a GET would send.
        let head = request(
            &state,
            Method::HEAD,
            "/v1/top/big",
            &[("accept-encoding", accept)],
        );
        assert_eq!(
            header(&head, "content-length"),
            response.body().len().to_string()
        );
        assert_eq!(header(&head, "content-encoding"), coding);
    }
    // Another limit is sliced from the identity document: never compressed, no Vary.
    let cut = request(
        &state,
        Method::GET,
        "/v1/top/big?limit=5",
        &[("accept-encoding", "br")],
    );
    assert_eq!(header(&cut, "content-encoding"), "");
    assert!(vary(&cut).is_empty());
    assert_eq!(json_body(&cut)["items"].as_array().unwrap().len(), 5);
    // A limit of at least the length serves the whole document, compressed.
    let over = request(
        &state,
        Method::GET,
        "/v1/top/big?limit=500",
        &[("accept-encoding", "br")],
    );
    assert_eq!(header(&over, "content-encoding"), "br");
    // A document too short to gain from compression is served as it is.
    let small = published();
    let short = request(&small, Method::GET, "/v1/top", &[("accept-encoding", "br")]);
    assert_eq!(header(&short, "content-encoding"), "");
    assert!(vary(&short).is_empty());
    // The OpenAPI document too.
    let spec = get(&state, "/openapi.json");
    let spec_br = request(
        &state,
        Method::GET,
        "/openapi.json",
        &[("accept-encoding", "br")],
    );
    assert_eq!(header(&spec_br, "content-encoding"), "br");
    assert_eq!(decoded(&spec_br), spec.body().to_vec());
    assert_eq!(spec.body().to_vec(), crate::openapi::OPENAPI_JSON);
}

#[test]
fn compression_can_be_turned_off() {
    let config: HttpConfig = serde_json::from_str("{\"compression\": false}").unwrap();
    let state = big(&config);
    let response = request(
        &state,
        Method::GET,
        "/v1/top/big",
        &[("accept-encoding", "br, gzip")],
    );
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-encoding"), "");
    assert!(vary(&response).is_empty());
    assert!(!header(&response, "etag").contains("-br"));
}

#[test]
fn cors_allows_configured_origins_only() {
    // Off by default: no CORS headers, OPTIONS not allowed.
    let off = published();
    let plain = request(
        &off,
        Method::GET,
        "/v1/top",
        &[("origin", "https://shop.example")],
    );
    assert_eq!(header(&plain, "access-control-allow-origin"), "");
    assert_eq!(
        request(
            &off,
            Method::OPTIONS,
            "/v1/top",
            &[("origin", "https://shop.example")]
        )
        .status(),
        405
    );

    let mut config = HttpConfig {
        cors_origins: vec![
            "https://shop.example".into(),
            "http://localhost:3000".into(),
        ],
        ..HttpConfig::default()
    };
    let state = AppState::for_test(off.table.clone(), &config);
    let preflight_headers = [
        ("origin", "https://shop.example"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "if-none-match"),
    ];
    for uri in [
        "/v1/top",
        "/v1/top/books?limit=2",
        "/v1/categories",
        "/readyz",
        "/openapi.json",
    ] {
        let allowed = request(
            &state,
            Method::GET,
            uri,
            &[("origin", "https://shop.example")],
        );
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            "https://shop.example",
            "{uri}"
        );
        assert!(header(&allowed, "access-control-expose-headers").contains("ETag"));
        assert!(vary(&allowed).contains(&"Origin".to_owned()), "{uri}");
        let denied = request(
            &state,
            Method::GET,
            uri,
            &[("origin", "https://evil.example")],
        );
        assert_eq!(header(&denied, "access-control-allow-origin"), "", "{uri}");
        assert_eq!(
            header(&denied, "access-control-expose-headers"),
            "",
            "{uri}"
        );
        assert!(vary(&denied).contains(&"Origin".to_owned()), "{uri}");
        let preflight = request(&state, Method::OPTIONS, uri, &preflight_headers);
        assert_eq!(preflight.status(), 204, "{uri}");
        assert!(preflight.body().is_empty());
        assert_eq!(
            header(&preflight, "access-control-allow-origin"),
            "https://shop.example"
        );
        assert_eq!(
            header(&preflight, "access-control-allow-methods"),
            "GET, HEAD"
        );
        assert!(header(&preflight, "access-control-allow-headers").contains("If-None-Match"));
        assert_eq!(header(&preflight, "access-control-max-age"), "600");
        let refused = request(
            &state,
            Method::OPTIONS,
            uri,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        );
        assert_eq!(refused.status(), 204);
        for name in [
            "access-control-allow-origin",
            "access-control-allow-methods",
        ] {
            assert_eq!(header(&refused, name), "", "{uri} {name}");
        }
    }
    // Errors carry the headers too (a page can read the message); other routes stay 404.
    let missing = request(
        &state,
        Method::GET,
        "/v1/top/toys",
        &[("origin", "http://localhost:3000")],
    );
    assert_eq!(missing.status(), 404);
    assert_eq!(
        header(&missing, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    assert_eq!(
        request(&state, Method::OPTIONS, "/nowhere", &preflight_headers).status(),
        404
    );
    let post = request(&state, Method::POST, "/v1/top", &[]);
    assert_eq!(post.status(), 405);
    assert_eq!(header(&post, "allow"), "GET, HEAD, OPTIONS");
    assert_eq!(
        header(&request(&off, Method::POST, "/v1/top", &[]), "allow"),
        "GET, HEAD"
    );

    // "*": every origin, and the answer does not vary by origin.
    config.cors_origins = vec!["*".into()];
    let any = AppState::for_test(off.table.clone(), &config);
    let response = request(
        &any,
        Method::GET,
        "/v1/top",
        &[("origin", "https://any.example")],
    );
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert!(!vary(&response).contains(&"Origin".to_owned()));
}

#[test]
fn every_503_says_when_to_retry() {
    let table = Arc::new(ServingTable::new(profiles(), 3, TableConfig::default()));
    let state = AppState::for_test(table, &HttpConfig::default());
    for uri in ["/v1/top", "/v1/top/books", "/v1/categories", "/readyz"] {
        let response = get(&state, uri);
        assert_eq!(response.status(), 503, "{uri}");
        assert_eq!(header(&response, "retry-after"), "1", "{uri}");
    }
    state.table.apply(&snapshot(0, vec![]));
    state.readiness.set_ready("caught up");
    for uri in ["/v1/top", "/readyz", "/v1/top/nope"] {
        assert_eq!(header(&get(&state, uri), "retry-after"), "", "{uri}");
    }
}
