//! Sign-in pass-through: the password of a user synced from a directory is checked by
//! binding to that directory as the user ([`LdapPasswordBackend`], a
//! [`PasswordBackend`] for the engine's sign-in).
//!
//! The user's entry is found with the source's own service bind: the user filter and
//! the username attribute, and the entry must carry the stable id the sync recorded
//! (so a different entry that took the name meanwhile is never bound as). Then a
//! second connection binds as that DN with the typed password. The password is never
//! logged; an empty one never reaches the directory (the engine refuses it before,
//! and this checks again: an empty password is an unauthenticated bind, which many
//! servers answer with success).

use ldap3::SearchEntry;
use portcullis_engine::{Source as EngineSource, User};
use portcullis_signin::{BackendError, PasswordBackend};

use crate::config::Source;
use crate::directory::{Directory, escape_filter_value, stable_id};
use crate::error::SyncError;

/// LDAP result code 49: the DN or the password is wrong.
const INVALID_CREDENTIALS: u32 = 49;

/// Verifies passwords of the users of one LDAP source by binding as them.
pub struct LdapPasswordBackend {
    source: Source,
}

impl LdapPasswordBackend {
    pub fn new(source: Source) -> LdapPasswordBackend {
        LdapPasswordBackend { source }
    }

    /// The user's entry DN: found with the service bind, by username within the user
    /// filter, and checked against the stable id the sync recorded.
    async fn find_dn(&self, user: &User) -> Result<Option<String>, SyncError> {
        let users = &self.source.config.users;
        let filter = format!(
            "(&{}({}={}))",
            users.filter,
            users.username,
            escape_filter_value(&user.username)
        );
        let mut directory = Directory::connect(&self.source).await?;
        let attrs = vec![self.source.id_attribute.clone(), users.username.clone()];
        let found = directory
            .paged_search(&users.base, users.scope, &filter, &attrs, || {})
            .await;
        directory.close().await;
        let entries: Vec<SearchEntry> = found?;
        let wanted = user.external_id.as_deref().map(str::to_ascii_lowercase);
        Ok(entries
            .into_iter()
            .find(|entry| {
                let id =
                    stable_id(entry, &self.source.id_attribute).map(|id| id.to_ascii_lowercase());
                wanted.is_none() || id == wanted
            })
            .map(|entry| entry.dn))
    }

    /// A simple bind as `dn` on a connection of its own.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, SyncError> {
        let config = &self.source.config;
        let failed = |message: String| SyncError::Connect {
            source_name: self.source.name.clone(),
            url: config.url.clone(),
            message,
        };
        let timeout = self.source.timeout();
        let mut ldap = crate::directory::open(&self.source).await?;
        let result = tokio::time::timeout(timeout, ldap.simple_bind(dn, password))
            .await
            .map_err(|_| failed("the bind got no answer in time".to_owned()))?
            .map_err(|error| failed(error.to_string()));
        let _ = ldap.unbind().await;
        let result = result?;
        match result.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            rc => Err(failed(format!("the bind answered {rc}: {}", result.text))),
        }
    }

    async fn verify_async(&self, user: &User, password: &str) -> Result<bool, SyncError> {
        match self.find_dn(user).await? {
            Some(dn) => self.bind_as(&dn, password).await,
            // Gone from the directory (or replaced by another entry): not this password.
            None => Ok(false),
        }
    }
}

impl PasswordBackend for LdapPasswordBackend {
    fn source(&self) -> EngineSource {
        EngineSource::Ldap(self.source.name.as_str().into())
    }

    fn verify(&self, user: &User, password: &str) -> Result<bool, BackendError> {
        if password.is_empty() {
            return Ok(false);
        }
        let work = self.verify_async(user, password);
        // Sign-in runs on a blocking thread of the server's runtime (argon2 is slow),
        // where the runtime's handle may block; elsewhere (the CLI, tests) a small
        // runtime of our own does.
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(work),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| BackendError(format!("cannot start a runtime: {error}")))?
                .block_on(work),
        };
        outcome.map_err(|error| BackendError(error.to_string()))
    }
}
