//! Evaluation: what a decision is, and the two evaluators that make one.
//!
//! [`reference`] is the statement of the semantics in plain loops; [`fast`] answers
//! from the snapshot's bitmaps. Both implement [`Evaluator`], and the tests hold them
//! to the same answers.

pub(crate) mod fast;
pub(crate) mod reference;

use serde::Serialize;
use smallvec::SmallVec;

pub use fast::{AssetIdx, Page, UserIdx};
pub use reference::Reference;

use crate::error::NotFound;
use crate::model::{Actions, Effect, Id, Time};

/// One access question: may `user` reach `asset` as `account` over `protocol` and do
/// `action`, at `at`? Users and assets are given by name or id; the account is an
/// account's username on the asset or one of `@INPUT`, `@ANON`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query<'a> {
    pub user: &'a str,
    pub asset: &'a str,
    pub account: &'a str,
    pub protocol: &'a str,
    pub action: Actions,
    pub at: Time,
}

/// The ids of the rules behind a decision, inline up to four (no allocation on the
/// common path).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RuleIds(SmallVec<[Id; 4]>);

impl RuleIds {
    pub fn iter(&self) -> impl Iterator<Item = Id> + '_ {
        self.0.iter().copied()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn contains(&self, id: Id) -> bool {
        self.0.contains(&id)
    }
    pub(crate) fn push(&mut self, id: Id) {
        self.0.push(id);
    }
    /// The ids in ascending order, for comparisons.
    pub fn sorted(&self) -> Vec<Id> {
        let mut ids = self.0.to_vec();
        ids.sort();
        ids
    }
}

impl Serialize for RuleIds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

/// The answer to a [`Query`]. A denial is a decision, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether every action asked for is granted.
    pub allowed: bool,
    /// Everything granted for this user, asset, account and protocol at this instant.
    pub actions: Actions,
    /// Every rule in force that matched the user, asset, account and protocol, allow
    /// and deny alike (a deny rule is listed even when it took nothing away).
    pub rules: RuleIds,
    /// The store revision the answer was computed at.
    pub revision: u64,
    /// The next instant at which this answer could change by the clock alone.
    ///
    /// Precisely: when the user is valid at `at` and the asset active, the least
    /// instant after `at` among the user's `expires_at` and, for every complete rule
    /// that names the asset (directly or through a node), matches the account and
    /// protocol, and reaches the user at some instant, the boundaries of the span in
    /// which it applies to the user: `[starts_at, min(expires_at, membership_until))`,
    /// where `membership_until` is the latest instant at which some chain of
    /// memberships from the user to one of the rule's groups still counts (never, for
    /// users the rule names). `None` when no such instant exists.
    pub valid_until: Option<Time>,
}

/// Why a rule did not apply, or why a decision is a denial. The codes are docs/semantics.md's,
/// plus `rule_inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NoRule,
    RuleInactive,
    NotStarted,
    Expired,
    UserInactive,
    UserExpired,
    AssetInactive,
    AccountNotGranted,
    ProtocolNotGranted,
    ProtocolNotOffered,
    ActionNotGranted,
    DeniedBy,
}

impl Reason {
    pub const fn code(self) -> &'static str {
        match self {
            Reason::NoRule => "no_rule",
            Reason::RuleInactive => "rule_inactive",
            Reason::NotStarted => "not_started",
            Reason::Expired => "expired",
            Reason::UserInactive => "user_inactive",
            Reason::UserExpired => "user_expired",
            Reason::AssetInactive => "asset_inactive",
            Reason::AccountNotGranted => "account_not_granted",
            Reason::ProtocolNotGranted => "protocol_not_granted",
            Reason::ProtocolNotOffered => "protocol_not_offered",
            Reason::ActionNotGranted => "action_not_granted",
            Reason::DeniedBy => "denied_by",
        }
    }
}

/// What one rule did for a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleVerdict {
    pub rule: Id,
    pub name: String,
    pub effect: Effect,
    /// The rule itself matched: it is active, complete, in its window, and covers the
    /// protocol and account. (Whether the user and the asset are valid is judged once,
    /// in the explanation's top-level reasons.)
    pub applied: bool,
    /// Why it did not apply; for an applied deny rule that takes away the asked
    /// action, `denied_by`; for an applied allow rule without it, `action_not_granted`.
    pub reason: Option<Reason>,
    pub actions: Actions,
    /// The group names from one of the user's own groups up to the group the rule
    /// names (`["dba", "ops"]`: the user is in `dba`, which is in `ops`). Empty when
    /// the rule names the user.
    pub via: Vec<String>,
}

/// A decision with its reasons, rule by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    /// Why the decision is a denial (empty when it is allowed).
    pub reasons: Vec<Reason>,
    /// Every rule that names both the user (at this instant, through memberships that
    /// count then) and the asset, in name order.
    pub rules: Vec<RuleVerdict>,
}

/// An account a user may use on an asset, with what it grants over each protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountGrant {
    /// The account's username, or `@INPUT` / `@ANON`.
    pub username: String,
    /// The account's id; `None` for a virtual account.
    pub account: Option<Id>,
    /// The union over protocols.
    pub actions: Actions,
    /// Per protocol the asset offers, the actions granted (non-empty ones only).
    pub protocols: Vec<(String, Actions)>,
}

/// A node on the way to what a user may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeGrant {
    pub id: Id,
    pub path: String,
    /// How many assets the user may reach in this node's subtree.
    pub assets: u64,
}

/// The questions both evaluators answer. Users and assets by name or id.
pub trait Evaluator {
    fn check(&self, query: &Query<'_>) -> Result<Decision, NotFound>;
    fn explain(&self, query: &Query<'_>) -> Result<Explanation, NotFound>;
    /// Every asset on which some account and protocol grant the user some action.
    fn user_assets(&self, user: &str, at: Time) -> Result<Vec<Id>, NotFound>;
    /// The nodes holding those assets, and their ancestors.
    fn user_nodes(&self, user: &str, at: Time) -> Result<Vec<NodeGrant>, NotFound>;
    /// The accounts (real and virtual) through which the user is granted something.
    fn user_accounts(
        &self,
        user: &str,
        asset: &str,
        at: Time,
    ) -> Result<Vec<AccountGrant>, NotFound>;
    /// The users who may reach the asset (the reverse of `user_assets`).
    fn asset_users(&self, asset: &str, at: Time) -> Result<Vec<Id>, NotFound>;
    /// The user's system roles and the roles of every group the user belongs to at
    /// `at` on `scope` or on `*`; sorted, without duplicates.
    fn effective_roles(&self, user: &str, scope: &str, at: Time) -> Result<Vec<String>, NotFound>;
    /// Whether one of the effective roles carries `permission`.
    fn has_permission(
        &self,
        user: &str,
        scope: &str,
        permission: &str,
        at: Time,
    ) -> Result<bool, NotFound> {
        let roles = self.effective_roles(user, scope, at)?;
        Ok(roles.iter().any(|role| self.role_grants(role, permission)))
    }
    /// Whether the role named `role` (in any case) exists and carries `permission`.
    fn role_grants(&self, role: &str, permission: &str) -> bool;
}
