//! The generated catalog: a category tree, items placed in its leaves, and a popularity order.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::config::GeneratorConfig;
use crate::error::SettingError;

/// Top-level department names; past these, `dept-23`, `dept-24`, ….
const DEPARTMENTS: [&str; 22] = [
    "books",
    "electronics",
    "home",
    "garden",
    "toys",
    "fashion",
    "sports",
    "beauty",
    "grocery",
    "music",
    "movies",
    "games",
    "office",
    "pets",
    "baby",
    "auto",
    "tools",
    "health",
    "jewelry",
    "outdoor",
    "kitchen",
    "crafts",
];

/// Items, categories and popularity, built once per process and shared (`Arc`) by workers.
#[derive(Debug)]
pub struct Catalog {
    leaves: Vec<Arc<str>>,
    item_ids: Vec<Arc<str>>,
    /// Leaf index of each item.
    item_leaf: Vec<u32>,
    /// Item index of each popularity rank (0 = most popular).
    by_rank: Vec<u32>,
}

/// The name of top-level department `index` (0-based).
fn department(index: u32) -> String {
    match DEPARTMENTS.get(index as usize) {
        Some(name) => (*name).to_owned(),
        None => format!("dept-{}", index + 1),
    }
}

/// Mixes a seed with a stream number (splitmix64 finaliser).
pub(crate) fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Catalog {
    /// Builds the catalog of `config` (validated first).
    pub fn new(config: &GeneratorConfig) -> Result<Catalog, SettingError> {
        config.validate()?;
        let leaves = build_leaves(config.depth, config.fanout);
        let items = usize::try_from(config.items)
            .map_err(|_| SettingError::new("generator.items", "too many for this machine"))?;
        let item_ids: Vec<Arc<str>> = (0..items).map(|i| Arc::from(format!("item-{i}"))).collect();
        let leaf_count = leaves.len() as u64;
        let item_leaf: Vec<u32> = (0..items as u64)
            .map(|i| (xxh3_64_with_seed(&i.to_le_bytes(), config.seed) % leaf_count) as u32)
            .collect();
        let mut by_rank: Vec<u32> = (0..items as u32).collect();
        let mut rng = SmallRng::seed_from_u64(mix(config.seed, 0x5045_524d)); // "PERM"
        for i in (1..by_rank.len()).rev() {
            let j = rng.random_range(0..=i);
            by_rank.swap(i, j);
        }
        Ok(Catalog {
            leaves,
            item_ids,
            item_leaf,
            by_rank,
        })
    }

    /// The leaf categories, each a full path (`books/books-3/books-3-7`).
    pub fn leaves(&self) -> &[Arc<str>] {
        &self.leaves
    }

    /// Every category of the tree, leaves and inner nodes, without the root `""`, sorted.
    pub fn all_categories(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .leaves
            .iter()
            .flat_map(|leaf| {
                topsellers_model::ancestors(leaf)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// How many items.
    pub fn items(&self) -> usize {
        self.item_ids.len()
    }

    /// The id of item `index` (`item-{index}`), if it exists.
    pub fn item_id(&self, index: usize) -> Option<&Arc<str>> {
        self.item_ids.get(index)
    }

    /// The leaf category of item `index`, if it exists.
    pub fn category_of(&self, index: usize) -> Option<&Arc<str>> {
        let leaf = *self.item_leaf.get(index)?;
        self.leaves.get(leaf as usize)
    }

    /// The item at popularity rank `rank` (0 = most popular), if it exists.
    pub fn item_at_rank(&self, rank: usize) -> Option<usize> {
        self.by_rank.get(rank).map(|i| *i as usize)
    }

    /// Id and category of item `index` (which must be below [`Catalog::items`]), cloned.
    pub(crate) fn item(&self, index: usize) -> (Arc<str>, Arc<str>) {
        let index = index.min(self.item_ids.len().saturating_sub(1));
        let leaf = self.item_leaf[index] as usize;
        (self.item_ids[index].clone(), self.leaves[leaf].clone())
    }

    /// The item index at a (clamped) popularity rank.
    pub(crate) fn ranked(&self, rank: usize) -> usize {
        self.by_rank[rank.min(self.by_rank.len().saturating_sub(1))] as usize
    }
}

/// All `fanout^depth` leaf paths.
fn build_leaves(depth: u32, fanout: u32) -> Vec<Arc<str>> {
    let mut level: Vec<(String, String)> = (0..fanout)
        .map(|i| {
            let name = department(i);
            (name.clone(), name)
        })
        .collect();
    for _ in 1..depth {
        let mut next = Vec::with_capacity(level.len() * fanout as usize);
        for (path, last) in &level {
            for i in 1..=fanout {
                let segment = format!("{last}-{i}");
                next.push((format!("{path}/{segment}"), segment));
            }
        }
        level = next;
    }
    level.into_iter().map(|(path, _)| Arc::from(path)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use topsellers_model::validate_category;

    fn config(items: u64, depth: u32, fanout: u32) -> GeneratorConfig {
        GeneratorConfig {
            items,
            depth,
            fanout,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn tree_shape() {
        for (depth, fanout) in [(1, 1), (1, 30), (2, 5), (3, 8), (4, 3)] {
            let catalog = Catalog::new(&config(100, depth, fanout)).unwrap();
            let leaves = catalog.leaves();
            assert_eq!(leaves.len() as u64, u64::from(fanout).pow(depth));
            let distinct: HashSet<&str> = leaves.iter().map(|l| &**l).collect();
            assert_eq!(distinct.len(), leaves.len());
            for leaf in leaves {
                validate_category(leaf).unwrap();
                assert_eq!(leaf.split('/').count() as u32, depth, "{leaf}");
            }
            // Every inner node has exactly `fanout` children.
            let mut children: HashMap<&str, HashSet<&str>> = HashMap::new();
            let all = catalog.all_categories();
            for c in &all {
                children
                    .entry(topsellers_model::parent(c))
                    .or_default()
                    .insert(c);
            }
            assert_eq!(children[""].len(), fanout as usize);
            for (parent, kids) in &children {
                assert_eq!(kids.len(), fanout as usize, "{parent}");
            }
        }
    }

    #[test]
    fn names() {
        let catalog = Catalog::new(&config(10, 3, 8)).unwrap();
        assert!(catalog
            .leaves()
            .iter()
            .any(|l| &**l == "books/books-3/books-3-7"));
        let tops: HashSet<&str> = catalog
            .leaves()
            .iter()
            .map(|l| l.split('/').next().unwrap())
            .collect();
        assert!(tops.contains("books") && tops.contains("beauty") && !tops.contains("grocery"));
        assert_eq!(tops.len(), 8);
        let wide = Catalog::new(&config(10, 1, 25)).unwrap();
        let names: Vec<&str> = wide.leaves().iter().map(|l| &**l).collect();
        assert_eq!(
            &names[20..],
            ["kitchen", "crafts", "dept-23", "dept-24", "dept-25"]
        );
    }

    #[test]
    fn items_deterministic_and_spread() {
        let a = Catalog::new(&config(10_000, 2, 10)).unwrap();
        let b = Catalog::new(&config(10_000, 2, 10)).unwrap();
        assert_eq!(a.items(), 10_000);
        assert_eq!(&**a.item_id(17).unwrap(), "item-17");
        assert!(a.item_id(10_000).is_none());
        for i in 0..a.items() {
            assert_eq!(a.category_of(i), b.category_of(i));
            assert_eq!(a.item_at_rank(i), b.item_at_rank(i));
        }
        // The permutation is a permutation.
        let ranked: HashSet<usize> = (0..a.items()).map(|r| a.item_at_rank(r).unwrap()).collect();
        assert_eq!(ranked.len(), a.items());
        // Items cover the leaves roughly evenly (100 leaves, 100 items each on average).
        let mut per_leaf: HashMap<&str, usize> = HashMap::new();
        for i in 0..a.items() {
            *per_leaf.entry(a.category_of(i).unwrap()).or_default() += 1;
        }
        assert_eq!(per_leaf.len(), 100);
        assert!(
            per_leaf.values().all(|n| (50..=160).contains(n)),
            "{per_leaf:?}"
        );
        // The most popular items are not all in one category.
        let top: HashSet<&str> = (0..20)
            .map(|r| &**a.category_of(a.item_at_rank(r).unwrap()).unwrap())
            .collect();
        assert!(top.len() >= 10, "{top:?}");
        // Another seed places items differently.
        let c = Catalog::new(&GeneratorConfig {
            seed: 7,
            ..config(10_000, 2, 10)
        })
        .unwrap();
        assert!((0..100).any(|i| a.category_of(i) != c.category_of(i)));
    }
}
