//! The publisher thread: applies snapshots, in order, to the serving table and changelog.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use topsellers_model::{wall_clock_ms, Snapshot};

use crate::changelog::Changelog;
use crate::duty::Duty;
use crate::metrics::Metrics;
use crate::table::ServingTable;

/// What a publisher did before its channel closed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Snapshots applied.
    pub snapshots: u64,
    /// Time of the last snapshot applied, epoch ms.
    pub last_time_ms: Option<i64>,
    /// Whether the changelog failed (it is closed at the first write error).
    pub changelog_failed: bool,
}

/// Most queued snapshots applied to the table in one go.
const MAX_BATCH: usize = 256;

/// Applies snapshots from `rx` in order until every sender is gone; meant for a dedicated
/// thread. Snapshots arriving within the table's publish interval of the last publish, and
/// those already queued, are taken along (up to 256) and applied
/// to the table as one ([`ServingTable::apply_many`]); each is then written to the changelog
/// (dropped at its first write error, which is logged); last, `snapshots_total`,
/// `watermark_ms` and `last_publish_wall_ms` are updated, and `served` is set to the time of
/// the last snapshot applied: what `/v1/top` serves from now on (a Kafka source commits offsets
/// up to it).
pub fn run_publisher(
    rx: Receiver<Snapshot>,
    table: Arc<ServingTable>,
    mut changelog: Option<Changelog>,
    metrics: Arc<Metrics>,
    served: Arc<AtomicI64>,
) -> PublishSummary {
    let mut summary = PublishSummary::default();
    let mut interval = table.publish_interval();
    let mut last_publish: Option<Instant> = None;
    let mut duty = Duty::default();
    let flips = table
        .availability()
        .map(|availability| availability.changes());
    loop {
        let first = match &flips {
            None => rx.recv(),
            Some(flips) => crossbeam_channel::select! {
                recv(rx) -> snapshot => snapshot,
                recv(flips) -> items => {
                    if let Ok(items) = items {
                        apply_flips(&table, items, flips, &mut changelog, &mut summary);
                    }
                    continue;
                }
            },
        };
        let Ok(first) = first else { break };
        let mut batch = vec![first];
        // Gather what arrives until the publish interval is over, so each list is rendered
        // once per interval however many snapshots changed it.
        if let Some(deadline) = last_publish.map(|at| at + interval) {
            while batch.len() < MAX_BATCH {
                match rx.recv_deadline(deadline) {
                    Ok(snapshot) => batch.push(snapshot),
                    Err(_) => break,
                }
            }
        }
        batch.extend(rx.try_iter().take(MAX_BATCH.saturating_sub(batch.len())));
        failpoint_hold();
        let started = Instant::now();
        duty.publishing();
        table.apply_many(&batch);
        // Rendering never takes more than a sixth of a core from busy workers (see `duty`).
        interval = duty.interval(table.publish_interval());
        last_publish = Some(started);
        for snapshot in &batch {
            if changelog.is_some() {
                let shown = table.shown_snapshot(snapshot);
                write_changelog(&mut changelog, &shown, &table, &mut summary);
            }
        }
        let last = batch.last().map_or(i64::MIN, |snapshot| snapshot.time_ms);
        metrics.add_snapshots(batch.len() as u64);
        metrics.set_watermark_ms(last);
        metrics.set_last_publish_wall_ms(wall_clock_ms());
        served.fetch_max(last, Ordering::SeqCst);
        summary.snapshots += batch.len() as u64;
        summary.last_time_ms = Some(last);
        tracing::debug!(time_ms = last, snapshots = batch.len(), "published");
    }
    summary
}

/// Writes `snapshot` to the changelog, if it is still open; closes it at a write error.
fn write_changelog(
    changelog: &mut Option<Changelog>,
    snapshot: &Snapshot,
    table: &ServingTable,
    summary: &mut PublishSummary,
) {
    if let Some(log) = changelog.as_mut() {
        if let Err(error) = log.write_snapshot(snapshot, table.profiles()) {
            tracing::error!(%error, "writing the changelog failed; it is closed");
            *changelog = None;
            summary.changelog_failed = true;
        }
    }
}

/// Re-renders the lists holding items whose availability changed (`items`, and whatever else
/// is queued on `flips`), and writes the lists whose shown items changed to the changelog, at
/// the time of the last snapshot served.
fn apply_flips(
    table: &ServingTable,
    mut items: Vec<std::sync::Arc<str>>,
    flips: &Receiver<Vec<std::sync::Arc<str>>>,
    changelog: &mut Option<Changelog>,
    summary: &mut PublishSummary,
) {
    items.extend(flips.try_iter().flatten());
    let lists = table.availability_changed(&items);
    if let (false, Some(time_ms)) = (lists.is_empty(), table.published_time_ms()) {
        let snapshot = Snapshot {
            time_ms,
            lists,
            whole: false,
        };
        write_changelog(changelog, &snapshot, table, summary);
    }
}

