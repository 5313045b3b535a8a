//! The dead-letter output: bad records counted, logged (sparingly) and written as JSON Lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::bad::BadRecord;
use crate::error::SourceError;

/// Bad records logged one by one before logging turns sparse.
const LOG_FIRST: u64 = 100;
/// After the first [`LOG_FIRST`], one bad record in this many is logged.
const LOG_EVERY: u64 = 1000;

/// Bytes of lines kept before they are written out.
const BUFFER: usize = 64 * 1024;

/// Where bad records go. Shared by all worker threads (`Arc<DeadLetter>`); every method takes
/// `&self`.
#[derive(Debug)]
pub struct DeadLetter {
    path: Option<PathBuf>,
    file: Mutex<Option<Out>>,
    count: AtomicU64,
    write_failed: AtomicBool,
    /// Bad records that could not be written (the file misses them).
    write_failures: Arc<AtomicU64>,
}

/// The file and the lines not yet written to it.
#[derive(Debug)]
struct Out {
    file: File,
    buffer: Vec<u8>,
    /// The records whose lines are in `buffer`.
    records: u64,
}

impl Out {
    /// Writes the buffer out. On failure the buffered records are dropped (they are not tried
    /// again, so that each is counted lost once) and their number is returned with the error.
    fn write_out(&mut self) -> Result<(), (u64, std::io::Error)> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buffer);
        let records = std::mem::take(&mut self.records);
        self.buffer.clear();
        written.map_err(|error| (records, error))
    }

    /// Buffers one record's line (with its newline).
    fn push(&mut self, line: &[u8]) {
        self.buffer.extend_from_slice(line);
        self.buffer.push(b'\n');
        self.records += 1;
    }
}

#[derive(Serialize)]
struct Line<'a> {
    position: &'a str,
    error: String,
    record: &'a str,
}

impl DeadLetter {
    /// Opens the output: `None` only counts and logs; `Some(path)` also appends one JSON line
    /// per bad record to `path`, creating it and its parent folders if needed.
    pub fn open(path: Option<&Path>) -> Result<Self, SourceError> {
        let file = match path {
            None => None,
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| SourceError::io(parent, e))?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| SourceError::io(path, e))?;
                Some(Out {
                    file,
                    buffer: Vec::with_capacity(BUFFER),
                    records: 0,
                })
            }
        };
        Ok(DeadLetter {
            path: path.map(Path::to_path_buf),
            file: Mutex::new(file),
            count: AtomicU64::new(0),
            write_failed: AtomicBool::new(false),
            write_failures: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Counts, logs and writes one bad record (buffered: see [`DeadLetter::flush`]). Never
    /// fails: a write error is logged once, and every record it loses is counted in
    /// [`DeadLetter::write_failures`].
    pub fn record(&self, bad: &BadRecord) {
        self.note(bad);
        let mut guard = self.file.lock();
        if let Some(out) = guard.as_mut() {
            out.push(&json_line(bad));
            if out.buffer.len() >= BUFFER {
                if let Err((lost, error)) = out.write_out() {
                    self.report_write_error(lost, &error);
                }
            }
        }
    }

    /// Counts and logs one bad record without writing it (see [`DeadLetter::append`]).
    pub fn note(&self, bad: &BadRecord) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= LOG_FIRST {
            tracing::warn!(position = %bad.position, error = %bad.error, "bad record");
        } else if n % LOG_EVERY == 0 {
            tracing::warn!(
                position = %bad.position,
                error = %bad.error,
                bad_records = n,
                "bad record (logging one in {LOG_EVERY})"
            );
        }
    }

    /// Writes `bad` (already noted) to the file and makes it durable (flushed and synced);
    /// returns the file's length after them (`None` without a file). For a caller that pairs
    /// the file's length with a checkpoint (see [`DeadLetter::truncate`]).
    pub fn append(&self, bad: &[BadRecord]) -> std::io::Result<Option<u64>> {
        let mut guard = self.file.lock();
        let Some(out) = guard.as_mut() else {
            return Ok(None);
        };
        if let Err((lost, error)) = out.write_out() {
            self.report_write_error(lost, &error);
        }
        for record in bad {
            out.push(&json_line(record));
        }
        // The caller learns of this failure (and writes these records again, or fails).
        out.write_out().map_err(|(_, error)| error)?;
        out.file.sync_data()?;
        Ok(Some(out.file.metadata()?.len()))
    }

    /// Cuts the file back to `len` bytes (what a checkpoint recorded; what was written after
    /// it is written again as its records are read again). Nothing happens if it is shorter.
    pub fn truncate(&self, len: u64) -> std::io::Result<()> {
        let mut guard = self.file.lock();
        let Some(out) = guard.as_mut() else {
            return Ok(());
        };
        if let Err((lost, error)) = out.write_out() {
            self.report_write_error(lost, &error);
        }
        let file = &out.file;
        if file.metadata()?.len() > len {
            file.set_len(len)?;
            file.sync_data()?;
        }
        Ok(())
    }

    /// Records every bad record of a batch.
    pub fn record_all(&self, bad: &[BadRecord]) {
        for record in bad {
            self.record(record);
        }
    }

    /// How many bad records were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes buffered lines to the file.
    pub fn flush(&self) {
        if let Some(out) = self.file.lock().as_mut() {
            if let Err((lost, error)) = out.write_out() {
                self.report_write_error(lost, &error);
            }
        }
    }

    /// Bad records that could not be written to the file so far (a failed write loses the
    /// records it carried; each is counted once): shared, for a metric. Non-zero means the file
    /// misses bad records.
    pub fn write_failures(&self) -> Arc<AtomicU64> {
        self.write_failures.clone()
    }

    /// Flushes, then fails if any write failed: what a run that must account for every bad
    /// record (`batch`) checks at its end.
    pub fn finish(&self) -> Result<(), SourceError> {
        self.flush();
        let failures = self.write_failures.load(Ordering::Relaxed);
        if failures == 0 {
            return Ok(());
        }
        let path = self.path.as_deref().unwrap_or(Path::new(""));
        Err(SourceError::io(
            path,
            std::io::Error::other(format!(
                "{failures} bad record(s) could not be written: the dead-letter file misses records"
            )),
        ))
    }

    fn report_write_error(&self, lost: u64, error: &std::io::Error) {
        self.write_failures.fetch_add(lost, Ordering::Relaxed);
        if !self.write_failed.swap(true, Ordering::Relaxed) {
            let path = self.path.as_deref().map(Path::display);
            tracing::error!(path = ?path, %error, "cannot write the dead-letter output");
        }
    }
}

