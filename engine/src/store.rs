//! The redb store: the only I/O in the engine.
//!
//! One table per kind of entity (id → postcard record), one for password hashes,
//! one for token hashes, the operation log keyed by `(revision, n)`, and a small
//! meta table. Every write is one redb transaction; a write that fails commits
//! nothing.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::model::{Change, ChangeRecord, EntityKind, Estate, Id};
use crate::snapshot::Snapshot;
use crate::write::SecretWrite;

const USERS: TableDefinition<u128, &[u8]> = TableDefinition::new("users");
const GROUPS: TableDefinition<u128, &[u8]> = TableDefinition::new("groups");
const NODES: TableDefinition<u128, &[u8]> = TableDefinition::new("nodes");
const ASSETS: TableDefinition<u128, &[u8]> = TableDefinition::new("assets");
const RULES: TableDefinition<u128, &[u8]> = TableDefinition::new("rules");
const ROLES: TableDefinition<u128, &[u8]> = TableDefinition::new("roles");
const TOKENS: TableDefinition<u128, &[u8]> = TableDefinition::new("tokens");
const PASSWORDS: TableDefinition<u128, &str> = TableDefinition::new("passwords");
const TOKEN_HASHES: TableDefinition<u128, &[u8]> = TableDefinition::new("token_hashes");
const CHANGES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SCHEMA: &str = "schema";
const META_REVISION: &str = "revision";
const META_SEQ: &str = "seq";
/// The layout this build writes and reads. 2: users and groups carry `attributes`.
const SCHEMA: u64 = 2;

fn table_of(kind: EntityKind) -> TableDefinition<'static, u128, &'static [u8]> {
    match kind {
        EntityKind::User => USERS,
        EntityKind::Group => GROUPS,
        EntityKind::Node => NODES,
        EntityKind::Asset => ASSETS,
        EntityKind::Rule => RULES,
        EntityKind::Role => ROLES,
        EntityKind::Token => TOKENS,
    }
}

fn key(id: Id) -> u128 {
    u128::from_be_bytes(*id.as_bytes())
}

fn id_of(key: u128) -> Id {
    Id::from_bytes(key.to_be_bytes())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("INVARIANT: model types encode with postcard")
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: u128,
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|error| StoreError::Corrupt {
        table,
        key: id_of(key).to_string(),
        message: error.to_string(),
    })
}

/// Everything a store holds that a snapshot is built from.
pub(crate) struct Loaded {
    pub(crate) estate: Estate,
    pub(crate) token_hashes: Vec<(Id, [u8; 32])>,
    pub(crate) revision: u64,
    pub(crate) seq: u64,
}

/// One commit: the entities to rewrite (read from the snapshot being published),
/// secret writes in order, and change records.
pub(crate) struct Commit<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) touched: Vec<(EntityKind, Id)>,
    pub(crate) secrets: Vec<SecretWrite>,
    pub(crate) changes: Vec<ChangeRecord>,
    pub(crate) revision: u64,
    pub(crate) seq: u64,
}

pub(crate) struct Store {
    db: Database,
    path: Option<PathBuf>,
}

