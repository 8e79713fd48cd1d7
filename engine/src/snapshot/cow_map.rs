//! A hash map that shares its storage between snapshots, shard by shard, and whose
//! shards an image can carry as tables probed where they lie (mapped shards).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::io::Write;
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::flat::{Flat, SeedOf, TableError, take, take_bytes};

/// Entries per shard, on average, before the shard count grows. A shard's table has
/// 1,024 buckets up to 896 entries (hashbrown keeps them at most 7/8 full) and 2,048
/// beyond; this stays a few standard deviations below 896, so nearly every shard
/// keeps its 1,024 buckets.
const SHARD_MOST: usize = 840;
/// Shards of a new map.
const FIRST_SHARDS: usize = 4;

/// One shard: a flat table of entries, owned (and shared between snapshots) or read
/// in place from an image until a write makes it owned.
enum Shard<K, V> {
    Owned(Arc<HashTable<(K, V)>>),
    Mapped(MappedShard<K, V>),
}

impl<K, V> Clone for Shard<K, V> {
    fn clone(&self) -> Shard<K, V> {
        match self {
            Shard::Owned(table) => Shard::Owned(table.clone()),
            Shard::Mapped(mapped) => Shard::Mapped(*mapped),
        }
    }
}

/// A control byte of a mapped shard with no entry in its slot.
const EMPTY: u8 = 0;

/// The control byte of an entry of hash `hash`: its top seven bits, with the high bit
/// set so that no entry's is [`EMPTY`].
#[inline]
fn control_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

/// A shard as an image holds it: a linear-probing table of `mask + 1` slots (a power
/// of two), each a control byte, then the key's and the value's [`Flat`] bytes. An
/// entry sits at the first free slot from `hash & mask` on. The control byte sits
/// beside its entry so that a probe that finds its entry at once (most do) reads one
/// cache line, not one for the control bytes and another for the entry.
struct MappedShard<K, V> {
    len: usize,
    mask: usize,
    slots: &'static [u8],
    /// Bytes per slot: 1 + the key's + the value's.
    stride: usize,
    key: usize,
    read: ReadEntry<K, V>,
}

/// Reads an entry's key and value from its bytes, the key's size given.
type ReadEntry<K, V> = fn(&[u8], usize) -> Option<(K, V)>;

impl<K, V> Clone for MappedShard<K, V> {
    fn clone(&self) -> MappedShard<K, V> {
        *self
    }
}

impl<K, V> Copy for MappedShard<K, V> {}

impl<K, V> MappedShard<K, V> {
    /// Slot `slot`'s bytes: its control byte, then its entry.
    #[inline]
    fn slot(&self, slot: usize) -> Option<&'static [u8]> {
        let start = slot * self.stride;
        self.slots.get(start..start + self.stride)
    }

    #[inline]
    fn entry(&self, slot: &[u8]) -> Option<(K, V)> {
        (self.read)(&slot[1..], self.key)
    }

    /// The value of the entry of hash `hash` whose key `matches`.
    #[inline]
    fn find(&self, hash: u64, matches: impl Fn(&K) -> bool) -> Option<V> {
        let control = control_of(hash);
        let mut at = hash as usize & self.mask;
        // At most every slot once: a table without a free slot still ends.
        for _ in 0..=self.mask {
            let slot = self.slot(at)?;
            match slot[0] {
                EMPTY => return None,
                byte if byte == control => match self.entry(slot) {
                    Some((key, value)) if matches(&key) => return Some(value),
                    _ => {}
                },
                _ => {}
            }
            at = (at + 1) & self.mask;
        }
        None
    }

    fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.slots
            .chunks_exact(self.stride)
            .filter(|slot| slot[0] != EMPTY)
            .filter_map(|slot| self.entry(slot))
    }
}

fn read_entry<K: Flat, V: Flat>(bytes: &[u8], key: usize) -> Option<(K, V)> {
    Some((K::read(&bytes[..key])?, V::read(&bytes[key..])?))
}

