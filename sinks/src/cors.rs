//! Cross-origin requests from browsers (`[http] cors_origins`): the `Access-Control-*`
//! headers for an allowed `Origin`, and the answer to a preflight `OPTIONS`.

use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW,
    CACHE_CONTROL, ORIGIN, VARY,
};
use hyper::{HeaderMap, Response, StatusCode};

use crate::body::Body;

/// Methods a cross-origin request may use.
const METHODS: &str = "GET, HEAD";

/// Request headers a cross-origin request may send beyond the safelisted ones: conditional
/// requests, and the id an `EventSource` sends when it reconnects.
const ALLOWED_HEADERS: &str = "If-None-Match, Cache-Control, Last-Event-ID";

/// Response headers a page's script may read beyond the safelisted ones.
const EXPOSED_HEADERS: &str = "ETag, Retry-After, X-Topsellers-Profile";

/// How long (seconds) a browser may cache a preflight's answer.
const MAX_AGE: &str = "600";

/// A `cors_origins` entry that is not `"*"` nor an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// Not `scheme://host[:port]` with an http or https scheme.
    #[error("{0:?} is not an origin: write \"https://host\" or \"https://host:port\" (no path), or \"*\"")]
    NotAnOrigin(String),
    /// `"*"` with other entries.
    #[error("\"*\" allows every origin: list it alone")]
    StarWithOthers,
}

/// Which origins may read the API's answers from a browser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers; `OPTIONS` is not allowed (405).
    #[default]
    Off,
    /// Every origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// These origins (lower case), each answered with itself and `Vary: Origin`.
    Origins(Vec<String>),
}

impl Cors {
    /// The policy of `cors_origins`: empty is off, `["*"]` any origin, else the origins listed.
    pub fn new(origins: &[String]) -> Result<Cors, CorsError> {
        match origins {
            [] => Ok(Cors::Off),
            [star] if star == "*" => Ok(Cors::Any),
            _ => origins
                .iter()
                .map(|origin| {
                    if origin == "*" {
                        Err(CorsError::StarWithOthers)
                    } else if is_origin(origin) {
                        Ok(origin.to_ascii_lowercase())
                    } else {
                        Err(CorsError::NotAnOrigin(origin.clone()))
                    }
                })
                .collect::<Result<_, _>>()
                .map(Cors::Origins),
        }
    }

    /// Whether CORS is on (any origin configured).
    pub fn is_on(&self) -> bool {
        *self != Cors::Off
    }

    /// The `Access-Control-Allow-Origin` value for a request with these headers, if its
    /// origin is allowed.
    fn allowed(&self, request: &HeaderMap) -> Option<HeaderValue> {
        match self {
            Cors::Off => None,
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::Origins(origins) => {
                let origin = request.get(ORIGIN)?;
                let text = origin.to_str().ok()?;
                origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(text))
                    .then(|| origin.clone())
            }
        }
    }

    /// Adds the CORS headers to an answer to a request with headers `request`: for an allowed
    /// origin `Access-Control-Allow-Origin` and `-Expose-Headers`; with a list of origins,
    /// `Vary: Origin` on every answer (a cache must not hand one origin's answer to another);
    /// a 405's `Allow` lists OPTIONS when CORS is on.
    pub fn decorate(&self, request: &HeaderMap, response: &mut Response<Body>) {
        let allowed = self.allowed(request);
        let not_allowed = response.status() == StatusCode::METHOD_NOT_ALLOWED;
        let headers = response.headers_mut();
        if not_allowed && self.is_on() {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
        if matches!(self, Cors::Origins(_)) {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = allowed {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }

    /// The answer to a preflight `OPTIONS` (CORS on, a known route): 204 with `Allow`, and for
    /// an allowed origin the methods, headers and max-age (plus what
    /// [`decorate`](Self::decorate) adds, which the caller does).
    pub fn preflight(&self, request: &HeaderMap) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let allowed = self.allowed(request).is_some();
        let headers = response.headers_mut();
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if allowed {
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(METHODS),
            );
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        }
        response
    }
}

/// `http://host[:port]` or `https://host[:port]`: no path, query, user or spaces.
fn is_origin(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.strip_prefix('[') {
        // An IPv6 literal: `[…]` then an optional `:port`.
        Some(inner) => match inner.split_once(']') {
            Some((v6, "")) => (v6, None),
            Some((v6, after)) => match after.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Result<Cors, CorsError> {
        Cors::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn reads_the_setting() {
        assert_eq!(origins(&[]).unwrap(), Cors::Off);
        assert_eq!(origins(&["*"]).unwrap(), Cors::Any);
        assert_eq!(
            origins(&[
                "https://Shop.example",
                "http://localhost:3000",
                "http://[::1]:8080",
                "http://[::1]"
            ])
            .unwrap(),
            Cors::Origins(vec![
                "https://shop.example".into(),
                "http://localhost:3000".into(),
                "http://[::1]:8080".into(),
                "http://[::1]".into()
            ])
        );
        assert_eq!(
            origins(&["*", "https://a.example"]).unwrap_err(),
            CorsError::StarWithOthers
        );
        for bad in [
            "shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "ftp://shop.example",
            "https://",
            "https://a b",
            "https://a:port",
            "https://a:99999",
            "https://user@a",
            "https://a:",
            "http://[::1",
            "http://[::1]x",
            "",
        ] {
            assert!(
                matches!(origins(&[bad]), Err(CorsError::NotAnOrigin(_))),
                "{bad}"
            );
        }
    }
}
