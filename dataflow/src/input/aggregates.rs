//! Pre-aggregation of the history: purchases summed per (item, leaf category) before they enter
//! the dataflow, one exact update per pair (batch's [`PairSums`]), or, for the live service,
//! one [`PairSeed`] per pair that also lists the pair's purchases (each expires on its own).

use std::sync::Arc;

use topsellers_model::{DecayedSum, PurchaseRef};
use topsellers_operators::purchase_run::{get_varint, put_purchase, put_varint};
use topsellers_operators::{PairSeed, PairSums, RunBuilder};
use topsellers_sources::Interner;

use crate::config::Scoring;

/// Purchases summed per (item, leaf category): exact forward sums per profile.
///
/// Pairs are found by a 128-bit hash of their text (no string comparison on the hot path; a
/// collision among even billions of pairs has probability below 1e-20), through a
/// [`PairTable`]. The pair's text is stored once, when it first appears.
pub(crate) struct Aggregates {
    half_lives: Vec<i64>,
    table: PairTable,
    /// Item and category of each pair, in the table's order of pairs.
    pairs: Vec<(Arc<str>, Arc<str>)>,
    categories: Interner,
    /// Sums of the profiles after the first: `half_lives.len() − 1` per pair.
    more_sums: Vec<DecayedSum>,
    /// Purchases hashed but not yet summed: see [`Aggregates::add`].
    pending: Vec<Pending>,
    /// The text of the pending purchases, item then category, back to back.
    pending_text: String,
    /// Every purchase summed, as (pair, ts, quantity), when seeds are to be made.
    purchases: Option<Recorded>,
}

/// Purchases in the order they were summed, as bytes: per purchase its pair (a varint), then
/// the purchase as its pair's [`PurchaseRun`](topsellers_operators::PurchaseRun) encodes it
/// (against the pair's latest time so far, which the pair's totals hold: a few bytes), in
/// chunks that [`Aggregates::into_seeds`] copies into the runs and frees as it goes.
#[derive(Default)]
struct Recorded {
    chunks: Vec<Vec<u8>>,
}

/// The size of a chunk of [`Recorded`].
const CHUNK: usize = 4 << 20;

/// The most bytes one recorded purchase takes: a 32-bit varint, a 65-bit token and a 64-bit
/// quantity.
const RECORD_MAX: usize = 5 + 10 + 10;

impl Recorded {
    /// Records a purchase of `pair` written against `reference`; the bytes of its run's
    /// encoding.
    fn push(&mut self, pair: u32, reference: i64, ts_ms: i64, quantity: i64) -> usize {
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if chunk.capacity() - chunk.len() >= RECORD_MAX => chunk,
            _ => {
                self.chunks.push(Vec::with_capacity(CHUNK));
                self.chunks.last_mut().expect("just pushed")
            }
        };
        put_varint(chunk, u128::from(pair));
        put_purchase(chunk, reference, ts_ms, quantity)
    }
}

/// A purchase waiting in [`Aggregates::pending`].
struct Pending {
    key: u128,
    ts_ms: i64,
    quantity: i64,
    /// The pair the table guesses it belongs to ([`PairTable::guess`]).
    guess: Option<u32>,
    /// Where its item and category start in `pending_text`, and their lengths.
    text_at: u32,
    item_len: u32,
    category_len: u32,
}

/// Purchases hashed before their table slots and totals are touched: enough for the memory
/// reads to overlap, few enough for what they read to stay in the L1 cache until it is used.
const PENDING: usize = 32;

/// The running totals of one (item, category) pair.
#[derive(Clone, Copy, Default)]
struct PairTotals {
    /// The pair's hash (two halves: 8-byte alignment keeps the totals at 64 bytes).
    key: [u64; 2],
    count: i64,
    latest_ms: i64,
    /// The first profile's sum.
    sum: DecayedSum,
    /// The bytes of the pair's recorded purchases ([`Recorded`]), when recording.
    recorded: u64,
}

impl Aggregates {
    /// Sums for batch ([`Aggregates::into_updates`]).
    pub(crate) fn new(scoring: &Scoring) -> Self {
        Self::with(scoring, None)
    }

