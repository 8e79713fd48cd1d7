//! The route table: every route once, with its method, path, the access it needs, and
//! what the OpenAPI document says of it. The router, the authorization middleware and
//! the OpenAPI document are all built from this table.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json, Router, middleware};
use portcullis_engine::{EntityKind, PERMISSION_CHECK};
use serde_json::{Value, json};

use crate::auth::{Access, Caller, Credentials, Principal};
use crate::decisions::DecisionList;
use crate::error_format::{ErrorFormat, ErrorFormats};
use crate::extract::{ApiPath, JsonBody, RawQuery};
use crate::stack::{self, Envelope, Guard};
use crate::{AppState, admin, changes, decisions, error, metrics, openapi};

/// One route of the API: its method, path, the access it needs, what the OpenAPI
/// document says of it, and its handler.
///
/// Other front-ends add routes with [`crate::router_with`] (the cli adds the import and
/// export routes, SCIM its `/scim/v2` routes): they are authorized, limited, timed,
/// counted and documented exactly like the built-in ones, and a group with a wire
/// format of its own gets the stack's errors in it ([`Route::errors`]).
pub struct Route {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) access: Access,
    pub(crate) tag: &'static str,
    pub(crate) summary: String,
    /// Query parameters, for the document.
    pub(crate) query: &'static [&'static str],
    /// The schema of the request body, if any.
    pub(crate) request: Option<String>,
    /// The success status and the schema of its body.
    pub(crate) response: (StatusCode, String),
    /// Streams without end, or runs long (an import): no request timeout.
    pub(crate) streaming: bool,
    /// The largest request body, when it is not [`crate::Settings::body_limit`].
    pub(crate) body_limit: Option<usize>,
    /// How the stack words its errors for this route.
    pub(crate) errors: ErrorFormat,
    /// Schemas the route's bodies refer to beyond the API's own, for the document.
    pub(crate) schemas: Vec<(String, Value)>,
    /// Descriptions of path and query parameters, for the document, where the API's
    /// own do not fit.
    pub(crate) parameters: Vec<(&'static str, &'static str)>,
    pub(crate) handler: MethodRouter<AppState>,
}

impl Route {
    /// A route serving `method` at `path` (axum syntax: `/api/v1/users/{user}`) with
    /// `handler`, open to callers that satisfy `access`; `tag` and `summary` are for
    /// the OpenAPI document.
    pub fn new<H, T>(
        method: Method,
        path: impl Into<String>,
        access: Access,
        tag: &'static str,
        summary: impl Into<String>,
        handler: H,
    ) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .expect("INVARIANT: the table uses standard methods");
        Route {
            method,
            path: path.into(),
            access,
            tag,
            summary: summary.into(),
            query: &[],
            request: None,
            response: (StatusCode::OK, "Object".to_owned()),
            streaming: false,
            body_limit: None,
            errors: ErrorFormat::api(),
            schemas: Vec::new(),
            parameters: Vec::new(),
            handler: on(filter, handler),
        }
    }

    /// The query parameters it takes, for the document.
    pub fn query(mut self, names: &'static [&'static str]) -> Route {
        self.query = names;
        self
    }

    /// The schema of its request body, for the document.
    pub fn body(mut self, schema: impl Into<String>) -> Route {
        self.request = Some(schema.into());
        self
    }

    /// Its success status and the schema of that answer, for the document.
    pub fn answers(mut self, status: StatusCode, schema: impl Into<String>) -> Route {
        self.response = (status, schema.into());
        self
    }

    /// Takes request bodies up to `bytes` instead of the server-wide limit (file
    /// uploads).
    pub fn body_limit(mut self, bytes: usize) -> Route {
        self.body_limit = Some(bytes);
        self
    }

    /// Words the stack's errors (authentication, limits, timeout) in `format`, whose
    /// scope the route's path must be under.
    pub fn errors(mut self, format: ErrorFormat) -> Route {
        self.errors = format;
        self
    }

    /// Defines the schema `name` that the route's body, answer or error format names,
    /// for the document (the API's own schemas need no definition).
    pub fn defines(mut self, name: impl Into<String>, schema: Value) -> Route {
        self.schemas.push((name.into(), schema));
        self
    }

    /// Describes the path or query parameter `name`, for the document.
    pub fn parameter(mut self, name: &'static str, description: &'static str) -> Route {
        self.parameters.push((name, description));
        self
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Not cut by the request timeout: a long import must finish with its answer
    /// rather than be answered 503 and committed anyway. Its body is still limited.
    pub fn untimed(mut self) -> Route {
        self.streaming = true;
        self
    }

    fn streaming(mut self) -> Route {
        self.streaming = true;
        self
    }
}

/// The longest request URI (path and query) the API reads; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most headers a request may carry; more get 431.
pub const MAX_HEADERS: usize = 100;
/// The most bytes of header names and values a request may carry; more get 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

