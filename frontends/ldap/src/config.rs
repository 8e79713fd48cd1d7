//! The configuration of LDAP sources, as written in TOML (`[ldap.<name>]` tables) and
//! as resolved for a run (the bind password read, the filters checked).
//!
//! The bind password is read from a file or an environment variable, never from the
//! config file itself, and [`BindPassword`]'s `Debug` form hides it so that no log line
//! can carry it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SyncError;

/// The most entries a page may ask for (Active Directory's own MaxPageSize is 1000).
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// The shortest interval between periodic runs inside `serve`.
pub const MIN_INTERVAL_SECS: u64 = 10;

/// Every source of a config file: the `[ldap.<name>]` tables, by name.
pub type Sources = BTreeMap<String, SourceConfig>;

/// One `[ldap.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// A PEM file of CA certificates trusted for `ldaps://` and StartTLS (otherwise the
    /// system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The DN to bind as; anonymous when absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// A file holding the bind password (trailing newlines are dropped).
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// An environment variable holding the bind password.
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Connect, bind and per-operation timeout.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Entries per page of the paged-results control.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Seconds between runs inside `portcullis serve`.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// `openldap` or `active_directory`: picks the defaults of `users.id_attribute`
    /// and `incremental`.
    #[serde(default)]
    pub flavor: Flavor,
    /// How a run after the first finds what changed.
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// What happens to a user gone from the directory.
    #[serde(default)]
    pub removed_users: RemovedUsers,
    /// What happens to a group gone from the directory.
    #[serde(default)]
    pub removed_groups: RemovedGroups,
    pub users: UserConfig,
    pub groups: Option<GroupConfig>,
    /// The sources (`local`, `import`, `scim`, `ldap:OTHER`) whose users and groups
    /// this directory may take over when an entry names one of them, instead of
    /// reporting a clash; default none.
    #[serde(default)]
    pub adopt: Vec<String>,
    /// Privileged users and groups (by name) it may take over all the same; default
    /// none.
    #[serde(default)]
    pub adopt_privileged: Vec<String>,
}

fn default_timeout() -> u64 {
    30
}

fn default_page_size() -> u32 {
    500
}

fn default_interval() -> u64 {
    900
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    #[default]
    Openldap,
    ActiveDirectory,
}

/// How an incremental run finds changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Incremental {
    /// RFC 4533 content synchronization, refreshOnly, with the cookie of the last run
    /// (OpenLDAP with the syncprov overlay).
    Syncrepl,
    /// Entries whose `modifyTimestamp` is at or after the last run's highest one, plus
    /// a listing of stable ids for deletions.
    ModifyTimestamp,
    /// The same with Active Directory's `uSNChanged`.
    UsnChanged,
    /// Every run reads everything.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedUsers {
    /// Keep the user, inactive (granted nothing); a user who comes back is reactivated.
    #[default]
    Deactivate,
    /// Delete the user (and so every membership and rule reference it had).
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedGroups {
    /// Keep the group (rules naming it stay), without this source's memberships.
    #[default]
    Empty,
    /// Delete the group (and so every rule reference to it).
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Base,
    One,
    #[default]
    Sub,
}

impl Scope {
    pub(crate) fn ldap(self) -> ldap3::Scope {
        match self {
            Scope::Base => ldap3::Scope::Base,
            Scope::One => ldap3::Scope::OneLevel,
            Scope::Sub => ldap3::Scope::Subtree,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub base: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default = "default_user_filter")]
    pub filter: String,
    /// The stable id: `entryUUID` (OpenLDAP) or `objectGUID` (Active Directory, binary).
    #[serde(default)]
    pub id_attribute: Option<String>,
    #[serde(default = "default_username")]
    pub username: String,
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_email")]
    pub email: Option<String>,
    #[serde(default = "default_phone")]
    pub phone: Option<String>,
}

fn default_user_filter() -> String {
    "(objectClass=inetOrgPerson)".to_owned()
}

fn default_username() -> String {
    "uid".to_owned()
}

fn default_name() -> String {
    "cn".to_owned()
}

fn default_email() -> Option<String> {
    Some("mail".to_owned())
}

