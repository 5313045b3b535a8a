//! `topsellers batch` gives the lists of an independent SQL implementation of the contract:
//! DuckDB running `../shared/bench/duckdb_topsellers.py` (the benchmark's reference) on the same
//! Parquet files, per profile, at an explicit as-of and at the default one; both also agree
//! with the brute-force oracle.
//!
//! The python with DuckDB comes from `TOPSELLERS_DUCKDB_PYTHON` (set by `./scripts/test`), else
//! from `scripts/duckdb-python`, which installs it into `.tools/` on first use. Only if that
//! cannot be done (no PyPI) is the test skipped, saying so loudly on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;

use topsellers_tests::{
    assert_no_problems, compare, default_as_of, generate, same_lists, topsellers_exe, write_parts,
    Fmt, Got, Params, Spec, DAY,
};

const K: usize = 5;
const R: i64 = 2 * DAY;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A python that can `import duckdb`, or why there is none.
fn duckdb_python() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TOPSELLERS_DUCKDB_PYTHON") {
        return Ok(path.into());
    }
    let out = Command::new(repo().join("scripts/duckdb-python"))
        .output()
        .map_err(|e| format!("scripts/duckdb-python: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(PathBuf::from(
        String::from_utf8(out.stdout).expect("utf-8").trim(),
    ))
}

/// JSON Lines of (profile, category, rank, item_id, score) as lists; ranks must count from 1.
fn lists(path: &Path, params: &Params) -> Got {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut got = Got::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let profile = params
            .half_lives
            .iter()
            .position(|(name, _)| v["profile"] == *name)
            .unwrap_or_else(|| panic!("unknown profile: {line}"));
        let items = got
            .entry((
                profile,
                v["category"].as_str().expect("category").to_owned(),
            ))
            .or_default();
        assert_eq!(v["rank"].as_u64(), Some(items.len() as u64 + 1), "{line}");
        items.push((
            v["item_id"].as_str().expect("item_id").to_owned(),
            v["score"].as_f64().expect("score"),
        ));
    }
    got
}

/// Runs `command`, panicking with its stderr if it fails.
fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn batch_gives_duckdbs_lists() {
    let python = match duckdb_python() {
        Ok(python) => python,
        Err(why) => {
            eprintln!(
                "\n**********\nSKIPPED batch_gives_duckdbs_lists: DuckDB cannot be installed:\n\
                 {why}\n**********\n"
            );
            return;
        }
    };
    // The shared reference beside the repository where it is there (a checkout in the
    // workplace), else the copy of it kept in `bench/reference/` (a clean clone elsewhere).
    let shared = repo().join("../shared/bench/duckdb_topsellers.py");
    let reference = if shared.exists() {
        shared
    } else {
        repo().join("bench/reference/duckdb_topsellers.py")
    };
    assert!(reference.exists(), "{reference:?} is missing");
    let params = Params::new(K, 2, 50_000);
    for (seed, format, explicit) in [(95, Fmt::ParquetInt, true), (96, Fmt::Parquet, false)] {
        let history = generate(&Spec::new(seed, 3000, R, explicit));
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        write_parts(&input, &[format], &history.records, 4, seed);
        let as_of = if explicit {
            history.anchor_ms
        } else {
            default_as_of(&history.records).unwrap()
        };
        let context = format!("seed {seed} {format:?} as of {as_of} (explicit: {explicit})");

        let ours = dir.path().join("ours.jsonl");
        let mut batch = Command::new(topsellers_exe());
        batch
            .arg("batch")
            .arg(&input)
            .arg("-o")
            .arg(&ours)
            .args(params.scoring_flags())
            .args(["--workers", "2", "--dead-letter", ""]);
        if explicit {
            batch.args(["--as-of", &as_of.to_string()]);
        }
        run(&mut batch, &format!("{context}: topsellers batch"));

        let mut theirs = String::new();
        for (name, _) in &params.half_lives {
            let out = dir.path().join(format!("duckdb-{name}.jsonl"));
            let mut duckdb = Command::new(&python);
            duckdb
                .arg(&reference)
                .arg(&input)
                .arg("--out")
                .arg(&out)
                .args([
                    "--half-life",
                    name,
                    "--profile",
                    name,
                    "--top",
                    &K.to_string(),
                ])
                .args(["--retention", "2d", "--threads", "2"]);
            if explicit {
                duckdb.args(["--as-of", &as_of.to_string()]);
            }
            run(&mut duckdb, &format!("{context}: DuckDB {name}"));
            theirs.push_str(&std::fs::read_to_string(&out).unwrap());
        }
        let theirs_path = dir.path().join("duckdb.jsonl");
        std::fs::write(&theirs_path, theirs).unwrap();

        let (ours, theirs) = (lists(&ours, &params), lists(&theirs_path, &params));
        assert!(!theirs.is_empty(), "{context}: DuckDB listed nothing");
        assert_no_problems(
            &same_lists(&ours, &theirs),
            &format!("{context}: batch vs DuckDB"),
        );
        let want = params.oracle(&history.records, as_of);
        assert_no_problems(
            &compare(&ours, &want, K, 2),
            &format!("{context}: batch vs oracle"),
        );
    }
}
