//! The `topsellers` binary: parses the command line and hands over to the commands. The one
//! place errors become `anyhow`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use topsellers::cli::{Cli, Command, LogFormat};
use topsellers::signals::stop_on_signals;
use topsellers::Stop;

// Purchases and lists allocate many small strings and vectors across threads: mimalloc's
// thread-local free lists measured clearly faster here than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match run(cli.command, cli.log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The message and its causes on one line; never a backtrace (even with
            // RUST_BACKTRACE set): these are the user's errors, not the program's.
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: not in a log file, a pipe or a journal.
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (e.g. the `cluster` launcher was killed) must not turn every log line
        // into a panic: the process has to keep working, or stop cleanly.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn run(command: Command, log_format: LogFormat) -> Result<()> {
    match command {
        Command::Run(args) => {
            let settings = args.config()?;
            let stop = Stop::new();
            stop_on_signals(&stop)?;
            topsellers::run::run(&settings, stop)?;
        }
        Command::Batch(args) => {
            topsellers::batch::batch(&args)?;
        }
        Command::Generate(args) => topsellers::generate::generate(&args)?,
        Command::Cluster(args) => {
            let workers = args.workers_file()?;
            // Check the flags and files here, once, before any process starts.
            args.run.config_at(Some(0))?;
            let mut run_args: Vec<String> = std::env::args()
                .skip_while(|arg| arg != "cluster")
                .skip(1)
                .collect();
            // A format given before `cluster` holds for the processes too.
            if log_format == LogFormat::Json
                && !run_args.iter().any(|a| a.starts_with("--log-format"))
            {
                run_args.extend(["--log-format".to_owned(), "json".to_owned()]);
            }
            topsellers::cluster::launcher::launch(workers, &run_args)?;
        }
    }
    Ok(())
}
