//! User groups: the list with their number of users, create, edit, members with an
//! expiry each, subgroups, roles on scopes as a permissions table (scope × roles, rows
//! added and removed), and the details page with the group's operation log.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use portcullis_engine::{EntityKind, RoleAssignment, Time};
use serde_json::{Value, json};

use super::html::{
    Console, Fields, Refusal, Viewer, action, input, instant, listing, page_response, pager, param,
    problem, redirect, search_form, text,
};
use super::html::{answer_form, write_form};
use super::log::{ChangeFilter, recent, table};
use super::users::{PAGE, percent_path};
use crate::AppState;
use crate::auth::Access;
use crate::extract::{ApiPath, JsonBody, RawQuery};
use crate::routes::Route;

const KIND: EntityKind = EntityKind::Group;
/// Member rows on the create form.
const MEMBER_ROWS: usize = 4;

fn permission(verb: &str) -> Access {
    Access::Permission(format!("groups.{verb}"))
}

/// The group `name` refers to.
fn group_of(
    snapshot: &portcullis_engine::Snapshot,
    name: &str,
) -> Result<std::sync::Arc<portcullis_engine::Group>, portcullis_engine::NotFound> {
    snapshot
        .group(name)
        .ok_or_else(|| portcullis_engine::NotFound::new(KIND, name))
}

pub(crate) fn link(name: &str) -> String {
    format!("/ui/groups/{}", percent_path(name))
}

async fn list(
    Console { state, viewer }: Console,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let (query, page) = listing(state, KIND, query, &["search", "offset"], PAGE).await?;
    let search = param(&query, "search");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let count = |group: &Value, field: &str| group[field].as_array().map_or(0, Vec::len);
    Ok(page_response(
        &viewer,
        "User groups",
        html! {
            @if viewer.may("groups.add") {
                p.actions { a href="/ui/groups/new" { "Create a group" } }
            }
            (search_form("/ui/groups", &search))
            table {
                thead { tr { th { "Name" } th { "Users" } th { "Subgroups" } th { "Roles on scopes" } th { "Source" } th { "Description" } } }
                tbody {
                    @for group in &items {
                        tr {
                            td { a href=(link(&text(group, "name"))) { (text(group, "name")) } }
                            td { (count(group, "members")) }
                            td { (count(group, "subgroups")) }
                            td { (count(group, "roles")) }
                            td { (text(group, "source")) }
                            td { (text(group, "description")) }
                        }
                    }
                }
            }
            (pager("/ui/groups", &query, page["total"].as_u64().unwrap_or(0), page["offset"].as_u64().unwrap_or(0), PAGE))
        },
    ))
}

fn create_form(viewer: &Viewer, values: &Fields, message: Option<&str>) -> Markup {
    let members = values
        .0
        .iter()
        .filter(|(k, _)| k == "member")
        .map(|(_, v)| v.clone())
        .collect::<Vec<_>>();
    let expiries = values
        .0
        .iter()
        .filter(|(k, _)| k == "member_expires_at")
        .map(|(_, v)| v.clone())
        .collect::<Vec<_>>();
    html! {
        (problem(message))
        form method="post" action="/ui/groups" {
            (viewer.csrf_field())
            (input("Name", "name", "text", values.get("name").unwrap_or("")))
            (input("Description", "description", "text", values.get("description").unwrap_or("")))
            (input("Subgroups (comma-separated)", "subgroups", "text", values.get("subgroups").unwrap_or("")))
            fieldset {
                legend { "Members (leave the expiry empty for a permanent member)" }
                @for row in 0..MEMBER_ROWS {
                    p.field {
                        label for=(format!("f-member-{row}")) { "User " (row + 1) }
                        input id=(format!("f-member-{row}")) type="text" name="member" value=(members.get(row).map_or("", String::as_str));
                    }
                    p.field {
                        label for=(format!("f-member-expiry-{row}")) { "Member " (row + 1) " expires at (UTC)" }
                        input id=(format!("f-member-expiry-{row}")) type="datetime-local" name="member_expires_at" value=(expiries.get(row).map_or("", String::as_str));
                    }
                }
            }
            p { button type="submit" { "Create" } }
        }
    }
}

async fn new_page(Extension(viewer): Extension<Viewer>) -> Response {
    page_response(
        &viewer,
        "Create a group",
        create_form(&viewer, &Fields::default(), None),
    )
}

