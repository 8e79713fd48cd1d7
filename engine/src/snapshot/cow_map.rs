//! A hash map that shares its storage between snapshots, shard by shard.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// Entries per shard, on average, before the shard count grows. A shard's table has
/// 1,024 buckets up to 896 entries (hashbrown keeps them at most 7/8 full) and 2,048
/// beyond; this stays a few standard deviations below 896, so nearly every shard
/// keeps its 1,024 buckets.
const SHARD_MOST: usize = 840;
/// Shards of a new map.
const FIRST_SHARDS: usize = 4;

/// One shard: a flat table of entries.
type Shard<K, V> = Arc<HashTable<(K, V)>>;

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
#[derive(Clone)]
pub(crate) struct CowMap<K, V, S> {
    hasher: S,
    shards: Arc<Vec<Shard<K, V>>>,
    len: usize,
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
                    .map(|_| Arc::new(HashTable::with_capacity(each)))
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
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.shards[self.shard_of(hash)]
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// The shard holding `hash`, unshared.
    fn shard_mut(&mut self, hash: u64) -> &mut HashTable<(K, V)> {
        let index = self.shard_of(hash);
        let shards = Arc::make_mut(&mut self.shards);
        Arc::make_mut(&mut shards[index])
    }

    /// Mutable access to the value under `key`, inserting `default()` when absent.
    pub(crate) fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        if self.len >= self.shards.len() * SHARD_MOST {
            self.grow();
        }
        let hash = self.hasher.hash_one(&key);
        let hasher = self.hasher.clone();
        let shard = {
            let index = self.shard_of(hash);
            let shards = Arc::make_mut(&mut self.shards);
            Arc::make_mut(&mut shards[index])
        };
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
        let hash = self.hasher.hash_one(key);
        self.shards[self.shard_of(hash)].find(hash, |(k, _)| k.borrow() == key)?;
        let entry = self
            .shard_mut(hash)
            .find_entry(hash, |(k, _)| k.borrow() == key)
            .ok()?;
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
        let hash = self.hasher.hash_one(key);
        self.shards[self.shard_of(hash)].find(hash, |(k, _)| k.borrow() == key)?;
        self.shard_mut(hash)
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter().map(|(k, v)| (k, v)))
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
        for shard in self.shards.iter() {
            for (key, value) in shard.iter() {
                let hash = hasher.hash_one(key);
                shards[shard_of(hash, count)].insert_unique(
                    hash,
                    (key.clone(), value.clone()),
                    |(k, _)| hasher.hash_one(k),
                );
            }
        }
        self.shards = Arc::new(shards.into_iter().map(Arc::new).collect());
    }

    /// Bytes held by the shards (for the `memory` report).
    pub(crate) fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(K, V)>() + 1;
        self.shards.len() * std::mem::size_of::<usize>()
            + self
                .shards
                .iter()
                .map(|shard| shard.capacity() * entry)
                .sum::<usize>()
    }

    /// How many shards this map shares with `other` (for tests of sharing).
    #[cfg(test)]
    pub(crate) fn shared_shards(&self, other: &CowMap<K, V, S>) -> usize {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
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
            assert_eq!(map.get(key), Some(value));
        }
        assert_eq!(map.iter().count(), reference.len());
        assert!(map.shards.len() > FIRST_SHARDS, "the map grew its shards");
        assert_eq!(map.get(&u64::MAX), None);
    }

    /// hashbrown's buckets behind a shard (it keeps a table at most 7/8 full).
    fn buckets(map: &Map) -> usize {
        map.shards
            .iter()
            .map(|shard| (shard.capacity() * 8).div_ceil(7))
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
        assert_eq!(copy.get(&3), Some(&7));
        assert_eq!(original.get(&3), Some(&3));
        assert_eq!(original.get(&4), Some(&4));
        let written = usize::from(
            copy.shard_of(copy.hasher.hash_one(3)) != copy.shard_of(copy.hasher.hash_one(4)),
        ) + 1;
        assert_eq!(copy.shared_shards(&original), shards - written);
    }
}
