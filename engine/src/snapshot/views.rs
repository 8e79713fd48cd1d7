//! Read access for front-ends: entities as JSON (the model's field names), pages of
//! them, and their spec form.

use serde::Deserialize;
use serde_json::Value;

use crate::error::NotFound;
use crate::eval::Page;
use crate::model::{EntityKind, Group, Id, Source, Time};
use crate::snapshot::{GroupLink, Snapshot, same_name};
use crate::write::{Spec, group_closure};

/// What to list, and which page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Keep entities whose name (username for users) contains this text,
    /// case-insensitively.
    pub search: Option<String>,
    /// Keep entities whose top-level JSON field equals the value: a string field
    /// equal to it (case-insensitively), or a boolean or number written the same way.
    pub fields: Vec<(String, String)>,
    /// `(t, true)`: keep entities whose `expires_at` is set and not after `t` (expired
    /// at `t`); `(t, false)`: keep the others.
    pub expired: Option<(Time, bool)>,
    pub offset: u64,
    pub limit: usize,
}

/// A group a user belongs to: see [`Snapshot::user_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroup {
    pub id: Id,
    pub name: String,
    /// Who wrote the group.
    pub source: Source,
    /// A direct member (not only through a nested group).
    pub direct: bool,
}

fn contains_folded(haystack: &str, needle: &str) -> bool {
    let haystack = haystack.to_lowercase();
    haystack.contains(&needle.to_lowercase())
}

fn field_matches(value: &Value, field: &str, wanted: &str) -> bool {
    match value.get(field) {
        Some(Value::String(text)) => same_name(text, wanted),
        Some(Value::Bool(flag)) => wanted.parse::<bool>().is_ok_and(|w| w == *flag),
        Some(Value::Number(number)) => number.to_string() == wanted,
        Some(Value::Null) => wanted == "null",
        Some(Value::Array(items)) => items
            .iter()
            .any(|item| matches!(item, Value::String(t) if same_name(t, wanted))),
        _ => false,
    }
}

/// Whether an entity's JSON has an `expires_at` that is not after `at`.
fn expired_at(value: &Value, at: Time) -> bool {
    value
        .get("expires_at")
        .filter(|expiry| !expiry.is_null())
        .and_then(|expiry| Time::deserialize(expiry).ok())
        .is_some_and(|expiry| expiry <= at)
}

impl Snapshot {
    fn index_of_kind(&self, kind: EntityKind, reference: &str) -> Option<u32> {
        match kind {
            EntityKind::User => self.user_index(reference),
            EntityKind::Group => self.group_index(reference),
            EntityKind::Node => self.node_index(reference),
            EntityKind::Asset => self.asset_index(reference),
            EntityKind::Rule => self.rule_index(reference),
            EntityKind::Role => self.role_index(reference),
            EntityKind::Token => self.token_index(reference),
        }
    }

    fn slots_of_kind(&self, kind: EntityKind) -> usize {
        match kind {
            EntityKind::User => self.users.len(),
            EntityKind::Group => self.groups.len(),
            EntityKind::Node => self.nodes.len(),
            EntityKind::Asset => self.assets.len(),
            EntityKind::Rule => self.rules.len(),
            EntityKind::Role => self.roles.len(),
            EntityKind::Token => self.tokens.len(),
        }
    }

    /// The name an entity is looked up by (a username, a node's name).
    fn name_at(&self, kind: EntityKind, index: u32) -> Option<&str> {
        match kind {
            EntityKind::User => self.user_entry(index).map(|e| e.record.username()),
            EntityKind::Group => self.group_entry(index).map(|e| e.group.name.as_str()),
            EntityKind::Node => self.node_entry(index).map(|e| e.node.name.as_str()),
            EntityKind::Asset => self.asset_entry(index).map(|e| e.record.name()),
            EntityKind::Rule => self.rule_entry(index).map(|e| e.rule.name.as_str()),
            EntityKind::Role => self.role_entry(index).map(|r| r.name.as_str()),
            EntityKind::Token => self.token_entry(index).map(|e| e.token.name.as_str()),
        }
    }

