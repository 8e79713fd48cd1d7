//! The HTTP side: SCIM's routes in the HTTP stack's route table, request parsing and
//! responses. Handlers parse, hand the work to [`Service`] on a blocking thread, and
//! turn its answer into a response with `ETag`, `Location` and `X-Portcullis-Revision`.
//!
//! Authentication, body limits, the request timeout, metrics and the answers to no
//! such route or method are the stack's (`portcullis-http`), as for every other route:
//! each SCIM route needs a token whose roles carry `scim.provision`, takes bodies up to
//! `maxPayloadSize`, and has the stack's refusals worded as SCIM errors
//! ([`crate::error::format`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, RequestPartsExt};
use portcullis_engine::PERMISSION_SCIM;
use portcullis_http::{Access, AppState, ErrorFormat, Route};
use serde_json::{Value, json};

use crate::error::{SCIM_JSON, ScimError};
use crate::query::Projection;
use crate::schema::{self, LIST_RESPONSE, ResourceKind};
use crate::service::{Answer, Context, ListRequest, Service};
use crate::{ScimSettings, bulk};

/// The header carrying the revision a response reflects: a check sent with
/// `min_revision` set to it sees the write.
pub const REVISION_HEADER: &str = "x-portcullis-revision";

/// The header naming the source a write took its resource over from (`local`,
/// `import`, …), on the answer of the write that adopted it.
pub const ADOPTED_FROM_HEADER: &str = "x-portcullis-adopted-from";

/// The path of the SCIM root: every SCIM route is under it.
pub const ROOT: &str = "/scim/v2";

/// The query parameters of a list (RFC 7644 §3.4.2).
const LIST_QUERY: &[&str] = &[
    "filter",
    "sortBy",
    "sortOrder",
    "startIndex",
    "count",
    "attributes",
    "excludedAttributes",
];
/// The query parameters of a single resource's answer (RFC 7644 §3.9).
const PROJECTION_QUERY: &[&str] = &["attributes", "excludedAttributes"];

