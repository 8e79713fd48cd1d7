//! Why a sync run failed. A failed run changes nothing in the engine.
//!
//! Messages never carry the bind password: the directory's own diagnostics are passed
//! on, and the password is never part of them.

/// What went wrong with a run. Front-ends map [`SyncError::is_config`] to their "bad
/// input" code and everything else to their "server or system failure" code.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The configuration is wrong (unknown keys, a bad filter, a missing password).
    #[error("{0}")]
    Config(String),
    /// The directory could not be reached (refused, unresolvable, TLS).
    #[error("ldap source `{source_name}`: cannot connect to `{url}`: {message}")]
    Connect {
        source_name: String,
        url: String,
        message: String,
    },
    /// The bind was refused (wrong DN or password).
    #[error("ldap source `{source_name}`: bind as `{dn}` refused: {message}")]
    Bind {
        source_name: String,
        dn: String,
        message: String,
    },
    /// A search failed (bad base, server-side filter error, size limit, a lost
    /// connection).
    #[error("ldap source `{source_name}`: {message}")]
    Directory {
        source_name: String,
        message: String,
    },
    /// The directory did not answer in time.
    #[error("ldap source `{source_name}`: timed out after {seconds}s")]
    Timeout { source_name: String, seconds: u64 },
    /// The engine refused or failed the write; nothing changed.
    #[error("ldap source `{source_name}`: the write was refused: {error}")]
    Engine {
        source_name: String,
        error: portcullis_engine::Error,
    },
    /// The saved sync state could not be written.
    #[error("ldap source `{source_name}`: cannot save the sync state `{path}`: {message}")]
    State {
        source_name: String,
        path: String,
        message: String,
    },
    /// `--source NAME` names no source.
    #[error("no ldap source `{0}` in the config")]
    UnknownSource(String),
}

impl SyncError {
    /// Whether the fault lies with the configuration (or the command line) rather than
    /// with the directory, the network or the store.
    pub fn is_config(&self) -> bool {
        match self {
            SyncError::Config(_) | SyncError::UnknownSource(_) => true,
            SyncError::Connect { .. }
            | SyncError::Bind { .. }
            | SyncError::Directory { .. }
            | SyncError::Timeout { .. }
            | SyncError::Engine { .. }
            | SyncError::State { .. } => false,
        }
    }
}