/// For tests that must see a snapshot handed on but not yet served: with
/// `TOPSELLERS_FAILPOINT_PUBLISH_HOLD=FILE` set, the publisher waits before applying while
/// FILE exists.
fn failpoint_hold() {
    static HOLD: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let hold =
        HOLD.get_or_init(|| std::env::var_os("TOPSELLERS_FAILPOINT_PUBLISH_HOLD").map(Into::into));
    if let Some(file) = hold {
        while file.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableConfig;
    use crate::test_util::{list, profiles, snapshot};
    use std::io::{self, Write};

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
        }
    }

    #[test]
    fn applies_in_order_until_disconnected() {
        let table = Arc::new(ServingTable::new(profiles(), 10, TableConfig::default()));
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = crossbeam_channel::bounded(4);
        let served = Arc::new(AtomicI64::new(i64::MIN));
        let thread = {
            let (table, metrics, served) = (table.clone(), metrics.clone(), served.clone());
            std::thread::spawn(move || {
                run_publisher(
                    rx,
                    table,
                    Some(Changelog::to_writer(Broken)),
                    metrics,
                    served,
                )
            })
        };
        for step in 0..10 {
            tx.send(snapshot(
                step * 1000,
                vec![list(0, "a", &[(&format!("i{step}"), 1)])],
            ))
            .unwrap();
        }
        drop(tx);
        let summary = thread.join().unwrap();
        assert_eq!(
            summary,
            PublishSummary {
                snapshots: 10,
                last_time_ms: Some(9000),
                changelog_failed: true
            }
        );
        assert_eq!(table.published_time_ms(), Some(9000));
        assert_eq!(served.load(Ordering::SeqCst), 9000);
        assert_eq!(&*table.current_items(0, "a").unwrap()[0].0, "i9");
        assert_eq!(metrics.snapshots_total(), 10);
        assert_eq!(metrics.watermark_ms(), Some(9000));
        assert!(metrics.last_publish_wall_ms().unwrap() > 1_600_000_000_000);
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The changelog's (op, rank, item) lines so far.
    fn ops(out: &Shared) -> Vec<(String, u64, String)> {
        String::from_utf8(out.0.lock().clone())
            .unwrap()
            .lines()
            .map(|line| {
                let doc: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    doc["op"].as_str().unwrap().to_owned(),
                    doc["rank"].as_u64().unwrap(),
                    doc["item_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// A flip re-renders the lists holding the item, and the changelog records what they show
    /// now (the next candidate moves up; a restock puts the item back).
    #[test]
    fn availability_flips_reach_the_table_and_the_changelog() {
        let availability = Arc::new(crate::Availability::new());
        let table = Arc::new(
            ServingTable::new(profiles(), 2, TableConfig::default())
                .with_availability(availability.clone()),
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let out = Shared::default();
        let thread = {
            let (table, out) = (table.clone(), out.clone());
            let served = Arc::new(AtomicI64::new(i64::MIN));
            std::thread::spawn(move || {
                let log = Some(Changelog::to_writer(out));
                run_publisher(rx, table, log, Arc::new(Metrics::new()), served)
            })
        };
        let ids = |table: &ServingTable| -> Vec<String> {
            let items = table.current_items(0, "a").unwrap_or_default();
            items.into_iter().map(|(id, _)| id.to_string()).collect()
        };
        let wait = |table: &ServingTable, want: &[&str]| {
            for _ in 0..2_000 {
                if ids(table) == want {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            panic!("{:?}, want {want:?}", ids(table));
        };
        tx.send(snapshot(
            1000,
            vec![list(0, "a", &[("x", 3), ("y", 2), ("z", 1)])],
        ))
        .unwrap();
        wait(&table, &["x", "y"]);
        availability.apply([("x", false, 1)]);
        wait(&table, &["y", "z"]);
        availability.apply([("x", true, 2)]);
        wait(&table, &["x", "y"]);
        drop(tx);
        thread.join().unwrap();
        let op = |op: &str, rank, item: &str| (op.to_owned(), rank, item.to_owned());
        assert_eq!(
            ops(&out),
            [
                op("insert", 1, "x"),
                op("insert", 2, "y"),
                op("remove", 1, "x"),
                op("remove", 2, "y"),
                op("insert", 1, "y"),
                op("insert", 2, "z"),
                op("remove", 1, "y"),
                op("remove", 2, "z"),
                op("insert", 1, "x"),
                op("insert", 2, "y"),
            ]
        );
    }

    #[test]
    fn empty_channel() {
        let table = Arc::new(ServingTable::new(profiles(), 10, TableConfig::default()));
        let (tx, rx) = crossbeam_channel::unbounded::<Snapshot>();
        drop(tx);
        let served = Arc::new(AtomicI64::new(i64::MIN));
        let summary = run_publisher(rx, table, None, Arc::new(Metrics::new()), served.clone());
        assert_eq!(served.load(Ordering::SeqCst), i64::MIN);
        assert_eq!(summary, PublishSummary::default());
    }
}
