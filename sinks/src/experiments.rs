//! Decay-rate experiments (`[[experiments]]`): `GET /v1/top/{category}?experiment=NAME&visitor=ID`
//! serves the list of a profile picked for the visitor, the same profile for the same visitor
//! always, and counts the exposure in `topsellers_experiment_exposures_total{experiment,profile}`.
//!
//! ## The assignment (fixed, so that a shop can recompute it offline)
//! `h = XXH3_64(experiment ‖ 0x00 ‖ visitor)` — XXH3 64-bit with seed 0 (the default seed) over
//! the UTF-8 bytes of the experiment's name, one zero byte and the visitor id as decoded from
//! the query string; then `r = h mod W`, `W` the sum of the experiment's weights. The profiles
//! with a positive weight, in byte order of their names, each take the next `weight` values of
//! `0..W`: the first whose cumulative weight exceeds `r` is the visitor's profile. In Python:
//! `xxhash.xxh3_64_intdigest(b"decay\0" + visitor.encode()) % W`. Nothing else (process,
//! worker count, start time, release) enters the pick, so it holds across restarts; changing
//! an experiment's weights or profiles reassigns visitors (name a new experiment instead).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use topsellers_model::Profiles;

use crate::metrics::{MetricKind, Metrics};

/// One experiment as configured (`[[experiments]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The name asked for with `?experiment=NAME` (non-empty, unique).
    pub name: String,
    /// Profile name → non-negative integer weight (at least one entry, sum > 0): a profile
    /// with weight `w` gets `w / Σw` of the visitors.
    pub weights: BTreeMap<String, u64>,
}

/// A set of experiments that cannot be used; `key` is where in the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct ExperimentError {
    /// The key, e.g. `experiments[0].weights`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// One checked experiment.
#[derive(Debug)]
struct Experiment {
    name: String,
    /// (profile index, profile name, cumulative weight up to and including it), by name.
    arms: Vec<(usize, String, u64)>,
    /// Exposures per arm.
    exposures: Vec<AtomicU64>,
}

impl Experiment {
    fn total(&self) -> u64 {
        self.arms.last().map_or(0, |arm| arm.2)
    }
}

/// The checked experiments, with their exposure counters. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Experiments(Arc<[Experiment]>);

