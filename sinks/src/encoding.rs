//! Content codings of API bodies: gzip and brotli copies compressed once per rendered list
//! (by the first request that accepts one, see `RenderedList::allow_compression`), and the
//! coding a request's `Accept-Encoding` prefers among them.

use std::io::Write;

use bytes::Bytes;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, VARY};
use hyper::{HeaderMap, Response, StatusCode};

use crate::body::Body;

/// Bodies shorter than this are served as they are: compressing them saves a few bytes at
/// best (an empty list's document is about 80 bytes).
pub const MIN_BYTES: usize = 256;

/// gzip level 1, the fastest: on a top-100 list (6.3 kB) it took 120 µs against 190 µs for
/// level 6, and its output was no larger (1.86 kB against 1.92 kB).
const GZIP_LEVEL: u32 = 1;

/// Brotli quality 3 of 11: on a top-100 list 1.66 kB in 0.6 ms. Quality 1 was as fast as
/// gzip but larger than gzip's output (1.96 kB); qualities 5 and up took 1 to 8 ms.
const BROTLI_QUALITY: i32 = 3;

/// Brotli window (log2 of bytes): 64 KiB covers any list document.
const BROTLI_WINDOW: i32 = 16;

/// A content coding the API can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// The body as rendered.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: br`.
    Brotli,
}

impl Coding {
    /// What the representation's entity tag carries inside its quotes after the identity
    /// tag: a tag names one representation, so each coding has its own.
    pub fn etag_suffix(self) -> &'static [u8] {
        match self {
            Coding::Identity => b"",
            Coding::Gzip => b"-gz",
            Coding::Brotli => b"-br",
        }
    }

    /// The `Content-Encoding` value, `None` for identity.
    pub fn content_encoding(self) -> Option<HeaderValue> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some(HeaderValue::from_static("gzip")),
            Coding::Brotli => Some(HeaderValue::from_static("br")),
        }
    }
}

/// The compressed copies of one body; a copy is kept only if it is smaller than the body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// The gzip copy.
    pub gzip: Option<Bytes>,
    /// The brotli copy.
    pub br: Option<Bytes>,
}

impl Encoded {
    /// Compresses `body` with gzip and brotli (nothing if it is shorter than [`MIN_BYTES`]).
    pub fn compress(body: &[u8]) -> Encoded {
        if body.len() < MIN_BYTES {
            return Encoded::default();
        }
        let smaller = |copy: Vec<u8>| {
            (!copy.is_empty() && copy.len() < body.len()).then(|| Bytes::from(copy))
        };
        Encoded {
            gzip: smaller(gzip(body)),
            br: smaller(brotli(body)),
        }
    }

    /// Whether there is no compressed copy.
    pub fn is_empty(&self) -> bool {
        self.gzip.is_none() && self.br.is_none()
    }

    /// The copy in `coding`, if there is one (never for identity).
    pub fn get(&self, coding: Coding) -> Option<&Bytes> {
        match coding {
            Coding::Identity => None,
            Coding::Gzip => self.gzip.as_ref(),
            Coding::Brotli => self.br.as_ref(),
        }
    }

