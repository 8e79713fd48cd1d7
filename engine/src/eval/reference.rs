//! The reference evaluator: docs/semantics.md's semantics in plain loops over the model.
//!
//! This is the statement of what a rule means, word for word with docs/semantics.md:
//!
//! At time `t` a rule R is **in force** when: R is active; `starts_at <= t`;
//! `expires_at` is unset or `t < expires_at`; it names at least one user or group; at
//! least one asset or node; a non-empty accounts spec; and at least one action.
//! Wildcards (`*`) are not patterns anywhere: a name is a name.
//!
//! - Subjects(R, t) = R.users ∪ members of R.groups, following nested groups, counting
//!   a membership only while it has not expired, keeping only users that are active
//!   and not expired at `t`.
//! - Objects(R) = R.assets ∪ every asset in any of R.nodes or any descendant node,
//!   keeping only active assets.
//! - An account A of asset X matches R when the spec holds `@ALL` and no `!A`, or
//!   names A's username, or holds `@USER` and A's username equals the user's username.
//!   `@INPUT` and `@ANON` grant the virtual accounts of those names. A named account
//!   the asset does not have matches nothing.
//! - A protocol P matches R when R.protocols is `all` or lists P, and the asset offers
//!   P.
//!
//! A rule is judged as a whole: it contributes its actions only when its own subjects,
//! objects, accounts and protocols all match. Nothing combines across rules.
//!
//! Granted(u, x, a, p, t) = the union of R.actions over allow rules in force that
//! match (u, x, a, p), minus the union of R.actions over deny rules in force that
//! match. Deny always beats allow. A check of action `k` is allowed exactly when
//! `k ∈ Granted`. An inactive or expired user, or an inactive asset, is granted
//! nothing.
//!
//! EffectiveRoles(u, scope) = the user's system roles ∪ the roles of every group u
//! belongs to (nested, unexpired) on that scope or on the global scope `*`. A
//! permission is allowed when any effective role carries it.
//!
//! It must never grow an index or a cache: the fast path is tested against it, and it
//! is worth that only while it is obviously right. Being slow is fine.

use std::collections::{HashMap, HashSet};

use super::{
    AccountGrant, Decision, Evaluator, Explanation, NodeGrant, Query, Reason, RuleIds, RuleVerdict,
};
use crate::error::NotFound;
use crate::model::{
    ANON_ACCOUNT, AccountSelector, Actions, Asset, Effect, EntityKind, Estate, GLOBAL_SCOPE, Group,
    INPUT_ACCOUNT, Id, Node, Rule, Time, User, membership_counts,
};

/// The reference evaluator: docs/semantics.md's semantics in plain loops over the model, with
/// no index and no cache. Every answer of the fast evaluator must equal its answer.
pub struct Reference<'a> {
    estate: &'a Estate,
    revision: u64,
}

impl<'a> Reference<'a> {
    /// An evaluator over `estate`, whose decisions carry `revision`.
    pub fn new(estate: &'a Estate, revision: u64) -> Self {
        Reference { estate, revision }
    }

