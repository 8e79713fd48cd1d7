//! The one place where errors become SCIM error responses (RFC 7644 §3.12): a status,
//! a `scimType` where the RFC defines one, and a short `detail`, as
//! `application/scim+json`. Handlers return `Result<_, ScimError>` and never pick a
//! status; the refusals of the HTTP stack in front of them (token, limits, timeout, no
//! such route) are worded here too ([`format`]).
//!
//! Engine errors are matched exhaustively (no `_` arm): a new engine error variant
//! does not compile here until someone decides its status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_engine::{Error, StoreError, ValidationError};
use serde_json::{Value, json};

use portcullis_http::{ApiError, ErrorFormat};

use crate::filter::FilterError;
use crate::routes::ROOT;
use crate::schema::ERROR;

/// The `scimType` of a 400 (or 409) error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
        }
    }
}

/// Why a SCIM request got no resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimError {
    /// 400 with a `scimType`.
    BadRequest {
        scim_type: ScimType,
        detail: String,
    },
    /// 409 `uniqueness`: a userName, email or displayName already taken.
    Conflict(String),
    /// 409 without a type: a bulk operation whose `bulkId` reference cannot be resolved.
    UnresolvedReference(String),
    Unauthorized(&'static str),
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed,
    /// `If-Match` named another version.
    PreconditionFailed,
    PayloadTooLarge(String),
    /// An endpoint the RFC defines that is not served (`/Me`).
    NotImplemented(String),
    /// The engine is shutting down.
    Unavailable,
    /// A refusal of the HTTP stack SCIM has no error of its own for (the request
    /// timeout, an oversized head): its status and message.
    Refused {
        status: StatusCode,
        detail: String,
    },
    /// A failure of the store or a bug; details are in the log.
    Internal(String),
}

impl ScimError {
    pub(crate) fn bad(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
        ScimError::BadRequest {
            scim_type,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::bad(ScimType::InvalidValue, detail)
    }

    pub(crate) fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::bad(ScimType::InvalidSyntax, detail)
    }

    pub(crate) fn invalid_filter(error: &FilterError) -> ScimError {
        ScimError::bad(ScimType::InvalidFilter, format!("invalid filter: {error}"))
    }

    pub(crate) fn invalid_path(path: &str, error: &FilterError) -> ScimError {
        ScimError::bad(
            ScimType::InvalidPath,
            format!("invalid path `{path}`: {error}"),
        )
    }

    pub(crate) fn not_found(kind: &str, id: &str) -> ScimError {
        ScimError::NotFound(format!("no {kind} with id `{id}`"))
    }

