//! The Portcullis HTTP API: the decision API bastions call, the admin REST API, the
//! operation log (`/changes`, `/watch`), `/healthz`, Prometheus `/metrics`, the
//! OpenAPI document and sign-in (`/api/v1/auth/*`: login, passwords, MFA, passkeys,
//! reset links by SMTP, codes by mail or SMS), as one axum [`Router`].
//!
//! Every route is declared once, in the route table (`routes.rs`), with the permission
//! it needs; the router, the authorization check and the OpenAPI document are all
//! built from that table, so none of them can miss a route. Other front-ends' routes
//! (SCIM's, the import and export routes) join the table through [`router_with`] and
//! pass the same layers — authentication, limits, timeout, metrics — and a group with
//! a wire format of its own has the stack's refusals worded in it ([`ErrorFormat`]).
//!
//! This crate must never decide what a rule means (the engine does) nor call the
//! engine's blocking writes on an async worker (writes go through `spawn_blocking`).
//! Engine errors become HTTP statuses in `error.rs` and nowhere else.

mod admin;
mod auth;
mod changes;
pub mod console;
mod decisions;
mod error;
mod error_format;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod mail;
mod metrics;
mod openapi;
mod qr;
mod revisions;
mod routes;
mod serve;
mod signin;
mod sms;
mod stack;
mod timeout;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use portcullis_engine::{Engine, Snapshot};
use portcullis_signin::{Auth, AuthSettings};

pub use auth::{Access, Caller, Principal};
pub use console::{ConsoleSettings, console_format};
pub use decisions::{CheckRequest, CheckRequestError, decision_json, explanation_json};
pub use error::ApiError;
pub use error_format::ErrorFormat;
pub use mail::{MailSettings, MailTls};
pub use routes::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES, Route};
pub use serve::{configure as configure_connections, serve};
pub use signin::{ResetLimits, SignInSettings};
pub use sms::{SmsSender, SmsSettings};
pub use timeout::write_started;

/// Limits and timeouts of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The largest request body, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// The page size when a list request names none.
    pub default_page_size: usize,
    /// The largest page (and the most checks in one batch); larger ones get 400.
    pub max_page_size: usize,
    /// How long a request with `min_revision` waits for the snapshot to catch up.
    pub min_revision_wait: Duration,
    /// How long any request but the watch stream and imports may take; then 503. A
    /// write the engine has taken is never cut: it finishes with its answer.
    pub request_timeout: Duration,
    /// How long a client may take to send a request's head (line and headers);
    /// then the connection is closed.
    pub header_read_timeout: Duration,
    /// The web console's sessions.
    pub console: ConsoleSettings,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            body_limit: 1024 * 1024,
            default_page_size: 100,
            max_page_size: 1000,
            min_revision_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            console: ConsoleSettings::default(),
        }
    }
}

/// What every handler shares: the engine, the settings, metrics and the revision feed.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    settings: Settings,
    metrics: metrics::Metrics,
    revisions: revisions::Revisions,
    auth: auth::PermissionCache,
    signin: signin::SignIn,
    sessions: console::Sessions,
    openapi: std::sync::OnceLock<serde_json::Value>,
    sync_status: std::sync::RwLock<std::collections::BTreeMap<String, SyncStatus>>,
}

/// What `GET /api/v1/sync/{source_kind}` answers for one kind of sync (`ldap`, …):
/// a JSON document the sync front-end builds. It must hold no secret.
pub type SyncStatus = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl AppState {
    /// The API over `engine`, with sign-in at its default settings and no mail.
    pub fn new(engine: Arc<Engine>, settings: Settings) -> AppState {
        let auth = Auth::new(engine.clone(), AuthSettings::default())
            .expect("INVARIANT: the default sign-in settings are valid and the store is open");
        AppState::with_signin(engine, settings, Arc::new(auth), SignInSettings::default())
            .expect("INVARIANT: the default sign-in settings send no mail")
    }

    /// The API over `engine` with sign-in by `auth` (its settings, its backends) and
    /// mail as `signin` says. Fails when the mail settings are unusable.
    pub fn with_signin(
        engine: Arc<Engine>,
        settings: Settings,
        auth: Arc<Auth>,
        signin: SignInSettings,
    ) -> Result<AppState, String> {
        let signin = signin::SignIn::new(auth, signin)?;
        let revisions = revisions::Revisions::start(&engine);
        let sessions = console::Sessions::new(settings.console.clone());
        Ok(AppState {
            inner: Arc::new(Inner {
                engine,
                settings,
                metrics: metrics::Metrics::default(),
                revisions,
                auth: auth::PermissionCache::default(),
                signin,
                sessions,
                openapi: std::sync::OnceLock::new(),
                sync_status: std::sync::RwLock::default(),
            }),
        })
    }

    /// Sign-in over this state's engine.
    pub fn auth(&self) -> &Arc<Auth> {
        &self.inner.signin.auth
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Serves `status` at `GET /api/v1/sync/{kind}` (authorized like other admin reads,
    /// with `users.view`). This crate knows nothing of the sync itself: the binary
    /// that runs a sync registers what it reports. A later registration of the same
    /// kind replaces the earlier one.
    pub fn register_sync_status(&self, kind: impl Into<String>, status: SyncStatus) {
        self.inner
            .sync_status
            .write()
            .expect("sync status lock")
            .insert(kind.into(), status);
    }

    pub(crate) fn sync_status(&self, kind: &str) -> Option<SyncStatus> {
        self.inner
            .sync_status
            .read()
            .expect("sync status lock")
            .get(kind)
            .cloned()
    }

    /// Ends every open watch stream, so that a graceful shutdown does not wait for
    /// clients that never hang up. Later watch requests end at once.
    pub fn close_streams(&self) {
        self.inner.revisions.close();
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn sessions(&self) -> &console::Sessions {
        &self.inner.sessions
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.engine.snapshot()
    }
}

/// The whole HTTP API over `state`'s engine.
pub fn router(state: AppState) -> Router {
    routes::router(state, Vec::new())
}

/// The HTTP API with `extra` routes of other front-ends beside the built-in ones,
/// authorized, limited, timed, counted and documented alike. A path that repeats a
/// built-in route panics here, at startup (axum refuses overlapping routes), and so
/// does a route outside its error format's scope.
pub fn router_with(state: AppState, extra: Vec<Route>) -> Router {
    routes::router(state, extra)
}

/// Every `(METHOD, path)` of the built-in route table, in its order: what the OpenAPI
/// document lists besides the routes [`router_with`] adds, and what the authorization
/// tests walk.
pub fn route_list() -> Vec<(String, String)> {
    routes::table()
        .iter()
        .map(|route| (route.method.to_string(), route.path.clone()))
        .collect()
}
