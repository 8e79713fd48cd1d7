//! The one place where errors become HTTP responses: `{"error":{"code","message"}}`
//! with a status. Handlers return `Result<_, ApiError>` and never pick a status.
//!
//! Engine errors are matched exhaustively (no `_` arm): a new engine error variant
//! does not compile here until someone decides its status.

use axum::extract::Request;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_engine::{
    AdoptionRefusal, EntityKind, Error, NotFound, StoreError, ValidationError,
};
use portcullis_signin::AuthError;
use serde_json::json;

use crate::error_format::ErrorFormat;

/// Why a request got no answer.
#[derive(Debug)]
pub enum ApiError {
    /// What the engine refused or failed at.
    Engine(Error),
    /// A reference inside a request body names nothing (the target of the route
    /// exists, or there is none): 422, unlike an unknown target (404).
    Reference(NotFound),
    /// The body is not JSON.
    MalformedJson(String),
    /// The body is JSON of the wrong shape: wrong types, unknown fields, bad values.
    InvalidBody(String),
    /// A query parameter or path segment is malformed.
    BadRequest(String),
    PayloadTooLarge,
    /// The request's URI is longer than [`crate::MAX_URI_BYTES`].
    UriTooLong,
    /// The request has more headers than [`crate::MAX_HEADERS`] or more header bytes
    /// than [`crate::MAX_HEADER_BYTES`].
    HeadersTooLarge,
    /// A rate limit (password-reset requests per account or per address) is reached.
    TooManyRequests,
    /// No bearer token, or one that is unknown or expired.
    Unauthenticated(&'static str),
    /// A valid token without the permission the route needs.
    Forbidden(String),
    RouteNotFound,
    /// A route's target that is not an engine entity (a sync source kind) is unknown.
    NotFound(String),
    MethodNotAllowed,
    /// `min_revision` was not reached within the wait bound.
    RevisionNotReached {
        wanted: u64,
        current: u64,
    },
    Timeout,
    /// An uploaded file (an import) has problems: 422 `invalid_file`, with every
    /// problem found listed under `error.problems`.
    InvalidFile {
        message: String,
        problems: serde_json::Value,
    },
    /// What a sign-in call refused (its engine errors are [`ApiError::Engine`]:
    /// convert with `From`).
    Auth(AuthError),
    /// No mail server is configured, or it did not take the message.
    MailUnavailable,
    /// No SMS sender is configured, or it did not take the message.
    SmsUnavailable,
    /// A bug or a failure of the runtime; details are in the log.
    Internal(String),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError::Engine(error)
    }
}

/// A sign-in error; one that is the engine's is an engine error like any other (the
/// same status, log line and `Retry-After`).
impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::Engine(error) => ApiError::Engine(error),
            other => ApiError::Auth(other),
        }
    }
}

impl From<NotFound> for ApiError {
    fn from(error: NotFound) -> ApiError {
        ApiError::Engine(Error::from(error))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text().to_lowercase())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text().to_lowercase())
    }
}

impl ApiError {
    /// The error of a write whose route names `targets` (kind and reference as the
    /// client wrote them): an unknown target is 404, any other unknown reference 422.
    pub(crate) fn from_write(error: Error, targets: &[(EntityKind, &str)]) -> ApiError {
        match error {
            Error::Validation(ValidationError::NotFound(not_found))
                if !targets.iter().any(|(kind, reference)| {
                    not_found.kind == *kind && not_found.reference == *reference
                }) =>
            {
                ApiError::Reference(not_found)
            }
            other => ApiError::Engine(other),
        }
    }

    /// The status and code of an error produced outside a handler (a timeout, a body
    /// limit from tower-http), when only the status is known.
    pub(crate) fn for_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => ApiError::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge,
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests,
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout,
            StatusCode::NOT_FOUND => ApiError::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::UNAUTHORIZED => {
                ApiError::Unauthenticated("missing or invalid bearer token")
            }
            StatusCode::FORBIDDEN => ApiError::Forbidden("forbidden".to_owned()),
            other if other.is_client_error() => ApiError::BadRequest(
                other
                    .canonical_reason()
                    .unwrap_or("bad request")
                    .to_lowercase(),
            ),
            _ => ApiError::Internal(format!("status {status}")),
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// What clients are told, for a route group that words errors its own way
    /// ([`crate::ErrorFormat`]).
    pub fn message(&self) -> String {
        self.parts().2
    }

