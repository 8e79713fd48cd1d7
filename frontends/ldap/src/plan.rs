//! From the directory as last read to one engine write: the users and groups the
//! directory wants, matched to the engine's entities of this source by stable id, and
//! the operations that make the engine agree.
//!
//! The rules, in one place:
//! - Only entities whose `source` is this source's are created, changed, deactivated
//!   or deleted; only memberships tagged with this source are added or removed.
//!   Members another source (or an administrator) put in a synced group stay.
//! - A directory entry is matched to the engine entity carrying its stable id in
//!   `external_id`; a new uid or DN renames that entity, keeping its engine id.
//! - A name (username, group name) or email held by an entity of another source is a
//!   clash: reported, never overwritten. The entry is skipped (an email clash only drops
//!   the email). A name held by an entity of this source that the directory no longer
//!   has (a deactivated user whose entry was re-created) is taken over by the new entry.
//! - Unless the source's `adopt` names the other source: then a new entry that
//!   matches an entity of it (`portcullis_engine::find_match`: by name, else email,
//!   else `externalId`) adopts it (`Op::Adopt`), which keeps its id, memberships,
//!   rules and roles, and from then on it is this source's. A match the policy
//!   refuses (privileged, ambiguous, another source) is a clash with the reason.
//! - A user present in the directory is active; one gone is deactivated or deleted as
//!   configured. A group gone is emptied of this source's memberships or deleted.
//! - Membership cycles among directory groups are broken (the closing edge dropped,
//!   with a warning) rather than failing the run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use portcullis_engine::{
    AdoptionEntry, AdoptionPolicy, AdoptionRefusal, EntityKind, Estate, Group, GroupSpec, Id,
    MemberSpec, Op, Snapshot, Source as EngineSource, Spec, SubgroupSpec, User, UserSpec,
    ValidationError, find_match, name_folds,
};
use serde::Serialize;

use crate::config::{RemovedGroups, RemovedUsers, Source};
use crate::directory::{DirEntry, normalize_dn};

/// Where in-chain members (Active Directory) are kept on a group entry.
pub(crate) const IN_CHAIN_ATTRIBUTE: &str = "portcullis-in-chain";

/// What a run changes on one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: EntityKind,
    pub name: String,
    pub action: Action,
    /// The fields that change (`username`, `email`, `members +2 -1`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Added,
    /// An entity of another source taken over (`adopt`); `details` name that source
    /// first (`from local`).
    Adopted,
    Changed,
    Deactivated,
    /// A group gone from the directory, kept without this source's memberships.
    Emptied,
    Removed,
}

/// A directory entry whose name or email another entity holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clash {
    pub kind: EntityKind,
    /// `username`, `name` or `email`.
    pub field: &'static str,
    pub value: String,
    pub dn: String,
    /// Who holds it: a source (`local`, `scim`, `ldap:other`) or `this source`.
    pub held_by: String,
    /// Why it was not adopted, when the source adopts at all (privileged, ambiguous,
    /// a source it may not adopt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The names entries of this source have taken (each by its folds), with the DN of
/// the entry that took it: two entries of one run may not share a name.
#[derive(Default)]
struct Taken<'a>(HashMap<String, &'a str>);

impl<'a> Taken<'a> {
    /// Takes the `field` `name` of `kind` for `entry`, or the clash with the entry of
    /// this source that took it first.
    fn take(
        &mut self,
        kind: EntityKind,
        field: &'static str,
        name: &str,
        entry: &'a DirEntry,
    ) -> Result<(), Clash> {
        let keys = name_folds(name);
        if let Some(other) = keys.iter().find_map(|key| self.0.get(key)) {
            return Err(Clash {
                kind,
                field,
                value: name.to_owned(),
                dn: entry.dn.clone(),
                held_by: format!("this source's `{other}`"),
                reason: None,
            });
        }
        for key in keys {
            self.0.insert(key, &entry.dn);
        }
        Ok(())
    }
}

/// How much a run changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub directory_users: usize,
    pub directory_groups: usize,
    pub users_added: usize,
    pub users_adopted: usize,
    pub users_changed: usize,
    pub users_deactivated: usize,
    pub users_removed: usize,
    pub groups_added: usize,
    pub groups_adopted: usize,
    pub groups_changed: usize,
    pub groups_removed: usize,
    pub memberships_added: usize,
    pub memberships_removed: usize,
    pub clashes: usize,
    pub skipped: usize,
}

pub(crate) struct Plan {
    pub ops: Vec<Op>,
    pub changes: Vec<Change>,
    pub clashes: Vec<Clash>,
    pub warnings: Vec<String>,
    pub counts: Counts,
}

struct WantUser<'a> {
    ext: &'a str,
    dn: &'a str,
    username: String,
    name: String,
    email: Option<String>,
    phone: Option<String>,
}

fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.trim() == text
        && !text.chars().any(char::is_control)
        && text.chars().count() <= portcullis_engine::MAX_NAME_CHARS
}

fn valid_email(text: &str) -> bool {
    let (local, domain) = text.split_once('@').unwrap_or(("", ""));
    valid_name(text)
        && !local.is_empty()
        && !domain.is_empty()
        && !text.contains(char::is_whitespace)
}

/// A `uniqueMember` value may end in `#'0101'B` (an optional uid); the DN is before it.
fn member_dn(value: &str) -> &str {
    match value.rfind("#'") {
        Some(at) if value.ends_with("'B") => &value[..at],
        _ => value,
    }
}

fn lower(text: &str) -> String {
    text.to_lowercase()
}

/// Names as they will be once the write applies: who holds each. Keyed by the
/// engine's `name_folds`, so a case variant or a look-alike (`аlice` with a Cyrillic
/// `а` beside `alice`) of a held name is a clash here, as the engine would refuse it.
struct Names {
    holders: HashMap<String, Id>,
}

