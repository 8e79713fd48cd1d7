//! Server settings: command-line flags, then `PORTCULLIS_*` environment variables,
//! then the TOML config file, then defaults (the first that says something wins).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::CliError;

pub const DEFAULT_DATA: &str = "./portcullis-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The store file inside the data directory.
pub const STORE_FILE: &str = "portcullis.redb";

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub demo: Option<bool>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// A tracing filter such as `info` or `info,portcullis_http=debug`.
    pub log_filter: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub limits: Limits,
    /// LDAP / Active Directory sources (`[ldap.<name>]`): synced by `ldap-sync`, and
    /// periodically inside `serve`.
    #[serde(default)]
    pub ldap: portcullis_ldap::Sources,
    /// Sign-in: argon2, password policy, lockout, MFA policy, lifetimes, housekeeping.
    #[serde(default)]
    pub auth: Option<portcullis_signin::AuthSettings>,
    /// The mail server for reset links and emailed codes.
    #[serde(default)]
    pub mail: Option<MailConfig>,
    /// The SMS sender for SMS codes (`[sms]`).
    #[serde(default)]
    pub sms: Option<SmsConfig>,
    /// Passkeys: the WebAuthn relying party (`[passkeys]`).
    #[serde(default)]
    pub passkeys: Option<portcullis_signin::PasskeySettings>,
    #[serde(default)]
    pub signin: SignInConfig,
    /// When the snapshot image is written (`[snapshot]`).
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// SCIM provisioning (`[scim]`): which existing accounts it may adopt.
    #[serde(default)]
    pub scim: ScimConfig,
    /// Cluster mode (`[cluster]`): the PostgreSQL change log this node follows.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The LDAP directory `serve` answers (`[ldap_server]`); off unless it listens.
    #[serde(default)]
    pub ldap_server: LdapServerConfig,
}

/// The `[cluster]` table (docs/cluster.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `postgres://USER[:PASS]@HOST:PORT/DB`; `--cluster` and `PORTCULLIS_CLUSTER`
    /// override it.
    pub url: Option<String>,
    /// A file holding the password (its first line), when it is not in the URL.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// PEM certificates to trust for PostgreSQL's TLS besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This node's name in `GET /api/v1/cluster` [default: the host's name and a
    /// random suffix, kept in the data directory's `node-name` file].
    pub node_name: Option<String>,
    /// Keep a cluster image in the log (what a new node starts from) every this many
    /// revisions; 0: never [default: 10000].
    pub image_every_revisions: Option<u64>,
    /// Revisions of log kept before the newest cluster image (older entries are
    /// dropped, never ones a live node still needs) [default: 10000].
    pub retain_revisions: Option<u64>,
}

/// A cluster node's resolved settings.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub log: portcullis_cluster::Settings,
    /// `None`: the name kept in the data directory.
    pub node_name: Option<String>,
}

impl ClusterConfig {
    /// The cluster this node joins, if any: `url` (from the command line or the
    /// file) with the password read from its file or variable.
    fn resolve(&self, url: Option<String>) -> Result<Option<Cluster>, CliError> {
        let Some(url) = url.or_else(|| self.url.clone()) else {
            return Ok(None);
        };
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(CliError::Input(
                    "cluster: set password_file or password_env, not both".to_owned(),
                ));
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    CliError::Input(format!(
                        "cluster: cannot read password_file `{}`: {error}",
                        path.display()
                    ))
                })?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            (None, Some(variable)) => Some(env(variable).ok_or_else(|| {
                CliError::Input(format!(
                    "cluster: the environment variable `{variable}` (password_env) is not set"
                ))
            })?),
            (None, None) => None,
        };
        Ok(Some(Cluster {
            log: portcullis_cluster::Settings {
                url,
                password,
                ca_file: self.ca_file.clone(),
            },
            node_name: self.node_name.clone(),
        }))
    }
}

