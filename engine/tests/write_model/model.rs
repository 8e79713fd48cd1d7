//! The model: the estate as plain maps keyed by id, and each `Op` applied to it by
//! docs/semantics.md's rules and the engine's documented behaviour, in the most obvious code
//! there is — the write-path twin of `eval::reference`.
//!
//! It must never call the engine's write code nor borrow its resolution logic: every
//! lookup here is a linear scan over the maps, every name comparison a lowercase
//! comparison, every cycle check a walk. What it borrows from the engine is data
//! (the entity structs, `Spec`, `builtin_roles`) and one definition, `name_folds`
//! (the UTS #39 confusable fold that says when two names look alike).
//!
//! A refused operation reports every rule it breaks (`Refusal`s), not the first one:
//! the engine is free to check in any order, and its error must be one of them.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_engine::*;

/// A rule a write broke: the variant of `ValidationError` and the data that says which
/// rule, never the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    NotFound(EntityKind),
    Duplicate(EntityKind),
    DuplicateEmail,
    LookAlike(EntityKind, &'static str),
    DuplicateId(EntityKind),
    ReservedId(EntityKind),
    Invalid(&'static str),
    GroupCycle,
    NodeCycle,
    NodeNotEmpty,
    RootNode,
    BuiltinRole,
    RoleInUse,
    AmbiguousLogin,
    GrantBeyondCaller,
    NotAMember,
    ActorRevoked,
    WeakPassword,
    VersionMismatch,
    Adoption,
}

impl Refusal {
    /// The refusal an engine error stands for.
    pub fn of(error: &ValidationError) -> Refusal {
        match error {
            ValidationError::NotFound(not_found) => Refusal::NotFound(not_found.kind),
            ValidationError::Duplicate { kind, .. } => Refusal::Duplicate(*kind),
            ValidationError::DuplicateEmail(_) => Refusal::DuplicateEmail,
            ValidationError::LookAlike { kind, field, .. } => Refusal::LookAlike(*kind, field),
            ValidationError::DuplicateId { kind, .. } => Refusal::DuplicateId(*kind),
            ValidationError::ReservedId { kind, .. } => Refusal::ReservedId(*kind),
            ValidationError::Invalid { field, .. } => Refusal::Invalid(field),
            ValidationError::GroupCycle { .. } => Refusal::GroupCycle,
            ValidationError::NodeCycle { .. } => Refusal::NodeCycle,
            ValidationError::NodeNotEmpty(_) => Refusal::NodeNotEmpty,
            ValidationError::RootNode => Refusal::RootNode,
            ValidationError::BuiltinRole(_) => Refusal::BuiltinRole,
            ValidationError::RoleInUse { .. } => Refusal::RoleInUse,
            ValidationError::AmbiguousLogin { .. } => Refusal::AmbiguousLogin,
            ValidationError::GrantBeyondCaller { .. } => Refusal::GrantBeyondCaller,
            ValidationError::NotAMember { .. } => Refusal::NotAMember,
            ValidationError::ActorRevoked(_) => Refusal::ActorRevoked,
            ValidationError::WeakPassword { .. } => Refusal::WeakPassword,
            ValidationError::VersionMismatch { .. } => Refusal::VersionMismatch,
            ValidationError::Adoption(_) => Refusal::Adoption,
        }
    }

    /// The variant's name, for coverage counts.
    pub fn variant(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "NotFound",
            Refusal::Duplicate(_) => "Duplicate",
            Refusal::DuplicateEmail => "DuplicateEmail",
            Refusal::LookAlike(..) => "LookAlike",
            Refusal::DuplicateId(_) => "DuplicateId",
            Refusal::ReservedId(_) => "ReservedId",
            Refusal::Invalid(_) => "Invalid",
            Refusal::GroupCycle => "GroupCycle",
            Refusal::NodeCycle => "NodeCycle",
            Refusal::NodeNotEmpty => "NodeNotEmpty",
            Refusal::RootNode => "RootNode",
            Refusal::BuiltinRole => "BuiltinRole",
            Refusal::RoleInUse => "RoleInUse",
            Refusal::AmbiguousLogin => "AmbiguousLogin",
            Refusal::GrantBeyondCaller => "GrantBeyondCaller",
            Refusal::NotAMember => "NotAMember",
            Refusal::ActorRevoked => "ActorRevoked",
            Refusal::WeakPassword => "WeakPassword",
            Refusal::VersionMismatch => "VersionMismatch",
            Refusal::Adoption => "Adoption",
        }
    }
}

/// Every variant of `ValidationError` a script provokes, for the coverage check
/// (not `WeakPassword`, nor `VersionMismatch`: scripts write no `Op::Expect`, whose
/// versions are times the model cannot know; `tests/writes.rs` covers it; nor
/// `Adoption`: scripts write no adoption, which `src/adoption.rs` tests).
pub const REFUSAL_VARIANTS: [&str; 17] = [
    "NotFound",
    "Duplicate",
    "DuplicateEmail",
    "LookAlike",
    "DuplicateId",
    "ReservedId",
    "Invalid",
    "GroupCycle",
    "NodeCycle",
    "NodeNotEmpty",
    "RootNode",
    "BuiltinRole",
    "RoleInUse",
    "AmbiguousLogin",
    "GrantBeyondCaller",
    "NotAMember",
    "ActorRevoked",
];

/// Who writes: the name the log records, and the acting token's id (`None`: the
/// operator, with full authority).
#[derive(Debug, Clone)]
pub struct Writer {
    pub name: String,
    pub token: Option<Id>,
}

/// An entity with the writes that created and last changed it (numbered from 0, the
/// engine's bootstrap): the model cannot know the clock, only which write stamped what.
#[derive(Debug, Clone)]
pub struct Record<T> {
    pub value: T,
    pub created_in: u64,
    pub updated_in: u64,
}

/// The estate. Plain maps, no index: every question is a scan.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub users: BTreeMap<Id, Record<User>>,
    pub groups: BTreeMap<Id, Record<Group>>,
    pub nodes: BTreeMap<Id, Record<Node>>,
    pub assets: BTreeMap<Id, Record<Asset>>,
    pub rules: BTreeMap<Id, Record<Rule>>,
    pub roles: BTreeMap<Id, Record<Role>>,
    pub tokens: BTreeMap<Id, Record<Token>>,
    /// Rules whose `starts_at` was never given: it is the moment they were created,
    /// which only the engine's clock knows (`value.starts_at` holds the model's guess).
    pub starts_at_creation: BTreeSet<Id>,
    /// The number the next node gets; numbers are never reused.
    pub next_node_number: u64,
    /// Successful writes so far, the bootstrap included: the revision.
    pub revision: u64,
    /// The number of the write being applied (the next revision).
    write: u64,
    actor: String,
    /// The permissions the writing token holds; `None`: full authority.
    held: Option<BTreeSet<String>>,
    now: Time,
    /// Ids the model hands out when a spec asks for none.
    next_id: u128,
}

