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
    /// Purchases hashed but not yet summed: see [`Aggregates::add`].
    pending: Vec<Pending>,
    /// The text of the pending purchases, item then category, back to back.
    pending_text: String,
}

/// A purchase waiting in [`Aggregates::pending`].
struct Pending {
    key: u128,
    ts_ms: i64,
    quantity: i64,
    /// Where its item and category start in `pending_text`, and their lengths.
    text_at: u32,
    item_len: u32,
    category_len: u32,
}

/// Purchases hashed before their table entries are touched: enough for the entries' memory
/// reads to overlap, few enough for the entries to stay in the L1 cache until they are summed.
const PENDING: usize = 32;

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
            pending: Vec::with_capacity(PENDING),
            pending_text: String::new(),
        }
    }

    /// Adds one purchase.
    ///
    /// Once the table outgrows the caches, the wait for a purchase's entry is most of what it
    /// costs. So purchases are hashed as they come and summed [`PENDING`] at a time: all of
    /// their entries are read first, a loop whose reads the processor overlaps, and then
    /// summed from the cache. Their text is copied meanwhile, for the pairs among them that
    /// are new.
    pub(crate) fn add(&mut self, purchase: PurchaseRef<'_>) {
        // One-shot hashes (the streaming hasher copies its input): the category's 64-bit hash
        // seeds the item's 128-bit one.
        let seed = xxhash_rust::xxh3::xxh3_64(purchase.category.as_bytes());
        let key = xxhash_rust::xxh3::xxh3_128_with_seed(purchase.item_id.as_bytes(), seed);
        let text_at = self.pending_text.len() as u32;
        self.pending_text.push_str(purchase.item_id);
        self.pending_text.push_str(purchase.category);
        self.pending.push(Pending {
            key,
            ts_ms: purchase.ts_ms,
            quantity: purchase.quantity,
            text_at,
            item_len: purchase.item_id.len() as u32,
            category_len: purchase.category.len() as u32,
        });
        if self.pending.len() == PENDING {
            self.flush();
        }
    }

    /// Sums the pending purchases.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.table.reserve(self.pending.len());
        self.table.touch(self.pending.iter().map(|p| p.key));
        let more = self.half_lives.len() - 1;
        for pending in self.pending.drain(..) {
            let (sums, new) = self.table.entry(pending.key);
            if new {
                // Text only for pairs, not per purchase.
                let at = pending.text_at as usize;
                let (item, category) = self.pending_text[at..].split_at(pending.item_len as usize);
                let category = &category[..pending.category_len as usize];
                self.pairs
                    .push((Arc::from(item), self.categories.intern(category)));
                self.more_sums
                    .extend(std::iter::repeat_n(DecayedSum::default(), more));
                sums.pair = (self.pairs.len() - 1) as u32;
                sums.latest_ms = pending.ts_ms;
            }
            sums.count += 1;
            sums.latest_ms = sums.latest_ms.max(pending.ts_ms);
            sums.sum
                .add(pending.ts_ms, pending.quantity, self.half_lives[0]);
            let at = sums.pair as usize * more;
            for (sum, &half_life) in self.more_sums[at..at + more]
                .iter_mut()
                .zip(&self.half_lives[1..])
            {
                sum.add(pending.ts_ms, pending.quantity, half_life);
            }
        }
        self.pending_text.clear();
    }

    /// How many pairs there are.
    pub(crate) fn len(&mut self) -> usize {
        self.flush();
        self.pairs.len()
    }

    /// One update per pair: its sums, with the number of purchases as the difference.
    ///
    /// In the order pairs first appeared, so that each pair's text is moved into its update,
    /// not cloned: a clone writes to the text's memory once more, long out of the cache.
    pub(crate) fn into_updates(mut self) -> impl Iterator<Item = (Event, i64)> {
        self.flush();
        let more = self.half_lives.len() - 1;
        let Aggregates {
            table,
            pairs,
            more_sums,
            ..
        } = self;
        let mut by_pair = table.into_entries().collect::<Vec<_>>();
        // The entries' `pair`s are a permutation of their places: applied in place.
        for at in 0..by_pair.len() {
            while by_pair[at].pair as usize != at {
                let to = by_pair[at].pair as usize;
                by_pair.swap(at, to);
            }
        }
        by_pair
            .into_iter()
            .zip(pairs)
            .map(move |(sums, (item_id, category))| {
                let at = sums.pair as usize;
                let parts: Box<[DecayedSum]> = std::iter::once(sums.sum)
                    .chain(more_sums[at * more..(at + 1) * more].iter().copied())
                    .collect();
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
    /// [`reserve`](Self::reserve) room for it first.
    fn entry(&mut self, key: u128) -> (&mut PairSums, bool) {
        // 0 marks empty entries: a real hash of 0 is taken as 1 (one more collision pair in
        // 2^128, nothing to notice).
        let key = key.max(1);
        debug_assert!(
            (self.len + 1) * 2 <= self.entries.len(),
            "entry without reserve"
        );
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

    /// Makes room for `more` new keys (the table stays at most half full).
    fn reserve(&mut self, more: usize) {
        while (self.len + more) * 2 > self.entries.len() {
            self.grow();
        }
    }

    /// Reads the entries where `keys` start their search, so that the reads overlap: each
    /// read is independent of the others, unlike in [`entry`](Self::entry)'s loop.
    fn touch(&self, keys: impl Iterator<Item = u128>) {
        let mask = self.entries.len() - 1;
        let seen = keys.fold(0u64, |seen, key| {
            seen ^ self.entries[key.max(1) as usize & mask].key as u64
        });
        std::hint::black_box(seen);
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
    use std::collections::{BTreeMap, HashMap};

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use topsellers_model::Profile;

    /// Per pair, summed one purchase at a time in arrival order: (count, latest, sums).
    type Oracle = BTreeMap<(String, String), (i64, i64, Vec<DecayedSum>)>;

    #[test]
    fn sums_per_pair_equal_a_purchase_by_purchase_oracle() {
        let half_lives = [3_600_000, 86_400_000, 7 * 86_400_000];
        let scoring = Scoring {
            profiles: half_lives
                .iter()
                .map(|&half_life_ms| Profile {
                    name: format!("{half_life_ms}"),
                    half_life_ms,
                })
                .collect(),
            k: 10,
            retention_ms: i64::MAX,
            lateness_ms: 0,
        };
        let mut rng = SmallRng::seed_from_u64(11);
        // Several chunks of pending purchases and table growths; pairs repeat within a chunk.
        for purchases in [0, 1, PENDING - 1, PENDING, 3 * PENDING + 5, 20_000] {
            let mut aggregates = Aggregates::new(&scoring);
            let mut oracle = Oracle::new();
            let distinct = rng.random_range(1..3000);
            for _ in 0..purchases {
                let item = format!("item-{}", rng.random_range(0..distinct));
                let category = format!("c{}/s{}", rng.random_range(0..3), rng.random_range(0..4));
                let ts_ms = rng.random_range(0..40 * 86_400_000_i64);
                let quantity = rng.random_range(1..5);
                aggregates.add(PurchaseRef {
                    item_id: &item,
                    category: &category,
                    ts_ms,
                    quantity,
                });
                let (count, latest, sums) = oracle.entry((item, category)).or_insert((
                    0,
                    i64::MIN,
                    vec![DecayedSum::default(); half_lives.len()],
                ));
                *count += 1;
                *latest = (*latest).max(ts_ms);
                for (sum, &half_life) in sums.iter_mut().zip(&half_lives) {
                    sum.add(ts_ms, quantity, half_life);
                }
            }
            assert_eq!(aggregates.len(), oracle.len());
            let got: Oracle = aggregates
                .into_updates()
                .map(|(event, count)| {
                    let key = (event.item_id.to_string(), event.category.to_string());
                    let sums = event.aggregate.expect("an aggregate").into_vec();
                    (key, (count, event.ts_ms, sums))
                })
                .collect();
            assert_eq!(got, oracle, "{purchases} purchases");
        }
    }

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
            table.reserve(1);
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
