//! Forward-decayed scores: `F = Σ q·2^(t/h)` kept exactly enough for 1e-9, without overflow.
//!
//! `2^(−(T−t)/h) = 2^(−T/h) · 2^(t/h)`, so items rank by the forward sum `F`, which does not
//! change as the clock moves (DESIGN.md, "Forward decay"). `2^(t/h)` overflows an f64 after
//! about a thousand half-lives, so a [`DecayedSum`] keeps `F = 2^exp · (hi + lo)`: an integer
//! exponent that moves with the newest purchase (rescaling by a power of two is exact) and a
//! double-double mantissa, so that returns and retention expiry, which subtract, do not leave
//! rounding residue beyond ~1e-30 of the largest part ever added.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// How far above the current exponent a new weight may be before the sum is rescaled.
const RESCALE_ABOVE: i64 = 32;

/// `2^k` for an integer `k`, exact where representable (0 below the subnormal range).
#[inline]
fn pow2(k: i64) -> f64 {
    if (-1022..=1023).contains(&k) {
        // A normal power of two: its bits directly (exact, and no call on the hot path).
        return f64::from_bits(((k + 1023) as u64) << 52);
    }
    let k = k.clamp(-1100, 1100) as i32;
    2f64.powi(k)
}

/// Splits the weight `2^(t/h)` into an integer exponent and a mantissa in `[1, 2)`.
#[inline]
fn forward_weight(ts_ms: i64, half_life_ms: i64) -> (i64, f64) {
    let whole = ts_ms.div_euclid(half_life_ms);
    let rest = ts_ms.rem_euclid(half_life_ms);
    (whole, (rest as f64 / half_life_ms as f64).exp2())
}

/// The forward weight `q·2^(t/h)` of one update, as `value · 2^exp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weight {
    exp: i64,
    value: f64,
}

impl Weight {
    /// The weight of `quantity` purchases at `ts_ms` under half-life `half_life_ms` (> 0).
    #[inline]
    pub fn of(ts_ms: i64, quantity: i64, half_life_ms: i64) -> Weight {
        let (exp, mantissa) = forward_weight(ts_ms, half_life_ms);
        Weight {
            exp,
            value: quantity as f64 * mantissa,
        }
    }
}

/// A forward-decayed sum `Σ q·2^(t/h)` for one (category, item) and one half-life.
///
/// Equality, order and hash are by bits (a total order, so sums can travel in dataflow data).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct DecayedSum {
    exp: i64,
    hi: f64,
    lo: f64,
}

impl DecayedSum {
    /// Adds `quantity` purchases at `ts_ms` under half-life `half_life_ms` (> 0).
    #[inline]
    pub fn add(&mut self, ts_ms: i64, quantity: i64, half_life_ms: i64) {
        self.add_weight(Weight::of(ts_ms, quantity, half_life_ms));
    }

    /// Adds a precomputed weight (one purchase counts in several categories: compute once).
    #[inline]
    pub fn add_weight(&mut self, weight: Weight) {
        self.add_scaled(weight.exp, weight.value);
    }

    /// Adds another sum of the same half-life (pre-aggregation).
    #[inline]
    pub fn merge(&mut self, other: &DecayedSum) {
        self.add_scaled(other.exp, other.hi);
        self.add_scaled(other.exp, other.lo);
    }

    /// Adds `value · 2^exp`.
    #[inline]
    fn add_scaled(&mut self, exp: i64, value: f64) {
        if value == 0.0 {
            return;
        }
        if self.hi == 0.0 && self.lo == 0.0 {
            *self = DecayedSum {
                exp,
                hi: value,
                lo: 0.0,
            };
            return;
        }
        if exp > self.exp + RESCALE_ABOVE {
            let shift = pow2(self.exp - exp);
            self.hi *= shift;
            self.lo *= shift;
            self.exp = exp;
        }
        let c = value * pow2(exp - self.exp);
        // Knuth's two-sum: s + e == hi + c exactly.
        let s = self.hi + c;
        let bb = s - self.hi;
        let e = (self.hi - (s - bb)) + (c - bb);
        let lo = self.lo + e;
        // Renormalise so that |lo| <= ulp(hi) / 2.
        let hi = s + lo;
        self.lo = lo - (hi - s);
        self.hi = hi;
    }

    /// Forgets everything: used when the last live purchase of a key has expired, so that a
    /// fully retracted sum is exactly zero rather than rounding residue.
    pub fn clear(&mut self) {
        *self = DecayedSum::default();
    }

    /// The ranking key, if the sum is positive (only positive scores are ranked).
    #[inline]
    pub fn key(&self) -> Option<ScoreKey> {
        let value = self.hi + self.lo;
        if value > 0.0 && value.is_finite() {
            Some(ScoreKey::from_scaled(self.exp, value))
        } else {
            None
        }
    }

    /// The decayed score as of `as_of_ms`: `Σ q·2^(−(T−t)/h)`.
    pub fn score_at(&self, as_of_ms: i64, half_life_ms: i64) -> f64 {
        let value = self.hi + self.lo;
        if value == 0.0 {
            return 0.0;
        }
        ScoreKey::from_scaled(self.exp, value.abs()).score_at(as_of_ms, half_life_ms)
            * value.signum()
    }
}