impl Names {
    fn of<'a>(held: impl Iterator<Item = (&'a str, Id)>) -> Names {
        let mut names = Names {
            holders: HashMap::new(),
        };
        for (name, id) in held {
            names.take(name, id);
        }
        names
    }

    fn holder(&self, name: &str) -> Option<Id> {
        name_folds(name)
            .iter()
            .find_map(|key| self.holders.get(key))
            .copied()
    }

    fn free_for(&self, name: &str, id: Id) -> bool {
        self.holder(name).is_none_or(|holder| holder == id)
    }

    fn take(&mut self, name: &str, id: Id) {
        for key in name_folds(name) {
            self.holders.insert(key, id);
        }
    }

    fn release(&mut self, name: &str, id: Id) {
        for key in name_folds(name) {
            if self.holders.get(&key) == Some(&id) {
                self.holders.remove(&key);
            }
        }
    }
}

/// What adoption makes of a new directory entry.
enum Adoption {
    /// Nothing: the usual rules apply (no policy, no match, or a match of this
    /// source's own).
    None,
    /// It adopts the entity `id`, of `from`.
    Adopt { id: Id, from: EngineSource },
    /// A refused match: a clash with this reason.
    Refused(AdoptionRefusal),
}

/// Whether the new entry `entry` of `kind` adopts an existing entity under `policy`.
/// `external_ids` are the external ids other sources' entities recorded: the entry's
/// is matched only when one of them has it, so that a run over many new entries does
/// not scan the estate for each.
fn adoption(
    snapshot: &Snapshot,
    policy: &AdoptionPolicy,
    ours: &EngineSource,
    kind: EntityKind,
    mut entry: AdoptionEntry<'_>,
    external_ids: &HashSet<&str>,
) -> Adoption {
    if !policy.adopts() {
        return Adoption::None;
    }
    entry.external_id = entry.external_id.filter(|ext| external_ids.contains(ext));
    match find_match(snapshot, kind, &entry) {
        Err(refusal) => Adoption::Refused(refusal),
        Ok(None) => Adoption::None,
        Ok(Some(matched)) if &matched.source == ours => Adoption::None,
        Ok(Some(matched)) => match policy.may_adopt(snapshot, kind, matched.id, ours) {
            Ok(()) => Adoption::Adopt {
                id: matched.id,
                from: matched.source,
            },
            Err(refusal) => Adoption::Refused(refusal),
        },
    }
}

fn source_label(source: &EngineSource, ours: &EngineSource) -> String {
    if source == ours {
        "this source".to_owned()
    } else {
        source.to_string()
    }
}

fn invalid(message: &str) -> ValidationError {
    ValidationError::Invalid {
        field: "ldap",
        message: message.to_owned(),
    }
}

/// The user fields a run sets; everything else (roles, MFA, expiry, password) stays as
/// administrators left it.
#[derive(Clone)]
struct UserFields {
    username: String,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    active: bool,
    ext: String,
}

impl UserFields {
    /// What a run sets on a user for the entry `want`, under `username` (the entry's,
    /// or the user's own when the entry's is taken) and the email it could claim.
    fn of(want: &WantUser, username: String, email: Option<String>) -> UserFields {
        UserFields {
            username,
            name: want.name.clone(),
            email,
            phone: want.phone.clone(),
            active: true,
            ext: want.ext.to_owned(),
        }
    }
}

fn modify_user(id: Id, fields: UserFields) -> Op {
    Op::Modify {
        kind: EntityKind::User,
        target: id.to_string(),
        edit: Box::new(move |spec: &mut Spec| {
            let Spec::User(user) = spec else {
                return Err(invalid("expected a user"));
            };
            user.username = fields.username;
            user.name = fields.name;
            user.email = fields.email;
            user.phone = fields.phone;
            user.active = fields.active;
            user.external_id = Some(fields.ext);
            Ok(())
        }),
    }
}

fn rename_user(id: Id, username: String, clear_email: bool) -> Op {
    Op::Modify {
        kind: EntityKind::User,
        target: id.to_string(),
        edit: Box::new(move |spec: &mut Spec| {
            let Spec::User(user) = spec else {
                return Err(invalid("expected a user"));
            };
            user.username = username;
            if clear_email {
                user.email = None;
            }
            Ok(())
        }),
    }
}

fn set_active(id: Id, active: bool) -> Op {
    Op::Modify {
        kind: EntityKind::User,
        target: id.to_string(),
        edit: Box::new(move |spec: &mut Spec| {
            let Spec::User(user) = spec else {
                return Err(invalid("expected a user"));
            };
            user.active = active;
            Ok(())
        }),
    }
}

/// Sets a group's name and this source's members and subgroups, keeping every other
/// source's. Members are compared by id and by (final) name, so a member another
/// source already holds is not added twice.
fn modify_group(
    id: Id,
    name: Option<String>,
    ext: Option<String>,
    members: Vec<(Id, String)>,
    subgroups: Vec<(Id, String)>,
    ours: EngineSource,
) -> Op {
    Op::Modify {
        kind: EntityKind::Group,
        target: id.to_string(),
        edit: Box::new(move |spec: &mut Spec| {
            let Spec::Group(group) = spec else {
                return Err(invalid("expected a group"));
            };
            if let Some(name) = name {
                group.name = name;
            }
            if let Some(ext) = ext {
                group.external_id = Some(ext);
            }
            let group_source = group.source.clone();
            let is_ours =
                |source: &Option<EngineSource>| source.as_ref().unwrap_or(&group_source) == &ours;
            group.members.retain(|m| match m {
                MemberSpec::Name(_) => group_source != ours,
                MemberSpec::Detailed { source, .. } => !is_ours(source),
            });
            let kept: HashSet<String> = group.members.iter().map(|m| lower(m.user())).collect();
            for (member, name) in members {
                if !kept.contains(&lower(&name)) && !kept.contains(&member.to_string()) {
                    group.members.push(MemberSpec::Detailed {
                        user: member.to_string(),
                        expires_at: None,
                        source: Some(ours.clone()),
                    });
                }
            }
            group.subgroups.retain(|m| match m {
                SubgroupSpec::Name(_) => group_source != ours,
                SubgroupSpec::Detailed { source, .. } => !is_ours(source),
            });
            let kept: HashSet<String> = group.subgroups.iter().map(|m| lower(m.group())).collect();
            for (subgroup, name) in subgroups {
                if !kept.contains(&lower(&name)) && !kept.contains(&subgroup.to_string()) {
                    group.subgroups.push(SubgroupSpec::Detailed {
                        group: subgroup.to_string(),
                        expires_at: None,
                        source: Some(ours.clone()),
                    });
                }
            }
            Ok(())
        }),
    }
}

