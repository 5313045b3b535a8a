//! `/v1/movers` end to end against the brute force: a service replays random purchases (with
//! returns, over a category tree) at 1, 2 and 4 workers; for every category the expected
//! movers are the oracle's top k of the short profile, filtered by `min_score` and a positive
//! long-run score, ranked by `m = (S_short / h_short) / (S_long / h_long)` descending, then
//! `item_id`, with `S_short` and `S_long` summed purchase by purchase in f64 in this test.

use std::time::Duration;

use topsellers_tests::{
    encode_segment, generate, get, oracle, parse_rfc3339, start_service, wait_until, write_parts,
    Entry, Fmt, Params, Spec, DAY, HOUR,
};

const PATIENCE: Duration = Duration::from_secs(180);
const R: i64 = 2 * DAY;
const K: usize = 6;

/// `/v1/movers` for the root, else `/v1/movers/seg/seg…`.
fn movers_path(category: &str) -> String {
    if category.is_empty() {
        "/v1/movers".to_owned()
    } else {
        let segments: Vec<String> = category.split('/').map(encode_segment).collect();
        format!("/v1/movers/{}", segments.join("/"))
    }
}

/// The expected movers of `category` from the oracle as of `as_of`: (item, S_short, m), and
/// the items whose long-run score is too close to zero for f64 to tell its sign (either
/// answer is right for them).
fn expected(
    records: &[topsellers_tests::Rec],
    params: &Params,
    category: &str,
    as_of: i64,
    min_score: f64,
) -> (Vec<(String, f64, f64)>, Vec<String>) {
    let want = oracle(records, as_of, &params.half_lives_ms(), R);
    let (h_short, h_long) = (HOUR as f64, 7.0 * DAY as f64);
    let empty = Vec::new();
    let short = want.lists.get(&(0, category.to_owned())).unwrap_or(&empty);
    let long = want.lists.get(&(1, category.to_owned())).unwrap_or(&empty);
    let mut movers = Vec::new();
    let mut unclear = Vec::new();
    for entry in short.iter().take(K) {
        let Some(long_entry): Option<&Entry> = long.iter().find(|e| e.item_id == entry.item_id)
        else {
            continue; // S_long not positive
        };
        if long_entry.ambiguous() || entry.ambiguous() {
            unclear.push(entry.item_id.clone());
            continue;
        }
        if entry.score < min_score {
            continue;
        }
        let m = (entry.score / h_short) / (long_entry.score / h_long);
        movers.push((entry.item_id.clone(), entry.score, m));
    }
    movers.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    (movers, unclear)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
}

/// Every difference between the served movers of every category and the oracle's.
fn problems(
    addr: std::net::SocketAddr,
    records: &[topsellers_tests::Rec],
    params: &Params,
    min_score: f64,
) -> Vec<String> {
    let mut problems = Vec::new();
    let categories = get(addr, "/v1/categories").json();
    let mut nonempty = 0;
    for category in categories["categories"].as_array().expect("categories") {
        let category = category["category"].as_str().expect("category text");
        let target = format!("{}?limit={K}", movers_path(category));
        let response = get(addr, &target);
        if response.status != 200 {
            problems.push(format!("{target}: {} {}", response.status, response.text()));
            continue;
        }
        let doc = response.json();
        assert_eq!(doc["category"], category);
        assert_eq!(doc["short"], "1h", "the shortest half-life by default");
        assert_eq!(doc["long"], "7d", "the longest half-life by default");
        let as_of = doc["as_of"]
            .as_str()
            .and_then(parse_rfc3339)
            .expect("as_of");
        let (want, unclear) = expected(records, params, category, as_of, min_score);
        let got: Vec<(String, f64, f64)> = doc["items"]
            .as_array()
            .expect("items")
            .iter()
            .enumerate()
            .map(|(at, item)| {
                assert_eq!(item["rank"], at + 1);
                (
                    item["item_id"].as_str().expect("item_id").to_owned(),
                    item["score"].as_f64().expect("score"),
                    item["momentum"].as_f64().expect("momentum"),
                )
            })
            .filter(|(item, _, _)| !unclear.contains(item))
            .collect();
        nonempty += usize::from(!want.is_empty());
        if got.len() != want.len() {
            problems.push(format!(
                "{category:?}: {} movers, expected {}\n got:  {got:?}\n want: {want:?}",
                got.len(),
                want.len()
            ));
            continue;
        }
        for (at, (g, w)) in got.iter().zip(&want).enumerate() {
            let own = want.iter().find(|x| x.0 == g.0);
            let ok = match own {
                Some(own) => {
                    close(g.1, own.1) && close(g.2, own.2) && (g.0 == w.0 || close(own.2, w.2))
                }
                None => false,
            };
            if !ok {
                problems.push(format!(
                    "{category:?} rank {}: got {g:?}, expected {w:?} (own {own:?})",
                    at + 1
                ));
            }
        }
    }
    if nonempty == 0 {
        problems.push("no category has any mover: the test checks nothing".to_owned());
    }
    problems
}

fn run(seed: u64, workers: usize, min_score: f64) {
    let history = generate(&Spec::new(seed, 3000, R, false));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::Csv],
        &history.records,
        3,
        seed,
    );
    let params = Params::new(K, workers, 700);
    let mut config = params.config(&paths, "");
    config.movers.min_score = min_score;
    let (service, _stop) = start_service(&config);
    let addr = service.addr;
    assert!(
        wait_until(PATIENCE, || get(addr, "/readyz").status == 200),
        "not ready"
    );
    let found = problems(addr, &history.records, &params, min_score);
    assert!(
        found.is_empty(),
        "seed {seed}, {workers} workers, min_score {min_score}:\n{}",
        found.join("\n")
    );
    for (target, status, says) in [
        ("/v1/movers?short=9d", 404, "9d"),
        ("/v1/movers?long=2w", 404, "2w"),
        ("/v1/movers/no-such-category", 404, "no-such-category"),
        ("/v1/movers?limit=0", 400, "limit"),
    ] {
        let response = get(addr, target);
        assert_eq!(response.status, status, "{target}");
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(says), "{target}: {error}");
    }
    // Explicit profiles, swapped: the long profile's list ranked by the inverse rate.
    let swapped = get(addr, "/v1/movers?short=7d&long=1h&limit=3").json();
    assert_eq!(
        (&swapped["short"], &swapped["long"]),
        (&"7d".into(), &"1h".into())
    );
    assert!(swapped["items"].as_array().expect("items").len() <= 3);
}

#[test]
fn movers_match_the_brute_force_at_1_worker() {
    run(31, 1, 0.05);
}

#[test]
fn movers_match_the_brute_force_at_2_workers() {
    run(32, 2, 0.3);
}

#[test]
fn movers_match_the_brute_force_at_4_workers() {
    run(33, 4, 1.0);
}
