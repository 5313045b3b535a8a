//! JSON Lines reader: one JSON object per line, parsed without building a `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use topsellers_model::{Purchase, RecordError};

use super::compression::{RawBytes, TextInput};
use super::fields::{self, Tally};
use super::lines::{Line, LineReader};
use super::{RecordReader, MAX_LINE_BYTES};
use crate::bad::BadRecord;
use crate::error::SourceError;
use crate::intern::Interner;
use crate::position::line_position;

/// The UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads one JSON Lines file.
pub(crate) struct JsonlReader {
    /// The file's path or URL (positions and errors).
    label: String,
    lines: LineReader<Box<dyn Read + Send>>,
    /// The raw bytes read (a compressed file's are counted under its decoder).
    consumed: RawBytes,
    /// The category of records without one (a `category=` partition).
    category: Option<Arc<str>>,
    interner: Interner,
    number: String,
    tally: Tally,
    done: bool,
}

impl JsonlReader {
    /// Reads the bytes of `input`, named `label` in positions and errors.
    pub(crate) fn new(label: String, input: TextInput, category: Option<Arc<str>>) -> Self {
        JsonlReader {
            label,
            lines: LineReader::new(input.read, MAX_LINE_BYTES),
            consumed: input.consumed,
            category,
            interner: Interner::new(),
            number: String::new(),
            tally: Tally::default(),
            done: false,
        }
    }
}

impl RecordReader for JsonlReader {
    fn next_batch(
        &mut self,
        out: &mut Vec<Purchase>,
        bad: &mut Vec<BadRecord>,
        max: usize,
    ) -> Result<bool, SourceError> {
        let max = max.max(1);
        let start = (out.len(), bad.len());
        let mut examined = 0;
        while examined < max && !self.done {
            let next = self
                .lines
                .next_line()
                .map_err(|e| SourceError::io(&self.label, e))?;
            let Some((number, line)) = next else {
                self.done = true;
                break;
            };
            let label = &self.label;
            match line {
                Line::TooLong { len, head } => {
                    examined += 1;
                    let error = RecordError::Malformed(format!(
                        "line has {len} bytes (at most {MAX_LINE_BYTES})"
                    ));
                    out.extend(fields::deliver(Err(error), &mut self.tally, bad, |e| {
                        BadRecord::from_bytes(line_position(label, number), e, head)
                    }));
                }
                Line::Text(text) => {
                    // A byte-order mark some editors and exporters put first is not data.
                    let text = match number {
                        1 => text.strip_prefix(UTF8_BOM).unwrap_or(text),
                        _ => text,
                    };
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    examined += 1;
                    let outcome = parse_line(
                        text,
                        self.category.as_deref(),
                        &mut self.interner,
                        &mut self.number,
                    );
                    out.extend(fields::deliver(outcome, &mut self.tally, bad, |e| {
                        BadRecord::from_bytes(line_position(label, number), e, text)
                    }));
                }
            }
        }
        Ok(!(self.done && (out.len(), bad.len()) == start))
    }

    fn ignored(&self) -> u64 {
        self.tally.ignored
    }

    fn rows_read(&self) -> u64 {
        self.tally.rows
    }

    fn bytes_read(&self) -> u64 {
        self.consumed.read(self.lines.bytes_read())
    }
}

