//! CSRF protection of the console: every state change (any method but GET and HEAD)
//! under `/ui/` carries a token the stack checks before the handler runs.
//!
//! With a session, the token is the session's own synchronizer token (made with it,
//! kept on the server, put in every form the session is shown). Before a session
//! exists (the sign-in form), it is a double-submit token: a random cookie the sign-in
//! page sets, repeated in its form. The token travels in the form field `_csrf`, or in
//! the `x-csrf-token` header (htmx), or for file uploads (`multipart/form-data`, whose
//! body the stack does not parse) in the query parameter `_csrf`. Session cookies are
//! `SameSite=Strict` besides, so a cross-site form does not carry them at all.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header;
use subtle::ConstantTimeEq;

use super::Viewer;
use crate::error::ApiError;

/// The form field (and query parameter) of the token.
pub const FIELD: &str = "_csrf";
/// The header of the token.
pub const HEADER: &str = "x-csrf-token";
/// The cookie of the sign-in form's double-submit token.
pub(crate) const COOKIE: &str = "pc_csrf";

fn refused() -> ApiError {
    ApiError::Forbidden(
        "the form's CSRF token is missing or wrong: reload the page and try again".to_owned(),
    )
}

fn equal(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of `name` in an `application/x-www-form-urlencoded` text.
fn form_value(text: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(text)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Checks the CSRF token of a state-changing console request, answering the request
/// to pass on (its body read and put back) or a 403.
pub(crate) async fn verify(request: Request) -> Result<Request, ApiError> {
    let expected = match request.extensions().get::<Viewer>() {
        Some(viewer) => viewer.csrf().to_owned(),
        None => super::cookie(request.headers(), COOKIE)
            .ok_or_else(refused)?
            .to_owned(),
    };
    if let Some(token) = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
    {
        return if equal(token, &expected) {
            Ok(request)
        } else {
            Err(refused())
        };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let query = request.uri().query().unwrap_or("");
        let token = form_value(query.as_bytes(), FIELD).unwrap_or_default();
        return if equal(&token, &expected) {
            Ok(request)
        } else {
            Err(refused())
        };
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    // The stack has limited the body already; a body over the limit is refused here.
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let token = form_value(&bytes, FIELD).unwrap_or_default();
    if !equal(&token, &expected) {
        return Err(refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(equal("abc", "abc"));
        assert!(!equal("abc", "abd"));
        assert!(!equal("ab", "abc"));
        assert!(!equal("", ""));
        assert_eq!(
            form_value(b"a=1&_csrf=x%2By", FIELD).as_deref(),
            Some("x+y")
        );
        assert_eq!(form_value(b"a=1", FIELD), None);
    }
}
