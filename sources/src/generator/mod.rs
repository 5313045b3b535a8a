//! Synthetic purchases: Zipf-popular items, a rotating trending set, returns and late events.

mod catalog;
mod config;

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use topsellers_model::Purchase;

pub use catalog::Catalog;
pub use config::{GeneratorConfig, Rate, MAX_ITEMS, MAX_LEAVES};

use crate::error::SettingError;
use catalog::mix;

/// Seed stream of the event history (worker streams are their indexes).
const HISTORY_STREAM: u64 = u64::MAX;
/// On-time events are stamped no earlier than this before the poll's clock.
const MAX_BACKLOG_MS: i64 = 1000;

/// Generates one worker's share of purchases.
pub struct Generator {
    catalog: Arc<Catalog>,
    rng: SmallRng,
    zipf: Zipf<f64>,
    /// Purchases per second for this worker; `None` for `max`.
    rate: Option<u64>,
    start_ms: Option<i64>,
    emitted: u64,
    seed: u64,
    trending_items: u32,
    trending_share: f64,
    trend_period_ms: i64,
    trend_epoch: Option<i64>,
    trending: Vec<u32>,
    returns_fraction: f64,
    late_fraction: f64,
    max_lateness_ms: i64,
}

impl Generator {
    /// Worker `worker_index` of `peers`: it generates `rate / peers` purchases per second (the
    /// remainder spread over the first workers), from a random stream of its own.
    pub fn new(
        catalog: Arc<Catalog>,
        config: &GeneratorConfig,
        worker_index: usize,
        peers: usize,
    ) -> Result<Generator, SettingError> {
        let peers = peers.max(1) as u64;
        let index = worker_index as u64;
        let rate = match config.rate {
            Rate::Max => None,
            Rate::PerSecond(total) => Some(total / peers + u64::from(index < total % peers)),
        };
        Generator::build(catalog, config, index, rate)
    }

    fn build(
        catalog: Arc<Catalog>,
        config: &GeneratorConfig,
        stream: u64,
        rate: Option<u64>,
    ) -> Result<Generator, SettingError> {
        config.validate()?;
        let items = catalog.items().max(1);
        let zipf = Zipf::new(items as f64, config.zipf_exponent)
            .map_err(|e| SettingError::new("generator.zipf_exponent", e.to_string()))?;
        Ok(Generator {
            rng: SmallRng::seed_from_u64(mix(config.seed, stream)),
            zipf,
            rate,
            start_ms: None,
            emitted: 0,
            seed: config.seed,
            trending_items: config.trending_items,
            trending_share: config.trending_share,
            trend_period_ms: config.trend_period_ms()?,
            trend_epoch: None,
            trending: Vec::new(),
            returns_fraction: config.returns_fraction,
            late_fraction: config.late_fraction,
            max_lateness_ms: config.max_lateness_ms(),
            catalog,
        })
    }

    /// Appends to `out` the purchases due by wall-clock `now_ms` (epoch ms) under the rate, at
    /// most `max`; returns how many. The first poll starts the clock (and emits nothing); later
    /// polls emit what the rate allows since then, catching up over several polls if more are
    /// due than `max`. With [`Rate::Max`], appends exactly `max`.
    ///
    /// Event times are when each purchase fell due (never before `now_ms − 1s`), or up to
    /// `max_lateness` earlier for late ones.
    pub fn poll(&mut self, now_ms: i64, out: &mut Vec<Purchase>, max: usize) -> usize {
        let Some(rate) = self.rate else {
            out.reserve(max);
            for _ in 0..max {
                let p = self.purchase(now_ms, i64::MIN);
                out.push(p);
            }
            return max;
        };
        let start = *self.start_ms.get_or_insert(now_ms);
        let elapsed = i128::from(now_ms.saturating_sub(start).max(0));
        let due = u64::try_from(elapsed * i128::from(rate) / 1000).unwrap_or(u64::MAX);
        let count = due.saturating_sub(self.emitted).min(max as u64);
        out.reserve(count as usize);
        let floor = now_ms.saturating_sub(MAX_BACKLOG_MS);
        for k in 0..count {
            let nth = i128::from(self.emitted + k + 1);
            let scheduled = i128::from(start) + nth * 1000 / i128::from(rate.max(1));
            let ts = (scheduled.clamp(i128::from(floor), i128::from(now_ms))) as i64;
            let p = self.purchase(ts, i64::MIN);
            out.push(p);
        }
        self.emitted += count;
        count as usize
    }

