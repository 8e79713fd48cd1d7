//! Adoption: an identity source (SCIM, an LDAP directory) taking over a user or a
//! group that another source (an administrator, an import) created, so the account
//! keeps its id, memberships, rules, roles, MFA enrolments and history and only its
//! `source` changes. Release hands one back to `local`.
//!
//! The rules live here, at the write door, so every front-end applies the same ones:
//! - **Matching** an incoming entry to an existing entity: by name (a username or a
//!   group name, case-insensitively, and through the look-alike fold the engine uses
//!   to refuse confusable names), else by email (users), else by `externalId` where
//!   the existing entity recorded one. An entry that matches two different entities
//!   is refused as ambiguous, never resolved by a guess.
//! - **The privilege guard**: a user holding any system role beyond `user`, or any
//!   role with a write permission through a group, and a group assigning a role with
//!   a write permission, is adopted only when the policy names it
//!   ([`AdoptionPolicy::privileged`]): otherwise an identity provider's token could
//!   claim an administrator and set its password.
//!
//! Matching and the guard only read a snapshot; [`crate::Op::Adopt`] checks the guard
//! again inside the writer, so a front-end's earlier reading cannot be outrun.

use serde::{Deserialize, Serialize};

use crate::model::{EntityKind, Id, Source};
use crate::snapshot::Snapshot;

/// Which entities an identity source may take over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptionPolicy {
    /// The sources whose users and groups may be adopted (`local`, `import`, …).
    /// Empty: none (the default).
    #[serde(default)]
    pub sources: Vec<Source>,
    /// The privileged users and groups (see the module documentation) that may be
    /// adopted all the same, by username or group name (case-insensitively). Empty:
    /// none (the default).
    #[serde(default)]
    pub privileged: Vec<String>,
}

/// An incoming entry, as matched against existing entities.
#[derive(Debug, Clone, Copy)]
pub struct AdoptionEntry<'a> {
    /// A username (users) or a group name.
    pub name: &'a str,
    /// Users only.
    pub email: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

/// Which field of an entry matched an existing entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Name,
    Email,
    ExternalId,
}

impl std::fmt::Display for MatchedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MatchedBy::Name => "name",
            MatchedBy::Email => "email",
            MatchedBy::ExternalId => "externalId",
        })
    }
}

/// An existing entity an entry matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub kind: EntityKind,
    pub id: Id,
    /// Its username or group name.
    pub name: String,
    pub source: Source,
    pub by: MatchedBy,
}

/// Why an entity is not adopted (or released).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptionRefusal {
    /// The entity belongs to a source the policy does not name.
    #[error("{kind} `{name}` belongs to source `{from}`, which `{to}` may not adopt")]
    SourceNotAdoptable {
        kind: EntityKind,
        name: String,
        from: Source,
        to: Source,
    },
    /// The privilege guard: the entity holds or hands out administrative roles.
    #[error(
        "{kind} `{name}` holds privileged roles (`{}`); it is adopted only when the config names it in adopt_privileged",
        roles.join("`, `")
    )]
    Privileged {
        kind: EntityKind,
        name: String,
        roles: Vec<String>,
    },
    /// The entry matches two different entities.
    #[error("`{entry}` matches two {kind}s: `{first}` by {first_by} and `{second}` by {second_by}")]
    Ambiguous {
        kind: EntityKind,
        entry: String,
        first: String,
        first_by: MatchedBy,
        second: String,
        second_by: MatchedBy,
    },
    /// A release of an entity that is already local.
    #[error("{kind} `{name}` is already local")]
    AlreadyLocal { kind: EntityKind, name: String },
    /// Only users and groups have a source.
    #[error("a {0} has no source to change")]
    NoSource(EntityKind),
}

/// Whether a permission changes something: every one but reads and decisions.
fn is_write_permission(permission: &str) -> bool {
    !(permission.ends_with(".view") || permission == crate::model::PERMISSION_CHECK)
}

