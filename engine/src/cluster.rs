//! Cluster mode: nodes that follow one ordered change log (`docs/cluster.md`).
//!
//! The engine knows the log only through [`ChangeLog`]; the PostgreSQL one lives in
//! its own crate, and another (etcd, NATS JetStream) can be added without touching
//! the engine. An entry of the log is one commit of some node's writer: the states of
//! the entities it wrote, the memberships it wrote alone, its secret writes and its
//! change records ([`Replica`]). Every node applies every entry in revision order
//! exactly once, to its snapshot and its store, so every node at revision N holds the
//! same estate.
//!
//! A write is validated against the log's head: the writer takes the log's append
//! lock, applies the entries it has not seen yet, applies the write on top, appends
//! its entry and commits the log, and only then commits its own store and publishes.
//! Writes are decided inside the writer (edits are closures over the current state,
//! refusals depend on it), so they cannot be replayed elsewhere; holding the lock for
//! the time of one group commit is what makes "validated against the state it lands
//! on" true without retries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{ChangeRecord, EntityKind, Id, Time, UserMember};
use crate::side::SideWrite;
use crate::store::{Dump, Stored};
use crate::write::{MembershipWrite, SecretWrite};

/// One entry of a change log: the revisions `first..=last` of one commit, and its
/// body, which only the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub first: u64,
    pub last: u64,
    pub body: Vec<u8>,
}

/// Why the change log could not be read or appended to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Not reachable now, or the transaction failed: nothing was appended.
    #[error("the cluster's change log is unavailable: {0}")]
    Unavailable(String),
    /// The log holds something this node cannot apply.
    #[error("the cluster's change log is damaged: {0}")]
    Corrupt(String),
    /// This node's store cannot follow this log.
    #[error("this node cannot join the cluster: {0}")]
    Refused(String),
}

/// A node of a cluster as the log has seen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub applied_revision: u64,
    /// When it last reported.
    pub last_contact: Time,
}

/// The ordered change log every node of a cluster follows.
///
/// Implementations must make [`ChangeLog::lock`] exclusive across every node (one
/// appender at a time), keep entries contiguous (`first` of each is the `last` of the
/// one before plus one) and never change an entry once appended.
pub trait ChangeLog: Send + Sync {
    /// The cluster's id, made when its log was created: a store that followed
    /// another cluster's log must not follow this one.
    fn id(&self) -> Result<u64, LogError>;

    /// Takes the append lock, waiting for another node's append to finish.
    fn lock(&self) -> Result<Box<dyn LockedLog + '_>, LogError>;

    /// Entries whose revisions follow `after`, oldest first, at most `limit`.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, LogError>;

    /// The revision of the newest entry, and when it was appended.
    fn head(&self) -> Result<(u64, Option<Time>), LogError>;

    /// Waits until an entry may have been appended (a hint: callers read the log to
    /// know), at most `timeout`.
    fn wait_for_append(&self, timeout: Duration);

    /// Records that this node (`name`) has applied `revision`.
    fn report(&self, name: &str, revision: u64) -> Result<(), LogError>;

    /// Nodes that reported within `within`.
    fn nodes(&self, within: Duration) -> Result<Vec<NodeStatus>, LogError>;

    /// The revision of the newest cluster image, if any.
    fn newest_image_revision(&self) -> Result<Option<u64>, LogError>;

    /// The newest cluster image: its revision and body, which only the engine reads.
    fn newest_image(&self) -> Result<Option<(u64, Vec<u8>)>, LogError>;

    /// Keeps `body`, an image of the cluster's state at `revision`; one at that
    /// revision already kept stays as it is.
    fn put_image(&self, revision: u64, body: &[u8]) -> Result<(), LogError>;

    /// The first revision of the oldest entry kept, if the log holds any.
    fn oldest_kept(&self) -> Result<Option<u64>, LogError>;

    /// Drops the entries whose last revision is `through` or older, and every image
    /// but the newest; how many entries it dropped. The caller keeps what an image
    /// and the live nodes need.
    fn compact(&self, through: u64) -> Result<u64, LogError>;
}

/// The log while this node holds its append lock. Dropping it without
/// [`LockedLog::append`] releases the lock and appends nothing.
pub trait LockedLog {
    /// The revision of the newest entry.
    fn head(&self) -> u64;

    /// Entries whose revisions follow `after`, oldest first, at most `limit`.
    fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<LogEntry>, LogError>;

    /// Appends `entry` (whose `first` is the head plus one) and releases the lock;
    /// `Ok` only once the entry is durably committed.
    fn append(self: Box<Self>, entry: LogEntry) -> Result<(), LogError>;
}

