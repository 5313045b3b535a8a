//! `topsellers generate`: synthetic purchase history in JSONL, CSV or Parquet.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use topsellers_model::wall_clock_ms;
use topsellers_sources::files::Format;
use topsellers_sources::generator::{history, Catalog, GeneratorConfig};
use topsellers_sources::writer::PurchaseWriter;
use topsellers_sources::{SettingError, SourceError};

use crate::cli::GenerateArgs;
use crate::config::millis;

/// Why `topsellers generate` failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The generator's flags (`--items`, `--depth`, `--fanout`) are out of range.
    #[error("generator settings: {0}")]
    Settings(#[from] SettingError),
    /// `--format` names no format.
    #[error("--format {0:?}: use jsonl, csv or parquet")]
    Format(String),
    /// The output could not be written.
    #[error(transparent)]
    Write(#[from] SourceError),
}

/// Runs `topsellers generate`.
pub fn generate(args: &GenerateArgs) -> Result<(), GenerateError> {
    let mut config = GeneratorConfig {
        seed: args.seed,
        ..GeneratorConfig::default()
    };
    if let Some(items) = args.items {
        config.items = items;
    }
    if let Some(depth) = args.depth {
        config.depth = depth;
    }
    if let Some(fanout) = args.fanout {
        config.fanout = fanout;
    }
    config.validate()?;
    let format = match args.format.as_deref() {
        Some("jsonl") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some("parquet") => Format::Parquet,
        Some(other) => return Err(GenerateError::Format(other.into())),
        None => Format::from_path(&args.output).unwrap_or(Format::Jsonl),
    };
    let end_ms = args.end.unwrap_or_else(wall_clock_ms);
    let span_ms = millis(args.span);
    let catalog = Arc::new(Catalog::new(&config)?);

    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(args.events).with_style(
            ProgressStyle::with_template(
                "generate {bar:30} {human_pos}/{human_len} purchases  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut writer = PurchaseWriter::create(&args.output, format)?;
    for (n, purchase) in history(catalog, &config, args.events, end_ms, span_ms)?.enumerate() {
        writer.write(&purchase)?;
        if n % 65_536 == 0 {
            bar.set_position(n as u64);
        }
    }
    let rows = writer.finish()?;
    bar.finish_and_clear();
    tracing::info!("wrote {rows} purchases to {}", args.output.display());
    Ok(())
}
