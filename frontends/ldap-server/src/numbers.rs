//! POSIX numbers (`uidNumber`, `gidNumber`) for users and groups, derived from their
//! ids so they are stable across restarts and replicas without being stored.
//!
//! The rule (README, "Serving the directory over LDAP"): the number of an entity is
//! `FIRST + (h mod SPAN)`, where `h` is the first four bytes, big-endian, of the
//! SHA-256 of the entity's 16 id bytes; users and groups share one number space, so a
//! user's own `gidNumber` (equal to its `uidNumber`, a user private group) never
//! names a group. When two entities land on one number, the one with the smaller id
//! (ids are UUIDv7: the older one) keeps it and the other takes the next free
//! number, wrapping within the range. Collisions are rare (the range holds about two
//! billion numbers) and resolved the same way by every process that holds the same
//! entities.

use std::collections::HashMap;

use portcullis_engine::{Id, Snapshot};
use sha2::{Digest, Sha256};

/// The lowest number given: above the system ranges of every usual distribution.
pub const FIRST: u32 = 65_536;
/// How many numbers there are: up to 2^31 - 1, which every tool takes as positive.
pub const SPAN: u32 = 0x7FFF_FFFF - FIRST;

/// The number an id hashes to, before collisions are resolved.
pub(crate) fn preferred(id: Id) -> u32 {
    let digest = Sha256::digest(id.as_bytes());
    let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    FIRST + h % SPAN
}

/// The numbers of every user and group of one snapshot.
#[derive(Debug, Default)]
pub(crate) struct Numbers {
    by_id: HashMap<Id, u32>,
    /// Which ids they were given for ([`fingerprint`]).
    fingerprint: (u64, u128),
}

/// A summary of the set of ids of users and groups: their count and a sum of a
/// 128-bit mix of each. Most revisions (sign-in events, edits) keep the set, and
/// then the numbers need no recomputing.
pub(crate) fn fingerprint(snapshot: &Snapshot) -> (u64, u128) {
    let mut count = 0u64;
    let mut sum = 0u128;
    for id in snapshot.user_ids().chain(snapshot.group_ids()) {
        count += 1;
        sum = sum.wrapping_add(mix(u128::from_be_bytes(*id.as_bytes())));
    }
    (count, sum)
}

/// A bijective 128-bit mix (xorshift-multiply), so that ids that differ in a few
/// bits do not cancel in the sum.
fn mix(mut x: u128) -> u128 {
    x ^= x >> 67;
    x = x.wrapping_mul(0x2d35_8dcc_aa6c_78a5_ac4e_c93a_3c0d_2d97);
    x ^= x >> 59;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    x ^ (x >> 64)
}

impl Numbers {
    pub(crate) fn of(snapshot: &Snapshot) -> Numbers {
        let mut ids: Vec<Id> = snapshot.user_ids().chain(snapshot.group_ids()).collect();
        ids.sort_unstable();
        let mut numbers = Numbers::assign(&ids, preferred);
        numbers.fingerprint = fingerprint(snapshot);
        numbers
    }

    /// Whether these numbers were made for the ids of `snapshot`.
    pub(crate) fn fits(&self, fingerprint: (u64, u128)) -> bool {
        self.fingerprint == fingerprint
    }

    /// Gives each id (in ascending order) its preferred number, or the next free one.
    fn assign(ids: &[Id], preferred: impl Fn(Id) -> u32) -> Numbers {
        let mut by_id = HashMap::with_capacity(ids.len());
        let mut taken = std::collections::HashSet::with_capacity(ids.len());
        for &id in ids {
            let mut number = preferred(id);
            while !taken.insert(number) {
                number = if number == FIRST + SPAN - 1 {
                    FIRST
                } else {
                    number + 1
                };
            }
            by_id.insert(id, number);
        }
        Numbers {
            by_id,
            fingerprint: (0, 0),
        }
    }

    pub(crate) fn get(&self, id: Id) -> u32 {
        self.by_id
            .get(&id)
            .copied()
            .unwrap_or_else(|| preferred(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collision_moves_the_younger_entity_to_the_next_free_number() {
        let (older, younger, third) = (Id::from_u128(1), Id::from_u128(2), Id::from_u128(3));
        // Every id prefers the same number; the last number of the range wraps.
        let numbers = Numbers::assign(&[older, younger, third], |_| FIRST + SPAN - 1);
        assert_eq!(numbers.get(older), FIRST + SPAN - 1);
        assert_eq!(numbers.get(younger), FIRST);
        assert_eq!(numbers.get(third), FIRST + 1);
    }

    #[test]
    fn the_preferred_number_is_the_documented_hash() {
        // SHA-256 of sixteen zero bytes starts 37 47 08 ff (`head -c 16 /dev/zero |
        // sha256sum`): 0x374708ff mod SPAN, plus FIRST.
        assert_eq!(preferred(Id::from_u128(0)), FIRST + 0x3747_08ff % SPAN);
    }
}
