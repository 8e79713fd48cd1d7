//! The web console: server-rendered HTML pages under `/ui/`, for administrators,
//! auditors and every user (their own assets and profile).
//!
//! Its routes are routes of the one route table (`routes.rs`), passing the same stack:
//! body limits, timeouts, metrics, and authorization by the same permissions as the
//! API routes they mirror. Only how a caller proves who they are differs: a session
//! cookie made by the engine's own sign-in (`session.rs`), never a bearer token. Every
//! state change carries a CSRF token (`csrf.rs`), checked by the stack; every page
//! carries a strict Content-Security-Policy and loads nothing from another host (the
//! stylesheet and the vendored htmx are embedded in the binary).
//!
//! The console reads through the API's own handlers and the engine's views and writes
//! through the API's own write functions (`admin.rs`, `decisions.rs`, `signin.rs`):
//! it renders what they answer and never decides a rule of its own. Every read page
//! works without JavaScript; htmx only makes searching and the live operation log
//! smoother.

mod assets;
pub mod csrf;
mod estate;
mod groups;
pub mod html;
mod log;
mod mine;
mod rules;
mod session;
mod signin;
mod tester;
mod users;

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use portcullis_engine::Time;

pub use html::{Fields, Refusal, Viewer, notice, page_response, problem};
pub use session::ConsoleSettings;
pub(crate) use session::Sessions;

use crate::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use crate::error_format::ErrorFormat;
use crate::routes::Route;

/// The console's path prefix.
pub const SCOPE: &str = "/ui";

/// The cookie naming a session.
pub(crate) const SESSION_COOKIE: &str = "pc_session";

/// Whether `path` is the console's.
pub(crate) fn covers(path: &str) -> bool {
    path.strip_prefix(SCOPE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The error format of every route under `/ui/`: an HTML page with the status and the
/// message, and for a request without a session a redirect to the sign-in form.
/// Front-ends that add console routes ([`crate::router_with`]) give them this format.
pub fn console_format() -> ErrorFormat {
    static FORMAT: LazyLock<ErrorFormat> =
        LazyLock::new(|| ErrorFormat::new(SCOPE, "text/html", "ConsolePage", html::error_response));
    FORMAT.clone()
}

/// A console route: `.errors(console_format())` and the `console` tag.
pub fn route<H, T>(method: Method, path: &str, access: Access, summary: &str, handler: H) -> Route
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    Route::new(method, path, access, "console", summary, handler)
        .answers(axum::http::StatusCode::OK, "ConsolePage")
        .errors(console_format())
}

/// The value of cookie `name` in `headers`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Authorizes a console request: its session cookie names a live session whose user
/// holds what `access` asks. Puts a [`Viewer`] (and its [`crate::Caller`]) in the
/// request's extensions; public routes get one too when the request has a session.
pub(crate) fn admit(
    state: &AppState,
    access: &Access,
    request: &mut Request,
) -> Result<(), ApiError> {
    let session = cookie(request.headers(), SESSION_COOKIE).and_then(|secret| {
        state.sessions().find(secret, |user| {
            state.engine().password_fingerprint(user).ok().flatten()
        })
    });
    let Some(session) = session else {
        if *access == Access::Public {
            return Ok(());
        }
        return Err(ApiError::Unauthenticated("sign in first"));
    };
    let checked = if *access == Access::Public {
        &Access::Authenticated
    } else {
        access
    };
    let caller = match crate::auth::user_caller(state, checked, session.user, Time::now()) {
        Ok(caller) => caller,
        Err(ApiError::Unauthenticated(why)) => {
            state.sessions().close(&session);
            if *access == Access::Public {
                return Ok(());
            }
            return Err(ApiError::Unauthenticated(why));
        }
        Err(refusal) => return Err(refusal),
    };
    request.extensions_mut().insert(caller.clone());
    request
        .extensions_mut()
        .insert(Viewer::new(session, caller));
    Ok(())
}

/// Authorizes the session whose cookie is `secret` again, as a request would be (the
/// live operation log before each event).
pub(crate) fn recheck(state: &AppState, access: &Access, secret: &str) -> Result<(), ApiError> {
    let session = state
        .sessions()
        .find(secret, |user| {
            state.engine().password_fingerprint(user).ok().flatten()
        })
        .ok_or(ApiError::Unauthenticated("the session has ended"))?;
    crate::auth::user_caller(state, access, session.user, Time::now()).map(|_| ())
}

/// Every console route of the built-in table. Import and export pages join from the
/// front-end that owns spreadsheets (the cli), with [`route`].
pub(crate) fn routes() -> Vec<Route> {
    let mut routes = signin::routes();
    routes.extend(users::routes());
    routes.extend(groups::routes());
    routes.extend(estate::routes());
    routes.extend(rules::routes());
    routes.extend(tester::routes());
    routes.extend(log::routes());
    routes.extend(mine::routes());
    routes
}
