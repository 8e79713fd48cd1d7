//! The redb store: the only I/O in the engine.
//!
//! One table per kind of entity (id → postcard record), one for password hashes,
//! one for token hashes, the operation log, and a small meta table. Every write is
//! one redb transaction; a write that fails commits nothing.
//!
//! The operation log keeps a transaction's change records together: a row holds up
//! to [`LOG_ROW_RECORDS`] of them, oldest first (see [`LogRow`]), keyed by
//! `(revision of its last record, row number within the transaction)`. A row per
//! group commit instead of one per record keeps the log's B-tree from splitting a
//! page every few records, which was the largest single cost of a commit; the cap
//! keeps a large import from making one row that every read must parse whole.
//! Reading from revision `r` scans from the first row keyed above `r` and skips the
//! records at or below it.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{
    Asset, Change, ChangeRecord, EntityKind, Estate, Group, Id, Source, Time, User, UserMember,
};
use crate::side::{SideRecord, SideWrite};
use crate::snapshot::Snapshot;
use crate::write::{MembershipWrite, SecretWrite};

const USERS: TableDefinition<u128, &[u8]> = TableDefinition::new("users");
const GROUPS: TableDefinition<u128, &[u8]> = TableDefinition::new("groups");
const NODES: TableDefinition<u128, &[u8]> = TableDefinition::new("nodes");
const ASSETS: TableDefinition<u128, &[u8]> = TableDefinition::new("assets");
const RULES: TableDefinition<u128, &[u8]> = TableDefinition::new("rules");
const ROLES: TableDefinition<u128, &[u8]> = TableDefinition::new("roles");
const TOKENS: TableDefinition<u128, &[u8]> = TableDefinition::new("tokens");
const PASSWORDS: TableDefinition<u128, &str> = TableDefinition::new("passwords");
const TOKEN_HASHES: TableDefinition<u128, &[u8]> = TableDefinition::new("token_hashes");
const CHANGE_LOG: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("change_log");
/// The most change records in one row of the operation log.
const LOG_ROW_RECORDS: usize = 512;
/// Schema 2's operation log: one JSON record per row, keyed by `(revision, n)`.
const SCHEMA_2_CHANGES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Direct user memberships, `(group, user)` → [`MemberRow`]. A group's record in
/// `groups` has no members: a membership change writes one row here (and the small
/// group record), whatever the group's size.
const MEMBERS: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("members");
/// Side records (`side`): `(table, key)` → the module's bytes.
const SIDE: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("side_records");

const META_SCHEMA: &str = "schema";
const META_REVISION: &str = "revision";
const META_SEQ: &str = "seq";
/// The number the next node gets: numbers are never reused, across reopens too.
const META_NEXT_NODE_NUMBER: &str = "next_node_number";
/// A random number drawn when the store is created: an image names the store it was
/// written from (`image`), so one copied beside another store is not taken for its.
const META_STORE_ID: &str = "store_id";
/// The id of the cluster whose change log the store follows (cluster mode); absent
/// for a single server's store.
const META_CLUSTER_ID: &str = "cluster_id";
/// The layout this build writes and reads. 2: users and groups carry `attributes`.
/// 3: the operation log holds one row per transaction (migrated from 2 on open).
/// 4: new log rows are binary (postcard); rows written as JSON by schema 3 stay as
/// they are and are read as such. Group members move out of the group records into
/// `members` (migrated from 3 on open).
/// 5: new log rows are deflated postcard; older rows stay as they are and are read as
/// such (nothing to migrate, but a schema 4 build cannot read the new rows).
/// 6: sign-in's own tables move into `side_records`, written by the writer
/// (migrated from 5 and earlier on open: `migrate_sign_in`).
const SCHEMA: u64 = 6;

/// The first byte of a schema 4 row of the operation log: postcard as it is. A
/// schema 3 row is a JSON array, so its first byte is `[`.
const LOG_ROW_POSTCARD: u8 = 1;
/// The first byte of a schema 5 row: the postcard bytes deflated (raw DEFLATE,
/// RFC 1951). A row's records repeat most of their values, so it deflates to about a
/// third of its size (a row of 512 records at the large bench estate: ~34 KB).
const LOG_ROW_DEFLATED: u8 = 2;
/// How fast, not how small: the log is written on every commit.
const LOG_ROW_DEFLATE_LEVEL: u8 = 1;
/// The most bytes a deflated row may inflate to. A row holds at most
/// [`LOG_ROW_RECORDS`] records, each bounded by the engine's entity limits; a row
/// that claims more is damaged, not large.
const LOG_ROW_MAX_INFLATED: usize = 256 << 20;

/// One row of the operation log, in either of its two encodings.
enum LogRow {
    /// `[`…: a JSON array of [`Change`] (schema 3).
    Json(Vec<Change>),
    /// [`LOG_ROW_POSTCARD`] then postcard `Vec<ChangeRecord>` (schema 4).
    Postcard(Vec<ChangeRecord>),
}

impl LogRow {
    fn encode(records: &[ChangeRecord]) -> Vec<u8> {
        let plain = postcard::to_stdvec(records).expect("INVARIANT: change records encode");
        let deflated = miniz_oxide::deflate::compress_to_vec(&plain, LOG_ROW_DEFLATE_LEVEL);
        let mut row = Vec::with_capacity(1 + deflated.len());
        row.push(LOG_ROW_DEFLATED);
        row.extend_from_slice(&deflated);
        row
    }

    fn decode(bytes: &[u8]) -> Result<LogRow, String> {
        match bytes.first() {
            Some(b'[') => serde_json::from_slice(bytes)
                .map(LogRow::Json)
                .map_err(|error| error.to_string()),
            Some(&LOG_ROW_POSTCARD) => postcard::from_bytes(&bytes[1..])
                .map(LogRow::Postcard)
                .map_err(|error| error.to_string()),
            Some(&LOG_ROW_DEFLATED) => {
                let plain = miniz_oxide::inflate::decompress_to_vec_with_limit(
                    &bytes[1..],
                    LOG_ROW_MAX_INFLATED,
                )
                .map_err(|error| format!("a deflated log row does not inflate: {error}"))?;
                postcard::from_bytes(&plain)
                    .map(LogRow::Postcard)
                    .map_err(|error| error.to_string())
            }
            _ => Err("a log row is neither JSON, postcard nor deflated postcard".to_owned()),
        }
    }

