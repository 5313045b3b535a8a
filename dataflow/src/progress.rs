//! Backfill progress: a progress bar on a terminal, otherwise a log line every few seconds.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::worker::Shared;

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What there is to read.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Read units (files, or Parquet row groups).
    pub units: u64,
    /// Rows, when every unit knows its row count (Parquet); else `None`.
    pub rows: Option<u64>,
}

/// Reports progress until the backfill is done (or the run stops); returns the reporter thread.
pub fn spawn(shared: Arc<Shared>, work: Workload) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || report(&shared, work))
        .expect("spawn progress thread")
}

fn report(shared: &Shared, work: Workload) {
    let done = || shared.backfill_done.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst);
    let read = || {
        (
            shared.units_read.load(Ordering::Relaxed),
            shared.rows_read.load(Ordering::Relaxed),
        )
    };
    let started = Instant::now();
    if std::io::stderr().is_terminal() {
        let bar = match work.rows {
            Some(rows) => ProgressBar::new(rows).with_style(
                ProgressStyle::with_template(
                    "backfill {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}  files {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new(work.units).with_style(
                ProgressStyle::with_template("backfill {bar:30} {pos}/{len} files  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        };
        while !done() {
            let (units, rows) = read();
            match work.rows {
                Some(_) => {
                    bar.set_position(rows);
                    bar.set_message(format!("{units}/{}", work.units));
                }
                None => {
                    bar.set_position(units);
                    bar.set_message(format!(
                        "{} rows, {:.0} rows/s",
                        rows,
                        rows as f64 / started.elapsed().as_secs_f64()
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    } else {
        let mut last = Instant::now();
        while !done() {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() >= LOG_EVERY {
                last = Instant::now();
                let (units, rows) = read();
                let rate = rows as f64 / started.elapsed().as_secs_f64();
                let eta = work
                    .rows
                    .filter(|_| rate > 0.0)
                    .map(|total| format!(", ETA {:.0}s", total.saturating_sub(rows) as f64 / rate))
                    .unwrap_or_default();
                tracing::info!(
                    "backfill: {units}/{} files, {rows} rows, {rate:.0} rows/s{eta}",
                    work.units
                );
            }
        }
    }
    let (units, rows) = read();
    tracing::info!(
        "backfill: {units} files, {rows} rows in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
