//! Helpers shared by the unit tests: profiles and ranked lists built from purchase counts.

use std::sync::Arc;

use topsellers_model::{DecayedSum, Profile, Profiles, RankedItem, Snapshot, TopKList};

/// One hour, the half-life of the first test profile.
pub(crate) const H: i64 = 3_600_000;

/// Two profiles: `1h` and `1d`.
pub(crate) fn profiles() -> Profiles {
    Profiles::new(vec![
        Profile {
            name: "1h".into(),
            half_life_ms: H,
        },
        Profile {
            name: "1d".into(),
            half_life_ms: 24 * H,
        },
    ])
    .expect("two distinct positive half-lives")
}

/// A ranked list of `items` (id, quantity bought at time 0) for `profiles()[profile]`.
pub(crate) fn list(profile: usize, category: &str, items: &[(&str, i64)]) -> TopKList {
    let half_life = profiles()[profile].half_life_ms;
    let mut items: Vec<RankedItem> = items
        .iter()
        .map(|&(id, quantity)| {
            let mut sum = DecayedSum::default();
            sum.add(0, quantity, half_life);
            RankedItem {
                item_id: Arc::from(id),
                score: sum.key().expect("positive quantity"),
                scores: None,
            }
        })
        .collect();
    items.sort_by_key(RankedItem::rank_key);
    TopKList {
        profile,
        category: category.into(),
        items,
    }
}

/// A snapshot at `time_ms` holding `lists`.
pub(crate) fn snapshot(time_ms: i64, lists: Vec<TopKList>) -> Snapshot {
    Snapshot {
        time_ms,
        lists,
        whole: false,
    }
}
