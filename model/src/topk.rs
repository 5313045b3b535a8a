//! Ranked items, per-category top-k lists and the snapshots that carry them.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::score::ScoreKey;

/// One ranked entry of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankedItem {
    /// The item.
    pub item_id: Arc<str>,
    /// Its forward score; [`ScoreKey::score_at`] gives the decayed score at a time.
    pub score: ScoreKey,
    /// The item's forward score in this category under every profile (by profile index;
    /// `None` where not positive), from the same state as `score`: carried only where the
    /// service keeps it for `/v1/movers` (`[movers]` on, two or more profiles), else `None`.
    #[serde(default)]
    pub scores: Option<Box<[Option<ScoreKey>]>>,
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

/// The newest list of each (profile, category) seen so far: how snapshots are coalesced
/// (a later list of a key replaces the earlier one).
#[derive(Clone, Debug, Default)]
pub struct LatestLists {
    lists: HashMap<(usize, Arc<str>), TopKList>,
}

impl LatestLists {
    /// Keeps `lists`, replacing earlier lists of the same (profile, category).
    pub fn extend(&mut self, lists: impl IntoIterator<Item = TopKList>) {
        for list in lists {
            self.lists
                .insert((list.profile, list.category.clone()), list);
        }
    }

    /// Whether no list is held.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Takes every list held, ordered by profile, then category.
    pub fn take_sorted(&mut self) -> Vec<TopKList> {
        let mut lists: Vec<TopKList> = self.lists.drain().map(|(_, list)| list).collect();
        lists.sort_by(|a, b| (a.profile, &a.category).cmp(&(b.profile, &b.category)));
        lists
    }
}

/// Everything that changed up to and including event time `time_ms`; published only once the
/// dataflow's output frontier has passed `time_ms`, so a reader never sees half an update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The event time this snapshot is complete up to (inclusive), epoch ms.
    pub time_ms: i64,
    /// New lists for the (profile, category) pairs that changed (or first appeared).
    pub lists: Vec<TopKList>,
    /// Set when the snapshot holds every list there is (a backfill's, or a restored
    /// checkpoint's): a list served before and missing here is empty now.
    #[serde(default)]
    pub whole: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(profile: usize, category: &str, item: &str) -> TopKList {
        let score = ScoreKey {
            exp: 0,
            mantissa: 1.0,
        };
        TopKList {
            profile,
            category: category.into(),
            items: vec![RankedItem {
                item_id: item.into(),
                score,
                scores: None,
            }],
        }
    }

    #[test]
    fn later_lists_replace_earlier_and_come_out_sorted() {
        let mut latest = LatestLists::default();
        latest.extend([list(1, "a", "x"), list(0, "b", "x"), list(0, "a", "old")]);
        latest.extend([list(0, "a", "new")]);
        let lists = latest.take_sorted();
        let keys: Vec<(usize, &str, &str)> = lists
            .iter()
            .map(|l| (l.profile, &*l.category, &*l.items[0].item_id))
            .collect();
        assert_eq!(keys, [(0, "a", "new"), (0, "b", "x"), (1, "a", "x")]);
        assert!(latest.is_empty());
    }
}