/// A flat hash map whose clones share every shard until one of them writes: then only
/// that shard (about [`SHARD_MOST`] entries) and the table of shard pointers are
/// copied. Within one write, repeated changes to the same shard copy it once.
///
/// A million entries live in flat `hashbrown` tables (key, value and one control byte
/// each), not in a tree of nodes: a lookup reads the shard pointer and one or two
/// cache lines of the shard. When the map outgrows its shards, the shard count grows
/// by a quarter and every entry moves once: amortized O(1) per insert (five moves an
/// entry), though the write that crosses the line pays O(n). Growing by a quarter, not
/// doubling, keeps the tables 66–82% full: doubling left a million-entry map's tables
/// half empty whenever it had just crossed a power of two.
///
/// The shard is chosen by hash bits that neither `hashbrown`'s bucket index (the low
/// bits) nor its control tag (the top seven) uses: bits 32 to 55, scaled to the shard
/// count.
///
/// A map whose keys and values are [`Flat`] can be written to an image as tables
/// ([`CowMap::write_image`]) and read back without inserting anything
/// ([`CowMap::from_image`]): each shard is then probed where the image lies in memory,
/// and the first write to a shard copies it into an owned table.
#[derive(Clone)]
pub(crate) struct CowMap<K, V, S> {
    hasher: S,
    shards: Arc<Vec<Shard<K, V>>>,
    len: usize,
}

/// `shard`, made owned (copied out of the image if mapped) and unshared.
fn owned<'a, K, V, S>(shard: &'a mut Shard<K, V>, hasher: &S) -> &'a mut HashTable<(K, V)>
where
    K: Hash + Clone,
    V: Clone,
    S: BuildHasher,
{
    if let Shard::Mapped(mapped) = shard {
        let mapped = *mapped;
        let mut table = HashTable::with_capacity(mapped.len);
        for (key, value) in mapped.iter() {
            table.insert_unique(hasher.hash_one(&key), (key, value), |(k, _)| {
                hasher.hash_one(k)
            });
        }
        *shard = Shard::Owned(Arc::new(table));
    }
    match shard {
        Shard::Owned(table) => Arc::make_mut(table),
        Shard::Mapped(_) => unreachable!("INVARIANT: the shard was made owned above"),
    }
}

