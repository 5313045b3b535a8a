//! The data lake: the same lists from local Parquet, S3 Parquet, CSV and JSON Lines copies of
//! one history (S3 on a real S3-compatible server on loopback), hive partitions, pruning that
//! skips files and row groups without changing any list, the service backfilling from S3, and
//! errors and bad records that name the object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use topsellers::Config;
use topsellers_tests::s3::{self, TestBucket};
use topsellers_tests::{
    assert_no_problems, batch_lists, compare, default_as_of, generate, http, metric, same_lists,
    served_lists_at, topsellers_exe, wait_until, write_file, write_hive_parquet, write_parts, Fmt,
    Got, History, Params, Rec, Spec, DAY,
};

/// Retention of every case ("2d"); histories span three days before their latest purchase.
const R: i64 = 2 * DAY;

/// A config reading `inputs` (paths or `s3://` URLs) from the test S3 server.
fn lake_config(params: &Params, inputs: &[String], dead_letter: &str, prune: bool) -> Config {
    let paths: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
    let mut config = params.config(&paths, dead_letter);
    config.lake.s3.endpoint = s3::endpoint();
    config.lake.prune = prune;
    config
}

/// Runs batch on `inputs` and checks it against the oracle; returns the summary and lists.
fn batch_matches_oracle(
    history: &History,
    params: &Params,
    inputs: &[String],
    prune: bool,
    what: &str,
) -> (topsellers::batch::BatchSummary, Got) {
    let config = lake_config(params, inputs, "", prune);
    let (summary, got) = batch_lists(&config, None, params);
    agrees_with_oracle(history, params, &summary, &got, what);
    (summary, got)
}

/// Checks batch's summary and lists against the oracle.
fn agrees_with_oracle(
    history: &History,
    params: &Params,
    summary: &topsellers::batch::BatchSummary,
    got: &Got,
    what: &str,
) {
    let as_of = default_as_of(&history.records).unwrap();
    let want = params.oracle(&history.records, as_of);
    assert_eq!(summary.as_of_ms, as_of, "{what}: as_of");
    assert_eq!(summary.purchases, want.counted, "{what}: purchases counted");
    assert_eq!(summary.bad_records, 0, "{what}: bad records");
    assert_no_problems(&compare(got, &want, params.k, 2), what);
}

/// Item ids per (profile, category) list.
type Ids = BTreeMap<(usize, String), Vec<String>>;

/// Item ids per list, for comparing two runs' lists with each other.
fn ids(got: &Got) -> Ids {
    got.iter()
        .map(|(key, items)| {
            (
                key.clone(),
                items.iter().map(|(id, _)| id.clone()).collect(),
            )
        })
        .collect()
}

