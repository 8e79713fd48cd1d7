//! Actions as a bit set, with JumpServer's values so exports stay compatible.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of actions. The bit values are JumpServer's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Actions(u8);

/// An action name that is neither a single action nor one of the named sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown action `{0}` (expected connect, upload, download, copy, paste, delete, share, transfer, clipboard or all)"
)]
pub struct UnknownAction(pub String);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const CONNECT: Actions = Actions(1);
    pub const UPLOAD: Actions = Actions(2);
    pub const DOWNLOAD: Actions = Actions(4);
    pub const COPY: Actions = Actions(8);
    pub const PASTE: Actions = Actions(16);
    pub const DELETE: Actions = Actions(32);
    pub const SHARE: Actions = Actions(64);
    /// upload + download + delete
    pub const TRANSFER: Actions = Actions(2 | 4 | 32);
    /// copy + paste
    pub const CLIPBOARD: Actions = Actions(8 | 16);
    pub const ALL: Actions = Actions(127);

    /// The single actions, in bit order, with their names.
    pub const SINGLE: [(&'static str, Actions); 7] = [
        ("connect", Actions::CONNECT),
        ("upload", Actions::UPLOAD),
        ("download", Actions::DOWNLOAD),
        ("copy", Actions::COPY),
        ("paste", Actions::PASTE),
        ("delete", Actions::DELETE),
        ("share", Actions::SHARE),
    ];

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set with these JumpServer bits; bits beyond `all` are dropped.
    pub const fn from_bits(bits: u8) -> Actions {
        Actions(bits & Actions::ALL.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every action of `other` is in `self`.
    pub const fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub const fn difference(self, other: Actions) -> Actions {
        Actions(self.0 & !other.0)
    }

    pub const fn intersection(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// One name: a single action or a named set (`transfer`, `clipboard`, `all`).
    /// Names are matched case-insensitively.
    pub fn parse_name(name: &str) -> Result<Actions, UnknownAction> {
        let lower = name.trim().to_ascii_lowercase();
        if let Some((_, action)) = Actions::SINGLE.iter().find(|(n, _)| *n == lower) {
            return Ok(*action);
        }
        match lower.as_str() {
            "transfer" => Ok(Actions::TRANSFER),
            "clipboard" => Ok(Actions::CLIPBOARD),
            "all" => Ok(Actions::ALL),
            _ => Err(UnknownAction(name.to_owned())),
        }
    }

    /// The union of several names.
    pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<Actions, UnknownAction> {
        names.iter().try_fold(Actions::NONE, |set, name| {
            Ok(set.union(Actions::parse_name(name.as_ref())?))
        })
    }

    /// The names of the single actions in the set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Actions::SINGLE
            .into_iter()
            .filter(move |(_, action)| self.contains(*action))
            .map(|(name, _)| name)
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A list of single action names in JSON; the bit value in binary formats.
impl Serialize for Actions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_seq(self.names())
        } else {
            serializer.serialize_u8(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Actions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Actions, D::Error> {
        if deserializer.is_human_readable() {
            let names = Vec::<String>::deserialize(deserializer)?;
            Actions::parse_names(&names).map_err(serde::de::Error::custom)
        } else {
            u8::deserialize(deserializer).map(Actions::from_bits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_jumpservers() {
        let bits: Vec<u8> = Actions::SINGLE.iter().map(|(_, a)| a.bits()).collect();
        assert_eq!(bits, [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(Actions::parse_name("transfer").unwrap().bits(), 38);
        assert_eq!(Actions::parse_name("clipboard").unwrap().bits(), 24);
        assert_eq!(Actions::parse_name("ALL").unwrap().bits(), 127);
    }

    #[test]
    fn names_expand_sets() {
        let set = Actions::parse_names(&["connect", "clipboard"]).unwrap();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["connect", "copy", "paste"]
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        let error = Actions::parse_name("rm -rf").unwrap_err();
        assert_eq!(
            error.to_string().split(" (").next().unwrap(),
            "unknown action `rm -rf`"
        );
        assert!(
            Actions::parse_name("*").is_err(),
            "`*` is just a name, and not an action"
        );
    }

    #[test]
    fn deny_subtraction() {
        let granted = Actions::ALL.difference(Actions::TRANSFER);
        assert!(granted.contains(Actions::CONNECT));
        assert!(!granted.contains(Actions::UPLOAD));
        assert!(!granted.contains(Actions::TRANSFER));
    }
}