const LIST_QUERY: &[&str] = &["offset", "limit", "search", "min_revision", "{field}"];

fn permission(kind: EntityKind, verb: &str) -> Access {
    Access::Permission(format!("{}s.{verb}", kind.noun()))
}

/// The spec schema's name of a kind: `UserSpec`, …
pub(crate) fn spec_schema(kind: EntityKind) -> String {
    let noun = kind.noun();
    let mut chars = noun.chars();
    let first = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or_default();
    format!("{first}{}Spec", chars.as_str())
}

fn admin_routes(kind: EntityKind) -> Vec<Route> {
    let noun = kind.noun();
    let plural = format!("/api/v1/{noun}s");
    let one = format!("{plural}/{{{noun}}}");
    let spec = spec_schema(kind);
    vec![
        Route::new(
            Method::GET,
            &plural,
            permission(kind, "view"),
            "admin",
            format!("List {noun}s"),
            move |state: State<AppState>, query: RawQuery| admin::list(kind, state, query),
        )
        .query(LIST_QUERY)
        .answers(StatusCode::OK, "Page"),
        Route::new(
            Method::POST,
            &plural,
            permission(kind, "add"),
            "admin",
            format!("Create a {noun}"),
            move |state: State<AppState>, caller: Extension<Caller>, body: JsonBody<Value>| {
                admin::create(kind, state, caller, body)
            },
        )
        .body(&spec)
        .answers(
            StatusCode::CREATED,
            if kind == EntityKind::Token {
                "TokenCreated"
            } else {
                "WriteResult"
            },
        ),
        Route::new(
            Method::GET,
            &one,
            permission(kind, "view"),
            "admin",
            format!("Get a {noun}"),
            move |state: State<AppState>, path: ApiPath<String>, query: RawQuery| {
                admin::get(kind, state, path, query)
            },
        )
        .query(&["min_revision"])
        .answers(StatusCode::OK, "Entity"),
        Route::new(
            Method::PUT,
            &one,
            permission(kind, "change"),
            "admin",
            format!("Replace a {noun}"),
            move |state: State<AppState>,
                  path: ApiPath<String>,
                  caller: Extension<Caller>,
                  body: JsonBody<Value>| {
                admin::replace(kind, state, path, caller, body)
            },
        )
        .body(&spec)
        .answers(StatusCode::OK, "WriteResult"),
        Route::new(
            Method::PATCH,
            &one,
            permission(kind, "change"),
            "admin",
            format!("Change a {noun} with a JSON merge patch (RFC 7386) of its spec"),
            move |state: State<AppState>,
                  path: ApiPath<String>,
                  caller: Extension<Caller>,
                  body: JsonBody<Value>| {
                admin::patch(kind, state, path, caller, body)
            },
        )
        .body("MergePatch")
        .answers(StatusCode::OK, "WriteResult"),
        Route::new(
            Method::DELETE,
            &one,
            permission(kind, "delete"),
            "admin",
            format!("Delete a {noun}"),
            move |state: State<AppState>, path: ApiPath<String>, caller: Extension<Caller>| {
                admin::delete(kind, state, path, caller)
            },
        )
        .answers(StatusCode::OK, "DeleteResult"),
        Route::new(
            Method::POST,
            format!("{one}/clone"),
            permission(kind, "add"),
            "admin",
            format!("Copy a {noun} under a new name"),
            move |state: State<AppState>,
                  path: ApiPath<String>,
                  caller: Extension<Caller>,
                  body: JsonBody<admin::CloneRequest>| {
                admin::clone(kind, state, path, caller, body)
            },
        )
        .body("CloneRequest")
        .answers(
            StatusCode::CREATED,
            if kind == EntityKind::Token {
                "TokenCreated"
            } else {
                "WriteResult"
            },
        ),
    ]
}

