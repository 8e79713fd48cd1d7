//! The console's page frame, its security headers, its error pages, and the small
//! helpers every page uses (forms, times, values of the API's JSON).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use portcullis_engine::{Error, NotFound};
use serde_json::Value;

use super::csrf;
use super::session::Session;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, JsonBody, RawQuery};

/// What a signed-in console handler starts from: the server's state and who is
/// looking (the stack put the [`Viewer`] in the request).
pub(crate) struct Console {
    pub(crate) state: crate::AppState,
    pub(crate) viewer: Viewer,
}

impl axum::extract::FromRequestParts<crate::AppState> for Console {
    type Rejection = axum::extract::rejection::ExtensionRejection;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::AppState,
    ) -> Result<Console, Self::Rejection> {
        let Extension(viewer) = Extension::<Viewer>::from_request_parts(parts, state).await?;
        Ok(Console {
            state: state.clone(),
            viewer,
        })
    }
}

/// Who is looking at a console page: their session and what they may do.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub(crate) session: Session,
    pub caller: Caller,
}

impl Viewer {
    pub(crate) fn new(session: Session, caller: Caller) -> Viewer {
        Viewer { session, caller }
    }

    /// The session's CSRF token, for forms.
    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    pub fn username(&self) -> &str {
        match &self.caller.principal {
            crate::auth::Principal::User { username, .. } => username,
            crate::auth::Principal::Token(token) => &token.name,
        }
    }

    /// Whether the viewer holds `permission` (to show a control or a section).
    pub fn may(&self, permission: &str) -> bool {
        self.caller.holds(permission)
    }

    /// The hidden field every form of this session carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(csrf::FIELD) value=(self.csrf()); }
    }
}

/// A refusal, rendered as an HTML page with its status and the message the API would
/// give (the engine's words).
#[derive(Debug)]
pub struct Refusal(pub ApiError);

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal(error)
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal(ApiError::Engine(error))
    }
}

impl From<NotFound> for Refusal {
    fn from(error: NotFound) -> Refusal {
        Refusal(ApiError::from(error))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error_response(self.0)
    }
}

/// The Content-Security-Policy of every console answer: nothing but this origin, no
/// inline script or style, no framing, forms posting only here. QR codes are `data:`
/// images.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Adds the console's security headers to `response`.
pub(crate) fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    secured(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response(),
    )
}

/// A 303 to `location` (after a form's state change, or to the sign-in form).
pub(crate) fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secured(response)
}

/// A form's write through the API's handler for `kind`: a creation, or with `target`
/// a merge patch of that entity. The same handler, checks and refusals as the API's.
pub(crate) async fn write_form(
    state: crate::AppState,
    viewer: &Viewer,
    kind: portcullis_engine::EntityKind,
    target: Option<&str>,
    spec: Value,
) -> Result<(), ApiError> {
    let caller = Extension(viewer.caller.clone());
    match target {
        None => crate::admin::create(kind, State(state), caller, JsonBody(spec))
            .await
            .map(drop),
        Some(target) => {
            let target = ApiPath(target.to_owned());
            crate::admin::patch(kind, State(state), target, caller, JsonBody(spec))
                .await
                .map(drop)
        }
    }
}

/// How a form answers its write: a redirect to `done` when it took; else the page
/// `title` again, with the form `again` shows for the refusal's message, at the
/// refusal's status.
pub(crate) fn answer_form(
    viewer: &Viewer,
    written: Result<(), ApiError>,
    done: &str,
    title: &str,
    again: impl FnOnce(&str) -> Markup,
) -> Response {
    let error = match written {
        Ok(()) => return redirect(done),
        Err(error) => error,
    };
    let mut response = page_response(viewer, title, again(&error.message()));
    *response.status_mut() = match error.status() {
        StatusCode::UNAUTHORIZED => StatusCode::FORBIDDEN,
        status => status,
    };
    response
}

