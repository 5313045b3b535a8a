//! The set of known categories as a tree, and its pre-rendered `/v1/categories` document.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use topsellers_model::{ancestors, parent};

use crate::etag::ETag;
use crate::json;

/// The `/v1/categories` document and its entity tag.
#[derive(Clone, Debug)]
pub struct CategoriesDoc {
    /// `{"categories":[{"category":"","parent":null,"children":[…]}, …]}`, sorted by category.
    pub json: Bytes,
    /// Entity tag of `json`.
    pub etag: ETag,
}

/// Every known category with its children, ordered by category (bytes).
#[derive(Debug, Default)]
pub(crate) struct CategoryTree {
    children: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl CategoryTree {
    /// Makes `category` and all its ancestors (up to the root `""`) known; returns the ones
    /// that were not known before, deepest first.
    pub(crate) fn insert(&mut self, category: &Arc<str>) -> Vec<Arc<str>> {
        let mut added = Vec::new();
        if self.children.contains_key(&**category) {
            return added;
        }
        let mut child: Option<Arc<str>> = None;
        for (depth, path) in ancestors(category).enumerate() {
            let (path, existed): (Arc<str>, bool) = match self.children.get_key_value(path) {
                Some((known, _)) => (known.clone(), true),
                None => {
                    let owned = if depth == 0 {
                        category.clone()
                    } else {
                        Arc::from(path)
                    };
                    self.children.insert(owned.clone(), BTreeSet::new());
                    added.push(owned.clone());
                    (owned, false)
                }
            };
            if let (Some(child), Some(set)) = (child.take(), self.children.get_mut(&*path)) {
                set.insert(child);
            }
            if existed {
                break;
            }
            child = Some(path);
        }
        added
    }

    /// Number of known categories.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.children.len()
    }

    /// Renders the `/v1/categories` document.
    pub(crate) fn render(&self) -> CategoriesDoc {
        let mut out = Vec::with_capacity(32 + self.children.len() * 64);
        out.extend_from_slice(b"{\"categories\":[");
        for (at, (category, children)) in self.children.iter().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"category\":");
            json::push_str(&mut out, category);
            out.extend_from_slice(b",\"parent\":");
            if category.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                json::push_str(&mut out, parent(category));
            }
            out.extend_from_slice(b",\"children\":[");
            for (at, child) in children.iter().enumerate() {
                if at > 0 {
                    out.push(b',');
                }
                json::push_str(&mut out, child);
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        let etag = ETag::new(xxhash_rust::xxh3::xxh3_64(&out), None);
        CategoriesDoc {
            json: Bytes::from(out),
            etag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_the_tree() {
        let mut tree = CategoryTree::default();
        assert_eq!(tree.render().json, &b"{\"categories\":[]}"[..]);
        let added = tree.insert(&Arc::from("books/fiction"));
        assert_eq!(
            added,
            [
                Arc::from("books/fiction"),
                Arc::from("books"),
                Arc::from("")
            ]
        );
        assert!(tree.insert(&Arc::from("books")).is_empty());
        assert_eq!(
            tree.insert(&Arc::from("books/sci fi")),
            [Arc::from("books/sci fi")]
        );
        assert_eq!(tree.insert(&Arc::from("toys")), [Arc::from("toys")]);
        assert_eq!(tree.len(), 5);
        let doc: serde_json::Value = serde_json::from_slice(&tree.render().json).unwrap();
        assert_eq!(
            doc,
            json!({"categories": [
                {"category": "", "parent": null, "children": ["books", "toys"]},
                {"category": "books", "parent": "", "children": ["books/fiction", "books/sci fi"]},
                {"category": "books/fiction", "parent": "books", "children": []},
                {"category": "books/sci fi", "parent": "books", "children": []},
                {"category": "toys", "parent": "", "children": []},
            ]})
        );
    }

    #[test]
    fn root_alone() {
        let mut tree = CategoryTree::default();
        assert_eq!(tree.insert(&Arc::from("")), [Arc::from("")]);
        let doc: serde_json::Value = serde_json::from_slice(&tree.render().json).unwrap();
        assert_eq!(
            doc,
            json!({"categories": [{"category": "", "parent": null, "children": []}]})
        );
    }
}
