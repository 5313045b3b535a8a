//! A pair's purchases `(ts_ms, quantity)` in a few bytes each: what a seed carries and the
//! expiry queue keeps of every purchase of a backfill (a year of history is most of the live
//! state's memory).
//!
//! ## Encoding
//! Each purchase is a varint (LEB128) token: the zigzag of its time minus a reference time,
//! as `i64` with wrapping arithmetic, shifted left by one, its low bit set when the quantity
//! is 1 (most purchases); any other quantity follows as a zigzag varint. The reference is 0
//! for the first purchase, then the latest time so far (the previous purchase's, in time
//! order): so a backfill can write a pair's purchases as it reads them, knowing only the
//! pair's latest time. The token is a `u128`, so no difference of two `i64` times is cut (a
//! token has at most 65 bits: 10 bytes). A year's run of a pair (a purchase every few days)
//! takes 4–5 bytes a purchase instead of 16.
//!
//! Every `(i64, i64)` round-trips exactly, in any order; a run knows whether it is in time
//! order ([`PurchaseRun::is_sorted`]: no token goes back), which the expiry queue needs
//! ([`PurchaseRun::sorted`]).

use serde::{Deserialize, Serialize};

/// Purchases `(ts_ms, quantity)`, compactly encoded (see the module's doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PurchaseRun {
    len: usize,
    sorted: bool,
    bytes: Box<[u8]>,
}

impl PurchaseRun {
    /// Encodes `purchases` in the order given.
    pub fn new(purchases: &[(i64, i64)]) -> PurchaseRun {
        let mut size = 0;
        let mut reference = Reference::default();
        for &(ts_ms, quantity) in purchases {
            size += encoded_len(reference.time(), ts_ms, quantity);
            reference.pass(ts_ms);
        }
        let mut builder = RunBuilder::with_capacity(size);
        for &(ts_ms, quantity) in purchases {
            builder.push(ts_ms, quantity);
        }
        builder.finish()
    }

    /// How many purchases.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the purchases are in time order (each no earlier than the one before).
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// The run in time order (itself when it is already).
    pub fn sorted(self) -> PurchaseRun {
        if self.sorted {
            return self;
        }
        let mut purchases: Vec<(i64, i64)> = self.iter().collect();
        // Stable: purchases at the same time keep their order.
        purchases.sort_by_key(|&(ts_ms, _)| ts_ms);
        PurchaseRun::new(&purchases)
    }

    /// The purchases, in the run's order.
    pub fn iter(&self) -> Purchases<'_> {
        Purchases {
            bytes: &self.bytes,
            cursor: Cursor::default(),
        }
    }

    /// The encoded bytes (what a [`Cursor`] reads), for a reader that keeps its own place.
    pub(crate) fn into_bytes(self) -> Box<[u8]> {
        self.bytes
    }

    /// The encoded size, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The reference time of the next token: 0 before the first purchase, then the latest time
/// passed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reference(Option<i64>);

impl Reference {
    pub(crate) fn time(self) -> i64 {
        self.0.unwrap_or(0)
    }

    /// Whether a purchase at `ts_ms` goes back in time (never the first).
    fn goes_back(self, ts_ms: i64) -> bool {
        self.0.is_some_and(|latest| ts_ms < latest)
    }

    pub(crate) fn pass(&mut self, ts_ms: i64) {
        self.0 = Some(self.0.map_or(ts_ms, |latest| latest.max(ts_ms)));
    }
}

/// A place in a run's bytes: where the next purchase starts, and the latest time before it
/// (its reference; none at the start).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cursor {
    at: usize,
    latest: i64,
}

impl Cursor {
    /// The purchase here, and the cursor past it; `None` at the end.
    #[inline]
    pub(crate) fn next(self, bytes: &[u8]) -> Option<((i64, i64), Cursor)> {
        let first = self.at == 0;
        let mut at = self.at;
        let reference = if first { 0 } else { self.latest };
        let (ts_ms, quantity) = get_purchase(bytes, &mut at, reference)?;
        let latest = if first { ts_ms } else { self.latest.max(ts_ms) };
        Some(((ts_ms, quantity), Cursor { at, latest }))
    }
}

