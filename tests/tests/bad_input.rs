//! Bad records: every rule of the data contract broken once, in JSON Lines and CSV, mixed
//! with valid records. They are counted, written to the dead-letter file with their
//! `file:line`, and change no score. Unusable inputs are errors naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use topsellers_sources::kafka::KafkaConfig;
use topsellers_sources::SourceConfig;
use topsellers_tests::{
    assert_no_problems, batch_lists, check_twins, compare, default_as_of, generate, get,
    jsonl_line, metric, oracle_problems, served_lists_at, top_path, wait_until, within, Fmt,
    Params, Rec, Spec, DAY, HOUR,
};

const R: i64 = 2 * DAY;

/// A file being built line by line, remembering which lines are bad.
struct Builder {
    bytes: Vec<u8>,
    line: u64,
    bad: BTreeMap<u64, Vec<u8>>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            bytes: Vec::new(),
            line: 0,
            bad: BTreeMap::new(),
        }
    }

    /// Appends one record (which may span several physical lines); returns its first line.
    fn push(&mut self, record: &[u8]) -> u64 {
        let first = self.line + 1;
        self.bytes.extend_from_slice(record);
        self.bytes.push(b'\n');
        self.line += 1 + record.iter().filter(|b| **b == b'\n').count() as u64;
        first
    }

    fn bad(&mut self, record: impl AsRef<[u8]>) {
        let line = self.push(record.as_ref());
        self.bad.insert(line, record.as_ref().to_vec());
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, &self.bytes).unwrap();
    }
}

