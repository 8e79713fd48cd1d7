//! The layers every request passes, two middlewares in all, so that a request pays for
//! two boxed services and futures rather than one per concern:
//!
//! - [`envelope`], around the whole router (each route and the fallbacks): chooses the
//!   request's error format, refuses oversized heads, counts the request in the
//!   metrics by the route template it matched, and gives error responses made outside
//!   the handlers a body in the request's format.
//! - [`guard`], around each route, with what was resolved for it when the router was
//!   built: the request timeout (not for streaming routes), the body limit,
//!   authorization (a bearer token, or the console's session cookie under `/ui/`), and
//!   for the console's state changes the CSRF token.
//!
//! The order is the stack's contract: a refused head is neither counted nor given
//! another body; a timeout covers the body check and authorization; an oversized body
//! is refused before the token is read; a refused token is answered after the body is
//! drained.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::auth::{Access, Credentials};
use crate::error::ApiError;
use crate::error_format::{ErrorFormat, ErrorFormats};
use crate::extract::{answer_after_body, close_if_unread, declared_length, has_body};
use crate::metrics::{RouteTable, method_label};
use crate::routes::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};

/// What [`envelope`] resolved when the router was built.
#[derive(Clone)]
pub(crate) struct Envelope {
    pub(crate) formats: ErrorFormats,
    pub(crate) routes: RouteTable,
}

/// The outermost middleware (see the module's documentation).
pub(crate) async fn envelope(
    State(envelope): State<Envelope>,
    mut request: Request,
    next: Next,
) -> Response {
    let format = envelope.formats.for_path(request.uri().path()).clone();
    if let Some(refusal) = head_refusal(&request) {
        return close_if_unread(has_body(request.headers()), format.render(refusal));
    }
    let started = Instant::now();
    let method = method_label(request.method());
    let stats = envelope
        .routes
        .of(method, request.extensions().get::<MatchedPath>());
    request.extensions_mut().insert(format.clone());
    let response = next.run(request).await;
    let status = response.status();
    stats.observe(method, status.as_u16(), started.elapsed());
    if (status.is_client_error() || status.is_server_error()) && !in_format(&format, &response) {
        // Made outside the handlers (an extractor's rejection, a body cut at the
        // limit): the route group's errors have one shape.
        return format.render(ApiError::for_status(status));
    }
    response
}

/// Why a request's head is refused: a URI or headers over the limits (the parser's
/// own limits, set higher in `serve.rs`, would answer with an empty body).
fn head_refusal(request: &Request) -> Option<ApiError> {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |path| path.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong);
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES).then_some(ApiError::HeadersTooLarge)
}

/// Whether `response` is already of `format`'s media type.
fn in_format(format: &ErrorFormat, response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(format.media_type()))
}

/// What [`guard`] resolved for one route when the router was built.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) state: AppState,
    pub(crate) access: Arc<Access>,
    pub(crate) credentials: Credentials,
    pub(crate) format: ErrorFormat,
    pub(crate) body_limit: usize,
    /// `None` for streaming and long-running routes.
    pub(crate) timeout: Option<Duration>,
}

/// The middleware around each route (see the module's documentation).
pub(crate) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.timeout {
        Some(limit) => {
            crate::timeout::bounded(limit, &guard.format, admit(&guard, request, next)).await
        }
        None => admit(&guard, request, next).await,
    }
}

/// The body limit and authorization, then the route.
async fn admit(guard: &Guard, mut request: Request, next: Next) -> Response {
    if declared_length(request.headers()).is_some_and(|length| length > guard.body_limit as u64) {
        let refusal = guard.format.render(ApiError::PayloadTooLarge);
        return answer_after_body(request, refusal).await;
    }
    // A body without a declared length is cut at the limit; the extractor that reads
    // it answers 413.
    let limit = guard.body_limit;
    request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    if let Err(refusal) =
        crate::auth::admit(&guard.state, &guard.access, guard.credentials, &mut request)
    {
        let refusal = guard.format.render(refusal);
        return answer_after_body(request, refusal).await;
    }
    // Every state change of the console carries its CSRF token, sign-in included.
    if guard.credentials == Credentials::Session && !request.method().is_safe() {
        request = match crate::console::csrf::verify(request).await {
            Ok(request) => request,
            Err(refusal) => return guard.format.render(refusal),
        };
    }
    next.run(request).await
}
