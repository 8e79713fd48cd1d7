//! From a table of cells to typed rows: the header is matched to the kind's columns,
//! and every cell is read by its column's rules. Nothing here looks at a store.

use std::collections::HashSet;

use portcullis_engine::{
    AccountSelector, AccountSpec, Actions, Effect, Id, MAX_NAME_CHARS, MAX_TEXT_CHARS, Mfa,
    Protocol, ProtocolFilter, Source, Time,
};

use crate::cell::{self, Membership, Reference};
use crate::columns::{Col, columns, find_column};
use crate::error::{Problem, Problems};
use crate::kind::{Format, Kind, ParseOptions};
use crate::read::{self, Cell, Table};

/// Names compared the engine's way: Unicode simple lowercase, character by character.
pub(crate) fn fold(name: &str) -> String {
    if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        name.chars().flat_map(char::to_lowercase).collect()
    }
}

/// One entity row of a sheet, read and checked cell by cell (not yet against a store:
/// that is [`plan`](crate::plan)'s job).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    line: usize,
    pub(crate) record: Record,
}

impl Row {
    /// The row's number as a spreadsheet shows it (the header is row 1).
    pub fn line(&self) -> usize {
        self.line
    }

    pub fn kind(&self) -> Kind {
        match self.record {
            Record::Role(_) => Kind::Roles,
            Record::User(_) => Kind::Users,
            Record::Group(_) => Kind::Groups,
            Record::Node(_) => Kind::Nodes,
            Record::Asset(_) => Kind::Assets,
            Record::Rule(_) => Kind::Rules,
        }
    }

    /// The name the row gives its entity (the username of a user, the path of a node).
    pub fn name(&self) -> &str {
        match &self.record {
            Record::Role(r) => &r.name,
            Record::User(r) => &r.username,
            Record::Group(r) => &r.name,
            Record::Node(r) => &r.path,
            Record::Asset(r) => &r.name,
            Record::Rule(r) => &r.name,
        }
    }
}