/// A bad record as one JSON object `{"position":…,"error":…,"record":…}` (no newline): the
/// dead-letter file's line and the dead-letter topic's message value.
pub fn json_line(bad: &BadRecord) -> Vec<u8> {
    let line = Line {
        position: &bad.position,
        error: bad.error.to_string(),
        record: &bad.raw,
    };
    serde_json::to_vec(&line).unwrap_or_default()
}

impl Drop for DeadLetter {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use topsellers_model::RecordError;

    fn bad(i: usize) -> BadRecord {
        BadRecord {
            position: format!("f.jsonl:{i}"),
            error: RecordError::MissingField("ts"),
            raw: format!("{{\"n\":{i},\"q\":\"\\\"\"}}"),
        }
    }

    #[test]
    fn counts_without_a_file() {
        let dl = DeadLetter::open(None).unwrap();
        dl.record(&bad(1));
        dl.record(&bad(2));
        assert_eq!(dl.count(), 2);
    }

    #[test]
    fn writes_json_lines_from_many_threads_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/dead.jsonl");
        {
            let dl = Arc::new(DeadLetter::open(Some(&path)).unwrap());
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let dl = dl.clone();
                    std::thread::spawn(move || {
                        for i in 0..250 {
                            dl.record(&bad(t * 1000 + i));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(dl.count(), 1000);
        } // dropped: flushed
        {
            let dl = DeadLetter::open(Some(&path)).unwrap();
            dl.record(&bad(99_999));
            dl.flush();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1001);
        let last = &lines[1000];
        assert_eq!(last["position"], "f.jsonl:99999");
        assert_eq!(last["error"], "missing required field `ts`");
        assert_eq!(last["record"], "{\"n\":99999,\"q\":\"\\\"\"}");
        let mut positions: Vec<&str> = lines
            .iter()
            .map(|l| l["position"].as_str().unwrap())
            .collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), 1001);
    }

    #[test]
    fn write_failures_are_counted_and_fail_the_finish() {
        // /dev/full accepts the open and fails every write with ENOSPC: a full disk.
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let dl = DeadLetter::open(Some(full)).unwrap();
        let failures = dl.write_failures();
        // 64 KiB of buffer: enough records that some writes reach the disk and fail.
        for i in 0..2000 {
            dl.record(&bad(i));
        }
        assert!(failures.load(Ordering::Relaxed) > 0);
        let error = dl.finish().unwrap_err().to_string();
        assert!(
            error.contains("/dev/full") && error.contains("misses records"),
            "{error}"
        );
        // Every record is counted lost exactly once (none written, none counted twice).
        assert_eq!(failures.load(Ordering::Relaxed), 2000);
        assert!(error.contains("2000 bad record(s)"), "{error}");
        dl.flush();
        assert_eq!(failures.load(Ordering::Relaxed), 2000);
        assert_eq!(dl.count(), 2000);
        // A file that takes every record finishes fine.
        let dir = tempfile::tempdir().unwrap();
        let ok = DeadLetter::open(Some(&dir.path().join("d.jsonl"))).unwrap();
        ok.record(&bad(1));
        ok.finish().unwrap();
        assert_eq!(ok.write_failures().load(Ordering::Relaxed), 0);
    }
}
