//! From rows to engine operations: each row is matched with the entity it names (by
//! ID, else by name), its references are resolved against the snapshot and the file
//! itself, and it becomes a creation, an update or nothing at all.
//!
//! The checks here mirror the engine's, so that a refused file lists every problem
//! with its row and column; the engine still validates the whole write, and refuses it
//! whole if something slipped through.
//!
//! Operations come in an order the engine can apply one after the other: parent nodes
//! before their children, subgroups before the groups that hold them.

use std::collections::{HashMap, HashSet};
use std::fmt;

use portcullis_engine::{
    AccountSpec, EntityKind, GroupSpec, Id, MemberSpec, Mfa, NodeSpec, Op, ROOT_NODE_ID,
    RoleAssignment, RoleSpec, RuleSpec, Snapshot, Source, Spec, SubgroupSpec, Time, UserSpec,
    ValidationError, account_username,
};

use crate::cell::{Membership, Reference};
use crate::columns::{Col, header_of};
use crate::error::{Problem, Problems};
use crate::kind::{Kind, MAX_PROBLEMS};
use crate::parse::{
    AssetRecord, GroupRecord, NodeRecord, Record, RoleRecord, Row, RuleRecord, UserRecord, fold,
};

/// What an import would do to one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Create,
    Update,
    Unchanged,
}

/// One row's effect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub line: usize,
    /// The entity's name after the import (a username, a node's path).
    pub name: String,
    pub kind: ChangeKind,
    /// For an update, the headers of the columns whose values change.
    pub columns: Vec<&'static str>,
}

/// A change of one row that lowers someone's protection: it switches off or weakens
/// a user's MFA, makes an inactive or expired user able to sign in again, or gives a
/// user system roles they did not hold. An import makes such changes only when it is
/// told to ([`ImportOptions::allow_security_changes`](crate::ImportOptions)); a dry
/// run lists them apart from the other changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecurityChange {
    pub line: usize,
    /// The user's username after the import.
    pub name: String,
    /// The header of the column that makes the change.
    pub column: &'static str,
    /// What it does, in words: ``MFA `enabled` → `disabled` ``.
    pub change: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// What importing a file would do: the engine operations, in an order the engine
/// can apply, and a summary per row.
#[derive(Debug)]
pub struct ImportPlan {
    kind: Kind,
    revision: u64,
    changes: Vec<Change>,
    security_changes: Vec<SecurityChange>,
    ops: Vec<Op>,
}

impl ImportPlan {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The revision of the snapshot the plan was made against.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// One entry per row, in row order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The changes that lower someone's protection, in row order (each also in
    /// [`changes`](ImportPlan::changes)).
    pub fn security_changes(&self) -> &[SecurityChange] {
        &self.security_changes
    }

    pub fn counts(&self) -> PlanCounts {
        let mut counts = PlanCounts::default();
        for change in &self.changes {
            match change.kind {
                ChangeKind::Create => counts.created += 1,
                ChangeKind::Update => counts.updated += 1,
                ChangeKind::Unchanged => counts.unchanged += 1,
            }
        }
        counts
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, for one [`Engine::write`](portcullis_engine::Engine::write).
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// The summary `--dry-run` prints: one line per creation and update, then the counts.
impl fmt::Display for ImportPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = self.kind.entity_kind().noun();
        for change in &self.changes {
            match change.kind {
                ChangeKind::Create => {
                    writeln!(f, "create {noun} `{}` (row {})", change.name, change.line)?;
                }
                ChangeKind::Update => writeln!(
                    f,
                    "update {noun} `{}` (row {}): {}",
                    change.name,
                    change.line,
                    change.columns.join(", ")
                )?,
                ChangeKind::Unchanged => {}
            }
        }
        for change in &self.security_changes {
            writeln!(
                f,
                "lowers protection: user `{}` (row {}): {}",
                change.name, change.line, change.change
            )?;
        }
        let counts = self.counts();
        write!(
            f,
            "{} to create, {} to update, {} unchanged",
            counts.created, counts.updated, counts.unchanged
        )
    }
}

/// Plans the import of `rows` (all of `kind`) into the estate `snapshot` holds. With
/// `update`, rows naming existing entities update them; without it, such a row is a
/// problem unless it changes nothing. The plan lists the changes that lower a
/// user's protection ([`ImportPlan::security_changes`]); its operations refuse, when
/// written, any update that lowers the protection of the user as the write finds
/// them ([`import`](crate::import) with `allow_security_changes` makes them).
pub fn plan(
    snapshot: &Snapshot,
    kind: Kind,
    rows: Vec<Row>,
    update: bool,
) -> Result<ImportPlan, Vec<Problem>> {
    plan_with(
        snapshot,
        kind,
        rows,
        update,
        false,
        Problems::new(MAX_PROBLEMS),
        &HashSet::new(),
        &mut |_, _| {},
    )
}

/// [`plan`], adding to the problems parsing found. `broken` names the rows that did
/// not parse: references to them are not reported again as unknown.
#[expect(
    clippy::too_many_arguments,
    reason = "the import's options, its parse results and its progress"
)]
pub(crate) fn plan_with(
    snapshot: &Snapshot,
    kind: Kind,
    rows: Vec<Row>,
    update: bool,
    allow_security_changes: bool,
    problems: Problems,
    broken: &HashSet<String>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportPlan, Vec<Problem>> {
    let mut planner = Planner {
        snapshot,
        kind,
        update,
        now: Time::now(),
        allow_security_changes,
        problems,
        broken,
        changes: Vec::with_capacity(rows.len()),
        security_changes: Vec::new(),
        ops: Vec::with_capacity(rows.len()),
    };
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        if row.kind() == kind {
            records.push((row.line(), row.record));
        } else {
            planner.problems.push(Problem::row(
                row.line(),
                format!("a {} row in a {kind} import", row.kind()),
            ));
        }
    }
    let directory = Directory::new(snapshot, kind);
    match kind {
        Kind::Roles => planner.roles_sheet(&directory, records, progress),
        Kind::Users => planner.users(&directory, records, progress),
        Kind::Groups => planner.groups(&directory, records, progress),
        Kind::Nodes => planner.nodes(&directory, records, progress),
        Kind::Assets => planner.assets(&directory, records, progress),
        Kind::Rules => planner.rules(&directory, records, progress),
    }
    if !planner.problems.is_empty() {
        return Err(planner.problems.into_vec());
    }
    planner.changes.sort_by_key(|change| change.line);
    planner.security_changes.sort_by_key(|change| change.line);
    Ok(ImportPlan {
        kind,
        revision: snapshot.revision(),
        changes: planner.changes,
        security_changes: planner.security_changes,
        ops: planner.ops,
    })
}

/// Who holds a name: an entity with an id (in the store, or a row that has one), or
/// a row of the file creating an entity without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id(Id),
    Row(usize),
}

/// The entities of one kind by name and by id.
#[derive(Clone, Default)]
struct Names {
    by_name: HashMap<String, Key>,
    by_id: HashMap<Id, String>,
}

impl Names {
    fn new(entries: impl Iterator<Item = (Id, String)>) -> Names {
        let mut names = Names::default();
        for (id, name) in entries {
            names.insert(Key::Id(id), name);
        }
        names
    }

    fn key_of(&self, name: &str) -> Option<Key> {
        self.by_name.get(&fold(name)).copied()
    }

    fn id_of(&self, name: &str) -> Option<Id> {
        match self.key_of(name) {
            Some(Key::Id(id)) => Some(id),
            _ => None,
        }
    }

    fn name_of(&self, id: Id) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// Gives `key` the name `name`, dropping its previous name.
    fn insert(&mut self, key: Key, name: String) {
        let folded = fold(&name);
        if let Key::Id(id) = key {
            if let Some(old) = self.by_id.insert(id, name) {
                let old = fold(&old);
                if old != folded && self.by_name.get(&old) == Some(&key) {
                    self.by_name.remove(&old);
                }
            }
        }
        self.by_name.insert(folded, key);
    }

