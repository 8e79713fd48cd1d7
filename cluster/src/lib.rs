//! Cluster mode's change log in PostgreSQL (`docs/cluster.md`): one ordered table of
//! entries every Portcullis node appends to and follows, behind the engine's
//! [`ChangeLog`] trait.
//!
//! - `portcullis_head` holds one row, the newest revision. An append locks it
//!   (`SELECT … FOR UPDATE`), so appends from every node are serialized by
//!   PostgreSQL itself; the entry's insert, the head's update and a `NOTIFY` commit
//!   in one transaction, so the log is contiguous and never half-written.
//! - `portcullis_log` holds the entries, keyed by their first revision; an entry is
//!   never changed after it is committed.
//! - `portcullis_nodes` holds each node's applied revision and last report.
//! - `portcullis_schema` holds the schema's version; Portcullis creates the tables
//!   and refuses a schema newer than its own.
//!
//! Connections are made on first use and again after a failure, with a backoff:
//! while PostgreSQL is unreachable every call fails at once with
//! [`LogError::Unavailable`] instead of waiting for a connect timeout.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcullis_engine::{ChangeLog, LockedLog, LogEntry, LogError, NodeStatus, Time};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

/// The version of the tables this build creates and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// The channel appends notify on.
const CHANNEL: &str = "portcullis_log";

/// The advisory lock taken while creating the tables, so that nodes starting
/// together do not race each other's `CREATE TABLE`.
const SCHEMA_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The first and the longest wait after a failed connection before the next try.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the log is and how to reach it.
#[derive(Clone)]
pub struct Settings {
    /// `postgres://USER[:PASS]@HOST:PORT/DB` (libpq's URL form, with its
    /// parameters: `sslmode=require`, …).
    pub url: String,
    /// The password, when it is not in the URL (read from a file or a variable by
    /// the caller, never logged).
    pub password: Option<String>,
    /// PEM certificates to trust for TLS besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `url` with any password replaced by `…`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:…@{host}"),
        None => url.to_owned(),
    }
}

