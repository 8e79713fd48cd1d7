//! The fast evaluator: answers from the snapshot's bitmaps.
//!
//! A check intersects the rules that reach the user with the rules that reach the
//! asset, and filters the survivors by account, protocol and time: no allocation
//! (up to four matching rules), no lock, no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::error::NotFound;
use crate::eval::{
    AccountGrant, Decision, Evaluator, Explanation, NodeGrant, Query, Reason, RuleIds, RuleVerdict,
};
use crate::model::{
    ANON_ACCOUNT, Actions, Asset, Effect, EntityKind, GLOBAL_SCOPE, INPUT_ACCOUNT, Id, Time,
};
use crate::snapshot::{AccountRef, Snapshot, UserCheck, UserEntry, same_name};
use crate::write::group_closure;

/// A user's dense index in one snapshot lineage. Valid for the snapshot it came from
/// and every later one while the user exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserIdx(u32);

/// An asset's dense index, like [`UserIdx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssetIdx(u32);

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Page<T> {
    /// How many items the whole list holds.
    pub total: u64,
    pub items: Vec<T>,
}

/// The span of instants in which a rule applies to a user: `[start, end)`.
fn applying_span(
    starts_at: Time,
    expires_at: Option<Time>,
    membership_until: Time,
) -> (Time, Time) {
    (
        starts_at,
        expires_at.unwrap_or(Time::MAX).min(membership_until),
    )
}

impl Snapshot {
    /// The dense index of a user (by username or id), for repeated checks.
    pub fn user_idx(&self, reference: &str) -> Option<UserIdx> {
        self.user_index(reference).map(UserIdx)
    }

    /// The dense index of an asset (by name or id), for repeated checks.
    pub fn asset_idx(&self, reference: &str) -> Option<AssetIdx> {
        self.asset_index(reference).map(AssetIdx)
    }

    /// A check by dense indexes: the fastest path. An index whose entity has been
    /// deleted gets a denial.
    #[inline]
    pub fn check_idx(
        &self,
        user: UserIdx,
        asset: AssetIdx,
        account: &str,
        protocol: &str,
        action: Actions,
        at: Time,
    ) -> Decision {
        self.decide(user.0, asset.0, account, protocol, action, at)
    }

    #[inline]
    pub(crate) fn decide(
        &self,
        user_index: u32,
        asset_index: u32,
        account: &str,
        protocol: &str,
        action: Actions,
        at: Time,
    ) -> Decision {
        let mut decision = Decision {
            allowed: false,
            actions: Actions::NONE,
            rules: RuleIds::default(),
            revision: self.revision,
            valid_until: None,
        };
        let (Some(user), Some(asset)) =
            (self.user_check(user_index), self.asset_check(asset_index))
        else {
            return decision;
        };
        if at >= user.valid_until || !asset.active {
            return decision;
        }
        let mut valid_until = user.valid_until;
        let mut allowed = Actions::NONE;
        let mut denied = Actions::NONE;
        let offered = self
            .symbols
            .get(protocol)
            .filter(|symbol| asset.protocols().contains(symbol));
        if let Some(protocol) = offered {
            let account_ref = AccountRef::of(account, &self.symbols);
            let account_hash = std::cell::OnceCell::new();
            for rule_index in user.rules.common(&asset.rules) {
                let Some(entry) = self.rule_entry(rule_index) else {
                    continue;
                };
                let rule = &entry.compiled;
                if !rule.complete
                    || !rule.allows_protocol(protocol)
                    || !rule
                        .accounts
                        .matches_symbol(account_ref, asset.accounts(), || {
                            *account_hash.get_or_init(|| UserCheck::name_hash(account))
                                == user.username_hash
                                && self
                                    .user_entry(user_index)
                                    .is_some_and(|entry| entry.record.username() == account)
                        })
                {
                    continue;
                }
                let (start, end) =
                    applying_span(rule.starts_at, rule.expires_at, user.rule_until(rule_index));
                if start >= end || at >= end {
                    continue;
                }
                if at < start {
                    valid_until = valid_until.min(start);
                    continue;
                }
                valid_until = valid_until.min(end);
                match rule.effect {
                    Effect::Allow => allowed = allowed.union(rule.actions),
                    Effect::Deny => denied = denied.union(rule.actions),
                }
                decision.rules.push(rule.id);
            }
        }
        decision.actions = allowed.difference(denied);
        decision.allowed = !action.is_empty() && decision.actions.contains(action);
        decision.valid_until = (valid_until != Time::MAX).then_some(valid_until);
        decision
    }

