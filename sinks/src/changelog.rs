//! The top-k changelog: every change of every list as rank-slot operations, JSON Lines.
//!
//! Each snapshot that changes a (profile, category) list is compared with the previous list
//! of that key rank by rank. Wherever the item at a rank differs, or the rank appears or
//! disappears, one line per operation is written, all `remove`s of a list before its
//! `insert`s, ranks ascending within each kind:
//!
//! ```text
//! {"time":"2026-11-22T13:00:00.123Z","time_ms":1795352400123,"profile":"7d","category":"books","op":"remove","rank":3,"item_id":"old"}
//! {"time":"2026-11-22T13:00:00.123Z","time_ms":1795352400123,"profile":"7d","category":"books","op":"insert","rank":3,"item_id":"new","score":1.25}
//! ```
//!
//! - `time`/`time_ms`: the snapshot's event time (RFC 3339 UTC with milliseconds, and epoch
//!   milliseconds); `profile`: the decay profile's name; `category`: the category path (`""`
//!   is the root);
//! - `op`: `remove` empties the slot `rank` (1-based), which held `item_id`; `insert` puts
//!   `item_id` into slot `rank`, with its decayed `score` as of `time`.
//!
//! A consumer keeping a table keyed by (profile, category, rank) applies the lines in order
//! and holds exactly the current lists. A rank whose item stays the same is not repeated
//! even though its score decays; scores of unchanged items are not tracked. The file is
//! truncated when the process starts, whose first snapshot inserts every list anew; `-`
//! writes to standard output. The output is buffered and flushed after each snapshot. A
//! snapshot that holds every list (a backfill's, after a restored checkpoint's) removes the
//! items of the lists it does not hold: they are empty now.
//!
//! The same changes can go to a Kafka topic ([`KafkaChangelog`]): there each changed list is
//! one message keyed `profile/category` whose value is the whole list, so that a compacted
//! topic keeps the current lists: a list that empties is sent empty, and so is, with the first
//! snapshot, every list an earlier run left on the topic that this run does not list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use topsellers_model::{Profile, RankedItem, Snapshot, TopKList};

use crate::kafka_changelog::{KafkaChangelog, KafkaChangelogError};
use crate::list_json::{self, SlotOp};

/// Changelog settings (`[changelog]` in the config).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangelogConfig {
    /// Where to write the changelog (JSON Lines): a file path, or `-` for standard output;
    /// unset: no changelog.
    #[serde(default = "default_path")]
    pub path: Option<String>,
    /// Kafka topic the changed lists are sent to (keyed `profile/category`; make it compacted);
    /// unset: none.
    #[serde(default = "default_path")]
    pub topic: Option<String>,
    /// Brokers of the changelog topic; unset: the Kafka source's brokers.
    #[serde(default = "default_path")]
    pub brokers: Option<String>,
    /// librdkafka producer properties for the changelog topic.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_path() -> Option<String> {
    None
}

/// The changelog could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    /// The file could not be created.
    #[error("changelog file: {0}")]
    Io(#[from] io::Error),
    /// The topic is configured without brokers (and there is no Kafka source to take them from).
    #[error("changelog.topic is set but no brokers are known: set changelog.brokers (or use a kafka source)")]
    NoBrokers,
    /// The producer could not be created.
    #[error(transparent)]
    Kafka(#[from] KafkaChangelogError),
}

/// What a changelog operation does to a rank slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The slot's item leaves it.
    Remove,
    /// An item takes the (empty) slot.
    Insert,
}

/// One operation on one rank slot of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Remove or insert.
    pub kind: ChangeKind,
    /// The slot, 1-based.
    pub rank: usize,
    /// The item removed from or inserted into the slot.
    pub item_id: Arc<str>,
}

/// The operations turning list `old` into list `new` (item ids, best first): removes of
/// every slot whose item changes or disappears, then inserts of every slot whose item changes
/// or appears, ranks ascending.
pub fn diff(old: &[Arc<str>], new: &[Arc<str>]) -> Vec<Change> {
    let differs = |at: usize| old.get(at) != new.get(at);
    let removes = (0..old.len()).filter(|&at| differs(at)).map(|at| Change {
        kind: ChangeKind::Remove,
        rank: at + 1,
        item_id: old[at].clone(),
    });
    let inserts = (0..new.len()).filter(|&at| differs(at)).map(|at| Change {
        kind: ChangeKind::Insert,
        rank: at + 1,
        item_id: new[at].clone(),
    });
    removes.chain(inserts).collect()
}