/// The SCIM service provider's routes, for [`portcullis_http::router_with`]: served
/// under [`ROOT`] over the engine of the HTTP state, authorized, limited, timed,
/// counted and documented by the HTTP stack like its own routes.
pub fn routes(settings: ScimSettings) -> Vec<Route> {
    let group = Group {
        errors: crate::error::format(settings.max_payload_size),
        settings: Arc::new(settings),
    };
    let ok = StatusCode::OK;
    vec![
        group
            .route(
                Method::GET,
                "/ServiceProviderConfig",
                "The service provider's configuration (RFC 7643 §5)",
                service_provider_config,
            )
            .scim_answers(ok, "ScimServiceProviderConfig"),
        group
            .route(
                Method::GET,
                "/ResourceTypes",
                "The resource types served",
                resource_types,
            )
            .scim_answers(ok, "ScimListResponse"),
        group
            .route(
                Method::GET,
                "/ResourceTypes/{id}",
                "One resource type",
                resource_type,
            )
            .parameter("id", "`User` or `Group`")
            .scim_answers(ok, "ScimResourceType"),
        group
            .route(
                Method::GET,
                "/Schemas",
                "The schemas of what is kept",
                schemas,
            )
            .scim_answers(ok, "ScimListResponse"),
        group
            .route(Method::GET, "/Schemas/{id}", "One schema", schema)
            .parameter("id", "The schema's URN")
            .scim_answers(ok, "ScimSchema"),
        group
            .route(
                Method::POST,
                "/Bulk",
                "Many operations, with `bulkId` references (RFC 7644 §3.7)",
                bulk,
            )
            .scim_body("ScimBulkRequest")
            .scim_answers(ok, "ScimBulkResponse"),
        group
            .route(
                Method::POST,
                "/.search",
                "Search users and groups together",
                search_all,
            )
            .scim_body("ScimSearchRequest")
            .scim_answers(ok, "ScimListResponse"),
        group
            .resource_route(
                Method::GET,
                "/{resource}",
                "List users or groups, filtered, sorted and paged",
                list,
            )
            .query(LIST_QUERY)
            .parameter("filter", "A filter (RFC 7644 §3.4.2.2)")
            .parameter("sortBy", "The attribute to sort by")
            .parameter("sortOrder", "`ascending` (the default) or `descending`")
            .parameter("startIndex", "The 1-based index of the first result")
            .parameter("count", "The most results, up to `filter.maxResults`")
            .scim_answers(ok, "ScimListResponse"),
        group
            .resource_route(
                Method::POST,
                "/{resource}",
                "Create a user or group",
                create,
            )
            .query(PROJECTION_QUERY)
            .scim_body("ScimResource")
            .scim_answers(StatusCode::CREATED, "ScimResource"),
        group
            .resource_route(
                Method::POST,
                "/{resource}/.search",
                "Search users or groups",
                search,
            )
            .scim_body("ScimSearchRequest")
            .scim_answers(ok, "ScimListResponse"),
        group
            .resource_route(
                Method::GET,
                "/{resource}/{id}",
                "Get a user or group (`If-None-Match`: 304)",
                get,
            )
            .query(PROJECTION_QUERY)
            .scim_answers(ok, "ScimResource"),
        group
            .resource_route(
                Method::PUT,
                "/{resource}/{id}",
                "Replace a user or group (`If-Match`: 412)",
                |scim: Scim, caller: Caller, path: ResourcePath, query: Params, body: JsonBody| {
                    write(scim, caller, path, query, body, Service::replace)
                },
            )
            .query(PROJECTION_QUERY)
            .scim_body("ScimResource")
            .scim_answers(ok, "ScimResource"),
        group
            .resource_route(
                Method::PATCH,
                "/{resource}/{id}",
                "Change a user or group with PATCH operations (`If-Match`: 412)",
                |scim: Scim, caller: Caller, path: ResourcePath, query: Params, body: JsonBody| {
                    write(
                        scim,
                        caller,
                        path,
                        query,
                        body,
                        |service, kind, id, body, if_match, context, projection| {
                            service.patch(kind, id, &body, if_match, context, projection)
                        },
                    )
                },
            )
            .query(PROJECTION_QUERY)
            .scim_body("ScimPatchOp")
            .scim_answers(ok, "ScimResource"),
        group
            .resource_route(
                Method::DELETE,
                "/{resource}/{id}",
                "Delete a user or group (`If-Match`: 412)",
                delete,
            )
            .answers(StatusCode::NO_CONTENT, "ScimResource"),
    ]
}

/// What every SCIM route shares: the settings its handler finds in the request's
/// extensions, and the error format.
struct Group {
    settings: Arc<ScimSettings>,
    errors: ErrorFormat,
}

impl Group {
    fn route<H, T>(&self, method: Method, path: &str, summary: &str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Route::new(
            method,
            format!("{ROOT}{path}"),
            Access::Permission(PERMISSION_SCIM.to_owned()),
            "scim",
            summary,
            handler.layer(Extension(self.settings.clone())),
        )
        .body_limit(self.settings.max_payload_size)
        .errors(self.errors.clone())
        .defines("ScimError", openapi_schema("ScimError"))
    }

    /// A route of `/Users` and `/Groups` alike.
    fn resource_route<H, T>(&self, method: Method, path: &str, summary: &str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.route(method, path, summary, handler)
            .parameter("attributes", "The attributes to return, comma-separated")
            .parameter(
                "excludedAttributes",
                "The attributes to leave out, comma-separated",
            )
            .parameter("resource", "`Users` or `Groups`")
            .parameter("id", "The resource's `id`")
    }
}

