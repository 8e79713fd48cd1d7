//! Assets, the accounts on them and the protocols they offer.

use serde::{Deserialize, Serialize};

use super::{Id, Protocol, Time};

/// What kind of secret an account holds. The secret itself is not the engine's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    #[default]
    Password,
    SshKey,
    AccessKey,
    Token,
    ApiKey,
}

/// An account on one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Id,
    /// Unique on its asset (case-sensitively, as operating systems treat them).
    pub username: String,
    pub privileged: bool,
    pub secret_kind: SecretKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub id: Id,
    /// Unique (case-insensitively).
    pub name: String,
    pub address: String,
    pub platform: String,
    /// At most one entry per protocol name.
    pub protocols: Vec<Protocol>,
    /// At least one node; an asset may sit in several.
    pub nodes: Vec<Id>,
    pub accounts: Vec<Account>,
    pub active: bool,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}

impl Asset {
    pub fn offers(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name() == protocol)
    }

    pub fn account(&self, username: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.username == username)
    }
}
