//! Backfill from files, then serve: the same lists as the batch job, live over HTTP.
//!
//! Run with: `cargo run --release -p topsellers-examples --example backfill`
//!
//! It writes 200k purchases of synthetic history (30 days) as Parquet into a temporary
//! directory, computes the batch lists (what the nightly job used to produce), starts the
//! service on the same files, waits until the backfill is served, and shows that both give
//! the same top 3 for the home page.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use topsellers::Config;
use topsellers_examples::get;
use topsellers_sources::files::{FilesConfig, Format};
use topsellers_sources::generator::{history, Catalog, GeneratorConfig};
use topsellers_sources::writer::PurchaseWriter;
use topsellers_sources::SourceConfig;

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("purchases.parquet");
    let generator = GeneratorConfig::default();
    let catalog = Arc::new(Catalog::new(&generator)?);
    let end_ms = 1_795_000_000_000; // a fixed "now", so every run shows the same lists
    let mut writer = PurchaseWriter::create(&path, Format::Parquet)?;
    for purchase in history(catalog, &generator, 200_000, end_ms, 30 * 86_400_000)? {
        writer.write(&purchase)?;
    }
    println!("wrote {} purchases to {}", writer.finish()?, path.display());

    let files = FilesConfig::new(vec![path.display().to_string()]);
    let mut config = Config {
        sources: vec![SourceConfig::Files(files)],
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    config.dead_letter.path = String::new();

    let (summary, lists, profiles) = topsellers::batch::compute(&config, None)?;
    let root = lists
        .iter()
        .find(|l| l.profile == 0 && l.category.is_empty())
        .expect("the root has a list");
    println!("\nbatch, as of {} ms: home page top 3", summary.as_of_ms);
    for (rank, item) in root.items.iter().take(3).enumerate() {
        println!(
            "  {}. {}  {:.3}",
            rank + 1,
            item.item_id,
            item.score
                .score_at(summary.as_of_ms, profiles[0].half_life_ms)
        );
    }

    let service = topsellers::run::start(&config)?;
    service.wait_ready(Duration::from_secs(60))?;
    let (status, body) = get(service.addr, "/v1/top?limit=3")?;
    println!("\nlive, after the backfill: GET /v1/top?limit=3 → {status}\n{body}");
    Ok(service.shutdown()?)
}