/// The `[ldap_server]` table: the directory served over LDAP (README, "Serving the
/// directory over LDAP").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapServerConfig {
    /// Plain LDAP (StartTLS offered when the server has a certificate).
    pub listen: Option<String>,
    /// LDAP over TLS from the first byte; needs the server's certificate.
    pub ldaps_listen: Option<String>,
    pub base_dn: Option<String>,
    /// Accept password binds on connections without TLS (default: only when the
    /// server has no certificate).
    pub plain_binds: Option<bool>,
    pub max_connections: Option<usize>,
    pub size_limit: Option<usize>,
    pub time_limit_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_message_bytes: Option<usize>,
    pub max_filter_depth: Option<usize>,
    pub max_filter_terms: Option<usize>,
    pub home_prefix: Option<String>,
    pub login_shell: Option<String>,
}

/// The LDAP directory `serve` answers, resolved.
#[derive(Debug)]
pub struct LdapServe {
    pub listen: Option<SocketAddr>,
    pub ldaps_listen: Option<SocketAddr>,
    pub settings: portcullis_ldap_server::Settings,
}

/// The `[scim]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The sources (`local`, `import`, `ldap:NAME`) whose users and groups SCIM may
    /// take over; default none.
    #[serde(default)]
    pub adopt: Vec<String>,
    /// Privileged users and groups (by name) SCIM may take over all the same;
    /// default none.
    #[serde(default)]
    pub adopt_privileged: Vec<String>,
}

impl ScimConfig {
    /// The adoption policy this table says, its sources checked.
    pub fn policy(&self) -> Result<portcullis_engine::AdoptionPolicy, CliError> {
        portcullis_engine::AdoptionPolicy::configured(
            &portcullis_engine::Source::Scim,
            &self.adopt,
            &self.adopt_privileged,
        )
        .map_err(|message| CliError::Input(format!("scim: {message}")))
    }
}

/// When `serve` writes the snapshot image beside the store (docs/snapshot.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Write one once the store is this many revisions past the last (default 10,000).
    pub image_every_revisions: Option<u64>,
    /// Or once this many seconds have passed with some revision unwritten (default 300).
    pub image_every_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub host: String,
    /// Defaults to the usual port of `tls`: 587, 465 or 25.
    pub port: Option<u16>,
    pub from: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout_ms: Option<u64>,
    /// `starttls` (the default), `implicit` or `none`.
    pub tls: Option<String>,
    /// A PEM file with the CA to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// The `[sms]` table: a webhook (`url`, a bearer secret from `bearer_file` or
/// `PORTCULLIS_SMS_BEARER`) or a command (`program`, `args`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// `webhook` or `command`.
    pub sender: String,
    pub url: Option<String>,
    /// A file holding the webhook's bearer secret (its surrounding whitespace
    /// dropped). The secret itself is never in the config file.
    pub bearer_file: Option<PathBuf>,
    pub program: Option<PathBuf>,
    #[serde(default)]
    pub args: Vec<String>,
    /// How long one try may take (default 5000).
    pub timeout_ms: Option<u64>,
    /// How many times a failed try is repeated (default 2).
    pub retries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// A reset link is this text followed by the token.
    pub reset_link_prefix: Option<String>,
    pub max_concurrent_logins: Option<usize>,
    /// Password-reset requests accepted per login name, and per client address, in
    /// each `reset_window_minutes`.
    pub reset_requests_per_account: Option<u32>,
    pub reset_requests_per_address: Option<u32>,
    pub reset_window_minutes: Option<u64>,
    /// How often `serve` runs sign-in housekeeping (0: never).
    pub housekeeping_interval_minutes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub body_limit: Option<usize>,
    pub default_page_size: Option<usize>,
    pub max_page_size: Option<usize>,
    pub min_revision_wait_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `serve` needs, resolved.
#[derive(Debug)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub demo: bool,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub tls: Option<TlsConfig>,
    pub settings: portcullis_http::Settings,
    pub bootstrap_token: Option<String>,
    pub auth: portcullis_signin::AuthSettings,
    pub signin: portcullis_http::SignInSettings,
    /// How often housekeeping runs; `None`: never.
    pub housekeeping_interval: Option<Duration>,
    /// The LDAP sources to sync periodically, checked and with their passwords read.
    pub ldap: Vec<portcullis_ldap::Source>,
    /// How the engine runs: when it writes the snapshot image.
    pub engine: portcullis_engine::EngineOptions,
    /// The SCIM service provider's settings (`[scim]`).
    pub scim: portcullis_scim::ScimSettings,
    /// The cluster this node joins (`--cluster`, `[cluster]`); `None`: a single
    /// server.
    pub cluster: Option<Cluster>,
    /// The LDAP directory, when it listens somewhere.
    pub ldap_server: Option<LdapServe>,
}

