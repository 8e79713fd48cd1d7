//! Case-insensitive name lookups that share structure between snapshots, and the
//! look-alike check of new names (see `look_alike`).

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::Write;

use smallvec::SmallVec;

use super::cow_map::CowMap;
use super::flat::{Flat, SeedOf, Seeded, TableError, take};
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
/// folded text in the same chunks (64 bytes each, then the rest), so the hasher need
/// not be a streaming one: foldhash hashes `ab` written at once and `a`, `b` written
/// apart differently.
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
        let mut utf8 = [0u8; 4];
        for &byte in c.encode_utf8(&mut utf8).as_bytes() {
            if len == buffer.len() {
                hasher.write(&buffer);
                len = 0;
            }
            buffer[len] = byte;
            len += 1;
        }
    }
    if len > 0 {
        hasher.write(&buffer[..len]);
    }
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

/// A map keyed by hashes records no seed.
impl SeedOf for BuildHasherDefault<KeyIsHash> {
    fn seed_of(&self) -> u64 {
        0
    }
    fn from_seed(_: u64) -> Self {
        BuildHasherDefault::default()
    }
}

/// Folded bytes a name may take and still be kept inline in the index: what fits a
/// 32-byte table entry beside the hash (8 bytes), the dense index (4) and the length
/// (1). Usernames, group, asset and rule names are nearly always shorter; emails
/// often are not, and are looked up off the check path.
const INLINE: usize = 19;
/// [`Named::len`] of a name whose folded form is longer than [`INLINE`] bytes.
const LONG: u8 = u8::MAX;

/// A name's case-folded UTF-8 when it is at most [`INLINE`] bytes: kept in the index
/// beside the dense index, so a lookup confirms a candidate without reading the
/// entity's record (one cache line instead of four dependent ones).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Folded {
    len: u8,
    bytes: [u8; INLINE],
}