    /// Many checks against this one snapshot: each answer, or why none could be given.
    pub fn check_batch(&self, queries: &[Query<'_>]) -> Vec<Result<Decision, NotFound>> {
        queries.iter().map(|query| self.check(query)).collect()
    }

    fn user_or_err(&self, reference: &str) -> Result<u32, NotFound> {
        self.user_index(reference)
            .ok_or_else(|| NotFound::new(EntityKind::User, reference))
    }

    fn asset_or_err(&self, reference: &str) -> Result<u32, NotFound> {
        self.asset_index(reference)
            .ok_or_else(|| NotFound::new(EntityKind::Asset, reference))
    }

    /// Whether some account and protocol grant the user some action on the asset:
    /// tried with the asset's accounts, the two virtual ones and the user's own name
    /// (`candidate_accounts`), read from the check records and the symbol table.
    fn reaches(&self, user_index: u32, asset_index: u32, at: Time) -> bool {
        let (Some(user), Some(asset)) =
            (self.user_entry(user_index), self.asset_check(asset_index))
        else {
            return false;
        };
        let username = user.record.username();
        let own_account = match self.symbols.get(username) {
            Some(symbol) if asset.accounts().contains(&symbol) => None,
            _ => Some(username),
        };
        let accounts = (asset.accounts().iter().map(|&s| self.symbols.name(s)))
            .chain([INPUT_ACCOUNT, ANON_ACCOUNT])
            .chain(own_account);
        accounts.into_iter().any(|account| {
            asset.protocols().iter().any(|&protocol| {
                !self
                    .decide(
                        user_index,
                        asset_index,
                        account,
                        self.symbols.name(protocol),
                        Actions::ALL,
                        at,
                    )
                    .actions
                    .is_empty()
            })
        })
    }

    /// The assets a user may reach at `at`, as a bitmap of dense indexes.
    fn reachable_assets(&self, user_index: u32, at: Time) -> RoaringBitmap {
        let Some(user) = self.user_check(user_index) else {
            return RoaringBitmap::new();
        };
        if at >= user.valid_until {
            return RoaringBitmap::new();
        }
        let mut allowed = RoaringBitmap::new();
        let mut denials = Vec::new();
        for rule_index in user.rules.iter() {
            let Some(entry) = self.rule_entry(rule_index) else {
                continue;
            };
            let rule = &entry.rule;
            let (start, end) =
                applying_span(rule.starts_at, rule.expires_at, user.rule_until(rule_index));
            if !entry.compiled.complete || at < start || at >= end {
                continue;
            }
            match rule.effect {
                Effect::Allow => allowed |= &entry.objects,
                Effect::Deny => denials.push(rule_index),
            }
        }
        allowed &= &*self.active_assets;
        // Where a deny rule could take something away, decide asset by asset.
        let mut suspects = RoaringBitmap::new();
        for rule_index in denials {
            if let Some(entry) = self.rule_entry(rule_index) {
                suspects |= &entry.objects;
            }
        }
        suspects &= &allowed;
        for asset_index in &suspects {
            if !self.reaches(user_index, asset_index, at) {
                allowed.remove(asset_index);
            }
        }
        allowed
    }

    /// A page of the assets a user may reach, optionally only those under `node`, in
    /// a stable order (creation order within a process).
    pub fn user_assets_page(
        &self,
        user: &str,
        node: Option<&str>,
        at: Time,
        offset: u64,
        limit: usize,
    ) -> Result<Page<std::sync::Arc<crate::model::Asset>>, NotFound> {
        let user_index = self.user_or_err(user)?;
        let mut assets = self.reachable_assets(user_index, at);
        if let Some(node) = node {
            let node_index = self
                .node_index(node)
                .ok_or_else(|| NotFound::new(EntityKind::Node, node))?;
            assets &= self.subtree_assets(node_index);
        }
        let total = assets.len();
        let items = assets
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit)
            .filter_map(|i| self.asset_entry(i).map(|e| Arc::new(e.record.unpack())))
            .collect();
        Ok(Page { total, items })
    }