/// The bodies and answers of SCIM's routes, with their schemas defined for the
/// OpenAPI document.
trait Documented {
    fn scim_body(self, schema: &'static str) -> Route;
    fn scim_answers(self, status: StatusCode, schema: &'static str) -> Route;
}

impl Documented for Route {
    fn scim_body(self, schema: &'static str) -> Route {
        self.body(schema).defines(schema, openapi_schema(schema))
    }

    fn scim_answers(self, status: StatusCode, schema: &'static str) -> Route {
        self.answers(status, schema)
            .defines(schema, openapi_schema(schema))
    }
}

/// The OpenAPI schema of a SCIM message; the attributes of users and groups are what
/// `/Schemas` serves.
fn openapi_schema(name: &str) -> Value {
    let object = |description: &str| json!({"type": "object", "description": description});
    let urns = json!({"type": "array", "items": {"type": "string"}});
    match name {
        "ScimError" => json!({
            "type": "object", "required": ["schemas", "status"],
            "properties": {
                "schemas": urns,
                "status": {"type": "string", "description": "The HTTP status, as a string"},
                "scimType": {"type": "string", "enum": ["invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath", "noTarget", "invalidValue"]},
                "detail": {"type": "string"},
            },
        }),
        "ScimResource" => {
            object("A User or Group (RFC 7643 §4); `/Schemas` describes every attribute kept")
        }
        "ScimListResponse" => json!({
            "type": "object",
            "properties": {
                "schemas": urns,
                "totalResults": {"type": "integer"}, "itemsPerPage": {"type": "integer"},
                "startIndex": {"type": "integer"},
                "Resources": {"type": "array", "items": {"type": "object"}},
            },
        }),
        "ScimSearchRequest" => json!({
            "type": "object",
            "properties": {
                "schemas": urns, "filter": {"type": "string"}, "sortBy": {"type": "string"},
                "sortOrder": {"type": "string", "enum": ["ascending", "descending"]},
                "startIndex": {"type": "integer"}, "count": {"type": "integer"},
                "attributes": urns, "excludedAttributes": urns,
            },
        }),
        "ScimPatchOp" => json!({
            "type": "object", "required": ["Operations"],
            "properties": {
                "schemas": urns,
                "Operations": {"type": "array", "items": {"type": "object", "required": ["op"], "properties": {
                    "op": {"type": "string", "description": "add, remove or replace, in any case"},
                    "path": {"type": "string"}, "value": {},
                }}},
            },
        }),
        "ScimBulkRequest" => object(
            "A BulkRequest (RFC 7644 §3.7): `Operations` with `method`, `path`, `bulkId`, `data`; `failOnErrors`",
        ),
        "ScimBulkResponse" => object(
            "A BulkResponse (RFC 7644 §3.7): per operation its `status`, `location` and `response`",
        ),
        "ScimServiceProviderConfig" => object("RFC 7643 §5"),
        "ScimResourceType" => object("RFC 7643 §6"),
        "ScimSchema" => object("RFC 7643 §7"),
        other => unreachable!(
            "INVARIANT: every schema a SCIM route names is defined here, not `{other}`"
        ),
    }
}

/// The settings of the SCIM route a request reached.
fn settings(extensions: &Extensions) -> Result<Arc<ScimSettings>, ScimError> {
    extensions
        .get::<Arc<ScimSettings>>()
        .cloned()
        .ok_or_else(|| ScimError::Internal("a SCIM handler outside a SCIM route".to_owned()))
}

/// The service over the HTTP state's engine, for one request.
#[derive(Clone)]
pub(crate) struct Scim {
    service: Arc<Service>,
}

impl FromRequestParts<AppState> for Scim {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Scim, ScimError> {
        Ok(Scim {
            service: Arc::new(Service {
                engine: state.engine().clone(),
                settings: settings(&parts.extensions)?,
            }),
        })
    }
}

/// A JSON body, read up to `maxPayloadSize` (the route's body limit in the stack, which
/// refuses a larger declared length before the handler runs).
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ScimError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody, ScimError> {
        let limit = settings(request.extensions())?.max_payload_size;
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                        crate::error::too_large(limit)
                    }
                    other => ScimError::invalid_syntax(other.body_text().to_lowercase()),
                })?;
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
/// else the scheme (`X-Forwarded-Proto`), `Host`, the prefix the whole router may be
/// nested under, and [`ROOT`].
fn base_url(settings: &ScimSettings, headers: &HeaderMap, original: &Uri, uri: &Uri) -> String {
    if let Some(base) = &settings.base_url {
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
    let outer = original
        .path()
        .strip_suffix(uri.path())
        .unwrap_or_default()
        .trim_end_matches('/');
    format!("{scheme}://{host}{outer}{ROOT}")
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The SCIM root's URL for a request.
async fn request_base(parts: &mut Parts) -> Result<String, ScimError> {
    let settings = settings(&parts.extensions)?;
    let original = parts
        .extract::<OriginalUri>()
        .await
        .map_or_else(|_| parts.uri.clone(), |o| o.0);
    Ok(base_url(&settings, &parts.headers, &original, &parts.uri))
}

/// Who asks (the token the stack authenticated) and from where, with the conditional
/// headers.
pub(crate) struct Caller {
    context: Context,
    if_match: Option<String>,
    if_none_match: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ScimError> {
        let actor = parts
            .extensions
            .get::<portcullis_http::Caller>()
            .map(portcullis_http::Caller::actor)
            .ok_or(ScimError::Unauthorized("a bearer token is required"))?;
        Ok(Caller {
            context: Context {
                actor,
                base: request_base(parts).await?,
            },
            if_match: header_text(&parts.headers, header::IF_MATCH),
            if_none_match: header_text(&parts.headers, header::IF_NONE_MATCH),
        })
    }
}

/// The SCIM root's URL, for the discovery documents (which need no actor).
pub(crate) struct Base(String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Base, ScimError> {
        request_base(parts).await.map(Base)
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
    if let Some(source) = &answer.adopted_from {
        set(
            HeaderName::from_static(ADOPTED_FROM_HEADER),
            &source.to_string(),
        );
    }
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
    scim: Scim,
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
    scim: Scim,
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
    scim: Scim,
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
    scim: Scim,
    caller: Caller,
    Path(resource): Path<String>,
    query: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let projection = projection(&params(query)?)?;
    let context = caller.context;
    portcullis_http::write_started();
    Ok(blocking(&scim, move |service| {
        service.create(kind, body, &context, &projection)
    })
    .await)
}

pub(crate) async fn get(
    scim: Scim,
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

/// The path of one resource: `/{resource}/{id}`.
type ResourcePath = Path<(String, String)>;

/// What `PUT` and `PATCH` of one resource call: [`Service::replace`] or
/// [`Service::patch`].
type Write = fn(
    &Service,
    ResourceKind,
    &str,
    Value,
    Option<String>,
    &Context,
    &Projection,
) -> Result<Answer, ScimError>;

/// `PUT` or `PATCH` of one resource (`If-Match` honoured): `write` with the body.
async fn write(
    scim: Scim,
    caller: Caller,
    Path((resource, id)): Path<(String, String)>,
    query: Params,
    JsonBody(body): JsonBody,
    write: Write,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let projection = projection(&params(query)?)?;
    let Caller {
        context, if_match, ..
    } = caller;
    portcullis_http::write_started();
    Ok(blocking(&scim, move |service| {
        write(service, kind, &id, body, if_match, &context, &projection)
    })
    .await)
}

pub(crate) async fn delete(
    scim: Scim,
    caller: Caller,
    Path((resource, id)): Path<(String, String)>,
) -> Result<Response, ScimError> {
    let kind = kind_of(&resource)?;
    let Caller {
        context, if_match, ..
    } = caller;
    portcullis_http::write_started();
    Ok(blocking(&scim, move |service| {
        service.delete(kind, &id, if_match, &context)
    })
    .await)
}

pub(crate) async fn bulk(scim: Scim, caller: Caller, JsonBody(body): JsonBody) -> Response {
    let context = caller.context;
    portcullis_http::write_started();
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

pub(crate) async fn service_provider_config(scim: Scim, Base(base): Base) -> Response {
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