    fn json_at(&self, kind: EntityKind, index: u32) -> Option<Value> {
        let json = |value: &dyn erased::Serialize| erased::to_value(value);
        Some(match kind {
            EntityKind::User => json(&self.user_entry(index)?.record.unpack()),
            EntityKind::Group => json(&self.group_record(index)?),
            EntityKind::Node => {
                let mut value = json(&*self.node_entry(index)?.node);
                value["path"] = Value::String(self.node_path(index));
                value["key"] = Value::String(self.node_key(index));
                value
            }
            EntityKind::Asset => json(&self.asset_entry(index)?.record.unpack()),
            EntityKind::Rule => json(&*self.rule_entry(index)?.rule),
            EntityKind::Role => json(self.role_entry(index)?),
            EntityKind::Token => json(&*self.token_entry(index)?.token),
        })
    }

    /// One entity as JSON, by name (path for nodes) or id. Nodes carry their `path`
    /// and `key`. No secret is ever part of an entity.
    pub fn entity_json(&self, kind: EntityKind, reference: &str) -> Result<Value, NotFound> {
        self.index_of_kind(kind, reference)
            .and_then(|index| self.json_at(kind, index))
            .ok_or_else(|| NotFound::new(kind, reference))
    }

    /// A user, by username or id.
    pub fn user(&self, reference: &str) -> Option<std::sync::Arc<crate::model::User>> {
        let index = self.user_index(reference)?;
        self.user_entry(index)
            .map(|entry| std::sync::Arc::new(entry.record.unpack()))
    }

    /// The user a login name names: a username, an id, or an email address.
    pub fn user_by_login(&self, login: &str) -> Option<std::sync::Arc<crate::model::User>> {
        self.user(login).or_else(|| {
            let index = self.user_by_email(login)?;
            self.user_entry(index)
                .map(|entry| std::sync::Arc::new(entry.record.unpack()))
        })
    }

    /// A group, by name or id.
    pub fn group(&self, reference: &str) -> Option<std::sync::Arc<Group>> {
        let index = self.group_index(reference)?;
        self.group_record(index).map(std::sync::Arc::new)
    }

    /// The groups a user (by username or id) belongs to at `at`: directly, or
    /// (`direct == false`) only through nested groups. A membership counts while it
    /// has not expired, and a nested one while every edge of some chain to it has not.
    /// Ordered by group name; empty for an unknown user.
    pub fn user_groups(&self, reference: &str, at: Time) -> Vec<UserGroup> {
        let Some(entry) = self.user_index(reference).and_then(|i| self.user_entry(i)) else {
            return Vec::new();
        };
        self.groups_reached(&entry.direct_groups, at)
    }

    /// The groups a group (by name or id) belongs to at `at`: directly
    /// (`direct == true`), or only through other groups, with the same rule for
    /// expiring edges as [`Snapshot::user_groups`]. Ordered by group name; empty for an
    /// unknown group.
    pub fn group_groups(&self, reference: &str, at: Time) -> Vec<UserGroup> {
        let Some(entry) = self
            .group_index(reference)
            .and_then(|i| self.group_entry(i))
        else {
            return Vec::new();
        };
        let parents: Vec<GroupLink> = entry
            .parents
            .iter()
            .map(|&(group, until)| GroupLink::new(group, until))
            .collect();
        self.groups_reached(&parents, at)
    }

    /// The groups reached at `at` from the `direct` links of a user or a group, each
    /// marked `direct` when one of those links (unexpired) names it; ordered by name.
    fn groups_reached(&self, direct: &[GroupLink], at: Time) -> Vec<UserGroup> {
        let mut groups: Vec<UserGroup> = group_closure(self, direct)
            .iter()
            .filter(|(_, until)| at < *until)
            .filter_map(|(index, _)| {
                let group = &self.group_entry(*index)?.group;
                Some(UserGroup {
                    id: group.id,
                    name: group.name.clone(),
                    source: group.source.clone(),
                    direct: direct
                        .iter()
                        .any(|link| link.group == *index && at < link.until()),
                })
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    /// Every user, as written, in a stable order (creation order within a process):
    /// for front-ends that serve the whole directory (the LDAP server). Reads the
    /// snapshot only.
    pub fn users(&self) -> impl Iterator<Item = crate::model::User> + '_ {
        (0..self.users.len() as u32)
            .filter_map(|index| self.user_entry(index))
            .map(|entry| entry.record.unpack())
    }

    /// Every group, as written (members included), in a stable order.
    pub fn groups(&self) -> impl Iterator<Item = Group> + '_ {
        (0..self.groups.len() as u32).filter_map(|index| self.group_record(index))
    }

    /// The ids of every user, in the order of [`Snapshot::users`] (no record unpacked).
    pub fn user_ids(&self) -> impl Iterator<Item = Id> + '_ {
        (0..self.users.len() as u32).filter_map(|index| self.user_entry(index).map(|e| e.id))
    }