impl DecayedSum {
    fn bits(&self) -> (i64, u64, u64) {
        (self.exp, self.hi.to_bits(), self.lo.to_bits())
    }
}

impl PartialEq for DecayedSum {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}
impl Eq for DecayedSum {}
impl PartialOrd for DecayedSum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DecayedSum {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bits().cmp(&other.bits())
    }
}
impl std::hash::Hash for DecayedSum {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}

/// A positive forward score `mantissa · 2^exp`, `mantissa ∈ [1, 2)`, totally ordered by value.
///
/// Comparisons are exact: two keys are equal only if their values are bit-for-bit equal, so
/// exact ties fall through to the `item_id` tie-break.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreKey {
    /// Binary exponent.
    pub exp: i64,
    /// Mantissa in `[1, 2)`.
    pub mantissa: f64,
}

impl ScoreKey {
    /// Normalises `value · 2^exp` for a positive finite `value`.
    #[inline]
    fn from_scaled(exp: i64, value: f64) -> ScoreKey {
        debug_assert!(value > 0.0 && value.is_finite());
        let bits = value.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i64;
        if biased == 0 {
            // Subnormal: scale into the normal range first (exact).
            return ScoreKey::from_scaled(exp - 64, value * 2f64.powi(64));
        }
        let mantissa = f64::from_bits((bits & !(0x7ff << 52)) | (1023 << 52));
        ScoreKey {
            exp: exp + biased - 1023,
            mantissa,
        }
    }

    /// The decayed score as of `as_of_ms` for half-life `half_life_ms`.
    pub fn score_at(&self, as_of_ms: i64, half_life_ms: i64) -> f64 {
        let whole = as_of_ms.div_euclid(half_life_ms);
        let rest = as_of_ms.rem_euclid(half_life_ms);
        let exponent = (self.exp - whole) as f64 - rest as f64 / half_life_ms as f64;
        self.mantissa * exponent.exp2()
    }
}

impl Eq for ScoreKey {}

impl PartialOrd for ScoreKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScoreKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.exp
            .cmp(&other.exp)
            .then(self.mantissa.total_cmp(&other.mantissa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_by_bits_equals_powi() {
        for k in -1200..=1200 {
            let expected = 2f64.powi(k.clamp(-1100, 1100) as i32);
            assert_eq!(pow2(k).to_bits(), expected.to_bits(), "2^{k}");
        }
    }

    const H: i64 = 7 * 86_400_000;

    fn direct(events: &[(i64, i64)], as_of: i64, h: i64) -> f64 {
        events
            .iter()
            .map(|&(t, q)| q as f64 * (-((as_of - t) as f64) / h as f64).exp2())
            .sum()
    }

    #[test]
    fn matches_direct_sum() {
        let as_of = 1_763_800_000_000;
        let events: Vec<(i64, i64)> = (0..1000)
            .map(|i| (as_of - (i * 7919 % 1000) * 3_600_000, 1 + i % 3))
            .collect();
        let mut sum = DecayedSum::default();
        for &(t, q) in &events {
            sum.add(t, q, H);
        }
        let ours = sum.score_at(as_of, H);
        let theirs = direct(&events, as_of, H);
        assert!(
            ((ours - theirs) / theirs).abs() < 1e-12,
            "{ours} vs {theirs}"
        );
    }

    #[test]
    fn no_overflow_after_thousands_of_half_lives() {
        let h = 3_600_000; // one hour
        let start = 1_700_000_000_000; // ~472k half-lives after the epoch
        let mut sum = DecayedSum::default();
        sum.add(start, 1, h);
        sum.add(start + 5000 * h, 2, h);
        let score = sum.score_at(start + 5000 * h, h);
        assert!((score - 2.0).abs() < 1e-12, "{score}");
    }

    #[test]
    fn retraction_leaves_exactly_the_rest() {
        let mut sum = DecayedSum::default();
        sum.add(1_000, 1, H);
        sum.add(5_000_000_000, 1_000_000, H);
        sum.add(5_000_000_000, -1_000_000, H);
        let rest = sum.score_at(1_000, H);
        assert!((rest - 1.0).abs() < 1e-15, "{rest}");
    }

    #[test]
    fn keys_order_by_value() {
        let mut small = DecayedSum::default();
        small.add(0, 3, H);
        let mut big = DecayedSum::default();
        big.add(H, 2, H); // 2·2 = 4 > 3
        assert!(big.key().unwrap() > small.key().unwrap());
        let mut neg = DecayedSum::default();
        neg.add(0, -1, H);
        assert!(neg.key().is_none());
        assert!(DecayedSum::default().key().is_none());
        let mut same = DecayedSum::default();
        same.add(0, 3, H);
        assert_eq!(same.key(), small.key());
    }

    #[test]
    fn merge_equals_adding() {
        let mut a = DecayedSum::default();
        let mut b = DecayedSum::default();
        let mut all = DecayedSum::default();
        for i in 0..100 {
            let (t, q) = (i * 86_400_000, 1 + i % 5);
            if i % 2 == 0 {
                a.add(t, q, H)
            } else {
                b.add(t, q, H)
            }
            all.add(t, q, H);
        }
        a.merge(&b);
        let (x, y) = (a.score_at(0, H), all.score_at(0, H));
        assert!(((x - y) / y).abs() < 1e-15);
    }
}
