//! A snapshot under change: entity puts that keep every link index in step, dirty
//! marks, and the recomputation of derived indexes for what is dirty.
//!
//! Every change to the estate goes through one `set_*` function per kind, with the
//! old and the new entity: creation is `None → Some`, deletion `Some → None`. The
//! function updates the link indexes (who is in which group, which rule names what)
//! by diffing old and new, and marks dirty the users and assets whose derived
//! indexes may change. [`Working::finish`] recomputes exactly those (assets in
//! `derive`). Building a snapshot from the store is the same code with everything new.

mod derive;

use std::collections::BTreeSet;
use std::sync::Arc;

use roaring::RoaringBitmap;
use smallvec::SmallVec;

use crate::model::{
    Asset, ChangeRecord, EntityKind, Group, Id, Node, Operation, Payload, Role, Rule, Time, Token,
    User, UserMember,
};
use crate::snapshot::{
    AssetCheck, AssetEntry, CompiledRule, GroupEntry, GroupLink, Member, NodeEntry, Packed,
    RuleEntry, Slot, Snapshot, SparseBitmap, TokenEntry, UserCheck, UserEntry, UserRules,
};

/// What a write will store besides the entities: password hashes and token hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretWrite {
    Password { user: Id, hash: Option<String> },
    TokenHash { token: Id, hash: Option<[u8; 32]> },
}

/// A rule's references as dense indexes.
#[derive(Default)]
struct RuleLinks {
    users: Box<[u32]>,
    groups: Box<[u32]>,
    assets: Box<[u32]>,
    nodes: Box<[u32]>,
}

/// A finished write: the new snapshot and what the store must write for it.
pub(crate) struct Finished {
    pub(crate) snapshot: Snapshot,
    pub(crate) changes: Vec<ChangeRecord>,
    pub(crate) touched: BTreeSet<(EntityKind, Id)>,
    pub(crate) memberships: Vec<MembershipWrite>,
    pub(crate) secrets: Vec<SecretWrite>,
}

/// One direct user membership written on its own (see [`Working::set_membership`]):
/// the store writes the membership, not the group's whole member list.
pub(crate) struct MembershipWrite {
    pub(crate) group: Id,
    pub(crate) user: Id,
    /// The membership afterwards; `None`: it ended.
    pub(crate) member: Option<crate::model::UserMember>,
}

/// A working copy's state at one moment: see [`Working::checkpoint`].
pub(crate) struct Checkpoint {
    snap: Snapshot,
    changes: usize,
    secrets: usize,
    memberships: usize,
    touched: BTreeSet<(EntityKind, Id)>,
}

pub(crate) struct Working {
    pub(crate) snap: Snapshot,
    pub(crate) now: Time,
    pub(crate) actor: String,
    /// What the write being applied may grant (`super::Actor::authority`).
    pub(crate) authority: super::Authority,
    dirty_users: RoaringBitmap,
    dirty_assets: RoaringBitmap,
    /// Nodes whose whole subtree is in `dirty_assets`: marking one again, or a node
    /// below it, adds nothing (an asset entering the subtree later marks itself). A
    /// rebuild names the same high nodes in thousands of rules, each of which unioned
    /// a quarter of the estate into `dirty_assets` again. Cleared with
    /// `dirty_assets`, and when a node moves (its old marks no longer cover it).
    marked_nodes: RoaringBitmap,
    /// Change records, without revision and sequence numbers yet.
    pub(crate) changes: Vec<ChangeRecord>,
    /// Entities whose stored record must be rewritten (or deleted) on commit; for a
    /// group, with its whole member list.
    pub(crate) touched: BTreeSet<(EntityKind, Id)>,
    /// Memberships written one by one, in order; the store writes the group's record
    /// (without members) and these, unless `touched` rewrites the whole group.
    pub(crate) memberships: Vec<MembershipWrite>,
    pub(crate) secrets: Vec<SecretWrite>,
    /// Whether to record changes (not when building from the store).
    record: bool,
    /// What a plaintext password an edit sets must meet, and how it is hashed.
    pub(crate) credentials: Arc<crate::CredentialPolicy>,
}

fn ids_diff<'a>(old: &'a [u32], new: &'a [u32]) -> (Vec<u32>, Vec<u32>) {
    let removed = old.iter().copied().filter(|i| !new.contains(i)).collect();
    let added = new.iter().copied().filter(|i| !old.contains(i)).collect();
    (removed, added)
}

impl Working {
    pub(crate) fn new(snap: Snapshot, now: Time, actor: &str) -> Working {
        Working {
            snap,
            now,
            actor: actor.to_owned(),
            authority: super::Authority::Full,
            dirty_users: RoaringBitmap::new(),
            dirty_assets: RoaringBitmap::new(),
            marked_nodes: RoaringBitmap::new(),
            changes: Vec::new(),
            touched: BTreeSet::new(),
            memberships: Vec::new(),
            secrets: Vec::new(),
            record: true,
            credentials: crate::credentials::default_policy(),
        }
    }