    /// Purchases emitted so far by [`Generator::poll`] under a rate (not counted for `max`).
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// One purchase around event time `ts_ms`; a late one is moved earlier, but not below
    /// `floor_ms`.
    fn purchase(&mut self, ts_ms: i64, floor_ms: i64) -> Purchase {
        let mut ts = ts_ms;
        if self.late_fraction > 0.0 && self.rng.random::<f64>() < self.late_fraction {
            let by = self.rng.random_range(0..=self.max_lateness_ms);
            ts = ts.saturating_sub(by).max(floor_ms);
        }
        let index = self.pick_item(ts);
        let quantity =
            if self.returns_fraction > 0.0 && self.rng.random::<f64>() < self.returns_fraction {
                -1
            } else {
                match self.rng.random_range(0..100u32) {
                    0..90 => 1,
                    90..97 => 2,
                    _ => 3,
                }
            };
        let (item_id, category) = self.catalog.item(index);
        Purchase {
            item_id,
            category,
            ts_ms: ts,
            quantity,
        }
    }

    fn pick_item(&mut self, ts_ms: i64) -> usize {
        if self.trending_items > 0
            && self.trending_share > 0.0
            && self.rng.random::<f64>() < self.trending_share
        {
            self.refresh_trending(ts_ms);
            if let Some(&item) = self
                .trending
                .get(self.rng.random_range(0..self.trending.len().max(1)))
            {
                return item as usize;
            }
        }
        let rank = self.zipf.sample(&mut self.rng) as usize;
        self.catalog.ranked(rank.saturating_sub(1))
    }

    /// The trending set of the trend period containing `ts_ms`: the same on every worker.
    fn refresh_trending(&mut self, ts_ms: i64) {
        let epoch = ts_ms.div_euclid(self.trend_period_ms);
        if self.trend_epoch == Some(epoch) {
            return;
        }
        self.trend_epoch = Some(epoch);
        let mut rng = SmallRng::seed_from_u64(mix(self.seed ^ 0x7472_656e_6473, epoch as u64));
        let items = self.catalog.items().max(1);
        self.trending.clear();
        self.trending
            .extend((0..self.trending_items).map(|_| rng.random_range(0..items) as u32));
    }
}

/// `events` purchases with event times spread evenly over `[end_ms − span_ms, end_ms]` (late
/// ones a little earlier, so not quite sorted), with the generator's popularity model, trends
/// and returns: the history a backfill would find. The same seed gives the same history.
pub fn history(
    catalog: Arc<Catalog>,
    config: &GeneratorConfig,
    events: u64,
    end_ms: i64,
    span_ms: i64,
) -> Result<History, SettingError> {
    let generator = Generator::build(catalog, config, HISTORY_STREAM, None)?;
    let span_ms = span_ms.max(0);
    Ok(History {
        generator,
        next: 0,
        events,
        start_ms: end_ms.saturating_sub(span_ms),
        span_ms,
    })
}

/// The iterator of [`history`].
pub struct History {
    generator: Generator,
    next: u64,
    events: u64,
    start_ms: i64,
    span_ms: i64,
}

impl Iterator for History {
    type Item = Purchase;