/// The plan that makes `estate` agree with the directory entries `users` and `groups`
/// (by stable id), for `source`.
pub(crate) fn plan(
    source: &Source,
    users: &BTreeMap<String, DirEntry>,
    groups: &BTreeMap<String, DirEntry>,
    estate: &Estate,
    snapshot: &Snapshot,
) -> Plan {
    let ours = source.engine_source();
    // Adoptions, in the order they are written (each before any edit of its entity).
    let mut adopt_ops: Vec<Op> = Vec::new();
    let mut adopted_from: HashMap<Id, EngineSource> = HashMap::new();
    let adopt_op = |kind: EntityKind, id: Id| Op::Adopt {
        kind,
        target: id.to_string(),
        source: ours.clone(),
        policy: source.adopt.clone(),
    };
    let user_config = &source.config.users;
    let mut plan = Plan {
        ops: Vec::new(),
        changes: Vec::new(),
        clashes: Vec::new(),
        warnings: Vec::new(),
        counts: Counts {
            directory_users: users.len(),
            directory_groups: groups.len(),
            ..Counts::default()
        },
    };

    // ---- Users the directory wants.
    let mut wants: Vec<WantUser> = Vec::new();
    let mut seen_usernames = Taken::default();
    let mut seen_emails: HashSet<String> = HashSet::new();
    for (ext, entry) in users {
        let Some(username) = entry.first(&user_config.username) else {
            plan.warnings.push(format!(
                "user `{}` has no `{}`; skipped",
                entry.dn, user_config.username
            ));
            plan.counts.skipped += 1;
            continue;
        };
        if !valid_name(username) {
            plan.warnings.push(format!(
                "user `{}`: `{username}` is not a valid username; skipped",
                entry.dn
            ));
            plan.counts.skipped += 1;
            continue;
        }
        if let Err(clash) = seen_usernames.take(EntityKind::User, "username", username, entry) {
            plan.clashes.push(clash);
            continue;
        }
        let name = entry
            .first(&user_config.name)
            .filter(|n| valid_name(n))
            .unwrap_or(username)
            .to_owned();
        let mut email = user_config
            .email
            .as_deref()
            .and_then(|attribute| entry.first(attribute))
            .map(str::to_owned);
        if let Some(address) = &email {
            if !valid_email(address) {
                plan.warnings.push(format!(
                    "user `{}`: `{address}` is not an email address; left out",
                    entry.dn
                ));
                email = None;
            } else {
                let keys = name_folds(address);
                if keys.iter().any(|key| seen_emails.contains(key)) {
                    plan.warnings.push(format!(
                        "user `{}`: email `{address}` is also another entry's; left out",
                        entry.dn
                    ));
                    email = None;
                } else {
                    seen_emails.extend(keys);
                }
            }
        }
        let phone = user_config
            .phone
            .as_deref()
            .and_then(|attribute| entry.first(attribute))
            .filter(|p| valid_name(p))
            .map(str::to_owned);
        wants.push(WantUser {
            ext,
            dn: &entry.dn,
            username: username.to_owned(),
            name,
            email,
            phone,
        });
    }

    // ---- The engine as it is.
    let ours_users: HashMap<&str, &User> = estate
        .users
        .iter()
        .filter(|u| u.source == ours)
        .filter_map(|u| u.external_id.as_deref().map(|ext| (ext, u)))
        .collect();
    let users_by_id: HashMap<Id, &User> = estate.users.iter().map(|u| (u.id, u)).collect();
    let wanted_exts: HashSet<&str> = wants.iter().map(|w| w.ext).collect();
    let delete_vanished = source.config.removed_users == RemovedUsers::Delete;
    let is_stale = |user: &User| {
        user.source == ours
            && user
                .external_id
                .as_deref()
                .is_none_or(|ext| !wanted_exts.contains(ext))
    };
    let mut usernames = Names::of(estate.users.iter().map(|u| (u.username.as_str(), u.id)));
    let mut emails = Names::of(
        estate
            .users
            .iter()
            .filter_map(|u| u.email.as_deref().map(|e| (e, u.id))),
    );
    if delete_vanished {
        for user in estate.users.iter().filter(|u| is_stale(u)) {
            usernames.release(&user.username, user.id);
            if let Some(email) = &user.email {
                emails.release(email, user.id);
            }
        }
    }

    // ---- Matched users: renames first, in two passes, so that a name one user
    // leaves can be taken by another.
    let (matched, unmatched): (Vec<&WantUser>, Vec<&WantUser>) =
        wants.iter().partition(|w| ours_users.contains_key(w.ext));
    for want in &matched {
        let user = ours_users[want.ext];
        usernames.release(&user.username, user.id);
        if let Some(email) = &user.email {
            emails.release(email, user.id);
        }
    }
    // (id, final fields) of every matched or adopted user.
    let mut finals: Vec<(Id, UserFields, Option<&User>)> = Vec::new();
    let mut ids_by_ext: HashMap<&str, (Id, String)> = HashMap::new();
    let mut matched_sorted = matched.clone();
    // Users keeping their name claim it before renamed ones.
    matched_sorted.sort_by_key(|w| lower(&w.username) != lower(&ours_users[w.ext].username));
    for want in matched_sorted {
        let user = ours_users[want.ext];
        let mut username = want.username.clone();
        if !usernames.free_for(&username, user.id) {
            let holder = usernames
                .holder(&username)
                .and_then(|h| users_by_id.get(&h));
            plan.clashes.push(Clash {
                kind: EntityKind::User,
                field: "username",
                value: username.clone(),
                dn: want.dn.to_owned(),
                held_by: holder
                    .map_or("this source".to_owned(), |h| source_label(&h.source, &ours)),
                reason: None,
            });
            username = user.username.clone();
        }
        usernames.take(&username, user.id);
        let email = claim_email(&mut emails, want, user.id, &users_by_id, &ours, &mut plan);
        let fields = UserFields::of(want, username, email);
        ids_by_ext.insert(want.ext, (user.id, fields.username.clone()));
        finals.push((user.id, fields, Some(user)));
    }

    // ---- New entries: created, or adopting a stale user of this source by name.
    let mut creates: Vec<(Id, UserFields)> = Vec::new();
    let mut adopted: HashSet<Id> = HashSet::new();
    let other_user_exts: HashSet<&str> = estate
        .users
        .iter()
        .filter(|u| u.source != ours)
        .filter_map(|u| u.external_id.as_deref())
        .collect();
    for want in unmatched {
        let entry = AdoptionEntry {
            name: &want.username,
            email: want.email.as_deref(),
            external_id: Some(want.ext),
        };
        match adoption(
            snapshot,
            &source.adopt,
            &ours,
            EntityKind::User,
            entry,
            &other_user_exts,
        ) {
            Adoption::None => {}
            Adoption::Adopt { id, from } if !adopted.contains(&id) => {
                let holder = users_by_id[&id];
                usernames.release(&holder.username, holder.id);
                if !usernames.free_for(&want.username, holder.id) {
                    // Taken by an entry of this run: a clash, as without adoption.
                    usernames.take(&holder.username, holder.id);
                    plan.clashes.push(Clash {
                        kind: EntityKind::User,
                        field: "username",
                        value: want.username.clone(),
                        dn: want.dn.to_owned(),
                        held_by: "this source".to_owned(),
                        reason: None,
                    });
                    continue;
                }
                adopted.insert(id);
                usernames.take(&want.username, holder.id);
                if let Some(email) = &holder.email {
                    emails.release(email, holder.id);
                }
                let email =
                    claim_email(&mut emails, want, holder.id, &users_by_id, &ours, &mut plan);
                let fields = UserFields::of(want, want.username.clone(), email);
                ids_by_ext.insert(want.ext, (holder.id, fields.username.clone()));
                finals.push((holder.id, fields, Some(holder)));
                adopt_ops.push(adopt_op(EntityKind::User, id));
                adopted_from.insert(id, from);
                continue;
            }
            Adoption::Adopt { .. } => {}
            Adoption::Refused(refusal) => {
                plan.clashes.push(Clash::refused(
                    EntityKind::User,
                    "username",
                    &want.username,
                    want.dn,
                    &refusal,
                    &ours,
                ));
                continue;
            }
        }
        let holder = usernames
            .holder(&want.username)
            .and_then(|h| users_by_id.get(&h).copied());
        match holder {
            Some(holder) if is_stale(holder) && !adopted.contains(&holder.id) => {
                adopted.insert(holder.id);
                if let Some(email) = &holder.email {
                    emails.release(email, holder.id);
                }
                let email =
                    claim_email(&mut emails, want, holder.id, &users_by_id, &ours, &mut plan);
                let fields = UserFields::of(want, want.username.clone(), email);
                ids_by_ext.insert(want.ext, (holder.id, fields.username.clone()));
                finals.push((holder.id, fields, Some(holder)));
            }
            Some(holder) => {
                plan.clashes.push(Clash {
                    kind: EntityKind::User,
                    field: "username",
                    value: want.username.clone(),
                    dn: want.dn.to_owned(),
                    held_by: source_label(&holder.source, &ours),
                    reason: None,
                });
            }
            None => {
                let id = Id::random();
                usernames.take(&want.username, id);
                let email = claim_email(&mut emails, want, id, &users_by_id, &ours, &mut plan);
                let fields = UserFields::of(want, want.username.clone(), email);
                ids_by_ext.insert(want.ext, (id, fields.username.clone()));
                creates.push((id, fields));
            }
        }
    }

    // ---- Users gone from the directory.
    let kept_ids: HashSet<Id> = ids_by_ext.values().map(|(id, _)| *id).collect();
    let vanished: Vec<&User> = estate
        .users
        .iter()
        .filter(|u| u.source == ours && !kept_ids.contains(&u.id))
        .collect();

    // ---- Groups.
    let mut group_ops_create = Vec::new();
    let mut group_ops_modify = Vec::new();
    let mut group_ops_first = Vec::new();
    let mut group_ops_last = Vec::new();
    if let Some(group_config) = &source.config.groups {
        let ours_groups: HashMap<&str, &Group> = estate
            .groups
            .iter()
            .filter(|g| g.source == ours)
            .filter_map(|g| g.external_id.as_deref().map(|ext| (ext, g)))
            .collect();
        let groups_by_id: HashMap<Id, &Group> = estate.groups.iter().map(|g| (g.id, g)).collect();
        // Directory DN → user (id, final username) / group ext; uid → user.
        let mut user_by_dn: HashMap<String, (Id, String)> = HashMap::new();
        let mut user_by_uid: HashMap<String, (Id, String)> = HashMap::new();
        for want in &wants {
            if let Some(found) = ids_by_ext.get(want.ext) {
                user_by_dn.insert(normalize_dn(want.dn), found.clone());
                user_by_uid.insert(lower(&want.username), found.clone());
            }
        }
        let group_by_dn: HashMap<String, &str> = groups
            .iter()
            .map(|(ext, entry)| (normalize_dn(&entry.dn), ext.as_str()))
            .collect();

        // Names and membership the directory wants.
        struct WantGroup<'a> {
            ext: &'a str,
            dn: &'a str,
            name: String,
            members: BTreeMap<Id, String>,
            subgroup_exts: BTreeSet<&'a str>,
        }
        let mut want_groups: Vec<WantGroup> = Vec::new();
        let mut seen_names = Taken::default();
        let mut n_unresolved = 0usize;
        for (ext, entry) in groups {
            let Some(name) = entry.first(&group_config.name).filter(|n| valid_name(n)) else {
                plan.warnings.push(format!(
                    "group `{}` has no valid `{}`; skipped",
                    entry.dn, group_config.name
                ));
                plan.counts.skipped += 1;
                continue;
            };
            if let Err(clash) = seen_names.take(EntityKind::Group, "name", name, entry) {
                plan.clashes.push(clash);
                continue;
            }
            let mut members = BTreeMap::new();
            let mut subgroup_exts = BTreeSet::new();
            if group_config.in_chain {
                for value in entry.all(IN_CHAIN_ATTRIBUTE) {
                    match user_by_dn.get(&normalize_dn(value)) {
                        Some((id, name)) => {
                            members.insert(*id, name.clone());
                        }
                        None => n_unresolved += 1,
                    }
                }
            } else {
                for attribute in &group_config.membership {
                    let by_uid = attribute.eq_ignore_ascii_case("memberUid");
                    for value in entry.all(attribute) {
                        if by_uid {
                            match user_by_uid.get(&lower(value.trim())) {
                                Some((id, name)) => {
                                    members.insert(*id, name.clone());
                                }
                                None => n_unresolved += 1,
                            }
                            continue;
                        }
                        let dn = normalize_dn(member_dn(value));
                        if let Some((id, name)) = user_by_dn.get(&dn) {
                            members.insert(*id, name.clone());
                        } else if let Some(sub) = group_by_dn.get(&dn) {
                            if group_config.nested && *sub != ext.as_str() {
                                subgroup_exts.insert(*sub);
                            }
                        } else {
                            n_unresolved += 1;
                        }
                    }
                }
            }
            want_groups.push(WantGroup {
                ext,
                dn: &entry.dn,
                name: name.to_owned(),
                members,
                subgroup_exts,
            });
        }
        if n_unresolved > 0 {
            plan.warnings.push(format!(
                "{n_unresolved} member values name no user or group of this source (outside the bases or filters, or skipped); ignored"
            ));
        }

        let wanted_group_exts: HashSet<&str> = want_groups.iter().map(|g| g.ext).collect();
        let delete_vanished_groups = source.config.removed_groups == RemovedGroups::Delete;
        let group_is_stale = |group: &Group| {
            group.source == ours
                && group
                    .external_id
                    .as_deref()
                    .is_none_or(|ext| !wanted_group_exts.contains(ext))
        };
        let mut group_names = Names::of(estate.groups.iter().map(|g| (g.name.as_str(), g.id)));
        if delete_vanished_groups {
            for group in estate.groups.iter().filter(|g| group_is_stale(g)) {
                group_names.release(&group.name, group.id);
            }
        }
        for want in &want_groups {
            if let Some(group) = ours_groups.get(want.ext) {
                group_names.release(&group.name, group.id);
            }
        }
        // ext → (id, final name, existing group)
        let mut group_finals: BTreeMap<&str, (Id, String, Option<&Group>)> = BTreeMap::new();
        let mut adopted_groups: HashSet<Id> = HashSet::new();
        let other_group_exts: HashSet<&str> = estate
            .groups
            .iter()
            .filter(|g| g.source != ours)
            .filter_map(|g| g.external_id.as_deref())
            .collect();
        let mut sorted: Vec<&WantGroup> = want_groups.iter().collect();
        sorted.sort_by_key(|w| {
            (
                !ours_groups.contains_key(w.ext),
                ours_groups
                    .get(w.ext)
                    .is_some_and(|g| lower(&g.name) != lower(&w.name)),
            )
        });
        for want in sorted {
            match ours_groups.get(want.ext) {
                Some(group) => {
                    let mut name = want.name.clone();
                    if !group_names.free_for(&name, group.id) {
                        let holder = group_names.holder(&name).and_then(|h| groups_by_id.get(&h));
                        plan.clashes.push(Clash {
                            kind: EntityKind::Group,
                            field: "name",
                            value: name.clone(),
                            dn: want.dn.to_owned(),
                            held_by: holder.map_or("this source".to_owned(), |h| {
                                source_label(&h.source, &ours)
                            }),
                            reason: None,
                        });
                        name = group.name.clone();
                    }
                    group_names.take(&name, group.id);
                    group_finals.insert(want.ext, (group.id, name, Some(group)));
                }
                None => {
                    let entry = AdoptionEntry {
                        name: &want.name,
                        email: None,
                        external_id: Some(want.ext),
                    };
                    match adoption(
                        snapshot,
                        &source.adopt,
                        &ours,
                        EntityKind::Group,
                        entry,
                        &other_group_exts,
                    ) {
                        Adoption::None => {}
                        Adoption::Adopt { id, from } if !adopted_groups.contains(&id) => {
                            let holder = groups_by_id[&id];
                            group_names.release(&holder.name, holder.id);
                            if group_names.free_for(&want.name, holder.id) {
                                adopted_groups.insert(id);
                                group_names.take(&want.name, holder.id);
                                group_finals
                                    .insert(want.ext, (holder.id, want.name.clone(), Some(holder)));
                                adopt_ops.push(adopt_op(EntityKind::Group, id));
                                adopted_from.insert(id, from);
                                continue;
                            }
                            group_names.take(&holder.name, holder.id);
                        }
                        Adoption::Adopt { .. } => {}
                        Adoption::Refused(refusal) => {
                            plan.clashes.push(Clash::refused(
                                EntityKind::Group,
                                "name",
                                &want.name,
                                want.dn,
                                &refusal,
                                &ours,
                            ));
                            continue;
                        }
                    }
                    let holder = group_names
                        .holder(&want.name)
                        .and_then(|h| groups_by_id.get(&h).copied());
                    match holder {
                        Some(holder)
                            if group_is_stale(holder) && !adopted_groups.contains(&holder.id) =>
                        {
                            adopted_groups.insert(holder.id);
                            group_finals
                                .insert(want.ext, (holder.id, want.name.clone(), Some(holder)));
                        }
                        Some(holder) => plan.clashes.push(Clash {
                            kind: EntityKind::Group,
                            field: "name",
                            value: want.name.clone(),
                            dn: want.dn.to_owned(),
                            held_by: source_label(&holder.source, &ours),
                            reason: None,
                        }),
                        None => {
                            let id = Id::random();
                            group_names.take(&want.name, id);
                            group_finals.insert(want.ext, (id, want.name.clone(), None));
                        }
                    }
                }
            }
        }

        // Break cycles among the groups that will exist.
        let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for want in &want_groups {
            if group_finals.contains_key(want.ext) {
                edges.insert(
                    want.ext,
                    want.subgroup_exts
                        .iter()
                        .copied()
                        .filter(|s| group_finals.contains_key(s))
                        .collect(),
                );
            }
        }
        for (parent, child) in break_cycles(&mut edges) {
            plan.warnings.push(format!(
                "group `{}` contains `{}`, which contains it: that nesting is left out",
                group_finals[parent].1, group_finals[child].1
            ));
        }

        // Temporary names for swaps: a renamed group whose current name another wants.
        let final_names: HashMap<String, Id> = group_finals
            .values()
            .map(|(id, name, _)| (lower(name), *id))
            .collect();
        for (id, name, existing) in group_finals.values() {
            if let Some(group) = existing {
                if lower(&group.name) != lower(name)
                    && final_names
                        .get(&lower(&group.name))
                        .is_some_and(|other| other != id)
                {
                    group_ops_first.push(modify_group_name(*id, format!("ldap-rename-{id}")));
                }
            }
        }

        for want in &want_groups {
            let Some((id, name, existing)) = group_finals.get(want.ext) else {
                continue;
            };
            let members: Vec<(Id, String)> = want
                .members
                .iter()
                .map(|(id, n)| (*id, n.clone()))
                .collect();
            let subgroups: Vec<(Id, String)> = edges[want.ext]
                .iter()
                .map(|s| (group_finals[s].0, group_finals[s].1.clone()))
                .collect();
            match existing {
                None => {
                    let mut spec = GroupSpec::new(name.clone());
                    spec.id = Some(*id);
                    spec.source = ours.clone();
                    spec.external_id = Some(want.ext.to_owned());
                    spec.members = members
                        .iter()
                        .map(|(member, _)| MemberSpec::Detailed {
                            user: member.to_string(),
                            expires_at: None,
                            source: Some(ours.clone()),
                        })
                        .collect();
                    group_ops_create.push(Op::Create(Spec::Group(spec)));
                    plan.counts.groups_added += 1;
                    plan.counts.memberships_added += members.len() + subgroups.len();
                    let mut details = Vec::new();
                    if !members.is_empty() {
                        details.push(format!("members +{}", members.len()));
                    }
                    if !subgroups.is_empty() {
                        details.push(format!("subgroups +{}", subgroups.len()));
                        // The members again: the edit sets this source's members whole.
                        group_ops_modify.push(modify_group(
                            *id,
                            None,
                            None,
                            members.clone(),
                            subgroups,
                            ours.clone(),
                        ));
                    }
                    plan.changes.push(Change {
                        kind: EntityKind::Group,
                        name: name.clone(),
                        action: Action::Added,
                        details,
                    });
                }
                Some(group) => {
                    let mut details = Vec::new();
                    if group.name != *name {
                        details.push(format!("name `{}` → `{name}`", group.name));
                    }
                    if group.external_id.as_deref() != Some(want.ext) {
                        details.push("linked to a new directory entry".to_owned());
                    }
                    let (added, removed) = member_diff(
                        group.members.iter().map(|m| (m.user, &m.source)),
                        members.iter().map(|(id, _)| *id),
                        &ours,
                    );
                    let (sub_added, sub_removed) = member_diff(
                        group.subgroups.iter().map(|m| (m.group, &m.source)),
                        subgroups.iter().map(|(id, _)| *id),
                        &ours,
                    );
                    if added + removed > 0 {
                        details.push(format!("members +{added} -{removed}"));
                    }
                    if sub_added + sub_removed > 0 {
                        details.push(format!("subgroups +{sub_added} -{sub_removed}"));
                    }
                    let action = if let Some(from) = adopted_from.get(id) {
                        details.insert(0, format!("from `{from}`"));
                        plan.counts.groups_adopted += 1;
                        Action::Adopted
                    } else if !details.is_empty() {
                        plan.counts.groups_changed += 1;
                        Action::Changed
                    } else {
                        continue;
                    };
                    plan.counts.memberships_added += added + sub_added;
                    plan.counts.memberships_removed += removed + sub_removed;
                    group_ops_modify.push(modify_group(
                        *id,
                        Some(name.clone()),
                        Some(want.ext.to_owned()),
                        members,
                        subgroups,
                        ours.clone(),
                    ));
                    plan.changes.push(Change {
                        kind: EntityKind::Group,
                        name: name.clone(),
                        action,
                        details,
                    });
                }
            }
        }

        // Groups gone from the directory.
        let kept_groups: HashSet<Id> = group_finals.values().map(|(id, _, _)| *id).collect();
        for group in estate
            .groups
            .iter()
            .filter(|g| g.source == ours && !kept_groups.contains(&g.id))
        {
            if delete_vanished_groups {
                group_ops_first.insert(
                    0,
                    Op::Delete {
                        kind: EntityKind::Group,
                        target: group.id.to_string(),
                    },
                );
                plan.counts.groups_removed += 1;
                plan.changes.push(Change {
                    kind: EntityKind::Group,
                    name: group.name.clone(),
                    action: Action::Removed,
                    details: Vec::new(),
                });
            } else {
                let n_members = group.members.iter().filter(|m| m.source == ours).count()
                    + group.subgroups.iter().filter(|m| m.source == ours).count();
                if n_members > 0 {
                    plan.counts.groups_removed += 1;
                    plan.counts.memberships_removed += n_members;
                    group_ops_last.push(modify_group(
                        group.id,
                        None,
                        None,
                        Vec::new(),
                        Vec::new(),
                        ours.clone(),
                    ));
                    plan.changes.push(Change {
                        kind: EntityKind::Group,
                        name: group.name.clone(),
                        action: Action::Emptied,
                        details: vec![format!("members -{n_members}")],
                    });
                }
            }
        }
    }

    // ---- Assemble the write, in an order each step of which is valid: adoptions
    // first, so that every later edit of an adopted entity is this source's.
    let mut ops: Vec<Op> = adopt_ops;
    let mut user_ops_last: Vec<Op> = Vec::new();
    for user in &vanished {
        if delete_vanished {
            ops.push(Op::Delete {
                kind: EntityKind::User,
                target: user.id.to_string(),
            });
            plan.counts.users_removed += 1;
            plan.changes.push(Change {
                kind: EntityKind::User,
                name: user.username.clone(),
                action: Action::Removed,
                details: Vec::new(),
            });
        } else if user.active {
            user_ops_last.push(set_active(user.id, false));
            plan.counts.users_deactivated += 1;
            plan.changes.push(Change {
                kind: EntityKind::User,
                name: user.username.clone(),
                action: Action::Deactivated,
                details: Vec::new(),
            });
        }
    }
    ops.append(&mut group_ops_first);
    // A renamed user whose current name (or email) another wants moves aside first.
    let final_usernames: HashMap<String, Id> = finals
        .iter()
        .map(|(id, f, _)| (lower(&f.username), *id))
        .chain(creates.iter().map(|(id, f)| (lower(&f.username), *id)))
        .collect();
    let final_emails: HashMap<String, Id> = finals
        .iter()
        .filter_map(|(id, f, _)| f.email.as_deref().map(|e| (lower(e), *id)))
        .chain(
            creates
                .iter()
                .filter_map(|(id, f)| f.email.as_deref().map(|e| (lower(e), *id))),
        )
        .collect();
    for (id, fields, existing) in &finals {
        let Some(user) = existing else { continue };
        let name_wanted = lower(&user.username) != lower(&fields.username)
            && final_usernames
                .get(&lower(&user.username))
                .is_some_and(|o| o != id);
        let email_wanted = user.email.as_deref().is_some_and(|e| {
            Some(lower(e)) != fields.email.as_deref().map(lower)
                && final_emails.get(&lower(e)).is_some_and(|o| o != id)
        });
        if name_wanted || email_wanted {
            let username = if name_wanted {
                format!("ldap-rename-{id}")
            } else {
                user.username.clone()
            };
            ops.push(rename_user(*id, username, email_wanted));
        }
    }
    for (id, fields, existing) in finals {
        let Some(user) = existing else { continue };
        let mut details = Vec::new();
        if user.username != fields.username {
            details.push(format!(
                "username `{}` → `{}`",
                user.username, fields.username
            ));
        }
        if user.name != fields.name {
            details.push("name".to_owned());
        }
        if user.email != fields.email {
            details.push("email".to_owned());
        }
        if user.phone != fields.phone {
            details.push("phone".to_owned());
        }
        if !user.active {
            details.push("reactivated".to_owned());
        }
        if user.external_id.as_deref() != Some(fields.ext.as_str()) {
            details.push("linked to a new directory entry".to_owned());
        }
        if let Some(from) = adopted_from.get(&id) {
            details.insert(0, format!("from `{from}`"));
            plan.counts.users_adopted += 1;
            plan.changes.push(Change {
                kind: EntityKind::User,
                name: fields.username.clone(),
                action: Action::Adopted,
                details,
            });
            ops.push(modify_user(id, fields));
            continue;
        }
        if details.is_empty() {
            continue;
        }
        plan.counts.users_changed += 1;
        plan.changes.push(Change {
            kind: EntityKind::User,
            name: fields.username.clone(),
            action: Action::Changed,
            details,
        });
        ops.push(modify_user(id, fields));
    }
    for (id, fields) in creates {
        let mut spec = UserSpec::new(fields.username.clone());
        spec.id = Some(id);
        spec.name = fields.name;
        spec.email = fields.email;
        spec.phone = fields.phone;
        spec.source = ours.clone();
        spec.external_id = Some(fields.ext);
        plan.counts.users_added += 1;
        plan.changes.push(Change {
            kind: EntityKind::User,
            name: fields.username,
            action: Action::Added,
            details: Vec::new(),
        });
        ops.push(Op::Create(Spec::User(spec)));
    }
    ops.append(&mut group_ops_create);
    ops.append(&mut group_ops_modify);
    ops.append(&mut group_ops_last);
    ops.append(&mut user_ops_last);
    plan.counts.clashes = plan.clashes.len();
    plan.ops = ops;
    plan
}

