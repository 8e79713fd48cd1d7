//! Cold entity records, kept packed: the whole record in postcard, unpacked only by
//! what needs more than its first fields.
//!
//! A check never reads a user's or asset's record (it reads the check records), so
//! what the snapshot keeps of a record is sized for memory, not for speed: a packed
//! user is about a quarter of a `User` with its strings. What is read often without
//! the rest (the id, the name a lookup confirms, a user's email) is a prefix of the
//! record's fields, read in place by [`Packed::head`] without allocating.
//!
//! A record's bytes are either its own allocation of exactly its size (a record
//! written since the open, or built by a rebuild) or a slice of the image the snapshot
//! was opened from, mapped and left in the page cache ([`crate::mapped`]): at a million
//! users and assets that is a quarter of a million-user snapshot's heap not taken.
//! Owned bytes are a `Box<[u8]>`, not an `Arc<[u8]>`: a record is shared through its
//! entity's entry (itself behind an `Arc`), so copying one happens only when a write
//! changes the entry.
//!
//! INVARIANT: a `Packed<T>` holds the postcard encoding of a `T` written by this
//! build (by [`Packed::pack`], or read from a checksummed image this build wrote), so
//! unpacking it cannot fail.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::{Asset, Id, User};

pub(crate) struct Packed<T> {
    bytes: Bytes,
    record: PhantomData<fn() -> T>,
}

/// Where a record's bytes are.
#[derive(Clone)]
enum Bytes {
    Owned(Box<[u8]>),
    /// In the mapped image the snapshot was opened from.
    Mapped(&'static [u8]),
}

impl<T> Clone for Packed<T> {
    fn clone(&self) -> Packed<T> {
        Packed {
            bytes: self.bytes.clone(),
            record: PhantomData,
        }
    }
}

impl<T> Packed<T> {
    /// The record's postcard encoding: what the store keeps of it, too.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Owned(bytes) => bytes,
            Bytes::Mapped(bytes) => bytes,
        }
    }

    /// Whether the bytes are in a mapped image rather than on the heap.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// Heap bytes the record takes (none when mapped).
    pub(crate) fn heap_len(&self) -> usize {
        match &self.bytes {
            Bytes::Owned(bytes) => bytes.len(),
            Bytes::Mapped(_) => 0,
        }
    }

    /// Bytes the record borrows from a mapped image.
    pub(crate) fn mapped_len(&self) -> usize {
        match &self.bytes {
            Bytes::Owned(_) => 0,
            Bytes::Mapped(bytes) => bytes.len(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Packed<T> {
    pub(crate) fn pack(record: &T) -> Packed<T> {
        let bytes = postcard::to_allocvec(record).expect("INVARIANT: model types encode");
        Packed {
            bytes: Bytes::Owned(bytes.into()),
            record: PhantomData,
        }
    }

    /// The record itself.
    pub(crate) fn unpack(&self) -> T {
        postcard::from_bytes(self.bytes()).expect("INVARIANT: packed by this build")
    }

    /// The record's leading fields, decoded in place: `H` declares a prefix of `T`'s
    /// fields, in order and with the same types (borrowed strings for owned ones).
    fn prefix<'a, H: Deserialize<'a>>(&'a self) -> H {
        postcard::take_from_bytes(self.bytes())
            .expect("INVARIANT: packed by this build")
            .0
    }

    /// Bytes of a mapped image: `T`'s encoding, checked by decoding its head, and
    /// borrowed where they are.
    fn mapped<'a, H: Deserialize<'a>>(bytes: &'static [u8]) -> Result<Packed<T>, String> {
        postcard::take_from_bytes::<H>(bytes).map_err(|error| error.to_string())?;
        Ok(Packed {
            bytes: Bytes::Mapped(bytes),
            record: PhantomData,
        })
    }
}

/// What a user's first fields say.
pub(crate) struct UserHead<'a> {
    pub(crate) id: Id,
    pub(crate) username: &'a str,
    pub(crate) email: Option<&'a str>,
}

/// A user's first fields, in the order and types [`User`] declares them.
type UserPrefix<'a> = (Id, &'a str, &'a str, Option<&'a str>);

/// A user's fields up to `external_id`, in the order and types [`User`] declares them.
type UserToExternalId<'a> = (
    Id,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    bool,
    Option<crate::model::Time>,
    crate::model::Source,
    Option<&'a str>,
);

/// An asset's first fields, in the order and types [`Asset`] declares them.
type AssetPrefix<'a> = (Id, &'a str);

