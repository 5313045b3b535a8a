//! Batch pre-aggregation: purchases summed per (item, leaf category) before they enter the
//! dataflow, one exact update per pair.

use std::sync::Arc;

use topsellers_model::purchase::Event;
use topsellers_model::{DecayedSum, PurchaseRef};
use topsellers_sources::Interner;

use crate::config::Scoring;

/// Purchases summed per (item, leaf category): exact forward sums per profile.
///
/// Pairs are found by a 128-bit hash of their text (no string comparison on the hot path; a
/// collision among even billions of pairs has probability below 1e-20). A purchase touches one
/// table entry holding everything it updates; the pair's text is stored once, when it first
/// appears.
pub(crate) struct Aggregates {
    half_lives: Vec<i64>,
    table: PairTable,
    /// Item and category of each pair, by [`PairSums::pair`].
    pairs: Vec<(Arc<str>, Arc<str>)>,
    categories: Interner,
    /// Sums of the profiles after the first: `half_lives.len() − 1` per pair.
    more_sums: Vec<DecayedSum>,
}

/// The running totals of one (item, category) pair.
#[derive(Clone, Copy, Default)]
struct PairSums {
    /// The pair's hash; 0 marks an empty table entry.
    key: u128,
    pair: u32,
    count: i64,
    latest_ms: i64,
    /// The first profile's sum.
    sum: DecayedSum,
}

impl Aggregates {
    pub(crate) fn new(scoring: &Scoring) -> Self {
        Aggregates {
            half_lives: scoring.profiles.iter().map(|p| p.half_life_ms).collect(),
            table: PairTable::default(),
            pairs: Vec::new(),
            categories: Interner::new(),
            more_sums: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, purchase: PurchaseRef<'_>) {
        // One-shot hashes (the streaming hasher copies its input): the category's 64-bit hash
        // seeds the item's 128-bit one.
        let seed = xxhash_rust::xxh3::xxh3_64(purchase.category.as_bytes());
        let key = xxhash_rust::xxh3::xxh3_128_with_seed(purchase.item_id.as_bytes(), seed);
        let more = self.half_lives.len() - 1;
        let (sums, new) = self.table.entry(key);
        if new {
            // Text only for pairs, not per purchase.
            self.pairs.push((
                Arc::from(purchase.item_id),
                self.categories.intern(purchase.category),
            ));
            self.more_sums
                .extend(std::iter::repeat_n(DecayedSum::default(), more));
            sums.pair = (self.pairs.len() - 1) as u32;
            sums.latest_ms = purchase.ts_ms;
        }
        sums.count += 1;
        sums.latest_ms = sums.latest_ms.max(purchase.ts_ms);
        sums.sum
            .add(purchase.ts_ms, purchase.quantity, self.half_lives[0]);
        let at = sums.pair as usize * more;
        for (sum, &half_life) in self.more_sums[at..at + more]
            .iter_mut()
            .zip(&self.half_lives[1..])
        {
            sum.add(purchase.ts_ms, purchase.quantity, half_life);
        }
    }

    /// How many pairs there are.
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }

    /// One update per pair: its sums, with the number of purchases as the difference.
    pub(crate) fn into_updates(self) -> impl Iterator<Item = (Event, i64)> {
        let more = self.half_lives.len() - 1;
        let Aggregates {
            table,
            pairs,
            more_sums,
            ..
        } = self;
        table.into_entries().map(move |sums| {
            let at = sums.pair as usize;
            let parts: Box<[DecayedSum]> = std::iter::once(sums.sum)
                .chain(more_sums[at * more..(at + 1) * more].iter().copied())
                .collect();
            let (item_id, category) = pairs[at].clone();
            let event = Event {
                item_id,
                category,
                ts_ms: sums.latest_ms,
                aggregate: Some(parts),
            };
            (event, sums.count)
        })
    }
}

/// Open addressing on 128-bit hashes with linear probing, at most half full: a lookup costs
/// one memory access (the entry itself, no separate control bytes), which is what a purchase
/// costs once the table outgrows the caches.
#[derive(Default)]
struct PairTable {
    /// A power of two of entries (or none).
    entries: Vec<PairSums>,
    len: usize,
}

impl PairTable {
    /// The entry of `key`, and whether it was just created (zeroed but for its key).
    fn entry(&mut self, key: u128) -> (&mut PairSums, bool) {
        // 0 marks empty entries: a real hash of 0 is taken as 1 (one more collision pair in
        // 2^128, nothing to notice).
        let key = key.max(1);
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mask = self.entries.len() - 1;
        let mut at = key as usize & mask;
        loop {
            let found = self.entries[at].key;
            if found == key {
                return (&mut self.entries[at], false);
            }
            if found == 0 {
                self.len += 1;
                let entry = &mut self.entries[at];
                entry.key = key;
                return (entry, true);
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.entries.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.entries, vec![PairSums::default(); size]);
        let mask = size - 1;
        for entry in old.into_iter().filter(|e| e.key != 0) {
            let mut at = entry.key as usize & mask;
            while self.entries[at].key != 0 {
                at = (at + 1) & mask;
            }
            self.entries[at] = entry;
        }
    }

    fn into_entries(self) -> impl Iterator<Item = PairSums> {
        self.entries.into_iter().filter(|e| e.key != 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn table_finds_what_a_hash_map_finds() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut table = PairTable::default();
        let mut oracle: HashMap<u128, i64> = HashMap::new();
        // Few distinct keys, many repeats, through several growths; low bits colliding on
        // purpose (linear probing runs), and the key 0.
        let keys: Vec<u128> = (0..5000)
            .map(|i| match i % 3 {
                0 => rng.random(),
                1 => (rng.random::<u128>() << 64) | (i as u128 % 7),
                _ => i as u128 % 11,
            })
            .collect();
        for _ in 0..60_000 {
            let key = keys[rng.random_range(0..keys.len())];
            let (entry, new) = table.entry(key);
            let count = oracle.entry(key.max(1)).or_insert(0);
            assert_eq!(new, *count == 0, "key {key}");
            entry.count += 1;
            *count += 1;
        }
        let mut got: Vec<(u128, i64)> = table.into_entries().map(|e| (e.key, e.count)).collect();
        let mut want: Vec<(u128, i64)> = oracle.into_iter().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