fn default_phone() -> Option<String> {
    Some("telephoneNumber".to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub base: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default = "default_group_filter")]
    pub filter: String,
    #[serde(default = "default_name")]
    pub name: String,
    /// Membership attributes. `memberUid` (any case) holds usernames; every other
    /// attribute holds DNs (`member`, `uniqueMember`, with an optional `#'…'B` uid
    /// suffix, which is dropped).
    #[serde(default = "default_membership")]
    pub membership: Vec<String>,
    /// A member DN naming a group of this source nests that group.
    #[serde(default = "yes")]
    pub nested: bool,
    /// Active Directory: ask the server for every (transitive) user member of each
    /// group with `LDAP_MATCHING_RULE_IN_CHAIN` instead of following DNs; the groups
    /// are then flat in the engine.
    #[serde(default)]
    pub in_chain: bool,
}

fn default_group_filter() -> String {
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
        .to_owned()
}

fn default_membership() -> Vec<String> {
    vec![
        "member".to_owned(),
        "uniqueMember".to_owned(),
        "memberUid".to_owned(),
    ]
}

fn yes() -> bool {
    true
}

/// A bind password. Its `Debug` form hides it.
#[derive(Clone)]
pub struct BindPassword(String);

impl BindPassword {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BindPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindPassword(..)")
    }
}

/// A source ready to run: its config checked, its password read.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub config: SourceConfig,
    pub password: Option<BindPassword>,
    pub id_attribute: String,
    pub incremental: Incremental,
    /// What this source may adopt (`adopt`, `adopt_privileged`).
    pub adopt: portcullis_engine::AdoptionPolicy,
}

impl Source {
    /// Checks `config` and reads its password.
    pub fn resolve(name: &str, config: &SourceConfig) -> Result<Source, SyncError> {
        let bad = |message: String| SyncError::Config(format!("ldap source `{name}`: {message}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(bad(
                "a source name uses letters, digits, `-`, `_` and `.` only".to_owned(),
            ));
        }
        let scheme = config.url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("ldap") => {}
            Some("ldaps") if !config.starttls => {}
            Some("ldaps") => return Err(bad("starttls needs an `ldap://` url".to_owned())),
            _ => {
                return Err(bad(format!(
                    "url `{}` is neither ldap:// nor ldaps://",
                    config.url
                )));
            }
        }
        if config.page_size == 0 || config.page_size > MAX_PAGE_SIZE {
            return Err(bad(format!(
                "page_size {} is not between 1 and {MAX_PAGE_SIZE}",
                config.page_size
            )));
        }
        if config.timeout_secs == 0 {
            return Err(bad("timeout_secs must be at least 1".to_owned()));
        }
        if config.interval_secs < MIN_INTERVAL_SECS {
            return Err(bad(format!(
                "interval_secs must be at least {MIN_INTERVAL_SECS}"
            )));
        }
        check_filter(name, "users.filter", &config.users.filter)?;
        if config.users.base.trim().is_empty() {
            return Err(bad("users.base must not be empty".to_owned()));
        }
        if let Some(groups) = &config.groups {
            check_filter(name, "groups.filter", &groups.filter)?;
            if groups.base.trim().is_empty() {
                return Err(bad("groups.base must not be empty".to_owned()));
            }
            if groups.membership.is_empty() && !groups.in_chain {
                return Err(bad("groups.membership names no attribute".to_owned()));
            }
        }
        let password = match (&config.bind_password_file, &config.bind_password_env) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "set bind_password_file or bind_password_env, not both".to_owned()
                ));
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    bad(format!(
                        "cannot read bind_password_file `{}`: {error}",
                        path.display()
                    ))
                })?;
                Some(BindPassword(text.trim_end_matches(['\r', '\n']).to_owned()))
            }
            (None, Some(variable)) => match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Some(BindPassword(value)),
                _ => {
                    return Err(bad(format!(
                        "the environment variable `{variable}` (bind_password_env) is not set"
                    )));
                }
            },
            (None, None) => None,
        };
        if password.is_some() && config.bind_dn.is_none() {
            return Err(bad("a bind password needs a bind_dn".to_owned()));
        }
        if config.bind_dn.is_some() && password.is_none() {
            return Err(bad(
                "bind_dn needs bind_password_file or bind_password_env".to_owned()
            ));
        }
        let id_attribute =
            config
                .users
                .id_attribute
                .clone()
                .unwrap_or_else(|| match config.flavor {
                    Flavor::Openldap => "entryUUID".to_owned(),
                    Flavor::ActiveDirectory => "objectGUID".to_owned(),
                });
        let incremental = config.incremental.unwrap_or(match config.flavor {
            Flavor::Openldap => Incremental::Syncrepl,
            Flavor::ActiveDirectory => Incremental::UsnChanged,
        });
        if incremental == Incremental::Syncrepl && !id_attribute.eq_ignore_ascii_case("entryUUID") {
            return Err(bad(
                "incremental = \"syncrepl\" needs users.id_attribute = \"entryUUID\"".to_owned(),
            ));
        }
        let adopt = portcullis_engine::AdoptionPolicy::configured(
            &portcullis_engine::Source::Ldap(name.into()),
            &config.adopt,
            &config.adopt_privileged,
        )
        .map_err(bad)?;
        Ok(Source {
            name: name.to_owned(),
            config: config.clone(),
            password,
            id_attribute,
            incremental,
            adopt,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.config.interval_secs)
    }

    /// The engine source of what this source writes: `ldap:<name>`.
    pub fn engine_source(&self) -> portcullis_engine::Source {
        portcullis_engine::Source::Ldap(self.name.as_str().into())
    }

    /// What the saved state depends on: when any of it changes, the next run is full.
    pub(crate) fn fingerprint(&self) -> String {
        let c = &self.config;
        serde_json::json!([
            c.url,
            c.users,
            c.groups,
            self.id_attribute,
            format!("{:?}", self.incremental)
        ])
        .to_string()
    }
}

