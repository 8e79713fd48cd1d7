//! The engine: a store, the published snapshot, and the writer that joins them.
//!
//! Readers call [`Engine::snapshot`] and never wait. Writes go to one writer thread,
//! which takes every write that is waiting, applies each to a working copy of the
//! snapshot (a refused write is dropped alone), commits them all in one redb
//! transaction (group commit), and then publishes the new snapshot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::cluster::{ChangeLog, LogEntry, LogError, NodeStatus, READ_BATCH, Replica, Secret};
use crate::credentials::CredentialPolicy;
use crate::error::{Error, NotFound, Problem, StoreError};
use crate::image;
use crate::model::{Change, EntityKind, Estate, Id, Time, Token, builtin_roles};
use crate::secrets;
use crate::side::{SideChanges, SideTxn, into_writes};
use crate::snapshot::{MapSizes, Snapshot};
use crate::store::{Commit, Loaded, Store};
use crate::write::{Actor, Op, Spec, TokenSpec, Working};

/// The most writes the writer joins into one transaction.
const MAX_GROUP: usize = 512;
/// How many writes may wait for the writer before callers block.
const QUEUE: usize = 4096;

/// How an engine runs. `serve` uses the defaults, with the image timing from its
/// `[snapshot]` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Join the writes that wait for the writer into one transaction (one fsync for
    /// all of them). On by default; off, every write gets its own commit, which only
    /// benchmarks that measure the difference want.
    pub group_commit: bool,
    /// Keep a snapshot image beside a file store (`<store>.image`) and open from it
    /// (see `docs/snapshot.md`). On by default.
    pub images: bool,
    /// Write a new image once the store is this many revisions past the last one…
    pub image_every_revisions: u64,
    /// …or once this much time has passed with any change. An image is also written
    /// at a clean shutdown ([`Engine::close`]).
    pub image_every: Duration,
    /// In a cluster: keep a cluster image in the change log (what a new node starts
    /// from) once the log is this many revisions past the newest one; 0: never.
    pub cluster_image_every: u64,
    /// In a cluster: how many revisions of log to keep before the newest cluster
    /// image (older entries are dropped, never ones a live node still needs).
    pub cluster_retain_revisions: u64,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            group_commit: true,
            images: true,
            image_every_revisions: 10_000,
            image_every: Duration::from_secs(300),
            cluster_image_every: 10_000,
            cluster_retain_revisions: 10_000,
        }
    }
}

/// What a successful write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The revision that holds the write.
    pub revision: u64,
    /// Per operation, the id of the entity it created, changed or deleted.
    pub ids: Vec<Id>,
}

/// What the writer is asked to do: a caller's operation, or the creation of what
/// every store starts with.
enum Command {
    Op(Box<Op>),
    Bootstrap {
        root: bool,
        roles: Vec<(String, String, Vec<String>)>,
    },
}

/// A module's edit of side records, run by the writer before the write's commands:
/// whether the module lets the write go on (its answer travels on its own channel).
type SideEdit = Box<dyn FnOnce(&mut SideTxn<'_>) -> bool + Send>;

struct Request {
    actor: Actor,
    commands: Vec<Command>,
    token_hashes: Vec<Option<[u8; 32]>>,
    side: Option<SideEdit>,
    reply: SyncSender<Result<WriteOutcome, Error>>,
}

/// What the writer thread does next.
enum Job {
    Write(Request),
    /// Applies the cluster log's entries this node has not applied yet (a follower's
    /// wake-up, or the catch-up at open, which waits for the answer).
    CatchUp(Option<SyncSender<Result<(), String>>>),
}

/// A node's link to its cluster's change log.
struct ClusterLink {
    log: Arc<dyn ChangeLog>,
    /// This node's name in the log's node list.
    name: String,
    /// The log's head as last seen: its revision, and when its newest entry was
    /// appended.
    head: Mutex<(u64, Option<Time>)>,
    /// Set when the engine closes: the follower stops.
    stopping: AtomicBool,
}

/// How a cluster node is doing, for health checks and metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// The revision this node has applied (its published snapshot's).
    pub applied_revision: u64,
    /// The log's newest revision, as last seen.
    pub head_revision: u64,
    /// Revisions in the log this node has not applied yet.
    pub lag_revisions: u64,
    /// While this node is behind: the time since the newest entry it has not applied
    /// was appended (a lower bound on how stale it is); 0 when it is not behind.
    pub lag_seconds: f64,
}

/// How often a follower looks at the log when no notification wakes it, and reports
/// its applied revision.
const FOLLOW_POLL: Duration = Duration::from_millis(1000);
const REPORT_EVERY: Duration = Duration::from_secs(5);
struct Shared {
    store: Store,
    current: ArcSwap<Snapshot>,
    /// The revision last published, for waiters.
    published: Mutex<u64>,
    publish_signal: Condvar,
    /// Store transactions committed by the writer since the engine opened.
    commits: AtomicU64,
    /// Where images go, for a file store with images on.
    image: Option<ImageTarget>,
    /// Set when the engine closes: the imager stops.
    closing: AtomicBool,
    /// What every plaintext password written must meet, and how it is hashed.
    credentials: std::sync::RwLock<Arc<CredentialPolicy>>,
    /// Every write's duration and outcome, for metrics.
    write_stats: Mutex<crate::WriteStats>,
    /// The cluster's change log, in cluster mode.
    cluster: Option<ClusterLink>,
}

impl Shared {
    fn credential_policy(&self) -> Arc<CredentialPolicy> {
        self.credentials.read().expect("credentials lock").clone()
    }
}

/// The user spec an operation writes whole (a create or a replace), if any: what
/// carries a plaintext password to check and hash.
fn user_spec_mut(op: &mut Op) -> Option<&mut crate::write::UserSpec> {
    match op {
        Op::Create(Spec::User(spec))
        | Op::Replace {
            spec: Spec::User(spec),
            ..
        } => Some(spec),
        _ => None,
    }
}

/// Where the snapshot image of this engine's store is kept, and the revision of the
/// newest image written.
struct ImageTarget {
    path: PathBuf,
    store_id: u64,
    written: Mutex<u64>,
}

impl ImageTarget {
    /// Writes `snapshot` unless an image at its revision or later exists.
    fn write(&self, snapshot: &Snapshot) {
        let mut written = self.written.lock().expect("image lock");
        if snapshot.revision <= *written {
            return;
        }
        let started = std::time::Instant::now();
        match image::write(snapshot, self.store_id, &self.path) {
            Ok(()) => {
                *written = snapshot.revision;
                tracing::debug!(
                    path = %self.path.display(),
                    revision = snapshot.revision,
                    seconds = started.elapsed().as_secs_f64(),
                    "wrote the snapshot image"
                );
            }
            Err(error) => tracing::warn!(
                path = %self.path.display(),
                "cannot write the snapshot image: {error}"
            ),
        }
    }
}

/// An embedded Portcullis engine. Cheap to share across threads (`Arc` it, or clone
/// the snapshots it hands out).
pub struct Engine {
    shared: Arc<Shared>,
    sender: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    imager: Mutex<Option<JoinHandle<()>>>,
    follower: Mutex<Option<JoinHandle<()>>>,
    cluster_imager: Mutex<Option<JoinHandle<()>>>,
    opened_from: Result<u64, image::Rejected>,
}