    /// The entity of each change with a revision above `since`, without reading
    /// what changed.
    fn entities(&self, since: u64) -> Vec<(EntityKind, Id)> {
        match self {
            LogRow::Json(changes) => changes
                .iter()
                .filter(|change| change.revision > since)
                .map(|change| (change.entity, change.id))
                .collect(),
            LogRow::Postcard(records) => records
                .iter()
                .filter(|record| record.revision > since)
                .map(|record| (record.entity, record.id))
                .collect(),
        }
    }

    /// The row's changes with a revision above `since`, at most `limit`, as readers
    /// see them.
    fn changes(self, since: u64, limit: usize) -> Result<Vec<Change>, String> {
        match self {
            LogRow::Json(changes) => Ok(changes
                .into_iter()
                .filter(|change| change.revision > since)
                .take(limit)
                .collect()),
            LogRow::Postcard(records) => records
                .into_iter()
                .filter(|record| record.revision > since)
                .take(limit)
                .map(ChangeRecord::into_change)
                .collect(),
        }
    }
}

/// One membership as `members` keeps it. `order` places it in its group's member
/// list: a group written whole numbers its members `(seq, position)`, a membership
/// written alone takes `(seq, n)` of its commit (its `n`th), and a changed one keeps
/// its order; every commit's `seq` is above every earlier one's, so sorting by order
/// gives the list in the order the snapshot keeps it.
#[derive(Serialize, Deserialize)]
struct MemberRow {
    order: (u64, u32),
    expires_at: Option<Time>,
    source: Source,
}

impl MemberRow {
    fn of(order: (u64, u32), member: &UserMember) -> MemberRow {
        MemberRow {
            order,
            expires_at: member.expires_at,
            source: member.source.clone(),
        }
    }
}

/// One `members` row, read: its group's key, its user and the row.
fn read_member(key: (u128, u128), value: &[u8]) -> Result<(u128, Id, MemberRow), StoreError> {
    let (group, user) = key;
    Ok((group, id_of(user), decode("members", user, value)?))
}

/// One row of the operation log, read.
fn read_log_row(key: (u64, u32), value: &[u8]) -> Result<LogRow, StoreError> {
    LogRow::decode(value).map_err(|message| StoreError::Corrupt {
        table: "change_log",
        key: format!("{key:?}"),
        message,
    })
}

fn member_key(group: Id, user: Id) -> (u128, u128) {
    (key(group), key(user))
}

/// How many passes [`filling_order`] makes over a run of ascending keys.
const FILL_PASSES: usize = 3;

/// The order in which to insert rows whose keys ascend: every third row, then the
/// rows after those, then the rest.
///
/// redb splits a full B-tree leaf in the middle, so rows inserted in key order (as
/// the engine's time-ordered ids are created, by an import, a directory sync or an
/// identity provider) leave every leaf half full: at the large bench estate half of
/// the table pages were free space. In three passes a leaf split in the first pass
/// is filled by the next two: leaves end about four-fifths full whatever the row
/// sizes (simulated for rows of 30 to 250 bytes; random order gives 70%). The order
/// is fixed, so the same writes make the same file.
fn filling_order<T>(rows: &[T]) -> impl Iterator<Item = &T> {
    (0..FILL_PASSES).flat_map(move |pass| rows.iter().skip(pass).step_by(FILL_PASSES))
}

/// The `members` rows of one group.
fn group_rows(group: Id) -> std::ops::RangeInclusive<(u128, u128)> {
    (key(group), 0)..=(key(group), u128::MAX)
}

/// A group's members from its rows, in order.
fn members_in_order(mut rows: Vec<(Id, MemberRow)>) -> Vec<UserMember> {
    rows.sort_by_key(|(_, row)| row.order);
    rows.into_iter()
        .map(|(user, row)| UserMember {
            user,
            expires_at: row.expires_at,
            source: row.source,
        })
        .collect()
}

/// The group record as `groups` keeps it: without its members. `Record` declares
/// `Group`'s fields in `Group`'s order and decodes as a `Group` with no members (a
/// field added to `Group` and not here fails that decoding, which a test pins).
fn encode_group(group: &Group) -> Vec<u8> {
    #[derive(Serialize)]
    struct Record<'a> {
        id: Id,
        name: &'a str,
        members: &'a [UserMember],
        subgroups: &'a [crate::model::GroupMember],
        roles: &'a [crate::model::RoleAssignment],
        source: &'a Source,
        external_id: &'a Option<String>,
        attributes: &'a crate::model::Attributes,
        description: &'a str,
        created_at: Time,
        updated_at: Time,
        created_by: &'a str,
    }
    encode(&Record {
        id: group.id,
        name: &group.name,
        members: &[],
        subgroups: &group.subgroups,
        roles: &group.roles,
        source: &group.source,
        external_id: &group.external_id,
        attributes: &group.attributes,
        description: &group.description,
        created_at: group.created_at,
        updated_at: group.updated_at,
        created_by: &group.created_by,
    })
}

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
    pub(crate) next_node_number: u64,
}

/// One commit: the entities to rewrite (read from the snapshot being published),
/// secret writes in order, and change records.
pub(crate) struct Commit<'a> {
    pub(crate) snapshot: &'a Snapshot,
    /// Entities to rewrite whole (a group with its members).
    pub(crate) touched: Vec<(EntityKind, Id)>,
    /// Memberships written alone, in order.
    pub(crate) memberships: Vec<MembershipWrite>,
    pub(crate) secrets: Vec<SecretWrite>,
    pub(crate) changes: Vec<ChangeRecord>,
    /// Side records written, in key order.
    pub(crate) side: Vec<SideWrite>,
    pub(crate) revision: u64,
    pub(crate) seq: u64,
}