    /// The entity a reference names: by id when the id is known, else by name (which
    /// may itself be an id, as everywhere in the engine).
    fn resolve(&self, reference: &Reference) -> Option<(Id, &str)> {
        let by_id = |id: Id| self.name_of(id).map(|name| (id, name));
        reference
            .id
            .and_then(by_id)
            .or_else(|| Id::parse(&reference.name).and_then(by_id))
            .or_else(|| by_id(self.id_of(&reference.name)?))
    }
}

/// What the snapshot holds that a plan of one kind needs, by name and id.
struct Directory {
    users: Names,
    /// Users' emails, folded.
    emails: HashMap<String, Key>,
    groups: Names,
    /// Existing subgroup edges.
    subgroups: HashMap<Id, Vec<Id>>,
    /// Nodes by path.
    nodes: Names,
    /// Each node's name and parent.
    tree: HashMap<Id, (String, Option<Id>)>,
    assets: Names,
    rules: Names,
    roles: Names,
    /// The built-in roles' ids (only for a roles sheet).
    builtin_roles: HashSet<Id>,
    /// Who holds each role (folded name), for the first holder found: `user `alice``
    /// (only for a roles sheet).
    role_holders: HashMap<String, String>,
    /// Every id in the store, with its kind.
    ids: HashMap<Id, EntityKind>,
}

impl Directory {
    fn new(snapshot: &Snapshot, kind: Kind) -> Directory {
        let estate = snapshot.estate();
        let mut ids = HashMap::new();
        let mut directory = Directory {
            users: Names::default(),
            emails: HashMap::new(),
            groups: Names::default(),
            subgroups: HashMap::new(),
            nodes: Names::default(),
            tree: HashMap::new(),
            assets: Names::default(),
            rules: Names::default(),
            roles: Names::new(estate.roles.iter().map(|r| (r.id, r.name.clone()))),
            builtin_roles: HashSet::new(),
            role_holders: HashMap::new(),
            ids: HashMap::new(),
        };
        for user in &estate.users {
            ids.insert(user.id, EntityKind::User);
        }
        for group in &estate.groups {
            ids.insert(group.id, EntityKind::Group);
        }
        for node in &estate.nodes {
            ids.insert(node.id, EntityKind::Node);
        }
        for asset in &estate.assets {
            ids.insert(asset.id, EntityKind::Asset);
        }
        for rule in &estate.rules {
            ids.insert(rule.id, EntityKind::Rule);
        }
        for role in &estate.roles {
            ids.insert(role.id, EntityKind::Role);
        }
        for token in &estate.tokens {
            ids.insert(token.id, EntityKind::Token);
        }
        directory.ids = ids;
        if kind == Kind::Roles {
            directory.builtin_roles = estate
                .roles
                .iter()
                .filter(|r| r.builtin)
                .map(|r| r.id)
                .collect();
            let mut hold = |role: &str, holder: &dyn Fn() -> String| {
                directory
                    .role_holders
                    .entry(fold(role))
                    .or_insert_with(holder);
            };
            for user in &estate.users {
                for role in &user.system_roles {
                    hold(role, &|| format!("user `{}`", user.username));
                }
            }
            for group in &estate.groups {
                for role in group.roles.iter().flat_map(|a| &a.roles) {
                    hold(role, &|| format!("group `{}`", group.name));
                }
            }
            for token in &estate.tokens {
                for role in &token.roles {
                    hold(role, &|| format!("token `{}`", token.name));
                }
            }
        }
        let needs = |kinds: &[Kind]| kinds.contains(&kind);
        if needs(&[Kind::Users, Kind::Groups, Kind::Rules]) {
            directory.users = Names::new(estate.users.iter().map(|u| (u.id, u.username.clone())));
        }
        if kind == Kind::Users {
            directory.emails = estate
                .users
                .iter()
                .filter_map(|u| Some((fold(u.email.as_deref()?), Key::Id(u.id))))
                .collect();
        }
        if needs(&[Kind::Groups, Kind::Rules]) {
            directory.groups = Names::new(estate.groups.iter().map(|g| (g.id, g.name.clone())));
            directory.subgroups = estate
                .groups
                .iter()
                .map(|g| (g.id, g.subgroups.iter().map(|s| s.group).collect()))
                .collect();
        }
        if needs(&[Kind::Nodes, Kind::Assets, Kind::Rules]) {
            directory.tree = estate
                .nodes
                .iter()
                .map(|n| (n.id, (n.name.clone(), n.parent)))
                .collect();
            let paths: Vec<(Id, String)> = estate
                .nodes
                .iter()
                .map(|n| (n.id, path_in(&directory.tree, n.id)))
                .collect();
            directory.nodes = Names::new(paths.into_iter());
        }
        if needs(&[Kind::Assets, Kind::Rules]) {
            directory.assets = Names::new(estate.assets.iter().map(|a| (a.id, a.name.clone())));
        }
        if kind == Kind::Rules {
            directory.rules = Names::new(estate.rules.iter().map(|r| (r.id, r.name.clone())));
        }
        directory
    }

    fn existing(&self, kind: Kind) -> &Names {
        match kind {
            Kind::Roles => &self.roles,
            Kind::Users => &self.users,
            Kind::Groups => &self.groups,
            Kind::Nodes => &self.nodes,
            Kind::Assets => &self.assets,
            Kind::Rules => &self.rules,
        }
    }
}

/// `/Default/Prod`: a node's path in a tree of (name, parent).
fn path_in(tree: &HashMap<Id, (String, Option<Id>)>, id: Id) -> String {
    let mut names = Vec::new();
    let mut current = Some(id);
    while let Some((name, parent)) = current.and_then(|id| tree.get(&id)) {
        names.push(name.as_str());
        current = *parent;
        if names.len() > tree.len() {
            break;
        }
    }
    names.reverse();
    let mut path = String::new();
    for name in names {
        path.push('/');
        path.push_str(name);
    }
    path
}

/// Which entity a row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Existing(Id),
    /// A new entity, with the id the row asks for.
    New(Option<Id>),
}

struct Planner<'a> {
    snapshot: &'a Snapshot,
    kind: Kind,
    update: bool,
    /// The instant an expiry is judged at (a user whose expiry has passed is expired).
    now: Time,
    /// Whether the operations may lower a user's protection when they are written
    /// (each update judges the user as the write finds them).
    allow_security_changes: bool,
    problems: Problems,
    broken: &'a HashSet<String>,
    changes: Vec<Change>,
    security_changes: Vec<SecurityChange>,
    ops: Vec<Op>,
}

/// Appends `header` to `columns` when `old != new`.
fn differs<T: PartialEq>(columns: &mut Vec<&'static str>, header: &'static str, old: &T, new: &T) {
    if old != new && !columns.contains(&header) {
        columns.push(header);
    }
}