/// Writes `recs` as JSON Lines in `dt=YYYY-MM-DD/` folders, one file per UTC day.
fn write_days_jsonl(dir: &Path, recs: &[Rec]) -> usize {
    let mut days: BTreeMap<i64, Vec<Rec>> = BTreeMap::new();
    for rec in recs {
        days.entry(rec.ts.div_euclid(DAY))
            .or_default()
            .push(rec.clone());
    }
    for (day, recs) in &days {
        let (y, m, d) = topsellers_tests::civil_from_days(*day);
        let folder = dir.join(format!("dt={y:04}-{m:02}-{d:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        write_file(&folder.join("part-0.jsonl"), Fmt::Jsonl, recs, *day as u64);
    }
    days.len()
}

#[test]
fn same_lists_from_local_parquet_s3_parquet_csv_and_jsonl() {
    let history = generate(&Spec::new(71, 2500, R, false));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, formats: &[Fmt]| {
        let folder = dir.path().join(name);
        write_parts(&folder, formats, &history.records, 4, 71);
        folder
    };
    let parquet = write("parquet", &[Fmt::ParquetInt, Fmt::Parquet]);
    let csv = write("csv", &[Fmt::Csv, Fmt::CsvReordered]);
    let jsonl = write("jsonl", &[Fmt::Jsonl, Fmt::JsonlCrlf]);
    let bucket = TestBucket::create();
    bucket.put_dir(&parquet, "parquet");
    bucket.put_dir(&csv, "text/csv");
    bucket.put_dir(&jsonl, "text/jsonl");

    let params = Params::new(5, 2, 997);
    let local = |p: &Path| p.display().to_string();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("local parquet", vec![local(&parquet)]),
        ("s3 parquet", vec![bucket.url("parquet")]),
        ("local csv", vec![local(&csv)]),
        ("local jsonl", vec![local(&jsonl)]),
        ("s3 csv", vec![bucket.url("text/csv")]),
        ("s3 jsonl", vec![bucket.url("text/jsonl")]),
        (
            "s3 objects named one by one",
            vec![
                bucket.url("text/csv/part-0.csv"),
                bucket.url("text/csv/part-1.csv"),
                bucket.url("text/csv/part-2.csv"),
                bucket.url("text/csv/part-3.csv"),
            ],
        ),
    ];
    // Every source gives the first one's lists (items swapped only where their scores tie),
    // and the oracle's.
    let mut first: Option<(&str, Got)> = None;
    for (what, inputs) in &cases {
        let (summary, got) = batch_lists(&lake_config(&params, inputs, "", true), None, &params);
        match &first {
            None => first = Some((what, got.clone())),
            Some((name, lists)) => {
                assert_no_problems(&same_lists(&got, lists), &format!("{what} vs {name}"))
            }
        }
        agrees_with_oracle(&history, &params, &summary, &got, what);
    }
}

#[test]
fn pruning_skips_files_and_row_groups_and_changes_no_list() {
    let history = generate(&Spec::new(72, 3000, R, false));
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let layout = write_hive_parquet(&lake, &history.records, 4);
    assert!(layout.without_category_column > 0 && layout.files > 20);
    let days = dir.path().join("days");
    assert!(write_days_jsonl(&days, &history.records) >= 4);
    let bucket = TestBucket::create();
    bucket.put_dir(&lake, "lake");

    let params = Params::new(4, 2, 50_000);
    for (what, inputs) in [
        ("local hive parquet", vec![lake.display().to_string()]),
        ("s3 hive parquet", vec![bucket.url("lake")]),
        ("local dt= jsonl", vec![days.display().to_string()]),
    ] {
        let (pruned, with) =
            batch_matches_oracle(&history, &params, &inputs, true, &format!("{what}, pruned"));
        let (full, without) = batch_matches_oracle(
            &history,
            &params,
            &inputs,
            false,
            &format!("{what}, not pruned"),
        );
        assert_eq!(ids(&with), ids(&without), "{what}: pruning changed a list");
        assert_eq!(full.pruned, Default::default(), "{what}: prune = false");
        let p = pruned.pruned;
        assert!(p.files > 0 && p.by_partition > 0, "{what}: {p:?}");
        assert!(
            pruned.skipped < full.skipped,
            "{what}: pruned units were read: {pruned:?} vs {full:?}"
        );
        if what.contains("parquet") {
            // Row groups inside the boundary day's files, by their statistics.
            assert!(p.row_groups > 0 && p.by_statistics > 0, "{what}: {p:?}");
            assert!(p.rows > 0, "{what}: {p:?}");
        }
    }
}

#[test]
fn service_backfills_from_s3_counts_every_row_and_turns_ready() {
    let history = generate(&Spec::new(73, 2000, R, false));
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    write_hive_parquet(&lake, &history.records, 16);
    let bucket = TestBucket::create();
    bucket.put_dir(&lake, "purchases");

    let params = Params::new(6, 2, 101);
    let config = lake_config(&params, &[bucket.url("purchases")], "", true);
    let until = default_as_of(&history.records).unwrap();
    let service = topsellers::run::start(&config).expect("start");
    // Progress while the backfill runs: tests/tests/backfill_progress.rs (held mid-way).
    service
        .wait_ready(Duration::from_secs(60))
        .expect("ready after the backfill");
    let ready = http(service.addr, "GET", "/readyz", &[]);
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(wait_until(Duration::from_secs(30), || {
        service.table.published_time_ms() == Some(until)
    }));
    let names: Vec<&str> = params.half_lives.iter().map(|(name, _)| *name).collect();
    let served = served_lists_at(service.addr, &names, until).expect("served lists");
    let metrics = http(service.addr, "GET", "/metrics", &[]).text();
    service.stop();
    service.shutdown().expect("shutdown");

    let want = params.oracle(&history.records, until);
    assert_no_problems(&compare(&served, &want, params.k, 2), "served from s3");
    let value = |name: &str| metric(&metrics, name).unwrap_or_else(|| panic!("{name}:\n{metrics}"));
    assert!(value("topsellers_backfill_pruned_files_total") > 0.0);
    assert!(value("topsellers_backfill_pruned_row_groups_total") > 0.0);
    let total = value("topsellers_backfill_rows_planned");
    assert!(total > 0.0);
    assert_eq!(value("topsellers_backfill_rows_read"), total, "{metrics}");
}

#[test]
fn bad_records_and_errors_name_the_object() {
    let bucket = TestBucket::create();
    let mut csv = String::from("item_id,category,ts,quantity\n");
    for line in 2..=20_i64 {
        if line == 17 {
            csv.push_str("a,books//x,1700000000000,1\n");
        } else {
            csv.push_str(&format!("i{line},books,{},1\n", 1_700_000_000_000 + line));
        }
    }
    bucket.put("bad/x.csv", csv.into_bytes());
    bucket.put(
        "bad/y.jsonl",
        b"{\"item_id\":\"a\",\"category\":\"b\",\"ts\":5}\n\n{\"item_id\":7}\n".to_vec(),
    );
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let params = Params::new(3, 1, 50_000);
    let config = lake_config(
        &params,
        &[bucket.url("bad")],
        &dead.display().to_string(),
        true,
    );
    let (summary, _) = batch_lists(&config, None, &params);
    assert_eq!(summary.bad_records, 2);
    let text = std::fs::read_to_string(&dead).unwrap();
    let positions: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        positions,
        [bucket.url("bad/x.csv:17"), bucket.url("bad/y.jsonl:3")],
        "{text}"
    );

    for (input, expect) in [
        (bucket.url("nothing/here"), bucket.url("nothing/here")),
        (bucket.url("bad/x.txt"), bucket.url("bad/x.txt")),
    ] {
        if input.ends_with(".txt") {
            bucket.put("bad/x.txt", b"?".to_vec());
        }
        let config = lake_config(&params, std::slice::from_ref(&input), "", true);
        let err = topsellers::batch::compute(&config, None).expect_err("must fail");
        let message = format!("{err:#}");
        assert!(message.contains(&expect), "{input}: {message}");
    }
    // A Parquet object that is not Parquet: the footer error names the object.
    bucket.put("broken/p.parquet", b"PAR1 not really".to_vec());
    let config = lake_config(&params, &[bucket.url("broken")], "", true);
    let message = format!(
        "{:#}",
        topsellers::batch::compute(&config, None).expect_err("corrupt")
    );
    assert!(
        message.contains(&bucket.url("broken/p.parquet")),
        "{message}"
    );
}

