//! The columns of each kind of sheet: header, accepted aliases (JumpServer's among
//! them), whether the column is required, and an example value for templates.
//!
//! INVARIANT: `README.md` documents every column listed here (a test holds it to that).

use crate::kind::Kind;

/// Which field a column fills. One variant per distinct meaning: the user sheet's
/// `Name` (a display name) is not the group sheet's `Name` (the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Col {
    Id,
    Username,
    FullName,
    Name,
    Path,
    Email,
    Phone,
    Active,
    ExpiresAt,
    Source,
    ExternalId,
    SystemRoles,
    Mfa,
    MustChangePassword,
    Description,
    Members,
    Subgroups,
    Roles,
    Address,
    Platform,
    Protocols,
    Nodes,
    Accounts,
    Effect,
    Users,
    Groups,
    Assets,
    AccountSelectors,
    ProtocolNames,
    Actions,
    StartsAt,
    Permissions,
}

/// One column of a sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header an export writes.
    pub header: &'static str,
    /// Other headers an import accepts for it. Headers are compared ignoring case and
    /// every character but letters and digits (`Expires at`, `expires_at` and
    /// `EXPIRES-AT` are the same header; so are `Name*` and `Name`).
    pub aliases: &'static [&'static str],
    /// Whether every file must have it (the column that names the entity).
    pub required: bool,
    /// The value the template's example row holds.
    pub example: &'static str,
    pub(crate) col: Col,
}

const fn column(
    col: Col,
    header: &'static str,
    aliases: &'static [&'static str],
    example: &'static str,
) -> Column {
    Column {
        header,
        aliases,
        required: false,
        example,
        col,
    }
}

impl Column {
    /// The same column, which every row must fill: the sheet's key.
    const fn required(self) -> Column {
        Column {
            required: true,
            ..self
        }
    }
}

/// The columns several kinds share.
const ID: Column = column(Col::Id, "ID", &[], "");
const SOURCE: Column = column(Col::Source, "Source", &[], "import");
const EXTERNAL_ID: Column = column(Col::ExternalId, "External ID", &[], "");

const fn description(example: &'static str) -> Column {
    column(
        Col::Description,
        "Description",
        &["Comment", "Note"],
        example,
    )
}

const ROLES: &[Column] = &[
    ID,
    column(Col::Name, "Name", &["Role", "Role name"], "lab-operator").required(),
    column(
        Col::Permissions,
        "Permissions",
        &["Permission"],
        "assets.view, rules.view, decisions.check",
    ),
    description("reads assets and rules, asks for decisions"),
];

const USERS: &[Column] = &[
    ID,
    column(Col::Username, "Username", &["Login"], "river").required(),
    column(
        Col::FullName,
        "Name",
        &["Full name", "Display name"],
        "River Tam",
    ),
    column(Col::Email, "Email", &["Mail"], "river@example.com"),
    column(Col::Phone, "Phone", &["Mobile"], "+1 555 0100"),
    column(Col::Active, "Active", &["Is active", "Is valid"], "yes"),
    column(
        Col::ExpiresAt,
        "Expires at",
        &["Date expired", "Expires", "Expiry"],
        "2030-01-01T00:00:00Z",
    ),
    SOURCE,
    EXTERNAL_ID,
    column(
        Col::SystemRoles,
        "System roles",
        &["System role", "Role", "Roles"],
        "user",
    ),
    column(Col::Mfa, "MFA", &["MFA level"], "disabled"),
    column(
        Col::MustChangePassword,
        "Must change password",
        &["Need update password"],
        "no",
    ),
    description("on-call DBA"),
];

const GROUPS: &[Column] = &[
    ID,
    column(Col::Name, "Name", &["Group", "Group name"], "lab-team").required(),
    column(
        Col::Members,
        "Members",
        &["Users", "User"],
        "river until 2030-01-01T00:00:00Z",
    ),
    column(Col::Subgroups, "Subgroups", &["Child groups", "Groups"], ""),
    column(
        Col::Roles,
        "Roles",
        &["Role assignments"],
        "system-auditor on *",
    ),
    SOURCE,
    EXTERNAL_ID,
    description("the lab's engineers"),
];

const NODES: &[Column] = &[
    ID,
    column(
        Col::Path,
        "Path",
        &["Full value", "Full path", "Node"],
        "/Default/Lab",
    )
    .required(),
    description("lab machines"),
];