/// Every route of the API.
pub(crate) fn table() -> Vec<Route> {
    let check = || Access::Permission(PERMISSION_CHECK.to_owned());
    let changes_view = || Access::Permission(changes::CHANGES_VIEW.to_owned());
    let mut routes = vec![
        Route::new(Method::GET, "/healthz", Access::Public, "service", "Liveness: the engine answers", healthz).answers(StatusCode::OK, "Health"),
        Route::new(Method::GET, "/metrics", Access::Public, "service", "Prometheus metrics (text format); unauthenticated", metrics::render).answers(StatusCode::OK, "Metrics"),
        Route::new(Method::GET, "/api/v1/openapi.json", Access::Public, "service", "This document", openapi_document).answers(StatusCode::OK, "Object"),
        Route::new(Method::GET, "/api/v1/whoami", Access::Authenticated, "service", "The calling token, its roles and permissions", whoami).answers(StatusCode::OK, "Whoami"),
        Route::new(Method::POST, "/api/v1/check", check(), "decisions", "May this user reach this asset as this account over this protocol and do this action?", decisions::check)
            .body("CheckRequest")
            .answers(StatusCode::OK, "CheckResponse"),
        Route::new(Method::POST, "/api/v1/check/batch", check(), "decisions", "Many checks against one snapshot", decisions::check_batch)
            .body("BatchRequest")
            .answers(StatusCode::OK, "BatchResponse"),
        Route::new(Method::POST, "/api/v1/explain", check(), "decisions", "A check with its reasons, rule by rule", decisions::explain)
            .body("CheckRequest")
            .answers(StatusCode::OK, "ExplainResponse"),
        Route::new(Method::POST, "/api/v1/permissions/check", check(), "decisions", "Does a user hold a permission on a scope, through system roles and group role assignments?", decisions::check_permission)
            .body("PermissionCheckRequest")
            .answers(StatusCode::OK, "PermissionCheckResponse"),
        Route::new(Method::GET, "/api/v1/users/{user}/assets", check(), "decisions", "The assets a user may reach", move |state: State<AppState>, path: ApiPath<String>, query: RawQuery| decisions::list(DecisionList::UserAssets, state, path, query))
            .query(DecisionList::UserAssets.query())
            .answers(StatusCode::OK, "Page"),
        Route::new(Method::GET, "/api/v1/users/{user}/nodes", check(), "decisions", "The nodes holding what a user may reach, with counts", move |state: State<AppState>, path: ApiPath<String>, query: RawQuery| decisions::list(DecisionList::UserNodes, state, path, query))
            .query(DecisionList::UserNodes.query())
            .answers(StatusCode::OK, "Page"),
        Route::new(Method::GET, "/api/v1/users/{user}/assets/{asset}/accounts", check(), "decisions", "The accounts through which a user may reach an asset, per protocol", decisions::user_accounts)
            .query(&["at", "min_revision"])
            .answers(StatusCode::OK, "AccountGrants"),
        Route::new(Method::GET, "/api/v1/assets/{asset}/users", check(), "decisions", "The users who may reach an asset", move |state: State<AppState>, path: ApiPath<String>, query: RawQuery| decisions::list(DecisionList::AssetUsers, state, path, query))
            .query(DecisionList::AssetUsers.query())
            .answers(StatusCode::OK, "Page"),
        Route::new(Method::GET, "/api/v1/changes", changes_view(), "changes", "A page of the operation log, whole revisions only", changes::list)
            .query(&["since", "limit"])
            .answers(StatusCode::OK, "ChangesPage"),
        Route::new(Method::GET, "/api/v1/watch", changes_view(), "changes", "The operation log as server-sent events, one per revision (id = revision); resume with Last-Event-ID", changes::watch)
            .query(&["since"])
            .answers(StatusCode::OK, "EventStream")
            .streaming(),
    ];
    for kind in EntityKind::ALL {
        routes.extend(admin_routes(kind));
    }
    routes.push(
        Route::new(
            Method::GET,
            "/api/v1/sync/{source_kind}",
            Access::Permission("users.view".to_owned()),
            "sync",
            "The state of a kind of directory sync (`ldap`): per source, the last run, its duration, counts and last error",
            sync_status,
        )
        .answers(StatusCode::OK, "SyncStatus"),
    );
    routes.push(
        Route::new(
            Method::GET,
            "/api/v1/cluster",
            Access::Permission("users.view".to_owned()),
            "service",
            "Cluster mode: this node, and every node seen in the last minute with its applied revision, lag and last contact",
            cluster,
        )
        .answers(StatusCode::OK, "Cluster"),
    );
    routes.push(
        Route::new(
            Method::POST,
            "/api/v1/groups/{group}/members",
            permission(EntityKind::Group, "change"),
            "admin",
            "Add a member to a group, or change its expiry",
            admin::add_member,
        )
        .body("MemberSpec")
        .answers(StatusCode::OK, "WriteResult"),
    );
    routes.push(
        Route::new(
            Method::DELETE,
            "/api/v1/groups/{group}/members/{user}",
            permission(EntityKind::Group, "change"),
            "admin",
            "Remove a member from a group",
            admin::remove_member,
        )
        .answers(StatusCode::OK, "WriteResult"),
    );
    for kind in [EntityKind::User, EntityKind::Group] {
        let noun = kind.noun();
        routes.push(
            Route::new(
                Method::POST,
                format!("/api/v1/{noun}s/{{{noun}}}/release"),
                permission(kind, "change"),
                "admin",
                format!("Hand a {noun} an identity source adopted back to `local` (its id, memberships, rules and history stay)"),
                move |state: State<AppState>,
                      path: ApiPath<String>,
                      caller: Extension<Caller>,
                      body: JsonBody<admin::ReleaseRequest>| {
                    admin::release(kind, state, path, caller, body)
                },
            )
            .body("ReleaseRequest")
            .answers(StatusCode::OK, "WriteResult"),
        );
    }
    routes.extend(crate::signin::routes());
    routes.extend(crate::console::routes());
    routes
}