/// The visitor's point in `0..total` of experiment `experiment` (see the module docs).
pub fn bucket(experiment: &str, visitor: &str, total: u64) -> u64 {
    let mut bytes = Vec::with_capacity(experiment.len() + 1 + visitor.len());
    bytes.extend_from_slice(experiment.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(visitor.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes) % total.max(1)
}

impl Experiments {
    /// Checks `configs` against the configured `profiles`: names non-empty and unique, weights
    /// naming known profiles, at least one, summing to more than zero (without overflow).
    pub fn new(
        configs: &[ExperimentConfig],
        profiles: &Profiles,
    ) -> Result<Experiments, ExperimentError> {
        let mut checked: Vec<Experiment> = Vec::with_capacity(configs.len());
        for (at, config) in configs.iter().enumerate() {
            let error = |field: &str, message: String| ExperimentError {
                key: format!("experiments[{at}].{field}"),
                message,
            };
            if config.name.is_empty() {
                return Err(error("name", "must not be empty".into()));
            }
            if checked.iter().any(|e| e.name == config.name) {
                return Err(error(
                    "name",
                    format!("experiment {:?} is configured twice", config.name),
                ));
            }
            if config.weights.is_empty() {
                return Err(error(
                    "weights",
                    format!("experiment {:?} has no profile", config.name),
                ));
            }
            let mut arms = Vec::new();
            let mut total: u64 = 0;
            for (name, &weight) in &config.weights {
                let index = profiles.index(name).ok_or_else(|| {
                    error(
                        "weights",
                        format!(
                            "experiment {:?}: unknown profile {name:?} (scoring.half_lives has {:?})",
                            config.name,
                            profiles.iter().map(|p| &p.name).collect::<Vec<_>>()
                        ),
                    )
                })?;
                total = total.checked_add(weight).ok_or_else(|| {
                    error(
                        "weights",
                        format!("experiment {:?}: weights overflow", config.name),
                    )
                })?;
                if weight > 0 {
                    arms.push((index, name.clone(), total));
                }
            }
            if total == 0 {
                return Err(error(
                    "weights",
                    format!("experiment {:?}: the weights sum to 0", config.name),
                ));
            }
            checked.push(Experiment {
                name: config.name.clone(),
                exposures: arms.iter().map(|_| AtomicU64::new(0)).collect(),
                arms,
            });
        }
        Ok(Experiments(checked.into()))
    }

    /// Whether no experiment is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The profile index `visitor` sees in `experiment` (`None`: no such experiment), without
    /// counting an exposure.
    pub fn assign(&self, experiment: &str, visitor: &str) -> Option<usize> {
        self.arm(experiment, visitor).map(|(e, arm)| e.arms[arm].0)
    }

    fn arm(&self, experiment: &str, visitor: &str) -> Option<(&Experiment, usize)> {
        let found = self.0.iter().find(|e| e.name == experiment)?;
        let point = bucket(experiment, visitor, found.total());
        let arm = found.arms.iter().position(|arm| point < arm.2)?;
        Some((found, arm))
    }

    /// Counts one exposure of `visitor` to `experiment` and returns the profile index shown.
    pub fn expose(&self, experiment: &str, visitor: &str) -> Option<usize> {
        let (found, arm) = self.arm(experiment, visitor)?;
        found.exposures[arm].fetch_add(1, Ordering::Relaxed);
        Some(found.arms[arm].0)
    }

    /// Exposures so far of (experiment, profile name).
    pub fn exposures(&self, experiment: &str, profile: &str) -> u64 {
        self.0
            .iter()
            .filter(|e| e.name == experiment)
            .flat_map(|e| e.arms.iter().zip(&e.exposures))
            .filter(|(arm, _)| arm.1 == profile)
            .map(|(_, count)| count.load(Ordering::Relaxed))
            .sum()
    }

    /// Registers `topsellers_experiment_exposures_total{experiment,profile}` in `metrics`
    /// (one sample per arm with a positive weight; nothing when no experiment is configured).
    pub fn register(&self, metrics: &Metrics) {
        if self.is_empty() {
            return;
        }
        let experiments = self.clone();
        metrics.register_family(
            "topsellers_experiment_exposures_total",
            "Lists served through ?experiment=, by experiment and the profile picked.",
            MetricKind::Counter,
            Box::new(move || {
                experiments
                    .0
                    .iter()
                    .flat_map(|e| {
                        e.arms.iter().zip(&e.exposures).map(|(arm, count)| {
                            (
                                format!(
                                    "experiment=\"{}\",profile=\"{}\"",
                                    escape_label(&e.name),
                                    escape_label(&arm.1)
                                ),
                                count.load(Ordering::Relaxed) as f64,
                            )
                        })
                    })
                    .collect()
            }),
        );
    }
}

/// A label value escaped as the text format asks (`\`, `"`, line feed).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use topsellers_model::Profile;

    fn profiles() -> Profiles {
        Profiles::new(
            ["1d", "7d", "30d"]
                .iter()
                .enumerate()
                .map(|(at, name)| Profile {
                    name: (*name).into(),
                    half_life_ms: (at as i64 + 1) * 1000,
                })
                .collect(),
        )
        .unwrap()
    }

    fn config(name: &str, weights: &[(&str, u64)]) -> ExperimentConfig {
        ExperimentConfig {
            name: name.into(),
            weights: weights.iter().map(|(p, w)| ((*p).into(), *w)).collect(),
        }
    }

    #[test]
    fn bad_configs_name_the_key() {
        for (configs, key, says) in [
            (
                vec![config("", &[("1d", 1)])],
                "experiments[0].name",
                "empty",
            ),
            (
                vec![config("a", &[("1d", 1)]), config("a", &[("7d", 1)])],
                "experiments[1].name",
                "twice",
            ),
            (
                vec![config("a", &[])],
                "experiments[0].weights",
                "no profile",
            ),
            (
                vec![config("a", &[("1d", 1), ("9d", 1)])],
                "experiments[0].weights",
                "unknown profile \"9d\"",
            ),
            (
                vec![config("a", &[("1d", 0), ("7d", 0)])],
                "experiments[0].weights",
                "sum to 0",
            ),
            (
                vec![config("a", &[("1d", u64::MAX), ("7d", 1)])],
                "experiments[0].weights",
                "overflow",
            ),
        ] {
            let error = Experiments::new(&configs, &profiles()).unwrap_err();
            assert_eq!(error.key, key, "{error}");
            assert!(error.to_string().contains(says), "{error}");
        }
        assert!(Experiments::new(&[], &profiles()).unwrap().is_empty());
    }

    /// The documented function, computed here from its definition: XXH3-64 (seed 0) of the
    /// name, a zero byte and the visitor, modulo the total, into the cumulative weights in
    /// name order. A known value pins the hash itself (the xxhash reference gives it too).
    #[test]
    fn assignment_is_the_documented_function() {
        let experiments = Experiments::new(
            &[config("decay", &[("7d", 30), ("1d", 50), ("30d", 0)])],
            &profiles(),
        )
        .unwrap();
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06800538d394c2);
        for visitor in (0..2000).map(|v| format!("visitor-{v}")) {
            let h = xxhash_rust::xxh3::xxh3_64(format!("decay\0{visitor}").as_bytes());
            // Name order: "1d" < "7d"; "30d" has no weight.
            let want = if h % 80 < 50 { 0 } else { 1 };
            assert_eq!(
                experiments.assign("decay", &visitor),
                Some(want),
                "{visitor}"
            );
        }
        assert_eq!(experiments.assign("other", "v"), None);
    }

    /// Over fixed visitor ids the split matches the weights: Pearson's chi-square statistic is
    /// below the 0.999 quantile of its distribution (2 degrees of freedom: 13.82).
    #[test]
    fn the_split_passes_a_chi_square_test() {
        let weights = [("1d", 20), ("7d", 30), ("30d", 50)];
        let experiments = Experiments::new(&[config("decay", &weights)], &profiles()).unwrap();
        let visitors = 30_000;
        let mut counts = [0u64; 3];
        for v in 0..visitors {
            let profile = experiments.expose("decay", &format!("v{v}")).unwrap();
            counts[profile] += 1;
        }
        let chi2: f64 = weights
            .iter()
            .zip(counts)
            .map(|((_, w), got)| {
                let want = visitors as f64 * *w as f64 / 100.0;
                (got as f64 - want).powi(2) / want
            })
            .sum();
        assert!(chi2 < 13.82, "chi-square {chi2} for {counts:?}");
        for ((name, _), got) in weights.iter().zip(counts) {
            assert_eq!(experiments.exposures("decay", name), got);
        }
    }
}
