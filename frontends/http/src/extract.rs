//! Request extractors whose rejections are [`ApiError`]s, and the parsing of query
//! parameters shared by the list routes.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use portcullis_engine::Time;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Any content type is read as JSON (curl's `-d` sends a form type);
/// syntax errors are 400, a wrong shape 422, a body over the limit 413.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                        ApiError::PayloadTooLarge
                    }
                    other => ApiError::BadRequest(other.body_text().to_lowercase()),
                })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the body is empty".to_owned()));
    }
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        // A shape error can be found before a syntax error further on: the body is
        // malformed if it does not parse at all.
        serde_json::error::Category::Data => {
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::InvalidBody(error.to_string()),
                Err(syntax) => ApiError::MalformedJson(syntax.to_string()),
            }
        }
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ApiError::MalformedJson(error.to_string()),
    })
}

/// The most of an oversized body read (and dropped) before answering 413.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// A request's declared body length, if it declares one that parses.
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// `response`, once the request's body is read and dropped (bounded by
/// `DRAIN_LIMIT` and 5 s): answering while the client still sends makes it see a
/// reset instead of the answer. A body too large to drain closes the connection.
pub(crate) async fn answer_after_body(
    request: Request,
    response: axum::response::Response,
) -> axum::response::Response {
    use futures_util::StreamExt;
    match declared_length(request.headers()) {
        Some(length) if length <= DRAIN_LIMIT => {
            let mut body = request.into_body().into_data_stream();
            let drain = async { while let Some(Ok(_)) = body.next().await {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
            response
        }
        _ => close_if_unread(has_body(request.headers()), response),
    }
}

/// Whether a request carries a body: a declared non-zero length, or a chunked one.
pub(crate) fn has_body(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header;
    headers.contains_key(header::TRANSFER_ENCODING)
        || declared_length(headers).is_some_and(|length| length > 0)
}

/// For an answer given without reading the request's body (refused by authorization,
/// or no such route): the server drops such a connection after answering, so say
/// `Connection: close`, or a keep-alive client sends its next request on a connection
/// about to close and sees it fail.
pub(crate) fn close_if_unread(
    request_has_body: bool,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if request_has_body {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Path parameters, with rejections as [`ApiError`].
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// Every query parameter in order, with rejections as [`ApiError`].
pub(crate) struct RawQuery(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for RawQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        Ok(RawQuery(pairs))
    }
}

/// The query parameters a route understands, parsed; the rest are field filters
/// (admin lists) or refused (everything else).
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub offset: u64,
    pub limit: usize,
    pub at: Option<Time>,
    pub min_revision: Option<u64>,
    pub search: Option<String>,
    pub node: Option<String>,
    pub since: Option<u64>,
    /// Parameters not named above, in order.
    pub others: Vec<(String, String)>,
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "query parameter `{name}`: `{value}` is not a non-negative integer"
        ))
    })
}

impl Params {
    /// [`Params::parse`] with the server's page sizes (`default_page_size`,
    /// `max_page_size`).
    pub(crate) fn paged(
        state: &crate::AppState,
        query: Vec<(String, String)>,
        known: &[&str],
        keep_others: bool,
    ) -> Result<Params, ApiError> {
        let settings = state.settings();
        Params::parse(
            query,
            known,
            keep_others,
            settings.default_page_size,
            settings.max_page_size,
        )
    }

    /// `since` (0 when absent) and `limit` of a page of a log (the operation log, the
    /// sign-in events): the only parameters such a route takes.
    pub(crate) fn log_page(
        state: &crate::AppState,
        query: Vec<(String, String)>,
    ) -> Result<(u64, usize), ApiError> {
        let params = Params::paged(state, query, &["since", "limit"], false)?;
        Ok((params.since.unwrap_or(0), params.limit))
    }

    /// Parses `query`, taking only the parameters in `known`. With `keep_others`, the
    /// rest are kept in `others`; without, an unknown parameter is a 400.
    pub(crate) fn parse(
        query: Vec<(String, String)>,
        known: &[&str],
        keep_others: bool,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<Params, ApiError> {
        let mut params = Params {
            limit: default_limit,
            ..Params::default()
        };
        for (name, value) in query {
            if !known.contains(&name.as_str()) {
                if keep_others {
                    params.others.push((name, value));
                    continue;
                }
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{name}`"
                )));
            }
            match name.as_str() {
                "offset" => params.offset = number(&name, &value)?,
                "limit" => {
                    let limit: usize = number(&name, &value)?;
                    if limit == 0 || limit > max_limit {
                        return Err(ApiError::BadRequest(format!(
                            "query parameter `limit`: `{value}` is not between 1 and {max_limit}"
                        )));
                    }
                    params.limit = limit;
                }
                "at" => {
                    let at = value.parse::<Time>().map_err(|error| {
                        ApiError::BadRequest(format!("query parameter `at`: {error}"))
                    })?;
                    params.at = Some(at);
                }
                "min_revision" => params.min_revision = Some(number(&name, &value)?),
                "since" => params.since = Some(number(&name, &value)?),
                "search" => params.search = Some(value),
                "node" => params.node = Some(value),
                _ => params.others.push((name, value)),
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn limits_are_bounded() {
        let known = ["limit", "offset"];
        assert!(Params::parse(query(&[("limit", "0")]), &known, false, 10, 100).is_err());
        assert!(Params::parse(query(&[("limit", "101")]), &known, false, 10, 100).is_err());
        assert!(Params::parse(query(&[("limit", "-1")]), &known, false, 10, 100).is_err());
        let params = Params::parse(
            query(&[("limit", "100"), ("offset", "3")]),
            &known,
            false,
            10,
            100,
        )
        .unwrap();
        assert_eq!((params.limit, params.offset), (100, 3));
    }

    #[test]
    fn unknown_parameters_are_refused_or_kept() {
        assert!(Params::parse(query(&[("bogus", "1")]), &["limit"], false, 10, 100).is_err());
        let params =
            Params::parse(query(&[("active", "true")]), &["limit"], true, 10, 100).unwrap();
        assert_eq!(params.others, query(&[("active", "true")]));
    }

    #[test]
    fn json_errors_are_classified() {
        assert!(matches!(
            parse_json::<serde_json::Value>(b"{"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<serde_json::Value>(b""),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<Vec<u8>>(b"{}"),
            Err(ApiError::InvalidBody(_))
        ));
    }
}
