//! What the live readers of all workers, in every process of a cluster, tell each other
//! through the dataflow: the largest event time each has read, the latest input time it entered
//! a purchase at, and whether it has caught up. (Whether another worker's partitions are idle
//! need not be known: a worker whose own are all idle follows the largest time heard, and one
//! still reading holds the frontier back by itself.)
//!
//! Each worker sends a [`Report`] when its own changes; the reports are broadcast to every
//! worker (timely's exchange, over TCP between processes) and kept, per worker, on each
//! worker's [`Board`]. A worker whose partitions are all idle (or that owns none) advances its
//! input time to the largest time on its board, so that a snapshot of the last purchase is
//! completed everywhere, whichever worker, on whichever process, read it; and `/readyz` waits
//! for every worker of the cluster to have caught up, not only this process's.
//!
//! ## Correctness
//! The board only ever tells a worker how far it *may* move its own input time: a purchase
//! still enters at its input time (no earlier than the worker's current time) and keeps its own
//! timestamp for its weight, and the dataflow's frontier is the minimum over all workers, so a
//! report arriving late delays a snapshot but never changes what it holds. Reports of one
//! worker carry a sequence number: the board keeps the newest whatever order they arrive in.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::{InputHandleVec, Scope};
use topsellers_operators::Time;

/// What one worker tells every other about its live input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The worker (index over every process).
    pub worker: usize,
    /// Its reports so far (the board keeps the newest).
    pub sequence: u64,
    /// The largest event time it has read.
    pub max_event_ms: Option<i64>,
    /// The latest input time it entered a purchase at (a late purchase enters at the then
    /// current time, after its event time).
    pub max_entered_ms: Option<i64>,
    /// The input time it had when it had read everything there was at its start (or found it
    /// idle), once it has.
    pub caught_up_ms: Option<i64>,
}

impl Report {
    /// The same facts (the sequence aside).
    fn same_as(&self, other: &Report) -> bool {
        Report {
            sequence: other.sequence,
            ..*self
        } == *other
    }
}

/// What a worker knows of every worker's reports (its own included, once it came round).
#[derive(Clone, Debug, Default)]
pub struct Board {
    reports: BTreeMap<usize, Report>,
}

/// The board summed up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Workers heard from.
    pub heard: usize,
    /// The largest event time any worker has read.
    pub max_event_ms: Option<i64>,
    /// The latest input time any worker entered a purchase at.
    pub max_entered_ms: Option<i64>,
    /// Workers that have caught up.
    pub caught_up: usize,
    /// The latest input time a worker had when it caught up.
    pub caught_up_ms: Option<i64>,
}

impl Board {
    /// Keeps `report` unless a newer one of its worker is already here.
    pub fn note(&mut self, report: Report) {
        let newer = self
            .reports
            .get(&report.worker)
            .is_none_or(|known| known.sequence < report.sequence);
        if newer {
            self.reports.insert(report.worker, report);
        }
    }

    /// What the reports say together.
    pub fn view(&self) -> View {
        let reports = self.reports.values();
        View {
            heard: self.reports.len(),
            max_event_ms: reports.clone().filter_map(|r| r.max_event_ms).max(),
            max_entered_ms: reports.clone().filter_map(|r| r.max_entered_ms).max(),
            caught_up: reports.clone().filter(|r| r.caught_up_ms.is_some()).count(),
            caught_up_ms: reports.filter_map(|r| r.caught_up_ms).max(),
        }
    }
}

/// A worker's end of the exchange: its input of reports and its board.
pub struct Gossip {
    input: InputHandleVec<Time, Report>,
    board: Rc<RefCell<Board>>,
    worker: usize,
    last: Option<Report>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("worker", &self.worker)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Builds the exchange in `scope` (a dataflow of its own worker, which the reports never
    /// hold back: nothing downstream of them is probed).
    pub fn build(scope: &Scope<'_, Time>) -> Gossip {
        let (input, reports) = scope.new_input::<Report>();
        let board = Rc::new(RefCell::new(Board::default()));
        let noted = Rc::clone(&board);
        reports
            .broadcast()
            .sink(Pipeline, "Gossip", move |(input, _frontier)| {
                input.for_each(|_time, reports| {
                    let mut board = noted.borrow_mut();
                    for report in reports.drain(..) {
                        board.note(report);
                    }
                });
            });
        Gossip {
            input,
            board,
            worker: scope.index(),
            last: None,
        }
    }

    /// Sends this worker's report to every worker, if it changed since the last one (`worker`
    /// and `sequence` are filled in).
    pub fn tell(&mut self, report: Report) {
        let report = Report {
            worker: self.worker,
            ..report
        };
        if self.last.is_some_and(|last| last.same_as(&report)) {
            return;
        }
        let report = Report {
            sequence: self.last.map_or(1, |last| last.sequence + 1),
            ..report
        };
        self.last = Some(report);
        self.input.send(report);
        self.input.flush();
    }

    /// What this worker has heard so far.
    pub fn view(&self) -> View {
        self.board.borrow().view()
    }

    /// Moves the reports' input time along with the dataflow's inputs.
    pub fn advance_to(&mut self, time: Time) {
        if *self.input.time() < time {
            self.input.advance_to(time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(worker: usize, sequence: u64) -> Report {
        Report {
            worker,
            sequence,
            ..Report::default()
        }
    }

    #[test]
    fn the_newest_report_of_each_worker_counts() {
        let mut board = Board::default();
        assert_eq!(board.view(), View::default());
        board.note(Report {
            max_event_ms: Some(50),
            ..report(0, 2)
        });
        // An older report arriving late changes nothing.
        board.note(Report {
            max_event_ms: Some(10),
            ..report(0, 1)
        });
        board.note(Report {
            max_event_ms: Some(30),
            max_entered_ms: Some(70),
            caught_up_ms: Some(20),
            ..report(3, 1)
        });
        assert_eq!(
            board.view(),
            View {
                heard: 2,
                max_event_ms: Some(50),
                max_entered_ms: Some(70),
                caught_up: 1,
                caught_up_ms: Some(20),
            }
        );
        // A newer one replaces it: a partition woke up.
        board.note(Report {
            max_event_ms: Some(90),
            caught_up_ms: Some(40),
            ..report(0, 3)
        });
        let view = board.view();
        assert_eq!(
            (view.max_event_ms, view.caught_up, view.caught_up_ms),
            (Some(90), 2, Some(40))
        );
    }

    /// Reports reach every worker of every process through the dataflow: each of 3 workers
    /// reports its own time, and each one's board ends up with all three.
    #[test]
    fn every_worker_hears_every_worker() {
        let config = timely::Config::process(3);
        let views = timely::execute(config, |worker| {
            let index = worker.index();
            let mut gossip = worker.dataflow::<Time, _, _>(|scope| Gossip::build(&scope));
            gossip.tell(Report {
                max_event_ms: Some(100 * (index as i64 + 1)),
                caught_up_ms: Some(index as i64),
                ..Report::default()
            });
            // The same facts again are not sent again.
            gossip.tell(Report {
                max_event_ms: Some(100 * (index as i64 + 1)),
                caught_up_ms: Some(index as i64),
                ..Report::default()
            });
            gossip.advance_to(5);
            while gossip.view().heard < 3 {
                worker.step();
            }
            gossip.view()
        })
        .expect("timely")
        .join();
        for view in views {
            let view = view.expect("worker");
            assert_eq!(view.max_event_ms, Some(300));
            assert_eq!((view.caught_up, view.caught_up_ms), (3, Some(2)));
        }
    }
}
