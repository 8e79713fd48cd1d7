//! Rules (asset authorizations): the list, create and edit with choosers for users and
//! groups, assets and nodes, accounts (all, specified, manual input, same name as the
//! user, anonymous, with exclusions), protocols, actions, start and expiry; activate
//! and deactivate; clone.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use portcullis_engine::{EntityKind, ListQuery, Snapshot};
use serde_json::{Value, json};

use super::html::{
    Console, Fields, Refusal, Viewer, action, checkbox, input, instant, listing, local_input,
    page_response, pager, param, problem, redirect, search_form, text,
};
use super::html::{answer_form, write_form};
use super::users::{PAGE, percent_path};
use crate::AppState;
use crate::auth::Access;
use crate::extract::{ApiPath, JsonBody, RawQuery};
use crate::routes::Route;

const KIND: EntityKind = EntityKind::Rule;
/// The most entities a chooser lists; more are typed by name.
const CHOOSER: usize = 300;
const ACTIONS: &[&str] = &[
    "connect", "upload", "download", "copy", "paste", "delete", "share",
];
const PROTOCOLS: &[&str] = &[
    "ssh",
    "sftp",
    "rdp",
    "vnc",
    "telnet",
    "mysql",
    "postgresql",
    "oracle",
    "sqlserver",
    "redis",
    "mongodb",
    "k8s",
    "http",
    "https",
];
const SPECIAL_ACCOUNTS: &[(&str, &str)] = &[
    ("@ALL", "All accounts of the asset"),
    ("@INPUT", "Manual input (typed when connecting)"),
    ("@USER", "Same name as the user"),
    ("@ANON", "Anonymous (no credentials)"),
];

fn permission(verb: &str) -> Access {
    Access::Permission(format!("rules.{verb}"))
}

pub(crate) fn link(name: &str) -> String {
    format!("/ui/rules/{}", percent_path(name))
}

/// The display name of an entity referred to by id (or the reference itself).
pub(crate) fn name_of(snapshot: &Snapshot, kind: EntityKind, reference: &str) -> String {
    let field = match kind {
        EntityKind::User => "username",
        EntityKind::Node => "path",
        _ => "name",
    };
    snapshot
        .entity_json(kind, reference)
        .ok()
        .map_or_else(|| reference.to_owned(), |json| text(&json, field))
}

fn names(snapshot: &Snapshot, kind: EntityKind, values: &Value, field: &str) -> Vec<String> {
    values
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|reference| name_of(snapshot, kind, reference))
        .collect()
}

async fn list(
    Console { state, viewer }: Console,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let (query, page) = listing(state, KIND, query, &["search", "offset"], PAGE).await?;
    let search = param(&query, "search");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    Ok(page_response(
        &viewer,
        "Rules",
        html! {
            @if viewer.may("rules.add") {
                p.actions { a href="/ui/rules/new" { "Create a rule" } }
            }
            (search_form("/ui/rules", &search))
            table {
                thead { tr { th { "Name" } th { "Effect" } th { "Users and groups" } th { "Assets and nodes" } th { "Accounts" } th { "Protocols" } th { "Actions" } th { "Active" } th { "Expires" } } }
                tbody {
                    @for rule in &items {
                        tr {
                            td { a href=(link(&text(rule, "name"))) { (text(rule, "name")) } }
                            td { (text(rule, "effect")) }
                            td { (names(&snapshot, EntityKind::User, rule, "users").into_iter().chain(names(&snapshot, EntityKind::Group, rule, "groups")).collect::<Vec<_>>().join(", ")) }
                            td { (names(&snapshot, EntityKind::Asset, rule, "assets").into_iter().chain(names(&snapshot, EntityKind::Node, rule, "nodes")).collect::<Vec<_>>().join(", ")) }
                            td { (super::html::joined(rule, "accounts")) }
                            td { (protocols_text(rule)) }
                            td { (super::html::joined(rule, "actions")) }
                            td { (if rule["active"] == json!(true) { "yes" } else { "no" }) }
                            td { (text(rule, "expires_at")) }
                        }
                    }
                }
            }
            (pager("/ui/rules", &query, page["total"].as_u64().unwrap_or(0), page["offset"].as_u64().unwrap_or(0), PAGE))
        },
    ))
}

