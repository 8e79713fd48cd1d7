//! Writing sheets: every entity of a kind, or a template with the header and one
//! example row. What an export writes, an import reads back to the same entities.
//!
//! No secret is ever written: entities carry none (password and token hashes live
//! apart in the store), and no column holds one.

use std::io::Write;

use portcullis_engine::{
    AccountSpec, Actions, EntityKind, MemberSpec, ProtocolFilter, SecretKind, Snapshot, Spec,
    SubgroupSpec, Time,
};
use rust_xlsxwriter::{Format as CellFormat, Workbook, Worksheet};

use crate::cell::{escape, join};
use crate::columns::columns;
use crate::error::TabularError;
use crate::kind::{Format, Kind};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Writes every entity of `kind` in `snapshot` as a sheet in `format`.
///
/// CSV files start with a UTF-8 byte-order mark, so that Excel reads them as UTF-8,
/// and a value that starts like a formula gets a leading `'` (see the README).
pub fn export(
    snapshot: &Snapshot,
    kind: Kind,
    format: Format,
    out: &mut impl Write,
) -> Result<(), TabularError> {
    let mut sheet = Sheet::new(kind, format, out)?;
    match kind {
        Kind::Roles => {
            // The built-in roles are in every store (each with its own id): leave them out.
            for role in snapshot.estate().roles.into_iter().filter(|r| !r.builtin) {
                sheet.row(&[
                    role.id.to_string(),
                    role.name,
                    join(&role.permissions),
                    role.description,
                ])?;
            }
        }
        Kind::Users => {
            for user in snapshot.estate().users {
                sheet.row(&[
                    user.id.to_string(),
                    user.username,
                    user.name,
                    user.email.unwrap_or_default(),
                    user.phone.unwrap_or_default(),
                    user.active.to_string(),
                    time(user.expires_at),
                    user.source.to_string(),
                    user.external_id.unwrap_or_default(),
                    join(&user.system_roles),
                    word(&user.mfa),
                    user.must_change_password.to_string(),
                    user.description,
                ])?;
            }
        }
        Kind::Groups => {
            for group in snapshot.estate().groups {
                let Ok(Spec::Group(spec)) = snapshot.spec(EntityKind::Group, &group.id.to_string())
                else {
                    continue;
                };
                let members: Vec<(String, Option<Time>)> = spec
                    .members
                    .iter()
                    .map(|m| match m {
                        MemberSpec::Name(user) => (user.clone(), None),
                        MemberSpec::Detailed {
                            user, expires_at, ..
                        } => (user.clone(), *expires_at),
                    })
                    .collect();
                let subgroups: Vec<(String, Option<Time>)> = spec
                    .subgroups
                    .iter()
                    .map(|m| match m {
                        SubgroupSpec::Name(group) => (group.clone(), None),
                        SubgroupSpec::Detailed {
                            group, expires_at, ..
                        } => (group.clone(), *expires_at),
                    })
                    .collect();
                let roles: Vec<String> = spec
                    .roles
                    .iter()
                    .flat_map(|assignment| {
                        assignment.roles.iter().map(|role| {
                            if assignment.scope == portcullis_engine::GLOBAL_SCOPE {
                                role.clone()
                            } else {
                                format!("{role} on {}", assignment.scope)
                            }
                        })
                    })
                    .collect();
                sheet.row(&[
                    group.id.to_string(),
                    spec.name,
                    memberships(&members, "user"),
                    memberships(&subgroups, "group"),
                    join(&roles),
                    spec.source.to_string(),
                    spec.external_id.unwrap_or_default(),
                    spec.description,
                ])?;
            }
        }
        Kind::Nodes => {
            let mut nodes: Vec<(String, String, String)> = snapshot
                .estate()
                .nodes
                .into_iter()
                .filter_map(|node| {
                    let Ok(Spec::Node(spec)) =
                        snapshot.spec(EntityKind::Node, &node.id.to_string())
                    else {
                        return None;
                    };
                    Some((
                        format!("{}/{}", spec.parent, spec.name),
                        node.id.to_string(),
                        spec.description,
                    ))
                })
                .collect();
            // Parents before their children: a path sorts before every path it prefixes.
            nodes.sort();
            for (path, id, description) in nodes {
                sheet.row(&[id, path, description])?;
            }
        }
        Kind::Assets => {
            for asset in snapshot.estate().assets {
                let Ok(Spec::Asset(spec)) = snapshot.spec(EntityKind::Asset, &asset.id.to_string())
                else {
                    continue;
                };
                let protocols: Vec<String> =
                    spec.protocols.iter().map(ToString::to_string).collect();
                let accounts: Vec<String> = spec.accounts.iter().map(account).collect();
                sheet.row(&[
                    asset.id.to_string(),
                    spec.name,
                    spec.address,
                    spec.platform,
                    join(&protocols),
                    join(&spec.nodes),
                    join(&accounts),
                    spec.active.to_string(),
                    spec.description,
                ])?;
            }
        }
        Kind::Rules => {
            for rule in snapshot.estate().rules {
                let Ok(Spec::Rule(spec)) = snapshot.spec(EntityKind::Rule, &rule.id.to_string())
                else {
                    continue;
                };
                let selectors: Vec<String> =
                    spec.accounts.iter().map(ToString::to_string).collect();
                sheet.row(&[
                    rule.id.to_string(),
                    spec.name,
                    word(&spec.effect),
                    join(&spec.users),
                    join(&spec.groups),
                    join(&spec.assets),
                    join(&spec.nodes),
                    join(&selectors),
                    protocol_names(&spec.protocols),
                    action_names(spec.actions),
                    time(spec.starts_at),
                    time(spec.expires_at),
                    spec.active.to_string(),
                    spec.description,
                ])?;
            }
        }
    }
    sheet.finish()
}

