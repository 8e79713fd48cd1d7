//! Fixed-size, little-endian encodings of the keys and values of the maps an image
//! carries as tables (see `cow_map`'s mapped shards), and the seeded hasher those maps
//! use, whose seed an image records so the tables it holds can be probed in place.

use std::hash::BuildHasher;

use crate::model::{EntityKind, Id};

use super::Slot;

/// A key or value stored in a mapped table: always [`Flat::SIZE`] bytes.
pub(crate) trait Flat: Sized {
    const SIZE: usize;
    fn put(&self, out: &mut Vec<u8>);
    /// The value in `bytes` (exactly [`Flat::SIZE`] of them), or `None` when they
    /// hold no value of this type.
    fn read(bytes: &[u8]) -> Option<Self>;
}

/// Unsigned integers, little-endian.
macro_rules! flat_integers {
    ($($integer:ty),*) => {$(
        impl Flat for $integer {
            const SIZE: usize = std::mem::size_of::<$integer>();
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn read(bytes: &[u8]) -> Option<$integer> {
                bytes.try_into().ok().map(<$integer>::from_le_bytes)
            }
        }
    )*};
}

flat_integers!(u32, u64);

impl Flat for Id {
    const SIZE: usize = 16;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    #[inline]
    fn read(bytes: &[u8]) -> Option<Id> {
        bytes.try_into().ok().map(Id::from_bytes)
    }
}

impl Flat for Slot {
    const SIZE: usize = 5;
    fn put(&self, out: &mut Vec<u8>) {
        let kind = self.kind;
        let index = self.index;
        let number = EntityKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("INVARIANT: every kind is in ALL");
        out.push(number as u8);
        index.put(out);
    }
    #[inline]
    fn read(bytes: &[u8]) -> Option<Slot> {
        let (&kind, index) = bytes.split_first()?;
        Some(Slot {
            kind: *EntityKind::ALL.get(usize::from(kind))?,
            index: u32::read(index)?,
        })
    }
}

/// Why an image's table was not taken.
pub(crate) type TableError = String;

/// The first `len` bytes of `bytes`, which is left after them.
pub(crate) fn take_bytes(bytes: &mut &'static [u8], len: u64) -> Result<&'static [u8], TableError> {
    let len = usize::try_from(len).map_err(|_| "a table is too large")?;
    if bytes.len() < len {
        return Err("a table ends early".into());
    }
    let (taken, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(taken)
}

/// The value at the front of `bytes`, which is left after it.
pub(crate) fn take<T: Flat>(bytes: &mut &'static [u8]) -> Result<T, TableError> {
    T::read(take_bytes(bytes, T::SIZE as u64)?)
        .ok_or_else(|| "a table holds a value that is not one".into())
}

/// A hasher from a seed: random for a snapshot built in this process, the recorded
/// one for a snapshot read from an image (whose tables were placed by it). It is
/// foldhash with that seed; an open checks that the tables it maps still hash where
/// they were placed, so a foldhash that changed its output refuses the image instead of
/// losing entries.
#[derive(Clone)]
pub(crate) struct Seeded {
    seed: u64,
    state: foldhash::fast::FixedState,
}

impl Seeded {
    pub(crate) fn with_seed(seed: u64) -> Seeded {
        Seeded {
            seed,
            state: foldhash::fast::FixedState::with_seed(seed),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }
}

impl Default for Seeded {
    /// A random seed: a name's or id's hash cannot be chosen to collide.
    fn default() -> Seeded {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the system has a source of random bytes");
        Seeded::with_seed(u64::from_le_bytes(seed))
    }
}

impl BuildHasher for Seeded {
    type Hasher = foldhash::fast::FoldHasher<'static>;
    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.state.build_hasher()
    }
}

/// What a map's hasher records in an image: its seed (none for a map keyed by
/// hashes already).
pub(crate) trait SeedOf: BuildHasher + Clone {
    fn seed_of(&self) -> u64;
    fn from_seed(seed: u64) -> Self;
}

impl SeedOf for Seeded {
    fn seed_of(&self) -> u64 {
        self.seed
    }
    fn from_seed(seed: u64) -> Seeded {
        Seeded::with_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_written() {
        let slot = Slot {
            kind: EntityKind::Token,
            index: 70_000,
        };
        let id = Id::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let mut bytes = Vec::new();
        slot.put(&mut bytes);
        id.put(&mut bytes);
        assert_eq!(bytes.len(), Slot::SIZE + Id::SIZE);
        assert_eq!(Slot::read(&bytes[..5]), Some(slot));
        assert_eq!(Id::read(&bytes[5..]), Some(id));
        // A kind byte no kind has is no slot.
        assert_eq!(Slot::read(&[7, 0, 0, 0, 0]), None);
        assert_eq!(u32::read(&[1, 2, 3]), None);
    }

    #[test]
    fn a_seed_gives_the_same_hashes_in_every_hasher() {
        let one = Seeded::with_seed(42);
        let two = Seeded::from_seed(one.seed_of());
        let id = Id::from_u128(99);
        assert_eq!(one.hash_one(id), two.hash_one(id));
        assert_ne!(one.hash_one(id), Seeded::with_seed(43).hash_one(id));
        assert_ne!(Seeded::default().seed(), Seeded::default().seed());
    }
}
