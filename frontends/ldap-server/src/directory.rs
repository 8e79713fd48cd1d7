//! The tree as entries: one snapshot read at one instant.
//!
//! ```text
//! BASE                       the base entry
//! ├── ou=people,BASE         uid=USERNAME,…: active, unexpired users
//! └── ou=groups,BASE         cn=NAME,…: every group
//! ```
//!
//! INVARIANT: nothing here does I/O or writes: entries are read from the published
//! snapshot, and a membership or a user counts only if it does at `at`.

use portcullis_engine::{Group, Id, Snapshot, Time, User, membership_counts};

use crate::dn::{BaseDn, Place};
use crate::numbers::Numbers;
use crate::schema::{self, AttributeType};

/// An entry as served: its DN, the id of the user or group it shows, its attributes.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) dn: String,
    pub(crate) id: Option<Id>,
    pub(crate) attributes: Vec<(&'static AttributeType, Vec<String>)>,
}

impl Entry {
    fn new(dn: String, id: Option<Id>) -> Entry {
        Entry {
            dn,
            id,
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute (nothing when `values` is empty: an entry never holds an
    /// attribute without values).
    pub(crate) fn add(&mut self, name: &str, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        let kind = schema::lookup(name).expect("INVARIANT: served attributes are in the schema");
        self.attributes.push((kind, values));
    }

    fn add_one(&mut self, name: &str, value: impl Into<String>) {
        self.add(name, vec![value.into()]);
    }

    pub(crate) fn get(&self, kind: &AttributeType) -> Option<&[String]> {
        self.attributes
            .iter()
            .find(|(k, _)| std::ptr::eq(*k, kind))
            .map(|(_, values)| values.as_slice())
    }
}

/// An entry of the tree, by what it shows: what a paged search keeps between pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryRef {
    Base,
    People,
    Groups,
    User(Id),
    Group(Id),
}

/// What the POSIX attributes of users are made of.
#[derive(Debug, Clone)]
pub struct PosixSettings {
    /// `homeDirectory` is this followed by `/USERNAME`.
    pub home_prefix: String,
    pub login_shell: String,
}

impl Default for PosixSettings {
    fn default() -> PosixSettings {
        PosixSettings {
            home_prefix: "/home".to_owned(),
            login_shell: "/bin/bash".to_owned(),
        }
    }
}

/// One snapshot at one instant, as a tree.
pub(crate) struct View<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) at: Time,
    pub(crate) base: &'a BaseDn,
    pub(crate) numbers: &'a Numbers,
    pub(crate) posix: &'a PosixSettings,
}

