//! Property tests of every parser on arbitrary bytes: no panic, every record a valid purchase,
//! an ignored one or a bad record, and every bad record's position right.
//!
//! `cargo test -p topsellers-sources props` runs a few hundred cases of each in seconds (part
//! of `./scripts/test`); `PROPTEST_CASES=100000 cargo test --release -p topsellers-sources
//! props` runs them for longer.

use proptest::prelude::*;
use topsellers_model::Purchase;

use crate::files::{list_units_with, open_unit, Format, S3Config};
use crate::kafka::{PayloadFormat, PayloadParser};
use crate::SourceError;

/// Bytes that are mostly the stuff of records (so that many are valid or nearly), with
/// arbitrary bytes among them.
fn recordish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: &[u8] =
        b"{}[]\":,0123456789-.eE\\ntrufalsitem_idcategoryqs/ \r\n\xff\xc3\xa9\xef\xbb\xbf";
    let byte = prop_oneof![
        8 => proptest::sample::select(alphabet.to_vec()),
        2 => any::<u8>(),
    ];
    let fragment = prop_oneof![
        6 => proptest::collection::vec(byte, 0..40),
        1 => Just(br#"{"item_id":"a","category":"b/c","ts":5,"quantity":2}"#.to_vec()),
        1 => Just(b"a,b/c,5,2".to_vec()),
        1 => Just(b"\n".to_vec()),
    ];
    proptest::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

/// A purchase the readers hand on must pass the contract's checks again.
fn valid(purchase: &Purchase) -> bool {
    Purchase::from_fields(
        &purchase.item_id,
        &purchase.category,
        purchase.ts_ms,
        purchase.quantity,
    )
    .is_ok_and(|p| p.as_ref() == Some(purchase))
}

/// What reading a file gave: the purchases, the records ignored (zero quantity), and the bad
/// records' line numbers (row numbers for Parquet), in the order read.
struct Outcomes {
    purchases: Vec<Purchase>,
    ignored: u64,
    bad: Vec<u64>,
}

impl Outcomes {
    /// Records with an outcome: each is exactly one of a purchase, ignored or bad.
    fn total(&self) -> u64 {
        self.purchases.len() as u64 + self.ignored + self.bad.len() as u64
    }
}

/// Reads `bytes` as a file of `format` named `name`, or the error that refused the file.
fn read(bytes: &[u8], name: &str, format: Format) -> Result<Outcomes, SourceError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    // As the backfill reads it: listed into units (a Parquet file into its row groups).
    let units = list_units_with(&[&path], Some(format), &S3Config::default())?;
    let (mut purchases, mut bad, mut ignored) = (Vec::new(), Vec::new(), 0);
    for unit in &units {
        let mut reader = open_unit(unit)?;
        while reader.next_batch(&mut purchases, &mut bad, 7)? {}
        ignored += reader.ignored();
    }
    let prefix = format!("{}:", path.display());
    let bad = bad
        .iter()
        .map(|b| {
            b.position
                .strip_prefix(&prefix)
                .map(|n| n.strip_prefix("row ").unwrap_or(n))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("position {:?} is not {prefix}N", b.position))
        })
        .collect();
    Ok(Outcomes {
        purchases,
        ignored,
        bad,
    })
}

/// The 1-based numbers of the lines of `bytes` with something on them.
fn non_blank_lines(bytes: &[u8]) -> Vec<u64> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(n, _)| n as u64 + 1)
        .collect()
}

/// What a generated line is known to be, decided when it is generated (not by reading it).
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A record that passes the contract: this purchase.
    Purchase(Purchase),
    /// A valid record of quantity 0.
    Ignored,
    /// A record that breaks the contract.
    Bad,
    /// Only whitespace: no record.
    Blank,
    /// Arbitrary bytes: exactly one outcome (or none when blank), which one is not known.
    Unknown,
}

/// A purchase that passes the contract, as fields: (item_id, category, ts, quantity).
fn fields() -> impl Strategy<Value = (String, String, i64, i64)> {
    (
        "[a-zA-Z0-9_ -]{0,8}[a-zA-Z0-9]",
        proptest::collection::vec("[a-z0-9é]{1,4}", 1..4).prop_map(|s| s.join("/")),
        0i64..1_700_000_000_000,
        -5i64..=5,
    )
}

fn purchase(item: &str, category: &str, ts: i64, quantity: i64) -> Kind {
    match Purchase::from_fields(item, category, ts, quantity) {
        Ok(Some(purchase)) => Kind::Purchase(purchase),
        Ok(None) => Kind::Ignored,
        Err(e) => panic!("the test made an invalid purchase ({e}): {item:?} {category:?}"),
    }
}

