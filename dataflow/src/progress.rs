//! Backfill progress: counted by the workers, shown as a progress bar on a terminal, otherwise
//! a log line every few seconds; the same numbers in one line for `/readyz`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use topsellers_sources::ReadUnit;

use crate::stop::Stop;

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What there is to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Read units (files, or Parquet row groups).
    pub units: u64,
    /// Files.
    pub files: u64,
    /// Rows, when every unit knows its row count (Parquet); else `None`.
    pub rows: Option<u64>,
    /// Bytes: of the text files, and compressed bytes of the Parquet row groups.
    pub bytes: u64,
}

/// How far the backfill of one process is: counted by its workers, read by the progress
/// reporter, `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct BackfillProgress {
    /// Units (files, Parquet row groups) read.
    units_read: AtomicU64,
    /// Files whose every unit has been read.
    files_read: AtomicU64,
    /// Units left per file (by path or URL), to count files done.
    units_left: Mutex<HashMap<String, u64>>,
    /// Rows read (valid, bad and ignored).
    rows_read: AtomicU64,
    /// Bytes read: of text files as they are read, of Parquet row groups once each is done.
    bytes_read: AtomicU64,
    /// Purchases outside the backfill's time window (expired, or owned by Kafka), skipped.
    skipped: Arc<AtomicU64>,
    /// Set once the backfill's snapshot is handed on (or there is no backfill).
    done: AtomicBool,
}

impl BackfillProgress {
    /// Counts the units of each file, so that [`BackfillProgress::unit_done`] can tell when a
    /// file is.
    pub fn expect_units(&self, units: &[ReadUnit]) {
        let mut left = self.units_left.lock();
        for unit in units {
            *left.entry(unit.location.to_string()).or_default() += 1;
        }
    }

