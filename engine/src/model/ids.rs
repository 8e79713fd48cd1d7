//! Identifiers, sources and the kinds of entity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The stable identifier of any entity: a UUID chosen by the engine on creation (or
/// taken from an import that carries one).
///
/// New ids are version 7 (RFC 9562): a millisecond timestamp, then 74 random bits.
/// They are as unique as random ones, and the store keys tables by id, so ids that
/// grow with time land next to each other in the B-trees: a commit of many creates
/// dirties a few pages at the right edge instead of one page per create. Ids are
/// names, not secrets; nothing may rely on them being unguessable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(Uuid);

impl Id {
    /// The nil UUID: the operation log records sign-in events of unknown names under
    /// it, so no entity may hold it.
    pub const NIL: Id = Id(Uuid::nil());
    /// The max UUID (all ones), kept back beside the nil one.
    pub const MAX: Id = Id(Uuid::max());

    /// Whether the engine keeps this id for itself, so no entity may be given it.
    pub const fn is_reserved(self) -> bool {
        let value = self.0.as_u128();
        value == 0 || value == u128::MAX
    }

    /// A new id (UUID version 7).
    pub fn random() -> Id {
        Id(Uuid::now_v7())
    }

    pub const fn from_u128(value: u128) -> Id {
        Id(Uuid::from_u128(value))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Id {
        Id(Uuid::from_bytes(bytes))
    }

    /// The id written in `text`, when `text` is a UUID in any of its usual spellings.
    pub fn parse(text: &str) -> Option<Id> {
        if text.len() < 32 {
            return None;
        }
        Uuid::parse_str(text).ok().map(Id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where an entity (or a membership) came from. A sync only touches what its own
/// source wrote.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Source {
    #[default]
    Local,
    Scim,
    Import,
    /// `ldap:<name>`: written by the LDAP source with that name.
    Ldap(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source `{0}` (expected local, scim, import or ldap:<name>)")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(text: &str) -> Result<Source, UnknownSource> {
        match text {
            "local" => Ok(Source::Local),
            "scim" => Ok(Source::Scim),
            "import" => Ok(Source::Import),
            _ => match text.strip_prefix("ldap:") {
                Some(name) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                    Ok(Source::Ldap(name.into()))
                }
                _ => Err(UnknownSource(text.to_owned())),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local => f.write_str("local"),
            Source::Scim => f.write_str("scim"),
            Source::Import => f.write_str("import"),
            Source::Ldap(name) => write!(f, "ldap:{name}"),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Source, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The kinds of entity the engine stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    User,
    Group,
    Node,
    Asset,
    Rule,
    Role,
    Token,
}

impl EntityKind {
    pub const ALL: [EntityKind; 7] = [
        EntityKind::User,
        EntityKind::Group,
        EntityKind::Node,
        EntityKind::Asset,
        EntityKind::Rule,
        EntityKind::Role,
        EntityKind::Token,
    ];

    /// The word used in messages: `user`, `group`, …
    pub const fn noun(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Group => "group",
            EntityKind::Node => "node",
            EntityKind::Asset => "asset",
            EntityKind::Rule => "rule",
            EntityKind::Role => "role",
            EntityKind::Token => "token",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}