/// A connection made when first needed and again after a failure.
struct Connection {
    client: Option<Client>,
    /// No new attempt before this instant (after a failure).
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// The change log in PostgreSQL.
pub struct PostgresLog {
    config: Config,
    tls: MakeRustlsConnect,
    url: String,
    /// Appends and reads.
    main: Mutex<Connection>,
    /// `LISTEN`s for appends.
    listener: Mutex<Connection>,
    /// Whether the tables are known to exist at this build's schema: checked on
    /// the first connection that succeeds.
    schema_ready: std::sync::atomic::AtomicBool,
}

impl PostgresLog {
    /// The log described by `settings`: connects, and creates its tables when they
    /// are missing. PostgreSQL being unreachable is not an error here (a node whose
    /// store already follows the cluster starts anyway, and the tables are checked on
    /// the first connection that succeeds); a URL that cannot be read, TLS settings
    /// that cannot be used, or tables created by a newer build are.
    pub fn connect(settings: &Settings) -> Result<Arc<PostgresLog>, String> {
        let mut config: Config = settings.url.parse().map_err(|error| {
            format!(
                "cannot read the cluster URL `{}`: {error}",
                redact(&settings.url)
            )
        })?;
        if let Some(password) = &settings.password {
            config.password(password);
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("portcullis");
        config.keepalives_idle(Duration::from_secs(10));
        let log = PostgresLog {
            config,
            tls: tls_connector(settings.ca_file.as_deref())?,
            url: redact(&settings.url),
            main: Mutex::new(Connection::new()),
            listener: Mutex::new(Connection::new()),
            schema_ready: std::sync::atomic::AtomicBool::new(false),
        };
        match log.with_main(|_| Ok(())) {
            Ok(()) | Err(LogError::Unavailable(_)) => Ok(Arc::new(log)),
            Err(error) => Err(format!(
                "cannot use the cluster's log at `{}`: {error}",
                log.url
            )),
        }
    }

    /// Creates the tables when missing; refuses tables of a newer schema.
    fn create_schema(client: &mut Client) -> Result<(), LogError> {
        let mut txn = client.transaction().map_err(unavailable)?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(unavailable)?;
        txn.batch_execute(
            "CREATE TABLE IF NOT EXISTS portcullis_schema (version bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS portcullis_head (
                 id int PRIMARY KEY CHECK (id = 1),
                 revision bigint NOT NULL,
                 cluster_id bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS portcullis_log (
                 first_revision bigint PRIMARY KEY,
                 last_revision bigint NOT NULL UNIQUE,
                 body bytea NOT NULL,
                 appended_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS portcullis_nodes (
                 name text PRIMARY KEY,
                 applied_revision bigint NOT NULL,
                 last_contact timestamptz NOT NULL);
             CREATE TABLE IF NOT EXISTS portcullis_images (
                 revision bigint PRIMARY KEY,
                 body bytea NOT NULL,
                 made_at timestamptz NOT NULL DEFAULT now());
",
        )
        .map_err(unavailable)?;
        let cluster_id: i64 = rand::random();
        txn.execute(
            "INSERT INTO portcullis_head (id, revision, cluster_id) VALUES (1, 0, $1)
             ON CONFLICT DO NOTHING",
            &[&cluster_id],
        )
        .map_err(unavailable)?;
        let version: Option<i64> = txn
            .query_opt("SELECT max(version) FROM portcullis_schema", &[])
            .map_err(unavailable)?
            .and_then(|row| row.get(0));
        match version {
            None => {
                txn.execute(
                    "INSERT INTO portcullis_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .map_err(unavailable)?;
            }
            Some(version) if version > SCHEMA_VERSION => {
                return Err(LogError::Corrupt(format!(
                    "its tables are of schema {version}, newer than this build's {SCHEMA_VERSION}: upgrade this node"
                )));
            }
            Some(_) => {}
        }
        txn.commit().map_err(unavailable)
    }

    /// The connection's client, connecting first if there is none (unless a recent
    /// failure says to wait), with the tables checked once.
    fn client<'a>(&self, connection: &'a mut Connection) -> Result<&'a mut Client, LogError> {
        let client = self.connected(connection)?;
        if !self.schema_ready.load(std::sync::atomic::Ordering::Acquire) {
            if let Err(error) = PostgresLog::create_schema(client) {
                if matches!(error, LogError::Unavailable(_)) {
                    connection.client = None;
                }
                return Err(error);
            }
            self.schema_ready
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(connection.client.as_mut().expect("connected above"))
    }

    fn connected<'a>(&self, connection: &'a mut Connection) -> Result<&'a mut Client, LogError> {
        if connection.client.as_ref().is_some_and(Client::is_closed) {
            connection.client = None;
        }
        if connection.client.is_none() {
            if let Some(retry_at) = connection.retry_at {
                if Instant::now() < retry_at {
                    return Err(LogError::Unavailable(format!(
                        "PostgreSQL at `{}` was unreachable moments ago; retrying shortly",
                        self.url
                    )));
                }
            }
            match self.config.connect(self.tls.clone()) {
                Ok(client) => {
                    connection.client = Some(client);
                    connection.retry_at = None;
                    connection.backoff = BACKOFF_FIRST;
                }
                Err(error) => {
                    connection.retry_at = Some(Instant::now() + connection.backoff);
                    connection.backoff = (connection.backoff * 2).min(BACKOFF_MAX);
                    return Err(LogError::Unavailable(format!(
                        "cannot connect to PostgreSQL at `{}`: {error}",
                        self.url
                    )));
                }
            }
        }
        Ok(connection.client.as_mut().expect("connected above"))
    }

    /// Runs `query` on the main connection; a failure drops the connection so that
    /// the next call connects again.
    fn with_main<T>(
        &self,
        query: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, LogError> {
        let mut connection = self.main.lock().expect("connection lock");
        let client = self.client(&mut connection)?;
        query(client).map_err(|error| {
            connection.client = None;
            unavailable(error)
        })
    }
}

impl Connection {
    fn new() -> Connection {
        Connection {
            client: None,
            retry_at: None,
            backoff: BACKOFF_FIRST,
        }
    }
}

fn unavailable(error: postgres::Error) -> LogError {
    LogError::Unavailable(error.to_string())
}

fn entries_after(
    client: &mut impl postgres::GenericClient,
    after: u64,
    limit: usize,
) -> Result<Vec<LogEntry>, postgres::Error> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(
        "SELECT first_revision, last_revision, body FROM portcullis_log
         WHERE first_revision > $1 ORDER BY first_revision LIMIT $2",
        &[&after, &limit],
    )?;
    Ok(rows
        .into_iter()
        .map(|row| LogEntry {
            first: row.get::<_, i64>(0) as u64,
            last: row.get::<_, i64>(1) as u64,
            body: row.get(2),
        })
        .collect())
}

/// The append lock: an open transaction holding the head row.
struct Locked<'a> {
    connection: MutexGuard<'a, Connection>,
    head: u64,
    done: bool,
}