    /// The ids of every group, in the order of [`Snapshot::groups`].
    pub fn group_ids(&self) -> impl Iterator<Item = Id> + '_ {
        (0..self.groups.len() as u32)
            .filter_map(|index| self.group_entry(index).map(|e| e.group.id))
    }

    /// A token, by name or id (never its secret: only its hash is kept, elsewhere).
    pub fn token(&self, reference: &str) -> Option<std::sync::Arc<crate::model::Token>> {
        let index = self.token_index(reference)?;
        self.token_entry(index).map(|entry| entry.token.clone())
    }

    /// The username of the user with this id, read in place.
    pub fn username_by_id(&self, id: Id) -> Option<&str> {
        let index = self.slot_of(EntityKind::User, id)?;
        self.username_at(index)
    }

    /// The name of the group with this id.
    pub fn group_name_by_id(&self, id: Id) -> Option<&str> {
        let index = self.slot_of(EntityKind::Group, id)?;
        self.group_entry(index)
            .map(|entry| entry.group.name.as_str())
    }

    /// Whether the user with this id is active and not expired at `at`, read from
    /// what checks read (no record unpacked).
    pub fn user_valid_at(&self, id: Id, at: Time) -> bool {
        self.slot_of(EntityKind::User, id)
            .and_then(|index| self.user_check(index))
            .is_some_and(|check| at < check.valid_until)
    }

    /// The permissions a role (by name or id) carries.
    pub fn role_permissions(&self, role: &str) -> Option<&[String]> {
        let index = self.role_index(role)?;
        self.role_entry(index)
            .map(|role| role.permissions.as_slice())
    }

    /// The spec that would recreate an entity, references by name: what a PATCH edits.
    pub fn spec(&self, kind: EntityKind, reference: &str) -> Result<Spec, NotFound> {
        self.index_of_kind(kind, reference)
            .map(|index| self.spec_of(kind, index))
            .ok_or_else(|| NotFound::new(kind, reference))
    }

    /// The version of an entity (by name, path for nodes, or id): its `updated_at`,
    /// what [`crate::Op::Expect`] compares. A front-end reads it with the state it
    /// computes a write from, and expects it in that write.
    pub fn version(&self, kind: EntityKind, reference: &str) -> Result<Time, NotFound> {
        self.index_of_kind(kind, reference)
            .map(|index| self.version_of(kind, index))
            .ok_or_else(|| NotFound::new(kind, reference))
    }

    /// A page of entities of one kind, in a stable order (creation order within a
    /// process), filtered.
    pub fn list_json(&self, kind: EntityKind, query: &ListQuery) -> Page<Value> {
        let mut total = 0u64;
        let mut items = Vec::new();
        for index in 0..self.slots_of_kind(kind) as u32 {
            let Some(name) = self.name_at(kind, index) else {
                continue;
            };
            if query
                .search
                .as_deref()
                .is_some_and(|search| !contains_folded(name, search))
            {
                continue;
            }
            let in_page = total >= query.offset && items.len() < query.limit;
            if query.fields.is_empty() && query.expired.is_none() {
                if in_page {
                    items.extend(self.json_at(kind, index));
                }
                total += 1;
                continue;
            }
            let Some(value) = self.json_at(kind, index) else {
                continue;
            };
            if query
                .fields
                .iter()
                .all(|(field, wanted)| field_matches(&value, field, wanted))
                && query
                    .expired
                    .is_none_or(|(at, expired)| expired_at(&value, at) == expired)
            {
                if in_page {
                    items.push(value);
                }
                total += 1;
            }
        }
        Page { total, items }
    }
}

/// Serializing through a trait object, so one closure handles every kind.
mod erased {
    pub(super) trait Serialize {
        fn to_json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Serialize for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("INVARIANT: model types serialize to JSON")
        }
    }

    pub(super) fn to_value(value: &dyn Serialize) -> serde_json::Value {
        value.to_json()
    }
}
