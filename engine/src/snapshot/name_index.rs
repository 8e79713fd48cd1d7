//! Case-insensitive name lookups that share structure between snapshots, and the
//! look-alike check of new names (see `look_alike`).

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use smallvec::SmallVec;

use super::cow_map::CowMap;
use super::look_alike::{fold_forms, meets};

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

/// Hash → dense indexes, cloned in O(1) and shared between snapshots.
type Buckets = CowMap<u64, SmallVec<[u32; 1]>, BuildHasherDefault<KeyIsHash>>;

fn buckets() -> Buckets {
    Buckets::with_hasher(BuildHasherDefault::default())
}

/// Maps case-folded names to dense indexes. It stores only hashes, so a lookup hashes
/// the borrowed text and then confirms each candidate against the entity's own name:
/// no key is ever allocated, and colliding names simply share a bucket.
///
/// Beside it, `folds` maps the confusable fold forms of the names that hold a
/// non-ASCII character (and only those: an ASCII name's one form is its lowercase,
/// which `buckets` already answers) to their indexes. It serves
/// [`NameIndex::look_alike`] only; lookups by name never use it, so a look-alike never
/// resolves to the entity it imitates.
#[derive(Clone)]
pub(crate) struct NameIndex {
    hasher: std::collections::hash_map::RandomState,
    buckets: Buckets,
    folds: Buckets,
}

fn bucket_insert(buckets: &mut Buckets, hash: u64, index: u32) {
    let bucket = buckets.get_or_insert_with(hash, SmallVec::new);
    if !bucket.contains(&index) {
        bucket.push(index);
    }
}

fn bucket_remove(buckets: &mut Buckets, hash: u64, index: u32) {
    if let Some(bucket) = buckets.get_mut(&hash) {
        bucket.retain(|i| *i != index);
        if bucket.is_empty() {
            buckets.remove(&hash);
        }
    }
}

impl NameIndex {
    pub(crate) fn new() -> NameIndex {
        NameIndex {
            hasher: std::collections::hash_map::RandomState::new(),
            buckets: buckets(),
            folds: buckets(),
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
        bucket_insert(&mut self.buckets, hash, index);
        if !name.is_ascii() {
            for form in fold_forms(name) {
                let hash = self.hash(&form);
                bucket_insert(&mut self.folds, hash, index);
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str, index: u32) {
        let hash = self.hash(name);
        bucket_remove(&mut self.buckets, hash, index);
        if !name.is_ascii() {
            for form in fold_forms(name) {
                let hash = self.hash(&form);
                bucket_remove(&mut self.folds, hash, index);
            }
        }
    }

    /// An index, among those `accept` lets through, whose name (as `name_of` reports
    /// it) looks like `name`: their fold forms meet (see `look_alike`). Writers ask
    /// [`NameIndex::get`] first, so what this finds is a look-alike, not a case variant.
    ///
    /// An ASCII name costs one emptiness test while no name with a non-ASCII character
    /// is indexed; otherwise one lookup in `folds` per form, plus, for a non-ASCII
    /// `name`, one in `buckets` per ASCII form (the ASCII names it imitates).
    pub(crate) fn look_alike<'a>(
        &self,
        name: &str,
        name_of: impl Fn(u32) -> Option<&'a str>,
        accept: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        if name.is_ascii() && self.folds.is_empty() {
            return None;
        }
        let forms = fold_forms(name);
        for form in &forms {
            let hash = self.hash(form);
            let mut non_ascii = self.folds.get(&hash).into_iter().flatten().copied();
            let found = non_ascii.find(|&index| {
                accept(index) && name_of(index).is_some_and(|other| meets(other, &forms))
            });
            if found.is_some() {
                return found;
            }
            if name.is_ascii() || !form.is_ascii() {
                continue;
            }
            let mut ascii = self.buckets.get(&hash).into_iter().flatten().copied();
            let found = ascii.find(|&index| {
                accept(index)
                    && name_of(index)
                        .is_some_and(|other| other.is_ascii() && other.eq_ignore_ascii_case(form))
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Bytes held by the tables (for `Snapshot::footprint`).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes() + self.folds.heap_bytes()
    }

    /// Whether `folds` holds exactly the fold forms of the non-ASCII names among
    /// `names` (index, name): for `Snapshot::check_invariants`.
    pub(crate) fn folds_match<'a>(&self, names: impl Iterator<Item = (u32, &'a str)>) -> bool {
        let mut expected = buckets();
        for (index, name) in names.filter(|(_, name)| !name.is_ascii()) {
            for form in fold_forms(name) {
                bucket_insert(&mut expected, self.hash(&form), index);
            }
        }
        let sorted = |buckets: &Buckets| {
            let mut pairs: Vec<(u64, u32)> = buckets
                .iter()
                .flat_map(|(hash, bucket)| bucket.iter().map(move |index| (*hash, *index)))
                .collect();
            pairs.sort_unstable();
            pairs
        };
        sorted(&expected) == sorted(&self.folds)
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