/// What the command line (flags, or the environment variables clap reads) said.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub listen: Option<String>,
    pub demo: bool,
    pub log_format: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cluster: Option<String>,
    pub ldap_listen: Option<String>,
    pub ldaps_listen: Option<String>,
    pub ldap_base_dn: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn env_number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, CliError> {
    env(name)
        .map(|value| {
            value
                .parse()
                .map_err(|_| CliError::Input(format!("{name}: `{value}` is not a number")))
        })
        .transpose()
}

pub fn read_file(path: &Path) -> Result<FileConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::Input(format!(
            "cannot read the config file `{}`: {error}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|error| {
        CliError::Input(format!(
            "config file `{}`: {}",
            path.display(),
            error.to_string().trim().replace('\n', " ")
        ))
    })
}

impl ServeConfig {
    pub fn resolve(overrides: Overrides) -> Result<ServeConfig, CliError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data = overrides
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| {
            CliError::Input(format!(
                "listen: `{listen_text}` is not an address such as 127.0.0.1:8080"
            ))
        })?;
        let log_format = match overrides.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(CliError::Input(format!(
                    "log format: `{other}` is neither `text` nor `json`"
                )));
            }
        };
        let log_filter = env("RUST_LOG")
            .or_else(|| env("PORTCULLIS_LOG"))
            .or(file.log_filter)
            .unwrap_or_else(|| "info".to_owned());
        let tls = match (overrides.tls_cert, overrides.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
            (None, None) => file.tls,
            _ => {
                return Err(CliError::Input(
                    "TLS needs both --tls-cert and --tls-key".to_owned(),
                ));
            }
        };
        let defaults = portcullis_http::Settings::default();
        let limits = file.limits;
        let millis =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        let settings = portcullis_http::Settings {
            body_limit: env_number("PORTCULLIS_BODY_LIMIT")?
                .or(limits.body_limit)
                .unwrap_or(defaults.body_limit),
            default_page_size: env_number("PORTCULLIS_DEFAULT_PAGE_SIZE")?
                .or(limits.default_page_size)
                .unwrap_or(defaults.default_page_size),
            max_page_size: env_number("PORTCULLIS_MAX_PAGE_SIZE")?
                .or(limits.max_page_size)
                .unwrap_or(defaults.max_page_size),
            min_revision_wait: millis(
                env_number("PORTCULLIS_MIN_REVISION_WAIT_MS")?.or(limits.min_revision_wait_ms),
                defaults.min_revision_wait,
            ),
            request_timeout: millis(
                env_number("PORTCULLIS_REQUEST_TIMEOUT_MS")?.or(limits.request_timeout_ms),
                defaults.request_timeout,
            ),
            header_read_timeout: millis(
                env_number("PORTCULLIS_HEADER_READ_TIMEOUT_MS")?.or(limits.header_read_timeout_ms),
                defaults.header_read_timeout,
            ),
            // Over TLS the console's cookies are `Secure`.
            console: portcullis_http::ConsoleSettings {
                secure_cookies: tls.is_some(),
                ..defaults.console
            },
        };
        if settings.default_page_size == 0 || settings.default_page_size > settings.max_page_size {
            return Err(CliError::Input(format!(
                "limits: default_page_size ({}) must be between 1 and max_page_size ({})",
                settings.default_page_size, settings.max_page_size
            )));
        }
        let ldap = portcullis_ldap::resolve_sources(&file.ldap, None)
            .map_err(|error| CliError::Input(error.to_string()))?;
        let mut auth = auth_settings(file.auth)?;
        if let Some(passkeys) = file.passkeys {
            if auth.passkeys.is_some() {
                return Err(CliError::Input(
                    "passkeys: set them in [passkeys] or in [auth.passkeys], not both".to_owned(),
                ));
            }
            auth.passkeys = Some(passkeys);
        }
        let mut signin = signin_settings(file.mail, &file.signin)?;
        signin.sms = sms_settings(file.sms)?;
        let engine_defaults = portcullis_engine::EngineOptions::default();
        let engine = portcullis_engine::EngineOptions {
            image_every_revisions: env_number("PORTCULLIS_IMAGE_EVERY_REVISIONS")?
                .or(file.snapshot.image_every_revisions)
                .unwrap_or(engine_defaults.image_every_revisions),
            image_every: env_number("PORTCULLIS_IMAGE_EVERY_SECONDS")?
                .or(file.snapshot.image_every_seconds)
                .map_or(engine_defaults.image_every, Duration::from_secs),
            cluster_image_every: file
                .cluster
                .image_every_revisions
                .unwrap_or(engine_defaults.cluster_image_every),
            cluster_retain_revisions: file
                .cluster
                .retain_revisions
                .unwrap_or(engine_defaults.cluster_retain_revisions),
            ..engine_defaults
        };
        if engine.image_every_revisions == 0 || engine.image_every.is_zero() {
            return Err(CliError::Input(
                "snapshot: image_every_revisions and image_every_seconds must be at least 1"
                    .to_owned(),
            ));
        }
        let housekeeping_minutes = env_number("PORTCULLIS_HOUSEKEEPING_INTERVAL_MINUTES")?
            .or(file.signin.housekeeping_interval_minutes)
            .unwrap_or(60);
        let scim = portcullis_scim::ScimSettings {
            adopt: file.scim.policy()?,
            ..portcullis_scim::ScimSettings::default()
        };
        let cluster = file.cluster.resolve(overrides.cluster)?;
        let ldap_server = ldap_server(
            file.ldap_server,
            LdapOverrides {
                listen: overrides.ldap_listen,
                ldaps_listen: overrides.ldaps_listen,
                base_dn: overrides.ldap_base_dn,
            },
            tls.is_some(),
            signin.max_concurrent_logins,
        )?;
        Ok(ServeConfig {
            cluster,
            ldap_server,
            scim,
            ldap,
            auth,
            signin,
            housekeeping_interval: (housekeeping_minutes > 0)
                .then(|| Duration::from_secs(housekeeping_minutes.saturating_mul(60))),
            data,
            listen,
            demo: overrides.demo || file.demo.unwrap_or(false),
            log_format,
            log_filter,
            tls,
            settings,
            bootstrap_token: env("PORTCULLIS_BOOTSTRAP_TOKEN"),
            engine,
        })
    }
}

