//! Nodes and assets: the node tree with each node's assets, and an asset's details
//! with its accounts and protocols and who may reach it.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::html;
use portcullis_engine::{EntityKind, ListQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{Console, Refusal, joined, page_response, pager, text};
use super::users::{PAGE, percent_path};
use crate::auth::Access;
use crate::extract::{ApiPath, RawQuery};
use crate::routes::Route;

/// The most nodes the tree shows.
const TREE: usize = 5000;

pub(crate) fn asset_link(name: &str) -> String {
    format!("/ui/assets/{}", percent_path(name))
}

#[derive(Deserialize)]
struct TreeQuery {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
}

async fn tree(
    Console { state, viewer }: Console,
    Query(query): Query<TreeQuery>,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let mut nodes: Vec<Value> = snapshot
        .list_json(
            EntityKind::Node,
            &ListQuery {
                limit: TREE,
                ..ListQuery::default()
            },
        )
        .items;
    nodes.sort_by_key(|node| text(node, "path"));
    let chosen = query
        .node
        .clone()
        .filter(|node| !node.trim().is_empty())
        .unwrap_or_else(|| "/Default".to_owned());
    let node = snapshot.entity_json(EntityKind::Node, &chosen)?;
    let node_id = text(&node, "id");
    let offset = query.offset.unwrap_or(0);
    let page = snapshot.list_json(
        EntityKind::Asset,
        &ListQuery {
            fields: vec![("nodes".to_owned(), node_id)],
            offset,
            limit: PAGE,
            ..ListQuery::default()
        },
    );
    let depth = |node: &Value| text(node, "path").matches('/').count().saturating_sub(1);
    let keep = vec![("node".to_owned(), chosen.clone())];
    Ok(page_response(
        &viewer,
        "Nodes and assets",
        html! {
            div.columns {
                nav aria-label="Node tree" {
                    h2 { "Nodes" }
                    ul.tree id="node-tree" {
                        @for node in &nodes {
                            @let path = text(node, "path");
                            li data-depth=(depth(node)) {
                                (("\u{a0}\u{a0}").repeat(depth(node)))
                                @if path == chosen { strong { (text(node, "name")) } }
                                @else { a href=(format!("/ui/nodes?node={}", percent_path(&path))) { (text(node, "name")) } }
                            }
                        }
                    }
                }
                section {
                    h2 { "Assets in " (text(&node, "path")) }
                    table id="assets" {
                        thead { tr { th { "Name" } th { "Address" } th { "Platform" } th { "Protocols" } th { "Active" } } }
                        tbody {
                            @for asset in &page.items {
                                tr {
                                    td { a href=(asset_link(&text(asset, "name"))) { (text(asset, "name")) } }
                                    td { (text(asset, "address")) }
                                    td { (text(asset, "platform")) }
                                    td { (joined(asset, "protocols")) }
                                    td { (if asset["active"] == json!(true) { "yes" } else { "no" }) }
                                }
                            }
                        }
                    }
                    (pager("/ui/nodes", &keep, page.total, offset, PAGE))
                }
            }
        },
    ))
}

async fn asset(
    Console { state, viewer }: Console,
    Path(asset): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let snapshot = state.snapshot();
    let json = snapshot.entity_json(EntityKind::Asset, &asset)?;
    let id = text(&json, "id");
    let offset: u64 = query
        .iter()
        .find(|(k, _)| k == "offset")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let users = if viewer.may("decisions.check") {
        let asked = vec![
            ("offset".to_owned(), offset.to_string()),
            ("limit".to_owned(), PAGE.to_string()),
        ];
        Some(
            crate::decisions::list(
                crate::decisions::DecisionList::AssetUsers,
                State(state.clone()),
                ApiPath(id.clone()),
                RawQuery(asked),
            )
            .await?
            .0,
        )
    } else {
        None
    };
    let nodes: Vec<String> = json["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|node| super::rules::name_of(&snapshot, EntityKind::Node, node))
        .collect();
    let name = text(&json, "name");
    Ok(page_response(
        &viewer,
        &format!("Asset {name}"),
        html! {
            table {
                tr { th { "Name" } td { (name) } }
                tr { th { "Address" } td { (text(&json, "address")) } }
                tr { th { "Platform" } td { (text(&json, "platform")) } }
                tr { th { "Protocols" } td id="protocols" { (joined(&json, "protocols")) } }
                tr { th { "Nodes" } td { (nodes.join(", ")) } }
                tr { th { "Active" } td { (text(&json, "active")) } }
                tr { th { "Description" } td { (text(&json, "description")) } }
            }
            h2 { "Accounts" }
            table id="accounts" {
                thead { tr { th { "Username" } th { "Privileged" } th { "Secret kind" } } }
                tbody {
                    @for account in json["accounts"].as_array().into_iter().flatten() {
                        tr { td { (text(account, "username")) } td { (text(account, "privileged")) } td { (text(account, "secret_kind")) } }
                    }
                }
            }
            @if let Some(page) = &users {
                h2 { "Who may reach this asset" }
                table id="reaching" {
                    thead { tr { th { "Username" } th { "Name" } } }
                    tbody {
                        @for user in page["items"].as_array().into_iter().flatten() {
                            tr {
                                td {
                                    @if viewer.may("users.view") { a href=(super::users::link(&text(user, "username"))) { (text(user, "username")) } }
                                    @else { (text(user, "username")) }
                                }
                                td { (text(user, "name")) }
                            }
                        }
                    }
                }
                (pager(&asset_link(&name), &[], page["total"].as_u64().unwrap_or(0), offset, PAGE))
            }
        },
    ))
}

pub(crate) fn routes() -> Vec<Route> {
    use super::route;
    vec![
        route(
            Method::GET,
            "/ui/nodes",
            Access::Permission("nodes.view".to_owned()),
            "The node tree with a node's assets",
            tree,
        ),
        route(
            Method::GET,
            "/ui/assets/{asset}",
            Access::Permission("assets.view".to_owned()),
            "An asset with its accounts and protocols, and who may reach it",
            asset,
        ),
    ]
}
