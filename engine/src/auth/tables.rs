//! The sign-in module's own redb tables, beside the engine's: TOTP secrets and used
//! steps, recovery code hashes, reset-link hashes, emailed code hashes, failure
//! counters and lockouts, and the sign-in event log.
//!
//! None of this is an entity: it is never in a snapshot, an export, the operation
//! log's `before`/`after`, or an API answer. Every change is one redb transaction.

use redb::{Database, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{Id, Time};

/// User id → [`TotpRecord`].
pub(crate) const TOTP: TableDefinition<u128, &[u8]> = TableDefinition::new("auth_totp");
/// User id → [`RecoveryRecord`].
pub(crate) const RECOVERY: TableDefinition<u128, &[u8]> = TableDefinition::new("auth_recovery");
/// SHA-256 of a reset token → [`ResetRecord`].
pub(crate) const RESETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth_resets");
/// User id → [`EmailCodeRecord`].
pub(crate) const EMAIL_CODES: TableDefinition<u128, &[u8]> =
    TableDefinition::new("auth_email_codes");
/// Lock key (SHA-256 of the user id, or of an unknown login name) → [`Failures`].
pub(crate) const FAILURES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth_failures");
/// Sequence → JSON [`crate::auth::AuthEvent`].
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("auth_events");

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Failures {
    /// When each attempt counted inside the window happened: failures, and attempts
    /// still being evaluated (an attempt is counted before its evaluation).
    pub(crate) recent: Vec<Time>,
    pub(crate) locked_until: Option<Time>,
}

pub(crate) fn key(id: Id) -> u128 {
    u128::from_be_bytes(*id.as_bytes())
}

pub(crate) fn id_of(key: u128) -> Id {
    Id::from_bytes(key.to_be_bytes())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("INVARIANT: sign-in records encode with postcard")
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|error| StoreError::Corrupt {
        table,
        key: "(sign-in state)".to_owned(),
        message: error.to_string(),
    })
}

/// Creates the tables when missing.
pub(crate) fn init(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    txn.open_table(TOTP)?;
    txn.open_table(RECOVERY)?;
    txn.open_table(RESETS)?;
    txn.open_table(EMAIL_CODES)?;
    txn.open_table(FAILURES)?;
    txn.open_table(EVENTS)?;
    txn.commit()?;
    Ok(())
}

/// Reads one record of a table keyed by user id.
pub(crate) fn read_user<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<u128, &[u8]>,
    name: &'static str,
    user: Id,
) -> Result<Option<T>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(table)?;
    table
        .get(key(user))?
        .map(|value| decode(name, value.value()))
        .transpose()
}

impl From<redb::Error> for StoreError {
    fn from(error: redb::Error) -> StoreError {
        StoreError::Io(error.to_string())
    }
}
