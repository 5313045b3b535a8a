//! Shared helpers for the end-to-end tests: a seeded purchase-history generator, writers for
//! every input format, an independent brute-force oracle of DESIGN.md's score and ranking,
//! a list comparator, config builders and a minimal raw HTTP/1.1 client.
//!
//! Nothing here calls the code under test to compute an expected value: times are formatted,
//! categories rolled up and scores summed by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use topsellers::config::{DeadLetterConfig, RuntimeConfig, ScoringConfig};
use topsellers::Config;
use topsellers_sinks::HttpConfig;
use topsellers_sources::files::FilesConfig;
use topsellers_sources::SourceConfig;

pub mod broker;
pub mod exposition;
pub mod s3;

/// One hour in ms.
pub const HOUR: i64 = 3_600_000;
/// One day in ms.
pub const DAY: i64 = 24 * HOUR;

// ---------------------------------------------------------------------------------------------
// Time text, written and read without the code under test.
// ---------------------------------------------------------------------------------------------

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 text of epoch ms `ms` with milliseconds, written in the UTC offset
/// `offset_minutes` (`Z` for 0).
pub fn rfc3339(ms: i64, offset_minutes: i32) -> String {
    let local = ms + i64::from(offset_minutes) * 60_000;
    let days = local.div_euclid(DAY);
    let in_day = local.rem_euclid(DAY);
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        in_day / HOUR,
        in_day % HOUR / 60_000,
        in_day % 60_000 / 1000,
        in_day % 1000
    );
    if offset_minutes == 0 {
        out.push('Z');
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let abs = offset_minutes.abs();
        let _ = write!(out, "{sign}{:02}:{:02}", abs / 60, abs % 60);
    }
    out
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]` followed by `Z` or `±HH:MM` into epoch ms.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut at = 19;
    let mut frac_ms = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let digits = &text[start..at];
        let mut ms_digits: String = digits.chars().take(3).collect();
        while ms_digits.len() < 3 {
            ms_digits.push('0');
        }
        frac_ms = ms_digits.parse::<i64>().ok()?;
    }
    let offset_min = match &text[at..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (num(at + 1, 2)? * 60 + num(at + 4, 2)?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * DAY + h * HOUR + mi * 60_000 + s * 1000 + frac_ms - offset_min * 60_000)
}

// ---------------------------------------------------------------------------------------------
// Purchase histories.
// ---------------------------------------------------------------------------------------------

/// One input record, as the test means it (valid by construction unless said otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rec {
    /// The item id's text.
    pub item_id: String,
    /// The leaf category path.
    pub category: String,
    /// Event time, epoch ms.
    pub ts: i64,
    /// Quantity (0: ignored, negative: return).
    pub quantity: i64,
}

impl Rec {
    /// A record.
    pub fn new(item_id: &str, category: &str, ts: i64, quantity: i64) -> Rec {
        Rec {
            item_id: item_id.into(),
            category: category.into(),
            ts,
            quantity,
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// RNG seed: the same seed gives the same history.
    pub seed: u64,
    /// Roughly how many records (twins and cancellations come on top).
    pub purchases: usize,
    /// The anchor time `A`: boundaries are placed around it.
    pub anchor_ms: i64,
    /// The retention `R` the boundaries are placed for.
    pub retention_ms: i64,
    /// Whether records after the anchor exist (for tests with an explicit `as_of = A`).
    pub future: bool,
}

impl Spec {
    /// A spec with an anchor derived from the seed.
    pub fn new(seed: u64, purchases: usize, retention_ms: i64, future: bool) -> Spec {
        Spec {
            seed,
            purchases,
            anchor_ms: 1_790_000_000_000 + (seed as i64 % 1000) * 7_777_777 + 123,
            retention_ms,
            future,
        }
    }
}

/// A generated history.
#[derive(Clone, Debug)]
pub struct History {
    /// Every record, shuffled; all valid (some with quantity 0).
    pub records: Vec<Rec>,
    /// Items with identical purchase sets, as (smaller id, larger id) in byte order.
    pub twins: Vec<(String, String)>,
    /// The anchor time.
    pub anchor_ms: i64,
    /// A category whose every purchase is older than `A − R`.
    pub expired_category: String,
    /// A category whose purchases all cancel exactly.
    pub cancelled_category: String,
}

/// Segment names: unicode, spaces, emoji, CSV-hostile characters.
const SEGMENTS: &[&str] = &[
    "bücher",
    "électronique",
    "日本",
    "sci fi",
    "🎮 games",
    "home & garden",
    "toys",
    "a,b",
    "q\"uote",
    "Ωmega",
    "x",
    "kids' 2+",
    "percent%20",
    "plus+sign",
    " padded",
];

/// Base items: numeric ids (whose byte order differs from numeric order), unicode, spaces.
const ITEMS: &[&str] = &[
    "sku-1", "sku-2", "sku-10", "7", "10", "42", "-5", "100", "ü-item", "日本-1", "Z", "a",
    "sku 9", "gift🎁", "x\"y", "B", " 7",
];

/// Twin pairs (base, twin): the twin gets exactly the base's purchases.
const TWINS: &[(&str, &str)] = &[("tie-b", "tie-a"), ("1000", "999"), ("ü-twin", "u-twin")];

fn segment(rng: &mut SmallRng) -> String {
    if rng.random_bool(0.6) {
        SEGMENTS[rng.random_range(0..SEGMENTS.len())].to_owned()
    } else {
        format!("s{}", rng.random_range(0..40))
    }
}

/// Generates a history: a random category tree (including a chain exactly 16 levels deep),
/// an item pool small enough that items compete, times spread around the anchor with extra
/// weight on the retention and as-of boundaries, mostly quantity 1, some 2–5, ~10% returns,
/// some exact cancellations, some zero quantities, and twin items with identical purchases.
pub fn generate(spec: &Spec) -> History {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let a = spec.anchor_ms;
    let r = spec.retention_ms;

    // Category tree.
    let mut nodes: BTreeSet<String> = BTreeSet::new();
    let tops = rng.random_range(3..6);
    while nodes.len() < tops {
        nodes.insert(segment(&mut rng));
    }
    for _ in 0..rng.random_range(10..20) {
        let parent = if rng.random_bool(0.1) {
            String::new()
        } else {
            let all: Vec<&String> = nodes.iter().collect();
            all[rng.random_range(0..all.len())].clone()
        };
        if parent.split('/').count() >= 16 {
            continue;
        }
        let child = if parent.is_empty() {
            segment(&mut rng)
        } else {
            format!("{parent}/{}", segment(&mut rng))
        };
        nodes.insert(child);
    }
    // A chain of exactly 16 levels under a random top node.
    {
        let tops: Vec<&String> = nodes.iter().filter(|n| !n.contains('/')).collect();
        let mut path = tops[rng.random_range(0..tops.len())].clone();
        while path.split('/').count() < 16 {
            path = format!("{path}/{}", segment(&mut rng));
            nodes.insert(path.clone());
        }
        assert!(path.len() <= 1024);
    }
    let nodes: Vec<String> = nodes.into_iter().collect();

    // Items and their popularity.
    let weights: Vec<u32> = ITEMS
        .iter()
        .chain(TWINS.iter().map(|(base, _)| base))
        .map(|_| {
            if rng.random_bool(0.2) {
                rng.random_range(20..40)
            } else {
                rng.random_range(1..10)
            }
        })
        .collect();
    let pool: Vec<&str> = ITEMS
        .iter()
        .copied()
        .chain(TWINS.iter().map(|(base, _)| *base))
        .collect();
    let total: u32 = weights.iter().sum();
    let pick_item = |rng: &mut SmallRng| -> String {
        if rng.random_bool(0.4) {
            return pool[rng.random_range(0..pool.len())].to_owned();
        }
        let mut x = rng.random_range(0..total);
        for (item, w) in pool.iter().zip(&weights) {
            if x < *w {
                return (*item).to_owned();
            }
            x -= w;
        }
        unreachable!()
    };

    let mut boundaries = vec![a - r, a - r + 1, a, a - 1];
    if spec.future {
        boundaries.push(a + 1);
    }
    let (lo, hi) = (a - r - r / 2, if spec.future { a + r / 2 } else { a });
    let mut records = Vec::with_capacity(spec.purchases * 2);
    for _ in 0..spec.purchases {
        let item = pick_item(&mut rng);
        let category = nodes[rng.random_range(0..nodes.len())].clone();
        let ts = if rng.random_bool(0.15) {
            boundaries[rng.random_range(0..boundaries.len())]
        } else if rng.random_bool(0.05) && !records.is_empty() {
            // Reuse a time already taken: same-time purchases of different items.
            let other: &Rec = &records[rng.random_range(0..records.len())];
            other.ts
        } else {
            rng.random_range(lo..=hi)
        };
        let x: f64 = rng.random();
        let quantity = if x < 0.10 {
            -rng.random_range(1..=3)
        } else if x < 0.30 {
            rng.random_range(2..=5)
        } else {
            1
        };
        let cancel = quantity > 0 && rng.random_bool(0.04);
        let duplicate = rng.random_bool(0.03);
        records.push(Rec {
            item_id: item.clone(),
            category: category.clone(),
            ts,
            quantity,
        });
        if duplicate {
            // The very same record again (say, delivered twice): both count.
            records.push(records[records.len() - 1].clone());
        }
        if cancel {
            records.push(Rec {
                item_id: item,
                category,
                ts,
                quantity: -quantity,
            });
        }
    }
    // The anchor itself is always a valid purchase time.
    records.push(Rec::new(&pick_item(&mut rng), &nodes[0], a, 1));
    if spec.future {
        records.push(Rec::new(&pick_item(&mut rng), &nodes[1], a + 1, 2));
    }
    // A category that only ever had expired purchases, and one whose purchases all cancel.
    let expired_category = format!("{}/archiv alt", nodes[0]);
    for (i, item) in ITEMS.iter().take(5).enumerate() {
        records.push(Rec::new(
            item,
            &expired_category,
            a - r - i as i64 * HOUR,
            1,
        ));
    }
    let cancelled_category = "storno/日本 zurück".to_owned();
    for i in 0..4 {
        let ts = a - i * 3 * HOUR;
        records.push(Rec::new(ITEMS[i as usize], &cancelled_category, ts, 2));
        records.push(Rec::new(ITEMS[i as usize], &cancelled_category, ts, -2));
    }
    // Zero quantities, in categories that have real purchases too.
    for _ in 0..spec.purchases / 20 {
        let like = records[rng.random_range(0..records.len())].clone();
        records.push(Rec {
            quantity: 0,
            ..like
        });
    }
    // Twins: every purchase of a base item is copied to its twin.
    let copies: Vec<Rec> = records
        .iter()
        .filter_map(|rec| {
            TWINS
                .iter()
                .find(|(base, _)| *base == rec.item_id)
                .map(|(_, twin)| Rec {
                    item_id: (*twin).to_owned(),
                    ..rec.clone()
                })
        })
        .collect();
    records.extend(copies);
    records.shuffle(&mut rng);
    let twins = TWINS
        .iter()
        .map(|(x, y)| {
            let (x, y) = (x.to_string(), y.to_string());
            if x < y {
                (x, y)
            } else {
                (y, x)
            }
        })
        .collect();
    History {
        records,
        twins,
        anchor_ms: a,
        expired_category,
        cancelled_category,
    }
}

// ---------------------------------------------------------------------------------------------
// Writers.
// ---------------------------------------------------------------------------------------------

/// An input file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    /// JSON Lines (ids sometimes as JSON numbers, ts as epoch ms or RFC 3339 with offsets).
    Jsonl,
    /// CSV with the header `item_id,category,ts,quantity`.
    Csv,
    /// Parquet through `topsellers_sources::PurchaseWriter` (timestamp column).
    Parquet,
    /// Parquet written with arrow directly: `ts` as Int64 epoch ms, small row groups.
    ParquetInt,
    /// JSON Lines with CRLF line ends and no newline after the last line.
    JsonlCrlf,
    /// CSV whose header orders the columns differently and adds one (`order_id`), CRLF.
    CsvReordered,
}

impl Fmt {
    /// The file extension.
    pub fn ext(self) -> &'static str {
        match self {
            Fmt::Jsonl | Fmt::JsonlCrlf => "jsonl",
            Fmt::Csv | Fmt::CsvReordered => "csv",
            Fmt::Parquet | Fmt::ParquetInt => "parquet",
        }
    }
}

/// Whether `id` is the canonical decimal text of an i64 (so it may be written as a JSON number).
pub fn is_canonical_int(id: &str) -> bool {
    id.parse::<i64>().is_ok_and(|n| n.to_string() == id)
}

fn ts_text(rng: &mut SmallRng, ts: i64) -> String {
    const OFFSETS: &[i32] = &[0, 60, -330, 330, 840, -600];
    if rng.random_bool(0.5) {
        ts.to_string()
    } else {
        rfc3339(ts, OFFSETS[rng.random_range(0..OFFSETS.len())])
    }
}

/// One JSON Lines line (no newline) for `rec`, in a random but valid shape.
pub fn jsonl_line(rng: &mut SmallRng, rec: &Rec) -> String {
    let json = |s: &str| serde_json::to_string(s).expect("string");
    let mut fields = Vec::new();
    if is_canonical_int(&rec.item_id) && rng.random_bool(0.7) {
        fields.push(format!("\"item_id\":{}", rec.item_id));
    } else {
        fields.push(format!("\"item_id\":{}", json(&rec.item_id)));
    }
    fields.push(format!("\"category\":{}", json(&rec.category)));
    let ts = ts_text(rng, rec.ts);
    if ts.contains('T') {
        fields.push(format!("\"ts\":\"{ts}\""));
    } else {
        fields.push(format!("\"ts\":{ts}"));
    }
    if rec.quantity != 1 || rng.random_bool(0.6) {
        fields.push(format!("\"quantity\":{}", rec.quantity));
    }
    if rng.random_bool(0.3) {
        fields.push(format!(
            "\"order_id\":\"o-{}\"",
            rng.random_range(0..100_000)
        ));
    }
    if rng.random_bool(0.1) {
        fields.push("\"extra\":{\"nested\":[1,2,{\"ts\":\"no\"}],\"item_id\":null}".to_owned());
    }
    fields.shuffle(rng);
    format!("{{{}}}", fields.join(","))
}

/// Writes `recs` to `path` in `format`; `seed` picks the textual variations.
pub fn write_file(path: &Path, format: Fmt, recs: &[Rec], seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    match format {
        Fmt::Jsonl => {
            let mut text = String::new();
            for rec in recs {
                text.push_str(&jsonl_line(&mut rng, rec));
                text.push('\n');
            }
            std::fs::write(path, text).expect("write jsonl");
        }
        Fmt::Csv => {
            let mut writer = csv::Writer::from_path(path).expect("create csv");
            writer
                .write_record(["item_id", "category", "ts", "quantity"])
                .expect("header");
            for rec in recs {
                let quantity = if rec.quantity == 1 && rng.random_bool(0.2) {
                    String::new()
                } else {
                    rec.quantity.to_string()
                };
                let ts = ts_text(&mut rng, rec.ts);
                writer
                    .write_record([&rec.item_id, &rec.category, &ts, &quantity])
                    .expect("row");
            }
            writer.flush().expect("flush csv");
        }
        Fmt::Parquet => {
            use topsellers_sources::files::Format;
            let mut writer = topsellers_sources::PurchaseWriter::create(path, Format::Parquet)
                .expect("create parquet");
            for rec in recs {
                writer
                    .write(&topsellers_model::Purchase {
                        item_id: Arc::from(rec.item_id.as_str()),
                        category: Arc::from(rec.category.as_str()),
                        ts_ms: rec.ts,
                        quantity: rec.quantity,
                    })
                    .expect("write parquet row");
            }
            writer.finish().expect("finish parquet");
        }
        Fmt::ParquetInt => write_parquet_int(path, recs, 300),
        Fmt::JsonlCrlf => {
            let lines: Vec<String> = recs.iter().map(|rec| jsonl_line(&mut rng, rec)).collect();
            std::fs::write(path, lines.join("\r\n")).expect("write jsonl");
        }
        Fmt::CsvReordered => {
            // A byte-order mark, as spreadsheet exports write.
            let mut file = std::fs::File::create(path).expect("create csv");
            file.write_all("\u{feff}".as_bytes()).expect("BOM");
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(file);
            writer
                .write_record(["order_id", "ts", "quantity", "category", "item_id"])
                .expect("header");
            for (n, rec) in recs.iter().enumerate() {
                let ts = ts_text(&mut rng, rec.ts);
                writer
                    .write_record([
                        &format!("o,{n}"),
                        &ts,
                        &rec.quantity.to_string(),
                        &rec.category,
                        &rec.item_id,
                    ])
                    .expect("row");
            }
            writer.flush().expect("flush csv");
        }
    }
}

/// Parquet written with arrow directly: `item_id`/`category` Utf8, `ts` and `quantity` Int64,
/// `row_group_rows` rows per row group (so one file is several read units).
pub fn write_parquet_int(path: &Path, recs: &[Rec], row_group_rows: usize) {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let schema = Arc::new(Schema::new(vec![
        Field::new("quantity", DataType::Int64, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("category", DataType::Utf8, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    for chunk in recs.chunks(250) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                chunk.iter().map(|r| r.quantity),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| r.item_id.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.ts))),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| r.category.as_str()),
            )),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        writer.write(&batch).expect("write batch");
    }
    writer.close().expect("close parquet");
}

fn write_batches(
    path: &Path,
    schema: arrow_schema::SchemaRef,
    batches: Vec<arrow_array::RecordBatch>,
) {
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("parquet writer");
    for batch in &batches {
        writer.write(batch).expect("write batch");
    }
    writer.close().expect("close parquet");
}

/// Parquet with `item_id` as Int64 (every id must be an integer), a dictionary-encoded
/// `category`, `ts` as RFC 3339 text, and no `quantity` column (every row counts 1).
pub fn write_parquet_numeric_ids(path: &Path, recs: &[Rec]) {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    assert!(recs
        .iter()
        .all(|r| r.quantity == 1 && is_canonical_int(&r.item_id)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new(
            "category",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("ts", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            recs.iter()
                .map(|r| r.item_id.parse::<i64>().expect("integer id")),
        )),
        Arc::new(
            recs.iter()
                .map(|r| r.category.as_str())
                .collect::<DictionaryArray<Int32Type>>(),
        ),
        Arc::new(StringArray::from_iter_values(
            recs.iter().map(|r| rfc3339(r.ts, 0)),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    write_batches(path, schema, vec![batch]);
}

/// Parquet with `category` as LargeUtf8, `ts` as a microsecond UTC timestamp, `quantity` as
/// Int32.
pub fn write_parquet_wide_types(path: &Path, recs: &[Rec]) {
    use arrow_array::{
        ArrayRef, Int32Array, LargeStringArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    let schema = Arc::new(Schema::new(vec![
        Field::new("category", DataType::LargeUtf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("quantity", DataType::Int32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(LargeStringArray::from_iter_values(
            recs.iter().map(|r| r.category.as_str()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(recs.iter().map(|r| r.ts * 1000))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            recs.iter().map(|r| r.item_id.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            recs.iter().map(|r| r.quantity as i32),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    write_batches(path, schema, vec![batch]);
}

/// Writes `recs` round-robin into `files` files `part-N.<ext>` under `dir` (created), each in
/// the format `formats[N % formats.len()]`; returns the paths.
pub fn write_parts(
    dir: &Path,
    formats: &[Fmt],
    recs: &[Rec],
    files: usize,
    seed: u64,
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut parts: Vec<Vec<Rec>> = vec![Vec::new(); files];
    for (i, rec) in recs.iter().enumerate() {
        parts[i % files].push(rec.clone());
    }
    parts
        .iter()
        .enumerate()
        .map(|(n, part)| {
            let format = formats[n % formats.len()];
            let path = dir.join(format!("part-{n}.{}", format.ext()));
            write_file(&path, format, part, seed.wrapping_add(n as u64));
            path
        })
        .collect()
}

/// What [`write_hive_parquet`] wrote.
#[derive(Clone, Debug, Default)]
pub struct HiveLayout {
    /// Files written.
    pub files: usize,
    /// Files without a `category` column (their rows take the `category=` folder's value).
    pub without_category_column: usize,
    /// Row groups written.
    pub row_groups: usize,
}

/// Writes `recs` as a hive-partitioned lake: `dt=YYYY-MM-DD/category=<percent-encoded>/part-0.parquet`
/// per (UTC day, category), each file sorted by `ts` in row groups of `row_group_rows` (so that
/// row groups of one day have disjoint time ranges). Every other file leaves out the `category`
/// column, as writers that partition by a column do; `ts` alternates between Int64 epoch ms and
/// a microsecond timestamp.
pub fn write_hive_parquet(dir: &Path, recs: &[Rec], row_group_rows: usize) -> HiveLayout {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let mut groups: BTreeMap<(i64, String), Vec<&Rec>> = BTreeMap::new();
    for rec in recs {
        groups
            .entry((rec.ts.div_euclid(DAY), rec.category.clone()))
            .or_default()
            .push(rec);
    }
    let mut layout = HiveLayout::default();
    for (n, ((day, category), mut rows)) in groups.into_iter().enumerate() {
        rows.sort_by_key(|r| r.ts);
        let (y, m, d) = civil_from_days(day);
        let folder = dir.join(format!("dt={y:04}-{m:02}-{d:02}")).join(format!(
            "category={}",
            percent_encoding::utf8_percent_encode(&category, percent_encoding::NON_ALPHANUMERIC)
        ));
        std::fs::create_dir_all(&folder).expect("mkdir");
        let with_category = n % 2 == 0;
        let micros = n % 4 < 2;
        let ts_type = if micros {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Int64
        };
        let mut fields = vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("ts", ts_type, false),
            Field::new("quantity", DataType::Int64, false),
        ];
        if with_category {
            fields.push(Field::new("category", DataType::Utf8, false));
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        let file = std::fs::File::create(folder.join("part-0.parquet")).expect("create");
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
        let ts: ArrayRef = if micros {
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.ts * 1000))
                    .with_timezone("UTC"),
            )
        } else {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts)))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.item_id.as_str()),
            )),
            ts,
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.quantity),
            )),
        ];
        if with_category {
            columns.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.category.as_str()),
            )));
        }
        let batch = RecordBatch::try_new(schema, columns).expect("batch");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        layout.files += 1;
        layout.without_category_column += usize::from(!with_category);
        layout.row_groups += rows.len().div_ceil(row_group_rows);
    }
    layout
}

// ---------------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------------

/// `cat`, each ancestor, and the root `""`, deepest first.
pub fn ancestors(cat: &str) -> Vec<String> {
    let mut out = vec![cat.to_owned()];
    let mut rest = cat;
    while let Some(at) = rest.rfind('/') {
        rest = &rest[..at];
        out.push(rest.to_owned());
    }
    if !cat.is_empty() {
        out.push(String::new());
    }
    out
}

/// The parent of a non-root category (`""` for a top-level one).
pub fn parent_of(cat: &str) -> &str {
    cat.rfind('/').map_or("", |at| &cat[..at])
}

/// The largest event time among valid records with a nonzero quantity.
pub fn default_as_of(recs: &[Rec]) -> Option<i64> {
    recs.iter().filter(|r| r.quantity != 0).map(|r| r.ts).max()
}

/// Every category (and ancestor) with a valid nonzero purchase, at any time.
pub fn known_categories(recs: &[Rec]) -> BTreeSet<String> {
    recs.iter()
        .filter(|r| r.quantity != 0)
        .flat_map(|r| ancestors(&r.category))
        .collect()
}

/// One oracle entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The item.
    pub item_id: String,
    /// Its exact-ish decayed score.
    pub score: f64,
    /// `Σ |net_q · weight|`: the scale of the terms (bounds any summation error).
    pub mag: f64,
}

impl Entry {
    /// Whether the score is so close to zero (relative to its terms) that its sign is
    /// beyond f64: such an item may or may not be listed.
    pub fn ambiguous(&self) -> bool {
        self.score.abs() <= 1e-12 * self.mag
    }
}

/// Expected lists, by brute force.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The time the scores are as of.
    pub as_of: i64,
    /// (profile index, category) → every item with a positive (or ambiguous) score, ranked.
    pub lists: BTreeMap<(usize, String), Vec<Entry>>,
    /// Categories the lists may mention.
    pub known: BTreeSet<String>,
    /// Valid nonzero purchases inside `(as_of − R, as_of]`.
    pub counted: u64,
    /// Valid nonzero purchases outside it.
    pub skipped: u64,
}

/// The oracle: for every valid purchase with `as_of − R < ts ≤ as_of` and `q ≠ 0`, for its
/// category, every ancestor and the root, the integer quantities are summed per
/// (category, item, ts) first (exact cancellation), then `Σ net · 2^(−(as_of − ts)/h)` is
/// summed in f64 per profile; ranked by score descending then `item_id` ascending (bytes).
pub fn oracle(recs: &[Rec], as_of: i64, half_lives_ms: &[i64], retention_ms: i64) -> Expected {
    let mut net: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    let (mut counted, mut skipped) = (0, 0);
    for rec in recs.iter().filter(|r| r.quantity != 0) {
        if rec.ts > as_of - retention_ms && rec.ts <= as_of {
            counted += 1;
            for cat in ancestors(&rec.category) {
                *net.entry((cat, rec.item_id.clone(), rec.ts)).or_insert(0) += rec.quantity;
            }
        } else {
            skipped += 1;
        }
    }
    let mut lists = BTreeMap::new();
    for (profile, &h) in half_lives_ms.iter().enumerate() {
        let mut sums: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for ((cat, item, ts), &q) in &net {
            if q == 0 {
                continue;
            }
            let weight = (-((as_of - ts) as f64) / h as f64).exp2();
            let term = q as f64 * weight;
            let slot = sums
                .entry((cat.clone(), item.clone()))
                .or_insert((0.0, 0.0));
            slot.0 += term;
            slot.1 += term.abs();
        }
        let mut by_cat: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for ((cat, item), (score, mag)) in sums {
            let entry = Entry {
                item_id: item,
                score,
                mag,
            };
            if entry.score > 0.0 || entry.ambiguous() {
                by_cat.entry(cat).or_default().push(entry);
            }
        }
        for (cat, mut entries) in by_cat {
            entries.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then_with(|| a.item_id.as_bytes().cmp(b.item_id.as_bytes()))
            });
            lists.insert((profile, cat), entries);
        }
    }
    Expected {
        as_of,
        lists,
        known: known_categories(recs),
        counted,
        skipped,
    }
}

/// Lists as computed by the code under test: (profile, category) → (item, decayed score).
pub type Got = BTreeMap<(usize, String), Vec<(String, f64)>>;

/// Whether two scores agree to 1e-9 relative (plus a bound on the oracle's own summation
/// error, `1e-12 · mag`, which only matters when terms cancel).
pub fn close(a: f64, b: f64, mag: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12 * mag
}

/// Compares computed lists with the oracle's (see the crate docs); returns every problem.
///
/// Per (profile, category): no duplicate items; at most `k` items; as many as the oracle has
/// positive scores (up to `k`); position by position the scores agree; the item at a position
/// is the oracle's, or one whose oracle score ties (within tolerance) with the oracle's score
/// at that position (any member of that group, even one ranked beyond `k`); every listed
/// item's own oracle score agrees with the score listed. Categories the oracle lists nothing
/// for must be absent or empty; no category the oracle does not know may appear.
pub fn compare(got: &Got, want: &Expected, k: usize, profiles: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let empty = Vec::new();
    for (profile, cat) in got.keys() {
        if *profile >= profiles {
            problems.push(format!("list for unknown profile {profile} ({cat:?})"));
        }
        if !want.known.contains(cat) {
            problems.push(format!("unknown category {cat:?} listed"));
        }
    }
    let keys: BTreeSet<&(usize, String)> = got.keys().chain(want.lists.keys()).collect();
    for key in keys {
        let (profile, cat) = key;
        let have = got.get(key).unwrap_or(&empty);
        let full = want.lists.get(key).map_or(&[][..], Vec::as_slice);
        let at = format!("profile {profile} category {cat:?}");
        let mut seen = BTreeSet::new();
        for (item, _) in have {
            if !seen.insert(item) {
                problems.push(format!("{at}: {item:?} listed twice: {have:?}"));
            }
        }
        let required = full.iter().filter(|e| !e.ambiguous()).count();
        let (min_len, max_len) = (required.min(k), full.len().min(k));
        if have.len() < min_len || have.len() > max_len {
            problems.push(format!(
                "{at}: {} items listed, expected {min_len}..={max_len}\n got:  {have:?}\n want: {:?}",
                have.len(),
                &full[..full.len().min(k + 2)]
            ));
            continue;
        }
        let by_id: HashMap<&str, &Entry> = full.iter().map(|e| (e.item_id.as_str(), e)).collect();
        for (pos, (item, score)) in have.iter().enumerate() {
            let expected = &full[pos];
            if !close(*score, expected.score, expected.mag) {
                problems.push(format!(
                    "{at} rank {}: score {score} for {item:?}, oracle has {} for {:?}",
                    pos + 1,
                    expected.score,
                    expected.item_id
                ));
            }
            match by_id.get(item.as_str()) {
                None => problems.push(format!(
                    "{at} rank {}: {item:?} (score {score}) has no positive oracle score",
                    pos + 1
                )),
                Some(own) => {
                    if !close(*score, own.score, own.mag) {
                        problems.push(format!(
                            "{at} rank {}: {item:?} listed with score {score}, its oracle score is {}",
                            pos + 1,
                            own.score
                        ));
                    }
                    let tied = close(own.score, expected.score, own.mag.max(expected.mag));
                    if *item != expected.item_id && !tied {
                        problems.push(format!(
                            "{at} rank {}: {item:?} (oracle {}) where the oracle ranks {:?} ({})",
                            pos + 1,
                            own.score,
                            expected.item_id,
                            expected.score
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Two computations' lists, position by position: the same length, the same scores (1e-9
/// relative) and the same items, except that items whose scores tie (1e-9) with a neighbour
/// may swap, and the last item may be another of the same score (a tie cut by `k`). (For comparing the code with itself on other inputs or paths; the oracle check
/// is [`compare`].)
pub fn same_list(got: &[(String, f64)], other: &[(String, f64)]) -> Result<(), String> {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    if got.len() != other.len() {
        return Err(format!(
            "{} items, the other has {}",
            got.len(),
            other.len()
        ));
    }
    for (pos, ((id, score), (other_id, other_score))) in got.iter().zip(other).enumerate() {
        if !close(*score, *other_score) {
            return Err(format!("rank {}: score {score} vs {other_score}", pos + 1));
        }
        let tied = |at: Option<&(String, f64)>| at.is_some_and(|(_, s)| close(*s, *other_score));
        // The last position may cut through a group of ties: its other members are not listed.
        let last = pos + 1 == other.len();
        let tie =
            last || tied(pos.checked_sub(1).and_then(|p| other.get(p))) || tied(other.get(pos + 1));
        if id != other_id && !tie {
            return Err(format!("rank {}: {id:?} vs {other_id:?}", pos + 1));
        }
    }
    Ok(())
}

/// What differs between two computations' lists ([`same_list`] for each; a list absent from
/// one must be empty in the other).
pub fn same_lists(got: &Got, other: &Got) -> Vec<String> {
    let mut problems = Vec::new();
    let empty = Vec::new();
    let keys: BTreeSet<&(usize, String)> = got.keys().chain(other.keys()).collect();
    for key in keys {
        let (a, b) = (
            got.get(key).unwrap_or(&empty),
            other.get(key).unwrap_or(&empty),
        );
        if let Err(e) = same_list(a, b) {
            problems.push(format!("{key:?}: {e}\n got   {a:?}\n other {b:?}"));
        }
    }
    problems
}

/// Panics with the first problems, if any.
pub fn assert_no_problems(problems: &[String], context: &str) {
    if !problems.is_empty() {
        let shown: Vec<&String> = problems.iter().take(12).collect();
        panic!(
            "{context}: {} problem(s):\n{}",
            problems.len(),
            shown
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Exact ties (twins with identical purchases) must be broken by `item_id` ascending: where
/// both twins are listed the smaller id comes first, and where only one is listed (the `k`
/// boundary) it is the smaller one.
pub fn check_twins(got: &Got, twins: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for ((profile, cat), items) in got {
        for (small, large) in twins {
            let pos = |id: &str| items.iter().position(|(item, _)| item == id);
            match (pos(small), pos(large)) {
                (Some(s), Some(l)) if s > l => problems.push(format!(
                    "profile {profile} category {cat:?}: tie {large:?} ranked before {small:?}: {items:?}"
                )),
                (None, Some(_)) => problems.push(format!(
                    "profile {profile} category {cat:?}: tie {large:?} listed without {small:?}: {items:?}"
                )),
                _ => {}
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Configs and the batch API.
// ---------------------------------------------------------------------------------------------

/// Test parameters of a run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Half-lives as configured (text) and in ms (the test's own reading).
    pub half_lives: Vec<(&'static str, i64)>,
    /// List length.
    pub k: usize,
    /// Retention as configured and in ms.
    pub retention: (&'static str, i64),
    /// Worker threads.
    pub workers: usize,
    /// Records per batch.
    pub batch_size: usize,
}

impl Params {
    /// Profiles "1h" and "7d", retention "2d".
    pub fn new(k: usize, workers: usize, batch_size: usize) -> Params {
        Params {
            half_lives: vec![("1h", HOUR), ("7d", 7 * DAY)],
            k,
            retention: ("2d", 2 * DAY),
            workers,
            batch_size,
        }
    }

    /// The command-line flags of this scoring: `--half-life` for each, `--top`, `--retention`.
    pub fn scoring_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (name, _) in &self.half_lives {
            flags.extend(["--half-life".to_owned(), (*name).to_owned()]);
        }
        flags.extend(["--top".to_owned(), self.k.to_string()]);
        flags.extend(["--retention".to_owned(), self.retention.0.to_owned()]);
        flags
    }

    /// The half-lives in ms.
    pub fn half_lives_ms(&self) -> Vec<i64> {
        self.half_lives.iter().map(|(_, ms)| *ms).collect()
    }

    /// A config reading `paths`, writing bad records to `dead_letter` (`""`: none), serving
    /// HTTP on an ephemeral port.
    pub fn config(&self, paths: &[PathBuf], dead_letter: &str) -> Config {
        Config {
            scoring: ScoringConfig {
                half_lives: self
                    .half_lives
                    .iter()
                    .map(|(t, _)| t.parse().expect("a duration"))
                    .collect(),
                top_k: self.k,
                retention: topsellers_model::parse_duration(self.retention.0).expect("a duration"),
                allowed_lateness: std::time::Duration::ZERO,
                max_future: topsellers_model::DEFAULT_MAX_FUTURE,
            },
            sources: vec![SourceConfig::Files(FilesConfig::new(
                paths.iter().map(|p| p.display().to_string()).collect(),
            ))],
            http: HttpConfig {
                listen: "127.0.0.1:0".to_owned(),
                ..HttpConfig::default()
            },
            dead_letter: DeadLetterConfig {
                path: dead_letter.to_owned(),
            },
            runtime: RuntimeConfig {
                workers: self.workers,
                batch_size: self.batch_size,
                ..RuntimeConfig::default()
            },
            ..Config::default()
        }
    }

    /// The oracle for `recs` as of `as_of`.
    pub fn oracle(&self, recs: &[Rec], as_of: i64) -> Expected {
        oracle(recs, as_of, &self.half_lives_ms(), self.retention.1)
    }
}

/// Runs `topsellers::batch::compute` and returns its summary and lists (scores decayed to the
/// summary's `as_of`); panics on a duplicate (profile, category).
pub fn batch_lists(
    config: &Config,
    as_of: Option<i64>,
    params: &Params,
) -> (topsellers::batch::BatchSummary, Got) {
    let (summary, lists, profiles) =
        topsellers::batch::compute(config, as_of).expect("batch::compute");
    assert_eq!(
        profiles.iter().map(|p| p.half_life_ms).collect::<Vec<_>>(),
        params.half_lives_ms(),
        "profiles"
    );
    let mut got = Got::new();
    for list in lists {
        let h = params.half_lives_ms()[list.profile];
        let items = list
            .items
            .iter()
            .map(|item| {
                (
                    item.item_id.to_string(),
                    item.score.score_at(summary.as_of_ms, h),
                )
            })
            .collect();
        let key = (list.profile, list.category.to_string());
        assert!(
            got.insert(key.clone(), items).is_none(),
            "two lists for {key:?}"
        );
    }
    (summary, got)
}

// ---------------------------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------------------------

/// A response read off the wire.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = find(data, b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..end]).expect("chunk size");
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        data = &data[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if method == "POST" || method == "PUT" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw, method == "HEAD")
}

/// Sends `request` as it is (any bytes, e.g. a malformed request line) on a new connection and
/// reads until the server closes it: the response, or `None` if the server closed without one.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut raw = Vec::new();
    // A server that closes with unread request bytes may reset the connection: keep what came.
    let _ = stream.read_to_end(&mut raw);
    find(&raw, b"\r\n\r\n").map(|_| parse_response(&raw, false))
}

/// Parses a whole HTTP/1.1 response (`head_only`: the answer to a HEAD, no body to read).
fn parse_response(raw: &[u8], head_only: bool) -> Response {
    let split = find(raw, b"\r\n\r\n").expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if head_only || status == 304 || status == 204 {
        rest.to_vec()
    } else if chunked {
        dechunk(rest)
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert!(rest.len() >= len, "short body: {} of {len}", rest.len());
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// `GET target`.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    http(addr, "GET", target, &[])
}

/// Percent-encodes every byte of a path segment outside the unreserved set.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `/v1/top` for the root, else `/v1/top/seg/seg…` with each segment percent-encoded.
pub fn top_path(category: &str) -> String {
    if category.is_empty() {
        "/v1/top".to_owned()
    } else {
        let segments: Vec<String> = category.split('/').map(encode_segment).collect();
        format!("/v1/top/{}", segments.join("/"))
    }
}

/// A `/v1/top` document's items as (item, score), checking ranks are 1, 2, ….
pub fn top_items(doc: &serde_json::Value) -> Vec<(String, f64)> {
    let items = doc["items"].as_array().expect("items array");
    items
        .iter()
        .enumerate()
        .map(|(at, item)| {
            assert_eq!(item["rank"].as_u64(), Some(at as u64 + 1), "rank in {doc}");
            (
                item["item_id"].as_str().expect("item_id text").to_owned(),
                item["score"].as_f64().expect("numeric score"),
            )
        })
        .collect()
}

/// Served lists: (profile index, category) → (the list's `as_of`, its items with scores).
pub type Served = BTreeMap<(usize, String), (i64, Vec<(String, f64)>)>;

/// Every list a service at `addr` serves: each category of `/v1/categories` under each of
/// `profiles` (names, in configured order); panics on any answer but 200 with an `as_of`.
pub fn served_lists(addr: SocketAddr, profiles: &[&str], context: &str) -> Served {
    let categories = http(addr, "GET", "/v1/categories", &[]).json();
    let listed: BTreeSet<String> = categories["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| c["category"].as_str().expect("category").to_owned())
        .collect();
    let mut served = Served::new();
    for cat in &listed {
        for (profile, name) in profiles.iter().enumerate() {
            let target = format!("{}?profile={name}", top_path(cat));
            let response = http(addr, "GET", &target, &[]);
            assert_eq!(
                response.status,
                200,
                "{context}: {target}: {}",
                response.text()
            );
            let doc = response.json();
            let as_of = doc["as_of"]
                .as_str()
                .and_then(parse_rfc3339)
                .unwrap_or_else(|| panic!("{context}: {target}: as_of {}", doc["as_of"]));
            served.insert((profile, cat.clone()), (as_of, top_items(&doc)));
        }
    }
    served
}

/// The value of the Prometheus sample `series` (e.g. `name{label="x"}`), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            let value = rest.strip_prefix(' ')?;
            value.split_whitespace().next()?.parse().ok()
        })
}

/// Checks a `/metrics` scrape with the strict parser of [`exposition`] (format and promtool's
/// naming rules); panics naming every problem, else returns the samples.
pub fn check_exposition(text: &str) -> Vec<exposition::Sample> {
    let (problems, samples) = exposition::check(text);
    assert!(
        problems.is_empty(),
        "/metrics breaks the text format:\n{}\n--- scrape:\n{text}",
        problems.join("\n")
    );
    samples
}

/// Stops an in-process service when dropped, so that a failing assertion does not leave its
/// workers running (declare it after the service: it is dropped first).
pub struct StopOnDrop(topsellers::Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Starts a service in this process that stops when the returned guard is dropped. With
/// `RUST_LOG` set, logs go to the test's output.
pub fn start_service(config: &Config) -> (topsellers::run::Service, StopOnDrop) {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let stop = topsellers::Stop::new();
    let service = topsellers::run::start_with_stop(config, stop.clone()).expect("start");
    (service, StopOnDrop(stop))
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on its own thread and waits at most `timeout` for it: `None` if it did not finish
/// in time (the thread is left behind); panics if `f` panicked.
pub fn within<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(value) => Some(value),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the call panicked"),
    }
}

/// What is wrong with the lists a service at `addr` serves, against the oracle over `records`
/// as of the newest list served: lists that did not change since an earlier snapshot (same
/// ranking, scores decayed less) are decayed on to it. The lists must be as of `until` (the
/// last event time) or later.
pub fn oracle_problems(
    addr: SocketAddr,
    params: &Params,
    records: &[Rec],
    twins: &[(String, String)],
    until: i64,
) -> Vec<String> {
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    let lists = served_lists(addr, &names, "oracle_problems");
    let as_of = lists.values().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
    let mut got = Got::new();
    for ((profile, cat), (rendered, items)) in lists {
        let half_life = params.half_lives[profile].1 as f64;
        let decay = (-((as_of - rendered) as f64) / half_life).exp2();
        let items = items
            .into_iter()
            .map(|(item, score)| (item, score * decay))
            .collect();
        got.insert((profile, cat), items);
    }
    let mut problems = Vec::new();
    if as_of < until {
        problems.push(format!(
            "served as of {as_of}, before the last event time {until}"
        ));
    }
    let want = params.oracle(records, as_of);
    problems.extend(compare(&got, &want, params.k, params.half_lives.len()));
    problems.extend(check_twins(&got, twins));
    problems
}

/// [`served_lists`] where every list must be as of `as_of`: the lists and their items.
pub fn served_lists_at(addr: SocketAddr, profiles: &[&str], as_of: i64) -> Result<Got, String> {
    let mut got = Got::new();
    for (key, (list_as_of, items)) in served_lists(addr, profiles, "served_lists_at") {
        if list_as_of != as_of {
            return Err(format!("{key:?}: as_of {list_as_of} instead of {as_of}"));
        }
        got.insert(key, items);
    }
    Ok(got)
}

/// A child process whose stderr goes to a file; killed when dropped.
pub struct Proc {
    /// The process.
    pub child: std::process::Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `command` with stderr to `log` (appended), stdin and stdout closed.
    pub fn start(command: &mut std::process::Command, log: PathBuf) -> Proc {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .env("RUST_BACKTRACE", "0")
            .spawn()
            .expect("start topsellers");
        Proc { child, log }
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, waiting at most `timeout`.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `topsellers` executable of this build (`cargo test --workspace --all-targets` builds
/// it next to the test binaries).
pub fn topsellers_exe() -> PathBuf {
    let test = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/topsellers
    let exe = test
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("topsellers"))
        .expect("target directory");
    assert!(
        exe.exists(),
        "{} is missing: build it first (`cargo build -p topsellers`, or run ./scripts/test)",
        exe.display()
    );
    exe
}

/// `n` distinct loopback `127.0.0.1:port` addresses that were free a moment ago (bound all at
/// once: one at a time, the system may hand out a just-released port again).
pub fn free_loopback_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("address").to_string())
        .collect()
}

/// A cluster layout (`workers.toml`) in `dir` on loopback with fresh ports, `processes` ×
/// `threads`; its path and the HTTP addresses of its processes.
pub fn cluster_layout(dir: &Path, processes: usize, threads: usize) -> (PathBuf, Vec<String>) {
    let mut text =
        format!("threads = {threads}\nprocesses = {processes}\nconnect_timeout = \"30s\"\n");
    let mut addresses = free_loopback_addresses(2 * processes).into_iter();
    let mut http = Vec::new();
    for _ in 0..processes {
        let (timely, address) = (addresses.next().unwrap(), addresses.next().unwrap());
        let _ = write!(
            text,
            "[[process]]\ntimely = \"{timely}\"\nhttp = \"{address}\"\n"
        );
        http.push(address);
    }
    let path = dir.join("workers.toml");
    std::fs::write(&path, text).expect("write workers.toml");
    (path, http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_text_round_trips() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123, 0), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            rfc3339(1_700_000_000_123, 60),
            "2023-11-14T23:13:20.123+01:00"
        );
        assert_eq!(
            rfc3339(1_700_000_000_123, -330),
            "2023-11-14T16:43:20.123-05:30"
        );
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for ms in [0, 951_782_400_000, 1_709_164_800_999, 1_790_000_000_123] {
            for offset in [0, 60, -330, 840] {
                assert_eq!(
                    parse_rfc3339(&rfc3339(ms, offset)),
                    Some(ms),
                    "{ms} {offset}"
                );
            }
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_rfc3339("nope"), None);
    }

    #[test]
    fn ancestors_and_oracle_basics() {
        assert_eq!(ancestors("a/b/c"), ["a/b/c", "a/b", "a", ""]);
        assert_eq!(ancestors("x"), ["x", ""]);
        assert_eq!(ancestors(""), [""]);
        let h = HOUR;
        let recs = vec![
            Rec::new("a", "x/y", 10 * h, 1),
            Rec::new("b", "x/y", 9 * h, 2), // 2 · ½ = 1: ties with a, a < b
            Rec::new("c", "x", 10 * h, 1),  // only in x and the root
            Rec::new("c", "x", 10 * h, -1), // … cancelled exactly
            Rec::new("d", "x", 8 * h, 1),   // at as_of − R: excluded
            Rec::new("e", "x", 11 * h, 1),  // after as_of: excluded
            Rec::new("f", "x", 10 * h, 0),  // ignored
        ];
        let want = oracle(&recs, 10 * h, &[h], 2 * h);
        let ids = |cat: &str| -> Vec<(String, f64)> {
            want.lists[&(0, cat.to_owned())]
                .iter()
                .map(|e| (e.item_id.clone(), e.score))
                .collect()
        };
        assert_eq!(ids("x/y"), [("a".into(), 1.0), ("b".into(), 1.0)]);
        assert_eq!(ids(""), ids("x"));
        assert_eq!((want.counted, want.skipped), (4, 2));
        assert!(want.known.contains("x/y") && want.known.contains(""));
        // The comparator accepts ties in either order but not a wrong item or score.
        let mut got = Got::new();
        got.insert(
            (0, "x/y".into()),
            vec![("b".into(), 1.0), ("a".into(), 1.0)],
        );
        got.insert((0, "x".into()), vec![("a".into(), 1.0), ("b".into(), 1.0)]);
        got.insert((0, "".into()), vec![("a".into(), 1.0)]);
        assert!(
            compare(&got, &want, 1, 1).len() == 2,
            "{:?}",
            compare(&got, &want, 1, 1)
        );
        assert!(compare(&got, &want, 2, 1).len() == 1);
        got.insert(
            (0, "".into()),
            vec![("a".into(), 1.0), ("b".into(), 1.0 + 1e-6)],
        );
        assert_eq!(compare(&got, &want, 2, 1).len(), 2);
        got.insert((0, "".into()), vec![("a".into(), 1.0), ("b".into(), 1.0)]);
        got.insert((0, "nope".into()), vec![]);
        assert_eq!(compare(&got, &want, 2, 1).len(), 1);
    }

    #[test]
    fn generator_is_deterministic_and_covers_the_cases() {
        let spec = Spec::new(3, 2000, 2 * DAY, true);
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a.records, b.records);
        let r = &a.records;
        let anchor = a.anchor_ms;
        for ts in [anchor - 2 * DAY, anchor - 2 * DAY + 1, anchor, anchor + 1] {
            assert!(r.iter().any(|x| x.ts == ts), "boundary {ts}");
        }
        assert!(r.iter().any(|x| x.quantity == 0));
        assert!(r.iter().any(|x| x.quantity < 0));
        assert!(r.iter().any(|x| x.quantity > 1));
        assert!(r.iter().any(|x| x.category.split('/').count() == 16));
        assert!(r.iter().all(|x| x.category.split('/').count() <= 16));
        assert!(r.iter().any(|x| !x.category.is_ascii()));
        assert!(r.iter().any(|x| is_canonical_int(&x.item_id)));
    }
}
