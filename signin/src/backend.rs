//! Password backends: who else may say "this password is right".
//!
//! The local backend (argon2id hashes in the store) is built in and always first. An
//! embedding program adds others with [`crate::Auth::with_backend`]: the `portcullis`
//! binary plugs in one LDAP bind backend per configured `ldap:<name>` source.

use portcullis_engine::{Source, User};

/// A directory or service that can verify a user's password.
///
/// An implementation must not log or keep the password, must bound its own time
/// (a connect and bind timeout: sign-in waits for it), and must answer `Ok(false)`
/// for a wrong password and `Err` only when it could not tell.
pub trait PasswordBackend: Send + Sync {
    /// The source whose users this backend verifies, such as `ldap:corp`. With
    /// `restrict_to_source`, only users of this source are sent here.
    fn source(&self) -> Source;

    /// Whether this backend can verify `user` at all (an LDAP backend needs the
    /// user's DN or a way to find it). Defaults to users of [`Self::source`].
    fn handles(&self, user: &User) -> bool {
        user.source == self.source()
    }

    /// Whether `password` is `user`'s (for LDAP: a simple bind as the user succeeds).
    /// Never called with an empty password.
    fn verify(&self, user: &User, password: &str) -> Result<bool, BackendError>;
}

/// A backend that could not answer (unreachable, timed out, misconfigured). The
/// sign-in counts as failed; the message is the backend's to log, never the client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password backend failed: {0}")]
pub struct BackendError(pub String);
