//! The operation log: one record per entity a write touched.

use super::{Asset, EntityKind, Group, Id, Node, Role, Rule, Time, Token, User, UserMember};
use serde::{Deserialize, Serialize};

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
    /// An identity source took the user or group over (`Op::Adopt`): `before` and
    /// `after` are the entity, which differ in `source` (and `updated_at`) only.
    Adopt,
    /// The user or group was handed back to `local` (`Op::Release`): as `Adopt`.
    Release,
}

/// One change record. `before` and `after` are the entity's JSON form, which never
/// holds a secret (password and token hashes live apart from the entities).
///
/// `Body` is the form of those two sides: JSON for readers; the store keeps the
/// same record with postcard sides (`ChangeRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<Body = serde_json::Value> {
    /// The revision the write produced. Several records may share one.
    pub revision: u64,
    /// Position in the log, strictly increasing.
    pub seq: u64,
    pub time: Time,
    pub actor: String,
    pub entity: EntityKind,
    pub id: Id,
    pub operation: Operation,
    pub before: Option<Body>,
    pub after: Option<Body>,
}

/// A change record as a write produces it and the store keeps it: [`Change`] with
/// `before` and `after` as the entity's postcard encoding (the encoding of its entity
/// table) rather than a JSON tree. A bulk import paid for building, printing and
/// storing JSON per record; postcard is a quarter of the bytes and is read back into
/// JSON only when a reader asks for changes.
///
/// INVARIANT: [`ChangeRecord::into_change`] gives the [`Change`] whose `before` and
/// `after` are the JSON of the values recorded, as the JSON log gave.
pub(crate) type ChangeRecord = Change<Payload>;

/// One side of a change record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Payload {
    /// The postcard encoding of the entity's model type (of the [`UserMember`] for an
    /// [`Operation::Membership`] record).
    Record(Vec<u8>),
    /// JSON text: what an [`Operation::Event`] says happened.
    Json(String),
}

impl Payload {
    pub(crate) fn record<T: Serialize>(value: &T) -> Payload {
        Payload::Record(postcard::to_allocvec(value).expect("INVARIANT: model types encode"))
    }

    fn into_json(
        self,
        entity: EntityKind,
        operation: Operation,
    ) -> Result<serde_json::Value, String> {
        fn json<T: serde::de::DeserializeOwned + Serialize>(
            bytes: &[u8],
        ) -> Result<serde_json::Value, String> {
            let value: T = postcard::from_bytes(bytes).map_err(|error| error.to_string())?;
            serde_json::to_value(value).map_err(|error| error.to_string())
        }
        let bytes = match self {
            Payload::Json(text) => {
                return serde_json::from_str(&text).map_err(|error| error.to_string());
            }
            Payload::Record(bytes) => bytes,
        };
        if operation == Operation::Membership {
            return json::<UserMember>(&bytes);
        }
        match entity {
            EntityKind::User => json::<User>(&bytes),
            EntityKind::Group => json::<Group>(&bytes),
            EntityKind::Node => json::<Node>(&bytes),
            EntityKind::Asset => json::<Asset>(&bytes),
            EntityKind::Rule => json::<Rule>(&bytes),
            EntityKind::Role => json::<Role>(&bytes),
            EntityKind::Token => json::<Token>(&bytes),
        }
    }
}

impl Change<Payload> {
    /// The record as readers see it, its sides as JSON.
    pub(crate) fn into_change(self) -> Result<Change, String> {
        let (entity, operation) = (self.entity, self.operation);
        let side = |payload: Option<Payload>| {
            payload
                .map(|payload| payload.into_json(entity, operation))
                .transpose()
        };
        Ok(Change {
            revision: self.revision,
            seq: self.seq,
            time: self.time,
            actor: self.actor,
            entity,
            id: self.id,
            operation,
            before: side(self.before)?,
            after: side(self.after)?,
        })
    }
}
