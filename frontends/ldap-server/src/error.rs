//! The one place where what went wrong becomes an LDAP result code.

use ldap3_proto::proto::{LdapResult, LdapResultCode};

/// Why an operation did not succeed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LdapError {
    /// The DN names no entry; `matched` is the nearest one that exists.
    NoSuchObject {
        matched: String,
    },
    InvalidDn(String),
    /// Anonymous, or an identity that may not read the directory (any more).
    InsufficientAccess(&'static str),
    InvalidCredentials(&'static str),
    /// Simple bind with a name and no password (RFC 4513 §5.1.2), a write.
    UnwillingToPerform(&'static str),
    AuthMethodNotSupported,
    ConfidentialityRequired,
    UnavailableCriticalExtension(String),
    /// A limit of this server: filter depth or terms, page size.
    AdminLimitExceeded(String),
    Protocol(String),
    Unavailable(&'static str),
    Operations(String),
}

impl LdapError {
    pub(crate) fn result(&self) -> LdapResult {
        let (code, matched, message) = match self {
            LdapError::NoSuchObject { matched } => (
                LdapResultCode::NoSuchObject,
                matched.clone(),
                "no such entry".to_owned(),
            ),
            LdapError::InvalidDn(message) => (
                LdapResultCode::InvalidDNSyntax,
                String::new(),
                message.clone(),
            ),
            LdapError::InsufficientAccess(message) => (
                LdapResultCode::InsufficentAccessRights,
                String::new(),
                (*message).to_owned(),
            ),
            LdapError::InvalidCredentials(message) => (
                LdapResultCode::InvalidCredentials,
                String::new(),
                (*message).to_owned(),
            ),
            LdapError::UnwillingToPerform(message) => (
                LdapResultCode::UnwillingToPerform,
                String::new(),
                (*message).to_owned(),
            ),
            LdapError::AuthMethodNotSupported => (
                LdapResultCode::AuthMethodNotSupported,
                String::new(),
                "only simple binds are supported".to_owned(),
            ),
            LdapError::ConfidentialityRequired => (
                LdapResultCode::ConfidentialityRequired,
                String::new(),
                "binds with a password need TLS: use StartTLS or ldaps".to_owned(),
            ),
            LdapError::UnavailableCriticalExtension(oid) => (
                LdapResultCode::UnavailableCriticalExtension,
                String::new(),
                format!("critical control `{oid}` is not supported"),
            ),
            LdapError::AdminLimitExceeded(message) => (
                LdapResultCode::AdminLimitExceeded,
                String::new(),
                message.clone(),
            ),
            LdapError::Protocol(message) => (
                LdapResultCode::ProtocolError,
                String::new(),
                message.clone(),
            ),
            LdapError::Unavailable(message) => (
                LdapResultCode::Unavailable,
                String::new(),
                (*message).to_owned(),
            ),
            LdapError::Operations(message) => (
                LdapResultCode::OperationsError,
                String::new(),
                message.clone(),
            ),
        };
        LdapResult {
            code,
            matcheddn: matched,
            message,
            referral: Vec::new(),
        }
    }
}

/// A successful result.
pub(crate) fn success() -> LdapResult {
    with_code(LdapResultCode::Success, "")
}

pub(crate) fn with_code(code: LdapResultCode, message: &str) -> LdapResult {
    LdapResult {
        code,
        matcheddn: String::new(),
        message: message.to_owned(),
        referral: Vec::new(),
    }
}