/// Builds a [`PurchaseRun`] one purchase at a time; sized once when the caller knows the size
/// ([`encoded_len`]), so that no byte is copied.
#[derive(Debug)]
pub struct RunBuilder {
    bytes: Vec<u8>,
    reference: Reference,
    len: usize,
    sorted: bool,
}

impl RunBuilder {
    /// A builder with room for `bytes` encoded bytes.
    pub fn with_capacity(bytes: usize) -> RunBuilder {
        RunBuilder {
            bytes: Vec::with_capacity(bytes),
            reference: Reference::default(),
            len: 0,
            sorted: true,
        }
    }

    /// Appends a purchase (in any order; see [`PurchaseRun::is_sorted`]).
    pub fn push(&mut self, ts_ms: i64, quantity: i64) {
        put_purchase(&mut self.bytes, self.reference.time(), ts_ms, quantity);
        self.passed(ts_ms);
    }

    /// Appends the purchase `bytes` start with, as [`put_purchase`] wrote it against this
    /// run's reference (0 for a first purchase, else the latest time pushed): its bytes are
    /// copied, not encoded again. How many bytes it took; `None` (nothing appended) when
    /// `bytes` do not start with a purchase.
    #[inline]
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut at = 0;
        let (ts_ms, _) = get_purchase(bytes, &mut at, self.reference.time())?;
        self.bytes.extend_from_slice(&bytes[..at]);
        self.passed(ts_ms);
        Some(at)
    }

    fn passed(&mut self, ts_ms: i64) {
        if self.reference.goes_back(ts_ms) {
            self.sorted = false;
        }
        self.reference.pass(ts_ms);
        self.len += 1;
    }

    /// The run (its bytes not copied when the capacity was exact).
    pub fn finish(self) -> PurchaseRun {
        PurchaseRun {
            len: self.len,
            sorted: self.sorted,
            bytes: self.bytes.into_boxed_slice(),
        }
    }
}

/// The purchases of a run, decoded in order.
#[derive(Clone, Debug)]
pub struct Purchases<'a> {
    bytes: &'a [u8],
    cursor: Cursor,
}

impl Iterator for Purchases<'_> {
    type Item = (i64, i64);

    fn next(&mut self) -> Option<(i64, i64)> {
        let (purchase, cursor) = self.cursor.next(self.bytes)?;
        self.cursor = cursor;
        Some(purchase)
    }
}

/// The bytes a purchase at `ts_ms` takes against `reference`.
#[inline]
pub fn encoded_len(reference: i64, ts_ms: i64, quantity: i64) -> usize {
    let (token, rest) = token(reference, ts_ms, quantity);
    varint_len(token) + rest.map_or(0, |q| varint_len(u128::from(q)))
}

/// Appends a purchase at `ts_ms` against `reference` (see the module's doc); the bytes
/// written.
#[inline]
pub fn put_purchase(out: &mut Vec<u8>, reference: i64, ts_ms: i64, quantity: i64) -> usize {
    let before = out.len();
    let (token, rest) = token(reference, ts_ms, quantity);
    put_varint(out, token);
    if let Some(q) = rest {
        put_varint(out, u128::from(q));
    }
    out.len() - before
}

/// Reads the purchase at `*at` written against `reference` and moves `*at` past it; `None`
/// at the end (or on bytes no encoder wrote).
#[inline]
pub fn get_purchase(bytes: &[u8], at: &mut usize, reference: i64) -> Option<(i64, i64)> {
    let mut i = *at;
    let token = get_varint(bytes, &mut i)?;
    let ts_ms = reference.wrapping_add(unzigzag((token >> 1) as u64));
    let quantity = if token & 1 == 1 {
        1
    } else {
        unzigzag(u64::try_from(get_varint(bytes, &mut i)?).ok()?)
    };
    *at = i;
    Some((ts_ms, quantity))
}