impl View<'_> {
    /// The entry at `place`, if there is one now.
    pub(crate) fn resolve(&self, place: &Place) -> Option<EntryRef> {
        match place {
            Place::Base => Some(EntryRef::Base),
            Place::People => Some(EntryRef::People),
            Place::Groups => Some(EntryRef::Groups),
            Place::User(name) => self.user_named(name).map(|user| EntryRef::User(user.id)),
            Place::Group(name) => self
                .group_named(name)
                .map(|group| EntryRef::Group(group.id)),
            Place::RootDse
            | Place::Tokens
            | Place::Token(_)
            | Place::UnderBase
            | Place::Outside => None,
        }
    }

    /// The user whose username is `name` (not an id), if it is shown now.
    pub(crate) fn user_named(&self, name: &str) -> Option<std::sync::Arc<User>> {
        self.snapshot
            .user(name)
            .filter(|user| crate::dn::fold(&user.username) == crate::dn::fold(name))
            .filter(|user| user.is_valid_at(self.at))
    }

    /// The group named `name` (not an id).
    pub(crate) fn group_named(&self, name: &str) -> Option<std::sync::Arc<Group>> {
        self.snapshot
            .group(name)
            .filter(|group| crate::dn::fold(&group.name) == crate::dn::fold(name))
    }

    /// The entries directly below `parent`, in a stable order.
    pub(crate) fn children(&self, parent: EntryRef) -> Box<dyn Iterator<Item = EntryRef> + '_> {
        match parent {
            EntryRef::Base => Box::new([EntryRef::People, EntryRef::Groups].into_iter()),
            EntryRef::People => Box::new(
                self.snapshot
                    .user_ids()
                    .filter(|id| self.snapshot.user_valid_at(*id, self.at))
                    .map(EntryRef::User),
            ),
            EntryRef::Groups => Box::new(self.snapshot.group_ids().map(EntryRef::Group)),
            EntryRef::User(_) | EntryRef::Group(_) => Box::new(std::iter::empty()),
        }
    }

    /// The entry `reference` names, built now; `None` when it is gone.
    pub(crate) fn entry(&self, reference: EntryRef) -> Option<Entry> {
        match reference {
            EntryRef::Base => Some(self.base_entry()),
            EntryRef::People => Some(ou_entry(self.base.people(), "people")),
            EntryRef::Groups => Some(ou_entry(self.base.groups(), "groups")),
            EntryRef::User(id) => {
                let user = self.snapshot.user(&id.to_string())?;
                user.is_valid_at(self.at).then(|| self.user_entry(&user))
            }
            EntryRef::Group(id) => {
                let group = self.snapshot.group(&id.to_string())?;
                Some(self.group_entry(&group))
            }
        }
    }

    fn base_entry(&self) -> Entry {
        let mut entry = Entry::new(self.base.text.clone(), None);
        let first = &self.base.rdns[0];
        let classes: &[&str] = match first.kind.as_str() {
            "dc" => &["top", "domain"],
            "o" => &["top", "organization"],
            "ou" => &["top", "organizationalUnit"],
            _ => &["top", "extensibleObject"],
        };
        entry.add(
            "objectClass",
            classes.iter().map(|c| (*c).to_owned()).collect(),
        );
        if schema::lookup(&first.kind).is_some() {
            entry.add_one(&first.kind, first.value.clone());
        }
        entry.add_one("entryDN", self.base.text.clone());
        entry.add_one("hasSubordinates", "TRUE");
        entry
    }

    pub(crate) fn user_entry(&self, user: &User) -> Entry {
        let mut entry = Entry::new(self.base.user(&user.username), Some(user.id));
        entry.add(
            "objectClass",
            [
                "top",
                "person",
                "organizationalPerson",
                "inetOrgPerson",
                "posixAccount",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        let name = if user.name.trim().is_empty() {
            user.username.clone()
        } else {
            user.name.clone()
        };
        let words: Vec<&str> = name.split_whitespace().collect();
        entry.add_one("uid", user.username.clone());
        entry.add_one("cn", name.clone());
        entry.add_one("sn", words.last().map_or(name.as_str(), |w| w).to_owned());
        if words.len() > 1 {
            entry.add_one("givenName", words[0].to_owned());
        }
        entry.add_one("displayName", name.clone());
        entry.add_one("gecos", name.clone());
        entry.add("mail", user.email.iter().cloned().collect());
        entry.add("telephoneNumber", user.phone.iter().cloned().collect());
        let number = self.numbers.get(user.id).to_string();
        entry.add_one("uidNumber", number.clone());
        entry.add_one("gidNumber", number);
        entry.add_one(
            "homeDirectory",
            format!(
                "{}/{}",
                self.posix.home_prefix.trim_end_matches('/'),
                user.username
            ),
        );
        entry.add_one("loginShell", self.posix.login_shell.clone());
        let member_of = self
            .snapshot
            .user_groups(&user.id.to_string(), self.at)
            .into_iter()
            .filter(|group| group.direct)
            .map(|group| self.base.group(&group.name))
            .collect();
        entry.add("memberOf", member_of);
        if !user.description.is_empty() {
            entry.add_one("description", user.description.clone());
        }
        self.operational(&mut entry, user.id, user.created_at, user.updated_at);
        entry
    }

    pub(crate) fn group_entry(&self, group: &Group) -> Entry {
        let mut entry = Entry::new(self.base.group(&group.name), Some(group.id));
        entry.add(
            "objectClass",
            ["top", "groupOfNames", "posixGroup"]
                .map(str::to_owned)
                .to_vec(),
        );
        entry.add_one("cn", group.name.clone());
        entry.add_one("gidNumber", self.numbers.get(group.id).to_string());
        let users: Vec<&str> = group
            .members
            .iter()
            .filter(|m| membership_counts(m.expires_at, self.at))
            .filter(|m| self.snapshot.user_valid_at(m.user, self.at))
            .filter_map(|m| self.snapshot.username_by_id(m.user))
            .collect();
        let subgroups: Vec<&str> = group
            .subgroups
            .iter()
            .filter(|m| membership_counts(m.expires_at, self.at))
            .filter_map(|m| self.snapshot.group_name_by_id(m.group))
            .collect();
        let mut members: Vec<String> = users.iter().map(|u| self.base.user(u)).collect();
        members.extend(subgroups.iter().map(|g| self.base.group(g)));
        entry.add("member", members);
        entry.add("memberUid", users.iter().map(|u| (*u).to_owned()).collect());
        let member_of = self
            .snapshot
            .group_groups(&group.id.to_string(), self.at)
            .into_iter()
            .filter(|parent| parent.direct)
            .map(|parent| self.base.group(&parent.name))
            .collect();
        entry.add("memberOf", member_of);
        if !group.description.is_empty() {
            entry.add_one("description", group.description.clone());
        }
        self.operational(&mut entry, group.id, group.created_at, group.updated_at);
        entry
    }

    fn operational(&self, entry: &mut Entry, id: Id, created: Time, updated: Time) {
        entry.add_one("entryUUID", id.to_string());
        entry.add_one("createTimestamp", schema::format_time(created.as_micros()));
        entry.add_one("modifyTimestamp", schema::format_time(updated.as_micros()));
        entry.add_one("entryDN", entry.dn.clone());
        entry.add_one("hasSubordinates", "FALSE");
    }
}

fn ou_entry(dn: String, name: &str) -> Entry {
    let mut entry = Entry::new(dn.clone(), None);
    entry.add(
        "objectClass",
        vec!["top".to_owned(), "organizationalUnit".to_owned()],
    );
    entry.add_one("ou", name);
    entry.add_one("entryDN", dn);
    entry.add_one("hasSubordinates", "TRUE");
    entry
}

/// Every user and group that is a member of the group `group` at `at`, through any
/// chain of memberships that all count then (users only while they are shown).
pub(crate) fn members_in_chain(
    snapshot: &Snapshot,
    group: Id,
    at: Time,
) -> std::collections::HashSet<Id> {
    let mut found = std::collections::HashSet::new();
    let mut pending = vec![group];
    let mut seen = std::collections::HashSet::from([group]);
    while let Some(current) = pending.pop() {
        let Some(record) = snapshot.group(&current.to_string()) else {
            continue;
        };
        for member in &record.members {
            if membership_counts(member.expires_at, at) && snapshot.user_valid_at(member.user, at) {
                found.insert(member.user);
            }
        }
        for sub in &record.subgroups {
            if membership_counts(sub.expires_at, at) && seen.insert(sub.group) {
                found.insert(sub.group);
                pending.push(sub.group);
            }
        }
    }
    found
}
