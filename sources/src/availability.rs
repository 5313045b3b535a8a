//! Availability records (`[availability]`): `{"item_id":"…","available":false,"ts":…}`, one JSON
//! object per line, from files, folders or `s3://` prefixes (read once at start) and Kafka
//! messages. The rules are the purchases': `item_id` a string (1..=256 bytes) or an integer
//! (kept as its decimal text), `ts` RFC 3339 text or integer epoch milliseconds (not before
//! 1970, not beyond `scoring.max_future`), `available` a boolean; other fields are ignored, a
//! field given twice makes the record bad. A bad record is returned with its position for the
//! dead-letter output, never an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use topsellers_model::purchase::{check_item_id, check_ts};
use topsellers_model::RecordError;

use crate::bad::BadRecord;
use crate::error::{SettingError, SourceError};
use crate::files::lines::{Line, LineReader};
use crate::files::{list_units_with, open_text, Format, S3Config, MAX_LINE_BYTES};
use crate::position::line_position;

/// `[availability]` in the config: where item availability comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityConfig {
    /// Files, folders or `s3://bucket/prefix` URLs of JSON Lines availability records (`.jsonl`,
    /// `.ndjson`, `.json`, optionally compressed), read once at start, before the service
    /// turns ready. Default: none.
    #[serde(default)]
    pub paths: Vec<String>,
    /// A Kafka topic of availability records (one JSON object per message, the key ignored;
    /// key it by `item_id` and make it compacted). Every serving process reads all of it from
    /// the beginning, on every partition, without a consumer group, before it turns ready,
    /// then follows it. Default: none.
    #[serde(default)]
    pub topic: Option<String>,
    /// The topic's brokers; default: the Kafka source's.
    #[serde(default)]
    pub brokers: Option<String>,
    /// librdkafka consumer properties for the topic, applied last.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

impl AvailabilityConfig {
    /// Whether any availability input is configured (then lists keep `table.buffer` extra
    /// candidates).
    pub fn is_set(&self) -> bool {
        !self.paths.is_empty() || self.topic.is_some()
    }
}

/// One availability record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityRecord {
    /// The item.
    pub item_id: String,
    /// Whether it may be listed.
    pub available: bool,
    /// When this became true, epoch ms (the latest per item wins).
    pub ts_ms: i64,
}

/// The fields read; a field given twice is an error of the derive.
#[derive(Deserialize)]
struct Raw {
    item_id: Option<Value>,
    available: Option<Value>,
    ts: Option<Value>,
}

fn wrong_type(field: &'static str, found: &Value, expected: &str) -> RecordError {
    RecordError::WrongType {
        field,
        detail: format!("expected {expected}, found {found}"),
    }
}

/// Parses one record (a JSON object's text).
pub fn parse_record(text: &[u8]) -> Result<AvailabilityRecord, RecordError> {
    let raw: Raw = serde_json::from_slice(text).map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix("duplicate field `") {
            Some(rest) => match rest.split('`').next() {
                Some("item_id") => RecordError::DuplicateField("item_id"),
                Some("available") => RecordError::DuplicateField("available"),
                _ => RecordError::DuplicateField("ts"),
            },
            None => RecordError::Malformed(message),
        }
    })?;
    let item_id = match raw.item_id {
        None | Some(Value::Null) => return Err(RecordError::MissingField("item_id")),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(other) => return Err(wrong_type("item_id", &other, "a string or an integer")),
    };
    check_item_id(&item_id)?;
    let available = match raw.available {
        None | Some(Value::Null) => return Err(RecordError::MissingField("available")),
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(wrong_type("available", &other, "true or false")),
    };
    let ts_ms = match raw.ts {
        None | Some(Value::Null) => return Err(RecordError::MissingField("ts")),
        Some(Value::String(s)) => crate::files::fields::ts_from_text(&s)?,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| RecordError::BadTimestamp(n.to_string()))?,
        Some(other) => {
            return Err(wrong_type(
                "ts",
                &other,
                "RFC 3339 text or integer epoch ms",
            ))
        }
    };
    check_ts(ts_ms)?;
    Ok(AvailabilityRecord {
        item_id,
        available,
        ts_ms,
    })
}

/// What reading the availability files found.
#[derive(Debug, Default)]
pub struct FilesRead {
    /// Files read.
    pub files: usize,
    /// Valid records handed on.
    pub records: u64,
    /// Bad records, with their positions (for the dead-letter output).
    pub bad: Vec<BadRecord>,
}