fn protocols_text(rule: &Value) -> String {
    match rule.get("protocols") {
        Some(Value::Array(_)) => super::html::joined(rule, "protocols"),
        Some(Value::String(all)) => all.clone(),
        _ => String::new(),
    }
}

/// A chooser: a multiple select of the first entities of `kind`, and a text field
/// for any others, by name.
fn chooser(
    snapshot: &Snapshot,
    kind: EntityKind,
    field: &str,
    label: &str,
    chosen: &[String],
) -> Markup {
    let name_field = match kind {
        EntityKind::User => "username",
        EntityKind::Node => "path",
        _ => "name",
    };
    let options: Vec<String> = snapshot
        .list_json(
            kind,
            &ListQuery {
                limit: CHOOSER,
                ..ListQuery::default()
            },
        )
        .items
        .iter()
        .map(|item| text(item, name_field))
        .collect();
    let typed: Vec<&str> = chosen
        .iter()
        .filter(|name| !options.contains(name))
        .map(String::as_str)
        .collect();
    let id = format!("f-{field}");
    html! {
        p.field {
            label for=(id) { (label) }
            select id=(id) name=(field) multiple size="5" {
                @for option in &options {
                    option value=(option) selected[chosen.contains(option)] { (option) }
                }
            }
        }
        (input(&format!("{label}, by name (comma-separated)"), &format!("{field}_typed"), "text", &typed.join(", ")))
    }
}

