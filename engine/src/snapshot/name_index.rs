//! Case-insensitive name lookups that share structure between snapshots.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use smallvec::SmallVec;

/// Compares two names the way every unique name in the engine is compared: Unicode
/// lowercase, character by character, without allocating. ASCII names (nearly all)
/// take a byte-wise path.
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Feeds the case-folded UTF-8 of `name` to `hasher` through a stack buffer, so an
/// ASCII name costs one lowercase pass and one hash call. Both paths feed the same
/// bytes for the same folded text (the hasher sees one stream, whatever the chunks).
fn hash_folded(name: &str, hasher: &mut impl Hasher) {
    let mut buffer = [0u8; 64];
    if name.is_ascii() {
        for chunk in name.as_bytes().chunks(buffer.len()) {
            let folded = &mut buffer[..chunk.len()];
            folded.copy_from_slice(chunk);
            folded.make_ascii_lowercase();
            hasher.write(folded);
        }
        return;
    }
    let mut len = 0;
    for c in name.chars().flat_map(char::to_lowercase) {
        if len + 4 > buffer.len() {
            hasher.write(&buffer[..len]);
            len = 0;
        }
        len += c.encode_utf8(&mut buffer[len..]).len();
    }
    hasher.write(&buffer[..len]);
}

/// The buckets' keys are already hashes: use them as they are.
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Maps case-folded names to dense indexes. It stores only hashes, so a lookup hashes
/// the borrowed text and then confirms each candidate against the entity's own name:
/// no key is ever allocated, and colliding names simply share a bucket.
#[derive(Clone)]
pub(crate) struct NameIndex {
    hasher: std::collections::hash_map::RandomState,
    buckets: imbl::GenericHashMap<
        u64,
        SmallVec<[u32; 1]>,
        BuildHasherDefault<KeyIsHash>,
        imbl::shared_ptr::DefaultSharedPtr,
    >,
}

impl NameIndex {
    pub(crate) fn new() -> NameIndex {
        NameIndex {
            hasher: std::collections::hash_map::RandomState::new(),
            buckets: imbl::GenericHashMap::with_hasher(BuildHasherDefault::default()),
        }
    }

    fn hash(&self, name: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hash_folded(name, &mut hasher);
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
    fn folded_hashes_agree_across_paths() {
        let index = NameIndex::new();
        // U+212A KELVIN SIGN lowercases to an ASCII `k`; long names cross the buffer.
        assert_eq!(index.hash("\u{212A}elvin"), index.hash("kelvin"));
        let long_ascii = "A".repeat(200);
        let long_mixed = format!("{}\u{212A}", "a".repeat(199));
        assert_eq!(
            index.hash(&long_ascii.to_lowercase()),
            index.hash(&long_ascii)
        );
        assert_eq!(
            index.hash(&long_mixed),
            index.hash(&format!("{}k", "a".repeat(199)))
        );
        assert!(same_name("\u{212A}elvin", "KELVIN"));
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
