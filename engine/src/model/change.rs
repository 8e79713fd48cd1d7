//! The operation log: one record per entity a write touched.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{EntityKind, Id, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
    /// Something happened to the entity that changes none of its fields (a failed
    /// sign-in, a lockout): `after` says what, `before` is empty.
    Event,
    /// One direct user membership of the group (`id`) appeared, changed or ended:
    /// `before` and `after` are that membership (`{"user","expires_at","source"}`),
    /// absent on the side where there was none. The rest of the group is unchanged.
    Membership,
}

/// One change record. `before` and `after` are the entity's JSON form, which never
/// holds a secret (password and token hashes live apart from the entities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The revision the write produced. Several records may share one.
    pub revision: u64,
    /// Position in the log, strictly increasing.
    pub seq: u64,
    pub time: Time,
    pub actor: String,
    pub entity: EntityKind,
    pub id: Id,
    pub operation: Operation,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// A change record as a write produces it, on its way to the store: the same fields as
/// [`Change`], but `before` and `after` are JSON text serialized straight from the
/// entity. Building a `serde_json::Value` tree per record, serializing it and freeing
/// it took about a third of a bulk import's instructions.
///
/// INVARIANT: stored, it reads back as a [`Change`] equal to the one the `Value` path
/// gave (the same JSON; only the order of an object's keys in the stored bytes
/// differs, which a `Value` does not keep).
#[derive(Debug, Serialize)]
pub(crate) struct ChangeRecord {
    pub revision: u64,
    pub seq: u64,
    pub time: Time,
    pub actor: String,
    pub entity: EntityKind,
    pub id: Id,
    pub operation: Operation,
    pub before: Option<Box<RawValue>>,
    pub after: Option<Box<RawValue>>,
}