/// One table of a store, as [`Engine::store_tables`] reports it.
///
/// [`Engine::store_tables`]: crate::Engine::store_tables
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    pub name: String,
    pub entries: u64,
    /// Keys and values.
    pub stored_bytes: u64,
    /// The B-tree's own bytes (branch pages, per-page headers).
    pub metadata_bytes: u64,
    /// Bytes of the table's pages that hold nothing.
    pub fragmented_bytes: u64,
}

/// Every record a store holds at one revision, as its tables hold them, but its
/// operation log: what a new node of a cluster starts from (a cluster image,
/// `docs/cluster.md`).
#[derive(Serialize, Deserialize)]
pub(crate) struct Dump {
    pub(crate) revision: u64,
    pub(crate) seq: u64,
    pub(crate) next_node_number: u64,
    /// Rows of the tables keyed by one id: the table's index in [`DUMPED`], the
    /// key, the value.
    pub(crate) rows: Vec<(u8, u128, Vec<u8>)>,
    pub(crate) passwords: Vec<(u128, String)>,
    pub(crate) members: Vec<((u128, u128), Vec<u8>)>,
    pub(crate) side: Vec<SideWrite>,
}

/// The tables keyed by one id that a [`Dump`] holds, by index.
const DUMPED: [TableDefinition<u128, &[u8]>; 8] = [
    USERS,
    GROUPS,
    NODES,
    ASSETS,
    RULES,
    ROLES,
    TOKENS,
    TOKEN_HASHES,
];

/// What the meta table says of a store.
pub(crate) struct Identity {
    pub(crate) store_id: u64,
    pub(crate) revision: u64,
    pub(crate) seq: u64,
    pub(crate) next_node_number: u64,
}