impl Locked<'_> {
    fn client(&mut self) -> &mut Client {
        self.connection
            .client
            .as_mut()
            .expect("INVARIANT: a lock holds a connection")
    }

    fn fail(&mut self, error: postgres::Error) -> LogError {
        // The transaction is lost with the connection, and so is the lock.
        self.connection.client = None;
        self.done = true;
        unavailable(error)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(client) = self.connection.client.as_mut() {
                if client.batch_execute("ROLLBACK").is_err() {
                    self.connection.client = None;
                }
            }
        }
    }
}

impl LockedLog for Locked<'_> {
    fn head(&self) -> u64 {
        self.head
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<LogEntry>, LogError> {
        entries_after(self.client(), after, limit).map_err(|error| self.fail(error))
    }

    fn append(mut self: Box<Self>, entry: LogEntry) -> Result<(), LogError> {
        if entry.first != self.head + 1 {
            return Err(LogError::Corrupt(format!(
                "an entry of revisions {}..={} cannot follow the head {}",
                entry.first, entry.last, self.head
            )));
        }
        let (first, last) = (entry.first as i64, entry.last as i64);
        let client = self.client();
        let appended = (|| {
            client.execute(
                "INSERT INTO portcullis_log (first_revision, last_revision, body) VALUES ($1, $2, $3)",
                &[&first, &last, &entry.body],
            )?;
            client.execute(
                "UPDATE portcullis_head SET revision = $1 WHERE id = 1",
                &[&last],
            )?;
            client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &last.to_string()])?;
            client.batch_execute("COMMIT")
        })();
        match appended {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }
}

