//! Engine errors: one small enum per family of operations and the umbrella [`Error`].
//! Variants carry data; front-ends choose status codes and exit codes from them.

use crate::model::{EntityKind, Id, Time};

/// A reference (a name, a path or an id) that resolves to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{reference}`")]
pub struct NotFound {
    pub kind: EntityKind,
    pub reference: String,
}

impl NotFound {
    pub fn new(kind: EntityKind, reference: impl Into<String>) -> NotFound {
        NotFound {
            kind,
            reference: reference.into(),
        }
    }
}

/// Why a write was refused. A refused write changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("{kind} `{name}` already exists")]
    Duplicate { kind: EntityKind, name: String },
    #[error("email `{0}` is already used by another user")]
    DuplicateEmail(String),
    /// A new or changed unique name that merely looks like one another entity of the
    /// same kind and scope holds (its confusable fold meets the other's): `аlice`
    /// with a Cyrillic `а` beside `alice`.
    #[error("{field} `{name}` looks like `{existing}`, the {field} of an existing {kind}")]
    LookAlike {
        kind: EntityKind,
        field: &'static str,
        name: String,
        existing: String,
    },
    #[error("{kind} id `{id}` already exists")]
    DuplicateId { kind: EntityKind, id: Id },
    /// An id the engine keeps for itself (the nil UUID, which the operation log uses
    /// for events of unknown names, and the max UUID).
    #[error("{kind} id `{id}` is reserved")]
    ReservedId { kind: EntityKind, id: Id },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("making `{child}` a subgroup of `{parent}` would create a cycle")]
    GroupCycle { parent: String, child: String },
    #[error("moving node `{node}` under `{parent}` would put it inside itself")]
    NodeCycle { node: String, parent: String },
    #[error("node `{0}` still has child nodes or assets; move or delete them first")]
    NodeNotEmpty(String),
    #[error("the root node `/Default` cannot be renamed, moved or deleted")]
    RootNode,
    #[error("built-in role `{0}` cannot be changed or deleted")]
    BuiltinRole(String),
    #[error("role `{role}` is still held by {holder}")]
    RoleInUse { role: String, holder: String },
    /// A plaintext password the credential policy refuses (`CredentialPolicy`).
    #[error("the password does not meet the policy: it needs {}", missing.join(", "))]
    WeakPassword { missing: Vec<String> },
    /// A login name (username or email) that another user already signs in with
    /// under the other field: `alice@example.com` as a username while it is alice's
    /// email. Sign-in accepts either, so it would not know whom the name means.
    #[error(
        "`{name}` is already the {other_field} of user `{other}`; login names must be unambiguous"
    )]
    AmbiguousLogin {
        name: String,
        other_field: &'static str,
        other: String,
    },
    /// The write would hand out permissions its caller does not hold itself.
    #[error("{what} would carry permissions the caller lacks: `{}`", missing.join("`, `"))]
    GrantBeyondCaller { what: String, missing: Vec<String> },
    #[error("user `{user}` is not a direct member of group `{group}`")]
    NotAMember { group: String, user: String },
    /// The token a write acts for was revoked or has expired since it was checked, or
    /// the signed-in user it acts for was deactivated, expired or deleted (the name is
    /// the token's, or `user:USERNAME`).
    #[error("`{0}` has been revoked or has expired")]
    ActorRevoked(String),
    /// An [`crate::Op::Expect`] that does not hold: the entity is at another version
    /// than the one expected, or exists when it was expected absent (`None`), or the
    /// reverse. A version is an entity's `updated_at`.
    #[error(
        "{kind} `{target}` is {}, not {} as expected",
        version_text(found),
        version_text(expected)
    )]
    VersionMismatch {
        kind: EntityKind,
        target: String,
        expected: Option<Time>,
        found: Option<Time>,
    },
    /// An [`crate::Op::Adopt`] or [`crate::Op::Release`] that may not apply.
    #[error(transparent)]
    Adoption(#[from] crate::AdoptionRefusal),
}

fn version_text(version: &Option<Time>) -> String {
    match version {
        Some(version) => format!("at version {version}"),
        None => "absent".to_owned(),
    }
}

impl ValidationError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ValidationError {
        ValidationError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// A failure of the storage layer. The write it interrupted changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at `{path}`: {message}")]
    Open { path: String, message: String },
    #[error("the store at `{0}` is in use by another process")]
    Locked(String),
    #[error("storage failure: {0}")]
    Io(String),
    #[error("the store holds a record that cannot be read ({table} `{key}`): {message}")]
    Corrupt {
        table: &'static str,
        key: String,
        message: String,
    },
    #[error(
        "the store was written by another version (schema {found}; this build reads schema {supported})"
    )]
    Schema { found: u64, supported: u64 },
}

/// One problem [`crate::Engine::validate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The index of the operation it belongs to; `None`: the write as a whole (the
    /// actor may not write).
    pub op: Option<usize>,
    pub error: ValidationError,
}

/// Everything an engine call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster's change log (cluster mode only): a write it could not append
    /// changed nothing.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::LogError),
    #[error("the engine is shutting down")]
    Closed,
}

impl From<NotFound> for Error {
    fn from(error: NotFound) -> Error {
        Error::Validation(ValidationError::NotFound(error))
    }
}