/// The entity of `kind` whose name is `name` case-insensitively, else one whose name
/// looks like it (the confusable fold), as a dense index.
fn by_name(snapshot: &Snapshot, kind: EntityKind, name: &str) -> Option<u32> {
    match kind {
        EntityKind::User => {
            let name_of = |i| snapshot.user_entry(i).map(|e| e.record.username());
            snapshot
                .user_names
                .get(name, name_of)
                .or_else(|| snapshot.user_names.look_alike(name, name_of, |_| true))
        }
        EntityKind::Group => {
            let name_of = |i| snapshot.group_entry(i).map(|e| e.group.name.as_str());
            snapshot
                .group_names
                .get(name, name_of)
                .or_else(|| snapshot.group_names.look_alike(name, name_of, |_| true))
        }
        _ => None,
    }
}

/// The users or groups that recorded `external_id`. A scan: it runs only when an
/// entry matched nothing by name or email and a policy adopts at all.
fn by_external_id(snapshot: &Snapshot, kind: EntityKind, external_id: &str) -> Vec<u32> {
    let mut found = Vec::new();
    match kind {
        EntityKind::User => {
            for index in 0..snapshot.users.len() as u32 {
                if let Some(entry) = snapshot.user_entry(index) {
                    if entry.record.external_id() == Some(external_id) {
                        found.push(index);
                    }
                }
            }
        }
        EntityKind::Group => {
            for index in 0..snapshot.groups.len() as u32 {
                if let Some(entry) = snapshot.group_entry(index) {
                    if entry.group.external_id.as_deref() == Some(external_id) {
                        found.push(index);
                    }
                }
            }
        }
        _ => {}
    }
    found
}

/// The name and source of the entity of `kind` at `index`.
fn name_and_source(snapshot: &Snapshot, kind: EntityKind, index: u32) -> (Id, String, Source) {
    match kind {
        EntityKind::User => {
            let user = snapshot
                .user_entry(index)
                .expect("INVARIANT: a found index is live")
                .record
                .unpack();
            (user.id, user.username, user.source)
        }
        _ => {
            let group = &snapshot
                .group_entry(index)
                .expect("INVARIANT: a found index is live")
                .group;
            (group.id, group.name.clone(), group.source.clone())
        }
    }
}

/// The source of the user or group of `kind` at `index`.
pub(crate) fn source_of(snapshot: &Snapshot, kind: EntityKind, index: u32) -> Source {
    name_and_source(snapshot, kind, index).2
}

/// The username or group name of the user or group of `kind` at `index`.
pub(crate) fn name_of(snapshot: &Snapshot, kind: EntityKind, index: u32) -> String {
    name_and_source(snapshot, kind, index).1
}

impl AdoptionPolicy {
    /// A policy adopting from `sources`, privileged accounts excepted.
    pub fn from_sources(sources: impl IntoIterator<Item = Source>) -> AdoptionPolicy {
        AdoptionPolicy {
            sources: sources.into_iter().collect(),
            privileged: Vec::new(),
        }
    }

    /// The policy of the identity source `adopter` as its config says it: `sources`
    /// by name (`local`, `import`, `scim`, `ldap:NAME`), `adopter` itself refused,
    /// and the `privileged` accounts it may take over all the same. The error names
    /// the key (`adopt: …`) for the front-end to put its section before.
    pub fn configured(
        adopter: &Source,
        sources: &[String],
        privileged: &[String],
    ) -> Result<AdoptionPolicy, String> {
        let mut policy = AdoptionPolicy {
            sources: Vec::with_capacity(sources.len()),
            privileged: privileged.to_vec(),
        };
        for text in sources {
            let source: Source = text.parse().map_err(|_| {
                format!("adopt: `{text}` is not a source (local, import, scim, ldap:NAME)")
            })?;
            if &source == adopter {
                return Err(format!(
                    "adopt: `{text}` is this source itself; name the sources it takes over from"
                ));
            }
            policy.sources.push(source);
        }
        Ok(policy)
    }