impl Planner<'_> {
    fn header(&self, col: Col) -> &'static str {
        header_of(self.kind, col)
    }

    fn problem(&mut self, line: usize, col: Col, message: impl Into<String>) {
        let header = self.header(col);
        self.problems.push(Problem::cell(line, header, message));
    }

    fn key_col(&self) -> Col {
        match self.kind {
            Kind::Users => Col::Username,
            Kind::Nodes => Col::Path,
            Kind::Roles | Kind::Groups | Kind::Assets | Kind::Rules => Col::Name,
        }
    }

    /// The entity a row names: the one with the row's ID, else the one with its name,
    /// else a new one (with the row's ID, if it has one).
    fn target(
        &mut self,
        directory: &Directory,
        line: usize,
        id: Option<Id>,
        name: &str,
    ) -> Option<Target> {
        let existing = directory.existing(self.kind);
        if let Some(id) = id {
            if existing.name_of(id).is_some() {
                return Some(Target::Existing(id));
            }
            if let Some(other) = directory.ids.get(&id) {
                self.problem(line, Col::Id, format!("id `{id}` belongs to a {other}"));
                return None;
            }
        }
        match existing.id_of(name) {
            Some(found) => Some(Target::Existing(found)),
            None => Some(Target::New(id)),
        }
    }

    /// The spec an existing entity has now.
    fn current(&self, id: Id) -> Option<Spec> {
        self.snapshot
            .spec(self.kind.entity_kind(), &id.to_string())
            .ok()
    }

    /// Records a row's outcome: nothing (unchanged), a creation or an update; refuses
    /// an update without `update`.
    #[expect(clippy::too_many_arguments, reason = "one row's whole outcome")]
    fn settle(
        &mut self,
        line: usize,
        name: String,
        target: Target,
        old: Option<Spec>,
        new: Spec,
        columns: Vec<&'static str>,
        edit: impl FnOnce(&mut Spec) -> Result<(), ValidationError> + Send + 'static,
    ) {
        match (target, old) {
            (Target::Existing(id), Some(old)) => {
                self.settle_existing(line, name, id, &old, &new, columns, edit);
            }
            _ => self.settle_new(line, name, new),
        }
    }

    fn settle_new(&mut self, line: usize, name: String, new: Spec) {
        self.ops.push(Op::Create(new));
        self.changes.push(Change {
            line,
            name,
            kind: ChangeKind::Create,
            columns: Vec::new(),
        });
    }

    /// An existing entity: unchanged, or updated by `edit` (applied by the writer to
    /// the entity as it is then, so a concurrent change to a column the file does
    /// not have survives).
    #[expect(clippy::too_many_arguments, reason = "one row's whole outcome")]
    fn settle_existing(
        &mut self,
        line: usize,
        name: String,
        id: Id,
        old: &Spec,
        new: &Spec,
        columns: Vec<&'static str>,
        edit: impl FnOnce(&mut Spec) -> Result<(), ValidationError> + Send + 'static,
    ) {
        if old == new {
            self.changes.push(Change {
                line,
                name,
                kind: ChangeKind::Unchanged,
                columns: Vec::new(),
            });
            return;
        }
        if !self.update {
            let noun = self.kind.entity_kind().noun();
            self.problem(
                line,
                self.key_col(),
                format!(
                    "{noun} `{name}` already exists with other values ({}); import with update to change it",
                    columns.join(", ")
                ),
            );
            return;
        }
        let kind = self.kind.entity_kind();
        self.ops.push(Op::Modify {
            kind,
            target: id.to_string(),
            edit: Box::new(move |spec| {
                if spec.kind() != kind {
                    return Err(ValidationError::Invalid {
                        field: "kind",
                        message: "the import planned another kind".to_owned(),
                    });
                }
                edit(spec)
            }),
        });
        self.changes.push(Change {
            line,
            name,
            kind: ChangeKind::Update,
            columns,
        });
    }

    /// Refuses a second row for the same entity.
    fn once(
        &mut self,
        seen: &mut HashMap<String, usize>,
        line: usize,
        key: String,
        shown: &str,
    ) -> bool {
        if let Some(first) = seen.get(&key) {
            self.problem(
                line,
                self.key_col(),
                format!("`{shown}` is already on row {first}"),
            );
            return false;
        }
        seen.insert(key, line);
        true
    }

    /// Records that row `line` gives `target` the name `name`, refusing a second row for
    /// one entity and a name that another row or another entity already holds.
    /// `names` starts as the store's and follows the rows, as the engine will.
    fn claim(
        &mut self,
        names: &mut Names,
        rows: &mut HashMap<Id, usize>,
        line: usize,
        target: Target,
        name: &str,
    ) -> bool {
        let col = self.key_col();
        let own = match target {
            Target::Existing(id) => {
                if let Some(first) = rows.insert(id, line) {
                    rows.insert(id, first);
                    self.problem(
                        line,
                        col,
                        format!(
                            "this {} is already on row {first}",
                            self.kind.entity_kind().noun()
                        ),
                    );
                    return false;
                }
                Some(Key::Id(id))
            }
            Target::New(_) => None,
        };
        let folded = fold(name);
        match names.by_name.get(&folded) {
            Some(Key::Row(first)) => {
                let first = *first;
                self.problem(line, col, format!("`{name}` is already on row {first}"));
                false
            }
            Some(holder) if Some(*holder) != own => {
                let noun = self.kind.entity_kind().noun();
                self.problem(line, col, format!("{noun} `{name}` already exists"));
                false
            }
            Some(_) => true,
            None => {
                match own {
                    Some(key) => names.insert(key, name.to_owned()),
                    None => {
                        names.by_name.insert(folded, Key::Row(line));
                    }
                }
                true
            }
        }
    }

    /// A role's name as the store spells it, remembered across rows.
    fn role(
        &mut self,
        line: usize,
        col: Col,
        roles: &Names,
        cache: &mut HashMap<String, Option<String>>,
        name: &str,
    ) -> Option<String> {
        let found = match cache.get(name) {
            Some(found) => found.clone(),
            None => {
                let found = roles
                    .resolve(&Reference::parse(name))
                    .map(|(_, canonical)| canonical.to_owned());
                cache.insert(name.to_owned(), found.clone());
                found
            }
        };
        if found.is_none() {
            self.problem(line, col, format!("unknown role `{name}`"));
        }
        found
    }

    /// Resolves references, one problem per unknown one. `None` if any is unknown.
    fn resolve_all(
        &mut self,
        line: usize,
        col: Col,
        names: &Names,
        noun: &str,
        references: &[Reference],
    ) -> Option<Vec<(Id, String)>> {
        let mut resolved = Vec::with_capacity(references.len());
        let mut ok = true;
        for reference in references {
            match names.resolve(reference) {
                Some((id, name)) => {
                    if resolved.iter().any(|(other, _)| *other == id) {
                        self.problem(
                            line,
                            col,
                            format!("`{}` is listed twice", reference.display()),
                        );
                        ok = false;
                    } else {
                        resolved.push((id, name.to_owned()));
                    }
                }
                None => {
                    self.problem(
                        line,
                        col,
                        format!("unknown {noun} `{}`", reference.display()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(resolved)
    }

    fn resolve_names(
        &mut self,
        line: usize,
        col: Col,
        names: &Names,
        noun: &str,
        references: &Option<Vec<Reference>>,
    ) -> Option<Option<Vec<String>>> {
        match references {
            None => Some(None),
            Some(references) => self
                .resolve_all(line, col, names, noun, references)
                .map(|list| Some(list.into_iter().map(|(_, name)| name).collect())),
        }
    }

    /// Role names as the store spells them, without repeats.
    fn roles(
        &mut self,
        line: usize,
        col: Col,
        roles: &Names,
        cache: &mut HashMap<String, Option<String>>,
        names: &[String],
    ) -> Option<Vec<String>> {
        let mut list: Vec<String> = Vec::with_capacity(names.len());
        let mut ok = true;
        for name in names {
            match self.role(line, col, roles, cache, name) {
                Some(canonical) => {
                    if !list.contains(&canonical) {
                        list.push(canonical);
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(list)
    }

    /// A roles sheet. A built-in role (in every store, with its own id in each) may
    /// appear on a row that changes nothing; a row that would change one is refused. A
    /// role that users, groups or tokens hold cannot be renamed (they name it).
    fn roles_sheet(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        let mut rows = HashMap::new();
        let mut names = directory.roles.clone();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::Role(record) = record else {
                continue;
            };
            let Some(target) = self.target(directory, line, record.id, &record.name) else {
                continue;
            };
            if !self.claim(&mut names, &mut rows, line, target, &record.name) {
                continue;
            }
            let old = match target {
                Target::Existing(id) => match self.current(id) {
                    Some(Spec::Role(old)) => Some((id, old)),
                    _ => continue,
                },
                Target::New(_) => None,
            };
            let mut new = match &old {
                Some((_, old)) => old.clone(),
                None => RoleSpec {
                    id: match target {
                        Target::New(requested) => requested,
                        Target::Existing(_) => None,
                    },
                    name: String::new(),
                    permissions: Vec::new(),
                    description: String::new(),
                },
            };
            apply_role(&record, &mut new);
            let builtin = old
                .as_ref()
                .is_some_and(|(id, _)| directory.builtin_roles.contains(id));
            if let Some((_, old)) = old.as_ref().filter(|_| builtin) {
                // A row names a built-in role in any case (as users' and groups' role
                // cells do); it cannot rename it, not even to another case.
                if fold(&old.name) == fold(&new.name) {
                    new.name.clone_from(&old.name);
                }
            }
            let name = new.name.clone();
            let Some((id, old)) = old else {
                self.settle_new(line, name, Spec::Role(new));
                continue;
            };
            let mut columns = Vec::new();
            let h = |col| header_of(Kind::Roles, col);
            differs(&mut columns, h(Col::Name), &old.name, &new.name);
            differs(
                &mut columns,
                h(Col::Permissions),
                &old.permissions,
                &new.permissions,
            );
            differs(
                &mut columns,
                h(Col::Description),
                &old.description,
                &new.description,
            );
            if builtin && !columns.is_empty() {
                self.problem(
                    line,
                    Col::Name,
                    format!(
                        "`{}` is a built-in role and cannot be changed ({})",
                        old.name,
                        columns.join(", ")
                    ),
                );
                continue;
            }
            if fold(&old.name) != fold(&new.name) {
                if let Some(holder) = directory.role_holders.get(&fold(&old.name)) {
                    self.problem(
                        line,
                        Col::Name,
                        format!(
                            "role `{}` cannot be renamed while {holder} holds it",
                            old.name
                        ),
                    );
                    continue;
                }
            }
            self.settle_existing(
                line,
                name,
                id,
                &Spec::Role(old),
                &Spec::Role(new),
                columns,
                move |spec| {
                    if let Spec::Role(spec) = spec {
                        apply_role(&record, spec);
                    }
                    Ok(())
                },
            );
        }
        progress(total, total);
    }

    fn users(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        let mut rows = HashMap::new();
        let mut names = directory.users.clone();
        let mut emails = directory.emails.clone();
        let mut role_cache = HashMap::new();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::User(mut record) = record else {
                continue;
            };
            let Some(target) = self.target(directory, line, record.id, &record.username) else {
                continue;
            };
            if !self.claim(&mut names, &mut rows, line, target, &record.username) {
                continue;
            }
            if let Some(roles) = &record.system_roles {
                match self.roles(
                    line,
                    Col::SystemRoles,
                    &directory.roles,
                    &mut role_cache,
                    roles,
                ) {
                    Some(roles) => record.system_roles = Some(roles),
                    None => continue,
                }
            }
            let (own, old) = match target {
                Target::Existing(id) => match self.current(id) {
                    Some(Spec::User(old)) => (Some(id), Some(old)),
                    _ => continue,
                },
                Target::New(_) => (None, None),
            };
            // A new user takes the row as it is; an existing one keeps the row for the
            // writer to apply.
            let (new, record) = match &old {
                Some(old) => {
                    let mut new = old.clone();
                    apply_user(record.clone(), &mut new);
                    (new, Some(record))
                }
                None => {
                    let mut new = UserSpec::new(String::new());
                    new.source = Source::Import;
                    new.id = match target {
                        Target::New(requested) => requested,
                        Target::Existing(_) => None,
                    };
                    apply_user(record, &mut new);
                    (new, None)
                }
            };
            // Emails are unique too, as the rows leave them.
            let old_email = old.as_ref().and_then(|old| old.email.as_deref()).map(fold);
            let new_email = new.email.as_deref().map(fold);
            if old_email != new_email {
                let holder = own.map_or(Key::Row(line), Key::Id);
                if let Some(email) = &new_email {
                    if emails.get(email).is_some_and(|taken| *taken != holder) {
                        self.problem(
                            line,
                            Col::Email,
                            format!(
                                "email `{}` is already used by another user",
                                new.email.as_deref().unwrap_or_default()
                            ),
                        );
                        continue;
                    }
                }
                if let Some(email) = old_email {
                    emails.remove(&email);
                }
                if let Some(email) = new_email {
                    emails.insert(email, holder);
                }
            }
            let name = new.username.clone();
            match (old, own, record) {
                (Some(old), Some(id), Some(record)) => {
                    let mut columns = Vec::new();
                    let h = |col| header_of(Kind::Users, col);
                    differs(&mut columns, h(Col::Username), &old.username, &new.username);
                    differs(&mut columns, h(Col::FullName), &old.name, &new.name);
                    differs(&mut columns, h(Col::Email), &old.email, &new.email);
                    differs(&mut columns, h(Col::Phone), &old.phone, &new.phone);
                    differs(&mut columns, h(Col::Active), &old.active, &new.active);
                    differs(
                        &mut columns,
                        h(Col::ExpiresAt),
                        &old.expires_at,
                        &new.expires_at,
                    );
                    differs(&mut columns, h(Col::Source), &old.source, &new.source);
                    differs(
                        &mut columns,
                        h(Col::ExternalId),
                        &old.external_id,
                        &new.external_id,
                    );
                    differs(
                        &mut columns,
                        h(Col::SystemRoles),
                        &old.system_roles,
                        &new.system_roles,
                    );
                    differs(&mut columns, h(Col::Mfa), &old.mfa, &new.mfa);
                    differs(
                        &mut columns,
                        h(Col::MustChangePassword),
                        &old.must_change_password,
                        &new.must_change_password,
                    );
                    differs(
                        &mut columns,
                        h(Col::Description),
                        &old.description,
                        &new.description,
                    );
                    let allow_security_changes = self.allow_security_changes;
                    let now = self.now;
                    if self.update {
                        for (col, _, change) in lowered_protection(&old, &new, self.now) {
                            self.security_changes.push(SecurityChange {
                                line,
                                name: name.clone(),
                                column: h(col),
                                change,
                            });
                        }
                    }
                    self.settle_existing(
                        line,
                        name,
                        id,
                        &Spec::User(old),
                        &Spec::User(new),
                        columns,
                        // Judged again on the user as the write finds them: a change
                        // made since the plan (MFA enrolled, say) is not lowered
                        // without leave either.
                        move |spec| {
                            if let Spec::User(spec) = spec {
                                let before = spec.clone();
                                apply_user(record, spec);
                                if !allow_security_changes {
                                    if let Some((_, field, change)) =
                                        lowered_protection(&before, spec, now).into_iter().next()
                                    {
                                        return Err(ValidationError::Invalid {
                                            field,
                                            message: format!(
                                                "the import would lower the protection of user `{}` ({change}), which changed since the file was checked; import again",
                                                spec.username
                                            ),
                                        });
                                    }
                                }
                            }
                            Ok(())
                        },
                    );
                }
                _ => self.settle_new(line, name, Spec::User(new)),
            }
        }
        progress(total, total);
    }

    fn groups(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        // 1. Which group each row is, and the names after the import.
        let mut seen = HashMap::new();
        let mut rows: Vec<(usize, GroupRecord, Target, Id)> = Vec::with_capacity(records.len());
        for (line, record) in records {
            let Record::Group(record) = record else {
                continue;
            };
            let Some(target) = self.target(directory, line, record.id, &record.name) else {
                continue;
            };
            let (key, id) = match target {
                Target::Existing(id) => (id.to_string(), id),
                Target::New(id) => (fold(&record.name), id.unwrap_or_else(Id::random)),
            };
            if self.once(&mut seen, line, key, &record.name) {
                rows.push((line, record, target, id));
            }
        }
        let in_rows: HashSet<Id> = rows.iter().map(|(_, _, _, id)| *id).collect();
        let mut names = directory.groups.clone();
        for (_, record, _, id) in &rows {
            names.insert(Key::Id(*id), record.name.clone());
        }
        for (line, record, _, id) in &rows {
            let held_elsewhere = directory
                .groups
                .id_of(&record.name)
                .is_some_and(|holder| holder != *id && !in_rows.contains(&holder));
            if held_elsewhere || names.id_of(&record.name) != Some(*id) {
                self.problem(
                    *line,
                    Col::Name,
                    format!("group `{}` already exists", record.name),
                );
            }
        }
        // 2. References, resolved to the names the store will hold.
        let mut role_cache = HashMap::new();
        let mut edges: HashMap<Id, Vec<Id>> = directory.subgroups.clone();
        let mut resolved_rows = Vec::with_capacity(rows.len());
        for (line, mut record, target, id) in rows {
            let mut ok = true;
            if let Some(members) = &record.members {
                let references: Vec<Reference> =
                    members.iter().map(|m| m.reference.clone()).collect();
                match self.resolve_all(line, Col::Members, &directory.users, "user", &references) {
                    Some(resolved) => {
                        record.members = Some(canonical_memberships(members, resolved));
                    }
                    None => ok = false,
                }
            }
            if let Some(subgroups) = &record.subgroups {
                let references: Vec<Reference> =
                    subgroups.iter().map(|m| m.reference.clone()).collect();
                match self.resolve_all(line, Col::Subgroups, &names, "group", &references) {
                    Some(resolved) => {
                        if resolved.iter().any(|(child, _)| *child == id) {
                            self.problem(line, Col::Subgroups, "a group cannot contain itself");
                            ok = false;
                        }
                        edges.insert(id, resolved.iter().map(|(child, _)| *child).collect());
                        record.subgroups = Some(canonical_memberships(subgroups, resolved));
                    }
                    None => ok = false,
                }
            } else if let Target::New(_) = target {
                edges.insert(id, Vec::new());
            }
            if let Some(pairs) = &record.roles {
                let mut ok_roles = true;
                let mut canonical = Vec::with_capacity(pairs.len());
                for (scope, role) in pairs {
                    if scope.is_empty() || scope.chars().any(char::is_control) {
                        self.problem(line, Col::Roles, format!("`{scope}` is not a scope"));
                        ok_roles = false;
                        continue;
                    }
                    match self.roles(
                        line,
                        Col::Roles,
                        &directory.roles,
                        &mut role_cache,
                        std::slice::from_ref(role),
                    ) {
                        Some(mut found) => canonical.push((scope.clone(), found.remove(0))),
                        None => ok_roles = false,
                    }
                }
                ok &= ok_roles;
                record.roles = Some(canonical);
            }
            if ok {
                resolved_rows.push((line, record, target, id));
            }
        }
        // 3. No cycle in the nesting the import leaves.
        let in_file: HashMap<Id, usize> = resolved_rows
            .iter()
            .enumerate()
            .map(|(i, (_, _, _, id))| (*id, i))
            .collect();
        for (line, record, _, id) in &resolved_rows {
            if record.subgroups.is_some() {
                if let Some(cycle) = find_cycle(&edges, *id) {
                    let path: Vec<String> = cycle
                        .iter()
                        .map(|g| names.name_of(*g).unwrap_or("?").to_owned())
                        .collect();
                    self.problem(
                        *line,
                        Col::Subgroups,
                        format!("the groups would nest in a cycle: {}", path.join(" → ")),
                    );
                }
            }
        }
        // 4. Subgroups first. (With a cycle the order is merely some order: the plan
        // is refused anyway, but its other rows still get checked.)
        let mut order = Vec::with_capacity(resolved_rows.len());
        let mut visited = HashSet::new();
        for (_, _, _, id) in &resolved_rows {
            post_order(&edges, *id, &in_file, &mut visited, &mut order);
        }
        let mut slots: Vec<Option<(usize, GroupRecord, Target, Id)>> =
            resolved_rows.into_iter().map(Some).collect();
        for (done, index) in order.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Some((line, record, target, _)) = slots[index].take() else {
                continue;
            };
            let old = match target {
                Target::Existing(id) => self.current(id),
                Target::New(_) => None,
            };
            let mut new = match &old {
                Some(Spec::Group(spec)) => spec.clone(),
                _ => {
                    let mut spec = GroupSpec::new(record.name.clone());
                    spec.source = Source::Import;
                    spec.id = match target {
                        Target::New(requested) => requested,
                        Target::Existing(_) => None,
                    };
                    spec
                }
            };
            apply_group(&record, &mut new);
            let mut columns = Vec::new();
            if let Some(Spec::Group(old)) = &old {
                let h = |col| header_of(Kind::Groups, col);
                differs(&mut columns, h(Col::Name), &old.name, &new.name);
                differs(&mut columns, h(Col::Members), &old.members, &new.members);
                differs(
                    &mut columns,
                    h(Col::Subgroups),
                    &old.subgroups,
                    &new.subgroups,
                );
                differs(&mut columns, h(Col::Roles), &old.roles, &new.roles);
                differs(&mut columns, h(Col::Source), &old.source, &new.source);
                differs(
                    &mut columns,
                    h(Col::ExternalId),
                    &old.external_id,
                    &new.external_id,
                );
                differs(
                    &mut columns,
                    h(Col::Description),
                    &old.description,
                    &new.description,
                );
            }
            let name = new.name.clone();
            self.settle(
                line,
                name,
                target,
                old,
                Spec::Group(new),
                columns,
                move |spec| {
                    if let Spec::Group(spec) = spec {
                        apply_group(&record, spec);
                    }
                    Ok(())
                },
            );
        }
        progress(total, total);
    }

    fn nodes(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        let mut tree = Tree::new(&directory.tree);
        let mut records: Vec<(usize, NodeRecord)> = records
            .into_iter()
            .filter_map(|(line, record)| match record {
                Record::Node(record) => Some((line, record)),
                _ => None,
            })
            .collect();
        // Parents first: the engine applies the operations in this order.
        records.sort_by_key(|(line, record)| (record.segments().count(), *line));
        let mut seen = HashMap::new();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let segments: Vec<&str> = record.segments().collect();
            let root_name = tree.name(ROOT_NODE_ID).unwrap_or("Default").to_owned();
            if fold(segments[0]) != fold(&root_name) {
                self.problem(
                    line,
                    Col::Path,
                    format!(
                        "`{}` does not start at the root `/{root_name}`",
                        record.path
                    ),
                );
                continue;
            }
            if segments.len() == 1 {
                // The root itself: it exists in every store and cannot change.
                let old = self.current(ROOT_NODE_ID);
                let changed = match (&old, &record.description) {
                    (Some(Spec::Node(old)), Some(description)) => {
                        old.description != *description || old.name != segments[0]
                    }
                    (Some(Spec::Node(old)), None) => old.name != segments[0],
                    _ => false,
                };
                if changed {
                    self.problem(
                        line,
                        Col::Path,
                        format!("the root node `/{root_name}` cannot be changed"),
                    );
                } else if self.once(&mut seen, line, ROOT_NODE_ID.to_string(), &record.path) {
                    self.changes.push(Change {
                        line,
                        name: record.path.clone(),
                        kind: ChangeKind::Unchanged,
                        columns: Vec::new(),
                    });
                }
                continue;
            }
            let parent_path =
                &record.path[..record.path.len() - segments[segments.len() - 1].len() - 1];
            let Some(parent) = tree.find(&segments[..segments.len() - 1]) else {
                if self.broken.contains(&fold(parent_path)) {
                    continue;
                }
                self.problem(
                    line,
                    Col::Path,
                    format!("the parent node `{parent_path}` does not exist; add a row for it"),
                );
                continue;
            };
            let name = segments[segments.len() - 1].to_owned();
            let target = match record.id {
                Some(id) if directory.nodes.name_of(id).is_some() => Target::Existing(id),
                Some(id) if directory.ids.contains_key(&id) => {
                    let other = directory.ids[&id];
                    self.problem(line, Col::Id, format!("id `{id}` belongs to a {other}"));
                    continue;
                }
                requested => match tree.child(parent, &name) {
                    Some(found) if directory.nodes.name_of(found).is_some() => {
                        Target::Existing(found)
                    }
                    Some(_) => {
                        self.problem(
                            line,
                            Col::Path,
                            format!("`{}` is already on another row", record.path),
                        );
                        continue;
                    }
                    None => Target::New(requested),
                },
            };
            let own = match target {
                Target::Existing(id) => id,
                Target::New(requested) => requested.unwrap_or_else(Id::random),
            };
            if !self.once(&mut seen, line, own.to_string(), &record.path) {
                continue;
            }
            if own == ROOT_NODE_ID {
                self.problem(
                    line,
                    Col::Path,
                    format!("the root node `/{root_name}` cannot be moved"),
                );
                continue;
            }
            if tree.is_within(parent, own) {
                self.problem(
                    line,
                    Col::Path,
                    format!("`{}` would put the node inside itself", record.path),
                );
                continue;
            }
            if let Some(sibling) = tree.child(parent, &name) {
                if sibling != own {
                    self.problem(
                        line,
                        Col::Path,
                        format!("node `{}` already exists", record.path),
                    );
                    continue;
                }
            }
            let parent_canonical = tree.path(parent);
            let old = match target {
                Target::Existing(id) => self.current(id),
                Target::New(_) => None,
            };
            let mut new = match &old {
                Some(Spec::Node(spec)) => spec.clone(),
                _ => {
                    let mut spec = NodeSpec::new(name.clone(), parent_canonical.clone());
                    spec.id = match target {
                        Target::New(requested) => requested,
                        Target::Existing(_) => None,
                    };
                    spec
                }
            };
            let patch = NodePatch {
                name: name.clone(),
                parent: parent_canonical.clone(),
                description: record.description.clone(),
            };
            patch.apply(&mut new);
            let mut columns = Vec::new();
            if let Some(Spec::Node(old)) = &old {
                let h = |col| header_of(Kind::Nodes, col);
                differs(
                    &mut columns,
                    h(Col::Path),
                    &(&old.parent, &old.name),
                    &(&new.parent, &new.name),
                );
                differs(
                    &mut columns,
                    h(Col::Description),
                    &old.description,
                    &new.description,
                );
            }
            tree.set(own, name, parent);
            let shown = format!("{parent_canonical}/{}", new.name);
            self.settle(
                line,
                shown,
                target,
                old,
                Spec::Node(new),
                columns,
                move |spec| {
                    if let Spec::Node(spec) = spec {
                        patch.apply(spec);
                    }
                    Ok(())
                },
            );
        }
        progress(total, total);
    }

    fn assets(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        let mut rows = HashMap::new();
        let mut names = directory.assets.clone();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::Asset(mut record) = record else {
                continue;
            };
            let Some(target) = self.target(directory, line, record.id, &record.name) else {
                continue;
            };
            let own = match target {
                Target::Existing(id) => Some(id),
                Target::New(_) => None,
            };
            if !self.claim(&mut names, &mut rows, line, target, &record.name) {
                continue;
            }
            let mut ok = true;
            if let Some(protocols) = &record.protocols {
                for (i, protocol) in protocols.iter().enumerate() {
                    if protocols[..i].iter().any(|p| p.name() == protocol.name()) {
                        self.problem(
                            line,
                            Col::Protocols,
                            format!("`{}` is listed twice", protocol.name()),
                        );
                        ok = false;
                    }
                }
            }
            if let Some(accounts) = &record.accounts {
                for (i, account) in accounts.iter().enumerate() {
                    if account_username(&account.username).is_none() {
                        self.problem(
                            line,
                            Col::Accounts,
                            format!("`{}` is not a valid account username", account.username),
                        );
                        ok = false;
                    } else if accounts[..i].iter().any(|a| a.username == account.username) {
                        self.problem(
                            line,
                            Col::Accounts,
                            format!("`{}` is listed twice", account.username),
                        );
                        ok = false;
                    }
                }
            }
            let nodes =
                match self.resolve_names(line, Col::Nodes, &directory.nodes, "node", &record.nodes)
                {
                    Some(nodes) => nodes,
                    None => continue,
                };
            if !ok {
                continue;
            }
            record.nodes = nodes.map(|list| {
                list.into_iter()
                    .map(|name| Reference { name, id: None })
                    .collect()
            });
            let old = own.and_then(|id| self.current(id));
            let mut new = match &old {
                Some(Spec::Asset(spec)) => spec.clone(),
                _ => {
                    let mut spec = portcullis_engine::AssetSpec::new(record.name.clone());
                    spec.id = match target {
                        Target::New(requested) => requested,
                        Target::Existing(_) => None,
                    };
                    spec
                }
            };
            apply_asset(&record, &mut new);
            let mut columns = Vec::new();
            if let Some(Spec::Asset(old)) = &old {
                let h = |col| header_of(Kind::Assets, col);
                differs(&mut columns, h(Col::Name), &old.name, &new.name);
                differs(&mut columns, h(Col::Address), &old.address, &new.address);
                differs(&mut columns, h(Col::Platform), &old.platform, &new.platform);
                differs(
                    &mut columns,
                    h(Col::Protocols),
                    &old.protocols,
                    &new.protocols,
                );
                differs(&mut columns, h(Col::Nodes), &old.nodes, &new.nodes);
                differs(&mut columns, h(Col::Accounts), &old.accounts, &new.accounts);
                differs(&mut columns, h(Col::Active), &old.active, &new.active);
                differs(
                    &mut columns,
                    h(Col::Description),
                    &old.description,
                    &new.description,
                );
            }
            let name = new.name.clone();
            self.settle(
                line,
                name,
                target,
                old,
                Spec::Asset(new),
                columns,
                move |spec| {
                    if let Spec::Asset(spec) = spec {
                        apply_asset(&record, spec);
                    }
                    Ok(())
                },
            );
        }
        progress(total, total);
    }

    fn rules(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        let mut rows = HashMap::new();
        let mut names = directory.rules.clone();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::Rule(mut record) = record else {
                continue;
            };
            let Some(target) = self.target(directory, line, record.id, &record.name) else {
                continue;
            };
            let own = match target {
                Target::Existing(id) => Some(id),
                Target::New(_) => None,
            };
            if !self.claim(&mut names, &mut rows, line, target, &record.name) {
                continue;
            }
            let users =
                self.resolve_names(line, Col::Users, &directory.users, "user", &record.users);
            let groups = self.resolve_names(
                line,
                Col::Groups,
                &directory.groups,
                "group",
                &record.groups,
            );
            let assets = self.resolve_names(
                line,
                Col::Assets,
                &directory.assets,
                "asset",
                &record.assets,
            );
            let nodes =
                self.resolve_names(line, Col::Nodes, &directory.nodes, "node", &record.nodes);
            let (Some(users), Some(groups), Some(assets), Some(nodes)) =
                (users, groups, assets, nodes)
            else {
                continue;
            };
            let plain = |list: Option<Vec<String>>| {
                list.map(|list| {
                    list.into_iter()
                        .map(|name| Reference { name, id: None })
                        .collect()
                })
            };
            record.users = plain(users);
            record.groups = plain(groups);
            record.assets = plain(assets);
            record.nodes = plain(nodes);
            let old = own.and_then(|id| self.current(id));
            let mut new = match &old {
                Some(Spec::Rule(spec)) => spec.clone(),
                _ => {
                    let mut spec = RuleSpec::new(record.name.clone());
                    spec.id = match target {
                        Target::New(requested) => requested,
                        Target::Existing(_) => None,
                    };
                    spec
                }
            };
            apply_rule(&record, &mut new);
            // The engine's own check; a new rule without a start starts now.
            let starts_at = new.starts_at.unwrap_or_else(Time::now);
            if new.expires_at.is_some_and(|expires| expires <= starts_at) {
                let col = if record.expires_at.is_some() {
                    Col::ExpiresAt
                } else {
                    Col::StartsAt
                };
                self.problem(
                    line,
                    col,
                    format!(
                        "the rule would expire ({}) before it starts ({starts_at})",
                        new.expires_at.unwrap_or(Time::MAX)
                    ),
                );
                continue;
            }
            let mut columns = Vec::new();
            if let Some(Spec::Rule(old)) = &old {
                let h = |col| header_of(Kind::Rules, col);
                differs(&mut columns, h(Col::Name), &old.name, &new.name);
                differs(&mut columns, h(Col::Effect), &old.effect, &new.effect);
                differs(&mut columns, h(Col::Users), &old.users, &new.users);
                differs(&mut columns, h(Col::Groups), &old.groups, &new.groups);
                differs(&mut columns, h(Col::Assets), &old.assets, &new.assets);
                differs(&mut columns, h(Col::Nodes), &old.nodes, &new.nodes);
                differs(
                    &mut columns,
                    h(Col::AccountSelectors),
                    &old.accounts,
                    &new.accounts,
                );
                differs(
                    &mut columns,
                    h(Col::ProtocolNames),
                    &old.protocols,
                    &new.protocols,
                );
                differs(&mut columns, h(Col::Actions), &old.actions, &new.actions);
                differs(
                    &mut columns,
                    h(Col::StartsAt),
                    &old.starts_at,
                    &new.starts_at,
                );
                differs(
                    &mut columns,
                    h(Col::ExpiresAt),
                    &old.expires_at,
                    &new.expires_at,
                );
                differs(&mut columns, h(Col::Active), &old.active, &new.active);
                differs(
                    &mut columns,
                    h(Col::Description),
                    &old.description,
                    &new.description,
                );
            }
            let name = new.name.clone();
            self.settle(
                line,
                name,
                target,
                old,
                Spec::Rule(new),
                columns,
                move |spec| {
                    if let Spec::Rule(spec) = spec {
                        apply_rule(&record, spec);
                    }
                    Ok(())
                },
            );
        }
        progress(total, total);
    }
}

/// Memberships with their references replaced by the names the store holds.
fn canonical_memberships(list: &[Membership], resolved: Vec<(Id, String)>) -> Vec<Membership> {
    list.iter()
        .zip(resolved)
        .map(|(membership, (_, name))| Membership {
            reference: Reference { name, id: None },
            expires_at: membership.expires_at,
        })
        .collect()
}

/// The cycle through `start` in `edges`, if there is one: `[start, …, start]`.
fn find_cycle(edges: &HashMap<Id, Vec<Id>>, start: Id) -> Option<Vec<Id>> {
    // Depth-first, keeping the path; each group is expanded once.
    let mut path = vec![start];
    let mut stack: Vec<(Id, usize)> = vec![(start, 0)];
    let mut done = HashSet::new();
    while let Some((group, next)) = stack.last_mut() {
        let children = edges.get(group).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(&child) = children.get(*next) {
            *next += 1;
            if child == start {
                path.push(start);
                return Some(path);
            }
            if done.insert(child) {
                stack.push((child, 0));
                path.push(child);
            }
        } else {
            stack.pop();
            path.pop();
        }
    }
    None
}

/// Appends, children first, the file rows (`in_file`: group id → row index) reachable
/// from `start`.
fn post_order(
    edges: &HashMap<Id, Vec<Id>>,
    start: Id,
    in_file: &HashMap<Id, usize>,
    visited: &mut HashSet<Id>,
    order: &mut Vec<usize>,
) {
    if !visited.insert(start) {
        return;
    }
    let mut stack: Vec<(Id, usize)> = vec![(start, 0)];
    while let Some((group, next)) = stack.last_mut() {
        let children = edges.get(group).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(&child) = children.get(*next) {
            *next += 1;
            if visited.insert(child) {
                stack.push((child, 0));
            }
        } else {
            let group = *group;
            stack.pop();
            if let Some(&index) = in_file.get(&group) {
                order.push(index);
            }
        }
    }
}

/// The node tree as the import changes it, row by row.
struct Tree {
    nodes: HashMap<Id, (String, Option<Id>)>,
    children: HashMap<(Id, String), Id>,
}

impl Tree {
    fn new(nodes: &HashMap<Id, (String, Option<Id>)>) -> Tree {
        let children = nodes
            .iter()
            .filter_map(|(id, (name, parent))| Some((((*parent)?, fold(name)), *id)))
            .collect();
        Tree {
            nodes: nodes.clone(),
            children,
        }
    }

    fn name(&self, id: Id) -> Option<&str> {
        self.nodes.get(&id).map(|(name, _)| name.as_str())
    }

    fn child(&self, parent: Id, name: &str) -> Option<Id> {
        self.children.get(&(parent, fold(name))).copied()
    }

    /// The node at `segments` (the root's name first).
    fn find(&self, segments: &[&str]) -> Option<Id> {
        let (first, rest) = segments.split_first()?;
        if fold(first) != fold(self.name(ROOT_NODE_ID)?) {
            return None;
        }
        rest.iter()
            .try_fold(ROOT_NODE_ID, |node, segment| self.child(node, segment))
    }

    fn path(&self, id: Id) -> String {
        path_in(&self.nodes, id)
    }

    /// Whether `node` is `ancestor` or lies below it.
    fn is_within(&self, node: Id, ancestor: Id) -> bool {
        let mut current = Some(node);
        let mut steps = 0;
        while let Some(id) = current {
            if id == ancestor {
                return true;
            }
            current = self.nodes.get(&id).and_then(|(_, parent)| *parent);
            steps += 1;
            if steps > self.nodes.len() {
                break;
            }
        }
        false
    }

    fn set(&mut self, id: Id, name: String, parent: Id) {
        if let Some((old_name, Some(old_parent))) = self.nodes.get(&id) {
            let key = (*old_parent, fold(old_name));
            if self.children.get(&key) == Some(&id) {
                self.children.remove(&key);
            }
        }
        self.children.insert((parent, fold(&name)), id);
        self.nodes.insert(id, (name, Some(parent)));
    }
}

/// What a node row sets.
struct NodePatch {
    name: String,
    parent: String,
    description: Option<String>,
}

impl NodePatch {
    fn apply(&self, spec: &mut NodeSpec) {
        spec.name.clone_from(&self.name);
        spec.parent.clone_from(&self.parent);
        if let Some(description) = &self.description {
            spec.description.clone_from(description);
        }
    }
}

/// What an update from `old` to `new` does that lowers the user's protection, by
/// column: a weaker MFA level, an inactive or expired user made able to sign in, a
/// system role the user did not hold.
/// Each comes with the engine's name of the field.
fn lowered_protection(
    old: &UserSpec,
    new: &UserSpec,
    now: Time,
) -> Vec<(Col, &'static str, String)> {
    let level = |mfa: Mfa| match mfa {
        Mfa::Disabled => 0,
        Mfa::Enabled => 1,
        Mfa::Forced => 2,
    };
    let name = |mfa: Mfa| match mfa {
        Mfa::Disabled => "disabled",
        Mfa::Enabled => "enabled",
        Mfa::Forced => "forced",
    };
    let mut lowered = Vec::new();
    if level(new.mfa) < level(old.mfa) {
        lowered.push((
            Col::Mfa,
            "mfa",
            format!("MFA `{}` → `{}`", name(old.mfa), name(new.mfa)),
        ));
    }
    if !old.active && new.active {
        lowered.push((
            Col::Active,
            "active",
            "activates an inactive user".to_owned(),
        ));
    }
    let expired = |expires_at: Option<Time>| expires_at.is_some_and(|at| at <= now);
    if expired(old.expires_at) && !expired(new.expires_at) {
        let until = new
            .expires_at
            .map_or_else(|| "never".to_owned(), |at| format!("`{at}`"));
        lowered.push((
            Col::ExpiresAt,
            "expires_at",
            format!(
                "revives an expired user (expired `{}`, now expires {until})",
                old.expires_at.map(|at| at.to_string()).unwrap_or_default()
            ),
        ));
    }
    let held: HashSet<String> = old.system_roles.iter().map(|role| fold(role)).collect();
    let gained: Vec<String> = new
        .system_roles
        .iter()
        .filter(|role| !held.contains(&fold(role)))
        .map(|role| format!("`{role}`"))
        .collect();
    if !gained.is_empty() {
        lowered.push((
            Col::SystemRoles,
            "system_roles",
            format!("adds system roles {}", gained.join(", ")),
        ));
    }
    lowered
}

fn apply_user(record: UserRecord, spec: &mut UserSpec) {
    spec.username = record.username;
    match record.name {
        Some(name) if !name.is_empty() => spec.name = name,
        Some(_) => spec.name.clone_from(&spec.username),
        None if spec.name.is_empty() => spec.name.clone_from(&spec.username),
        None => {}
    }
    if let Some(email) = record.email {
        spec.email = email;
    }
    if let Some(phone) = record.phone {
        spec.phone = phone;
    }
    if let Some(active) = record.active {
        spec.active = active;
    }
    if let Some(expires_at) = record.expires_at {
        spec.expires_at = expires_at;
    }
    if let Some(source) = record.source {
        spec.source = source;
    }
    if let Some(external_id) = record.external_id {
        spec.external_id = external_id;
    }
    if let Some(roles) = record.system_roles {
        spec.system_roles = roles;
    }
    if let Some(mfa) = record.mfa {
        spec.mfa = mfa;
    }
    if let Some(must_change_password) = record.must_change_password {
        spec.must_change_password = must_change_password;
    }
    if let Some(description) = record.description {
        spec.description = description;
    }
}

fn apply_group(record: &GroupRecord, spec: &mut GroupSpec) {
    spec.name.clone_from(&record.name);
    if let Some(source) = &record.source {
        spec.source = source.clone();
    }
    if let Some(members) = &record.members {
        // A membership keeps the source that wrote it; a new one takes the group's.
        let source_of = |user: &str| {
            spec.members.iter().find_map(|m| match m {
                MemberSpec::Detailed {
                    user: existing,
                    source: Some(source),
                    ..
                } if existing == user => Some(source.clone()),
                _ => None,
            })
        };
        let list: Vec<MemberSpec> = members
            .iter()
            .map(|m| MemberSpec::Detailed {
                user: m.reference.name.clone(),
                expires_at: m.expires_at,
                source: Some(source_of(&m.reference.name).unwrap_or_else(|| spec.source.clone())),
            })
            .collect();
        spec.members = list;
    }
    if let Some(subgroups) = &record.subgroups {
        let source_of = |group: &str| {
            spec.subgroups.iter().find_map(|m| match m {
                SubgroupSpec::Detailed {
                    group: existing,
                    source: Some(source),
                    ..
                } if existing == group => Some(source.clone()),
                _ => None,
            })
        };
        let list: Vec<SubgroupSpec> = subgroups
            .iter()
            .map(|m| SubgroupSpec::Detailed {
                group: m.reference.name.clone(),
                expires_at: m.expires_at,
                source: Some(source_of(&m.reference.name).unwrap_or_else(|| spec.source.clone())),
            })
            .collect();
        spec.subgroups = list;
    }
    if let Some(pairs) = &record.roles {
        let mut roles: Vec<RoleAssignment> = Vec::new();
        for (scope, role) in pairs {
            match roles.iter_mut().find(|a| a.scope == *scope) {
                Some(assignment) => {
                    if !assignment.roles.contains(role) {
                        assignment.roles.push(role.clone());
                    }
                }
                None => roles.push(RoleAssignment {
                    scope: scope.clone(),
                    roles: vec![role.clone()],
                }),
            }
        }
        spec.roles = roles;
    }
    if let Some(external_id) = &record.external_id {
        spec.external_id.clone_from(external_id);
    }
    if let Some(description) = &record.description {
        spec.description.clone_from(description);
    }
}

fn apply_role(record: &RoleRecord, spec: &mut RoleSpec) {
    spec.name.clone_from(&record.name);
    if let Some(permissions) = &record.permissions {
        spec.permissions.clone_from(permissions);
    }
    if let Some(description) = &record.description {
        spec.description.clone_from(description);
    }
}

fn apply_asset(record: &AssetRecord, spec: &mut portcullis_engine::AssetSpec) {
    spec.name.clone_from(&record.name);
    if let Some(address) = &record.address {
        spec.address.clone_from(address);
    }
    if let Some(platform) = &record.platform {
        spec.platform.clone_from(platform);
    }
    if let Some(protocols) = &record.protocols {
        spec.protocols.clone_from(protocols);
    }
    if let Some(nodes) = &record.nodes {
        spec.nodes = if nodes.is_empty() {
            vec!["/Default".to_owned()]
        } else {
            nodes.iter().map(|n| n.name.clone()).collect()
        };
    }
    if let Some(accounts) = &record.accounts {
        // An account keeps its id across updates (matched by username), as the
        // engine does, so an unchanged row compares equal.
        let list: Vec<AccountSpec> = accounts
            .iter()
            .map(|account| {
                let kept = spec
                    .accounts
                    .iter()
                    .find(|a| a.username == account.username)
                    .and_then(|a| a.id);
                AccountSpec {
                    id: account.id.or(kept),
                    ..account.clone()
                }
            })
            .collect();
        spec.accounts = list;
    }
    if let Some(active) = record.active {
        spec.active = active;
    }
    if let Some(description) = &record.description {
        spec.description.clone_from(description);
    }
}

fn apply_rule(record: &RuleRecord, spec: &mut RuleSpec) {
    let names = |list: &Vec<Reference>| list.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    spec.name.clone_from(&record.name);
    if let Some(effect) = record.effect {
        spec.effect = effect;
    }
    if let Some(users) = &record.users {
        spec.users = names(users);
    }
    if let Some(groups) = &record.groups {
        spec.groups = names(groups);
    }
    if let Some(assets) = &record.assets {
        spec.assets = names(assets);
    }
    if let Some(nodes) = &record.nodes {
        spec.nodes = names(nodes);
    }
    if let Some(accounts) = &record.accounts {
        // The engine keeps selectors sorted and without repeats.
        let mut accounts = accounts.clone();
        accounts.sort();
        accounts.dedup();
        spec.accounts = accounts;
    }
    if let Some(protocols) = &record.protocols {
        spec.protocols = protocols.clone();
    }
    if let Some(actions) = record.actions {
        spec.actions = actions;
    }
    if let Some(Some(starts_at)) = record.starts_at {
        spec.starts_at = Some(starts_at);
    }
    if let Some(expires_at) = record.expires_at {
        spec.expires_at = expires_at;
    }
    if let Some(active) = record.active {
        spec.active = active;
    }
    if let Some(description) = &record.description {
        spec.description.clone_from(description);
    }
}

/// Where an engine refusal points in the file, when its text names a row's entity.
pub(crate) fn locate(error: &ValidationError, plan_changes: &[Change], kind: Kind) -> Problem {
    let message = error.to_string();
    let name = match error {
        ValidationError::Duplicate { name, .. } | ValidationError::LookAlike { name, .. } => {
            Some(name.as_str())
        }
        ValidationError::GroupCycle { parent, .. } => Some(parent.as_str()),
        ValidationError::NodeCycle { node, .. } => Some(node.as_str()),
        _ => None,
    };
    let line = name.and_then(|name| {
        let folded = fold(name);
        plan_changes
            .iter()
            .find(|change| fold(&change.name) == folded)
            .map(|change| change.line)
    });
    match line {
        Some(line) => Problem::cell(line, header_of(kind, key_col_of(kind)), message),
        None => Problem::file(message),
    }
}

fn key_col_of(kind: Kind) -> Col {
    match kind {
        Kind::Users => Col::Username,
        Kind::Nodes => Col::Path,
        Kind::Roles | Kind::Groups | Kind::Assets | Kind::Rules => Col::Name,
    }
}