impl ChangeLog for PostgresLog {
    fn id(&self) -> Result<u64, LogError> {
        self.with_main(|client| {
            let row =
                client.query_one("SELECT cluster_id FROM portcullis_head WHERE id = 1", &[])?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn lock(&self) -> Result<Box<dyn LockedLog + '_>, LogError> {
        let mut connection = self.main.lock().expect("connection lock");
        let client = self.client(&mut connection)?;
        let locked = client.batch_execute("BEGIN").and_then(|()| {
            client.query_one(
                "SELECT revision FROM portcullis_head WHERE id = 1 FOR UPDATE",
                &[],
            )
        });
        match locked {
            Ok(row) => Ok(Box::new(Locked {
                connection,
                head: row.get::<_, i64>(0) as u64,
                done: false,
            })),
            Err(error) => {
                connection.client = None;
                Err(unavailable(error))
            }
        }
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, LogError> {
        self.with_main(|client| entries_after(client, after, limit))
    }

    fn head(&self) -> Result<(u64, Option<Time>), LogError> {
        self.with_main(|client| {
            let row = client.query_one(
                "SELECT h.revision,
                        (SELECT (extract(epoch FROM appended_at) * 1000000)::bigint
                         FROM portcullis_log ORDER BY first_revision DESC LIMIT 1)
                 FROM portcullis_head h WHERE h.id = 1",
                &[],
            )?;
            let appended: Option<i64> = row.get(1);
            Ok((row.get::<_, i64>(0) as u64, appended.map(Time::from_micros)))
        })
    }

    fn wait_for_append(&self, timeout: Duration) {
        let mut connection = self.listener.lock().expect("listener lock");
        let listening = connection.client.is_some();
        let client = match self.client(&mut connection) {
            Ok(client) => client,
            Err(_) => {
                drop(connection);
                std::thread::sleep(timeout);
                return;
            }
        };
        if !listening {
            if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
                tracing::debug!("cannot listen for the cluster's appends: {error}");
                connection.client = None;
                drop(connection);
                std::thread::sleep(timeout);
                return;
            }
        }
        let failed = {
            let mut notifications = client.notifications();
            let failed = notifications.timeout_iter(timeout).next().is_err();
            // Several appends may have notified: one read of the log takes them all.
            while !failed && matches!(notifications.iter().next(), Ok(Some(_))) {}
            failed
        };
        if failed {
            connection.client = None;
        }
    }

    fn report(&self, name: &str, revision: u64) -> Result<(), LogError> {
        let revision = i64::try_from(revision).unwrap_or(i64::MAX);
        self.with_main(|client| {
            client.execute(
                "INSERT INTO portcullis_nodes (name, applied_revision, last_contact)
                 VALUES ($1, $2, now())
                 ON CONFLICT (name) DO UPDATE
                 SET applied_revision = EXCLUDED.applied_revision, last_contact = now()",
                &[&name, &revision],
            )?;
            Ok(())
        })
    }

    fn nodes(&self, within: Duration) -> Result<Vec<NodeStatus>, LogError> {
        let seconds = within.as_secs_f64();
        self.with_main(|client| {
            let rows = client.query(
                "SELECT name, applied_revision,
                        (extract(epoch FROM last_contact) * 1000000)::bigint
                 FROM portcullis_nodes
                 WHERE last_contact > now() - make_interval(secs => $1)
                 ORDER BY name",
                &[&seconds],
            )?;
            Ok(rows
                .into_iter()
                .map(|row| NodeStatus {
                    name: row.get(0),
                    applied_revision: row.get::<_, i64>(1) as u64,
                    last_contact: Time::from_micros(row.get(2)),
                })
                .collect())
        })
    }

    fn newest_image_revision(&self) -> Result<Option<u64>, LogError> {
        self.with_main(|client| {
            let row = client.query_one("SELECT max(revision) FROM portcullis_images", &[])?;
            Ok(row.get::<_, Option<i64>>(0).map(|revision| revision as u64))
        })
    }

    fn newest_image(&self) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.with_main(|client| {
            let row = client.query_opt(
                "SELECT revision, body FROM portcullis_images ORDER BY revision DESC LIMIT 1",
                &[],
            )?;
            Ok(row.map(|row| (row.get::<_, i64>(0) as u64, row.get(1))))
        })
    }

    fn put_image(&self, revision: u64, body: &[u8]) -> Result<(), LogError> {
        let revision = i64::try_from(revision).unwrap_or(i64::MAX);
        self.with_main(|client| {
            client.execute(
                "INSERT INTO portcullis_images (revision, body) VALUES ($1, $2)
                 ON CONFLICT (revision) DO NOTHING",
                &[&revision, &body],
            )?;
            Ok(())
        })
    }

    fn oldest_kept(&self) -> Result<Option<u64>, LogError> {
        self.with_main(|client| {
            let row = client.query_one("SELECT min(first_revision) FROM portcullis_log", &[])?;
            Ok(row.get::<_, Option<i64>>(0).map(|revision| revision as u64))
        })
    }

    fn compact(&self, through: u64) -> Result<u64, LogError> {
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        self.with_main(|client| {
            let mut txn = client.transaction()?;
            let dropped = txn.execute(
                "DELETE FROM portcullis_log WHERE last_revision <= $1",
                &[&through],
            )?;
            txn.execute(
                "DELETE FROM portcullis_images
                 WHERE revision < (SELECT max(revision) FROM portcullis_images)",
                &[],
            )?;
            txn.commit()?;
            Ok(dropped)
        })
    }
}

/// TLS with the system's roots and `ca_file`'s certificates; PostgreSQL's
/// `sslmode` in the URL says whether it is used (`prefer`, libpq's default, uses it
/// when the server offers it).
fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|error| {
            format!(
                "cannot read the cluster's ca_file `{}`: {error}",
                path.display()
            )
        })?;
        for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
            let certificate = certificate.map_err(|error| {
                format!(
                    "cannot read the cluster's ca_file `{}`: {error}",
                    path.display()
                )
            })?;
            roots.add(certificate).map_err(|error| {
                format!(
                    "cannot trust the cluster's ca_file `{}`: {error}",
                    path.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/portcullis"),
            "postgres://app:…@db.example:5432/portcullis"
        );
        assert_eq!(
            redact("postgres://app@db.example/portcullis"),
            "postgres://app@db.example/portcullis"
        );
        assert_eq!(redact("host=db user=app"), "host=db user=app");
    }
}