/// How the console answers an error of the stack or a refusal: without a session, a
/// redirect to the sign-in form; otherwise an HTML page with the status and message.
pub(crate) fn error_response(error: ApiError) -> Response {
    if let ApiError::Unauthenticated(_) = error {
        return redirect("/ui/login");
    }
    let status = error.status();
    let message = error.message();
    html_response(
        status,
        frame(
            &format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            None,
            html! {
                p.error role="alert" { (message) }
                p { a href="/ui/" { "Back to the console" } }
            },
        ),
    )
}

/// The navigation, entries shown by permission.
const NAV: &[(&str, &str, &str)] = &[
    ("/ui/users", "Users", "users.view"),
    ("/ui/groups", "User groups", "groups.view"),
    ("/ui/nodes", "Nodes and assets", "nodes.view"),
    ("/ui/rules", "Rules", "rules.view"),
    ("/ui/tester", "Access tester", "decisions.check"),
    ("/ui/transfer", "Import and export", "users.view"),
    ("/ui/changes", "Operation log", "changes.view"),
];

fn frame(title: &str, viewer: Option<&Viewer>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx must not inject its indicator styles: the CSP refuses inline style.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · Portcullis" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/htmx.min.js" defer {}
                script src="/ui/static/sse.min.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "Portcullis" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label, permission) in NAV {
                                    @if viewer.may(permission) {
                                        li { a href=(href) { (label) } }
                                    }
                                }
                                li { a href="/ui/me/assets" { "My assets" } }
                                li { a href="/ui/me" { "My profile" } }
                            }
                        }
                        form.signout method="post" action="/ui/logout" {
                            (viewer.csrf_field())
                            span.who { (viewer.username()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// A console page for `viewer`, with the frame and the security headers.
pub fn page_response(viewer: &Viewer, title: &str, content: Markup) -> Response {
    html_response(StatusCode::OK, frame(title, Some(viewer), content))
}

/// A page without a session (the sign-in form).
pub(crate) fn public_page(status: StatusCode, title: &str, content: Markup) -> Response {
    html_response(status, frame(title, None, content))
}

/// A form's fields, in order (a name may repeat: multiple selections).
#[derive(Debug, Default, Clone)]
pub struct Fields(pub Vec<(String, String)>);

/// A form's fields are what an `application/x-www-form-urlencoded` body holds.
impl<S: Send + Sync> axum::extract::FromRequest<S> for Fields {
    type Rejection = axum::extract::rejection::FormRejection;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Fields, Self::Rejection> {
        let axum::extract::Form(fields) = axum::extract::Form::from_request(request, state).await?;
        Ok(Fields(fields))
    }
}

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// Every non-blank value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .collect()
    }

    /// The non-blank values of `name`, each split on commas and line breaks.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.all(name)
            .iter()
            .flat_map(|value| value.split([',', '\n']))
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// Whether the checkbox `name` is ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The text of a JSON field: strings as they are, null and absent as empty.
pub fn text(value: &Value, field: &str) -> String {
    match value.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// A JSON array of strings (or of objects with `field`), joined with commas.
pub fn joined(value: &Value, field: &str) -> String {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A `datetime-local` input's value as RFC 3339 (UTC), or the text as it is.
pub fn instant(value: &str) -> String {
    let value = value.trim();
    if value.len() == 16 && value.as_bytes().get(10) == Some(&b'T') {
        return format!("{value}:00Z");
    }
    if value.len() == 19 && value.as_bytes().get(10) == Some(&b'T') {
        return format!("{value}Z");
    }
    value.to_owned()
}

/// An RFC 3339 instant as a `datetime-local` input shows it (UTC).
pub fn local_input(value: &str) -> String {
    value.get(..16).unwrap_or("").to_owned()
}

/// A message box: the engine's words, next to the form that caused them.
pub fn problem(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.error role="alert" id="problem" { (message) }
        }
    }
}

/// A success notice.
pub fn notice(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.notice role="status" { (message) }
        }
    }
}

