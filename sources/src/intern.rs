//! A per-reader string interner, so that each distinct category text is allocated once.

use std::collections::HashSet;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Most distinct strings kept; past that the table is cleared (bounds memory on hostile input).
const MAX_ENTRIES: usize = 1 << 20;

/// Hands out a shared `Arc<str>` per distinct text.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Arc<str>, Xxh3DefaultBuilder>,
}

impl Interner {
    /// A new, empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `text`, allocating it the first time only.
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(found) = self.set.get(text) {
            return found.clone();
        }
        if self.set.len() >= MAX_ENTRIES {
            self.set.clear();
        }
        let shared: Arc<str> = Arc::from(text);
        self.set.insert(shared.clone());
        shared
    }

    /// How many distinct strings are held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no string is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_allocation() {
        let mut interner = Interner::new();
        let a = interner.intern("books/fiction");
        let b = interner.intern(&String::from("books/fiction"));
        let c = interner.intern("books");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*c, "books");
        assert_eq!(interner.len(), 2);
    }
}
