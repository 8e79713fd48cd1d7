//! The HTTP side: routes, request parsing and responses. Handlers parse, hand the work
//! to [`Service`](crate::service::Service) on a blocking thread, and turn its answer
//! into a response with `ETag`, `Location` and `X-Portcullis-Revision`.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use portcullis_engine::Actor;

use crate::error::{SCIM_JSON, ScimError};
use crate::query::Projection;
use crate::schema::{self, LIST_RESPONSE, ResourceKind};
use crate::service::{Answer, Context, ListRequest, Service};
use crate::{Scim, bulk};

/// The header carrying the revision a response reflects: a check sent with
/// `min_revision` set to it sees the write.
pub const REVISION_HEADER: &str = "x-portcullis-revision";

/// The largest oversized body read (and dropped) before answering 413; larger ones
/// are answered at once and the connection closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads and drops a body (for up to 5 s): a server that answers and closes while
/// the client is still sending makes the client see a reset instead of the answer.
async fn drain(mut body: axum::body::Body) {
    use axum::body::HttpBody;
    let read = async {
        while let Some(Ok(_)) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {}
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
}

/// A JSON body, read up to `maxPayloadSize`.
pub(crate) struct JsonBody(pub Value);

impl FromRequest<Scim> for JsonBody {
    type Rejection = ScimError;

    async fn from_request(request: Request, scim: &Scim) -> Result<JsonBody, ScimError> {
        let limit = scim.service.settings.max_payload_size;
        let too_large = || {
            ScimError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes (maxPayloadSize)"
            ))
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(length) = declared.filter(|length| *length > limit) {
            if length <= DRAIN_LIMIT {
                drain(request.into_body()).await;
            }
            return Err(too_large());
        }
        let bytes: Bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| too_large())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ScimError::invalid_syntax("the body is empty"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| {
                ScimError::invalid_syntax(format!("the body is not valid JSON: {error}"))
            })
    }
}

/// The absolute URL of the SCIM root as this request reached it: the configured one,
/// else the scheme (`X-Forwarded-Proto`), `Host` and the prefix the router is nested
/// under.
fn base_url(scim: &Scim, headers: &HeaderMap, original: &Uri, uri: &Uri) -> String {
    if let Some(base) = &scim.service.settings.base_url {
        return base.trim_end_matches('/').to_owned();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or_default().trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto").unwrap_or_else(|| "http".to_owned());
    let host = header("host")
        .or_else(|| original.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    let prefix = original
        .path()
        .strip_suffix(uri.path())
        .unwrap_or_default()
        .trim_end_matches('/');
    format!("{scheme}://{host}{prefix}")
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Who asks and from where, with the conditional headers.
pub(crate) struct Caller {
    context: Context,
    if_match: Option<String>,
    if_none_match: Option<String>,
}

impl FromRequestParts<Scim> for Caller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, scim: &Scim) -> Result<Caller, ScimError> {
        let actor = parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or(ScimError::Unauthorized("a bearer token is required"))?;
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        Ok(Caller {
            context: Context {
                actor,
                base: base_url(scim, &parts.headers, &original, &parts.uri),
            },
            if_match: header_text(&parts.headers, header::IF_MATCH),
            if_none_match: header_text(&parts.headers, header::IF_NONE_MATCH),
        })
    }
}

/// The SCIM root's URL, for the discovery documents (which need no actor).
pub(crate) struct Base(String);

impl FromRequestParts<Scim> for Base {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, scim: &Scim) -> Result<Base, ScimError> {
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        Ok(Base(base_url(scim, &parts.headers, &original, &parts.uri)))
    }
}

fn respond(answer: Answer) -> Response {
    let mut response = match answer.body {
        Some(body) => (
            answer.status,
            serde_json::to_vec(&body).expect("INVARIANT: a JSON value serializes"),
        )
            .into_response(),
        None => answer.status.into_response(),
    };
    let headers = response.headers_mut();
    if answer.status != StatusCode::NO_CONTENT && answer.status != StatusCode::NOT_MODIFIED {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    }
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    if let Some(version) = &answer.version {
        set(header::ETAG, version);
    }
    if let Some(location) = &answer.location {
        set(header::LOCATION, location);
    }
    set(
        HeaderName::from_static(REVISION_HEADER),
        &answer.revision.to_string(),
    );
    response
}

/// Runs `work` on a blocking thread (engine writes wait for their commit).
async fn blocking(
    scim: &Scim,
    work: impl FnOnce(&Service) -> Result<Answer, ScimError> + Send + 'static,
) -> Response {
    let scim = scim.clone();
    let result = tokio::task::spawn_blocking(move || work(&scim.service))
        .await
        .unwrap_or_else(|error| {
            Err(ScimError::Internal(format!(
                "the request task failed: {error}"
            )))
        });
    match result {
        Ok(answer) => respond(answer),
        Err(error) => error.into_response(),
    }
}

