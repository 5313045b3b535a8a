//! One (profile, category) top-k list rendered once into the exact JSON bytes the API serves.

use std::sync::Arc;

use bytes::Bytes;
use topsellers_model::{Profile, TopKList};

use crate::encoding::Encoded;
use crate::etag::ETag;
use crate::list_json::{self, DOCUMENT_TAIL as TAIL};

/// A list pre-serialized as the full `/v1/top` response, sliceable to any `limit` without
/// copying: the first `n` items are `full[..item_end(n)]` followed by `]}`.
#[derive(Debug)]
pub struct RenderedList {
    full: Bytes,
    /// Offset just after `"items":[`.
    items_start: usize,
    /// Offset just after the closing `}` of each item.
    item_ends: Box<[usize]>,
    hash: u64,
    as_of_ms: i64,
    list: TopKList,
    /// gzip and brotli copies of `full` (none until [`compress`](Self::compress)).
    encoded: Encoded,
}

impl RenderedList {
    /// Renders `list` (cut to its first `k` items) with scores decayed to `as_of_ms` under
    /// `profile`'s half-life (which must be positive).
    pub fn render(list: &TopKList, profile: &Profile, as_of_ms: i64, k: usize) -> RenderedList {
        let items = &list.items[..list.items.len().min(k)];
        let mut out = Vec::with_capacity(96 + list.category.len() + items.len() * 64);
        let (items_start, item_ends) =
            list_json::push_document(&mut out, list, items.len(), profile, as_of_ms);
        let hash = xxhash_rust::xxh3::xxh3_64(&out);
        RenderedList {
            full: Bytes::from(out),
            items_start,
            item_ends: item_ends.into_boxed_slice(),
            hash,
            as_of_ms,
            list: TopKList {
                profile: list.profile,
                category: list.category.clone(),
                items: items.to_vec(),
            },
            encoded: Encoded::default(),
        }
    }

    /// Adds the gzip and brotli copies of the whole document (see [`Encoded::compress`]):
    /// done once per rendered list, by the publisher, so requests never compress.
    pub fn compress(&mut self) {
        self.encoded = Encoded::compress(&self.full);
    }

    /// The compressed copies of the document served for `limit`: only the whole document
    /// (a `limit` of at least its length, e.g. the default) has them; `None` otherwise or
    /// when there are none.
    pub fn encoded(&self, limit: usize) -> Option<&Encoded> {
        (self.served_len(limit) == self.len() && !self.encoded.is_empty()).then_some(&self.encoded)
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

    /// The ranked items the document was rendered from.
    pub fn list(&self) -> &TopKList {
        &self.list
    }

    /// The whole document.
    pub fn full(&self) -> &Bytes {
        &self.full
    }

    /// The items with the scores as rendered (decayed to [`as_of_ms`](Self::as_of_ms)).
    pub fn scores(&self, half_life_ms: i64) -> Vec<(Arc<str>, f64)> {
        self.list
            .items
            .iter()
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
        assert_eq!(rendered.list().items.len(), 1);
        let empty = RenderedList::empty(0, "x".into(), &profile, 0);
        assert!(empty.is_empty());
        assert_eq!(joined(&empty, 5)["items"], serde_json::json!([]));
    }
}
