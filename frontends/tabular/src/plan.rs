//! From rows to engine operations: each row is matched with the entity it names (by
//! ID, else by name), its references are resolved against the snapshot and the file
//! itself, and it becomes a creation, an update or nothing at all. Operations come in
//! an order the engine can apply one after the other: parent nodes before their
//! children, subgroups before the groups that hold them.
//!
//! Whether the engine takes what the rows ask for is the engine's to say: the plan's
//! operations go through one [`Engine::validate`] (the write as a dry run), which
//! returns every problem with the index of its operation and a typed reason. Each
//! operation remembers the row that made it, and [`crate::refusal`] names the column
//! (by the reason's variant) and words the message. The plan itself refuses only what
//! is the file's own business: a row of another kind, two rows for one entity, a row
//! that would change an existing entity without `update`, a path with no parent.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use portcullis_engine::{
    AccountSpec, Actor, Engine, EntityKind, Error, GroupSpec, Id, MemberSpec, Mfa, NodeSpec, Op,
    ROOT_NODE_ID, ROOT_NODE_NAME, RoleAssignment, RoleSpec, RuleSpec, Snapshot, Source, Spec,
    SubgroupSpec, Time, UserSpec, ValidationError,
};

use crate::cell::{Membership, Reference};
use crate::columns::{Col, header_of, key_col};
use crate::error::{ImportError, Problem, Problems};
use crate::kind::{Kind, MAX_PROBLEMS};
use crate::parse::{
    AssetRecord, GroupRecord, NodeRecord, Record, RoleRecord, Row, RuleRecord, UserRecord, fold,
};
use crate::refusal::{self, Context};

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
/// can apply, and a summary per row. The engine has checked the operations: written
/// now, they would be taken, unless the store changes in between.
#[derive(Debug)]
pub struct ImportPlan {
    kind: Kind,
    revision: u64,
    changes: Vec<Change>,
    security_changes: Vec<SecurityChange>,
    steps: Vec<Step>,
    /// Whether the operations may lower a user's protection when they are written
    /// (each update judges the user as the write finds them).
    allow_security_changes: bool,
    /// The instant an expiry is judged at (a user whose expiry has passed is expired).
    now: Time,
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
        self.steps.is_empty()
    }

    /// The operations, for one [`Engine::write`]. Each update refuses, when written,
    /// to lower the protection of the user as the write finds them, unless the plan
    /// was made allowing it.
    pub fn into_ops(self) -> Vec<Op> {
        let guard = self.guard();
        self.steps
            .into_iter()
            .map(|step| step.into_op(guard))
            .collect()
    }

    /// [`into_ops`](ImportPlan::into_ops), keeping the plan (to ask the engine about
    /// the rows again if the write is refused).
    pub(crate) fn ops(&self) -> Vec<Op> {
        let guard = self.guard();
        self.steps.iter().map(|step| step.op(guard)).collect()
    }

    fn guard(&self) -> Option<Time> {
        (!self.allow_security_changes).then_some(self.now)
    }

    /// Why a write of [`ops`](ImportPlan::ops) that the engine refused with `error` was
    /// refused, row by row: the store changed since the plan was checked, so the
    /// engine is asked again, with the operations as they were written.
    pub(crate) fn refused(
        &self,
        engine: &Engine,
        actor: &Actor,
        error: ValidationError,
        max_problems: usize,
    ) -> ImportError {
        let mut problems = Problems::new(max_problems);
        match self.check(engine, actor, self.guard(), &HashSet::new(), &mut problems) {
            Err(caller) => ImportError::Engine(Error::Validation(caller)),
            Ok(()) if problems.is_empty() => {
                let context = Context {
                    kind: self.kind,
                    change: None,
                    target: None,
                    requested: None,
                    shown: &[],
                };
                ImportError::Problems(vec![Problem::file(refusal::message(&error, &context))])
            }
            Ok(()) => ImportError::Problems(problems.into_vec()),
        }
    }

    /// Asks `engine` about the plan's operations (updates guarded with `guard`), and
    /// adds each problem it finds to `problems`, on the row that made the operation.
    /// One problem per row: a row's later operation is not judged again once one of
    /// its operations is refused, nor is a reference to an entity that a refused or
    /// broken row (`broken`: the folded names of rows that did not parse) would
    /// have made. `Err`: the engine refuses the caller, not the file (the actor may
    /// not write, or asks to grant beyond its own permissions).
    fn check(
        &self,
        engine: &Engine,
        actor: &Actor,
        guard: Option<Time>,
        broken: &HashSet<String>,
        problems: &mut Problems,
    ) -> Result<(), ValidationError> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let found = engine.validate(actor, self.steps.iter().map(|s| s.op(guard)).collect());
        if let Some(refusal) = found
            .iter()
            .find(|p| p.op.is_none() || refusal::refuses_caller(&p.error))
        {
            return Err(refusal.error.clone());
        }
        let own = self.kind.entity_kind();
        let mut refused_rows = HashSet::new();
        let mut gone = broken.clone();
        for found in found {
            let Some(step) = found.op.and_then(|index| self.steps.get(index)) else {
                continue;
            };
            if !refused_rows.insert(step.line) {
                continue;
            }
            let change = self.change_on(step.line);
            let follows = matches!(
                &found.error,
                ValidationError::NotFound(missing)
                    if missing.kind == own && gone.contains(&fold(&missing.reference))
            );
            if let Some(change) = change {
                gone.insert(fold(&change.name));
            }
            if follows {
                continue;
            }
            let context = Context {
                kind: self.kind,
                change,
                target: step.target(),
                requested: step.requested(),
                shown: &step.shown,
            };
            let message = refusal::message(&found.error, &context);
            problems.push(match refusal::column(&found.error, &context) {
                Some(col) => Problem::cell(step.line, header_of(self.kind, col), message),
                None => Problem::row(step.line, message),
            });
        }
        Ok(())
    }

    fn change_on(&self, line: usize) -> Option<&Change> {
        self.changes
            .binary_search_by_key(&line, |change| change.line)
            .ok()
            .map(|index| &self.changes[index])
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

/// One operation of a plan, kept so that it can be made more than once: for the
/// engine's dry run, then for the write.
#[derive(Debug)]
struct Step {
    /// The row that asks for it.
    line: usize,
    action: Action,
    /// References the row writes with an id that matched nothing: the name the
    /// operation passes, and the reference as the file wrote it (`ghost(…)`).
    shown: Vec<(String, String)>,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "creations are most steps of a bulk import: kept in place, not one allocation each"
)]
enum Action {
    Create(Spec),
    /// The row's values, applied by the writer to the entity as it is then, so that
    /// a concurrent change to a column the file does not have survives.
    Update {
        id: Id,
        edit: Edit,
    },
}