impl Engine {
    /// Opens the store file at `path`, creating it when missing, and builds the
    /// snapshot from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine, Error> {
        Engine::open_with(path, EngineOptions::default())
    }

    /// As [`Engine::open`], with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: EngineOptions) -> Result<Engine, Error> {
        Engine::start(Store::open(path.as_ref())?, options, None)
    }

    /// As [`Engine::open_with`], as node `name` of the cluster whose change log is
    /// `log` (`docs/cluster.md`): the store is brought up to the log's head before
    /// this returns, every write is appended to the log before it is acknowledged,
    /// and the entries other nodes append are applied as they come.
    ///
    /// Fails when the store holds revisions the log does not (a store of another
    /// estate, or of a single server: start the node with an empty data directory),
    /// or when the log cannot be read and the store has not joined the cluster yet.
    /// A store that has joined opens while the log is unreachable: it answers from
    /// its own revision, refuses writes, and catches up once the log is back.
    pub fn open_clustered(
        path: impl AsRef<Path>,
        options: EngineOptions,
        log: Arc<dyn ChangeLog>,
        name: &str,
    ) -> Result<Engine, Error> {
        let store = Store::open(path.as_ref())?;
        let revision = store.identity()?.revision;
        let joined = store.cluster_id()?;
        let (store, head) = match log.id().and_then(|cluster| Ok((cluster, log.head()?.0))) {
            Ok((cluster, head)) => {
                match joined {
                    Some(id) if id == cluster => {}
                    Some(id) => {
                        return Err(LogError::Refused(format!(
                            "the store follows another cluster's log (cluster {id:x}, this log is cluster {cluster:x}): start this node with an empty data directory"
                        ))
                        .into());
                    }
                    None if revision > 0 => {
                        return Err(LogError::Refused(format!(
                            "the store holds an estate of its own (revision {revision}), not this cluster's: start this node with an empty data directory"
                        ))
                        .into());
                    }
                    None => store.join_cluster(cluster)?,
                }
                if revision > head {
                    return Err(LogError::Refused(format!(
                        "the store is at revision {revision}, past the log's head {head} (was the log's database restored from an older backup?)"
                    ))
                    .into());
                }
                let store =
                    start_from_cluster_image(path.as_ref(), store, revision, head, &*log, cluster)?;
                (store, head)
            }
            // A node of the cluster starts from its own store; its follower catches up
            // once the log is back.
            Err(LogError::Unavailable(message)) if joined.is_some() => {
                tracing::warn!(
                    "the cluster's change log is unreachable ({message}): starting at this node's revision {revision}; writes wait for the log"
                );
                (store, revision)
            }
            Err(error) => return Err(error.into()),
        };
        let link = ClusterLink {
            log,
            name: name.to_owned(),
            head: Mutex::new((head, None)),
            stopping: AtomicBool::new(false),
        };
        Engine::start(store, options, Some(link))
    }

    /// An engine whose store lives in memory only.
    pub fn in_memory() -> Result<Engine, Error> {
        Engine::start(Store::in_memory()?, EngineOptions::default(), None)
    }

    fn start(
        store: Store,
        options: EngineOptions,
        cluster: Option<ClusterLink>,
    ) -> Result<Engine, Error> {
        let identity = store.identity()?;
        let (store_id, revision, seq) = (identity.store_id, identity.revision, identity.seq);
        let image = store
            .path()
            .filter(|_| options.images)
            .map(|path| ImageTarget {
                path: image::path_for(path),
                store_id,
                written: Mutex::new(0),
            });
        let from_image = match &image {
            Some(target) => open_image(&store, target, revision).inspect(|(image_revision, _)| {
                *target.written.lock().expect("image lock") = *image_revision;
            }),
            None => Err(image::Rejected::Missing),
        };
        let (snapshot, opened_from) = match from_image {
            Ok((image_revision, mut snapshot)) => {
                snapshot.next_node_number =
                    snapshot.next_node_number.max(identity.next_node_number);
                (snapshot, Ok(image_revision))
            }
            Err(rejected) => (Snapshot::from_loaded(store.load()?)?, Err(rejected)),
        };
        let revision = snapshot.revision;
        let shared = Arc::new(Shared {
            store,
            current: ArcSwap::from_pointee(snapshot),
            published: Mutex::new(revision),
            publish_signal: Condvar::new(),
            commits: AtomicU64::new(0),
            write_stats: Mutex::default(),
            image,
            closing: AtomicBool::new(false),
            credentials: std::sync::RwLock::new(crate::credentials::default_policy()),
            cluster,
        });
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("portcullis-writer".to_owned())
            .spawn(move || {
                let max_group = if options.group_commit { MAX_GROUP } else { 1 };
                write_loop(&writer_shared, &receiver, seq, max_group);
            })
            .map_err(|error| StoreError::Io(format!("cannot start the writer thread: {error}")))?;
        let imager = match &shared.image {
            Some(_) => {
                let imager_shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("portcullis-imager".to_owned())
                        .spawn(move || image_loop(&imager_shared, options))
                        .map_err(|error| {
                            StoreError::Io(format!("cannot start the image thread: {error}"))
                        })?,
                )
            }
            None => None,
        };
        let follower = match &shared.cluster {
            Some(_) => {
                let follower_shared = shared.clone();
                let wake = sender.clone();
                Some(
                    std::thread::Builder::new()
                        .name("portcullis-follower".to_owned())
                        .spawn(move || follow_loop(&follower_shared, &wake))
                        .map_err(|error| {
                            StoreError::Io(format!("cannot start the follower thread: {error}"))
                        })?,
                )
            }
            None => None,
        };
        let cluster_imager = match &shared.cluster {
            Some(_) if options.cluster_image_every > 0 => {
                let imager_shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("portcullis-cluster-imager".to_owned())
                        .spawn(move || cluster_image_loop(&imager_shared, options))
                        .map_err(|error| {
                            StoreError::Io(format!(
                                "cannot start the cluster image thread: {error}"
                            ))
                        })?,
                )
            }
            _ => None,
        };
        let engine = Engine {
            shared,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            imager: Mutex::new(imager),
            follower: Mutex::new(follower),
            cluster_imager: Mutex::new(cluster_imager),
            opened_from,
        };
        if engine.shared.cluster.is_some() {
            match engine.catch_up_with_log() {
                // A node of the cluster starts while the log is unreachable
                // (`open_clustered`); the follower catches up once it is back.
                Err(Error::Cluster(LogError::Unavailable(message))) => {
                    tracing::warn!("cannot catch up with the cluster's change log yet: {message}")
                }
                caught_up => caught_up?,
            }
        }
        engine.bootstrap()?;
        Ok(engine)
    }

    /// Applies every entry of the cluster's log this node has not applied yet, and
    /// returns once it has (or could not).
    fn catch_up_with_log(&self) -> Result<(), Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::CatchUp(Some(reply)))?;
        let caught_up = answer.recv().map_err(|_| Error::Closed)?;
        caught_up.map_err(|message| Error::Cluster(LogError::Unavailable(message)))
    }

    /// How this node of a cluster is doing; `None` outside cluster mode.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        let link = self.shared.cluster.as_ref()?;
        let applied = *self.shared.published.lock().expect("publish lock");
        let (head, appended) = *link.head.lock().expect("head lock");
        let lag_revisions = head.saturating_sub(applied);
        let lag_seconds = match appended {
            Some(appended) if lag_revisions > 0 => {
                Time::now().as_micros().saturating_sub(appended.as_micros()) as f64 / 1e6
            }
            _ => 0.0,
        };
        Some(ClusterStatus {
            node: link.name.clone(),
            applied_revision: applied,
            head_revision: head.max(applied),
            lag_revisions,
            lag_seconds,
        })
    }

    /// The nodes of this engine's cluster that reported within `within`; `None`
    /// outside cluster mode.
    pub fn cluster_nodes(&self, within: Duration) -> Option<Result<Vec<NodeStatus>, Error>> {
        let link = self.shared.cluster.as_ref()?;
        Some(link.log.nodes(within).map_err(Error::from))
    }

    /// Creates the root node and the built-in roles when they are missing (a new
    /// store, or one from a build with fewer built-in roles).
    fn bootstrap(&self) -> Result<(), Error> {
        let snapshot = self.snapshot();
        let missing_root = snapshot.ids.get(&crate::model::ROOT_NODE_ID).is_none();
        let missing_roles: Vec<_> = builtin_roles()
            .into_iter()
            .filter(|(name, _, _)| snapshot.role_index(name).is_none())
            .collect();
        if !missing_root && missing_roles.is_empty() {
            return Ok(());
        }
        self.submit(
            &Actor::system("system"),
            vec![Command::Bootstrap {
                root: missing_root,
                roles: missing_roles
                    .into_iter()
                    .map(|(name, description, permissions)| {
                        (name.to_owned(), description.to_owned(), permissions)
                    })
                    .collect(),
            }],
            vec![None],
            None,
        )?;
        Ok(())
    }

    /// Sets the credential policy every later write's plaintext passwords must meet
    /// (the sign-in crate's `Auth::new` sets it from its settings).
    pub fn set_credential_policy(&self, policy: CredentialPolicy) {
        *self.shared.credentials.write().expect("credentials lock") = Arc::new(policy);
    }

    /// The credential policy plaintext passwords are written under.
    pub fn credential_policy(&self) -> Arc<CredentialPolicy> {
        self.shared.credential_policy()
    }

    /// The current snapshot. It never changes; ask again to see later writes.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Applies `ops` as one atomic write on behalf of `actor` (recorded in the log).
    /// Either every operation applies and the write is durable when this returns, or
    /// nothing changes and the error says what was wrong. A token actor may grant
    /// only what it holds ([`Actor`]).
    pub fn write(&self, actor: &Actor, ops: Vec<Op>) -> Result<WriteOutcome, Error> {
        self.timed(|| self.write_ops(actor, ops, None))
    }

    /// Writes `ops` together with the changes `edit` makes to side records
    /// ([`SideTxn`]), as one write: one revision, one transaction, one entry of a
    /// cluster's log. `edit` runs in the writer, before the operations, on the side
    /// records as every write before this one left them (in a cluster: every write
    /// of every node), so a read-modify-write in it is never lost to a concurrent
    /// one. It must be quick (no password hashing: that is for the caller's thread).
    /// When `edit` fails, nothing is written and its error is returned; when an
    /// operation is refused, nothing of `edit` is written either. A write whose
    /// `edit` changes nothing and that has no operations takes no revision.
    pub fn write_with<R, E>(
        &self,
        actor: &Actor,
        ops: Vec<Op>,
        edit: impl FnOnce(&mut SideTxn<'_>) -> Result<R, E> + Send + 'static,
    ) -> Result<(WriteOutcome, R), E>
    where
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let answer = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&answer);
        let side: SideEdit = Box::new(move |txn| {
            let result = edit(txn);
            let accepted = result.is_ok();
            *slot.lock().expect("side answer lock") = Some(result);
            accepted
        });
        let written = self.timed(|| self.write_ops(actor, ops, Some(side)));
        let edited = answer.lock().expect("side answer lock").take();
        match (written, edited) {
            (_, Some(Err(refusal))) => Err(refusal),
            (Ok(outcome), Some(Ok(value))) => Ok((outcome, value)),
            (Err(error), _) => Err(error.into()),
            // The writer answers after running the edit, or without running it
            // with an error (closed, or the cluster's log unreachable).
            (Ok(_), None) => Err(Error::Closed.into()),
        }
    }

    /// Side records of `table` committed after the key `after` (from the first
    /// without one), in key order, at most `limit`: reads for modules, outside any
    /// write.
    pub fn side_records(
        &self,
        table: crate::SideTable,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<crate::SideRecord>, Error> {
        Ok(self.shared.store.side_after(table.name(), after, limit)?)
    }

    /// One side record as committed.
    pub fn side_record(
        &self,
        table: crate::SideTable,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.shared.store.side_get(table.name(), key)?)
    }

    /// The stored argon2id hash (a PHC string) of `user`'s password, for a sign-in to
    /// verify against. Never log it or hand it on.
    pub fn password_hash(&self, user: Id) -> Result<Option<String>, Error> {
        Ok(self.shared.store.password_hash(user)?)
    }

    /// Runs a write, counting its duration and outcome in [`Engine::write_stats`].
    fn timed<T>(&self, write: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let result = write();
        self.shared
            .write_stats
            .lock()
            .expect("write stats lock")
            .observe(started.elapsed(), result.is_ok());
        result
    }

    /// Every write's duration and outcome since the engine opened, from every
    /// front-end (`/metrics` shows them).
    pub fn write_stats(&self) -> crate::WriteStats {
        self.shared
            .write_stats
            .lock()
            .expect("write stats lock")
            .clone()
    }

    fn write_ops(
        &self,
        actor: &Actor,
        mut ops: Vec<Op>,
        side: Option<SideEdit>,
    ) -> Result<WriteOutcome, Error> {
        // Check and hash passwords here, on the caller's thread, not in the writer, and
        // give new users the default expiry: the credential policy, at every door.
        let credentials = self.credential_policy();
        let now = Time::now();
        for op in &mut ops {
            let creating = matches!(op, Op::Create(_));
            let Some(spec) = user_spec_mut(op) else {
                continue;
            };
            if creating && spec.expires_at.is_none() {
                spec.expires_at = credentials.default_expiry(now);
            }
            if let Some(password) = spec.password.take() {
                spec.password = Some(password.hashed_under(&credentials)?);
            }
        }
        let hashes = vec![None; ops.len()];
        self.submit(
            actor,
            ops.into_iter()
                .map(|op| Command::Op(Box::new(op)))
                .collect(),
            hashes,
            side,
        )
    }

    /// Every problem `ops` would be refused for, found without writing anything: the
    /// operations are applied in order to a copy of the current snapshot, each after
    /// those before it that apply, and a refused one is noted and skipped (a refused
    /// operation changes nothing). Empty: [`Engine::write`] would accept them, unless
    /// the estate changes in between; otherwise `write` refuses them with one of these
    /// problems (it checks every password first, then applies in order). Passwords
    /// are checked against the credential policy but not hashed. For front-ends that
    /// report every problem of a request at once (an import's rows are its
    /// operations).
    pub fn validate(&self, actor: &Actor, ops: Vec<Op>) -> Vec<Problem> {
        let credentials = self.credential_policy();
        let published = self.snapshot();
        let mut working = Working::new((*published).clone(), Time::now(), actor.name());
        working.credentials = credentials.clone();
        working.authority = match actor.authority(&working.snap, working.now) {
            Ok(authority) => authority,
            Err(error) => return vec![Problem { op: None, error }],
        };
        let mut problems = Vec::new();
        for (index, mut op) in ops.into_iter().enumerate() {
            let problem = |error| Problem {
                op: Some(index),
                error,
            };
            if let Some(spec) = user_spec_mut(&mut op) {
                if let Some(password) = spec.password.take() {
                    match password.checked_under(&credentials) {
                        Ok(password) => spec.password = Some(password),
                        Err(error) => {
                            problems.push(problem(error));
                            continue;
                        }
                    }
                }
            }
            if let Err(error) = working.apply(op, None) {
                problems.push(problem(error));
            }
        }
        problems
    }

    /// Creates an API token. Returns the outcome and the secret, which is shown this
    /// once: only its hash is stored.
    pub fn create_token(
        &self,
        actor: &Actor,
        spec: TokenSpec,
    ) -> Result<(WriteOutcome, String), Error> {
        let (secret, hash) = secrets::new_token();
        let outcome = self.timed(|| {
            self.submit(
                actor,
                vec![Command::Op(Box::new(Op::Create(Spec::Token(spec))))],
                vec![Some(hash)],
                None,
            )
        })?;
        Ok((outcome, secret))
    }

    /// Creates an API token whose secret the caller chose (a bootstrap token from the
    /// environment, say). The secret must be at least 16 characters; only its hash is
    /// stored.
    pub fn create_token_with_secret(
        &self,
        actor: &Actor,
        spec: TokenSpec,
        secret: &str,
    ) -> Result<WriteOutcome, Error> {
        self.timed(|| {
            if secret.chars().count() < 16 || secret.chars().any(char::is_whitespace) {
                return Err(Error::Validation(crate::ValidationError::Invalid {
                    field: "secret",
                    message: "a token secret needs at least 16 characters and no spaces".to_owned(),
                }));
            }
            let hash = secrets::token_hash(secret);
            self.submit(
                actor,
                vec![Command::Op(Box::new(Op::Create(Spec::Token(spec))))],
                vec![Some(hash)],
                None,
            )
        })
    }

    fn submit(
        &self,
        actor: &Actor,
        commands: Vec<Command>,
        token_hashes: Vec<Option<[u8; 32]>>,
        side: Option<SideEdit>,
    ) -> Result<WriteOutcome, Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        let request = Request {
            actor: actor.clone(),
            commands,
            token_hashes,
            side,
            reply,
        };
        self.send(Job::Write(request))?;
        answer.recv().map_err(|_| Error::Closed)?
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        let sender = self
            .sender
            .lock()
            .expect("sender lock")
            .clone()
            .ok_or(Error::Closed)?;
        sender.send(job).map_err(|_| Error::Closed)
    }

    /// How many store transactions the writer has committed since the engine opened.
    /// With group commit, one transaction holds every write that was waiting, so this
    /// grows more slowly than the revision under concurrent writes.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Waits until a snapshot at `revision` or later is published, at most `timeout`.
    /// Returns the current snapshot either way; compare its revision.
    pub fn wait_for_revision(&self, revision: u64, timeout: Duration) -> Arc<Snapshot> {
        let published = self.shared.published.lock().expect("publish lock");
        let closing = &self.shared.closing;
        let _unused = self
            .shared
            .publish_signal
            .wait_timeout_while(published, timeout, |current| {
                *current < revision && !closing.load(Ordering::SeqCst)
            })
            .expect("publish lock");
        self.snapshot()
    }

    /// Whether [`Engine::close`] has been called: no revision will come after the
    /// current one, and a waiter should let go of the engine.
    pub fn is_closed(&self) -> bool {
        self.shared.closing.load(Ordering::SeqCst)
    }

    /// Change records with a revision above `since`, oldest first, at most `limit`.
    pub fn changes_since(&self, since: u64, limit: usize) -> Result<Vec<Change>, Error> {
        Ok(self.shared.store.changes_since(since, limit)?)
    }

    /// The token whose secret this is, if it exists and has not expired at `at`.
    /// The comparison of hashes is constant-time.
    pub fn authenticate_token(&self, secret: &str, at: Time) -> Option<Arc<Token>> {
        let hash = secrets::token_hash(secret);
        let snapshot = self.snapshot();
        let index = snapshot.token_hashes.get(&hash)?;
        let entry = snapshot.token_entry(index)?;
        let valid = secrets::hashes_equal(&entry.hash, &hash)
            && entry.token.expires_at.is_none_or(|expires| at < expires);
        valid.then(|| entry.token.clone())
    }

    /// Whether `password` is the user's. Users without a password match nothing.
    /// Takes about as long for an unknown user as for a wrong password.
    pub fn verify_password(&self, user: &str, password: &str) -> Result<bool, Error> {
        let snapshot = self.snapshot();
        let id = snapshot
            .user_index(user)
            .and_then(|i| snapshot.user_entry(i))
            .map(|e| e.id);
        let hash = match id {
            Some(id) => self.shared.store.password_hash(id)?,
            None => None,
        };
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        Ok(secrets::verify_password(password, &hash) && id.is_some())
    }

    /// A fingerprint of the user's stored password hash (its SHA-256), `None` when
    /// the user has none: it changes whenever the password does, so that a sign-in
    /// session made before a password change can be told apart and ended. Never the
    /// hash itself.
    pub fn password_fingerprint(&self, user: Id) -> Result<Option<[u8; 32]>, Error> {
        use sha2::Digest;
        Ok(self
            .shared
            .store
            .password_hash(user)?
            .map(|hash| sha2::Sha256::digest(hash.as_bytes()).into()))
    }

    /// Where the store lives on disk (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.shared.store.path()
    }

    /// Stops the writer after the writes already queued. Later writes fail with
    /// [`Error::Closed`]; reads go on working.
    ///
    /// A file store's snapshot image is brought up to the last revision on the way
    /// out, so the next open starts from it.
    pub fn close(&self) {
        self.sender.lock().expect("sender lock").take();
        if let Some(link) = &self.shared.cluster {
            link.stopping.store(true, Ordering::SeqCst);
        }
        if let Some(follower) = self.follower.lock().expect("follower lock").take() {
            let _ = follower.join();
        }
        if let Some(imager) = self.cluster_imager.lock().expect("imager lock").take() {
            let _ = imager.join();
        }
        if let Some(writer) = self.writer.lock().expect("writer lock").take() {
            let _ = writer.join();
        }
        // Wakes the imager and whoever waits for a revision (`wait_for_revision`),
        // so that nothing holds the engine, and its store, after it closed.
        {
            let _published = self.shared.published.lock().expect("publish lock");
            self.shared.closing.store(true, Ordering::SeqCst);
            self.shared.publish_signal.notify_all();
        }
        if let Some(imager) = self.imager.lock().expect("imager lock").take() {
            let _ = imager.join();
            if let Some(target) = &self.shared.image {
                target.write(&self.snapshot());
            }
        }
    }

    /// Where the snapshot came from at open: the revision of the image it started
    /// from (then brought up to date from the change log), or why no image was used
    /// and the snapshot was rebuilt from the store ([`ImageRejected::Missing`] for an
    /// in-memory store, images turned off, or none written yet).
    ///
    /// [`ImageRejected::Missing`]: crate::ImageRejected::Missing
    pub fn opened_from(&self) -> &Result<u64, image::Rejected> {
        &self.opened_from
    }

    /// What each table of the store holds (entries, bytes stored, B-tree overhead,
    /// free space in its pages): where a store's size goes.
    pub fn store_tables(&self) -> Result<Vec<crate::TableSize>, Error> {
        Ok(self.shared.store.table_sizes()?)
    }

    /// Writes the snapshot image now (when the store is a file and images are on),
    /// unless one at the current revision exists.
    pub fn write_image(&self) {
        if let Some(target) = &self.shared.image {
            target.write(&self.snapshot());
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

/// An argon2id hash of a random password, verified against when a user is unknown so
/// that the answer takes as long as for a known one.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2YIiv3s2lKA6Bdvqeb+TNoRMxBwMUMoeMMCRnqDCAZ4";

/// Writes an image every `image_every_revisions` revisions or `image_every`, in the
/// background, from the published snapshot (readers and the writer never wait for it).
fn image_loop(shared: &Shared, options: EngineOptions) {
    let Some(target) = &shared.image else { return };
    let mut last = std::time::Instant::now();
    loop {
        {
            let published = shared.published.lock().expect("publish lock");
            let (published, _) = shared
                .publish_signal
                .wait_timeout_while(published, options.image_every, |revision| {
                    !shared.closing.load(Ordering::SeqCst)
                        && revision.saturating_sub(*target.written.lock().expect("image lock"))
                            < options.image_every_revisions
                })
                .expect("publish lock");
            drop(published);
        }
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let snapshot = shared.current.load_full();
        let behind = snapshot.revision
            - (*target.written.lock().expect("image lock")).min(snapshot.revision);
        if behind >= options.image_every_revisions
            || (behind > 0 && last.elapsed() >= options.image_every)
        {
            target.write(&snapshot);
            last = std::time::Instant::now();
        }
    }
}

/// The image at `target` (its revision, and its snapshot brought up to `revision`),
/// or why it cannot be used (logged as a warning, unless there simply is none).
fn open_image(
    store: &Store,
    target: &ImageTarget,
    revision: u64,
) -> Result<(u64, Snapshot), image::Rejected> {
    let shown = target.path.display();
    let snapshot = image::read(&target.path, target.store_id, revision).inspect_err(|rejected| {
        if *rejected != image::Rejected::Missing {
            tracing::warn!(path = %shown, "ignoring the snapshot image, rebuilding from the store: {rejected}");
        }
    })?;
    let image_revision = snapshot.revision;
    let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        catch_up(store, snapshot, revision)
    }));
    let rejected = match caught_up {
        Ok(Ok(snapshot)) => return Ok((image_revision, snapshot)),
        Ok(Err(error)) => {
            image::Rejected::Malformed(format!("cannot be brought up to date: {error}"))
        }
        Err(_) => image::Rejected::Malformed("disagrees with the store's change log".to_owned()),
    };
    tracing::warn!(path = %shown, "ignoring the snapshot image, rebuilding from the store: {rejected}");
    Err(rejected)
}

