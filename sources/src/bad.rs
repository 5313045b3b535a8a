//! A bad record: where it was, why it is bad, and its text.

use topsellers_model::RecordError;

/// Most bytes of a bad record's text kept in [`BadRecord::raw`].
pub const MAX_RAW_BYTES: usize = 4096;

/// A record that broke a rule of the data contract. It is counted, logged and written to the
/// dead-letter output; it never stops the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// Where: `path:LINE` (1-based) for JSON Lines and CSV, `path:row N` (0-based row of the
    /// file) for Parquet.
    pub position: String,
    /// Why it is bad.
    pub error: RecordError,
    /// The record's text (lossy UTF-8, at most [`MAX_RAW_BYTES`] bytes); for Parquet, the row as
    /// a small JSON object of the columns read.
    pub raw: String,
}

impl BadRecord {
    /// A bad record whose text is taken from raw bytes (lossy UTF-8, truncated).
    pub fn from_bytes(position: String, error: RecordError, raw: &[u8]) -> Self {
        BadRecord {
            position,
            error,
            raw: raw_text(raw),
        }
    }
}

/// The record text kept for a bad record: lossy UTF-8 of at most [`MAX_RAW_BYTES`] bytes, cut at
/// a character boundary.
pub fn raw_text(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_RAW_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    truncate_at_char(&mut text, MAX_RAW_BYTES);
    text
}

/// Truncates `text` to at most `max` bytes at a character boundary.
pub fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_lossy_and_bounded() {
        assert_eq!(raw_text(b"ab\xffc"), "ab\u{fffd}c");
        let long = "é".repeat(5000);
        let raw = raw_text(long.as_bytes());
        assert!(raw.len() <= MAX_RAW_BYTES);
        assert!(raw.len() >= MAX_RAW_BYTES - 3);
        assert!(raw.chars().all(|c| c == 'é' || c == '\u{fffd}'));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut text = "aé".to_owned(); // 'é' is bytes 1..3
        truncate_at_char(&mut text, 2);
        assert_eq!(text, "a");
    }
}
