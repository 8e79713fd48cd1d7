//! Bearer-token authentication: a valid, unexpired token (whose user, if it acts for
//! one, is active) is required everywhere (401 otherwise), and one of its roles must
//! carry `scim.provision` (403 otherwise). Roles are read from the current snapshot,
//! so a changed role takes effect at once.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_engine::{Actor, PERMISSION_SCIM, Snapshot, Time, Token};

use crate::Scim;
use crate::error::ScimError;

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn user_is_valid(snapshot: &Snapshot, token: &Token, at: Time) -> bool {
    let Some(user) = token.user else {
        return true;
    };
    snapshot
        .user(&user.to_string())
        .filter(|found| found.id == user)
        .is_some_and(|user| user.is_valid_at(at))
}

fn may_provision(snapshot: &Snapshot, token: &Token) -> bool {
    token.roles.iter().any(|role| {
        snapshot
            .role_permissions(role)
            .is_some_and(|permissions| permissions.iter().any(|p| p == PERMISSION_SCIM))
    })
}

fn caller(scim: &Scim, request: &Request) -> Result<Actor, ScimError> {
    let secret = bearer(request).ok_or(ScimError::Unauthorized("a bearer token is required"))?;
    let now = Time::now();
    let engine = &scim.service.engine;
    let token = engine
        .authenticate_token(secret, now)
        .ok_or(ScimError::Unauthorized(
            "the bearer token is unknown or expired",
        ))?;
    let snapshot = engine.snapshot();
    if !user_is_valid(&snapshot, &token, now) {
        return Err(ScimError::Unauthorized(
            "the bearer token's user is inactive or expired",
        ));
    }
    if !may_provision(&snapshot, &token) {
        return Err(ScimError::Forbidden(format!(
            "token `{}` lacks the `{PERMISSION_SCIM}` permission",
            token.name
        )));
    }
    Ok(Actor::token(token.id, &token.name))
}

/// The middleware in front of every route.
pub(crate) async fn authorize(
    State(scim): State<Scim>,
    mut request: Request,
    next: Next,
) -> Response {
    match caller(&scim, &request) {
        Ok(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(error) => crate::routes::answer_after_body(request, error.into_response()).await,
    }
}
