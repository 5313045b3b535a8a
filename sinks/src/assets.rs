//! The live page: `GET /` (`index.html`) and `GET /assets/{file}` — HTML, CSS and vanilla
//! JavaScript kept in `sinks/assets/` and built into the binary, nothing fetched from
//! elsewhere — plus `/assets/profiles.json`, the configured profiles (the page shows one
//! column per profile). Answers carry an entity tag (`If-None-Match` → 304) and
//! `Cache-Control: no-cache`, so a browser revalidates after an upgrade.

use std::sync::LazyLock;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, Response};

use crate::api_error::ApiError;
use crate::body::Body;
use crate::conditional::conditional;
use crate::etag::ETag;
use crate::json;
use crate::table::ServingTable;

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The page's files, by name under `/assets/`.
const FILES: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/style.css"),
    },
];

/// The entity tag of each of [`FILES`], computed once.
static TAGS: LazyLock<Vec<ETag>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|file| ETag::new(xxhash_rust::xxh3::xxh3_64(file.bytes), None))
        .collect()
});

/// The generated file listing the profiles.
const PROFILES: &str = "profiles.json";

/// Whether `path` is the page's: `/` or under `/assets/`.
pub(crate) fn is_page(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}

/// Answers `/` or `/assets/{file}`; an unknown file is a 404.
pub(crate) fn serve<B>(
    table: &ServingTable,
    req: &Request<B>,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let name = match path {
        "/" => "index.html",
        _ => path.strip_prefix("/assets/").unwrap_or_default(),
    };
    if name == PROFILES {
        let doc = profiles_json(table);
        let etag = ETag::new(xxhash_rust::xxh3::xxh3_64(&doc), None);
        return Ok(answer(req, "application/json", etag, Bytes::from(doc)));
    }
    let at = FILES
        .iter()
        .position(|file| file.name == name)
        .ok_or_else(|| ApiError::NoSuchRoute(path.to_owned()))?;
    let file = &FILES[at];
    Ok(answer(
        req,
        file.content_type,
        TAGS[at],
        Bytes::from_static(file.bytes),
    ))
}

/// `{"profiles":[{"name":"1d","half_life_ms":86400000},…],"k":100}`, in configuration order
/// (the first is the API's default).
fn profiles_json(table: &ServingTable) -> Vec<u8> {
    let mut out = b"{\"profiles\":[".to_vec();
    for (at, profile) in table.profiles().iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json::push_str(&mut out, &profile.name);
        out.extend_from_slice(format!(",\"half_life_ms\":{}}}", profile.half_life_ms).as_bytes());
    }
    out.extend_from_slice(format!("],\"k\":{}}}", table.k()).as_bytes());
    out
}

/// A 200 with `body`, or a 304 if `If-None-Match` matches `etag`; revalidated on every use
/// (`no-cache`): the files change with the binary.
fn answer<B>(
    req: &Request<B>,
    content_type: &'static str,
    etag: ETag,
    body: Bytes,
) -> Response<Body> {
    conditional(
        req,
        etag,
        HeaderValue::from_static(content_type),
        HeaderValue::from_static("no-cache"),
        || Body::one(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_referenced_and_nothing_is_fetched_from_elsewhere() {
        let index = std::str::from_utf8(FILES[0].bytes).unwrap();
        for file in &FILES[1..] {
            assert!(
                index.contains(&format!("/assets/{}", file.name)),
                "{}",
                file.name
            );
        }
        for file in &FILES {
            let text = std::str::from_utf8(file.bytes).unwrap();
            for outside in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(outside), "{} holds {outside}", file.name);
            }
        }
    }
}
