//! `portcullis serve`: the engine, the HTTP API, the demo estate, the bootstrap
//! token, the periodic LDAP sync and the LDAP directory (`--ldap-listen`), with a graceful shutdown on SIGTERM or SIGINT (in-flight requests finish,
//! queued writes commit, then the store is closed).

use portcullis_engine::Actor;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use portcullis_engine::{Engine, TokenSpec};
use portcullis_http::AppState;

use crate::commands::open_store_with;
use crate::config::{LogFormat, Overrides, STORE_FILE, ServeConfig};
use crate::demo;
use crate::error::{CliError, Outcome};

/// How long connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The data directory (created on first start) [default: ./portcullis-data].
    #[arg(long, value_name = "DIR", env = "PORTCULLIS_DATA")]
    pub data: Option<std::path::PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", env = "PORTCULLIS_LISTEN")]
    pub listen: Option<String>,
    /// Load the demo estate when the store is empty.
    #[arg(long, env = "PORTCULLIS_DEMO")]
    pub demo: bool,
    /// A TOML config file.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT", env = "PORTCULLIS_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// A PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Run as a node of the cluster whose change log is in this PostgreSQL database:
    /// postgres://USER[:PASS]@HOST:PORT/DB (docs/cluster.md).
    #[arg(long, value_name = "URL", env = "PORTCULLIS_CLUSTER")]
    pub cluster: Option<String>,
    /// Serve the directory over LDAP on this address (StartTLS with --tls-cert).
    #[arg(long, value_name = "ADDR", env = "PORTCULLIS_LDAP_LISTEN")]
    pub ldap_listen: Option<String>,
    /// Serve the directory over LDAPS (TLS from the first byte) on this address.
    #[arg(long, value_name = "ADDR", env = "PORTCULLIS_LDAPS_LISTEN")]
    pub ldaps_listen: Option<String>,
    /// The LDAP directory's base DN [default: dc=portcullis].
    #[arg(long, value_name = "DN", env = "PORTCULLIS_LDAP_BASE_DN")]
    pub ldap_base_dn: Option<String>,
}

fn init_logging(config: &ServeConfig) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .map_err(|error| CliError::Input(format!("log filter `{}`: {error}", config.log_filter)))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let installed = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| CliError::System(format!("cannot start logging: {error}")))
}

/// Makes `secret` the first system-admin token, when the store has no token yet.
fn bootstrap_token(engine: &Engine, secret: &str) -> Result<(), CliError> {
    if engine.snapshot().counts().tokens > 0 {
        tracing::info!("PORTCULLIS_BOOTSTRAP_TOKEN ignored: the store already has tokens");
        return Ok(());
    }
    let spec = TokenSpec {
        id: None,
        name: "bootstrap".to_owned(),
        user: None,
        roles: vec!["system-admin".to_owned()],
        expires_at: None,
        description: "from PORTCULLIS_BOOTSTRAP_TOKEN".to_owned(),
    };
    let outcome = engine
        .create_token_with_secret(&Actor::system("bootstrap"), spec, secret)
        .map_err(|error| match error {
            portcullis_engine::Error::Validation(validation) => {
                CliError::Input(format!("PORTCULLIS_BOOTSTRAP_TOKEN: {validation}"))
            }
            other => CliError::Engine(other),
        })?;
    tracing::info!(
        revision = outcome.revision,
        "created the system-admin token `bootstrap` from PORTCULLIS_BOOTSTRAP_TOKEN"
    );
    Ok(())
}

