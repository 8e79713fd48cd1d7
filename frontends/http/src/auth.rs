//! Bearer-token authentication and permission checks.
//!
//! A token carries roles; a role carries permission strings; each route names the one
//! permission it needs (the route table). Roles are looked up in the current snapshot,
//! so a custom role works like a built-in one and a changed role takes effect at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::header;
use portcullis_engine::{Actor, Evaluator, Id, Snapshot, Time, Token};

use crate::AppState;
use crate::error::ApiError;

/// How a route's callers prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// An API token in the `Authorization: Bearer` header.
    Bearer,
    /// The web console's session cookie (routes under `/ui/`), never a bearer token:
    /// a page a browser loads carries no header a script set.
    Session,
}

impl Credentials {
    /// The credentials of the route at `path`.
    pub(crate) fn of_path(path: &str) -> Credentials {
        if crate::console::covers(path) {
            Credentials::Session
        } else {
            Credentials::Bearer
        }
    }
}

/// What a route asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Public,
    /// Any valid token.
    Authenticated,
    /// A valid token whose roles carry this permission.
    Permission(String),
}

/// The authenticated caller, put in the request's extensions for handlers (take it
/// with `Extension<Caller>` on any route that is not [`Access::Public`]).
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// What the token's roles (or the signed-in user's effective roles on the global
    /// scope) allow, as of the snapshot that authorized the request.
    pub permissions: Arc<BTreeSet<String>>,
}

/// Who is calling: an API token (routes outside `/ui/`), or a user signed in to the
/// web console with a session cookie (routes under `/ui/`).
#[derive(Clone, Debug)]
pub enum Principal {
    Token(Arc<Token>),
    User { id: Id, username: String },
}

impl Caller {
    /// Who the caller's writes act for: the token or the signed-in user, whose grants
    /// the engine limits to what they hold, and whose name the operation log records.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::Token(token) => Actor::token(token.id, &token.name),
            Principal::User { id, username } => Actor::user(*id, username),
        }
    }

    /// Whether the caller holds `permission`.
    pub fn holds(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    /// Refuses unless the caller holds `permission`: for a route whose needs depend
    /// on its input (an import that updates needs `change` besides `add`).
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.permissions.contains(permission) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "this token lacks the permission `{permission}`"
        )))
    }
}

/// Token id → permissions.
type Permissions = HashMap<Id, Arc<BTreeSet<String>>>;

/// The permissions of tokens, valid for one snapshot revision.
#[derive(Default)]
pub(crate) struct PermissionCache {
    inner: Mutex<(u64, Permissions)>,
}

impl PermissionCache {
    fn permissions(&self, snapshot: &Snapshot, token: &Token) -> Arc<BTreeSet<String>> {
        let revision = snapshot.revision();
        {
            let cache = self.inner.lock().expect("permission cache lock");
            if cache.0 == revision {
                if let Some(permissions) = cache.1.get(&token.id) {
                    return permissions.clone();
                }
            }
        }
        let permissions = Arc::new(role_permissions(snapshot, &token.roles));
        let mut cache = self.inner.lock().expect("permission cache lock");
        if cache.0 != revision {
            *cache = (revision, HashMap::new());
        }
        cache.1.insert(token.id, permissions.clone());
        permissions
    }
}

/// The union of the permissions of `roles` (unknown roles carry none).
pub(crate) fn role_permissions(snapshot: &Snapshot, roles: &[String]) -> BTreeSet<String> {
    let mut permissions = BTreeSet::new();
    for role in roles {
        if let Some(list) = snapshot.role_permissions(role) {
            permissions.extend(list.iter().cloned());
        }
    }
    permissions
}

/// A token acting for a user is only as good as that user: inactive or expired users'
/// tokens are refused.
fn user_allows(snapshot: &Snapshot, user: Option<Id>, at: Time) -> bool {
    let Some(user) = user else {
        return true;
    };
    snapshot
        .user(&user.to_string())
        .is_some_and(|user| user.is_valid_at(at))
}

fn bearer(request: &Request) -> Option<&str> {
    bearer_of(request.headers())
}

/// The bearer token of a request's headers.
pub(crate) fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Authorizes `request` for a route that asks `access`, putting its [`Caller`] in its
/// extensions (the stack's per-route guard calls it before the handler).
pub(crate) fn admit(
    state: &AppState,
    access: &Access,
    credentials: Credentials,
    request: &mut Request,
) -> Result<(), ApiError> {
    if credentials == Credentials::Session {
        return crate::console::admit(state, access, request);
    }
    if let Some(caller) = caller(state, access, request)? {
        request.extensions_mut().insert(caller);
    }
    Ok(())
}

/// What a signed-in user may do at `now`: the permissions of their effective roles on
/// the global scope (system roles and the roles of their groups there), refused when
/// the user is inactive, expired or gone. Checked on every request, so that a
/// deactivation or a role change takes effect at once.
pub(crate) fn user_caller(
    state: &AppState,
    access: &Access,
    user: Id,
    now: Time,
) -> Result<Caller, ApiError> {
    let snapshot = state.snapshot();
    let id = user.to_string();
    let user = snapshot
        .user(&id)
        .filter(|user| user.is_valid_at(now))
        .ok_or(ApiError::Unauthenticated("the user is inactive or expired"))?;
    let roles = snapshot
        .effective_roles(&id, portcullis_engine::GLOBAL_SCOPE, now)
        .map_err(|_| ApiError::Unauthenticated("the user is inactive or expired"))?;
    let permissions = Arc::new(role_permissions(&snapshot, &roles));
    if let Access::Permission(permission) = access {
        if !permissions.contains(permission.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "you lack the permission `{permission}`"
            )));
        }
    }
    Ok(Caller {
        principal: Principal::User {
            id: user.id,
            username: user.username.clone(),
        },
        permissions,
    })
}

fn caller(
    state: &AppState,
    access: &Access,
    request: &Request,
) -> Result<Option<Caller>, ApiError> {
    if *access == Access::Public {
        return Ok(None);
    }
    let secret = bearer(request).ok_or(ApiError::Unauthenticated("missing bearer token"))?;
    authenticate(state, access, secret, Time::now()).map(|(caller, _)| Some(caller))
}

/// The caller whose bearer token is `secret`, if it satisfies `access` at `now`, and
/// the next instant at which its token or user expires. Long-lived answers (the watch
/// stream) call this again whenever the estate changes and at that instant, so a
/// revocation, a role change, a deactivation or an expiry ends them as it would
/// refuse a request.
pub(crate) fn authenticate(
    state: &AppState,
    access: &Access,
    secret: &str,
    now: Time,
) -> Result<(Caller, Option<Time>), ApiError> {
    let token = state
        .engine()
        .authenticate_token(secret, now)
        .ok_or(ApiError::Unauthenticated("unknown or expired token"))?;
    let snapshot = state.snapshot();
    if !user_allows(&snapshot, token.user, now) {
        return Err(ApiError::Unauthenticated(
            "the token's user is inactive or expired",
        ));
    }
    let user_expiry = token
        .user
        .and_then(|user| snapshot.user(&user.to_string()))
        .and_then(|user| user.expires_at);
    let expiry = match (token.expires_at, user_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let permissions = state.inner.auth.permissions(&snapshot, &token);
    if let Access::Permission(permission) = access {
        if !permissions.contains(permission.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "this token lacks the permission `{permission}`"
            )));
        }
    }
    Ok((
        Caller {
            principal: Principal::Token(token),
            permissions,
        },
        expiry,
    ))
}
