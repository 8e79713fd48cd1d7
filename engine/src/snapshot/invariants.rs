//! Debug aids: the snapshot's invariants, and a canonical form that does not depend
//! on dense indexes, to compare a snapshot maintained write by write with one built
//! from the store.

use std::collections::{BTreeMap, BTreeSet};

use roaring::RoaringBitmap;

use crate::model::{EntityKind, Estate, Id, Time};
use crate::snapshot::{GroupLink, Snapshot};
use crate::write::group_closure;

/// A user's derived indexes by id: groups reached (with until), rules reaching, and
/// rules reaching only until some instant.
pub type CanonicalUser = (Vec<(Id, Time)>, BTreeSet<Id>, Vec<(Id, Time)>);

/// Everything a snapshot knows, keyed by ids: entities and derived indexes.
#[doc(hidden)]
#[derive(Debug, PartialEq)]
pub struct Canonical {
    pub estate: Estate,
    /// Per user: groups reached (with until), rules reaching, rules reaching until.
    pub users: BTreeMap<Id, CanonicalUser>,
    /// Per asset: rules naming it directly or through nodes.
    pub assets: BTreeMap<Id, BTreeSet<Id>>,
    /// Per rule: assets where it can grant something.
    pub rules: BTreeMap<Id, BTreeSet<Id>>,
    pub active_assets: BTreeSet<Id>,
    pub node_paths: BTreeMap<Id, String>,
}

impl Snapshot {
    fn group_id(&self, index: u32) -> Id {
        self.group_entry(index).expect("live group").group.id
    }
    fn asset_id(&self, index: u32) -> Id {
        self.asset_entry(index).expect("live asset").id
    }
    fn rule_id(&self, index: u32) -> Id {
        self.rule_entry(index).expect("live rule").rule.id
    }

    /// The canonical form, for comparisons.
    #[doc(hidden)]
    pub fn canonical(&self) -> Canonical {
        let mut estate = self.estate();
        estate.users.sort_by_key(|e| e.id);
        estate.groups.sort_by_key(|e| e.id);
        estate.nodes.sort_by_key(|e| e.id);
        estate.assets.sort_by_key(|e| e.id);
        estate.rules.sort_by_key(|e| e.id);
        estate.roles.sort_by_key(|e| e.id);
        estate.tokens.sort_by_key(|e| e.id);
        let ids = |bitmap: &RoaringBitmap, id: &dyn Fn(u32) -> Id| {
            bitmap.iter().map(id).collect::<BTreeSet<_>>()
        };
        let mut users = BTreeMap::new();
        let users_with_checks = self.users.iter().zip(self.user_checks.iter());
        for (entry, check) in users_with_checks.filter_map(|(e, c)| Some((e.as_ref()?, c))) {
            let mut groups: Vec<(Id, Time)> = group_closure(self, &entry.direct_groups)
                .iter()
                .map(|(g, t)| (self.group_id(*g), *t))
                .collect();
            groups.sort();
            let mut until: Vec<(Id, Time)> = check
                .rule_until
                .iter()
                .map(|(r, t)| (self.rule_id(*r), *t))
                .collect();
            until.sort();
            users.insert(
                entry.id,
                (
                    groups,
                    ids(&check.rules.to_bitmap(), &|r| self.rule_id(r)),
                    until,
                ),
            );
        }
        let assets = self
            .assets
            .iter()
            .zip(self.asset_checks.iter())
            .filter_map(|(entry, check)| {
                Some((
                    entry.as_ref()?.id,
                    ids(&check.rules.to_bitmap(), &|r| self.rule_id(r)),
                ))
            })
            .collect();
        let rules = self
            .rules
            .iter()
            .flatten()
            .map(|entry| (entry.rule.id, ids(&entry.objects, &|a| self.asset_id(a))))
            .collect();
        let node_paths = (0..self.nodes.len() as u32)
            .filter_map(|i| self.node_entry(i).map(|e| (e.node.id, self.node_path(i))))
            .collect();
        Canonical {
            estate,
            users,
            assets,
            rules,
            active_assets: ids(&self.active_assets, &|a| self.asset_id(a)),
            node_paths,
        }
    }