    /// How many assets a user may reach (the length of `user_assets`).
    pub fn user_asset_count(&self, user: UserIdx, at: Time) -> u64 {
        self.reachable_assets(user.0, at).len()
    }

    fn user_nodes_of(&self, user_index: u32, at: Time) -> Vec<NodeGrant> {
        let assets = self.reachable_assets(user_index, at);
        let mut counts: HashMap<u32, u64> = HashMap::new();
        let mut seen = Vec::new();
        for asset_index in &assets {
            let Some(asset) = self.asset_entry(asset_index) else {
                continue;
            };
            seen.clear();
            for &node in &asset.nodes {
                for ancestor in self.node_ancestry(node) {
                    if seen.contains(&ancestor) {
                        break;
                    }
                    seen.push(ancestor);
                }
            }
            for &node in &seen {
                *counts.entry(node).or_default() += 1;
            }
        }
        let mut nodes: Vec<NodeGrant> = counts
            .into_iter()
            .filter_map(|(index, assets)| {
                let entry = self.node_entry(index)?;
                Some(NodeGrant {
                    id: entry.node.id,
                    path: self.node_path(index),
                    assets,
                })
            })
            .collect();
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
        nodes
    }

    fn users_reaching(&self, asset_index: u32, at: Time) -> RoaringBitmap {
        let mut users = RoaringBitmap::new();
        let Some(check) = self.asset_check(asset_index) else {
            return users;
        };
        if !check.active {
            return users;
        }
        let mut candidates = RoaringBitmap::new();
        for rule_index in check.rules.iter() {
            let Some(entry) = self.rule_entry(rule_index) else {
                continue;
            };
            let rule = &entry.rule;
            if !entry.compiled.complete
                || rule.effect == Effect::Deny
                || !rule.in_force(at)
                || !entry.objects.contains(asset_index)
            {
                continue;
            }
            candidates.extend(entry.users.iter().copied());
            for &group in &*entry.groups {
                candidates |= self.group_all_members(group);
            }
        }
        for user_index in &candidates {
            if self.reaches(user_index, asset_index, at) {
                users.insert(user_index);
            }
        }
        users
    }

