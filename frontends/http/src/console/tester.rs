//! The access tester: "may U reach X as A over P to do K at time T?" with the
//! explanation rule by rule and the group path, "what may U reach" and "who may
//! reach X" — the decision API's own answers (`decisions.rs`), on a screen.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{
    Console, Refusal, input, instant, joined, local_input, page_response, problem, text,
};
use crate::auth::Access;
use crate::error::ApiError;
use crate::extract::{ApiPath, JsonBody, RawQuery};
use crate::routes::Route;

#[derive(Debug, Default, Deserialize)]
struct TesterQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    asset: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    reach_user: String,
    #[serde(default)]
    reach_asset: String,
}

/// What a reason code means, in words.
fn reason_text(code: &str) -> &'static str {
    match code {
        "no_rule" => "no rule names this user and asset",
        "not_started" => "the rule has not started yet",
        "expired" => "the rule has expired",
        "user_inactive" => "the user is inactive",
        "user_expired" => "the user has expired",
        "asset_inactive" => "the asset is inactive",
        "account_not_granted" => "the rule does not grant this account",
        "protocol_not_granted" => "the rule does not grant this protocol",
        "protocol_not_offered" => "the asset does not offer this protocol",
        "action_not_granted" => "the rule does not grant this action",
        "denied_by" => "a deny rule takes it away",
        _ => "",
    }
}

fn explanation(answer: &Value) -> Markup {
    let allowed = answer["allowed"] == json!(true);
    html! {
        section id="verdict" {
            p {
                @if allowed { span.allowed id="decision" { "Allowed" } } @else { span.denied id="decision" { "Denied" } }
                " — actions granted: " (joined(answer, "actions"))
            }
            @let reasons = answer["reasons"].as_array().cloned().unwrap_or_default();
            @if !reasons.is_empty() {
                p id="reasons" { "Why: "
                    @for reason in &reasons {
                        @let code = reason.as_str().unwrap_or("");
                        code { (code) } " (" (reason_text(code)) ") "
                    }
                }
            }
            table id="explanation" {
                thead { tr { th { "Rule" } th { "Effect" } th { "Applied" } th { "Reason" } th { "Actions" } th { "Through groups" } } }
                tbody {
                    @for rule in answer["rules"].as_array().into_iter().flatten() {
                        tr {
                            td { a href=(super::rules::link(&text(rule, "name"))) { (text(rule, "name")) } }
                            td { (text(rule, "effect")) }
                            td { (if rule["applied"] == json!(true) { "yes" } else { "no" }) }
                            td { @let code = text(rule, "reason"); (code) @if !code.is_empty() { span.muted { " — " (reason_text(&code)) } } }
                            td { (joined(rule, "actions")) }
                            td { (joined(rule, "via")) }
                        }
                    }
                }
            }
        }
    }
}

async fn tester(
    Console { state, viewer }: Console,
    Query(query): Query<TesterQuery>,
) -> Result<Response, Refusal> {
    let asked = !query.user.is_empty() && !query.asset.is_empty();
    let mut message = None;
    let mut answer = None;
    if asked {
        let mut body = json!({
            "user": query.user, "asset": query.asset, "account": query.account,
            "protocol": query.protocol, "action": if query.action.is_empty() { "connect" } else { &query.action },
        });
        if !query.at.trim().is_empty() {
            body["at"] = json!(instant(&query.at));
        }
        let explained = match serde_json::from_value(body) {
            Ok(request) => crate::decisions::explain(State(state.clone()), JsonBody(request))
                .await
                .map(|Json(value)| value),
            Err(error) => Err(ApiError::InvalidBody(error.to_string())),
        };
        match explained {
            Ok(value) => answer = Some(value),
            Err(error) => message = Some(error.message()),
        }
    }
    let reach = |result: Result<Json<Value>, ApiError>| {
        result
            .map(|Json(page)| page)
            .map_err(|error| error.message())
    };
    let reachable = if query.reach_user.is_empty() {
        None
    } else {
        Some(reach(
            crate::decisions::list(
                crate::decisions::DecisionList::UserAssets,
                State(state.clone()),
                ApiPath(query.reach_user.clone()),
                RawQuery(vec![("limit".to_owned(), "200".to_owned())]),
            )
            .await,
        ))
    };
    let reaching = if query.reach_asset.is_empty() {
        None
    } else {
        Some(reach(
            crate::decisions::list(
                crate::decisions::DecisionList::AssetUsers,
                State(state.clone()),
                ApiPath(query.reach_asset.clone()),
                RawQuery(vec![("limit".to_owned(), "200".to_owned())]),
            )
            .await,
        ))
    };
    Ok(page_response(
        &viewer,
        "Access tester",
        html! {
            h2 { "May this user reach this asset?" }
            form method="get" action="/ui/tester" {
                (input("User (username or id)", "user", "text", &query.user))
                (input("Asset (name or id)", "asset", "text", &query.asset))
                (input("Account", "account", "text", &query.account))
                (input("Protocol", "protocol", "text", &query.protocol))
                (input("Action", "action", "text", if query.action.is_empty() { "connect" } else { &query.action }))
                (input("At (UTC, empty: now)", "at", "datetime-local", &local_input(&query.at)))
                p { button type="submit" { "Test" } }
            }
            (problem(message.as_deref()))
            @if let Some(answer) = &answer { (explanation(answer)) }
            h2 { "What may this user reach?" }
            form.filters method="get" action="/ui/tester" {
                div { label for="f-reach-user" { "User" } input id="f-reach-user" type="text" name="reach_user" value=(query.reach_user); }
                div { button type="submit" { "Show assets" } }
            }
            @if let Some(result) = &reachable {
                @match result {
                    Ok(page) => {
                        p { (text(page, "total")) " assets" }
                        ul id="reachable" { @for asset in page["items"].as_array().into_iter().flatten() { li { a href=(super::estate::asset_link(&text(asset, "name"))) { (text(asset, "name")) } } } }
                    }
                    Err(message) => { (problem(Some(message))) }
                }
            }
            h2 { "Who may reach this asset?" }
            form.filters method="get" action="/ui/tester" {
                div { label for="f-reach-asset" { "Asset" } input id="f-reach-asset" type="text" name="reach_asset" value=(query.reach_asset); }
                div { button type="submit" { "Show users" } }
            }
            @if let Some(result) = &reaching {
                @match result {
                    Ok(page) => {
                        p { (text(page, "total")) " users" }
                        ul id="reaching" { @for user in page["items"].as_array().into_iter().flatten() { li { (text(user, "username")) } } }
                    }
                    Err(message) => { (problem(Some(message))) }
                }
            }
        },
    ))
}

pub(crate) fn routes() -> Vec<Route> {
    vec![super::route(
        Method::GET,
        "/ui/tester",
        Access::Permission(portcullis_engine::PERMISSION_CHECK.to_owned()),
        "The access tester: a check with its explanation, what a user may reach, who may reach an asset",
        tester,
    )]
}
