//! Listing input paths and `s3://` prefixes into read units (a text file, or one Parquet row
//! group) and sharding them.

use std::ffi::OsStr;
use std::path::Path;

use object_store::path::Path as ObjectPath;
use walkdir::WalkDir;

use super::hive::Partitions;
use super::location::{parse_s3_url, Location, ObjectLocation};
use super::object::{Connector, S3Config};
use super::parquet_input::{read_footer, Footer};
use super::parquet_stats::row_group_max_ts;
use super::Format;
use crate::error::SourceError;

/// How big a unit is, for progress reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UnitSize {
    /// Bytes of the file (text formats) or compressed bytes of the row group (Parquet).
    pub bytes: u64,
    /// Rows, when known without reading (Parquet row groups).
    pub rows: Option<u64>,
}

/// The smallest piece of input one worker reads: a JSON Lines or CSV file, or one row group of
/// a Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadUnit {
    /// The file: a local path or an object.
    pub location: Location,
    /// Its format.
    pub format: Format,
    /// The row group (Parquet only).
    pub row_group: Option<usize>,
    /// Its size, as far as known when listing.
    pub size: UnitSize,
    /// Bytes of the whole file (an object's size is needed to read it; 0 if unknown).
    pub file_bytes: u64,
    /// What the hive-style folders above the file say (`dt=`, `category=`).
    pub partitions: Partitions,
    /// The row group's largest `ts` (epoch ms) from exact Parquet statistics, if known.
    pub ts_max: Option<i64>,
    /// The file's footer (Parquet), read once when listing and shared by its row groups.
    pub footer: Option<Footer>,
}

impl ReadUnit {
    /// A unit of unknown size, without partitions (see [`ReadUnit::with_partitions`]).
    pub fn new(location: impl Into<Location>, format: Format, row_group: Option<usize>) -> Self {
        ReadUnit {
            location: location.into(),
            format,
            row_group,
            size: UnitSize::default(),
            file_bytes: 0,
            partitions: Partitions::default(),
            ts_max: None,
            footer: None,
        }
    }

    /// The unit with the partitions its folders name.
    pub fn with_partitions(mut self) -> Self {
        self.partitions = Partitions::from_folders(&self.location.folders());
        self
    }

    /// Its size, for progress bars.
    pub fn size_hint(&self) -> UnitSize {
        self.size
    }