/// A line that is not `\n` nor (for CSV) `"` or `\r`, from [`recordish`].
fn unknown_line(csv: bool) -> impl Strategy<Value = Vec<u8>> {
    recordish().prop_map(move |mut bytes| {
        bytes.retain(|b| *b != b'\n' && !(csv && (*b == b'"' || *b == b'\r')));
        bytes
    })
}

/// One JSON Lines line (no newline) and what it is.
fn jsonl_line() -> impl Strategy<Value = (Vec<u8>, Kind)> {
    let record = (fields(), "[ \t]{0,2}").prop_map(|((item, category, ts, q), pad)| {
        let text = format!(
            "{pad}{{\"item_id\":{},\"category\":{},\"ts\":{ts},\"quantity\":{q}}}{pad}",
            serde_json::Value::from(item.clone()),
            serde_json::Value::from(category.clone()),
        );
        (text.into_bytes(), purchase(&item, &category, ts, q))
    });
    let bad = (fields(), 0..7usize).prop_map(|((item, category, ts, q), how)| {
        let item = serde_json::Value::from(item);
        let category = serde_json::Value::from(category);
        let text = match how {
            0 => format!(r#"{{"item_id":"","category":{category},"ts":{ts}}}"#),
            1 => format!(r#"{{"item_id":{item},"category":"a//b","ts":{ts}}}"#),
            2 => format!(r#"{{"item_id":{item},"category":{category},"ts":-{}}}"#, ts + 1),
            3 => format!(r#"{{"item_id":{item},"category":{category},"ts":{ts}"#),
            4 => format!(r#"{{"item_id":{item},"category":{category}}}"#),
            5 => format!(
                r#"{{"item_id":{item},"category":{category},"ts":{ts},"quantity":1,"quantity":{q}}}"#
            ),
            _ => format!("x{item}{category}{ts}"),
        };
        (text.into_bytes(), Kind::Bad)
    });
    prop_oneof![
        4 => record,
        3 => bad,
        1 => "[ \t\r]{0,3}".prop_map(|s| (s.into_bytes(), Kind::Blank)),
        3 => unknown_line(false).prop_map(|b| (b, Kind::Unknown)),
    ]
}

/// One CSV row (no newline, no quote) of `item_id,category,ts,quantity` and what it is.
fn csv_row() -> impl Strategy<Value = (Vec<u8>, Kind)> {
    let record = fields().prop_map(|(item, category, ts, q)| {
        let kind = purchase(&item, &category, ts, q);
        (format!("{item},{category},{ts},{q}").into_bytes(), kind)
    });
    let bad = (fields(), 0..6usize).prop_map(|((item, category, ts, q), how)| {
        let text = match how {
            0 => format!(",{category},{ts},{q}"),
            1 => format!("{item},a//b,{ts},{q}"),
            2 => format!("{item},{category},-{},{q}", ts + 1),
            3 => format!("{item},{category},yesterday,{q}"),
            4 => format!("{item},{category},{ts},1.5"),
            _ => format!("{item},{category}"),
        };
        (text.into_bytes(), Kind::Bad)
    });
    prop_oneof![
        4 => record,
        3 => bad,
        // An empty line is no record in CSV.
        1 => Just((Vec::new(), Kind::Blank)),
        3 => unknown_line(true).prop_map(|b| (b, Kind::Unknown)),
    ]
}

/// Joins `lines` with `\n` (and one at the end if `newline`).
fn join(lines: &[(Vec<u8>, Kind)], newline: bool) -> Vec<u8> {
    let mut bytes = lines
        .iter()
        .map(|(line, _)| line.clone())
        .collect::<Vec<_>>()
        .join(&b'\n');
    if newline && !lines.is_empty() {
        bytes.push(b'\n');
    }
    bytes
}

/// Checks `got` against the lines the file was made of (`first` is the line number of
/// `lines[0]`; `with_record` the numbers of the lines that hold a record): one outcome per
/// record, every known line's outcome at its own line, the known purchases read as made.
fn check_lines(
    got: &Outcomes,
    lines: &[(Vec<u8>, Kind)],
    first: u64,
    with_record: &[u64],
) -> Result<(), TestCaseError> {
    prop_assert!(got.purchases.iter().all(valid));
    prop_assert_eq!(
        got.total(),
        with_record.len() as u64,
        "one outcome per record"
    );
    prop_assert!(got.bad.windows(2).all(|w| w[0] < w[1]), "{:?}", got.bad);
    prop_assert!(
        got.bad.iter().all(|n| with_record.contains(n)),
        "bad {:?} of {:?}",
        got.bad,
        with_record
    );
    let mut purchases: Vec<&Purchase> = got.purchases.iter().collect();
    let mut ignored = 0;
    for (at, (line, kind)) in lines.iter().enumerate() {
        let number = first + at as u64;
        let is_bad = got.bad.contains(&number);
        let text = String::from_utf8_lossy(line);
        match kind {
            Kind::Bad => prop_assert!(is_bad, "line {number} {text:?} is bad"),
            Kind::Unknown => {}
            Kind::Blank => prop_assert!(!with_record.contains(&number), "line {number}"),
            Kind::Ignored => {
                prop_assert!(!is_bad, "line {number} {text:?} is ignored, not bad");
                ignored += 1;
            }
            Kind::Purchase(want) => {
                prop_assert!(!is_bad, "line {number} {text:?} is a purchase, not bad");
                let found = purchases.iter().position(|p| *p == want);
                prop_assert!(found.is_some(), "line {number}: {want:?} not read");
                purchases.remove(found.unwrap());
            }
        }
    }
    prop_assert!(got.ignored >= ignored);
    Ok(())
}

/// Cases per property: 256, or `PROPTEST_CASES` (proptest's own variable, which an explicit
/// `with_cases` would override).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// JSON Lines: exactly one outcome (purchase, ignored or bad) per non-blank line, each
    /// bad record at its own line; lines made to be purchases, ignored, bad or blank are
    /// exactly that, at their line. A byte-order mark may open the file.
    #[test]
    fn jsonl_lines_are_purchases_or_bad_records_at_their_line(
        lines in proptest::collection::vec(jsonl_line(), 0..30),
        bom in any::<bool>(),
        newline in any::<bool>(),
    ) {
        let mut bytes = if bom { b"\xef\xbb\xbf".to_vec() } else { Vec::new() };
        bytes.extend(join(&lines, newline));
        let got = read(&bytes, "p.jsonl", Format::Jsonl).expect("a local file reads");
        check_lines(&got, &lines, 1, &non_blank_lines(&bytes))?;
    }

    /// JSON Lines of arbitrary bytes: one outcome per non-blank line, bad ones at their line.
    #[test]
    fn jsonl_of_arbitrary_bytes_has_one_outcome_per_line(bytes in recordish()) {
        let got = read(&bytes, "p.jsonl", Format::Jsonl).expect("a local file reads");
        let lines = non_blank_lines(&bytes);
        prop_assert!(got.purchases.iter().all(valid));
        prop_assert_eq!(got.total(), lines.len() as u64);
        prop_assert!(got.bad.windows(2).all(|w| w[0] < w[1]), "{:?}", got.bad);
        prop_assert!(got.bad.iter().all(|n| lines.contains(n)), "{:?} of {lines:?}", got.bad);
    }

    /// CSV after a header: exactly one outcome per record (each non-empty line: the rows have
    /// no quotes), each bad row at its own line; rows made to be purchases, ignored or bad
    /// are exactly that.
    #[test]
    fn csv_rows_are_purchases_or_bad_records_at_their_line(
        rows in proptest::collection::vec(csv_row(), 0..30),
        newline in any::<bool>(),
    ) {
        let mut bytes = b"item_id,category,ts,quantity\n".to_vec();
        bytes.extend(join(&rows, newline));
        let with_record: Vec<u64> = rows
            .iter()
            .enumerate()
            .filter(|(_, (row, _))| !row.is_empty())
            .map(|(at, _)| at as u64 + 2)
            .collect();
        let got = read(&bytes, "p.csv", Format::Csv).expect("a local file reads");
        check_lines(&got, &rows, 2, &with_record)?;
    }

    /// CSV of arbitrary bytes after a header (quotes and `\r` included): purchases are valid,
    /// bad rows are at lines of the file in order, and a file is refused only for a quote
    /// left open.
    #[test]
    fn csv_of_arbitrary_bytes_never_panics(body in recordish()) {
        let mut bytes = b"item_id,category,ts,quantity\n".to_vec();
        bytes.extend(&body);
        let total = bytes.split(|b| *b == b'\n').count() as u64;
        match read(&bytes, "p.csv", Format::Csv) {
            Ok(got) => {
                prop_assert!(got.purchases.iter().all(valid));
                // (A lone `\r` ends a CSV record too, on the same `\n`-counted line.)
                prop_assert!(got.bad.windows(2).all(|w| w[0] <= w[1]), "{:?}", got.bad);
                prop_assert!(got.bad.iter().all(|&n| (2..=total).contains(&n)));
            }
            Err(SourceError::UnterminatedQuote { .. }) => prop_assert!(body.contains(&b'"')),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// Kafka payloads in every format: a purchase that passes the contract, or an error.
    #[test]
    fn kafka_payloads_are_purchases_or_bad_messages(bytes in recordish()) {
        for format in [PayloadFormat::Auto, PayloadFormat::Json, PayloadFormat::Csv] {
            if let Ok(Some(purchase)) = PayloadParser::new(format).parse(Some(&bytes)) {
                prop_assert!(valid(&purchase), "{purchase:?}");
            }
        }
    }

    /// Parquet: arbitrary bytes, and a valid file with bytes overwritten, are an error naming
    /// the file or records — never a panic.
    #[test]
    fn parquet_files_damaged_anywhere_never_panic(
        garbage in proptest::collection::vec(any::<u8>(), 0..600),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let _ = read(&garbage, "g.parquet", Format::Parquet);
        let mut bytes = valid_parquet();
        for (at, byte) in damage {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        match read(&bytes, "d.parquet", Format::Parquet) {
            Ok(got) => prop_assert!(got.purchases.iter().all(valid)),
            Err(e) => prop_assert!(e.to_string().contains("d.parquet"), "{e}"),
        }
    }

    /// Parquet of arbitrary column contents (strings of any characters, invalid categories,
    /// any i64 time and quantity, nulls), in several row groups: exactly one outcome per row,
    /// each bad record at its own row; rows made to be purchases, ignored or bad are exactly
    /// that, at their row.
    #[test]
    fn parquet_rows_are_purchases_or_bad_records_at_their_row(
        rows in proptest::collection::vec(parquet_row(), 0..40),
        group in 1usize..9,
    ) {
        let bytes = parquet_of(&rows, group);
        let got = read(&bytes, "p.parquet", Format::Parquet).expect("a local file reads");
        let lines: Vec<(Vec<u8>, Kind)> =
            rows.iter().map(|row| (format!("{row:?}").into_bytes(), row.4.clone())).collect();
        let all: Vec<u64> = (0..rows.len() as u64).collect();
        check_lines(&got, &lines, 0, &all)?;
    }
}

/// A Parquet row: `item_id`, `category`, `ts`, `quantity` (each may be null) and what it is.
type Row = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Kind,
);

fn parquet_row() -> impl Strategy<Value = Row> {
    let record = fields().prop_map(|(item, category, ts, q)| {
        let kind = purchase(&item, &category, ts, q);
        (Some(item), Some(category), Some(ts), Some(q), kind)
    });
    let bad = (fields(), 0..6usize).prop_map(|((item, category, ts, q), how)| {
        let (mut i, mut c, mut t) = (Some(item), Some(category), Some(ts));
        match how {
            0 => i = None,
            1 => i = Some(String::new()),
            2 => c = Some(format!("{}//x", c.unwrap())),
            3 => c = None,
            4 => t = None,
            _ => t = Some(-1 - ts),
        }
        (i, c, t, Some(q), Kind::Bad)
    });
    let text = prop_oneof![".{0,12}", "[a/]{0,6}", Just(String::new())];
    let unknown = (
        proptest::option::weighted(0.9, text.clone()),
        proptest::option::weighted(0.9, text),
        proptest::option::weighted(0.9, any::<i64>()),
        proptest::option::weighted(0.8, any::<i64>()),
    )
        .prop_map(|(i, c, t, q)| (i, c, t, q, Kind::Unknown));
    prop_oneof![4 => record, 3 => bad, 3 => unknown]
}

/// A Parquet file of `rows`, `group` rows per row group.
fn parquet_of(rows: &[Row], group: usize) -> Vec<u8> {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let strings = |f: fn(&Row) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let ints = |f: fn(&Row) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_from_iter([
        ("item_id", strings(|r| r.0.clone())),
        ("category", strings(|r| r.1.clone())),
        ("ts", ints(|r| r.2)),
        ("quantity", ints(|r| r.3)),
    ])
    .unwrap();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut out = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// A small Parquet file of the contract's columns, some rows bad.
fn valid_parquet() -> Vec<u8> {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter([
        (
            "item_id",
            Arc::new(StringArray::from(vec!["a", "b", "", "d"])) as ArrayRef,
        ),
        (
            "category",
            Arc::new(StringArray::from(vec!["x/y", "x", "x//y", "z"])) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(Int64Array::from(vec![1, 2, 3, -4])) as ArrayRef,
        ),
        (
            "quantity",
            Arc::new(Int64Array::from(vec![1, -1, 2, 0])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}
