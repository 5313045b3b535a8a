//! One Kafka message's payload to a purchase: a JSON object (the data contract) or a CSV line.

use csv::{ByteRecord, ReaderBuilder};
use topsellers_model::{Purchase, RecordError};

use super::config::PayloadFormat;
use crate::files::csv::{parse_fields, Columns};
use crate::files::jsonl::parse_line;
use crate::files::MAX_LINE_BYTES;
use crate::intern::Interner;

/// `topic/partition/offset`: where a message is, as written in logs and dead letters.
pub fn message_position(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// Parses payloads with the same rules as the file readers (one validation code path).
#[derive(Debug)]
pub struct PayloadParser {
    format: PayloadFormat,
    interner: Interner,
    number: String,
    record: ByteRecord,
}

impl PayloadParser {
    /// A parser for `format`.
    pub fn new(format: PayloadFormat) -> Self {
        PayloadParser {
            format,
            interner: Interner::new(),
            number: String::new(),
            record: ByteRecord::new(),
        }
    }

    /// The purchase in `payload`: `Ok(None)` for a zero quantity (ignored), `Err` for a bad
    /// message (no payload, too long, malformed, or breaking a rule of the data contract).
    pub fn parse(&mut self, payload: Option<&[u8]>) -> Result<Option<Purchase>, RecordError> {
        let payload = payload.unwrap_or_default();
        if payload.len() > MAX_LINE_BYTES {
            return Err(RecordError::Malformed(format!(
                "message has {} bytes (at most {MAX_LINE_BYTES})",
                payload.len()
            )));
        }
        // Whitespace only decides the format: a CSV field keeps its spaces (`" 7"` is an id).
        let Some(&first) = payload.trim_ascii_start().first() else {
            return Err(RecordError::Malformed("empty message".into()));
        };
        let json = match self.format {
            PayloadFormat::Json => true,
            PayloadFormat::Csv => false,
            PayloadFormat::Auto => first == b'{',
        };
        if json {
            parse_line(payload, None, &mut self.interner, &mut self.number)
        } else {
            self.parse_csv(payload)
        }
    }

    fn parse_csv(&mut self, line: &[u8]) -> Result<Option<Purchase>, RecordError> {
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(line.len() + 1)
            .from_reader(line);
        let more = reader
            .read_byte_record(&mut self.record)
            .map_err(|e| RecordError::Malformed(format!("bad CSV line: {e}")))?;
        if !more {
            return Err(RecordError::Malformed("empty message".into()));
        }
        let mut rest = ByteRecord::new();
        if reader.read_byte_record(&mut rest).unwrap_or(true) {
            return Err(RecordError::Malformed(
                "more than one CSV line in one message".into(),
            ));
        }
        if !(3..=5).contains(&self.record.len()) {
            return Err(RecordError::Malformed(format!(
                "expected 3 to 5 CSV fields (item_id,category,ts[,quantity[,order_id]]), found {}",
                self.record.len()
            )));
        }
        parse_fields(
            &self.record,
            Columns::CONTRACT_ORDER,
            None,
            &mut self.interner,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        format: PayloadFormat,
        text: &str,
    ) -> Result<Option<(String, String, i64, i64)>, RecordError> {
        PayloadParser::new(format)
            .parse(Some(text.as_bytes()))
            .map(|p| {
                p.map(|p| {
                    (
                        p.item_id.to_string(),
                        p.category.to_string(),
                        p.ts_ms,
                        p.quantity,
                    )
                })
            })
    }

    fn ok(
        item: &str,
        category: &str,
        ts: i64,
        q: i64,
    ) -> Result<Option<(String, String, i64, i64)>, RecordError> {
        Ok(Some((item.into(), category.into(), ts, q)))
    }

    #[test]
    fn json_and_csv() {
        use PayloadFormat::*;
        assert_eq!(
            parse(
                Auto,
                r#"{"item_id":"x","category":"a/b","ts":5,"quantity":-2}"#
            ),
            ok("x", "a/b", 5, -2)
        );
        assert_eq!(
            parse(
                Auto,
                r#" {"item_id":7,"category":"a","ts":"1970-01-01T00:00:01Z","order_id":"o"}"#
            ),
            ok("7", "a", 1000, 1)
        );
        assert_eq!(parse(Auto, "x,a/b,5"), ok("x", "a/b", 5, 1));
        assert_eq!(parse(Auto, "x,a/b,5,3,order-9\n"), ok("x", "a/b", 5, 3));
        assert_eq!(
            parse(Csv, "\"a,b\",c,1970-01-01T00:00:00.002Z,"),
            ok("a,b", "c", 2, 1)
        );
        assert_eq!(parse(Auto, "x,a,5,0"), Ok(None));
        assert_eq!(parse(Auto, " 7,a,5\r\n"), ok(" 7", "a", 5, 1));
        assert_eq!(
            parse(
                Json,
                r#"{"item_id":"x","category":"a","ts":5,"quantity":0}"#
            ),
            Ok(None)
        );
    }

    #[test]
    fn bad_messages() {
        use PayloadFormat::*;
        for (format, text) in [
            (Auto, ""),
            (Auto, "   "),
            (Auto, "{not json"),
            (Auto, r#"{"item_id":"x","category":"a//b","ts":5}"#),
            (Auto, r#"{"item_id":"x","category":"a"}"#),
            (Auto, "x,a"),
            (Auto, "x,a,5,1,o,extra"),
            (Auto, "x,a,soon"),
            (Auto, "x,a,5,1.5"),
            (Auto, "x,a,5\ny,b,6"),
            (Json, "x,a,5"),
            (Csv, r#"{"item_id":"x","category":"a","ts":5}"#),
        ] {
            assert!(parse(format, text).is_err(), "{format:?} {text:?}");
        }
        assert!(PayloadParser::new(Auto).parse(None).is_err());
        assert_eq!(message_position("t", 3, 42), "t/3/42");
    }
}