/// One entity as the store holds it.
#[derive(Serialize, Deserialize)]
pub(crate) enum Stored {
    User(crate::model::User),
    Group(crate::model::Group),
    Node(crate::model::Node),
    Asset(crate::model::Asset),
    Rule(crate::model::Rule),
    Role(crate::model::Role),
    Token(crate::model::Token, [u8; 32]),
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
            txn.open_table(CHANGE_LOG)?;
            txn.open_table(MEMBERS)?;
            txn.open_table(SIDE)?;
            let mut meta = txn.open_table(META)?;
            if meta.get(META_STORE_ID)?.is_none() {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes)
                    .map_err(|error| StoreError::Io(format!("no randomness: {error}")))?;
                meta.insert(META_STORE_ID, u64::from_le_bytes(bytes))?;
            }
            let found = meta.get(META_SCHEMA)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(META_SCHEMA, SCHEMA)?;
                }
                Some(2) => {
                    migrate_change_log(&txn)?;
                    migrate_members(&txn)?;
                    migrate_sign_in(&txn)?;
                    meta.insert(META_SCHEMA, SCHEMA)?;
                }
                Some(3) => {
                    migrate_members(&txn)?;
                    migrate_sign_in(&txn)?;
                    meta.insert(META_SCHEMA, SCHEMA)?;
                }
                Some(4 | 5) => {
                    migrate_sign_in(&txn)?;
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
        // The two large tables decode on two cores: assets on a thread of their own,
        // users and everything else here (a rebuild's load took a third of it).
        let (assets, users, mut groups) = std::thread::scope(|scope| {
            let assets = scope.spawn(|| all::<Asset>(&txn, ASSETS, "assets"));
            let users = all::<User>(&txn, USERS, "users");
            let groups = all::<Group>(&txn, GROUPS, "groups");
            let assets = assets.join().expect("decoding a table does not panic");
            Ok::<_, StoreError>((assets?, users?, groups?))
        })?;
        let mut rows: std::collections::HashMap<u128, Vec<(Id, MemberRow)>> = Default::default();
        for row in txn.open_table(MEMBERS)?.iter()? {
            let (key, value) = row?;
            let (group, user, row) = read_member(key.value(), value.value())?;
            rows.entry(group).or_default().push((user, row));
        }
        for group in &mut groups {
            group.members = members_in_order(rows.remove(&key(group.id)).unwrap_or_default());
        }
        if let Some(group) = rows.keys().next() {
            return Err(StoreError::Corrupt {
                table: "members",
                key: id_of(*group).to_string(),
                message: "members of a group that does not exist".to_owned(),
            });
        }
        let estate = Estate {
            users,
            groups,
            nodes: all(&txn, NODES, "nodes")?,
            assets,
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
        let next_node_number = meta.get(META_NEXT_NODE_NUMBER)?.map_or(1, |v| v.value());
        Ok(Loaded {
            estate,
            token_hashes,
            revision,
            next_node_number,
        })
    }

    /// Writes one commit in one transaction, durably.
    pub(crate) fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let snapshot = commit.snapshot;
            // Only the tables written are opened: every table opened for writing has
            // its root rewritten at commit, written to or not.
            for kind in EntityKind::ALL {
                let mut ids = commit.touched.iter().filter(|(k, _)| *k == kind).peekable();
                if ids.peek().is_none() {
                    continue;
                }
                let mut table = txn.open_table(table_of(kind))?;
                let ids: Vec<Id> = ids.map(|(_, id)| *id).collect();
                for id in filling_order(&ids) {
                    let bytes = encode_entity(snapshot, kind, *id);
                    put_or_remove(&mut table, key(*id), bytes.as_deref())?;
                }
            }
            write_members(&txn, &commit)?;
            // Each secrets table is opened only when the commit writes to it.
            let (mut passwords, mut token_hashes) = (None, None);
            for secret in &commit.secrets {
                match secret {
                    SecretWrite::Password { user, hash } => put_or_remove(
                        opened(&txn, &mut passwords, PASSWORDS)?,
                        key(*user),
                        hash.as_deref(),
                    )?,
                    SecretWrite::TokenHash { token, hash } => put_or_remove(
                        opened(&txn, &mut token_hashes, TOKEN_HASHES)?,
                        key(*token),
                        hash.as_ref().map(|hash| hash.as_slice()),
                    )?,
                }
            }
            if !commit.changes.is_empty() {
                let mut log = txn.open_table(CHANGE_LOG)?;
                for (row, records) in commit.changes.chunks(LOG_ROW_RECORDS).enumerate() {
                    let last = records.last().expect("chunks are not empty").revision;
                    let row = u32::try_from(row).expect("INVARIANT: fewer than 2^32 rows");
                    log.insert((last, row), LogRow::encode(records).as_slice())?;
                }
            }
            if !commit.side.is_empty() {
                let mut side = txn.open_table(SIDE)?;
                for write in &commit.side {
                    let key = (write.table.as_str(), write.key.as_slice());
                    put_or_remove(&mut side, key, write.value.as_deref())?;
                }
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(META_REVISION, commit.revision)?;
            meta.insert(META_SEQ, commit.seq)?;
            meta.insert(META_NEXT_NODE_NUMBER, commit.snapshot.next_node_number)?;
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
        let table = txn.open_table(CHANGE_LOG)?;
        let mut changes = Vec::new();
        for row in table.range((since.saturating_add(1), 0)..)? {
            if changes.len() >= limit {
                break;
            }
            let (key, value) = row?;
            let wanted = limit - changes.len();
            let batch = read_log_row(key.value(), value.value())?.changes(since, wanted);
            changes.extend(batch.map_err(|message| StoreError::Corrupt {
                table: "change_log",
                key: format!("{:?}", key.value()),
                message,
            })?);
        }
        Ok(changes)
    }

    /// The entities changed after revision `since`, as `changes_since` names them, one
    /// per change record.
    pub(crate) fn entities_changed_since(
        &self,
        since: u64,
    ) -> Result<Vec<(EntityKind, Id)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHANGE_LOG)?;
        let mut entities = Vec::new();
        for row in table.range((since.saturating_add(1), 0)..)? {
            let (key, value) = row?;
            entities.extend(read_log_row(key.value(), value.value())?.entities(since));
        }
        Ok(entities)
    }

    /// What each table of the store holds, for the `memory` report: where a store's
    /// bytes go.
    pub(crate) fn table_sizes(&self) -> Result<Vec<TableSize>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut sizes = Vec::new();
        for handle in txn.list_tables()? {
            let name = handle.name().to_owned();
            let table = txn.open_untyped_table(handle)?;
            let stats = table.stats()?;
            sizes.push(TableSize {
                name,
                entries: table.len()?,
                stored_bytes: stats.stored_bytes(),
                metadata_bytes: stats.metadata_bytes(),
                fragmented_bytes: stats.fragmented_bytes(),
            });
        }
        Ok(sizes)
    }

    /// Every record of the store, read in one transaction (so at one revision).
    pub(crate) fn dump(&self) -> Result<Dump, StoreError> {
        let txn = self.db.begin_read()?;
        let mut rows = Vec::new();
        for (index, table) in DUMPED.iter().enumerate() {
            let index = u8::try_from(index).expect("INVARIANT: few tables");
            for row in txn.open_table(*table)?.iter()? {
                let (key, value) = row?;
                rows.push((index, key.value(), value.value().to_vec()));
            }
        }
        let mut passwords = Vec::new();
        for row in txn.open_table(PASSWORDS)?.iter()? {
            let (key, value) = row?;
            passwords.push((key.value(), value.value().to_owned()));
        }
        let mut members = Vec::new();
        for row in txn.open_table(MEMBERS)?.iter()? {
            let (key, value) = row?;
            members.push((key.value(), value.value().to_vec()));
        }
        let mut side = Vec::new();
        for row in txn.open_table(SIDE)?.iter()? {
            let (key, value) = row?;
            let (table, key) = key.value();
            side.push(SideWrite {
                table: table.to_owned(),
                key: key.to_vec(),
                value: Some(value.value().to_vec()),
            });
        }
        let identity = identity_in(&txn)?;
        Ok(Dump {
            revision: identity.revision,
            seq: identity.seq,
            next_node_number: identity.next_node_number,
            rows,
            passwords,
            members,
            side,
        })
    }

    /// Writes `dump` into this store, which must hold nothing yet (revision 0), in
    /// one transaction. Its operation log starts after the dump's revision.
    pub(crate) fn restore(&self, dump: &Dump) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let revision = meta.get(META_REVISION)?.map_or(0, |v| v.value());
            if revision != 0 {
                return Err(StoreError::Io(format!(
                    "an image is only restored into an empty store; this one is at revision {revision}"
                )));
            }
            meta.insert(META_REVISION, dump.revision)?;
            meta.insert(META_SEQ, dump.seq)?;
            meta.insert(META_NEXT_NODE_NUMBER, dump.next_node_number)?;
            for (index, table) in DUMPED.iter().enumerate() {
                let mut table = txn.open_table(*table)?;
                // The bootstrap's root node and built-in roles are replaced by the
                // image's.
                table.retain(|_, _| false)?;
                for (_, key, value) in dump.rows.iter().filter(|row| usize::from(row.0) == index) {
                    table.insert(*key, value.as_slice())?;
                }
            }
            if dump
                .rows
                .iter()
                .any(|row| usize::from(row.0) >= DUMPED.len())
            {
                return Err(StoreError::Corrupt {
                    table: "(image)",
                    key: "(rows)".to_owned(),
                    message: "a row of a table this build does not know".to_owned(),
                });
            }
            let mut passwords = txn.open_table(PASSWORDS)?;
            passwords.retain(|_, _| false)?;
            for (key, hash) in &dump.passwords {
                passwords.insert(*key, hash.as_str())?;
            }
            let mut members = txn.open_table(MEMBERS)?;
            members.retain(|_, _| false)?;
            for (key, value) in &dump.members {
                members.insert(*key, value.as_slice())?;
            }
            let mut side = txn.open_table(SIDE)?;
            side.retain(|_, _| false)?;
            for write in &dump.side {
                if let Some(value) = &write.value {
                    side.insert(
                        (write.table.as_str(), write.key.as_slice()),
                        value.as_slice(),
                    )?;
                }
            }
            txn.open_table(CHANGE_LOG)?.retain(|_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// One side record, as committed.
    pub(crate) fn side_get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let side = txn.open_table(SIDE)?;
        Ok(side.get((table, key))?.map(|value| value.value().to_vec()))
    }

    /// The side records of `table` with a key after `after` (all of them without
    /// one), in key order, at most `limit`.
    pub(crate) fn side_after(
        &self,
        table: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<SideRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let side = txn.open_table(SIDE)?;
        let mut records = Vec::new();
        for row in side.range((table, after.unwrap_or_default())..)? {
            let (key, value) = row?;
            let (name, key) = key.value();
            if name != table {
                break;
            }
            if after.is_some_and(|after| key == after) {
                continue;
            }
            if records.len() == limit {
                break;
            }
            records.push((key.to_vec(), value.value().to_vec()));
        }
        Ok(records)
    }

    /// The side record of `table` with the greatest key, if any.
    pub(crate) fn side_last(&self, table: &str) -> Result<Option<SideRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let side = txn.open_table(SIDE)?;
        let mut next = table.to_owned();
        next.push('\0');
        let last = side
            .range((table, &[][..])..(next.as_str(), &[][..]))?
            .next_back();
        last.transpose()?
            .map(|(key, value)| Ok((key.value().1.to_vec(), value.value().to_vec())))
            .transpose()
    }

    /// The id of the cluster this store follows, if it joined one.
    pub(crate) fn cluster_id(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_CLUSTER_ID)?.map(|value| value.value()))
    }

    /// Marks the store as following cluster `id`.
    pub(crate) fn join_cluster(&self, id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(META_CLUSTER_ID, id)?;
        txn.commit()?;
        Ok(())
    }

    /// The store's id, revision, last sequence number and next node number.
    pub(crate) fn identity(&self) -> Result<Identity, StoreError> {
        identity_in(&self.db.begin_read()?)
    }

    /// The stored record of one entity, and for a token its hash.
    pub(crate) fn entity(&self, kind: EntityKind, id: Id) -> Result<Option<Stored>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table_of(kind))?;
        let Some(bytes) = table.get(key(id))? else {
            return Ok(None);
        };
        let bytes = bytes.value();
        let name = kind.noun();
        let raw = key(id);
        Ok(Some(match kind {
            EntityKind::User => Stored::User(decode(name, raw, bytes)?),
            EntityKind::Group => {
                let mut group: Group = decode(name, raw, bytes)?;
                let mut rows = Vec::new();
                for row in txn.open_table(MEMBERS)?.range(group_rows(id))? {
                    let (key, value) = row?;
                    let (_, user, row) = read_member(key.value(), value.value())?;
                    rows.push((user, row));
                }
                group.members = members_in_order(rows);
                Stored::Group(group)
            }
            EntityKind::Node => Stored::Node(decode(name, raw, bytes)?),
            EntityKind::Asset => Stored::Asset(decode(name, raw, bytes)?),
            EntityKind::Rule => Stored::Rule(decode(name, raw, bytes)?),
            EntityKind::Role => Stored::Role(decode(name, raw, bytes)?),
            EntityKind::Token => {
                let token = decode(name, raw, bytes)?;
                let hashes = txn.open_table(TOKEN_HASHES)?;
                let hash = hashes.get(raw)?.ok_or_else(|| StoreError::Corrupt {
                    table: "token_hashes",
                    key: id.to_string(),
                    message: "a token's hash is missing".to_owned(),
                })?;
                let hash: [u8; 32] = hash.value().try_into().map_err(|_| StoreError::Corrupt {
                    table: "token_hashes",
                    key: id.to_string(),
                    message: "a token hash is 32 bytes".to_owned(),
                })?;
                Stored::Token(token, hash)
            }
        }))
    }

    /// The stored password hash of a user.
    pub(crate) fn password_hash(&self, user: Id) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PASSWORDS)?;
        Ok(table.get(key(user))?.map(|v| v.value().to_owned()))
    }
}

