//! The standard process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read from `/proc` at
//! scrape time, as the Prometheus client libraries name them. Linux only: elsewhere they are
//! left out.

use std::fmt::Write as _;

/// One scrape's reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// Resident set size, bytes.
    pub resident_bytes: f64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
    /// Start time, Unix seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessSample {
    /// Reads this process's figures; `None` where `/proc` is not there.
    pub fn read() -> Option<ProcessSample> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)? as f64;
        let resident_kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        // Fields after the command (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15, starttime 22 (1-based, counting pid and comm).
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let cpu_seconds = (field(14)? + field(15)?) / ticks;
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let start_time_seconds = boot
            .zip(field(22))
            .map(|(boot, start)| boot + start / ticks);
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Max open files"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            });
        Some(ProcessSample {
            resident_bytes: resident_kib * 1024.0,
            cpu_seconds,
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }

    /// Appends the sample in the text format.
    pub fn render(&self, out: &mut String) {
        let metrics = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                Some(self.resident_bytes),
            ),
            (
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                Some(self.cpu_seconds),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                "gauge",
                Some(self.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                self.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                "gauge",
                self.start_time_seconds,
            ),
        ];
        for (name, help, kind, value) in metrics {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let Some(sample) = ProcessSample::read() else {
            return; // not Linux
        };
        // A test binary holds tens of MB resident, at least stdin/out/err open, and started
        // within the last day.
        assert!(sample.resident_bytes > 1e6, "{sample:?}");
        assert!(sample.open_fds >= 3.0, "{sample:?}");
        assert!(sample.cpu_seconds >= 0.0, "{sample:?}");
        assert!(
            sample.max_fds.is_some_and(|m| m >= sample.open_fds),
            "{sample:?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = sample.start_time_seconds.expect("a start time");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
    }
}