    /// A working copy that records nothing: for building from the store.
    pub(crate) fn unrecorded(snap: Snapshot) -> Working {
        let mut working = Working::new(snap, Time::MIN, "");
        working.record = false;
        working
    }

    fn record<T: serde::Serialize>(
        &mut self,
        entity: EntityKind,
        id: Id,
        before: Option<&T>,
        after: Option<&T>,
    ) {
        let (before, after) = (before.map(Payload::record), after.map(Payload::record));
        self.record_payloads(entity, id, before, after);
    }

    /// [`Working::record`] of a packed entity (a user, an asset): its bytes are the
    /// change record's side as they are, not encoded again.
    fn record_packed<T>(
        &mut self,
        entity: EntityKind,
        id: Id,
        before: Option<&Packed<T>>,
        after: Option<&Packed<T>>,
    ) {
        let side = |packed: &Packed<T>| Payload::Record(packed.bytes().to_vec());
        self.record_payloads(entity, id, before.map(side), after.map(side));
    }

    fn record_payloads(
        &mut self,
        entity: EntityKind,
        id: Id,
        before: Option<Payload>,
        after: Option<Payload>,
    ) {
        let operation = match (&before, &after) {
            (None, Some(_)) => Operation::Create,
            (Some(_), None) => Operation::Delete,
            _ => Operation::Update,
        };
        if self.push_change(entity, id, operation, before, after) {
            self.touched.insert((entity, id));
        }
    }

    /// Names the last change record of entity `id` by `operation` instead of the
    /// `Update` its `set_*` recorded (an adoption, a release).
    pub(crate) fn relabel_change(&mut self, entity: EntityKind, id: Id, operation: Operation) {
        if let Some(change) = self
            .changes
            .iter_mut()
            .rev()
            .find(|c| c.entity == entity && c.id == id && c.operation == Operation::Update)
        {
            change.operation = operation;
        }
    }

    /// An [`Operation::Event`] record: nothing changed, `what` happened to `id`.
    pub(crate) fn record_event(&mut self, entity: EntityKind, id: Id, what: &serde_json::Value) {
        let what = Payload::Json(what.to_string());
        self.push_change(entity, id, Operation::Event, None, Some(what));
    }

    /// Appends one change record, unless this working copy keeps none (a rebuild).
    /// Whether it did.
    fn push_change(
        &mut self,
        entity: EntityKind,
        id: Id,
        operation: Operation,
        before: Option<Payload>,
        after: Option<Payload>,
    ) -> bool {
        if !self.record {
            return false;
        }
        self.changes.push(ChangeRecord {
            revision: 0,
            seq: 0,
            time: self.now,
            actor: self.actor.clone(),
            entity,
            id,
            operation,
            before,
            after,
        });
        true
    }

    fn register(&mut self, kind: EntityKind, id: Id, index: u32) {
        self.snap.ids.insert(id, Slot { kind, index });
        *self.snap.counts.get_mut(kind) += 1;
    }

    fn unregister(&mut self, kind: EntityKind, id: Id) {
        self.snap.ids.remove(&id);
        *self.snap.counts.get_mut(kind) -= 1;
    }

    fn user_mut(&mut self, index: u32) -> &mut UserEntry {
        let slot = self.snap.users.get_mut(index as usize);
        Arc::make_mut(
            slot.and_then(Option::as_mut)
                .expect("INVARIANT: linked user exists"),
        )
    }

    pub(super) fn user_check_mut(&mut self, index: u32) -> &mut UserCheck {
        self.snap
            .user_checks
            .get_mut(index as usize)
            .expect("INVARIANT: a user's check record exists beside its slot")
    }

    pub(super) fn asset_check_mut(&mut self, index: u32) -> &mut AssetCheck {
        self.snap
            .asset_checks
            .get_mut(index as usize)
            .expect("INVARIANT: an asset's check record exists beside its slot")
    }

    fn group_mut(&mut self, index: u32) -> &mut GroupEntry {
        let slot = self.snap.groups.get_mut(index as usize);
        Arc::make_mut(
            slot.and_then(Option::as_mut)
                .expect("INVARIANT: linked group exists"),
        )
    }

    fn node_mut(&mut self, index: u32) -> &mut NodeEntry {
        let slot = self.snap.nodes.get_mut(index as usize);
        Arc::make_mut(
            slot.and_then(Option::as_mut)
                .expect("INVARIANT: linked node exists"),
        )
    }