/// Brings `snapshot` (from an image) up to the store's `revision`: every entity the
/// change log names after the image's revision is read back from the store and put,
/// kinds in the order their references need (roles, nodes parents first, users,
/// groups, assets, rules, tokens); then the entities gone from the store are
/// deleted, in the reverse order.
fn catch_up(store: &Store, snapshot: Snapshot, revision: u64) -> Result<Snapshot, Error> {
    if snapshot.revision == revision {
        return Ok(snapshot);
    }
    let touched: std::collections::BTreeSet<(EntityKind, Id)> = store
        .entities_changed_since(snapshot.revision)?
        .into_iter()
        .collect();
    let mut entities = Vec::with_capacity(touched.len());
    for (kind, id) in touched {
        entities.push((kind, id, store.entity(kind, id)?));
    }
    let mut working = Working::unrecorded(snapshot);
    put_entities(&mut working, entities);
    let mut snapshot = working.finish().snapshot;
    snapshot.revision = revision;
    Ok(snapshot)
}

/// Puts entities as they are after some commits (read back from the store, or from
/// a cluster's change log) into `working`: kinds in the order their references need
/// (roles, nodes parents first, users, groups, assets, rules, tokens), then the
/// entities that are gone (`None`) deleted, in the reverse order.
fn put_entities(
    working: &mut Working,
    entities: Vec<(EntityKind, Id, Option<crate::store::Stored>)>,
) {
    use crate::store::Stored;
    /// Kinds in the order their references need.
    const KINDS: [EntityKind; 7] = [
        EntityKind::Role,
        EntityKind::Node,
        EntityKind::User,
        EntityKind::Group,
        EntityKind::Asset,
        EntityKind::Rule,
        EntityKind::Token,
    ];
    let rank = |kind: EntityKind| KINDS.iter().position(|k| *k == kind).expect("every kind");
    let mut entities = entities;
    entities.sort_by_key(|(kind, id, _)| (rank(*kind), *id));
    let index_of = |working: &Working, kind: EntityKind, id: Id| working.snap.slot_of(kind, id);
    let mut gone = Vec::new();
    let mut nodes = Vec::new();
    let mut groups = Vec::new();
    for (kind, id, stored) in entities {
        let Some(stored) = stored else {
            gone.push((kind, id));
            continue;
        };
        match stored {
            Stored::Role(role) => {
                working.set_role(index_of(working, kind, id), Some(role));
            }
            Stored::Node(node) => nodes.push(node),
            Stored::User(user) => {
                // Nodes are all placed before the first user (kinds are in order).
                place_nodes(working, &mut nodes);
                working.set_user(index_of(working, kind, id), Some(user));
            }
            Stored::Group(group) => groups.push(group),
            Stored::Asset(asset) => {
                place_nodes(working, &mut nodes);
                place_groups(working, &mut groups);
                working.set_asset(index_of(working, kind, id), Some(asset));
            }
            Stored::Rule(rule) => {
                place_nodes(working, &mut nodes);
                place_groups(working, &mut groups);
                working.set_rule(index_of(working, kind, id), Some(rule));
            }
            Stored::Token(token, hash) => {
                working.set_token(index_of(working, kind, id), Some(token), Some(hash));
            }
        }
    }
    place_nodes(working, &mut nodes);
    place_groups(working, &mut groups);
    for (kind, id) in gone.into_iter().rev() {
        let Some(index) = index_of(working, kind, id) else {
            continue;
        };
        match kind {
            EntityKind::Role => working.set_role(Some(index), None),
            EntityKind::Node => working.set_node(Some(index), None),
            EntityKind::User => working.set_user(Some(index), None),
            EntityKind::Group => working.set_group(Some(index), None),
            EntityKind::Asset => working.set_asset(Some(index), None),
            EntityKind::Rule => working.set_rule(Some(index), None),
            EntityKind::Token => working.set_token(Some(index), None, None),
        };
    }
}