/// What the command line said of the LDAP directory.
struct LdapOverrides {
    listen: Option<String>,
    ldaps_listen: Option<String>,
    base_dn: Option<String>,
}

/// The LDAP directory's settings: flags (and their variables), then `[ldap_server]`,
/// then the defaults. `None` when it listens nowhere (the default).
fn ldap_server(
    file: LdapServerConfig,
    overrides: LdapOverrides,
    tls: bool,
    max_concurrent_binds: usize,
) -> Result<Option<LdapServe>, CliError> {
    let address = |what: &str, text: Option<String>| -> Result<Option<SocketAddr>, CliError> {
        text.map(|text| {
            text.parse().map_err(|_| {
                CliError::Input(format!(
                    "{what}: `{text}` is not an address such as 127.0.0.1:389"
                ))
            })
        })
        .transpose()
    };
    let listen = address("ldap listen", overrides.listen.or(file.listen))?;
    let ldaps_listen = address("ldaps listen", overrides.ldaps_listen.or(file.ldaps_listen))?;
    if listen.is_none() && ldaps_listen.is_none() {
        return Ok(None);
    }
    if ldaps_listen.is_some() && !tls {
        return Err(CliError::Input(
            "ldaps_listen needs the server's TLS certificate and key (--tls-cert, --tls-key)"
                .to_owned(),
        ));
    }
    let base_text = overrides
        .base_dn
        .or(file.base_dn)
        .unwrap_or_else(|| portcullis_ldap_server::DEFAULT_BASE_DN.to_owned());
    let base_dn = portcullis_ldap_server::BaseDn::parse(&base_text)
        .map_err(|message| CliError::Input(format!("ldap base DN: {message}")))?;
    let mut settings = portcullis_ldap_server::Settings::new(base_dn);
    settings.plain_binds = file.plain_binds.unwrap_or(!tls);
    settings.max_concurrent_binds = max_concurrent_binds;
    let positive = |name: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(CliError::Input(format!(
            "ldap_server: {name} must be at least 1"
        ))),
        Some(value) => Ok(value),
        None => Ok(default),
    };
    settings.max_connections = positive(
        "max_connections",
        file.max_connections,
        settings.max_connections,
    )?;
    settings.size_limit = positive("size_limit", file.size_limit, settings.size_limit)?;
    settings.max_message_bytes = positive(
        "max_message_bytes",
        file.max_message_bytes,
        settings.max_message_bytes,
    )?;
    settings.max_filter_depth = positive(
        "max_filter_depth",
        file.max_filter_depth,
        settings.max_filter_depth,
    )?;
    settings.max_filter_terms = positive(
        "max_filter_terms",
        file.max_filter_terms,
        settings.max_filter_terms,
    )?;
    let seconds = |name: &str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(CliError::Input(format!(
            "ldap_server: {name} must be at least 1"
        ))),
        Some(value) => Ok(Duration::from_secs(value)),
        None => Ok(default),
    };
    settings.time_limit = seconds("time_limit_secs", file.time_limit_secs, settings.time_limit)?;
    settings.idle_timeout = seconds(
        "idle_timeout_secs",
        file.idle_timeout_secs,
        settings.idle_timeout,
    )?;
    if let Some(prefix) = file.home_prefix {
        settings.posix.home_prefix = prefix;
    }
    if let Some(shell) = file.login_shell {
        settings.posix.login_shell = shell;
    }
    Ok(Some(LdapServe {
        listen,
        ldaps_listen,
        settings,
    }))
}