    /// The latest event time any row of the unit can have, as far as listing found out:
    /// Parquet statistics, and (when `trust_partitions`) the end of its `dt=` day.
    pub fn max_ts_bound(&self, trust_partitions: bool) -> Option<i64> {
        let day = self.partitions.max_ts().filter(|_| trust_partitions);
        match (self.ts_max, day) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Lists the read units of local `paths`, as [`list_units_with`] with default S3 settings.
pub fn list_units(
    paths: &[impl AsRef<Path>],
    format: Option<Format>,
) -> Result<Vec<ReadUnit>, SourceError> {
    list_units_with(paths, format, &S3Config::default())
}

/// Lists the read units of `paths`, in order. Each is a local file or folder (walked
/// recursively, sorted by name), or an `s3://bucket/key` object or `s3://bucket/prefix` (every
/// object under it, in key order). Entries whose name starts with `.` or `_`, like
/// `_SUCCESS`, are skipped, and so is everything below a folder so named.
///
/// With `format` set, every file is read in that format. Without it, the extension tells: a
/// file named explicitly with an unknown extension is an error, one found in a folder is
/// skipped. Parquet files are split into one unit per row group (their footers are read here,
/// with ranged GETs for objects; a corrupt footer is an error naming the file). Hive-style
/// folders (`dt=…`, `category=…`) are parsed into each unit's [`Partitions`].
pub fn list_units_with(
    paths: &[impl AsRef<Path>],
    format: Option<Format>,
    s3: &S3Config,
) -> Result<Vec<ReadUnit>, SourceError> {
    let mut units = Vec::new();
    let mut connector = Connector::new(s3);
    for path in paths {
        let path = path.as_ref();
        if let Some(url) = path.to_str().and_then(parse_s3_url) {
            let (bucket, prefix) =
                url.map_err(|message| SourceError::NotFound { path: message })?;
            list_objects(&mut connector, &bucket, &prefix, format, &mut units)?;
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound {
                path: path.display().to_string(),
            },
            _ => SourceError::io(path, e),
        })?;
        if meta.is_dir() {
            list_dir(path, format, &mut units)?;
        } else {
            let found = format.or_else(|| Format::from_path(path)).ok_or_else(|| {
                SourceError::UnknownFormat {
                    path: path.display().to_string(),
                }
            })?;
            push_file(Location::from(path), found, meta.len(), &mut units)?;
        }
    }
    Ok(units)
}

fn is_hidden(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.first().is_some_and(|b| *b == b'.' || *b == b'_')
}

fn list_dir(
    dir: &Path,
    format: Option<Format>,
    units: &mut Vec<ReadUnit>,
) -> Result<(), SourceError> {
    let walk = WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
    for entry in walk {
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(dir).to_path_buf();
            SourceError::io(&at, std::io::Error::other(e))
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let Some(found) = format.or_else(|| Format::from_path(path)) else {
            tracing::warn!(
                path = %path.display(),
                "skipping a file of unknown format (read: .jsonl/.ndjson/.json, .csv, each \
                 optionally .gz or .zst, and .parquet/.pq; or set `format`)"
            );
            continue;
        };
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        push_file(Location::from(path), found, len, units)?;
    }
    Ok(())
}

/// Lists `s3://bucket/prefix`: the object itself if there is one, else every object below.
fn list_objects(
    connector: &mut Connector,
    bucket_name: &str,
    prefix: &str,
    format: Option<Format>,
    units: &mut Vec<ReadUnit>,
) -> Result<(), SourceError> {
    let url = format!("s3://{bucket_name}/{prefix}");
    let bucket = connector.bucket(bucket_name)?;
    let key = ObjectPath::parse(prefix).map_err(|e| SourceError::object_store(&url, e))?;
    if !prefix.is_empty() {
        if let Some(meta) = bucket.head(&key)? {
            let location = Location::Object(ObjectLocation {
                bucket: bucket.clone(),
                key: meta.location,
            });
            let found = format
                .or_else(|| Format::from_name(&location.file_name()))
                .ok_or_else(|| SourceError::UnknownFormat { path: url.clone() })?;
            return push_file(location, found, meta.size, units);
        }
    }
    let objects = bucket.list(&key)?;
    if objects.is_empty() {
        return Err(SourceError::NotFound { path: url });
    }
    let depth = key.parts().count();
    let mut files = Vec::new();
    for meta in objects {
        // Skip hidden names below the prefix (`_SUCCESS`, `.tmp/…`), as in local folders.
        let hidden = meta
            .location
            .parts()
            .skip(depth)
            .any(|part| is_hidden(OsStr::new(part.as_ref())));
        if hidden {
            continue;
        }
        let location = Location::Object(ObjectLocation {
            bucket: bucket.clone(),
            key: meta.location,
        });
        let Some(found) = format.or_else(|| Format::from_name(&location.file_name())) else {
            tracing::warn!(
                object = %location,
                "skipping an object of unknown format (read: .jsonl/.ndjson/.json, .csv, each \
                 optionally .gz or .zst, and .parquet/.pq; or set `format`)"
            );
            continue;
        };
        files.push((location, found, meta.size));
    }
    let footers = read_footers(&files);
    for ((location, found, size), footer) in files.into_iter().zip(footers) {
        push_file_with(location, found, size, footer?, units)?;
    }
    Ok(())
}

/// Footers of the Parquet objects among `files` fetched at once by this many threads (each GET
/// waits on the network, not the CPU).
const FOOTER_FETCHES: usize = 16;

/// The footers of `files` (`None` for text formats), in order; Parquet footers are read
/// [`FOOTER_FETCHES`] at a time.
fn read_footers(files: &[(Location, Format, u64)]) -> Vec<Result<Option<Footer>, SourceError>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let read = |(location, format, len): &(Location, Format, u64)| {
        (*format == Format::Parquet)
            .then(|| read_footer(location, *len))
            .transpose()
    };
    let mut found: Vec<(usize, Result<Option<Footer>, SourceError>)> =
        std::thread::scope(|scope| {
            let fetchers: Vec<_> = (0..FOOTER_FETCHES.min(files.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(at) else {
                                return mine;
                            };
                            mine.push((at, read(file)));
                        }
                    })
                })
                .collect();
            fetchers
                .into_iter()
                .flat_map(|fetcher| {
                    fetcher.join().unwrap_or_else(|_| {
                        vec![(
                            usize::MAX,
                            Err(SourceError::object_store(
                                "footer",
                                "a fetch thread panicked",
                            )),
                        )]
                    })
                })
                .collect()
        });
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, footer)| footer).collect()
}

fn push_file(
    location: Location,
    format: Format,
    len: u64,
    units: &mut Vec<ReadUnit>,
) -> Result<(), SourceError> {
    let footer = match format {
        Format::Parquet => Some(read_footer(&location, len)?),
        _ => None,
    };
    push_file_with(location, format, len, footer, units)
}

/// Pushes the units of one file: the file itself, or (Parquet, whose `footer` is given) one per
/// non-empty row group.
fn push_file_with(
    location: Location,
    format: Format,
    len: u64,
    footer: Option<Footer>,
    units: &mut Vec<ReadUnit>,
) -> Result<(), SourceError> {
    let unit = ReadUnit {
        file_bytes: len,
        ..ReadUnit::new(location, format, None).with_partitions()
    };
    let Some(footer) = footer.filter(|_| format == Format::Parquet) else {
        units.push(ReadUnit {
            size: UnitSize {
                bytes: len,
                rows: None,
            },
            ..unit
        });
        return Ok(());
    };
    for (index, group) in footer.0.row_groups().iter().enumerate() {
        let rows = u64::try_from(group.num_rows()).unwrap_or(0);
        if rows == 0 {
            continue;
        }
        units.push(ReadUnit {
            row_group: Some(index),
            size: UnitSize {
                bytes: u64::try_from(group.compressed_size()).unwrap_or(0),
                rows: Some(rows),
            },
            ts_max: row_group_max_ts(&footer.0, index),
            footer: Some(footer.clone()),
            ..unit.clone()
        });
    }
    Ok(())
}