    /// The coding to answer `headers` with among the copies held (see [`negotiate`]).
    pub fn choose(&self, headers: &HeaderMap) -> Coding {
        negotiate(headers, self.gzip.is_some(), self.br.is_some())
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 3),
        flate2::Compression::new(GZIP_LEVEL),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

fn brotli(body: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_WINDOW,
        size_hint: body.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(body.len() / 4);
    // Reading a slice and writing to a Vec cannot fail; an empty copy is dropped later.
    match brotli::BrotliCompress(&mut &body[..], &mut out, &params) {
        Ok(_) => out,
        Err(_) => Vec::new(),
    }
}

/// The coding the request's `Accept-Encoding` fields prefer, among gzip and brotli where
/// available and identity: the highest q-value wins, ties go to br, then gzip, then identity.
/// `*` stands for every coding not named; `x-gzip` is gzip. Identity not named (nor by `*`)
/// is acceptable but least preferred. Without the field, or when nothing acceptable is
/// available, identity.
pub fn negotiate(headers: &HeaderMap, gzip: bool, br: bool) -> Coding {
    if !headers.contains_key(ACCEPT_ENCODING) {
        return Coding::Identity;
    }
    let (mut q_br, mut q_gzip, mut q_identity, mut q_star) = (None, None, None, None);
    for value in headers.get_all(ACCEPT_ENCODING) {
        for entry in value.as_bytes().split(|&b| b == b',') {
            let mut parts = entry.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let Some(q) = quality(parts) else { continue };
            let slot = if coding.eq_ignore_ascii_case(b"br") {
                &mut q_br
            } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
            {
                &mut q_gzip
            } else if coding.eq_ignore_ascii_case(b"identity") {
                &mut q_identity
            } else if coding == b"*" {
                &mut q_star
            } else {
                continue;
            };
            *slot = Some(q);
        }
    }
    let q_br = if br { q_br.or(q_star).unwrap_or(0) } else { 0 };
    let q_gzip = if gzip {
        q_gzip.or(q_star).unwrap_or(0)
    } else {
        0
    };
    let q_identity = q_identity.or(q_star).unwrap_or(1);
    let mut best = (Coding::Identity, 0);
    for (coding, q) in [
        (Coding::Brotli, q_br),
        (Coding::Gzip, q_gzip),
        (Coding::Identity, q_identity),
    ] {
        if q > best.1 {
            best = (coding, q);
        }
    }
    best.0
}

/// The q-value (in thousandths) of an `Accept-Encoding` entry's parameters; 1000 without
/// one; `None` for a malformed one (the entry is ignored).
fn quality<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    let mut q = 1000;
    for param in params {
        let param = param.trim_ascii();
        let Some(value) = param
            .strip_prefix(b"q=")
            .or_else(|| param.strip_prefix(b"Q="))
        else {
            continue;
        };
        let (int, frac) = match value.iter().position(|&b| b == b'.') {
            Some(dot) => (&value[..dot], &value[dot + 1..]),
            None => (value, &b""[..]),
        };
        if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut thousandths: u16 = 0;
        for at in 0..3 {
            thousandths = thousandths * 10 + frac.get(at).map_or(0, |d| u16::from(d - b'0'));
        }
        q = match int {
            b"0" => thousandths,
            b"1" if thousandths == 0 => 1000,
            _ => return None,
        };
    }
    Some(q)
}

/// Marks a response chosen among codings: `Vary: Accept-Encoding` (when compressed copies
/// exist, whichever was chosen, so that caches keep one answer per coding) and, on a 200,
/// the `Content-Encoding`.
pub fn mark(response: &mut Response<Body>, coding: Coding, varies: bool) {
    let status = response.status();
    let headers = response.headers_mut();
    if varies {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if status == StatusCode::OK {
        if let Some(value) = coding.content_encoding() {
            headers.insert(CONTENT_ENCODING, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn negotiates_by_quality_then_br_gzip_identity() {
        use Coding::{Brotli as B, Gzip as G, Identity as I};
        let cases: &[(&[&str], bool, bool, Coding)] = &[
            (&[], true, true, I),
            (&[""], true, true, I),
            (&["gzip, deflate, br, zstd"], true, true, B),
            (&["gzip, deflate, br"], true, false, G),
            (&["gzip, deflate, br"], false, false, I),
            (&["gzip", "br"], true, true, B),
            (&["br;q=0.5, gzip"], true, true, G),
            (&["br;q=0.5, gzip;q=0.4"], true, true, B),
            (&["BR;Q=1.0"], true, true, B),
            (&["x-gzip"], true, true, G),
            (&["*"], true, true, B),
            (&["*;q=0.3, br;q=0.2"], true, true, G),
            (&["br;q=0"], true, true, I),
            (&["gzip;q=0.001"], true, true, G),
            (&["identity"], true, true, I),
            (&["identity;q=0, gzip;q=0.1"], true, true, G),
            (&["*;q=0"], true, true, I),
            (&["br;q=1.5, gzip"], true, true, G), // a malformed entry is ignored
            (&["br;q=0.0001, gzip;q=0.1"], true, true, G),
            (&["br;q=abc"], true, true, I),
            (&["deflate, compress"], true, true, I),
        ];
        for (values, gzip, br, want) in cases {
            assert_eq!(
                negotiate(&accept(values), *gzip, *br),
                *want,
                "{values:?} gzip={gzip} br={br}"
            );
        }
    }

    #[test]
    fn copies_decompress_to_the_body_and_short_bodies_stay_plain() {
        let body: Vec<u8> = (0..200)
            .flat_map(|i| format!("{{\"rank\":{i},\"item_id\":\"item-{i}\"}},").into_bytes())
            .collect();
        let encoded = Encoded::compress(&body);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&encoded.gzip.as_ref().unwrap()[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, body);
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(&encoded.br.as_ref().unwrap()[..], 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, body);
        assert!(encoded.br.as_ref().unwrap().len() < body.len() / 4);
        assert!(Encoded::compress(&body[..MIN_BYTES - 1]).is_empty());
        assert_eq!(
            Encoded::compress(b"{}").get(Coding::Gzip),
            None,
            "too short"
        );
    }
}