    fn asset_mut(&mut self, index: u32) -> &mut AssetEntry {
        let slot = self.snap.assets.get_mut(index as usize);
        Arc::make_mut(
            slot.and_then(Option::as_mut)
                .expect("INVARIANT: linked asset exists"),
        )
    }

    fn rule_mut(&mut self, index: u32) -> &mut RuleEntry {
        let slot = self.snap.rules.get_mut(index as usize);
        Arc::make_mut(
            slot.and_then(Option::as_mut)
                .expect("INVARIANT: linked rule exists"),
        )
    }

    fn index_of(&self, kind: EntityKind, id: Id) -> u32 {
        match self.snap.slot(id) {
            Some(slot) if slot.kind == kind => slot.index,
            _ => panic!("INVARIANT: resolved {kind} {id} exists"),
        }
    }

    fn indexes(&self, kind: EntityKind, ids: &[Id]) -> Box<[u32]> {
        ids.iter().map(|id| self.index_of(kind, *id)).collect()
    }

    /// Users in the group or nested in it: their closures change with the group's.
    fn mark_group_members(&mut self, group: u32) {
        let members = self.snap.group_all_members(group);
        self.dirty_users |= members;
    }

    fn mark_node_assets(&mut self, node: u32) {
        let snap = &self.snap;
        if snap
            .node_ancestry(node)
            .any(|marked| self.marked_nodes.contains(marked))
        {
            return;
        }
        self.dirty_assets |= snap.subtree_assets(node);
        self.marked_nodes.insert(node);
    }

    // ----- users -----------------------------------------------------------------

    /// Creates, replaces or deletes a user. A deleted user must no longer be referred
    /// to by any group or rule (the caller cascades first).
    pub(crate) fn set_user(&mut self, index: Option<u32>, new: Option<User>) -> Option<u32> {
        let old = index
            .and_then(|i| self.snap.user_entry(i))
            .map(|e| e.record.clone());
        if let (Some(index), Some(old)) = (index, &old) {
            let head = old.head();
            self.snap.user_names.remove(head.username, index);
            if let Some(email) = head.email {
                self.snap.user_emails.remove(email, index);
            }
        }
        let packed = new.as_ref().map(Packed::pack);
        let index =
            match (index, &new) {
                (Some(index), Some(new)) => {
                    self.user_mut(index).record = packed.clone().expect("packed above");
                    let check = self.user_check_mut(index);
                    check.valid_until = UserCheck::valid_until_of(new);
                    check.username_hash = UserCheck::name_hash(&new.username);
                    index
                }
                (Some(index), None) => {
                    let old = old.as_ref().expect("deleting an existing user");
                    let id = old.head().id;
                    debug_assert!(self.snap.user_entry(index).is_some_and(|e| {
                        e.direct_groups.is_empty() && e.direct_rules.is_empty()
                    }));
                    *self
                        .snap
                        .users
                        .get_mut(index as usize)
                        .expect("slot exists") = None;
                    *self.user_check_mut(index) = UserCheck::absent();
                    self.unregister(EntityKind::User, id);
                    self.record_packed(EntityKind::User, id, Some(old), None);
                    return None;
                }
                (None, Some(new)) => {
                    let entry = UserEntry {
                        id: new.id,
                        record: packed.clone().expect("packed above"),
                        direct_groups: Default::default(),
                        direct_rules: SparseBitmap::default(),
                    };
                    let index = self.snap.users.push(Some(Arc::new(entry))) as u32;
                    self.snap.user_checks.push(UserCheck::of(new));
                    self.register(EntityKind::User, new.id, index);
                    index
                }
                (None, None) => return None,
            };
        let new = new.expect("handled above");
        self.snap.user_names.insert(&new.username, index);
        if let Some(email) = &new.email {
            self.snap.user_emails.insert(email, index);
        }
        self.record_packed(EntityKind::User, new.id, old.as_ref(), packed.as_ref());
        Some(index)
    }

    // ----- groups ----------------------------------------------------------------

