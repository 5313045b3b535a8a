//! Dense per-worker ids for repeated strings (categories, items).

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Dense ids (0, 1, 2, …) for repeated strings, and their texts back; ids are local to one
/// worker. (Not to be confused with `topsellers_sources::Interner`, which only shares one
/// allocation per text.)
#[derive(Default)]
pub(crate) struct DenseIds {
    ids: FxHashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl DenseIds {
    /// The id of `name`, and whether it is new.
    pub(crate) fn intern(&mut self, name: &str) -> (u32, bool) {
        if let Some(&id) = self.ids.get(name) {
            return (id, false);
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        (id, true)
    }

    /// The id of `name`, keeping this `Arc` when new.
    pub(crate) fn intern_arc(&mut self, name: &Arc<str>) -> u32 {
        self.intern_shared(name).0
    }

    /// The id of `name`, keeping this `Arc` when new, and whether it is new.
    pub(crate) fn intern_shared(&mut self, name: &Arc<str>) -> (u32, bool) {
        if let Some(&id) = self.ids.get(&**name) {
            return (id, false);
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name.clone(), id);
        (id, true)
    }

    /// The id of `name`, if it has one.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Makes room for `more` new strings.
    pub(crate) fn reserve(&mut self, more: usize) {
        self.ids.reserve(more);
        self.names.reserve(more);
    }

    /// The text of `id`.
    pub(crate) fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }
}