    /// Sums that also keep every purchase, for seeds ([`Aggregates::into_seeds`]).
    pub(crate) fn recording(scoring: &Scoring) -> Self {
        Self::with(scoring, Some(Recorded::default()))
    }

    fn with(scoring: &Scoring, purchases: Option<Recorded>) -> Self {
        Aggregates {
            half_lives: scoring.profiles.iter().map(|p| p.half_life_ms).collect(),
            table: PairTable::default(),
            pairs: Vec::new(),
            categories: Interner::new(),
            more_sums: Vec::new(),
            pending: Vec::with_capacity(PENDING),
            pending_text: String::new(),
            purchases,
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
            guess: None,
            text_at,
            item_len: purchase.item_id.len() as u32,
            category_len: purchase.category.len() as u32,
        });
        if self.pending.len() == PENDING {
            self.flush();
        }
    }

    /// Sums the pending purchases: their slots are read first, then the totals the slots point
    /// to, then the totals are updated (each pass's reads overlap).
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.table.reserve(self.pending.len());
        self.table.touch_slots(self.pending.iter().map(|p| p.key));
        for pending in &mut self.pending {
            pending.guess = self.table.guess(pending.key);
        }
        self.table
            .touch_sums(self.pending.iter().filter_map(|p| p.guess));
        let more = self.half_lives.len() - 1;
        for pending in self.pending.drain(..) {
            let (pair, new) = self.table.entry(pending.key, pending.guess);
            let sums = &mut self.table.sums[pair];
            if let Some(recorded) = &mut self.purchases {
                // A run's first purchase is written against 0, the others against the latest
                // time before them.
                let reference = if new { 0 } else { sums.latest_ms };
                sums.recorded +=
                    recorded.push(pair as u32, reference, pending.ts_ms, pending.quantity) as u64;
            }
            if new {
                // Text only for pairs, not per purchase.
                let at = pending.text_at as usize;
                let (item, category) = self.pending_text[at..].split_at(pending.item_len as usize);
                let category = &category[..pending.category_len as usize];
                self.pairs
                    .push((Arc::from(item), self.categories.intern(category)));
                self.more_sums
                    .extend(std::iter::repeat_n(DecayedSum::default(), more));
                sums.latest_ms = pending.ts_ms;
            }
            sums.count += 1;
            sums.latest_ms = sums.latest_ms.max(pending.ts_ms);
            sums.sum
                .add(pending.ts_ms, pending.quantity, self.half_lives[0]);
            for (sum, &half_life) in self.more_sums[pair * more..(pair + 1) * more]
                .iter_mut()
                .zip(&self.half_lives[1..])
            {
                sum.add(pending.ts_ms, pending.quantity, half_life);
            }
        }
        self.pending_text.clear();
    }

    /// How many pairs there are.
    pub(crate) fn pairs(&mut self) -> usize {
        self.flush();
        self.pairs.len()
    }

    /// One update per pair: its sums, with the number of purchases as the difference.
    ///
    /// In the order pairs first appeared, so that each pair's text is moved into its update,
    /// not cloned: a clone writes to the text's memory once more, long out of the cache.
    pub(crate) fn into_updates(mut self) -> impl Iterator<Item = (PairSums, i64)> {
        self.flush();
        let more = self.half_lives.len() - 1;
        let Aggregates {
            table,
            pairs,
            more_sums,
            ..
        } = self;
        table.sums.into_iter().zip(pairs).enumerate().map(
            move |(at, (sums, (item_id, category)))| {
                let parts: Box<[DecayedSum]> = std::iter::once(sums.sum)
                    .chain(more_sums[at * more..(at + 1) * more].iter().copied())
                    .collect();
                let pair = PairSums {
                    item_id,
                    category,
                    latest_ms: sums.latest_ms,
                    sums: parts,
                };
                (pair, sums.count)
            },
        )
    }
}

