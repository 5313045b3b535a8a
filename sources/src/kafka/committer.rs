//! Commits a reader's offsets from a thread of its own, synchronously: librdkafka reports the
//! result of a manual asynchronous commit to nobody, and a slow broker must not stall a worker.
//!
//! The committer keeps the latest offset wanted per partition and commits whatever changed
//! since the last successful commit; a failed commit is retried with the next tick, carrying
//! any newer offsets along (committed offsets only move forward).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::shared::KafkaShared;

/// How long shutdown waits for the last commit.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Least time between two logged commit failures.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Hands offsets to the commit thread.
pub(crate) struct Committer {
    tx: Option<Sender<Vec<(i32, i64)>>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the commit thread of worker `index`; it commits at most every `interval`.
    pub(crate) fn spawn<C: ConsumerContext + 'static>(
        consumer: Arc<BaseConsumer<C>>,
        topic: String,
        shared: Arc<KafkaShared>,
        index: usize,
        interval: Duration,
    ) -> std::io::Result<Committer> {
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<(i32, i64)>>();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(format!("kafka-commit-{index}"))
            .spawn(move || {
                run(&consumer, &topic, &shared, &rx, interval);
                let _ = done_tx.send(());
            })?;
        Ok(Committer {
            tx: Some(tx),
            done,
            thread: Some(thread),
        })
    }

    /// Asks for `offsets` (partition, next offset to read) to be committed.
    pub(crate) fn commit(&self, offsets: Vec<(i32, i64)>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(offsets);
        }
    }

    /// Commits what is pending and stops the thread (waiting at most 10 s for the broker).
    pub(crate) fn close(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if self.done.recv_timeout(CLOSE_WAIT).is_ok() {
                let _ = thread.join();
            } else {
                tracing::warn!("the last Kafka offset commit did not finish in {CLOSE_WAIT:?}");
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.close();
    }
}

fn run<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    shared: &KafkaShared,
    rx: &Receiver<Vec<(i32, i64)>>,
    interval: Duration,
) {
    let mut wanted: BTreeMap<i32, i64> = BTreeMap::new();
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_error_log: Option<Instant> = None;
    loop {
        let closing = match rx.recv_timeout(interval) {
            Ok(offsets) => {
                merge(&mut wanted, offsets);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        for offsets in rx.try_iter() {
            merge(&mut wanted, offsets);
        }
        let changed: Vec<(i32, i64)> = wanted
            .iter()
            .filter(|(p, o)| committed.get(p) != Some(o))
            .map(|(&p, &o)| (p, o))
            .collect();
        if !changed.is_empty() {
            let mut list = TopicPartitionList::with_capacity(changed.len());
            let mut result = Ok(());
            for &(partition, next) in &changed {
                if let Err(e) = list.add_partition_offset(topic, partition, Offset::Offset(next)) {
                    result = Err(e);
                }
            }
            match result.and_then(|()| consumer.commit(&list, CommitMode::Sync)) {
                Ok(()) => {
                    shared.commits.fetch_add(1, Ordering::Relaxed);
                    for &(partition, next) in &changed {
                        shared.set_committed(partition, next);
                    }
                    committed.extend(changed);
                }
                Err(error) => {
                    shared.commit_failures.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if last_error_log.is_none_or(|at| now.duration_since(at) >= ERROR_LOG_INTERVAL)
                    {
                        last_error_log = Some(now);
                        tracing::warn!(%error, "committing Kafka offsets failed (retried)");
                    }
                }
            }
        }
        if closing {
            return;
        }
    }
}

/// Raises each partition's wanted offset (offsets only move forward).
fn merge(wanted: &mut BTreeMap<i32, i64>, offsets: Vec<(i32, i64)>) {
    for (partition, next) in offsets {
        let slot = wanted.entry(partition).or_insert(next);
        *slot = (*slot).max(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_only_move_forward() {
        let mut wanted = BTreeMap::new();
        merge(&mut wanted, vec![(0, 10), (1, 5)]);
        merge(&mut wanted, vec![(0, 7), (1, 6)]);
        assert_eq!(wanted, BTreeMap::from([(0, 10), (1, 6)]));
    }
}
