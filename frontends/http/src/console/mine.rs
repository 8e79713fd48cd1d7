//! My assets: what the signed-in user may reach, by node, with the accounts and
//! protocols of each asset — every user's own page, whatever their roles (the
//! decision API's own views, asked for the viewer only).

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::html::{Console, Refusal, joined, page_response, pager, text};
use super::users::percent_path;
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::extract::{ApiPath, RawQuery};
use crate::routes::Route;

/// Assets on a page of "my assets" (each with its accounts).
pub(crate) const MY_PAGE: usize = 25;

#[derive(Deserialize)]
struct MineQuery {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    offset: Option<u64>,
}

async fn my_assets(
    Console { state, viewer }: Console,
    Query(query): Query<MineQuery>,
) -> Result<Response, Refusal> {
    let Principal::User { id, .. } = &viewer.caller.principal else {
        return Err(ApiError::Unauthenticated("sign in first").into());
    };
    let user = id.to_string();
    let node = query.node.clone().filter(|node| !node.trim().is_empty());
    let offset = query.offset.unwrap_or(0);
    let nodes = crate::decisions::list(
        crate::decisions::DecisionList::UserNodes,
        State(state.clone()),
        ApiPath(user.clone()),
        RawQuery(vec![("limit".to_owned(), "1000".to_owned())]),
    )
    .await?
    .0;
    let mut asked = vec![
        ("offset".to_owned(), offset.to_string()),
        ("limit".to_owned(), MY_PAGE.to_string()),
    ];
    if let Some(node) = &node {
        asked.push(("node".to_owned(), node.clone()));
    }
    let page = crate::decisions::list(
        crate::decisions::DecisionList::UserAssets,
        State(state.clone()),
        ApiPath(user.clone()),
        RawQuery(asked),
    )
    .await?
    .0;
    let mut rows = Vec::new();
    for asset in page["items"].as_array().into_iter().flatten() {
        let accounts = crate::decisions::user_accounts(
            State(state.clone()),
            ApiPath((user.clone(), text(asset, "id"))),
            RawQuery(Vec::new()),
        )
        .await?
        .0;
        rows.push((asset.clone(), accounts));
    }
    let keep: Vec<(String, String)> = node
        .iter()
        .map(|node| ("node".to_owned(), node.clone()))
        .collect();
    let protocols = |grant: &Value| {
        grant["protocols"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| text(p, "protocol"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(page_response(
        &viewer,
        "My assets",
        html! {
            nav aria-label="My nodes" {
                h2 { "By node" }
                ul id="my-nodes" {
                    li { @if node.is_none() { strong { "All" } } @else { a href="/ui/me/assets" { "All" } } }
                    @for item in nodes["items"].as_array().into_iter().flatten() {
                        @let path = text(item, "path");
                        li {
                            @if node.as_deref() == Some(path.as_str()) { strong { (path) } }
                            @else { a href=(format!("/ui/me/assets?node={}", percent_path(&path))) { (path) } }
                            " (" (text(item, "assets")) ")"
                        }
                    }
                }
            }
            h2 { "Assets" }
            table id="my-assets" {
                thead { tr { th { "Asset" } th { "Address" } th { "Platform" } th { "Accounts: protocols" } } }
                tbody {
                    @for (asset, accounts) in &rows {
                        tr {
                            td { (text(asset, "name")) }
                            td { (text(asset, "address")) }
                            td { (text(asset, "platform")) }
                            td {
                                ul {
                                    @for grant in accounts["items"].as_array().into_iter().flatten() {
                                        li { strong { (text(grant, "username")) } ": " (protocols(grant)) span.muted { " (" (joined(grant, "actions")) ")" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (pager("/ui/me/assets", &keep, page["total"].as_u64().unwrap_or(0), offset, MY_PAGE))
        },
    ))
}

pub(crate) fn routes() -> Vec<Route> {
    vec![super::route(
        Method::GET,
        "/ui/me/assets",
        Access::Authenticated,
        "My assets: what I may reach, by node, with accounts and protocols",
        my_assets,
    )]
}