/// Reads every record of the configured files in order (files in listing order, lines in
/// order), handing the valid ones to `visit` in batches. A file that is not JSON Lines, or
/// that cannot be read, is an error naming it.
pub fn read_files(
    config: &AvailabilityConfig,
    s3: &S3Config,
    mut visit: impl FnMut(&[AvailabilityRecord]),
) -> Result<FilesRead, SourceError> {
    let mut read = FilesRead::default();
    let units = list_units_with(&config.paths, None, s3)?;
    let mut batch = Vec::with_capacity(4096);
    for unit in &units {
        let label = unit.location.to_string();
        if unit.format != Format::Jsonl {
            return Err(SettingError::new(
                "availability.paths",
                format!("{label}: availability files must be JSON Lines (.jsonl, .ndjson, .json)"),
            )
            .into());
        }
        read.files += 1;
        let mut lines = LineReader::new(open_text(unit)?.read, MAX_LINE_BYTES);
        while let Some((number, line)) =
            lines.next_line().map_err(|e| SourceError::io(&label, e))?
        {
            let outcome = match line {
                Line::TooLong { len, head } => Err((
                    RecordError::Malformed(format!(
                        "line has {len} bytes (at most {MAX_LINE_BYTES})"
                    )),
                    head,
                )),
                Line::Text(text) => {
                    let text = match number {
                        1 => text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text),
                        _ => text,
                    };
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    parse_record(text).map_err(|e| (e, text))
                }
            };
            match outcome {
                Ok(record) => {
                    read.records += 1;
                    batch.push(record);
                    if batch.len() == batch.capacity() {
                        visit(&batch);
                        batch.clear();
                    }
                }
                Err((error, text)) => read.bad.push(BadRecord::from_bytes(
                    line_position(&label, number),
                    error,
                    text,
                )),
            }
        }
    }
    if !batch.is_empty() {
        visit(&batch);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_their_rules() {
        let ok = parse_record(br#"{"item_id":"a","available":false,"ts":5,"x":[1]}"#).unwrap();
        assert_eq!(
            ok,
            AvailabilityRecord {
                item_id: "a".into(),
                available: false,
                ts_ms: 5
            }
        );
        let ok = parse_record(br#"{"item_id":42,"available":true,"ts":"1970-01-01T00:00:01Z"}"#)
            .unwrap();
        assert_eq!((ok.item_id.as_str(), ok.ts_ms), ("42", 1000));
        for (text, want) in [
            (
                r#"{"available":true,"ts":1}"#,
                "missing required field `item_id`",
            ),
            (
                r#"{"item_id":"a","ts":1}"#,
                "missing required field `available`",
            ),
            (
                r#"{"item_id":"a","available":true}"#,
                "missing required field `ts`",
            ),
            (
                r#"{"item_id":"a","available":"no","ts":1}"#,
                "`available` has the wrong type",
            ),
            (
                r#"{"item_id":"","available":true,"ts":1}"#,
                "item_id is empty",
            ),
            (r#"{"item_id":"a","available":true,"ts":-1}"#, "before 1970"),
            (r#"{"item_id":"a","available":true,"ts":1.5}"#, "1.5"),
            (
                r#"{"item_id":"a","available":true,"available":false,"ts":1}"#,
                "available",
            ),
            (r#"{"item_id":"a","available":true,"ts":1"#, "malformed"),
            ("[1]", "malformed"),
        ] {
            let error = parse_record(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
        assert!(parse_record(br#"{"item_id":"a","available":true,"ts":99999999999999}"#).is_err());
    }

    #[test]
    fn reads_files_and_keeps_bad_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(
            &path,
            "\u{feff}{\"item_id\":\"a\",\"available\":false,\"ts\":1}\n\nnot json\n{\"item_id\":\"b\",\"available\":true,\"ts\":2}\n",
        )
        .unwrap();
        let config = AvailabilityConfig {
            paths: vec![path.display().to_string()],
            ..AvailabilityConfig::default()
        };
        let mut got = Vec::new();
        let read = read_files(&config, &S3Config::default(), |batch| {
            got.extend_from_slice(batch)
        })
        .unwrap();
        assert_eq!((read.files, read.records), (1, 2));
        assert_eq!(got.len(), 2);
        assert_eq!(read.bad.len(), 1);
        assert_eq!(read.bad[0].position, format!("{}:3", path.display()));
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "item_id,available,ts\n").unwrap();
        let config = AvailabilityConfig {
            paths: vec![csv.display().to_string()],
            ..AvailabilityConfig::default()
        };
        let error = read_files(&config, &S3Config::default(), |_| {}).unwrap_err();
        assert!(error.to_string().contains("a.csv"), "{error}");
    }
}