impl Store {
    /// Opens the store at `path`, creating it (and its directory) when missing.
    pub(crate) fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Open {
                path: shown.clone(),
                message: error.to_string(),
            })?;
        }
        let db = Database::create(path).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(shown.clone()),
            other => StoreError::Open {
                path: shown.clone(),
                message: other.to_string(),
            },
        })?;
        let store = Store {
            db,
            path: Some(path.to_owned()),
        };
        store.init()?;
        Ok(store)
    }

    /// A store that lives in memory only: for embedding and tests.
    pub(crate) fn in_memory() -> Result<Store, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|error| StoreError::Open {
                path: "(memory)".to_owned(),
                message: error.to_string(),
            })?;
        let store = Store { db, path: None };
        store.init()?;
        Ok(store)
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Creates every table and checks the schema version.
    fn init(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            for kind in EntityKind::ALL {
                txn.open_table(table_of(kind))?;
            }
            txn.open_table(PASSWORDS)?;
            txn.open_table(TOKEN_HASHES)?;
            txn.open_table(CHANGES)?;
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_SCHEMA)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(META_SCHEMA, SCHEMA)?;
                }
                // Schema 1 was only ever written by development builds before the
                // first release; no migration is kept for it.
                Some(found) if found != SCHEMA => {
                    return Err(StoreError::Schema {
                        found,
                        supported: SCHEMA,
                    });
                }
                Some(_) => {}
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Reads every entity.
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read()?;
        fn all<T: DeserializeOwned>(
            txn: &redb::ReadTransaction,
            table: TableDefinition<u128, &[u8]>,
            name: &'static str,
        ) -> Result<Vec<T>, StoreError> {
            let table = txn.open_table(table)?;
            let mut records = Vec::with_capacity(table.len()? as usize);
            for row in table.iter()? {
                let (key, value) = row?;
                records.push(decode(name, key.value(), value.value())?);
            }
            Ok(records)
        }
        let estate = Estate {
            users: all(&txn, USERS, "users")?,
            groups: all(&txn, GROUPS, "groups")?,
            nodes: all(&txn, NODES, "nodes")?,
            assets: all(&txn, ASSETS, "assets")?,
            rules: all(&txn, RULES, "rules")?,
            roles: all(&txn, ROLES, "roles")?,
            tokens: all(&txn, TOKENS, "tokens")?,
        };
        let mut token_hashes = Vec::new();
        for row in txn.open_table(TOKEN_HASHES)?.iter()? {
            let (key, value) = row?;
            let hash: [u8; 32] = value.value().try_into().map_err(|_| StoreError::Corrupt {
                table: "token_hashes",
                key: id_of(key.value()).to_string(),
                message: "a token hash is 32 bytes".to_owned(),
            })?;
            token_hashes.push((id_of(key.value()), hash));
        }
        let meta = txn.open_table(META)?;
        let revision = meta.get(META_REVISION)?.map_or(0, |v| v.value());
        let seq = meta.get(META_SEQ)?.map_or(0, |v| v.value());
        Ok(Loaded {
            estate,
            token_hashes,
            revision,
            seq,
        })
    }

    /// Writes one commit in one transaction, durably.
    pub(crate) fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let snapshot = commit.snapshot;
            let mut tables: Vec<_> = EntityKind::ALL
                .iter()
                .map(|kind| txn.open_table(table_of(*kind)))
                .collect::<Result<_, _>>()?;
            for (kind, id) in &commit.touched {
                let table = &mut tables[EntityKind::ALL
                    .iter()
                    .position(|k| k == kind)
                    .expect("listed")];
                match encode_entity(snapshot, *kind, *id) {
                    Some(bytes) => table.insert(key(*id), bytes.as_slice())?,
                    None => table.remove(key(*id))?,
                };
            }
            drop(tables);
            let mut passwords = txn.open_table(PASSWORDS)?;
            let mut token_hashes = txn.open_table(TOKEN_HASHES)?;
            for secret in &commit.secrets {
                match secret {
                    SecretWrite::Password {
                        user,
                        hash: Some(hash),
                    } => {
                        passwords.insert(key(*user), hash.as_str())?;
                    }
                    SecretWrite::Password { user, hash: None } => {
                        passwords.remove(key(*user))?;
                    }
                    SecretWrite::TokenHash {
                        token,
                        hash: Some(hash),
                    } => {
                        token_hashes.insert(key(*token), hash.as_slice())?;
                    }
                    SecretWrite::TokenHash { token, hash: None } => {
                        token_hashes.remove(key(*token))?;
                    }
                }
            }
            let mut changes = txn.open_table(CHANGES)?;
            let mut position: (u64, u32) = (0, 0);
            for change in &commit.changes {
                position = if position.0 == change.revision {
                    (change.revision, position.1 + 1)
                } else {
                    (change.revision, 0)
                };
                let json = serde_json::to_vec(change).expect("INVARIANT: changes serialize");
                changes.insert(position, json.as_slice())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(META_REVISION, commit.revision)?;
            meta.insert(META_SEQ, commit.seq)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Change records with a revision above `since`, oldest first, at most `limit`.
    pub(crate) fn changes_since(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHANGES)?;
        let start = since.saturating_add(1);
        let mut changes = Vec::new();
        for row in table.range((start, 0)..)?.take(limit) {
            let (key, value) = row?;
            let change =
                serde_json::from_slice(value.value()).map_err(|error| StoreError::Corrupt {
                    table: "changes",
                    key: format!("{:?}", key.value()),
                    message: error.to_string(),
                })?;
            changes.push(change);
        }
        Ok(changes)
    }

    /// The database, for modules that keep their own tables in it (sign-in state,
    /// see `auth`). They write in their own transactions and never touch the tables
    /// above.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// The stored password hash of a user.
    pub(crate) fn password_hash(&self, user: Id) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PASSWORDS)?;
        Ok(table.get(key(user))?.map(|v| v.value().to_owned()))
    }
}

fn encode_entity(snapshot: &Snapshot, kind: EntityKind, id: Id) -> Option<Vec<u8>> {
    let slot = snapshot.slot(id).filter(|slot| slot.kind == kind)?;
    let index = slot.index;
    Some(match kind {
        EntityKind::User => encode(&*snapshot.user_entry(index)?.user),
        EntityKind::Group => encode(&*snapshot.group_entry(index)?.group),
        EntityKind::Node => encode(&*snapshot.node_entry(index)?.node),
        EntityKind::Asset => encode(&*snapshot.asset_entry(index)?.asset),
        EntityKind::Rule => encode(&*snapshot.rule_entry(index)?.rule),
        EntityKind::Role => encode(snapshot.role_entry(index)?),
        EntityKind::Token => encode(&*snapshot.token_entry(index)?.token),
    })
}

impl From<redb::TransactionError> for StoreError {
    fn from(error: redb::TransactionError) -> StoreError {
        StoreError::Io(error.to_string())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(error: redb::TableError) -> StoreError {
        StoreError::Io(error.to_string())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(error: redb::StorageError) -> StoreError {
        StoreError::Io(error.to_string())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(error: redb::CommitError) -> StoreError {
        StoreError::Io(error.to_string())
    }
}