    /// Whether this policy adopts anything at all.
    pub fn adopts(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Whether `to` may take over the entity `id` of `kind` under this policy: its
    /// source is one the policy names, and the privilege guard lets it through. An
    /// entity already of `to` needs no adoption and passes.
    pub fn may_adopt(
        &self,
        snapshot: &Snapshot,
        kind: EntityKind,
        id: Id,
        to: &Source,
    ) -> Result<(), AdoptionRefusal> {
        let index = match kind {
            EntityKind::User | EntityKind::Group => snapshot.slot_of(kind, id),
            other => return Err(AdoptionRefusal::NoSource(other)),
        }
        .ok_or(AdoptionRefusal::NoSource(kind))?;
        let (_, name, source) = name_and_source(snapshot, kind, index);
        if &source == to {
            return Ok(());
        }
        if !self.sources.contains(&source) {
            return Err(AdoptionRefusal::SourceNotAdoptable {
                kind,
                name,
                from: source,
                to: to.clone(),
            });
        }
        let named = self
            .privileged
            .iter()
            .any(|allowed| allowed.to_lowercase() == name.to_lowercase());
        if !named {
            let roles = privileged_roles(snapshot, kind, index);
            if !roles.is_empty() {
                return Err(AdoptionRefusal::Privileged { kind, name, roles });
            }
        }
        Ok(())
    }
}

/// The existing user or group an incoming `entry` names: by name, else by email
/// (users), else by `externalId`. `Ok(None)`: it names none. An entry that matches
/// two different entities is refused ([`AdoptionRefusal::Ambiguous`]): its name one
/// and its email another, or two that recorded its `externalId`.
pub fn find_match(
    snapshot: &Snapshot,
    kind: EntityKind,
    entry: &AdoptionEntry<'_>,
) -> Result<Option<Matched>, AdoptionRefusal> {
    if !matches!(kind, EntityKind::User | EntityKind::Group) {
        return Err(AdoptionRefusal::NoSource(kind));
    }
    let mut found: Vec<(u32, MatchedBy)> = Vec::new();
    if let Some(index) = by_name(snapshot, kind, entry.name) {
        found.push((index, MatchedBy::Name));
    }
    if kind == EntityKind::User {
        let email = entry.email.map(str::trim).filter(|e| !e.is_empty());
        // An email may also be some user's username, and a username some user's
        // email: sign-in takes either, so both name that user.
        let by_email = email
            .and_then(|email| snapshot.user_by_email(email))
            .or_else(|| snapshot.user_by_email(entry.name));
        if let Some(index) = by_email {
            found.push((index, MatchedBy::Email));
        }
    }
    if found.is_empty() {
        if let Some(external_id) = entry.external_id.filter(|e| !e.is_empty()) {
            found.extend(
                by_external_id(snapshot, kind, external_id)
                    .into_iter()
                    .map(|index| (index, MatchedBy::ExternalId)),
            );
        }
    }
    let Some(&(first, first_by)) = found.first() else {
        return Ok(None);
    };
    if let Some(&(second, second_by)) = found.iter().find(|(index, _)| *index != first) {
        return Err(AdoptionRefusal::Ambiguous {
            kind,
            entry: entry.name.to_owned(),
            first: name_and_source(snapshot, kind, first).1,
            first_by,
            second: name_and_source(snapshot, kind, second).1,
            second_by,
        });
    }
    let (id, name, source) = name_and_source(snapshot, kind, first);
    Ok(Some(Matched {
        kind,
        id,
        name,
        source,
        by: first_by,
    }))
}

/// What makes the entity of `kind` at `index` privileged, sorted: a user's system
/// roles beyond `user` and the roles with a write permission its groups (nested, any
/// scope, expired memberships too) assign it; a group's roles with a write
/// permission. Empty: not privileged.
pub(crate) fn privileged_roles(snapshot: &Snapshot, kind: EntityKind, index: u32) -> Vec<String> {
    let writes = |role: &str| {
        snapshot
            .role_permissions(role)
            .is_some_and(|permissions| permissions.iter().any(|p| is_write_permission(p)))
    };
    let mut roles: Vec<String> = Vec::new();
    let group_roles = |group: u32, roles: &mut Vec<String>| {
        if let Some(entry) = snapshot.group_entry(group) {
            for assignment in &entry.group.roles {
                roles.extend(assignment.roles.iter().filter(|r| writes(r)).cloned());
            }
        }
    };
    match kind {
        EntityKind::User => {
            let Some(entry) = snapshot.user_entry(index) else {
                return roles;
            };
            let user = entry.record.unpack();
            roles.extend(
                user.system_roles
                    .iter()
                    .filter(|role| role.as_str() != "user")
                    .cloned(),
            );
            let direct: Vec<u32> = entry.direct_groups.iter().map(|link| link.group).collect();
            let mut seen = std::collections::HashSet::new();
            for group in direct {
                for ancestor in std::iter::once(group).chain(snapshot.group_ancestors(group)) {
                    if seen.insert(ancestor) {
                        group_roles(ancestor, &mut roles);
                    }
                }
            }
        }
        EntityKind::Group => group_roles(index, &mut roles),
        _ => {}
    }
    roles.sort();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoleAssignment;
    use crate::{Actor, Engine, GroupSpec, MemberSpec, Op, Operation, RoleSpec, Spec, UserSpec};

    fn engine() -> Engine {
        Engine::in_memory().expect("an in-memory engine")
    }

    fn write(engine: &Engine, ops: Vec<Op>) -> Result<crate::WriteOutcome, crate::Error> {
        engine.write(&Actor::system("test"), ops)
    }

    fn user(username: &str, email: Option<&str>, source: Source) -> Op {
        let mut spec = UserSpec::new(username);
        spec.email = email.map(str::to_owned);
        spec.source = source;
        Op::Create(Spec::User(spec))
    }

    fn entry<'a>(name: &'a str, email: Option<&'a str>) -> AdoptionEntry<'a> {
        AdoptionEntry {
            name,
            email,
            external_id: None,
        }
    }

    fn id_of(engine: &Engine, kind: EntityKind, name: &str) -> Id {
        let json = engine.snapshot().entity_json(kind, name).expect("exists");
        Id::parse(json["id"].as_str().expect("an id")).expect("an id")
    }

    fn source_of(engine: &Engine, kind: EntityKind, name: &str) -> Source {
        let json = engine.snapshot().entity_json(kind, name).expect("exists");
        json["source"].as_str().expect("a source").parse().unwrap()
    }

    #[test]
    fn a_configured_policy_names_real_sources_other_than_its_own() {
        let to_strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let policy = AdoptionPolicy::configured(
            &Source::Scim,
            &to_strings(&["local", "ldap:corp"]),
            &to_strings(&["root"]),
        )
        .unwrap();
        assert_eq!(policy.sources, [Source::Local, Source::Ldap("corp".into())]);
        assert_eq!(policy.privileged, ["root"]);
        let unknown =
            AdoptionPolicy::configured(&Source::Scim, &to_strings(&["ldap"]), &[]).unwrap_err();
        assert!(unknown.contains("`ldap` is not a source"), "{unknown}");
        let itself = AdoptionPolicy::configured(
            &Source::Ldap("corp".into()),
            &to_strings(&["ldap:corp"]),
            &[],
        )
        .unwrap_err();
        assert!(itself.contains("this source itself"), "{itself}");
    }

    #[test]
    fn an_entry_matches_by_username_case_and_look_alike_then_email_then_external_id() {
        let engine = engine();
        let mut with_external = UserSpec::new("carol");
        with_external.external_id = Some("ext-7".to_owned());
        write(
            &engine,
            vec![
                user("zoe@example.com", None, Source::Local),
                user("bob", Some("bob@corp.example"), Source::Import),
                Op::Create(Spec::User(with_external)),
            ],
        )
        .unwrap();
        let snapshot = engine.snapshot();
        let found = |name, email, external_id| {
            find_match(
                &snapshot,
                EntityKind::User,
                &AdoptionEntry {
                    name,
                    email,
                    external_id,
                },
            )
            .unwrap()
            .map(|m| (m.name, m.by))
        };
        assert_eq!(
            found("ZOE@Example.COM", None, None),
            Some(("zoe@example.com".to_owned(), MatchedBy::Name))
        );
        // A Cyrillic `о` in place of the Latin one.
        assert_eq!(
            found("z\u{43e}e@example.com", None, None),
            Some(("zoe@example.com".to_owned(), MatchedBy::Name))
        );
        assert_eq!(
            found("robert", Some("BOB@corp.example"), None),
            Some(("bob".to_owned(), MatchedBy::Email))
        );
        assert_eq!(
            found("bob@corp.example", None, None),
            Some(("bob".to_owned(), MatchedBy::Email))
        );
        assert_eq!(
            found("caroline", None, Some("ext-7")),
            Some(("carol".to_owned(), MatchedBy::ExternalId))
        );
        assert_eq!(found("dave", Some("dave@corp.example"), Some("x")), None);
    }

    #[test]
    fn an_entry_naming_two_users_is_ambiguous() {
        let engine = engine();
        write(
            &engine,
            vec![
                user("alice", None, Source::Local),
                user("alicia", Some("alice@corp.example"), Source::Local),
            ],
        )
        .unwrap();
        let refusal = find_match(
            &engine.snapshot(),
            EntityKind::User,
            &entry("alice", Some("alice@corp.example")),
        )
        .unwrap_err();
        assert_eq!(
            refusal,
            AdoptionRefusal::Ambiguous {
                kind: EntityKind::User,
                entry: "alice".to_owned(),
                first: "alice".to_owned(),
                first_by: MatchedBy::Name,
                second: "alicia".to_owned(),
                second_by: MatchedBy::Email,
            }
        );
        // Two groups that recorded one external id.
        let mut one = GroupSpec::new("ops");
        one.external_id = Some("g-1".to_owned());
        let mut two = GroupSpec::new("operations");
        two.external_id = Some("g-1".to_owned());
        write(
            &engine,
            vec![Op::Create(Spec::Group(one)), Op::Create(Spec::Group(two))],
        )
        .unwrap();
        let refusal = find_match(
            &engine.snapshot(),
            EntityKind::Group,
            &AdoptionEntry {
                name: "Operations Team",
                email: None,
                external_id: Some("g-1"),
            },
        )
        .unwrap_err();
        assert!(matches!(
            refusal,
            AdoptionRefusal::Ambiguous {
                first_by: MatchedBy::ExternalId,
                second_by: MatchedBy::ExternalId,
                ..
            }
        ));
    }

    #[test]
    fn the_guard_refuses_system_roles_and_write_roles_through_groups() {
        let engine = engine();
        let mut admin = UserSpec::new("root-admin");
        admin.system_roles = vec!["user".to_owned(), "system-admin".to_owned()];
        let mut auditor = UserSpec::new("auditor");
        auditor.system_roles = vec!["system-auditor".to_owned()];
        let mut editors = GroupSpec::new("rule-editors");
        editors.members = vec![MemberSpec::Name("eve".to_owned())];
        editors.roles = vec![RoleAssignment {
            scope: "*".to_owned(),
            roles: vec!["rule-editor".to_owned()],
        }];
        let mut viewers = GroupSpec::new("viewers");
        viewers.members = vec![MemberSpec::Name("val".to_owned())];
        viewers.roles = vec![RoleAssignment {
            scope: "*".to_owned(),
            roles: vec!["viewer".to_owned()],
        }];
        write(
            &engine,
            vec![
                Op::Create(Spec::Role(RoleSpec {
                    id: None,
                    name: "rule-editor".to_owned(),
                    permissions: vec!["rules.view".to_owned(), "rules.change".to_owned()],
                    description: String::new(),
                })),
                Op::Create(Spec::Role(RoleSpec {
                    id: None,
                    name: "viewer".to_owned(),
                    permissions: vec!["rules.view".to_owned(), "decisions.check".to_owned()],
                    description: String::new(),
                })),
                Op::Create(Spec::User(admin)),
                Op::Create(Spec::User(auditor)),
                user("eve", None, Source::Local),
                user("val", None, Source::Local),
                Op::Create(Spec::Group(editors)),
                Op::Create(Spec::Group(viewers)),
            ],
        )
        .unwrap();
        let policy = AdoptionPolicy::from_sources([Source::Local]);
        let snapshot = engine.snapshot();
        let judge = |policy: &AdoptionPolicy, kind, name| {
            policy.may_adopt(&snapshot, kind, id_of(&engine, kind, name), &Source::Scim)
        };
        let roles_of = |result: Result<(), AdoptionRefusal>| match result {
            Err(AdoptionRefusal::Privileged { roles, .. }) => roles,
            other => panic!("expected a privileged refusal, got {other:?}"),
        };
        assert_eq!(
            roles_of(judge(&policy, EntityKind::User, "root-admin")),
            ["system-admin"]
        );
        assert_eq!(
            roles_of(judge(&policy, EntityKind::User, "auditor")),
            ["system-auditor"]
        );
        assert_eq!(
            roles_of(judge(&policy, EntityKind::User, "eve")),
            ["rule-editor"]
        );
        assert_eq!(
            roles_of(judge(&policy, EntityKind::Group, "rule-editors")),
            ["rule-editor"]
        );
        assert_eq!(judge(&policy, EntityKind::User, "val"), Ok(()));
        assert_eq!(judge(&policy, EntityKind::Group, "viewers"), Ok(()));
        let privileged = AdoptionPolicy {
            sources: vec![Source::Local],
            privileged: vec!["Root-Admin".to_owned()],
        };
        assert_eq!(judge(&privileged, EntityKind::User, "root-admin"), Ok(()));
        assert!(judge(&privileged, EntityKind::User, "auditor").is_err());
        let import_only = AdoptionPolicy::from_sources([Source::Import]);
        assert!(matches!(
            judge(&import_only, EntityKind::User, "val"),
            Err(AdoptionRefusal::SourceNotAdoptable {
                from: Source::Local,
                ..
            })
        ));
    }

    #[test]
    fn adopt_and_release_change_only_the_source_and_are_logged() {
        let engine = engine();
        let mut ops = vec![
            user("zoe", Some("zoe@example.com"), Source::Import),
            Op::Create(Spec::Group(GroupSpec {
                members: vec![MemberSpec::Name("zoe".to_owned())],
                ..GroupSpec::new("ops")
            })),
        ];
        ops.push(Op::Create(Spec::Rule(crate::RuleSpec {
            users: vec!["zoe".to_owned()],
            assets: vec!["web".to_owned()],
            accounts: vec![crate::AccountSelector::All],
            ..crate::RuleSpec::new("zoe-web")
        })));
        ops.insert(
            0,
            Op::Create(Spec::Asset(crate::AssetSpec {
                accounts: vec![crate::AccountSpec::new("root")],
                protocols: vec!["ssh/22".parse().unwrap()],
                ..crate::AssetSpec::new("web")
            })),
        );
        write(&engine, ops).unwrap();
        let before = engine.snapshot().user("zoe").unwrap();
        let policy = AdoptionPolicy::from_sources([Source::Import, Source::Local]);
        let outcome = write(
            &engine,
            vec![
                Op::Adopt {
                    kind: EntityKind::User,
                    target: "zoe".to_owned(),
                    source: Source::Scim,
                    policy: policy.clone(),
                },
                Op::Adopt {
                    kind: EntityKind::Group,
                    target: "ops".to_owned(),
                    source: Source::Scim,
                    policy: policy.clone(),
                },
            ],
        )
        .unwrap();
        let after = engine.snapshot().user("zoe").unwrap();
        assert_eq!(after.id, before.id);
        assert_eq!(after.source, Source::Scim);
        assert_eq!(
            crate::User {
                source: before.source.clone(),
                updated_at: before.updated_at,
                ..(*after).clone()
            },
            *before
        );
        let group = engine.snapshot().group("ops").unwrap();
        assert_eq!(group.source, Source::Scim);
        // The membership keeps the source it was written with.
        assert_eq!(group.members[0].source, Source::Local);
        let changes = engine.changes_since(outcome.revision - 1, 100).unwrap();
        let adopted: Vec<_> = changes
            .iter()
            .filter(|c| c.revision == outcome.revision)
            .map(|c| {
                (
                    c.entity,
                    c.operation,
                    c.before.as_ref().unwrap()["source"].clone(),
                    c.after.as_ref().unwrap()["source"].clone(),
                )
            })
            .collect();
        assert_eq!(
            adopted,
            [
                (
                    EntityKind::User,
                    Operation::Adopt,
                    "import".into(),
                    "scim".into()
                ),
                (
                    EntityKind::Group,
                    Operation::Adopt,
                    "local".into(),
                    "scim".into()
                ),
            ]
        );
        // Release hands it back to local; releasing again is refused.
        let released = write(
            &engine,
            vec![Op::Release {
                kind: EntityKind::User,
                target: "zoe".to_owned(),
            }],
        )
        .unwrap();
        assert_eq!(source_of(&engine, EntityKind::User, "zoe"), Source::Local);
        let change = engine
            .changes_since(released.revision - 1, 10)
            .unwrap()
            .into_iter()
            .find(|c| c.revision == released.revision)
            .unwrap();
        assert_eq!(change.operation, Operation::Release);
        assert_eq!(change.before.unwrap()["source"], "scim");
        assert_eq!(change.after.unwrap()["source"], "local");
        let again = write(
            &engine,
            vec![Op::Release {
                kind: EntityKind::User,
                target: "zoe".to_owned(),
            }],
        )
        .unwrap_err();
        assert!(matches!(
            again,
            crate::Error::Validation(crate::ValidationError::Adoption(
                AdoptionRefusal::AlreadyLocal { .. }
            ))
        ));
        // Re-adoption round-trips to the same record as the first adoption gave.
        write(
            &engine,
            vec![Op::Adopt {
                kind: EntityKind::User,
                target: "zoe".to_owned(),
                source: Source::Scim,
                policy,
            }],
        )
        .unwrap();
        let readopted = engine.snapshot().user("zoe").unwrap();
        assert_eq!(
            crate::User {
                updated_at: after.updated_at,
                ..(*readopted).clone()
            },
            *after
        );
    }

    #[test]
    fn a_refused_adoption_changes_nothing() {
        let engine = engine();
        let mut admin = UserSpec::new("admin2");
        admin.system_roles = vec!["system-admin".to_owned()];
        write(&engine, vec![Op::Create(Spec::User(admin))]).unwrap();
        let revision = engine.snapshot().revision();
        let error = write(
            &engine,
            vec![Op::Adopt {
                kind: EntityKind::User,
                target: "admin2".to_owned(),
                source: Source::Ldap("corp".into()),
                policy: AdoptionPolicy::from_sources([Source::Local]),
            }],
        )
        .unwrap_err();
        assert!(matches!(
            error,
            crate::Error::Validation(crate::ValidationError::Adoption(
                AdoptionRefusal::Privileged { .. }
            ))
        ));
        assert_eq!(engine.snapshot().revision(), revision);
        assert_eq!(
            source_of(&engine, EntityKind::User, "admin2"),
            Source::Local
        );
    }

    #[test]
    fn an_adopted_source_survives_a_reopen_of_store_and_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let image = crate::image::path_for(&path);
        let corp = Source::Ldap("corp".into());
        let (before_adoption, adopted) = {
            let engine = Engine::open(&path).unwrap();
            write(&engine, vec![user("zoe", None, Source::Local)]).unwrap();
            engine.write_image();
            let before_adoption = engine.snapshot().revision();
            let behind = std::fs::read(&image).unwrap();
            let adopted = write(
                &engine,
                vec![Op::Adopt {
                    kind: EntityKind::User,
                    target: "zoe".to_owned(),
                    source: corp.clone(),
                    policy: AdoptionPolicy::from_sources([Source::Local]),
                }],
            )
            .unwrap()
            .revision;
            drop(engine);
            // The image from before the adoption: the open catches up from the store.
            std::fs::write(&image, behind).unwrap();
            (before_adoption, adopted)
        };
        let caught_up = Engine::open(&path).unwrap();
        assert_eq!(caught_up.opened_from(), &Ok(before_adoption));
        assert_eq!(source_of(&caught_up, EntityKind::User, "zoe"), corp);
        drop(caught_up);
        // The image its close wrote holds the adoption itself.
        let from_image = Engine::open(&path).unwrap();
        assert_eq!(from_image.opened_from(), &Ok(adopted));
        assert_eq!(source_of(&from_image, EntityKind::User, "zoe"), corp);
        drop(from_image);
        // And the store alone.
        std::fs::remove_file(&image).unwrap();
        let rebuilt = Engine::open(&path).unwrap();
        assert!(rebuilt.opened_from().is_err());
        assert_eq!(source_of(&rebuilt, EntityKind::User, "zoe"), corp);
    }
}