    /// Status, stable code and the message clients see.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Engine(error) => engine_parts(error),
            ApiError::Reference(not_found) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_reference",
                not_found.to_string(),
            ),
            ApiError::MalformedJson(message) => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {message}"),
            ),
            ApiError::InvalidBody(message) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                message.clone(),
            ),
            ApiError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "bad_request", message.clone())
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server accepts".to_owned(),
            ),
            ApiError::UriTooLong => (
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!(
                    "the request's URI is longer than {} bytes",
                    crate::MAX_URI_BYTES
                ),
            ),
            ApiError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "the request has more than {} headers or {} bytes of them",
                    crate::MAX_HEADERS,
                    crate::MAX_HEADER_BYTES
                ),
            ),
            ApiError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many requests of this kind; try again later".to_owned(),
            ),
            ApiError::Unauthenticated(message) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                (*message).to_owned(),
            ),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message.clone()),
            ApiError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "route_not_found",
                "no such route".to_owned(),
            ),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message.clone()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method".to_owned(),
            ),
            ApiError::RevisionNotReached { wanted, current } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "revision_not_reached",
                format!(
                    "revision {wanted} was not reached in time (the snapshot is at {current}); retry later"
                ),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took longer than the server allows".to_owned(),
            ),
            ApiError::InvalidFile { message, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_file",
                message.clone(),
            ),
            ApiError::Auth(error) => auth_parts(error),
            ApiError::MailUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "mail_unavailable",
                "mail cannot be sent: no mail server is configured or it refused".to_owned(),
            ),
            ApiError::SmsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "sms_unavailable",
                "the code cannot be sent: no SMS sender is configured or it failed".to_owned(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log".to_owned(),
            ),
        }
    }
}

fn engine_parts(error: &Error) -> (StatusCode, &'static str, String) {
    let message = error.to_string();
    let conflict = StatusCode::CONFLICT;
    match error {
        Error::Validation(validation) => match validation {
            ValidationError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", message),
            ValidationError::Duplicate { .. }
            | ValidationError::DuplicateEmail(_)
            | ValidationError::DuplicateId { .. } => (conflict, "duplicate", message),
            ValidationError::LookAlike { .. } => (conflict, "look_alike", message),
            ValidationError::ReservedId { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "reserved_id", message)
            }
            ValidationError::Invalid { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            ValidationError::WeakPassword { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "weak_password", message)
            }
            ValidationError::GroupCycle { .. } => (conflict, "group_cycle", message),
            ValidationError::NodeCycle { .. } => (conflict, "node_cycle", message),
            ValidationError::NodeNotEmpty(_) => (conflict, "node_not_empty", message),
            ValidationError::RootNode => (conflict, "root_node", message),
            ValidationError::BuiltinRole(_) => (conflict, "builtin_role", message),
            ValidationError::RoleInUse { .. } => (conflict, "role_in_use", message),
            ValidationError::AmbiguousLogin { .. } => (conflict, "ambiguous_login", message),
            ValidationError::NotAMember { .. } => (StatusCode::NOT_FOUND, "not_found", message),
            ValidationError::GrantBeyondCaller { .. } => {
                (StatusCode::FORBIDDEN, "forbidden", message)
            }
            ValidationError::ActorRevoked(_) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", message)
            }
            ValidationError::VersionMismatch { .. } => {
                (StatusCode::PRECONDITION_FAILED, "version_mismatch", message)
            }
            ValidationError::Adoption(refusal) => match refusal {
                AdoptionRefusal::SourceNotAdoptable { .. } => (conflict, "not_adoptable", message),
                AdoptionRefusal::Privileged { .. } => (conflict, "privileged", message),
                AdoptionRefusal::Ambiguous { .. } => (conflict, "ambiguous_match", message),
                AdoptionRefusal::AlreadyLocal { .. } => (conflict, "already_local", message),
                AdoptionRefusal::NoSource(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
                }
            },
        },
        // Store details go to the log, not to clients.
        Error::Store(store) => match store {
            StoreError::Locked(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_locked",
                "the store is in use by another process".to_owned(),
            ),
            StoreError::Io(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_failure",
                "the write could not be stored; nothing changed; see the server log".to_owned(),
            ),
            StoreError::Open { .. } | StoreError::Corrupt { .. } | StoreError::Schema { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_failure",
                "the store cannot be read; see the server log".to_owned(),
            ),
        },
        Error::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down".to_owned(),
        ),
        // The log's details (its address) go to the server log, not to clients.
        Error::Cluster(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            "the cluster's change log cannot be reached; nothing changed; retry later".to_owned(),
        ),
    }
}