    fn next(&mut self) -> Option<Purchase> {
        if self.next >= self.events {
            return None;
        }
        let steps = i128::from(self.events.saturating_sub(1).max(1));
        let offset = i128::from(self.next) * i128::from(self.span_ms) / steps;
        self.next += 1;
        let ts = self.start_ms.saturating_add(offset as i64);
        Some(self.generator.purchase(ts, self.start_ms))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.events - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use topsellers_model::validate_category;

    fn catalog(config: &GeneratorConfig) -> Arc<Catalog> {
        Arc::new(Catalog::new(config).unwrap())
    }

    fn max_config() -> GeneratorConfig {
        GeneratorConfig {
            rate: Rate::Max,
            items: 10_000,
            ..GeneratorConfig::default()
        }
    }

    fn take(generator: &mut Generator, now: i64, n: usize) -> Vec<Purchase> {
        let mut out = Vec::new();
        assert_eq!(generator.poll(now, &mut out, n), n);
        out
    }

    #[test]
    fn deterministic_for_a_seed_and_different_per_worker() {
        let config = max_config();
        let cat = catalog(&config);
        let a = take(
            &mut Generator::new(cat.clone(), &config, 0, 2).unwrap(),
            1_000_000,
            5000,
        );
        let b = take(
            &mut Generator::new(cat.clone(), &config, 0, 2).unwrap(),
            1_000_000,
            5000,
        );
        let c = take(
            &mut Generator::new(cat.clone(), &config, 1, 2).unwrap(),
            1_000_000,
            5000,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let other = GeneratorConfig { seed: 43, ..config };
        let d = take(
            &mut Generator::new(catalog(&other), &other, 0, 2).unwrap(),
            1_000_000,
            5000,
        );
        assert_ne!(a, d);
    }

    #[test]
    fn rate_limits() {
        let config = GeneratorConfig {
            rate: Rate::PerSecond(1000),
            ..max_config()
        };
        let cat = catalog(&config);
        let mut g = Generator::new(cat.clone(), &config, 0, 1).unwrap();
        let mut out = Vec::new();
        assert_eq!(g.poll(0, &mut out, 100_000), 0);
        assert_eq!(g.poll(1000, &mut out, 100_000), 1000);
        assert_eq!(g.poll(1000, &mut out, 100_000), 0);
        assert_eq!(g.poll(1500, &mut out, 100_000), 500);
        // Capped by max, the rest comes later.
        assert_eq!(g.poll(2500, &mut out, 300), 300);
        assert_eq!(g.poll(2500, &mut out, 100_000), 700);
        assert_eq!(out.len(), 2500);
        assert!(out.iter().all(|p| p.ts_ms <= 2500));
        // Shared over workers: the total is the rate.
        for peers in [3, 4, 7] {
            let total: usize = (0..peers)
                .map(|w| {
                    let mut g = Generator::new(cat.clone(), &config, w, peers).unwrap();
                    let mut out = Vec::new();
                    g.poll(10_000, &mut out, 1 << 20);
                    g.poll(11_000, &mut out, 1 << 20)
                })
                .sum();
            assert_eq!(total, 1000, "peers {peers}");
        }
    }

    #[test]
    fn max_rate_gives_exactly_max_near_now() {
        let config = GeneratorConfig {
            late_fraction: 0.1,
            max_lateness: std::time::Duration::from_secs(5),
            ..max_config()
        };
        let mut g = Generator::new(catalog(&config), &config, 0, 1).unwrap();
        let now = 1_700_000_000_000;
        let out = take(&mut g, now, 20_000);
        assert!(out.iter().all(|p| p.ts_ms <= now && p.ts_ms >= now - 5000));
        let late = out.iter().filter(|p| p.ts_ms < now).count();
        assert!((1500..2500).contains(&late), "{late}");
        let mut none = Vec::new();
        assert_eq!(g.poll(now, &mut none, 0), 0);
    }

    #[test]
    fn returns_quantities_and_categories() {
        let config = max_config();
        let cat = catalog(&config);
        let mut g = Generator::new(cat.clone(), &config, 0, 1).unwrap();
        let out = take(&mut g, 0, 200_000);
        let returns = out.iter().filter(|p| p.quantity == -1).count() as f64 / out.len() as f64;
        assert!((0.008..0.012).contains(&returns), "{returns}");
        assert!(out.iter().all(|p| matches!(p.quantity, -1 | 1 | 2 | 3)));
        let leaves: HashSet<&str> = cat.leaves().iter().map(|l| &**l).collect();
        for p in &out {
            validate_category(&p.category).unwrap();
            assert!(leaves.contains(&*p.category));
            assert_eq!(p.category.split('/').count(), 3);
        }
        // Each item always comes with its own category.
        let mut category_of: HashMap<&str, &str> = HashMap::new();
        for p in &out {
            assert_eq!(
                *category_of.entry(&p.item_id).or_insert(&p.category),
                &*p.category
            );
        }
    }

    #[test]
    fn popularity_is_skewed() {
        let config = GeneratorConfig {
            trending_share: 0.0,
            ..max_config()
        };
        let cat = catalog(&config);
        let mut g = Generator::new(cat.clone(), &config, 0, 1).unwrap();
        let out = take(&mut g, 0, 100_000);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for p in &out {
            *counts.entry(&p.item_id).or_default() += 1;
        }
        let top = cat.item_id(cat.item_at_rank(0).unwrap()).unwrap();
        let tenth = cat.item_id(cat.item_at_rank(9).unwrap()).unwrap();
        let (c0, c9) = (counts[&**top], counts.get(&**tenth).copied().unwrap_or(0));
        // Zipf with s = 1.1 over 10k items: rank 1 gets ~1/H ≈ 11%, rank 10 about 10^1.1 ≈ 12.6x less.
        assert!(c0 > 5 * c9 && c0 > 5000, "{c0} vs {c9}");
        assert!(counts.len() > 1000);
    }

    #[test]
    fn trending_set_rotates() {
        let config = GeneratorConfig {
            trending_share: 1.0,
            trending_items: 5,
            trend_period: std::time::Duration::from_secs(30),
            late_fraction: 0.0,
            ..max_config()
        };
        let cat = catalog(&config);
        let items_at = |worker: usize, now: i64| -> HashSet<Arc<str>> {
            let mut g = Generator::new(cat.clone(), &config, worker, 2).unwrap();
            take(&mut g, now, 2000)
                .into_iter()
                .map(|p| p.item_id)
                .collect()
        };
        let first = items_at(0, 60_000);
        assert!(first.len() <= 5 && first.len() >= 3, "{first:?}");
        assert_eq!(
            items_at(1, 60_001),
            first,
            "same set on every worker within a period"
        );
        let later = items_at(0, 90_000);
        assert_ne!(later, first);
    }

    #[test]
    fn history_is_deterministic_spread_and_mildly_shuffled() {
        let config = GeneratorConfig {
            late_fraction: 0.05,
            ..max_config()
        };
        let cat = catalog(&config);
        let end = 1_700_000_000_000;
        let span = 3_600_000;
        let a: Vec<Purchase> = history(cat.clone(), &config, 50_000, end, span)
            .unwrap()
            .collect();
        let b: Vec<Purchase> = history(cat.clone(), &config, 50_000, end, span)
            .unwrap()
            .collect();
        assert_eq!(a.len(), 50_000);
        assert_eq!(a, b);
        assert!(a.iter().all(|p| (end - span..=end).contains(&p.ts_ms)));
        assert_eq!(a.iter().map(|p| p.ts_ms).max(), Some(end));
        assert!(a.iter().map(|p| p.ts_ms).min().unwrap() < end - span + 1000);
        let inversions = a.windows(2).filter(|w| w[1].ts_ms < w[0].ts_ms).count();
        assert!(inversions > 100 && inversions < 10_000, "{inversions}");
        assert!(a.iter().any(|p| p.quantity == -1));
        let (lo, hi) = history(cat, &config, 10, end, span).unwrap().size_hint();
        assert_eq!((lo, hi), (10, Some(10)));
    }

    #[test]
    fn invalid_config_is_an_error_not_a_panic() {
        let config = max_config();
        let cat = catalog(&config);
        let bad = GeneratorConfig {
            trend_period: std::time::Duration::ZERO,
            ..config
        };
        assert!(Generator::new(cat.clone(), &bad, 0, 1).is_err());
        assert!(history(cat, &bad, 10, 0, 10).is_err());
    }

    #[test]
    #[ignore = "throughput probe: cargo test -p topsellers-sources --release -- --ignored throughput"]
    fn throughput() {
        let config = GeneratorConfig {
            rate: Rate::Max,
            ..GeneratorConfig::default()
        };
        let mut g = Generator::new(catalog(&config), &config, 0, 1).unwrap();
        let mut out = Vec::with_capacity(100_000);
        let start = std::time::Instant::now();
        let mut total = 0;
        while start.elapsed().as_secs_f64() < 2.0 {
            out.clear();
            total += g.poll(0, &mut out, 100_000);
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("generator: {rate:.0} purchases/s");
    }
}
