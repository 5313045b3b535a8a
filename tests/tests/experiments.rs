//! Decay-rate experiments end to end: two services started one after the other on the same
//! files give every visitor the same profile, each answer is that profile's `/v1/top`
//! document with `X-Topsellers-Profile`, and the exposures are counted in `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use topsellers::config::Config;
use topsellers_sinks::ExperimentConfig;
use topsellers_tests::{
    check_exposition, generate, get, metric, start_service, wait_until, write_parts, Fmt, Params,
    Spec, DAY,
};

const PATIENCE: Duration = Duration::from_secs(120);

/// The profile each of `visitors` sees at a service started with `config`, with the exposure
/// counts it reports.
fn assignments(config: &Config, visitors: &[String]) -> (Vec<String>, BTreeMap<String, f64>) {
    let (service, _stop) = start_service(config);
    let addr = service.addr;
    assert!(
        wait_until(PATIENCE, || get(addr, "/readyz").status == 200),
        "not ready"
    );
    let mut seen = Vec::new();
    for visitor in visitors {
        let response = get(addr, &format!("/v1/top?experiment=decay&visitor={visitor}"));
        assert_eq!(response.status, 200, "{}", response.text());
        let profile = response
            .header("x-topsellers-profile")
            .expect("X-Topsellers-Profile")
            .to_owned();
        let doc = response.json();
        assert_eq!(doc["profile"], profile.as_str());
        let plain = get(addr, &format!("/v1/top?profile={profile}"));
        assert_eq!(
            plain.json(),
            doc,
            "the experiment serves the profile's document"
        );
        seen.push(profile);
    }
    for (target, status) in [
        ("/v1/top?experiment=nope&visitor=v", 404),
        ("/v1/top?experiment=decay", 400),
        ("/v1/top?experiment=decay&visitor=v&profile=1h", 400),
    ] {
        let response = get(addr, target);
        assert_eq!(response.status, status, "{target}");
        assert!(response.json()["error"].is_string(), "{target}");
    }
    let text = get(addr, "/metrics").text();
    check_exposition(&text);
    let mut counts = BTreeMap::new();
    for profile in ["1h", "7d"] {
        let series = format!(
            "topsellers_experiment_exposures_total{{experiment=\"decay\",profile=\"{profile}\"}}"
        );
        counts.insert(profile.to_owned(), metric(&text, &series).unwrap_or(0.0));
    }
    (seen, counts)
}

#[test]
fn the_same_visitor_sees_the_same_profile_in_separately_started_services() {
    let history = generate(&Spec::new(7, 400, 2 * DAY, false));
    let dir = tempfile::tempdir().unwrap();
    let paths = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl],
        &history.records,
        2,
        7,
    );
    let mut config = Params::new(5, 2, 1000).config(&paths, "");
    config.experiments = vec![ExperimentConfig {
        name: "decay".into(),
        weights: [("1h".to_owned(), 1), ("7d".to_owned(), 3)].into(),
    }];
    let visitors: Vec<String> = (0..200).map(|v| format!("visitor-{v}")).collect();
    let (first, counts) = assignments(&config, &visitors);
    config.runtime.workers = 1;
    let (second, _) = assignments(&config, &visitors);
    assert_eq!(first, second, "assignments differ between the two services");
    let ones = first.iter().filter(|p| *p == "1h").count();
    // 1:3 split of 200: about 50 each way, far from 0 and from 200.
    assert!((20..=90).contains(&ones), "{ones} of 200 saw 1h");
    assert_eq!(counts["1h"], ones as f64);
    assert_eq!(counts["7d"], (visitors.len() - ones) as f64);
}