/// Who holds what a refused adoption matched, for its clash.
impl Clash {
    /// The clash an entry makes when its match may not be adopted: `refusal` says
    /// why, and who holds the name.
    fn refused(
        kind: EntityKind,
        field: &'static str,
        value: &str,
        dn: &str,
        refusal: &AdoptionRefusal,
        ours: &EngineSource,
    ) -> Clash {
        Clash {
            kind,
            field,
            value: value.to_owned(),
            dn: dn.to_owned(),
            held_by: refused_holder(refusal, ours),
            reason: Some(refusal.to_string()),
        }
    }
}

fn refused_holder(refusal: &AdoptionRefusal, ours: &EngineSource) -> String {
    match refusal {
        AdoptionRefusal::SourceNotAdoptable { from, .. } => source_label(from, ours),
        AdoptionRefusal::Privileged { name, .. } => format!("privileged `{name}`"),
        AdoptionRefusal::Ambiguous { first, second, .. } => {
            format!("two accounts, `{first}` and `{second}`")
        }
        AdoptionRefusal::AlreadyLocal { name, .. } => format!("`{name}`"),
        AdoptionRefusal::NoSource(kind) => kind.to_string(),
    }
}

fn modify_group_name(id: Id, name: String) -> Op {
    Op::Modify {
        kind: EntityKind::Group,
        target: id.to_string(),
        edit: Box::new(move |spec: &mut Spec| {
            let Spec::Group(group) = spec else {
                return Err(invalid("expected a group"));
            };
            group.name = name;
            Ok(())
        }),
    }
}