/// Parses one non-blank line into a purchase (`None`: zero quantity); `default_category` is
/// the category of a record without one (absent or null).
pub(crate) fn parse_line(
    line: &[u8],
    default_category: Option<&str>,
    interner: &mut Interner,
    number: &mut String,
) -> Result<Option<Purchase>, RecordError> {
    let text = std::str::from_utf8(line)
        .map_err(|e| RecordError::Malformed(format!("invalid UTF-8: {e}")))?;
    let raw: RawRecord<'_> =
        serde_json::from_str(text).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if let Some(field) = raw.duplicate {
        return Err(RecordError::DuplicateField(field));
    }
    let item_id: &str = match &raw.item_id {
        None | Some(Scalar::Null) => return Err(RecordError::MissingField("item_id")),
        Some(Scalar::Str(s)) => s,
        Some(Scalar::Int(v)) => fields::int_text(number, v),
        Some(Scalar::UInt(v)) => fields::int_text(number, v),
        Some(other) => return Err(wrong_type("item_id", other, "a string or an integer")),
    };
    let category: &str = match &raw.category {
        None | Some(Scalar::Null) => {
            default_category.ok_or(RecordError::MissingField("category"))?
        }
        Some(Scalar::Str(s)) => s,
        Some(other) => return Err(wrong_type("category", other, "a string")),
    };
    let ts_ms = match &raw.ts {
        None | Some(Scalar::Null) => return Err(RecordError::MissingField("ts")),
        Some(Scalar::Str(s)) => fields::ts_from_text(s)?,
        Some(Scalar::Int(v)) => *v,
        Some(Scalar::UInt(v)) => {
            i64::try_from(*v).map_err(|_| RecordError::BadTimestamp(v.to_string()))?
        }
        Some(Scalar::Float(v)) => return Err(RecordError::BadTimestamp(v.to_string())),
        Some(other) => return Err(wrong_type("ts", other, "RFC 3339 text or integer epoch ms")),
    };
    let quantity = match &raw.quantity {
        None | Some(Scalar::Null) => 1,
        Some(Scalar::Int(v)) => *v,
        Some(other) => return Err(RecordError::BadQuantity(other.describe())),
    };
    fields::purchase(item_id, category, ts_ms, quantity, interner)
}

fn wrong_type(field: &'static str, found: &Scalar<'_>, expected: &str) -> RecordError {
    RecordError::WrongType {
        field,
        detail: format!("expected {expected}, found {}", found.describe()),
    }
}

/// Whether a JSON token is an integer literal (`-?(0|[1-9][0-9]*)`).
fn is_json_integer(token: &str) -> bool {
    let digits = token.strip_prefix('-').unwrap_or(token);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The fields of a record that matter, borrowed from the line where possible.
#[derive(Default)]
struct RawRecord<'a> {
    item_id: Option<Scalar<'a>>,
    category: Option<Scalar<'a>>,
    ts: Option<Scalar<'a>>,
    quantity: Option<Scalar<'a>>,
    /// The first of those fields given twice, if any (which one counts would be a guess).
    duplicate: Option<&'static str>,
}

/// Any JSON value, keeping only what the field rules need.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("string {s:?}"),
            Scalar::Int(v) => format!("integer {v}"),
            Scalar::UInt(v) => format!("integer {v}"),
            Scalar::Float(v) => format!("number {v}"),
            Scalar::Bool(v) => format!("boolean {v}"),
            Scalar::Null => "null".to_owned(),
            Scalar::Array => "an array".to_owned(),
            Scalar::Object => "an object".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => Scalar::Int(v),
            Err(_) => Scalar::UInt(v),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Scalar::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// The keys the reader looks at; every other key is skipped.
#[derive(PartialEq, Eq)]
enum Key {
    ItemId,
    Category,
    Ts,
    Quantity,
    Other,
}

