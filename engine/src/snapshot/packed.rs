//! Cold entity records, kept packed: the whole record in postcard, in one allocation
//! of exactly its size, unpacked only by what needs more than its first fields.
//!
//! A check never reads a user's or asset's record (it reads the check records), so
//! what the snapshot keeps of a record is sized for memory, not for speed: a packed
//! user is about a quarter of a `User` with its strings. What is read often without
//! the rest (the id, the name a lookup confirms, a user's email) is a prefix of the
//! record's fields, read in place by [`Packed::head`] without allocating.
//!
//! The bytes are a `Box<[u8]>`, not an `Arc<[u8]>`: a record is shared through its
//! entity's entry (itself behind an `Arc`), so copying one happens only when a write
//! changes the entry, and the 16 bytes of a reference count, with the allocator's
//! rounding they push records into, were 60 MiB at a million users and assets.
//!
//! INVARIANT: a `Packed<T>` holds the postcard encoding of a `T` written by this
//! build (by [`Packed::pack`], or read from a checksummed image this build wrote), so
//! unpacking it cannot fail.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::{Asset, Id, User};

pub(crate) struct Packed<T> {
    bytes: Box<[u8]>,
    record: PhantomData<fn() -> T>,
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
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T: Serialize + DeserializeOwned> Packed<T> {
    pub(crate) fn pack(record: &T) -> Packed<T> {
        let bytes = postcard::to_allocvec(record).expect("INVARIANT: model types encode");
        Packed {
            bytes: bytes.into(),
            record: PhantomData,
        }
    }

    /// The record itself.
    pub(crate) fn unpack(&self) -> T {
        postcard::from_bytes(&self.bytes).expect("INVARIANT: packed by this build")
    }

    /// The record's leading fields, decoded in place: `H` declares a prefix of `T`'s
    /// fields, in order and with the same types (borrowed strings for owned ones).
    fn prefix<'a, H: Deserialize<'a>>(&'a self) -> H {
        postcard::take_from_bytes(&self.bytes)
            .expect("INVARIANT: packed by this build")
            .0
    }

    /// Bytes read back from an image: `T`'s encoding, checked by decoding its head.
    fn from_bytes<'a, H: Deserialize<'a>>(bytes: &'a [u8]) -> Result<Packed<T>, String> {
        postcard::take_from_bytes::<H>(bytes).map_err(|error| error.to_string())?;
        Ok(Packed {
            bytes: bytes.into(),
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
}

impl Packed<Asset> {
    pub(crate) fn id(&self) -> Id {
        Packed::prefix::<AssetPrefix<'_>>(self).0
    }

    pub(crate) fn name(&self) -> &str {
        Packed::prefix::<AssetPrefix<'_>>(self).1
    }
}

/// In an image, a packed record is its bytes.
impl<T> Serialize for Packed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

macro_rules! deserialize_packed {
    ($record:ty, $head:ty) => {
        impl<'de> Deserialize<'de> for Packed<$record> {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Packed<$record>, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = Packed<$record>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a packed record")
                    }
                    fn visit_bytes<E: serde::de::Error>(
                        self,
                        bytes: &[u8],
                    ) -> Result<Packed<$record>, E> {
                        Packed::<$record>::from_bytes::<$head>(bytes).map_err(E::custom)
                    }
                }
                deserializer.deserialize_bytes(Visitor)
            }
        }
    };
}

deserialize_packed!(User, UserPrefix<'_>);
deserialize_packed!(Asset, AssetPrefix<'_>);

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
        let encoded = postcard::to_allocvec(&packed).expect("encodes");
        let back: Packed<User> = postcard::from_bytes(&encoded).expect("decodes");
        assert_eq!(back.unpack(), packed.unpack());
        // Bytes that are not a user's head are refused, not kept to panic later.
        let garbage = postcard::to_allocvec(&serde_bytes_like(&[0xff; 3])).expect("encodes");
        assert!(postcard::from_bytes::<Packed<User>>(&garbage).is_err());
    }

    fn serde_bytes_like(bytes: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }
}