/// A first run explains itself. With no token in the store every API call answers
/// 401: on a store the demo estate was just loaded into, a demo administrator token
/// is made and its secret printed this once (on stdout, never in the log); on any
/// other store, the terminal is told how to get a first token.
fn first_token(engine: &Engine, config: &ServeConfig, demo_loaded: bool) -> Result<(), CliError> {
    if engine.snapshot().counts().tokens > 0 {
        return Ok(());
    }
    if demo_loaded {
        let spec = TokenSpec {
            id: None,
            name: "demo-admin".to_owned(),
            user: None,
            roles: vec!["system-admin".to_owned()],
            expires_at: None,
            description: "made by serve --demo on an empty store".to_owned(),
        };
        let (outcome, secret) = engine.create_token(&Actor::system("demo"), spec)?;
        tracing::info!(
            revision = outcome.revision,
            "created the demo system-admin token `demo-admin` (its secret is printed on stdout once)"
        );
        println!("portcullis: demo administrator token (shown this once): {secret}");
        println!("portcullis: in another terminal: export TOKEN={secret}");
        return Ok(());
    }
    eprintln!(
        "portcullis: the store has no API token yet, so every API call will answer 401. \
         Restart with PORTCULLIS_BOOTSTRAP_TOKEN set to a secret of 16 characters or more \
         (it becomes the first system-admin token), or stop the server and run \
         `portcullis token create --data {} --name admin --role system-admin`",
        config.data.display()
    );
    Ok(())
}

pub fn serve(args: ServeArgs) -> Result<Outcome, CliError> {
    let config = ServeConfig::resolve(Overrides {
        config: args.config,
        data: args.data,
        listen: args.listen,
        demo: args.demo,
        log_format: args.log_format,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        cluster: args.cluster,
        ldap_listen: args.ldap_listen,
        ldaps_listen: args.ldaps_listen,
        ldap_base_dn: args.ldap_base_dn,
    })?;
    init_logging(&config)?;
    let engine = Arc::new(match &config.cluster {
        None => open_store_with(&config.data, true, config.engine)?,
        Some(cluster) => open_cluster_node(&config, cluster)?,
    });
    let opened_from = match engine.opened_from() {
        Ok(revision) => format!("snapshot image at revision {revision}, brought up to date"),
        Err(why) => format!("rebuilt from the store ({why})"),
    };
    tracing::info!(store = %config.data.join(STORE_FILE).display(), revision = engine.snapshot().revision(), snapshot = %opened_from, "store open");
    let mut demo_loaded = false;
    if config.demo {
        match demo::load(&engine)? {
            Some(revision) => {
                demo_loaded = true;
                tracing::info!(revision, "loaded the demo estate");
            }
            None => tracing::info!("--demo ignored: the store is not empty"),
        }
    }
    if let Some(secret) = &config.bootstrap_token {
        bootstrap_token(&engine, secret)?;
    }
    first_token(&engine, &config, demo_loaded)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portcullis-http")
        .build()
        .map_err(|error| CliError::System(format!("cannot start the runtime: {error}")))?;
    // Users synced from a directory sign in with their directory password: one
    // password backend per LDAP source, tried after the local hash.
    let auth = config.ldap.iter().fold(
        portcullis_signin::Auth::new(engine.clone(), config.auth.clone())
            .map_err(crate::commands::auth_error)?,
        |auth, source| {
            auth.with_backend(Box::new(portcullis_ldap::LdapPasswordBackend::new(
                source.clone(),
            )))
        },
    );
    let auth = Arc::new(auth);
    let (stop_ldap, ldap_stopped) = tokio::sync::watch::channel(false);
    let ldap_listeners = match &config.ldap_server {
        Some(ldap) => {
            runtime.block_on(ldap_directory(&config, ldap, auth.clone(), ldap_stopped))?
        }
        None => Vec::new(),
    };
    let state = AppState::with_signin(
        engine.clone(),
        config.settings.clone(),
        auth.clone(),
        config.signin.clone(),
    )
    .map_err(CliError::Input)?;
    if let Some(interval) = config.housekeeping_interval {
        runtime.spawn(housekeeping(auth, interval));
    }
    // Periodic LDAP sync, when the config has sources; its status at /api/v1/sync/ldap.
    let (stop_sync, sync_stopped) = tokio::sync::watch::channel(false);
    let sync_task = (!config.ldap.is_empty()).then(|| {
        let board = Arc::new(portcullis_ldap::StatusBoard::new(&config.ldap));
        let shown = board.clone();
        state.register_sync_status("ldap", Arc::new(move || shown.json()));
        tracing::info!(sources = config.ldap.len(), "ldap sync scheduled");
        runtime.spawn(portcullis_ldap::run_periodically(
            engine.clone(),
            config.ldap.clone(),
            config.data.join("ldap"),
            board,
            sync_stopped,
        ))
    });
    let served = runtime.block_on(run(&config, state, &ldap_listeners));
    let _ = stop_sync.send(true);
    let _ = stop_ldap.send(true);
    if let Some(task) = sync_task {
        // A run in progress finishes (or fails cleanly once the engine closes).
        let _ =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
    }
    // Writes already queued commit; the store closes before we exit.
    engine.close();
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    tracing::info!("stopped");
    Ok(Outcome::Done)
}