/// A labelled text input.
pub fn input(label: &str, name: &str, kind: &str, value: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        p.field {
            label for=(id) { (label) }
            input id=(id) type=(kind) name=(name) value=(value);
        }
    }
}

/// A labelled checkbox.
pub fn checkbox(label: &str, name: &str, checked: bool) -> Markup {
    let id = format!("f-{name}");
    html! {
        p.field.check {
            input id=(id) type="checkbox" name=(name) value="on" checked[checked];
            label for=(id) { (label) }
        }
    }
}

/// A small POST form with one button (activate, delete, release, …).
pub fn action(viewer: &Viewer, to: &str, label: &str, hidden: &[(&str, &str)]) -> Markup {
    html! {
        form.inline method="post" action=(to) {
            (viewer.csrf_field())
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" { (label) }
        }
    }
}

/// A paging bar for `total` items, `offset` and `limit`, keeping `query`'s other
/// parameters.
pub fn pager(
    base: &str,
    query: &[(String, String)],
    total: u64,
    offset: u64,
    limit: usize,
) -> Markup {
    let link = |offset: u64| {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (key, value) in query {
            if key != "offset" && !value.is_empty() {
                pairs.append_pair(key, value);
            }
        }
        pairs.append_pair("offset", &offset.to_string());
        format!("{base}?{}", pairs.finish())
    };
    let limit = limit as u64;
    let end = (offset + limit).min(total);
    html! {
        nav.pager aria-label="Pages" {
            span { (if total == 0 { 0 } else { offset + 1 }) "–" (end) " of " (total) }
            @if offset > 0 {
                " " a rel="prev" href=(link(offset.saturating_sub(limit))) { "Previous" }
            }
            @if end < total {
                " " a rel="next" href=(link(end)) { "Next" }
            }
        }
    }
}

/// One page of a kind's list as the admin API answers it, for the query parameters
/// in `kept` (blank ones dropped), at `page_size` rows: the parameters kept (for the
/// pager) and the page.
pub(crate) async fn listing(
    state: crate::AppState,
    kind: portcullis_engine::EntityKind,
    query: Vec<(String, String)>,
    kept: &[&str],
    page_size: usize,
) -> Result<(Vec<(String, String)>, Value), Refusal> {
    let query: Vec<(String, String)> = query
        .into_iter()
        .filter(|(key, value)| kept.contains(&key.as_str()) && !value.trim().is_empty())
        .collect();
    let mut asked = query.clone();
    asked.push(("limit".to_owned(), page_size.to_string()));
    let page = crate::admin::list(kind, State(state), RawQuery(asked))
        .await?
        .0;
    Ok((query, page))
}

/// The value of `name` among query parameters, or empty.
pub(crate) fn param(query: &[(String, String)], name: &str) -> String {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map_or_else(String::new, |(_, value)| value.clone())
}

/// The search-by-name form of a list page.
pub(crate) fn search_form(action: &str, search: &str) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            div { label for="f-search" { "Search name" } input id="f-search" type="search" name="search" value=(search); }
            div { button type="submit" { "Filter" } }
        }
    }
}

/// The route `POST path` that activates or deactivates an entity of `kind` (the
/// form's `active` is `true` or `false`) as a merge patch through the admin API,
/// then shows the entity's page (`page` of its name).
pub(crate) fn activate_route(
    kind: portcullis_engine::EntityKind,
    path: &str,
    page: fn(&str) -> String,
) -> crate::routes::Route {
    let handler = move |Console { state, viewer }: Console,
                        axum::extract::Path(name): axum::extract::Path<String>,
                        fields: Fields| async move {
        let active = fields.get("active") == Some("true");
        let patch = serde_json::json!({"active": active});
        write_form(state, &viewer, kind, Some(&name), patch)
            .await
            .map(|()| redirect(&page(&name)))
            .map_err(Refusal)
    };
    super::route(
        axum::http::Method::POST,
        path,
        crate::auth::Access::Permission(format!("{}s.change", kind.noun())),
        &format!("Activate or deactivate a {} (form)", kind.noun()),
        handler,
    )
}