/// A row's values. `None` is a column the file does not have: a new entity takes the
/// default, an updated one keeps its value. An empty cell has already been turned into
/// the column's documented default.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Role(RoleRecord),
    User(UserRecord),
    Group(GroupRecord),
    Node(NodeRecord),
    Asset(AssetRecord),
    Rule(RuleRecord),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleRecord {
    pub(crate) id: Option<Id>,
    pub(crate) name: String,
    /// Sorted, without repeats (as the engine keeps them).
    pub(crate) permissions: Option<Vec<String>>,
    pub(crate) description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserRecord {
    pub(crate) id: Option<Id>,
    pub(crate) username: String,
    /// Empty: the username.
    pub(crate) name: Option<String>,
    pub(crate) email: Option<Option<String>>,
    pub(crate) phone: Option<Option<String>>,
    pub(crate) active: Option<bool>,
    pub(crate) expires_at: Option<Option<Time>>,
    pub(crate) source: Option<Source>,
    pub(crate) external_id: Option<Option<String>>,
    pub(crate) system_roles: Option<Vec<String>>,
    pub(crate) mfa: Option<Mfa>,
    pub(crate) must_change_password: Option<bool>,
    pub(crate) description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupRecord {
    pub(crate) id: Option<Id>,
    pub(crate) name: String,
    pub(crate) members: Option<Vec<Membership>>,
    pub(crate) subgroups: Option<Vec<Membership>>,
    /// (scope, role) pairs.
    pub(crate) roles: Option<Vec<(String, String)>>,
    pub(crate) source: Option<Source>,
    pub(crate) external_id: Option<Option<String>>,
    pub(crate) description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeRecord {
    pub(crate) id: Option<Id>,
    /// `/Default/Prod/DB`, without a trailing `/`.
    pub(crate) path: String,
    pub(crate) description: Option<String>,
}

impl NodeRecord {
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').skip(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AssetRecord {
    pub(crate) id: Option<Id>,
    pub(crate) name: String,
    pub(crate) address: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) protocols: Option<Vec<Protocol>>,
    pub(crate) nodes: Option<Vec<Reference>>,
    pub(crate) accounts: Option<Vec<AccountSpec>>,
    pub(crate) active: Option<bool>,
    pub(crate) description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleRecord {
    pub(crate) id: Option<Id>,
    pub(crate) name: String,
    pub(crate) effect: Option<Effect>,
    pub(crate) users: Option<Vec<Reference>>,
    pub(crate) groups: Option<Vec<Reference>>,
    pub(crate) assets: Option<Vec<Reference>>,
    pub(crate) nodes: Option<Vec<Reference>>,
    pub(crate) accounts: Option<Vec<AccountSelector>>,
    pub(crate) protocols: Option<ProtocolFilter>,
    pub(crate) actions: Option<Actions>,
    /// Empty: the moment of creation for a new rule, unchanged for an existing one.
    pub(crate) starts_at: Option<Option<Time>>,
    pub(crate) expires_at: Option<Option<Time>>,
    pub(crate) active: Option<bool>,
    pub(crate) description: Option<String>,
}

/// Headers of read-only fields that exports (JumpServer's among them) carry. An import
/// accepts and ignores them, so such an export can be brought back as it is.
const IGNORED_HEADERS: &[&str] = &[
    "Created at",
    "Created by",
    "Updated at",
    "Date created",
    "Date updated",
    "Date joined",
    "Last login",
    "Date last login",
    "Has password",
    "Key",
    "Organization",
    "Org name",
];

/// Reads a file of `kind` in `format` into rows. On error, every problem found (up to
/// `options.max_problems`), each with its row and column where it has one.
pub fn parse(
    kind: Kind,
    format: Format,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<Vec<Row>, Vec<Problem>> {
    parse_with(kind, format, bytes, options, &mut |_, _| {})
}

/// [`parse`], calling `progress(done, total)` every few thousand rows.
pub(crate) fn parse_with(
    kind: Kind,
    format: Format,
    bytes: &[u8],
    options: &ParseOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Row>, Vec<Problem>> {
    let parsed = parse_rows(kind, format, bytes, options, progress);
    if parsed.problems.is_empty() {
        Ok(parsed.rows)
    } else {
        Err(parsed.problems.into_vec())
    }
}

/// What parsing found: the rows that read well, and the problems of the others.
pub(crate) struct Parsed {
    pub(crate) rows: Vec<Row>,
    pub(crate) problems: Problems,
    /// The file as a whole could not be read (encoding, structure, header): its rows
    /// are not worth comparing with a store.
    pub(crate) fatal: bool,
    /// The names (folded as the engine compares them) of rows with a problem, so that
    /// references to them are not reported as unknown too.
    pub(crate) broken: HashSet<String>,
}

pub(crate) fn parse_rows(
    kind: Kind,
    format: Format,
    bytes: &[u8],
    options: &ParseOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Parsed {
    let mut problems = Problems::new(options.max_problems);
    let mut broken = HashSet::new();
    let Some(table) = read::read(format, bytes, options, &mut problems) else {
        return Parsed {
            rows: Vec::new(),
            problems,
            fatal: true,
            broken,
        };
    };
    // Problems about the file's structure (quotes, field counts, formulas, merged
    // cells, other sheets) leave rows that cannot be trusted.
    let structure_broken = !problems.is_empty();
    let rows = match map_columns(kind, &table, &mut problems) {
        Some(map) => rows(kind, table, &map, &mut problems, &mut broken, progress),
        None => {
            return Parsed {
                rows: Vec::new(),
                problems,
                fatal: true,
                broken,
            };
        }
    };
    Parsed {
        rows,
        problems,
        fatal: structure_broken,
        broken,
    }
}

/// Where each of the kind's columns sits in the file, and its header there.
struct ColumnMap {
    found: Vec<(Col, usize, String)>,
}

impl ColumnMap {
    fn find(&self, col: Col) -> Option<(usize, &str)> {
        self.found
            .iter()
            .find(|(c, _, _)| *c == col)
            .map(|(_, index, header)| (*index, header.as_str()))
    }
}

fn map_columns(kind: Kind, table: &Table, problems: &mut Problems) -> Option<ColumnMap> {
    let line = table.header_line;
    let mut found: Vec<(Col, usize, String)> = Vec::new();
    let mut ok = true;
    let known = || {
        columns(kind)
            .iter()
            .map(|c| c.header)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (index, header) in table.headers.iter().enumerate() {
        let header = header.trim();
        if header.is_empty() {
            let used = table.rows.iter().find(|row| {
                row.cells
                    .get(index)
                    .is_some_and(|cell| !matches!(cell, Cell::Empty))
            });
            if let Some(row) = used {
                problems.push(Problem::row(
                    row.line,
                    format!("column {} holds values but has no header", index + 1),
                ));
                ok = false;
            }
            continue;
        }
        match find_column(kind, header) {
            Some(column) => {
                if let Some((_, _, first)) = found.iter().find(|(c, _, _)| *c == column.col) {
                    problems.push(Problem::cell(
                        line,
                        header,
                        format!("the header names this column twice (also as `{first}`)"),
                    ));
                    ok = false;
                } else {
                    found.push((column.col, index, header.to_owned()));
                }
            }
            None if IGNORED_HEADERS.iter().any(|h| {
                crate::columns::normalize_header(h) == crate::columns::normalize_header(header)
            }) => {}
            None => {
                problems.push(Problem::cell(
                    line,
                    header,
                    format!("unknown column; the {kind} columns are {}", known()),
                ));
                ok = false;
            }
        }
    }
    for column in columns(kind).iter().filter(|c| c.required) {
        if !found.iter().any(|(c, _, _)| *c == column.col) {
            problems.push(Problem::row(
                line,
                format!("missing column `{}`", column.header),
            ));
            ok = false;
        }
    }
    ok.then_some(ColumnMap { found })
}

fn rows(
    kind: Kind,
    table: Table,
    map: &ColumnMap,
    problems: &mut Problems,
    broken: &mut HashSet<String>,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<Row> {
    let key = columns(kind)
        .iter()
        .find(|column| column.required)
        .and_then(|column| map.find(column.col))
        .map(|(index, _)| index);
    let total = table.rows.len();
    let mut rows = Vec::with_capacity(total);
    for (done, row) in table.rows.into_iter().enumerate() {
        if done % 4096 == 0 {
            progress(done, total);
        }
        let line = row.line;
        let key_name = key
            .and_then(|i| row.cells.get(i))
            .and_then(|cell| cell::text(cell).ok());
        let mut fields = Fields {
            line,
            cells: row.cells,
            map,
            problems,
            failed: false,
        };
        let record = match kind {
            Kind::Roles => role(&mut fields).map(Record::Role),
            Kind::Users => user(&mut fields).map(Record::User),
            Kind::Groups => group(&mut fields).map(Record::Group),
            Kind::Nodes => node(&mut fields).map(Record::Node),
            Kind::Assets => asset(&mut fields).map(Record::Asset),
            Kind::Rules => rule(&mut fields).map(Record::Rule),
        };
        if let (Some(record), false) = (record, fields.failed) {
            rows.push(Row { line, record });
        } else if let Some(name) = key_name {
            let name = name.strip_suffix('/').unwrap_or(&name);
            broken.insert(fold(name));
        }
    }
    progress(total, total);
    rows
}

static EMPTY: Cell = Cell::Empty;

/// The cells of one row, read by column.
struct Fields<'a> {
    line: usize,
    cells: Vec<Cell>,
    map: &'a ColumnMap,
    problems: &'a mut Problems,
    failed: bool,
}

impl Fields<'_> {
    /// The column's value read by `read`; `None` when the file has no such column, or
    /// when the cell is wrong (then a problem is recorded).
    fn get<T>(&mut self, col: Col, read: impl FnOnce(&Cell) -> Result<T, String>) -> Option<T> {
        let (index, header) = self.map.find(col)?;
        let cell = self.cells.get(index).unwrap_or(&EMPTY);
        match read(cell) {
            Ok(value) => Some(value),
            Err(message) => {
                self.problems
                    .push(Problem::cell(self.line, header, message));
                self.failed = true;
                None
            }
        }
    }

    /// [`Fields::get`], taking the cell (each column is read once).
    fn take<T>(&mut self, col: Col, read: impl FnOnce(Cell) -> Result<T, String>) -> Option<T> {
        let (index, header) = self.map.find(col)?;
        let cell = self
            .cells
            .get_mut(index)
            .map_or(Cell::Empty, |cell| std::mem::replace(cell, Cell::Empty));
        match read(cell) {
            Ok(value) => Some(value),
            Err(message) => {
                self.problems
                    .push(Problem::cell(self.line, header, message));
                self.failed = true;
                None
            }
        }
    }

    fn id(&mut self) -> Option<Id> {
        self.get(Col::Id, |cell| {
            let text = cell::text(cell)?;
            if text.is_empty() {
                return Ok(None);
            }
            Id::parse(&text)
                .map(Some)
                .ok_or_else(|| format!("`{}` is not an id (a UUID)", cell::shorten(&text)))
        })
        .flatten()
    }

    /// The column naming the entity: required, non-empty.
    fn key(&mut self, col: Col) -> Option<String> {
        self.take(col, |cell| {
            let text = cell::into_text(cell)?;
            if text.is_empty() {
                return Err("empty; every row needs one".to_owned());
            }
            check_name(&text)?;
            Ok(text)
        })
    }

    /// A short text (a name-like value); empty is `None`.
    fn name_text(&mut self, col: Col) -> Option<Option<String>> {
        self.take(col, |cell| {
            let text = cell::into_text(cell)?;
            if text.is_empty() {
                return Ok(None);
            }
            check_name(&text)?;
            Ok(Some(text))
        })
    }

    /// Free text, kept as written (not trimmed).
    fn free_text(&mut self, col: Col) -> Option<String> {
        self.take(col, |cell| {
            let text = cell::into_raw_text(cell)?;
            check_text(&text)?;
            Ok(text)
        })
    }

    /// Free text, trimmed.
    fn short_text(&mut self, col: Col) -> Option<String> {
        self.take(col, |cell| {
            let text = cell::into_text(cell)?;
            check_text(&text)?;
            Ok(text)
        })
    }

    fn boolean(&mut self, col: Col, default: bool) -> Option<bool> {
        self.get(col, |cell| Ok(cell::boolean(cell)?.unwrap_or(default)))
    }

    fn time(&mut self, col: Col) -> Option<Option<Time>> {
        self.get(col, cell::time)
    }

    fn source(&mut self) -> Option<Source> {
        self.get(Col::Source, |cell| {
            let text = cell::text(cell)?;
            if text.is_empty() {
                return Ok(Source::Import);
            }
            text.parse::<Source>().map_err(|e| e.to_string())
        })
    }

    fn references(&mut self, col: Col) -> Option<Vec<Reference>> {
        self.get(col, cell::references)
    }
}

/// A name as the engine accepts one: no control characters, not too long.
fn check_name(text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters (line breaks, tabs)".to_owned());
    }
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("is longer than {MAX_TEXT_CHARS} characters"));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

fn role(f: &mut Fields<'_>) -> Option<RoleRecord> {
    Some(RoleRecord {
        id: f.id(),
        permissions: f.get(Col::Permissions, |cell| {
            let mut permissions = cell::texts(cell)?;
            for permission in &permissions {
                check_name(permission).map_err(|e| format!("`{permission}` {e}"))?;
            }
            permissions.sort();
            permissions.dedup();
            Ok(permissions)
        }),
        description: f.free_text(Col::Description),
        name: f.key(Col::Name)?,
    })
}

fn user(f: &mut Fields<'_>) -> Option<UserRecord> {
    Some(UserRecord {
        id: f.id(),
        name: f.take(Col::FullName, |cell| {
            let text = cell::into_text(cell)?;
            check_name(&text)?;
            Ok(text)
        }),
        email: f.take(Col::Email, |cell| {
            let text = cell::into_text(cell)?;
            if text.is_empty() {
                return Ok(None);
            }
            check_name(&text)?;
            let (local, domain) = text.split_once('@').unwrap_or(("", ""));
            if local.is_empty() || domain.is_empty() || text.contains(char::is_whitespace) {
                return Err(format!("`{text}` is not an email address"));
            }
            Ok(Some(text))
        }),
        phone: f.name_text(Col::Phone),
        active: f.boolean(Col::Active, true),
        expires_at: f.time(Col::ExpiresAt),
        source: f.source(),
        external_id: f.name_text(Col::ExternalId),
        system_roles: f.get(Col::SystemRoles, |cell| {
            let roles = cell::texts(cell)?;
            Ok(if roles.is_empty() {
                vec!["user".to_owned()]
            } else {
                roles
            })
        }),
        mfa: f.get(Col::Mfa, |cell| {
            Ok(cell::word::<Mfa>(cell, "disabled, enabled, forced")?.unwrap_or_default())
        }),
        must_change_password: f.boolean(Col::MustChangePassword, false),
        description: f.free_text(Col::Description),
        username: f.key(Col::Username)?,
    })
}

fn group(f: &mut Fields<'_>) -> Option<GroupRecord> {
    Some(GroupRecord {
        id: f.id(),
        members: f.get(Col::Members, |cell| cell::memberships(cell, "user")),
        subgroups: f.get(Col::Subgroups, |cell| cell::memberships(cell, "group")),
        roles: f.get(Col::Roles, cell::role_assignments),
        source: f.source(),
        external_id: f.name_text(Col::ExternalId),
        description: f.free_text(Col::Description),
        name: f.key(Col::Name)?,
    })
}

fn node(f: &mut Fields<'_>) -> Option<NodeRecord> {
    let id = f.id();
    let description = f.free_text(Col::Description);
    let path = f.get(Col::Path, |cell| {
        let text = cell::text(cell)?;
        let path = text.strip_suffix('/').unwrap_or(&text);
        if path.is_empty() {
            return Err("empty; every row needs a path such as `/Default/Prod`".to_owned());
        }
        if !path.starts_with('/') {
            return Err(format!(
                "`{path}` is not a path; write it from the root, such as `/Default/Prod`"
            ));
        }
        for segment in path.split('/').skip(1) {
            if segment.is_empty() || segment.trim() != segment {
                return Err(format!(
                    "`{path}` has an empty name or a name with surrounding spaces"
                ));
            }
            check_name(segment)?;
        }
        Ok(path.to_owned())
    })?;
    Some(NodeRecord {
        id,
        path,
        description,
    })
}

fn asset(f: &mut Fields<'_>) -> Option<AssetRecord> {
    Some(AssetRecord {
        id: f.id(),
        address: f.short_text(Col::Address),
        platform: f.short_text(Col::Platform),
        protocols: f.get(Col::Protocols, cell::protocols),
        nodes: f.references(Col::Nodes),
        accounts: f.get(Col::Accounts, cell::accounts),
        active: f.boolean(Col::Active, true),
        description: f.free_text(Col::Description),
        name: f.key(Col::Name)?,
    })
}

fn rule(f: &mut Fields<'_>) -> Option<RuleRecord> {
    Some(RuleRecord {
        id: f.id(),
        effect: f.get(Col::Effect, |cell| {
            Ok(cell::word::<Effect>(cell, "allow, deny")?.unwrap_or_default())
        }),
        users: f.references(Col::Users),
        groups: f.references(Col::Groups),
        assets: f.references(Col::Assets),
        nodes: f.references(Col::Nodes),
        accounts: f.get(Col::AccountSelectors, cell::selectors),
        protocols: f.get(Col::ProtocolNames, cell::protocol_filter),
        actions: f.get(Col::Actions, cell::actions),
        starts_at: f.time(Col::StartsAt),
        expires_at: f.time(Col::ExpiresAt),
        active: f.boolean(Col::Active, true),
        description: f.free_text(Col::Description),
        name: f.key(Col::Name)?,
    })
}
