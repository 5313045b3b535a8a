//! Property tests of every parser on arbitrary bytes: no panic, every record a valid purchase,
//! an ignored one or a bad record, and every bad record's position right.
//!
//! `cargo test -p topsellers-sources props` runs a few hundred cases of each in seconds (part
//! of `./scripts/test`); `PROPTEST_CASES=100000 cargo test --release -p topsellers-sources
//! props` runs them for longer.

use proptest::prelude::*;
use topsellers_model::Purchase;

use crate::files::{read_unit_all, Format, ReadUnit};
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

/// Reads `bytes` as a file of `format` named `name`; the purchases and the bad records'
/// line numbers, or the error that refused the file.
fn read(
    bytes: &[u8],
    name: &str,
    format: Format,
) -> Result<(Vec<Purchase>, Vec<u64>), SourceError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let (out, bad) = read_unit_all(&ReadUnit::new(&path, format, None))?;
    let prefix = format!("{}:", path.display());
    let lines = bad
        .iter()
        .map(|b| {
            b.position
                .strip_prefix(&prefix)
                .map(|n| n.strip_prefix("row ").unwrap_or(n))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("position {:?} is not {prefix}N", b.position))
        })
        .collect();
    Ok((out, lines))
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// JSON Lines: one outcome per non-blank line; bad records at their own line, in order.
    #[test]
    fn jsonl_lines_are_purchases_or_bad_records_at_their_line(bytes in recordish()) {
        let (out, bad_lines) = read(&bytes, "p.jsonl", Format::Jsonl).expect("a local file reads");
        let lines = non_blank_lines(&bytes);
        prop_assert!(out.iter().all(valid));
        prop_assert!(out.len() + bad_lines.len() <= lines.len());
        prop_assert!(bad_lines.windows(2).all(|w| w[0] < w[1]), "{bad_lines:?}");
        prop_assert!(bad_lines.iter().all(|n| lines.contains(n)), "{bad_lines:?} of {lines:?}");
    }

    /// CSV after a header: purchases are valid, bad rows are at lines of the file in order,
    /// and a file is refused only for a quote left open.
    #[test]
    fn csv_rows_are_purchases_or_bad_records_at_their_line(body in recordish()) {
        let mut bytes = b"item_id,category,ts,quantity\n".to_vec();
        bytes.extend(&body);
        let total = bytes.split(|b| *b == b'\n').count() as u64;
        match read(&bytes, "p.csv", Format::Csv) {
            Ok((out, bad_lines)) => {
                prop_assert!(out.iter().all(valid));
                // (A lone `\r` ends a CSV record too, on the same `\n`-counted line.)
                prop_assert!(bad_lines.windows(2).all(|w| w[0] <= w[1]), "{bad_lines:?}");
                prop_assert!(bad_lines.iter().all(|&n| (2..=total).contains(&n)));
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
            Ok((out, _)) => prop_assert!(out.iter().all(valid)),
            Err(e) => prop_assert!(e.to_string().contains("d.parquet"), "{e}"),
        }
    }
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
