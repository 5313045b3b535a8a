//! File sources: JSON Lines, CSV and Parquet files, folders or S3 prefixes, split into read
//! units, read by one decoder per format whatever the storage.

mod compression;
pub(crate) mod csv;
pub(crate) mod fields;
mod folder;
mod hive;
pub(crate) mod jsonl;
pub(crate) mod lines;
mod list;
mod location;
mod object;
mod opener;
mod parquet;
mod parquet_columns;
mod parquet_input;
mod parquet_stats;
mod prune;

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use topsellers_model::{Purchase, PurchaseRef};

use crate::bad::BadRecord;
use crate::error::SourceError;
pub use compression::Compression;
use compression::{RawBytes, TextInput};

pub use folder::ObjectFolder;
pub use hive::Partitions;
pub use list::{list_units, list_units_with, units_for_worker, ReadUnit, UnitSize};
pub use location::{parse_s3_url, Location, ObjectLocation};
pub use object::{Bucket, S3Config};
pub use opener::{Opened, Opener};
pub use parquet_input::Footer;
pub use prune::{prune, Pruned};

/// Longest JSON Lines line or CSV record (bytes) read as a record; longer ones are bad records.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// `type = "files"`: read files, folders or S3 prefixes (backfill, batch mode).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Files, folders (walked recursively) or `s3://bucket/prefix` URLs (every object below).
    /// Hive-style `dt=…/` and `category=…/` folders are understood (see [`Partitions`]).
    pub paths: Vec<String>,
    /// The format of every file; by default each file's extension tells.
    #[serde(default = "default_format")]
    pub format: Option<Format>,
}

fn default_format() -> Option<Format> {
    None
}

impl FilesConfig {
    /// Files or folders `paths`, each file's format from its extension.
    pub fn new(paths: Vec<String>) -> Self {
        FilesConfig {
            paths,
            format: None,
        }
    }

    /// The read units of all configured paths, S3 reached with `s3` (see [`list_units_with`]).
    pub fn units(&self, s3: &S3Config) -> Result<Vec<ReadUnit>, SourceError> {
        list_units_with(&self.paths, self.format, s3)
    }
}

/// How the data lake is read (`[lake]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Skip files and Parquet row groups wholly older than the backfill's cut-off minus the
    /// retention, as told by `dt=` partitions and `ts` statistics, without reading them.
    /// Default: true. (Purchases that old are skipped either way; `false` reads them first,
    /// e.g. for files whose rows do not belong to their `dt=` folder.)
    #[serde(default = "default_prune")]
    pub prune: bool,
    /// How to reach S3 for `s3://` inputs.
    #[serde(default)]
    pub s3: S3Config,
}

fn default_prune() -> bool {
    true
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            prune: default_prune(),
            s3: S3Config::default(),
        }
    }
}

/// A file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines: one JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format an extension stands for: `.jsonl`, `.ndjson`, `.json` → JSON Lines; `.csv` →
    /// CSV; `.parquet`, `.pq` → Parquet (case-insensitive). `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        Format::from_name(path.file_name()?.to_str()?)
    }

    /// The format a file name's extension stands for (see [`Format::from_path`]).
    pub fn from_name(name: &str) -> Option<Format> {
        let (compression, name) = compression::Compression::split(name);
        let (stem, ext) = name.rsplit_once('.')?;
        if stem.is_empty() {
            return None;
        }
        match ext.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "parquet" | "pq" if compression.is_none() => Some(Format::Parquet),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        })
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "parquet" | "pq" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format {other:?}: use jsonl, csv or parquet"
            )),
        }
    }
}

/// Reads the purchases of one [`ReadUnit`] in batches.
pub trait RecordReader {
    /// Reads at most `max` (at least 1) more records of the unit: valid purchases are appended
    /// to `out`, bad records to `bad`; zero-quantity records and blank lines are skipped.
    ///
    /// Returns `Ok(true)` while there may be more (records appended by this call must be used
    /// either way), and `Ok(false)` once the unit is exhausted and this call appended nothing,
    /// so both `while reader.next_batch(..)? { … }` and "process, then stop on false" work.
    /// An `Err` (I/O error, unreadable Parquet page) ends the unit.
    fn next_batch(
        &mut self,
        out: &mut Vec<Purchase>,
        bad: &mut Vec<BadRecord>,
        max: usize,
    ) -> Result<bool, SourceError>;

