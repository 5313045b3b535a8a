//! Event times: RFC 3339 text or integer Unix epoch milliseconds, in and out.

use chrono::{DateTime, SecondsFormat, Utc};

/// A time that could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad time {0:?}: use RFC 3339 (2026-11-22T13:00:00.123Z) or Unix epoch milliseconds")]
pub struct TimeError(pub String);

/// Parses RFC 3339 (any offset; sub-millisecond digits are truncated) or integer epoch ms.
pub fn parse_time_ms(text: &str) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| TimeError(text.to_owned()))
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds (`2026-11-22T13:00:00.123Z`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        assert_eq!(parse_time_ms("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_time_ms("2023-11-14T23:13:20.123+01:00"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert!(parse_time_ms("yesterday").is_err());
        assert!(parse_time_ms("").is_err());
    }
}
