//! CSV reader: a header row names the columns (any order, extra columns ignored).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use parking_lot::Mutex;

use csv::{ByteRecord, ReaderBuilder};
use topsellers_model::{Purchase, RecordError};

use super::compression::{RawBytes, TextInput};
use super::fields::{self, Tally};
use super::{RecordReader, MAX_LINE_BYTES};
use crate::bad::{BadRecord, MAX_RAW_BYTES};
use crate::error::SourceError;
use crate::intern::Interner;
use crate::position::line_position;

/// Where the columns are in each row (`category: None`: the file has no category column and
/// every row takes its `category=` partition's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns {
    pub(crate) item_id: usize,
    pub(crate) category: Option<usize>,
    pub(crate) ts: usize,
    pub(crate) quantity: Option<usize>,
}

impl Columns {
    /// The data contract's column order without a header: `item_id,category,ts[,quantity[,order_id]]`.
    pub(crate) const CONTRACT_ORDER: Columns = Columns {
        item_id: 0,
        category: Some(1),
        ts: 2,
        quantity: Some(3),
    };
}

/// Most lines one record may span (a quoted field may hold line breaks). A quote left open
/// runs on to the end of the file, swallowing every row after it; past this bound the file is
/// refused, naming where the record started, instead.
pub(crate) const MAX_RECORD_LINES: u64 = 16;

/// The line breaks (`\r`, `\n`) of the input with their byte offsets, noted as the CSV
/// reader reads, until the record after them is read. The CSV reader gives a record the
/// position where it began looking for it, before the empty lines it skips; these tell how
/// many lines that was.
type Breaks = Arc<Mutex<VecDeque<(u64, u8)>>>;

/// The input, noting its line breaks in [`Breaks`].
struct NoteBreaks {
    inner: Box<dyn Read + Send>,
    /// Bytes handed on so far.
    offset: u64,
    breaks: Breaks,
}

impl Read for NoteBreaks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.lock();
        for at in memchr::memchr2_iter(b'\n', b'\r', &buf[..n]) {
            breaks.push_back((self.offset + at as u64, buf[at]));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The line a record starts on, given the position the CSV reader gave it (`byte`, `line`):
/// past the line breaks of the empty lines it skipped there. Forgets the breaks before it.
fn record_line(breaks: &Breaks, byte: u64, line: u64) -> u64 {
    let mut breaks = breaks.lock();
    while breaks.front().is_some_and(|(at, _)| *at < byte) {
        breaks.pop_front();
    }
    let (mut at, mut line) = (byte, line);
    while let Some(&(offset, b)) = breaks.front() {
        if offset != at {
            break;
        }
        line += u64::from(b == b'\n');
        at += 1;
        breaks.pop_front();
    }
    line
}

/// Reads one CSV file.
pub(crate) struct CsvReader {
    /// The file's path or URL (positions and errors).
    label: String,
    reader: csv::Reader<NoteBreaks>,
    /// The line breaks not yet passed.
    breaks: Breaks,
    /// The raw bytes read (a compressed file's are counted under its decoder).
    consumed: RawBytes,
    /// The category of rows without one (a `category=` partition).
    category: Option<Arc<str>>,
    record: ByteRecord,
    columns: Columns,
    width: usize,
    interner: Interner,
    tally: Tally,
    done: bool,
}

fn csv_error(path: &str, error: csv::Error) -> SourceError {
    match error.into_kind() {
        csv::ErrorKind::Io(e) => SourceError::io(path, e),
        other => SourceError::io(path, std::io::Error::other(format!("{other:?}"))),
    }
}

impl CsvReader {
    /// Reads the bytes of `input`, named `label` in positions and errors; its header row must
    /// name the required columns (`category` may be missing when `category` is given).
    pub(crate) fn new(
        label: String,
        input: TextInput,
        category: Option<Arc<str>>,
    ) -> Result<Self, SourceError> {
        let TextInput {
            read: input,
            consumed,
        } = input;
        let path = label.as_str();
        let breaks = Breaks::default();
        let mut reader = ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(NoteBreaks {
                inner: input,
                offset: 0,
                breaks: breaks.clone(),
            });
        let header = reader
            .byte_headers()
            .map_err(|e| csv_error(path, e))?
            .clone();
        let find = |name: &'static str| {
            header.iter().position(|h| {
                let h = h.strip_prefix(b"\xef\xbb\xbf").unwrap_or(h);
                h.trim_ascii() == name.as_bytes()
            })
        };
        let required = |name: &'static str| {
            find(name).ok_or(SourceError::MissingColumn {
                path: path.to_owned(),
                column: name,
            })
        };
        let columns = Columns {
            item_id: required("item_id")?,
            category: match category {
                Some(_) => find("category"),
                None => Some(required("category")?),
            },
            ts: required("ts")?,
            quantity: find("quantity"),
        };
        Ok(CsvReader {
            label,
            reader,
            breaks,
            consumed,
            category,
            record: ByteRecord::new(),
            columns,
            width: header.len(),
            interner: Interner::new(),
            tally: Tally::default(),
            done: false,
        })
    }
}

