//! Users: the list (server-side paging, search, filters by source, active and
//! expired), create, edit, duplicate, deactivate, release to local, and the details
//! page (groups, effective roles, the assets they may reach, sign-in state, their
//! operation log).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use portcullis_engine::{EntityKind, Evaluator, GLOBAL_SCOPE, Time};
use serde_json::{Map, Value, json};

use super::html::{
    Console, Fields, Refusal, Viewer, action, answer_form, checkbox, input, instant, joined,
    local_input, notice, page_response, pager, problem, redirect, text, write_form,
};
use super::log::{ChangeFilter, recent, table};
use crate::auth::Access;
use crate::extract::{ApiPath, JsonBody, RawQuery};
use crate::routes::Route;

const KIND: EntityKind = EntityKind::User;
/// Rows on a page of the list.
pub(crate) const PAGE: usize = 50;

fn permission(verb: &str) -> Access {
    Access::Permission(format!("users.{verb}"))
}

/// `/ui/users/NAME`, the name escaped for a path.
pub(crate) fn link(username: &str) -> String {
    format!("/ui/users/{}", percent_path(username))
}

/// A path segment, escaped.
pub(crate) fn percent_path(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

const FILTERS: &[&str] = &["search", "source", "active", "expired", "offset"];

async fn list(
    Console { state, viewer }: Console,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let query: Vec<(String, String)> = query
        .into_iter()
        .filter(|(key, value)| FILTERS.contains(&key.as_str()) && !value.trim().is_empty())
        .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
            .to_owned()
    };
    let mut asked = query.clone();
    asked.push(("limit".to_owned(), PAGE.to_string()));
    let page = crate::admin::list(KIND, State(state), RawQuery(asked))
        .await?
        .0;
    let total = page["total"].as_u64().unwrap_or(0);
    let offset = page["offset"].as_u64().unwrap_or(0);
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let choice = |name: &str, options: &[(&str, &str)]| {
        let current = get(name);
        html! {
            select id=(format!("f-{name}")) name=(name) {
                @for (value, label) in options {
                    option value=(value) selected[current == *value] { (label) }
                }
            }
        }
    };
    Ok(page_response(
        &viewer,
        "Users",
        html! {
            @if viewer.may("users.add") {
                p.actions { a href="/ui/users/new" { "Create a user" } }
            }
            form.filters method="get" action="/ui/users" hx-get="/ui/users" hx-trigger="input changed delay:300ms from:#f-search, change" hx-target="#results" hx-select="#results" hx-swap="outerHTML" hx-push-url="true" {
                div { label for="f-search" { "Search username" } input id="f-search" type="search" name="search" value=(get("search")); }
                div { label for="f-source" { "Source" } (choice("source", &[("", "any"), ("local", "local"), ("scim", "scim"), ("import", "import")])) }
                div { label for="f-active" { "Active" } (choice("active", &[("", "any"), ("true", "active"), ("false", "inactive")])) }
                div { label for="f-expired" { "Expired" } (choice("expired", &[("", "any"), ("true", "expired"), ("false", "not expired")])) }
                div { button type="submit" { "Filter" } }
            }
            div id="results" {
                table {
                    thead { tr { th { "Username" } th { "Name" } th { "Email" } th { "Source" } th { "Active" } th { "Expires" } th { "System roles" } } }
                    tbody {
                        @for user in &items {
                            tr {
                                td { a href=(link(&text(user, "username"))) { (text(user, "username")) } }
                                td { (text(user, "name")) }
                                td { (text(user, "email")) }
                                td { (text(user, "source")) }
                                td { (if user["active"] == json!(true) { "yes" } else { "no" }) }
                                td { (text(user, "expires_at")) }
                                td { (joined(user, "system_roles")) }
                            }
                        }
                    }
                }
                (pager("/ui/users", &query, total, offset, PAGE))
            }
        },
    ))
}

/// The form of a user, filled from `values` (a spec's JSON or the form sent).
fn form(
    viewer: &Viewer,
    to: &str,
    values: &Value,
    creating: bool,
    message: Option<&str>,
) -> Markup {
    let mfa = text(values, "mfa");
    html! {
        (problem(message))
        form method="post" action=(to) {
            (viewer.csrf_field())
            (input("Username", "username", "text", &text(values, "username")))
            (input("Name", "name", "text", &text(values, "name")))
            (input("Email", "email", "email", &text(values, "email")))
            (input("Phone", "phone", "text", &text(values, "phone")))
            (checkbox("Active", "active", values.get("active") != Some(&json!(false))))
            (input("Expires at (UTC)", "expires_at", "datetime-local", &local_input(&text(values, "expires_at"))))
            (input("System roles (comma-separated)", "system_roles", "text", &joined(values, "system_roles")))
            p.field {
                label for="f-mfa" { "Second factor" }
                select id="f-mfa" name="mfa" {
                    @for option in ["disabled", "enabled", "forced"] {
                        option value=(option) selected[mfa == option] { (option) }
                    }
                }
            }
            (checkbox("Must change password at next sign-in", "must_change_password", values.get("must_change_password") == Some(&json!(true))))
            @if creating {
                p.field {
                    label for="f-password" { "Password (optional)" }
                    input id="f-password" type="password" name="password" autocomplete="new-password";
                }
            }
            (input("Description", "description", "text", &text(values, "description")))
            p { button type="submit" { (if creating { "Create" } else { "Save" }) } }
        }
    }
}

