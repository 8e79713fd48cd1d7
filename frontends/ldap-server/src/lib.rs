//! Portcullis's LDAP face: a read-only directory of its users and groups, for hosts
//! (sssd, nslcd), VPNs, wikis and CI systems.
//!
//! Every search is answered from the engine's published snapshot at the instant it
//! arrives: no store I/O, and a membership that has expired is not shown. Binds go
//! through the engine's sign-in ([`portcullis_signin::Auth`]) exactly as
//! `POST /api/v1/auth/login` does (lockout, password backends, events in the
//! operation log); services bind with an API token. The wire protocol is
//! `ldap3_proto`'s (kanidm's BER codec); this crate never reads or writes BER itself.
//!
//! It must never write the estate: every write operation answers
//! `unwillingToPerform`. Bad input (malformed BER, a message over the limit, a
//! never-finished message, a filter over its limits) ends that request or that
//! connection with a result code, never the server.

mod directory;
mod dn;
mod error;
mod filter;
mod numbers;
mod schema;
mod search;
mod session;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_engine::{Engine, Snapshot};
use portcullis_signin::Auth;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use directory::PosixSettings;
pub use dn::BaseDn;
pub use filter::IN_CHAIN;
pub use numbers::{FIRST as FIRST_NUMBER, SPAN as NUMBER_SPAN};

use numbers::Numbers;

/// The default base DN.
pub const DEFAULT_BASE_DN: &str = "dc=portcullis";

/// What the LDAP server serves and its limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_dn: BaseDn,
    /// The largest LDAP message accepted, in bytes; a larger one ends the connection
    /// with a notice of disconnection.
    pub max_message_bytes: usize,
    /// How deeply filters may nest (`(&(|(!…`).
    pub max_filter_depth: usize,
    /// How many terms a filter may have.
    pub max_filter_terms: usize,
    /// Connections served at once; more are told `busy` and closed.
    pub max_connections: usize,
    /// The most entries one search (or one page) returns.
    pub size_limit: usize,
    /// The longest a search may run.
    pub time_limit: Duration,
    /// A connection that sends no complete message for this long is closed.
    pub idle_timeout: Duration,
    /// How many binds verify passwords at once (each is an argon2 verification).
    pub max_concurrent_binds: usize,
    /// Whether simple binds with a password are accepted on a connection without
    /// TLS. Off when the server has a certificate (use StartTLS or ldaps).
    pub plain_binds: bool,
    pub posix: PosixSettings,
}

impl Settings {
    /// The defaults, under `base_dn`.
    pub fn new(base_dn: BaseDn) -> Settings {
        Settings {
            base_dn,
            max_message_bytes: 256 * 1024,
            max_filter_depth: 32,
            max_filter_terms: 1024,
            max_connections: 1024,
            size_limit: 10_000,
            time_limit: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_concurrent_binds: 8,
            plain_binds: true,
            posix: PosixSettings::default(),
        }
    }
}

/// How a listener's connections begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain LDAP, upgraded with StartTLS when the server has a certificate.
    Plain,
    /// TLS from the first byte (`ldaps://`).
    Ldaps,
}

/// The LDAP server: shared by every connection of every listener.
pub struct LdapServer {
    engine: Arc<Engine>,
    auth: Arc<Auth>,
    settings: Settings,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The POSIX numbers of the last snapshot asked about, by revision.
    numbers: Mutex<(u64, Arc<Numbers>)>,
    connections: Arc<Semaphore>,
    binds: Arc<Semaphore>,
}

impl LdapServer {
    /// A server over `auth`'s engine. With `tls`, plain connections offer StartTLS and
    /// [`Transport::Ldaps`] listeners can be served.
    pub fn new(
        auth: Arc<Auth>,
        settings: Settings,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Arc<LdapServer> {
        Arc::new(LdapServer {
            engine: auth.engine().clone(),
            auth,
            connections: Arc::new(Semaphore::new(settings.max_connections.max(1))),
            binds: Arc::new(Semaphore::new(settings.max_concurrent_binds.max(1))),
            settings,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            numbers: Mutex::new((u64::MAX, Arc::new(Numbers::default()))),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Accepts connections on `listener` until `shutdown` completes. Each connection
    /// is served on a task of its own; a failing connection never ends the listener.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        transport: Transport,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        if transport == Transport::Ldaps && self.tls.is_none() {
            return Err("ldaps needs a TLS certificate and key".to_owned());
        }
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors and the like: wait a little, keep serving.
                    tracing::warn!(%error, "ldap accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            tokio::spawn(async move { server.connection(stream, peer, transport).await });
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        transport: Transport,
    ) {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            session::refuse_busy(stream).await;
            tracing::warn!(%peer, "ldap connection refused: too many connections");
            return;
        };
        let io: session::Io = match transport {
            Transport::Plain => Box::new(stream),
            Transport::Ldaps => {
                let acceptor = self.tls.clone().expect("INVARIANT: checked in serve");
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "ldaps handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "ldaps handshake timed out");
                        return;
                    }
                }
            }
        };
        session::Session::new(self.clone(), peer, transport == Transport::Ldaps)
            .run(io)
            .await;
        drop(permit);
    }

    /// The POSIX numbers for `snapshot`, computed again only when its set of users
    /// and groups differs from the last one's.
    fn numbers(&self, snapshot: &Snapshot) -> Arc<Numbers> {
        let revision = snapshot.revision();
        {
            let cached = self.numbers.lock().expect("numbers lock");
            if cached.0 == revision {
                return cached.1.clone();
            }
        }
        // Another revision, most often with the same users and groups (a sign-in
        // event, an edit): the numbers stay.
        let cached = self.numbers.lock().expect("numbers lock").1.clone();
        let numbers = if cached.fits(numbers::fingerprint(snapshot)) {
            cached
        } else {
            Arc::new(Numbers::of(snapshot))
        };
        *self.numbers.lock().expect("numbers lock") = (revision, numbers.clone());
        numbers
    }
}

/// A rustls server configuration from a PEM certificate chain and a PEM private key
/// (the files `serve --tls-cert/--tls-key` take).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read the certificate `{}`: {error}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in `{}`", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| format!("cannot read the key `{}`: {error}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| format!("TLS certificate and key: {error}"))?;
    Ok(Arc::new(config))
}