impl Aggregates {
    /// One seed per pair: its sums and every purchase summed into them (made with
    /// [`Aggregates::recording`]; without it the seeds list no purchase), as a
    /// [`PurchaseRun`](topsellers_operators::PurchaseRun).
    ///
    /// The recorded purchases are already encoded as their runs encode them, and each run's
    /// size is known: each run is allocated once, the bytes are copied into it (not encoded
    /// again), and the recording is freed chunk by chunk, so the recording and the runs, both
    /// a few bytes a purchase, are what this holds at most.
    pub(crate) fn into_seeds(mut self) -> impl Iterator<Item = PairSeed> {
        self.flush();
        let recorded = self.purchases.take().unwrap_or_default();
        let mut runs: Vec<RunBuilder> = self
            .table
            .sums
            .iter()
            .map(|sums| RunBuilder::with_capacity(sums.recorded as usize))
            .collect();
        // Chunk by chunk, each freed once copied.
        for chunk in recorded.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let pair = get_varint(&chunk, &mut at).expect("recorded") as usize;
                at += runs[pair]
                    .push_encoded(&chunk[at..])
                    .expect("recorded against the run's latest time");
            }
        }
        self.into_updates()
            .zip(runs)
            .map(|((pair, _count), run)| PairSeed {
                item_id: pair.item_id,
                category: pair.category,
                sums: pair.sums,
                purchases: run.finish(),
            })
    }
}

/// Where each pair's totals are: open addressing over 8-byte slots (a tag of the key and the
/// pair's index), at most half full, in front of the totals, which are dense in the order the
/// pairs first appeared.
///
/// The slots are what is hashed into and regrown; at an eighth of the totals' size they keep
/// the memory a batch first touches small, which on a virtual machine costs more than the
/// summing itself. The totals grow at the end, and the pairs seen early, the popular ones, sit
/// together. A lookup reads a slot and then the totals: [`Aggregates::flush`] reads each for a
/// chunk of purchases at once, so that the cache misses overlap.
#[derive(Default)]
struct PairTable {
    /// A power of two of slots (or none): 0 is empty, else the key's tag in the high half and
    /// the pair's index + 1 in the low half.
    slots: Vec<u64>,
    /// Per pair, in order of first appearance.
    sums: Vec<PairTotals>,
}

/// Where the search for `key` starts, before masking.
fn home(key: u128) -> usize {
    key as u64 as usize
}

/// What a slot keeps of `key`: bits not used by [`home`] in any table that fits in memory.
fn tag(key: u128) -> u64 {
    (key >> 96) as u64
}

impl PairTable {
    /// Makes room for `more` new pairs (the slots stay at most half full).
    fn reserve(&mut self, more: usize) {
        while (self.sums.len() + more) * 2 > self.slots.len() {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        self.slots = vec![0; size];
        let mask = size - 1;
        for (pair, sums) in self.sums.iter().enumerate() {
            let key = sums.key();
            let mut at = home(key) & mask;
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = (tag(key) << 32) | (pair as u64 + 1);
        }
    }

    /// Reads the slots where `keys` start their search, so that the reads overlap: each read
    /// is independent of the others, unlike in a search's loop.
    fn touch_slots(&self, keys: impl Iterator<Item = u128>) {
        let mask = self.slots.len() - 1;
        let seen = keys.fold(0, |seen, key| seen ^ self.slots[home(key) & mask]);
        std::hint::black_box(seen);
    }

    /// Reads the totals of `pairs`, as [`touch_slots`](Self::touch_slots) does the slots.
    fn touch_sums(&self, pairs: impl Iterator<Item = u32>) {
        let seen = pairs.fold(0, |seen, pair| seen ^ self.sums[pair as usize].key[0]);
        std::hint::black_box(seen);
    }

    /// The pair a search for `key` most likely ends at, from the slots alone: the first on
    /// its path with the key's tag, or `None` (most likely a new pair).
    fn guess(&self, key: u128) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut at = home(key) & mask;
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == tag(key) {
                return Some((slot as u32).wrapping_sub(1));
            }
            at = (at + 1) & mask;
        }
    }

    /// The index of `key`'s totals, and whether they were just created (zeroed but for the
    /// key). `guess` is a hint ([`guess`](Self::guess)), checked. [`reserve`](Self::reserve)
    /// room first.
    fn entry(&mut self, key: u128, guess: Option<u32>) -> (usize, bool) {
        if let Some(pair) = guess {
            if self.sums.get(pair as usize).is_some_and(|s| s.key() == key) {
                return (pair as usize, false);
            }
        }
        debug_assert!(
            (self.sums.len() + 1) * 2 <= self.slots.len(),
            "entry without reserve"
        );
        let mask = self.slots.len() - 1;
        let mut at = home(key) & mask;
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                let pair = self.sums.len();
                self.slots[at] = (tag(key) << 32) | (pair as u64 + 1);
                self.sums.push(PairTotals {
                    key: [key as u64, (key >> 64) as u64],
                    ..PairTotals::default()
                });
                return (pair, true);
            }
            let pair = (slot as u32).wrapping_sub(1) as usize;
            if slot >> 32 == tag(key) && self.sums[pair].key() == key {
                return (pair, false);
            }
            at = (at + 1) & mask;
        }
    }
}

