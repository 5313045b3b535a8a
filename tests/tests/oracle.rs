//! `batch::compute` against the brute-force oracle of `topsellers-tests`, on random histories:
//! several seeds, 1, 2 and 4 workers, large and tiny batches, two profiles, k below and
//! above category sizes, the default as-of and an explicit one, and every input format.

use std::path::PathBuf;

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use topsellers_tests::{
    assert_no_problems, batch_lists, check_twins, compare, default_as_of, generate, within,
    write_parquet_numeric_ids, write_parquet_wide_types, write_parts, Fmt, Got, Params, Rec, Spec,
    DAY,
};

/// Retention of every case ("2d"): short enough that `as_of − R` falls inside the data.
const R: i64 = 2 * DAY;

struct Case {
    seed: u64,
    workers: usize,
    k: usize,
    batch_size: usize,
    explicit_as_of: bool,
    formats: &'static [Fmt],
}

fn run(case: &Case) -> Got {
    run_sized(case, 1500, 5)
}

fn run_sized(case: &Case, purchases: usize, files: usize) -> Got {
    let history = generate(&Spec::new(case.seed, purchases, R, case.explicit_as_of));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        case.formats,
        &history.records,
        files,
        case.seed,
    );
    let dead = dir.path().join("dead.jsonl");
    let params = Params::new(case.k, case.workers, case.batch_size);
    let config = params.config(&paths, &dead.display().to_string());
    let as_of = if case.explicit_as_of {
        history.anchor_ms
    } else {
        default_as_of(&history.records).unwrap()
    };
    let (summary, got) = batch_lists(
        &config,
        case.explicit_as_of.then_some(history.anchor_ms),
        &params,
    );
    let context = format!(
        "seed {} workers {} k {} batch {} as_of {} formats {:?}",
        case.seed,
        case.workers,
        case.k,
        case.batch_size,
        if case.explicit_as_of {
            "explicit"
        } else {
            "default"
        },
        case.formats
    );
    let want = params.oracle(&history.records, as_of);
    assert_eq!(summary.as_of_ms, as_of, "{context}: as_of");
    assert_eq!(summary.purchases, want.counted, "{context}: purchases");
    assert_eq!(summary.skipped, want.skipped, "{context}: skipped");
    assert_eq!(summary.bad_records, 0, "{context}: bad records");
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap_or_default(),
        "",
        "{context}: dead letters"
    );
    assert_no_problems(&compare(&got, &want, case.k, 2), &context);
    assert_no_problems(&check_twins(&got, &history.twins), &context);
    // Every category with a positive score is listed, under both profiles.
    for (profile, cat) in want.lists.keys() {
        assert!(
            got.contains_key(&(*profile, cat.clone())),
            "{context}: no list for {profile} {cat:?}"
        );
    }
    got
}

#[test]
fn default_as_of_small_k_matches_oracle() {
    for (seed, workers, batch_size) in [
        (1, 1, 50_000),
        (2, 2, 97),
        (3, 4, 13),
        (4, 2, 50_000),
        (5, 1, 7),
        (6, 4, 500),
    ] {
        run(&Case {
            seed,
            workers,
            k: 5,
            batch_size,
            explicit_as_of: false,
            formats: &[Fmt::Jsonl],
        });
    }
}

#[test]
fn explicit_as_of_large_k_matches_oracle() {
    for (seed, workers, batch_size) in [
        (11, 1, 50_000),
        (12, 2, 31),
        (13, 4, 50_000),
        (14, 4, 9),
        (15, 2, 1000),
        (16, 1, 64),
    ] {
        run(&Case {
            seed,
            workers,
            k: 1000,
            batch_size,
            explicit_as_of: true,
            formats: &[Fmt::Jsonl, Fmt::Csv],
        });
    }
}

#[test]
fn explicit_as_of_small_k_and_default_large_k() {
    for (seed, workers, k, explicit) in [
        (21, 2, 3, true),
        (22, 4, 1, true),
        (23, 1, 2, true),
        (24, 2, 1000, false),
        (25, 4, 1000, false),
    ] {
        run(&Case {
            seed,
            workers,
            k,
            batch_size: 100,
            explicit_as_of: explicit,
            formats: &[Fmt::Csv, Fmt::Jsonl],
        });
    }
}

