//! One (profile, category) top-k list rendered once into the exact JSON bytes the API serves.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use topsellers_model::{Profile, RankedItem, TopKList};

use crate::encoding::Encoded;
use crate::etag::ETag;
use crate::list_json::{self, DOCUMENT_TAIL as TAIL};

thread_local! {
    /// The buffer lists are rendered into on this thread, before being copied out.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A list pre-serialized as the full `/v1/top` response, sliceable to any `limit` without
/// copying: the first `n` items are `full[..item_end(n)]` followed by `]}`.
///
/// It keeps the candidates it was rendered from (the dataflow's list, `k + buffer` long when
/// availability is on) and which of them it shows (the first `k` available ones).
#[derive(Debug)]
pub struct RenderedList {
    full: Bytes,
    /// Offset just after `"items":[`.
    items_start: usize,
    /// Offset just after the closing `}` of each item.
    item_ends: Box<[usize]>,
    hash: u64,
    as_of_ms: i64,
    /// The candidates, best first.
    list: TopKList,
    /// The positions in `list.items` of the items shown, ascending.
    shown: Box<[u32]>,
    /// Whether `full` may be served compressed (see [`allow_compression`](Self::allow_compression)).
    compressible: bool,
    /// gzip and brotli copies of `full`, made by the first request that accepts one.
    encoded: OnceLock<Encoded>,
}

impl RenderedList {
    /// Renders `list` (cut to its first `k` items) with scores decayed to `as_of_ms` under
    /// `profile`'s half-life (which must be positive).
    pub fn render(list: &TopKList, profile: &Profile, as_of_ms: i64, k: usize) -> RenderedList {
        let shown = (0..list.items.len().min(k) as u32).collect();
        RenderedList::render_shown(list, shown, profile, as_of_ms)
    }

    /// Renders the items of `list` at the positions `shown` (ascending), keeping all of `list`
    /// as the candidates.
    pub fn render_shown(
        list: &TopKList,
        shown: Vec<u32>,
        profile: &Profile,
        as_of_ms: i64,
    ) -> RenderedList {
        // Rendered into a buffer kept by the thread, then copied into an allocation of the
        // exact size: growing a fresh buffer per list (the size of an item's JSON varies)
        // reallocated and touched new pages for most lists (`perf` on the publisher at 100k
        // purchases/s: page zeroing and `finish_grow` above the rendering itself).
        let (full, items_start, item_ends, hash) = SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            out.clear();
            let items = shown.iter().map(|&at| (&list.items[at as usize], None));
            let (items_start, item_ends) =
                list_json::push_document(&mut out, &list.category, items, profile, as_of_ms);
            let hash = xxhash_rust::xxh3::xxh3_64(&out);
            (Bytes::copy_from_slice(&out), items_start, item_ends, hash)
        });
        RenderedList {
            full,
            items_start,
            item_ends: item_ends.into_boxed_slice(),
            hash,
            as_of_ms,
            list: list.clone(),
            shown: shown.into_boxed_slice(),
            compressible: false,
            encoded: OnceLock::new(),
        }
    }

    /// The document of the first `limit` candidates, hidden ones included, each marked
    /// `"available":true|false` by `available` (the `include_unavailable` view: rendered per
    /// request), with its entity tag.
    pub fn marked(
        &self,
        limit: usize,
        profile: &Profile,
        available: impl Fn(&str) -> bool,
    ) -> (Bytes, ETag) {
        let items = &self.list.items[..limit.min(self.list.items.len())];
        let mut out = Vec::with_capacity(96 + self.list.category.len() + items.len() * 80);
        let marked = items
            .iter()
            .map(|item| (item, Some(available(&item.item_id))));
        list_json::push_document(
            &mut out,
            &self.list.category,
            marked,
            profile,
            self.as_of_ms,
        );
        let etag = ETag::new(xxhash_rust::xxh3::xxh3_64(&out), Some(items.len()));
        (Bytes::from(out), etag)
    }

    /// The items shown, as a list (what the changelog records).
    pub fn shown_list(&self) -> TopKList {
        TopKList {
            profile: self.list.profile,
            category: self.list.category.clone(),
            items: self.shown_items().cloned().collect(),
        }
    }

    /// Whether the items shown are those of `other` (same ids, same order).
    pub fn shows_same(&self, other: &RenderedList) -> bool {
        self.shown.len() == other.shown.len()
            && self
                .shown_items()
                .zip(other.shown_items())
                .all(|(a, b)| a.item_id == b.item_id)
    }

    fn shown_items(&self) -> impl Iterator<Item = &RankedItem> {
        self.shown.iter().map(|&at| &self.list.items[at as usize])
    }

    /// Lets the whole document be served compressed (`[http] compression`). The copies are
    /// made once per rendered list, by the first request that accepts gzip or brotli, not by
    /// the publisher: compressing every changed list when it is rendered measured about
    /// 0.9 ms per top-100 list (gzip and brotli), 20× its rendering, which at 100k
    /// purchases/s (about 11k lists changed per publish) would put seconds between a
    /// purchase and its list; most lists change again before anyone asks for them.
    pub fn allow_compression(&mut self) {
        self.compressible = self.full.len() >= crate::encoding::MIN_BYTES;
    }

    /// Whether the document served for `limit` may be compressed: only the whole document
    /// (a `limit` of at least its length, e.g. the default) is.
    pub fn compressible(&self, limit: usize) -> bool {
        self.compressible && self.served_len(limit) == self.len()
    }

    /// The compressed copies of the document served for `limit`, made on first use; `None`
    /// when it is not [`compressible`](Self::compressible) or compressing saved nothing.
    pub fn encoded(&self, limit: usize) -> Option<&Encoded> {
        if !self.compressible(limit) {
            return None;
        }
        let encoded = self.encoded.get_or_init(|| Encoded::compress(&self.full));
        (!encoded.is_empty()).then_some(encoded)
    }

    /// An empty list for a category known to the table that has no ranked items (yet).
    pub fn empty(
        profile_index: usize,
        category: Arc<str>,
        profile: &Profile,
        as_of_ms: i64,
    ) -> RenderedList {
        let list = TopKList {
            profile: profile_index,
            category,
            items: Vec::new(),
        };
        RenderedList::render(&list, profile, as_of_ms, 0)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.item_ends.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.item_ends.is_empty()
    }

    /// The time the scores are decayed to (the `as_of` of the document), epoch ms.
    pub fn as_of_ms(&self) -> i64 {
        self.as_of_ms
    }

    /// The candidates the document was rendered from (all of them, shown or not).
    pub fn list(&self) -> &TopKList {
        &self.list
    }

    /// The whole document.
    pub fn full(&self) -> &Bytes {
        &self.full
    }

    /// The items shown with the scores as rendered (decayed to [`as_of_ms`](Self::as_of_ms)).
    pub fn scores(&self, half_life_ms: i64) -> Vec<(Arc<str>, f64)> {
        self.shown_items()
            .map(|item| {
                (
                    item.item_id.clone(),
                    item.score.score_at(self.as_of_ms, half_life_ms),
                )
            })
            .collect()
    }

    /// The items served for `limit` (clamped to the list's length).
    pub fn served_len(&self, limit: usize) -> usize {
        limit.min(self.len())
    }

    /// The document holding the first `limit` items, as one or two chunks (no copy).
    pub fn chunks(&self, limit: usize) -> (Bytes, Option<Bytes>) {
        let n = self.served_len(limit);
        if n == self.len() {
            return (self.full.clone(), None);
        }
        let end = if n == 0 {
            self.items_start
        } else {
            self.item_ends[n - 1]
        };
        (self.full.slice(..end), Some(Bytes::from_static(TAIL)))
    }

    /// The entity tag of the document holding the first `limit` items.
    pub fn etag(&self, limit: usize) -> ETag {
        ETag::new(self.hash, Some(self.served_len(limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{list, H};

    fn joined(rendered: &RenderedList, limit: usize) -> serde_json::Value {
        let (head, tail) = rendered.chunks(limit);
        let mut all = head.to_vec();
        all.extend_from_slice(tail.as_deref().unwrap_or_default());
        serde_json::from_slice(&all).unwrap()
    }

    #[test]
    fn renders_and_slices() {
        let profile = Profile {
            name: "1h".into(),
            half_life_ms: H,
        };
        let rendered = RenderedList::render(
            &list(0, "bücher/\"x\"", &[("a", 3), ("b", 2), ("c\n", 1)]),
            &profile,
            H,
            10,
        );
        assert_eq!(rendered.len(), 3);
        let full = joined(&rendered, 100);
        assert_eq!(full["category"], "bücher/\"x\"");
        assert_eq!(full["profile"], "1h");
        assert_eq!(full["as_of"], "1970-01-01T01:00:00.000Z");
        assert_eq!(full["items"][0]["score"], 1.5);
        assert_eq!(full["items"][2]["item_id"], "c\n");
        for n in 1..=3 {
            let doc = joined(&rendered, n);
            let items = doc["items"].as_array().unwrap();
            assert_eq!(items.len(), n);
            for (at, item) in items.iter().enumerate() {
                assert_eq!(item["rank"], at + 1);
            }
            assert_eq!(doc["items"][n - 1], full["items"][n - 1]);
        }
        assert_eq!(rendered.chunks(3).1, None);
        assert_eq!(rendered.etag(3), rendered.etag(7));
        assert_ne!(rendered.etag(2), rendered.etag(3));
    }

    #[test]
    fn cuts_to_k_and_renders_empty() {
        let profile = Profile {
            name: "p".into(),
            half_life_ms: H,
        };
        let rendered = RenderedList::render(&list(0, "", &[("a", 3), ("b", 2)]), &profile, 0, 1);
        assert_eq!(rendered.len(), 1);
        assert_eq!(rendered.list().items.len(), 2, "the candidates are kept");
        assert_eq!(rendered.shown_list().items.len(), 1);
        let empty = RenderedList::empty(0, "x".into(), &profile, 0);
        assert!(empty.is_empty());
        assert_eq!(joined(&empty, 5)["items"], serde_json::json!([]));
    }
}