fn field<'r>(record: &'r ByteRecord, index: usize, name: &str) -> Result<&'r str, RecordError> {
    let bytes = record.get(index).unwrap_or_default();
    std::str::from_utf8(bytes)
        .map_err(|e| RecordError::Malformed(format!("invalid UTF-8 in column `{name}`: {e}")))
}

fn parse_row(
    record: &ByteRecord,
    columns: Columns,
    width: usize,
    default_category: Option<&str>,
    interner: &mut Interner,
) -> Result<Option<Purchase>, RecordError> {
    if record.as_slice().len() > MAX_LINE_BYTES {
        return Err(RecordError::Malformed(format!(
            "record has {} bytes (at most {MAX_LINE_BYTES})",
            record.as_slice().len()
        )));
    }
    if record.len() != width {
        return Err(RecordError::Malformed(format!(
            "expected {width} fields (as in the header), found {}",
            record.len()
        )));
    }
    parse_fields(record, columns, default_category, interner)
}

/// The purchase in `record`'s columns (a missing trailing `quantity` column means 1; a missing
/// category, the partition's `default_category`).
pub(crate) fn parse_fields(
    record: &ByteRecord,
    columns: Columns,
    default_category: Option<&str>,
    interner: &mut Interner,
) -> Result<Option<Purchase>, RecordError> {
    let item_id = field(record, columns.item_id, "item_id")?;
    // No category column, or an empty field (CSV's null): the partition's category, if any.
    let own = match columns.category {
        Some(index) => Some(field(record, index, "category")?).filter(|c| !c.is_empty()),
        None => None,
    };
    let category = match (own, default_category) {
        (Some(category), _) | (None, Some(category)) => category,
        (None, None) if columns.category.is_some() => "",
        (None, None) => return Err(RecordError::MissingField("category")),
    };
    let ts_ms = fields::ts_from_text(field(record, columns.ts, "ts")?)?;
    let quantity = match columns.quantity {
        Some(index) => fields::quantity_from_text(field(record, index, "quantity")?)?,
        None => 1,
    };
    fields::purchase(item_id, category, ts_ms, quantity, interner)
}

/// The row as CSV text again (for the dead-letter output).
pub(crate) fn render(record: &ByteRecord) -> Vec<u8> {
    let mut text = Vec::new();
    for (i, value) in record.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        if value
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        {
            text.push(b'"');
            for &b in value {
                if b == b'"' {
                    text.push(b'"');
                }
                text.push(b);
            }
            text.push(b'"');
        } else {
            text.extend_from_slice(value);
        }
        if text.len() > MAX_RAW_BYTES {
            break;
        }
    }
    text
}

