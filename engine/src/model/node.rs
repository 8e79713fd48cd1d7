//! The tree of asset nodes.

use serde::{Deserialize, Serialize};

use super::{Id, Time};

/// The name of the root node; its path is `/Default`.
pub const ROOT_NODE_NAME: &str = "Default";

/// The fixed id of the root node, the same in every store.
pub const ROOT_NODE_ID: Id = Id::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// A node of the asset tree. Its path (`/Default/Prod/DB`) and key (`1:4:9`) are
/// derived from its ancestors, so moving a node rewrites nothing below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: Id,
    /// Unique among siblings (case-insensitively); never contains `/`.
    pub name: String,
    /// `None` only for the root.
    pub parent: Option<Id>,
    /// A number unique in the store, never reused: the last part of the node's key.
    pub number: u64,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}
