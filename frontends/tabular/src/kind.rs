//! What a sheet holds (its kind), how it is encoded (its format), and the limits of a
//! file.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use portcullis_engine::EntityKind;

/// The most data rows (besides the header) one file may hold.
pub const MAX_ROWS: usize = 1_000_000;

/// The most problems one refusal lists; past it, a last problem says how many more
/// there were. A file with a million bad rows should not produce a million messages.
pub const MAX_PROBLEMS: usize = 1_000;

/// The most bytes an XLSX workbook may unpack to, all its parts together. A workbook
/// of [`MAX_ROWS`] rows of the widest kind stays well below it.
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;

/// The kinds of entity a sheet can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Roles,
    Users,
    Groups,
    Nodes,
    Assets,
    Rules,
}

impl Kind {
    /// Every kind, in the order a whole estate is imported: each refers only to kinds
    /// before it (users and groups to roles, groups to users, assets to nodes, rules
    /// to all of them).
    pub const ALL: [Kind; 6] = [
        Kind::Roles,
        Kind::Nodes,
        Kind::Users,
        Kind::Groups,
        Kind::Assets,
        Kind::Rules,
    ];

    /// `users`, `groups`, … (what `--kind` and the HTTP path take).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Roles => "roles",
            Kind::Users => "users",
            Kind::Groups => "groups",
            Kind::Nodes => "nodes",
            Kind::Assets => "assets",
            Kind::Rules => "rules",
        }
    }

    pub const fn entity_kind(self) -> EntityKind {
        match self {
            Kind::Roles => EntityKind::Role,
            Kind::Users => EntityKind::User,
            Kind::Groups => EntityKind::Group,
            Kind::Nodes => EntityKind::Node,
            Kind::Assets => EntityKind::Asset,
            Kind::Rules => EntityKind::Rule,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind `{0}` (expected roles, users, groups, nodes, assets or rules)")]
pub struct UnknownKind(pub String);

/// `users` or `user`, case-insensitively.
impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Kind, UnknownKind> {
        let lower = text.trim().to_ascii_lowercase();
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        match singular {
            "role" => Ok(Kind::Roles),
            "user" => Ok(Kind::Users),
            "group" => Ok(Kind::Groups),
            "node" => Ok(Kind::Nodes),
            "asset" => Ok(Kind::Assets),
            "rule" => Ok(Kind::Rules),
            _ => Err(UnknownKind(text.to_owned())),
        }
    }
}

/// How a sheet is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated values, UTF-8 (a byte-order mark is accepted).
    Csv,
    /// An Office Open XML workbook (Excel 2007 and later).
    Xlsx,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}` (expected csv or xlsx)")]
pub struct UnknownFormat(pub String);

impl Format {
    pub const fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    /// The file name extension, without the dot.
    pub const fn extension(self) -> &'static str {
        self.name()
    }

    /// The media type to send a file of this format with.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }

    /// The format a file name's extension names (`.csv`, `.xlsx`), if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        path.extension()?.to_str()?.parse().ok()
    }

    /// The format a request's `Content-Type` names, parameters ignored: `text/csv`,
    /// `application/csv`, or the XLSX media type.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let media = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "text/csv" | "application/csv" => Some(Format::Csv),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
                Some(Format::Xlsx)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(text: &str) -> Result<Format, UnknownFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            _ => Err(UnknownFormat(text.to_owned())),
        }
    }
}

/// Limits on what one file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// The most data rows; more is refused. Defaults to [`MAX_ROWS`].
    pub max_rows: usize,
    /// The most problems listed. Defaults to [`MAX_PROBLEMS`].
    pub max_problems: usize,
    /// The most bytes an XLSX workbook may unpack to (every part together); a part
    /// that unpacks to more than 100 times its packed size is refused too. Defaults
    /// to [`MAX_UNPACKED_BYTES`].
    pub max_unpacked_bytes: u64,
}

impl Default for ParseOptions {
    fn default() -> ParseOptions {
        ParseOptions {
            max_rows: MAX_ROWS,
            max_problems: MAX_PROBLEMS,
            max_unpacked_bytes: MAX_UNPACKED_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_singular_and_plural() {
        assert_eq!("Users".parse::<Kind>().unwrap(), Kind::Users);
        assert_eq!("rule".parse::<Kind>().unwrap(), Kind::Rules);
        assert_eq!("ROLES".parse::<Kind>().unwrap(), Kind::Roles);
        assert!("tokens".parse::<Kind>().is_err());
    }

    #[test]
    fn formats_from_names_paths_and_media_types() {
        assert_eq!(
            Format::from_path(Path::new("a/users.XLSX")),
            Some(Format::Xlsx)
        );
        assert_eq!(Format::from_path(Path::new("users")), None);
        assert_eq!(
            Format::from_content_type("text/csv; charset=utf-8"),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_content_type(Format::Xlsx.content_type()),
            Some(Format::Xlsx)
        );
        assert_eq!(Format::from_content_type("application/json"), None);
    }
}
