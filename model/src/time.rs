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

/// The wall clock: milliseconds since the Unix epoch (0 if the clock is before 1970). The one
/// place every crate reads it from.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds (`2026-11-22T13:00:00.123Z`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Serde for an optional time written as text (RFC 3339 or epoch ms), e.g. a configured cut-off:
/// read once at load, kept as epoch ms. An error names `key`.
#[macro_export]
macro_rules! time_key {
    ($module:ident, $key:literal) => {
        mod $module {
            pub fn serialize<S: serde::Serializer>(
                ms: &Option<i64>,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                match ms {
                    Some(ms) => serializer.serialize_some(&$crate::format_rfc3339_ms(*ms)),
                    None => serializer.serialize_none(),
                }
            }

            pub fn deserialize<'de, D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Option<i64>, D::Error> {
                use serde::de::Error as _;
                use serde::Deserialize as _;
                let text = Option::<String>::deserialize(deserializer)?;
                text.map(|text| {
                    $crate::parse_time_ms(&text)
                        .map_err(|e| D::Error::custom(format!("{}: {e}", $key)))
                })
                .transpose()
            }
        }
    };
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
