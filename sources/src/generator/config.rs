//! Generator settings: rate, catalog shape, popularity, trends, returns and lateness.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::SettingError;

/// Most leaf categories the generator builds.
pub const MAX_LEAVES: u64 = 10_000_000;
/// Most items the generator builds (each has a prebuilt id).
pub const MAX_ITEMS: u64 = 50_000_000;

/// Largest `rate` (purchases per second; `"max"` has no bound).
pub const MAX_RATE: u64 = 1_000_000_000;

/// Largest `zipf_exponent`.
pub const MAX_ZIPF_EXPONENT: f64 = 10.0;

/// Largest `trending_items` (drawn from the catalog, repeats allowed: it may exceed `items`).
pub const MAX_TRENDING_ITEMS: u64 = 1_000_000;

/// Longest `trend_period` and `max_lateness` (365 days, in ms).
const MAX_PERIOD_MS: i64 = 365 * 86_400_000;

/// Purchases per second: a number, or `max` (as fast as they are taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// This many purchases per second in total, shared by the workers.
    PerSecond(u64),
    /// As many as each poll asks for.
    Max,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::PerSecond(n) => write!(f, "{n}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let digits: String = text.chars().filter(|c| *c != '_').collect();
        digits.parse::<u64>().map(Rate::PerSecond).map_err(|_| {
            format!("bad rate {text:?}: use purchases per second (e.g. 20000) or \"max\"")
        })
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::PerSecond(n) => serializer.serialize_u64(*n),
            Rate::Max => serializer.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;
        impl Visitor<'_> for RateVisitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("purchases per second (a non-negative integer) or \"max\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                Ok(Rate::PerSecond(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                u64::try_from(v)
                    .map(Rate::PerSecond)
                    .map_err(|_| E::custom(format!("negative rate {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(RateVisitor)
    }
}

/// `type = "generator"`: synthetic purchases with Zipf popularity, trends, returns and late
/// events, over a generated category tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Purchases per second over all workers, or `"max"`.
    #[serde(default = "default_rate")]
    pub rate: Rate,
    /// Distinct items in the catalog (ids `item-0`, `item-1`, …).
    #[serde(default = "default_items")]
    pub items: u64,
    /// Levels of the category tree (1..=16); items sit in the leaves.
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// Children per node of the category tree; there are `fanout^depth` leaves.
    #[serde(default = "default_fanout")]
    pub fanout: u32,
    /// Exponent of the Zipf popularity of items (larger: a few items sell more).
    #[serde(default = "default_zipf_exponent")]
    pub zipf_exponent: f64,
    /// Items in the current trending set.
    #[serde(default = "default_trending_items")]
    pub trending_items: u32,
    /// Fraction of purchases that go to the current trending items (0..=1).
    #[serde(default = "default_trending_share")]
    pub trending_share: f64,
    /// How often the trending set changes, in event time (e.g. `30s`).
    #[serde(default = "default_trend_period", with = "trend_period_text")]
    pub trend_period: Duration,
    /// Fraction of purchases that are returns (quantity −1) (0..=1).
    #[serde(default = "default_returns_fraction")]
    pub returns_fraction: f64,
    /// Fraction of purchases that arrive late (0..=1).
    #[serde(default = "default_late_fraction")]
    pub late_fraction: f64,
    /// How late a late purchase can be: its time is now − U(0, max_lateness) (e.g. `5s`).
    #[serde(default = "default_max_lateness", with = "max_lateness_text")]
    pub max_lateness: Duration,
    /// Random seed: the same seed gives the same catalog and the same purchases.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

topsellers_model::duration_key!(trend_period_text, "generator.trend_period");
topsellers_model::duration_key!(max_lateness_text, "generator.max_lateness");

fn default_rate() -> Rate {
    Rate::PerSecond(20_000)
}
fn default_items() -> u64 {
    100_000
}
fn default_depth() -> u32 {
    3
}
fn default_fanout() -> u32 {
    8
}
fn default_zipf_exponent() -> f64 {
    1.1
}
fn default_trending_items() -> u32 {
    20
}
fn default_trending_share() -> f64 {
    0.1
}
fn default_trend_period() -> Duration {
    Duration::from_secs(30)
}
fn default_returns_fraction() -> f64 {
    0.01
}
fn default_late_fraction() -> f64 {
    0.02
}
fn default_max_lateness() -> Duration {
    Duration::from_secs(5)
}
fn default_seed() -> u64 {
    42
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate: default_rate(),
            items: default_items(),
            depth: default_depth(),
            fanout: default_fanout(),
            zipf_exponent: default_zipf_exponent(),
            trending_items: default_trending_items(),
            trending_share: default_trending_share(),
            trend_period: default_trend_period(),
            returns_fraction: default_returns_fraction(),
            late_fraction: default_late_fraction(),
            max_lateness: default_max_lateness(),
            seed: default_seed(),
        }
    }
}