fn form(
    snapshot: &Snapshot,
    viewer: &Viewer,
    to: &str,
    values: &Value,
    creating: bool,
    message: Option<&str>,
) -> Markup {
    let accounts: Vec<String> = values
        .get("accounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let specified: Vec<&str> = accounts
        .iter()
        .filter(|a| !a.starts_with('@') && !a.starts_with('!'))
        .map(String::as_str)
        .collect();
    let excluded: Vec<&str> = accounts
        .iter()
        .filter_map(|a| a.strip_prefix('!'))
        .collect();
    let protocols = protocols_text(values);
    let all_protocols = protocols.is_empty() || protocols.split(", ").any(|p| p == "all");
    let actions = super::html::joined(values, "actions");
    let all_actions = actions.is_empty() || actions.split(", ").any(|a| a == "all");
    let effect = text(values, "effect");
    html! {
        (problem(message))
        form method="post" action=(to) {
            (viewer.csrf_field())
            (input("Name", "name", "text", &text(values, "name")))
            p.field {
                label for="f-effect" { "Effect" }
                select id="f-effect" name="effect" {
                    option value="allow" selected[effect != "deny"] { "allow" }
                    option value="deny" selected[effect == "deny"] { "deny" }
                }
            }
            fieldset { legend { "Who" }
                (chooser(snapshot, EntityKind::User, "users", "Users", &names(snapshot, EntityKind::User, values, "users")))
                (chooser(snapshot, EntityKind::Group, "groups", "User groups", &names(snapshot, EntityKind::Group, values, "groups")))
            }
            fieldset { legend { "What" }
                (chooser(snapshot, EntityKind::Asset, "assets", "Assets", &names(snapshot, EntityKind::Asset, values, "assets")))
                (chooser(snapshot, EntityKind::Node, "nodes", "Nodes", &names(snapshot, EntityKind::Node, values, "nodes")))
            }
            fieldset { legend { "Accounts" }
                @for (special, label) in SPECIAL_ACCOUNTS {
                    (checkbox(label, &format!("account{special}"), accounts.iter().any(|a| a == special)))
                }
                (input("Specified accounts (comma-separated)", "accounts_named", "text", &specified.join(", ")))
                (input("Excluded accounts (comma-separated)", "accounts_excluded", "text", &excluded.join(", ")))
            }
            fieldset { legend { "Protocols" }
                (checkbox("All protocols", "protocol_all", all_protocols))
                @for protocol in PROTOCOLS {
                    label { input type="checkbox" name="protocol" value=(protocol) checked[!all_protocols && protocols.split(", ").any(|p| p == *protocol)]; " " (protocol) } " "
                }
            }
            fieldset { legend { "Actions" }
                (checkbox("All actions", "action_all", all_actions))
                @for name in ACTIONS {
                    label { input type="checkbox" name="action" value=(name) checked[!all_actions && actions.split(", ").any(|a| a == *name)]; " " (name) } " "
                }
            }
            (input("Starts at (UTC, empty: now)", "starts_at", "datetime-local", &local_input(&text(values, "starts_at"))))
            (input("Expires at (UTC, empty: never)", "expires_at", "datetime-local", &local_input(&text(values, "expires_at"))))
            (checkbox("Active", "active", values.get("active") != Some(&json!(false))))
            (input("Description", "description", "text", &text(values, "description")))
            p { button type="submit" { (if creating { "Create" } else { "Save" }) } }
        }
    }
}

/// The rule spec of a form.
fn spec_of(fields: &Fields) -> Value {
    let chosen = |field: &str| {
        let mut all = fields.all(field);
        all.extend(fields.list(&format!("{field}_typed")));
        all.dedup();
        all
    };
    let mut accounts: Vec<String> = SPECIAL_ACCOUNTS
        .iter()
        .filter(|(special, _)| fields.ticked(&format!("account{special}")))
        .map(|(special, _)| (*special).to_owned())
        .collect();
    accounts.extend(fields.list("accounts_named"));
    accounts.extend(
        fields
            .list("accounts_excluded")
            .into_iter()
            .map(|name| format!("!{name}")),
    );
    let protocols = if fields.ticked("protocol_all") {
        vec!["all".to_owned()]
    } else {
        fields.all("protocol")
    };
    let actions = if fields.ticked("action_all") {
        vec!["all".to_owned()]
    } else {
        fields.all("action")
    };
    let time = |field: &str| {
        fields
            .get(field)
            .map_or(Value::Null, |value| json!(instant(value)))
    };
    let mut spec = json!({
        "name": fields.get("name").unwrap_or(""),
        "effect": fields.get("effect").unwrap_or("allow"),
        "users": chosen("users"),
        "groups": chosen("groups"),
        "assets": chosen("assets"),
        "nodes": chosen("nodes"),
        "accounts": accounts,
        "protocols": protocols,
        "actions": actions,
        "starts_at": time("starts_at"),
        "expires_at": time("expires_at"),
        "active": fields.ticked("active"),
        "description": fields.get("description").unwrap_or(""),
    });
    // An empty start is no start: a new rule starts at once, an edited one keeps its
    // own.
    if spec["starts_at"].is_null() {
        if let Some(fields) = spec.as_object_mut() {
            fields.remove("starts_at");
        }
    }
    spec
}

async fn new_page(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    page_response(
        &viewer,
        "Create a rule",
        form(
            &state.snapshot(),
            &viewer,
            "/ui/rules",
            &json!({"active": true}),
            true,
            None,
        ),
    )
}

async fn create(Console { state, viewer }: Console, fields: Fields) -> Response {
    let spec = spec_of(&fields);
    let snapshot = state.snapshot();
    let written = write_form(state, &viewer, KIND, None, spec.clone()).await;
    answer_form(
        &viewer,
        written,
        &link(&text(&spec, "name")),
        "Create a rule",
        |problem| form(&snapshot, &viewer, "/ui/rules", &spec, true, Some(problem)),
    )
}

async fn edit_page(
    Console { state, viewer }: Console,
    Path(rule): Path<String>,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let spec = snapshot.spec(KIND, &rule)?.to_json();
    Ok(page_response(
        &viewer,
        &format!("Edit {rule}"),
        form(&snapshot, &viewer, &link(&rule), &spec, false, None),
    ))
}

async fn update(
    Console { state, viewer }: Console,
    Path(rule): Path<String>,
    fields: Fields,
) -> Response {
    let spec = spec_of(&fields);
    let snapshot = state.snapshot();
    let written = write_form(state, &viewer, KIND, Some(&rule), spec.clone()).await;
    answer_form(
        &viewer,
        written,
        &link(&text(&spec, "name")),
        &format!("Edit {rule}"),
        |problem| {
            form(
                &snapshot,
                &viewer,
                &link(&rule),
                &spec,
                false,
                Some(problem),
            )
        },
    )
}

async fn clone(
    Console { state, viewer }: Console,
    Path(rule): Path<String>,
    fields: Fields,
) -> Result<Response, Refusal> {
    let name = fields.get("name").unwrap_or("").to_owned();
    let _written = crate::admin::clone(
        KIND,
        State(state),
        ApiPath(rule),
        Extension(viewer.caller.clone()),
        JsonBody(crate::admin::CloneRequest::named(name.clone())),
    )
    .await?;
    Ok(redirect(&format!("{}/edit", link(&name))))
}

async fn details(
    Console { state, viewer }: Console,
    Path(rule): Path<String>,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let json = snapshot.entity_json(KIND, &rule)?;
    let name = text(&json, "name");
    let base = link(&name);
    let active = json["active"] == json!(true);
    let row = |label: &str, value: String| html! { tr { th { (label) } td { (value) } } };
    Ok(page_response(
        &viewer,
        &format!("Rule {name}"),
        html! {
            p.actions {
                @if viewer.may("rules.change") {
                    a href=(format!("{base}/edit")) { "Edit" } " "
                    (action(&viewer, &format!("{base}/active"), if active { "Deactivate" } else { "Activate" }, &[("active", if active { "false" } else { "true" })]))
                }
                @if viewer.may("rules.add") {
                    form.inline method="post" action=(format!("{base}/clone")) {
                        (viewer.csrf_field())
                        label for="f-clone" { "Clone as " }
                        input id="f-clone" type="text" name="name" value=(format!("{name}-copy"));
                        " " button type="submit" { "Clone" }
                    }
                }
            }
            table {
                (row("Effect", text(&json, "effect")))
                (row("Users", names(&snapshot, EntityKind::User, &json, "users").join(", ")))
                (row("User groups", names(&snapshot, EntityKind::Group, &json, "groups").join(", ")))
                (row("Assets", names(&snapshot, EntityKind::Asset, &json, "assets").join(", ")))
                (row("Nodes", names(&snapshot, EntityKind::Node, &json, "nodes").join(", ")))
                (row("Accounts", super::html::joined(&json, "accounts")))
                (row("Protocols", protocols_text(&json)))
                (row("Actions", super::html::joined(&json, "actions")))
                (row("Starts at", text(&json, "starts_at")))
                (row("Expires at", text(&json, "expires_at")))
                (row("Active", text(&json, "active")))
                (row("Description", text(&json, "description")))
            }
        },
    ))
}

pub(crate) fn routes() -> Vec<Route> {
    use super::route;
    vec![
        route(Method::GET, "/ui/rules", permission("view"), "Rules", list),
        route(
            Method::GET,
            "/ui/rules/new",
            permission("add"),
            "The form of a new rule, with choosers",
            new_page,
        ),
        route(
            Method::POST,
            "/ui/rules",
            permission("add"),
            "Create a rule (form)",
            create,
        ),
        route(
            Method::GET,
            "/ui/rules/{rule}",
            permission("view"),
            "A rule",
            details,
        ),
        route(
            Method::GET,
            "/ui/rules/{rule}/edit",
            permission("change"),
            "The form of a rule",
            edit_page,
        ),
        route(
            Method::POST,
            "/ui/rules/{rule}",
            permission("change"),
            "Change a rule (form)",
            update,
        ),
        super::html::activate_route(KIND, "/ui/rules/{rule}/active", link),
        route(
            Method::POST,
            "/ui/rules/{rule}/clone",
            permission("add"),
            "Copy a rule under a new name (form)",
            clone,
        ),
    ]
}
