//! Reading `/v1/top` requests: the percent-encoded category path (`percent-encoding`: in a
//! path `+` is a plus) and the query parameters (`form_urlencoded`: `+` is a space).

use std::borrow::Cow;

use hyper::Request;
use percent_encoding::percent_decode_str;

use crate::api_error::ApiError;
use crate::rejections::Reason;

/// The longest request target answered (414 with a JSON body beyond). hyper itself refuses
/// targets over 65,534 bytes, with its own empty 414.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;

/// The largest header block answered (names, values and `": "`, CRLF per line; 431 with a JSON
/// body beyond). hyper itself refuses request heads over its read buffer (about 400 KiB) or with
/// more than 100 headers, with its own empty 431.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Turns away, before routing, a request whose target or headers are larger than the server
/// answers.
pub(crate) fn check_head<B>(req: &Request<B>) -> Result<(), (Reason, ApiError)> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Err((Reason::UriTooLong, ApiError::UriTooLong(uri, MAX_URI_BYTES)));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Err((
            Reason::HeadersTooLarge,
            ApiError::HeadersTooLarge(headers, MAX_HEADER_BYTES),
        ));
    }
    Ok(())
}

/// Decodes the category from what follows `/v1/top` in the path: `""` or `"/"` is the root;
/// otherwise `/seg/seg…`, each segment percent-decoded. An empty segment, a decoded segment
/// containing `/`, or invalid UTF-8 is a bad request. Borrows when nothing is encoded.
pub(crate) fn decode_category(rest: &str) -> Result<Cow<'_, str>, ApiError> {
    let path = match rest {
        "" | "/" => return Ok(Cow::Borrowed("")),
        _ => rest.strip_prefix('/').unwrap_or(rest),
    };
    if path.split('/').any(str::is_empty) {
        return Err(ApiError::BadRequest(format!(
            "empty segment in category path {path:?}"
        )));
    }
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let mut category = String::with_capacity(path.len());
    for (at, segment) in path.split('/').enumerate() {
        let decoded = percent_decode_str(segment).decode_utf8().map_err(|_| {
            ApiError::BadRequest(format!(
                "category segment {segment:?} is not UTF-8 once decoded"
            ))
        })?;
        if decoded.contains('/') {
            return Err(ApiError::BadRequest(format!(
                "category segment {decoded:?} contains '/'"
            )));
        }
        if at > 0 {
            category.push('/');
        }
        category.push_str(&decoded);
    }
    Ok(Cow::Owned(category))
}

/// The query parameters `/v1/top` understands; others are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TopQuery<'a> {
    /// `limit`: a positive integer (clamped later to the list's length).
    pub(crate) limit: Option<usize>,
    /// `profile`: a profile name, percent-decoded.
    pub(crate) profile: Option<Cow<'a, str>>,
    /// `include_unavailable`: `true` lists unavailable items too, each item marked
    /// `"available"`; `false` (the default) hides them.
    pub(crate) include_unavailable: bool,
    /// `experiment`: an experiment name, percent-decoded.
    pub(crate) experiment: Option<Cow<'a, str>>,
    /// `visitor`: the visitor id an experiment assigns by, percent-decoded.
    pub(crate) visitor: Option<Cow<'a, str>>,
}

impl<'a> TopQuery<'a> {
    /// Reads the query string (without `?`); when a parameter repeats, the last one wins.
    pub(crate) fn parse(query: Option<&'a str>) -> Result<TopQuery<'a>, ApiError> {
        let mut parsed = TopQuery::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "limit" => parsed.limit = Some(parse_limit(&value)?),
                "profile" => parsed.profile = Some(utf8("profile", value)?),
                "experiment" => parsed.experiment = Some(utf8("experiment", value)?),
                "visitor" => parsed.visitor = Some(utf8("visitor", value)?),
                "include_unavailable" => {
                    parsed.include_unavailable = match &*value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "include_unavailable must be true or false, not {value:?}"
                            )))
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// A decoded text parameter. The decoder replaces bytes that are not UTF-8 with U+FFFD, which
/// no profile or experiment name holds (and a visitor id must be text to hash as documented).
pub(crate) fn utf8<'a>(name: &str, value: Cow<'a, str>) -> Result<Cow<'a, str>, ApiError> {
    if value.contains(char::REPLACEMENT_CHARACTER) {
        return Err(ApiError::BadRequest(format!(
            "{name} is not UTF-8 once decoded"
        )));
    }
    Ok(value)
}

/// A positive decimal integer; values too large for `usize` saturate (they are clamped
/// anyway).
pub(crate) fn parse_limit(value: &str) -> Result<usize, ApiError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "limit must be a positive integer, not {value:?}"
        )));
    }
    match value.parse::<usize>() {
        Ok(0) => Err(ApiError::BadRequest(
            "limit must be a positive integer, not 0".to_owned(),
        )),
        Ok(n) => Ok(n),
        Err(_) => Ok(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(decode_category("").unwrap(), "");
        assert_eq!(decode_category("/").unwrap(), "");
        assert!(matches!(
            decode_category("/books/fiction").unwrap(),
            Cow::Borrowed("books/fiction")
        ));
        assert_eq!(decode_category("/books/sci%20fi").unwrap(), "books/sci fi");
        assert_eq!(
            decode_category("/b%C3%BCcher/sci%20fi").unwrap(),
            "bücher/sci fi"
        );
        for bad in ["//", "/books/", "/books//x", "/a%2Fb", "/%FF", "/a/%2f"] {
            assert!(
                matches!(decode_category(bad), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn queries() {
        assert_eq!(TopQuery::parse(None).unwrap(), TopQuery::default());
        assert_eq!(TopQuery::parse(Some("")).unwrap(), TopQuery::default());
        let q = TopQuery::parse(Some("limit=5&profile=7d&utm=x&flag")).unwrap();
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.profile.as_deref(), Some("7d"));
        assert_eq!(
            TopQuery::parse(Some("profile=a%20b"))
                .unwrap()
                .profile
                .as_deref(),
            Some("a b")
        );
        assert!(
            TopQuery::parse(Some("include_unavailable=true"))
                .unwrap()
                .include_unavailable
        );
        assert!(
            !TopQuery::parse(Some("include_unavailable=true&include_unavailable=false"))
                .unwrap()
                .include_unavailable
        );
        let q = TopQuery::parse(Some("experiment=decay&visitor=a%20b")).unwrap();
        assert_eq!(q.experiment.as_deref(), Some("decay"));
        assert_eq!(q.visitor.as_deref(), Some("a b"));
        assert_eq!(
            TopQuery::parse(Some("limit=1&limit=3")).unwrap().limit,
            Some(3)
        );
        assert_eq!(
            TopQuery::parse(Some("limit=99999999999999999999999"))
                .unwrap()
                .limit,
            Some(usize::MAX)
        );
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=1.5",
            "limit=",
            "limit",
            "limit=+3",
            "limit=abc",
            "profile=%FF",
            "include_unavailable=1",
            "include_unavailable=",
            "include_unavailable",
            "visitor=%FF",
            "experiment=%C3",
        ] {
            assert!(
                matches!(TopQuery::parse(Some(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