async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let mut health = json!({"status": "ok", "revision": state.snapshot().revision()});
    // A cluster node answers checks from its own snapshot however far behind it is:
    // it stays healthy, and says how far.
    if let Some(cluster) = state.engine().cluster_status() {
        health["lag"] = json!({
            "revisions": cluster.lag_revisions,
            "seconds": cluster.lag_seconds,
        });
    }
    Json(health)
}

/// How long a node may be silent and still be listed by `GET /api/v1/cluster`.
const CLUSTER_NODES_WITHIN: Duration = Duration::from_secs(60);

async fn cluster(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, error::ApiError> {
    if let Some((name, _)) = query.first() {
        return Err(error::ApiError::BadRequest(format!(
            "query parameter `{name}`: this route takes none"
        )));
    }
    let engine = state.engine().clone();
    let Some(this) = engine.cluster_status() else {
        return Err(error::ApiError::NotFound(
            "this server is not a cluster node (start it with --cluster)".to_owned(),
        ));
    };
    let nodes = tokio::task::spawn_blocking(move || engine.cluster_nodes(CLUSTER_NODES_WITHIN))
        .await
        .map_err(|error| error::ApiError::Internal(format!("the cluster query failed: {error}")))?
        .expect("INVARIANT: a cluster node has a log");
    let nodes = nodes.map_err(error::ApiError::Engine)?;
    let head = this.head_revision;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|node| {
            json!({
                "name": node.name,
                "applied_revision": node.applied_revision,
                "lag_revisions": head.saturating_sub(node.applied_revision),
                "last_contact": node.last_contact,
            })
        })
        .collect();
    Ok(Json(
        json!({"node": this, "head_revision": head, "nodes": nodes}),
    ))
}

async fn sync_status(
    State(state): State<AppState>,
    ApiPath(kind): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, error::ApiError> {
    if let Some((name, _)) = query.first() {
        return Err(error::ApiError::BadRequest(format!(
            "query parameter `{name}`: this route takes none"
        )));
    }
    let status = state.sync_status(&kind).ok_or_else(|| {
        error::ApiError::NotFound(format!("no `{kind}` sync is configured on this server"))
    })?;
    let mut body = status();
    if let Value::Object(fields) = &mut body {
        fields.insert("kind".to_owned(), Value::String(kind));
    }
    Ok(Json(body))
}

async fn openapi_document(State(state): State<AppState>) -> Json<Value> {
    Json(
        state
            .inner
            .openapi
            .get_or_init(|| openapi::document(&table()))
            .clone(),
    )
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    match &caller.principal {
        Principal::Token(token) => Json(json!({
            "token": token.name,
            "id": token.id,
            "user": token.user,
            "roles": token.roles,
            "permissions": *caller.permissions,
            "expires_at": token.expires_at,
        })),
        // INVARIANT: API routes take bearer tokens only; kept total all the same.
        Principal::User { id, username } => Json(json!({
            "token": null,
            "id": null,
            "user": id,
            "username": username,
            "roles": [],
            "permissions": *caller.permissions,
            "expires_at": null,
        })),
    }
}

pub(crate) fn router(state: AppState, extra: Vec<Route>) -> Router {
    let settings = state.settings().clone();
    let mut table = table();
    table.extend(extra);
    let envelope = Envelope {
        formats: ErrorFormats::of(&table),
        routes: state
            .metrics()
            .route_table(table.iter().map(|route| route.path.as_str())),
    };
    let _ = state.inner.openapi.set(openapi::document(&table));
    let timeout = settings.request_timeout.max(Duration::from_millis(1));
    let mut router: Router<AppState> = Router::new();
    for route in table {
        let guard = Guard {
            state: state.clone(),
            credentials: Credentials::of_path(&route.path),
            access: Arc::new(route.access),
            format: route.errors,
            body_limit: route.body_limit.unwrap_or(settings.body_limit),
            timeout: (!route.streaming).then_some(timeout),
        };
        // Extractors take the route's limit, not axum's default; the guard outside
        // refuses bodies over it. Route layers: a method the path does not serve
        // gets its 405 unguarded, as an unknown path gets its 404.
        let handler = route
            .handler
            .route_layer(DefaultBodyLimit::max(guard.body_limit))
            .route_layer(middleware::from_fn_with_state(guard, stack::guard));
        router = router.route(&route.path, handler);
    }
    router
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(envelope, stack::envelope))
        .with_state(state)
}