    pub(crate) fn set_group(&mut self, index: Option<u32>, new: Option<Group>) -> Option<u32> {
        let old = index.and_then(|i| self.snap.group_record(i));
        let index = match index {
            Some(index) => index,
            None => {
                let Some(new) = &new else { return None };
                let entry = GroupEntry {
                    group: Arc::new(Group {
                        members: Vec::new(),
                        ..new.clone()
                    }),
                    memberships: Arc::new([]),
                    subgroups: Default::default(),
                    parents: Default::default(),
                    rules: SparseBitmap::default(),
                };
                let index = self.snap.groups.push(Some(Arc::new(entry))) as u32;
                self.register(EntityKind::Group, new.id, index);
                index
            }
        };
        if let Some(old) = &old {
            self.snap.group_names.remove(&old.name, index);
        }

        // User members: touch only those whose membership appeared, disappeared or
        // changed its end, so one membership change costs the same in any group.
        let no_members = Vec::new();
        let old_members = old.as_ref().map_or(&no_members, |g| &g.members);
        let new_members = new.as_ref().map_or(&no_members, |g| &g.members);
        if old_members != new_members {
            let until_of = |m: &crate::model::UserMember| m.expires_at.unwrap_or(Time::MAX);
            let before: std::collections::HashMap<Id, Time> =
                old_members.iter().map(|m| (m.user, until_of(m))).collect();
            let after: std::collections::HashMap<Id, Time> =
                new_members.iter().map(|m| (m.user, until_of(m))).collect();
            let mut changed: Vec<(Id, Option<Time>)> = after
                .iter()
                .filter(|(user, until)| before.get(user) != Some(until))
                .map(|(user, until)| (*user, Some(*until)))
                .collect();
            changed.extend(
                before
                    .keys()
                    .filter(|user| !after.contains_key(user))
                    .map(|user| (*user, None)),
            );
            for (user, until) in changed {
                let user = self.index_of(EntityKind::User, user);
                let entry = self.user_mut(user);
                entry.direct_groups.retain(|link| link.group != index);
                if let Some(until) = until {
                    entry.direct_groups.push(GroupLink::new(index, until));
                }
                self.dirty_users.insert(user);
            }
        }

        // Subgroup edges: (child group index, until).
        let subgroups_of = |this: &Working, group: Option<&Group>| -> Vec<(u32, Time)> {
            group.map_or_else(Vec::new, |g| {
                g.subgroups
                    .iter()
                    .map(|m| {
                        let child = this.index_of(EntityKind::Group, m.group);
                        (child, m.expires_at.unwrap_or(Time::MAX))
                    })
                    .collect()
            })
        };
        let old_subgroups = subgroups_of(self, old.as_ref());
        let new_subgroups = subgroups_of(self, new.as_ref());
        if old_subgroups != new_subgroups {
            for &(child, _) in &old_subgroups {
                self.group_mut(child).parents.retain(|(p, _)| *p != index);
                self.mark_group_members(child);
            }
            for &(child, until) in &new_subgroups {
                self.group_mut(child).parents.push((index, until));
                self.mark_group_members(child);
            }
            self.group_mut(index).subgroups = new_subgroups.iter().map(|(g, _)| *g).collect();
        }

        match new {
            Some(new) => {
                self.snap.group_names.insert(&new.name, index);
                if old.as_ref().is_none_or(|old| old.members != new.members) {
                    let memberships = new
                        .members
                        .iter()
                        .map(|member| {
                            let user = self.index_of(EntityKind::User, member.user);
                            Member::of(user, member, &mut self.snap.symbols)
                        })
                        .collect();
                    self.group_mut(index).memberships = memberships;
                }
                self.group_mut(index).group = Arc::new(Group {
                    members: Vec::new(),
                    ..new.clone()
                });
                self.record(EntityKind::Group, new.id, old.as_ref(), Some(&new));
                Some(index)
            }
            None => {
                let old = old.expect("deleting an existing group");
                let entry = self.snap.group_entry(index).expect("exists");
                debug_assert!(entry.parents.is_empty() && entry.rules.is_empty());
                *self
                    .snap
                    .groups
                    .get_mut(index as usize)
                    .expect("slot exists") = None;
                self.unregister(EntityKind::Group, old.id);
                self.record(EntityKind::Group, old.id, Some(&old), None);
                None
            }
        }
    }

    /// Sets one direct user membership of group `index` (`None`: removes it), with
    /// `memberships` the group's memberships as they are afterwards, and stamps the
    /// group's record as updated. Touches the one user and the group's memberships,
    /// and records the membership alone: the cost of one membership, whatever the
    /// group's size (but the copy of its 16-byte memberships). The group's id.
    pub(crate) fn set_membership(
        &mut self,
        index: u32,
        memberships: Vec<Member>,
        user: u32,
        before: Option<&UserMember>,
        after: Option<&UserMember>,
    ) -> Id {
        let entry = self.user_mut(user);
        entry.direct_groups.retain(|link| link.group != index);
        if let Some(after) = after {
            let until = after.expires_at.unwrap_or(Time::MAX);
            entry.direct_groups.push(GroupLink::new(index, until));
        }
        let now = self.now;
        let group_entry = self.group_mut(index);
        let id = group_entry.group.id;
        group_entry.group = Arc::new(Group {
            updated_at: now,
            ..(*group_entry.group).clone()
        });
        group_entry.memberships = memberships.into();
        self.dirty_users.insert(user);
        let member = after.cloned();
        let (before, after) = (before.map(Payload::record), after.map(Payload::record));
        if self.push_change(EntityKind::Group, id, Operation::Membership, before, after) {
            let user = self
                .snap
                .user_entry(user)
                .expect("INVARIANT: a member exists")
                .id;
            self.memberships.push(MembershipWrite {
                group: id,
                user,
                member,
            });
        }
        id
    }