fn kind_of(resource: &str) -> Result<ResourceKind, ScimError> {
    match resource {
        "Users" => Ok(ResourceKind::User),
        "Groups" => Ok(ResourceKind::Group),
        "Me" => Err(ScimError::NotImplemented(
            "`/Me` is not served: SCIM tokens act for no user".to_owned(),
        )),
        other => Err(ScimError::NotFound(format!("no endpoint `/{other}`"))),
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(query: Params) -> Result<Vec<(String, String)>, ScimError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|rejection| ScimError::invalid_value(rejection.body_text().to_lowercase()))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn projection(pairs: &[(String, String)]) -> Result<Projection, ScimError> {
    Projection::parse(
        param(pairs, "attributes"),
        param(pairs, "excludedAttributes"),
    )
}

fn integer(name: &str, value: Option<&str>) -> Result<Option<i64>, ScimError> {
    value
        .map(|text| {
            text.trim().parse::<i64>().map_err(|_| {
                ScimError::invalid_value(format!("`{name}` must be an integer, not `{text}`"))
            })
        })
        .transpose()
}

fn list_request(pairs: &[(String, String)]) -> Result<ListRequest, ScimError> {
    Ok(ListRequest {
        filter: param(pairs, "filter").map(str::to_owned),
        sort_by: param(pairs, "sortBy").map(str::to_owned),
        sort_order: param(pairs, "sortOrder").map(str::to_owned),
        start_index: integer("startIndex", param(pairs, "startIndex"))?,
        count: integer("count", param(pairs, "count"))?,
        projection: projection(pairs)?,
    })
}

/// The members of a SearchRequest (RFC 7644 §3.4.3); matched ignoring case.
const SEARCH_MEMBERS: [&str; 8] = [
    "schemas",
    "attributes",
    "excludedAttributes",
    "filter",
    "sortBy",
    "sortOrder",
    "startIndex",
    "count",
];
const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A SearchRequest body (RFC 7644 §3.4.3). `schemas` may be left out (lenient
/// clients), but when present it must name the SearchRequest schema.
fn search_request(body: &Value) -> Result<ListRequest, ScimError> {
    let Value::Object(fields) = body else {
        return Err(ScimError::invalid_syntax(
            "the body must be a SearchRequest object",
        ));
    };
    // Unknown members and a `schemas` that names something else are refused, not
    // ignored: a client that misspells `filter` must not get every resource back.
    if let Some((key, _)) = fields
        .iter()
        .find(|(key, _)| !SEARCH_MEMBERS.iter().any(|m| key.eq_ignore_ascii_case(m)))
    {
        return Err(ScimError::invalid_syntax(format!(
            "`{key}` is not a member of a SearchRequest"
        )));
    }
    if let Some((_, schemas)) = fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("schemas"))
    {
        let names_search = schemas.as_array().is_some_and(|list| {
            list.iter().all(Value::is_string)
                && list
                    .iter()
                    .any(|s| s.as_str() == Some(SEARCH_REQUEST_SCHEMA))
        });
        if !names_search {
            return Err(ScimError::invalid_syntax(format!(
                "`schemas` must list `{SEARCH_REQUEST_SCHEMA}`"
            )));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    };
    let text = |name: &str| -> Result<Option<String>, ScimError> {
        match get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ScimError::invalid_syntax(format!(
                "`{name}` must be a string"
            ))),
        }
    };
    let number = |name: &str| -> Result<Option<i64>, ScimError> {
        match get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("`{name}` must be an integer"))),
            Some(Value::String(text)) => integer(name, Some(text)),
            Some(_) => Err(ScimError::invalid_syntax(format!(
                "`{name}` must be an integer"
            ))),
        }
    };
    let names = |name: &str| -> Result<Vec<String>, ScimError> {
        match get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(vec![text.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        ScimError::invalid_syntax(format!("`{name}` must list strings"))
                    })
                })
                .collect(),
            Some(_) => Err(ScimError::invalid_syntax(format!(
                "`{name}` must list strings"
            ))),
        }
    };
    Ok(ListRequest {
        filter: text("filter")?,
        sort_by: text("sortBy")?,
        sort_order: text("sortOrder")?,
        start_index: number("startIndex")?,
        count: number("count")?,
        projection: Projection::from_lists(names("attributes")?, names("excludedAttributes")?)?,
    })
}

pub(crate) async fn list(
    State(scim): State<Scim>,
    caller: Caller,
    Path(resource): Path<String>,
    query: Params,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let request = list_request(&params(query)?)?;
    let context = caller.context;
    Ok(blocking(&scim, move |service| {
        service.list(&[kind], &request, &context)
    })
    .await)
}

pub(crate) async fn search(
    State(scim): State<Scim>,
    caller: Caller,
    Path(resource): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let request = search_request(&body)?;
    let context = caller.context;
    Ok(blocking(&scim, move |service| {
        service.list(&[kind], &request, &context)
    })
    .await)
}