#[test]
fn every_format_gives_the_same_lists() {
    for (seed, explicit) in [(31, false), (32, true)] {
        let mut results: Vec<(&[Fmt], Got)> = Vec::new();
        for formats in [
            &[Fmt::Jsonl][..],
            &[Fmt::Csv],
            &[Fmt::Parquet],
            &[Fmt::ParquetInt],
            &[Fmt::JsonlCrlf],
            &[Fmt::CsvReordered],
            &[
                Fmt::Jsonl,
                Fmt::Csv,
                Fmt::Parquet,
                Fmt::ParquetInt,
                Fmt::JsonlCrlf,
                Fmt::CsvReordered,
            ],
        ] {
            let got = run(&Case {
                seed,
                workers: 2,
                k: 4,
                batch_size: 200,
                explicit_as_of: explicit,
                formats,
            });
            results.push((formats, got));
        }
        let (first_formats, first) = &results[0];
        for (formats, got) in &results[1..] {
            assert_eq!(
                first.keys().collect::<Vec<_>>(),
                got.keys().collect::<Vec<_>>(),
                "seed {seed}: categories of {first_formats:?} vs {formats:?}"
            );
            for (key, items) in first {
                let other = &got[key];
                let ids =
                    |l: &[(String, f64)]| l.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
                assert_eq!(
                    ids(items),
                    ids(other),
                    "seed {seed} {key:?}: {first_formats:?} vs {formats:?}"
                );
                for ((_, a), (_, b)) in items.iter().zip(other) {
                    assert!(
                        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                        "seed {seed} {key:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// `batch_to_file` writes one line per (profile, category, rank) with the profile's name,
/// ranks from 1, and scores decayed to the as-of time; the lines match the oracle.
#[test]
fn batch_file_lines_match_oracle() {
    let seed = 41;
    let history = generate(&Spec::new(seed, 1500, R, true));
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = write_parts(
        &dir.path().join("in"),
        &[Fmt::Parquet, Fmt::Jsonl],
        &history.records,
        3,
        seed,
    );
    let params = Params::new(6, 2, 50_000);
    let config = params.config(&paths, "");
    let out = dir.path().join("out/lists.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let summary = topsellers::batch::batch_to_file(&config, Some(history.anchor_ms), &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(summary.lines, text.lines().count() as u64);
    let mut got = Got::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            fields.len(),
            5,
            "profile, category, rank, item_id, score: {line}"
        );
        let profile = params
            .half_lives
            .iter()
            .position(|(name, _)| v["profile"] == *name)
            .unwrap_or_else(|| panic!("unknown profile in {line}"));
        let items = got
            .entry((profile, v["category"].as_str().unwrap().to_owned()))
            .or_default();
        assert_eq!(
            v["rank"].as_u64(),
            Some(items.len() as u64 + 1),
            "ranks count from 1 in order: {line}"
        );
        items.push((
            v["item_id"].as_str().unwrap().to_owned(),
            v["score"].as_f64().unwrap(),
        ));
    }
    let want = params.oracle(&history.records, history.anchor_ms);
    assert_no_problems(&compare(&got, &want, params.k, 2), "batch file");
    assert_no_problems(&check_twins(&got, &history.twins), "batch file");
    let partial = dir.path().join("out/lists.jsonl.partial");
    assert!(!partial.exists(), "the temporary file is renamed");

    // A run that fails leaves the last good result in place and no temporary file.
    let broken = dir.path().join("in/broken.parquet");
    std::fs::write(&broken, b"PAR1 not really").unwrap();
    let mut with_broken = paths.clone();
    with_broken.push(broken);
    let config = params.config(&with_broken, "");
    let err = topsellers::batch::batch_to_file(&config, Some(history.anchor_ms), &out)
        .expect_err("a corrupt input fails the run");
    assert!(format!("{err:#}").contains("broken.parquet"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text, "output kept");
    assert!(!partial.exists(), "no temporary file after a failure");
}

/// A `topsellers batch` that fails while writing its output — after the temporary file
/// exists: the process may write files of at most 2 KiB (`ulimit -f`, with SIGXFSZ ignored so
/// that the write fails with an error instead of killing it) — leaves the previous output as
/// it was and no temporary file.
#[test]
fn batch_failing_mid_write_keeps_the_previous_output() {
    let seed = 43;
    let history = generate(&Spec::new(seed, 1500, R, false));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl],
        &history.records,
        2,
        seed,
    );
    let out = dir.path().join("lists.jsonl");
    let partial = dir.path().join("lists.jsonl.partial");
    let batch = |limit: &str| {
        let mut script = format!("trap '' XFSZ; {limit} exec \"$0\" batch -o \"$1\"");
        script.push_str(" --half-life 1h --half-life 7d --top 6 --retention 2d");
        script.push_str(" --workers 2 --dead-letter '' \"$2\"");
        std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(topsellers_tests::topsellers_exe())
            .arg(&out)
            .arg(dir.path().join("in"))
            .output()
            .expect("run bash")
    };
    let good = batch("");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.len() > 8 << 10,
        "{} bytes: more than the limit",
        text.len()
    );
    assert!(!paths.is_empty());

    let failed = batch("ulimit -f 2;");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "the write must fail:\n{stderr}");
    assert!(
        stderr.contains("lists.jsonl.partial"),
        "the error names the temporary file (so it failed after creating it):\n{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text, "output kept");
    assert!(!partial.exists(), "no temporary file after a failure");
}

/// Many small random cases: k from 1 up, 1 to 4 workers, batches down to one record.
#[test]
fn many_small_random_cases_match_oracle() {
    const FORMATS: &[&[Fmt]] = &[
        &[Fmt::Jsonl],
        &[Fmt::Csv, Fmt::ParquetInt],
        &[Fmt::JsonlCrlf, Fmt::CsvReordered, Fmt::Parquet],
    ];
    let mut rng = SmallRng::seed_from_u64(2024);
    for seed in 100..124 {
        let case = Case {
            seed,
            workers: rng.random_range(1..=4),
            k: [1, 2, 3, 5, 8, 1000][rng.random_range(0..6)],
            batch_size: [1, 3, 17, 50_000][rng.random_range(0..4)],
            explicit_as_of: rng.random_bool(0.5),
            formats: FORMATS[rng.random_range(0..FORMATS.len())],
        };
        let files = rng.random_range(1..=6);
        run_sized(&case, 250, files);
    }
}

/// Parquet columns are found by name and may have other types: integer item ids (kept as
/// their decimal text), dictionary-encoded or large strings, RFC 3339 text or microsecond
/// timestamps, a 32-bit quantity, or no quantity column at all (every row counts 1).
#[test]
fn parquet_column_types_match_oracle() {
    let history = generate(&Spec::new(77, 1500, R, false));
    // Numeric ids for the first file: every id mapped to a number, quantity 1.
    let mut ids: Vec<&String> = history.records.iter().map(|r| &r.item_id).collect();
    ids.sort();
    ids.dedup();
    let numeric: Vec<Rec> = history
        .records
        .iter()
        .filter(|r| r.quantity != 0)
        .step_by(2)
        .map(|r| Rec {
            item_id: (ids.binary_search(&&r.item_id).unwrap() as i64 * 7 - 20).to_string(),
            quantity: 1,
            ..r.clone()
        })
        .collect();
    let wide: Vec<Rec> = history.records.iter().skip(1).step_by(2).cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.pq"));
    write_parquet_numeric_ids(&a, &numeric);
    write_parquet_wide_types(&b, &wide);
    let mut all = numeric;
    all.extend(wide);
    for workers in [1, 2] {
        let params = Params::new(5, workers, 100);
        let config = params.config(&[a.clone(), b.clone()], "");
        let (summary, got) = batch_lists(&config, None, &params);
        let as_of = default_as_of(&all).unwrap();
        assert_eq!(summary.as_of_ms, as_of);
        assert_eq!(summary.bad_records, 0);
        let want = params.oracle(&all, as_of);
        assert_eq!(summary.purchases, want.counted);
        assert_no_problems(
            &compare(&got, &want, params.k, 2),
            &format!("parquet types, {workers} workers"),
        );
    }
}

/// Inputs without any purchase give no ranked item (and no error, and no hang).
#[test]
fn empty_inputs_give_empty_lists() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::Csv, Fmt::Parquet],
        &[],
        3,
        1,
    );
    let zero = dir.path().join("zero.jsonl");
    std::fs::write(
        &zero,
        "{\"item_id\":\"i\",\"category\":\"a\",\"ts\":1790000000000,\"quantity\":0}\n",
    )
    .unwrap();
    for as_of in [None, Some(1_790_000_000_000)] {
        let mut all = paths.clone();
        all.push(zero.clone());
        let params = Params::new(5, 2, 100);
        let config = params.config(&all, "");
        let result = within(Duration::from_secs(20), move || {
            topsellers::batch::compute(&config, as_of).map_err(|e| format!("{e:#}"))
        })
        .unwrap_or_else(|| panic!("as of {as_of:?}: no answer in 20 s"));
        let (summary, lists, _) = result.unwrap_or_else(|e| panic!("as of {as_of:?}: {e}"));
        assert_eq!(summary.purchases, 0);
        assert_eq!(summary.bad_records, 0);
        assert!(
            lists.iter().all(|l| l.items.is_empty()),
            "as of {as_of:?}: {lists:?}"
        );
    }
}
