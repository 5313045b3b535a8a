//! File sources: JSON Lines, CSV and Parquet files or folders, split into read units.

pub(crate) mod csv;
pub(crate) mod fields;
pub(crate) mod jsonl;
mod lines;
mod list;
mod parquet;
mod parquet_columns;

use std::path::Path;

use serde::{Deserialize, Serialize};
use topsellers_model::Purchase;

use crate::bad::BadRecord;
use crate::error::SourceError;

pub use list::{list_units, units_for_worker, ReadUnit, UnitSize};

/// Longest JSON Lines line or CSV record (bytes) read as a record; longer ones are bad records.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// `type = "files"`: read files or folders of files (backfill, batch mode).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Files or folders (walked recursively; hive-style `key=value/` folders are just folders).
    pub paths: Vec<String>,
    /// The format of every file; by default each file's extension tells.
    #[serde(default = "default_format")]
    pub format: Option<Format>,
}

fn default_format() -> Option<Format> {
    None
}

impl FilesConfig {
    /// The read units of all configured paths (see [`list_units`]).
    pub fn units(&self) -> Result<Vec<ReadUnit>, SourceError> {
        list_units(&self.paths, self.format)
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
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
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

    /// Records with quantity 0, which the data contract says to ignore, seen so far.
    fn ignored(&self) -> u64;

    /// Records (valid, bad or ignored; not blank lines) read so far.
    fn rows_read(&self) -> u64;
}

/// Opens a reader for one unit.
pub fn open_unit(unit: &ReadUnit) -> Result<Box<dyn RecordReader + Send>, SourceError> {
    Ok(match unit.format {
        Format::Jsonl => Box::new(jsonl::JsonlReader::open(&unit.path)?),
        Format::Csv => Box::new(csv::CsvReader::open(&unit.path)?),
        Format::Parquet => Box::new(parquet::ParquetReader::open(
            &unit.path,
            unit.row_group.unwrap_or(0),
        )?),
    })
}

/// The largest event time in a unit (`None` if it has none): for Parquet from the `ts`
/// column alone (any row whose `ts` is valid, whatever its other fields), for text formats
/// from its valid purchases.
pub fn max_event_time(unit: &ReadUnit) -> Result<Option<i64>, SourceError> {
    if let (Format::Parquet, Some(row_group)) = (unit.format, unit.row_group) {
        return parquet::max_ts(&unit.path, row_group);
    }
    let mut reader = open_unit(unit)?;
    let (mut purchases, mut bad, mut max) = (Vec::new(), Vec::new(), None);
    loop {
        let more = reader.next_batch(&mut purchases, &mut bad, 65_536)?;
        if let Some(latest) = purchases.iter().map(|p| p.ts_ms).max() {
            max = max.max(Some(latest));
        }
        purchases.clear();
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
        assert_eq!(f("README"), None);
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn config_serde() {
        let c: FilesConfig = serde_json::from_str(r#"{"paths":["a","b"]}"#).unwrap();
        assert_eq!(
            c,
            FilesConfig {
                paths: vec!["a".into(), "b".into()],
                format: None
            }
        );
        let c: FilesConfig = serde_json::from_str(r#"{"paths":[],"format":"parquet"}"#).unwrap();
        assert_eq!(c.format, Some(Format::Parquet));
        assert!(serde_json::from_str::<FilesConfig>(r#"{"paths":[],"colour":1}"#).is_err());
        assert!(serde_json::from_str::<FilesConfig>(r#"{"paths":[],"format":"xml"}"#).is_err());
    }
}