impl Step {
    fn op(&self, guard: Option<Time>) -> Op {
        match &self.action {
            Action::Create(spec) => Op::Create(spec.clone()),
            Action::Update { id, edit } => update(*id, edit.clone(), guard),
        }
    }

    fn into_op(self, guard: Option<Time>) -> Op {
        match self.action {
            Action::Create(spec) => Op::Create(spec),
            Action::Update { id, edit } => update(id, edit, guard),
        }
    }

    fn target(&self) -> Option<Id> {
        match &self.action {
            Action::Update { id, .. } => Some(*id),
            Action::Create(_) => None,
        }
    }

    fn requested(&self) -> Option<Id> {
        match &self.action {
            Action::Create(spec) => spec_id(spec),
            Action::Update { .. } => None,
        }
    }
}

fn spec_id(spec: &Spec) -> Option<Id> {
    match spec {
        Spec::User(spec) => spec.id,
        Spec::Group(spec) => spec.id,
        Spec::Node(spec) => spec.id,
        Spec::Asset(spec) => spec.id,
        Spec::Rule(spec) => spec.id,
        Spec::Role(spec) => spec.id,
        Spec::Token(spec) => spec.id,
    }
}

/// The update of entity `id` by `edit`; with `guard`, refused when it lowers the
/// protection of a user (judged at that instant) as the write finds them.
fn update(id: Id, edit: Edit, guard: Option<Time>) -> Op {
    Op::Modify {
        kind: edit.kind(),
        target: id.to_string(),
        edit: Box::new(move |spec| edit.apply(spec, guard)),
    }
}

/// What an update of one row sets.
#[derive(Debug, Clone)]
enum Edit {
    Role(Arc<RoleRecord>),
    User(Arc<UserRecord>),
    Group(Arc<GroupRecord>, Part),
    Node(Arc<NodePatch>),
    Asset(Arc<AssetRecord>),
    Rule(Arc<RuleRecord>),
}

/// Which columns of a group row an update applies. A row's subgroups wait for an
/// operation of their own when they name a group that a later operation of the file
/// creates (the file nests its new groups in a cycle), so that the engine judges the
/// nesting whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    AllButSubgroups,
    Subgroups,
}

impl Edit {
    fn kind(&self) -> EntityKind {
        match self {
            Edit::Role(_) => EntityKind::Role,
            Edit::User(_) => EntityKind::User,
            Edit::Group(..) => EntityKind::Group,
            Edit::Node(_) => EntityKind::Node,
            Edit::Asset(_) => EntityKind::Asset,
            Edit::Rule(_) => EntityKind::Rule,
        }
    }