impl RecordReader for CsvReader {
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
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Ok(true) => {}
                Err(e) => {
                    self.done = true;
                    return Err(csv_error(&self.label, e));
                }
            }
            examined += 1;
            let record = &self.record;
            let line = record
                .position()
                .map_or(0, |p| record_line(&self.breaks, p.byte(), p.line()));
            let lines = self.reader.position().line().saturating_sub(line);
            if lines > MAX_RECORD_LINES {
                self.done = true;
                return Err(SourceError::UnterminatedQuote {
                    position: line_position(&self.label, line),
                    lines,
                    max: MAX_RECORD_LINES,
                });
            }
            let outcome = parse_row(
                record,
                self.columns,
                self.width,
                self.category.as_deref(),
                &mut self.interner,
            );
            let label = &self.label;
            out.extend(fields::deliver(outcome, &mut self.tally, bad, |e| {
                BadRecord::from_bytes(line_position(label, line), e, &render(record))
            }));
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
        self.consumed.read(self.reader.position().byte())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{read_unit_all, Format, ReadUnit};
    use std::path::Path;
    use std::sync::Arc;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> ReadUnit {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        ReadUnit::new(path, Format::Csv, None)
    }

    /// Empty lines (the CSV reader skips them) before a record do not shift its position.
    #[test]
    fn positions_count_the_empty_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"item_id,category,ts\n\n\r\n,a,1\n\nx,,2\r\n\n\ny,b,3\n\n\nz,b/,4";
        let unit = write(dir.path(), "blank.csv", text);
        let (out, bad) = read_unit_all(&unit).unwrap();
        assert_eq!(out.len(), 1);
        let lines: Vec<&str> = bad
            .iter()
            .map(|b| b.position.rsplit(':').next().unwrap())
            .collect();
        assert_eq!(lines, ["4", "6", "12"]);
    }

    #[test]
    fn good_rows_any_column_order_extra_columns() {
        let dir = tempfile::tempdir().unwrap();
        let text = concat!(
            "note,ts,quantity,category,order_id,item_id\r\n",
            "hi,2023-11-14T22:13:20.123Z,2,books/fiction,o1,sku-1\r\n",
            "\"a, b\",1700000000123,,bücher/roman,o2,42\r\n",
            "x,5,-1,本/漫画,,\"q\"\"uote\"\n",
        );
        let unit = write(dir.path(), "good.csv", text.as_bytes());
        let (out, bad) = read_unit_all(&unit).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let got: Vec<_> = out
            .iter()
            .map(|p| (&*p.item_id, &*p.category, p.ts_ms, p.quantity))
            .collect();
        assert_eq!(
            got,
            [
                ("sku-1", "books/fiction", 1_700_000_000_123, 2),
                ("42", "bücher/roman", 1_700_000_000_123, 1),
                ("q\"uote", "本/漫画", 5, -1),
            ]
        );
    }

    #[test]
    fn quantity_column_is_optional() {
        let dir = tempfile::tempdir().unwrap();
        let unit = write(dir.path(), "q.csv", b"item_id,category,ts\na,x,1\na,x,2\n");
        let (out, _) = read_unit_all(&unit).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|p| p.quantity == 1));
        assert!(Arc::ptr_eq(&out[0].category, &out[1].category));
    }

    #[test]
    fn bad_rows_have_positions_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = b"item_id,category,ts,quantity\n".to_vec(); // line 1
        text.extend_from_slice(b"a,x,1,1\n"); // 2 good
        text.extend_from_slice(b"a,x,1\n"); // 3 too few fields
        text.extend_from_slice(b"a,x,1,1,9\n"); // 4 too many
        text.extend_from_slice(b",x,1,1\n"); // 5 empty item id
        text.extend_from_slice(b"a,x//y,1,1\n"); // 6 bad category
        text.extend_from_slice(b"a,x,soon,1\n"); // 7 bad ts
        text.extend_from_slice(b"a,x,,1\n"); // 8 missing ts
        text.extend_from_slice(b"a,x,1,1.5\n"); // 9 bad quantity
        text.extend_from_slice(b"a,\xff\xfe,1,1\n"); // 10 bad UTF-8
        text.extend_from_slice(b"\n"); // 11 blank: skipped
        text.extend_from_slice(b"a,x,1,0\n"); // 12 ignored
        text.extend_from_slice(b"\"multi\nline\",x,1,1\n"); // 13-14 good, quoted newline
        text.extend_from_slice(b"b,x,1,\"two\"\n"); // 15 bad quantity
        let unit = write(dir.path(), "bad.csv", &text);
        let mut reader = crate::files::open_unit(&unit).unwrap();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        while reader.next_batch(&mut out, &mut bad, 2).unwrap() {}
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[1].item_id, "multi\nline");
        assert_eq!(reader.ignored(), 1);
        assert_eq!(reader.rows_read(), 12); // data rows; the blank line 11 is not one
        let label = unit.location.to_string();
        let got: Vec<(String, RecordError)> = bad
            .iter()
            .map(|b| (b.position.clone(), b.error.clone()))
            .collect();
        let at = |n: u32| format!("{label}:{n}");
        assert_eq!(got.len(), 9, "{got:?}");
        assert!(matches!(&got[0], (p, RecordError::Malformed(_)) if *p == at(3)));
        assert!(matches!(&got[1], (p, RecordError::Malformed(_)) if *p == at(4)));
        assert_eq!(got[2], (at(5), RecordError::EmptyItemId));
        assert_eq!(got[3], (at(6), RecordError::EmptyCategorySegment));
        assert!(matches!(&got[4], (p, RecordError::BadTimestamp(_)) if *p == at(7)));
        assert_eq!(got[5], (at(8), RecordError::MissingField("ts")));
        assert!(matches!(&got[6], (p, RecordError::BadQuantity(_)) if *p == at(9)));
        assert!(
            matches!(&got[7], (p, RecordError::Malformed(m)) if *p == at(10) && m.contains("UTF-8"))
        );
        assert!(matches!(&got[8], (p, RecordError::BadQuantity(_)) if *p == at(15)));
        assert_eq!(bad[0].raw, "a,x,1");
        assert_eq!(bad[7].raw, "a,\u{fffd}\u{fffd},1,1");
    }

    #[test]
    fn missing_header_column_is_an_error_naming_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let unit = write(dir.path(), "nocat.csv", b"item_id,ts,quantity\na,1,1\n");
        let err = crate::files::open_unit(&unit).err().expect("must fail");
        assert!(matches!(
            err,
            SourceError::MissingColumn {
                column: "category",
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.contains("nocat.csv") && text.contains("category"),
            "{text}"
        );
        let empty = write(dir.path(), "empty.csv", b"");
        assert!(matches!(
            crate::files::open_unit(&empty).err(),
            Some(SourceError::MissingColumn { .. })
        ));
    }

    #[test]
    fn random_garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
        let alphabet = b"ab,\"\r\n0123456789-:TZ/ \xff\xc3\xa9";
        for round in 0..200 {
            let len = rng.random_range(0..400);
            let mut bytes = b"item_id,category,ts,quantity\n".to_vec();
            bytes.extend((0..len).map(|_| {
                if rng.random_bool(0.8) {
                    alphabet[rng.random_range(0..alphabet.len())]
                } else {
                    rng.random()
                }
            }));
            let unit = write(dir.path(), &format!("g{round}.csv"), &bytes);
            let (out, bad) = match read_unit_all(&unit) {
                Ok(read) => read,
                Err(SourceError::UnterminatedQuote { .. }) => continue,
                Err(e) => panic!("{e}"),
            };
            for p in &out {
                assert!(topsellers_model::validate_category(&p.category).is_ok());
                assert_ne!(p.quantity, 0);
            }
            let _ = bad;
        }
        // Garbage in the header too.
        for round in 0..50 {
            let bytes: Vec<u8> = (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect();
            let unit = write(dir.path(), &format!("h{round}.csv"), &bytes);
            let _ = read_unit_all(&unit);
        }
    }

    #[test]
    fn a_stray_quote_refuses_the_file_naming_where_instead_of_swallowing_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("item_id,category,ts,quantity\n");
        for n in 0..1000 {
            text.push_str(&format!("i{n},a/b,{n},1\n"));
        }
        // Line 502: a stray quote; every row after it would be one "field".
        text.insert_str(
            text.match_indices('\n').nth(500).unwrap().0 + 1,
            "\"x,a/b,5,1\n",
        );
        let unit = write(dir.path(), "stray.csv", text.as_bytes());
        let error = read_unit_all(&unit).unwrap_err();
        let SourceError::UnterminatedQuote { position, .. } = &error else {
            panic!("{error}");
        };
        assert!(position.ends_with("stray.csv:502"), "{error}");
        assert!(error.to_string().contains("stray"), "{error}");
        // A quoted field may hold line breaks, up to the bound.
        let breaks = "\n".repeat(MAX_RECORD_LINES as usize - 1);
        let text = format!("item_id,category,ts\n\"a{breaks}b\",c,1\nz,c,2\n");
        let unit = write(dir.path(), "breaks.csv", text.as_bytes());
        let (out, bad) = read_unit_all(&unit).unwrap();
        assert_eq!((out.len(), bad.len()), (2, 0));
        assert_eq!(&*out[0].item_id, format!("a{breaks}b"));
    }
}