    // ----- nodes -----------------------------------------------------------------

    pub(crate) fn set_node(&mut self, index: Option<u32>, new: Option<Node>) -> Option<u32> {
        let old = index
            .and_then(|i| self.snap.node_entry(i))
            .map(|e| e.node.clone());
        let index = match index {
            Some(index) => index,
            None => {
                let Some(new) = &new else { return None };
                let entry = NodeEntry {
                    node: Arc::new(new.clone()),
                    parent: None,
                    children: Default::default(),
                    assets: RoaringBitmap::new(),
                    rules: RoaringBitmap::new(),
                };
                let index = self.snap.nodes.push(Some(Arc::new(entry))) as u32;
                self.register(EntityKind::Node, new.id, index);
                self.snap.next_node_number = self.snap.next_node_number.max(new.number + 1);
                index
            }
        };
        let old_parent = old.as_ref().and_then(|n| n.parent);
        let new_parent = new.as_ref().and_then(|n| n.parent);
        if old.is_none() || old_parent != new_parent {
            self.marked_nodes.clear();
            if let Some(parent) = old_parent {
                let parent = self.index_of(EntityKind::Node, parent);
                self.node_mut(parent).children.retain(|c| *c != index);
            }
            let parent_index = new_parent.map(|p| self.index_of(EntityKind::Node, p));
            if let Some(parent) = parent_index {
                self.node_mut(parent).children.push(index);
            }
            self.node_mut(index).parent = parent_index;
            // Everything below now sits under other ancestors.
            self.mark_node_assets(index);
        }
        match new {
            Some(new) => {
                self.node_mut(index).node = Arc::new(new.clone());
                self.record(EntityKind::Node, new.id, old.as_deref(), Some(&new));
                Some(index)
            }
            None => {
                let old = old.expect("deleting an existing node");
                let entry = self.snap.node_entry(index).expect("exists");
                debug_assert!(entry.children.is_empty() && entry.assets.is_empty());
                debug_assert!(entry.rules.is_empty());
                *self
                    .snap
                    .nodes
                    .get_mut(index as usize)
                    .expect("slot exists") = None;
                self.unregister(EntityKind::Node, old.id);
                self.record(EntityKind::Node, old.id, Some(&*old), None);
                None
            }
        }
    }

    // ----- assets ----------------------------------------------------------------

    pub(crate) fn set_asset(&mut self, index: Option<u32>, new: Option<Asset>) -> Option<u32> {
        let old_packed = index
            .and_then(|i| self.snap.asset_entry(i))
            .map(|e| e.record.clone());
        let old = old_packed.as_ref().map(Packed::unpack);
        let packed = new.as_ref().map(Packed::pack);
        let index = match index {
            Some(index) => index,
            None => {
                let Some(new) = &new else { return None };
                let entry = AssetEntry {
                    id: new.id,
                    record: packed.clone().expect("packed above"),
                    nodes: Default::default(),
                    direct_rules: SparseBitmap::default(),
                };
                let index = self.snap.assets.push(Some(Arc::new(entry))) as u32;
                self.snap.asset_checks.push(AssetCheck::absent());
                self.register(EntityKind::Asset, new.id, index);
                index
            }
        };
        if let Some(old) = &old {
            self.snap.asset_names.remove(&old.name, index);
            for account in &old.accounts {
                self.snap.account_ids.remove(&account.id);
            }
        }
        if let Some(new) = &new {
            for account in &new.accounts {
                self.snap.account_ids.insert(account.id, index);
            }
        }
        let old_nodes = old
            .as_ref()
            .map_or_else(Box::default, |a| self.indexes(EntityKind::Node, &a.nodes));
        let new_nodes = new
            .as_ref()
            .map_or_else(Box::default, |a| self.indexes(EntityKind::Node, &a.nodes));
        let (removed, added) = ids_diff(&old_nodes, &new_nodes);
        for node in removed {
            self.node_mut(node).assets.remove(index);
        }
        for node in added {
            self.node_mut(node).assets.insert(index);
        }
        let active = new.as_ref().is_some_and(|a| a.active);
        if self.snap.active_assets.contains(index) != active {
            let active_assets = Arc::make_mut(&mut self.snap.active_assets);
            if active {
                active_assets.insert(index);
            } else {
                active_assets.remove(index);
            }
        }
        match new {
            Some(new) => {
                self.snap.asset_names.insert(&new.name, index);
                let rules = self
                    .snap
                    .asset_checks
                    .get(index as usize)
                    .map(|c| c.rules.clone());
                let check = AssetCheck::of(&new, rules.unwrap_or_default(), &mut self.snap.symbols);
                *self.asset_check_mut(index) = check;
                let entry = self.asset_mut(index);
                entry.record = packed.clone().expect("packed above");
                entry.nodes = new_nodes.iter().copied().collect();
                self.dirty_assets.insert(index);
                self.record_packed(
                    EntityKind::Asset,
                    new.id,
                    old_packed.as_ref(),
                    packed.as_ref(),
                );
                Some(index)
            }
            None => {
                let old = old.expect("deleting an existing asset");
                let entry = self.snap.asset_entry(index).expect("exists");
                debug_assert!(entry.direct_rules.is_empty());
                let rules = self.snap.asset_check(index).expect("exists").rules.clone();
                for rule in rules.iter() {
                    if self
                        .snap
                        .rule_entry(rule)
                        .is_some_and(|r| r.objects.contains(index))
                    {
                        self.rule_mut(rule).objects.remove(index);
                    }
                }
                *self
                    .snap
                    .assets
                    .get_mut(index as usize)
                    .expect("slot exists") = None;
                *self.asset_check_mut(index) = AssetCheck::absent();
                self.dirty_assets.remove(index);
                self.unregister(EntityKind::Asset, old.id);
                self.record_packed(EntityKind::Asset, old.id, old_packed.as_ref(), None);
                None
            }
        }
    }