async fn create(Console { state, viewer }: Console, fields: Fields) -> Response {
    let users = fields
        .0
        .iter()
        .filter(|(k, _)| k == "member")
        .map(|(_, v)| v.trim().to_owned());
    let expiries = fields
        .0
        .iter()
        .filter(|(k, _)| k == "member_expires_at")
        .map(|(_, v)| v.trim().to_owned());
    let members: Vec<Value> = users
        .zip(expiries.chain(std::iter::repeat(String::new())))
        .filter(|(user, _)| !user.is_empty())
        .map(|(user, expiry)| {
            if expiry.is_empty() {
                json!(user)
            } else {
                json!({"user": user, "expires_at": instant(&expiry)})
            }
        })
        .collect();
    let name = fields.get("name").unwrap_or("").to_owned();
    let spec = json!({
        "name": name,
        "description": fields.get("description").unwrap_or(""),
        "members": members,
        "subgroups": fields.list("subgroups"),
    });
    let written = write_form(state, &viewer, KIND, None, spec.clone()).await;
    answer_form(
        &viewer,
        written,
        &link(&name),
        "Create a group",
        |problem| create_form(&viewer, &fields, Some(problem)),
    )
}

fn edit_form(
    viewer: &Viewer,
    group: &str,
    name: &str,
    description: &str,
    subgroups: &str,
    message: Option<&str>,
) -> Markup {
    html! {
        (problem(message))
        form method="post" action=(link(group)) {
            (viewer.csrf_field())
            (input("Name", "name", "text", name))
            (input("Description", "description", "text", description))
            (input("Subgroups (comma-separated)", "subgroups", "text", subgroups))
            p { button type="submit" { "Save" } }
        }
    }
}

async fn edit_page(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let found = group_of(&snapshot, &group)?;
    let subgroups: Vec<&str> = found
        .subgroups
        .iter()
        .filter_map(|member| snapshot.group_name_by_id(member.group))
        .collect();
    Ok(page_response(
        &viewer,
        &format!("Edit {}", found.name),
        edit_form(
            &viewer,
            &group,
            &found.name,
            &found.description,
            &subgroups.join(", "),
            None,
        ),
    ))
}

async fn update(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
    fields: Fields,
) -> Response {
    let name = fields.get("name").unwrap_or("").to_owned();
    let patch = json!({
        "name": name,
        "description": fields.get("description").unwrap_or(""),
        "subgroups": fields.list("subgroups"),
    });
    let written = write_form(state, &viewer, KIND, Some(&group), patch.clone()).await;
    answer_form(
        &viewer,
        written,
        &link(&name),
        &format!("Edit {group}"),
        |problem| {
            edit_form(
                &viewer,
                &group,
                &name,
                fields.get("description").unwrap_or(""),
                fields.get("subgroups").unwrap_or(""),
                Some(problem),
            )
        },
    )
}

async fn add_member(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
    fields: Fields,
) -> Result<Response, Refusal> {
    let user = fields.get("user").unwrap_or("").to_owned();
    let expires_at = match fields.get("expires_at") {
        Some(text) => Some(
            serde_json::from_value::<Time>(json!(instant(text))).map_err(|error| {
                crate::error::ApiError::InvalidBody(format!("expires_at: {error}"))
            })?,
        ),
        None => None,
    };
    let member = crate::admin::MemberRequest::Detailed(crate::admin::DetailedMember {
        user,
        expires_at,
        source: None,
    });
    let _written = crate::admin::add_member(
        State(state),
        ApiPath(group.clone()),
        Extension(viewer.caller.clone()),
        JsonBody(member),
    )
    .await?;
    Ok(redirect(&link(&group)))
}

async fn remove_member(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
    fields: Fields,
) -> Result<Response, Refusal> {
    let user = fields.get("user").unwrap_or("").to_owned();
    let _written = crate::admin::remove_member(
        State(state),
        ApiPath((group.clone(), user)),
        Extension(viewer.caller.clone()),
    )
    .await?;
    Ok(redirect(&link(&group)))
}

/// Replaces the roles of one scope (none: the row goes), as a merge patch of the
/// group's role assignments.
async fn set_scope(
    state: AppState,
    viewer: &Viewer,
    group: &str,
    scope: &str,
    roles: Vec<String>,
) -> Result<Response, Refusal> {
    let found = group_of(&state.snapshot(), group)?;
    let mut assignments: Vec<RoleAssignment> = found
        .roles
        .iter()
        .filter(|a| a.scope != scope)
        .cloned()
        .collect();
    if !roles.is_empty() {
        assignments.push(RoleAssignment {
            scope: scope.to_owned(),
            roles,
        });
    }
    write_form(
        state,
        viewer,
        KIND,
        Some(group),
        json!({"roles": assignments}),
    )
    .await?;
    Ok(redirect(&link(group)))
}

async fn add_roles(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
    fields: Fields,
) -> Result<Response, Refusal> {
    let scope = fields.get("scope").unwrap_or("*").to_owned();
    set_scope(state, &viewer, &group, &scope, fields.all("role")).await
}

async fn remove_roles(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
    fields: Fields,
) -> Result<Response, Refusal> {
    let scope = fields.get("scope").unwrap_or("").to_owned();
    set_scope(state, &viewer, &group, &scope, Vec::new()).await
}