/// Puts nodes read back from the store, each after its parent.
fn place_nodes(working: &mut Working, nodes: &mut Vec<crate::model::Node>) {
    while !nodes.is_empty() {
        let waiting: std::collections::HashSet<Id> = nodes.iter().map(|n| n.id).collect();
        let before = nodes.len();
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(nodes)
            .into_iter()
            .partition(|n| n.parent.is_none_or(|p| !waiting.contains(&p)));
        for node in ready {
            let index = working.snap.slot_of(EntityKind::Node, node.id);
            working.set_node(index, Some(node));
        }
        *nodes = rest;
        assert!(nodes.len() < before, "INVARIANT: stored nodes form a tree");
    }
}

/// Puts groups read back from the store: new ones bare first, so that subgroup
/// links between them resolve.
fn place_groups(working: &mut Working, groups: &mut Vec<crate::model::Group>) {
    let index_of = |working: &Working, id: Id| working.snap.slot_of(EntityKind::Group, id);
    for group in groups.iter() {
        if index_of(working, group.id).is_none() {
            let mut bare = group.clone();
            bare.members.clear();
            bare.subgroups.clear();
            working.set_group(None, Some(bare));
        }
    }
    for group in std::mem::take(groups) {
        let index = index_of(working, group.id);
        working.set_group(index, Some(group));
    }
}

