//! A live store in one process: generated purchases → decayed top-k → HTTP, read a few times.
//!
//! Run with: `cargo run --release -p topsellers-examples --example storefront`
//!
//! It starts topsellers with its built-in generator (20k purchases/s over a 512-leaf category
//! tree), waits until it serves, then reads the home page, a department and a leaf category
//! over HTTP three times, a second apart, so you can see the lists move.

use std::time::Duration;

use anyhow::Result;
use topsellers::Config;
use topsellers_examples::get;
use topsellers_sources::generator::GeneratorConfig;
use topsellers_sources::SourceConfig;

fn main() -> Result<()> {
    let mut config = Config {
        sources: vec![SourceConfig::Generator(GeneratorConfig::default())],
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into(); // any free port
    config.dead_letter.path = String::new();
    let service = topsellers::run::start(&config)?;
    service.wait_ready(Duration::from_secs(30))?;
    println!("topsellers serves on http://{}\n", service.addr);

    for round in 1..=3 {
        std::thread::sleep(Duration::from_secs(1));
        println!("--- read {round} ---");
        for path in [
            "/v1/top?limit=3",
            "/v1/top/books?limit=3",
            "/v1/top/books/books-1/books-1-1?limit=3",
        ] {
            let (status, body) = get(service.addr, path)?;
            println!("GET {path} → {status}\n{body}\n");
        }
    }
    let (_, categories) = get(service.addr, "/v1/categories")?;
    println!(
        "/v1/categories is {} bytes; /metrics says:",
        categories.len()
    );
    let (_, metrics) = get(service.addr, "/metrics")?;
    for line in metrics.lines().filter(|l| {
        l.starts_with("topsellers_purchases_total") || l.starts_with("topsellers_watermark")
    }) {
        println!("  {line}");
    }
    Ok(service.shutdown()?)
}