/// Writes an empty sheet of `kind`: the header, and one example row to overwrite.
pub fn template(kind: Kind, format: Format, out: &mut impl Write) -> Result<(), TabularError> {
    let mut sheet = Sheet::new(kind, format, out)?;
    let example: Vec<String> = columns(kind)
        .iter()
        .map(|column| column.example.to_owned())
        .collect();
    sheet.row(&example)?;
    sheet.finish()
}

fn time(time: Option<Time>) -> String {
    time.map(|t| t.to_string()).unwrap_or_default()
}

/// A closed-set value by its serde name (`disabled`, `deny`, `ssh_key`).
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

fn protocol_names(filter: &ProtocolFilter) -> String {
    if filter.is_empty() {
        "none".to_owned()
    } else {
        join(&filter.names())
    }
}

fn action_names(actions: Actions) -> String {
    if actions == Actions::ALL {
        "all".to_owned()
    } else if actions.is_empty() {
        "none".to_owned()
    } else {
        join(&actions.names().collect::<Vec<_>>())
    }
}

/// `root (privileged ssh_key)`.
fn account(account: &AccountSpec) -> String {
    let mut words = Vec::new();
    if account.privileged {
        words.push("privileged".to_owned());
    }
    if account.secret_kind != SecretKind::Password {
        words.push(word(&account.secret_kind));
    }
    if words.is_empty() && !account.username.ends_with(')') {
        account.username.clone()
    } else {
        format!("{} ({})", account.username, words.join(" "))
    }
}

/// Members as `alice, bob until 2027-01-01T00:00:00Z`; as a JSON array of objects when
/// a name could be misread in that form.
fn memberships(list: &[(String, Option<Time>)], key: &str) -> String {
    let odd = |name: &str| name.contains(" until ") || name.ends_with(')');
    if list.iter().any(|(name, _)| odd(name)) {
        let objects: Vec<serde_json::Value> = list
            .iter()
            .map(|(name, expires_at)| {
                let mut object = serde_json::Map::new();
                object.insert(key.to_owned(), serde_json::Value::String(name.clone()));
                if let Some(expires_at) = expires_at {
                    object.insert(
                        "expires_at".to_owned(),
                        serde_json::Value::String(expires_at.to_string()),
                    );
                }
                serde_json::Value::Object(object)
            })
            .collect();
        return serde_json::Value::Array(objects).to_string();
    }
    let items: Vec<String> = list
        .iter()
        .map(|(name, expires_at)| match expires_at {
            Some(expires_at) => format!("{name} until {expires_at}"),
            None => name.clone(),
        })
        .collect();
    join(&items)
}

/// A sheet being written, in either format.
enum Sheet<'a, W: Write> {
    Csv(Box<csv::Writer<&'a mut W>>),
    Xlsx {
        out: &'a mut W,
        worksheet: Box<Worksheet>,
        next_row: u32,
        widths: Vec<usize>,
    },
}

/// The widest a column is made, in characters.
const MAX_WIDTH: usize = 60;

impl<'a, W: Write> Sheet<'a, W> {
    fn new(kind: Kind, format: Format, out: &'a mut W) -> Result<Sheet<'a, W>, TabularError> {
        let headers: Vec<&str> = columns(kind).iter().map(|column| column.header).collect();
        match format {
            Format::Csv => {
                out.write_all(UTF8_BOM)?;
                let mut writer = csv::WriterBuilder::new().from_writer(out);
                writer.write_record(&headers)?;
                Ok(Sheet::Csv(Box::new(writer)))
            }
            Format::Xlsx => {
                let mut worksheet = Worksheet::new();
                worksheet.set_name(kind.name())?;
                let bold = CellFormat::new().set_bold();
                for (col, header) in headers.iter().enumerate() {
                    worksheet.write_string_with_format(0, col as u16, *header, &bold)?;
                }
                worksheet.set_freeze_panes(1, 0)?;
                Ok(Sheet::Xlsx {
                    out,
                    worksheet: Box::new(worksheet),
                    next_row: 1,
                    widths: headers.iter().map(|h| h.chars().count() + 2).collect(),
                })
            }
        }
    }

    fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> Result<(), TabularError> {
        match self {
            Sheet::Csv(writer) => {
                for cell in cells {
                    writer.write_field(escape(cell.as_ref(), Format::Csv).as_bytes())?;
                }
                writer.write_record(None::<&[u8]>)?;
            }
            Sheet::Xlsx {
                worksheet,
                next_row,
                widths,
                ..
            } => {
                for (col, cell) in cells.iter().enumerate() {
                    let value = escape(cell.as_ref(), Format::Xlsx);
                    if !value.is_empty() {
                        worksheet.write_string(*next_row, col as u16, value.as_ref())?;
                        if let Some(width) = widths.get_mut(col) {
                            *width = (*width).max(value.chars().count().min(MAX_WIDTH));
                        }
                    }
                }
                *next_row += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), TabularError> {
        match self {
            Sheet::Csv(mut writer) => {
                writer.flush()?;
                Ok(())
            }
            Sheet::Xlsx {
                out,
                mut worksheet,
                widths,
                ..
            } => {
                for (col, width) in widths.into_iter().enumerate() {
                    worksheet.set_column_width(col as u16, width as f64)?;
                }
                let mut workbook = Workbook::new();
                workbook.push_worksheet(*worksheet);
                let bytes = workbook.save_to_buffer()?;
                out.write_all(&bytes)?;
                out.flush()?;
                Ok(())
            }
        }
    }
}