/// The store's id, revision, last sequence number and next node number, as `txn`
/// reads them.
fn identity_in(txn: &redb::ReadTransaction) -> Result<Identity, StoreError> {
    let meta = txn.open_table(META)?;
    let get = |key: &str, default: u64| -> Result<u64, StoreError> {
        Ok(meta.get(key)?.map_or(default, |v| v.value()))
    };
    Ok(Identity {
        store_id: get(META_STORE_ID, 0)?,
        revision: get(META_REVISION, 0)?,
        seq: get(META_SEQ, 0)?,
        next_node_number: get(META_NEXT_NODE_NUMBER, 1)?,
    })
}

/// Writes `value` at `key`, or removes `key` when there is no value.
fn put_or_remove<'k, 'v, K: redb::Key + 'static, V: redb::Value + 'static>(
    table: &mut redb::Table<'_, K, V>,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
    value: Option<impl std::borrow::Borrow<V::SelfType<'v>>>,
) -> Result<(), redb::StorageError> {
    match value {
        Some(value) => drop(table.insert(key, value)?),
        None => drop(table.remove(key)?),
    }
    Ok(())
}

/// The table `slot` holds, opened in `txn` on first use.
fn opened<'s, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'t redb::WriteTransaction,
    slot: &'s mut Option<redb::Table<'t, K, V>>,
    definition: TableDefinition<K, V>,
) -> Result<&'s mut redb::Table<'t, K, V>, redb::TableError> {
    match slot {
        Some(table) => Ok(table),
        None => Ok(slot.insert(txn.open_table(definition)?)),
    }
}