impl<K, V, S> CowMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    pub(crate) fn with_hasher(hasher: S) -> CowMap<K, V, S> {
        CowMap::with_capacity_and_hasher(0, hasher)
    }

    /// A map sized for `capacity` entries: filling it moves none (an image's open
    /// knows every map's size before it inserts).
    pub(crate) fn with_capacity_and_hasher(capacity: usize, hasher: S) -> CowMap<K, V, S> {
        let count = shards_for(capacity);
        let each = capacity.div_ceil(count);
        CowMap {
            hasher,
            shards: Arc::new(
                (0..count)
                    .map(|_| Shard::Owned(Arc::new(HashTable::with_capacity(each))))
                    .collect(),
            ),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        shard_of(hash, self.shards.len())
    }

    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        match &self.shards[self.shard_of(hash)] {
            Shard::Owned(table) => table
                .find(hash, |(k, _)| k.borrow() == key)
                .map(|(_, v)| v.clone()),
            Shard::Mapped(mapped) => mapped.find(hash, |k| k.borrow() == key),
        }
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.holds(self.hasher.hash_one(key), key)
    }

    /// Whether the entry of hash `hash` and key `key` is there, without copying its
    /// value out of an owned shard.
    #[inline]
    fn holds<Q>(&self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match &self.shards[self.shard_of(hash)] {
            Shard::Owned(table) => table.find(hash, |(k, _)| k.borrow() == key).is_some(),
            Shard::Mapped(mapped) => mapped.find(hash, |k| k.borrow() == key).is_some(),
        }
    }

    /// The shard holding `hash`, owned and unshared.
    fn shard_mut(&mut self, hash: u64) -> &mut HashTable<(K, V)> {
        let index = self.shard_of(hash);
        let shards = Arc::make_mut(&mut self.shards);
        owned(&mut shards[index], &self.hasher)
    }

    /// The hash of `key` and the shard holding it, made owned; `None`, with nothing
    /// copied, for a key that is not there.
    fn shard_holding<Q>(&mut self, key: &Q) -> Option<(u64, &mut HashTable<(K, V)>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        if !self.holds(hash, key) {
            return None;
        }
        Some((hash, self.shard_mut(hash)))
    }

    /// Mutable access to the value under `key`, inserting `default()` when absent.
    pub(crate) fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        if self.len >= self.shards.len() * SHARD_MOST {
            self.grow();
        }
        let hash = self.hasher.hash_one(&key);
        let index = self.shard_of(hash);
        let shards = Arc::make_mut(&mut self.shards);
        let hasher = &self.hasher;
        let shard = owned(&mut shards[index], hasher);
        match shard.entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(entry) => &mut entry.into_mut().1,
            Entry::Vacant(entry) => {
                self.len += 1;
                &mut entry.insert((key, default())).into_mut().1
            }
        }
    }

    /// Sets `key` to `value`; the value it replaces.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let mut value = Some(value);
        let slot = self.get_or_insert_with(key, || value.take().expect("taken once"));
        value.map(|value| std::mem::replace(slot, value))
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.shard_holding(key)?;
        let entry = shard.find_entry(hash, |(k, _)| k.borrow() == key).ok()?;
        let ((_, value), _) = entry.remove();
        self.len -= 1;
        Some(value)
    }

    /// Mutable access to an existing value (its shard copied if shared).
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.shard_holding(key)?;
        shard
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// Every entry, copied out.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.shards
            .iter()
            .flat_map(|shard| -> Box<dyn Iterator<Item = (K, V)> + '_> {
                match shard {
                    Shard::Owned(table) => Box::new(table.iter().cloned()),
                    Shard::Mapped(mapped) => Box::new(mapped.iter()),
                }
            })
    }

    /// Grows the shard count by a quarter, moving every entry.
    fn grow(&mut self) {
        let count = (self.shards.len() + self.shards.len().div_ceil(4)).max(FIRST_SHARDS);
        // Each new shard is sized for its share; one sized for a full shard would
        // start out half empty.
        let each = self.len.div_ceil(count);
        let mut shards: Vec<HashTable<(K, V)>> =
            (0..count).map(|_| HashTable::with_capacity(each)).collect();
        let hasher = &self.hasher;
        for (key, value) in self.iter() {
            let hash = hasher.hash_one(&key);
            shards[shard_of(hash, count)]
                .insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
        }
        self.shards = Arc::new(
            shards
                .into_iter()
                .map(|table| Shard::Owned(Arc::new(table)))
                .collect(),
        );
    }

    /// Bytes held by the shards on the heap (for the `memory` report).
    pub(crate) fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(K, V)>() + 1;
        self.shards.len() * std::mem::size_of::<Shard<K, V>>()
            + self
                .shards
                .iter()
                .map(|shard| match shard {
                    Shard::Owned(table) => table.capacity() * entry,
                    Shard::Mapped(_) => 0,
                })
                .sum::<usize>()
    }

    /// Bytes of the shards read in place from an image (for the `memory` report).
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| match shard {
                Shard::Owned(_) => 0,
                Shard::Mapped(mapped) => mapped.slots.len(),
            })
            .sum()
    }

    /// How many shards this map shares with `other` (for tests of sharing).
    #[cfg(test)]
    pub(crate) fn shared_shards(&self, other: &CowMap<K, V, S>) -> usize {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .filter(|(a, b)| match (a, b) {
                (Shard::Owned(a), Shard::Owned(b)) => Arc::ptr_eq(a, b),
                (Shard::Mapped(a), Shard::Mapped(b)) => std::ptr::eq(a.slots, b.slots),
                _ => false,
            })
            .count()
    }

    /// How many shards are read in place from an image (for tests).
    #[cfg(test)]
    pub(crate) fn mapped_shards(&self) -> usize {
        self.shards
            .iter()
            .filter(|shard| matches!(shard, Shard::Mapped(_)))
            .count()
    }
}

