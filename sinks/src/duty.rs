//! How long the publisher waits between publishes: at least the table's publish interval, and
//! — only while the rest of the process keeps the cores busy — five times the CPU time its last
//! publish took, so that rendering never takes more than a sixth of a core from busy workers.
//!
//! CPU time, not wall time: on a loaded machine the wall time of the same rendering grows with
//! the time the publisher waits for a core, which takes nothing from the workers. And the cap
//! is lifted while the other threads use less than three quarters of the cores (a store
//! ingesting at a set rate, not flat out): then there is room to spare, and holding lists back
//! buys nothing. Measured on the 2-core VM at 100k purchases/s (workers ~30% of a core each; a
//! publish of the ~11k changed lists takes ~60–80 ms of CPU), freshness sampled every 10 ms
//! (`scripts/bench-freshness-generator.sh 100000 20`, 3 alternating runs, load 1.2–2.0):
//! capped on wall time p50 0.37 s, p99 0.83 s; this rule (lifted below half) p50 0.23 s, p99
//! 0.38 s. Unthrottled ingest (the cap holds) was unchanged: 534k vs 569k purchases/s, medians,
//! same runs. From Kafka the consumer's threads and the JSON parsing count as busy too: at
//! 100k/s they kept the cap on with the threshold at half; at three quarters the Kafka
//! freshness p50 was 0.30 s vs 0.38 s (`kafka_bench freshness 100000 20`, 3 alternating runs,
//! load 2.6–3.9), ingest flat out unchanged (570k vs 547k purchases/s, 2 runs each).

use std::time::{Duration, Instant};

/// The interval is at least this many times the CPU time of the last publish while the cap
/// holds.
pub const MAX_DUTY_INVERSE: u32 = 5;

/// The cap holds while the other threads of the process use at least this share of the cores.
pub const BUSY_FROM: f64 = 0.75;

/// The publisher's duty cap: call [`Duty::publishing`] before a publish and [`Duty::interval`]
/// after it.
#[derive(Debug)]
pub struct Duty {
    cores: f64,
    /// Wall clock, process CPU time and this thread's CPU time at the previous publish's end.
    last: Option<(Instant, Duration, Duration)>,
    /// This thread's CPU time when the current publish started.
    started: Option<Duration>,
}

impl Default for Duty {
    fn default() -> Self {
        Duty::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    }
}

impl Duty {
    /// A cap for a process that may use `cores` cores.
    pub fn new(cores: usize) -> Duty {
        Duty {
            cores: cores.max(1) as f64,
            last: None,
            started: None,
        }
    }

    /// Marks the start of a publish.
    pub fn publishing(&mut self) {
        self.started = thread_cpu_time();
    }

    /// The time to wait from the start of the publish that just ended until the next one, at
    /// least `min`.
    pub fn interval(&mut self, min: Duration) -> Duration {
        let now = (Instant::now(), process_cpu_time(), thread_cpu_time());
        let spent = match (self.started.take(), now.2) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => return min, // no CPU clock: no cap
        };
        let busy = match (self.last, now) {
            (Some((wall0, process0, thread0)), (wall1, Some(process1), Some(thread1))) => {
                let process = process1.saturating_sub(process0);
                let others = process - thread1.saturating_sub(thread0).min(process);
                let wall = wall1.duration_since(wall0).as_secs_f64();
                (wall > 0.0).then(|| others.as_secs_f64() / (wall * self.cores))
            }
            _ => None,
        };
        if let (wall, Some(process), Some(thread)) = now {
            self.last = Some((wall, process, thread));
        }
        interval_for(min, spent, busy.unwrap_or(1.0))
    }
}

/// The rule: `min`, or `spent × MAX_DUTY_INVERSE` if that is longer and the other threads are
/// `busy` (their share of the cores) at least [`BUSY_FROM`].
pub fn interval_for(min: Duration, spent: Duration, busy: f64) -> Duration {
    if busy >= BUSY_FROM {
        min.max(spent * MAX_DUTY_INVERSE)
    } else {
        min.max(spent)
    }
}

fn thread_cpu_time() -> Option<Duration> {
    cpu_time(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu_time() -> Option<Duration> {
    cpu_time(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_time(clock: nix::time::ClockId) -> Option<Duration> {
    nix::time::clock_gettime(clock).ok().map(Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_cap_holds_only_while_the_others_are_busy() {
        assert_eq!(interval_for(200 * MS, 80 * MS, 0.95), 400 * MS);
        assert_eq!(interval_for(200 * MS, 80 * MS, BUSY_FROM), 400 * MS);
        assert_eq!(interval_for(200 * MS, 80 * MS, 0.3), 200 * MS);
        assert_eq!(interval_for(200 * MS, 80 * MS, 0.7), 200 * MS);
        // Never shorter than the publish interval, nor than the publish itself.
        assert_eq!(interval_for(200 * MS, 10 * MS, 0.95), 200 * MS);
        assert_eq!(interval_for(200 * MS, 300 * MS, 0.1), 300 * MS);
    }
}
