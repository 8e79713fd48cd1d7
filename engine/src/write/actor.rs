//! Who a write acts for, and what it may hand out.
//!
//! The rule "a caller never grants what it does not hold" lives here and in the
//! `put_*` functions that call [`Authority::may_grant`], so it holds at every door
//! (admin API, import, SCIM, clone) because no door can write around the engine.
//!
//! A grant is anything that gives a permission to someone who did not have it
//! before: a token's roles, a role's permissions, a user's system roles, a group's
//! role assignments, and a membership (user or nested group) in a group that holds
//! roles, directly or through the groups it sits in. Taking a grant away is never
//! refused.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use crate::error::ValidationError;
use crate::eval::Evaluator;
use crate::model::{GLOBAL_SCOPE, Id, Time, all_permissions};
use crate::snapshot::Snapshot;

/// Every permission the engine knows of, built once (a token's authority is judged
/// on every write it makes).
static EVERY_PERMISSION: LazyLock<Vec<String>> = LazyLock::new(all_permissions);

/// Who a write is for: recorded in the operation log (`created_by`, the change's
/// actor) and deciding what the write may grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    name: String,
    kind: ActorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ActorKind {
    /// The operator: the CLI, the demo, configured syncs, sign-in housekeeping.
    System,
    /// An API token: it may grant only what its roles carry when the write applies.
    Token { id: Id, name: String },
    /// A signed-in user (the web console): it may grant only what the user's
    /// effective roles on the global scope carry when the write applies.
    User { id: Id, username: String },
}

impl Actor {
    /// The operator, with full authority: whoever runs the binary or configures a
    /// sync. `name` is what the log records (`cli`, `demo`, `ldap:corp`).
    pub fn system(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            kind: ActorKind::System,
        }
    }

    /// An API token, recorded as `token:NAME`. What the write may grant is decided
    /// when it applies, from the token as it is then: a token revoked or expired in
    /// the meantime writes nothing.
    pub fn token(id: Id, name: &str) -> Actor {
        Actor {
            name: format!("token:{name}"),
            kind: ActorKind::Token {
                id,
                name: name.to_owned(),
            },
        }
    }

    /// A user signed in to the web console, recorded as `user:USERNAME`. What the
    /// write may grant is decided when it applies, from the user's effective roles on
    /// the global scope as they are then: a user deactivated, expired or deleted in
    /// the meantime writes nothing.
    pub fn user(id: Id, username: &str) -> Actor {
        Actor {
            name: format!("user:{username}"),
            kind: ActorKind::User {
                id,
                username: username.to_owned(),
            },
        }
    }

    /// The name the operation log records.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What this actor may grant in `snapshot` at `now`; refused when a token actor
    /// no longer exists or has expired.
    pub(crate) fn authority(
        &self,
        snapshot: &Snapshot,
        now: Time,
    ) -> Result<Authority, ValidationError> {
        let roles = match &self.kind {
            ActorKind::System => return Ok(Authority::Full),
            ActorKind::Token { id, name } => snapshot
                .token_index(&id.to_string())
                .and_then(|index| snapshot.token_entry(index))
                .map(|entry| &entry.token)
                .filter(|token| token.expires_at.is_none_or(|expires| now < expires))
                .ok_or_else(|| ValidationError::ActorRevoked(name.clone()))?
                .roles
                .clone(),
            ActorKind::User { id, username } => {
                let id = id.to_string();
                if !snapshot.user(&id).is_some_and(|user| user.is_valid_at(now)) {
                    return Err(ValidationError::ActorRevoked(format!("user:{username}")));
                }
                snapshot
                    .effective_roles(&id, GLOBAL_SCOPE, now)
                    .map_err(|_| ValidationError::ActorRevoked(format!("user:{username}")))?
            }
        };
        let held: BTreeSet<String> = roles
            .iter()
            .filter_map(|role| snapshot.role_permissions(role))
            .flatten()
            .cloned()
            .collect();
        // Every permission the engine knows of is system-admin's authority: it may
        // also hand out permission names only other programs read.
        if EVERY_PERMISSION.iter().all(|p| held.contains(p)) {
            return Ok(Authority::Full);
        }
        Ok(Authority::Limited(held))
    }
}

/// What a write may grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Authority {
    Full,
    /// The permissions the acting token holds.
    Limited(BTreeSet<String>),
}

impl Authority {
    /// Refuses when any of `roles` (names, resolved in `snapshot`) carries a
    /// permission this authority does not hold. `what` names the grant in the error.
    pub(crate) fn may_grant_roles<'a>(
        &self,
        snapshot: &Snapshot,
        what: impl FnOnce() -> String,
        roles: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), ValidationError> {
        let Authority::Limited(_) = self else {
            return Ok(());
        };
        let permissions: Vec<&String> = roles
            .into_iter()
            .filter_map(|role| snapshot.role_permissions(role))
            .flatten()
            .collect();
        self.may_grant(what, permissions)
    }

    /// Refuses when any of `permissions` is one this authority does not hold.
    pub(crate) fn may_grant<'a>(
        &self,
        what: impl FnOnce() -> String,
        permissions: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), ValidationError> {
        let Authority::Limited(held) = self else {
            return Ok(());
        };
        let missing: BTreeSet<String> = permissions
            .into_iter()
            .filter(|p| !held.contains(*p))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ValidationError::GrantBeyondCaller {
            what: what(),
            missing: missing.into_iter().collect(),
        })
    }
}