    /// A page of the users who may reach an asset, in a stable order.
    pub fn asset_users_page(
        &self,
        asset: &str,
        at: Time,
        offset: u64,
        limit: usize,
    ) -> Result<Page<std::sync::Arc<crate::model::User>>, NotFound> {
        let asset_index = self.asset_or_err(asset)?;
        let users = self.users_reaching(asset_index, at);
        let items = users
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit)
            .filter_map(|i| self.user_entry(i).map(|e| Arc::new(e.record.unpack())))
            .collect();
        Ok(Page {
            total: users.len(),
            items,
        })
    }

    /// The shortest chain of group names from one of the user's groups to one of
    /// `targets`, through memberships counting at `at`.
    fn group_path(&self, user: &UserEntry, targets: &[u32], at: Time) -> Vec<String> {
        let mut previous: HashMap<u32, Option<u32>> = HashMap::new();
        let mut queue = std::collections::VecDeque::new();
        for link in &user.direct_groups {
            let group = link.group;
            if at < link.until() && !previous.contains_key(&group) {
                previous.insert(group, None);
                queue.push_back(group);
            }
        }
        while let Some(group) = queue.pop_front() {
            if targets.contains(&group) {
                let mut chain = Vec::new();
                let mut current = Some(group);
                while let Some(index) = current {
                    if let Some(entry) = self.group_entry(index) {
                        chain.push(entry.group.name.clone());
                    }
                    current = previous.get(&index).copied().flatten();
                }
                chain.reverse();
                return chain;
            }
            let Some(entry) = self.group_entry(group) else {
                continue;
            };
            for &(parent, until) in &entry.parents {
                if at < until && !previous.contains_key(&parent) {
                    previous.insert(parent, Some(group));
                    queue.push_back(parent);
                }
            }
        }
        Vec::new()
    }

    fn explain_indexes(&self, user_index: u32, asset_index: u32, query: &Query<'_>) -> Explanation {
        let decision = self.decide(
            user_index,
            asset_index,
            query.account,
            query.protocol,
            query.action,
            query.at,
        );
        let user = self.user_entry(user_index).expect("resolved");
        let user_record = user.record.unpack();
        let asset = self
            .asset_entry(asset_index)
            .expect("resolved")
            .record
            .unpack();
        let user_check = self.user_check(user_index).expect("resolved");
        let asset_check = self.asset_check(asset_index).expect("resolved");
        let at = query.at;
        let mut rules = Vec::new();
        for rule_index in user_check.rules.common(&asset_check.rules) {
            if user_check.rule_until(rule_index) <= at {
                continue;
            }
            let Some(entry) = self.rule_entry(rule_index) else {
                continue;
            };
            let rule = &*entry.rule;
            let failure = if !rule.active {
                Some(Reason::RuleInactive)
            } else if rule.accounts.is_empty() {
                Some(Reason::AccountNotGranted)
            } else if rule.actions.is_empty() {
                Some(Reason::ActionNotGranted)
            } else if at < rule.starts_at {
                Some(Reason::NotStarted)
            } else if rule.expires_at.is_some_and(|e| at >= e) {
                Some(Reason::Expired)
            } else if !rule.protocols.allows(query.protocol) {
                Some(Reason::ProtocolNotGranted)
            } else if !asset.offers(query.protocol) {
                Some(Reason::ProtocolNotOffered)
            } else if !entry
                .compiled
                .accounts
                .matches(query.account, &asset, &user_record.username)
            {
                Some(Reason::AccountNotGranted)
            } else {
                None
            };
            let applied = failure.is_none();
            let reason = match (failure, rule.effect) {
                (Some(reason), _) => Some(reason),
                (None, Effect::Allow) => {
                    (!rule.actions.contains(query.action)).then_some(Reason::ActionNotGranted)
                }
                (None, Effect::Deny) => (!rule.actions.intersection(query.action).is_empty())
                    .then_some(Reason::DeniedBy),
            };
            let via = if entry.users.contains(&user_index) {
                Vec::new()
            } else {
                self.group_path(user, &entry.groups, at)
            };
            rules.push(RuleVerdict {
                rule: rule.id,
                name: rule.name.clone(),
                effect: rule.effect,
                applied,
                reason,
                actions: rule.actions,
                via,
            });
        }
        rules.sort_by(|a, b| a.name.cmp(&b.name).then(a.rule.cmp(&b.rule)));
        let reasons = if decision.allowed {
            Vec::new()
        } else if !user_record.active {
            vec![Reason::UserInactive]
        } else if !user_record.is_valid_at(at) {
            vec![Reason::UserExpired]
        } else if !asset.active {
            vec![Reason::AssetInactive]
        } else if rules.is_empty() {
            vec![Reason::NoRule]
        } else if rules
            .iter()
            .any(|r| r.applied && r.reason == Some(Reason::DeniedBy))
        {
            vec![Reason::DeniedBy]
        } else {
            let mut reasons: Vec<Reason> = rules
                .iter()
                .filter(|r| r.effect == Effect::Allow || !r.applied)
                .filter_map(|r| r.reason)
                .collect();
            reasons.sort();
            reasons.dedup();
            if reasons.is_empty() {
                reasons.push(Reason::ActionNotGranted);
            }
            reasons
        };
        Explanation {
            decision,
            reasons,
            rules,
        }
    }
}

impl Evaluator for Snapshot {
    fn check(&self, query: &Query<'_>) -> Result<Decision, NotFound> {
        let (user, asset) = self.user_and_asset(query.user, query.asset);
        let user = user.ok_or_else(|| NotFound::new(EntityKind::User, query.user))?;
        let asset = asset.ok_or_else(|| NotFound::new(EntityKind::Asset, query.asset))?;
        Ok(self.decide(
            user,
            asset,
            query.account,
            query.protocol,
            query.action,
            query.at,
        ))
    }