const ASSETS: &[Column] = &[
    ID,
    column(Col::Name, "Name", &["Hostname", "Asset"], "lab-01").required(),
    column(Col::Address, "Address", &["IP", "Host"], "10.0.0.5"),
    column(Col::Platform, "Platform", &[], "linux"),
    column(
        Col::Protocols,
        "Protocols",
        &["Protocol"],
        "ssh/22, sftp/22",
    ),
    column(Col::Nodes, "Nodes", &["Node"], "/Default/Lab"),
    column(
        Col::Accounts,
        "Accounts",
        &["Account"],
        "root (privileged), deploy (ssh_key)",
    ),
    column(Col::Active, "Active", &["Is active"], "yes"),
    description("lab build machine"),
];

const RULES: &[Column] = &[
    ID,
    column(Col::Name, "Name", &["Rule", "Permission"], "lab-ssh").required(),
    column(Col::Effect, "Effect", &[], "allow"),
    column(Col::Users, "Users", &["User"], "river"),
    column(Col::Groups, "Groups", &["User groups", "Group"], "lab-team"),
    column(Col::Assets, "Assets", &["Asset"], "lab-01"),
    column(Col::Nodes, "Nodes", &["Node"], "/Default/Lab"),
    column(
        Col::AccountSelectors,
        "Accounts",
        &["Account"],
        "@ALL, !root",
    ),
    column(Col::ProtocolNames, "Protocols", &["Protocol"], "ssh, sftp"),
    column(Col::Actions, "Actions", &["Action"], "connect, transfer"),
    column(
        Col::StartsAt,
        "Starts at",
        &["Date start", "Starts"],
        "2026-01-01T00:00:00Z",
    ),
    column(
        Col::ExpiresAt,
        "Expires at",
        &["Date expired", "Expires"],
        "2030-01-01T00:00:00Z",
    ),
    column(Col::Active, "Active", &["Is active"], "yes"),
    description("the lab team may reach the lab"),
];

/// The columns of a kind's sheet, in the order an export writes them.
pub fn columns(kind: Kind) -> &'static [Column] {
    match kind {
        Kind::Roles => ROLES,
        Kind::Users => USERS,
        Kind::Groups => GROUPS,
        Kind::Nodes => NODES,
        Kind::Assets => ASSETS,
        Kind::Rules => RULES,
    }
}

/// A header reduced to lowercase letters and digits, for comparison.
pub(crate) fn normalize_header(header: &str) -> String {
    header
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The column a header names in a kind's sheet.
pub(crate) fn find_column(kind: Kind, header: &str) -> Option<&'static Column> {
    let wanted = normalize_header(header);
    if wanted.is_empty() {
        return None;
    }
    columns(kind).iter().find(|column| {
        normalize_header(column.header) == wanted
            || column
                .aliases
                .iter()
                .any(|alias| normalize_header(alias) == wanted)
    })
}

/// The header an export writes for a column of a kind.
pub(crate) fn header_of(kind: Kind, col: Col) -> &'static str {
    columns(kind)
        .iter()
        .find(|column| column.col == col)
        .map_or("?", |column| column.header)
}

/// The column naming the entity of a sheet of `kind` (the one every file must have).
pub(crate) fn key_col(kind: Kind) -> Col {
    match kind {
        Kind::Users => Col::Username,
        Kind::Nodes => Col::Path,
        Kind::Roles | Kind::Groups | Kind::Assets | Kind::Rules => Col::Name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_aliases_are_unambiguous() {
        for kind in Kind::ALL {
            let mut seen = std::collections::HashSet::new();
            for column in columns(kind) {
                for name in std::iter::once(&column.header).chain(column.aliases) {
                    assert!(
                        seen.insert(normalize_header(name)),
                        "{kind}: `{name}` is used twice"
                    );
                }
            }
            assert_eq!(
                columns(kind).iter().filter(|c| c.required).count(),
                1,
                "{kind} has one key column"
            );
        }
    }

    #[test]
    fn headers_match_loosely() {
        let find = |header| find_column(Kind::Users, header).map(|c| c.header);
        assert_eq!(find("expires_at"), Some("Expires at"));
        assert_eq!(find("EXPIRES-AT"), Some("Expires at"));
        assert_eq!(find("Username*"), Some("Username"));
        assert_eq!(find("Date expired"), Some("Expires at"));
        assert_eq!(find("Password"), None);
        assert_eq!(find("***"), None);
    }
}
