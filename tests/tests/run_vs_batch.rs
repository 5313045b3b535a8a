//! The service (`run::start` on files, retention by retraction) serves, after the backfill,
//! the same lists as `batch::compute` (retention by pre-filtering) on the same files, and
//! both agree with the brute-force oracle.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use topsellers_tests::{
    assert_no_problems, batch_lists, compare, default_as_of, generate, served_lists_at, wait_until,
    write_parts, Fmt, Params, Spec, DAY,
};

const R: i64 = 2 * DAY;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Position by position: same scores (1e-9) and the same items, except that items whose
/// scores tie (1e-9) with a neighbour may swap.
fn same_list(served: &[(String, f64)], batch: &[(String, f64)]) -> Result<(), String> {
    if served.len() != batch.len() {
        return Err(format!(
            "{} items served, batch has {}",
            served.len(),
            batch.len()
        ));
    }
    for (pos, ((id, score), (batch_id, batch_score))) in served.iter().zip(batch).enumerate() {
        if !close(*score, *batch_score) {
            return Err(format!(
                "rank {}: score {score} vs batch {batch_score}",
                pos + 1
            ));
        }
        let tied =
            |other: Option<&(String, f64)>| other.is_some_and(|(_, s)| close(*s, *batch_score));
        let tie = tied(pos.checked_sub(1).and_then(|p| batch.get(p))) || tied(batch.get(pos + 1));
        if id != batch_id && !tie {
            return Err(format!("rank {}: {id:?} vs batch {batch_id:?}", pos + 1));
        }
    }
    Ok(())
}

fn run_vs_batch(seed: u64, workers: usize, k: usize, batch_size: usize) {
    run_vs_batch_sized(seed, workers, k, batch_size, 2000);
}

fn run_vs_batch_sized(seed: u64, workers: usize, k: usize, batch_size: usize, purchases: usize) {
    let history = generate(&Spec::new(seed, purchases, R, false));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::ParquetInt, Fmt::Csv],
        &history.records,
        5,
        seed,
    );
    let params = Params::new(k, workers, batch_size);
    let config = params.config(&paths, "");
    let context = format!("seed {seed} workers {workers} k {k} batch {batch_size}");

    let (summary, batch) = batch_lists(&config, None, &params);
    let until = default_as_of(&history.records).unwrap();
    assert_eq!(summary.as_of_ms, until, "{context}");

    let service = topsellers::run::start(&config).expect("start");
    let published = wait_until(Duration::from_secs(30), || {
        service.table.published_time_ms() == Some(until)
    });
    assert!(
        published,
        "{context}: backfill snapshot not published in 30 s"
    );
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    let served =
        served_lists_at(service.addr, &names, until).unwrap_or_else(|e| panic!("{context}: {e}"));
    service.stop();
    service.shutdown().expect("shutdown");

    let mut problems = Vec::new();
    for (key, list) in &batch {
        match served.get(key) {
            None => problems.push(format!("{key:?}: in batch, not served")),
            Some(items) => {
                if let Err(e) = same_list(items, list) {
                    problems.push(format!("{key:?}: {e}\n served {items:?}\n batch  {list:?}"));
                }
            }
        }
    }
    for (key, items) in &served {
        if !batch.contains_key(key) && !items.is_empty() {
            problems.push(format!("{key:?}: served {items:?}, absent from batch"));
        }
    }
    assert_no_problems(&problems, &format!("{context}: served vs batch"));
    let want = params.oracle(&history.records, until);
    assert_no_problems(
        &compare(&served, &want, k, 2),
        &format!("{context}: served vs oracle"),
    );
}

#[test]
fn one_worker_serves_what_batch_computes() {
    run_vs_batch(61, 1, 4, 50_000);
    run_vs_batch(62, 1, 1000, 41);
}

#[test]
fn two_workers_serve_what_batch_computes() {
    run_vs_batch(63, 2, 4, 50_000);
    run_vs_batch(64, 2, 1000, 53);
    run_vs_batch(65, 2, 2, 7);
}

#[test]
fn small_random_services_serve_what_batch_computes() {
    let mut rng = SmallRng::seed_from_u64(7);
    for seed in 200..208 {
        let workers = rng.random_range(1..=3);
        let k = [1, 2, 3, 1000][rng.random_range(0..4)];
        let batch_size = [1, 5, 50_000][rng.random_range(0..3)];
        run_vs_batch_sized(seed, workers, k, batch_size, 300);
    }
}
