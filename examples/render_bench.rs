//! The figure behind `sinks/src/list_json.rs`'s choice: rendering top-100 lists with the
//! hand-written writer (`list_json::push_document`, what the publisher and `batch` use) against
//! `serde_json` on a derived `Serialize` document of the same shape. Both outputs are checked
//! equal (as JSON values) first; then alternating rounds, medians.
//!
//! `cargo run --release -p topsellers-examples --example render_bench [LISTS] [ROUNDS]`

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use topsellers_model::{format_rfc3339_ms, DecayedSum, Profile, RankedItem, TopKList};
use topsellers_sinks::list_json;

#[derive(Serialize)]
struct Document<'a> {
    category: &'a str,
    profile: &'a str,
    as_of: String,
    items: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Item<'a> {
    rank: usize,
    item_id: &'a str,
    score: f64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let lists: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(11_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let profile = Profile {
        name: "7d".into(),
        half_life_ms: 7 * 86_400_000,
    };
    let as_of = 1_796_000_000_000i64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let data: Vec<TopKList> = (0..lists)
        .map(|l| TopKList {
            profile: 0,
            category: Arc::from(format!("cat-{}/sub-{}/leaf-{l}", l % 22, l % 484)),
            items: (0..100)
                .map(|_| {
                    let mut sum = DecayedSum::default();
                    sum.add(
                        as_of - (next() % 30_000_000_000) as i64,
                        1 + (next() % 5) as i64,
                        profile.half_life_ms,
                    );
                    RankedItem {
                        item_id: Arc::from(format!("item-{}", next() % 1_000_000)),
                        score: sum.key().expect("a positive sum"),
                        scores: None,
                    }
                })
                .collect(),
        })
        .collect();

    let ours = |list: &TopKList, out: &mut Vec<u8>| {
        let items = list.items.iter().map(|item| (item, None));
        list_json::push_document(out, &list.category, items, &profile, as_of);
    };
    let serde = |list: &TopKList, out: &mut Vec<u8>| {
        let doc = Document {
            category: &list.category,
            profile: &profile.name,
            as_of: format_rfc3339_ms(as_of),
            items: list
                .items
                .iter()
                .enumerate()
                .map(|(at, item)| Item {
                    rank: at + 1,
                    item_id: &item.item_id,
                    score: item.score.score_at(as_of, profile.half_life_ms),
                })
                .collect(),
        };
        serde_json::to_writer(&mut *out, &doc).expect("serialize");
    };
    for list in data.iter().take(50) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ours(list, &mut a);
        serde(list, &mut b);
        let a: serde_json::Value = serde_json::from_slice(&a).expect("ours is JSON");
        let b: serde_json::Value = serde_json::from_slice(&b).expect("serde's is JSON");
        assert_eq!(a, b, "both render the same document");
    }
    let time = |render: &dyn Fn(&TopKList, &mut Vec<u8>)| {
        let started = Instant::now();
        let mut bytes = 0;
        for list in &data {
            let mut out = Vec::with_capacity(8192);
            render(list, &mut out);
            bytes += out.len();
        }
        (started.elapsed().as_secs_f64(), bytes)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(time(&ours).0);
        b.push(time(&serde).0);
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (ma, mb) = (a[a.len() / 2], b[b.len() / 2]);
    println!(
        "{lists} top-100 lists, median of {rounds} alternating rounds: hand-written {:.1} ms \
         ({:.2} µs/list), serde_json {:.1} ms ({:.2} µs/list): serde_json/hand-written {:.2}×",
        ma * 1e3,
        ma * 1e6 / lists as f64,
        mb * 1e3,
        mb * 1e6 / lists as f64,
        mb / ma
    );
}