async fn details(
    Console { state, viewer }: Console,
    Path(group): Path<String>,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let found = group_of(&snapshot, &group)?;
    let base = link(&found.name);
    let role_names: Vec<String> = snapshot
        .list_json(
            EntityKind::Role,
            &portcullis_engine::ListQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .items
        .iter()
        .map(|role| text(role, "name"))
        .collect();
    let log = if viewer.may("changes.view") {
        Some(
            recent(
                &state,
                &ChangeFilter {
                    entity: Some("group".to_owned()),
                    name: Some(found.id.to_string()),
                    actor: None,
                },
            )
            .await?,
        )
    } else {
        None
    };
    let change = viewer.may("groups.change");
    let now = Time::now();
    Ok(page_response(
        &viewer,
        &format!("Group {}", found.name),
        html! {
            @if change {
                p.actions { a href=(format!("{base}/edit")) { "Edit" } }
            }
            table {
                tr { th { "Name" } td { (found.name) } }
                tr { th { "Users" } td id="member-count" { (found.members.len()) } }
                tr { th { "Source" } td { (found.source.to_string()) } }
                tr { th { "Description" } td { (found.description) } }
            }
            h2 { "Members" }
            table id="members" {
                thead { tr { th { "User" } th { "Expires at" } th { "Source" } @if change { th { "" } } } }
                tbody {
                    @for member in &found.members {
                        @let name = snapshot.username_by_id(member.user).unwrap_or("?").to_owned();
                        tr {
                            td { a href=(super::users::link(&name)) { (name) } }
                            td {
                                @match member.expires_at {
                                    Some(at) => { (at.to_string()) @if at <= now { span.muted { " (expired)" } } }
                                    None => { span.muted { "permanent" } }
                                }
                            }
                            td { (member.source.to_string()) }
                            @if change { td { (action(&viewer, &format!("{base}/members/remove"), "Remove", &[("user", &name)])) } }
                        }
                    }
                }
            }
            @if change {
                form.filters method="post" action=(format!("{base}/members")) {
                    (viewer.csrf_field())
                    div { label for="f-user" { "Add user" } input id="f-user" type="text" name="user"; }
                    div { label for="f-expires" { "Expires at (UTC, empty: permanent)" } input id="f-expires" type="datetime-local" name="expires_at"; }
                    div { button type="submit" { "Add member" } }
                }
            }
            h2 { "Subgroups" }
            @if found.subgroups.is_empty() { p.muted { "None." } }
            ul {
                @for sub in &found.subgroups {
                    @let name = snapshot.group_name_by_id(sub.group).unwrap_or("?").to_owned();
                    li { a href=(link(&name)) { (name) } }
                }
            }
            h2 { "Roles on scopes" }
            table id="roles" {
                thead { tr { th { "Scope" } @for role in &role_names { th { (role) } } @if change { th { "" } } } }
                tbody {
                    @for assignment in &found.roles {
                        tr {
                            td { code { (assignment.scope) } }
                            @for role in &role_names {
                                td { (if assignment.roles.contains(role) { "✓" } else { "" }) }
                            }
                            @if change { td { (action(&viewer, &format!("{base}/roles/remove"), "Remove row", &[("scope", &assignment.scope)])) } }
                        }
                    }
                }
            }
            @if change {
                form method="post" action=(format!("{base}/roles")) {
                    (viewer.csrf_field())
                    (input("Scope (`*` or a node path such as /Default/Prod)", "scope", "text", ""))
                    fieldset {
                        legend { "Roles on that scope" }
                        @for role in &role_names {
                            label { input type="checkbox" name="role" value=(role); " " (role) } " "
                        }
                    }
                    p { button type="submit" { "Set roles on scope" } }
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
            "/ui/groups",
            permission("view"),
            "User groups with their number of users",
            list,
        ),
        route(
            Method::GET,
            "/ui/groups/new",
            permission("add"),
            "The form of a new group",
            new_page,
        ),
        route(
            Method::POST,
            "/ui/groups",
            permission("add"),
            "Create a group with members (form)",
            create,
        ),
        route(
            Method::GET,
            "/ui/groups/{group}",
            permission("view"),
            "A group's details: members, subgroups, roles on scopes, operation log",
            details,
        ),
        route(
            Method::GET,
            "/ui/groups/{group}/edit",
            permission("change"),
            "The form of a group",
            edit_page,
        ),
        route(
            Method::POST,
            "/ui/groups/{group}",
            permission("change"),
            "Change a group (form)",
            update,
        ),
        route(
            Method::POST,
            "/ui/groups/{group}/members",
            permission("change"),
            "Add a member, or change its expiry (form)",
            add_member,
        ),
        route(
            Method::POST,
            "/ui/groups/{group}/members/remove",
            permission("change"),
            "Remove a member (form)",
            remove_member,
        ),
        route(
            Method::POST,
            "/ui/groups/{group}/roles",
            permission("change"),
            "Set a group's roles on a scope (form)",
            add_roles,
        ),
        route(
            Method::POST,
            "/ui/groups/{group}/roles/remove",
            permission("change"),
            "Remove a scope's row of roles (form)",
            remove_roles,
        ),
    ]
}