    /// Counts one unit read (and its file, if it was the file's last unit); `rest_bytes` are
    /// the unit's bytes not counted yet as it was read.
    pub fn unit_done(&self, unit: &ReadUnit, rest_bytes: u64) {
        self.bytes_read.fetch_add(rest_bytes, Ordering::Relaxed);
        self.units_read.fetch_add(1, Ordering::Relaxed);
        let mut left = self.units_left.lock();
        if let Some(count) = left.get_mut(&unit.location.to_string()) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.files_read.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts rows and bytes read, and purchases skipped (outside the window).
    pub fn add(&self, rows: u64, bytes: u64, skipped: u64) {
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Purchases skipped so far (a counter `/metrics` reads).
    pub fn skipped(&self) -> &Arc<AtomicU64> {
        &self.skipped
    }

    /// The backfill's snapshot is handed on (or there is none).
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    /// Whether [`BackfillProgress::finish`] was called.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// A moment's reading of [`BackfillProgress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Done {
    files: u64,
    rows: u64,
    bytes: u64,
}

impl Done {
    fn of(progress: &BackfillProgress) -> Done {
        Done {
            files: progress.files_read.load(Ordering::Relaxed),
            rows: progress.rows_read.load(Ordering::Relaxed),
            bytes: progress.bytes_read.load(Ordering::Relaxed),
        }
    }

    /// The share done: by rows when the total is known, else by bytes.
    fn fraction(&self, work: Workload) -> Option<f64> {
        match work.rows {
            Some(total) if total > 0 => Some(self.rows as f64 / total as f64),
            _ if work.bytes > 0 => Some(self.bytes as f64 / work.bytes as f64),
            _ => None,
        }
    }
}

/// One line of progress: `backfill: 1,234,567/5,000,000 rows (24.7%), 3/12 files, 120 MiB/400 MiB`
/// (rows of a total when every unit knows its rows; else rows read and bytes of a total).
pub fn describe(progress: &BackfillProgress, work: Workload) -> String {
    line(Done::of(progress), work, None)
}

fn line(done: Done, work: Workload, elapsed: Option<Duration>) -> String {
    let mut text = match work.rows {
        Some(total) => format!(
            "backfill: {}/{} rows",
            HumanCount(done.rows),
            HumanCount(total)
        ),
        None => format!("backfill: {} rows", HumanCount(done.rows)),
    };
    if let Some(fraction) = done.fraction(work) {
        text.push_str(&format!(" ({:.1}%)", 100.0 * fraction.min(1.0)));
    }
    text.push_str(&format!(
        ", {}/{} files, {}/{}",
        done.files,
        work.files,
        HumanBytes(done.bytes),
        HumanBytes(work.bytes)
    ));
    if let Some(elapsed) = elapsed.filter(|e| !e.is_zero()) {
        let rate = done.rows as f64 / elapsed.as_secs_f64();
        text.push_str(&format!(", {} rows/s", HumanCount(rate as u64)));
        if let Some(fraction) = done.fraction(work).filter(|f| *f > 0.0) {
            let left = elapsed.as_secs_f64() * (1.0 - fraction.min(1.0)) / fraction;
            text.push_str(&format!(", ETA {left:.0}s"));
        }
    }
    text
}

/// Reports progress until the backfill is done (or the run stops); returns the reporter thread.
pub fn spawn(
    progress: Arc<BackfillProgress>,
    work: Workload,
    stop: Stop,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || report(&progress, work, &stop))
}

/// The bar: over rows when every unit knows its rows, else over bytes.
fn bar(work: Workload) -> ProgressBar {
    let (len, template) = match work.rows {
        Some(rows) => (
            rows,
            "backfill {bar:30} {human_pos}/{human_len} rows  ETA {eta}  {msg}",
        ),
        None => (
            work.bytes,
            "backfill {bar:30} {binary_bytes}/{binary_total_bytes}  ETA {eta}  {msg}",
        ),
    };
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// How often the bar is redrawn (and the log line's time checked).
const TICK: Duration = Duration::from_millis(100);

fn report(progress: &BackfillProgress, work: Workload, stop: &Stop) {
    // Waits one tick (returning at once on a stop); whether to go on.
    let tick = || !stop.wait_timeout(TICK) && !progress.is_done();
    let started = Instant::now();
    if std::io::stderr().is_terminal() {
        let bar = bar(work);
        while tick() {
            let done = Done::of(progress);
            let rate = done.rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
            match work.rows {
                Some(_) => {
                    bar.set_position(done.rows);
                    bar.set_message(format!(
                        "{} rows/s  files {}/{}",
                        HumanCount(rate as u64),
                        done.files,
                        work.files
                    ));
                }
                None => {
                    bar.set_position(done.bytes);
                    bar.set_message(format!(
                        "{} rows  {} rows/s  files {}/{}",
                        HumanCount(done.rows),
                        HumanCount(rate as u64),
                        done.files,
                        work.files
                    ));
                }
            }
        }
        bar.finish_and_clear();
    } else {
        let mut last = Instant::now();
        while tick() {
            if last.elapsed() >= LOG_EVERY {
                last = Instant::now();
                tracing::info!(
                    "{}",
                    line(Done::of(progress), work, Some(started.elapsed()))
                );
            }
        }
    }
    let done = Done::of(progress);
    tracing::info!(
        "backfill: {} files, {} rows, {} in {:.1}s",
        done.files,
        done.rows,
        HumanBytes(done.bytes),
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_by_rows_or_by_bytes() {
        let done = Done {
            files: 3,
            rows: 250,
            bytes: 1024,
        };
        let parquet = Workload {
            units: 40,
            files: 12,
            rows: Some(1000),
            bytes: 4096,
        };
        assert_eq!(
            line(done, parquet, None),
            "backfill: 250/1,000 rows (25.0%), 3/12 files, 1.00 KiB/4.00 KiB"
        );
        let text = Workload {
            rows: None,
            bytes: 2048,
            ..parquet
        };
        assert_eq!(
            line(done, text, Some(Duration::from_secs(10))),
            "backfill: 250 rows (50.0%), 3/12 files, 1.00 KiB/2.00 KiB, 25 rows/s, ETA 10s"
        );
        let empty = Workload {
            units: 0,
            files: 0,
            rows: None,
            bytes: 0,
        };
        assert_eq!(
            line(Done::default(), empty, Some(Duration::from_secs(1))),
            "backfill: 0 rows, 0/0 files, 0 B/0 B, 0 rows/s"
        );
    }
}