    // ----- rules -----------------------------------------------------------------

    pub(crate) fn set_rule(&mut self, index: Option<u32>, new: Option<Rule>) -> Option<u32> {
        let old = index
            .and_then(|i| self.snap.rule_entry(i))
            .map(|e| e.rule.clone());
        if let (Some(index), Some(old)) = (index, &old) {
            self.snap.rule_names.remove(&old.name, index);
        }
        let links = |this: &Working, rule: Option<&Rule>| {
            rule.map_or_else(RuleLinks::default, |r| RuleLinks {
                users: this.indexes(EntityKind::User, &r.users),
                groups: this.indexes(EntityKind::Group, &r.groups),
                assets: this.indexes(EntityKind::Asset, &r.assets),
                nodes: this.indexes(EntityKind::Node, &r.nodes),
            })
        };
        let RuleLinks {
            users: old_users,
            groups: old_groups,
            assets: old_assets,
            nodes: old_nodes,
        } = links(self, old.as_deref());
        let RuleLinks {
            users: new_users,
            groups: new_groups,
            assets: new_assets,
            nodes: new_nodes,
        } = links(self, new.as_ref());

        let index = match index {
            Some(index) => index,
            None => {
                let Some(rule) = &new else { return None };
                let entry = RuleEntry {
                    rule: Arc::new(rule.clone()),
                    compiled: CompiledRule::new(rule, &mut self.snap.symbols),
                    users: Box::default(),
                    groups: Box::default(),
                    assets: Box::default(),
                    nodes: Box::default(),
                    objects: RoaringBitmap::new(),
                };
                let index = self.snap.rules.push(Some(Arc::new(entry))) as u32;
                self.register(EntityKind::Rule, rule.id, index);
                index
            }
        };
        let created_or_deleted = old.is_none() || new.is_none();

        // Subjects.
        if created_or_deleted || old_users != new_users || old_groups != new_groups {
            let (removed, added) = ids_diff(&old_users, &new_users);
            for user in removed {
                self.user_mut(user).direct_rules.remove(index);
            }
            for user in added {
                self.user_mut(user).direct_rules.insert(index);
            }
            self.dirty_users
                .extend(old_users.iter().chain(new_users.iter()).copied());
            let (removed, added) = ids_diff(&old_groups, &new_groups);
            for group in removed {
                self.group_mut(group).rules.remove(index);
            }
            for group in added {
                self.group_mut(group).rules.insert(index);
            }
            for &group in old_groups.iter().chain(new_groups.iter()) {
                self.mark_group_members(group);
            }
        }

        // Objects: which assets the rule names, and where it can match.
        let matching_changed = match (&old, &new) {
            (Some(old), Some(new)) => {
                old.accounts != new.accounts || old.protocols != new.protocols
            }
            _ => true,
        };
        if matching_changed || old_assets != new_assets || old_nodes != new_nodes {
            let (removed, added) = ids_diff(&old_assets, &new_assets);
            for asset in removed {
                self.asset_mut(asset).direct_rules.remove(index);
            }
            for asset in added {
                self.asset_mut(asset).direct_rules.insert(index);
            }
            self.dirty_assets
                .extend(old_assets.iter().chain(new_assets.iter()).copied());
            let (removed, added) = ids_diff(&old_nodes, &new_nodes);
            for node in removed {
                self.node_mut(node).rules.remove(index);
            }
            for node in added {
                self.node_mut(node).rules.insert(index);
            }
            for &node in old_nodes.iter().chain(new_nodes.iter()) {
                self.mark_node_assets(node);
            }
        }

        match new {
            Some(rule) => {
                self.snap.rule_names.insert(&rule.name, index);
                let compiled = CompiledRule::new(&rule, &mut self.snap.symbols);
                let entry = self.rule_mut(index);
                entry.compiled = compiled;
                entry.rule = Arc::new(rule.clone());
                entry.users = new_users;
                entry.groups = new_groups;
                entry.assets = new_assets;
                entry.nodes = new_nodes;
                self.record(EntityKind::Rule, rule.id, old.as_deref(), Some(&rule));
                Some(index)
            }
            None => {
                let old = old.expect("deleting an existing rule");
                *self
                    .snap
                    .rules
                    .get_mut(index as usize)
                    .expect("slot exists") = None;
                self.unregister(EntityKind::Rule, old.id);
                self.record(EntityKind::Rule, old.id, Some(&*old), None);
                None
            }
        }
    }