pub(crate) async fn search_all(
    State(scim): State<Scim>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ScimError> {
    let request = search_request(&body)?;
    let context = caller.context;
    Ok(blocking(&scim, move |service| {
        service.list(
            &[ResourceKind::User, ResourceKind::Group],
            &request,
            &context,
        )
    })
    .await)
}

pub(crate) async fn create(
    State(scim): State<Scim>,
    caller: Caller,
    Path(resource): Path<String>,
    query: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let projection = projection(&params(query)?)?;
    let context = caller.context;
    Ok(blocking(&scim, move |service| {
        service.create(kind, body, &context, &projection)
    })
    .await)
}

pub(crate) async fn get(
    State(scim): State<Scim>,
    caller: Caller,
    Path((resource, id)): Path<(String, String)>,
    query: Params,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let projection = projection(&params(query)?)?;
    let Caller {
        context,
        if_none_match,
        ..
    } = caller;
    Ok(blocking(&scim, move |service| {
        service.get(kind, &id, &context, &projection, if_none_match.as_deref())
    })
    .await)
}

pub(crate) async fn replace(
    State(scim): State<Scim>,
    caller: Caller,
    Path((resource, id)): Path<(String, String)>,
    query: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let projection = projection(&params(query)?)?;
    let Caller {
        context, if_match, ..
    } = caller;
    Ok(blocking(&scim, move |service| {
        service.replace(kind, &id, body, if_match, &context, &projection)
    })
    .await)
}

pub(crate) async fn patch(
    State(scim): State<Scim>,
    caller: Caller,
    Path((resource, id)): Path<(String, String)>,
    query: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let projection = projection(&params(query)?)?;
    let Caller {
        context, if_match, ..
    } = caller;
    Ok(blocking(&scim, move |service| {
        service.patch(kind, &id, &body, if_match, &context, &projection)
    })
    .await)
}

pub(crate) async fn delete(
    State(scim): State<Scim>,
    caller: Caller,
    Path((resource, id)): Path<(String, String)>,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let Caller {
        context, if_match, ..
    } = caller;
    Ok(blocking(&scim, move |service| {
        service.delete(kind, &id, if_match, &context)
    })
    .await)
}

pub(crate) async fn bulk(
    State(scim): State<Scim>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Response {
    let context = caller.context;
    blocking(&scim, move |service| bulk::run(service, &body, &context)).await
}

fn document(body: Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    })
}

pub(crate) async fn service_provider_config(
    State(scim): State<Scim>,
    Base(base): Base,
) -> Response {
    document(schema::service_provider_config(
        &base,
        &scim.service.settings,
    ))
}

pub(crate) async fn resource_types(Base(base): Base) -> Response {
    document(list_of(schema::resource_types(&base)))
}

pub(crate) async fn resource_type(
    Path(id): Path<String>,
    Base(base): Base,
) -> Result<Response, ScimError> {
    schema::resource_types(&base)
        .into_iter()
        .find(|r| r["id"] == id.as_str())
        .map(document)
        .ok_or_else(|| ScimError::NotFound(format!("no resource type `{id}`")))
}

pub(crate) async fn schemas(Base(base): Base) -> Response {
    document(list_of(schema::schemas(&base)))
}

pub(crate) async fn schema(
    Path(id): Path<String>,
    Base(base): Base,
) -> Result<Response, ScimError> {
    schema::schemas(&base)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(document)
        .ok_or_else(|| ScimError::NotFound(format!("no schema `{id}`")))
}

pub(crate) async fn not_found(request: Request) -> Response {
    let error = ScimError::NotFound(format!("no endpoint `{}`", request.uri().path()));
    answer_after_body(request, error.into_response()).await
}

pub(crate) async fn method_not_allowed(request: Request) -> Response {
    answer_after_body(request, ScimError::MethodNotAllowed.into_response()).await
}

/// `response`, once the request's body is read and dropped (bounded by
/// [`DRAIN_LIMIT`] and 5 s): answering while the client still sends makes it see a
/// reset instead of the answer. A body too large to drain closes the connection.
pub(crate) async fn answer_after_body(request: Request, response: Response) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length <= DRAIN_LIMIT => {
            drain(request.into_body()).await;
            response
        }
        _ => close_if_unread(has_body(&request), response),
    }
}

/// Whether a request carries a body: a declared non-zero length, or a chunked one.
pub(crate) fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .is_some_and(|length| length > 0)
}

/// For an answer given without reading the request's body (refused by authorization,
/// or no such endpoint): the server drops such a connection after answering, so say
/// `Connection: close`, or a keep-alive client sends its next request on a connection
/// about to close and sees it fail.
pub(crate) fn close_if_unread(request_has_body: bool, mut response: Response) -> Response {
    if request_has_body {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