/// The sign-in settings: the `[auth]` table, then `PORTCULLIS_*` variables over it.
pub fn auth_settings(
    file: Option<portcullis_signin::AuthSettings>,
) -> Result<portcullis_signin::AuthSettings, CliError> {
    let mut auth = file.unwrap_or_default();
    if let Some(value) = env_number("PORTCULLIS_ARGON2_MEMORY_KIB")? {
        auth.argon2.memory_kib = value;
    }
    if let Some(value) = env_number("PORTCULLIS_ARGON2_ITERATIONS")? {
        auth.argon2.iterations = value;
    }
    if let Some(value) = env_number("PORTCULLIS_ARGON2_PARALLELISM")? {
        auth.argon2.parallelism = value;
    }
    if let Some(value) = env_number("PORTCULLIS_PASSWORD_MIN_LENGTH")? {
        auth.password_policy.min_length = value;
    }
    if let Some(value) = env_number("PORTCULLIS_LOCKOUT_MAX_FAILURES")? {
        auth.lockout.max_failures = value;
    }
    if let Some(value) = env_number("PORTCULLIS_LOCKOUT_WINDOW_MINUTES")? {
        auth.lockout.window_minutes = value;
    }
    if let Some(value) = env_number("PORTCULLIS_LOCKOUT_MINUTES")? {
        auth.lockout.lock_minutes = value;
    }
    if let Some(value) = env_number("PORTCULLIS_RESET_LINK_MINUTES")? {
        auth.reset_link_minutes = value;
    }
    if let Some(value) = env_number("PORTCULLIS_USER_INACTIVITY_DAYS")? {
        auth.inactivity_days = (value > 0).then_some(value);
    }
    if let Some(value) = env_number("PORTCULLIS_USER_DEFAULT_EXPIRY_DAYS")? {
        auth.default_expiry_days = (value > 0).then_some(value);
    }
    if let Some(value) = env("PORTCULLIS_MFA_POLICY") {
        auth.mfa_policy = serde_json::from_value(serde_json::Value::String(value.clone()))
            .map_err(|_| {
                CliError::Input(format!(
                    "PORTCULLIS_MFA_POLICY: `{value}` is not none, admins or everyone"
                ))
            })?;
    }
    if let Some(value) = env("PORTCULLIS_SMS_CODES") {
        auth.sms_codes = match value.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(CliError::Input(format!(
                    "PORTCULLIS_SMS_CODES: `{value}` is neither true nor false"
                )));
            }
        };
    }
    if let Some(value) = env("PORTCULLIS_EMAIL_CODES") {
        auth.email_codes = match value.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(CliError::Input(format!(
                    "PORTCULLIS_EMAIL_CODES: `{value}` is neither true nor false"
                )));
            }
        };
    }
    Ok(auth)
}

