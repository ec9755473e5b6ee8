//! Tensor sets: name -> tensor maps that own nothing.
//!
//! A set records tensor ids, not tensors: freeing a tensor that is still in a set leaves a
//! dangling entry, which an execution reports by name instead of touching freed memory. Every
//! change bumps the set's version, so executions can reuse a cached binding plan while the set
//! is unchanged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::{lock, next_id};

#[derive(Debug)]
pub(crate) struct TensorSet {
    pub(crate) id: u64,
    version: AtomicU64,
    entries: Mutex<HashMap<Box<[u8]>, u64>>,
}

impl TensorSet {
    pub(crate) fn new() -> TensorSet {
        TensorSet {
            id: next_id(),
            version: AtomicU64::new(0),
            entries: Mutex::default(),
        }
    }

    /// Inserts or replaces the entry for `name`.
    pub(crate) fn insert(&self, name: &[u8], tensor_id: u64) {
        lock(&self.entries).insert(name.into(), tensor_id);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The tensor id stored under `name`.
    pub(crate) fn get(&self, name: &[u8]) -> Option<u64> {
        lock(&self.entries).get(name).copied()
    }

    /// Changes whenever an entry is added or replaced.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Looks up several names under one lock.
    pub(crate) fn get_all<'n>(&self, names: impl Iterator<Item = &'n str>) -> Vec<Option<u64>> {
        let entries = lock(&self.entries);
        names.map(|n| entries.get(n.as_bytes()).copied()).collect()
    }

    /// The names in the set, sorted, for error messages.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.entries)
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        names.sort();
        names
    }
}
