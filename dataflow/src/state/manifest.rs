//! The manifest: what one checkpoint consists of, written last and atomically, checksummed.
//! A checkpoint exists once its manifest does; the newest two are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::Store;
use super::StateError;
use crate::config::Scoring;

/// The format this build writes and reads. 2: a listed item carries its scores under every
/// profile (`RankedItem::scores`, for `/v1/movers`), which changes the list files' layout.
pub const FORMAT_VERSION: u32 = 2;

/// One checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Counts checkpoints (the file is `manifest-<sequence>.json`).
    pub sequence: u64,
    /// When it was written (wall clock, epoch ms).
    pub written_at_ms: i64,
    /// Every purchase of the segments entered the dataflow at or before this time; a restart
    /// enters them again at this time and continues from it.
    pub time_ms: i64,
    /// The scoring it holds lists and sums for (a different one is refused).
    pub scoring: ScoringPrint,
    /// The history read first, by reference.
    pub history: Option<HistoryRef>,
    /// Kafka: where each partition resumes.
    pub kafka: Option<KafkaPositions>,
    /// The purchases the live sources entered, in segment files (Parquet).
    pub segments: Vec<FileRef>,
    /// The served lists: the first file holds every list, later ones the lists that changed
    /// since (applied in order).
    pub lists: Vec<FileRef>,
    /// The dead-letter file's length with this checkpoint's bad records in it (`None`: no
    /// file); a restart cuts the file back to it.
    pub dead_letter_bytes: Option<u64>,
    /// This process's seat: (process, processes) of its cluster.
    pub process: (usize, usize),
    /// Worker threads per process of the writer (absent in states written before it was
    /// kept): in a cluster, another count moves Kafka partitions between processes.
    #[serde(default)]
    pub threads: Option<usize>,
}

/// What scoring a state is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoringPrint {
    /// The profiles' names (their half-lives' text), in order.
    pub profiles: Vec<String>,
    /// Their half-lives in ms.
    pub half_lives_ms: Vec<i64>,
    /// List length.
    pub top_k: usize,
    /// Candidates kept per list (`top_k` + `table.buffer` with availability input); absent in
    /// states written before availability existed, which kept `top_k`.
    #[serde(default)]
    pub candidates: Option<usize>,
    /// Retention in ms.
    pub retention_ms: i64,
}

impl ScoringPrint {
    /// The print of `scoring`.
    pub fn of(scoring: &Scoring) -> ScoringPrint {
        ScoringPrint {
            profiles: scoring.profiles.iter().map(|p| p.name.clone()).collect(),
            half_lives_ms: scoring.profiles.half_lives_ms(),
            top_k: scoring.k,
            candidates: Some(scoring.candidates),
            retention_ms: scoring.retention_ms,
        }
    }

    /// The first setting that differs from `config`'s, as (key, state's value, config's value).
    pub fn difference(&self, config: &ScoringPrint) -> Option<(&'static str, String, String)> {
        if self.half_lives_ms != config.half_lives_ms || self.profiles != config.profiles {
            return Some((
                "scoring.half_lives",
                format!("{:?}", self.profiles),
                format!("{:?}", config.profiles),
            ));
        }
        if self.top_k != config.top_k {
            return Some((
                "scoring.top_k",
                self.top_k.to_string(),
                config.top_k.to_string(),
            ));
        }
        let candidates = |print: &ScoringPrint| print.candidates.unwrap_or(print.top_k);
        if candidates(self) != candidates(config) {
            return Some((
                "table.buffer (with [availability]: lists keep top_k + buffer candidates)",
                format!("{} candidates", candidates(self)),
                format!("{} candidates", candidates(config)),
            ));
        }
        if self.retention_ms != config.retention_ms {
            return Some((
                "scoring.retention",
                topsellers_model::format_duration(self.retention_ms),
                topsellers_model::format_duration(config.retention_ms),
            ));
        }
        None
    }
}

/// The history a state was built from, by reference (the files are re-read on a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRef {
    /// The configured paths (files, folders, `s3://` prefixes).
    pub paths: Vec<String>,
    /// Read units listed from them.
    pub units: usize,
    /// A hash of the listing (each unit's location, row group and size): a restart checks it.
    pub listing: u64,
    /// The history was read up to this time (inclusive).
    pub until_ms: i64,
    /// The hand-over time to Kafka, if any.
    pub handover_ms: Option<i64>,
}

