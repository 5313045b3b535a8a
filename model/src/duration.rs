//! Durations as people write them in config and flags: `250ms`, `90s`, `15m`, `6h`, `7d`, `2w`.

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
    fn formats_round_trip() {
        for text in ["7d", "90s", "250ms", "6h", "14d", "15m"] {
            assert_eq!(format_duration(parse_duration_ms(text).unwrap()), text);
        }
    }
}
