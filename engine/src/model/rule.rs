//! Authorization rules: users/groups × assets/nodes × accounts × protocols × actions
//! × time window, allow or deny.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Actions, Id, Time, protocol_name};

/// Whether a rule grants or takes away its actions. Deny always beats allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// The name of the virtual account a user types credentials into.
pub const INPUT_ACCOUNT: &str = "@INPUT";
/// The name of the virtual account that connects without credentials.
pub const ANON_ACCOUNT: &str = "@ANON";

/// One entry of a rule's accounts spec.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountSelector {
    /// `@ALL`: every account of the asset, less the rule's `!name` entries.
    All,
    /// `@USER`: the account named like the user (virtual when the asset has none).
    SameAsUser,
    /// `@INPUT`: the user types credentials when connecting.
    Input,
    /// `@ANON`: no credentials, just launch.
    Anonymous,
    /// The account with this username.
    Named(Box<str>),
    /// `!name`: taken out of what the same rule's `@ALL` grants.
    Excluded(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed account `{0}` (expected @ALL, @USER, @INPUT, @ANON, a username or !username)")]
pub struct AccountSelectorError(pub String);

impl FromStr for AccountSelector {
    type Err = AccountSelectorError;

    fn from_str(text: &str) -> Result<AccountSelector, AccountSelectorError> {
        let bad = || AccountSelectorError(text.to_owned());
        let selector = match text {
            "@ALL" => AccountSelector::All,
            "@USER" => AccountSelector::SameAsUser,
            INPUT_ACCOUNT => AccountSelector::Input,
            ANON_ACCOUNT => AccountSelector::Anonymous,
            _ if text.starts_with('@') => return Err(bad()),
            _ => match text.strip_prefix('!') {
                Some(name) => AccountSelector::Excluded(account_username(name).ok_or_else(bad)?),
                None => AccountSelector::Named(account_username(text).ok_or_else(bad)?),
            },
        };
        Ok(selector)
    }
}

/// A username fit to be an account's: non-empty, at most 128 characters, no control
/// characters and no surrounding space. `@` and `!` may not start it, since they mark
/// the selectors.
pub fn account_username(text: &str) -> Option<Box<str>> {
    let ok = !text.is_empty()
        && text.chars().count() <= 128
        && text.trim() == text
        && !text.starts_with(['@', '!'])
        && !text.chars().any(char::is_control);
    ok.then(|| text.into())
}

impl fmt::Display for AccountSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountSelector::All => f.write_str("@ALL"),
            AccountSelector::SameAsUser => f.write_str("@USER"),
            AccountSelector::Input => f.write_str(INPUT_ACCOUNT),
            AccountSelector::Anonymous => f.write_str(ANON_ACCOUNT),
            AccountSelector::Named(name) => f.write_str(name),
            AccountSelector::Excluded(name) => write!(f, "!{name}"),
        }
    }
}

impl fmt::Debug for AccountSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for AccountSelector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AccountSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AccountSelector, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The protocols a rule covers: all of them, or a list of names.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ProtocolFilter {
    All,
    /// Canonical (lowercase) names, sorted, without duplicates.
    Only(Vec<Box<str>>),
}

impl ProtocolFilter {
    /// Builds a filter from names; `all` anywhere means every protocol.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<ProtocolFilter, super::ProtocolError> {
        let mut list = Vec::with_capacity(names.len());
        for name in names {
            if name.as_ref().trim().eq_ignore_ascii_case("all") {
                return Ok(ProtocolFilter::All);
            }
            list.push(protocol_name(name.as_ref())?);
        }
        list.sort();
        list.dedup();
        Ok(ProtocolFilter::Only(list))
    }

    pub fn allows(&self, protocol: &str) -> bool {
        match self {
            ProtocolFilter::All => true,
            ProtocolFilter::Only(names) => names.iter().any(|name| &**name == protocol),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, ProtocolFilter::Only(names) if names.is_empty())
    }

    /// The names as written in JSON: `["all"]` or the list.
    pub fn names(&self) -> Vec<&str> {
        match self {
            ProtocolFilter::All => vec!["all"],
            ProtocolFilter::Only(names) => names.iter().map(|n| &**n).collect(),
        }
    }
}

impl Serialize for ProtocolFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for ProtocolFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ProtocolFilter, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        ProtocolFilter::from_names(&names).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: Id,
    /// Unique (case-insensitively).
    pub name: String,
    pub effect: Effect,
    pub users: Vec<Id>,
    pub groups: Vec<Id>,
    pub assets: Vec<Id>,
    pub nodes: Vec<Id>,
    pub accounts: Vec<AccountSelector>,
    pub protocols: ProtocolFilter,
    pub actions: Actions,
    /// Defaults to the moment the rule was created.
    pub starts_at: Time,
    pub expires_at: Option<Time>,
    pub active: bool,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}

impl Rule {
    /// The parts of "in force" that do not depend on the clock: active, names a
    /// subject and an object, has an accounts spec and an action.
    pub fn is_complete(&self) -> bool {
        let names_subject = !self.users.is_empty() || !self.groups.is_empty();
        let names_object = !self.assets.is_empty() || !self.nodes.is_empty();
        self.active
            && names_subject
            && names_object
            && !self.accounts.is_empty()
            && !self.actions.is_empty()
    }

    /// `starts_at <= at` and `at < expires_at`.
    pub fn window_contains(&self, at: Time) -> bool {
        self.starts_at <= at && self.expires_at.is_none_or(|expires| at < expires)
    }

    /// In force at `at`, per docs/semantics.md.
    pub fn in_force(&self, at: Time) -> bool {
        self.is_complete() && self.window_contains(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_round_trip() {
        for text in ["@ALL", "@USER", "@INPUT", "@ANON", "root", "!root", "*"] {
            let selector: AccountSelector = text.parse().unwrap();
            assert_eq!(selector.to_string(), text);
        }
        assert_eq!(
            "*".parse::<AccountSelector>().unwrap(),
            AccountSelector::Named("*".into())
        );
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for text in ["", "@all", "@SOMETHING", "!", "!@ALL", " root", "ro\not"] {
            assert!(
                text.parse::<AccountSelector>().is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn protocol_filter_all_wins() {
        assert_eq!(
            ProtocolFilter::from_names(&["ssh", "ALL"]).unwrap(),
            ProtocolFilter::All
        );
        let only = ProtocolFilter::from_names(&["RDP", "ssh", "rdp"]).unwrap();
        assert_eq!(only.names(), ["rdp", "ssh"]);
        assert!(only.allows("ssh") && !only.allows("vnc"));
    }
}
