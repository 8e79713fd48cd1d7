//! Applying operations: resolve a spec's references, validate it against the
//! current state, turn it into an entity, and cascade deletions.
//!
//! Validation reads only the working snapshot, so a refused operation has changed
//! nothing when it returns its error, and the caller drops the whole working copy.

use crate::adoption::AdoptionRefusal;
use crate::error::{NotFound, ValidationError};
use crate::model::{
    Account, Asset, EntityKind, Group, GroupMember, Id, Node, Operation, ROOT_NODE_ID, Role, Rule,
    Source, Time, Token, User, UserMember, account_username,
};
use crate::snapshot::{Member, NameIndex, Snapshot};
use crate::write::Authority;
use crate::write::spec::{
    AccountSpec, AssetSpec, GroupSpec, MemberSpec, NodeSpec, Op, PasswordForm, RoleSpec, RuleSpec,
    Spec, SubgroupSpec, TokenSpec, UserSpec,
};
use crate::write::working::{SecretWrite, Working};

type Result<T> = std::result::Result<T, ValidationError>;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// The longest free text (descriptions), in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// The most entries in one list field (members, rule targets, accounts …).
pub const MAX_LIST_LEN: usize = 100_000;

fn check_name(field: &'static str, text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(ValidationError::invalid(field, "must not be empty"));
    }
    if text.trim() != text {
        return Err(ValidationError::invalid(
            field,
            format!("`{text}` has surrounding spaces"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ValidationError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationError::invalid(
            field,
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ValidationError::invalid(
            field,
            format!("is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ValidationError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_optional(field: &'static str, text: &Option<String>) -> Result<()> {
    match text {
        Some(text) => check_name(field, text),
        None => Ok(()),
    }
}

fn check_attributes(attributes: &crate::model::Attributes) -> Result<()> {
    if attributes.encoded_len() > crate::model::MAX_ATTRIBUTES_BYTES {
        return Err(ValidationError::invalid(
            "attributes",
            format!(
                "take more than {} bytes as JSON",
                crate::model::MAX_ATTRIBUTES_BYTES
            ),
        ));
    }
    Ok(())
}

fn check_len<T>(field: &'static str, list: &[T]) -> Result<()> {
    if list.len() > MAX_LIST_LEN {
        return Err(ValidationError::invalid(
            field,
            format!("has more than {MAX_LIST_LEN} entries"),
        ));
    }
    Ok(())
}

fn not_found(kind: EntityKind, reference: &str) -> ValidationError {
    ValidationError::NotFound(NotFound::new(kind, reference))
}

fn duplicate(kind: EntityKind, name: &str) -> ValidationError {
    ValidationError::Duplicate {
        kind,
        name: name.to_owned(),
    }
}

/// Refuses `name` for the entity at `index` (`None`: a new one) when it looks like the
/// name another entity holds in `names` (see `NameIndex::look_alike`). A name the
/// entity already holds, exactly as written, is not judged again: a store written
/// before this rule may hold look-alike pairs, and both stay editable.
fn refuse_look_alike<'a, const N: usize>(
    kind: EntityKind,
    field: &'static str,
    name: &str,
    index: Option<u32>,
    names: &NameIndex<N>,
    name_of: impl Fn(u32) -> Option<&'a str>,
) -> Result<()> {
    if index.and_then(&name_of) == Some(name) {
        return Ok(());
    }
    match names.look_alike(name, &name_of, |other| Some(other) != index) {
        Some(other) => Err(ValidationError::LookAlike {
            kind,
            field,
            name: name.to_owned(),
            existing: name_of(other).unwrap_or_default().to_owned(),
        }),
        None => Ok(()),
    }
}

/// Resolution of references against a snapshot.
struct Resolver<'a>(&'a Snapshot);

impl Resolver<'_> {
    fn user(&self, reference: &str) -> Result<Id> {
        let index = self
            .0
            .user_index(reference)
            .ok_or_else(|| not_found(EntityKind::User, reference))?;
        Ok(self.0.user_entry(index).expect("resolved").id)
    }
    fn group(&self, reference: &str) -> Result<Id> {
        let index = self
            .0
            .group_index(reference)
            .ok_or_else(|| not_found(EntityKind::Group, reference))?;
        Ok(self.0.group_entry(index).expect("resolved").group.id)
    }
    fn node(&self, reference: &str) -> Result<Id> {
        let index = self
            .0
            .node_index(reference)
            .ok_or_else(|| not_found(EntityKind::Node, reference))?;
        Ok(self.0.node_entry(index).expect("resolved").node.id)
    }
    fn asset(&self, reference: &str) -> Result<Id> {
        let index = self
            .0
            .asset_index(reference)
            .ok_or_else(|| not_found(EntityKind::Asset, reference))?;
        Ok(self.0.asset_entry(index).expect("resolved").id)
    }
    /// A role's canonical name.
    fn role(&self, reference: &str) -> Result<String> {
        let index = self
            .0
            .role_index(reference)
            .ok_or_else(|| not_found(EntityKind::Role, reference))?;
        Ok(self.0.role_entry(index).expect("resolved").name.clone())
    }

    /// Resolves a list, refusing an entity named twice.
    fn list(
        &self,
        field: &'static str,
        references: &[String],
        resolve: impl Fn(&Self, &str) -> Result<Id>,
    ) -> Result<Vec<Id>> {
        check_len(field, references)?;
        let mut ids = Vec::with_capacity(references.len());
        for reference in references {
            let id = resolve(self, reference)?;
            if ids.contains(&id) {
                return Err(ValidationError::invalid(
                    field,
                    format!("`{reference}` is listed twice"),
                ));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    fn roles(&self, field: &'static str, names: &[String]) -> Result<Vec<String>> {
        check_len(field, names)?;
        let mut roles: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let role = self.role(name)?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        Ok(roles)
    }
}

/// A new entity's id: the one the spec asks for, if free and not reserved, or a
/// random one.
fn new_id(snap: &Snapshot, kind: EntityKind, requested: Option<Id>) -> Result<Id> {
    match requested {
        Some(id) if id.is_reserved() => Err(ValidationError::ReservedId { kind, id }),
        Some(id) if snap.slot(id).is_some() || snap.account_ids.contains_key(&id) => {
            Err(ValidationError::DuplicateId { kind, id })
        }
        Some(id) => Ok(id),
        None => Ok(Id::random()),
    }
}

/// Whether a membership ending at `new` ends no later than one ending at `old`
/// (`None`: never), so that changing `old` into `new` grants nothing.
fn lasts_as_long(old: Option<Time>, new: Option<Time>) -> bool {
    match (old, new) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(old), Some(new)) => new <= old,
    }
}

/// On replace, the spec's id (if any) must be the target's.
fn same_id(kind: EntityKind, requested: Option<Id>, actual: Id) -> Result<()> {
    match requested {
        Some(id) if id != actual => Err(ValidationError::invalid(
            "id",
            format!("`{id}` does not match the {kind} being replaced (`{actual}`)"),
        )),
        _ => Ok(()),
    }
}

/// Creation metadata: fresh on create, carried over on replace.
struct Stamp {
    created_at: Time,
    created_by: String,
    updated_at: Time,
}

impl Working {
    fn stamp(&self, previous: Option<(Time, &str)>) -> Stamp {
        match previous {
            Some((created_at, created_by)) => Stamp {
                created_at,
                created_by: created_by.to_owned(),
                updated_at: self.now,
            },
            None => Stamp {
                created_at: self.now,
                created_by: self.actor.clone(),
                updated_at: self.now,
            },
        }
    }

    /// Applies one operation; returns the id of the entity it concerned.
    ///
    /// INVARIANT: an operation that is refused has changed nothing. Every `put_*` and
    /// `delete` makes all of its checks before its first `set_*` (and the `set_*`
    /// functions cannot fail). The writer relies on it: a write of one operation
    /// needs no checkpoint to roll back to (`engine::write_group`).
    pub(crate) fn apply(&mut self, op: Op, token_hash: Option<[u8; 32]>) -> Result<Id> {
        match op {
            Op::Create(spec) => self.put(None, spec, token_hash),
            Op::Replace { target, spec } => {
                let index = self.target(spec.kind(), &target)?;
                self.put(Some(index), spec, None)
            }
            Op::Modify { kind, target, edit } => {
                let index = self.target(kind, &target)?;
                let mut spec = self.snap.spec_of(kind, index);
                edit(&mut spec)?;
                if spec.kind() != kind {
                    return Err(ValidationError::invalid(
                        "kind",
                        "an edit may not change the kind of an entity",
                    ));
                }
                self.put(Some(index), spec, None)
            }
            Op::Delete { kind, target } => {
                let index = self.target(kind, &target)?;
                self.delete(kind, index)
            }
            Op::AddMember { group, member } => {
                let index = self.target(EntityKind::Group, &group)?;
                self.add_member(index, &member)
            }
            Op::RemoveMember { group, user } => {
                let index = self.target(EntityKind::Group, &group)?;
                self.remove_member(index, &user)
            }
            Op::RecordEvent { user, what } => {
                let id = match user {
                    Some(id) => {
                        let index = self.target(EntityKind::User, &id.to_string())?;
                        self.snap.user_entry(index).expect("resolved").id
                    }
                    None => Id::NIL,
                };
                self.record_event(EntityKind::User, id, &what);
                Ok(id)
            }
            Op::RecordLogin { user, at } => {
                let index = self.target(EntityKind::User, &user)?;
                let entry = self.snap.user_entry(index).expect("resolved");
                let mut updated = entry.record.unpack();
                updated.last_login = Some(at);
                let id = updated.id;
                self.set_user(Some(index), Some(updated));
                Ok(id)
            }
            Op::Expect {
                kind,
                target,
                version,
            } => {
                let found = self.target(kind, &target).ok().map(|index| {
                    (
                        self.snap.id_of(kind, index),
                        self.snap.version_of(kind, index),
                    )
                });
                match (found, version) {
                    (Some((id, found)), Some(expected)) if found == expected => Ok(id),
                    (None, None) => Ok(Id::NIL),
                    (found, expected) => Err(ValidationError::VersionMismatch {
                        kind,
                        target,
                        expected,
                        found: found.map(|(_, version)| version),
                    }),
                }
            }
            Op::Adopt {
                kind,
                target,
                source,
                policy,
            } => {
                let index = self.source_target(kind, &target)?;
                let id = self.snap.id_of(kind, index);
                policy.may_adopt(&self.snap, kind, id, &source)?;
                self.set_source(kind, index, source, Operation::Adopt);
                Ok(id)
            }
            Op::Release { kind, target } => {
                let index = self.source_target(kind, &target)?;
                let id = self.snap.id_of(kind, index);
                if crate::adoption::source_of(&self.snap, kind, index) == Source::Local {
                    return Err(AdoptionRefusal::AlreadyLocal {
                        kind,
                        name: crate::adoption::name_of(&self.snap, kind, index),
                    }
                    .into());
                }
                self.set_source(kind, index, Source::Local, Operation::Release);
                Ok(id)
            }
        }
    }

    /// The user or group `reference` names, for an adoption or a release.
    fn source_target(&self, kind: EntityKind, reference: &str) -> Result<u32> {
        match kind {
            EntityKind::User | EntityKind::Group => self.target(kind, reference),
            other => Err(AdoptionRefusal::NoSource(other).into()),
        }
    }

    /// Gives the user or group at `index` another source, keeping everything else,
    /// and records it as `operation` with the entity before and after. Nothing when
    /// it has that source already.
    fn set_source(&mut self, kind: EntityKind, index: u32, source: Source, operation: Operation) {
        if crate::adoption::source_of(&self.snap, kind, index) == source {
            return;
        }
        let id = self.snap.id_of(kind, index);
        match kind {
            EntityKind::User => {
                let mut user = self
                    .snap
                    .user_entry(index)
                    .expect("resolved")
                    .record
                    .unpack();
                user.source = source;
                user.updated_at = self.now;
                self.set_user(Some(index), Some(user));
            }
            _ => {
                let mut group = self.snap.group_record(index).expect("resolved");
                group.source = source;
                group.updated_at = self.now;
                self.set_group(Some(index), Some(group));
            }
        }
        self.relabel_change(kind, id, operation);
    }

    fn target(&self, kind: EntityKind, reference: &str) -> Result<u32> {
        let snap = &self.snap;
        let index = match kind {
            EntityKind::User => snap.user_index(reference),
            EntityKind::Group => snap.group_index(reference),
            EntityKind::Node => snap.node_index(reference),
            EntityKind::Asset => snap.asset_index(reference),
            EntityKind::Rule => snap.rule_index(reference),
            EntityKind::Role => snap.role_index(reference),
            EntityKind::Token => snap.token_index(reference),
        };
        index.ok_or_else(|| not_found(kind, reference))
    }

    fn put(&mut self, index: Option<u32>, spec: Spec, token_hash: Option<[u8; 32]>) -> Result<Id> {
        match spec {
            Spec::User(spec) => self.put_user(index, spec),
            Spec::Group(spec) => self.put_group(index, spec),
            Spec::Node(spec) => self.put_node(index, spec),
            Spec::Asset(spec) => self.put_asset(index, spec),
            Spec::Rule(spec) => self.put_rule(index, spec),
            Spec::Role(spec) => self.put_role(index, spec),
            Spec::Token(spec) => self.put_token(index, spec, token_hash),
        }
    }

    fn put_user(&mut self, index: Option<u32>, spec: UserSpec) -> Result<Id> {
        check_name("username", &spec.username)?;
        if spec.name.chars().count() > MAX_NAME_CHARS || spec.name.chars().any(char::is_control) {
            return Err(ValidationError::invalid(
                "name",
                "must be at most 128 characters without control characters",
            ));
        }
        check_optional("phone", &spec.phone)?;
        check_optional("external_id", &spec.external_id)?;
        check_attributes(&spec.attributes)?;
        check_text("description", &spec.description)?;
        let email = match spec.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(email) => {
                check_name("email", email)?;
                let (local, domain) = email.split_once('@').unwrap_or(("", ""));
                if local.is_empty() || domain.is_empty() || email.contains(char::is_whitespace) {
                    return Err(ValidationError::invalid(
                        "email",
                        format!("`{email}` is not an email address"),
                    ));
                }
                Some(email.to_owned())
            }
        };
        if let Some(other) = self.snap.user_names.get(&spec.username, |i| {
            self.snap.user_entry(i).map(|e| e.record.username())
        }) {
            if Some(other) != index {
                return Err(duplicate(EntityKind::User, &spec.username));
            }
        }
        refuse_look_alike(
            EntityKind::User,
            "username",
            &spec.username,
            index,
            &self.snap.user_names,
            |i| self.snap.user_entry(i).map(|e| e.record.username()),
        )?;
        // Sign-in takes a username or an email: neither may name another user
        // under the other field.
        if let Some(other) = self.snap.user_by_email(&spec.username) {
            if Some(other) != index {
                return Err(self.ambiguous_login(&spec.username, "email", other));
            }
        }
        if let Some(email) = &email {
            if let Some(other) = self.snap.user_by_email(email) {
                if Some(other) != index {
                    return Err(ValidationError::DuplicateEmail(email.clone()));
                }
            }
            let by_username = self.snap.user_names.get(email, |i| {
                self.snap.user_entry(i).map(|e| e.record.username())
            });
            if let Some(other) = by_username.filter(|&other| Some(other) != index) {
                return Err(self.ambiguous_login(email, "username", other));
            }
            refuse_look_alike(
                EntityKind::User,
                "email",
                email,
                index,
                &self.snap.user_emails,
                |i| self.snap.user_entry(i).and_then(|e| e.record.head().email),
            )?;
        }
        let system_roles = Resolver(&self.snap).roles("system_roles", &spec.system_roles)?;
        let previous = index.map(|i| {
            self.snap
                .user_entry(i)
                .expect("target exists")
                .record
                .unpack()
        });
        let held_before = previous.as_ref().map_or(&[][..], |p| &p.system_roles[..]);
        self.authority.may_grant_roles(
            &self.snap,
            || format!("the system roles of user `{}`", spec.username),
            system_roles
                .iter()
                .filter(|role| !held_before.contains(role)),
        )?;
        let id = match &previous {
            Some(previous) => {
                same_id(EntityKind::User, spec.id, previous.id)?;
                previous.id
            }
            None => new_id(&self.snap, EntityKind::User, spec.id)?,
        };
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let password_hash = match spec.password.map(|p| p.0) {
            None => None,
            Some(PasswordForm::Hashed(hash)) => Some(hash),
            Some(PasswordForm::Plain(plain)) => Some(self.credentials.hash_new(&plain)?),
        };
        let user = User {
            id,
            name: if spec.name.is_empty() {
                spec.username.clone()
            } else {
                spec.name
            },
            username: spec.username,
            email,
            phone: spec.phone,
            active: spec.active,
            expires_at: spec.expires_at,
            source: spec.source,
            external_id: spec.external_id,
            attributes: spec.attributes,
            system_roles,
            mfa: spec.mfa,
            must_change_password: spec.must_change_password,
            has_password: password_hash.is_some()
                || previous.as_ref().is_some_and(|p| p.has_password),
            last_login: previous.as_ref().and_then(|p| p.last_login),
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        if let Some(hash) = password_hash {
            self.secrets.push(SecretWrite::Password {
                user: id,
                hash: Some(hash),
            });
        }
        self.set_user(index, Some(user));
        Ok(id)
    }

    fn put_group(&mut self, index: Option<u32>, spec: GroupSpec) -> Result<Id> {
        check_name("name", &spec.name)?;
        check_optional("external_id", &spec.external_id)?;
        check_attributes(&spec.attributes)?;
        check_text("description", &spec.description)?;
        check_len("members", &spec.members)?;
        check_len("subgroups", &spec.subgroups)?;
        if let Some(other) = self.snap.group_names.get(&spec.name, |i| {
            self.snap.group_entry(i).map(|e| e.group.name.as_str())
        }) {
            if Some(other) != index {
                return Err(duplicate(EntityKind::Group, &spec.name));
            }
        }
        refuse_look_alike(
            EntityKind::Group,
            "name",
            &spec.name,
            index,
            &self.snap.group_names,
            |i| self.snap.group_entry(i).map(|e| e.group.name.as_str()),
        )?;
        let resolver = Resolver(&self.snap);
        let mut members: Vec<UserMember> = Vec::with_capacity(spec.members.len());
        let mut listed = std::collections::HashSet::with_capacity(spec.members.len());
        for member in &spec.members {
            let user = resolver.user(member.user())?;
            if !listed.insert(user) {
                return Err(ValidationError::invalid(
                    "members",
                    format!("`{}` is listed twice", member.user()),
                ));
            }
            let (expires_at, source) = match member {
                MemberSpec::Name(_) => (None, None),
                MemberSpec::Detailed {
                    expires_at, source, ..
                } => (*expires_at, source.clone()),
            };
            members.push(UserMember {
                user,
                expires_at,
                source: source.unwrap_or_else(|| spec.source.clone()),
            });
        }
        let previous = index.map(|i| self.snap.group_record(i).expect("target exists"));
        let id = match &previous {
            Some(previous) => {
                same_id(EntityKind::Group, spec.id, previous.id)?;
                previous.id
            }
            None => new_id(&self.snap, EntityKind::Group, spec.id)?,
        };
        let mut subgroups: Vec<GroupMember> = Vec::with_capacity(spec.subgroups.len());
        for subgroup in &spec.subgroups {
            let group = resolver.group(subgroup.group())?;
            if subgroups.iter().any(|m| m.group == group) {
                return Err(ValidationError::invalid(
                    "subgroups",
                    format!("`{}` is listed twice", subgroup.group()),
                ));
            }
            // A cycle: the group itself, or a group it is (transitively) nested in.
            let child = self.snap.slot(group).expect("resolved").index;
            let creates_cycle = group == id
                || index.is_some_and(|this| self.snap.group_ancestors(this).contains(child));
            if creates_cycle {
                return Err(ValidationError::GroupCycle {
                    parent: spec.name.clone(),
                    child: subgroup.group().to_owned(),
                });
            }
            let (expires_at, source) = match subgroup {
                SubgroupSpec::Name(_) => (None, None),
                SubgroupSpec::Detailed {
                    expires_at, source, ..
                } => (*expires_at, source.clone()),
            };
            subgroups.push(GroupMember {
                group,
                expires_at,
                source: source.unwrap_or_else(|| spec.source.clone()),
            });
        }
        let mut roles = Vec::with_capacity(spec.roles.len());
        for assignment in &spec.roles {
            check_name("roles.scope", &assignment.scope)?;
            roles.push(crate::model::RoleAssignment {
                scope: assignment.scope.clone(),
                roles: resolver.roles("roles.roles", &assignment.roles)?,
            });
        }
        self.may_grant_through_group(
            index,
            previous.as_ref(),
            &spec.name,
            &members,
            &subgroups,
            &roles,
        )?;
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let group = Group {
            id,
            name: spec.name,
            members,
            subgroups,
            roles,
            source: spec.source,
            external_id: spec.external_id,
            attributes: spec.attributes,
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        self.set_group(index, Some(group));
        Ok(id)
    }

    fn put_node(&mut self, index: Option<u32>, spec: NodeSpec) -> Result<Id> {
        check_name("name", &spec.name)?;
        check_text("description", &spec.description)?;
        if spec.name.contains('/') {
            return Err(ValidationError::invalid(
                "name",
                format!("`{}` contains `/`", spec.name),
            ));
        }
        let previous = index.map(|i| self.snap.node_entry(i).expect("target exists").node.clone());
        if previous.as_ref().is_some_and(|p| p.id == ROOT_NODE_ID) {
            return Err(ValidationError::RootNode);
        }
        let parent_index = self
            .snap
            .node_index(&spec.parent)
            .ok_or_else(|| not_found(EntityKind::Node, &spec.parent))?;
        if let Some(index) = index {
            if self.snap.node_ancestry(parent_index).any(|n| n == index) {
                return Err(ValidationError::NodeCycle {
                    node: self.snap.node_path(index),
                    parent: spec.parent.clone(),
                });
            }
        }
        if let Some(sibling) = self.snap.child_named(parent_index, &spec.name) {
            if Some(sibling) != index {
                let path = format!("{}/{}", self.snap.node_path(parent_index), spec.name);
                return Err(duplicate(EntityKind::Node, &path));
            }
        }
        if let Some(sibling) = self.look_alike_sibling(parent_index, &spec.name, index) {
            return Err(ValidationError::LookAlike {
                kind: EntityKind::Node,
                field: "path",
                name: format!("{}/{}", self.snap.node_path(parent_index), spec.name),
                existing: self.snap.node_path(sibling),
            });
        }
        let parent = self
            .snap
            .node_entry(parent_index)
            .expect("resolved")
            .node
            .id;
        let (id, number) = match &previous {
            Some(previous) => {
                same_id(EntityKind::Node, spec.id, previous.id)?;
                (previous.id, previous.number)
            }
            None => (
                new_id(&self.snap, EntityKind::Node, spec.id)?,
                self.snap.next_node_number,
            ),
        };
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let node = Node {
            id,
            name: spec.name,
            parent: Some(parent),
            number,
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        self.set_node(index, Some(node));
        Ok(id)
    }

    fn put_asset(&mut self, index: Option<u32>, spec: AssetSpec) -> Result<Id> {
        check_name("name", &spec.name)?;
        check_text("address", &spec.address)?;
        check_text("platform", &spec.platform)?;
        check_text("description", &spec.description)?;
        check_len("accounts", &spec.accounts)?;
        if let Some(other) = self.snap.asset_names.get(&spec.name, |i| {
            self.snap.asset_entry(i).map(|e| e.record.name())
        }) {
            if Some(other) != index {
                return Err(duplicate(EntityKind::Asset, &spec.name));
            }
        }
        refuse_look_alike(
            EntityKind::Asset,
            "name",
            &spec.name,
            index,
            &self.snap.asset_names,
            |i| self.snap.asset_entry(i).map(|e| e.record.name()),
        )?;
        for (i, protocol) in spec.protocols.iter().enumerate() {
            if spec.protocols[..i]
                .iter()
                .any(|p| p.name() == protocol.name())
            {
                return Err(ValidationError::invalid(
                    "protocols",
                    format!("`{}` is listed twice", protocol.name()),
                ));
            }
        }
        let node_refs = if spec.nodes.is_empty() {
            vec!["/Default".to_owned()]
        } else {
            spec.nodes.clone()
        };
        let nodes = Resolver(&self.snap).list("nodes", &node_refs, Resolver::node)?;
        let previous = index.map(|i| {
            self.snap
                .asset_entry(i)
                .expect("target exists")
                .record
                .unpack()
        });
        let id = match &previous {
            Some(previous) => {
                same_id(EntityKind::Asset, spec.id, previous.id)?;
                previous.id
            }
            None => new_id(&self.snap, EntityKind::Asset, spec.id)?,
        };
        let mut accounts: Vec<Account> = Vec::with_capacity(spec.accounts.len());
        for AccountSpec {
            id: account_id,
            username,
            privileged,
            secret_kind,
        } in spec.accounts
        {
            if account_username(&username).is_none() {
                return Err(ValidationError::invalid(
                    "accounts",
                    format!("`{username}` is not a valid account username"),
                ));
            }
            if accounts.iter().any(|a| a.username == username) {
                return Err(ValidationError::invalid(
                    "accounts",
                    format!("`{username}` is listed twice"),
                ));
            }
            // Keep an account's id across replaces, matching by username.
            let kept = previous
                .as_ref()
                .and_then(|p| p.account(&username))
                .map(|a| a.id);
            let account_id = match (account_id, kept) {
                (Some(requested), _) => {
                    // An id is one thing's: an entity's, or one account's. This
                    // asset's accounts may swap ids among themselves.
                    let other_asset = self
                        .snap
                        .account_ids
                        .get(&requested)
                        .is_some_and(|holder| Some(holder) != index);
                    let taken_elsewhere = self.snap.slot(requested).is_some()
                        || other_asset
                        || accounts.iter().any(|a| a.id == requested);
                    if taken_elsewhere {
                        return Err(ValidationError::DuplicateId {
                            kind: EntityKind::Asset,
                            id: requested,
                        });
                    }
                    requested
                }
                (None, Some(kept)) => kept,
                (None, None) => Id::random(),
            };
            // Another account of this spec asked for the id this one keeps.
            if accounts.iter().any(|a| a.id == account_id) {
                return Err(ValidationError::DuplicateId {
                    kind: EntityKind::Asset,
                    id: account_id,
                });
            }
            accounts.push(Account {
                id: account_id,
                username,
                privileged,
                secret_kind,
            });
        }
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let asset = Asset {
            id,
            name: spec.name,
            address: spec.address,
            platform: spec.platform,
            protocols: spec.protocols,
            nodes,
            accounts,
            active: spec.active,
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        self.set_asset(index, Some(asset));
        Ok(id)
    }

    fn put_rule(&mut self, index: Option<u32>, spec: RuleSpec) -> Result<Id> {
        check_name("name", &spec.name)?;
        check_text("description", &spec.description)?;
        check_len("accounts", &spec.accounts)?;
        if let Some(other) = self.snap.rule_names.get(&spec.name, |i| {
            self.snap.rule_entry(i).map(|e| e.rule.name.as_str())
        }) {
            if Some(other) != index {
                return Err(duplicate(EntityKind::Rule, &spec.name));
            }
        }
        refuse_look_alike(
            EntityKind::Rule,
            "name",
            &spec.name,
            index,
            &self.snap.rule_names,
            |i| self.snap.rule_entry(i).map(|e| e.rule.name.as_str()),
        )?;
        let resolver = Resolver(&self.snap);
        let users = resolver.list("users", &spec.users, Resolver::user)?;
        let groups = resolver.list("groups", &spec.groups, Resolver::group)?;
        let assets = resolver.list("assets", &spec.assets, Resolver::asset)?;
        let nodes = resolver.list("nodes", &spec.nodes, Resolver::node)?;
        let previous = index.map(|i| self.snap.rule_entry(i).expect("target exists").rule.clone());
        let id = match &previous {
            Some(previous) => {
                same_id(EntityKind::Rule, spec.id, previous.id)?;
                previous.id
            }
            None => new_id(&self.snap, EntityKind::Rule, spec.id)?,
        };
        let mut accounts = spec.accounts;
        accounts.sort();
        accounts.dedup();
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let starts_at = spec
            .starts_at
            .or(previous.as_ref().map(|p| p.starts_at))
            .unwrap_or(stamp.created_at);
        if spec.expires_at.is_some_and(|expires| expires <= starts_at) {
            return Err(ValidationError::invalid(
                "expires_at",
                "must be after starts_at",
            ));
        }
        let rule = Rule {
            id,
            name: spec.name,
            effect: spec.effect,
            users,
            groups,
            assets,
            nodes,
            accounts,
            protocols: spec.protocols,
            actions: spec.actions,
            starts_at,
            expires_at: spec.expires_at,
            active: spec.active,
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        self.set_rule(index, Some(rule));
        Ok(id)
    }

    fn put_role(&mut self, index: Option<u32>, spec: RoleSpec) -> Result<Id> {
        check_name("name", &spec.name)?;
        check_text("description", &spec.description)?;
        check_len("permissions", &spec.permissions)?;
        for permission in &spec.permissions {
            check_name("permissions", permission)?;
        }
        if let Some(other) = self.snap.role_names.get(&spec.name, |i| {
            self.snap.role_entry(i).map(|r| r.name.as_str())
        }) {
            if Some(other) != index {
                return Err(duplicate(EntityKind::Role, &spec.name));
            }
        }
        refuse_look_alike(
            EntityKind::Role,
            "name",
            &spec.name,
            index,
            &self.snap.role_names,
            |i| self.snap.role_entry(i).map(|r| r.name.as_str()),
        )?;
        let previous = index.map(|i| self.snap.role_entry(i).expect("target exists").clone());
        if let Some(previous) = &previous {
            if previous.builtin {
                return Err(ValidationError::BuiltinRole(previous.name.clone()));
            }
            if !crate::snapshot::same_name(&previous.name, &spec.name) {
                self.refuse_if_role_in_use(&previous.name)?;
            }
        }
        let id = match &previous {
            Some(previous) => {
                same_id(EntityKind::Role, spec.id, previous.id)?;
                previous.id
            }
            None => new_id(&self.snap, EntityKind::Role, spec.id)?,
        };
        let mut permissions = spec.permissions;
        permissions.sort();
        permissions.dedup();
        let held_before = previous.as_ref().map_or(&[][..], |p| &p.permissions[..]);
        self.authority.may_grant(
            || format!("role `{}`", spec.name),
            permissions.iter().filter(|p| !held_before.contains(p)),
        )?;
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let role = Role {
            id,
            name: spec.name,
            permissions,
            builtin: false,
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        self.set_role(index, Some(role));
        Ok(id)
    }

    fn ambiguous_login(
        &self,
        name: &str,
        other_field: &'static str,
        other: u32,
    ) -> ValidationError {
        ValidationError::AmbiguousLogin {
            name: name.to_owned(),
            other_field,
            other: self.username_of_index(other),
        }
    }

    fn username_of_index(&self, index: u32) -> String {
        self.snap
            .user_entry(index)
            .map(|e| e.record.username().to_owned())
            .unwrap_or_default()
    }

    /// Refuses a group change that grants roles beyond the caller's authority: roles
    /// newly assigned to the group, and, when a member or subgroup joins (or has its
    /// membership lengthened), every role the group holds and inherits from the groups
    /// it sits in, since the newcomer's users gain them all.
    fn may_grant_through_group(
        &self,
        index: Option<u32>,
        previous: Option<&Group>,
        name: &str,
        members: &[UserMember],
        subgroups: &[GroupMember],
        roles: &[crate::model::RoleAssignment],
    ) -> Result<()> {
        if self.authority == Authority::Full {
            return Ok(());
        }
        let assigned_before: Vec<&String> = previous
            .map(|p| p.roles.iter().flat_map(|a| a.roles.iter()).collect())
            .unwrap_or_default();
        let before: std::collections::HashMap<Id, Option<Time>> = previous
            .map(|p| p.members.iter().map(|m| (m.user, m.expires_at)).collect())
            .unwrap_or_default();
        let granted_members = members.iter().any(|m| {
            !before
                .get(&m.user)
                .is_some_and(|old| lasts_as_long(*old, m.expires_at))
        });
        let granted_subgroups = subgroups.iter().any(|m| {
            !previous.is_some_and(|p| {
                p.subgroups
                    .iter()
                    .any(|old| old.group == m.group && lasts_as_long(old.expires_at, m.expires_at))
            })
        });
        let assigned = roles.iter().flat_map(|a| a.roles.iter());
        if !(granted_members || granted_subgroups) {
            return self.authority.may_grant_roles(
                &self.snap,
                || format!("the roles of group `{name}`"),
                assigned.filter(|role| !assigned_before.contains(role)),
            );
        }
        let inherited = index.map(|i| self.inherited_roles(i)).unwrap_or_default();
        self.authority.may_grant_roles(
            &self.snap,
            || format!("membership of group `{name}`"),
            assigned.chain(inherited),
        )
    }

    /// Built-in roles are created here, and only here.
    /// A child of `parent`, other than `index`, whose name looks like `name` (node
    /// names are unique among siblings only). Siblings are few, so this scans them; an
    /// all-ASCII pair is never compared, case variants being `child_named`'s business.
    /// A node keeping its name under the same parent is not judged again (see
    /// [`refuse_look_alike`]).
    fn look_alike_sibling(&self, parent: u32, name: &str, index: Option<u32>) -> Option<u32> {
        let unchanged = index
            .and_then(|i| self.snap.node_entry(i))
            .is_some_and(|entry| entry.parent == Some(parent) && entry.node.name == name);
        if unchanged {
            return None;
        }
        let siblings = &self.snap.node_entry(parent)?.children;
        siblings.iter().copied().find(|&sibling| {
            Some(sibling) != index
                && self.snap.node_entry(sibling).is_some_and(|entry| {
                    !(name.is_ascii() && entry.node.name.is_ascii())
                        && crate::snapshot::looks_alike(&entry.node.name, name)
                })
        })
    }

    pub(crate) fn create_builtin_role(
        &mut self,
        name: &str,
        description: &str,
        permissions: Vec<String>,
    ) {
        let role = Role {
            id: Id::random(),
            name: name.to_owned(),
            permissions,
            builtin: true,
            description: description.to_owned(),
            created_at: self.now,
            updated_at: self.now,
            created_by: self.actor.clone(),
        };
        self.set_role(None, Some(role));
    }

    /// The root node is created here, and only here.
    pub(crate) fn create_root_node(&mut self) {
        let node = Node {
            id: ROOT_NODE_ID,
            name: crate::model::ROOT_NODE_NAME.to_owned(),
            parent: None,
            number: 1,
            description: "the root of the asset tree".to_owned(),
            created_at: self.now,
            updated_at: self.now,
            created_by: self.actor.clone(),
        };
        self.set_node(None, Some(node));
    }

    fn refuse_if_role_in_use(&self, role: &str) -> Result<()> {
        let same = |name: &String| crate::snapshot::same_name(name, role);
        if let Some(user) = self
            .snap
            .users
            .iter()
            .flatten()
            .find(|e| e.record.unpack().system_roles.iter().any(same))
        {
            return Err(ValidationError::RoleInUse {
                role: role.to_owned(),
                holder: format!("user `{}`", user.record.username()),
            });
        }
        if let Some(group) = self
            .snap
            .groups
            .iter()
            .flatten()
            .find(|e| e.group.roles.iter().any(|a| a.roles.iter().any(same)))
        {
            return Err(ValidationError::RoleInUse {
                role: role.to_owned(),
                holder: format!("group `{}`", group.group.name),
            });
        }
        if let Some(token) = self
            .snap
            .tokens
            .iter()
            .flatten()
            .find(|e| e.token.roles.iter().any(same))
        {
            return Err(ValidationError::RoleInUse {
                role: role.to_owned(),
                holder: format!("token `{}`", token.token.name),
            });
        }
        Ok(())
    }

    fn put_token(
        &mut self,
        index: Option<u32>,
        spec: TokenSpec,
        hash: Option<[u8; 32]>,
    ) -> Result<Id> {
        check_name("name", &spec.name)?;
        check_text("description", &spec.description)?;
        if let Some(other) = self.snap.token_names.get(&spec.name, |i| {
            self.snap.token_entry(i).map(|e| e.token.name.as_str())
        }) {
            if Some(other) != index {
                return Err(duplicate(EntityKind::Token, &spec.name));
            }
        }
        refuse_look_alike(
            EntityKind::Token,
            "name",
            &spec.name,
            index,
            &self.snap.token_names,
            |i| self.snap.token_entry(i).map(|e| e.token.name.as_str()),
        )?;
        let resolver = Resolver(&self.snap);
        let user = spec.user.as_deref().map(|u| resolver.user(u)).transpose()?;
        let roles = resolver.roles("roles", &spec.roles)?;
        if roles.is_empty() {
            return Err(ValidationError::invalid(
                "roles",
                "a token needs at least one role",
            ));
        }
        let previous = index.map(|i| {
            self.snap
                .token_entry(i)
                .expect("target exists")
                .token
                .clone()
        });
        let held_before = previous.as_ref().map_or(&[][..], |p| &p.roles[..]);
        self.authority.may_grant_roles(
            &self.snap,
            || format!("token `{}`", spec.name),
            roles.iter().filter(|role| !held_before.contains(role)),
        )?;
        let id = match &previous {
            Some(previous) => {
                same_id(EntityKind::Token, spec.id, previous.id)?;
                previous.id
            }
            None => new_id(&self.snap, EntityKind::Token, spec.id)?,
        };
        match hash {
            None if previous.is_none() => {
                return Err(ValidationError::invalid(
                    "token",
                    "tokens are created with Engine::create_token",
                ));
            }
            Some(hash) if self.snap.token_hashes.contains_key(&hash) => {
                return Err(ValidationError::invalid(
                    "secret",
                    "another token already has this secret",
                ));
            }
            _ => {}
        }
        let stamp = self.stamp(
            previous
                .as_ref()
                .map(|p| (p.created_at, p.created_by.as_str())),
        );
        let token = Token {
            id,
            name: spec.name,
            user,
            roles,
            expires_at: spec.expires_at,
            description: spec.description,
            created_at: stamp.created_at,
            updated_at: stamp.updated_at,
            created_by: stamp.created_by,
        };
        self.set_token(index, Some(token), hash);
        Ok(id)
    }

    // ----- one membership --------------------------------------------------------

    fn add_member(&mut self, index: u32, member: &MemberSpec) -> Result<Id> {
        let entry = self.snap.group_entry(index).expect("target exists");
        let user = Resolver(&self.snap).user(member.user())?;
        let user_index = self.index_of_user(user);
        let (expires_at, source) = match member {
            MemberSpec::Name(_) => (None, None),
            MemberSpec::Detailed {
                expires_at, source, ..
            } => (*expires_at, source.clone()),
        };
        let membership = UserMember {
            user,
            expires_at,
            source: source.unwrap_or_else(|| entry.group.source.clone()),
        };
        let position = entry.memberships.iter().position(|m| m.user == user_index);
        let before = position.map(|p| entry.memberships[p].record(user, &self.snap.symbols));
        if before.as_ref() == Some(&membership) {
            return Ok(entry.group.id);
        }
        if position.is_none() && entry.memberships.len() >= MAX_LIST_LEN {
            return Err(ValidationError::invalid(
                "members",
                format!("at most {MAX_LIST_LEN} entries"),
            ));
        }
        if !before
            .as_ref()
            .is_some_and(|old| lasts_as_long(old.expires_at, membership.expires_at))
        {
            let name = entry.group.name.clone();
            self.may_grant_roles_of_group(index, &name)?;
        }
        let mut memberships = entry.memberships.to_vec();
        let member = Member::of(user_index, &membership, &mut self.snap.symbols);
        match position {
            Some(position) => memberships[position] = member,
            None => memberships.push(member),
        }
        Ok(self.set_membership(
            index,
            memberships,
            user_index,
            before.as_ref(),
            Some(&membership),
        ))
    }

    fn remove_member(&mut self, index: u32, reference: &str) -> Result<Id> {
        let entry = self.snap.group_entry(index).expect("target exists");
        let user = Resolver(&self.snap).user(reference)?;
        let user_index = self.index_of_user(user);
        let Some(position) = entry.memberships.iter().position(|m| m.user == user_index) else {
            return Err(ValidationError::NotAMember {
                group: entry.group.name.clone(),
                user: reference.to_owned(),
            });
        };
        let mut memberships = entry.memberships.to_vec();
        let before = memberships
            .remove(position)
            .record(user, &self.snap.symbols);
        Ok(self.set_membership(index, memberships, user_index, Some(&before), None))
    }

    /// Sets the membership of user `user` in group `group` to `member` (`None`:
    /// removes it) as another node's writer did: a membership written alone, read
    /// from the cluster's change log. Nothing is checked (the writer that decided it
    /// did); a group or user no longer there, or a membership already so, changes
    /// nothing.
    pub(crate) fn replicate_membership(
        &mut self,
        group: Id,
        user: Id,
        member: Option<&UserMember>,
    ) {
        let index_of = |kind: EntityKind, id: Id| {
            self.snap
                .slot(id)
                .filter(|slot| slot.kind == kind)
                .map(|slot| slot.index)
        };
        let (Some(index), Some(user_index)) = (
            index_of(EntityKind::Group, group),
            index_of(EntityKind::User, user),
        ) else {
            return;
        };
        let entry = self
            .snap
            .group_entry(index)
            .expect("INVARIANT: a slot's group exists");
        let position = entry.memberships.iter().position(|m| m.user == user_index);
        let before = position.map(|p| entry.memberships[p].record(user, &self.snap.symbols));
        if before.as_ref() == member {
            return;
        }
        let mut memberships = entry.memberships.to_vec();
        match (member, position) {
            (Some(member), Some(position)) => {
                memberships[position] = Member::of(user_index, member, &mut self.snap.symbols);
            }
            (Some(member), None) => {
                memberships.push(Member::of(user_index, member, &mut self.snap.symbols));
            }
            (None, Some(position)) => {
                memberships.remove(position);
            }
            (None, None) => return,
        }
        self.set_membership(index, memberships, user_index, before.as_ref(), member);
    }

    fn index_of_user(&self, user: Id) -> u32 {
        self.snap
            .slot(user)
            .expect("INVARIANT: a resolved user has a slot")
            .index
    }

    /// Refuses when the roles group `index` holds or inherits exceed the caller's
    /// authority: what a newcomer to the group gains.
    fn may_grant_roles_of_group(&self, index: u32, name: &str) -> Result<()> {
        if self.authority == Authority::Full {
            return Ok(());
        }
        let entry = self.snap.group_entry(index).expect("target exists");
        let own = entry.group.roles.iter().flat_map(|a| a.roles.iter());
        self.authority.may_grant_roles(
            &self.snap,
            || format!("membership of group `{name}`"),
            own.chain(self.inherited_roles(index)),
        )
    }

    /// The roles group `index` inherits from the groups it sits in (not its own).
    fn inherited_roles(&self, index: u32) -> Vec<&String> {
        self.snap
            .group_ancestors(index)
            .iter()
            .filter_map(|a| self.snap.group_entry(a))
            .flat_map(|e| e.group.roles.iter().flat_map(|a| a.roles.iter()))
            .collect()
    }

    // ----- deletion, with its cascades ---------------------------------------------------

    fn delete(&mut self, kind: EntityKind, index: u32) -> Result<Id> {
        match kind {
            EntityKind::User => {
                let entry = self.snap.user_entry(index).expect("target");
                let id = entry.id;
                let groups: Vec<u32> = entry.direct_groups.iter().map(|link| link.group).collect();
                let rules: Vec<u32> = entry.direct_rules.iter().collect();
                self.rewrite_groups(&groups, |group| group.members.retain(|m| m.user != id));
                self.rewrite_rules(&rules, |rule| rule.users.retain(|u| *u != id));
                let tokens: Vec<u32> = self.token_indexes(|t| t.user == Some(id));
                for token in tokens {
                    self.set_token(Some(token), None, None);
                }
                self.secrets.push(SecretWrite::Password {
                    user: id,
                    hash: None,
                });
                self.set_user(Some(index), None);
                Ok(id)
            }
            EntityKind::Group => {
                let entry = self.snap.group_entry(index).expect("target");
                let id = entry.group.id;
                let parents: Vec<u32> = entry.parents.iter().map(|(g, _)| *g).collect();
                let rules: Vec<u32> = entry.rules.iter().collect();
                self.rewrite_groups(&parents, |group| group.subgroups.retain(|m| m.group != id));
                self.rewrite_rules(&rules, |rule| rule.groups.retain(|g| *g != id));
                self.set_group(Some(index), None);
                Ok(id)
            }
            EntityKind::Node => {
                let entry = self.snap.node_entry(index).expect("target");
                let id = entry.node.id;
                if id == ROOT_NODE_ID {
                    return Err(ValidationError::RootNode);
                }
                if !entry.children.is_empty() || !entry.assets.is_empty() {
                    return Err(ValidationError::NodeNotEmpty(self.snap.node_path(index)));
                }
                let rules: Vec<u32> = entry.rules.iter().collect();
                self.rewrite_rules(&rules, |rule| rule.nodes.retain(|n| *n != id));
                self.set_node(Some(index), None);
                Ok(id)
            }
            EntityKind::Asset => {
                let entry = self.snap.asset_entry(index).expect("target");
                let id = entry.id;
                let rules: Vec<u32> = entry.direct_rules.iter().collect();
                self.rewrite_rules(&rules, |rule| rule.assets.retain(|a| *a != id));
                self.set_asset(Some(index), None);
                Ok(id)
            }
            EntityKind::Rule => {
                let id = self.snap.rule_entry(index).expect("target").rule.id;
                self.set_rule(Some(index), None);
                Ok(id)
            }
            EntityKind::Role => {
                let role = self.snap.role_entry(index).expect("target").clone();
                if role.builtin {
                    return Err(ValidationError::BuiltinRole(role.name.clone()));
                }
                self.refuse_if_role_in_use(&role.name)?;
                self.set_role(Some(index), None);
                Ok(role.id)
            }
            EntityKind::Token => {
                let id = self.snap.token_entry(index).expect("target").token.id;
                self.set_token(Some(index), None, None);
                Ok(id)
            }
        }
    }

    fn token_indexes(&self, keep: impl Fn(&Token) -> bool) -> Vec<u32> {
        (0..self.snap.tokens.len() as u32)
            .filter(|&i| self.snap.token_entry(i).is_some_and(|e| keep(&e.token)))
            .collect()
    }

    /// Applies `edit` to the groups at `indexes`, storing those it changed.
    fn rewrite_groups(&mut self, indexes: &[u32], edit: impl Fn(&mut Group)) {
        for &index in indexes {
            let Some(before) = self.snap.group_record(index) else {
                continue;
            };
            let mut group = before.clone();
            edit(&mut group);
            if group != before {
                group.updated_at = self.now;
                self.set_group(Some(index), Some(group));
            }
        }
    }

    /// Applies `edit` to the rules at `indexes`, storing those it changed.
    fn rewrite_rules(&mut self, indexes: &[u32], edit: impl Fn(&mut Rule)) {
        for &index in indexes {
            let Some(entry) = self.snap.rule_entry(index) else {
                continue;
            };
            let mut rule = (*entry.rule).clone();
            edit(&mut rule);
            if rule != *entry.rule {
                rule.updated_at = self.now;
                self.set_rule(Some(index), Some(rule));
            }
        }
    }
}

// ----- the spec form of stored entities -------------------------------------------------

impl Snapshot {
    fn username_of(&self, id: Id) -> String {
        self.slot(id)
            .and_then(|s| self.user_entry(s.index))
            .map_or_else(|| id.to_string(), |e| e.record.username().to_owned())
    }
    fn group_name_of(&self, id: Id) -> String {
        self.slot(id)
            .and_then(|s| self.group_entry(s.index))
            .map_or_else(|| id.to_string(), |e| e.group.name.clone())
    }
    fn asset_name_of(&self, id: Id) -> String {
        self.slot(id)
            .and_then(|s| self.asset_entry(s.index))
            .map_or_else(|| id.to_string(), |e| e.record.name().to_owned())
    }
    fn node_path_of(&self, id: Id) -> String {
        self.slot(id)
            .map_or_else(|| id.to_string(), |s| self.node_path(s.index))
    }

    /// The id of the entity at `index`.
    pub(crate) fn id_of(&self, kind: EntityKind, index: u32) -> Id {
        match kind {
            EntityKind::User => self.user_entry(index).expect("exists").id,
            EntityKind::Group => self.group_entry(index).expect("exists").group.id,
            EntityKind::Node => self.node_entry(index).expect("exists").node.id,
            EntityKind::Asset => self.asset_entry(index).expect("exists").id,
            EntityKind::Rule => self.rule_entry(index).expect("exists").rule.id,
            EntityKind::Role => self.role_entry(index).expect("exists").id,
            EntityKind::Token => self.token_entry(index).expect("exists").token.id,
        }
    }

    /// The version of the entity at `index`, which [`Op::Expect`] compares: its
    /// `updated_at`.
    pub(crate) fn version_of(&self, kind: EntityKind, index: u32) -> Time {
        match kind {
            EntityKind::User => {
                self.user_entry(index)
                    .expect("exists")
                    .record
                    .unpack()
                    .updated_at
            }
            EntityKind::Group => self.group_entry(index).expect("exists").group.updated_at,
            EntityKind::Node => self.node_entry(index).expect("exists").node.updated_at,
            EntityKind::Asset => {
                self.asset_entry(index)
                    .expect("exists")
                    .record
                    .unpack()
                    .updated_at
            }
            EntityKind::Rule => self.rule_entry(index).expect("exists").rule.updated_at,
            EntityKind::Role => self.role_entry(index).expect("exists").updated_at,
            EntityKind::Token => self.token_entry(index).expect("exists").token.updated_at,
        }
    }

    /// The spec that would recreate the entity at `index` (references by name).
    pub(crate) fn spec_of(&self, kind: EntityKind, index: u32) -> Spec {
        match kind {
            EntityKind::User => {
                let user = self.user_entry(index).expect("exists").record.unpack();
                Spec::User(UserSpec {
                    id: Some(user.id),
                    username: user.username.clone(),
                    name: user.name.clone(),
                    email: user.email.clone(),
                    phone: user.phone.clone(),
                    active: user.active,
                    expires_at: user.expires_at,
                    source: user.source.clone(),
                    external_id: user.external_id.clone(),
                    attributes: user.attributes.clone(),
                    system_roles: user.system_roles.clone(),
                    mfa: user.mfa,
                    must_change_password: user.must_change_password,
                    description: user.description.clone(),
                    password: None,
                })
            }
            EntityKind::Group => {
                let group = &self.group_record(index).expect("exists");
                Spec::Group(GroupSpec {
                    id: Some(group.id),
                    name: group.name.clone(),
                    members: group
                        .members
                        .iter()
                        .map(|m| MemberSpec::Detailed {
                            user: self.username_of(m.user),
                            expires_at: m.expires_at,
                            source: Some(m.source.clone()),
                        })
                        .collect(),
                    subgroups: group
                        .subgroups
                        .iter()
                        .map(|m| SubgroupSpec::Detailed {
                            group: self.group_name_of(m.group),
                            expires_at: m.expires_at,
                            source: Some(m.source.clone()),
                        })
                        .collect(),
                    roles: group.roles.clone(),
                    source: group.source.clone(),
                    external_id: group.external_id.clone(),
                    attributes: group.attributes.clone(),
                    description: group.description.clone(),
                })
            }
            EntityKind::Node => {
                let entry = self.node_entry(index).expect("exists");
                Spec::Node(NodeSpec {
                    id: Some(entry.node.id),
                    name: entry.node.name.clone(),
                    parent: entry.parent.map_or_else(String::new, |p| self.node_path(p)),
                    description: entry.node.description.clone(),
                })
            }
            EntityKind::Asset => {
                let asset = self.asset_entry(index).expect("exists").record.unpack();
                Spec::Asset(AssetSpec {
                    id: Some(asset.id),
                    name: asset.name.clone(),
                    address: asset.address.clone(),
                    platform: asset.platform.clone(),
                    protocols: asset.protocols.clone(),
                    nodes: asset.nodes.iter().map(|n| self.node_path_of(*n)).collect(),
                    accounts: asset
                        .accounts
                        .iter()
                        .map(|a| AccountSpec {
                            id: Some(a.id),
                            username: a.username.clone(),
                            privileged: a.privileged,
                            secret_kind: a.secret_kind,
                        })
                        .collect(),
                    active: asset.active,
                    description: asset.description.clone(),
                })
            }
            EntityKind::Rule => {
                let rule = &self.rule_entry(index).expect("exists").rule;
                Spec::Rule(RuleSpec {
                    id: Some(rule.id),
                    name: rule.name.clone(),
                    effect: rule.effect,
                    users: rule.users.iter().map(|u| self.username_of(*u)).collect(),
                    groups: rule.groups.iter().map(|g| self.group_name_of(*g)).collect(),
                    assets: rule.assets.iter().map(|a| self.asset_name_of(*a)).collect(),
                    nodes: rule.nodes.iter().map(|n| self.node_path_of(*n)).collect(),
                    accounts: rule.accounts.clone(),
                    protocols: rule.protocols.clone(),
                    actions: rule.actions,
                    starts_at: Some(rule.starts_at),
                    expires_at: rule.expires_at,
                    active: rule.active,
                    description: rule.description.clone(),
                })
            }
            EntityKind::Role => {
                let role = self.role_entry(index).expect("exists");
                Spec::Role(RoleSpec {
                    id: Some(role.id),
                    name: role.name.clone(),
                    permissions: role.permissions.clone(),
                    description: role.description.clone(),
                })
            }
            EntityKind::Token => {
                let token = &self.token_entry(index).expect("exists").token;
                Spec::Token(TokenSpec {
                    id: Some(token.id),
                    name: token.name.clone(),
                    user: token.user.map(|u| self.username_of(u)),
                    roles: token.roles.clone(),
                    expires_at: token.expires_at,
                    description: token.description.clone(),
                })
            }
        }
    }
}