fn fraction(field: &'static str, value: f64) -> Result<f64, SettingError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(SettingError::new(
            field,
            format!("{value} is not a fraction in [0, 1]"),
        ))
    }
}

impl GeneratorConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.leaves()?;
        if let Rate::PerSecond(rate) = self.rate {
            if !(1..=MAX_RATE).contains(&rate) {
                return Err(SettingError::new(
                    "generator.rate",
                    format!("{rate} is not in 1..={MAX_RATE} per second (or \"max\")"),
                ));
            }
        }
        if !(1..=MAX_ITEMS).contains(&self.items) {
            return Err(SettingError::new(
                "generator.items",
                format!("{} is not in 1..={MAX_ITEMS}", self.items),
            ));
        }
        if !(0.0..=MAX_ZIPF_EXPONENT).contains(&self.zipf_exponent) {
            return Err(SettingError::new(
                "generator.zipf_exponent",
                format!(
                    "{:?} is not a number in [0, {MAX_ZIPF_EXPONENT:?}]",
                    self.zipf_exponent
                ),
            ));
        }
        // Only an absolute bound: trending items are drawn from the catalog (repeats allowed),
        // so a small catalog (`--items 10`) with the default 20 is fine.
        if u64::from(self.trending_items) > MAX_TRENDING_ITEMS {
            return Err(SettingError::new(
                "generator.trending_items",
                format!("{} is more than {MAX_TRENDING_ITEMS}", self.trending_items),
            ));
        }
        fraction("generator.trending_share", self.trending_share)?;
        fraction("generator.returns_fraction", self.returns_fraction)?;
        fraction("generator.late_fraction", self.late_fraction)?;
        if self.trend_period_ms()? > MAX_PERIOD_MS {
            return Err(SettingError::new(
                "generator.trend_period",
                "is longer than 365d",
            ));
        }
        if self.max_lateness_ms() > MAX_PERIOD_MS {
            return Err(SettingError::new(
                "generator.max_lateness",
                "is longer than 365d",
            ));
        }
        Ok(())
    }

    /// The number of leaf categories, `fanout^depth`, checked.
    pub fn leaves(&self) -> Result<u64, SettingError> {
        if !(1..=16).contains(&self.depth) {
            return Err(SettingError::new(
                "generator.depth",
                format!("{} is not in 1..=16", self.depth),
            ));
        }
        if self.fanout == 0 {
            return Err(SettingError::new("generator.fanout", "must be at least 1"));
        }
        u64::from(self.fanout)
            .checked_pow(self.depth)
            .filter(|n| *n <= MAX_LEAVES)
            .ok_or_else(|| {
                SettingError::new(
                    "generator.fanout",
                    format!(
                        "fanout^depth = {}^{} leaf categories is more than {MAX_LEAVES}",
                        self.fanout, self.depth
                    ),
                )
            })
    }

    /// `trend_period` in milliseconds (> 0).
    pub fn trend_period_ms(&self) -> Result<i64, SettingError> {
        match millis(self.trend_period) {
            ms if ms > 0 => Ok(ms),
            _ => Err(SettingError::new(
                "generator.trend_period",
                "must be longer than 0",
            )),
        }
    }

    /// `max_lateness` in milliseconds.
    pub fn max_lateness_ms(&self) -> i64 {
        millis(self.max_lateness)
    }
}