type Refusals = Vec<Refusal>;

/// Two names are the same name when their lowercase forms are equal.
pub fn same(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// Two different names look alike when their confusable folds meet.
fn look_alike(a: &str, b: &str) -> bool {
    if same(a, b) {
        return false;
    }
    let folds = name_folds(b);
    name_folds(a).iter().any(|form| folds.contains(form))
}

fn name_ok(text: &str) -> bool {
    !text.is_empty()
        && text.trim() == text
        && !text.chars().any(char::is_control)
        && text.chars().count() <= 128
}

fn check_name(problems: &mut Refusals, field: &'static str, text: &str) {
    if !name_ok(text) {
        problems.push(Refusal::Invalid(field));
    }
}

fn check_text(problems: &mut Refusals, field: &'static str, text: &str) {
    let bad_char = text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t');
    if text.chars().count() > 4096 || bad_char {
        problems.push(Refusal::Invalid(field));
    }
}

/// Resolves each reference of a list; an entity named twice is refused.
fn resolve_list(
    problems: &mut Refusals,
    field: &'static str,
    kind: EntityKind,
    references: &[String],
    resolve: impl Fn(&str) -> Option<Id>,
) -> Vec<Id> {
    let mut ids = Vec::new();
    for reference in references {
        match resolve(reference) {
            None => problems.push(Refusal::NotFound(kind)),
            Some(id) if ids.contains(&id) => problems.push(Refusal::Invalid(field)),
            Some(id) => ids.push(id),
        }
    }
    ids
}

impl Model {
    /// A new store: the root node and the built-in roles, written by `system` in write 0.
    pub fn new() -> Model {
        let mut model = Model {
            next_node_number: 2,
            actor: "system".to_owned(),
            now: Time::now(),
            next_id: 0x4d4f_4445_4c00_0000_0000_0000_0000_0000,
            ..Model::default()
        };
        let root = Node {
            id: ROOT_NODE_ID,
            name: ROOT_NODE_NAME.to_owned(),
            parent: None,
            number: 1,
            description: "the root of the asset tree".to_owned(),
            created_at: model.now,
            updated_at: model.now,
            created_by: "system".to_owned(),
        };
        model.nodes.insert(ROOT_NODE_ID, model.record(root));
        for (name, description, permissions) in builtin_roles() {
            let id = model.fresh_id();
            let role = Role {
                id,
                name: name.to_owned(),
                permissions,
                builtin: true,
                description: description.to_owned(),
                created_at: model.now,
                updated_at: model.now,
                created_by: "system".to_owned(),
            };
            model.roles.insert(id, model.record(role));
        }
        model.revision = 1;
        model
    }

    fn record<T>(&self, value: T) -> Record<T> {
        Record {
            value,
            created_in: self.write,
            updated_in: self.write,
        }
    }

    fn fresh_id(&mut self) -> Id {
        self.next_id += 1;
        Id::from_u128(self.next_id)
    }

    /// Whether any entity or account holds `id`.
    fn id_taken(&self, id: Id) -> bool {
        self.entity_id_taken(id) || self.account_ids(None).contains(&id)
    }

    /// Whether any entity holds `id`.
    fn entity_id_taken(&self, id: Id) -> bool {
        self.users.contains_key(&id)
            || self.groups.contains_key(&id)
            || self.nodes.contains_key(&id)
            || self.assets.contains_key(&id)
            || self.rules.contains_key(&id)
            || self.roles.contains_key(&id)
            || self.tokens.contains_key(&id)
    }

    /// The id a new entity gets: the one asked for when free, else a fresh one.
    fn new_id(&mut self, problems: &mut Refusals, kind: EntityKind, requested: Option<Id>) -> Id {
        match requested {
            Some(id) if id == Id::from_u128(0) || id == Id::from_u128(u128::MAX) => {
                problems.push(Refusal::ReservedId(kind));
                id
            }
            Some(id) if self.id_taken(id) => {
                problems.push(Refusal::DuplicateId(kind));
                id
            }
            Some(id) => id,
            None => self.fresh_id(),
        }
    }

    // ----- lookups: by id of the right kind, else by name ---------------------------

    pub fn user(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.users.contains_key(id)) {
            return Some(id);
        }
        self.users
            .values()
            .find(|r| same(&r.value.username, text))
            .map(|r| r.value.id)
    }

    pub fn group(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.groups.contains_key(id)) {
            return Some(id);
        }
        self.groups
            .values()
            .find(|r| same(&r.value.name, text))
            .map(|r| r.value.id)
    }

    pub fn asset(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.assets.contains_key(id)) {
            return Some(id);
        }
        self.assets
            .values()
            .find(|r| same(&r.value.name, text))
            .map(|r| r.value.id)
    }

    pub fn rule(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.rules.contains_key(id)) {
            return Some(id);
        }
        self.rules
            .values()
            .find(|r| same(&r.value.name, text))
            .map(|r| r.value.id)
    }

    pub fn role(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.roles.contains_key(id)) {
            return Some(id);
        }
        self.roles
            .values()
            .find(|r| same(&r.value.name, text))
            .map(|r| r.value.id)
    }

    pub fn token(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.tokens.contains_key(id)) {
            return Some(id);
        }
        self.tokens
            .values()
            .find(|r| same(&r.value.name, text))
            .map(|r| r.value.id)
    }

    /// A node by id, or by path: `/Default/a/b`, each segment compared without case,
    /// a trailing `/` ignored.
    pub fn node(&self, text: &str) -> Option<Id> {
        if let Some(id) = Id::parse(text).filter(|id| self.nodes.contains_key(id)) {
            return Some(id);
        }
        let path = text.strip_prefix('/')?;
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.split('/');
        if !same(segments.next()?, ROOT_NODE_NAME) {
            return None;
        }
        let mut current = ROOT_NODE_ID;
        for segment in segments {
            current = self.children(current).find(|n| same(&n.name, segment))?.id;
        }
        Some(current)
    }

    fn children(&self, parent: Id) -> impl Iterator<Item = &Node> + '_ {
        self.nodes
            .values()
            .map(|r| &r.value)
            .filter(move |n| n.parent == Some(parent))
    }

    /// `/Default/a/b`.
    pub fn node_path(&self, id: Id) -> String {
        let node = &self.nodes[&id].value;
        match node.parent {
            None => format!("/{}", node.name),
            Some(parent) => format!("{}/{}", self.node_path(parent), node.name),
        }
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn node_within(&self, node: Id, ancestor: Id) -> bool {
        let mut current = Some(node);
        while let Some(id) = current {
            if id == ancestor {
                return true;
            }
            current = self.nodes[&id].value.parent;
        }
        false
    }

    /// Whether `inner` is nested in `outer` at any depth, whatever the expiries.
    fn group_nested_in(&self, inner: Id, outer: Id) -> bool {
        let mut seen = BTreeSet::new();
        let mut pending = vec![outer];
        while let Some(group) = pending.pop() {
            if !seen.insert(group) {
                continue;
            }
            for edge in &self.groups[&group].value.subgroups {
                if edge.group == inner {
                    return true;
                }
                pending.push(edge.group);
            }
        }
        false
    }

    fn role_held(&self, name: &str) -> bool {
        self.users
            .values()
            .any(|r| r.value.system_roles.iter().any(|n| same(n, name)))
            || self.groups.values().any(|r| {
                r.value
                    .roles
                    .iter()
                    .any(|a| a.roles.iter().any(|n| same(n, name)))
            })
            || self
                .tokens
                .values()
                .any(|r| r.value.roles.iter().any(|n| same(n, name)))
    }

    /// Role references resolved to the roles' own names, each once.
    fn role_names(&self, problems: &mut Refusals, references: &[String]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for reference in references {
            match self.role(reference) {
                None => problems.push(Refusal::NotFound(EntityKind::Role)),
                Some(id) => {
                    let name = &self.roles[&id].value.name;
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
        }
        names
    }

    /// The store was closed and opened again: nothing changes (a node number freed by
    /// a deletion stays unused, across reopens too).
    pub fn reopened(&mut self) {}

    // ----- authority: a caller never grants what it does not hold ---------------------

    /// What token `id` may grant now: the permissions of its roles, or full authority
    /// (`None`) when they are every permission the engine knows. A token deleted or
    /// expired writes nothing.
    fn held_by(&self, id: Id) -> Result<Option<BTreeSet<String>>, Refusal> {
        let token = match self.tokens.get(&id) {
            Some(record) => &record.value,
            None => return Err(Refusal::ActorRevoked),
        };
        if token.expires_at.is_some_and(|expires| expires <= self.now) {
            return Err(Refusal::ActorRevoked);
        }
        let mut held = BTreeSet::new();
        for role in &token.roles {
            held.extend(self.permissions_of(role));
        }
        if all_permissions().iter().all(|p| held.contains(p)) {
            return Ok(None);
        }
        Ok(Some(held))
    }

    /// The permissions of the role named `name`, as it stands now.
    fn permissions_of(&self, name: &str) -> Vec<String> {
        match self.role(name) {
            Some(id) => self.roles[&id].value.permissions.clone(),
            None => Vec::new(),
        }
    }

    /// Refuses when the writer lacks one of `permissions`.
    fn may_grant(&self, problems: &mut Refusals, permissions: &[String]) {
        if let Some(held) = &self.held {
            if permissions.iter().any(|p| !held.contains(p)) {
                problems.push(Refusal::GrantBeyondCaller);
            }
        }
    }

    /// Refuses when one of `roles` carries a permission the writer lacks.
    fn may_grant_roles(&self, problems: &mut Refusals, roles: &[String]) {
        let mut permissions = Vec::new();
        for role in roles {
            permissions.extend(self.permissions_of(role));
        }
        self.may_grant(problems, &permissions);
    }

    /// The roles of every group that group `id` sits in (at any depth, whatever the
    /// expiries): what its members inherit.
    fn inherited_roles(&self, id: Id) -> Vec<String> {
        let mut roles = Vec::new();
        for record in self.groups.values() {
            let group = &record.value;
            if self.group_nested_in(id, group.id) {
                for assignment in &group.roles {
                    roles.extend(assignment.roles.iter().cloned());
                }
            }
        }
        roles
    }

    // ----- writes -----------------------------------------------------------------------

    /// Applies a write: every op in order, each seeing the ones before. Refused, it
    /// changes nothing and returns what the first refused op broke.
    pub fn write(
        &mut self,
        writer: &Writer,
        ops: Vec<Op>,
        token_created: bool,
    ) -> Result<(), (usize, Refusals)> {
        let mut next = self.clone();
        next.write = self.revision;
        next.actor = writer.name.clone();
        next.now = Time::now();
        next.held = match writer.token {
            None => None,
            Some(token) => next.held_by(token).map_err(|r| (0, vec![r]))?,
        };
        for (i, op) in ops.into_iter().enumerate() {
            next.apply(op, token_created)
                .map_err(|problems| (i, problems))?;
        }
        next.revision += 1;
        *self = next;
        Ok(())
    }

    fn apply(&mut self, op: Op, token_created: bool) -> Result<(), Refusals> {
        let mut problems = Refusals::new();
        match op {
            Op::Create(spec) => self.put(&mut problems, None, spec, token_created),
            Op::Replace { target, spec } => match self.target(spec.kind(), &target) {
                None => problems.push(Refusal::NotFound(spec.kind())),
                Some(id) => self.put(&mut problems, Some(id), spec, false),
            },
            Op::Modify { kind, target, edit } => match self.target(kind, &target) {
                None => problems.push(Refusal::NotFound(kind)),
                Some(id) => {
                    let mut spec = self.spec_of(kind, id);
                    match edit(&mut spec) {
                        Err(error) => problems.push(Refusal::of(&error)),
                        Ok(()) if spec.kind() != kind => problems.push(Refusal::Invalid("kind")),
                        Ok(()) => self.put(&mut problems, Some(id), spec, false),
                    }
                }
            },
            Op::Delete { kind, target } => match self.target(kind, &target) {
                None => problems.push(Refusal::NotFound(kind)),
                Some(id) => self.delete(&mut problems, kind, id),
            },
            Op::AddMember { group, member } => {
                let group = self.group(&group);
                let user = self.user(member.user());
                if group.is_none() {
                    problems.push(Refusal::NotFound(EntityKind::Group));
                }
                if user.is_none() {
                    problems.push(Refusal::NotFound(EntityKind::User));
                }
                if let (Some(group), Some(user)) = (group, user) {
                    self.add_member(&mut problems, group, user, member);
                }
            }
            Op::RemoveMember { group, user } => {
                let group = self.group(&group);
                let user = self.user(&user);
                if group.is_none() {
                    problems.push(Refusal::NotFound(EntityKind::Group));
                }
                if user.is_none() {
                    problems.push(Refusal::NotFound(EntityKind::User));
                }
                if let (Some(group), Some(user)) = (group, user) {
                    let write = self.write;
                    let record = self.groups.get_mut(&group).expect("resolved");
                    if record.value.members.iter().any(|m| m.user == user) {
                        record.value.members.retain(|m| m.user != user);
                        record.updated_in = write;
                    } else {
                        problems.push(Refusal::NotAMember);
                    }
                }
            }
            Op::RecordLogin { user, at } => match self.user(&user) {
                None => problems.push(Refusal::NotFound(EntityKind::User)),
                // A sign-in is not an edit: `updated_at` stays.
                Some(id) => {
                    let record = self.users.get_mut(&id).expect("resolved");
                    record.value.last_login = Some(at);
                }
            },
            Op::Expect { .. } => {
                unreachable!("scripts write no `Op::Expect`: the model knows no versions")
            }
            Op::Adopt { .. } | Op::Release { .. } => {
                unreachable!("scripts write no adoption: `portcullis_engine::adoption` tests it")
            }
            Op::RecordEvent { user, .. } => {
                if let Some(id) = user {
                    if !self.users.contains_key(&id) {
                        problems.push(Refusal::NotFound(EntityKind::User));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Adds `user` to `group`, or changes the end and source of its membership (the
    /// source defaults to the group's). The same membership again changes nothing.
    fn add_member(&mut self, problems: &mut Refusals, group: Id, user: Id, member: MemberSpec) {
        let (expires_at, source) = match member {
            MemberSpec::Name(_) => (None, None),
            MemberSpec::Detailed {
                expires_at, source, ..
            } => (expires_at, source),
        };
        let old = &self.groups[&group].value;
        let membership = UserMember {
            user,
            expires_at,
            source: source.unwrap_or_else(|| old.source.clone()),
        };
        let before = old.members.iter().find(|m| m.user == user).cloned();
        if before.as_ref() == Some(&membership) {
            return;
        }
        // A newcomer, or a membership made longer, gains the group's roles.
        let lasts_as_long = match &before {
            None => false,
            Some(before) => match (before.expires_at, membership.expires_at) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(old), Some(new)) => new <= old,
            },
        };
        if !lasts_as_long {
            let mut granted: Vec<String> = old.roles.iter().flat_map(|a| a.roles.clone()).collect();
            granted.extend(self.inherited_roles(group));
            self.may_grant_roles(problems, &granted);
            if !problems.is_empty() {
                return;
            }
        }
        let write = self.write;
        let record = self.groups.get_mut(&group).expect("resolved");
        match record.value.members.iter_mut().find(|m| m.user == user) {
            Some(existing) => *existing = membership,
            None => record.value.members.push(membership),
        }
        record.updated_in = write;
    }

    fn target(&self, kind: EntityKind, reference: &str) -> Option<Id> {
        match kind {
            EntityKind::User => self.user(reference),
            EntityKind::Group => self.group(reference),
            EntityKind::Node => self.node(reference),
            EntityKind::Asset => self.asset(reference),
            EntityKind::Rule => self.rule(reference),
            EntityKind::Role => self.role(reference),
            EntityKind::Token => self.token(reference),
        }
    }

    /// Stamps `value` as created (or, replacing, as kept from `previous`) in this write.
    fn stamped<T>(&self, previous: Option<&Record<T>>, value: T) -> Record<T> {
        Record {
            value,
            created_in: previous.map_or(self.write, |p| p.created_in),
            updated_in: self.write,
        }
    }

    /// On replace, the id a spec names (if any) must be the target's.
    fn keep_id(problems: &mut Refusals, requested: Option<Id>, actual: Id) {
        if requested.is_some_and(|id| id != actual) {
            problems.push(Refusal::Invalid("id"));
        }
    }

    fn put(&mut self, problems: &mut Refusals, target: Option<Id>, spec: Spec, token: bool) {
        match spec {
            Spec::User(spec) => self.put_user(problems, target, spec),
            Spec::Group(spec) => self.put_group(problems, target, spec),
            Spec::Node(spec) => self.put_node(problems, target, spec),
            Spec::Asset(spec) => self.put_asset(problems, target, spec),
            Spec::Rule(spec) => self.put_rule(problems, target, spec),
            Spec::Role(spec) => self.put_role(problems, target, spec),
            Spec::Token(spec) => self.put_token(problems, target, spec, token),
        }
    }

    /// A unique name of one kind: not held by another entity (without case), and not a
    /// look-alike of one — unless the entity already holds exactly this name.
    fn unique_name<'a>(
        problems: &mut Refusals,
        kind: EntityKind,
        field: &'static str,
        name: &str,
        target: Option<Id>,
        others: impl Iterator<Item = (Id, &'a str)>,
    ) {
        let others: Vec<(Id, &str)> = others.collect();
        let unchanged = others
            .iter()
            .any(|(id, held)| Some(*id) == target && *held == name);
        for (id, held) in others {
            if Some(id) == target {
                continue;
            }
            if same(held, name) {
                if field == "email" {
                    problems.push(Refusal::DuplicateEmail);
                } else {
                    problems.push(Refusal::Duplicate(kind));
                }
            } else if !unchanged && look_alike(held, name) {
                problems.push(Refusal::LookAlike(kind, field));
            }
        }
    }

    fn put_user(&mut self, problems: &mut Refusals, target: Option<Id>, spec: UserSpec) {
        check_name(problems, "username", &spec.username);
        if spec.name.chars().count() > 128 || spec.name.chars().any(char::is_control) {
            problems.push(Refusal::Invalid("name"));
        }
        for (field, text) in [("phone", &spec.phone), ("external_id", &spec.external_id)] {
            if let Some(text) = text {
                check_name(problems, field, text);
            }
        }
        if serde_json::to_vec(&spec.attributes)
            .expect("attributes are JSON")
            .len()
            > MAX_ATTRIBUTES_BYTES
        {
            problems.push(Refusal::Invalid("attributes"));
        }
        check_text(problems, "description", &spec.description);
        let email = spec
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(email) = email {
            check_name(problems, "email", email);
            let parts = email.split_once('@');
            let shaped =
                parts.is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
            if !shaped || email.contains(char::is_whitespace) {
                problems.push(Refusal::Invalid("email"));
            }
        }
        Self::unique_name(
            problems,
            EntityKind::User,
            "username",
            &spec.username,
            target,
            self.users
                .values()
                .map(|r| (r.value.id, r.value.username.as_str())),
        );
        if let Some(email) = email {
            Self::unique_name(
                problems,
                EntityKind::User,
                "email",
                email,
                target,
                self.users
                    .values()
                    .filter_map(|r| Some((r.value.id, r.value.email.as_deref()?))),
            );
        }
        // Login names are unambiguous: no username is another user's email.
        for other in self.users.values().filter(|r| Some(r.value.id) != target) {
            let other = &other.value;
            let clash_email = other
                .email
                .as_deref()
                .is_some_and(|e| same(e, &spec.username));
            let clash_username = email.is_some_and(|e| same(e, &other.username));
            if clash_email || clash_username {
                problems.push(Refusal::AmbiguousLogin);
            }
        }
        let system_roles = self.role_names(problems, &spec.system_roles);
        let previous = target.map(|id| self.users[&id].clone());
        let added: Vec<String> = system_roles
            .iter()
            .filter(|role| {
                !previous
                    .as_ref()
                    .is_some_and(|p| p.value.system_roles.contains(role))
            })
            .cloned()
            .collect();
        self.may_grant_roles(problems, &added);
        let id = match &previous {
            Some(previous) => {
                Self::keep_id(problems, spec.id, previous.value.id);
                previous.value.id
            }
            None => self.new_id(problems, EntityKind::User, spec.id),
        };
        if !problems.is_empty() {
            return;
        }
        let user = User {
            id,
            name: if spec.name.is_empty() {
                spec.username.clone()
            } else {
                spec.name
            },
            username: spec.username,
            email: email.map(str::to_owned),
            phone: spec.phone,
            active: spec.active,
            expires_at: spec.expires_at,
            source: spec.source,
            external_id: spec.external_id,
            attributes: spec.attributes,
            system_roles,
            mfa: spec.mfa,
            must_change_password: spec.must_change_password,
            has_password: spec.password.is_some()
                || previous.as_ref().is_some_and(|p| p.value.has_password),
            last_login: previous.as_ref().and_then(|p| p.value.last_login),
            description: spec.description,
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        let record = self.stamped(previous.as_ref(), user);
        self.users.insert(id, record);
    }

    fn created_by(&self, previous: Option<&String>) -> String {
        previous.cloned().unwrap_or_else(|| self.actor.clone())
    }

    fn put_group(&mut self, problems: &mut Refusals, target: Option<Id>, spec: GroupSpec) {
        check_name(problems, "name", &spec.name);
        if let Some(external_id) = &spec.external_id {
            check_name(problems, "external_id", external_id);
        }
        if serde_json::to_vec(&spec.attributes)
            .expect("attributes are JSON")
            .len()
            > MAX_ATTRIBUTES_BYTES
        {
            problems.push(Refusal::Invalid("attributes"));
        }
        check_text(problems, "description", &spec.description);
        Self::unique_name(
            problems,
            EntityKind::Group,
            "name",
            &spec.name,
            target,
            self.groups
                .values()
                .map(|r| (r.value.id, r.value.name.as_str())),
        );
        let mut members: Vec<UserMember> = Vec::new();
        for member in &spec.members {
            let (expires_at, source) = match member {
                MemberSpec::Name(_) => (None, None),
                MemberSpec::Detailed {
                    expires_at, source, ..
                } => (*expires_at, source.clone()),
            };
            match self.user(member.user()) {
                None => problems.push(Refusal::NotFound(EntityKind::User)),
                Some(user) if members.iter().any(|m| m.user == user) => {
                    problems.push(Refusal::Invalid("members"));
                }
                Some(user) => members.push(UserMember {
                    user,
                    expires_at,
                    source: source.unwrap_or_else(|| spec.source.clone()),
                }),
            }
        }
        let previous = target.map(|id| self.groups[&id].clone());
        let id = match &previous {
            Some(previous) => {
                Self::keep_id(problems, spec.id, previous.value.id);
                previous.value.id
            }
            None => self.new_id(problems, EntityKind::Group, spec.id),
        };
        let mut subgroups: Vec<GroupMember> = Vec::new();
        for subgroup in &spec.subgroups {
            let (expires_at, source) = match subgroup {
                SubgroupSpec::Name(_) => (None, None),
                SubgroupSpec::Detailed {
                    expires_at, source, ..
                } => (*expires_at, source.clone()),
            };
            match self.group(subgroup.group()) {
                None => problems.push(Refusal::NotFound(EntityKind::Group)),
                Some(group) if subgroups.iter().any(|m| m.group == group) => {
                    problems.push(Refusal::Invalid("subgroups"));
                }
                Some(group) => {
                    // A group inside itself, directly or through the groups in it.
                    if group == id || (target.is_some() && self.group_nested_in(id, group)) {
                        problems.push(Refusal::GroupCycle);
                    }
                    subgroups.push(GroupMember {
                        group,
                        expires_at,
                        source: source.unwrap_or_else(|| spec.source.clone()),
                    });
                }
            }
        }
        let mut roles = Vec::new();
        for assignment in &spec.roles {
            check_name(problems, "roles.scope", &assignment.scope);
            roles.push(RoleAssignment {
                scope: assignment.scope.clone(),
                roles: self.role_names(problems, &assignment.roles),
            });
        }
        // A member or subgroup that joins, or stays longer, gains every role the group
        // assigns and inherits; otherwise only newly assigned roles are granted.
        let lasts_as_long = |old: Option<Time>, new: Option<Time>| match (old, new) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(old), Some(new)) => new <= old,
        };
        let joins = match &previous {
            None => !members.is_empty() || !subgroups.is_empty(),
            Some(previous) => {
                let old = &previous.value;
                let member_joins = members.iter().any(|m| {
                    !old.members
                        .iter()
                        .any(|o| o.user == m.user && lasts_as_long(o.expires_at, m.expires_at))
                });
                let subgroup_joins = subgroups.iter().any(|m| {
                    !old.subgroups
                        .iter()
                        .any(|o| o.group == m.group && lasts_as_long(o.expires_at, m.expires_at))
                });
                member_joins || subgroup_joins
            }
        };
        let assigned: Vec<String> = roles.iter().flat_map(|a| a.roles.clone()).collect();
        if joins {
            let mut granted = assigned;
            if target.is_some() {
                granted.extend(self.inherited_roles(id));
            }
            self.may_grant_roles(problems, &granted);
        } else {
            let assigned_before: Vec<String> = previous
                .iter()
                .flat_map(|p| p.value.roles.iter().flat_map(|a| a.roles.clone()))
                .collect();
            let added: Vec<String> = assigned
                .into_iter()
                .filter(|role| !assigned_before.contains(role))
                .collect();
            self.may_grant_roles(problems, &added);
        }
        if !problems.is_empty() {
            return;
        }
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
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        let record = self.stamped(previous.as_ref(), group);
        self.groups.insert(id, record);
    }

    fn put_node(&mut self, problems: &mut Refusals, target: Option<Id>, spec: NodeSpec) {
        check_name(problems, "name", &spec.name);
        check_text(problems, "description", &spec.description);
        if spec.name.contains('/') {
            problems.push(Refusal::Invalid("name"));
        }
        if target == Some(ROOT_NODE_ID) {
            problems.push(Refusal::RootNode);
        }
        let previous = target.map(|id| self.nodes[&id].clone());
        match self.node(&spec.parent) {
            None => problems.push(Refusal::NotFound(EntityKind::Node)),
            Some(parent) => {
                if target.is_some_and(|id| self.node_within(parent, id)) {
                    problems.push(Refusal::NodeCycle);
                }
                let unchanged = previous
                    .as_ref()
                    .is_some_and(|p| p.value.parent == Some(parent) && p.value.name == spec.name);
                for sibling in self.children(parent) {
                    if Some(sibling.id) == target {
                        continue;
                    }
                    if same(&sibling.name, &spec.name) {
                        problems.push(Refusal::Duplicate(EntityKind::Node));
                    } else if !unchanged && look_alike(&sibling.name, &spec.name) {
                        problems.push(Refusal::LookAlike(EntityKind::Node, "path"));
                    }
                }
            }
        }
        let (id, number) = match &previous {
            Some(previous) => {
                Self::keep_id(problems, spec.id, previous.value.id);
                (previous.value.id, previous.value.number)
            }
            None => (
                self.new_id(problems, EntityKind::Node, spec.id),
                self.next_node_number,
            ),
        };
        if !problems.is_empty() {
            return;
        }
        if previous.is_none() {
            self.next_node_number += 1;
        }
        let node = Node {
            id,
            name: spec.name,
            parent: self.node(&spec.parent),
            number,
            description: spec.description,
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        let record = self.stamped(previous.as_ref(), node);
        self.nodes.insert(id, record);
    }

    /// Every account id in the store but those of `except`'s own accounts.
    fn account_ids(&self, except: Option<Id>) -> Vec<Id> {
        self.assets
            .values()
            .filter(|r| Some(r.value.id) != except)
            .flat_map(|r| r.value.accounts.iter().map(|a| a.id))
            .collect()
    }

    fn put_asset(&mut self, problems: &mut Refusals, target: Option<Id>, spec: AssetSpec) {
        check_name(problems, "name", &spec.name);
        check_text(problems, "address", &spec.address);
        check_text(problems, "platform", &spec.platform);
        check_text(problems, "description", &spec.description);
        Self::unique_name(
            problems,
            EntityKind::Asset,
            "name",
            &spec.name,
            target,
            self.assets
                .values()
                .map(|r| (r.value.id, r.value.name.as_str())),
        );
        for (i, protocol) in spec.protocols.iter().enumerate() {
            if spec.protocols[..i]
                .iter()
                .any(|p| p.name() == protocol.name())
            {
                problems.push(Refusal::Invalid("protocols"));
            }
        }
        let node_refs = if spec.nodes.is_empty() {
            vec![format!("/{ROOT_NODE_NAME}")]
        } else {
            spec.nodes.clone()
        };
        let nodes = resolve_list(problems, "nodes", EntityKind::Node, &node_refs, |r| {
            self.node(r)
        });
        let previous = target.map(|id| self.assets[&id].clone());
        let id = match &previous {
            Some(previous) => {
                Self::keep_id(problems, spec.id, previous.value.id);
                previous.value.id
            }
            None => self.new_id(problems, EntityKind::Asset, spec.id),
        };
        let mut accounts: Vec<Account> = Vec::new();
        for account in spec.accounts {
            if account_username(&account.username).is_none() {
                problems.push(Refusal::Invalid("accounts"));
            }
            if accounts.iter().any(|a| a.username == account.username) {
                problems.push(Refusal::Invalid("accounts"));
            }
            // An account keeps its id across replaces, matched by username.
            let kept = previous
                .as_ref()
                .and_then(|p| p.value.account(&account.username))
                .map(|a| a.id);
            let account_id = match (account.id, kept) {
                // An id is one thing's: an entity's or one account's. The accounts
                // of the asset being replaced give theirs up.
                (Some(requested), _) => {
                    if self.entity_id_taken(requested)
                        || self.account_ids(target).contains(&requested)
                    {
                        problems.push(Refusal::DuplicateId(EntityKind::Asset));
                    }
                    requested
                }
                (None, Some(kept)) => kept,
                (None, None) => self.fresh_id(),
            };
            if accounts.iter().any(|a| a.id == account_id) {
                problems.push(Refusal::DuplicateId(EntityKind::Asset));
            }
            accounts.push(Account {
                id: account_id,
                username: account.username,
                privileged: account.privileged,
                secret_kind: account.secret_kind,
            });
        }
        if !problems.is_empty() {
            return;
        }
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
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        let record = self.stamped(previous.as_ref(), asset);
        self.assets.insert(id, record);
    }

    fn put_rule(&mut self, problems: &mut Refusals, target: Option<Id>, spec: RuleSpec) {
        check_name(problems, "name", &spec.name);
        check_text(problems, "description", &spec.description);
        Self::unique_name(
            problems,
            EntityKind::Rule,
            "name",
            &spec.name,
            target,
            self.rules
                .values()
                .map(|r| (r.value.id, r.value.name.as_str())),
        );
        let users = resolve_list(problems, "users", EntityKind::User, &spec.users, |r| {
            self.user(r)
        });
        let groups = resolve_list(problems, "groups", EntityKind::Group, &spec.groups, |r| {
            self.group(r)
        });
        let assets = resolve_list(problems, "assets", EntityKind::Asset, &spec.assets, |r| {
            self.asset(r)
        });
        let nodes = resolve_list(problems, "nodes", EntityKind::Node, &spec.nodes, |r| {
            self.node(r)
        });
        let previous = target.map(|id| self.rules[&id].clone());
        let id = match &previous {
            Some(previous) => {
                Self::keep_id(problems, spec.id, previous.value.id);
                previous.value.id
            }
            None => self.new_id(problems, EntityKind::Rule, spec.id),
        };
        // `starts_at` defaults to what the rule had, and a new rule's to its creation.
        let (starts_at, at_creation) = match (spec.starts_at, &previous) {
            (Some(starts_at), _) => (starts_at, false),
            (None, Some(previous)) => (
                previous.value.starts_at,
                self.starts_at_creation.contains(&previous.value.id),
            ),
            (None, None) => (self.now, true),
        };
        if spec.expires_at.is_some_and(|expires| expires <= starts_at) {
            problems.push(Refusal::Invalid("expires_at"));
        }
        if !problems.is_empty() {
            return;
        }
        let accounts: BTreeSet<AccountSelector> = spec.accounts.into_iter().collect();
        let rule = Rule {
            id,
            name: spec.name,
            effect: spec.effect,
            users,
            groups,
            assets,
            nodes,
            accounts: accounts.into_iter().collect(),
            protocols: spec.protocols,
            actions: spec.actions,
            starts_at,
            expires_at: spec.expires_at,
            active: spec.active,
            description: spec.description,
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        if at_creation {
            self.starts_at_creation.insert(id);
        } else {
            self.starts_at_creation.remove(&id);
        }
        let record = self.stamped(previous.as_ref(), rule);
        self.rules.insert(id, record);
    }

    fn put_role(&mut self, problems: &mut Refusals, target: Option<Id>, spec: RoleSpec) {
        check_name(problems, "name", &spec.name);
        check_text(problems, "description", &spec.description);
        for permission in &spec.permissions {
            check_name(problems, "permissions", permission);
        }
        Self::unique_name(
            problems,
            EntityKind::Role,
            "name",
            &spec.name,
            target,
            self.roles
                .values()
                .map(|r| (r.value.id, r.value.name.as_str())),
        );
        let previous = target.map(|id| self.roles[&id].clone());
        let id = match &previous {
            Some(previous) => {
                if previous.value.builtin {
                    problems.push(Refusal::BuiltinRole);
                }
                // Holders name roles by name: a role they hold keeps its name.
                if !same(&previous.value.name, &spec.name) && self.role_held(&previous.value.name) {
                    problems.push(Refusal::RoleInUse);
                }
                Self::keep_id(problems, spec.id, previous.value.id);
                previous.value.id
            }
            None => self.new_id(problems, EntityKind::Role, spec.id),
        };
        let permissions: BTreeSet<String> = spec.permissions.into_iter().collect();
        let added: Vec<String> = permissions
            .iter()
            .filter(|p| {
                !previous
                    .as_ref()
                    .is_some_and(|r| r.value.permissions.contains(p))
            })
            .cloned()
            .collect();
        self.may_grant(problems, &added);
        if !problems.is_empty() {
            return;
        }
        let role = Role {
            id,
            name: spec.name,
            permissions: permissions.into_iter().collect(),
            builtin: false,
            description: spec.description,
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        let record = self.stamped(previous.as_ref(), role);
        self.roles.insert(id, record);
    }

    /// `created`: the op came through `Engine::create_token`, the only door for a new
    /// token (it brings the secret's hash).
    fn put_token(
        &mut self,
        problems: &mut Refusals,
        target: Option<Id>,
        spec: TokenSpec,
        created: bool,
    ) {
        check_name(problems, "name", &spec.name);
        check_text(problems, "description", &spec.description);
        Self::unique_name(
            problems,
            EntityKind::Token,
            "name",
            &spec.name,
            target,
            self.tokens
                .values()
                .map(|r| (r.value.id, r.value.name.as_str())),
        );
        let user = match spec.user.as_deref().map(|u| self.user(u)) {
            None => None,
            Some(None) => {
                problems.push(Refusal::NotFound(EntityKind::User));
                None
            }
            Some(found) => found,
        };
        let roles = self.role_names(problems, &spec.roles);
        if spec.roles.is_empty() {
            problems.push(Refusal::Invalid("roles"));
        }
        let previous = target.map(|id| self.tokens[&id].clone());
        let added: Vec<String> = roles
            .iter()
            .filter(|role| {
                !previous
                    .as_ref()
                    .is_some_and(|p| p.value.roles.contains(role))
            })
            .cloned()
            .collect();
        self.may_grant_roles(problems, &added);
        let id = match &previous {
            Some(previous) => {
                Self::keep_id(problems, spec.id, previous.value.id);
                previous.value.id
            }
            None => self.new_id(problems, EntityKind::Token, spec.id),
        };
        if previous.is_none() && !created {
            problems.push(Refusal::Invalid("token"));
        }
        if !problems.is_empty() {
            return;
        }
        let token = Token {
            id,
            name: spec.name,
            user,
            roles,
            expires_at: spec.expires_at,
            description: spec.description,
            created_at: self.now,
            updated_at: self.now,
            created_by: self.created_by(previous.as_ref().map(|p| &p.value.created_by)),
        };
        let record = self.stamped(previous.as_ref(), token);
        self.tokens.insert(id, record);
    }

    /// Deletes, and removes the entity from everything that refers to it: groups lose
    /// the member or subgroup, rules the subject or object, a user's tokens go with
    /// the user. Nodes must be empty; roles must be held by nobody.
    fn delete(&mut self, problems: &mut Refusals, kind: EntityKind, id: Id) {
        let write = self.write;
        match kind {
            EntityKind::User => {
                self.users.remove(&id);
                for record in self.groups.values_mut() {
                    if record.value.members.iter().any(|m| m.user == id) {
                        record.value.members.retain(|m| m.user != id);
                        record.updated_in = write;
                    }
                }
                for record in self.rules.values_mut() {
                    if record.value.users.contains(&id) {
                        record.value.users.retain(|u| *u != id);
                        record.updated_in = write;
                    }
                }
                self.tokens.retain(|_, r| r.value.user != Some(id));
            }
            EntityKind::Group => {
                self.groups.remove(&id);
                for record in self.groups.values_mut() {
                    if record.value.subgroups.iter().any(|m| m.group == id) {
                        record.value.subgroups.retain(|m| m.group != id);
                        record.updated_in = write;
                    }
                }
                for record in self.rules.values_mut() {
                    if record.value.groups.contains(&id) {
                        record.value.groups.retain(|g| *g != id);
                        record.updated_in = write;
                    }
                }
            }
            EntityKind::Node => {
                if id == ROOT_NODE_ID {
                    problems.push(Refusal::RootNode);
                    return;
                }
                let has_children = self.children(id).next().is_some();
                let has_assets = self.assets.values().any(|r| r.value.nodes.contains(&id));
                if has_children || has_assets {
                    problems.push(Refusal::NodeNotEmpty);
                    return;
                }
                self.nodes.remove(&id);
                for record in self.rules.values_mut() {
                    if record.value.nodes.contains(&id) {
                        record.value.nodes.retain(|n| *n != id);
                        record.updated_in = write;
                    }
                }
            }
            EntityKind::Asset => {
                self.assets.remove(&id);
                for record in self.rules.values_mut() {
                    if record.value.assets.contains(&id) {
                        record.value.assets.retain(|a| *a != id);
                        record.updated_in = write;
                    }
                }
            }
            EntityKind::Rule => {
                self.rules.remove(&id);
                self.starts_at_creation.remove(&id);
            }
            EntityKind::Role => {
                let role = &self.roles[&id].value;
                if role.builtin {
                    problems.push(Refusal::BuiltinRole);
                }
                if self.role_held(&role.name) {
                    problems.push(Refusal::RoleInUse);
                }
                if problems.is_empty() {
                    self.roles.remove(&id);
                }
            }
            EntityKind::Token => {
                self.tokens.remove(&id);
            }
        }
    }

    // ----- the spec form, what a Modify edits ---------------------------------------------

    /// The spec that would recreate the entity, references by name (paths for nodes).
    /// A rule whose `starts_at` is its creation instant gives none (the model does not
    /// know the instant; keeping it is what a spec without one does).
    pub fn spec_of(&self, kind: EntityKind, id: Id) -> Spec {
        let username = |id: &Id| self.users[id].value.username.clone();
        let group_name = |id: &Id| self.groups[id].value.name.clone();
        match kind {
            EntityKind::User => {
                let u = &self.users[&id].value;
                Spec::User(UserSpec {
                    id: Some(u.id),
                    username: u.username.clone(),
                    name: u.name.clone(),
                    email: u.email.clone(),
                    phone: u.phone.clone(),
                    active: u.active,
                    expires_at: u.expires_at,
                    source: u.source.clone(),
                    external_id: u.external_id.clone(),
                    attributes: u.attributes.clone(),
                    system_roles: u.system_roles.clone(),
                    mfa: u.mfa,
                    must_change_password: u.must_change_password,
                    description: u.description.clone(),
                    password: None,
                })
            }
            EntityKind::Group => {
                let g = &self.groups[&id].value;
                Spec::Group(GroupSpec {
                    id: Some(g.id),
                    name: g.name.clone(),
                    members: g
                        .members
                        .iter()
                        .map(|m| MemberSpec::Detailed {
                            user: username(&m.user),
                            expires_at: m.expires_at,
                            source: Some(m.source.clone()),
                        })
                        .collect(),
                    subgroups: g
                        .subgroups
                        .iter()
                        .map(|m| SubgroupSpec::Detailed {
                            group: group_name(&m.group),
                            expires_at: m.expires_at,
                            source: Some(m.source.clone()),
                        })
                        .collect(),
                    roles: g.roles.clone(),
                    source: g.source.clone(),
                    external_id: g.external_id.clone(),
                    attributes: g.attributes.clone(),
                    description: g.description.clone(),
                })
            }
            EntityKind::Node => {
                let n = &self.nodes[&id].value;
                Spec::Node(NodeSpec {
                    id: Some(n.id),
                    name: n.name.clone(),
                    parent: n.parent.map_or_else(String::new, |p| self.node_path(p)),
                    description: n.description.clone(),
                })
            }
            EntityKind::Asset => {
                let a = &self.assets[&id].value;
                Spec::Asset(AssetSpec {
                    id: Some(a.id),
                    name: a.name.clone(),
                    address: a.address.clone(),
                    platform: a.platform.clone(),
                    protocols: a.protocols.clone(),
                    nodes: a.nodes.iter().map(|n| self.node_path(*n)).collect(),
                    accounts: a
                        .accounts
                        .iter()
                        .map(|account| AccountSpec {
                            id: Some(account.id),
                            username: account.username.clone(),
                            privileged: account.privileged,
                            secret_kind: account.secret_kind,
                        })
                        .collect(),
                    active: a.active,
                    description: a.description.clone(),
                })
            }
            EntityKind::Rule => {
                let r = &self.rules[&id].value;
                Spec::Rule(RuleSpec {
                    id: Some(r.id),
                    name: r.name.clone(),
                    effect: r.effect,
                    users: r.users.iter().map(username).collect(),
                    groups: r.groups.iter().map(group_name).collect(),
                    assets: r
                        .assets
                        .iter()
                        .map(|a| self.assets[a].value.name.clone())
                        .collect(),
                    nodes: r.nodes.iter().map(|n| self.node_path(*n)).collect(),
                    accounts: r.accounts.clone(),
                    protocols: r.protocols.clone(),
                    actions: r.actions,
                    starts_at: (!self.starts_at_creation.contains(&id)).then_some(r.starts_at),
                    expires_at: r.expires_at,
                    active: r.active,
                    description: r.description.clone(),
                })
            }
            EntityKind::Role => {
                let r = &self.roles[&id].value;
                Spec::Role(RoleSpec {
                    id: Some(r.id),
                    name: r.name.clone(),
                    permissions: r.permissions.clone(),
                    description: r.description.clone(),
                })
            }
            EntityKind::Token => {
                let t = &self.tokens[&id].value;
                Spec::Token(TokenSpec {
                    id: Some(t.id),
                    name: t.name.clone(),
                    user: t.user.as_ref().map(username),
                    roles: t.roles.clone(),
                    expires_at: t.expires_at,
                    description: t.description.clone(),
                })
            }
        }
    }

    /// The estate as the engine's plain lists, with the model's ids, and the instants
    /// `time_of` gives each write's number.
    pub fn estate(&self, time_of: impl Fn(u64) -> Time) -> Estate {
        fn stamp<T: Clone>(
            records: &BTreeMap<Id, Record<T>>,
            time_of: &impl Fn(u64) -> Time,
            set: impl Fn(&mut T, Time, Time),
        ) -> Vec<T> {
            records
                .values()
                .map(|r| {
                    let mut value = r.value.clone();
                    set(&mut value, time_of(r.created_in), time_of(r.updated_in));
                    value
                })
                .collect()
        }
        Estate {
            users: stamp(&self.users, &time_of, |u, c, m| {
                (u.created_at, u.updated_at) = (c, m);
            }),
            groups: stamp(&self.groups, &time_of, |g, c, m| {
                (g.created_at, g.updated_at) = (c, m);
            }),
            nodes: stamp(&self.nodes, &time_of, |n, c, m| {
                (n.created_at, n.updated_at) = (c, m);
            }),
            assets: stamp(&self.assets, &time_of, |a, c, m| {
                (a.created_at, a.updated_at) = (c, m);
            }),
            rules: stamp(&self.rules, &time_of, |r, c, m| {
                (r.created_at, r.updated_at) = (c, m);
                if self.starts_at_creation.contains(&r.id) {
                    r.starts_at = c;
                }
            }),
            roles: stamp(&self.roles, &time_of, |r, c, m| {
                (r.created_at, r.updated_at) = (c, m);
            }),
            tokens: stamp(&self.tokens, &time_of, |t, c, m| {
                (t.created_at, t.updated_at) = (c, m);
            }),
        }
    }
}