    // ----- roles and tokens --------------------------------------------------------

    pub(crate) fn set_role(&mut self, index: Option<u32>, new: Option<Role>) -> Option<u32> {
        let old = index.and_then(|i| self.snap.role_entry(i)).cloned();
        if let (Some(index), Some(old)) = (index, &old) {
            self.snap.role_names.remove(&old.name, index);
        }
        let index = match (index, &new) {
            (Some(index), Some(new)) => {
                *self
                    .snap
                    .roles
                    .get_mut(index as usize)
                    .expect("slot exists") = Some(Arc::new(new.clone()));
                index
            }
            (None, Some(new)) => {
                let index = self.snap.roles.push(Some(Arc::new(new.clone()))) as u32;
                self.register(EntityKind::Role, new.id, index);
                index
            }
            (Some(index), None) => {
                let old = old.expect("deleting an existing role");
                *self
                    .snap
                    .roles
                    .get_mut(index as usize)
                    .expect("slot exists") = None;
                self.unregister(EntityKind::Role, old.id);
                self.record(EntityKind::Role, old.id, Some(&old), None);
                return None;
            }
            (None, None) => return None,
        };
        let new = new.expect("handled above");
        self.snap.role_names.insert(&new.name, index);
        self.record(EntityKind::Role, new.id, old.as_ref(), Some(&new));
        Some(index)
    }

    /// Creates, replaces or deletes a token. `hash` is given on creation only.
    pub(crate) fn set_token(
        &mut self,
        index: Option<u32>,
        new: Option<Token>,
        hash: Option<[u8; 32]>,
    ) -> Option<u32> {
        let old = index.and_then(|i| self.snap.token_entry(i)).cloned();
        if let (Some(index), Some(old)) = (index, &old) {
            self.snap.token_names.remove(&old.token.name, index);
        }
        let index = match (index, new) {
            (Some(index), Some(new)) => {
                let old = old.clone().expect("replacing an existing token");
                let entry = TokenEntry {
                    token: Arc::new(new),
                    hash: old.hash,
                };
                *self
                    .snap
                    .tokens
                    .get_mut(index as usize)
                    .expect("slot exists") = Some(entry);
                index
            }
            (None, Some(new)) => {
                let hash = hash.expect("a new token comes with its hash");
                let id = new.id;
                let entry = TokenEntry {
                    token: Arc::new(new),
                    hash,
                };
                let index = self.snap.tokens.push(Some(entry)) as u32;
                self.register(EntityKind::Token, id, index);
                self.snap.token_hashes.insert(hash, index);
                if self.record {
                    self.secrets.push(SecretWrite::TokenHash {
                        token: id,
                        hash: Some(hash),
                    });
                }
                index
            }
            (Some(index), None) => {
                let old = old.expect("deleting an existing token");
                *self
                    .snap
                    .tokens
                    .get_mut(index as usize)
                    .expect("slot exists") = None;
                self.snap.token_hashes.remove(&old.hash);
                self.unregister(EntityKind::Token, old.token.id);
                self.secrets.push(SecretWrite::TokenHash {
                    token: old.token.id,
                    hash: None,
                });
                self.record(EntityKind::Token, old.token.id, Some(&*old.token), None);
                return None;
            }
            (None, None) => return None,
        };
        let entry = self.snap.token_entry(index).expect("just set").clone();
        self.snap.token_names.insert(&entry.token.name, index);
        let before = old.as_ref().map(|o| &*o.token);
        self.record(
            EntityKind::Token,
            entry.token.id,
            before,
            Some(&*entry.token),
        );
        Some(index)
    }

