//! The model: plain data, as docs/semantics.md describes it. No indexes, no I/O.

mod actions;
mod asset;
mod attributes;
mod change;
mod group;
mod ids;
mod node;
mod protocol;
mod role;
mod rule;
mod time;
mod user;

pub use actions::{Actions, UnknownAction};
pub use asset::{Account, Asset, SecretKind};
pub use attributes::{Attributes, MAX_ATTRIBUTES_BYTES};
pub use change::{Change, Operation};
pub(crate) use change::{ChangeRecord, Payload};
pub use group::{GLOBAL_SCOPE, Group, GroupMember, RoleAssignment, UserMember, membership_counts};
pub use ids::{EntityKind, Id, Source, UnknownSource};
pub use node::{Node, ROOT_NODE_ID, ROOT_NODE_NAME};
pub use protocol::{Protocol, ProtocolError, protocol_name};
pub use role::{
    PERMISSION_CHECK, PERMISSION_SCIM, RESOURCES, Role, Token, VERBS, all_permissions,
    builtin_roles,
};
pub use rule::{
    ANON_ACCOUNT, AccountSelector, AccountSelectorError, Effect, INPUT_ACCOUNT, ProtocolFilter,
    Rule, account_username,
};
pub use time::{Time, TimeParseError};
pub use user::{Mfa, User};

/// Every entity of a store, as plain lists: what the reference evaluator reads, and
/// what a full export holds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estate {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub nodes: Vec<Node>,
    pub assets: Vec<Asset>,
    pub rules: Vec<Rule>,
    pub roles: Vec<Role>,
    pub tokens: Vec<Token>,
}
