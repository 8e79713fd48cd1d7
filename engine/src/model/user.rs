//! Users: the people (and service accounts) access is granted to.

use serde::{Deserialize, Serialize};

use super::{Attributes, Id, Source, Time};

/// Whether a user signs in with a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mfa {
    #[default]
    Disabled,
    Enabled,
    /// Required, and the user cannot turn it off.
    Forced,
}

/// A user. Passwords live apart, in the store's credentials table, so a `User` can be
/// serialized anywhere (the operation log, an export) without leaking a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Id,
    /// Unique (case-insensitively): the login name.
    pub username: String,
    pub name: String,
    /// Unique (case-insensitively) when set.
    pub email: Option<String>,
    pub phone: Option<String>,
    pub active: bool,
    /// The user is granted nothing from this instant on.
    pub expires_at: Option<Time>,
    pub source: Source,
    pub external_id: Option<String>,
    /// What front-ends keep beyond these fields; never part of a decision.
    #[serde(default)]
    pub attributes: Attributes,
    /// Role names held at every scope.
    pub system_roles: Vec<String>,
    pub mfa: Mfa,
    pub must_change_password: bool,
    /// Whether a password hash is stored for this user (the hash itself never leaves
    /// the store).
    pub has_password: bool,
    pub last_login: Option<Time>,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}

impl User {
    /// Active, and not expired at `at`.
    pub fn is_valid_at(&self, at: Time) -> bool {
        self.active && self.expires_at.is_none_or(|expires| at < expires)
    }
}