/// Whole milliseconds (saturating).
fn millis(duration: Duration) -> i64 {
    duration.as_millis().min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_forms() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("MAX".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("10000".parse::<Rate>(), Ok(Rate::PerSecond(10_000)));
        assert_eq!("1_000".parse::<Rate>(), Ok(Rate::PerSecond(1000)));
        assert!("fast".parse::<Rate>().is_err());
        assert!("-5".parse::<Rate>().is_err());
        let c: GeneratorConfig = serde_json::from_str(r#"{"rate":"max"}"#).unwrap();
        assert_eq!(c.rate, Rate::Max);
        let c: GeneratorConfig = serde_json::from_str(r#"{"rate":10000}"#).unwrap();
        assert_eq!(c.rate, Rate::PerSecond(10_000));
        let c: GeneratorConfig = serde_json::from_str(r#"{"rate":"250"}"#).unwrap();
        assert_eq!(c.rate, Rate::PerSecond(250));
        assert!(serde_json::from_str::<GeneratorConfig>(r#"{"rate":-1}"#).is_err());
        assert!(serde_json::from_str::<GeneratorConfig>(r#"{"rate":1.5}"#).is_err());
        assert_eq!(serde_json::to_string(&Rate::Max).unwrap(), "\"max\"");
        assert_eq!(serde_json::to_string(&Rate::PerSecond(7)).unwrap(), "7");
        assert_eq!(Rate::Max.to_string(), "max");
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let c: GeneratorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, GeneratorConfig::default());
        assert_eq!(c.rate, Rate::PerSecond(20_000));
        assert_eq!((c.items, c.depth, c.fanout, c.seed), (100_000, 3, 8, 42));
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<GeneratorConfig>(r#"{"itemz":5}"#).is_err());
        let back: GeneratorConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |f: fn(&mut GeneratorConfig)| {
            let mut c = GeneratorConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.items = 0), "generator.items");
        assert_eq!(bad(|c| c.depth = 0), "generator.depth");
        assert_eq!(bad(|c| c.depth = 17), "generator.depth");
        assert_eq!(bad(|c| c.fanout = 0), "generator.fanout");
        assert_eq!(
            bad(|c| {
                c.fanout = 100;
                c.depth = 4
            }),
            "generator.fanout"
        );
        assert_eq!(
            bad(|c| c.returns_fraction = 1.5),
            "generator.returns_fraction"
        );
        assert_eq!(bad(|c| c.late_fraction = -0.1), "generator.late_fraction");
        assert_eq!(
            bad(|c| c.trending_share = f64::NAN),
            "generator.trending_share"
        );
        assert_eq!(
            bad(|c| c.trend_period = Duration::ZERO),
            "generator.trend_period"
        );
        // Text that is not a duration is refused when the config is read.
        for text in [r#"{"trend_period":"soon"}"#, r#"{"max_lateness":"5"}"#] {
            let error = serde_json::from_str::<GeneratorConfig>(text).unwrap_err();
            assert!(
                error.to_string().contains("bad duration"),
                "{text}: {error}"
            );
            assert!(error.to_string().contains("generator."), "{text}: {error}");
        }
        assert_eq!(bad(|c| c.zipf_exponent = -1.0), "generator.zipf_exponent");
        assert_eq!(bad(|c| c.rate = Rate::PerSecond(0)), "generator.rate");
        let c = GeneratorConfig {
            items: 0,
            ..GeneratorConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("generator.items"));
        // 10 million leaves is the limit, inclusive.
        let mut c = GeneratorConfig::default();
        (c.fanout, c.depth) = (10, 7);
        assert!(c.validate().is_ok());
    }
}