/// Opens the store as a node of `cluster`: connects to its log (creating its tables
/// on first use) and brings the store up to the log's head.
fn open_cluster_node(
    config: &ServeConfig,
    cluster: &crate::config::Cluster,
) -> Result<Engine, CliError> {
    let log = portcullis_cluster::PostgresLog::connect(&cluster.log).map_err(CliError::System)?;
    std::fs::create_dir_all(&config.data).map_err(|error| {
        CliError::System(format!("cannot create {}: {error}", config.data.display()))
    })?;
    let name = match &cluster.node_name {
        Some(name) => name.clone(),
        None => node_name(&config.data)?,
    };
    let engine = Engine::open_clustered(config.data.join(STORE_FILE), config.engine, log, &name)?;
    tracing::info!(
        node = %name,
        log = %portcullis_cluster::redact(&cluster.log.url),
        revision = engine.snapshot().revision(),
        "joined the cluster"
    );
    Ok(engine)
}

/// The name this data directory's node goes by when the config gives none: kept in
/// its `node-name` file, made on first start from the host's name and a random
/// suffix (two nodes on one host differ, a restarted node keeps its name).
fn node_name(data: &std::path::Path) -> Result<String, CliError> {
    let path = data.join("node-name");
    if let Ok(name) = std::fs::read_to_string(&path) {
        let name = name.trim();
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    // The last hex digits of a new id are random.
    let id = portcullis_engine::Id::random().to_string();
    let name = format!("{host}-{}", &id[id.len() - 6..]);
    std::fs::write(&path, format!("{name}\n"))
        .map_err(|error| CliError::System(format!("cannot write {}: {error}", path.display())))?;
    Ok(name)
}

/// Binds the LDAP directory's listeners and serves them until `stopped` says so;
/// returns what they listen on (`ldap` or `ldaps`, and the address), to announce.
async fn ldap_directory(
    config: &ServeConfig,
    ldap: &crate::config::LdapServe,
    auth: Arc<portcullis_signin::Auth>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<(&'static str, std::net::SocketAddr)>, CliError> {
    let tls = match &config.tls {
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(portcullis_ldap_server::tls_config(&tls.cert, &tls.key).map_err(CliError::Input)?)
        }
        None => None,
    };
    let server = portcullis_ldap_server::LdapServer::new(auth, ldap.settings.clone(), tls);
    let mut listening = Vec::new();
    let listeners = [
        (
            ldap.listen,
            "ldap",
            portcullis_ldap_server::Transport::Plain,
        ),
        (
            ldap.ldaps_listen,
            "ldaps",
            portcullis_ldap_server::Transport::Ldaps,
        ),
    ];
    for (address, scheme, transport) in listeners {
        let Some(address) = address else { continue };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| CliError::System(format!("cannot listen on {address}: {error}")))?;
        let bound = listener
            .local_addr()
            .map_err(|error| CliError::System(format!("cannot listen on {address}: {error}")))?;
        let mut stopped = stopped.clone();
        let served = server.clone().serve(listener, transport, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::error!(%error, "the LDAP directory stopped");
            }
        });
        listening.push((scheme, bound));
    }
    tracing::info!(
        base = ldap.settings.base_dn.as_str(),
        "serving the directory over LDAP"
    );
    Ok(listening)
}

