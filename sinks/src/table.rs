//! The serving table: every (profile, category) list pre-rendered and swapped in atomically.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use topsellers_model::{Profiles, Snapshot, TopKList};

use crate::availability::Availability;

use crate::categories::{CategoriesDoc, CategoryTree};
use crate::rendered::RenderedList;

/// Serving table settings (`[table]` in the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Scores decay as time passes although rankings do not: a list whose served scores are
    /// older than this (relative to the newest snapshot) is re-rendered at the newest
    /// snapshot's time, e.g. `5s`.
    #[serde(default = "default_refresh", with = "topsellers_model::duration::text")]
    pub refresh: Duration,
    /// Number of independently locked shards of the table.
    #[serde(default = "default_shards")]
    pub shards: usize,
    /// Least time between two publishes: snapshots arriving meanwhile are applied together
    /// (each list rendered once), which bounds the rendering work on busy stores. `0s` applies
    /// every snapshot as soon as it arrives.
    #[serde(
        default = "default_publish_interval",
        with = "topsellers_model::duration::text"
    )]
    pub publish_interval: Duration,
    /// Candidates kept beyond `scoring.top_k` per list when an `[availability]` input is
    /// configured, so that a hidden item's place is filled by the next one (a list shows the
    /// first `top_k` available of its `top_k + buffer` candidates). Without availability input
    /// lists keep `top_k`. Default: 20.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
}

fn default_buffer() -> usize {
    20
}

fn default_publish_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_refresh() -> Duration {
    Duration::from_secs(5)
}

fn default_shards() -> usize {
    16
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            refresh: default_refresh(),
            shards: default_shards(),
            publish_interval: default_publish_interval(),
            buffer: default_buffer(),
        }
    }
}

/// Rendered lists of one category, one per profile.
type Entry = Box<[Arc<RenderedList>]>;

/// One independently locked part of the table.
type Shard = RwLock<HashMap<Arc<str>, Entry>>;

/// State only the publishing thread touches.
#[derive(Debug, Default)]
struct Writer {
    tree: CategoryTree,
    /// (profile, category) of the lists applied since [`ServingTable::take_changed`].
    changed: std::collections::HashSet<(usize, Arc<str>)>,
    /// (rendered at, profile, category), earliest first; an entry is stale when the list has
    /// been rendered again since.
    due: BinaryHeap<Reverse<(i64, usize, Arc<str>)>>,
    /// With availability: the (profile, category) lists whose candidates hold each item, so
    /// that a flip re-renders just those.
    holders: HashMap<Arc<str>, HashSet<(usize, Arc<str>)>>,
}

/// The lists the HTTP API serves, shared (via `Arc`) between the publisher thread, which
/// [`apply`](Self::apply)s snapshots, and the HTTP tasks, which [`get`](Self::get) lists.
///
/// Reads take one shard's read lock just long enough to clone an `Arc`; the publisher renders
/// outside any lock and takes a shard's write lock only to swap one `Arc`, so each list is
/// replaced atomically.
#[derive(Debug)]
pub struct ServingTable {
    profiles: Profiles,
    k: usize,
    refresh_ms: i64,
    publish_interval: Duration,
    shards: Box<[Shard]>,
    categories: RwLock<Arc<CategoriesDoc>>,
    compression: bool,
    published_ms: AtomicI64,
    /// Bumped after each publish, for the live streams (`/v1/stream`) to wake on.
    publishes: tokio::sync::watch::Sender<u64>,
    writer: Mutex<Writer>,
    availability: Option<Arc<Availability>>,
}

impl ServingTable {
    /// An empty table for `profiles` (the first is the API's default) serving lists of at
    /// most `k` items.
    pub fn new(profiles: Profiles, k: usize, config: TableConfig) -> ServingTable {
        let writer = Writer::default();
        let categories = RwLock::new(Arc::new(writer.tree.render()));
        ServingTable {
            profiles,
            k,
            refresh_ms: config.refresh.as_millis().min(i64::MAX as u128) as i64,
            publish_interval: config.publish_interval,
            shards: (0..config.shards.max(1))
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            categories,
            compression: true,
            published_ms: AtomicI64::new(i64::MIN),
            publishes: tokio::sync::watch::Sender::new(0),
            writer: Mutex::new(writer),
            availability: None,
        }
    }

