//! Sign-in's side records (`SideTable`s), beside the engine's entities:
//! TOTP secrets and used steps, recovery code hashes, reset-link hashes, emailed and
//! SMS code hashes, SMS send counters, users' own MFA policies, passkeys and
//! ceremonies in flight, failure counters and lockouts, and the sign-in event log.
//!
//! None of this is an entity: it is never in a snapshot, an export, the operation
//! log's `before`/`after`, or an API answer. Every change is made inside a write of
//! the engine's writer (`Engine::write_with`), so in a cluster it is global.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use portcullis_engine::{Engine, Id, SideTable, SideTxn, StoreError, Time};

/// User id → [`TotpRecord`].
pub(crate) const TOTP: SideTable = SideTable::new("auth_totp");
/// User id → [`RecoveryRecord`].
pub(crate) const RECOVERY: SideTable = SideTable::new("auth_recovery");
/// SHA-256 of a reset token → [`ResetRecord`].
pub(crate) const RESETS: SideTable = SideTable::new("auth_resets");
/// User id → [`EmailCodeRecord`].
pub(crate) const EMAIL_CODES: SideTable = SideTable::new("auth_email_codes");
/// User id → [`EmailCodeRecord`] of a code sent by SMS.
pub(crate) const SMS_CODES: SideTable = SideTable::new("auth_sms_codes");
/// SHA-256 of `user:<id>` or `number:<phone>` → [`Sends`]: the SMS rate limits.
pub(crate) const SMS_SENDS: SideTable = SideTable::new("auth_sms_sends");
/// User id → [`crate::UserMfaPolicy`].
pub(crate) const MFA_POLICY: SideTable = SideTable::new("auth_mfa_policy");
/// User id → [`PasskeysRecord`].
pub(crate) const PASSKEYS: SideTable = SideTable::new("auth_passkeys");
/// WebAuthn credential id → user id: a credential belongs to one user only.
pub(crate) const PASSKEY_IDS: SideTable = SideTable::new("auth_passkey_ids");
/// SHA-256 of a ceremony token → [`CeremonyRecord`].
pub(crate) const CEREMONIES: SideTable = SideTable::new("auth_ceremonies");
/// Lock key (SHA-256 of the user id, or of an unknown login name) → [`Failures`].
pub(crate) const FAILURES: SideTable = SideTable::new("auth_failures");
/// Sequence (8 bytes, big-endian) → JSON [`crate::AuthEvent`].
pub(crate) const EVENTS: SideTable = SideTable::new("auth_events");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TotpRecord {
    /// The confirmed secret, if any.
    pub(crate) secret: Option<Vec<u8>>,
    /// The highest time step a code was accepted for: codes of this step and earlier
    /// are refused (replay).
    pub(crate) last_step: u64,
    /// A secret handed out by an enrolment and not yet confirmed by a code.
    pub(crate) pending: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RecoveryRecord {
    /// SHA-256 of each unused code.
    pub(crate) hashes: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResetRecord {
    pub(crate) user: Id,
    pub(crate) expires_at: Time,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EmailCodeRecord {
    pub(crate) hash: [u8; 32],
    pub(crate) expires_at: Time,
    /// Wrong codes tried against this one; it is dropped after a few.
    pub(crate) attempts: u32,
}

/// When each SMS counted inside the window was sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Sends {
    pub(crate) recent: Vec<Time>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PasskeysRecord {
    pub(crate) keys: Vec<PasskeyRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PasskeyRecord {
    pub(crate) id: Id,
    pub(crate) name: String,
    pub(crate) created_at: Time,
    pub(crate) last_used_at: Option<Time>,
    /// The WebAuthn credential id.
    pub(crate) credential_id: Vec<u8>,
    /// webauthn-rs's `Passkey` as JSON (its public key, sign count, flags): no secret.
    pub(crate) passkey: Vec<u8>,
}

/// A passkey ceremony between its challenge and the client's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CeremonyRecord {
    /// The user it is for; `None` for a passwordless sign-in by a name that names
    /// nobody (it can only fail).
    pub(crate) user: Option<Id>,
    /// The login name as typed, for the event log and the lockout of unknown names.
    pub(crate) login: String,
    pub(crate) kind: CeremonyKind,
    /// webauthn-rs's ceremony state as JSON.
    pub(crate) state: Vec<u8>,
    pub(crate) expires_at: Time,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CeremonyKind {
    /// Registering a passkey of this name.
    Registration { name: String },
    /// A sign-in: after the password (`passwordless == false`), or instead of it.
    Authentication { passwordless: bool },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Failures {
    /// When each attempt counted inside the window happened: failures, and attempts
    /// still being evaluated (an attempt is counted before its evaluation).
    pub(crate) recent: Vec<Time>,
    pub(crate) locked_until: Option<Time>,
}

/// The key of a record kept per user: the id's bytes.
pub(crate) fn key(id: Id) -> [u8; 16] {
    *id.as_bytes()
}

pub(crate) fn id_of(key: &[u8]) -> Option<Id> {
    <[u8; 16]>::try_from(key).ok().map(Id::from_bytes)
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("INVARIANT: sign-in records encode with postcard")
}

pub(crate) fn decode<T: DeserializeOwned>(table: SideTable, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|error| StoreError::Corrupt {
        table: table.name(),
        key: "(sign-in state)".to_owned(),
        message: error.to_string(),
    })
}

/// One record as a write sees it.
pub(crate) fn get<T: DeserializeOwned>(
    txn: &SideTxn<'_>,
    table: SideTable,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    txn.get(table, key)?
        .map(|bytes| decode(table, &bytes))
        .transpose()
}

/// Writes one record.
pub(crate) fn put<T: Serialize>(txn: &mut SideTxn<'_>, table: SideTable, key: &[u8], value: &T) {
    txn.put(table, key, encode(value));
}

/// One record as committed, outside a write.
pub(crate) fn read<T: DeserializeOwned>(
    engine: &Engine,
    table: SideTable,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match engine.side_record(table, key) {
        Ok(bytes) => bytes.map(|bytes| decode(table, &bytes)).transpose(),
        Err(portcullis_engine::Error::Store(error)) => Err(error),
        Err(other) => Err(StoreError::Io(other.to_string())),
    }
}