/// The `members` rows of a commit: every row of a group written whole, and each
/// membership written alone with its group's (member-less) record.
fn write_members(txn: &redb::WriteTransaction, commit: &Commit<'_>) -> Result<(), StoreError> {
    let whole: std::collections::BTreeSet<Id> = commit
        .touched
        .iter()
        .filter(|(kind, _)| *kind == EntityKind::Group)
        .map(|(_, id)| *id)
        .collect();
    let alone: Vec<&MembershipWrite> = commit
        .memberships
        .iter()
        .filter(|write| !whole.contains(&write.group))
        .collect();
    if whole.is_empty() && alone.is_empty() {
        return Ok(());
    }
    let row = |order: (u64, u32), member: &UserMember| encode(&MemberRow::of(order, member));
    let mut members = txn.open_table(MEMBERS)?;
    // The rows of the groups written whole, gathered and sorted so that they go in
    // in the filling order.
    let mut rows = Vec::new();
    for &group in &whole {
        let mut stale = Vec::new();
        for row in members.range(group_rows(group))? {
            stale.push(row?.0.value());
        }
        for key in stale {
            members.remove(key)?;
        }
        let slot = commit
            .snapshot
            .slot(group)
            .filter(|s| s.kind == EntityKind::Group);
        let Some(slot) = slot else {
            continue;
        };
        for (position, member) in commit.snapshot.group_members(slot.index).iter().enumerate() {
            let position = u32::try_from(position).expect("INVARIANT: bounded lists");
            rows.push((
                member_key(group, member.user),
                row((commit.seq, position), member),
            ));
        }
    }
    rows.sort_unstable_by_key(|(key, _)| *key);
    for (key, bytes) in filling_order(&rows) {
        members.insert(*key, bytes.as_slice())?;
    }
    for (n, write) in alone.iter().enumerate() {
        let key = member_key(write.group, write.user);
        let Some(member) = &write.member else {
            members.remove(key)?;
            continue;
        };
        let kept = match members.get(key)? {
            Some(bytes) => Some(decode::<MemberRow>("members", key.1, bytes.value())?.order),
            None => None,
        };
        let order = kept.unwrap_or((commit.seq, u32::try_from(n).unwrap_or(u32::MAX)));
        members.insert(key, row(order, member).as_slice())?;
    }
    let records: std::collections::BTreeSet<Id> = alone.iter().map(|write| write.group).collect();
    if !records.is_empty() {
        let mut groups = txn.open_table(GROUPS)?;
        for group in records {
            match encode_entity(commit.snapshot, EntityKind::Group, group) {
                Some(bytes) => groups.insert(key(group), bytes.as_slice())?,
                None => groups.remove(key(group))?,
            };
        }
    }
    Ok(())
}

/// Moves sign-in's own tables (schema 5 and before: a redb table each, keys of their
/// own types) into `side_records`, values unchanged: ids and sequence numbers become
/// their big-endian bytes, so key order is kept. Inside the transaction that opens
/// the store.
fn migrate_sign_in(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    const BY_USER: [&str; 6] = [
        "auth_totp",
        "auth_recovery",
        "auth_email_codes",
        "auth_sms_codes",
        "auth_mfa_policy",
        "auth_passkeys",
    ];
    const BY_BYTES: [&str; 4] = [
        "auth_resets",
        "auth_sms_sends",
        "auth_ceremonies",
        "auth_failures",
    ];
    let present: Vec<String> = txn
        .list_tables()?
        .map(|handle| handle.name().to_owned())
        .collect();
    let mut side = txn.open_table(SIDE)?;
    for name in present {
        let name = name.as_str();
        if BY_USER.contains(&name) {
            let table = TableDefinition::<u128, &[u8]>::new(name);
            for row in txn.open_table(table)?.iter()? {
                let (key, value) = row?;
                side.insert((name, &key.value().to_be_bytes()[..]), value.value())?;
            }
            txn.delete_table(table)?;
        } else if BY_BYTES.contains(&name) {
            let table = TableDefinition::<&[u8], &[u8]>::new(name);
            for row in txn.open_table(table)?.iter()? {
                let (key, value) = row?;
                side.insert((name, key.value()), value.value())?;
            }
            txn.delete_table(table)?;
        } else if name == "auth_passkey_ids" {
            let table = TableDefinition::<&[u8], u128>::new(name);
            for row in txn.open_table(table)?.iter()? {
                let (key, user) = row?;
                side.insert((name, key.value()), &user.value().to_be_bytes()[..])?;
            }
            txn.delete_table(table)?;
        } else if name == "auth_events" {
            let table = TableDefinition::<u64, &[u8]>::new(name);
            for row in txn.open_table(table)?.iter()? {
                let (key, value) = row?;
                side.insert((name, &key.value().to_be_bytes()[..]), value.value())?;
            }
            txn.delete_table(table)?;
        }
    }
    Ok(())
}

/// Moves every group's members out of its record into `members` (schema 3 to 4),
/// inside the transaction that opens the store.
fn migrate_members(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut groups = txn.open_table(GROUPS)?;
    let mut members = txn.open_table(MEMBERS)?;
    let mut rewritten = Vec::new();
    for row in groups.iter()? {
        let (key, value) = row?;
        let group: Group = decode("groups", key.value(), value.value())?;
        for (position, member) in group.members.iter().enumerate() {
            let order = (
                0,
                u32::try_from(position).expect("INVARIANT: bounded lists"),
            );
            let row = encode(&MemberRow::of(order, member));
            members.insert(member_key(group.id, member.user), row.as_slice())?;
        }
        rewritten.push((key.value(), encode_group(&group)));
    }
    for (key, bytes) in rewritten {
        groups.insert(key, bytes.as_slice())?;
    }
    Ok(())
}