/// A purchase's token, and its quantity's zigzag when not 1.
#[inline]
fn token(reference: i64, ts_ms: i64, quantity: i64) -> (u128, Option<u64>) {
    let delta = u128::from(zigzag(ts_ms.wrapping_sub(reference))) << 1;
    if quantity == 1 {
        (delta | 1, None)
    } else {
        (delta, Some(zigzag(quantity)))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as LEB128: 7 bits a byte, low first, the high bit set on all but the last.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The bytes [`put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: u128) -> usize {
    let bits = 128 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads a varint at `*at` and moves past it; `None` (`*at` unmoved) at the end or when it
/// runs past the end or past 128 bits.
#[inline]
pub fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u128> {
    let mut i = *at;
    // The first 63 bits in a `u64` (most varints end there), the rest in a `u128`.
    let mut low = 0u64;
    for shift in (0..63).step_by(7) {
        let byte = *bytes.get(i)?;
        i += 1;
        low |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            *at = i;
            return Some(u128::from(low));
        }
    }
    let mut v = u128::from(low);
    for shift in (63..128).step_by(7) {
        let byte = *bytes.get(i)?;
        i += 1;
        v |= u128::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            *at = i;
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Times and quantities anywhere in `i64`, extremes over-represented.
    fn value() -> impl Strategy<Value = i64> {
        prop_oneof![
            -3i64..5,
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i64::MIN + 1),
            Just(i64::MAX - 1),
            (i32::MIN as i64 - 2)..(i32::MIN as i64 + 2),
            (i32::MAX as i64 - 2)..(i32::MAX as i64 + 2),
            1_700_000_000_000i64..1_800_000_000_000,
        ]
    }

    /// Purchases as a seed has them: mostly near in time (a year of epoch ms), some anywhere.
    fn purchases() -> impl Strategy<Value = Vec<(i64, i64)>> {
        prop::collection::vec((value(), value()), 0..40)
    }

    /// The bytes each purchase takes, counted the plain way: LEB128 of the token (against the
    /// latest earlier time, or 0 for the first), then of the quantity's zigzag when it is not
    /// 1 (computed here in `i128` and `u128` arithmetic, not with the code's bit tricks).
    fn plain_len(purchases: &[(i64, i64)]) -> usize {
        fn leb(mut v: u128) -> usize {
            let mut n = 1;
            while v >= 128 {
                v /= 128;
                n += 1;
            }
            n
        }
        fn zz(v: i64) -> u128 {
            let v = v as i128;
            (if v >= 0 { 2 * v } else { -2 * v - 1 }) as u128
        }
        let mut len = 0;
        for (i, &(ts, q)) in purchases.iter().enumerate() {
            let reference = purchases[..i].iter().map(|p| p.0).max().unwrap_or(0);
            len += leb(zz(ts.wrapping_sub(reference)) * 2 + u128::from(q == 1));
            if q != 1 {
                len += leb(zz(q));
            }
        }
        len
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any purchases, in any order, come back exactly, in the same order; sorting gives
        /// what sorting a plain `Vec` gives; the sizes are what the plain count says.
        #[test]
        fn round_trips_against_a_plain_vec(purchases in purchases()) {
            let run = PurchaseRun::new(&purchases);
            prop_assert_eq!(run.len(), purchases.len());
            prop_assert_eq!(run.is_empty(), purchases.is_empty());
            prop_assert_eq!(run.iter().collect::<Vec<_>>(), purchases.clone());
            let plain_sorted = purchases.windows(2).all(|w| w[0].0 <= w[1].0);
            prop_assert_eq!(run.is_sorted(), plain_sorted);
            prop_assert_eq!(run.encoded_len(), plain_len(&purchases));

            let mut want = purchases.clone();
            want.sort_by_key(|&(ts, _)| ts);
            let sorted = run.sorted();
            prop_assert!(sorted.is_sorted());
            prop_assert_eq!(sorted.iter().collect::<Vec<_>>(), want);
        }

        /// Purchases of several pairs recorded as a backfill records them (the pair, then the
        /// purchase against the pair's latest earlier time) read back exactly, and copied
        /// into per-pair runs ([`RunBuilder::push_encoded`]) make the runs that encoding each
        /// pair's purchases makes.
        #[test]
        fn recorded_stream_copies_into_runs(records in prop::collection::vec((0u128..4, value(), value()), 0..60)) {
            let mut bytes = Vec::new();
            let mut plain: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 4];
            for &(pair, ts, q) in &records {
                let earlier = &plain[pair as usize];
                let reference = earlier.iter().map(|p| p.0).max().unwrap_or(0);
                put_varint(&mut bytes, pair);
                let before = bytes.len();
                let written = put_purchase(&mut bytes, reference, ts, q);
                prop_assert_eq!(bytes.len() - before, written);
                prop_assert_eq!(written, encoded_len(reference, ts, q));
                plain[pair as usize].push((ts, q));
            }
            let mut runs: Vec<RunBuilder> = (0..4).map(|_| RunBuilder::with_capacity(0)).collect();
            let mut at = 0;
            for &(pair, _, _) in &records {
                prop_assert_eq!(get_varint(&bytes, &mut at), Some(pair));
                at += runs[pair as usize].push_encoded(&bytes[at..]).expect("a purchase");
            }
            prop_assert_eq!(at, bytes.len());
            prop_assert_eq!(get_varint(&bytes, &mut at), None);
            for (run, plain) in runs.into_iter().zip(&plain) {
                let run = run.finish();
                prop_assert_eq!(run.iter().collect::<Vec<_>>(), plain.clone());
                prop_assert_eq!(run, PurchaseRun::new(plain));
            }
        }
    }

    #[test]
    fn extremes_round_trip() {
        let purchases = [
            (i64::MIN, i64::MIN),
            (i64::MAX, i64::MAX),
            (i64::MIN, 1),
            (0, -1),
            (i64::MAX, 0),
            (-1, i64::from(i32::MAX) + 1),
            (1, i64::from(i32::MIN) - 1),
        ];
        let run = PurchaseRun::new(&purchases);
        assert_eq!(run.iter().collect::<Vec<_>>(), purchases);
        assert!(!run.is_sorted());
        // The largest token: a difference of i64::MIN, zigzagged (2^64 − 1) and shifted (65
        // bits); the largest quantity's zigzag (64 bits). From MIN to MAX is a difference of
        // −1 (wrapping): one byte.
        assert_eq!(encoded_len(0, i64::MIN, 1), 10);
        assert_eq!(encoded_len(0, i64::MIN, i64::MIN), 20);
        assert_eq!(encoded_len(i64::MIN, i64::MAX, 1), 1);
    }

    #[test]
    fn a_year_of_a_pair_takes_few_bytes() {
        // A purchase every 14 days, quantity 1: 5 bytes each (a 31-bit difference, zigzag
        // and flag: 33 bits); the first one's absolute time takes 7.
        let start = 1_767_225_600_000i64;
        let purchases: Vec<(i64, i64)> =
            (0..26).map(|i| (start + i * 14 * 86_400_000, 1)).collect();
        assert_eq!(PurchaseRun::new(&purchases).encoded_len(), 7 + 25 * 5);
    }

    #[test]
    fn truncated_bytes_end_the_run() {
        let mut at = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut at), None);
        let mut at = 0;
        assert_eq!(get_purchase(&[0x04], &mut at, 0), None, "quantity missing");
        let mut at = 0;
        assert_eq!(get_varint(&[0xff; 20], &mut at), None, "past 128 bits");
    }
}