    /// Checks every internal invariant; describes the first broken one.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |message: String| Err(message);
        // Check records sit beside every slot; a deleted entity's is the absent one.
        if self.user_checks.len() != self.users.len()
            || self.asset_checks.len() != self.assets.len()
        {
            return fail("the check records are not beside the entity slots".to_owned());
        }
        let absent_user = |c: &super::UserCheck| {
            c.valid_until == Time::MIN
                && c.rules.is_empty()
                && c.rule_until.is_empty()
                && c.username_hash == 0
        };
        let absent_asset = |c: &super::AssetCheck| {
            !c.active && c.rules.is_empty() && c.protocols().is_empty() && c.accounts().is_empty()
        };
        let users = self.users.iter().zip(self.user_checks.iter());
        if let Some(index) = users
            .enumerate()
            .position(|(_, (entry, check))| entry.is_none() && !absent_user(check))
        {
            return fail(format!("deleted user {index} keeps a check record"));
        }
        let assets = self.assets.iter().zip(self.asset_checks.iter());
        if let Some(index) = assets
            .enumerate()
            .position(|(_, (entry, check))| entry.is_none() && !absent_asset(check))
        {
            return fail(format!("deleted asset {index} keeps a check record"));
        }
        // Ids and names resolve to the entities that hold them.
        for (id, slot) in self.ids.iter() {
            let live = match slot.kind {
                EntityKind::User => self.user_entry(slot.index).map(|e| e.id),
                EntityKind::Group => self.group_entry(slot.index).map(|e| e.group.id),
                EntityKind::Node => self.node_entry(slot.index).map(|e| e.node.id),
                EntityKind::Asset => self.asset_entry(slot.index).map(|e| e.id),
                EntityKind::Rule => self.rule_entry(slot.index).map(|e| e.rule.id),
                EntityKind::Role => self.role_entry(slot.index).map(|r| r.id),
                EntityKind::Token => self.token_entry(slot.index).map(|e| e.token.id),
            };
            if live != Some(id) {
                return fail(format!("id {id} points at slot {slot:?} holding {live:?}"));
            }
        }
        let counts = self.counts;
        let live = [
            (counts.users, self.users.iter().flatten().count()),
            (counts.groups, self.groups.iter().flatten().count()),
            (counts.nodes, self.nodes.iter().flatten().count()),
            (counts.assets, self.assets.iter().flatten().count()),
            (counts.rules, self.rules.iter().flatten().count()),
            (counts.roles, self.roles.iter().flatten().count()),
            (counts.tokens, self.tokens.iter().flatten().count()),
        ];
        if live
            .iter()
            .any(|(counted, found)| *counted as usize != *found)
            || self.ids.len() != live.iter().map(|l| l.1).sum::<usize>()
        {
            return fail(format!("counts {counts:?} disagree with live entries"));
        }
        for (index, entry) in self.users.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if self.user_index(entry.record.username()) != Some(index as u32) {
                return fail(format!(
                    "username `{}` does not resolve",
                    entry.record.username()
                ));
            }
            let head = entry.record.head();
            if head.id != entry.id {
                return fail(format!(
                    "user `{}` is filed under another id",
                    head.username
                ));
            }
            if let Some(email) = head.email {
                if self.user_by_email(email) != Some(index as u32) {
                    return fail(format!("email `{email}` does not resolve"));
                }
            }
        }
        for (index, entry) in self.groups.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if self.group_index(&entry.group.name) != Some(index as u32) {
                return fail(format!("group `{}` does not resolve", entry.group.name));
            }
        }
        for (index, entry) in self.assets.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if entry.record.id() != entry.id {
                return fail(format!(
                    "asset `{}` is filed under another id",
                    entry.record.name()
                ));
            }
            if self.asset_index(entry.record.name()) != Some(index as u32) {
                return fail(format!("asset `{}` does not resolve", entry.record.name()));
            }
        }
        for (index, entry) in self.rules.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if self.rule_index(&entry.rule.name) != Some(index as u32) {
                return fail(format!("rule `{}` does not resolve", entry.rule.name));
            }
        }
        for (index, entry) in self.nodes.iter().enumerate() {
            if entry.is_none() {
                continue;
            }
            if self.node_index(&self.node_path(index as u32)) != Some(index as u32) {
                return fail(format!(
                    "node `{}` does not resolve",
                    self.node_path(index as u32)
                ));
            }
        }
        // Each name index holds exactly the live names, and its fold map exactly the
        // forms of the live non-ASCII ones.
        fn named<'a>(
            names: impl Iterator<Item = Option<&'a str>>,
        ) -> impl Iterator<Item = (u32, &'a str)> {
            names
                .enumerate()
                .filter_map(|(index, name)| Some((index as u32, name?)))
        }
        let users = || self.users.iter().map(Option::as_ref);
        let folds = [
            (
                "usernames",
                self.user_names
                    .matches(named(users().map(|e| e.map(|e| e.record.username())))),
            ),
            (
                "emails",
                self.user_emails.matches(named(
                    users().map(|e| e.and_then(|e| e.record.head().email)),
                )),
            ),
            (
                "group names",
                self.group_names.matches(named(
                    self.groups
                        .iter()
                        .map(|e| e.as_ref().map(|e| e.group.name.as_str())),
                )),
            ),
            (
                "asset names",
                self.asset_names.matches(named(
                    self.assets
                        .iter()
                        .map(|e| e.as_ref().map(|e| e.record.name())),
                )),
            ),
            (
                "rule names",
                self.rule_names.matches(named(
                    self.rules
                        .iter()
                        .map(|e| e.as_ref().map(|e| e.rule.name.as_str())),
                )),
            ),
            (
                "role names",
                self.role_names.matches(named(
                    self.roles
                        .iter()
                        .map(|r| r.as_ref().map(|r| r.name.as_str())),
                )),
            ),
            (
                "token names",
                self.token_names.matches(named(
                    self.tokens
                        .iter()
                        .map(|e| e.as_ref().map(|e| e.token.name.as_str())),
                )),
            ),
        ];
        if let Some((names, _)) = folds.iter().find(|(_, matches)| !matches) {
            return fail(format!("the name index of {names} is stale"));
        }

        // Link indexes mirror the entities.
        let index_of =
            |kind: EntityKind, id: Id| self.slot(id).filter(|s| s.kind == kind).map(|s| s.index);
        for (group_index, entry) in self.groups.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let group_index = group_index as u32;
            let members: RoaringBitmap = entry.memberships.iter().map(|m| m.user).collect();
            if members.len() as usize != entry.memberships.len() || !entry.group.members.is_empty()
            {
                return fail(format!(
                    "group `{}` lists a member twice, or in its record",
                    entry.group.name
                ));
            }
            for member in entry.memberships.iter() {
                let Some(user) = self.user_entry(member.user) else {
                    return fail(format!(
                        "group `{}` has a member that is no user",
                        entry.group.name
                    ));
                };
                if !user
                    .direct_groups
                    .contains(&GroupLink::new(group_index, member.until()))
                {
                    return fail(format!(
                        "user `{}` misses group `{}`",
                        user.record.username(),
                        entry.group.name
                    ));
                }
            }
            for subgroup in &entry.group.subgroups {
                let Some(child) = index_of(EntityKind::Group, subgroup.group) else {
                    return fail(format!(
                        "group `{}` has a missing subgroup",
                        entry.group.name
                    ));
                };
                let until = subgroup.expires_at.unwrap_or(Time::MAX);
                if !self
                    .group_entry(child)
                    .expect("live")
                    .parents
                    .contains(&(group_index, until))
                    || !entry.subgroups.contains(&child)
                {
                    return fail(format!(
                        "subgroup edge under `{}` is stale",
                        entry.group.name
                    ));
                }
            }
            if self.group_ancestors(group_index).contains(group_index) {
                return fail(format!("group `{}` is nested in itself", entry.group.name));
            }
        }
        let mut linked: BTreeMap<u32, usize> = BTreeMap::new();
        for group in self.groups.iter().flatten() {
            for member in group.memberships.iter() {
                *linked.entry(member.user).or_default() += 1;
            }
        }
        for (index, entry) in self.users.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if linked.get(&(index as u32)).copied().unwrap_or(0) != entry.direct_groups.len() {
                return fail(format!(
                    "user `{}` has stale groups",
                    entry.record.username()
                ));
            }
        }
        let mut direct_user_rules: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        let mut group_rules: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        let mut asset_rules: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        let mut node_rules: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        for (rule_index, entry) in self.rules.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let rule_index = rule_index as u32;
            let rule = &entry.rule;
            let resolve = |kind, ids: &[Id]| {
                ids.iter()
                    .map(|id| index_of(kind, *id))
                    .collect::<Option<Vec<u32>>>()
            };
            let users = resolve(EntityKind::User, &rule.users);
            let groups = resolve(EntityKind::Group, &rule.groups);
            let assets = resolve(EntityKind::Asset, &rule.assets);
            let nodes = resolve(EntityKind::Node, &rule.nodes);
            if users.as_deref() != Some(&*entry.users)
                || groups.as_deref() != Some(&*entry.groups)
                || assets.as_deref() != Some(&*entry.assets)
                || nodes.as_deref() != Some(&*entry.nodes)
            {
                return fail(format!("rule `{}` has stale links", rule.name));
            }
            if entry.compiled != crate::snapshot::CompiledRule::new(rule, &mut self.symbols.clone())
            {
                return fail(format!("rule `{}` is compiled stale", rule.name));
            }
            for &u in &*entry.users {
                direct_user_rules.entry(u).or_default().insert(rule_index);
            }
            for &g in &*entry.groups {
                group_rules.entry(g).or_default().insert(rule_index);
            }
            for &a in &*entry.assets {
                asset_rules.entry(a).or_default().insert(rule_index);
            }
            for &n in &*entry.nodes {
                node_rules.entry(n).or_default().insert(rule_index);
            }
        }
        let empty = RoaringBitmap::new();
        for (index, entry) in self.users.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if *entry.direct_rules.get()
                != *direct_user_rules.get(&(index as u32)).unwrap_or(&empty)
            {
                return fail(format!(
                    "user `{}` direct rules are stale",
                    entry.record.username()
                ));
            }
            let check = self.user_check(index as u32).expect("checked beside");
            if check.valid_until != super::UserCheck::valid_until_of(&entry.record.unpack())
                || check.username_hash != super::UserCheck::name_hash(entry.record.username())
            {
                return fail(format!(
                    "user `{}` check record is stale",
                    entry.record.username()
                ));
            }
        }
        for (index, entry) in self.groups.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if *entry.rules.get() != *group_rules.get(&(index as u32)).unwrap_or(&empty) {
                return fail(format!("group `{}` rules are stale", entry.group.name));
            }
        }
        for (index, entry) in self.nodes.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let index = index as u32;
            if entry.rules != *node_rules.get(&index).unwrap_or(&empty) {
                return fail(format!("node `{}` rules are stale", entry.node.name));
            }
            let parent = entry
                .node
                .parent
                .and_then(|p| index_of(EntityKind::Node, p));
            if parent != entry.parent
                || parent
                    .is_some_and(|p| !self.node_entry(p).expect("live").children.contains(&index))
            {
                return fail(format!("node `{}` parent link is stale", entry.node.name));
            }
            let assets: RoaringBitmap = self
                .assets
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    a.as_ref()
                        .is_some_and(|a| a.record.unpack().nodes.contains(&entry.node.id))
                })
                .map(|(i, _)| i as u32)
                .collect();
            if assets != entry.assets {
                return fail(format!("node `{}` asset bitmap is stale", entry.node.name));
            }
        }
        let mut active = RoaringBitmap::new();
        for (index, entry) in self.assets.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let index = index as u32;
            let asset = entry.record.unpack();
            if asset.active {
                active.insert(index);
            }
            let check = self.asset_check(index).expect("checked beside");
            let expected =
                super::AssetCheck::of(&asset, check.rules.clone(), &mut self.symbols.clone());
            if (check.active, check.protocols(), check.accounts())
                != (expected.active, expected.protocols(), expected.accounts())
            {
                return fail(format!(
                    "asset `{}` check record is stale",
                    entry.record.name()
                ));
            }
            if *entry.direct_rules.get() != *asset_rules.get(&index).unwrap_or(&empty) {
                return fail(format!(
                    "asset `{}` direct rules are stale",
                    entry.record.name()
                ));
            }
            let nodes: Option<Vec<u32>> = asset
                .nodes
                .iter()
                .map(|n| index_of(EntityKind::Node, *n))
                .collect();
            if nodes.as_deref() != Some(&*entry.nodes) {
                return fail(format!(
                    "asset `{}` node links are stale",
                    entry.record.name()
                ));
            }
        }
        if active != *self.active_assets {
            return fail("the active asset bitmap is stale".to_owned());
        }

        // Derived indexes equal a recomputation from the links.
        for (entry, check) in self
            .users
            .iter()
            .zip(self.user_checks.iter())
            .filter_map(|(e, c)| Some((e.as_ref()?, c)))
        {
            let closure = group_closure(self, &entry.direct_groups);
            let mut rules = entry.direct_rules.get().clone();
            let mut until: BTreeMap<u32, Time> = BTreeMap::new();
            for &(group, group_until) in &closure {
                let group = self.group_entry(group).expect("live");
                rules |= group.rules.get();
                for rule in group.rules.iter() {
                    if !entry.direct_rules.contains(rule) {
                        let best = until.entry(rule).or_insert(Time::MIN);
                        *best = (*best).max(group_until);
                    }
                }
            }
            let until: Vec<(u32, Time)> =
                until.into_iter().filter(|(_, t)| *t != Time::MAX).collect();
            if rules != check.rules.to_bitmap() || *until != *check.rule_until {
                return fail(format!(
                    "user `{}` rules are stale",
                    entry.record.username()
                ));
            }
        }
        let mut objects: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        for (index, entry) in self.assets.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let index = index as u32;
            let mut rules = entry.direct_rules.get().clone();
            for &node in &entry.nodes {
                for ancestor in self.node_ancestry(node) {
                    rules |= &self.node_entry(ancestor).expect("live").rules;
                }
            }
            let check = self.asset_check(index).expect("checked beside");
            if rules != check.rules.to_bitmap() {
                return fail(format!("asset `{}` rules are stale", entry.record.name()));
            }
            for rule in &rules {
                if self
                    .rule_entry(rule)
                    .expect("live")
                    .effective_on(&entry.record.unpack())
                {
                    objects.entry(rule).or_default().insert(index);
                }
            }
        }
        for (index, entry) in self.rules.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if entry.objects != *objects.get(&(index as u32)).unwrap_or(&empty) {
                return fail(format!("rule `{}` objects are stale", entry.rule.name));
            }
        }
        let n_accounts: usize = self
            .assets
            .iter()
            .flatten()
            .map(|e| e.record.unpack().accounts.len())
            .sum();
        if n_accounts != self.account_ids.len() {
            return fail("two accounts share an id, or the account index is stale".to_owned());
        }
        for (index, entry) in self.assets.iter().enumerate() {
            let Some(entry) = entry else { continue };
            for account in &entry.record.unpack().accounts {
                if self.account_ids.get(&account.id) != Some(index as u32) {
                    return fail(format!("account `{}` does not resolve", account.id));
                }
            }
        }
        for (hash, index) in self.token_hashes.iter() {
            if self.token_entry(index).map(|e| e.hash) != Some(hash) {
                return fail("a token hash points at the wrong token".to_owned());
            }
        }
        Ok(())
    }
}