impl PairTotals {
    fn key(&self) -> u128 {
        (u128::from(self.key[1]) << 64) | u128::from(self.key[0])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use topsellers_model::{Profile, Profiles};

    /// Per pair, one purchase at a time in f64, sharing no code with what it checks: the
    /// purchases, their latest time, and per profile `Σ q·2^(−(T − ts)/h)` with `Σ |term|`.
    #[derive(Default)]
    struct Expected {
        count: i64,
        latest: i64,
        scores: Vec<(f64, f64)>,
    }

    /// Whether a sum's score agrees with the brute force's to 1e-9 relative (plus the f64
    /// sum's own error bound, `1e-12 · Σ |term|`, which matters only when terms cancel).
    fn close(got: f64, (want, mag): (f64, f64)) -> bool {
        (got - want).abs() <= 1e-9 * got.abs().max(want.abs()) + 1e-12 * mag
    }

    /// Scoring with one profile per half-life, k = 10, no expiry.
    fn scoring(half_lives: &[i64]) -> Scoring {
        Scoring {
            profiles: Profiles::new(
                half_lives
                    .iter()
                    .map(|&half_life_ms| Profile {
                        name: format!("{half_life_ms}"),
                        half_life_ms,
                    })
                    .collect(),
            )
            .unwrap(),
            k: 10,
            candidates: 10,
            retention_ms: i64::MAX,
            lateness_ms: 0,
            max_future: std::time::Duration::ZERO,
            carry_scores: false,
        }
    }

    #[test]
    fn sums_per_pair_equal_a_purchase_by_purchase_oracle() {
        let half_lives = [3_600_000, 86_400_000, 7 * 86_400_000];
        let scoring = scoring(&half_lives);
        let as_of = 40 * 86_400_000_i64;
        let mut rng = SmallRng::seed_from_u64(11);
        // Several chunks of pending purchases and table growths; pairs repeat within a chunk.
        for purchases in [0, 1, PENDING - 1, PENDING, 3 * PENDING + 5, 20_000] {
            let mut aggregates = Aggregates::new(&scoring);
            let mut oracle: BTreeMap<(String, String), Expected> = BTreeMap::new();
            let distinct = rng.random_range(1..3000);
            for _ in 0..purchases {
                let item = format!("item-{}", rng.random_range(0..distinct));
                let category = format!("c{}/s{}", rng.random_range(0..3), rng.random_range(0..4));
                let ts_ms = rng.random_range(0..as_of);
                // Some returns.
                let quantity = [-2, -1, 1, 1, 2, 3, 4][rng.random_range(0..7)];
                aggregates.add(PurchaseRef {
                    item_id: &item,
                    category: &category,
                    ts_ms,
                    quantity,
                });
                let want = oracle.entry((item, category)).or_insert(Expected {
                    count: 0,
                    latest: i64::MIN,
                    scores: vec![(0.0, 0.0); half_lives.len()],
                });
                want.count += 1;
                want.latest = want.latest.max(ts_ms);
                for (score, &h) in want.scores.iter_mut().zip(&half_lives) {
                    let term = quantity as f64 * (-((as_of - ts_ms) as f64) / h as f64).exp2();
                    score.0 += term;
                    score.1 += term.abs();
                }
            }
            assert_eq!(aggregates.pairs(), oracle.len());
            let mut seen = 0;
            for (pair, count) in aggregates.into_updates() {
                let key = (pair.item_id.to_string(), pair.category.to_string());
                let want = oracle
                    .get(&key)
                    .unwrap_or_else(|| panic!("{key:?}: no such pair"));
                assert_eq!(
                    (count, pair.latest_ms),
                    (want.count, want.latest),
                    "{key:?}"
                );
                for ((sum, &want), &h) in pair.sums.iter().zip(&want.scores).zip(&half_lives) {
                    let got = sum.score_at(as_of, h);
                    assert!(
                        close(got, want),
                        "{key:?}, half-life {h}: {got} vs {want:?}"
                    );
                }
                seen += 1;
            }
            assert_eq!(seen, oracle.len(), "{purchases} purchases");
        }
    }

    /// Every purchase comes back in its pair's seed, exactly and in the order read, with the
    /// pair's count: against per-pair lists kept here. Times go back and forth within a pair
    /// (as a history not sorted by time has them), jump by up to `i64`'s whole range, and
    /// quantities reach beyond `i32`.
    #[test]
    fn seeds_list_every_purchase_of_their_pair_in_read_order() {
        let scoring = scoring(&[7 * 86_400_000]);
        let mut rng = SmallRng::seed_from_u64(5);
        for purchases in [0, 1, PENDING + 1, 50_000] {
            let mut aggregates = Aggregates::recording(&scoring);
            let mut oracle: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
            let distinct = rng.random_range(1..2000);
            for _ in 0..purchases {
                let item = format!("item-{}", rng.random_range(0..distinct));
                let category = format!("c{}", rng.random_range(0..3));
                let ts_ms = match rng.random_range(0..20) {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    2 => rng.random(),
                    _ => 1_700_000_000_000 + rng.random_range(-86_400_000..365 * 86_400_000),
                };
                let quantity = match rng.random_range(0..10) {
                    0 => rng.random(),
                    1 => i64::from(i32::MAX) + rng.random_range(1..3),
                    2 => -rng.random_range(1..4),
                    _ => rng.random_range(1..4),
                };
                aggregates.add(PurchaseRef {
                    item_id: &item,
                    category: &category,
                    ts_ms,
                    quantity,
                });
                oracle
                    .entry((item, category))
                    .or_default()
                    .push((ts_ms, quantity));
            }
            let mut seen = 0;
            for seed in aggregates.into_seeds() {
                let key = (seed.item_id.to_string(), seed.category.to_string());
                let want = oracle
                    .get(&key)
                    .unwrap_or_else(|| panic!("{key:?}: no such pair"));
                assert_eq!(seed.purchases.len(), want.len(), "{key:?}");
                assert_eq!(&seed.purchases.iter().collect::<Vec<_>>(), want, "{key:?}");
                let sorted = want.windows(2).all(|w| w[0].0 <= w[1].0);
                assert_eq!(seed.purchases.is_sorted(), sorted, "{key:?}");
                seen += 1;
            }
            assert_eq!(seen, oracle.len(), "{purchases} purchases");
        }
    }

    #[test]
    fn table_finds_what_a_hash_map_finds() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut table = PairTable::default();
        let mut oracle: HashMap<u128, i64> = HashMap::new();
        // Few distinct keys, many repeats, through several growths; on purpose, keys whose
        // low bits collide (long probe runs), keys sharing a tag (a guess that is wrong), and
        // the key 0.
        let keys: Vec<u128> = (0..5000)
            .map(|i| match i % 4 {
                0 => rng.random(),
                1 => (rng.random::<u128>() << 64) | (i as u128 % 7),
                2 => (5 << 96) | rng.random::<u64>() as u128,
                _ => i as u128 % 11,
            })
            .collect();
        for _ in 0..60_000 {
            let key = keys[rng.random_range(0..keys.len())];
            table.reserve(1);
            // The guess is a hint: the table's own, none, or any pair at all.
            let guess = match rng.random_range(0..3) {
                0 => table.guess(key),
                1 => None,
                _ => Some(rng.random_range(0..=table.sums.len() as u32)),
            };
            let (pair, new) = table.entry(key, guess);
            let count = oracle.entry(key).or_insert(0);
            assert_eq!(new, *count == 0, "key {key}");
            table.sums[pair].count += 1;
            *count += 1;
        }
        let mut got: Vec<(u128, i64)> = table.sums.iter().map(|e| (e.key(), e.count)).collect();
        let mut want: Vec<(u128, i64)> = oracle.into_iter().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
