//! Decay profiles: each a named half-life with its own top-k tables, checked once as a set.

use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::{parse_duration, DurationError};

/// Most decay profiles one dataflow runs side by side.
pub const MAX_PROFILES: usize = 16;

/// A decay profile: a named half-life with its own top-k tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Name used in the API (`?profile=7d`) and the outputs; by default the half-life's text.
    pub name: String,
    /// Half-life in milliseconds (> 0).
    pub half_life_ms: i64,
}

/// A half-life as configured (`"7d"`): its text, trimmed, names the profile; its value decays
/// the scores. Written and read as that text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HalfLife {
    /// The text as configured (trimmed).
    pub name: String,
    /// The half-life.
    pub duration: Duration,
}

impl FromStr for HalfLife {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<HalfLife, DurationError> {
        Ok(HalfLife {
            name: text.trim().to_owned(),
            duration: parse_duration(text)?,
        })
    }
}

impl Serialize for HalfLife {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for HalfLife {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HalfLife, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of profiles that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No profile at all.
    #[error("at least one half-life is needed")]
    None,
    /// More than [`MAX_PROFILES`].
    #[error("{0} half-lives are configured: at most {MAX_PROFILES} are supported")]
    TooMany(usize),
    /// A half-life of zero (or less).
    #[error("half-life {0:?} must be positive")]
    NotPositive(String),
    /// Two profiles of one name.
    #[error("half-life {0:?} is listed twice")]
    Duplicate(String),
}

/// The configured decay profiles, checked once: 1..=[`MAX_PROFILES`] of them, each half-life
/// positive, names unique. The first is the API's default. Cheap to clone and share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profiles(Arc<[Profile]>);

impl Profiles {
    /// Checks `profiles` as a set.
    pub fn new(profiles: Vec<Profile>) -> Result<Profiles, ProfileError> {
        if profiles.is_empty() {
            return Err(ProfileError::None);
        }
        if profiles.len() > MAX_PROFILES {
            return Err(ProfileError::TooMany(profiles.len()));
        }
        for (at, profile) in profiles.iter().enumerate() {
            if profile.half_life_ms <= 0 {
                return Err(ProfileError::NotPositive(profile.name.clone()));
            }
            if profiles[..at]
                .iter()
                .any(|other| other.name == profile.name)
            {
                return Err(ProfileError::Duplicate(profile.name.clone()));
            }
        }
        Ok(Profiles(profiles.into()))
    }

    /// The profiles of configured half-lives, named by their text.
    pub fn from_half_lives(half_lives: &[HalfLife]) -> Result<Profiles, ProfileError> {
        Profiles::new(
            half_lives
                .iter()
                .map(|half_life| Profile {
                    name: half_life.name.clone(),
                    half_life_ms: half_life.duration.as_millis().min(i64::MAX as u128) as i64,
                })
                .collect(),
        )
    }

    /// The half-lives in milliseconds, in order.
    pub fn half_lives_ms(&self) -> Vec<i64> {
        self.0.iter().map(|p| p.half_life_ms).collect()
    }

    /// The index of the profile called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|profile| profile.name == name)
    }
}

impl Deref for Profiles {
    type Target = [Profile];

    fn deref(&self) -> &[Profile] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, half_life_ms: i64) -> Profile {
        Profile {
            name: name.into(),
            half_life_ms,
        }
    }

    #[test]
    fn rules() {
        let ok = Profiles::new(vec![profile("1h", 3_600_000), profile("1d", 86_400_000)]).unwrap();
        assert_eq!(ok.index("1d"), Some(1));
        assert_eq!(ok.index("2d"), None);
        assert_eq!(ok.half_lives_ms(), [3_600_000, 86_400_000]);
        assert_eq!(Profiles::new(vec![]), Err(ProfileError::None));
        assert_eq!(
            Profiles::new(vec![profile("1h", 1), profile("1h", 2)]),
            Err(ProfileError::Duplicate("1h".into()))
        );
        assert_eq!(
            Profiles::new(vec![profile("0s", 0)]),
            Err(ProfileError::NotPositive("0s".into()))
        );
        let many = (1..=17).map(|n| profile(&format!("{n}h"), n)).collect();
        assert_eq!(Profiles::new(many), Err(ProfileError::TooMany(17)));
    }

    #[test]
    fn half_lives_keep_their_text_as_the_name() {
        let half_life: HalfLife = " 168h ".parse().unwrap();
        assert_eq!(half_life.name, "168h");
        assert_eq!(half_life.duration, Duration::from_secs(7 * 86_400));
        let profiles = Profiles::from_half_lives(&[half_life]).unwrap();
        assert_eq!(profiles[0], profile("168h", 7 * 86_400_000));
        assert!("7 days".parse::<HalfLife>().is_err());
    }
}