    /// Like [`next_batch`](Self::next_batch), but hands each valid purchase to `visit`,
    /// borrowed: readers that can (Parquet) lend it from their decoded columns, so summing
    /// purchases allocates nothing per record.
    fn visit_batch(
        &mut self,
        visit: &mut dyn FnMut(PurchaseRef<'_>),
        bad: &mut Vec<BadRecord>,
        max: usize,
    ) -> Result<bool, SourceError> {
        let mut out = Vec::new();
        let more = self.next_batch(&mut out, bad, max)?;
        for purchase in &out {
            visit(purchase.borrowed());
        }
        Ok(more)
    }

    /// Records with quantity 0, which the data contract says to ignore, seen so far.
    fn ignored(&self) -> u64;

    /// Records (valid, bad or ignored; not blank lines) read so far.
    fn rows_read(&self) -> u64;

    /// Bytes of the file consumed so far (text formats; Parquet readers report 0 and the unit's
    /// size counts once it is done).
    fn bytes_read(&self) -> u64 {
        0
    }
}

/// The bytes of a text file, streamed from disk or with ranged GETs.
pub(crate) fn open_text(unit: &ReadUnit) -> Result<TextInput, SourceError> {
    let raw = open_raw(unit)?;
    match compression::Compression::split(&unit.location.file_name()).0 {
        None => Ok(TextInput {
            read: raw,
            consumed: RawBytes::default(),
        }),
        Some(compression) => {
            let consumed = std::sync::Arc::default();
            let read = compression
                .decode(raw, std::sync::Arc::clone(&consumed))
                .map_err(|e| SourceError::io(&unit.location.to_string(), e))?;
            Ok(TextInput {
                read,
                consumed: RawBytes::counted(consumed),
            })
        }
    }
}

/// A file's bytes as stored.
fn open_raw(unit: &ReadUnit) -> Result<Box<dyn Read + Send>, SourceError> {
    Ok(match &unit.location {
        Location::Local(path) => {
            Box::new(std::fs::File::open(path).map_err(|e| SourceError::io(path, e))?)
        }
        Location::Object(object) => {
            let size = match unit.file_bytes {
                0 => {
                    object
                        .bucket
                        .head(&object.key)?
                        .ok_or_else(|| SourceError::NotFound { path: object.url() })?
                        .size
                }
                size => size,
            };
            Box::new(object::ObjectRead::new(
                object.bucket.clone(),
                object.key.clone(),
                size,
            ))
        }
    })
}

/// Opens a reader for one unit.
pub fn open_unit(unit: &ReadUnit) -> Result<Box<dyn RecordReader + Send>, SourceError> {
    let label = unit.location.to_string();
    let category = unit.partitions.category.clone();
    Ok(match unit.format {
        Format::Jsonl => Box::new(jsonl::JsonlReader::new(label, open_text(unit)?, category)),
        Format::Csv => Box::new(csv::CsvReader::new(label, open_text(unit)?, category)?),
        Format::Parquet => Box::new(parquet::ParquetReader::open(unit)?),
    })
}

/// The largest event time among a unit's valid purchases (`None` if it has none): the unit is
/// read and every field checked, as the real read does, so that neither a bad record nor one
/// with quantity 0 sets it (a Parquet row group's `ts` statistics include such rows: they only
/// bound it, see [`ReadUnit::max_ts_bound`]). Bad records are not reported here.
pub fn max_event_time(unit: &ReadUnit) -> Result<Option<i64>, SourceError> {
    let mut reader = open_unit(unit)?;
    let (mut bad, mut max) = (Vec::new(), None);
    loop {
        let more = reader.visit_batch(
            &mut |purchase| max = max.max(Some(purchase.ts_ms)),
            &mut bad,
            65_536,
        )?;
        bad.clear();
        if !more {
            return Ok(max);
        }
    }
}

/// Reads a whole unit into memory (tests, small files).
pub fn read_unit_all(unit: &ReadUnit) -> Result<(Vec<Purchase>, Vec<BadRecord>), SourceError> {
    let mut reader = open_unit(unit)?;
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    while reader.next_batch(&mut out, &mut bad, 4096)? {}
    Ok((out, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_extensions() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("a/b.jsonl"), Some(Format::Jsonl));
        assert_eq!(f("b.NDJSON"), Some(Format::Jsonl));
        assert_eq!(f("b.json"), Some(Format::Jsonl));
        assert_eq!(f("x.csv"), Some(Format::Csv));
        assert_eq!(f("part-0.snappy.parquet"), Some(Format::Parquet));
        assert_eq!(f("y.pq"), Some(Format::Parquet));
        assert_eq!(f("y.txt"), None);
        assert_eq!(f(".csv"), None);
        assert_eq!(Format::from_name("k=v.x/part-1.csv"), Some(Format::Csv));
        assert_eq!(f("README"), None);
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn category_partition_fills_in_missing_categories_only() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("dt=2024-06-30/category=books%2Ffiction");
        std::fs::create_dir_all(&folder).unwrap();
        // CSV without a category column: every row takes the partition's.
        std::fs::write(folder.join("a.csv"), "item_id,ts\nx,1\ny,2\n").unwrap();
        // CSV with one: its own wins; an empty field (CSV's null) takes the partition's.
        std::fs::write(
            folder.join("b.csv"),
            "item_id,category,ts\nx,toys,3\ny,,4\n",
        )
        .unwrap();
        // JSON Lines: absent or null category takes the partition's; its own wins.
        std::fs::write(
            folder.join("c.jsonl"),
            concat!(
                "{\"item_id\":\"x\",\"ts\":5}\n",
                "{\"item_id\":\"y\",\"ts\":6,\"category\":null}\n",
                "{\"item_id\":\"z\",\"ts\":7,\"category\":\"toys/cars\"}\n",
            ),
        )
        .unwrap();
        let units = list_units(&[dir.path()], None).unwrap();
        assert_eq!(units.len(), 3);
        let mut got = Vec::new();
        for unit in &units {
            assert_eq!(unit.partitions.category.as_deref(), Some("books/fiction"));
            let (purchases, bad) = read_unit_all(unit).unwrap();
            assert!(bad.is_empty(), "{bad:?}");
            got.extend(purchases.iter().map(|p| (p.ts_ms, p.category.to_string())));
        }
        let want = [
            (1, "books/fiction"),
            (2, "books/fiction"),
            (3, "toys"),
            (4, "books/fiction"),
            (5, "books/fiction"),
            (6, "books/fiction"),
            (7, "toys/cars"),
        ];
        let want: Vec<(i64, String)> = want.iter().map(|(t, c)| (*t, c.to_string())).collect();
        assert_eq!(got, want);
        // Without a partition, a missing category column is still an error.
        let plain = dir.path().join("plain.csv");
        std::fs::write(&plain, "item_id,ts\nx,1\n").unwrap();
        let unit = list_units(&[&plain], None).unwrap().remove(0);
        assert!(matches!(
            open_unit(&unit).err(),
            Some(SourceError::MissingColumn {
                column: "category",
                ..
            })
        ));
    }

    #[test]
    fn config_serde() {
        let c: FilesConfig = serde_json::from_str(r#"{"paths":["a","b"]}"#).unwrap();
        assert_eq!(c, FilesConfig::new(vec!["a".into(), "b".into()]));
        let lake: LakeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(lake, LakeConfig::default());
        assert!(lake.prune);
        let lake: LakeConfig =
            serde_json::from_str(r#"{"prune":false,"s3":{"endpoint":"http://127.0.0.1:9"}}"#)
                .unwrap();
        assert!(!lake.prune);
        assert_eq!(lake.s3.endpoint, "http://127.0.0.1:9");
        assert!(serde_json::from_str::<LakeConfig>(r#"{"prun":false}"#).is_err());
        let c: FilesConfig = serde_json::from_str(r#"{"paths":[],"format":"parquet"}"#).unwrap();
        assert_eq!(c.format, Some(Format::Parquet));
        assert!(serde_json::from_str::<FilesConfig>(r#"{"paths":[],"colour":1}"#).is_err());
        assert!(serde_json::from_str::<FilesConfig>(r#"{"paths":[],"format":"xml"}"#).is_err());
    }
}
