//! User groups: nested, with temporary membership and role assignments on scopes.

use serde::{Deserialize, Serialize};

use super::{Attributes, Id, Source, Time};

/// A user's membership of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMember {
    pub user: Id,
    /// The membership counts only before this instant.
    pub expires_at: Option<Time>,
    /// Who wrote the membership: a sync adds and removes only its own.
    pub source: Source,
}

/// A group's membership of another group (nesting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub group: Id,
    pub expires_at: Option<Time>,
    pub source: Source,
}

/// Roles held on one scope by every member of a group. `*` is the global scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub scope: String,
    pub roles: Vec<String>,
}

/// The scope every role assignment also applies to.
pub const GLOBAL_SCOPE: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: Id,
    /// Unique (case-insensitively).
    pub name: String,
    pub members: Vec<UserMember>,
    /// Groups whose members are members of this group too. Cycles are refused.
    pub subgroups: Vec<GroupMember>,
    pub roles: Vec<RoleAssignment>,
    pub source: Source,
    pub external_id: Option<String>,
    /// What front-ends keep beyond these fields; never part of a decision.
    #[serde(default)]
    pub attributes: Attributes,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}

/// Whether a membership with this expiry counts at `at`.
pub fn membership_counts(expires_at: Option<Time>, at: Time) -> bool {
    expires_at.is_none_or(|expires| at < expires)
}
