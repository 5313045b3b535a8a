//! Durations as people write them in config and flags: `250ms`, `90s`, `15m`, `6h`, `7d`, `2w`.
//!
//! Config structs keep them as [`std::time::Duration`], read once at load through [`text`]
//! (`#[serde(with = "topsellers_model::duration::text")]`); the project's own syntax stays the
//! one rule (no spaces, one unit, e.g. `7 days` is refused).

use std::time::Duration;

/// A duration that could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad duration {0:?}: use a number and a unit, e.g. 500ms, 90s, 15m, 6h, 7d, 2w")]
pub struct DurationError(pub String);

const UNITS: [(&str, f64); 6] = [
    ("ms", 1.0),
    ("s", 1_000.0),
    ("m", 60_000.0),
    ("h", 3_600_000.0),
    ("d", 86_400_000.0),
    ("w", 604_800_000.0),
];

/// Parses a duration into whole milliseconds (rounded); the number may have a fraction (`1.5h`).
pub fn parse_duration_ms(text: &str) -> Result<i64, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError(text.to_owned()))?;
    let (number, unit) = text.split_at(split);
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or_else(|| DurationError(text.to_owned()))?;
    let value: f64 = number.parse().map_err(|_| DurationError(text.to_owned()))?;
    let ms = (value * scale).round();
    if !ms.is_finite() || ms < 0.0 || ms > i64::MAX as f64 / 4.0 {
        return Err(DurationError(text.to_owned()));
    }
    Ok(ms as i64)
}

/// Parses a duration (see [`parse_duration_ms`]).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    parse_duration_ms(text).map(|ms| Duration::from_millis(ms as u64))
}

/// Serde for a [`Duration`] written as text (`"250ms"`, `"7d"`): a config value that is not a
/// duration is an error at load, naming the key.
pub mod text {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration in its shortest exact unit (`7d`, `250ms`).
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(duration.as_millis() as i64))
    }

    /// Reads a duration's text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(D::Error::custom)
    }

    /// Reads a duration's text; an error names `key`.
    pub fn deserialize_key<'de, D: Deserializer<'de>>(
        deserializer: D,
        key: &str,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(|e| D::Error::custom(format!("{key}: {e}")))
    }
}

/// Declares a serde module (for `#[serde(with = "…")]`) for one duration key whose errors name
/// the key, e.g. `duration_key!(idle_timeout, "kafka.idle_timeout")`. For keys inside an
/// internally tagged enum (`[[sources]]`), where the deserializer no longer knows the path.
#[macro_export]
macro_rules! duration_key {
    ($module:ident, $key:literal) => {
        mod $module {
            pub fn serialize<S: serde::Serializer>(
                duration: &std::time::Duration,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                $crate::duration::text::serialize(duration, serializer)
            }

            pub fn deserialize<'de, D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<std::time::Duration, D::Error> {
                $crate::duration::text::deserialize_key(deserializer, $key)
            }
        }
    };
}

/// Formats milliseconds with the largest unit up to days that divides them exactly
/// (`604800000` → `7d`, as people name half-lives, not `1w`).
pub fn format_duration(ms: i64) -> String {
    for (name, scale) in UNITS[..5].iter().rev() {
        let scale = *scale as i64;
        if ms != 0 && ms % scale == 0 {
            return format!("{}{}", ms / scale, name);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_duration_ms(" 2w "), Ok(1_209_600_000));
        for bad in ["", "7", "d", "7x", "-1d", "1.2.3s", "7 d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_reads_and_writes_text() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Wrapper {
            #[serde(with = "super::text")]
            every: Duration,
        }
        let read: Wrapper = serde_json::from_str(r#"{"every":"1.5s"}"#).unwrap();
        assert_eq!(read.every, Duration::from_millis(1500));
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"every":"1500ms"}"#
        );
        let error = serde_json::from_str::<Wrapper>(r#"{"every":"7 days"}"#).unwrap_err();
        assert!(error.to_string().contains("bad duration"), "{error}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["7d", "90s", "250ms", "6h", "14d", "15m"] {
            assert_eq!(format_duration(parse_duration_ms(text).unwrap()), text);
        }
    }
}