    // ----- derived indexes -------------------------------------------------------------

    /// Recomputes the derived indexes of everything marked dirty and returns the
    /// snapshot with what the store must write.
    pub(crate) fn finish(mut self) -> Finished {
        self.settle();
        Finished {
            snapshot: self.snap,
            changes: self.changes,
            touched: self.touched,
            memberships: self.memberships,
            secrets: self.secrets,
        }
    }

    /// Recomputes the derived indexes of what is dirty, so the snapshot is whole
    /// again: a later operation (or an edit that reads the snapshot) sees it as it
    /// would be published.
    pub(crate) fn settle(&mut self) {
        let users = std::mem::take(&mut self.dirty_users);
        for user in &users {
            self.recompute_user(user);
        }
        let assets = std::mem::take(&mut self.dirty_assets);
        self.marked_nodes.clear();
        if !assets.is_empty() {
            self.settle_assets(&assets);
        }
    }

    /// How many change records and secret writes are pending: what a refused single
    /// operation must leave as it found (see [`Working::apply`]).
    pub(crate) fn pending(&self) -> (usize, usize, usize, usize) {
        (
            self.changes.len(),
            self.secrets.len(),
            self.touched.len(),
            self.memberships.len(),
        )
    }

    /// The state to return to if the operations that follow are refused. Taken on a
    /// settled working copy. Cheap to take, but while it lives every table the
    /// following operations write is copied once (copy on write): take one only when
    /// a refusal could leave something half-applied.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        debug_assert!(self.dirty_users.is_empty() && self.dirty_assets.is_empty());
        Checkpoint {
            snap: self.snap.clone(),
            changes: self.changes.len(),
            secrets: self.secrets.len(),
            memberships: self.memberships.len(),
            touched: self.touched.clone(),
        }
    }

    /// Undoes everything since `checkpoint` was taken.
    pub(crate) fn restore(&mut self, checkpoint: Checkpoint) {
        self.snap = checkpoint.snap;
        self.changes.truncate(checkpoint.changes);
        self.secrets.truncate(checkpoint.secrets);
        self.memberships.truncate(checkpoint.memberships);
        self.touched = checkpoint.touched;
        self.dirty_users.clear();
        self.dirty_assets.clear();
        self.marked_nodes.clear();
    }

    fn recompute_user(&mut self, index: u32) {
        let Some(entry) = self.snap.user_entry(index) else {
            return;
        };
        let closure = group_closure(&self.snap, &entry.direct_groups);
        // Every rule reaching the user with until when: rules naming the user for
        // good, a group's for as long as the group is reached.
        let mut reached: SmallVec<[(u32, Time); 16]> = entry
            .direct_rules
            .iter()
            .map(|rule| (rule, Time::MAX))
            .collect();
        for &(group, group_until) in &closure {
            if let Some(group) = self.snap.group_entry(group) {
                reached.extend(group.rules.iter().map(|rule| (rule, group_until)));
            }
        }
        // Per rule, the latest instant any of them still counts.
        reached.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        reached.dedup_by_key(|(rule, _)| *rule);
        let rules = UserRules::from_ascending(reached.iter().map(|(rule, _)| *rule));
        let until = reached.iter().filter(|(_, until)| *until != Time::MAX);

        let check = self.snap.user_check(index).expect("beside a live user");
        if check.rules != rules || !check.rule_until.iter().eq(until.clone()) {
            let check = self.user_check_mut(index);
            check.rules = rules;
            check.rule_until = until.copied().collect();
        }
    }
}

/// Every group reached from `direct` through subgroup edges, each with the latest
/// instant at which some chain of memberships to it still counts: the widest path,
/// where a chain lasts as long as its earliest-ending edge. Sorted by group index.
pub(crate) fn group_closure(snap: &Snapshot, direct: &[GroupLink]) -> Vec<(u32, Time)> {
    let mut best: Vec<(u32, Time)> = Vec::with_capacity(direct.len() * 2);
    let mut pending: Vec<(u32, Time)> = direct
        .iter()
        .map(|link| (link.group, link.until()))
        .collect();
    while let Some((group, until)) = pending.pop() {
        match best.iter_mut().find(|(g, _)| *g == group) {
            Some((_, known)) if *known >= until => continue,
            Some((_, known)) => *known = until,
            None => best.push((group, until)),
        }
        if let Some(entry) = snap.group_entry(group) {
            for &(parent, edge_until) in &entry.parents {
                pending.push((parent, until.min(edge_until)));
            }
        }
    }
    best.sort_unstable_by_key(|(g, _)| *g);
    best
}