/// The SMS sender `[sms]` describes, with its bearer secret read from its file or
/// `PORTCULLIS_SMS_BEARER`.
pub fn sms_settings(
    file: Option<SmsConfig>,
) -> Result<Option<portcullis_http::SmsSettings>, CliError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let sender = match file.sender.as_str() {
        "webhook" => {
            let Some(url) = file.url else {
                return Err(CliError::Input(
                    "sms: the webhook sender needs `url`".to_owned(),
                ));
            };
            let bearer = match (env("PORTCULLIS_SMS_BEARER"), &file.bearer_file) {
                (Some(secret), _) => Some(secret),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|error| {
                            CliError::Input(format!(
                                "sms bearer_file `{}`: {error}",
                                path.display()
                            ))
                        })?
                        .trim()
                        .to_owned(),
                ),
                (None, None) => None,
            };
            portcullis_http::SmsSender::Webhook { url, bearer }
        }
        "command" => {
            let Some(program) = file.program else {
                return Err(CliError::Input(
                    "sms: the command sender needs `program`".to_owned(),
                ));
            };
            portcullis_http::SmsSender::Command {
                program,
                args: file.args,
            }
        }
        other => {
            return Err(CliError::Input(format!(
                "sms sender `{other}`: expected `webhook` or `command`"
            )));
        }
    };
    Ok(Some(portcullis_http::SmsSettings {
        sender,
        timeout: Duration::from_millis(file.timeout_ms.unwrap_or(5_000)),
        retries: file.retries.unwrap_or(2),
    }))
}

