//! `topsellers cluster`: starts every process of `workers.toml` that lives on this host,
//! prefixes their logs, forwards SIGINT/SIGTERM, and stops all when one dies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::layout::Layout;
use crate::config_file::ConfigError;
use crate::signals::stop_on_signals;
use crate::stop::Stop;

/// How long the others get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Set (to the launcher's pid) in the environment of the processes the launcher starts: they
/// stop when the launcher is gone, even if it was killed without a chance to stop them.
pub const LAUNCHER_ENV: &str = "TOPSELLERS_LAUNCHER_PID";

/// Why `topsellers cluster` failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The layout file cannot be used.
    #[error(transparent)]
    Layout(#[from] ConfigError),
    /// No process of the layout is on this host.
    #[error(
        "none of the processes in {file} has a timely address on this host: start each process \
         on its own host with `topsellers run --workers {file} --process I`"
    )]
    NoneHere {
        /// The layout file.
        file: String,
    },
    /// The launcher could not watch signals, find its executable, or start or watch a process.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A process exited (first) or failed to stop.
    #[error("{0}")]
    Stopped(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// Runs the processes of `workers_file` that are on this host with `run_args` (the `run` flags
/// as given, `--workers` included) until a signal or until one of them exits; returns an error
/// (exit status 1) if any of them failed.
pub fn launch(workers_file: &Path, run_args: &[String]) -> Result<(), LaunchError> {
    let workers = Layout::load(workers_file)?;
    let local: Vec<usize> = (0..workers.process.len())
        .filter(|&p| is_local(&workers.process[p].timely))
        .collect();
    if local.is_empty() {
        return Err(LaunchError::NoneHere {
            file: workers_file.display().to_string(),
        });
    }
    let stop = Stop::new();
    stop_on_signals(&stop).map_err(io("cannot watch signals"))?;
    let program = std::env::current_exe().map_err(io("cannot find the topsellers executable"))?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for &process in &local {
        let spawned = Command::new(&program)
            .arg("run")
            .args(run_args)
            .arg("--process")
            .arg(process.to_string())
            .env(LAUNCHER_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                terminate(&mut children);
                return Err(io(format!("cannot start process {process}"))(e));
            }
        };
        let prefix = format!("[p{process}] ");
        if let Some(out) = child.stdout.take() {
            forward(out, prefix.clone(), false);
        }
        if let Some(err) = child.stderr.take() {
            forward(err, prefix, true);
        }
        children.push((process, child));
    }
    tracing::info!(
        "started processes {local:?} of {}; Ctrl-C stops them all",
        workers_file.display()
    );
    let mut failed: Option<String> = None;
    loop {
        if stop.is_stopped() {
            tracing::info!("stopping every process");
            break;
        }
        if let Some((process, status)) =
            first_exit(&mut children).map_err(io("cannot watch the processes"))?
        {
            let message = format!("process {process} exited ({status}); stopping the others");
            if status.success() {
                tracing::warn!("{message}");
            } else {
                tracing::error!("{message}");
            }
            failed = Some(format!("process {process} exited ({status})"));
            break;
        }
        // Children are checked every tick; a signal ends the wait at once.
        stop.wait_timeout(Duration::from_millis(100));
    }
    let statuses = terminate(&mut children);
    let failures: Vec<String> = statuses
        .iter()
        .filter(|(_, status)| !status.success())
        .map(|(process, status)| format!("process {process}: {status}"))
        .collect();
    match failed {
        Some(first) => Err(LaunchError::Stopped(format!(
            "{first}; the cluster stopped ({})",
            summary(&statuses)
        ))),
        None if !failures.is_empty() => Err(LaunchError::Stopped(failures.join(", "))),
        None => Ok(()),
    }
}

/// In a process the launcher started: sets `stop` once the launcher is gone (this process is
/// then re-parented).
pub fn stop_with_launcher(stop: Stop) {
    let Some(launcher) = std::env::var(LAUNCHER_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok())
    else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("launcher-watch".into())
        .spawn(move || {
            // The parent is checked every tick; a stop ends the wait at once.
            while !stop.wait_timeout(Duration::from_millis(200)) {
                if nix::unistd::getppid().as_raw() != launcher {
                    tracing::warn!("the launcher (pid {launcher}) is gone: stopping");
                    stop.stop();
                }
            }
        });
}

/// Copies a child's output line by line, prefixed, to ours.
fn forward(stream: impl Read + Send + 'static, prefix: String, to_stderr: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // One write per line keeps lines of different processes whole.
            let text = format!("{prefix}{line}\n");
            let _ = if to_stderr {
                std::io::stderr().write_all(text.as_bytes())
            } else {
                std::io::stdout().write_all(text.as_bytes())
            };
        }
    });
}

/// The first child that has exited, if any (it is removed from `children`).
fn first_exit(children: &mut Vec<(usize, Child)>) -> std::io::Result<Option<(usize, ExitStatus)>> {
    for at in 0..children.len() {
        if let Some(status) = children[at].1.try_wait()? {
            let (process, _) = children.remove(at);
            return Ok(Some((process, status)));
        }
    }
    Ok(None)
}

/// SIGTERM to every child, SIGKILL to those still running after [`STOP_GRACE`]; their statuses.
fn terminate(children: &mut Vec<(usize, Child)>) -> Vec<(usize, ExitStatus)> {
    for (_, child) in children.iter() {
        // The child is not reaped yet, so its pid is still its own.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    let mut statuses = Vec::new();
    while !children.is_empty() {
        match first_exit(children) {
            Ok(Some(exited)) => statuses.push(exited),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                for (process, mut child) in children.drain(..) {
                    tracing::warn!("process {process} did not stop in {STOP_GRACE:?}: killing it");
                    let _ = child.kill();
                    if let Ok(status) = child.wait() {
                        statuses.push((process, status));
                    }
                }
            }
        }
    }
    statuses
}

fn summary(statuses: &[(usize, ExitStatus)]) -> String {
    statuses
        .iter()
        .map(|(process, status)| format!("process {process}: {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `address` (`host:port`) names this host: loopback, or an address a socket can bind.
fn is_local(address: &str) -> bool {
    let Ok(resolved) = address.to_socket_addrs() else {
        return false;
    };
    resolved.into_iter().any(|socket| {
        let ip: IpAddr = socket.ip();
        ip.is_loopback() || TcpListener::bind((ip, 0)).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_a_foreign_address_is_not() {
        assert!(is_local("127.0.0.1:2101"));
        assert!(is_local("127.0.0.3:2101"));
        assert!(is_local("localhost:2101"));
        // TEST-NET-1 (RFC 5737) is never assigned to a host.
        assert!(!is_local("192.0.2.1:2101"));
    }
}