/// Slots of the image table of a shard of `len` entries: a power of two with room
/// for an eighth more, so linear probes stay short.
fn slots_for(len: usize) -> usize {
    (len + len / 7 + 1).next_power_of_two().max(2)
}

impl<K, V, S> CowMap<K, V, S>
where
    K: Hash + Eq + Clone + Flat,
    V: Clone + Flat,
    S: SeedOf,
{
    /// The seed its hasher records in an image (for tests that damage one).
    #[cfg(test)]
    pub(crate) fn seed(&self) -> u64 {
        self.hasher.seed_of()
    }

    /// Writes the map as an image holds it (docs/snapshot.md, "Tables"): the hasher's
    /// seed, the entry and shard counts, then each shard as a table. A shard still
    /// mapped from the image this snapshot was read from is copied as it lies.
    pub(crate) fn write_image<W: Write>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(&self.hasher.seed_of().to_le_bytes())?;
        out.write_all(&(self.len as u64).to_le_bytes())?;
        out.write_all(&(self.shards.len() as u64).to_le_bytes())?;
        let stride = 1 + K::SIZE + V::SIZE;
        let mut bytes = Vec::with_capacity(stride);
        for shard in self.shards.iter() {
            match shard {
                Shard::Mapped(mapped) => {
                    out.write_all(&(mapped.len as u64).to_le_bytes())?;
                    out.write_all(&((mapped.mask + 1) as u64).to_le_bytes())?;
                    out.write_all(mapped.slots)?;
                }
                Shard::Owned(table) => {
                    let slots = slots_for(table.len());
                    let mask = slots - 1;
                    let mut written = vec![EMPTY; slots * stride];
                    for (key, value) in table.iter() {
                        let hash = self.hasher.hash_one(key);
                        let mut slot = hash as usize & mask;
                        while written[slot * stride] != EMPTY {
                            slot = (slot + 1) & mask;
                        }
                        bytes.clear();
                        bytes.push(control_of(hash));
                        key.put(&mut bytes);
                        value.put(&mut bytes);
                        written[slot * stride..(slot + 1) * stride].copy_from_slice(&bytes);
                    }
                    out.write_all(&(table.len() as u64).to_le_bytes())?;
                    out.write_all(&(slots as u64).to_le_bytes())?;
                    out.write_all(&written)?;
                }
            }
        }
        Ok(())
    }

    /// The map written by [`CowMap::write_image`] at the front of `bytes`, its shards
    /// probed where they lie; `bytes` is left after it. Every entry is checked to read
    /// as a key and a value and to sit in the shard and under the control byte its
    /// hash gives with this build's hasher, so a table placed by another hash function
    /// is refused rather than probed in the wrong places.
    pub(crate) fn from_image(bytes: &mut &'static [u8]) -> Result<CowMap<K, V, S>, TableError> {
        let hasher = S::from_seed(take::<u64>(bytes)?);
        let len = take::<u64>(bytes)?;
        let count = take::<u64>(bytes)?;
        // A shard takes at least 16 bytes: a crafted count allocates nothing.
        if count == 0 || count > bytes.len() as u64 / 16 {
            return Err("a table has an impossible shard count".into());
        }
        let count = count as usize;
        let stride = 1 + K::SIZE + V::SIZE;
        let mut shards = Vec::with_capacity(count);
        let mut total = 0u64;
        for index in 0..count {
            let shard_len = take::<u64>(bytes)?;
            let slots = take::<u64>(bytes)?;
            if !slots.is_power_of_two() || shard_len >= slots {
                return Err("a table's shard has an impossible size".into());
            }
            let table = take_bytes(
                bytes,
                slots
                    .checked_mul(stride as u64)
                    .ok_or("a table's shard is too large")?,
            )?;
            let mapped = MappedShard {
                len: shard_len as usize,
                mask: slots as usize - 1,
                slots: table,
                stride,
                key: K::SIZE,
                read: read_entry::<K, V>,
            };
            let mut found = 0u64;
            for slot in table.chunks_exact(stride).filter(|slot| slot[0] != EMPTY) {
                found += 1;
                let (key, _) = mapped
                    .entry(slot)
                    .ok_or("a table holds an entry that is not one")?;
                let hash = hasher.hash_one(&key);
                if control_of(hash) != slot[0] || shard_of(hash, count) != index {
                    return Err(
                        "a table's entries are not where this build's hash puts them".into(),
                    );
                }
            }
            if found != shard_len {
                return Err("a table's shard holds another number of entries than it says".into());
            }
            total += shard_len;
            shards.push(Shard::Mapped(mapped));
        }
        if total != len {
            return Err("a table holds another number of entries than it says".into());
        }
        Ok(CowMap {
            hasher,
            shards: Arc::new(shards),
            len: len as usize,
        })
    }
}