fn check_filter(name: &str, field: &str, filter: &str) -> Result<(), SyncError> {
    ldap3::parse_filter(filter).map(|_| ()).map_err(|_| {
        SyncError::Config(format!(
            "ldap source `{name}`: {field} `{filter}` is not an LDAP filter"
        ))
    })
}

/// Reads `[ldap.<name>]` tables from a whole config file's text (other tables are the
/// caller's business and ignored here).
pub fn sources_from_toml(text: &str) -> Result<Sources, SyncError> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        ldap: Sources,
    }
    let file: File = toml::from_str(text)
        .map_err(|error| SyncError::Config(error.to_string().trim().replace('\n', " ")))?;
    Ok(file.ldap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [ldap.corp]
        url = "ldap://ldap.example.org"
        bind_dn = "cn=reader,dc=example,dc=org"
        bind_password_env = "PORTCULLIS_TEST_UNSET_VARIABLE"
        [ldap.corp.users]
        base = "ou=people,dc=example,dc=org"
        [ldap.corp.groups]
        base = "ou=groups,dc=example,dc=org"
    "#;

    #[test]
    fn defaults_fill_in_a_short_source() {
        let sources = sources_from_toml(EXAMPLE).unwrap();
        let corp = &sources["corp"];
        assert_eq!(corp.page_size, 500);
        assert_eq!(corp.users.username, "uid");
        assert_eq!(corp.removed_users, RemovedUsers::Deactivate);
        assert!(corp.groups.as_ref().unwrap().nested);
    }

    #[test]
    fn an_unset_password_variable_is_a_config_error() {
        let sources = sources_from_toml(EXAMPLE).unwrap();
        let error = Source::resolve("corp", &sources["corp"]).unwrap_err();
        assert!(
            matches!(&error, SyncError::Config(m) if m.contains("PORTCULLIS_TEST_UNSET_VARIABLE")),
            "{error}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let mut config = sources_from_toml(EXAMPLE).unwrap().remove("corp").unwrap();
        config.bind_dn = None;
        config.bind_password_env = None;
        type Edit = Box<dyn Fn(&mut SourceConfig)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|c| c.url = "http://x".to_owned()), "neither ldap"),
            (Box::new(|c| c.page_size = 0), "page_size"),
            (
                Box::new(|c| c.users.filter = "(uid=".to_owned()),
                "users.filter",
            ),
            (Box::new(|c| c.interval_secs = 1), "interval_secs"),
            (
                Box::new(|c| c.users.id_attribute = Some("objectGUID".to_owned())),
                "syncrepl",
            ),
        ];
        for (edit, expected) in cases {
            let mut bad = config.clone();
            edit(&mut bad);
            let message = Source::resolve("corp", &bad).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
        assert!(Source::resolve("corp", &config).is_ok());
        assert!(Source::resolve("bad name", &config).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = EXAMPLE.replace("url =", "uri =");
        assert!(sources_from_toml(&text).is_err());
    }
}
