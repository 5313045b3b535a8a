//! The `topsellers` binary: parses the command line and hands over to the drivers.

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use topsellers::cli::{Cli, Command};

// Purchases and lists allocate many small strings and vectors across threads: mimalloc's
// thread-local free lists measured clearly faster here than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => topsellers::run::run(&args),
        Command::Batch(args) => topsellers::batch::batch(&args).map(|_| ()),
        Command::Generate(args) => topsellers::generate::generate(&args),
    }
}
