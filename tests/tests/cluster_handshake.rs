//! A cluster's processes refuse each other, with a message that says what differs, when they
//! were started with different layouts (workers.toml) or see different input; the launcher
//! exits with status 1 (and stops the others) when one of its processes dies.
//!
//! Real `topsellers` processes on loopback; waits are generous liveness bounds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use topsellers_tests::{
    free_loopback_addresses, generate, get, topsellers_exe, wait_until, write_file, write_parts,
    Fmt, Proc, Spec, DAY,
};

/// How long a process may take to start, connect or stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// A workers.toml of `threads` threads per process at `timely` / `http` addresses.
fn layout(dir: &Path, name: &str, threads: usize, timely: &[String], http: &[String]) -> PathBuf {
    let mut text = format!(
        "threads = {threads}\nprocesses = {}\nconnect_timeout = \"30s\"\n",
        timely.len()
    );
    for (timely, http) in timely.iter().zip(http) {
        text.push_str(&format!(
            "[[process]]\ntimely = \"{timely}\"\nhttp = \"{http}\"\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `topsellers <command> --workers <workers> [run flags] --input …`.
fn command(command: &str, workers: &Path, inputs: &[PathBuf]) -> Command {
    let mut cmd = Command::new(topsellers_exe());
    cmd.arg(command)
        .arg("--workers")
        .arg(workers)
        .args(["--half-life", "7d", "--top", "5", "--retention", "2d"])
        .args(["--dead-letter", ""]);
    for input in inputs {
        cmd.arg("--input").arg(input);
    }
    cmd
}

/// A few files of purchases under `dir/in`.
fn inputs(dir: &Path, seed: u64) -> Vec<PathBuf> {
    let history = generate(&Spec::new(seed, 600, 2 * DAY, false));
    write_parts(
        &dir.join("in"),
        &[Fmt::Jsonl, Fmt::Csv],
        &history.records,
        3,
        seed,
    )
}

/// Starts process 0 with `workers[0]`/`inputs[0]` (in `cwd[0]`) and process 1 with the others; both must
/// fail, each log saying `says` (which names the other process and what to do).
fn both_refuse(
    dir: &Path,
    workers: [&Path; 2],
    inputs: [&[PathBuf]; 2],
    cwd: Option<[&Path; 2]>,
    says: &[&str],
) {
    let mut procs: Vec<Proc> = (0..2)
        .map(|p| {
            let mut cmd = command("run", workers[p], inputs[p]);
            cmd.arg("--process").arg(p.to_string());
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd[p]);
            }
            Proc::start(&mut cmd, dir.join(format!("p{p}.log")))
        })
        .collect();
    for (p, proc) in procs.iter_mut().enumerate() {
        let status = proc.exit_within(PATIENCE);
        let log = proc.log();
        assert!(
            status.is_some_and(|s| !s.success()),
            "process {p} did not fail ({status:?}):\n{log}"
        );
        let other = format!("process {}", 1 - p);
        for text in says.iter().copied().chain([other.as_str()]) {
            assert!(
                log.contains(text),
                "process {p}'s error lacks {text:?}:\n{log}"
            );
        }
    }
}

#[test]
fn processes_with_different_layouts_refuse_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = free_loopback_addresses(4);
    let (timely, http) = (&addresses[..2], &addresses[2..]);
    let one = layout(dir.path(), "one.toml", 1, timely, http);
    let two = layout(dir.path(), "two.toml", 2, timely, http);
    let files = inputs(dir.path(), 601);
    both_refuse(
        dir.path(),
        [&one, &two],
        [&files, &files],
        None,
        &["runs a layout of", "same workers.toml"],
    );
}

#[test]
fn processes_seeing_different_input_refuse_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = free_loopback_addresses(4);
    let workers = layout(
        dir.path(),
        "workers.toml",
        1,
        &addresses[..2],
        &addresses[2..],
    );
    // The same flags (`--input in`, relative) on two "hosts" (working directories) whose
    // folders differ: process 1's holds one more file.
    let (host0, host1) = (dir.path().join("host0"), dir.path().join("host1"));
    inputs(&host0, 602);
    inputs(&host1, 602);
    let more = generate(&Spec::new(603, 50, 2 * DAY, false));
    write_file(
        &host1.join("in/extra.jsonl"),
        Fmt::Jsonl,
        &more.records,
        603,
    );
    let relative = [PathBuf::from("in")];
    both_refuse(
        dir.path(),
        [&workers, &workers],
        [&relative, &relative],
        Some([&host0, &host1]),
        &["sees other input", "same files"],
    );
}

/// The children of process `pid` (Linux: `/proc/PID/task/PID/children`).
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn the_launcher_exits_1_when_a_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = free_loopback_addresses(4);
    let http = &addresses[2..];
    let workers = layout(dir.path(), "workers.toml", 1, &addresses[..2], http);
    let files = inputs(dir.path(), 604);
    let mut launcher = Proc::start(
        &mut command("cluster", &workers, &files),
        dir.path().join("launcher.log"),
    );
    for address in http {
        let up = wait_until(PATIENCE * 2, || {
            std::net::TcpStream::connect(address).is_ok()
                && get(address.parse().unwrap(), "/readyz").status == 200
        });
        assert!(up, "{address} not ready:\n{}", launcher.log());
    }
    let kids = children(launcher.child.id());
    assert_eq!(kids.len(), 2, "the launcher's processes: {kids:?}");
    let victim = nix::unistd::Pid::from_raw(kids[1]);
    nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = launcher.exit_within(PATIENCE);
    let log = launcher.log();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the launcher's exit status after a process died:\n{log}"
    );
    assert!(
        log.contains("exited"),
        "the launcher says which process died:\n{log}"
    );
    for address in http {
        let gone = wait_until(PATIENCE, || std::net::TcpStream::connect(address).is_err());
        assert!(
            gone,
            "{address} still serves after the launcher exited:\n{log}"
        );
    }
}