/// The spec fields of a user form, as JSON: blank optional fields are `null` (a merge
/// patch removes them; a create leaves them out).
fn spec_of(fields: &Fields, creating: bool) -> Value {
    let mut spec = Map::new();
    let optional = |name: &str| fields.get(name).map_or(Value::Null, |v| json!(v));
    spec.insert(
        "username".into(),
        json!(fields.get("username").unwrap_or("")),
    );
    spec.insert("name".into(), json!(fields.get("name").unwrap_or("")));
    spec.insert("email".into(), optional("email"));
    spec.insert("phone".into(), optional("phone"));
    spec.insert("active".into(), json!(fields.ticked("active")));
    spec.insert(
        "expires_at".into(),
        fields
            .get("expires_at")
            .map_or(Value::Null, |v| json!(instant(v))),
    );
    spec.insert("system_roles".into(), json!(fields.list("system_roles")));
    spec.insert("mfa".into(), json!(fields.get("mfa").unwrap_or("disabled")));
    spec.insert(
        "must_change_password".into(),
        json!(fields.ticked("must_change_password")),
    );
    spec.insert(
        "description".into(),
        json!(fields.get("description").unwrap_or("")),
    );
    if creating {
        if let Some((_, password)) = fields
            .0
            .iter()
            .find(|(k, v)| k == "password" && !v.is_empty())
        {
            spec.insert("password".into(), json!(password));
        }
        spec.retain(|_, value| !value.is_null());
    }
    Value::Object(spec)
}

async fn new_page(Extension(viewer): Extension<Viewer>) -> Response {
    page_response(
        &viewer,
        "Create a user",
        form(&viewer, "/ui/users", &json!({"active": true}), true, None),
    )
}

async fn create(Console { state, viewer }: Console, fields: Fields) -> Response {
    let spec = spec_of(&fields, true);
    let written = write_form(state, &viewer, KIND, None, spec.clone()).await;
    answer_form(
        &viewer,
        written,
        &link(&text(&spec, "username")),
        "Create a user",
        |problem| form(&viewer, "/ui/users", &spec, true, Some(problem)),
    )
}

/// Duplicate: the create form, filled from the user's spec, without what must be
/// unique or belongs to an identity source (as the API's clone).
async fn duplicate_page(
    Console { state, viewer }: Console,
    Path(user): Path<String>,
) -> Result<Response, Refusal> {
    let mut spec = state.snapshot().spec(KIND, &user)?.to_json();
    if let Some(fields) = spec.as_object_mut() {
        for field in ["id", "username", "email", "external_id", "source"] {
            fields.remove(field);
        }
    }
    Ok(page_response(
        &viewer,
        &format!("Duplicate {user}"),
        html! {
            p.muted { "A new user with the same settings: choose its username and email." }
            (form(&viewer, "/ui/users", &spec, true, None))
        },
    ))
}

async fn edit_page(
    Console { state, viewer }: Console,
    Path(user): Path<String>,
) -> Result<Response, Refusal> {
    let spec = state.snapshot().spec(KIND, &user)?.to_json();
    Ok(page_response(
        &viewer,
        &format!("Edit {user}"),
        form(&viewer, &link(&user), &spec, false, None),
    ))
}

async fn update(
    Console { state, viewer }: Console,
    Path(user): Path<String>,
    fields: Fields,
) -> Response {
    let patch = spec_of(&fields, false);
    let written = write_form(state, &viewer, KIND, Some(&user), patch.clone()).await;
    answer_form(
        &viewer,
        written,
        &link(&text(&patch, "username")),
        &format!("Edit {user}"),
        |problem| form(&viewer, &link(&user), &patch, false, Some(problem)),
    )
}

async fn release(
    Console { state, viewer }: Console,
    Path(user): Path<String>,
) -> Result<Response, Refusal> {
    let _written = crate::admin::release(
        KIND,
        State(state),
        ApiPath(user.clone()),
        Extension(viewer.caller.clone()),
        JsonBody(crate::admin::ReleaseRequest {}),
    )
    .await?;
    Ok(redirect(&format!("{}?released=1", link(&user))))
}

#[derive(serde::Deserialize)]
struct DetailQuery {
    #[serde(default)]
    released: Option<String>,
}