fn signin_settings(
    file: Option<MailConfig>,
    signin: &SignInConfig,
) -> Result<portcullis_http::SignInSettings, CliError> {
    let defaults = portcullis_http::SignInSettings::default();
    let mail = match (env("PORTCULLIS_SMTP_HOST"), file) {
        (None, None) => None,
        (host, file) => {
            let host = host.or_else(|| file.as_ref().map(|f| f.host.clone()));
            let from =
                env("PORTCULLIS_SMTP_FROM").or_else(|| file.as_ref().map(|f| f.from.clone()));
            let (Some(host), Some(from)) = (host, from) else {
                return Err(CliError::Input(
                    "mail: set both host and from (PORTCULLIS_SMTP_HOST, PORTCULLIS_SMTP_FROM)"
                        .to_owned(),
                ));
            };
            let tls: portcullis_http::MailTls =
                match env("PORTCULLIS_SMTP_TLS").or_else(|| file.as_ref()?.tls.clone()) {
                    Some(text) => text.parse().map_err(CliError::Input)?,
                    None => portcullis_http::MailTls::default(),
                };
            let ca_file = env("PORTCULLIS_SMTP_CA_FILE")
                .map(PathBuf::from)
                .or_else(|| file.as_ref()?.ca_file.clone());
            let ca_pem = match ca_file {
                Some(path) => Some(std::fs::read(&path).map_err(|error| {
                    CliError::Input(format!("mail ca_file `{}`: {error}", path.display()))
                })?),
                None => None,
            };
            Some(portcullis_http::MailSettings {
                host,
                port: env_number("PORTCULLIS_SMTP_PORT")?
                    .or(file.as_ref().and_then(|f| f.port))
                    .unwrap_or_else(|| tls.default_port()),
                tls,
                ca_pem,
                from,
                username: env("PORTCULLIS_SMTP_USERNAME")
                    .or_else(|| file.as_ref().and_then(|f| f.username.clone())),
                password: env("PORTCULLIS_SMTP_PASSWORD")
                    .or_else(|| file.as_ref().and_then(|f| f.password.clone())),
                timeout: Duration::from_millis(
                    file.as_ref().and_then(|f| f.timeout_ms).unwrap_or(10_000),
                ),
            })
        }
    };
    Ok(portcullis_http::SignInSettings {
        mail,
        sms: None,
        reset_link_prefix: env("PORTCULLIS_RESET_LINK_PREFIX")
            .or_else(|| signin.reset_link_prefix.clone())
            .unwrap_or(defaults.reset_link_prefix),
        max_concurrent_logins: env_number("PORTCULLIS_MAX_CONCURRENT_LOGINS")?
            .or(signin.max_concurrent_logins)
            .unwrap_or(defaults.max_concurrent_logins),
        reset_limits: portcullis_http::ResetLimits {
            per_account: env_number("PORTCULLIS_RESET_REQUESTS_PER_ACCOUNT")?
                .or(signin.reset_requests_per_account)
                .unwrap_or(defaults.reset_limits.per_account),
            per_address: env_number("PORTCULLIS_RESET_REQUESTS_PER_ADDRESS")?
                .or(signin.reset_requests_per_address)
                .unwrap_or(defaults.reset_limits.per_address),
            window: env_number::<u64>("PORTCULLIS_RESET_WINDOW_MINUTES")?
                .or(signin.reset_window_minutes)
                .map_or(defaults.reset_limits.window, |minutes| {
                    Duration::from_secs(minutes.saturating_mul(60))
                }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_parses() {
        let text = r#"
            data = "/var/lib/portcullis"
            listen = "0.0.0.0:8443"
            demo = false
            log_format = "json"
            log_filter = "info"

            [tls]
            cert = "/etc/portcullis/cert.pem"
            key = "/etc/portcullis/key.pem"

            [limits]
            body_limit = 1048576
            default_page_size = 100
            max_page_size = 1000
            min_revision_wait_ms = 5000
            request_timeout_ms = 30000

            [auth]
            mfa_policy = "admins"
            email_codes = true
            reset_link_minutes = 30
            inactivity_days = 90
            default_expiry_days = 365
            restrict_to_source = false
            totp_issuer = "Example Corp"

            [auth.argon2]
            memory_kib = 19456
            iterations = 2
            parallelism = 1

            [auth.password_policy]
            min_length = 14
            upper = true
            lower = true
            digit = true
            special = true

            [auth.lockout]
            max_failures = 5
            window_minutes = 15
            lock_minutes = 30

            [mail]
            host = "smtp.example.com"
            port = 25
            from = "Portcullis <portcullis@example.com>"

            [signin]
            reset_link_prefix = "https://portcullis.example.com/reset-password?token="
            max_concurrent_logins = 8
            housekeeping_interval_minutes = 60
        "#;
        let file: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(file.listen.as_deref(), Some("0.0.0.0:8443"));
        assert_eq!(file.limits.max_page_size, Some(1000));
        assert!(file.tls.is_some());
        let auth = file.auth.unwrap();
        assert_eq!(auth.password_policy.min_length, 14);
        assert_eq!(auth.lockout.lock_minutes, 30);
        assert_eq!(auth.mfa_policy, portcullis_signin::MfaPolicy::Admins);
        assert_eq!(file.mail.unwrap().host, "smtp.example.com");
    }

    fn ldap_of(section: &str, tls: bool) -> Result<Option<LdapServe>, CliError> {
        let file: FileConfig = toml::from_str(section).unwrap();
        let none = LdapOverrides {
            listen: None,
            ldaps_listen: None,
            base_dn: None,
        };
        ldap_server(file.ldap_server, none, tls, 8)
    }

    #[test]
    fn the_ldap_directory_is_off_unless_it_listens_and_ldaps_needs_tls() {
        assert!(ldap_of("", false).unwrap().is_none());
        let plain = ldap_of("[ldap_server]\nlisten = \"127.0.0.1:3389\"\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(plain.settings.base_dn.as_str(), "dc=portcullis");
        assert!(plain.settings.plain_binds, "no certificate: plain binds");
        // The README's table, whole.
        let readme = include_str!("../../../README.md");
        let start = readme.find("[ldap_server]").unwrap();
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let documented = ldap_of(block, true).unwrap().unwrap();
        assert_eq!(documented.settings.base_dn.as_str(), "dc=example,dc=org");
        assert!(documented.ldaps_listen.is_some());
        assert!(
            !documented.settings.plain_binds,
            "a certificate: TLS for binds"
        );
        let Err(CliError::Input(message)) = ldap_of(block, false) else {
            panic!("ldaps without a certificate is refused");
        };
        assert!(message.contains("ldaps_listen"), "{message}");
        let bad = "[ldap_server]\nlisten = \"127.0.0.1:3389\"\nbase_dn = \"dc=a,,dc=b\"\n";
        assert!(matches!(ldap_of(bad, false), Err(CliError::Input(_))));
    }

    /// The mail settings `[mail]` gives (no `PORTCULLIS_SMTP_*` variable is set in
    /// tests).
    fn mail_of(section: &str) -> Result<portcullis_http::MailSettings, CliError> {
        let file: FileConfig = toml::from_str(section).unwrap();
        signin_settings(file.mail, &file.signin).map(|settings| settings.mail.unwrap())
    }

    #[test]
    fn mail_is_starttls_unless_the_config_says_otherwise() {
        let base = "[mail]\nhost = \"smtp.example.com\"\nfrom = \"p@example.com\"\n";
        let mail = mail_of(base).unwrap();
        assert_eq!(
            (mail.tls, mail.port, mail.ca_pem),
            (portcullis_http::MailTls::StartTls, 587, None)
        );
        let mail = mail_of(&format!("{base}tls = \"implicit\"")).unwrap();
        assert_eq!(
            (mail.tls, mail.port),
            (portcullis_http::MailTls::Implicit, 465)
        );
        let mail = mail_of(&format!("{base}tls = \"none\"\nport = 2525")).unwrap();
        assert_eq!(
            (mail.tls, mail.port),
            (portcullis_http::MailTls::None, 2525)
        );
        let Err(CliError::Input(message)) = mail_of(&format!("{base}tls = \"ssl\"")) else {
            panic!("an unknown tls mode is refused");
        };
        assert!(
            message.contains("`ssl`") && message.contains("starttls"),
            "{message}"
        );
        let Err(CliError::Input(message)) =
            mail_of(&format!("{base}ca_file = \"/nonexistent/ca.pem\""))
        else {
            panic!("a missing CA file is refused");
        };
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    }

    #[test]
    fn sms_and_passkeys_parse_and_the_bearer_comes_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("sms-token");
        std::fs::write(&secret, "s3cret-bearer\n").unwrap();
        let text = format!(
            "[auth]\nsms_codes = true\nmfa_methods = [\"passkey\", \"sms\"]\npasswordless = true\n\n\
             [sms]\nsender = \"webhook\"\nurl = \"https://sms.example.com/send\"\nbearer_file = \"{}\"\nretries = 1\n\n\
             [passkeys]\nrp_id = \"example.com\"\norigins = [\"https://portcullis.example.com\"]\n",
            secret.display()
        );
        let file: FileConfig = toml::from_str(&text).unwrap();
        let sms = sms_settings(file.sms).unwrap().unwrap();
        assert_eq!(
            sms.sender,
            portcullis_http::SmsSender::Webhook {
                url: "https://sms.example.com/send".to_owned(),
                bearer: Some("s3cret-bearer".to_owned())
            }
        );
        assert_eq!(sms.retries, 1);
        assert!(!format!("{sms:?}").contains("s3cret"), "{sms:?}");
        let auth = file.auth.unwrap();
        assert_eq!(
            auth.mfa_methods,
            [
                portcullis_signin::MfaMethod::Passkey,
                portcullis_signin::MfaMethod::Sms
            ]
        );
        assert_eq!(file.passkeys.unwrap().rp_name, "Portcullis");
        let command: FileConfig = toml::from_str(
            "[sms]\nsender = \"command\"\nprogram = \"/usr/local/bin/send-sms\"\nargs = [\"-q\"]",
        )
        .unwrap();
        assert!(matches!(
            sms_settings(command.sms).unwrap().unwrap().sender,
            portcullis_http::SmsSender::Command { .. }
        ));
        let carrier: FileConfig = toml::from_str("[sms]\nsender = \"pigeon\"").unwrap();
        assert!(sms_settings(carrier.sms).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nbody = 1").is_err());
        assert!(toml::from_str::<FileConfig>("[auth]\nlockouts = 1").is_err());
        assert!(toml::from_str::<FileConfig>("[auth.lockout]\nmax = 1").is_err());
        assert!(toml::from_str::<FileConfig>("[mail]\nhost = \"x\"").is_err());
    }
}