    /// The error of an engine write. A reference the engine cannot resolve is in the
    /// request body (targets were resolved before writing), so it is `invalidValue`.
    pub(crate) fn from_engine(error: Error) -> ScimError {
        match error {
            Error::Validation(error) => match error {
                ValidationError::Duplicate { .. }
                | ValidationError::DuplicateEmail(_)
                | ValidationError::DuplicateId { .. }
                | ValidationError::LookAlike { .. }
                | ValidationError::AmbiguousLogin { .. } => ScimError::Conflict(error.to_string()),
                ValidationError::GrantBeyondCaller { .. } | ValidationError::ActorRevoked(_) => {
                    ScimError::Forbidden(error.to_string())
                }
                ValidationError::NotFound(_)
                | ValidationError::ReservedId { .. }
                | ValidationError::Invalid { .. }
                | ValidationError::WeakPassword { .. }
                | ValidationError::GroupCycle { .. }
                | ValidationError::NodeCycle { .. }
                | ValidationError::NodeNotEmpty(_)
                | ValidationError::RootNode
                | ValidationError::BuiltinRole(_)
                | ValidationError::RoleInUse { .. }
                | ValidationError::NotAMember { .. } => ScimError::invalid_value(error.to_string()),
                // An expectation the service wrote (an `If-Match`, or the version an
                // edit was computed from) no longer holds.
                ValidationError::VersionMismatch { .. } => ScimError::PreconditionFailed,
                // A refused adoption is a conflict on the resource's identity: the
                // detail says why (privileged, ambiguous, source not adoptable).
                ValidationError::Adoption(_) => ScimError::Conflict(error.to_string()),
            },
            Error::Store(error) => {
                let detail = match &error {
                    StoreError::Open { .. }
                    | StoreError::Locked(_)
                    | StoreError::Io(_)
                    | StoreError::Corrupt { .. }
                    | StoreError::Schema { .. } => error.to_string(),
                };
                ScimError::Internal(detail)
            }
            Error::Closed | Error::Cluster(_) => ScimError::Unavailable,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ScimError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ScimError::Conflict(_) | ScimError::UnresolvedReference(_) => StatusCode::CONFLICT,
            ScimError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ScimError::Forbidden(_) => StatusCode::FORBIDDEN,
            ScimError::NotFound(_) => StatusCode::NOT_FOUND,
            ScimError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ScimError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ScimError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ScimError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ScimError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ScimError::Refused { status, .. } => *status,
            ScimError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn scim_type(&self) -> Option<ScimType> {
        match self {
            ScimError::BadRequest { scim_type, .. } => Some(*scim_type),
            ScimError::Conflict(_) => Some(ScimType::Uniqueness),
            ScimError::UnresolvedReference(_)
            | ScimError::Unauthorized(_)
            | ScimError::Forbidden(_)
            | ScimError::NotFound(_)
            | ScimError::MethodNotAllowed
            | ScimError::PreconditionFailed
            | ScimError::PayloadTooLarge(_)
            | ScimError::NotImplemented(_)
            | ScimError::Unavailable
            | ScimError::Refused { .. }
            | ScimError::Internal(_) => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            ScimError::BadRequest { detail, .. }
            | ScimError::Conflict(detail)
            | ScimError::UnresolvedReference(detail)
            | ScimError::Forbidden(detail)
            | ScimError::NotFound(detail)
            | ScimError::PayloadTooLarge(detail)
            | ScimError::NotImplemented(detail)
            | ScimError::Refused { detail, .. } => detail.clone(),
            ScimError::Unauthorized(detail) => (*detail).to_owned(),
            ScimError::MethodNotAllowed => "method not allowed on this endpoint".to_owned(),
            ScimError::PreconditionFailed => {
                "the resource changed: its version no longer matches `If-Match`".to_owned()
            }
            ScimError::Unavailable => "the service is shutting down".to_owned(),
            ScimError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// The SCIM error body (also a bulk operation's `response`).
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status().as_u16().to_string(),
            "detail": self.detail(),
        });
        if let Some(scim_type) = self.scim_type() {
            body["scimType"] = Value::String(scim_type.as_str().to_owned());
        }
        body
    }
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail())
    }
}

impl std::error::Error for ScimError {}

pub(crate) const SCIM_JSON: &str = "application/scim+json";

/// The 413 of a body over `maxPayloadSize`.
pub(crate) fn too_large(max_payload_size: usize) -> ScimError {
    ScimError::PayloadTooLarge(format!(
        "the body is larger than {max_payload_size} bytes (maxPayloadSize)"
    ))
}

/// How the HTTP stack words its refusals on SCIM's routes (and on every path under
/// [`ROOT`]): as SCIM errors, with SCIM's challenge on a 401.
pub(crate) fn format(max_payload_size: usize) -> ErrorFormat {
    ErrorFormat::new(ROOT, SCIM_JSON, "ScimError", move |error| {
        ScimError::from_stack(error, max_payload_size).into_response()
    })
}

impl ScimError {
    fn from_stack(error: ApiError, max_payload_size: usize) -> ScimError {
        match error {
            ApiError::Unauthenticated(detail) => ScimError::Unauthorized(detail),
            ApiError::Forbidden(detail) => ScimError::Forbidden(detail),
            ApiError::PayloadTooLarge => too_large(max_payload_size),
            ApiError::RouteNotFound => ScimError::NotFound("no such endpoint".to_owned()),
            ApiError::MethodNotAllowed => ScimError::MethodNotAllowed,
            ApiError::BadRequest(detail) => ScimError::invalid_value(detail),
            ApiError::Internal(detail) => ScimError::Internal(detail),
            // The rest keep the stack's status and message: none has a SCIM error of
            // its own.
            other => ScimError::Refused {
                status: other.status(),
                detail: other.message(),
            },
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        if let ScimError::Internal(detail) = &self {
            tracing::error!(%detail, "scim request failed");
        }
        let status = self.status();
        let mut response = (status, self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is left unread, so the connection cannot serve
            // another request: say so, or a keep-alive client reuses it and its next
            // request fails.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis-scim\""),
            );
        }
        response
    }
}