/// How many entries a node applies per read of the log.
pub(crate) const READ_BATCH: usize = 64;

/// One commit as every node applies it: the body of a [`LogEntry`].
#[derive(Serialize, Deserialize)]
pub(crate) struct Replica {
    /// The writer's time for the commit (what `set_membership` stamps groups with).
    pub(crate) now: Time,
    /// The last change sequence number of the commit.
    pub(crate) seq: u64,
    pub(crate) next_node_number: u64,
    /// The entities written whole, as they are after the commit (`None`: deleted).
    pub(crate) entities: Vec<(EntityKind, Id, Option<Stored>)>,
    /// Memberships written alone, in order: (group, user, the membership after).
    pub(crate) memberships: Vec<(Id, Id, Option<UserMember>)>,
    pub(crate) secrets: Vec<Secret>,
    pub(crate) changes: Vec<ChangeRecord>,
    /// Side records written (sign-in state), in key order.
    pub(crate) side: Vec<SideWrite>,
}

/// A secret write as the log carries it: hashes, never a plaintext.
#[derive(Serialize, Deserialize)]
pub(crate) enum Secret {
    Password { user: Id, hash: Option<String> },
    TokenHash { token: Id, hash: Option<[u8; 32]> },
}

impl Replica {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let plain = postcard::to_allocvec(self).expect("INVARIANT: a replica serializes");
        let mut body = vec![REPLICA_DEFLATED];
        body.extend(miniz_oxide::deflate::compress_to_vec(&plain, 1));
        body
    }

    pub(crate) fn decode(entry: &LogEntry) -> Result<Replica, LogError> {
        let corrupt = |message: String| {
            LogError::Corrupt(format!(
                "the entry of revisions {}..={}: {message}",
                entry.first, entry.last
            ))
        };
        let Some((&REPLICA_DEFLATED, deflated)) = entry.body.split_first() else {
            return Err(corrupt("not an entry this build writes".to_owned()));
        };
        let plain = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED)
            .map_err(|error| corrupt(format!("does not inflate: {error}")))?;
        postcard::from_bytes(&plain).map_err(|error| corrupt(error.to_string()))
    }

    pub(crate) fn memberships(&self) -> Vec<MembershipWrite> {
        self.memberships
            .iter()
            .map(|(group, user, member)| MembershipWrite {
                group: *group,
                user: *user,
                member: member.clone(),
            })
            .collect()
    }

    pub(crate) fn secret_writes(&self) -> Vec<SecretWrite> {
        self.secrets
            .iter()
            .map(|secret| match secret {
                Secret::Password { user, hash } => SecretWrite::Password {
                    user: *user,
                    hash: hash.clone(),
                },
                Secret::TokenHash { token, hash } => SecretWrite::TokenHash {
                    token: *token,
                    hash: *hash,
                },
            })
            .collect()
    }
}

impl From<&SecretWrite> for Secret {
    fn from(write: &SecretWrite) -> Secret {
        match write {
            SecretWrite::Password { user, hash } => Secret::Password {
                user: *user,
                hash: hash.clone(),
            },
            SecretWrite::TokenHash { token, hash } => Secret::TokenHash {
                token: *token,
                hash: *hash,
            },
        }
    }
}

/// A cluster image's body: a store's [`Dump`], postcard, deflated.
pub(crate) fn encode_image(dump: &Dump) -> Vec<u8> {
    let plain = postcard::to_allocvec(dump).expect("INVARIANT: a dump serializes");
    let mut body = vec![IMAGE_DEFLATED];
    body.extend(miniz_oxide::deflate::compress_to_vec(&plain, 1));
    body
}

pub(crate) fn decode_image(revision: u64, body: &[u8]) -> Result<Dump, LogError> {
    let corrupt =
        |message: String| LogError::Corrupt(format!("the image at revision {revision}: {message}"));
    let Some((&IMAGE_DEFLATED, deflated)) = body.split_first() else {
        return Err(corrupt("not an image this build writes".to_owned()));
    };
    let plain = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED)
        .map_err(|error| corrupt(format!("does not inflate: {error}")))?;
    let dump: Dump = postcard::from_bytes(&plain).map_err(|error| corrupt(error.to_string()))?;
    if dump.revision != revision {
        return Err(corrupt(format!("it holds revision {}", dump.revision)));
    }
    Ok(dump)
}

/// The first byte of a cluster image's body.
const IMAGE_DEFLATED: u8 = 1;

/// The first byte of an entry's body: postcard, deflated. (1 was the same without
/// side records, written only by development builds.)
const REPLICA_DEFLATED: u8 = 2;

/// The most bytes an entry's body may inflate to.
const MAX_INFLATED: usize = 1 << 30;