impl Folded {
    /// `name` case-folded (Unicode lowercase, as [`same_name`] compares), or `None`
    /// when the folded form is longer than [`INLINE`] bytes.
    fn of(name: &str) -> Option<Folded> {
        let mut bytes = [0u8; INLINE];
        if name.is_ascii() {
            let folded = bytes.get_mut(..name.len())?;
            folded.copy_from_slice(name.as_bytes());
            folded.make_ascii_lowercase();
            return Some(Folded {
                len: name.len() as u8,
                bytes,
            });
        }
        let mut len = 0;
        for c in name.chars().flat_map(char::to_lowercase) {
            let end = len + c.len_utf8();
            c.encode_utf8(bytes.get_mut(len..end)?);
            len = end;
        }
        Some(Folded {
            len: len as u8,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A name's hash and folded form, taken before a lookup ([`NameIndex::key`]).
pub(crate) struct NameKey {
    hash: u64,
    folded: Option<Folded>,
}

/// Inline bytes of the email index: none worth keeping (an address is rarely 19
/// bytes or fewer), so its entries are 16 bytes; lookups by email, off the check
/// path, confirm against the user's record.
pub(crate) const EMAIL_INLINE: usize = 3;

/// One name in the index: its dense index, and its folded form when it fits in `N`
/// bytes (`len` [`LONG`]: a long name, confirmed against the entity's own name).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Named<const N: usize> {
    index: u32,
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Named<N> {
    fn new(index: u32, folded: Option<Folded>) -> Named<N> {
        match Named::<N>::kept(folded.as_ref()) {
            Some(folded) => {
                let mut bytes = [0; N];
                bytes.copy_from_slice(&folded.bytes[..N]);
                Named {
                    index,
                    len: folded.len,
                    bytes,
                }
            }
            None => Named {
                index,
                len: LONG,
                bytes: [0; N],
            },
        }
    }

    /// `folded` when it fits in `N` bytes: what an index of `N` inline bytes keeps.
    fn kept(folded: Option<&Folded>) -> Option<&Folded> {
        folded.filter(|folded| usize::from(folded.len) <= N)
    }

    fn folded(&self) -> Option<Folded> {
        (self.len != LONG).then(|| {
            let mut bytes = [0; INLINE];
            bytes[..N].copy_from_slice(&self.bytes);
            Folded {
                len: self.len,
                bytes,
            }
        })
    }

    /// Whether this is the name `wanted` (folded as [`Folded::of`] gives it), asking
    /// `name_of` only for a long name.
    #[inline]
    fn is<'a>(
        &self,
        wanted: Option<&Folded>,
        name: &str,
        name_of: impl Fn(u32) -> Option<&'a str>,
    ) -> bool {
        match (self.len, Named::<N>::kept(wanted)) {
            (LONG, None) => name_of(self.index).is_some_and(|candidate| same_name(candidate, name)),
            // Equal folded forms have equal lengths: a short name is never a long one.
            (LONG, Some(_)) => false,
            (_, None) => false,
            (len, Some(wanted)) => &self.bytes[..usize::from(len)] == wanted.as_bytes(),
        }
    }
}

impl<const N: usize> Flat for Named<N> {
    const SIZE: usize = 5 + N;
    fn put(&self, out: &mut Vec<u8>) {
        self.index.put(out);
        out.push(self.len);
        out.extend_from_slice(&self.bytes);
    }
    #[inline]
    fn read(bytes: &[u8]) -> Option<Named<N>> {
        let (index, rest) = bytes.split_first_chunk::<4>()?;
        let (&len, rest) = rest.split_first()?;
        if usize::from(len) > N && len != LONG {
            return None;
        }
        Some(Named {
            index: u32::from_le_bytes(*index),
            len,
            bytes: rest.try_into().ok()?,
        })
    }
}

/// A name an image hashes beside its name indexes, so an open can tell that this
/// build hashes names as the writing one did.
const PROBE: &str = "Portcullis-Probe";

/// Hash → the name with that hash, shared between snapshots.
type Buckets<const N: usize> = CowMap<u64, Named<N>, BuildHasherDefault<KeyIsHash>>;

/// Hash → the further names with a hash `Buckets` already holds: a collision of 64-bit
/// hashes of different names, which practically never happens but must not lose a
/// name. Kept apart so that a bucket is one 32-byte entry, not a list.
type Overflow<const N: usize> = CowMap<u64, SmallVec<[Named<N>; 1]>, BuildHasherDefault<KeyIsHash>>;

/// Hash → dense indexes: the fold forms of non-ASCII names, for look-alike checks.
type FoldBuckets = CowMap<u64, SmallVec<[u32; 1]>, BuildHasherDefault<KeyIsHash>>;

/// Maps case-folded names to dense indexes. It is keyed by hashes of the folded names,
/// so no key is ever allocated; a name whose hash another holds goes to `overflow`. A short
/// name's folded form sits in its bucket, which confirms a lookup in place; a long one
/// is confirmed against the entity's own name.
///
/// Beside it, `folds` maps the confusable fold forms of the names that hold a
/// non-ASCII character (and only those: an ASCII name's one form is its lowercase,
/// which `buckets` already answers) to their indexes. It serves
/// [`NameIndex::look_alike`] only; lookups by name never use it, so a look-alike never
/// resolves to the entity it imitates.
///
/// `N` is how many folded bytes a name may take and still be kept in its entry.
#[derive(Clone)]
pub(crate) struct NameIndex<const N: usize = INLINE> {
    /// Seeded at random when the index is built, and kept by the images it is
    /// written to: a name's hash cannot be chosen to collide.
    hasher: Seeded,
    buckets: Buckets<N>,
    overflow: Overflow<N>,
    folds: FoldBuckets,
}

fn fold_insert(buckets: &mut FoldBuckets, hash: u64, index: u32) {
    let bucket = buckets.get_or_insert_with(hash, SmallVec::new);
    if !bucket.contains(&index) {
        bucket.push(index);
    }
}

fn fold_remove(buckets: &mut FoldBuckets, hash: u64, index: u32) {
    if let Some(bucket) = buckets.get_mut(&hash) {
        bucket.retain(|i| *i != index);
        if bucket.is_empty() {
            buckets.remove(&hash);
        }
    }
}

impl<const N: usize> NameIndex<N> {
    pub(crate) fn new() -> NameIndex<N> {
        NameIndex::with_capacity(0)
    }

    /// An index sized for `names` names.
    pub(crate) fn with_capacity(names: usize) -> NameIndex<N> {
        NameIndex {
            hasher: Seeded::default(),
            buckets: Buckets::with_capacity_and_hasher(names, BuildHasherDefault::default()),
            overflow: Overflow::with_hasher(BuildHasherDefault::default()),
            folds: FoldBuckets::with_hasher(BuildHasherDefault::default()),
        }
    }

    fn hash(&self, name: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hash_folded(name, &mut hasher);
        hasher.finish()
    }

    /// What a lookup of `name` computes before reading the index: its hash and folded
    /// form. Taking the keys of several names first lets their lookups' cache misses
    /// overlap (see `Snapshot::user_and_asset`).
    #[inline]
    pub(crate) fn key(&self, name: &str) -> NameKey {
        NameKey {
            hash: self.hash(name),
            folded: Folded::of(name),
        }
    }

    /// The index whose name equals `name` case-insensitively. `name_of` reports an
    /// index's name; it is asked only for names too long to be kept inline.
    #[inline]
    pub(crate) fn get<'a>(
        &self,
        name: &str,
        name_of: impl Fn(u32) -> Option<&'a str>,
    ) -> Option<u32> {
        self.find(&self.key(name), name, name_of)
    }

    /// [`NameIndex::get`] with the key taken beforehand by [`NameIndex::key`].
    #[inline]
    pub(crate) fn find<'a>(
        &self,
        key: &NameKey,
        name: &str,
        name_of: impl Fn(u32) -> Option<&'a str>,
    ) -> Option<u32> {
        let wanted = key.folded.as_ref();
        let first = self.buckets.get(&key.hash)?;
        if first.is(wanted, name, &name_of) {
            return Some(first.index);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow
            .get(&key.hash)?
            .iter()
            .find(|named| named.is(wanted, name, &name_of))
            .map(|named| named.index)
    }

    pub(crate) fn insert(&mut self, name: &str, index: u32) {
        self.insert_hashed(self.hash(name), Named::new(index, Folded::of(name)));
        if !name.is_ascii() {
            for form in fold_forms(name) {
                let hash = self.hash(&form);
                fold_insert(&mut self.folds, hash, index);
            }
        }
    }

    fn insert_hashed(&mut self, hash: u64, named: Named<N>) {
        match self.buckets.get(&hash) {
            Some(held) if held.index != named.index => {
                let more = self.overflow.get_or_insert_with(hash, SmallVec::new);
                more.retain(|other| other.index != named.index);
                more.push(named);
            }
            _ => {
                self.buckets.insert(hash, named);
            }
        }
    }

    /// Removes `index` from under `hash`; a name waiting in `overflow` takes its place.
    fn remove_hashed(&mut self, hash: u64, index: u32) {
        if self
            .buckets
            .get(&hash)
            .is_some_and(|held| held.index == index)
        {
            let promoted = self.overflow.get_mut(&hash).and_then(|more| more.pop());
            match promoted {
                Some(named) => self.buckets.insert(hash, named),
                None => self.buckets.remove(&hash),
            };
        } else if let Some(more) = self.overflow.get_mut(&hash) {
            more.retain(|named| named.index != index);
        }
        if self.overflow.get(&hash).is_some_and(|more| more.is_empty()) {
            self.overflow.remove(&hash);
        }
    }

    /// The names held under `hash`.
    fn under(&self, hash: u64) -> impl Iterator<Item = Named<N>> {
        self.buckets
            .get(&hash)
            .into_iter()
            .chain(self.overflow.get(&hash).into_iter().flatten())
    }

    pub(crate) fn remove(&mut self, name: &str, index: u32) {
        self.remove_hashed(self.hash(name), index);
        if !name.is_ascii() {
            for form in fold_forms(name) {
                let hash = self.hash(&form);
                fold_remove(&mut self.folds, hash, index);
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
            let mut non_ascii = self.folds.get(&hash).into_iter().flatten();
            let found = non_ascii.find(|&index| {
                accept(index) && name_of(index).is_some_and(|other| meets(other, &forms))
            });
            if found.is_some() {
                return found;
            }
            if name.is_ascii() || !form.is_ascii() {
                continue;
            }
            let mut ascii = self.under(hash).map(|named| named.index);
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
        self.buckets.heap_bytes() + self.overflow.heap_bytes() + self.folds.heap_bytes()
    }

    /// Bytes of the buckets read in place from an image (for `Snapshot::footprint`).
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.buckets.mapped_bytes()
    }

    /// Writes the index as an image holds it (docs/snapshot.md, "Tables"): the
    /// hasher's seed and the hash of [`PROBE`], the buckets as a table, then the
    /// overflow and the fold forms (few, if any) as lists.
    pub(crate) fn write_image<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(&self.hasher.seed().to_le_bytes())?;
        out.write_all(&self.hash(PROBE).to_le_bytes())?;
        self.buckets.write_image(out)?;
        let mut bytes = Vec::new();
        (self.overflow.len() as u64).put(&mut bytes);
        for (hash, more) in self.overflow.iter() {
            hash.put(&mut bytes);
            (more.len() as u64).put(&mut bytes);
            more.iter().for_each(|named| named.put(&mut bytes));
        }
        (self.folds.len() as u64).put(&mut bytes);
        for (hash, indexes) in self.folds.iter() {
            hash.put(&mut bytes);
            (indexes.len() as u64).put(&mut bytes);
            indexes.iter().for_each(|index| index.put(&mut bytes));
        }
        out.write_all(&bytes)
    }

    /// The index written by [`NameIndex::write_image`] at the front of `bytes`, its
    /// buckets probed where they lie; `bytes` is left after it.
    pub(crate) fn from_image(bytes: &mut &'static [u8]) -> Result<NameIndex<N>, TableError> {
        let hasher = Seeded::with_seed(take(bytes)?);
        let probe: u64 = take(bytes)?;
        let mut index = NameIndex {
            hasher,
            buckets: Buckets::from_image(bytes)?,
            overflow: Overflow::with_hasher(BuildHasherDefault::default()),
            folds: FoldBuckets::with_hasher(BuildHasherDefault::default()),
        };
        if index.hash(PROBE) != probe {
            return Err(
                "this build hashes names differently from the one that wrote the index".into(),
            );
        }
        // Every listed item takes at least 4 bytes: a crafted count costs nothing.
        let count = |bytes: &mut &'static [u8]| -> Result<u64, TableError> {
            let count: u64 = take(bytes)?;
            if count > bytes.len() as u64 / 4 {
                return Err("a name index lists more than it holds".into());
            }
            Ok(count)
        };
        for _ in 0..count(bytes)? {
            let hash = take(bytes)?;
            let more = (0..count(bytes)?)
                .map(|_| take(bytes))
                .collect::<Result<SmallVec<[Named<N>; 1]>, TableError>>()?;
            index.overflow.insert(hash, more);
        }
        for _ in 0..count(bytes)? {
            let hash = take(bytes)?;
            let indexes = (0..count(bytes)?)
                .map(|_| take(bytes))
                .collect::<Result<SmallVec<[u32; 1]>, TableError>>()?;
            index.folds.insert(hash, indexes);
        }
        Ok(index)
    }

    /// Whether the index holds exactly `names` (index, name) of the live entities: each
    /// under its hash with its folded form, and in `folds` the fold forms of the
    /// non-ASCII ones. For `Snapshot::check_invariants`.
    pub(crate) fn matches<'a>(&self, names: impl Iterator<Item = (u32, &'a str)>) -> bool {
        let names: Vec<(u32, &str)> = names.collect();
        let mut expected: Vec<(u64, u32, Option<Folded>)> = names
            .iter()
            .map(|&(index, name)| {
                let folded = Folded::of(name);
                let kept = Named::<N>::kept(folded.as_ref()).copied();
                (self.hash(name), index, kept)
            })
            .collect();
        let overflow = self
            .overflow
            .iter()
            .flat_map(|(hash, more)| more.into_iter().map(move |named| (hash, named)));
        let mut held: Vec<(u64, u32, Option<Folded>)> = self
            .buckets
            .iter()
            .chain(overflow)
            .map(|(hash, named)| (hash, named.index, named.folded()))
            .collect();
        let key = |entry: &(u64, u32, Option<Folded>)| (entry.0, entry.1);
        expected.sort_unstable_by_key(key);
        held.sort_unstable_by_key(key);
        if expected != held {
            return false;
        }
        let mut expected_folds = FoldBuckets::with_hasher(BuildHasherDefault::default());
        for &(index, name) in names.iter().filter(|(_, name)| !name.is_ascii()) {
            for form in fold_forms(name) {
                fold_insert(&mut expected_folds, self.hash(&form), index);
            }
        }
        let sorted = |buckets: &FoldBuckets| {
            let mut pairs: Vec<(u64, u32)> = buckets
                .iter()
                .flat_map(|(hash, bucket)| bucket.into_iter().map(move |index| (hash, index)))
                .collect();
            pairs.sort_unstable();
            pairs
        };
        sorted(&expected_folds) == sorted(&self.folds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        let names = ["Alice", "BOB", "Ærøskøbing"];
        let mut index = NameIndex::<INLINE>::new();
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
        let index = NameIndex::<INLINE>::new();
        // U+212A KELVIN SIGN lowercases to an ASCII `k`; long names cross the buffer.
        assert_eq!(index.hash("\u{212A}elvin"), index.hash("kelvin"));
        let long_ascii = "A".repeat(200);
        let long_mixed = format!("{}\u{212A}", "a".repeat(199));
        // Folded text that crosses a chunk's end, through either path.
        assert_eq!(
            index.hash(&format!("{}\u{212A}B", "a".repeat(63))),
            index.hash(&format!("{}KB", "A".repeat(63)))
        );
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
    fn short_names_are_confirmed_inline_and_long_ones_by_the_entity() {
        let at_limit = "A".repeat(INLINE);
        let over_limit = "B".repeat(INLINE + 1);
        // U+0130 lowercases to two characters (three bytes): the folded form is what
        // counts against the limit, not the name.
        let expanding = "\u{130}".repeat(INLINE / 3 + 1);
        let names = [at_limit.as_str(), over_limit.as_str(), expanding.as_str()];
        let mut index = NameIndex::<INLINE>::new();
        for (i, name) in names.iter().enumerate() {
            index.insert(name, i as u32);
        }
        assert!(Folded::of(&at_limit).is_some());
        assert!(Folded::of(&over_limit).is_none());
        assert!(Folded::of(&expanding).is_none());
        let asked = std::cell::Cell::new(0);
        let name_of = |i: u32| {
            asked.set(asked.get() + 1);
            names.get(i as usize).copied()
        };
        assert_eq!(index.get(&at_limit.to_lowercase(), name_of), Some(0));
        assert_eq!(
            asked.get(),
            0,
            "a short name is confirmed without the entity"
        );
        assert_eq!(index.get(&over_limit.to_lowercase(), name_of), Some(1));
        assert_eq!(index.get(&expanding.to_lowercase(), name_of), Some(2));
        assert_eq!(
            asked.get(),
            2,
            "a long name is confirmed against the entity"
        );
        assert_eq!(index.get(&"a".repeat(INLINE - 1), name_of), None);
        assert!(index.matches(names.iter().enumerate().map(|(i, n)| (i as u32, *n))));
        index.remove(&over_limit, 1);
        assert_eq!(index.get(&over_limit, name_of), None);
        assert!(!index.matches(names.iter().enumerate().map(|(i, n)| (i as u32, *n))));
    }

    #[test]
    fn names_with_one_hash_are_all_kept() {
        let names = ["alpha", "beta", "a-name-too-long-to-keep-inline"];
        let mut index = NameIndex::<INLINE>::new();
        // Three names under one hash, as a collision would put them.
        let hash = 42;
        for (i, name) in names.iter().enumerate() {
            index.insert_hashed(hash, Named::new(i as u32, Folded::of(name)));
        }
        let name_of = |i: u32| names.get(i as usize).copied();
        let find = |index: &NameIndex<INLINE>, name: &str| {
            let key = NameKey {
                hash,
                folded: Folded::of(name),
            };
            index.find(&key, name, name_of)
        };
        assert_eq!(find(&index, "ALPHA"), Some(0));
        assert_eq!(find(&index, "Beta"), Some(1));
        assert_eq!(find(&index, "A-NAME-too-long-to-keep-inline"), Some(2));
        assert_eq!(find(&index, "gamma"), None);
        assert_eq!(index.under(hash).count(), 3);
        // Removing the one in the bucket promotes a waiting one.
        index.remove_hashed(hash, 0);
        assert_eq!(find(&index, "alpha"), None);
        assert_eq!(find(&index, "beta"), Some(1));
        assert_eq!(find(&index, "a-name-too-long-to-keep-inline"), Some(2));
        index.remove_hashed(hash, 2);
        index.remove_hashed(hash, 1);
        assert_eq!(index.under(hash).count(), 0);
        assert!(index.buckets.is_empty() && index.overflow.is_empty());
        assert_eq!(std::mem::size_of::<(u64, Named<INLINE>)>(), 32);
        assert_eq!(std::mem::size_of::<(u64, Named<EMAIL_INLINE>)>(), 16);
    }

    #[test]
    fn an_index_with_little_inline_room_confirms_the_rest_by_the_entity() {
        let names = ["ab", "abc", "Abcd", "Someone@Example.com", "\u{212A}el"];
        let mut index = NameIndex::<EMAIL_INLINE>::new();
        for (i, name) in names.iter().enumerate() {
            index.insert(name, i as u32);
        }
        let asked = std::cell::Cell::new(0);
        let name_of = |i: u32| {
            asked.set(asked.get() + 1);
            names.get(i as usize).copied()
        };
        assert_eq!(index.get("AB", name_of), Some(0));
        assert_eq!(index.get("aBc", name_of), Some(1));
        assert_eq!(asked.get(), 0, "three folded bytes are kept inline");
        assert_eq!(index.get("abcd", name_of), Some(2));
        assert_eq!(index.get("someone@example.COM", name_of), Some(3));
        // KELVIN SIGN folds to `k`: three bytes folded, but five as written.
        assert_eq!(index.get("KEL", name_of), Some(4));
        assert_eq!(index.get("abcde", name_of), None);
        assert!(index.matches(names.iter().enumerate().map(|(i, n)| (i as u32, *n))));
        index.remove("ABCD", 2);
        assert_eq!(index.get("abcd", name_of), None);
        assert!(!index.matches(names.iter().enumerate().map(|(i, n)| (i as u32, *n))));
    }

    #[test]
    fn star_is_just_a_name() {
        let names = ["*"];
        let mut index = NameIndex::<INLINE>::new();
        index.insert("*", 0);
        let name_of = |i: u32| names.get(i as usize).copied();
        assert_eq!(index.get("*", name_of), Some(0));
        assert_eq!(index.get("alice", name_of), None);
    }

    #[test]
    fn an_index_read_from_its_image_answers_as_written() {
        let names = [
            "Alice",
            "bob",
            "Ærøskøbing",
            "a-name-too-long-to-keep-inline",
            "b0b",
        ];
        let mut index = NameIndex::<INLINE>::new();
        for (i, name) in names.iter().enumerate() {
            index.insert(name, i as u32);
        }
        // A collision, as two names under one hash would make it.
        index.insert_hashed(index.hash("carol"), Named::new(9, Folded::of("other")));
        index.insert_hashed(index.hash("carol"), Named::new(5, Folded::of("carol")));
        let mut bytes = Vec::new();
        index
            .write_image(&mut bytes)
            .expect("a Vec takes every write");
        let mut bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let image = NameIndex::<INLINE>::from_image(&mut bytes).expect("the image reads");
        assert!(bytes.is_empty());
        assert!(image.mapped_bytes() > 0 && image.buckets.mapped_shards() > 0);
        let all = [
            "Alice",
            "bob",
            "Ærøskøbing",
            "a-name-too-long-to-keep-inline",
            "b0b",
            "carol",
        ];
        let name_of = |i: u32| all.get(i as usize).copied();
        for name in [
            "ALICE",
            "Bob",
            "ærøSKØBING",
            "A-NAME-too-long-to-keep-inline",
            "carol",
            "dave",
        ] {
            assert_eq!(image.get(name, name_of), index.get(name, name_of), "{name}");
        }
        assert_eq!(image.get("carol", name_of), Some(5));
        assert_eq!(
            image.look_alike("Aer\u{f8}skobing", name_of, |_| true),
            index.look_alike("Aer\u{f8}skobing", name_of, |_| true)
        );
        // Everything the index holds is carried: the buckets, the collision's overflow
        // and the non-ASCII name's fold forms.
        let held = |index: &NameIndex<INLINE>| {
            let mut buckets: Vec<(u64, u32, u8)> = index
                .buckets
                .iter()
                .map(|(hash, named)| (hash, named.index, named.len))
                .collect();
            let mut overflow: Vec<(u64, Vec<u32>)> = index
                .overflow
                .iter()
                .map(|(hash, more)| (hash, more.iter().map(|named| named.index).collect()))
                .collect();
            let mut folds: Vec<(u64, Vec<u32>)> = index
                .folds
                .iter()
                .map(|(hash, indexes)| (hash, indexes.to_vec()))
                .collect();
            buckets.sort_unstable();
            overflow.sort_unstable();
            folds.sort_unstable();
            (buckets, overflow, folds)
        };
        let carried = held(&image);
        assert_eq!(carried, held(&index));
        assert_eq!(carried.1.len(), 1, "the collision is in the overflow");
        assert!(
            !carried.2.is_empty(),
            "the non-ASCII name has its fold forms"
        );
        // Another seed for the probe: refused, not probed in the wrong places.
        let mut written = Vec::new();
        index
            .write_image(&mut written)
            .expect("a Vec takes every write");
        written[8] ^= 1;
        let mut bytes: &'static [u8] = Box::leak(written.into_boxed_slice());
        assert!(NameIndex::<INLINE>::from_image(&mut bytes).is_err());
    }
}