/// The email `want` may have: its own unless another entity keeps it (a clash).
fn claim_email(
    emails: &mut Names,
    want: &WantUser,
    id: Id,
    users_by_id: &HashMap<Id, &User>,
    ours: &EngineSource,
    plan: &mut Plan,
) -> Option<String> {
    let email = want.email.clone()?;
    if emails.free_for(&email, id) {
        emails.take(&email, id);
        return Some(email);
    }
    let holder = emails.holder(&email).and_then(|h| users_by_id.get(&h));
    plan.clashes.push(Clash {
        kind: EntityKind::User,
        field: "email",
        value: email,
        dn: want.dn.to_owned(),
        held_by: holder.map_or("this source".to_owned(), |h| source_label(&h.source, ours)),
        reason: None,
    });
    None
}

/// How many of this source's memberships a group gains and loses: `current` as
/// (member, source), `wanted` this source's members. A member another source holds
/// counts as present.
fn member_diff<'a>(
    current: impl Iterator<Item = (Id, &'a EngineSource)>,
    wanted: impl Iterator<Item = Id>,
    ours: &EngineSource,
) -> (usize, usize) {
    let mut theirs = HashSet::new();
    let mut mine = HashSet::new();
    for (id, source) in current {
        if source == ours {
            mine.insert(id);
        } else {
            theirs.insert(id);
        }
    }
    let wanted: HashSet<Id> = wanted.filter(|id| !theirs.contains(id)).collect();
    let added = wanted.difference(&mine).count();
    let removed = mine.difference(&wanted).count();
    (added, removed)
}

