//! Error formats: how a group of routes words the errors the shared stack makes for
//! it — no or a refused token, a body over the limit, the request timeout, an
//! oversized head, no such route or method — so that a front-end with a wire format of
//! its own (SCIM's error JSON) runs behind every layer of the stack without a copy of
//! any.
//!
//! A format covers a scope, a path prefix: every request under it, routed or not, has
//! the stack's errors rendered by that format, and an error response of another media
//! type gets a body in that format (`error::fill_in_error_bodies`). The API's own
//! format (`{"error":{"code","message"}}`, `application/json`) covers every path no
//! other format claims. The format is chosen once per request, by the outermost
//! layer (`stack::envelope`), and read by the fallbacks from the request's extensions.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Renders an error of the stack as a response in a route group's own format.
type Render = Arc<dyn Fn(ApiError) -> Response + Send + Sync>;

/// How the routes under one path prefix answer the errors the stack makes for them.
/// Give it to each of those routes with [`crate::Route::errors`].
#[derive(Clone)]
pub struct ErrorFormat {
    /// Shared, so that choosing a request's format allocates nothing.
    scope: Arc<str>,
    media_type: &'static str,
    error_schema: &'static str,
    render: Render,
}

impl std::fmt::Debug for ErrorFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorFormat")
            .field("scope", &self.scope)
            .field("media_type", &self.media_type)
            .finish_non_exhaustive()
    }
}

impl ErrorFormat {
    /// The format of every request whose path is `scope` or under it (`/scim/v2`),
    /// whose JSON bodies, errors included, are of `media_type`; the OpenAPI document
    /// names `error_schema` (a schema the group's routes define, see
    /// [`crate::Route::defines`]) for its errors. `render` must answer with the error's
    /// status and a body of `media_type`.
    pub fn new(
        scope: impl Into<String>,
        media_type: &'static str,
        error_schema: &'static str,
        render: impl Fn(ApiError) -> Response + Send + Sync + 'static,
    ) -> ErrorFormat {
        let scope: String = scope.into();
        let scope: Arc<str> = scope.trim_end_matches('/').into();
        assert!(
            scope.starts_with('/'),
            "INVARIANT: an error format's scope is an absolute path, not `{scope}`"
        );
        ErrorFormat {
            scope,
            media_type,
            error_schema,
            render: Arc::new(render),
        }
    }

    /// The API's own format, for every path no other format claims.
    pub(crate) fn api() -> ErrorFormat {
        ErrorFormat {
            scope: "".into(),
            media_type: "application/json",
            error_schema: "Error",
            render: Arc::new(IntoResponse::into_response),
        }
    }

    pub(crate) fn media_type(&self) -> &'static str {
        self.media_type
    }

    pub(crate) fn error_schema(&self) -> &'static str {
        self.error_schema
    }

    /// Whether `path` is this format's scope or under it.
    fn covers(&self, path: &str) -> bool {
        path.strip_prefix(&*self.scope)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// `error` as this format answers it.
    pub(crate) fn render(&self, error: ApiError) -> Response {
        (self.render)(error)
    }

    /// The format chosen for `request` (the API's, outside a router).
    pub(crate) fn of(request: &Request) -> ErrorFormat {
        request
            .extensions()
            .get::<ErrorFormat>()
            .cloned()
            .unwrap_or_else(ErrorFormat::api)
    }
}

/// The formats of one router, the API's among them.
#[derive(Clone)]
pub(crate) struct ErrorFormats(Arc<[ErrorFormat]>);

impl ErrorFormats {
    /// The formats of `routes`. Panics, at startup, when two formats claim one scope
    /// or a route is not under its own format's scope: its errors would be worded in
    /// another format than its answers.
    pub(crate) fn of(routes: &[crate::Route]) -> ErrorFormats {
        let mut formats = vec![ErrorFormat::api()];
        for route in routes {
            let format = &route.errors;
            match formats.iter().find(|known| known.scope == format.scope) {
                Some(known) => assert!(
                    Arc::ptr_eq(&known.render, &format.render) || known.scope.is_empty(),
                    "INVARIANT: two error formats claim the scope `{}`",
                    format.scope
                ),
                None => formats.push(format.clone()),
            }
        }
        let formats = ErrorFormats(formats.into());
        for route in routes {
            assert_eq!(
                formats.for_path(&route.path).scope,
                route.errors.scope,
                "INVARIANT: {} {} is under another error format's scope than its own",
                route.method,
                route.path
            );
        }
        formats
    }

    /// The format of the longest scope that covers `path`.
    pub(crate) fn for_path(&self, path: &str) -> &ErrorFormat {
        self.0
            .iter()
            .filter(|format| format.covers(path))
            .max_by_key(|format| format.scope.len())
            .expect("INVARIANT: the API's format covers every path")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_whole_segments() {
        let scim = ErrorFormat::new("/scim/v2/", "application/scim+json", "E", |e| {
            e.into_response()
        });
        assert!(scim.covers("/scim/v2"));
        assert!(scim.covers("/scim/v2/Users"));
        assert!(!scim.covers("/scim/v2x"));
        assert!(!scim.covers("/api/v1/users"));
        assert!(ErrorFormat::api().covers("/anything"));
        let formats = ErrorFormats(vec![ErrorFormat::api(), scim].into());
        assert_eq!(&*formats.for_path("/scim/v2/Bulk").scope, "/scim/v2");
        assert_eq!(&*formats.for_path("/scim/v2x").scope, "");
    }
}