/// Writes the changelog; keeps the last list of every (profile, category) to compare with.
pub struct Changelog {
    out: Option<Box<dyn Write + Send>>,
    topic: Option<KafkaChangelog>,
    previous: HashMap<(usize, Arc<str>), Vec<RankedItem>>,
    line: Vec<u8>,
    /// Whether a snapshot has been written.
    started: bool,
}

impl std::fmt::Debug for Changelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelog")
            .field("lists", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl Changelog {
    /// Opens the changelog `config` asks for (`None` when it is off). A file is created or
    /// truncated.
    pub fn open(config: &ChangelogConfig) -> Result<Option<Changelog>, ChangelogError> {
        Changelog::open_with_brokers(config, None)
    }

    /// [`Changelog::open`], with the brokers a changelog topic uses when `config.brokers` is
    /// unset (the Kafka source's).
    pub fn open_with_brokers(
        config: &ChangelogConfig,
        default_brokers: Option<&str>,
    ) -> Result<Option<Changelog>, ChangelogError> {
        let out: Option<Box<dyn Write + Send>> = match config.path.as_deref() {
            None => None,
            Some("-") => Some(Box::new(BufWriter::new(io::stdout()))),
            Some(path) => Some(Box::new(BufWriter::new(File::create(path)?))),
        };
        let topic = match &config.topic {
            None => None,
            Some(topic) => {
                let brokers = config
                    .brokers
                    .as_deref()
                    .or(default_brokers)
                    .ok_or(ChangelogError::NoBrokers)?;
                Some(KafkaChangelog::open(brokers, topic, &config.properties)?)
            }
        };
        if out.is_none() && topic.is_none() {
            return Ok(None);
        }
        Ok(Some(Changelog {
            out,
            topic,
            previous: HashMap::new(),
            line: Vec::with_capacity(256),
            started: false,
        }))
    }

    /// A changelog written (buffered) to `out`.
    pub fn to_writer(out: impl Write + Send + 'static) -> Changelog {
        Changelog {
            out: Some(Box::new(BufWriter::new(out))),
            topic: None,
            previous: HashMap::new(),
            line: Vec::with_capacity(256),
            started: false,
        }
    }

    /// Changes that could not be sent to the changelog topic, if there is one.
    pub fn topic_failures(&self) -> Option<Arc<std::sync::atomic::AtomicU64>> {
        self.topic.as_ref().map(KafkaChangelog::failures)
    }

    /// Writes the operations of every list of `snapshot` that changed, then flushes.
    /// `profiles` gives the names of the profile indexes (lists of unknown ones are skipped).
    ///
    /// A snapshot that holds every list ([`Snapshot::whole`]: a backfill's, a restored
    /// checkpoint's) empties the lists it does not hold. The first snapshot also empties, on the
    /// topic, the lists earlier runs left there that it does not fill.
    pub fn write_snapshot(&mut self, snapshot: &Snapshot, profiles: &[Profile]) -> io::Result<()> {
        let time = list_json::changelog_time(snapshot.time_ms);
        let mut left_on_topic = match (self.started, self.topic.as_mut()) {
            (false, Some(topic)) => topic.take_listed(),
            _ => HashSet::new(),
        };
        self.started = true;
        let emptied = if snapshot.whole {
            self.missing_from(snapshot)
        } else {
            Vec::new()
        };
        for list in snapshot.lists.iter().chain(&emptied) {
            let Some(profile) = profiles.get(list.profile) else {
                continue;
            };
            let resend = !left_on_topic.is_empty()
                && left_on_topic.remove(&(profile.name.clone(), list.category.to_string()));
            self.write_list(list, profile, &time, snapshot.time_ms, resend)?;
        }
        if let Some(topic) = &self.topic {
            for (profile, category) in left_on_topic {
                topic.send_empty(&profile, &category, snapshot.time_ms);
            }
        }
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    /// Empty lists for the (profile, category) keys listed before and missing from `snapshot`.
    fn missing_from(&self, snapshot: &Snapshot) -> Vec<TopKList> {
        let held: HashSet<(usize, &str)> = snapshot
            .lists
            .iter()
            .map(|list| (list.profile, &*list.category))
            .collect();
        let mut missing: Vec<TopKList> = self
            .previous
            .keys()
            .filter(|(profile, category)| !held.contains(&(*profile, &**category)))
            .map(|(profile, category)| TopKList {
                profile: *profile,
                category: category.clone(),
                items: Vec::new(),
            })
            .collect();
        missing.sort_by(|a, b| (a.profile, &a.category).cmp(&(b.profile, &b.category)));
        missing
    }

    /// Writes the operations turning the previous list of `list`'s key into `list`, and sends
    /// it to the topic if its items or their scores changed (not as scores decay: the ranking
    /// keys are compared), or `resend`.
    fn write_list(
        &mut self,
        list: &TopKList,
        profile: &Profile,
        time: &[u8],
        time_ms: i64,
        resend: bool,
    ) -> io::Result<()> {
        let ids = |items: &[RankedItem]| -> Vec<Arc<str>> {
            items.iter().map(|item| item.item_id.clone()).collect()
        };
        let key = (list.profile, list.category.clone());
        let before = self
            .previous
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let changes = diff(&ids(before), &ids(&list.items));
        if let (Some(topic), true) = (&self.topic, resend || before != list.items.as_slice()) {
            topic.send(list, profile, time_ms);
        }
        if let Some(out) = self.out.as_mut() {
            for change in changes {
                let line = &mut self.line;
                line.clear();
                let (op, score) = match change.kind {
                    ChangeKind::Remove => (SlotOp::Remove, None),
                    ChangeKind::Insert => (
                        SlotOp::Insert,
                        Some(list_json::score(
                            &list.items[change.rank - 1],
                            profile,
                            time_ms,
                        )),
                    ),
                };
                list_json::push_slot_op(
                    line,
                    time,
                    profile,
                    &list.category,
                    op,
                    change.rank,
                    &change.item_id,
                    score,
                );
                out.write_all(line)?;
            }
        }
        if list.items.is_empty() {
            self.previous.remove(&key);
        } else {
            self.previous.insert(key, list.items.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{list, profiles, snapshot, H};
    use std::sync::Mutex;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// One parsed operation: kind, rank, item.
    type Op = (ChangeKind, usize, Arc<str>);

    /// Applies operations to rank slots, checking each remove names the slot's item.
    fn apply(old: &[Arc<str>], ops: impl IntoIterator<Item = Op>) -> Vec<Arc<str>> {
        let mut slots: Vec<Option<Arc<str>>> = old.iter().cloned().map(Some).collect();
        let mut inserting = false;
        for (kind, rank, item) in ops {
            if slots.len() < rank {
                slots.resize(rank, None);
            }
            match kind {
                ChangeKind::Remove => {
                    assert!(!inserting, "remove after insert");
                    assert_eq!(slots[rank - 1].take(), Some(item));
                }
                ChangeKind::Insert => {
                    inserting = true;
                    assert_eq!(slots[rank - 1].replace(item), None);
                }
            }
        }
        while slots.last() == Some(&None) {
            slots.pop();
        }
        slots
            .into_iter()
            .map(|slot| slot.expect("no hole"))
            .collect()
    }

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }

        fn list(&mut self) -> Vec<Arc<str>> {
            let len = self.below(8) as usize;
            let mut ids: Vec<Arc<str>> = Vec::new();
            while ids.len() < len {
                let id: Arc<str> = Arc::from(format!("i{}", self.below(10)));
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }
    }

    #[test]
    fn diff_applies_to_random_lists() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let (old, new) = (rng.list(), rng.list());
            let changes = diff(&old, &new);
            assert_eq!(
                apply(
                    &old,
                    changes.into_iter().map(|c| (c.kind, c.rank, c.item_id))
                ),
                new
            );
        }
        assert!(diff(&[Arc::from("a")], &[Arc::from("a")]).is_empty());
    }

    #[test]
    fn writes_lines_that_rebuild_the_lists() {
        let out = Shared::default();
        let mut changelog = Changelog::to_writer(out.clone());
        let profiles = profiles();
        let mut rng = Rng(42);
        let mut expected: HashMap<(String, String), Vec<Arc<str>>> = HashMap::new();
        let mut rebuilt: HashMap<(String, String), Vec<Arc<str>>> = HashMap::new();
        for step in 0..300 {
            // Now and then a snapshot that holds every list: the others are empty now.
            let whole = rng.below(5) == 0;
            if whole {
                expected.values_mut().for_each(Vec::clear);
            }
            let mut lists = Vec::new();
            for _ in 0..rng.below(3) {
                let profile = rng.below(2) as usize;
                let category = ["", "a", "a/b"][rng.below(3) as usize];
                let key = (profiles[profile].name.clone(), category.to_owned());
                if lists.iter().any(|l: &topsellers_model::TopKList| {
                    l.profile == profile && &*l.category == category
                }) {
                    continue; // a snapshot holds one list per key
                }
                let ids = rng.list();
                // Distinct quantities in descending order keep the generated order as the rank.
                let items: Vec<(&str, i64)> = ids
                    .iter()
                    .enumerate()
                    .map(|(at, id)| (&**id, 100 - at as i64))
                    .collect();
                lists.push(list(profile, category, &items));
                expected.insert(key, ids);
            }
            out.0.lock().unwrap().clear();
            let mut snapshot = snapshot(step * 1000, lists);
            snapshot.whole = whole;
            changelog.write_snapshot(&snapshot, &profiles).unwrap();
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            let mut by_key: HashMap<(String, String), Vec<Op>> = HashMap::new();
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(value["time_ms"], step * 1000);
                assert_eq!(
                    value["time"],
                    topsellers_model::format_rfc3339_ms(step * 1000)
                );
                let kind = match value["op"].as_str().unwrap() {
                    "remove" => {
                        assert!(value.get("score").is_none());
                        ChangeKind::Remove
                    }
                    "insert" => {
                        assert!(value["score"].as_f64().unwrap() > 0.0);
                        ChangeKind::Insert
                    }
                    other => panic!("op {other}"),
                };
                let key = (
                    value["profile"].as_str().unwrap().to_owned(),
                    value["category"].as_str().unwrap().to_owned(),
                );
                let op = (
                    kind,
                    value["rank"].as_u64().unwrap() as usize,
                    Arc::from(value["item_id"].as_str().unwrap()),
                );
                by_key.entry(key).or_default().push(op);
            }
            for (key, ops) in by_key {
                let old = rebuilt.remove(&key).unwrap_or_default();
                rebuilt.insert(key, apply(&old, ops));
            }
            rebuilt.retain(|_, ids| !ids.is_empty());
            let mut want = expected.clone();
            want.retain(|_, ids| !ids.is_empty());
            assert_eq!(rebuilt, want, "step {step}");
        }
    }

    #[test]
    fn line_format() {
        let out = Shared::default();
        let mut changelog = Changelog::to_writer(out.clone());
        changelog
            .write_snapshot(
                &snapshot(0, vec![list(0, "books", &[("old", 2)])]),
                &profiles(),
            )
            .unwrap();
        changelog
            .write_snapshot(
                &snapshot(H, vec![list(0, "books", &[("new", 5)])]),
                &profiles(),
            )
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"time":"1970-01-01T00:00:00.000Z","time_ms":0,"profile":"1h","category":"books","op":"insert","rank":1,"item_id":"old","score":2.0}"#,
                r#"{"time":"1970-01-01T01:00:00.000Z","time_ms":3600000,"profile":"1h","category":"books","op":"remove","rank":1,"item_id":"old"}"#,
                r#"{"time":"1970-01-01T01:00:00.000Z","time_ms":3600000,"profile":"1h","category":"books","op":"insert","rank":1,"item_id":"new","score":2.5}"#,
            ]
        );
        assert!(Changelog::open(&ChangelogConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn opens_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.jsonl");
        let config = ChangelogConfig {
            path: Some(path.to_string_lossy().into_owned()),
            ..ChangelogConfig::default()
        };
        let mut changelog = Changelog::open(&config).unwrap().unwrap();
        changelog
            .write_snapshot(&snapshot(0, vec![list(1, "", &[("x", 1)])]), &profiles())
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with("\"op\":\"insert\",\"rank\":1,\"item_id\":\"x\",\"score\":1.0}\n"),
            "{text}"
        );
    }
}
