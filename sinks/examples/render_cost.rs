//! What compressing a list costs (once per rendered list, on the first request that accepts
//! gzip or br) against rendering it: renders a realistic top-100 list (ids like
//! the generator's `item-123456`, scores from a week of purchases under a 1-day half-life)
//! many times with and without its gzip and brotli copies, and prints the time per list and
//! the sizes. Dependencies are optimised even in debug builds (see the workspace's
//! `[profile.dev.package."*"]`), so the compression cost is close to a release build's:
//!
//! `cargo run -p topsellers-sinks --example render_cost` (add `--release` for the rendering
//! itself at full speed).

use std::sync::Arc;
use std::time::Instant;

use topsellers_model::{DecayedSum, Profile, RankedItem, TopKList};
use topsellers_sinks::{Coding, RenderedList};

const DAY: i64 = 86_400_000;

fn main() {
    let profile = Profile {
        name: "1d".into(),
        half_life_ms: DAY,
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let now = 20_000 * DAY;
    let mut items: Vec<RankedItem> = (0..100)
        .map(|_| {
            let mut sum = DecayedSum::default();
            for _ in 0..(1 + next() % 40) {
                let ts = now - (next() % (7 * DAY as u64)) as i64;
                sum.add(ts, 1 + (next() % 3) as i64, profile.half_life_ms);
            }
            RankedItem {
                item_id: Arc::from(format!("item-{}", next() % 1_000_000)),
                score: sum.key().expect("positive"),
                scores: None,
            }
        })
        .collect();
    items.sort_by_key(RankedItem::rank_key);
    let list = TopKList {
        profile: 0,
        category: "dept-3/dept-3-1/dept-3-1-4".into(),
        items,
    };
    let rounds = 2_000;
    let time = |compress: bool| {
        let started = Instant::now();
        for _ in 0..rounds {
            let mut rendered = RenderedList::render(&list, &profile, now, 100);
            if compress {
                // What the first request that accepts gzip or br makes (once per list).
                rendered.allow_compression();
                std::hint::black_box(rendered.encoded(100));
            }
            std::hint::black_box(&rendered);
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    };
    let (plain, compressed) = (time(false), time(true));
    let mut rendered = RenderedList::render(&list, &profile, now, 100);
    rendered.allow_compression();
    let encoded = rendered.encoded(100).expect("a top-100 list is compressed");
    let size = |coding| encoded.get(coding).map_or(0, |b| b.len());
    println!("top-100 list, {rounds} renders each");
    println!("render only:          {plain:8.1} µs per list");
    println!("render + gzip + br:   {compressed:8.1} µs per list");
    println!(
        "sizes: identity {} B, gzip {} B, br {} B",
        rendered.full().len(),
        size(Coding::Gzip),
        size(Coding::Brotli)
    );
}