/// The shard of `hash` among `count`: bits 32 to 55 scaled to the count (see
/// [`CowMap`]).
#[inline]
fn shard_of(hash: u64, count: usize) -> usize {
    ((((hash >> 32) & 0xFF_FFFF) * count as u64) >> 24) as usize
}

/// Shards for a map of `capacity` entries: a quarter below the growth line, so the
/// map takes some writes before its first growth.
fn shards_for(capacity: usize) -> usize {
    (capacity * 5 / 4).div_ceil(SHARD_MOST).max(FIRST_SHARDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = CowMap<u64, u64, foldhash::fast::FixedState>;

    #[test]
    fn behaves_as_a_map_through_growth() {
        let mut map = Map::with_hasher(foldhash::fast::FixedState::with_seed(7));
        let mut reference = std::collections::HashMap::new();
        for i in 0..20_000u64 {
            let key = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 15_000;
            match i % 5 {
                0 => assert_eq!(map.remove(&key), reference.remove(&key)),
                _ => assert_eq!(map.insert(key, i), reference.insert(key, i)),
            }
            assert_eq!(map.len(), reference.len());
        }
        for (key, value) in &reference {
            assert_eq!(map.get(key), Some(*value));
        }
        assert_eq!(map.iter().count(), reference.len());
        assert!(map.shards.len() > FIRST_SHARDS, "the map grew its shards");
        assert_eq!(map.get(&u64::MAX), None);
    }

    /// hashbrown's buckets behind a shard (it keeps a table at most 7/8 full).
    fn buckets(map: &Map) -> usize {
        map.shards
            .iter()
            .map(|shard| match shard {
                Shard::Owned(table) => (table.capacity() * 8).div_ceil(7),
                Shard::Mapped(mapped) => mapped.mask + 1,
            })
            .sum()
    }

    #[test]
    fn tables_stay_mostly_full_through_growth() {
        let mut map = Map::with_hasher(foldhash::fast::FixedState::with_seed(3));
        let mut least = f64::MAX;
        for i in 0..400_000u64 {
            map.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
            if i >= 20_000 && i % 5_000 == 0 {
                least = least.min(map.len() as f64 / buckets(&map) as f64);
            }
        }
        // Doubling the shards left tables half full after each doubling (0.50).
        assert!(least > 0.6, "tables fell to {least:.2} full");
        let sized = Map::with_capacity_and_hasher(400_000, Default::default());
        let shards = sized.shards.len();
        let mut filled = sized.clone();
        for i in 0..400_000u64 {
            filled.insert(i, i);
        }
        assert_eq!(filled.shards.len(), shards, "a sized map does not grow");
        assert!(filled.len() as f64 / buckets(&filled) as f64 > 0.6);
    }

    #[test]
    fn clones_share_all_but_the_written_shard() {
        let mut original = Map::with_hasher(foldhash::fast::FixedState::with_seed(1));
        for i in 0..10_000 {
            original.insert(i, i);
        }
        let shards = original.shards.len();
        let mut copy = original.clone();
        copy.insert(3, 7);
        *copy.get_mut(&4).expect("present") = 8;
        assert_eq!(copy.get(&3), Some(7));
        assert_eq!(original.get(&3), Some(3));
        assert_eq!(original.get(&4), Some(4));
        let written = usize::from(
            copy.shard_of(copy.hasher.hash_one(3)) != copy.shard_of(copy.hasher.hash_one(4)),
        ) + 1;
        assert_eq!(copy.shared_shards(&original), shards - written);
    }

    type Seeded = CowMap<u64, u64, super::super::flat::Seeded>;

    fn image_of(map: &Seeded) -> &'static [u8] {
        let mut bytes = Vec::new();
        map.write_image(&mut bytes)
            .expect("a Vec takes every write");
        Box::leak(bytes.into_boxed_slice())
    }

    #[test]
    fn a_map_read_from_its_image_answers_as_written_and_copies_only_written_shards() {
        let mut original = Seeded::with_hasher(super::super::flat::Seeded::with_seed(11));
        for i in 0..10_000u64 {
            original.insert(i * 3, i);
        }
        let mut bytes = image_of(&original);
        let image = Seeded::from_image(&mut bytes).expect("the image reads");
        assert!(bytes.is_empty(), "the whole table was read");
        assert_eq!(image.len(), original.len());
        assert_eq!(image.mapped_shards(), original.shards.len());
        assert_eq!(
            image.heap_bytes(),
            image.shards.len() * size_of::<Shard<u64, u64>>()
        );
        for i in 0..30_000u64 {
            assert_eq!(image.get(&i), original.get(&i), "key {i}");
        }
        let mut entries: Vec<(u64, u64)> = image.iter().collect();
        entries.sort_unstable();
        assert_eq!(entries, (0..10_000).map(|i| (i * 3, i)).collect::<Vec<_>>());

        let mut written = image.clone();
        written.insert(1, 100);
        assert_eq!(written.remove(&3), Some(1));
        assert_eq!(written.remove(&4), None);
        *written.get_mut(&6).expect("present") = 200;
        let copied = image.shards.len() - written.mapped_shards();
        assert!((1..=3).contains(&copied), "{copied} shards were copied");
        assert_eq!(written.shared_shards(&image), image.shards.len() - copied);
        assert_eq!(
            (written.get(&1), written.get(&3), written.get(&6)),
            (Some(100), None, Some(200))
        );
        assert_eq!(
            (image.get(&1), image.get(&3), image.get(&6)),
            (None, Some(1), Some(2))
        );
        assert_eq!(written.len(), original.len());

        // Growing a mapped map moves every entry, mapped or not, into owned shards.
        let mut grown = image.clone();
        for i in 0..20_000u64 {
            grown.insert(100_000 + i, i);
        }
        assert!(grown.shards.len() > image.shards.len() && grown.mapped_shards() == 0);
        assert_eq!(grown.len(), original.len() + 20_000);
        assert!((0..10_000u64).all(|i| grown.get(&(i * 3)) == Some(i)));

        // An image of a partly mapped map: its mapped shards copied as they lie.
        let mut again = image_of(&written);
        let reread = Seeded::from_image(&mut again).expect("the second image reads");
        for i in 0..30_000u64 {
            assert_eq!(reread.get(&i), written.get(&i), "key {i}");
        }
    }

    #[test]
    fn a_table_placed_by_another_hash_or_cut_short_is_refused() {
        let mut map = Seeded::with_hasher(super::super::flat::Seeded::with_seed(5));
        for i in 0..2_000u64 {
            map.insert(i, i);
        }
        let bytes = image_of(&map);
        let mut reseeded = bytes.to_vec();
        reseeded[0] ^= 1;
        let mut reseeded: &'static [u8] = Box::leak(reseeded.into_boxed_slice());
        let refused = Seeded::from_image(&mut reseeded).err().expect("refused");
        assert!(refused.contains("hash"), "{refused}");
        let mut cut = &bytes[..bytes.len() - 1];
        assert!(Seeded::from_image(&mut cut).is_err());
        let mut empty: &'static [u8] = &[];
        assert!(Seeded::from_image(&mut empty).is_err());
    }
}
