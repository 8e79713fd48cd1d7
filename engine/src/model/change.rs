//! The operation log: one record per entity a write touched.

use serde::{Deserialize, Serialize};

use super::{EntityKind, Id, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
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