fn auth_parts(error: &AuthError) -> (StatusCode, &'static str, String) {
    let message = error.to_string();
    let conflict = StatusCode::CONFLICT;
    match error {
        AuthError::Engine(error) => engine_parts(error),
        AuthError::Denied(reason) => (StatusCode::UNAUTHORIZED, reason.code(), message),
        AuthError::CodeRequired => (StatusCode::UNAUTHORIZED, "code_required", message),
        AuthError::WeakPassword(_) => (StatusCode::UNPROCESSABLE_ENTITY, "weak_password", message),
        AuthError::NotLocal { .. } => (conflict, "not_local", message),
        AuthError::NoEmail(_) => (conflict, "no_email", message),
        AuthError::MfaForced => (conflict, "mfa_forced", message),
        AuthError::MfaRequiredByPolicy => (conflict, "mfa_required_by_policy", message),
        AuthError::NoPendingEnrolment => (conflict, "no_pending_enrolment", message),
        AuthError::InvalidCode => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_code", message),
        AuthError::InvalidResetToken => (StatusCode::BAD_REQUEST, "invalid_reset_token", message),
        AuthError::EmailDisabled => (conflict, "email_disabled", message),
        AuthError::Input { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
        AuthError::NoPhone(_) => (conflict, "no_phone", message),
        AuthError::TooManyCodes => (StatusCode::TOO_MANY_REQUESTS, "too_many_codes", message),
        AuthError::MethodNotAllowed(_) => (
            StatusCode::FORBIDDEN,
            "method_not_allowed_by_policy",
            message,
        ),
        AuthError::PasskeysDisabled => (conflict, "passkeys_disabled", message),
        AuthError::PasswordlessDisabled => {
            (StatusCode::FORBIDDEN, "passwordless_disabled", message)
        }
        AuthError::InvalidCeremony => (StatusCode::BAD_REQUEST, "invalid_ceremony", message),
        AuthError::PasskeyRefused(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "passkey_refused", message)
        }
        AuthError::PasskeyTaken => (conflict, "passkey_taken", message),
        AuthError::UnknownPasskey(_) => (StatusCode::NOT_FOUND, "not_found", message),
    }
}

/// The body of an error inside a larger answer (one failed check of a batch).
pub(crate) fn error_body(error: &ApiError) -> serde_json::Value {
    let (_, code, message) = error.parts();
    json!({"error": {"code": code, "message": message}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        match &self {
            ApiError::Engine(Error::Store(error)) => {
                tracing::error!(%error, "storage failure")
            }
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            _ if status.is_server_error() => tracing::warn!(code, %message, "request failed"),
            _ => tracing::debug!(code, %message, "request refused"),
        }
        let mut body = json!({"error": {"code": code, "message": message}});
        // Worth retrying soon: a node that has not applied a revision yet, or a
        // cluster whose log is away for the moment.
        let retry = matches!(
            self,
            ApiError::RevisionNotReached { .. } | ApiError::Engine(Error::Cluster(_))
        );
        if let ApiError::InvalidFile { problems, .. } = self {
            body["error"]["problems"] = problems;
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub(crate) async fn route_not_found(request: Request) -> Response {
    let answer = ErrorFormat::of(&request).render(ApiError::RouteNotFound);
    crate::extract::answer_after_body(request, answer).await
}

pub(crate) async fn method_not_allowed(request: Request) -> Response {
    let answer = ErrorFormat::of(&request).render(ApiError::MethodNotAllowed);
    crate::extract::answer_after_body(request, answer).await
}
