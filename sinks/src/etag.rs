//! Entity tags built on the stack from a content hash, and `If-None-Match` matching.

use std::fmt;

/// Longest tag: quote, 16 hex digits, dash, 20 decimal digits, a coding's suffix of up to
/// [`MAX_SUFFIX`] bytes, quote.
const CAPACITY: usize = 40 + MAX_SUFFIX;

/// Longest suffix [`ETag::with_suffix`] adds.
const MAX_SUFFIX: usize = 4;

/// A strong entity tag such as `"9f86d081884c7d65-10"`, quotes included, built without
/// allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ETag {
    buf: [u8; CAPACITY],
    len: u8,
}

impl ETag {
    /// The tag for content with hash `hash`, optionally qualified by a variant number (the
    /// `limit` of a sliced list).
    pub fn new(hash: u64, variant: Option<usize>) -> ETag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; CAPACITY];
        buf[0] = b'"';
        for (at, slot) in buf[1..17].iter_mut().enumerate() {
            *slot = HEX[((hash >> (60 - 4 * at)) & 0xf) as usize];
        }
        let mut len = 17;
        if let Some(variant) = variant {
            buf[len] = b'-';
            len += 1;
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(variant).as_bytes();
            buf[len..len + digits.len()].copy_from_slice(digits);
            len += digits.len();
        }
        buf[len] = b'"';
        len += 1;
        ETag {
            buf,
            len: len as u8,
        }
    }

    /// This tag with `suffix` (at most 4 bytes, e.g. `-br`) added inside the quotes: the tag
    /// of the same content in another coding. A longer suffix is cut.
    pub fn with_suffix(mut self, suffix: &[u8]) -> ETag {
        let suffix = &suffix[..suffix.len().min(MAX_SUFFIX)];
        let end = usize::from(self.len) - 1;
        self.buf[end..end + suffix.len()].copy_from_slice(suffix);
        self.buf[end + suffix.len()] = b'"';
        self.len += suffix.len() as u8;
        self
    }

    /// The tag's bytes, quotes included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The tag as text, quotes included.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Whether an `If-None-Match` header value matches this tag: `*`, or a comma-separated
    /// list of tags containing it (weak comparison, so a `W/` prefix is ignored).
    pub fn matches_if_none_match(&self, header: &[u8]) -> bool {
        let ours = self.as_bytes();
        header.split(|&b| b == b',').any(|candidate| {
            let candidate = candidate.trim_ascii();
            let candidate = candidate.strip_prefix(b"W/").unwrap_or(candidate);
            candidate == b"*" || candidate == ours
        })
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            ETag::new(0x0123_4567_89ab_cdef, Some(10)).as_str(),
            "\"0123456789abcdef-10\""
        );
        assert_eq!(ETag::new(0xff, None).as_str(), "\"00000000000000ff\"");
        let widest = ETag::new(u64::MAX, Some(usize::MAX));
        assert_eq!(
            widest.as_bytes().len(),
            18 + usize::MAX.to_string().len() + 1
        );
    }

    #[test]
    fn suffixes() {
        let tag = ETag::new(0xab, Some(7));
        assert_eq!(
            tag.with_suffix(b"-br").as_str(),
            "\"00000000000000ab-7-br\""
        );
        assert_eq!(tag.with_suffix(b""), tag);
        let widest = ETag::new(u64::MAX, Some(usize::MAX)).with_suffix(b"-gzip!");
        assert!(widest.as_str().ends_with("-gzi\""), "{widest}");
        assert!(!tag
            .with_suffix(b"-gz")
            .matches_if_none_match(tag.as_bytes()));
    }

    #[test]
    fn if_none_match() {
        let tag = ETag::new(7, Some(3));
        let text = tag.as_str().to_owned();
        assert!(tag.matches_if_none_match(text.as_bytes()));
        assert!(tag.matches_if_none_match(b"*"));
        assert!(tag.matches_if_none_match(format!("\"x\", W/{text}").as_bytes()));
        assert!(tag.matches_if_none_match(format!("\"x\",{text} ").as_bytes()));
        assert!(!tag.matches_if_none_match(b"\"x\""));
        assert!(!tag.matches_if_none_match(b""));
        assert!(!tag.matches_if_none_match(ETag::new(7, Some(4)).as_bytes()));
    }
}
