//! Case-insensitive name lookups that share structure between snapshots.

use std::hash::{BuildHasher, Hasher};

use smallvec::SmallVec;

/// Compares two names the way every unique name in the engine is compared: Unicode
/// simple lowercase, character by character, without allocating.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Maps case-folded names to dense indexes. It stores only hashes, so a lookup hashes
/// the borrowed text and then confirms each candidate against the entity's own name:
/// no key is ever allocated, and colliding names simply share a bucket.
#[derive(Clone)]
pub(crate) struct NameIndex {
    hasher: std::collections::hash_map::RandomState,
    buckets: imbl::HashMap<u64, SmallVec<[u32; 1]>>,
}

impl NameIndex {
    pub(crate) fn new() -> NameIndex {
        NameIndex {
            hasher: std::collections::hash_map::RandomState::new(),
            buckets: imbl::HashMap::new(),
        }
    }

    fn hash(&self, name: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for c in name.chars().flat_map(char::to_lowercase) {
            hasher.write_u32(c as u32);
        }
        hasher.finish()
    }

    /// The index whose name (as `name_of` reports it) equals `name` case-insensitively.
    #[inline]
    pub(crate) fn get<'a>(
        &self,
        name: &str,
        name_of: impl Fn(u32) -> Option<&'a str>,
    ) -> Option<u32> {
        let bucket = self.buckets.get(&self.hash(name))?;
        bucket
            .iter()
            .copied()
            .find(|&index| name_of(index).is_some_and(|candidate| same_name(candidate, name)))
    }

    pub(crate) fn insert(&mut self, name: &str, index: u32) {
        let hash = self.hash(name);
        let bucket = self.buckets.entry(hash).or_default();
        if !bucket.contains(&index) {
            bucket.push(index);
        }
    }

    pub(crate) fn remove(&mut self, name: &str, index: u32) {
        let hash = self.hash(name);
        if let Some(bucket) = self.buckets.get_mut(&hash) {
            bucket.retain(|i| *i != index);
            if bucket.is_empty() {
                self.buckets.remove(&hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        let names = ["Alice", "BOB", "Ærøskøbing"];
        let mut index = NameIndex::new();
        for (i, name) in names.iter().enumerate() {
            index.insert(name, i as u32);
        }
        let name_of = |i: u32| names.get(i as usize).copied();
        assert_eq!(index.get("alice", name_of), Some(0));
        assert_eq!(index.get("bob", name_of), Some(1));
        assert_eq!(index.get("æRØSKØBING", name_of), Some(2));
        assert_eq!(index.get("carol", name_of), None);
        index.remove("ALICE", 0);
        assert_eq!(index.get("alice", name_of), None);
    }

    #[test]
    fn star_is_just_a_name() {
        let names = ["*"];
        let mut index = NameIndex::new();
        index.insert("*", 0);
        let name_of = |i: u32| names.get(i as usize).copied();
        assert_eq!(index.get("*", name_of), Some(0));
        assert_eq!(index.get("alice", name_of), None);
    }
}