/// The JSON Lines violations; `ts` is a valid time far after every valid record, so that a bad
/// record leaking into the as-of time shows.
fn bad_jsonl_lines(ts: i64) -> Vec<Vec<u8>> {
    let long_id = format!("{}x", "é".repeat(128)); // 257 bytes
    let deep = (1..=17)
        .map(|i| format!("l{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let wide = "c".repeat(1025);
    let mut lines: Vec<Vec<u8>> = [
        format!(r#"{{"category":"a","ts":{ts},"quantity":1}}"#), // missing item_id
        format!(r#"{{"item_id":null,"category":"a","ts":{ts}}}"#), // null item_id
        format!(r#"{{"item_id":"i","ts":{ts}}}"#),               // missing category
        r#"{"item_id":"i","category":"a","quantity":2}"#.to_owned(), // missing ts
        format!(r#"{{"item_id":"","category":"a","ts":{ts}}}"#), // empty item_id
        format!(r#"{{"item_id":"{long_id}","category":"a","ts":{ts}}}"#), // 257 bytes
        format!(r#"{{"item_id":1.5,"category":"a","ts":{ts}}}"#), // float item_id
        format!(r#"{{"item_id":true,"category":"a","ts":{ts}}}"#), // bool item_id
        format!(r#"{{"item_id":"i","category":"","ts":{ts}}}"#), // empty category
        format!(r#"{{"item_id":"i","category":"/a/b","ts":{ts}}}"#), // leading slash
        format!(r#"{{"item_id":"i","category":"a/b/","ts":{ts}}}"#), // trailing slash
        format!(r#"{{"item_id":"i","category":"a//b","ts":{ts}}}"#), // double slash
        format!(r#"{{"item_id":"i","category":"{deep}","ts":{ts}}}"#), // 17 levels
        format!(r#"{{"item_id":"i","category":"{wide}","ts":{ts}}}"#), // 1025 bytes
        format!(r#"{{"item_id":"i","category":7,"ts":{ts}}}"#),  // numeric category
        r#"{"item_id":"i","category":"a","ts":"yesterday"}"#.to_owned(), // bad ts text
        r#"{"item_id":"i","category":"a","ts":"2026-13-45T99:00:00Z"}"#.to_owned(), // bad date
        r#"{"item_id":"i","category":"a","ts":-5}"#.to_owned(),  // before 1970
        r#"{"item_id":"i","category":"a","ts":"1969-12-31T23:59:59.999Z"}"#.to_owned(),
        format!(r#"{{"item_id":"i","category":"a","ts":{ts}.5}}"#), // float ts
        format!(r#"{{"item_id":"i","category":"a","ts":{ts},"quantity":1.5}}"#), // float q
        format!(r#"{{"item_id":"i","category":"a","ts":{ts},"quantity":"2"}}"#), // string q
        format!(r#"{{"item_id":"i","category":"a","ts":{ts},"quantity":true}}"#), // bool q
        "this is not JSON".to_owned(),
        format!(r#"{{"item_id":"i","category":"a","ts":{ts}"#), // truncated
        format!(r#"[{{"item_id":"i","category":"a","ts":{ts}}}]"#), // array
        "42".to_owned(),
        format!(r#"{{"item_id":"i","category":"a","ts":{ts}}} trailing"#),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    // Invalid UTF-8 inside a string.
    let mut invalid = b"{\"item_id\":\"\xff\xfe\",\"category\":\"a\",\"ts\":".to_vec();
    invalid.extend_from_slice(format!("{ts}}}").as_bytes());
    lines.push(invalid);
    // A line over 1 MiB (an otherwise valid record).
    lines.push(
        format!(
            r#"{{"item_id":"i","category":"a","ts":{ts},"pad":"{}"}}"#,
            "p".repeat(1 << 20)
        )
        .into_bytes(),
    );
    lines
}

/// Valid records at the edges of the rules.
fn edge_records(anchor: i64) -> Vec<Rec> {
    let deep16 = (1..=16)
        .map(|i| format!("l{i}"))
        .collect::<Vec<_>>()
        .join("/");
    vec![
        Rec::new(&"é".repeat(128), "edge/ids", anchor - HOUR, 3), // 256 bytes
        Rec::new("deep", &deep16, anchor - 2 * HOUR, 2),          // 16 levels
        Rec::new("wide", &"ü".repeat(512), anchor - 3 * HOUR, 1), // 1024 bytes
        Rec::new("x", "edge/ids", anchor - HOUR, 1),
    ]
}

/// CSV rows: the header's four columns, quoted as needed.
fn csv_row(fields: &[&[u8]]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(fields).unwrap();
    let mut row = writer.into_inner().unwrap();
    assert_eq!(row.pop(), Some(b'\n'));
    row
}

fn bad_csv_rows(ts: i64) -> Vec<Vec<u8>> {
    let ts = ts.to_string();
    let ts = ts.as_bytes();
    let long_id = "é".repeat(128) + "x";
    let deep = (1..=17)
        .map(|i| format!("l{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let wide = "c".repeat(1025);
    vec![
        b"i,a,1".to_vec(),                              // too few fields
        [b"i,a,".as_slice(), ts, b",1,extra"].concat(), // too many fields
        csv_row(&[b"", b"a", ts, b"1"]),                // empty item_id
        csv_row(&[long_id.as_bytes(), b"a", ts, b"1"]), // 257 bytes
        csv_row(&[b"i", b"", ts, b"1"]),                // empty category
        csv_row(&[b"i", b"/a", ts, b"1"]),              // leading slash
        csv_row(&[b"i", b"a/", ts, b"1"]),              // trailing slash
        csv_row(&[b"i", b"a//b", ts, b"1"]),            // double slash
        csv_row(&[b"i", deep.as_bytes(), ts, b"1"]),    // 17 levels
        csv_row(&[b"i", wide.as_bytes(), ts, b"1"]),    // 1025 bytes
        csv_row(&[b"i", b"a", b"soon", b"1"]),          // bad ts
        csv_row(&[b"i", b"a", b"", b"1"]),              // missing ts
        csv_row(&[b"i", b"a", b"-5", b"1"]),            // before 1970
        csv_row(&[b"i", b"a", ts, b"1.5"]),             // float quantity
        csv_row(&[b"i", b"a", ts, b"two"]),             // text quantity
        csv_row(&[b"i", b"\xff\xfe/a", ts, b"1"]),      // invalid UTF-8
        csv_row(&[b"\xc3", b"a", ts, b"1"]),            // truncated UTF-8
    ]
}

fn position(path: &Path, line: u64) -> String {
    format!("{}:{line}", path.display())
}

#[test]
fn bad_records_are_counted_dead_lettered_and_change_nothing() {
    let history = generate(&Spec::new(7, 1200, R, false));
    let anchor = history.anchor_ms;
    let mut valid = history.records.clone();
    valid.extend(edge_records(anchor));
    let bad_ts = anchor + 10 * DAY;

    let dir = tempfile::tempdir().unwrap();
    let jsonl_path = dir.path().join("mixed.jsonl");
    let csv_path = dir.path().join("mixed.csv");
    let dead = dir.path().join("dead/letters.jsonl");

    // Valid records alternate between the files; bad ones are spread among them.
    let mut rng = SmallRng::seed_from_u64(99);
    let mut jsonl = Builder::new();
    let mut csv = Builder::new();
    csv.push(b"item_id,category,ts,quantity");
    let mut bad_json = bad_jsonl_lines(bad_ts).into_iter();
    let mut bad_csv = bad_csv_rows(bad_ts).into_iter();
    for (i, rec) in valid.iter().enumerate() {
        if i % 2 == 0 {
            jsonl.push(jsonl_line(&mut rng, rec).as_bytes());
        } else {
            let (ts, q) = (rec.ts.to_string(), rec.quantity.to_string());
            csv.push(&csv_row(&[
                rec.item_id.as_bytes(),
                rec.category.as_bytes(),
                ts.as_bytes(),
                q.as_bytes(),
            ]));
        }
        if i % 29 == 3 {
            if let Some(line) = bad_json.next() {
                jsonl.bad(line);
            }
        }
        if i % 31 == 5 {
            if let Some(row) = bad_csv.next() {
                csv.bad(row);
            }
            // A valid record spanning two lines shifts every later line number.
            if i == 5 {
                csv.push(&csv_row(&[b"multi\nline", b"edge/ids", b"0", b"0"]));
            }
        }
    }
    for line in bad_json {
        jsonl.bad(line);
    }
    for row in bad_csv {
        csv.bad(row);
    }
    // The multi-line record has quantity 0: valid, ignored.
    valid.push(Rec::new("multi\nline", "edge/ids", 0, 0));
    jsonl.write(&jsonl_path);
    csv.write(&csv_path);
    let bad_total = (jsonl.bad.len() + csv.bad.len()) as u64;
    assert!(jsonl.bad.len() >= 30 && csv.bad.len() >= 17);

    for workers in [1, 2] {
        let _ = std::fs::remove_file(&dead);
        let params = Params::new(5, workers, 64);
        let config = params.config(
            &[jsonl_path.clone(), csv_path.clone()],
            &dead.display().to_string(),
        );
        let (summary, got) = batch_lists(&config, None, &params);
        let as_of = default_as_of(&valid).unwrap();
        assert_eq!(as_of, anchor);
        let want = params.oracle(&valid, as_of);
        let context = format!("{workers} workers");
        assert_eq!(
            summary.as_of_ms, as_of,
            "{context}: bad records set the as-of time"
        );
        assert_eq!(summary.bad_records, bad_total, "{context}: bad_records");
        assert_eq!(summary.purchases, want.counted, "{context}: purchases");
        assert_eq!(summary.skipped, want.skipped, "{context}: skipped");
        assert_no_problems(&compare(&got, &want, params.k, 2), &context);
        assert_no_problems(&check_twins(&got, &history.twins), &context);
        // The dead-letter file: exactly the bad lines, each once, at its position.
        let text = std::fs::read_to_string(&dead).unwrap();
        let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (path, builder) in [(&jsonl_path, &jsonl), (&csv_path, &csv)] {
            for (line, raw) in &builder.bad {
                expected.insert(position(path, *line), raw.clone());
            }
        }
        let mut seen: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{context}: dead letter not JSON ({e}): {line}"));
            let at = v["position"].as_str().expect("position").to_owned();
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{context}: no error in {line}"
            );
            assert!(
                seen.insert(at.clone(), v).is_none(),
                "{context}: {at} dead-lettered twice"
            );
        }
        let seen_at: Vec<&String> = seen.keys().collect();
        let expected_at: Vec<&String> = expected.keys().collect();
        assert_eq!(seen_at, expected_at, "{context}: dead-letter positions");
        for (at, raw) in &expected {
            let record = seen[at]["record"].as_str().expect("record text");
            if let Ok(text) = std::str::from_utf8(raw) {
                if raw.len() <= 4096 && !text.contains('\n') {
                    if at.starts_with(&jsonl_path.display().to_string()) {
                        assert_eq!(record, text, "{context}: record text at {at}");
                    } else {
                        assert!(!record.is_empty(), "{context}: record text at {at}");
                    }
                } else {
                    assert!(
                        !record.is_empty() && text.starts_with(&record[..record.len().min(64)]),
                        "{context}: record text at {at}"
                    );
                }
            }
        }
    }
}

fn expect_error(paths: &[PathBuf], as_of: Option<i64>, workers: usize, names: &[&str]) {
    let params = Params::new(5, workers, 1000);
    let config = params.config(paths, "");
    let result = within(Duration::from_secs(20), move || {
        topsellers::batch::compute(&config, as_of)
            .map(|(summary, _, _)| summary)
            .map_err(|e| format!("{e:#}"))
    });
    let context = format!("{paths:?} as of {as_of:?} at {workers} workers");
    let err = match result {
        None => panic!("{context}: batch::compute hangs (no answer in 20 s)"),
        Some(Ok(summary)) => panic!("{context}: no error: {summary:?}"),
        Some(Err(err)) => err,
    };
    for name in names {
        assert!(
            err.contains(name),
            "{context}: {err:?} does not name {name:?}"
        );
    }
}

struct Inputs {
    _dir: tempfile::TempDir,
    good: PathBuf,
    missing: PathBuf,
    txt: PathBuf,
    no_category: PathBuf,
    no_ts: PathBuf,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"item_id\":\"i\",\"category\":\"a\",\"ts\":1790000000000}\n",
    )
    .unwrap();
    let missing = dir.path().join("nowhere/missing-file.jsonl");
    let txt = dir.path().join("events.txt");
    std::fs::write(&txt, "{\"item_id\":\"i\",\"category\":\"a\",\"ts\":1}\n").unwrap();
    let no_category = dir.path().join("no-category.csv");
    std::fs::write(&no_category, "item_id,ts,quantity\ni,1790000000000,1\n").unwrap();
    let no_ts = dir.path().join("no-ts.csv");
    std::fs::write(&no_ts, "item_id,category,quantity\ni,a,1\n").unwrap();
    Inputs {
        _dir: dir,
        good,
        missing,
        txt,
        no_category,
        no_ts,
    }
}

#[test]
fn unusable_inputs_are_errors_naming_the_file() {
    let i = inputs();
    for workers in [1, 2] {
        for as_of in [None, Some(1_790_000_000_000)] {
            expect_error(
                &[i.good.clone(), i.missing.clone()],
                as_of,
                workers,
                &["missing-file.jsonl"],
            );
            expect_error(
                std::slice::from_ref(&i.txt),
                as_of,
                workers,
                &["events.txt"],
            );
        }
        // Without an as-of time the input is read once before the dataflow starts.
        expect_error(
            &[i.good.clone(), i.no_category.clone()],
            None,
            workers,
            &["no-category.csv", "category"],
        );
        expect_error(
            std::slice::from_ref(&i.no_ts),
            None,
            workers,
            &["no-ts.csv", "`ts`"],
        );
    }
    // One worker reading a CSV without a required column, with an explicit as-of time.
    expect_error(
        std::slice::from_ref(&i.no_category),
        Some(1_790_000_000_000),
        1,
        &["no-category.csv", "category"],
    );
    // The good file alone is fine.
    let params = Params::new(5, 2, 1000);
    let (summary, got) = batch_lists(
        &params.config(std::slice::from_ref(&i.good), ""),
        None,
        &params,
    );
    assert_eq!(summary.purchases, 1);
    assert_eq!(got[&(0, "a".to_owned())][0].0, "i");
}

/// With an explicit as-of time nothing reads the files before the workers do; a worker that
/// cannot read its unit fails the run, but `batch::compute` must then return that error.
#[test]
fn unreadable_unit_with_explicit_as_of_fails_instead_of_hanging() {
    let i = inputs();
    for (paths, names) in [
        (
            vec![i.good.clone(), i.no_category.clone()],
            &["no-category.csv", "category"],
        ),
        (
            vec![i.no_ts.clone(), i.good.clone()],
            &["no-ts.csv", "`ts`"],
        ),
    ] {
        expect_error(&paths, Some(1_790_000_000_000), 2, names);
    }
}

fn integer_id_lists(lines: &[String]) -> (topsellers::batch::BatchSummary, topsellers_tests::Got) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let params = Params::new(10, 2, 1000);
    batch_lists(&params.config(&[path], ""), None, &params)
}

/// Integer item ids (JSON numbers) are kept as their decimal text, across the whole 64-bit
/// range, and are the same item as that text given as a string.
#[test]
fn integer_item_ids_are_kept_as_decimal_text() {
    let t = 1_790_000_000_000_i64;
    let lines: Vec<String> = [
        ("18446744073709551615", 3, 0),
        ("\"18446744073709551615\"", 1, 0),
        ("-9223372036854775808", 2, 0),
        ("9223372036854775807", 1, 1),
        ("0", 1, 2),
        ("\"0\"", 1, 2),
    ]
    .iter()
    .map(|(id, q, dt)| {
        format!(
            "{{\"item_id\":{id},\"category\":\"ids\",\"ts\":{},\"quantity\":{q}}}",
            t - dt
        )
    })
    .collect();
    let (summary, got) = integer_id_lists(&lines);
    assert_eq!(summary.bad_records, 0);
    let recs = vec![
        Rec::new("18446744073709551615", "ids", t, 4),
        Rec::new("-9223372036854775808", "ids", t, 2),
        Rec::new("9223372036854775807", "ids", t - 1, 1),
        Rec::new("0", "ids", t - 2, 2),
    ];
    let params = Params::new(10, 2, 1000);
    let want = params.oracle(&recs, t);
    assert_no_problems(&compare(&got, &want, 10, 2), "integer ids");
}

/// An integer id longer than 64 bits is still an integer id.
#[test]
fn integer_item_ids_beyond_64_bits_are_kept_as_decimal_text() {
    let line =
        "{\"item_id\":123456789012345678901234567890,\"category\":\"ids\",\"ts\":1790000000000}"
            .to_owned();
    let (summary, got) = integer_id_lists(&[line]);
    assert_eq!(summary.bad_records, 0);
    assert_eq!(
        got.get(&(0, "ids".to_owned())).map(|l| l[0].0.as_str()),
        Some("123456789012345678901234567890")
    );
}

/// The input's formats for [`a_bad_record_never_moves_the_cut_off`]: Parquet as one row group,
/// as row groups of 4 (the bad rows share a row group with valid ones), and with a timestamp
/// column (the generator's writer); JSON Lines; CSV.
const CUT_OFF_FORMATS: [(&str, Option<Fmt>, usize); 5] = [
    ("parquet, one row group", None, 1000),
    ("parquet, row groups of 4", None, 4),
    ("parquet, timestamp column", Some(Fmt::Parquet), 0),
    ("jsonl", Some(Fmt::Jsonl), 0),
    ("csv", Some(Fmt::Csv), 0),
];

/// Issue 17, point 1: a record that breaks a rule (or one with quantity 0, which is ignored)
/// dated after every valid purchase changes neither `batch`'s default as-of time nor the
/// backfill's cut-off (`run --input`) nor the hand-over time T0 to Kafka, in any format: the
/// lists are those of the valid records alone, as of their latest time. (Parquet once took the
/// as-of time from the `ts` statistics or column, bad rows included: 30 days late.)
#[test]
fn a_bad_record_never_moves_the_cut_off() {
    let t = 1_790_000_000_000;
    // 11 valid purchases over three days.
    let mut valid = Vec::new();
    for (n, (item, category, hours_before, quantity)) in [
        ("a", "home/kitchen", 70, 1),
        ("b", "home/kitchen", 50, 2),
        ("a", "home/garden", 40, 1),
        ("c", "books", 30, 3),
        ("b", "home/kitchen", 20, -1),
        ("d", "books/fiction", 12, 1),
        ("a", "home/kitchen", 6, 4),
        ("e", "toys", 3, 1),
        ("c", "books", 2, 1),
        ("d", "books/fiction", 1, 2),
        ("b", "home/garden", 0, 10),
    ]
    .into_iter()
    .enumerate()
    {
        valid.push(Rec::new(
            item,
            category,
            t - hours_before * HOUR - n as i64,
            quantity,
        ));
    }
    let as_of = default_as_of(&valid).unwrap();
    // Bad rows (and an ignored one) 30 and 40 days later, among the valid rows.
    let late = [
        Rec::new("x", "home//kitchen", t + 30 * DAY, 1), // empty segment
        Rec::new("", "home", t + 30 * DAY + 1, 1),       // empty item id
        Rec::new("y", "/home", t + 30 * DAY + 2, 5),     // leading slash
        Rec::new("z", "home", t + 40 * DAY, 0),          // quantity 0: ignored
        // Issue 14: beyond scoring.max_future (9999-12-31T23:59:59Z, and the largest ts),
        // and quantities beyond ±2^53 (whose retraction would wrap).
        Rec::new("f", "home", 253_402_300_799_000, 1),
        Rec::new("g", "toys", i64::MAX - DAY, 1), // (the writers add an offset)
        Rec::new("h", "toys", t - HOUR, i64::MIN),
        Rec::new("h", "books", t - 2 * HOUR, (1 << 53) + 1),
    ];
    let mut mixed = valid.clone();
    for (at, rec) in [2, 5, 6, 11, 12, 0, 9, 14].into_iter().zip(late) {
        mixed.insert(at, rec);
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, format, row_group_rows) in CUT_OFF_FORMATS {
        let path = dir.path().join(format!(
            "{}.{}",
            name.replace([' ', ','], "-"),
            format.map_or("parquet", Fmt::ext)
        ));
        match format {
            Some(format) => topsellers_tests::write_file(&path, format, &mixed, 5),
            None => topsellers_tests::write_parquet_int(&path, &mixed, row_group_rows),
        }
        for workers in [1, 2, 4] {
            let context = format!("{name}, {workers} workers");
            let params = Params::new(5, workers, 3);
            let config = params.config(std::slice::from_ref(&path), "");
            let want = params.oracle(&valid, as_of);

            // batch: the default as-of time is the latest valid purchase.
            let (summary, got) = batch_lists(&config, None, &params);
            assert_eq!(summary.as_of_ms, as_of, "{context}: batch's as-of time");
            assert_eq!(summary.bad_records, 7, "{context}: bad records");
            assert_eq!(summary.purchases, want.counted, "{context}: purchases");
            assert_no_problems(&compare(&got, &want, params.k, 2), &context);

            // run --input: the backfill's snapshot is as of the latest valid purchase.
            let service = topsellers::run::start(&config).expect("start");
            let published = wait_until(Duration::from_secs(60), || {
                service.table.published_time_ms().is_some()
            });
            let time = service.table.published_time_ms();
            let names: Vec<&str> = params.half_lives.iter().map(|(n, _)| *n).collect();
            let served = published.then(|| served_lists_at(service.addr, &names, as_of));
            service.stop();
            service.shutdown().expect("shutdown");
            assert!(published, "{context}: no snapshot in 60 s");
            assert_eq!(time, Some(as_of), "{context}: the backfill's cut-off");
            let served = served
                .expect("published")
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_no_problems(
                &compare(&served, &want, params.k, 2),
                &format!("{context}: served"),
            );

            // run --input with Kafka after it: T0 is the latest valid purchase.
            let mut with_kafka = config.clone();
            with_kafka
                .sources
                .push(SourceConfig::Kafka(KafkaConfig::new("127.0.0.1:9", "t")));
            let settings = with_kafka.check("test").expect("config");
            let plan = topsellers::job::plan_serve(&settings, None).expect("plan");
            let history = plan.history.expect("a history");
            assert_eq!(history.handover_ms, Some(as_of), "{context}: T0");
            assert_eq!(history.until_ms, as_of - 1, "{context}: backfill cut-off");
        }
    }
}

/// A full disk under the dead-letter file (`/dev/full` fails every write): `batch` must not
/// exit 0 with bad records missing from it, nor leave an output behind.
#[test]
fn batch_fails_when_a_bad_record_cannot_be_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("some-bad.jsonl");
    std::fs::write(
        &path,
        "{\"item_id\":\"i\",\"category\":\"a\",\"ts\":1000}\n{\"item_id\":\"\",\"category\":\"a\",\"ts\":1000}\n",
    )
    .unwrap();
    let out = dir.path().join("lists.jsonl");
    let params = Params::new(5, 2, 1000);
    for workers in [1, 2, 4] {
        let mut config = params.config(std::slice::from_ref(&path), "/dev/full");
        config.runtime.workers = workers;
        let error = topsellers::batch::batch_to_file(&config, None, &out)
            .expect_err("a bad record that could not be recorded must fail the batch");
        let text = format!("{error:#}");
        assert!(
            text.contains("dead-letter") && text.contains("/dev/full"),
            "{text}"
        );
        assert!(!out.exists() && !dir.path().join("lists.jsonl.partial").exists());
        // With a writable dead-letter file the same input succeeds.
        let ok = params.config(
            std::slice::from_ref(&path),
            &dir.path().join("dl.jsonl").display().to_string(),
        );
        topsellers::batch::batch_to_file(&ok, None, &out).expect("batch");
        std::fs::remove_file(&out).unwrap();
    }
}

/// A full disk under the dead-letter file while `run` serves: every bad record the file could
/// not take is counted in `topsellers_dead_letter_write_failures_total` (each once, as soon as
/// its batch is read, not when the run ends), the lists are those of the valid records, and
/// the service keeps serving.
#[test]
fn run_counts_bad_records_it_cannot_dead_letter_and_keeps_serving() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let history = generate(&Spec::new(13, 800, R, false));
    let valid = history.records.clone();
    let until = valid.iter().map(|r| r.ts).max().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut rng = SmallRng::seed_from_u64(5);
    let mut jsonl = Builder::new();
    let mut bad = bad_jsonl_lines(history.anchor_ms + 10 * DAY).into_iter();
    for (i, rec) in valid.iter().enumerate() {
        jsonl.push(jsonl_line(&mut rng, rec).as_bytes());
        if i % 23 == 7 {
            if let Some(line) = bad.next() {
                jsonl.bad(line);
            }
        }
    }
    for line in bad {
        jsonl.bad(line);
    }
    jsonl.write(&path);
    let bad_total = jsonl.bad.len() as f64;
    assert!(bad_total >= 30.0);

    let params = Params::new(5, 2, 64);
    let config = params.config(std::slice::from_ref(&path), "/dev/full");
    let (service, _stop) = topsellers_tests::start_service(&config);
    let addr = service.addr;
    assert!(
        wait_until(Duration::from_secs(120), || get(addr, "/readyz").status
            == 200),
        "not ready"
    );
    let scrape = || get(addr, "/metrics").text();
    let counted = |name: &str| metric(&scrape(), name).unwrap_or(-1.0);
    assert!(
        wait_until(Duration::from_secs(60), || {
            counted("topsellers_dead_letter_write_failures_total") >= bad_total
        }),
        "dead-letter write failures {} of {bad_total} bad records",
        counted("topsellers_dead_letter_write_failures_total")
    );
    assert_eq!(
        counted("topsellers_dead_letter_write_failures_total"),
        bad_total,
        "each lost record counted once"
    );
    assert_eq!(counted("topsellers_bad_records_total"), bad_total);
    assert_no_problems(
        &oracle_problems(addr, &params, &valid, &history.twins, until),
        "run with a full dead-letter disk",
    );
    // Still serving, and still counting exactly.
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/readyz").status, 200);
    assert_eq!(get(addr, &top_path("")).status, 200);
    assert_eq!(
        counted("topsellers_dead_letter_write_failures_total"),
        bad_total
    );
}