async fn details(
    Console { state, viewer }: Console,
    Path(user): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let json = snapshot.entity_json(KIND, &user)?;
    let id = text(&json, "id");
    let username = text(&json, "username");
    let now = Time::now();
    let groups = snapshot.user_groups(&id, now);
    let roles = snapshot.effective_roles(&id, GLOBAL_SCOPE, now)?;
    let assets = if viewer.may("decisions.check") {
        let page = crate::decisions::list(
            crate::decisions::DecisionList::UserAssets,
            State(state.clone()),
            ApiPath(id.clone()),
            RawQuery(vec![("limit".to_owned(), "100".to_owned())]),
        )
        .await?
        .0;
        Some(page)
    } else {
        None
    };
    let log = if viewer.may("changes.view") {
        Some(
            recent(
                &state,
                &ChangeFilter {
                    entity: Some("user".to_owned()),
                    name: Some(id.clone()),
                    actor: None,
                },
            )
            .await?,
        )
    } else {
        None
    };
    let source = text(&json, "source");
    let active = json["active"] == json!(true);
    let base = link(&username);
    Ok(page_response(
        &viewer,
        &format!("User {username}"),
        html! {
            (notice(query.released.as_ref().map(|_| "Released: the account is local again.")))
            @if viewer.may("users.change") || viewer.may("users.add") {
                p.actions {
                    @if viewer.may("users.change") {
                        a href=(format!("{base}/edit")) { "Edit" } " "
                    }
                    @if viewer.may("users.add") {
                        a href=(format!("{base}/duplicate")) { "Duplicate" } " "
                    }
                    @if viewer.may("users.change") {
                        (action(&viewer, &format!("{base}/active"), if active { "Deactivate" } else { "Activate" }, &[("active", if active { "false" } else { "true" })]))
                        @if source != "local" {
                            (action(&viewer, &format!("{base}/release"), "Release to local", &[]))
                        }
                    }
                }
            }
            table {
                @for (label, field) in [("Username", "username"), ("Name", "name"), ("Email", "email"), ("Phone", "phone"), ("Source", "source"), ("External id", "external_id"), ("Active", "active"), ("Expires at", "expires_at"), ("System roles", "system_roles"), ("Description", "description"), ("Created by", "created_by")] {
                    tr { th { (label) } td { (if field == "system_roles" { joined(&json, field) } else { text(&json, field) }) } }
                }
            }
            h2 { "Sign-in" }
            table {
                tr { th { "Second factor" } td { (text(&json, "mfa")) } }
                tr { th { "Has a password" } td { (text(&json, "has_password")) } }
                tr { th { "Must change password" } td { (text(&json, "must_change_password")) } }
                tr { th { "Last sign-in" } td { (text(&json, "last_login")) } }
            }
            h2 { "Groups" }
            @if groups.is_empty() { p.muted { "In no group." } }
            ul {
                @for group in &groups {
                    li { a href=(super::groups::link(&group.name)) { (group.name) } @if !group.direct { span.muted { " (through a nested group)" } } }
                }
            }
            h2 { "Effective roles (global scope)" }
            p id="effective-roles" { (roles.join(", ")) }
            @if let Some(page) = &assets {
                h2 { "Assets this user may reach (" (text(page, "total")) ")" }
                ul {
                    @for asset in page["items"].as_array().into_iter().flatten() {
                        li { a href=(super::estate::asset_link(&text(asset, "name"))) { (text(asset, "name")) } " " span.muted { (text(asset, "address")) } }
                    }
                }
            }
            @if let Some(log) = &log {
                h2 { "Operation log" }
                (table(log, None))
            }
        },
    ))
}

pub(crate) fn routes() -> Vec<Route> {
    use super::route;
    vec![
        route(
            Method::GET,
            "/ui/users",
            permission("view"),
            "Users: paged, searched and filtered on the server",
            list,
        ),
        route(
            Method::GET,
            "/ui/users/new",
            permission("add"),
            "The form of a new user",
            new_page,
        ),
        route(
            Method::POST,
            "/ui/users",
            permission("add"),
            "Create a user (form)",
            create,
        ),
        route(
            Method::GET,
            "/ui/users/{user}",
            permission("view"),
            "A user's details: groups, effective roles, reachable assets, sign-in state, operation log",
            details,
        ),
        route(
            Method::GET,
            "/ui/users/{user}/edit",
            permission("change"),
            "The form of a user",
            edit_page,
        ),
        route(
            Method::POST,
            "/ui/users/{user}",
            permission("change"),
            "Change a user (form)",
            update,
        ),
        route(
            Method::GET,
            "/ui/users/{user}/duplicate",
            permission("add"),
            "The form of a new user filled from another",
            duplicate_page,
        ),
        super::html::activate_route(KIND, "/ui/users/{user}/active", link),
        route(
            Method::POST,
            "/ui/users/{user}/release",
            permission("change"),
            "Hand a user an identity source adopted back to `local` (form)",
            release,
        ),
    ]
}