fn write_loop(shared: &Shared, receiver: &Receiver<Job>, mut seq: u64, max_group: usize) {
    // The time of the last group: each group's is later, so that an entity changed
    // by two groups is at two versions (`updated_at`, what `Op::Expect` compares)
    // even when the clock does not move or steps back between them. In a cluster,
    // also later than every entry applied from the log.
    let mut last = Time::MIN;
    while let Ok(first) = receiver.recv() {
        let mut group = Vec::new();
        let mut catch_ups = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(request) => group.push(request),
                Job::CatchUp(reply) => catch_ups.push(reply),
            }
            if group.len() < max_group {
                next = receiver.try_recv().ok();
            }
        }
        if !catch_ups.is_empty() {
            let caught_up = follow_log(shared, &mut seq, &mut last).map_err(|error| {
                tracing::warn!("cannot apply the cluster's change log: {error}");
                error.to_string()
            });
            for reply in catch_ups.into_iter().flatten() {
                let _ = reply.send(caught_up.clone());
            }
        }
        if !group.is_empty() {
            seq = write_group(shared, group, seq, &mut last);
        }
    }
}

/// Applies the entries of the cluster's log after the published revision, without
/// taking the append lock (entries never change once appended).
fn follow_log(shared: &Shared, seq: &mut u64, last: &mut Time) -> Result<(), Error> {
    let Some(link) = &shared.cluster else {
        return Ok(());
    };
    loop {
        let applied = shared.current.load().revision;
        let entries = link.log.read_after(applied, READ_BATCH)?;
        if entries.is_empty() {
            return Ok(());
        }
        for entry in &entries {
            apply_entry(shared, entry, seq, last)?;
        }
        let mut head = link.head.lock().expect("head lock");
        head.0 = head.0.max(shared.current.load().revision);
    }
}