    /// The table hiding the items `availability` marks unavailable: each list shows the first
    /// `k` available items of its candidates. Set before anything is applied.
    pub fn with_availability(mut self, availability: Arc<Availability>) -> ServingTable {
        self.availability = Some(availability);
        self
    }

    /// The availability map the lists are filtered with, if any.
    pub fn availability(&self) -> Option<&Arc<Availability>> {
        self.availability.as_ref()
    }

    /// Renders the candidates `list` at `now`: the first `k` (available) items.
    fn render(&self, list: &TopKList, now: i64) -> RenderedList {
        let profile = &self.profiles[list.profile];
        match &self.availability {
            None => RenderedList::render(list, profile, now, self.k),
            Some(availability) => RenderedList::render_shown(
                list,
                availability.shown(&list.items, self.k),
                profile,
                now,
            ),
        }
    }

    /// The lists of `snapshot` as shown (the changelog's input): the first `k` available
    /// candidates of each; the snapshot itself without availability.
    pub fn shown_snapshot<'a>(&self, snapshot: &'a Snapshot) -> Cow<'a, Snapshot> {
        let Some(availability) = &self.availability else {
            return Cow::Borrowed(snapshot);
        };
        let lists = snapshot
            .lists
            .iter()
            .map(|list| TopKList {
                profile: list.profile,
                category: list.category.clone(),
                items: availability
                    .shown(&list.items, self.k)
                    .into_iter()
                    .map(|at| list.items[at as usize].clone())
                    .collect(),
            })
            .collect();
        Cow::Owned(Snapshot {
            time_ms: snapshot.time_ms,
            lists,
            whole: snapshot.whole,
        })
    }

    /// After the availability of `items` changed: re-renders the lists whose candidates hold
    /// any of them (at their own `as_of`), and returns those whose shown items changed, as
    /// now shown. Called by the publisher thread.
    pub fn availability_changed(&self, items: &[Arc<str>]) -> Vec<TopKList> {
        let writer = self.writer.lock();
        let mut keys: Vec<&(usize, Arc<str>)> = items
            .iter()
            .filter_map(|item| writer.holders.get(item))
            .flatten()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut changed = Vec::new();
        for (profile, category) in keys {
            let Some(current) = self.get(*profile, category) else {
                continue;
            };
            let rendered = self.render(current.list(), current.as_of_ms());
            if !rendered.shows_same(&current) {
                changed.push(rendered.shown_list());
            }
            drop(current);
            self.put(*profile, category, rendered);
        }
        drop(writer);
        if !changed.is_empty() {
            // Streams follow the lists shown, which a flip changes without a snapshot.
            self.publishes.send_modify(|sequence| *sequence += 1);
        }
        changed
    }

    /// Notes in the index that `new` (candidates) replaces `old` as the list of `key` (with
    /// availability only).
    fn track(
        &self,
        writer: &mut Writer,
        key: &(usize, Arc<str>),
        old: Option<&TopKList>,
        new: &TopKList,
    ) {
        for item in old.map(|old| &old.items[..]).unwrap_or_default() {
            if let Some(holders) = writer.holders.get_mut(&item.item_id) {
                holders.remove(key);
                if holders.is_empty() {
                    writer.holders.remove(&item.item_id);
                }
            }
        }
        for item in &new.items {
            writer
                .holders
                .entry(item.item_id.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    /// Least time between two publishes (see [`TableConfig::publish_interval`]).
    pub fn publish_interval(&self) -> Duration {
        self.publish_interval
    }

    /// The decay profiles, in configuration order.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The most items a list holds (the default `limit`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The index of the profile called `name`.
    pub fn profile_index(&self, name: &str) -> Option<usize> {
        self.profiles.index(name)
    }

    /// The time of the last applied snapshot, if any.
    pub fn published_time_ms(&self) -> Option<i64> {
        let ms = self.published_ms.load(Ordering::Acquire);
        (ms != i64::MIN).then_some(ms)
    }

    /// The current list of `category` under profile `profile`; `None` if the category is not
    /// known or the profile index is out of range. A known category without ranked items
    /// has an empty list.
    pub fn get(&self, profile: usize, category: &str) -> Option<Arc<RenderedList>> {
        self.shard(category)
            .read()
            .get(category)
            .and_then(|entry| entry.get(profile))
            .cloned()
    }

    /// Whether `category` has appeared in a snapshot (itself or as an ancestor of one that
    /// did); the root `""` is known once the first snapshot has been applied.
    pub fn is_known(&self, category: &str) -> bool {
        self.shard(category).read().contains_key(category)
    }

    /// The served items of (profile, category) with their scores as rendered.
    pub fn current_items(&self, profile: usize, category: &str) -> Option<Vec<(Arc<str>, f64)>> {
        let list = self.get(profile, category)?;
        Some(list.scores(self.profiles[profile].half_life_ms))
    }

    /// The `/v1/categories` document.
    pub fn categories_json(&self) -> Bytes {
        self.categories.read().json.clone()
    }

    /// The `/v1/categories` document with its entity tag.
    pub fn categories_doc(&self) -> Arc<CategoriesDoc> {
        self.categories.read().clone()
    }

    /// Applies a snapshot: renders each of its lists at `snapshot.time_ms` and swaps it in,
    /// makes new categories (and their ancestors) known, then re-renders lists whose scores
    /// are older than the refresh interval. Called by one thread at a time (the publisher).
    pub fn apply(&self, snapshot: &Snapshot) {
        self.apply_many(std::slice::from_ref(snapshot));
    }

    /// Applies several consecutive snapshots (oldest first) as one: for each (profile,
    /// category) only the newest list is rendered, at the last snapshot's time. The table
    /// ends up exactly as after applying them one by one (rankings do not depend on the
    /// time), with less work when the publisher has fallen behind.
    pub fn apply_many(&self, snapshots: &[Snapshot]) {
        let Some(last) = snapshots.last() else { return };
        let now = last.time_ms;
        let mut newest: HashMap<(usize, &str), &TopKList> = HashMap::new();
        let mut order = Vec::new();
        for list in snapshots.iter().flat_map(|snapshot| &snapshot.lists) {
            if newest
                .insert((list.profile, &*list.category), list)
                .is_none()
            {
                order.push((list.profile, &*list.category));
            }
        }
        let mut writer = self.writer.lock();
        let mut categories_changed = false;
        if self.published_time_ms().is_none() {
            categories_changed |= self.make_known(&mut writer, &Arc::from(""), now);
        }
        for key in order {
            let list = newest[&key];
            if self.profiles.get(list.profile).is_none() {
                tracing::warn!(
                    profile = list.profile,
                    category = &*list.category,
                    "snapshot list for an unknown profile index"
                );
                continue;
            };
            categories_changed |= self.make_known(&mut writer, &list.category, now);
            let key = (list.profile, list.category.clone());
            if self.availability.is_some() {
                let old = self.get(list.profile, &list.category);
                self.track(
                    &mut writer,
                    &key,
                    old.as_deref().map(RenderedList::list),
                    list,
                );
            }
            writer.changed.insert(key);
            let rendered = self.render(list, now);
            self.put(list.profile, &list.category, rendered);
            writer
                .due
                .push(Reverse((now, list.profile, list.category.clone())));
        }
        if snapshots.iter().any(|snapshot| snapshot.whole) {
            self.empty_missing(&mut writer, &newest, now);
        }
        self.refresh(&mut writer, now);
        if categories_changed {
            *self.categories.write() = Arc::new(writer.tree.render());
        }
        self.published_ms.store(now, Ordering::Release);
        self.publishes.send_modify(|sequence| *sequence += 1);
    }

    /// Changes (the publish sequence number) after every publish and every availability flip
    /// that changed a shown list: a receiver's `changed()` completes once lists may have changed
    /// since it last looked.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.publishes.subscribe()
    }

    /// After a snapshot that holds every list: empties the lists it does not hold (served from
    /// an earlier state, e.g. a restored checkpoint's, their categories have no purchase left).
    fn empty_missing(
        &self,
        writer: &mut Writer,
        holds: &HashMap<(usize, &str), &TopKList>,
        now: i64,
    ) {
        let mut stale = Vec::new();
        for shard in self.shards.iter() {
            for (category, entry) in shard.read().iter() {
                for (profile, rendered) in entry.iter().enumerate() {
                    if !rendered.is_empty() && !holds.contains_key(&(profile, &**category)) {
                        stale.push((profile, category.clone()));
                    }
                }
            }
        }
        for (profile, category) in stale {
            let empty =
                RenderedList::empty(profile, category.clone(), &self.profiles[profile], now);
            if self.availability.is_some() {
                let key = (profile, category.clone());
                let old = self.get(profile, &category);
                self.track(
                    writer,
                    &key,
                    old.as_deref().map(RenderedList::list),
                    empty.list(),
                );
            }
            writer.changed.insert((profile, category.clone()));
            writer.due.push(Reverse((now, profile, category.clone())));
            self.put(profile, &category, empty);
        }
    }

    /// Every list served, as ranked (for a checkpoint).
    pub fn lists(&self) -> Vec<TopKList> {
        let mut lists = Vec::new();
        for shard in self.shards.iter() {
            for entry in shard.read().values() {
                lists.extend(entry.iter().map(|rendered| rendered.list().clone()));
            }
        }
        lists
    }

    /// The lists applied since the last call (a checkpoint's changes), as now served.
    pub fn take_changed(&self) -> Vec<TopKList> {
        let changed = std::mem::take(&mut self.writer.lock().changed);
        changed
            .into_iter()
            .filter_map(|(profile, category)| Some(self.get(profile, &category)?.list().clone()))
            .collect()
    }

    /// Re-renders every list rendered before `now − refresh`.
    fn refresh(&self, writer: &mut Writer, now: i64) {
        let threshold = now.saturating_sub(self.refresh_ms);
        while let Some(Reverse((at, _, _))) = writer.due.peek() {
            if *at >= threshold {
                break;
            }
            let Some(Reverse((at, profile, category))) = writer.due.pop() else {
                break;
            };
            let Some(current) = self.get(profile, &category) else {
                continue;
            };
            if current.as_of_ms() != at {
                continue; // rendered again since; that render has its own entry
            }
            let rendered = self.render(current.list(), now);
            drop(current);
            self.put(profile, &category, rendered);
            writer.due.push(Reverse((now, profile, category)));
        }
    }

    /// Makes `category` and its ancestors known, with empty lists; whether any was new.
    fn make_known(&self, writer: &mut Writer, category: &Arc<str>, now: i64) -> bool {
        let added = writer.tree.insert(category);
        for category in &added {
            let entry: Entry = self
                .profiles
                .iter()
                .enumerate()
                .map(|(index, profile)| {
                    Arc::new(RenderedList::empty(index, category.clone(), profile, now))
                })
                .collect();
            self.shard(category).write().insert(category.clone(), entry);
            for index in 0..self.profiles.len() {
                writer.due.push(Reverse((now, index, category.clone())));
            }
        }
        !added.is_empty()
    }

    /// Whether lists may be served gzip- or brotli-compressed (`[http] compression`; on by
    /// default): each rendered list is compressed once, by the first request that accepts it.
    pub fn with_compression(mut self, on: bool) -> ServingTable {
        self.compression = on;
        self
    }

    /// Swaps in one list (allowed to be served compressed when compression is on); the old one
    /// is dropped outside the lock.
    fn put(&self, profile: usize, category: &Arc<str>, mut rendered: RenderedList) {
        if self.compression {
            rendered.allow_compression();
        }
        let rendered = Arc::new(rendered);
        let old = {
            let mut shard = self.shard(category).write();
            match shard.get_mut(&**category) {
                Some(entry) => Some(std::mem::replace(&mut entry[profile], rendered)),
                None => {
                    // Not reachable through `apply`, which makes categories known first.
                    let mut entry: Vec<Arc<RenderedList>> = self
                        .profiles
                        .iter()
                        .enumerate()
                        .map(|(index, p)| {
                            Arc::new(RenderedList::empty(
                                index,
                                category.clone(),
                                p,
                                rendered.as_of_ms(),
                            ))
                        })
                        .collect();
                    entry[profile] = rendered;
                    shard.insert(category.clone(), entry.into_boxed_slice());
                    None
                }
            }
        };
        drop(old);
    }

    fn shard(&self, category: &str) -> &Shard {
        let hash = xxhash_rust::xxh3::xxh3_64(category.as_bytes());
        &self.shards[(hash % self.shards.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{list, profiles, snapshot, H};

    fn table() -> ServingTable {
        ServingTable::new(profiles(), 3, TableConfig::default())
    }

    fn ids(table: &ServingTable, profile: usize, category: &str) -> Vec<String> {
        table
            .current_items(profile, category)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect()
    }

    #[test]
    fn config_reads_durations() {
        let parsed: TableConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, TableConfig::default());
        assert!(serde_json::from_str::<TableConfig>("{\"nope\":1}").is_err());
        let error = serde_json::from_str::<TableConfig>("{\"refresh\":\"soon\"}").unwrap_err();
        assert!(error.to_string().contains("bad duration"), "{error}");
        let parsed: TableConfig =
            serde_json::from_str("{\"refresh\":\"2s\",\"publish_interval\":\"0s\"}").unwrap();
        assert_eq!(parsed.refresh, Duration::from_secs(2));
        assert_eq!(parsed.publish_interval, Duration::ZERO);
    }

    #[test]
    fn applies_snapshots() {
        let table = table();
        assert_eq!(table.published_time_ms(), None);
        assert!(!table.is_known(""));
        assert_eq!(table.profile_index("1d"), Some(1));
        assert_eq!(table.profile_index("2d"), None);

        table.apply(&snapshot(
            H,
            vec![list(
                0,
                "books/fiction",
                &[("a", 1), ("b", 4), ("c", 2), ("d", 3)],
            )],
        ));
        assert_eq!(table.published_time_ms(), Some(H));
        assert_eq!(ids(&table, 0, "books/fiction"), ["b", "d", "c"]); // cut to k = 3
        let scores = table.current_items(0, "books/fiction").unwrap();
        assert!((scores[0].1 - 2.0).abs() < 1e-12); // 4 bought at 0, one half-life ago
        for known in ["", "books", "books/fiction"] {
            assert!(table.is_known(known));
            assert!(table.get(1, known).unwrap().is_empty() || known == "books/fiction");
        }
        assert!(table.get(1, "books/fiction").unwrap().is_empty());
        assert!(table.get(2, "books/fiction").is_none());
        assert!(!table.is_known("toys"));
        assert!(table.get(0, "toys").is_none());

        let before = table.get(0, "books/fiction").unwrap();
        table.apply(&snapshot(
            H + 1,
            vec![list(0, "books/fiction", &[("z", 9)]), list(1, "toys", &[])],
        ));
        assert_eq!(ids(&table, 0, "books/fiction"), ["z"]);
        assert!(table.is_known("toys"));
        assert!(table.get(1, "toys").unwrap().is_empty());
        // Readers holding the old list keep a consistent copy.
        assert_eq!(before.len(), 3);
        assert_ne!(
            before.etag(3),
            table.get(0, "books/fiction").unwrap().etag(3)
        );
    }

    #[test]
    fn categories_document_changes_only_with_the_set() {
        let table = table();
        assert_eq!(table.categories_json(), &b"{\"categories\":[]}"[..]);
        table.apply(&snapshot(0, vec![]));
        let root_only = table.categories_doc();
        assert!(table.is_known(""));
        let doc: serde_json::Value = serde_json::from_slice(&root_only.json).unwrap();
        assert_eq!(doc["categories"][0]["parent"], serde_json::Value::Null);
        table.apply(&snapshot(1, vec![list(0, "a/b", &[("x", 1)])]));
        let grown = table.categories_doc();
        assert_ne!(grown.etag, root_only.etag);
        table.apply(&snapshot(
            2,
            vec![list(0, "a/b", &[("y", 1)]), list(0, "a", &[("y", 1)])],
        ));
        assert!(Arc::ptr_eq(&grown, &table.categories_doc()));
        let doc: serde_json::Value = serde_json::from_slice(&table.categories_json()).unwrap();
        let names: Vec<&str> = doc["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["category"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["", "a", "a/b"]);
    }

    #[test]
    fn applying_many_equals_applying_each() {
        let snapshots = [
            snapshot(
                0,
                vec![list(0, "a", &[("x", 1)]), list(1, "b/c", &[("y", 2)])],
            ),
            snapshot(
                10,
                vec![list(0, "a", &[("z", 3), ("x", 1)]), list(0, "d", &[])],
            ),
            snapshot(20, vec![list(1, "b/c", &[("w", 2)])]),
        ];
        let (each, batch) = (table(), table());
        for snapshot in &snapshots {
            each.apply(snapshot);
        }
        batch.apply_many(&snapshots);
        batch.apply_many(&[]);
        assert_eq!(batch.published_time_ms(), Some(20));
        assert_eq!(batch.categories_json(), each.categories_json());
        for category in ["", "a", "b", "b/c", "d"] {
            for profile in 0..2 {
                assert_eq!(
                    ids(&batch, profile, category),
                    ids(&each, profile, category)
                );
                assert_eq!(batch.get(profile, category).unwrap().as_of_ms(), 20);
            }
        }
        assert_eq!(ids(&batch, 0, "a"), ["z", "x"]);
    }

    /// A snapshot that holds every list (a backfill's) empties what it does not hold; the
    /// lists applied are noted for a checkpoint, and all of them can be taken.
    #[test]
    fn a_whole_snapshot_empties_lists_it_does_not_hold() {
        let table = table();
        table.apply(&snapshot(
            H,
            vec![list(0, "a/b", &[("x", 3)]), list(1, "c", &[("y", 1)])],
        ));
        let mut all: Vec<(usize, String)> = table
            .lists()
            .into_iter()
            .filter(|l| !l.items.is_empty())
            .map(|l| (l.profile, l.category.to_string()))
            .collect();
        all.sort();
        assert_eq!(all, [(0, "a/b".to_owned()), (1, "c".to_owned())]);
        assert_eq!(table.take_changed().len(), 2);
        assert!(table.take_changed().is_empty(), "taken");
        let mut whole = snapshot(2 * H, vec![list(0, "a/b", &[("z", 2)])]);
        whole.whole = true;
        table.apply(&whole);
        assert_eq!(ids(&table, 0, "a/b"), ["z"]);
        assert!(ids(&table, 1, "c").is_empty(), "not held: empty now");
        assert!(table.is_known("c"), "the category stays known");
        let changed: Vec<(usize, String)> = table
            .take_changed()
            .into_iter()
            .map(|l| (l.profile, l.category.to_string()))
            .collect();
        assert!(changed.contains(&(1, "c".to_owned())), "{changed:?}");
        // A snapshot that is not whole leaves the others alone.
        table.apply(&snapshot(3 * H, vec![list(1, "c", &[("y", 1)])]));
        table.apply(&snapshot(4 * H, vec![list(0, "a/b", &[("w", 1)])]));
        assert_eq!(ids(&table, 1, "c"), ["y"]);
    }

    /// Random candidate lists and availability flips against brute force: each list shows the
    /// first k available candidates, a flip re-renders exactly the lists it changes (returned
    /// as shown), and the unfiltered candidates stay what was applied.
    #[test]
    fn hides_unavailable_items_and_backfills_against_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for _ in 0..30 {
            let availability = Arc::new(Availability::new());
            let table = table().with_availability(availability.clone());
            let mut candidates: HashMap<(usize, String), Vec<String>> = HashMap::new();
            let mut available: HashMap<String, bool> = HashMap::new();
            let mut ts = 0;
            for step in 0..40 {
                if rng.random_bool(0.5) {
                    let profile = rng.random_range(0..2);
                    let category = ["a", "a/b", "c"][rng.random_range(0..3)].to_owned();
                    let n = rng.random_range(0..6);
                    let items: Vec<(String, i64)> = (0..n)
                        .map(|_| {
                            (
                                format!("i{}", rng.random_range(0..8)),
                                rng.random_range(1..50),
                            )
                        })
                        .collect::<HashMap<_, _>>()
                        .into_iter()
                        .collect();
                    let refs: Vec<(&str, i64)> = items.iter().map(|(i, q)| (&**i, *q)).collect();
                    let list = list(profile, &category, &refs);
                    let ids = list.items.iter().map(|i| i.item_id.to_string()).collect();
                    candidates.insert((profile, category), ids);
                    table.apply(&snapshot(step, vec![list]));
                } else {
                    let records: Vec<(String, bool)> = (0..rng.random_range(1..4))
                        .map(|_| (format!("i{}", rng.random_range(0..8)), rng.random_bool(0.5)))
                        .collect();
                    let before: HashMap<(usize, String), Vec<String>> = candidates
                        .keys()
                        .map(|key| (key.clone(), ids(&table, key.0, &key.1)))
                        .collect();
                    ts += 1;
                    // One ts for the call: a later record of it replaces the earlier one,
                    // but `false` wins a tie.
                    let mut call: HashMap<&str, bool> = HashMap::new();
                    for (item, flag) in &records {
                        *call.entry(item).or_insert(true) &= *flag;
                    }
                    for (item, flag) in call {
                        available.insert(item.to_owned(), flag);
                    }
                    let changed = availability.apply(
                        records
                            .iter()
                            .map(|(item, flag)| (item.as_str(), *flag, ts)),
                    );
                    let lists = table.availability_changed(&changed);
                    for key in candidates.keys() {
                        let now = ids(&table, key.0, &key.1);
                        let reported = lists
                            .iter()
                            .find(|l| (l.profile, &*l.category) == (key.0, key.1.as_str()));
                        match reported {
                            Some(list) => {
                                let shown: Vec<String> =
                                    list.items.iter().map(|i| i.item_id.to_string()).collect();
                                assert_eq!(shown, now);
                                assert_ne!(before[key], now);
                            }
                            None => assert_eq!(before[key], now, "{key:?} changed unreported"),
                        }
                    }
                }
                for ((profile, category), ids_in) in &candidates {
                    let want: Vec<String> = ids_in
                        .iter()
                        .filter(|item| available.get(*item).copied().unwrap_or(true))
                        .take(3)
                        .cloned()
                        .collect();
                    assert_eq!(ids(&table, *profile, category), want);
                    let kept: Vec<String> = table
                        .get(*profile, category)
                        .unwrap()
                        .list()
                        .items
                        .iter()
                        .map(|i| i.item_id.to_string())
                        .collect();
                    assert_eq!(&kept, ids_in, "the candidates are kept");
                }
            }
        }
    }

    #[test]
    fn refreshes_stale_scores_only() {
        let table = table();
        table.apply(&snapshot(
            0,
            vec![list(0, "a", &[("x", 8)]), list(0, "b", &[("y", 8)])],
        ));
        // 4 s later: nothing is older than 5 s, nothing is re-rendered.
        table.apply(&snapshot(4_000, vec![list(0, "a", &[("x", 8)])]));
        assert_eq!(table.get(0, "a").unwrap().as_of_ms(), 4_000);
        assert_eq!(table.get(0, "b").unwrap().as_of_ms(), 0);
        // An hour later with no change: both are re-rendered with decayed scores.
        table.apply(&snapshot(H, vec![]));
        for category in ["a", "b", "", ""] {
            let list = table.get(0, category).unwrap();
            assert_eq!(list.as_of_ms(), H);
        }
        assert_eq!(table.current_items(0, "b").unwrap()[0].1, 4.0);
        assert_eq!(table.get(1, "b").unwrap().as_of_ms(), H);
        // The queue holds one live entry per list plus nothing stale older than the window.
        let queued = table.writer.lock().due.len();
        assert_eq!(queued, 3 * 2);
    }
}
