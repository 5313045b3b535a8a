//! Decay profiles, ranked items, per-category top-k lists and the snapshots that carry them.

use std::cmp::Reverse;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::score::ScoreKey;

/// A decay profile: a named half-life with its own top-k tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Name used in the API (`?profile=7d`) and the outputs; by default the half-life's text.
    pub name: String,
    /// Half-life in milliseconds (> 0).
    pub half_life_ms: i64,
}

/// One ranked entry of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankedItem {
    /// The item.
    pub item_id: Arc<str>,
    /// Its forward score; [`ScoreKey::score_at`] gives the decayed score at a time.
    pub score: ScoreKey,
}

impl RankedItem {
    /// The ranking order as a sortable key: score descending, then `item_id` ascending (bytes).
    pub fn rank_key(&self) -> (Reverse<ScoreKey>, Arc<str>) {
        (Reverse(self.score), self.item_id.clone())
    }
}

/// The current top-k of one (profile, category), best first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKList {
    /// Index into the configured profiles.
    pub profile: usize,
    /// The category path (`""` is the root / home page).
    pub category: Arc<str>,
    /// At most k items, ranked. Empty when no item has a positive score.
    pub items: Vec<RankedItem>,
}

/// Everything that changed up to and including event time `time_ms`; published only once the
/// dataflow's output frontier has passed `time_ms`, so a reader never sees half an update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The event time this snapshot is complete up to (inclusive), epoch ms.
    pub time_ms: i64,
    /// New lists for the (profile, category) pairs that changed (or first appeared).
    pub lists: Vec<TopKList>,
}