#[test]
fn cli_batch_reads_s3_with_the_endpoint_from_the_environment() {
    let history = generate(&Spec::new(74, 1200, R, false));
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    write_hive_parquet(&lake, &history.records, 32);
    let bucket = TestBucket::create();
    bucket.put_dir(&lake, "p");
    let out = dir.path().join("lists.jsonl");
    let output = std::process::Command::new(topsellers_exe())
        .args(["batch", &bucket.url("p"), "-o"])
        .arg(&out)
        .args(["--half-life", "1h", "--half-life", "7d", "--top", "5"])
        .args(["--retention", "2d", "--workers", "2", "--dead-letter", ""])
        .env("AWS_ENDPOINT_URL", s3::endpoint())
        .envs(s3::credentials())
        .env("RUST_LOG", "info")
        .output()
        .expect("run topsellers batch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("pruned"),
        "a log line says what was pruned:\n{stderr}"
    );
    let params = Params::new(5, 2, 50_000);
    let mut got = Got::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let profile = params
            .half_lives
            .iter()
            .position(|(name, _)| v["profile"] == *name)
            .unwrap();
        got.entry((profile, v["category"].as_str().unwrap().to_owned()))
            .or_default()
            .push((
                v["item_id"].as_str().unwrap().to_owned(),
                v["score"].as_f64().unwrap(),
            ));
    }
    let want = params.oracle(&history.records, default_as_of(&history.records).unwrap());
    assert_no_problems(&compare(&got, &want, 5, 2), "cli batch from s3");
}