/// Takes the cluster log's append lock and applies the entries this node has not
/// applied yet, so that a write is decided on the state it will land on.
fn lock_log<'a>(
    shared: &Shared,
    link: &'a ClusterLink,
    seq: &mut u64,
    last: &mut Time,
) -> Result<Box<dyn crate::cluster::LockedLog + 'a>, Error> {
    let mut locked = link.log.lock()?;
    let head = locked.head();
    loop {
        let applied = shared.current.load().revision;
        if applied == head {
            break;
        }
        if applied > head {
            return Err(LogError::Corrupt(format!(
                "this node's store is at revision {applied}, past the log's head {head}"
            ))
            .into());
        }
        let entries = locked.read_after(applied, READ_BATCH)?;
        if entries.is_empty() {
            return Err(LogError::Corrupt(format!(
                "the log ends before its head {head}, after revision {applied}"
            ))
            .into());
        }
        for entry in &entries {
            apply_entry(shared, entry, seq, last)?;
        }
    }
    let mut seen = link.head.lock().expect("head lock");
    seen.0 = seen.0.max(head);
    Ok(locked)
}

/// Applies one entry of the cluster's log, another node's commit, to the snapshot
/// and the store, and publishes the result.
fn apply_entry(
    shared: &Shared,
    entry: &LogEntry,
    seq: &mut u64,
    last: &mut Time,
) -> Result<(), Error> {
    let replica = Replica::decode(entry)?;
    let published = shared.current.load_full();
    if entry.first != published.revision + 1 || entry.last < entry.first {
        return Err(LogError::Corrupt(format!(
            "the entry of revisions {}..={} does not follow this node's revision {}",
            entry.first, entry.last, published.revision
        ))
        .into());
    }
    let memberships = replica.memberships();
    let secrets = replica.secret_writes();
    let Replica {
        now,
        seq: entry_seq,
        next_node_number,
        entities,
        changes,
        side,
        ..
    } = replica;
    let touched: Vec<(EntityKind, Id)> =
        entities.iter().map(|(kind, id, _)| (*kind, *id)).collect();
    let whole: std::collections::HashSet<Id> = touched
        .iter()
        .filter(|(kind, _)| *kind == EntityKind::Group)
        .map(|(_, id)| *id)
        .collect();
    let mut working = Working::unrecorded((*published).clone());
    working.now = now;
    put_entities(&mut working, entities);
    for write in &memberships {
        if !whole.contains(&write.group) {
            working.replicate_membership(write.group, write.user, write.member.as_ref());
        }
    }
    let mut snapshot = working.finish().snapshot;
    snapshot.revision = entry.last;
    snapshot.next_node_number = snapshot.next_node_number.max(next_node_number);
    shared.store.commit(Commit {
        snapshot: &snapshot,
        touched,
        memberships,
        secrets,
        changes,
        side,
        revision: entry.last,
        seq: entry_seq,
    })?;
    shared.commits.fetch_add(1, Ordering::Relaxed);
    *seq = entry_seq;
    *last = (*last).max(now);
    publish(shared, snapshot);
    Ok(())
}

/// Publishes `snapshot` and wakes whoever waits for its revision.
fn publish(shared: &Shared, snapshot: Snapshot) {
    let revision = snapshot.revision;
    shared.current.store(Arc::new(snapshot));
    *shared.published.lock().expect("publish lock") = revision;
    shared.publish_signal.notify_all();
}

/// A store to follow the log from: `store` itself, unless the log no longer holds
/// the entries after its `revision` (compacted while the node was away: its store is
/// set aside as `<store>.stale` and a new one made), or it is empty and the cluster
/// has an image; then a store restored from the newest cluster image, whose
/// revision the log's entries go on from.
fn start_from_cluster_image(
    path: &Path,
    store: Store,
    revision: u64,
    head: u64,
    log: &dyn ChangeLog,
    cluster: u64,
) -> Result<Store, Error> {
    if revision == head {
        return Ok(store);
    }
    let kept_from = log.oldest_kept()?.unwrap_or(head + 1);
    let missing = revision + 1 < kept_from;
    if !missing && revision > 0 {
        return Ok(store);
    }
    let image = match log.newest_image()? {
        Some((image_revision, body)) if image_revision > revision => (image_revision, body),
        _ if missing => {
            return Err(LogError::Corrupt(format!(
                "the log keeps revisions from {kept_from} on, this node needs them from {} on, and no cluster image is newer than its revision {revision}",
                revision + 1
            ))
            .into());
        }
        // A new node with no image to start from: it replays the whole log.
        _ => return Ok(store),
    };
    let dump = crate::cluster::decode_image(image.0, &image.1)?;
    let store = if revision > 0 {
        drop(store);
        let stale = path.with_extension("redb.stale");
        std::fs::rename(path, &stale).map_err(|error| {
            StoreError::Io(format!(
                "cannot set aside the store {} to start again from the cluster's image: {error}",
                path.display()
            ))
        })?;
        let _ = std::fs::remove_file(image::path_for(path));
        tracing::warn!(
            "this node was away longer than the cluster's log keeps (it was at revision {revision}, the log keeps revisions from {kept_from}): its store is set aside as {} and it starts again from the cluster image at revision {}",
            stale.display(),
            image.0
        );
        let store = Store::open(path)?;
        store.join_cluster(cluster)?;
        store
    } else {
        store
    };
    store.restore(&dump)?;
    Ok(store)
}

/// How long ago a node may have reported and still count as live: compaction keeps
/// what it needs, and the first live node by name makes the cluster's images.
const LIVE_WITHIN: Duration = Duration::from_secs(60);

/// Every few seconds, when this node is the first live node by name: keeps a cluster
/// image in the log once it has applied `cluster_image_every` revisions past the
/// newest one, and drops the entries older than the newest image by
/// `cluster_retain_revisions` that no live node still needs. Runs beside the
/// follower, so following never waits for it.
fn cluster_image_loop(shared: &Shared, options: EngineOptions) {
    let Some(link) = &shared.cluster else { return };
    let mut next = std::time::Instant::now() + REPORT_EVERY;
    while !link.stopping.load(Ordering::SeqCst) {
        if std::time::Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        next = std::time::Instant::now() + REPORT_EVERY;
        if let Err(error) = make_cluster_image(shared, link, options) {
            tracing::debug!("cannot make the cluster's image now: {error}");
        }
    }
}

fn make_cluster_image(
    shared: &Shared,
    link: &ClusterLink,
    options: EngineOptions,
) -> Result<(), Error> {
    let live = link.log.nodes(LIVE_WITHIN)?;
    if live.iter().any(|node| node.name < link.name) {
        return Ok(());
    }
    let mut newest = link.log.newest_image_revision()?.unwrap_or(0);
    if shared.current.load().revision >= newest + options.cluster_image_every {
        let started = std::time::Instant::now();
        let dump = shared.store.dump()?;
        let body = crate::cluster::encode_image(&dump);
        link.log.put_image(dump.revision, &body)?;
        newest = dump.revision;
        tracing::info!(
            revision = dump.revision,
            bytes = body.len(),
            seconds = started.elapsed().as_secs_f64(),
            "kept a cluster image in the change log"
        );
    }
    if newest == 0 {
        return Ok(());
    }
    // Retention, each round: what the live nodes need moves on as they follow.
    let needed = live
        .iter()
        .map(|node| node.applied_revision)
        .chain([newest])
        .min()
        .unwrap_or(newest);
    let through = newest
        .saturating_sub(options.cluster_retain_revisions)
        .min(needed);
    if through > 0
        && link
            .log
            .oldest_kept()?
            .is_some_and(|first| first <= through)
    {
        let dropped = link.log.compact(through)?;
        tracing::info!(through, dropped, "dropped the cluster log's old entries");
    }
    Ok(())
}