    fn apply(&self, spec: &mut Spec, guard: Option<Time>) -> Result<(), ValidationError> {
        match (self, spec) {
            (Edit::Role(record), Spec::Role(spec)) => apply_role(record, spec),
            (Edit::User(record), Spec::User(spec)) => {
                let before = guard.map(|now| (now, spec.clone()));
                apply_user((**record).clone(), spec);
                // Judged again on the user as the write finds them: a change made
                // since the plan (MFA enrolled, say) is not lowered without leave
                // either.
                if let Some((now, before)) = before {
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
            (Edit::Group(record, part), Spec::Group(spec)) => apply_group(record, *part, spec),
            (Edit::Node(patch), Spec::Node(spec)) => patch.apply(spec),
            (Edit::Asset(record), Spec::Asset(spec)) => apply_asset(record, spec),
            (Edit::Rule(record), Spec::Rule(spec)) => apply_rule(record, spec),
            _ => {
                return Err(ValidationError::Invalid {
                    field: "kind",
                    message: "the import planned another kind".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Plans the import of `rows` (all of `kind`) into `engine`'s store, on behalf of
/// `actor`, and has the engine check the operations. With `update`, rows naming
/// existing entities update them; without it, such a row is a problem unless it
/// changes nothing. The plan lists the changes that lower a user's protection
/// ([`ImportPlan::security_changes`]); its operations refuse, when written, any update
/// that lowers the protection of the user as the write finds them
/// ([`import`](crate::import) with `allow_security_changes` makes them).
///
/// `Err`: [`ImportError::Problems`], every problem of the file, each on its row (and
/// column, where one is to blame); or [`ImportError::Engine`] when the engine refuses
/// the caller, not the file (the actor may not write, or would grant beyond its own
/// permissions).
pub fn plan(
    engine: &Engine,
    actor: &Actor,
    kind: Kind,
    rows: Vec<Row>,
    update: bool,
) -> Result<ImportPlan, ImportError> {
    plan_with(
        engine,
        actor,
        kind,
        rows,
        Options {
            update,
            allow_security_changes: false,
            judge_now: true,
        },
        Problems::new(MAX_PROBLEMS),
        &HashSet::new(),
        &mut |_, _| {},
    )
}

/// What a plan may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) update: bool,
    pub(crate) allow_security_changes: bool,
    /// Whether the engine judges the operations while planning ([`Engine::validate`]).
    /// Otherwise, for a file with no problem of its own, the write judges them
    /// itself, and only a refused write is validated to find its rows
    /// ([`ImportPlan::refused`]): an import that succeeds applies its operations once.
    pub(crate) judge_now: bool,
}

/// [`plan`], adding to the problems parsing found. `broken` names the rows that did
/// not parse: references to them are not reported again as unknown.
#[expect(
    clippy::too_many_arguments,
    reason = "the import's engine, caller and options, its parse results and its progress"
)]
pub(crate) fn plan_with(
    engine: &Engine,
    actor: &Actor,
    kind: Kind,
    rows: Vec<Row>,
    options: Options,
    problems: Problems,
    broken: &HashSet<String>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ImportPlan, ImportError> {
    let snapshot = engine.snapshot();
    let mut planner = Planner {
        snapshot: &snapshot,
        kind,
        update: options.update,
        now: Time::now(),
        problems,
        rows: HashMap::new(),
        changes: Vec::with_capacity(rows.len()),
        security_changes: Vec::new(),
        steps: Vec::with_capacity(rows.len()),
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
    let directory = Directory::new(&snapshot, kind);
    match kind {
        Kind::Roles => planner.roles_sheet(&directory, records, progress),
        Kind::Users => planner.users(&directory, records, progress),
        Kind::Groups => planner.groups(&directory, records, progress),
        Kind::Nodes => planner.nodes(&directory, records, progress),
        Kind::Assets => planner.assets(&directory, records, progress),
        Kind::Rules => planner.rules(&directory, records, progress),
    }
    let mut problems = planner.problems;
    let mut changes = planner.changes;
    let mut security_changes = planner.security_changes;
    changes.sort_by_key(|change| change.line);
    security_changes.sort_by_key(|change| change.line);
    let plan = ImportPlan {
        kind,
        revision: snapshot.revision(),
        changes,
        security_changes,
        steps: planner.steps,
        allow_security_changes: options.allow_security_changes,
        now: planner.now,
    };
    // Lowered protection is the import's own rule, listed apart (`security_changes`):
    // the engine's dry run judges the rows without it. A file with problems of its
    // own is judged now, so that one refusal lists every problem.
    if options.judge_now || !problems.is_empty() {
        plan.check(engine, actor, None, broken, &mut problems)
            .map_err(|caller| ImportError::Engine(Error::Validation(caller)))?;
    }
    if !problems.is_empty() {
        return Err(ImportError::Problems(problems.into_vec()));
    }
    Ok(plan)
}

/// The entities of one kind by name (folded) and by id.
#[derive(Clone, Default)]
struct Names {
    by_name: HashMap<String, Id>,
    by_id: HashMap<Id, String>,
}

impl Names {
    fn new(entries: impl Iterator<Item = (Id, String)>) -> Names {
        let mut names = Names::default();
        for (id, name) in entries {
            names.insert(id, name);
        }
        names
    }

    fn id_of(&self, name: &str) -> Option<Id> {
        self.by_name.get(&fold(name)).copied()
    }

    fn name_of(&self, id: Id) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// Gives `id` the name `name`, dropping its previous name.
    fn insert(&mut self, id: Id, name: String) {
        let folded = fold(&name);
        if let Some(old) = self.by_id.insert(id, name) {
            let old = fold(&old);
            if old != folded && self.by_name.get(&old) == Some(&id) {
                self.by_name.remove(&old);
            }
        }
        self.by_name.insert(folded, id);
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

    /// A reference as the operation passes it: the name of the entity it resolves
    /// to, else as the file wrote it, for the engine to judge (`shown` keeps a
    /// reference written with an id, for the message).
    fn pass(
        &self,
        reference: &Reference,
        shown: &mut Vec<(String, String)>,
    ) -> (Option<Id>, String) {
        if let Some((id, name)) = self.resolve(reference) {
            return (Some(id), name.to_owned());
        }
        let name = match reference.id {
            Some(id) if reference.name.is_empty() => id.to_string(),
            _ => reference.name.clone(),
        };
        if reference.id.is_some() {
            shown.push((name.clone(), reference.display()));
        }
        (None, name)
    }
}

/// What the snapshot holds that a plan of one kind needs, by name and id.
struct Directory {
    users: Names,
    groups: Names,
    /// Existing subgroup edges (a groups sheet orders its operations by them).
    subgroups: HashMap<Id, Vec<Id>>,
    /// Nodes by path.
    nodes: Names,
    assets: Names,
    rules: Names,
    roles: Names,
    /// The built-in roles' ids (only for a roles sheet).
    builtin_roles: HashSet<Id>,
}

impl Directory {
    fn new(snapshot: &Snapshot, kind: Kind) -> Directory {
        let estate = snapshot.estate();
        let needs = |kinds: &[Kind]| kinds.contains(&kind);
        let mut directory = Directory {
            users: Names::default(),
            groups: Names::default(),
            subgroups: HashMap::new(),
            nodes: Names::default(),
            assets: Names::default(),
            rules: Names::default(),
            roles: Names::new(estate.roles.iter().map(|r| (r.id, r.name.clone()))),
            builtin_roles: HashSet::new(),
        };
        if kind == Kind::Roles {
            directory.builtin_roles = estate
                .roles
                .iter()
                .filter(|r| r.builtin)
                .map(|r| r.id)
                .collect();
        }
        if needs(&[Kind::Users, Kind::Groups, Kind::Rules]) {
            directory.users = Names::new(estate.users.iter().map(|u| (u.id, u.username.clone())));
        }
        if needs(&[Kind::Groups, Kind::Rules]) {
            directory.groups = Names::new(estate.groups.iter().map(|g| (g.id, g.name.clone())));
        }
        if kind == Kind::Groups {
            directory.subgroups = estate
                .groups
                .iter()
                .map(|g| (g.id, g.subgroups.iter().map(|s| s.group).collect()))
                .collect();
        }
        if needs(&[Kind::Nodes, Kind::Assets, Kind::Rules]) {
            // Paths as the engine writes them (a node's spec names its parent by path).
            directory.nodes = Names::new(estate.nodes.iter().filter_map(|node| {
                match snapshot.spec(EntityKind::Node, &node.id.to_string()) {
                    Ok(Spec::Node(spec)) => Some((node.id, path(&spec.parent, &spec.name))),
                    _ => None,
                }
            }));
        }
        if needs(&[Kind::Assets, Kind::Rules]) {
            directory.assets = Names::new(estate.assets.iter().map(|a| (a.id, a.name.clone())));
        }
        if kind == Kind::Rules {
            directory.rules = Names::new(estate.rules.iter().map(|r| (r.id, r.name.clone())));
        }
        directory
    }
}

/// `/Default/Prod`: the path of node `name` under the node at path `parent` (empty for
/// the root).
fn path(parent: &str, name: &str) -> String {
    format!("{parent}/{name}")
}

/// Which entity a row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Existing(Id),
    /// A new entity, with the id the row asks for.
    New(Option<Id>),
}

impl Target {
    /// The id a new entity asks for.
    fn requested(self) -> Option<Id> {
        match self {
            Target::New(requested) => requested,
            Target::Existing(_) => None,
        }
    }
}

/// What a row asks of the store.
#[expect(
    clippy::large_enum_variant,
    reason = "one at a time, moved once into a step"
)]
enum Wanted {
    Create(Spec),
    /// `old` becomes `new` by `edit`. `fixed`: the engine refuses any change to the
    /// entity (the root node, a built-in role), so a change is put to it, `update` or
    /// not, and its refusal is what the row is told.
    Update {
        id: Id,
        old: Spec,
        new: Spec,
        edit: Edit,
        fixed: bool,
    },
}

struct Planner<'a> {
    snapshot: &'a Snapshot,
    kind: Kind,
    update: bool,
    /// The instant an expiry is judged at (a user whose expiry has passed is expired).
    now: Time,
    problems: Problems,
    /// The row each entity is on: by id when it exists, else by its folded name.
    rows: HashMap<String, usize>,
    changes: Vec<Change>,
    security_changes: Vec<SecurityChange>,
    steps: Vec<Step>,
}

/// Appends `header` to `columns` when `old != new`.
fn differs<T: PartialEq>(columns: &mut Vec<&'static str>, header: &'static str, old: &T, new: &T) {
    if old != new && !columns.contains(&header) {
        columns.push(header);
    }
}

impl Planner<'_> {
    fn problem(&mut self, line: usize, col: Col, message: impl Into<String>) {
        let header = header_of(self.kind, col);
        self.problems.push(Problem::cell(line, header, message));
    }

    /// The entity a row names: the one with the row's ID, else the one with its name,
    /// else a new one (with the row's ID, if it has one).
    fn target(existing: &Names, id: Option<Id>, name: &str) -> Target {
        if let Some(id) = id {
            if existing.name_of(id).is_some() {
                return Target::Existing(id);
            }
        }
        match existing.id_of(name) {
            Some(found) => Target::Existing(found),
            None => Target::New(id),
        }
    }

    /// Refuses a second row for the entity a first row already names.
    fn once(&mut self, line: usize, target: Target, name: &str) -> bool {
        let key = match target {
            Target::Existing(id) => id.to_string(),
            Target::New(_) => fold(name),
        };
        if let Some(first) = self.rows.get(&key) {
            let first = *first;
            self.problem(
                line,
                key_col(self.kind),
                format!("`{name}` is already on row {first}"),
            );
            return false;
        }
        self.rows.insert(key, line);
        true
    }

    /// The spec an existing entity has now.
    fn current(&self, id: Id) -> Option<Spec> {
        self.snapshot
            .spec(self.kind.entity_kind(), &id.to_string())
            .ok()
    }

    /// Records a row's outcome: a creation, nothing (unchanged) or an update; refuses
    /// a change to an existing entity without `update`. Returns whether an operation
    /// was planned.
    fn settle(
        &mut self,
        line: usize,
        name: String,
        wanted: Wanted,
        columns: Vec<&'static str>,
        shown: Vec<(String, String)>,
    ) -> bool {
        let (kind, action) = match wanted {
            Wanted::Create(spec) => (ChangeKind::Create, Action::Create(spec)),
            Wanted::Update { old, new, .. } if old == new => {
                self.changes.push(Change {
                    line,
                    name,
                    kind: ChangeKind::Unchanged,
                    columns: Vec::new(),
                });
                return false;
            }
            Wanted::Update { fixed, .. } if !self.update && !fixed => {
                let noun = self.kind.entity_kind().noun();
                self.problem(
                    line,
                    key_col(self.kind),
                    format!(
                        "{noun} `{name}` already exists with other values ({}); import with update to change it",
                        columns.join(", ")
                    ),
                );
                return false;
            }
            Wanted::Update { id, edit, .. } => (ChangeKind::Update, Action::Update { id, edit }),
        };
        self.steps.push(Step {
            line,
            action,
            shown,
        });
        let columns = if kind == ChangeKind::Update {
            columns
        } else {
            Vec::new()
        };
        self.changes.push(Change {
            line,
            name,
            kind,
            columns,
        });
        true
    }

    /// Records a row that creates an entity ([`settle`](Planner::settle)).
    fn create(&mut self, line: usize, name: String, spec: Spec, shown: Vec<(String, String)>) {
        self.settle(line, name, Wanted::Create(spec), Vec::new(), shown);
    }

    /// Role names as the store spells them (else as written, for the engine to
    /// judge), without repeats, remembered across rows.
    fn role_names(
        roles: &Names,
        cache: &mut HashMap<String, String>,
        names: &[String],
    ) -> Vec<String> {
        let mut list: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let canonical = cache
                .entry(name.clone())
                .or_insert_with(|| {
                    roles
                        .resolve(&Reference::parse(name))
                        .map_or_else(|| name.clone(), |(_, canonical)| canonical.to_owned())
                })
                .clone();
            if !list.contains(&canonical) {
                list.push(canonical);
            }
        }
        list
    }

    /// References as the operation passes them (see [`Names::pass`]), with the ids of
    /// those that resolve.
    fn pass_all(
        names: &Names,
        references: &[Reference],
        shown: &mut Vec<(String, String)>,
    ) -> Vec<(Option<Id>, String)> {
        references
            .iter()
            .map(|reference| names.pass(reference, shown))
            .collect()
    }

    /// [`pass_all`](Planner::pass_all) for a column the file may not have, as plain
    /// references.
    fn pass_column(
        names: &Names,
        references: Option<Vec<Reference>>,
        shown: &mut Vec<(String, String)>,
    ) -> Option<Vec<Reference>> {
        references.map(|references| {
            Self::pass_all(names, &references, shown)
                .into_iter()
                .map(|(_, name)| Reference { name, id: None })
                .collect()
        })
    }

    /// A roles sheet. A built-in role (in every store, with its own id in each) may
    /// appear on a row that changes nothing, its name in any case.
    fn roles_sheet(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::Role(record) = record else {
                continue;
            };
            let target = Self::target(&directory.roles, record.id, &record.name);
            if !self.once(line, target, &record.name) {
                continue;
            }
            let Target::Existing(id) = target else {
                let mut new = RoleSpec {
                    id: target.requested(),
                    name: String::new(),
                    permissions: Vec::new(),
                    description: String::new(),
                };
                apply_role(&record, &mut new);
                self.create(line, new.name.clone(), Spec::Role(new), Vec::new());
                continue;
            };
            let Some(Spec::Role(old)) = self.current(id) else {
                continue;
            };
            let mut new = old.clone();
            apply_role(&record, &mut new);
            let builtin = directory.builtin_roles.contains(&id);
            // A row names a built-in role in any case (as users' and groups' role
            // cells do); that alone does not rename it.
            if builtin && fold(&old.name) == fold(&new.name) {
                new.name.clone_from(&old.name);
            }
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
            let name = new.name.clone();
            self.settle(
                line,
                name,
                Wanted::Update {
                    id,
                    old: Spec::Role(old),
                    new: Spec::Role(new),
                    edit: Edit::Role(Arc::new(record)),
                    fixed: builtin,
                },
                columns,
                Vec::new(),
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
        let mut role_cache = HashMap::new();
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::User(mut record) = record else {
                continue;
            };
            let target = Self::target(&directory.users, record.id, &record.username);
            if !self.once(line, target, &record.username) {
                continue;
            }
            if let Some(roles) = &record.system_roles {
                record.system_roles =
                    Some(Self::role_names(&directory.roles, &mut role_cache, roles));
            }
            let Target::Existing(id) = target else {
                // A new user takes the row as it is.
                let mut new = UserSpec::new(String::new());
                new.source = Source::Import;
                new.id = target.requested();
                apply_user(record, &mut new);
                self.create(line, new.username.clone(), Spec::User(new), Vec::new());
                continue;
            };
            let Some(Spec::User(old)) = self.current(id) else {
                continue;
            };
            // An existing one keeps the row for the writer to apply.
            let mut new = old.clone();
            apply_user(record.clone(), &mut new);
            let name = new.username.clone();
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
            self.settle(
                line,
                name,
                Wanted::Update {
                    id,
                    old: Spec::User(old),
                    new: Spec::User(new),
                    edit: Edit::User(Arc::new(record)),
                    fixed: false,
                },
                columns,
                Vec::new(),
            );
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
        let mut rows: Vec<(usize, GroupRecord, Target, Id)> = Vec::with_capacity(records.len());
        for (line, record) in records {
            let Record::Group(record) = record else {
                continue;
            };
            let target = Self::target(&directory.groups, record.id, &record.name);
            if !self.once(line, target, &record.name) {
                continue;
            }
            let id = match target {
                Target::Existing(id) => id,
                Target::New(requested) => requested.unwrap_or_else(Id::random),
            };
            rows.push((line, record, target, id));
        }
        let mut names = directory.groups.clone();
        for (_, record, _, id) in &rows {
            names.insert(*id, record.name.clone());
        }
        let new_in_file: HashSet<Id> = rows
            .iter()
            .filter(|(_, _, target, _)| matches!(target, Target::New(_)))
            .map(|(_, _, _, id)| *id)
            .collect();
        // 2. References, as the store (or a row) names them.
        let mut role_cache = HashMap::new();
        let mut edges: HashMap<Id, Vec<Id>> = directory.subgroups.clone();
        let mut resolved = Vec::with_capacity(rows.len());
        for (line, mut record, target, id) in rows {
            let mut shown = Vec::new();
            if let Some(members) = &record.members {
                let references: Vec<Reference> =
                    members.iter().map(|m| m.reference.clone()).collect();
                let passed = Self::pass_all(&directory.users, &references, &mut shown);
                record.members = Some(canonical_memberships(members, passed));
            }
            if let Some(subgroups) = &record.subgroups {
                let references: Vec<Reference> =
                    subgroups.iter().map(|m| m.reference.clone()).collect();
                let passed = Self::pass_all(&names, &references, &mut shown);
                edges.insert(id, passed.iter().filter_map(|(child, _)| *child).collect());
                record.subgroups = Some(canonical_memberships(subgroups, passed));
            } else if let Target::New(_) = target {
                edges.insert(id, Vec::new());
            }
            if let Some(pairs) = &record.roles {
                let canonical = pairs
                    .iter()
                    .map(|(scope, role)| {
                        let mut found = Self::role_names(
                            &directory.roles,
                            &mut role_cache,
                            std::slice::from_ref(role),
                        );
                        (scope.clone(), found.remove(0))
                    })
                    .collect();
                record.roles = Some(canonical);
            }
            resolved.push((line, record, target, id, shown));
        }
        // 3. Subgroups first.
        let in_file: HashMap<Id, usize> = resolved
            .iter()
            .enumerate()
            .map(|(i, (_, _, _, id, _))| (*id, i))
            .collect();
        let mut order = Vec::with_capacity(resolved.len());
        let mut visited = HashSet::new();
        for (_, _, _, id, _) in &resolved {
            post_order(&edges, *id, &in_file, &mut visited, &mut order);
        }
        let mut slots: Vec<Option<_>> = resolved.into_iter().map(Some).collect();
        let mut created = HashSet::new();
        // The subgroups that wait for the groups of the file to exist.
        let mut later = Vec::new();
        for (done, index) in order.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Some((line, record, target, id, shown)) = slots[index].take() else {
                continue;
            };
            // A subgroup the file creates later (the file nests new groups in a
            // cycle): the subgroups are set by an operation of their own, after it.
            let deferred = edges.get(&id).is_some_and(|children| {
                record.subgroups.is_some()
                    && children
                        .iter()
                        .any(|child| new_in_file.contains(child) && !created.contains(child))
            });
            let record = Arc::new(record);
            let old = match target {
                Target::Existing(id) => match self.current(id) {
                    Some(Spec::Group(old)) => Some(old),
                    _ => continue,
                },
                Target::New(_) => None,
            };
            let mut new = old.clone().unwrap_or_else(|| {
                let mut spec = GroupSpec::new(record.name.clone());
                spec.source = Source::Import;
                spec.id = target.requested();
                spec
            });
            apply_group(&record, Part::All, &mut new);
            let name = new.name.clone();
            let first = if deferred {
                Part::AllButSubgroups
            } else {
                Part::All
            };
            let (wanted, columns) = match old {
                None => {
                    created.insert(id);
                    if deferred {
                        new.subgroups.clear();
                        new.id = Some(id);
                    }
                    (Wanted::Create(Spec::Group(new)), Vec::new())
                }
                Some(old) => {
                    let mut columns = Vec::new();
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
                    let wanted = Wanted::Update {
                        id,
                        old: Spec::Group(old),
                        new: Spec::Group(new),
                        edit: Edit::Group(Arc::clone(&record), first),
                        fixed: false,
                    };
                    (wanted, columns)
                }
            };
            let planned = self.settle(line, name, wanted, columns, shown.clone());
            if planned && deferred {
                later.push(Step {
                    line,
                    action: Action::Update {
                        id,
                        edit: Edit::Group(record, Part::Subgroups),
                    },
                    shown,
                });
            }
        }
        self.steps.append(&mut later);
        progress(total, total);
    }

    fn nodes(
        &mut self,
        directory: &Directory,
        records: Vec<(usize, Record)>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let total = records.len();
        let mut records: Vec<(usize, NodeRecord)> = records
            .into_iter()
            .filter_map(|(line, record)| match record {
                Record::Node(record) => Some((line, record)),
                _ => None,
            })
            .collect();
        // Parents first: the engine applies the operations in this order.
        records.sort_by_key(|(line, record)| (record.segments().count(), *line));
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let segments: Vec<&str> = record.segments().collect();
            let name = segments[segments.len() - 1].to_owned();
            let parent_path = &record.path[..record.path.len() - name.len() - 1];
            let (target, parent) = if segments.len() == 1 {
                // A path of one name is the root's: it has no parent to be under.
                if fold(&name) != fold(ROOT_NODE_NAME) {
                    self.problem(
                        line,
                        Col::Path,
                        format!(
                            "`{}` does not start at the root `/{ROOT_NODE_NAME}`",
                            record.path
                        ),
                    );
                    continue;
                }
                (Target::Existing(ROOT_NODE_ID), String::new())
            } else {
                let target = match record.id {
                    Some(id) if directory.nodes.name_of(id).is_some() => Target::Existing(id),
                    requested => match directory.nodes.id_of(&record.path) {
                        Some(found) => Target::Existing(found),
                        None => Target::New(requested),
                    },
                };
                // The parent as the store spells its path, or as written (a row may
                // create it).
                let parent = directory
                    .nodes
                    .id_of(parent_path)
                    .and_then(|id| directory.nodes.name_of(id))
                    .unwrap_or(parent_path)
                    .to_owned();
                (target, parent)
            };
            if !self.once(line, target, &record.path) {
                continue;
            }
            // The node's path after the import, for the report.
            let shown = if parent.is_empty() {
                record.path.clone()
            } else {
                path(&parent, &name)
            };
            let patch = NodePatch {
                name,
                parent,
                description: record.description,
            };
            let Target::Existing(id) = target else {
                let mut new = NodeSpec::new(patch.name.clone(), patch.parent.clone());
                new.id = target.requested();
                patch.apply(&mut new);
                self.create(line, shown, Spec::Node(new), Vec::new());
                continue;
            };
            let Some(Spec::Node(old)) = self.current(id) else {
                continue;
            };
            let mut new = old.clone();
            patch.apply(&mut new);
            let mut columns = Vec::new();
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
            self.settle(
                line,
                shown,
                Wanted::Update {
                    id,
                    old: Spec::Node(old),
                    new: Spec::Node(new),
                    edit: Edit::Node(Arc::new(patch)),
                    fixed: id == ROOT_NODE_ID,
                },
                columns,
                Vec::new(),
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
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::Asset(mut record) = record else {
                continue;
            };
            let target = Self::target(&directory.assets, record.id, &record.name);
            if !self.once(line, target, &record.name) {
                continue;
            }
            let mut shown = Vec::new();
            record.nodes = Self::pass_column(&directory.nodes, record.nodes, &mut shown);
            let Target::Existing(id) = target else {
                let mut new = portcullis_engine::AssetSpec::new(record.name.clone());
                new.id = target.requested();
                apply_asset(&record, &mut new);
                self.create(line, new.name.clone(), Spec::Asset(new), shown);
                continue;
            };
            let Some(Spec::Asset(old)) = self.current(id) else {
                continue;
            };
            let mut new = old.clone();
            apply_asset(&record, &mut new);
            let mut columns = Vec::new();
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
            let name = new.name.clone();
            self.settle(
                line,
                name,
                Wanted::Update {
                    id,
                    old: Spec::Asset(old),
                    new: Spec::Asset(new),
                    edit: Edit::Asset(Arc::new(record)),
                    fixed: false,
                },
                columns,
                shown,
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
        for (done, (line, record)) in records.into_iter().enumerate() {
            if done % 4096 == 0 {
                progress(done, total);
            }
            let Record::Rule(mut record) = record else {
                continue;
            };
            let target = Self::target(&directory.rules, record.id, &record.name);
            if !self.once(line, target, &record.name) {
                continue;
            }
            let mut shown = Vec::new();
            record.users = Self::pass_column(&directory.users, record.users, &mut shown);
            record.groups = Self::pass_column(&directory.groups, record.groups, &mut shown);
            record.assets = Self::pass_column(&directory.assets, record.assets, &mut shown);
            record.nodes = Self::pass_column(&directory.nodes, record.nodes, &mut shown);
            let Target::Existing(id) = target else {
                let mut new = RuleSpec::new(record.name.clone());
                new.id = target.requested();
                apply_rule(&record, &mut new);
                self.create(line, new.name.clone(), Spec::Rule(new), shown);
                continue;
            };
            let Some(Spec::Rule(old)) = self.current(id) else {
                continue;
            };
            let mut new = old.clone();
            apply_rule(&record, &mut new);
            let mut columns = Vec::new();
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
            let name = new.name.clone();
            self.settle(
                line,
                name,
                Wanted::Update {
                    id,
                    old: Spec::Rule(old),
                    new: Spec::Rule(new),
                    edit: Edit::Rule(Arc::new(record)),
                    fixed: false,
                },
                columns,
                shown,
            );
        }
        progress(total, total);
    }
}

/// Memberships with their references replaced by the names the operation passes.
fn canonical_memberships(
    list: &[Membership],
    passed: Vec<(Option<Id>, String)>,
) -> Vec<Membership> {
    list.iter()
        .zip(passed)
        .map(|(membership, (_, name))| Membership {
            reference: Reference { name, id: None },
            expires_at: membership.expires_at,
        })
        .collect()
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

/// What a node row sets.
#[derive(Debug)]
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

fn apply_group(record: &GroupRecord, part: Part, spec: &mut GroupSpec) {
    if part == Part::Subgroups {
        apply_subgroups(record, spec);
        return;
    }
    spec.name.clone_from(&record.name);
    if let Some(source) = &record.source {
        spec.source = source.clone();
    }
    if let Some(members) = &record.members {
        spec.members = with_sources(members, &spec.members, &spec.source, member_source)
            .map(|(user, expires_at, source)| MemberSpec::Detailed {
                user,
                expires_at,
                source: Some(source),
            })
            .collect();
    }
    if part == Part::All {
        apply_subgroups(record, spec);
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

/// A group row's subgroups (a subgroup keeps the source that wrote it; a new one
/// takes the group's).
fn apply_subgroups(record: &GroupRecord, spec: &mut GroupSpec) {
    let Some(subgroups) = &record.subgroups else {
        return;
    };
    spec.subgroups = with_sources(subgroups, &spec.subgroups, &spec.source, subgroup_source)
        .map(|(group, expires_at, source)| SubgroupSpec::Detailed {
            group,
            expires_at,
            source: Some(source),
        })
        .collect();
}

/// A user membership's name and the source that wrote it, if it says.
fn member_source(member: &MemberSpec) -> Option<(&str, &Source)> {
    match member {
        MemberSpec::Detailed {
            user,
            source: Some(source),
            ..
        } => Some((user, source)),
        _ => None,
    }
}

/// A subgroup membership's name and the source that wrote it, if it says.
fn subgroup_source(subgroup: &SubgroupSpec) -> Option<(&str, &Source)> {
    match subgroup {
        SubgroupSpec::Detailed {
            group,
            source: Some(source),
            ..
        } => Some((group, source)),
        _ => None,
    }
}

/// A row's memberships (of users or subgroups) as (name, end, source): a membership
/// keeps the source that wrote it (`kept` reads it from the group's current ones), a
/// new one takes the group's (`default`).
fn with_sources<'a, S>(
    wanted: &'a [Membership],
    current: &'a [S],
    default: &'a Source,
    kept: fn(&S) -> Option<(&str, &Source)>,
) -> impl Iterator<Item = (String, Option<Time>, Source)> + 'a {
    wanted.iter().map(move |m| {
        let name = &m.reference.name;
        let source = current
            .iter()
            .filter_map(kept)
            .find_map(|(existing, source)| (existing == name).then_some(source))
            .unwrap_or(default);
        (name.clone(), m.expires_at, source.clone())
    })
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