impl Key {
    /// The field's name in the contract.
    fn name(&self) -> &'static str {
        match self {
            Key::ItemId => "item_id",
            Key::Category => "category",
            Key::Ts => "ts",
            Key::Quantity => "quantity",
            Key::Other => "",
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "item_id" => Key::ItemId,
                    "category" => Key::Category,
                    "ts" => Key::Ts,
                    "quantity" => Key::Quantity,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = RawRecord<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut record = RawRecord::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::ItemId => &mut record.item_id,
                        Key::Category => &mut record.category,
                        Key::Ts => &mut record.ts,
                        Key::Quantity => &mut record.quantity,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        record.duplicate.get_or_insert(key.name());
                    }
                    *slot = Some(if key == Key::ItemId {
                        // Integer ids are kept as their decimal text, however long: read the
                        // raw token so that ids beyond 64 bits are not rounded through f64.
                        let raw = map.next_value::<&'de serde_json::value::RawValue>()?;
                        let text = raw.get();
                        if is_json_integer(text) {
                            Scalar::Str(Cow::Borrowed(text))
                        } else {
                            serde_json::from_str::<Scalar<'de>>(text).map_err(de::Error::custom)?
                        }
                    } else {
                        map.next_value::<Scalar<'de>>()?
                    });
                }
                Ok(record)
            }
        }
        deserializer.deserialize_map(RecordVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{read_unit_all, Format, ReadUnit};
    use std::path::Path;
    use std::sync::Arc;

    fn parse(line: &str) -> Result<Option<Purchase>, RecordError> {
        parse_line(
            line.as_bytes(),
            None,
            &mut Interner::new(),
            &mut String::new(),
        )
    }

    fn one(line: &str) -> Purchase {
        parse(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .expect("not ignored")
    }

    #[test]
    fn good_records() {
        let p = one(
            r#"{"item_id":"sku-1","category":"books/fiction","ts":"2023-11-14T22:13:20.123Z","quantity":2}"#,
        );
        assert_eq!(&*p.item_id, "sku-1");
        assert_eq!(&*p.category, "books/fiction");
        assert_eq!(p.ts_ms, 1_700_000_000_123);
        assert_eq!(p.quantity, 2);
        // Integer ts, integer ids kept as decimal text, quantity absent or null is 1.
        let p = one(r#"{"item_id":42,"category":"a","ts":1700000000123}"#);
        assert_eq!(
            (&*p.item_id, p.ts_ms, p.quantity),
            ("42", 1_700_000_000_123, 1)
        );
        let p = one(r#"{"item_id":-7,"category":"a","ts":"1700000000123","quantity":null}"#);
        assert_eq!(
            (&*p.item_id, p.ts_ms, p.quantity),
            ("-7", 1_700_000_000_123, 1)
        );
        let p = one(r#"{"item_id":18446744073709551615,"category":"a","ts":0}"#);
        assert_eq!(&*p.item_id, "18446744073709551615");
        // Returns, extra fields (of any type), order_id, field order, whitespace, escapes.
        let p = one(
            r#" { "extra": {"x":[1,2,{"y":null}]}, "quantity": -1, "order_id": 99, "ts": 5, "category": "b\u00fccher/r\u00f4man", "item_id": "a\"b" } "#,
        );
        assert_eq!(
            (&*p.item_id, &*p.category, p.ts_ms, p.quantity),
            ("a\"b", "bücher/rôman", 5, -1)
        );
        // Unicode categories as raw UTF-8, offsets in RFC 3339.
        let p = one(r#"{"item_id":"i","category":"本/漫画","ts":"2023-11-14T23:13:20.123+01:00"}"#);
        assert_eq!((&*p.category, p.ts_ms), ("本/漫画", 1_700_000_000_123));
    }

    #[test]
    fn zero_quantity_is_ignored() {
        assert_eq!(
            parse(r#"{"item_id":"i","category":"a","ts":1,"quantity":0}"#),
            Ok(None)
        );
    }

    #[test]
    fn bad_records_have_the_right_error() {
        let malformed = |l: &str| matches!(parse(l), Err(RecordError::Malformed(_)));
        assert!(malformed(r#"{"item_id":"i","category":"a","ts":1"#));
        assert!(malformed("not json"));
        assert!(malformed("[1,2]"));
        assert!(malformed("42"));
        assert!(malformed(r#""a string""#));
        assert!(malformed(
            r#"{"item_id":"i","category":"a","ts":1} trailing"#
        ));
        assert!(matches!(
            parse_line(b"{\"item_id\":\"\xff\",\"category\":\"a\",\"ts\":1}", None, &mut Interner::new(), &mut String::new()),
            Err(RecordError::Malformed(m)) if m.contains("UTF-8")
        ));
        let base = r#""category":"a","ts":1"#;
        assert_eq!(
            parse(&format!("{{{base}}}")),
            Err(RecordError::MissingField("item_id"))
        );
        assert_eq!(
            parse(&format!(r#"{{"item_id":null,{base}}}"#)),
            Err(RecordError::MissingField("item_id"))
        );
        for bad_id in ["1.5", "true", "{}", "[]"] {
            assert!(
                matches!(
                    parse(&format!(r#"{{"item_id":{bad_id},{base}}}"#)),
                    Err(RecordError::WrongType {
                        field: "item_id",
                        ..
                    })
                ),
                "{bad_id}"
            );
        }
        assert_eq!(
            parse(&format!(r#"{{"item_id":"",{base}}}"#)),
            Err(RecordError::EmptyItemId)
        );
        let long = "x".repeat(257);
        assert_eq!(
            parse(&format!(r#"{{"item_id":"{long}",{base}}}"#)),
            Err(RecordError::ItemIdTooLong(257))
        );
        assert_eq!(
            parse(r#"{"item_id":"i","ts":1}"#),
            Err(RecordError::MissingField("category"))
        );
        assert!(matches!(
            parse(r#"{"item_id":"i","category":7,"ts":1}"#),
            Err(RecordError::WrongType {
                field: "category",
                ..
            })
        ));
        assert_eq!(
            parse(r#"{"item_id":"i","category":"a//b","ts":1}"#),
            Err(RecordError::EmptyCategorySegment)
        );
        assert_eq!(
            parse(r#"{"item_id":"i","category":"","ts":1}"#),
            Err(RecordError::EmptyCategorySegment)
        );
        let deep = vec!["a"; 17].join("/");
        assert_eq!(
            parse(&format!(r#"{{"item_id":"i","category":"{deep}","ts":1}}"#)),
            Err(RecordError::CategoryTooDeep(17))
        );
        assert_eq!(
            parse(r#"{"item_id":"i","category":"a"}"#),
            Err(RecordError::MissingField("ts"))
        );
        assert_eq!(
            parse(r#"{"item_id":"i","category":"a","ts":null}"#),
            Err(RecordError::MissingField("ts"))
        );
        assert!(matches!(
            parse(r#"{"item_id":"i","category":"a","ts":"yesterday"}"#),
            Err(RecordError::BadTimestamp(_))
        ));
        assert!(matches!(
            parse(r#"{"item_id":"i","category":"a","ts":1.5}"#),
            Err(RecordError::BadTimestamp(_))
        ));
        assert!(matches!(
            parse(r#"{"item_id":"i","category":"a","ts":true}"#),
            Err(RecordError::WrongType { field: "ts", .. })
        ));
        for q in ["1.5", "\"2\"", "true", "[]", "99999999999999999999"] {
            assert!(
                matches!(
                    parse(&format!(
                        r#"{{"item_id":"i","category":"a","ts":1,"quantity":{q}}}"#
                    )),
                    Err(RecordError::BadQuantity(_))
                ),
                "{q}"
            );
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> ReadUnit {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        ReadUnit::new(path, Format::Jsonl, None)
    }

    #[test]
    fn file_positions_blank_lines_crlf_and_interning() {
        let dir = tempfile::tempdir().unwrap();
        let text = concat!(
            "{\"item_id\":\"a\",\"category\":\"x/y\",\"ts\":1}\r\n",
            "\r\n",
            "   \n",
            "{\"item_id\":\"b\",\"category\":\"x/y\",\"ts\":2,\"quantity\":0}\n",
            "{broken\r\n",
            "{\"item_id\":\"c\",\"category\":\"x/y\",\"ts\":3}",
        );
        let unit = write(dir.path(), "p.jsonl", text.as_bytes());
        let mut reader = crate::files::open_unit(&unit).unwrap();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        while reader.next_batch(&mut out, &mut bad, 1).unwrap() {}
        assert_eq!(
            out.iter().map(|p| &*p.item_id).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert!(Arc::ptr_eq(&out[0].category, &out[1].category));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position, format!("{}:5", unit.location));
        assert_eq!(bad[0].raw, "{broken");
        assert!(matches!(bad[0].error, RecordError::Malformed(_)));
        assert_eq!(reader.ignored(), 1);
        assert_eq!(reader.rows_read(), 4);
        // Exhausted: further calls keep saying so.
        assert!(!reader.next_batch(&mut out, &mut bad, 10).unwrap());
    }

    #[test]
    fn overlong_line_is_one_bad_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "{{\"item_id\":\"{}\",\"category\":\"a\",\"ts\":1}}\n",
            "x".repeat(MAX_LINE_BYTES)
        );
        text.push_str("{\"item_id\":\"ok\",\"category\":\"a\",\"ts\":1}\n");
        let unit = write(dir.path(), "long.jsonl", text.as_bytes());
        let (out, bad) = read_unit_all(&unit).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].position.ends_with(":1"));
        assert!(bad[0].raw.len() <= crate::bad::MAX_RAW_BYTES);
        assert!(bad[0].raw.starts_with("{\"item_id\":\"xxx"));
    }

    #[test]
    fn batches_respect_max() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..10)
            .map(|i| format!("{{\"item_id\":\"{i}\",\"category\":\"a\",\"ts\":{i}}}\n"))
            .collect();
        let unit = write(dir.path(), "m.jsonl", text.as_bytes());
        let mut reader = crate::files::open_unit(&unit).unwrap();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        let mut calls = 0;
        loop {
            let before = out.len();
            let more = reader.next_batch(&mut out, &mut bad, 3).unwrap();
            assert!(out.len() - before <= 3);
            calls += 1;
            if !more {
                break;
            }
        }
        assert_eq!(out.len(), 10);
        assert!(calls >= 4);
        assert_eq!(
            out.iter().map(|p| p.ts_ms).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let alphabet = b"{}[]\":,0123456789-.eE\\ntrufalsitemcgoryqs \r\n\xff\xc3\xa9";
        for round in 0..200 {
            let len = rng.random_range(0..600);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        alphabet[rng.random_range(0..alphabet.len())]
                    } else {
                        rng.random()
                    }
                })
                .collect();
            let unit = write(dir.path(), &format!("g{round}.jsonl"), &bytes);
            let (out, bad) = read_unit_all(&unit).unwrap();
            let lines = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.trim_ascii().is_empty())
                .count();
            assert!(out.len() + bad.len() <= lines);
        }
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let line = r#"{"item_id":"a","category":"c","ts":1}"#;
        let bytes = format!("\u{feff}{line}\n\u{feff}{line}\n{line}\n");
        let unit = write(dir.path(), "bom.jsonl", bytes.as_bytes());
        let (out, bad) = read_unit_all(&unit).unwrap();
        assert_eq!(out.len(), 2, "{bad:?}");
        // Inside the file, a BOM is not a byte-order mark but a bad record.
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].position.ends_with("bom.jsonl:2"),
            "{}",
            bad[0].position
        );
    }

    #[test]
    fn a_field_given_twice_is_a_bad_record() {
        for (line, field) in [
            (
                r#"{"item_id":"a","category":"c","ts":1,"quantity":1,"quantity":-5}"#,
                "quantity",
            ),
            (
                r#"{"item_id":"a","item_id":"b","category":"c","ts":1}"#,
                "item_id",
            ),
            (
                r#"{"item_id":"a","category":"c","ts":1,"category":"c"}"#,
                "category",
            ),
            (r#"{"ts":2,"item_id":"a","category":"c","ts":1}"#, "ts"),
            (
                r#"{"item_id":"a","category":"c","ts":1,"quantity":null,"quantity":2}"#,
                "quantity",
            ),
        ] {
            assert_eq!(
                parse(line),
                Err(RecordError::DuplicateField(field)),
                "{line}"
            );
        }
        // Other keys may repeat: they are not read.
        assert!(parse(r#"{"x":1,"x":2,"item_id":"a","category":"c","ts":1}"#).is_ok());
    }

    #[test]
    fn quantities_beyond_two_to_the_53_are_bad_records() {
        let at = |q: &str| {
            parse(&format!(
                r#"{{"item_id":"a","category":"c","ts":1,"quantity":{q}}}"#
            ))
        };
        assert_eq!(at("9007199254740992").unwrap().unwrap().quantity, 1 << 53);
        assert_eq!(
            at("-9007199254740992").unwrap().unwrap().quantity,
            -(1 << 53)
        );
        assert_eq!(
            at("9007199254740993"),
            Err(RecordError::QuantityOutOfRange((1 << 53) + 1))
        );
        assert_eq!(
            at("-9223372036854775808"),
            Err(RecordError::QuantityOutOfRange(i64::MIN))
        );
    }
}