/// Removes the edges that close a cycle (depth-first, in key order), returning them.
fn break_cycles<'a>(edges: &mut BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<(&'a str, &'a str)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut dropped = Vec::new();
    let roots: Vec<&str> = edges.keys().copied().collect();
    for root in roots {
        if marks.contains_key(root) {
            continue;
        }
        // Iterative DFS: (node, its children, next child position).
        let mut stack: Vec<(&str, Vec<&str>, usize)> = Vec::new();
        marks.insert(root, Mark::Open);
        stack.push((root, edges[root].iter().copied().collect(), 0));
        while let Some((node, children, at)) = stack.last_mut() {
            if *at == children.len() {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            let child = children[*at];
            *at += 1;
            let node = *node;
            match marks.get(child) {
                Some(Mark::Open) => dropped.push((node, child)),
                Some(Mark::Done) => {}
                None => {
                    marks.insert(child, Mark::Open);
                    let grandchildren = edges
                        .get(child)
                        .map_or_else(Vec::new, |c| c.iter().copied().collect());
                    stack.push((child, grandchildren, 0));
                }
            }
        }
    }
    for (parent, child) in &dropped {
        if let Some(children) = edges.get_mut(parent) {
            children.remove(child);
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_loses_its_closing_edge_only() {
        let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        edges.insert("a", BTreeSet::from(["b"]));
        edges.insert("b", BTreeSet::from(["c"]));
        edges.insert("c", BTreeSet::from(["a", "d"]));
        edges.insert("d", BTreeSet::new());
        let dropped = break_cycles(&mut edges);
        assert_eq!(dropped, vec![("c", "a")]);
        assert!(edges["c"].contains("d"));
        assert!(edges["a"].contains("b"));
    }

    #[test]
    fn unique_member_values_lose_their_uid_suffix() {
        assert_eq!(member_dn("uid=a,dc=x#'0101'B"), "uid=a,dc=x");
        assert_eq!(member_dn("uid=a,dc=x"), "uid=a,dc=x");
    }

    #[test]
    fn memberships_of_other_sources_count_as_present() {
        let ours = EngineSource::Ldap("corp".into());
        let local = EngineSource::Local;
        let a = Id::from_u128(1);
        let b = Id::from_u128(2);
        let c = Id::from_u128(3);
        let current = [(a, &ours), (b, &local)];
        // Wanted: b (held locally: nothing to add), c (new). a goes.
        let (added, removed) = member_diff(current.into_iter(), [b, c].into_iter(), &ours);
        assert_eq!((added, removed), (1, 1));
    }
}