/// Moves schema 2's operation log (a row per record, keyed by `(revision, n)`) into
/// the `change_log` (a row per revision), record bytes unchanged, inside the
/// transaction that opens the store.
fn migrate_change_log(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut log = txn.open_table(CHANGE_LOG)?;
    {
        let old = txn.open_table(SCHEMA_2_CHANGES)?;
        let mut batch: Option<(u64, Vec<u8>)> = None;
        for row in old.iter()? {
            let (key, value) = row?;
            let (revision, _) = key.value();
            match &mut batch {
                Some((current, json)) if *current == revision => {
                    json.push(b',');
                    json.extend_from_slice(value.value());
                }
                _ => {
                    if let Some((current, mut json)) = batch.take() {
                        json.push(b']');
                        log.insert((current, 0), json.as_slice())?;
                    }
                    let mut json = vec![b'['];
                    json.extend_from_slice(value.value());
                    batch = Some((revision, json));
                }
            }
        }
        if let Some((current, mut json)) = batch {
            json.push(b']');
            log.insert((current, 0), json.as_slice())?;
        }
    }
    txn.delete_table(SCHEMA_2_CHANGES)?;
    Ok(())
}

fn encode_entity(snapshot: &Snapshot, kind: EntityKind, id: Id) -> Option<Vec<u8>> {
    let slot = snapshot.slot(id).filter(|slot| slot.kind == kind)?;
    let index = slot.index;
    Some(match kind {
        EntityKind::User => snapshot.user_entry(index)?.record.bytes().to_vec(),
        EntityKind::Group => encode_group(&snapshot.group_entry(index)?.group),
        EntityKind::Node => encode(&*snapshot.node_entry(index)?.node),
        EntityKind::Asset => snapshot.asset_entry(index)?.record.bytes().to_vec(),
        EntityKind::Rule => encode(&*snapshot.rule_entry(index)?.rule),
        EntityKind::Role => encode(snapshot.role_entry(index)?),
        EntityKind::Token => encode(&*snapshot.token_entry(index)?.token),
    })
}

/// Entity `id` of `kind` in `snapshot` as the store holds it (a group with its
/// members, a token with its hash): what a cluster's change log carries of an entity
/// a commit writes whole.
pub(crate) fn stored_of(snapshot: &Snapshot, kind: EntityKind, id: Id) -> Option<Stored> {
    let slot = snapshot.slot(id).filter(|slot| slot.kind == kind)?;
    let index = slot.index;
    Some(match kind {
        EntityKind::User => Stored::User(snapshot.user_entry(index)?.record.unpack()),
        EntityKind::Group => {
            let mut group = (*snapshot.group_entry(index)?.group).clone();
            group.members = snapshot.group_members(index);
            Stored::Group(group)
        }
        EntityKind::Node => Stored::Node((*snapshot.node_entry(index)?.node).clone()),
        EntityKind::Asset => Stored::Asset(snapshot.asset_entry(index)?.record.unpack()),
        EntityKind::Rule => Stored::Rule((*snapshot.rule_entry(index)?.rule).clone()),
        EntityKind::Role => Stored::Role(snapshot.role_entry(index)?.clone()),
        EntityKind::Token => {
            let entry = snapshot.token_entry(index)?;
            Stored::Token((*entry.token).clone(), entry.hash)
        }
    })
}

/// Every redb error is an I/O error of the store, with redb's words.
macro_rules! io_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> StoreError {
                StoreError::Io(error.to_string())
            }
        }
    )*};
}