/// A cluster node's follower: wakes the writer whenever the log may have grown (a
/// notification, or every [`FOLLOW_POLL`]), and reports this node's revision and
/// refreshes what it knows of the log's head every [`REPORT_EVERY`].
fn follow_loop(shared: &Shared, wake: &SyncSender<Job>) {
    let Some(link) = &shared.cluster else { return };
    let mut reported = std::time::Instant::now() - REPORT_EVERY;
    while !link.stopping.load(Ordering::SeqCst) {
        link.log.wait_for_append(FOLLOW_POLL);
        if link.stopping.load(Ordering::SeqCst) {
            return;
        }
        // A full queue is busy writing, and every write catches up first.
        let _ = wake.try_send(Job::CatchUp(None));
        if reported.elapsed() >= REPORT_EVERY {
            reported = std::time::Instant::now();
            let applied = shared.current.load().revision;
            match link.log.head() {
                Ok(head) => *link.head.lock().expect("head lock") = head,
                Err(error) => tracing::warn!("cannot read the cluster's change log: {error}"),
            }
            if let Err(error) = link.log.report(&link.name, applied) {
                tracing::debug!("cannot report to the cluster's change log: {error}");
            }
        }
    }
}

/// Applies a group of writes and commits them together. Returns the next sequence.
///
/// One working copy serves the whole group: each write applies on top of the ones
/// before it and gets the next revision. A refused write is dropped alone. A write
/// of one operation needs nothing to roll back to, since a refused operation changes
/// nothing (`Working::apply`); a write of several takes a checkpoint first. Taking
/// none for single operations is what keeps a group cheap: a checkpoint shares the
/// snapshot's tables, so the write after it copies every table it touches.
///
/// Every write of the group is stamped `now`, later than the previous group's.
fn write_group(shared: &Shared, group: Vec<Request>, mut seq: u64, last: &mut Time) -> u64 {
    // In a cluster: the log's append lock, and every entry before it applied.
    let locked = match &shared.cluster {
        Some(link) => match lock_log(shared, link, &mut seq, last) {
            Ok(locked) => Some(locked),
            Err(error) => {
                let message = error.to_string();
                tracing::warn!("a write cannot reach the cluster's change log: {message}");
                for request in group {
                    let refusal = Error::Cluster(LogError::Unavailable(message.clone()));
                    let _ = request.reply.send(Err(refusal));
                }
                return seq;
            }
        },
        None => None,
    };
    *last = Time::now().max(last.add_micros(1));
    let now = *last;
    let published = shared.current.load_full();
    let mut working = Working::new((*published).clone(), now, "");
    working.credentials = shared.credential_policy();
    let mut revision = published.revision;
    let mut next_seq = seq;
    let mut replies = Vec::with_capacity(group.len());
    let mut side = SideChanges::new();
    for request in group {
        working.authority = match request.actor.authority(&working.snap, working.now) {
            Ok(authority) => authority,
            Err(error) => {
                replies.push((request.reply, Err(Error::Validation(error))));
                continue;
            }
        };
        let mut side_changes = SideChanges::new();
        if let Some(edit) = request.side {
            let mut txn = SideTxn::new(&shared.store, &side);
            if !edit(&mut txn) {
                // The module refused: its own error reaches its caller; this one
                // never does.
                let refused = crate::ValidationError::Invalid {
                    field: "side",
                    message: "refused by the module that edits it".to_owned(),
                };
                replies.push((request.reply, Err(Error::Validation(refused))));
                continue;
            }
            side_changes = txn.into_changes();
        }
        if request.commands.is_empty() && side_changes.is_empty() {
            // Nothing to write: no revision.
            let outcome = WriteOutcome {
                revision,
                ids: Vec::new(),
            };
            replies.push((request.reply, Ok(outcome)));
            continue;
        }
        working.actor = request.actor.name().to_owned();
        let pending = working.pending();
        let checkpoint = (request.commands.len() > 1).then(|| working.checkpoint());
        let applied: Result<Vec<Id>, _> = request
            .commands
            .into_iter()
            .zip(request.token_hashes)
            .map(|(command, hash)| match command {
                Command::Op(op) => working.apply(*op, hash),
                Command::Bootstrap { root, roles } => {
                    // Decided again here: in a cluster, another node may have
                    // bootstrapped the estate since this one asked.
                    if root && working.snap.ids.get(&crate::model::ROOT_NODE_ID).is_none() {
                        working.create_root_node();
                    }
                    for (name, description, permissions) in roles {
                        if working.snap.role_index(&name).is_none() {
                            working.create_builtin_role(&name, &description, permissions);
                        }
                    }
                    Ok(crate::model::ROOT_NODE_ID)
                }
            })
            .collect();
        let ids = match applied {
            Ok(ids) => ids,
            Err(error) => {
                match checkpoint {
                    Some(checkpoint) => working.restore(checkpoint),
                    None => debug_assert_eq!(
                        working.pending(),
                        pending,
                        "a refused operation changed something: {error}"
                    ),
                }
                replies.push((request.reply, Err(Error::Validation(error))));
                continue;
            }
        };
        drop(checkpoint);
        working.settle();
        side.extend(side_changes);
        revision += 1;
        for change in &mut working.changes[pending.0..] {
            next_seq += 1;
            change.revision = revision;
            change.seq = next_seq;
        }
        let outcome = WriteOutcome { revision, ids };
        replies.push((request.reply, Ok(outcome)));
    }
    let crate::write::Finished {
        snapshot: mut base,
        changes,
        touched,
        memberships,
        secrets,
    } = working.finish();
    base.revision = revision;
    if base.revision == published.revision {
        // Every write in the group was refused: nothing to commit.
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        return seq;
    }
    let touched: Vec<(EntityKind, Id)> = touched.into_iter().collect();
    let side = into_writes(side);
    if let Some(locked) = locked {
        let replica = Replica {
            now,
            seq: next_seq,
            next_node_number: base.next_node_number,
            entities: touched
                .iter()
                .map(|&(kind, id)| (kind, id, crate::store::stored_of(&base, kind, id)))
                .collect(),
            memberships: memberships
                .iter()
                .map(|write| (write.group, write.user, write.member.clone()))
                .collect(),
            secrets: secrets.iter().map(Secret::from).collect(),
            changes: changes.clone(),
            side: side.clone(),
        };
        let entry = LogEntry {
            first: published.revision + 1,
            last: base.revision,
            body: replica.encode(),
        };
        if let Err(error) = locked.append(entry) {
            tracing::warn!("a write cannot be appended to the cluster's change log: {error}");
            for (reply, result) in replies {
                let answer = result.and(Err(Error::Cluster(error.clone())));
                let _ = reply.send(answer);
            }
            return seq;
        }
        if let Some(link) = &shared.cluster {
            *link.head.lock().expect("head lock") = (base.revision, Some(now));
        }
    }
    let clustered = shared.cluster.is_some();
    let commit = Commit {
        snapshot: &base,
        touched,
        memberships,
        secrets,
        changes,
        side,
        revision: base.revision,
        seq: next_seq,
    };
    if let Err(error) = shared.store.commit(commit) {
        if clustered {
            // The log holds the write: it is acknowledged, and this node applies
            // it from the log, as another node's, at its next catch-up.
            tracing::error!(
                "a write appended to the cluster's change log cannot be stored here (it is applied from the log later): {error}"
            );
            for (reply, result) in replies {
                let _ = reply.send(result);
            }
            return seq;
        }
        let message = error.to_string();
        for (reply, result) in replies {
            let answer = match result {
                Ok(_) => Err(Error::Store(StoreError::Io(message.clone()))),
                Err(error) => Err(error),
            };
            let _ = reply.send(answer);
        }
        return seq;
    }
    shared.commits.fetch_add(1, Ordering::Relaxed);
    publish(shared, base);
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
    next_seq
}