/// Where each Kafka partition resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPositions {
    /// The topic.
    pub topic: String,
    /// Per partition read so far, the next offset to read.
    pub next: BTreeMap<i32, i64>,
    /// Where a partition not read yet starts: the earliest offset (a hand-over) or as
    /// configured.
    pub unread_from_earliest: bool,
}

/// A file of the state, with what checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Its name in the state directory.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// The xxh3 hash of its contents.
    pub xxh3: u64,
    /// Rows (segments) or lists (list files) it holds.
    pub rows: u64,
    /// The latest event time it holds (segments: it expires as a whole after it).
    pub max_ts_ms: i64,
    /// Segments: 0 for a checkpoint's own, `n + 1` for a merge of level-`n` ones.
    #[serde(default)]
    pub level: u32,
}

impl FileRef {
    /// Writes `bytes` as the file `name` and describes it.
    pub fn put(
        store: &Store,
        name: String,
        bytes: Vec<u8>,
        rows: u64,
        max_ts_ms: i64,
    ) -> Result<FileRef, StateError> {
        let file = FileRef {
            bytes: bytes.len() as u64,
            xxh3: xxhash_rust::xxh3::xxh3_64(&bytes),
            name,
            rows,
            max_ts_ms,
            level: 0,
        };
        store.put(&file.name, bytes)?;
        Ok(file)
    }

    /// The file's contents, checked against its size and hash.
    pub fn read(&self, store: &Store) -> Result<Vec<u8>, StateError> {
        let corrupt = |why: String| StateError::Corrupt {
            dir: store.name(),
            file: self.name.clone(),
            why,
        };
        let bytes = store
            .get(&self.name)?
            .ok_or_else(|| corrupt("missing".into()))?;
        if bytes.len() as u64 != self.bytes {
            return Err(corrupt(format!(
                "{} bytes, the manifest says {}",
                bytes.len(),
                self.bytes
            )));
        }
        if xxhash_rust::xxh3::xxh3_64(&bytes) != self.xxh3 {
            return Err(corrupt("its checksum does not match the manifest's".into()));
        }
        Ok(bytes)
    }
}

/// A manifest on disk: the body and its checksum.
#[derive(Serialize, Deserialize)]
struct Envelope {
    xxh3: u64,
    body: Box<serde_json::value::RawValue>,
}

/// The file name of manifest `sequence`.
pub fn file_name(sequence: u64) -> String {
    format!("manifest-{sequence:012}.json")
}