io_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::Error
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, Op, Spec};

    fn log_json(engine: &Engine, since: u64) -> serde_json::Value {
        serde_json::to_value(engine.changes_since(since, 1000).unwrap()).unwrap()
    }

    /// A store written by schema 2 (the log a row per record) opens, with the same
    /// log, read from any revision.
    #[test]
    fn a_schema_2_change_log_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let create = |kind, json| Op::Create(Spec::from_json(kind, json).unwrap());
        let engine = Engine::open(&path).unwrap();
        let first = engine.snapshot().revision();
        engine
            .write(
                &crate::write::Actor::system("t"),
                vec![create(
                    EntityKind::User,
                    serde_json::json!({"username": "a"}),
                )],
            )
            .unwrap();
        engine
            .write(
                &crate::write::Actor::system("t"),
                vec![
                    create(EntityKind::User, serde_json::json!({"username": "b"})),
                    create(
                        EntityKind::Group,
                        serde_json::json!({"name": "g", "members": ["a", "b"]}),
                    ),
                ],
            )
            .unwrap();
        let expected = log_json(&engine, 0);
        let from_first = log_json(&engine, first + 1);
        assert_eq!(
            expected.as_array().unwrap().len(),
            3 + count_before(&expected, first),
            "three records after the bootstrap"
        );
        engine.close();
        drop(engine);

        // Rewrite it as schema 2 wrote it.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut old = txn.open_table(SCHEMA_2_CHANGES).unwrap();
            let mut position = (0u64, 0u32);
            for change in expected.as_array().unwrap() {
                let revision = change["revision"].as_u64().unwrap();
                position = if position.0 == revision {
                    (revision, position.1 + 1)
                } else {
                    (revision, 0)
                };
                old.insert(position, serde_json::to_vec(change).unwrap().as_slice())
                    .unwrap();
            }
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, 2)
                .unwrap();
        }
        txn.delete_table(CHANGE_LOG).unwrap();
        txn.commit().unwrap();
        drop(db);

        let reopened = Engine::open(&path).unwrap();
        assert_eq!(log_json(&reopened, 0), expected);
        assert_eq!(log_json(&reopened, first + 1), from_first);
        assert_eq!(reopened.snapshot().counts().groups, 1);
        reopened.close();
        drop(reopened);
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get(META_SCHEMA).unwrap().unwrap().value(), SCHEMA);
        assert!(
            txn.open_table(SCHEMA_2_CHANGES).is_err(),
            "the old log is gone"
        );
    }

    /// A schema 4 store (log rows plain postcard) opens as schema 5: its rows read as
    /// before, and rows written after the open are deflated and read back too.
    #[test]
    fn a_schema_4_log_reads_on_beside_deflated_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let create = |name: &str| {
            Op::Create(
                Spec::from_json(EntityKind::User, serde_json::json!({"username": name})).unwrap(),
            )
        };
        let actor = crate::write::Actor::system("t");
        let engine = Engine::open(&path).unwrap();
        engine
            .write(&actor, vec![create("a"), create("b")])
            .unwrap();
        let written = log_json(&engine, 0);
        engine.close();
        drop(engine);

        // Rewrite every row as schema 4 wrote it.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(CHANGE_LOG).unwrap();
            let rows: Vec<((u64, u32), Vec<u8>)> = log
                .iter()
                .unwrap()
                .map(|row| {
                    let (key, value) = row.unwrap();
                    (key.value(), value.value().to_vec())
                })
                .collect();
            assert!(!rows.is_empty());
            for (key, value) in rows {
                assert_eq!(value[0], LOG_ROW_DEFLATED, "new rows are deflated");
                let Ok(LogRow::Postcard(records)) = LogRow::decode(&value) else {
                    panic!("a deflated row decodes to records");
                };
                let mut plain = vec![LOG_ROW_POSTCARD];
                plain.extend(postcard::to_stdvec(&records).unwrap());
                log.insert(key, plain.as_slice()).unwrap();
            }
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, 4)
                .unwrap();
        }
        txn.commit().unwrap();
        drop(db);

        let reopened = Engine::open(&path).unwrap();
        assert_eq!(log_json(&reopened, 0), written);
        let before = reopened.snapshot().revision();
        reopened.write(&actor, vec![create("c")]).unwrap();
        let after = log_json(&reopened, before);
        assert_eq!(after.as_array().unwrap().len(), 1);
        assert_eq!(after[0]["after"]["username"], "c");
        assert_eq!(
            log_json(&reopened, 0).as_array().unwrap().len(),
            written.as_array().unwrap().len() + 1
        );
        reopened.close();
        drop(reopened);
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get(META_SCHEMA).unwrap().unwrap().value(), SCHEMA);
    }

    /// A deflated row whose bytes are damaged is reported as corrupt, not a panic.
    #[test]
    fn a_damaged_deflated_row_is_an_error() {
        let mut row = vec![LOG_ROW_DEFLATED];
        row.extend_from_slice(&[0xff; 32]);
        let Err(message) = LogRow::decode(&row) else {
            panic!("damaged bytes decoded");
        };
        assert!(message.contains("does not inflate"), "{message}");
    }

    /// The records at or below `revision`.
    fn count_before(log: &serde_json::Value, revision: u64) -> usize {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["revision"].as_u64().unwrap() <= revision)
            .count()
    }

    /// A group's record in `groups` decodes as the group without its members.
    #[test]
    fn a_group_record_is_the_group_without_members() {
        let group: Group = serde_json::from_value(serde_json::json!({
            "id": Id::random(), "name": "g",
            "members": [{"user": Id::random(), "expires_at": null, "source": "local"}],
            "subgroups": [{"group": Id::random(), "expires_at": "2030-01-01T00:00:00Z",
                           "source": "local"}],
            "roles": [{"scope": "*", "roles": ["auditor"]}], "source": "local",
            "external_id": "x", "attributes": {"k": "v"}, "description": "d",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z",
            "created_by": "t"
        }))
        .unwrap();
        let back: Group = postcard::from_bytes(&encode_group(&group)).unwrap();
        assert_eq!(
            back,
            Group {
                members: Vec::new(),
                ..group
            }
        );
    }

    /// Reading from inside a transaction's batch skips its earlier records, and a
    /// limit cuts a batch short.
    #[test]
    fn reads_start_inside_a_batch_and_stop_at_the_limit() {
        let store = Store::in_memory().unwrap();
        let record = |revision: u64, seq: u64| ChangeRecord {
            revision,
            seq,
            time: crate::model::Time::now(),
            actor: "t".to_owned(),
            entity: EntityKind::User,
            id: Id::from_u128(u128::from(seq)),
            operation: crate::model::Operation::Create,
            before: None,
            after: None,
        };
        let snapshot = Snapshot::build(Estate::default(), &[]).unwrap();
        // One transaction holding revisions 1..=3 (two records in revision 2), then one
        // holding revision 4.
        for (revision, changes) in [(3, vec![(1, 1), (2, 2), (2, 3), (3, 4)]), (4, vec![(4, 5)])] {
            store
                .commit(Commit {
                    snapshot: &snapshot,
                    touched: Vec::new(),
                    memberships: Vec::new(),
                    secrets: Vec::new(),
                    changes: changes.into_iter().map(|(r, s)| record(r, s)).collect(),
                    side: Vec::new(),
                    revision,
                    seq: 5,
                })
                .unwrap();
        }
        let seqs = |since, limit| -> Vec<u64> {
            store
                .changes_since(since, limit)
                .unwrap()
                .iter()
                .map(|c| c.seq)
                .collect()
        };
        assert_eq!(seqs(0, 100), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(1, 100), [2, 3, 4, 5]);
        assert_eq!(seqs(2, 100), [4, 5]);
        assert_eq!(seqs(3, 100), [5]);
        assert_eq!(seqs(4, 100), Vec::<u64>::new());
        assert_eq!(seqs(1, 2), [2, 3]);
        assert_eq!(seqs(0, 0), Vec::<u64>::new());
        // A transaction with more records than a row holds (an import) spans rows.
        let many = 2 * LOG_ROW_RECORDS + 7;
        store
            .commit(Commit {
                snapshot: &snapshot,
                touched: Vec::new(),
                memberships: Vec::new(),
                secrets: Vec::new(),
                changes: (0..many as u64).map(|n| record(5, 6 + n)).collect(),
                side: Vec::new(),
                revision: 5,
                seq: 5 + many as u64,
            })
            .unwrap();
        let all = seqs(4, usize::MAX);
        assert_eq!(all, (6..6 + many as u64).collect::<Vec<_>>());
        assert_eq!(seqs(4, LOG_ROW_RECORDS + 3).len(), LOG_ROW_RECORDS + 3);
        assert_eq!(seqs(3, 2), [5, 6]);
        assert_eq!(seqs(5, 100), Vec::<u64>::new());
    }
}