impl Snapshot {
    /// Builds a snapshot from everything a store holds.
    fn from_loaded(loaded: Loaded) -> Result<Snapshot, Error> {
        let Loaded {
            estate,
            token_hashes,
            revision,
            next_node_number,
        } = loaded;
        let mut snapshot = Snapshot::build(estate, &token_hashes)?;
        snapshot.revision = revision;
        snapshot.next_node_number = snapshot.next_node_number.max(next_node_number);
        Ok(snapshot)
    }

    /// Builds a snapshot from plain entities, all derived indexes computed afresh.
    #[doc(hidden)]
    pub fn build(estate: Estate, token_hashes: &[(Id, [u8; 32])]) -> Result<Snapshot, StoreError> {
        let corrupt = |table: &'static str, id: Id, message: &str| StoreError::Corrupt {
            table,
            key: id.to_string(),
            message: message.to_owned(),
        };
        let count = |n: usize| n as u64;
        let sizes = MapSizes {
            ids: count(
                estate.roles.len()
                    + estate.nodes.len()
                    + estate.users.len()
                    + estate.groups.len()
                    + estate.assets.len()
                    + estate.rules.len()
                    + estate.tokens.len(),
            ),
            users: count(estate.users.len()),
            groups: count(estate.groups.len()),
            assets: count(estate.assets.len()),
            accounts: count(estate.assets.iter().map(|a| a.accounts.len()).sum()),
        };
        let mut working = Working::unrecorded(Snapshot::sized(sizes));
        for role in estate.roles {
            working.set_role(None, Some(role));
        }
        // Nodes parents first.
        let mut nodes = estate.nodes;
        let mut placed = std::collections::HashSet::new();
        while !nodes.is_empty() {
            let before = nodes.len();
            let (ready, waiting): (Vec<_>, Vec<_>) = nodes
                .into_iter()
                .partition(|n| n.parent.is_none_or(|p| placed.contains(&p)));
            for node in ready {
                placed.insert(node.id);
                working.set_node(None, Some(node));
            }
            nodes = waiting;
            if nodes.len() == before {
                return Err(corrupt("nodes", nodes[0].id, "its parent is missing"));
            }
        }
        for user in estate.users {
            working.set_user(None, Some(user));
        }
        check_references(
            &working.snap,
            &estate.groups,
            &estate.assets,
            &estate.rules,
            &estate.tokens,
        )?;
        let mut indexes = Vec::with_capacity(estate.groups.len());
        for group in &estate.groups {
            let mut bare = group.clone();
            bare.members.clear();
            bare.subgroups.clear();
            indexes.push(working.set_group(None, Some(bare)));
        }
        for (group, index) in estate.groups.into_iter().zip(indexes) {
            working.set_group(index, Some(group));
        }
        for asset in estate.assets {
            working.set_asset(None, Some(asset));
        }
        for rule in estate.rules {
            working.set_rule(None, Some(rule));
        }
        for token in estate.tokens {
            let hash = token_hashes
                .iter()
                .find(|(id, _)| *id == token.id)
                .map(|(_, hash)| *hash)
                .ok_or_else(|| corrupt("tokens", token.id, "its hash is missing"))?;
            working.set_token(None, Some(token), Some(hash));
        }
        Ok(working.finish().snapshot)
    }

    /// Every entity, as plain lists (dense index order).
    pub fn estate(&self) -> Estate {
        Estate {
            users: self
                .users
                .iter()
                .flatten()
                .map(|e| e.record.unpack())
                .collect(),
            groups: (0..self.groups.len() as u32)
                .filter_map(|index| self.group_record(index))
                .collect(),
            nodes: self
                .nodes
                .iter()
                .flatten()
                .map(|e| (*e.node).clone())
                .collect(),
            assets: self
                .assets
                .iter()
                .flatten()
                .map(|e| e.record.unpack())
                .collect(),
            rules: self
                .rules
                .iter()
                .flatten()
                .map(|e| (*e.rule).clone())
                .collect(),
            roles: self.roles.iter().flatten().map(|r| (**r).clone()).collect(),
            tokens: self
                .tokens
                .iter()
                .flatten()
                .map(|e| (*e.token).clone())
                .collect(),
        }
    }
}

/// Refuses a store whose records refer to entities it does not hold (the set
/// functions assume every reference resolves).
fn check_references(
    snapshot: &Snapshot,
    groups: &[crate::model::Group],
    assets: &[crate::model::Asset],
    rules: &[crate::model::Rule],
    tokens: &[Token],
) -> Result<(), StoreError> {
    let group_ids: std::collections::HashSet<Id> = groups.iter().map(|g| g.id).collect();
    let asset_ids: std::collections::HashSet<Id> = assets.iter().map(|a| a.id).collect();
    let is = |id: &Id, kind: EntityKind| snapshot.slot(*id).is_some_and(|s| s.kind == kind);
    let broken = |table: &'static str, id: Id, what: &str| StoreError::Corrupt {
        table,
        key: id.to_string(),
        message: format!("it refers to a missing {what}"),
    };
    for group in groups {
        if !group.members.iter().all(|m| is(&m.user, EntityKind::User)) {
            return Err(broken("groups", group.id, "user"));
        }
        if !group.subgroups.iter().all(|m| group_ids.contains(&m.group)) {
            return Err(broken("groups", group.id, "group"));
        }
    }
    for asset in assets {
        if !asset.nodes.iter().all(|n| is(n, EntityKind::Node)) {
            return Err(broken("assets", asset.id, "node"));
        }
    }
    for rule in rules {
        let ok = rule.users.iter().all(|u| is(u, EntityKind::User))
            && rule.groups.iter().all(|g| group_ids.contains(g))
            && rule.assets.iter().all(|a| asset_ids.contains(a))
            && rule.nodes.iter().all(|n| is(n, EntityKind::Node));
        if !ok {
            return Err(broken("rules", rule.id, "user, group, asset or node"));
        }
    }
    for token in tokens {
        if token.user.is_some_and(|u| !is(&u, EntityKind::User)) {
            return Err(broken("tokens", token.id, "user"));
        }
    }
    Ok(())
}

/// Looks up an entity's id by reference, for callers that hold a snapshot.
impl Snapshot {
    /// The id of the entity of `kind` that `reference` (name, path or id) names.
    pub fn resolve(&self, kind: EntityKind, reference: &str) -> Result<Id, NotFound> {
        let found = match kind {
            EntityKind::User => self
                .user_index(reference)
                .and_then(|i| self.user_entry(i))
                .map(|e| e.id),
            EntityKind::Group => self
                .group_index(reference)
                .and_then(|i| self.group_entry(i))
                .map(|e| e.group.id),
            EntityKind::Node => self
                .node_index(reference)
                .and_then(|i| self.node_entry(i))
                .map(|e| e.node.id),
            EntityKind::Asset => self
                .asset_index(reference)
                .and_then(|i| self.asset_entry(i))
                .map(|e| e.id),
            EntityKind::Rule => self
                .rule_index(reference)
                .and_then(|i| self.rule_entry(i))
                .map(|e| e.rule.id),
            EntityKind::Role => self
                .role_index(reference)
                .and_then(|i| self.role_entry(i))
                .map(|r| r.id),
            EntityKind::Token => self
                .token_index(reference)
                .and_then(|i| self.token_entry(i))
                .map(|e| e.token.id),
        };
        found.ok_or_else(|| NotFound::new(kind, reference))
    }
}