/// The units worker `index` of `peers` reads: unit `i` goes to worker `i % peers`, so every unit
/// is read exactly once across the workers.
pub fn units_for_worker(units: &[ReadUnit], index: usize, peers: usize) -> Vec<ReadUnit> {
    let peers = peers.max(1);
    units
        .iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, unit)| unit.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    fn touch(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn names(units: &[ReadUnit], root: &Path) -> Vec<String> {
        units
            .iter()
            .map(|u| {
                u.location
                    .local_path()
                    .unwrap()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect()
    }

    #[test]
    fn walks_folders_sorted_skipping_hidden_and_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("data/date=2026-01-02/b.jsonl"), "{}\n");
        touch(
            &root.join("data/date=2026-01-01/region=eu/a.csv"),
            "item_id\n",
        );
        touch(&root.join("data/date=2026-01-01/z.ndjson"), "");
        touch(&root.join("data/date=2026-01-01/_SUCCESS"), "");
        touch(&root.join("data/date=2026-01-01/.a.jsonl.crc"), "");
        touch(&root.join("data/.hidden/c.jsonl"), "");
        touch(&root.join("data/_tmp/d.jsonl"), "");
        touch(&root.join("data/readme.txt"), "");
        let units = list_units(&[root.join("data")], None).unwrap();
        assert_eq!(
            names(&units, &root.join("data")),
            [
                "date=2026-01-01/region=eu/a.csv",
                "date=2026-01-01/z.ndjson",
                "date=2026-01-02/b.jsonl"
            ]
        );
        assert_eq!(units[0].format, Format::Csv);
        // `date=` folders are day partitions (UTC).
        assert_eq!(
            units[2].partitions.day.map(|(start, _)| start),
            Some(1_767_312_000_000)
        );
        assert_eq!(units[1].format, Format::Jsonl);
        assert_eq!(
            units[2].size_hint(),
            UnitSize {
                bytes: 3,
                rows: None
            }
        );
        // With a format, every (non-hidden) file is taken in that format.
        let units = list_units(&[root.join("data")], Some(Format::Jsonl)).unwrap();
        assert_eq!(units.len(), 4);
        assert!(units.iter().all(|u| u.format == Format::Jsonl));
    }

    #[test]
    fn explicit_files_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("events.txt");
        touch(&txt, "");
        let err = list_units(&[&txt], None).unwrap_err();
        assert!(matches!(err, SourceError::UnknownFormat { .. }));
        assert!(err.to_string().contains("events.txt"), "{err}");
        let units = list_units(&[&txt], Some(Format::Csv)).unwrap();
        assert_eq!(
            units,
            vec![ReadUnit {
                file_bytes: 0,
                size: UnitSize {
                    bytes: 0,
                    rows: None
                },
                ..ReadUnit::new(&txt, Format::Csv, None).with_partitions()
            }]
        );
        let missing = dir.path().join("nope/x.jsonl");
        let err = list_units(&[&missing], None).unwrap_err();
        assert!(matches!(err, SourceError::NotFound { .. }));
        assert!(err.to_string().contains("nope/x.jsonl") || err.to_string().contains("x.jsonl"));
        // A hidden file named explicitly is read.
        let hidden = dir.path().join(".h.jsonl");
        touch(&hidden, "");
        assert_eq!(list_units(&[&hidden], None).unwrap().len(), 1);
    }

    #[test]
    fn corrupt_parquet_footer_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.parquet");
        touch(&path, "this is not parquet at all, no PAR1 footer here");
        let err = list_units(&[&path], None).unwrap_err();
        assert!(matches!(err, SourceError::Parquet { .. }));
        assert!(err.to_string().contains("broken.parquet"), "{err}");
    }

    #[test]
    fn sharding_reads_every_unit_exactly_once() {
        let units: Vec<ReadUnit> = (0..11)
            .map(|i| {
                ReadUnit::new(
                    std::path::PathBuf::from(format!("f{i}.parquet")),
                    Format::Parquet,
                    Some(i % 3),
                )
            })
            .collect();
        for peers in [1, 2, 3, 4, 16] {
            let mut seen: HashMap<(String, Option<usize>), usize> = HashMap::new();
            let mut sizes = Vec::new();
            for index in 0..peers {
                let mine = units_for_worker(&units, index, peers);
                sizes.push(mine.len());
                for u in mine {
                    *seen
                        .entry((u.location.to_string(), u.row_group))
                        .or_default() += 1;
                }
            }
            assert_eq!(seen.len(), units.len(), "peers {peers}");
            assert!(seen.values().all(|&n| n == 1), "peers {peers}");
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "balanced: {sizes:?}");
        }
    }
}