    fn explain(&self, query: &Query<'_>) -> Result<Explanation, NotFound> {
        let user = self.user_or_err(query.user)?;
        let asset = self.asset_or_err(query.asset)?;
        Ok(self.explain_indexes(user, asset, query))
    }

    fn user_assets(&self, user: &str, at: Time) -> Result<Vec<Id>, NotFound> {
        let user = self.user_or_err(user)?;
        Ok(self
            .reachable_assets(user, at)
            .iter()
            .filter_map(|i| self.asset_entry(i).map(|e| e.id))
            .collect())
    }

    fn user_nodes(&self, user: &str, at: Time) -> Result<Vec<NodeGrant>, NotFound> {
        let user = self.user_or_err(user)?;
        Ok(self.user_nodes_of(user, at))
    }

    fn user_accounts(
        &self,
        user: &str,
        asset: &str,
        at: Time,
    ) -> Result<Vec<AccountGrant>, NotFound> {
        let user_index = self.user_or_err(user)?;
        let asset_index = self.asset_or_err(asset)?;
        let user = self.user_entry(user_index).expect("resolved");
        let asset = self
            .asset_entry(asset_index)
            .expect("resolved")
            .record
            .unpack();
        let mut grants = Vec::new();
        for (account, id) in candidate_accounts(&asset, user.record.username()) {
            let mut grant = AccountGrant {
                username: account.to_owned(),
                account: id,
                actions: Actions::NONE,
                protocols: Vec::new(),
            };
            for protocol in &asset.protocols {
                let actions = self
                    .decide(
                        user_index,
                        asset_index,
                        account,
                        protocol.name(),
                        Actions::ALL,
                        at,
                    )
                    .actions;
                if !actions.is_empty() {
                    grant.actions = grant.actions.union(actions);
                    grant.protocols.push((protocol.name().to_owned(), actions));
                }
            }
            if !grant.actions.is_empty() {
                grants.push(grant);
            }
        }
        Ok(grants)
    }

    fn asset_users(&self, asset: &str, at: Time) -> Result<Vec<Id>, NotFound> {
        let asset = self.asset_or_err(asset)?;
        Ok(self
            .users_reaching(asset, at)
            .iter()
            .filter_map(|i| self.user_entry(i).map(|e| e.id))
            .collect())
    }

    fn effective_roles(&self, user: &str, scope: &str, at: Time) -> Result<Vec<String>, NotFound> {
        let user = self.user_entry(self.user_or_err(user)?).expect("resolved");
        let mut roles: Vec<String> = user.record.unpack().system_roles;
        for (group, until) in group_closure(self, &user.direct_groups) {
            if at >= until {
                continue;
            }
            let Some(group) = self.group_entry(group) else {
                continue;
            };
            for assignment in &group.group.roles {
                if assignment.scope == scope || assignment.scope == GLOBAL_SCOPE {
                    roles.extend(assignment.roles.iter().cloned());
                }
            }
        }
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    fn role_grants(&self, role: &str, permission: &str) -> bool {
        self.role_index(role)
            .and_then(|i| self.role_entry(i))
            .is_some_and(|entry| {
                same_name(&entry.name, role) && entry.permissions.iter().any(|p| p == permission)
            })
    }
}

/// The account names worth trying on an asset for a user: its accounts, the two
/// virtual ones, and the user's own name when the asset has no such account.
fn candidate_accounts<'a>(asset: &'a Asset, username: &'a str) -> Vec<(&'a str, Option<Id>)> {
    let mut accounts: Vec<(&str, Option<Id>)> = asset
        .accounts
        .iter()
        .map(|a| (a.username.as_str(), Some(a.id)))
        .collect();
    accounts.push((INPUT_ACCOUNT, None));
    accounts.push((ANON_ACCOUNT, None));
    if asset.account(username).is_none() {
        accounts.push((username, None));
    }
    accounts
}