/// The sequence of a manifest file name.
pub fn sequence_of(name: &str) -> Option<u64> {
    name.strip_prefix("manifest-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

impl Manifest {
    /// Writes the manifest (last, atomically): from now on the checkpoint exists.
    pub fn write(&self, store: &Store) -> Result<(), StateError> {
        let body = serde_json::to_string(self).map_err(|e| StateError::Corrupt {
            dir: store.name(),
            file: file_name(self.sequence),
            why: e.to_string(),
        })?;
        let envelope = Envelope {
            xxh3: xxhash_rust::xxh3::xxh3_64(body.as_bytes()),
            body: serde_json::value::RawValue::from_string(body).map_err(|e| {
                StateError::Corrupt {
                    dir: store.name(),
                    file: file_name(self.sequence),
                    why: e.to_string(),
                }
            })?,
        };
        let bytes = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
        store.put(&file_name(self.sequence), bytes)
    }

    /// Reads and checks manifest `name`.
    pub fn read(store: &Store, name: &str) -> Result<Manifest, StateError> {
        let corrupt = |why: String| StateError::Corrupt {
            dir: store.name(),
            file: name.to_owned(),
            why,
        };
        let bytes = store.get(name)?.ok_or_else(|| corrupt("missing".into()))?;
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("unreadable: {e}")))?;
        let body = envelope.body.get();
        if xxhash_rust::xxh3::xxh3_64(body.as_bytes()) != envelope.xxh3 {
            return Err(corrupt("its checksum does not match its contents".into()));
        }
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version =
            serde_json::from_str(body).map_err(|e| corrupt(format!("unreadable: {e}")))?;
        if version.version != FORMAT_VERSION {
            return Err(StateError::Version {
                dir: store.name(),
                found: version.version,
                supported: FORMAT_VERSION,
            });
        }
        serde_json::from_str(body).map_err(|e| corrupt(format!("unreadable: {e}")))
    }

    /// The manifests in the directory, newest first.
    pub fn names(store: &Store) -> Result<Vec<String>, StateError> {
        let mut names: Vec<(u64, String)> = store
            .list()?
            .into_iter()
            .filter_map(|name| sequence_of(&name).map(|s| (s, name)))
            .collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names.into_iter().map(|(_, name)| name).collect())
    }

    /// Every file the checkpoint consists of, the manifest included.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .chain(&self.lists)
            .map(|f| f.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topsellers_sources::files::S3Config;

    fn manifest(sequence: u64) -> Manifest {
        Manifest {
            version: FORMAT_VERSION,
            sequence,
            written_at_ms: 1,
            time_ms: 2,
            scoring: ScoringPrint {
                profiles: vec!["7d".into()],
                half_lives_ms: vec![7 * 86_400_000],
                top_k: 10,
                candidates: None,
                retention_ms: 86_400_000,
            },
            history: None,
            kafka: Some(KafkaPositions {
                topic: "t".into(),
                next: BTreeMap::from([(0, 5), (2, 9)]),
                unread_from_earliest: true,
            }),
            segments: vec![],
            lists: vec![],
            dead_letter_bytes: Some(17),
            process: (0, 1),
            threads: Some(2),
        }
    }

    #[test]
    fn round_trips_and_refuses_damage_and_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().display().to_string(), &S3Config::default()).unwrap();
        for sequence in [3, 12, 7] {
            manifest(sequence).write(&store).unwrap();
        }
        let names = Manifest::names(&store).unwrap();
        assert_eq!(names, [file_name(12), file_name(7), file_name(3)]);
        assert_eq!(Manifest::read(&store, &names[0]).unwrap(), manifest(12));
        // One changed byte in the body: refused.
        let path = dir.path().join(file_name(7));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"time_ms\":2", "\"time_ms\":3", 1)).unwrap();
        let error = Manifest::read(&store, &file_name(7))
            .unwrap_err()
            .to_string();
        assert!(error.contains("checksum"), "{error}");
        // Another version: refused, naming both.
        let mut other = manifest(20);
        other.version = FORMAT_VERSION + 1;
        other.write(&store).unwrap();
        let error = Manifest::read(&store, &file_name(20))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("format version {}", FORMAT_VERSION + 1))
                && error.contains("empty state"),
            "{error}"
        );
    }

    #[test]
    fn files_are_checked_against_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().display().to_string(), &S3Config::default()).unwrap();
        let file = FileRef::put(&store, "seg".into(), b"abc".to_vec(), 1, 5).unwrap();
        assert_eq!(file.read(&store).unwrap(), b"abc");
        store.put("seg", b"abd".to_vec()).unwrap();
        assert!(file
            .read(&store)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        store.delete("seg").unwrap();
        assert!(file
            .read(&store)
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }

    #[test]
    fn differences_name_the_setting() {
        let print = manifest(1).scoring;
        assert_eq!(print.difference(&print), None);
        let other = ScoringPrint {
            top_k: 20,
            ..print.clone()
        };
        assert_eq!(
            print.difference(&other),
            Some(("scoring.top_k", "10".into(), "20".into()))
        );
        let other = ScoringPrint {
            retention_ms: 2 * 86_400_000,
            ..print.clone()
        };
        assert_eq!(print.difference(&other).unwrap().0, "scoring.retention");
        // A state of k + buffer candidates (availability) against one of k: refused, naming
        // table.buffer; a state from before availability existed kept k.
        let buffered = ScoringPrint {
            candidates: Some(30),
            ..print.clone()
        };
        let (key, state, config) = buffered.difference(&print).unwrap();
        assert!(key.starts_with("table.buffer"), "{key}");
        assert_eq!(
            (state.as_str(), config.as_str()),
            ("30 candidates", "10 candidates")
        );
        let same = ScoringPrint {
            candidates: Some(10),
            ..print.clone()
        };
        assert_eq!(same.difference(&print), None);
    }
}