    /// A user by id, else by username (case-insensitively, Unicode-aware).
    fn user(&self, text: &str) -> Result<&'a User, NotFound> {
        let users = &self.estate.users;
        let lower = text.to_lowercase();
        Id::parse(text)
            .and_then(|id| users.iter().find(|user| user.id == id))
            .or_else(|| {
                users
                    .iter()
                    .find(|user| user.username.to_lowercase() == lower)
            })
            .ok_or_else(|| NotFound::new(EntityKind::User, text))
    }

    /// An asset by id, else by name (case-insensitively, Unicode-aware).
    fn asset(&self, text: &str) -> Result<&'a Asset, NotFound> {
        let assets = &self.estate.assets;
        let lower = text.to_lowercase();
        Id::parse(text)
            .and_then(|id| assets.iter().find(|asset| asset.id == id))
            .or_else(|| {
                assets
                    .iter()
                    .find(|asset| asset.name.to_lowercase() == lower)
            })
            .ok_or_else(|| NotFound::new(EntityKind::Asset, text))
    }

    fn node(&self, id: Id) -> Option<&'a Node> {
        self.estate.nodes.iter().find(|node| node.id == id)
    }

    /// The groups `user` belongs to at `at`: those holding the user through a
    /// membership that counts then, and, repeatedly, those holding one of these as a
    /// subgroup through an edge that counts then.
    fn groups_at(&self, user: Id, at: Time) -> HashSet<Id> {
        let groups = &self.estate.groups;
        let mut member_of: HashSet<Id> = groups
            .iter()
            .filter(|group| {
                group
                    .members
                    .iter()
                    .any(|member| member.user == user && membership_counts(member.expires_at, at))
            })
            .map(|group| group.id)
            .collect();
        // A fixpoint rather than a recursion: it ends even on a cyclic estate.
        loop {
            let before = member_of.len();
            for group in groups {
                let holds_one = group.subgroups.iter().any(|edge| {
                    member_of.contains(&edge.group) && membership_counts(edge.expires_at, at)
                });
                if holds_one {
                    member_of.insert(group.id);
                }
            }
            if member_of.len() == before {
                return member_of;
            }
        }
    }

    /// For every group some chain of memberships leads from `user` to, the latest
    /// instant at which one such chain still counts (`Time::MAX`: it never stops).
    ///
    /// until(g) = max(over the user's own entries in g: their expiry, over subgroup
    /// edges (h, e) of g: min(e, until(h))), an expiry left unset being `Time::MAX`.
    fn membership_until(&self, user: Id) -> HashMap<Id, Time> {
        fn raise(until: &mut HashMap<Id, Time>, group: Id, time: Time) -> bool {
            match until.get(&group) {
                Some(&known) if known >= time => false,
                _ => {
                    until.insert(group, time);
                    true
                }
            }
        }
        let groups = &self.estate.groups;
        let mut until = HashMap::new();
        for group in groups {
            for member in group.members.iter().filter(|member| member.user == user) {
                raise(&mut until, group.id, member.expires_at.unwrap_or(Time::MAX));
            }
        }
        // Values only rise, and only to expiries of the estate, so this ends.
        loop {
            let mut changed = false;
            for group in groups {
                for edge in &group.subgroups {
                    if let Some(&inner) = until.get(&edge.group) {
                        let chain = inner.min(edge.expires_at.unwrap_or(Time::MAX));
                        changed |= raise(&mut until, group.id, chain);
                    }
                }
            }
            if !changed {
                return until;
            }
        }
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn within(&self, node: Id, ancestor: Id) -> bool {
        let mut current = Some(node);
        // The tree is acyclic; the bound only keeps a malformed estate from looping.
        for _ in 0..=self.estate.nodes.len() {
            match current {
                Some(id) if id == ancestor => return true,
                Some(id) => current = self.node(id).and_then(|node| node.parent),
                None => return false,
            }
        }
        false
    }

    /// `/Default/Prod/DB`: the names from the root down to `node`.
    fn path(&self, node: &Node) -> String {
        let mut names = vec![node.name.as_str()];
        let mut parent = node.parent;
        for _ in 0..self.estate.nodes.len() {
            let Some(above) = parent.and_then(|id| self.node(id)) else {
                break;
            };
            names.push(&above.name);
            parent = above.parent;
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    /// The rule names the user, directly or through a group the user belongs to at
    /// the instant `groups` was computed for. User validity is not looked at.
    fn names_user(rule: &Rule, user: &User, groups: &HashSet<Id>) -> bool {
        rule.users.contains(&user.id) || rule.groups.iter().any(|group| groups.contains(group))
    }

    /// The rule names the asset, directly or through a node above one of its nodes.
    /// Whether the asset is active is not looked at.
    fn names_asset(&self, rule: &Rule, asset: &Asset) -> bool {
        rule.assets.contains(&asset.id)
            || asset.nodes.iter().any(|&node| {
                rule.nodes
                    .iter()
                    .any(|&ancestor| self.within(node, ancestor))
            })
    }

    /// The rule matches user, asset, account and protocol (the time aside).
    fn matches(
        &self,
        rule: &Rule,
        user: &User,
        groups: &HashSet<Id>,
        asset: &Asset,
        account: &str,
        protocol: &str,
    ) -> bool {
        Self::names_user(rule, user, groups)
            && self.names_asset(rule, asset)
            && account_matches(rule, asset, user, account)
            && protocol_matches(rule, asset, protocol)
    }

    /// Granted(u, x, a, p, t), and the rules in force that matched (allow and deny).
    /// `groups` are the user's groups at `at`.
    fn granted(
        &self,
        user: &User,
        groups: &HashSet<Id>,
        asset: &Asset,
        account: &str,
        protocol: &str,
        at: Time,
    ) -> (Actions, RuleIds) {
        let mut rules = RuleIds::default();
        if !user.is_valid_at(at) || !asset.active {
            return (Actions::NONE, rules);
        }
        let mut allowed = Actions::NONE;
        let mut denied = Actions::NONE;
        for rule in &self.estate.rules {
            if rule.in_force(at) && self.matches(rule, user, groups, asset, account, protocol) {
                rules.push(rule.id);
                match rule.effect {
                    Effect::Allow => allowed = allowed.union(rule.actions),
                    Effect::Deny => denied = denied.union(rule.actions),
                }
            }
        }
        (allowed.difference(denied), rules)
    }

    /// The next instant after `at` at which the answer could change by the clock
    /// alone, exactly as [`Decision::valid_until`] defines it.
    fn valid_until(
        &self,
        user: &User,
        asset: &Asset,
        account: &str,
        protocol: &str,
        at: Time,
    ) -> Option<Time> {
        if !user.is_valid_at(at) || !asset.active {
            return None;
        }
        let until = self.membership_until(user.id);
        let mut next = user.expires_at.filter(|&expires| expires > at);
        for rule in &self.estate.rules {
            let relevant = rule.is_complete()
                && self.names_asset(rule, asset)
                && account_matches(rule, asset, user, account)
                && protocol_matches(rule, asset, protocol);
            if !relevant {
                continue;
            }
            let reach = if rule.users.contains(&user.id) {
                Some(Time::MAX)
            } else {
                rule.groups
                    .iter()
                    .filter_map(|group| until.get(group).copied())
                    .max()
            };
            let Some(reach) = reach else {
                continue;
            };
            let start = rule.starts_at;
            let end = rule.expires_at.unwrap_or(Time::MAX).min(reach);
            let boundary = if at < start && start < end {
                Some(start)
            } else if start <= at && at < end && end != Time::MAX {
                Some(end)
            } else {
                None
            };
            next = earliest(next, boundary);
        }
        next
    }

    fn decide(&self, user: &User, asset: &Asset, query: &Query<'_>) -> Decision {
        let groups = self.groups_at(user.id, query.at);
        let (actions, rules) = self.granted(
            user,
            &groups,
            asset,
            query.account,
            query.protocol,
            query.at,
        );
        Decision {
            allowed: !query.action.is_empty() && actions.contains(query.action),
            actions,
            rules,
            revision: self.revision,
            valid_until: self.valid_until(user, asset, query.account, query.protocol, query.at),
        }
    }

    /// What one rule that names the user and the asset did for the query.
    fn verdict(&self, rule: &Rule, user: &User, asset: &Asset, query: &Query<'_>) -> RuleVerdict {
        let at = query.at;
        let failure = if !rule.active {
            Some(Reason::RuleInactive)
        } else if rule.accounts.is_empty() {
            Some(Reason::AccountNotGranted)
        } else if rule.actions.is_empty() {
            Some(Reason::ActionNotGranted)
        } else if at < rule.starts_at {
            Some(Reason::NotStarted)
        } else if rule.expires_at.is_some_and(|expires| at >= expires) {
            Some(Reason::Expired)
        } else if !rule.protocols.allows(query.protocol) {
            Some(Reason::ProtocolNotGranted)
        } else if !asset.offers(query.protocol) {
            Some(Reason::ProtocolNotOffered)
        } else if !account_matches(rule, asset, user, query.account) {
            Some(Reason::AccountNotGranted)
        } else {
            None
        };
        let reason = match (failure, rule.effect) {
            (Some(reason), _) => Some(reason),
            (None, Effect::Allow) => {
                (!rule.actions.contains(query.action)).then_some(Reason::ActionNotGranted)
            }
            (None, Effect::Deny) => {
                let takes = !rule.actions.intersection(query.action).is_empty();
                takes.then_some(Reason::DeniedBy)
            }
        };
        RuleVerdict {
            rule: rule.id,
            name: rule.name.clone(),
            effect: rule.effect,
            applied: failure.is_none(),
            reason,
            actions: rule.actions,
            via: self.via(rule, user, at),
        }
    }

    /// The shortest chain of group names from one of the user's own groups (through a
    /// membership counting at `at`) up to a group the rule names, along subgroup edges
    /// counting at `at`; among chains of that length, the least by names. Empty when
    /// the rule names the user.
    fn via(&self, rule: &Rule, user: &User, at: Time) -> Vec<String> {
        if rule.users.contains(&user.id) {
            return Vec::new();
        }
        let groups = &self.estate.groups;
        // Breadth first, upward: each group reached gets its least chain of the
        // shortest length, extended from the least chains one step shorter.
        let mut chains: HashMap<Id, Vec<String>> = HashMap::new();
        let mut frontier: Vec<Id> = Vec::new();
        for group in groups {
            let own = group
                .members
                .iter()
                .any(|member| member.user == user.id && membership_counts(member.expires_at, at));
            if own && !chains.contains_key(&group.id) {
                chains.insert(group.id, vec![group.name.clone()]);
                frontier.push(group.id);
            }
        }
        while !frontier.is_empty() {
            let found = frontier
                .iter()
                .filter(|id| rule.groups.contains(id))
                .map(|id| &chains[id])
                .min();
            if let Some(chain) = found {
                return chain.clone();
            }
            let mut next: HashMap<Id, Vec<String>> = HashMap::new();
            for group in groups
                .iter()
                .filter(|group| !chains.contains_key(&group.id))
            {
                for edge in &group.subgroups {
                    if !frontier.contains(&edge.group) || !membership_counts(edge.expires_at, at) {
                        continue;
                    }
                    let mut chain = chains[&edge.group].clone();
                    chain.push(group.name.clone());
                    if next.get(&group.id).is_none_or(|known| chain < *known) {
                        next.insert(group.id, chain);
                    }
                }
            }
            frontier = next.keys().copied().collect();
            chains.extend(next);
        }
        Vec::new()
    }

    /// The top-level reasons of a denial, from the verdicts of the rules listed.
    fn denial_reasons(
        user: &User,
        asset: &Asset,
        at: Time,
        verdicts: &[RuleVerdict],
    ) -> Vec<Reason> {
        if !user.active {
            return vec![Reason::UserInactive];
        }
        if !user.is_valid_at(at) {
            return vec![Reason::UserExpired];
        }
        if !asset.active {
            return vec![Reason::AssetInactive];
        }
        if verdicts.is_empty() {
            return vec![Reason::NoRule];
        }
        let denied = verdicts.iter().any(|verdict| {
            verdict.applied
                && verdict.effect == Effect::Deny
                && verdict.reason == Some(Reason::DeniedBy)
        });
        if denied {
            return vec![Reason::DeniedBy];
        }
        let mut reasons: Vec<Reason> = verdicts
            .iter()
            .filter(|verdict| !verdict.applied || verdict.effect == Effect::Allow)
            .filter_map(|verdict| verdict.reason)
            .collect();
        reasons.sort();
        reasons.dedup();
        if reasons.is_empty() {
            reasons.push(Reason::ActionNotGranted);
        }
        reasons
    }

    /// The accounts worth asking about on `asset` for `user`: the asset's own, in
    /// order, then `@INPUT`, `@ANON`, and the user's username when the asset has no
    /// account of that name (the virtual `@USER` account).
    fn candidate_accounts(user: &'a User, asset: &'a Asset) -> Vec<(&'a str, Option<Id>)> {
        let mut accounts: Vec<(&str, Option<Id>)> = asset
            .accounts
            .iter()
            .map(|account| (account.username.as_str(), Some(account.id)))
            .collect();
        accounts.push((INPUT_ACCOUNT, None));
        accounts.push((ANON_ACCOUNT, None));
        if asset.account(&user.username).is_none() {
            accounts.push((&user.username, None));
        }
        accounts
    }

    /// Whether some account and protocol grant the user some action on the asset.
    fn reaches(&self, user: &'a User, groups: &HashSet<Id>, asset: &'a Asset, at: Time) -> bool {
        Self::candidate_accounts(user, asset)
            .iter()
            .any(|&(account, _)| {
                asset.protocols.iter().any(|protocol| {
                    let (actions, _) =
                        self.granted(user, groups, asset, account, protocol.name(), at);
                    !actions.is_empty()
                })
            })
    }

    fn reachable_assets(&self, user: &'a User, at: Time) -> Vec<&'a Asset> {
        let groups = self.groups_at(user.id, at);
        self.estate
            .assets
            .iter()
            .filter(|asset| self.reaches(user, &groups, asset, at))
            .collect()
    }
}

/// The query's account matches the rule's accounts spec on this asset for this user.
fn account_matches(rule: &Rule, asset: &Asset, user: &User, account: &str) -> bool {
    let holds = |selector: &AccountSelector| rule.accounts.contains(selector);
    match account {
        INPUT_ACCOUNT => holds(&AccountSelector::Input),
        ANON_ACCOUNT => holds(&AccountSelector::Anonymous),
        _ => {
            let exists = asset.account(account).is_some();
            let named = rule.accounts.iter().any(
                |selector| matches!(selector, AccountSelector::Named(name) if &**name == account),
            );
            let excluded = rule.accounts.iter().any(
                |selector| matches!(selector, AccountSelector::Excluded(name) if &**name == account),
            );
            (holds(&AccountSelector::All) && exists && !excluded)
                || (named && exists)
                || (holds(&AccountSelector::SameAsUser) && account == user.username)
        }
    }
}

/// The rule covers the protocol and the asset offers it.
fn protocol_matches(rule: &Rule, asset: &Asset, protocol: &str) -> bool {
    rule.protocols.allows(protocol) && asset.offers(protocol)
}

fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Evaluator for Reference<'_> {
    fn check(&self, query: &Query<'_>) -> Result<Decision, NotFound> {
        let user = self.user(query.user)?;
        let asset = self.asset(query.asset)?;
        Ok(self.decide(user, asset, query))
    }

    fn explain(&self, query: &Query<'_>) -> Result<Explanation, NotFound> {
        let user = self.user(query.user)?;
        let asset = self.asset(query.asset)?;
        let decision = self.decide(user, asset, query);
        let groups = self.groups_at(user.id, query.at);
        let mut named: Vec<&Rule> = self
            .estate
            .rules
            .iter()
            .filter(|rule| Self::names_user(rule, user, &groups) && self.names_asset(rule, asset))
            .collect();
        named.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        let rules: Vec<RuleVerdict> = named
            .into_iter()
            .map(|rule| self.verdict(rule, user, asset, query))
            .collect();
        let reasons = if decision.allowed {
            Vec::new()
        } else {
            Self::denial_reasons(user, asset, query.at, &rules)
        };
        Ok(Explanation {
            decision,
            reasons,
            rules,
        })
    }

    fn user_assets(&self, user: &str, at: Time) -> Result<Vec<Id>, NotFound> {
        let user = self.user(user)?;
        Ok(self
            .reachable_assets(user, at)
            .iter()
            .map(|asset| asset.id)
            .collect())
    }

    fn user_nodes(&self, user: &str, at: Time) -> Result<Vec<NodeGrant>, NotFound> {
        let user = self.user(user)?;
        let reachable = self.reachable_assets(user, at);
        let mut grants: Vec<NodeGrant> = Vec::new();
        for node in &self.estate.nodes {
            let below = reachable
                .iter()
                .filter(|asset| asset.nodes.iter().any(|&held| self.within(held, node.id)))
                .count();
            if below > 0 {
                grants.push(NodeGrant {
                    id: node.id,
                    path: self.path(node),
                    assets: below as u64,
                });
            }
        }
        grants.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(grants)
    }

    fn user_accounts(
        &self,
        user: &str,
        asset: &str,
        at: Time,
    ) -> Result<Vec<AccountGrant>, NotFound> {
        let user = self.user(user)?;
        let asset = self.asset(asset)?;
        let groups = self.groups_at(user.id, at);
        let mut grants = Vec::new();
        for (username, account) in Self::candidate_accounts(user, asset) {
            let mut protocols = Vec::new();
            for protocol in &asset.protocols {
                let (actions, _) =
                    self.granted(user, &groups, asset, username, protocol.name(), at);
                if !actions.is_empty() {
                    protocols.push((protocol.name().to_owned(), actions));
                }
            }
            if !protocols.is_empty() {
                grants.push(AccountGrant {
                    username: username.to_owned(),
                    account,
                    actions: protocols
                        .iter()
                        .fold(Actions::NONE, |all, (_, actions)| all.union(*actions)),
                    protocols,
                });
            }
        }
        Ok(grants)
    }

    fn asset_users(&self, asset: &str, at: Time) -> Result<Vec<Id>, NotFound> {
        let asset = self.asset(asset)?;
        Ok(self
            .estate
            .users
            .iter()
            .filter(|user| self.reaches(user, &self.groups_at(user.id, at), asset, at))
            .map(|user| user.id)
            .collect())
    }

    fn effective_roles(&self, user: &str, scope: &str, at: Time) -> Result<Vec<String>, NotFound> {
        let user = self.user(user)?;
        let groups = self.groups_at(user.id, at);
        let mut roles = user.system_roles.clone();
        for group in self
            .estate
            .groups
            .iter()
            .filter(|group| groups.contains(&group.id))
        {
            roles.extend(held_roles(group, scope));
        }
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    fn role_grants(&self, role: &str, permission: &str) -> bool {
        let name = role.to_lowercase();
        self.estate.roles.iter().any(|role| {
            role.name.to_lowercase() == name
                && role.permissions.iter().any(|held| held == permission)
        })
    }
}

/// The roles a group's members hold on `scope`: those assigned on it or on `*`.
fn held_roles<'g>(group: &'g Group, scope: &'g str) -> impl Iterator<Item = String> + 'g {
    group
        .roles
        .iter()
        .filter(move |assignment| assignment.scope == scope || assignment.scope == GLOBAL_SCOPE)
        .flat_map(|assignment| assignment.roles.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Account, GroupMember, Mfa, Protocol, ProtocolFilter, ROOT_NODE_ID, Role, RoleAssignment,
        SecretKind, Source, UserMember, builtin_roles,
    };

    // The fixture. Users: alice (in dev), bob. Groups: dev ⊂ ops, qa (empty).
    // Nodes: /Default/Prod/DB, /Default/Test. Assets: web (Prod; root, deploy;
    // ssh, sftp), db (DB; root, postgres; ssh), lab (Test; Administrator; rdp).

    const T: Time = Time::from_secs(1000);

    fn t(secs: i64) -> Time {
        Time::from_secs(secs)
    }

    fn id(n: u128) -> Id {
        Id::from_u128(n)
    }

    fn user(n: u128, username: &str) -> User {
        User {
            id: id(n),
            username: username.into(),
            name: username.into(),
            email: None,
            phone: None,
            active: true,
            expires_at: None,
            source: Source::Local,
            external_id: None,
            attributes: Default::default(),
            system_roles: vec!["user".into()],
            mfa: Mfa::Disabled,
            must_change_password: false,
            has_password: false,
            last_login: None,
            description: String::new(),
            created_at: t(0),
            updated_at: t(0),
            created_by: String::new(),
        }
    }

    fn group(n: u128, name: &str, users: &[u128], subgroups: &[u128]) -> Group {
        Group {
            id: id(n),
            name: name.into(),
            members: users
                .iter()
                .map(|&u| UserMember {
                    user: id(u),
                    expires_at: None,
                    source: Source::Local,
                })
                .collect(),
            subgroups: subgroups
                .iter()
                .map(|&g| GroupMember {
                    group: id(g),
                    expires_at: None,
                    source: Source::Local,
                })
                .collect(),
            roles: Vec::new(),
            source: Source::Local,
            external_id: None,
            attributes: Default::default(),
            description: String::new(),
            created_at: t(0),
            updated_at: t(0),
            created_by: String::new(),
        }
    }

    fn node(node_id: Id, name: &str, parent: Option<Id>) -> Node {
        Node {
            id: node_id,
            name: name.into(),
            parent,
            number: 0,
            description: String::new(),
            created_at: t(0),
            updated_at: t(0),
            created_by: String::new(),
        }
    }

    fn asset(n: u128, name: &str, nodes: &[u128], accounts: &[&str], protocols: &[&str]) -> Asset {
        Asset {
            id: id(n),
            name: name.into(),
            address: "10.0.0.1".into(),
            platform: "linux".into(),
            protocols: protocols
                .iter()
                .map(|p| p.parse::<Protocol>().unwrap())
                .collect(),
            nodes: nodes.iter().map(|&n| id(n)).collect(),
            accounts: accounts
                .iter()
                .zip(0..)
                .map(|(username, i)| Account {
                    id: id(n * 100 + i),
                    username: (*username).into(),
                    privileged: false,
                    secret_kind: SecretKind::Password,
                })
                .collect(),
            active: true,
            description: String::new(),
            created_at: t(0),
            updated_at: t(0),
            created_by: String::new(),
        }
    }

    /// `allow NAME key=a,b …` with keys users, groups, assets, nodes (by name),
    /// accounts, protocols (default all), actions, starts, expires (seconds), and the
    /// bare word `inactive`.
    fn rule(estate: &Estate, n: u128, spec: &str) -> Rule {
        let mut words = spec.split_whitespace();
        let effect = match words.next() {
            Some("allow") => Effect::Allow,
            Some("deny") => Effect::Deny,
            other => panic!("bad effect {other:?}"),
        };
        let mut rule = Rule {
            id: id(500 + n),
            name: words.next().unwrap().into(),
            effect,
            users: Vec::new(),
            groups: Vec::new(),
            assets: Vec::new(),
            nodes: Vec::new(),
            accounts: Vec::new(),
            protocols: ProtocolFilter::All,
            actions: Actions::NONE,
            starts_at: t(0),
            expires_at: None,
            active: true,
            description: String::new(),
            created_at: t(0),
            updated_at: t(0),
            created_by: String::new(),
        };
        for word in words {
            if word == "inactive" {
                rule.active = false;
                continue;
            }
            let (key, value) = word.split_once('=').unwrap();
            let values: Vec<&str> = value.split(',').collect();
            let find = |names: &[(Id, &str)], name: &str| {
                names
                    .iter()
                    .find(|(_, n)| *n == name)
                    .unwrap_or_else(|| panic!("{name}"))
                    .0
            };
            let users: Vec<_> = estate
                .users
                .iter()
                .map(|u| (u.id, u.username.as_str()))
                .collect();
            let groups: Vec<_> = estate
                .groups
                .iter()
                .map(|g| (g.id, g.name.as_str()))
                .collect();
            let assets: Vec<_> = estate
                .assets
                .iter()
                .map(|a| (a.id, a.name.as_str()))
                .collect();
            let nodes: Vec<_> = estate
                .nodes
                .iter()
                .map(|n| (n.id, n.name.as_str()))
                .collect();
            match key {
                "users" => rule.users = values.iter().map(|v| find(&users, v)).collect(),
                "groups" => rule.groups = values.iter().map(|v| find(&groups, v)).collect(),
                "assets" => rule.assets = values.iter().map(|v| find(&assets, v)).collect(),
                "nodes" => rule.nodes = values.iter().map(|v| find(&nodes, v)).collect(),
                "accounts" => rule.accounts = values.iter().map(|v| v.parse().unwrap()).collect(),
                "protocols" => rule.protocols = ProtocolFilter::from_names(&values).unwrap(),
                "actions" => rule.actions = Actions::parse_names(&values).unwrap(),
                "starts" => rule.starts_at = t(value.parse().unwrap()),
                "expires" => rule.expires_at = Some(t(value.parse().unwrap())),
                _ => panic!("bad key {key}"),
            }
        }
        rule
    }

    fn estate(rules: &[&str]) -> Estate {
        let mut estate = Estate {
            users: vec![user(1, "alice"), user(2, "bob")],
            groups: vec![
                group(20, "dev", &[1], &[]),
                group(21, "ops", &[], &[20]),
                group(22, "qa", &[], &[]),
            ],
            nodes: vec![
                node(ROOT_NODE_ID, "Default", None),
                node(id(31), "Prod", Some(ROOT_NODE_ID)),
                node(id(32), "DB", Some(id(31))),
                node(id(33), "Test", Some(ROOT_NODE_ID)),
            ],
            assets: vec![
                asset(
                    40,
                    "web",
                    &[31],
                    &["root", "deploy"],
                    &["ssh/22", "sftp/22"],
                ),
                asset(41, "db", &[32], &["root", "postgres"], &["ssh/22"]),
                asset(42, "lab", &[33], &["Administrator"], &["rdp/3389"]),
            ],
            rules: Vec::new(),
            roles: builtin_roles()
                .into_iter()
                .zip(0..)
                .map(|((name, description, permissions), i)| Role {
                    id: id(700 + i),
                    name: name.into(),
                    permissions,
                    builtin: true,
                    description: description.into(),
                    created_at: t(0),
                    updated_at: t(0),
                    created_by: String::new(),
                })
                .collect(),
            tokens: Vec::new(),
        };
        for (spec, n) in rules.iter().zip(0..) {
            let rule = rule(&estate, n, spec);
            estate.rules.push(rule);
        }
        estate
    }

    fn group_mut<'e>(estate: &'e mut Estate, name: &str) -> &'e mut Group {
        estate.groups.iter_mut().find(|g| g.name == name).unwrap()
    }

    fn user_mut<'e>(estate: &'e mut Estate, name: &str) -> &'e mut User {
        estate
            .users
            .iter_mut()
            .find(|u| u.username == name)
            .unwrap()
    }

    fn asset_mut<'e>(estate: &'e mut Estate, name: &str) -> &'e mut Asset {
        estate.assets.iter_mut().find(|a| a.name == name).unwrap()
    }

    /// `"alice web root ssh connect"`; the action may be `none` or `a,b`.
    fn query(text: &str, at: Time) -> Query<'_> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [user, asset, account, protocol, action] = words[..] else {
            panic!("bad query {text}");
        };
        let action = match action {
            "none" => Actions::NONE,
            _ => Actions::parse_names(&action.split(',').collect::<Vec<_>>()).unwrap(),
        };
        Query {
            user,
            asset,
            account,
            protocol,
            action,
            at,
        }
    }

    fn decision_at(estate: &Estate, text: &str, at: Time) -> Decision {
        Reference::new(estate, 7).check(&query(text, at)).unwrap()
    }

    fn allowed_at(estate: &Estate, text: &str, at: Time) -> bool {
        decision_at(estate, text, at).allowed
    }

    fn allowed(estate: &Estate, text: &str) -> bool {
        allowed_at(estate, text, T)
    }

    fn until(estate: &Estate, text: &str) -> Option<Time> {
        decision_at(estate, text, T).valid_until
    }

    fn explain(estate: &Estate, text: &str) -> Explanation {
        Reference::new(estate, 7).explain(&query(text, T)).unwrap()
    }

    fn reasons(estate: &Estate, text: &str) -> Vec<Reason> {
        explain(estate, text).reasons
    }

    /// A one-rule estate; `accounts=@ALL` and `actions=connect` unless the spec says.
    fn one(spec: &str) -> Estate {
        estate(&[&complete(spec)])
    }

    fn complete(spec: &str) -> String {
        let mut spec = spec.to_owned();
        if !spec.contains("accounts=") {
            spec.push_str(" accounts=@ALL");
        }
        if !spec.contains("actions=") {
            spec.push_str(" actions=connect");
        }
        spec
    }

    // --- JumpServer's four ways to grant

    #[test]
    fn user_to_asset() {
        let e = one("allow r users=alice assets=web");
        assert!(allowed(&e, "alice web root ssh connect"));
        assert!(!allowed(&e, "bob web root ssh connect"));
        assert!(!allowed(&e, "alice db root ssh connect"));
        assert!(!allowed(&e, "alice web root ssh upload"));
    }

    #[test]
    fn group_to_asset() {
        let e = one("allow r groups=dev assets=web");
        assert!(allowed(&e, "alice web deploy ssh connect"));
        assert!(!allowed(&e, "bob web deploy ssh connect"));
    }

    #[test]
    fn user_to_node_reaches_descendant_nodes() {
        let e = one("allow r users=bob nodes=Prod");
        assert!(allowed(&e, "bob web root ssh connect"));
        assert!(allowed(&e, "bob db postgres ssh connect"));
        assert!(!allowed(&e, "bob lab Administrator rdp connect"));
    }

    #[test]
    fn group_to_node() {
        let e = one("allow r groups=dev nodes=DB");
        assert!(allowed(&e, "alice db root ssh connect"));
        assert!(
            !allowed(&e, "alice web root ssh connect"),
            "a node grants nothing above it"
        );
    }

    #[test]
    fn nested_groups_reach_their_members() {
        let e = one("allow r groups=ops assets=web");
        assert!(allowed(&e, "alice web root ssh connect"));
        assert!(!allowed(&e, "bob web root ssh connect"));
    }

    #[test]
    fn asset_in_several_nodes_is_reached_from_each() {
        let mut e = one("allow r users=bob nodes=Test");
        asset_mut(&mut e, "web").nodes.push(id(33));
        assert!(allowed(&e, "bob web root ssh connect"));
    }

    // --- time

    #[test]
    fn membership_expiring_at_t_no_longer_counts() {
        let mut e = one("allow r groups=dev assets=web");
        group_mut(&mut e, "dev").members[0].expires_at = Some(t(2000));
        assert!(allowed_at(
            &e,
            "alice web root ssh connect",
            t(2000).add_micros(-1)
        ));
        assert!(!allowed_at(&e, "alice web root ssh connect", t(2000)));
    }

    #[test]
    fn nested_edge_expiring_at_t_no_longer_counts() {
        let mut e = one("allow r groups=ops assets=web");
        group_mut(&mut e, "ops").subgroups[0].expires_at = Some(t(2000));
        assert!(allowed_at(
            &e,
            "alice web root ssh connect",
            t(2000).add_micros(-1)
        ));
        assert!(!allowed_at(&e, "alice web root ssh connect", t(2000)));
    }

    #[test]
    fn rule_window_is_half_open() {
        let e = one("allow r users=alice assets=web starts=2000 expires=3000");
        let q = "alice web root ssh connect";
        assert!(!allowed_at(&e, q, t(2000).add_micros(-1)));
        assert!(allowed_at(&e, q, t(2000)));
        assert!(allowed_at(&e, q, t(3000).add_micros(-1)));
        assert!(!allowed_at(&e, q, t(3000)));
    }

    #[test]
    fn expired_or_inactive_user_and_inactive_asset_get_nothing() {
        let q = "alice web root ssh connect";
        let mut e = one("allow r users=alice assets=web");
        user_mut(&mut e, "alice").expires_at = Some(T);
        assert!(!allowed(&e, q));
        assert!(allowed_at(&e, q, T.add_micros(-1)));
        let mut e = one("allow r users=alice assets=web");
        user_mut(&mut e, "alice").active = false;
        assert!(!allowed(&e, q));
        let mut e = one("allow r users=alice assets=web");
        asset_mut(&mut e, "web").active = false;
        assert!(!allowed(&e, q));
        assert_eq!(decision_at(&e, q, T).actions, Actions::NONE);
    }

    #[test]
    fn incomplete_or_inactive_rules_grant_nothing() {
        for spec in [
            "allow r users=alice assets=web actions=connect",
            "allow r users=alice assets=web accounts=@ALL",
            "allow r assets=web accounts=@ALL actions=connect",
            "allow r users=alice accounts=@ALL actions=connect",
            "allow r users=alice assets=web accounts=@ALL actions=connect inactive",
        ] {
            assert!(
                !allowed(&estate(&[spec]), "alice web root ssh connect"),
                "{spec}"
            );
        }
    }

    // --- actions, deny

    #[test]
    fn deny_beats_allow() {
        let e = estate(&[
            "allow a users=alice assets=web accounts=@ALL actions=all",
            "deny d groups=dev nodes=Prod accounts=@ALL actions=transfer",
        ]);
        assert!(allowed(&e, "alice web root ssh connect"));
        assert!(!allowed(&e, "alice web root ssh upload"));
        assert!(!allowed(&e, "alice web root ssh connect,upload"));
        let decision = decision_at(&e, "alice web root ssh connect", T);
        assert_eq!(decision.actions, Actions::ALL.difference(Actions::TRANSFER));
        assert_eq!(decision.rules.sorted(), [id(500), id(501)]);
        assert_eq!(decision.revision, 7);
    }

    #[test]
    fn an_empty_action_is_never_allowed() {
        let e = one("allow r users=alice assets=web");
        assert!(!allowed(&e, "alice web root ssh none"));
    }

    // --- accounts

    #[test]
    fn exclusion_narrows_all_but_not_a_named_grant() {
        let e = one("allow r users=alice assets=web accounts=@ALL,!root");
        assert!(allowed(&e, "alice web deploy ssh connect"));
        assert!(!allowed(&e, "alice web root ssh connect"));
        let e = one("allow r users=alice assets=web accounts=@ALL,!root,root");
        assert!(allowed(&e, "alice web root ssh connect"));
        let e = estate(&[
            "allow r1 users=alice assets=web accounts=@ALL,!root actions=connect",
            "allow r2 users=alice assets=web accounts=root actions=connect",
        ]);
        assert!(allowed(&e, "alice web root ssh connect"));
    }

    #[test]
    fn named_account_the_asset_lacks_matches_nothing() {
        let e = one("allow r users=alice assets=web accounts=admin");
        assert!(!allowed(&e, "alice web admin ssh connect"));
        assert!(!allowed(&e, "alice web root ssh connect"));
    }

    #[test]
    fn account_names_are_case_sensitive() {
        let e = one("allow r users=alice assets=web accounts=root");
        assert!(!allowed(&e, "alice web ROOT ssh connect"));
    }

    #[test]
    fn same_as_user_is_the_users_own_account_real_or_virtual() {
        let e = one("allow r users=alice,bob assets=web accounts=@USER");
        assert!(allowed(&e, "alice web alice ssh connect"), "virtual");
        assert!(!allowed(&e, "alice web root ssh connect"));
        assert!(!allowed(&e, "bob web alice ssh connect"));
        let mut e = one("allow r users=alice assets=web accounts=@USER");
        asset_mut(&mut e, "web").accounts[1].username = "alice".into();
        assert!(allowed(&e, "alice web alice ssh connect"), "real");
    }

    #[test]
    fn input_and_anon_are_granted_only_by_name() {
        let e = one("allow r users=alice assets=web accounts=@INPUT");
        assert!(allowed(&e, "alice web @INPUT ssh connect"));
        assert!(!allowed(&e, "alice web @ANON ssh connect"));
        assert!(!allowed(&e, "alice web root ssh connect"));
        let e = one("allow r users=alice assets=web accounts=@ANON");
        assert!(allowed(&e, "alice web @ANON ssh connect"));
        let e = one("allow r users=alice assets=web accounts=@ALL,@USER");
        assert!(!allowed(&e, "alice web @INPUT ssh connect"));
        assert!(!allowed(&e, "alice web @ANON ssh connect"));
    }

    // --- protocols

    #[test]
    fn protocol_must_be_granted_and_offered() {
        let e = one("allow r users=alice assets=web protocols=sftp");
        assert!(allowed(&e, "alice web root sftp connect"));
        assert!(!allowed(&e, "alice web root ssh connect"));
        let e = one("allow r users=alice assets=web protocols=rdp");
        assert!(!allowed(&e, "alice web root rdp connect"));
        let e = one("allow r users=alice assets=web");
        assert!(
            !allowed(&e, "alice web root rdp connect"),
            "all covers only what is offered"
        );
    }

    #[test]
    fn account_and_protocol_from_different_rules_do_not_combine() {
        let e = estate(&[
            "allow r1 users=alice assets=web accounts=root protocols=sftp actions=connect",
            "allow r2 users=alice assets=web accounts=deploy protocols=ssh actions=connect",
        ]);
        assert!(allowed(&e, "alice web root sftp connect"));
        assert!(allowed(&e, "alice web deploy ssh connect"));
        assert!(!allowed(&e, "alice web root ssh connect"));
        assert!(!allowed(&e, "alice web deploy sftp connect"));
    }

    // --- resolution

    #[test]
    fn users_and_assets_resolve_by_id_or_case_insensitive_name() {
        let mut e = estate(&[]);
        e.users.push(user(3, "élodie"));
        e.rules = vec![rule(&e, 0, &complete("allow r users=élodie assets=web"))];
        assert!(allowed(&e, "ÉLODIE WEB root ssh connect"));
        let by_id = format!("{} {} root ssh connect", id(3), id(40));
        assert!(allowed(&e, &by_id));
        let reference = Reference::new(&e, 0);
        let missing = reference
            .check(&query("nobody web root ssh connect", T))
            .unwrap_err();
        assert_eq!(missing, NotFound::new(EntityKind::User, "nobody"));
        let missing = reference
            .check(&query("alice nothing root ssh connect", T))
            .unwrap_err();
        assert_eq!(missing, NotFound::new(EntityKind::Asset, "nothing"));
        assert!(reference.user_assets(&id(99).to_string(), T).is_err());
    }

    // --- valid_until

    #[test]
    fn valid_until_is_the_next_boundary() {
        let q = "alice web root ssh connect";
        assert_eq!(until(&one("allow r users=alice assets=web"), q), None);
        assert_eq!(
            until(&one("allow r users=alice assets=web expires=3000"), q),
            Some(t(3000))
        );
        assert_eq!(
            until(&one("allow r users=alice assets=web starts=2000"), q),
            Some(t(2000))
        );
        let window = "allow r users=alice assets=web starts=500 expires=3000";
        assert_eq!(until(&one(window), q), Some(t(3000)));
        let past = "allow r users=alice assets=web starts=100 expires=500";
        assert_eq!(until(&one(past), q), None);
        let deny = "deny r users=alice assets=web expires=3000";
        assert_eq!(
            until(&one(deny), q),
            Some(t(3000)),
            "a deny's end changes the answer too"
        );
    }

    #[test]
    fn valid_until_ignores_rules_that_cannot_apply() {
        let q = "alice web root ssh connect";
        for spec in [
            "allow r users=alice assets=db expires=3000",
            "allow r users=alice assets=web protocols=sftp expires=3000",
            "allow r users=alice assets=web accounts=deploy expires=3000",
            "allow r users=alice assets=web expires=3000 inactive",
            "allow r users=bob assets=web expires=3000",
        ] {
            assert_eq!(until(&one(spec), q), None, "{spec}");
        }
    }

    #[test]
    fn valid_until_counts_user_expiry_and_validity() {
        let q = "alice web root ssh connect";
        let mut e = one("allow r users=alice assets=web expires=3000");
        user_mut(&mut e, "alice").expires_at = Some(t(5000));
        assert_eq!(until(&e, q), Some(t(3000)));
        user_mut(&mut e, "alice").expires_at = Some(t(2000));
        assert_eq!(until(&e, q), Some(t(2000)));
        let mut e = estate(&[]);
        user_mut(&mut e, "alice").expires_at = Some(t(5000));
        assert_eq!(
            until(&e, q),
            Some(t(5000)),
            "the user's expiry counts even without rules"
        );
        user_mut(&mut e, "alice").active = false;
        assert_eq!(until(&e, q), None);
        let mut e = one("allow r users=alice assets=web expires=3000");
        asset_mut(&mut e, "web").active = false;
        assert_eq!(until(&e, q), None);
    }

    #[test]
    fn valid_until_follows_membership_chains() {
        let q = "alice web root ssh connect";
        let mut e = one("allow r groups=ops assets=web");
        group_mut(&mut e, "dev").members[0].expires_at = Some(t(1500));
        group_mut(&mut e, "ops").subgroups[0].expires_at = Some(t(1800));
        assert_eq!(
            until(&e, q),
            Some(t(1500)),
            "a chain lasts as long as its shortest link"
        );
        group_mut(&mut e, "ops").members.push(UserMember {
            user: id(1),
            expires_at: Some(t(2500)),
            source: Source::Local,
        });
        assert_eq!(until(&e, q), Some(t(2500)), "the longest chain wins");
        let mut e = one("allow r users=alice groups=dev assets=web");
        group_mut(&mut e, "dev").members[0].expires_at = Some(t(1500));
        assert_eq!(until(&e, q), None, "naming the user directly never stops");
    }

    #[test]
    fn valid_until_skips_a_membership_over_before_the_rule_starts() {
        let q = "alice web root ssh connect";
        let mut e = one("allow r groups=dev assets=web starts=2000");
        group_mut(&mut e, "dev").members[0].expires_at = Some(t(1500));
        assert_eq!(
            until(&e, q),
            None,
            "the rule never applies: the answer never changes"
        );
        group_mut(&mut e, "dev").members[0].expires_at = Some(t(2500));
        assert_eq!(until(&e, q), Some(t(2000)));
        assert_eq!(decision_at(&e, q, t(2000)).valid_until, Some(t(2500)));
        assert_eq!(decision_at(&e, q, t(2500)).valid_until, None);
    }

    // --- explain

    #[test]
    fn explain_top_level_reasons() {
        let q = "alice web root ssh connect";
        assert_eq!(reasons(&estate(&[]), q), [Reason::NoRule]);
        let mut e = one("allow r users=alice assets=web");
        assert_eq!(reasons(&e, q), []);
        user_mut(&mut e, "alice").expires_at = Some(T);
        assert_eq!(reasons(&e, q), [Reason::UserExpired]);
        user_mut(&mut e, "alice").active = false;
        assert_eq!(reasons(&e, q), [Reason::UserInactive]);
        let mut e = one("allow r users=alice assets=web");
        asset_mut(&mut e, "web").active = false;
        assert_eq!(reasons(&e, q), [Reason::AssetInactive]);
        assert_eq!(explain(&e, q).rules.len(), 1, "the rule is listed even so");
    }

    #[test]
    fn explain_rule_reasons() {
        let q = "alice web root ssh connect";
        for (spec, reason) in [
            (
                "allow r users=alice assets=web inactive",
                Reason::RuleInactive,
            ),
            (
                "allow r users=alice assets=web starts=2000",
                Reason::NotStarted,
            ),
            (
                "allow r users=alice assets=web expires=1000",
                Reason::Expired,
            ),
            (
                "allow r users=alice assets=web protocols=sftp",
                Reason::ProtocolNotGranted,
            ),
            (
                "allow r users=alice assets=web accounts=deploy",
                Reason::AccountNotGranted,
            ),
            (
                "allow r users=alice assets=web actions=upload",
                Reason::ActionNotGranted,
            ),
        ] {
            let e = one(spec);
            let explanation = explain(&e, q);
            assert_eq!(explanation.reasons, [reason], "{spec}");
            assert_eq!(explanation.rules[0].reason, Some(reason), "{spec}");
            let applied = reason == Reason::ActionNotGranted;
            assert_eq!(explanation.rules[0].applied, applied, "{spec}");
        }
        let e = one("allow r users=alice assets=web");
        assert_eq!(
            reasons(&e, "alice web root rdp connect"),
            [Reason::ProtocolNotOffered]
        );
        let e = estate(&["allow r users=alice assets=web actions=connect"]);
        assert_eq!(
            reasons(&e, q),
            [Reason::AccountNotGranted],
            "no accounts spec"
        );
        let e = estate(&["allow r users=alice assets=web accounts=@ALL"]);
        assert_eq!(reasons(&e, q), [Reason::ActionNotGranted], "no actions");
        let e = estate(&["allow r users=alice assets=web"]);
        assert_eq!(
            reasons(&e, q),
            [Reason::AccountNotGranted],
            "accounts before actions"
        );
    }

    #[test]
    fn explain_collects_reasons_of_every_rule() {
        let e = estate(&[
            "allow b users=alice assets=web accounts=@ALL actions=connect protocols=sftp",
            "allow a users=alice nodes=Prod accounts=@ALL actions=connect starts=2000",
            "deny c users=alice assets=web accounts=@ALL actions=connect expires=10",
        ]);
        let explanation = explain(&e, "alice web root ssh connect");
        let names: Vec<&str> = explanation.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            explanation.reasons,
            [
                Reason::NotStarted,
                Reason::Expired,
                Reason::ProtocolNotGranted
            ]
        );
    }

    #[test]
    fn explain_deny() {
        let e = estate(&[
            "allow a users=alice assets=web accounts=@ALL actions=all",
            "deny d users=alice assets=web accounts=@ALL actions=upload",
        ]);
        let explanation = explain(&e, "alice web root ssh upload");
        assert_eq!(explanation.reasons, [Reason::DeniedBy]);
        assert_eq!(explanation.rules[1].reason, Some(Reason::DeniedBy));
        assert!(explanation.rules[1].applied);
        let explanation = explain(&e, "alice web root ssh connect");
        assert!(explanation.decision.allowed);
        assert_eq!(explanation.reasons, []);
        assert_eq!(
            (explanation.rules[0].reason, explanation.rules[1].reason),
            (None, None)
        );
        assert_eq!(explanation.rules[1].actions, Actions::UPLOAD);
    }

    #[test]
    fn explain_lists_only_rules_reaching_the_user_now() {
        let mut e = one("allow r groups=dev assets=web");
        group_mut(&mut e, "dev").members[0].expires_at = Some(T);
        assert_eq!(reasons(&e, "alice web root ssh connect"), [Reason::NoRule]);
        let e = one("allow r users=alice assets=db");
        assert_eq!(reasons(&e, "alice web root ssh connect"), [Reason::NoRule]);
    }

    #[test]
    fn explain_via_is_the_shortest_group_path() {
        let via = |e: &Estate| {
            explain(e, "alice web root ssh connect").rules[0]
                .via
                .clone()
        };
        assert_eq!(via(&one("allow r groups=ops assets=web")), ["dev", "ops"]);
        assert_eq!(via(&one("allow r groups=dev assets=web")), ["dev"]);
        assert!(via(&one("allow r users=alice groups=ops assets=web")).is_empty());
        let mut e = one("allow r groups=ops assets=web");
        group_mut(&mut e, "ops").members.push(UserMember {
            user: id(1),
            expires_at: None,
            source: Source::Local,
        });
        assert_eq!(via(&e), ["ops"], "the shortest chain");
        let mut e = one("allow r groups=ops assets=web");
        group_mut(&mut e, "qa").members.push(UserMember {
            user: id(1),
            expires_at: None,
            source: Source::Local,
        });
        group_mut(&mut e, "ops").subgroups.insert(
            0,
            GroupMember {
                group: id(22),
                expires_at: None,
                source: Source::Local,
            },
        );
        assert_eq!(via(&e), ["dev", "ops"], "ties go to the least names");
        group_mut(&mut e, "ops").subgroups[1].expires_at = Some(T);
        assert_eq!(via(&e), ["qa", "ops"], "only edges counting now");
    }

    // --- listings

    #[test]
    fn user_assets_and_asset_users() {
        let e = estate(&[
            "allow r users=alice nodes=Prod accounts=@INPUT protocols=ssh actions=connect",
            "allow s users=bob assets=web accounts=@USER actions=upload",
            "deny d users=alice assets=db accounts=@INPUT actions=all",
        ]);
        let reference = Reference::new(&e, 0);
        assert_eq!(reference.user_assets("alice", T).unwrap(), [id(40)]);
        assert_eq!(reference.user_assets("bob", T).unwrap(), [id(40)]);
        assert_eq!(reference.asset_users("web", T).unwrap(), [id(1), id(2)]);
        assert_eq!(reference.asset_users("db", T).unwrap(), []);
    }

    #[test]
    fn user_nodes_are_holders_and_ancestors() {
        let e = one("allow r users=alice nodes=Prod");
        let nodes = Reference::new(&e, 0).user_nodes("alice", T).unwrap();
        let got: Vec<(&str, u64)> = nodes.iter().map(|n| (n.path.as_str(), n.assets)).collect();
        assert_eq!(
            got,
            [
                ("/Default", 2),
                ("/Default/Prod", 2),
                ("/Default/Prod/DB", 1)
            ]
        );
        assert_eq!(nodes[2].id, id(32));
        let mut e = one("allow r users=alice assets=db");
        asset_mut(&mut e, "db").nodes.push(id(31));
        let nodes = Reference::new(&e, 0).user_nodes("alice", T).unwrap();
        let got: Vec<(&str, u64)> = nodes.iter().map(|n| (n.path.as_str(), n.assets)).collect();
        assert_eq!(
            got,
            [
                ("/Default", 1),
                ("/Default/Prod", 1),
                ("/Default/Prod/DB", 1)
            ]
        );
    }

    #[test]
    fn user_accounts_per_protocol() {
        let e = estate(&[
            "allow r users=alice assets=web accounts=@ALL,!root,@INPUT,@USER actions=connect",
            "allow s users=alice assets=web accounts=deploy protocols=sftp actions=upload",
        ]);
        let grants = Reference::new(&e, 0)
            .user_accounts("alice", "web", T)
            .unwrap();
        let connect = Actions::CONNECT;
        let both = Actions::CONNECT.union(Actions::UPLOAD);
        let expected = |username: &str, account, protocols: Vec<(&str, Actions)>| AccountGrant {
            username: username.into(),
            account,
            actions: protocols
                .iter()
                .fold(Actions::NONE, |all, (_, a)| all.union(*a)),
            protocols: protocols
                .into_iter()
                .map(|(p, a)| (p.to_owned(), a))
                .collect(),
        };
        assert_eq!(
            grants,
            [
                expected(
                    "deploy",
                    Some(id(4001)),
                    vec![("ssh", connect), ("sftp", both)]
                ),
                expected("@INPUT", None, vec![("ssh", connect), ("sftp", connect)]),
                expected("alice", None, vec![("ssh", connect), ("sftp", connect)]),
            ]
        );
    }

    // --- roles

    #[test]
    fn effective_roles_and_permissions() {
        let mut e = estate(&[]);
        group_mut(&mut e, "dev").roles.push(RoleAssignment {
            scope: GLOBAL_SCOPE.into(),
            roles: vec!["CHECKER".into()],
        });
        group_mut(&mut e, "ops").roles.push(RoleAssignment {
            scope: "prod".into(),
            roles: vec!["system-auditor".into()],
        });
        let reference = Reference::new(&e, 0);
        let roles = |scope| reference.effective_roles("alice", scope, T).unwrap();
        assert_eq!(roles("prod"), ["CHECKER", "system-auditor", "user"]);
        assert_eq!(roles("lab"), ["CHECKER", "user"]);
        assert_eq!(
            reference.effective_roles("bob", "prod", T).unwrap(),
            ["user"]
        );
        let can = |scope, permission| reference.has_permission("alice", scope, permission, T);
        assert!(can("prod", "users.view").unwrap());
        assert!(!can("lab", "users.view").unwrap());
        assert!(
            can("lab", "decisions.check").unwrap(),
            "role names are case-insensitive"
        );
        assert!(!can("prod", "users.change").unwrap());
        assert!(
            !can("prod", "users.*").unwrap(),
            "a permission is a name, not a pattern"
        );
        let mut e = e.clone();
        group_mut(&mut e, "ops").subgroups[0].expires_at = Some(T);
        let reference = Reference::new(&e, 0);
        assert_eq!(
            reference.effective_roles("alice", "prod", T).unwrap(),
            ["CHECKER", "user"]
        );
    }
}
