//! Multi-process clusters on loopback: every process serves every category, with the lists of
//! the brute-force oracle, at the same snapshot time; losing a process stops the others with a
//! message naming it; the launcher starts and stops them all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use topsellers_tests::{
    assert_no_problems, cluster_layout, compare, default_as_of, generate, get, served_lists_at,
    topsellers_exe, wait_until, write_parts, Fmt, Got, Params, Proc, Spec, DAY,
};

/// The scoring of `params` as a config file (no dead-letter file).
fn config_file(dir: &Path, params: &Params) -> PathBuf {
    let half_lives: Vec<String> = params
        .half_lives
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    let text = format!(
        "[scoring]\nhalf_lives = [{}]\ntop_k = {}\nretention = {:?}\nallowed_lateness = \"0s\"\n\
         [dead_letter]\npath = \"\"\n[runtime]\nbatch_size = {}\n",
        half_lives.join(", "),
        params.k,
        params.retention.0,
        params.batch_size
    );
    let path = dir.join("topsellers.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn ready(http: &str) -> bool {
    std::net::TcpStream::connect(http).is_ok()
        && get(http.parse().unwrap(), "/readyz").status == 200
}

/// Purchases in files, and what the oracle says the lists are after them.
struct Case {
    dir: tempfile::TempDir,
    inputs: Vec<PathBuf>,
    params: Params,
    until: i64,
    want: topsellers_tests::Expected,
}

fn case(seed: u64, k: usize, batch_size: usize) -> Case {
    let history = generate(&Spec::new(seed, 3000, 2 * DAY, false));
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_parts(
        &dir.path().join("in"),
        &[Fmt::Jsonl, Fmt::ParquetInt, Fmt::Csv],
        &history.records,
        7,
        seed,
    );
    let params = Params::new(k, 1, batch_size);
    let until = default_as_of(&history.records).unwrap();
    let want = params.oracle(&history.records, until);
    Case {
        dir,
        inputs,
        params,
        until,
        want,
    }
}

impl Case {
    /// `topsellers <command> --workers … --config … --input …`.
    fn command(&self, command: &str, workers: &Path) -> Command {
        let mut cmd = Command::new(topsellers_exe());
        cmd.arg(command)
            .arg("--workers")
            .arg(workers)
            .arg("--config")
            .arg(config_file(self.dir.path(), &self.params));
        for input in &self.inputs {
            cmd.arg("--input").arg(input);
        }
        cmd
    }

    /// Waits for every process, then checks each serves the oracle's lists, all identical.
    fn check_served(&self, http: &[String], procs: &[&Proc], context: &str) {
        for (p, address) in http.iter().enumerate() {
            let up = wait_until(Duration::from_secs(120), || ready(address));
            let logs: Vec<String> = procs.iter().map(|p| p.log()).collect();
            assert!(
                up,
                "{context}: process {p} not ready; logs:\n{}",
                logs.join("\n---\n")
            );
        }
        let names: Vec<&str> = self.params.half_lives.iter().map(|(n, _)| *n).collect();
        let mut first: Option<Got> = None;
        for (p, address) in http.iter().enumerate() {
            let served = served_lists_at(address.parse().unwrap(), &names, self.until)
                .unwrap_or_else(|e| panic!("{context}: process {p}: {e}"));
            assert_no_problems(
                &compare(&served, &self.want, self.params.k, names.len()),
                &format!("{context}: process {p} vs oracle"),
            );
            match &first {
                None => first = Some(served),
                Some(first) => assert!(
                    *first == served,
                    "{context}: process {p} serves other lists than process 0"
                ),
            }
        }
    }
}

#[test]
fn two_processes_serve_the_oracle_and_stop_when_one_is_lost() {
    let case = case(501, 5, 97);
    let (workers, http) = cluster_layout(case.dir.path(), 2, 2);
    let mut procs: Vec<Proc> = (0..2)
        .map(|p| {
            let mut command = case.command("run", &workers);
            // Process 1 learns its index from the environment, as under an orchestrator.
            if p == 0 {
                command.arg("--process").arg("0");
            } else {
                command.env("TOPSELLERS_PROCESS", "1");
            }
            Proc::start(&mut command, case.dir.path().join(format!("p{p}.log")))
        })
        .collect();
    case.check_served(
        &http,
        &procs.iter().collect::<Vec<_>>(),
        "2 processes × 2 threads",
    );

    procs[1].child.kill().unwrap();
    let status = procs[0].exit_within(Duration::from_secs(30));
    let log = procs[0].log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "process 0 did not fail after losing process 1 ({status:?}):\n{log}"
    );
    assert!(log.contains("lost process 1"), "no clear message:\n{log}");
}

#[test]
fn the_launcher_runs_three_processes_and_stops_them_on_sigterm() {
    let case = case(502, 3, 50_000);
    let (workers, http) = cluster_layout(case.dir.path(), 3, 1);
    let mut launcher = Proc::start(
        &mut case.command("cluster", &workers),
        case.dir.path().join("launcher.log"),
    );
    case.check_served(&http, &[&launcher], "launcher, 3 processes × 1 thread");
    let log = launcher.log();
    for p in 0..3 {
        assert!(
            log.contains(&format!("[p{p}] ")),
            "no prefixed log of process {p}:\n{log}"
        );
    }

    let pid = nix::unistd::Pid::from_raw(launcher.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = launcher.exit_within(Duration::from_secs(30));
    let log = launcher.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "the launcher did not stop cleanly ({status:?}):\n{log}"
    );
    for address in &http {
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "{address} still serves after the launcher stopped:\n{log}"
        );
    }
}

#[test]
fn a_bad_process_index_is_a_clear_error() {
    let case = case(503, 3, 50_000);
    let (workers, _) = cluster_layout(case.dir.path(), 2, 1);
    let mut command = case.command("run", &workers);
    command.arg("--process").arg("2");
    let mut proc = Proc::start(&mut command, case.dir.path().join("bad.log"));
    let status = proc.exit_within(Duration::from_secs(30));
    let log = proc.log();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}:\n{log}");
    assert!(
        log.contains("workers.toml") && log.contains("process") && log.contains("0..=1"),
        "{log}"
    );
}

#[test]
fn processes_stop_when_their_launcher_is_killed() {
    let case = case(504, 3, 50_000);
    let (workers, http) = cluster_layout(case.dir.path(), 2, 1);
    let mut launcher = Proc::start(
        &mut case.command("cluster", &workers),
        case.dir.path().join("launcher.log"),
    );
    for address in &http {
        let up = wait_until(Duration::from_secs(120), || ready(address));
        assert!(up, "{address} not ready:\n{}", launcher.log());
    }
    launcher.child.kill().unwrap();
    launcher.child.wait().unwrap();
    for address in &http {
        let gone = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(address).is_err()
        });
        assert!(gone, "{address} still serves after its launcher was killed");
    }
}