/// Runs sign-in housekeeping now and then every `interval` (deactivation of idle
/// users when configured, purging of stale sign-in records).
async fn housekeeping(auth: Arc<portcullis_signin::Auth>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let auth = auth.clone();
        let run =
            tokio::task::spawn_blocking(move || auth.housekeeping(portcullis_engine::Time::now()))
                .await;
        match run {
            Ok(Ok(report)) => tracing::info!(
                deactivated = report.deactivated.len(),
                purged = report.purged,
                "sign-in housekeeping"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "sign-in housekeeping failed"),
            Err(error) => tracing::warn!(%error, "sign-in housekeeping task failed"),
        }
    }
}

/// SIGTERM and SIGINT, listened for from the moment this is made (before the server
/// says it listens, so an early signal is never the default, abrupt one).
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let failed = |error: std::io::Error| {
                CliError::System(format!("cannot listen for signals: {error}"))
            };
            Ok(Signals {
                terminate: signal(SignalKind::terminate()).map_err(failed)?,
                interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn received(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(
    config: &ServeConfig,
    state: AppState,
    ldap: &[(&'static str, std::net::SocketAddr)],
) -> Result<(), CliError> {
    let signals = Signals::listen()?;
    // One route table: the API's own routes (the console's among them), the import and
    // export routes with their console pages, and SCIM's
    // under /scim/v2 (which words the stack's refusals as SCIM errors).
    let mut routes = crate::spreadsheets::routes();
    routes.extend(crate::transfer::routes());
    routes.extend(portcullis_scim::routes(config.scim.clone()));
    let router = portcullis_http::router_with(state.clone(), routes);
    let bind_error = |error: std::io::Error| {
        CliError::System(format!("cannot listen on {}: {error}", config.listen))
    };
    match &config.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(bind_error)?;
            let address = listener.local_addr().map_err(bind_error)?;
            announce("http", address);
            for (scheme, address) in ldap {
                announce(scheme, *address);
            }
            let (stopping, mut stopped) = tokio::sync::watch::channel(false);
            let server = portcullis_http::serve(listener, router, &config.settings, async move {
                signals.received().await;
                tracing::info!("shutting down: finishing open requests");
                state.close_streams();
                let _ = stopping.send(true);
            });
            tokio::select! {
                () = server => Ok(()),
                _ = async {
                    let _ = stopped.wait_for(|stopping| *stopping).await;
                    tokio::time::sleep(DRAIN).await;
                } => {
                    tracing::warn!("connections still open {DRAIN:?} after the shutdown signal; closing them");
                    Ok(())
                }
            }
        }
        Some(tls) => {
            // Several crates may enable rustls providers; ring is ours.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|error| {
                    CliError::Input(format!(
                        "cannot load TLS certificate `{}` and key `{}`: {error}",
                        tls.cert.display(),
                        tls.key.display()
                    ))
                })?;
            let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            let address = listener.local_addr().map_err(bind_error)?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                signals.received().await;
                tracing::info!("shutting down: finishing open requests");
                state.close_streams();
                stopper.graceful_shutdown(Some(DRAIN));
            });
            announce("https", address);
            for (scheme, address) in ldap {
                announce(scheme, *address);
            }
            let mut server = axum_server::from_tcp_rustls(listener, rustls).handle(handle);
            portcullis_http::configure_connections(server.http_builder(), &config.settings);
            server
                .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
                .map_err(|error| CliError::System(format!("server failure: {error}")))
        }
    }
}

/// Says where the server listens, on stdout (for scripts and tests) and in the log.
fn announce(scheme: &str, address: std::net::SocketAddr) {
    tracing::info!(%address, "listening");
    println!("portcullis: listening on {scheme}://{address}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