impl Packed<User> {
    pub(crate) fn head(&self) -> UserHead<'_> {
        let (id, username, _name, email) = Packed::prefix::<UserPrefix<'_>>(self);
        UserHead {
            id,
            username,
            email,
        }
    }

    pub(crate) fn username(&self) -> &str {
        Packed::prefix::<(Id, &str)>(self).1
    }

    /// The user's `external_id`, decoded in place without the rest of the record
    /// (adoption matches by it, over every user).
    pub(crate) fn external_id(&self) -> Option<&str> {
        Packed::prefix::<UserToExternalId<'_>>(self).8
    }
}

impl Packed<Asset> {
    pub(crate) fn id(&self) -> Id {
        Packed::prefix::<AssetPrefix<'_>>(self).0
    }

    pub(crate) fn name(&self) -> &str {
        Packed::prefix::<AssetPrefix<'_>>(self).1
    }
}

impl Packed<User> {
    /// A user's record in a mapped image, checked at its head.
    pub(crate) fn mapped_user(bytes: &'static [u8]) -> Result<Packed<User>, String> {
        Packed::mapped::<UserPrefix<'_>>(bytes)
    }
}

impl Packed<Asset> {
    /// An asset's record in a mapped image, checked at its head.
    pub(crate) fn mapped_asset(bytes: &'static [u8]) -> Result<Packed<Asset>, String> {
        Packed::mapped::<AssetPrefix<'_>>(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Account, Protocol, SecretKind, Time};

    fn user(email: Option<&str>) -> User {
        User {
            id: Id::random(),
            username: "ada".into(),
            name: "Ada Lovelace".into(),
            email: email.map(str::to_owned),
            phone: Some("+44 20 7946 0000".into()),
            active: true,
            expires_at: Some(Time::from_secs(1_700_000_000)),
            source: Default::default(),
            external_id: Some("00u1".into()),
            attributes: Default::default(),
            system_roles: vec!["auditor".into()],
            mfa: Default::default(),
            must_change_password: true,
            has_password: true,
            last_login: None,
            description: "analyst".into(),
            created_at: Time::from_secs(1),
            updated_at: Time::from_secs(2),
            created_by: "admin".into(),
        }
    }

    #[test]
    fn a_user_unpacks_whole_and_its_head_reads_in_place() {
        for email in [Some("ada@example.org"), None] {
            let original = user(email);
            let packed = Packed::pack(&original);
            assert_eq!(packed.unpack(), original);
            let head = packed.head();
            assert_eq!(head.id, original.id);
            assert_eq!(head.username, "ada");
            assert_eq!(head.email, email);
            assert_eq!(packed.username(), "ada");
            assert_eq!(packed.external_id(), Some("00u1"));
            let ldap = Packed::pack(&User {
                source: crate::model::Source::Ldap("corp".into()),
                external_id: None,
                phone: None,
                expires_at: None,
                ..original.clone()
            });
            assert_eq!(ldap.external_id(), None);
            assert!(
                packed.bytes().len() < size_of::<User>(),
                "packed is smaller"
            );
        }
    }

    #[test]
    fn an_asset_unpacks_whole_and_its_name_reads_in_place() {
        let original = Asset {
            id: Id::random(),
            name: "db-01".into(),
            address: "10.0.0.1".into(),
            platform: "linux".into(),
            protocols: vec![Protocol::new("ssh", 22).expect("a protocol")],
            nodes: vec![Id::random()],
            accounts: vec![Account {
                id: Id::random(),
                username: "root".into(),
                privileged: true,
                secret_kind: SecretKind::SshKey,
            }],
            active: true,
            description: String::new(),
            created_at: Time::from_secs(1),
            updated_at: Time::from_secs(1),
            created_by: "admin".into(),
        };
        let packed = Packed::pack(&original);
        assert_eq!(packed.unpack(), original);
        assert_eq!(packed.id(), original.id);
        assert_eq!(packed.name(), "db-01");
    }

    #[test]
    fn bytes_from_an_image_are_checked_at_their_head() {
        let packed = Packed::pack(&user(None));
        let leaked: &'static [u8] = Box::leak(packed.bytes().to_vec().into_boxed_slice());
        let back = Packed::mapped_user(leaked).expect("a user's bytes");
        assert!(back.is_mapped() && !packed.is_mapped());
        assert_eq!(back.unpack(), packed.unpack());
        // Bytes that are not a user's head are refused, not kept to panic later.
        assert!(Packed::mapped_user(&[0xff; 3]).is_err());
        assert!(Packed::mapped_asset(&[]).is_err());
    }
}
