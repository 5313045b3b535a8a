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
        // A closed stderr (e.g. the `cluster` launcher was killed) must not turn every log line
        // into a panic: the process has to keep working, or stop cleanly.
        .log_internal_errors(false)
        .init();
    match Cli::parse().command {
        Command::Run(args) => topsellers::run::run(&args),
        Command::Batch(args) => topsellers::batch::batch(&args).map(|_| ()),
        Command::Generate(args) => topsellers::generate::generate(&args),
        Command::Cluster(args) => {
            let workers = args.workers_file()?;
            // Check the flags here, once, before any process starts.
            args.run.scoring.config(Some(0))?;
            let run_args: Vec<String> = std::env::args()
                .skip_while(|arg| arg != "cluster")
                .skip(1)
                .collect();
            topsellers::cluster::launcher::launch(workers, &run_args)
        }
    }
}
