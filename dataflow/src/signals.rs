//! Process signals: SIGINT, SIGTERM and SIGHUP set the stop signal (a graceful drain: the
//! last checkpoint, the last commits); a second one while stopping exits at once (status 1).
//! SIGHUP is what a closed terminal or a supervisor's "reload" sends; without a handler it
//! killed the process at once, with no drain and no log line. Logs go to stderr, so there is
//! nothing to reopen.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::stop::Stop;

/// Sets `stop` on SIGINT, SIGTERM or SIGHUP, from a thread of its own.
pub fn stop_on_signals(stop: &Stop) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
                if stop.is_stopped() {
                    tracing::warn!("{name} again while stopping: exiting now");
                    std::process::exit(1);
                }
                tracing::info!("{name}: stopping (again to exit at once)");
                stop.stop();
            }
        })?;
    Ok(())
}
