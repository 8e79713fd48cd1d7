//! The decision API: check, batch check, explain, what a user may reach, who may reach
//! an asset, and role checks. Every answer comes from one snapshot and names its
//! revision.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portcullis_engine::{
    Actions, Decision, Evaluator, Explanation, Query, Snapshot, Time, protocol_name,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, JsonBody, Params, RawQuery};

/// A check on the wire: the body of `POST /api/v1/check` and `/explain`, one item of
/// `/api/v1/check/batch`, what `portcullis check` sends a server or asks its store,
/// the check fuzz target's input, and the OpenAPI document's `CheckRequest` (a test
/// holds the document's properties to these fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The user, by username or id.
    pub user: String,
    /// The asset, by name or id.
    pub asset: String,
    /// The account's username on the asset, or `@INPUT` / `@ANON`.
    pub account: String,
    /// The protocol, such as `ssh` or `rdp`.
    pub protocol: String,
    /// An action name (`connect`, `upload`, … or a group of them: `transfer`, `all`).
    pub action: String,
    /// The instant to judge at; now when absent (in a batch: the batch's `at`, then
    /// now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// Answer from a snapshot at this revision or later (read-your-writes). Not in a
    /// batch's items: a batch has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_revision: Option<u64>,
}

/// A check's refusal before it reaches the estate: an unknown action or a malformed
/// protocol name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequestError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for CheckRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for CheckRequestError {}

impl CheckRequest {
    /// The action and the protocol, in the engine's terms.
    pub fn action_and_protocol(&self) -> Result<(Actions, Box<str>), CheckRequestError> {
        let action = Actions::parse_name(&self.action).map_err(|error| CheckRequestError {
            field: "action",
            message: error.to_string(),
        })?;
        let protocol = protocol_name(&self.protocol).map_err(|error| CheckRequestError {
            field: "protocol",
            message: error.to_string(),
        })?;
        Ok((action, protocol))
    }

    /// The query this request asks, given its checked action and protocol; at `now()`
    /// when it names no instant.
    pub fn query<'a>(
        &'a self,
        action: Actions,
        protocol: &'a str,
        now: impl FnOnce() -> Time,
    ) -> Query<'a> {
        Query {
            user: &self.user,
            asset: &self.asset,
            account: &self.account,
            protocol,
            action,
            at: self.at.unwrap_or_else(now),
        }
    }
}

impl From<CheckRequestError> for ApiError {
    fn from(error: CheckRequestError) -> ApiError {
        ApiError::InvalidBody(error.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    checks: Vec<CheckRequest>,
    /// The default instant of every check that names none.
    #[serde(default)]
    at: Option<Time>,
    #[serde(default)]
    min_revision: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionRequest {
    user: String,
    permission: String,
    #[serde(default = "global_scope")]
    scope: String,
    #[serde(default)]
    at: Option<Time>,
    #[serde(default)]
    min_revision: Option<u64>,
}

fn global_scope() -> String {
    portcullis_engine::GLOBAL_SCOPE.to_owned()
}

/// A decision as the check API answers it: `{allowed, actions, revision, valid_until}`.
pub fn decision_json(decision: &Decision) -> Value {
    json!({
        "allowed": decision.allowed,
        "actions": decision.actions,
        "revision": decision.revision,
        "valid_until": decision.valid_until,
    })
}

pub(crate) async fn check(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CheckRequest>,
) -> Result<Json<Value>, ApiError> {
    let (action, protocol) = body.action_and_protocol()?;
    let snapshot = state.snapshot_at_least(body.min_revision).await?;
    let decision = snapshot.check(&body.query(action, &protocol, Time::now))?;
    state.metrics().decision(decision.allowed);
    Ok(Json(decision_json(&decision)))
}

pub(crate) async fn check_batch(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BatchRequest>,
) -> Result<Json<Value>, ApiError> {
    let max = state.settings().max_page_size;
    if body.checks.len() > max {
        return Err(ApiError::InvalidBody(format!(
            "checks: a batch holds at most {max} checks"
        )));
    }
    if let Some(index) = body.checks.iter().position(|c| c.min_revision.is_some()) {
        return Err(ApiError::InvalidBody(format!(
            "checks[{index}].min_revision: give it on the batch, which has one"
        )));
    }
    let snapshot = state.snapshot_at_least(body.min_revision).await?;
    let now = Time::now();
    let results: Vec<Value> = body
        .checks
        .iter()
        .map(|item| {
            let answer = item.action_and_protocol().map_err(ApiError::from).and_then(
                |(action, protocol)| {
                    let query = item.query(action, &protocol, || body.at.unwrap_or(now));
                    snapshot.check(&query).map_err(ApiError::from)
                },
            );
            match answer {
                Ok(decision) => {
                    state.metrics().decision(decision.allowed);
                    decision_json(&decision)
                }
                Err(error) => crate::error::error_body(&error),
            }
        })
        .collect();
    Ok(Json(
        json!({"revision": snapshot.revision(), "results": results}),
    ))
}

/// An explanation as the explain API answers it: the decision, the reason codes of a
/// denial, and each rule's verdict with the group path that reached the user.
pub fn explanation_json(explanation: &Explanation) -> Value {
    let rules: Vec<Value> = explanation
        .rules
        .iter()
        .map(|verdict| {
            json!({
                "rule": verdict.rule,
                "name": verdict.name,
                "effect": verdict.effect,
                "applied": verdict.applied,
                "reason": verdict.reason.map(|reason| reason.code()),
                "actions": verdict.actions,
                "via": verdict.via,
            })
        })
        .collect();
    let decision = &explanation.decision;
    let matched: Vec<String> = decision.rules.iter().map(|id| id.to_string()).collect();
    json!({
        "allowed": decision.allowed,
        "actions": decision.actions,
        "revision": decision.revision,
        "valid_until": decision.valid_until,
        "reasons": explanation.reasons.iter().map(|reason| reason.code()).collect::<Vec<_>>(),
        "matched_rules": matched,
        "rules": rules,
    })
}

pub(crate) async fn explain(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CheckRequest>,
) -> Result<Json<Value>, ApiError> {
    let (action, protocol) = body.action_and_protocol()?;
    let snapshot = state.snapshot_at_least(body.min_revision).await?;
    let explanation = snapshot.explain(&body.query(action, &protocol, Time::now))?;
    Ok(Json(explanation_json(&explanation)))
}

pub(crate) async fn check_permission(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PermissionRequest>,
) -> Result<Json<Value>, ApiError> {
    let snapshot = state.snapshot_at_least(body.min_revision).await?;
    let at = body.at.unwrap_or_else(Time::now);
    let roles = snapshot.effective_roles(&body.user, &body.scope, at)?;
    let allowed = snapshot.has_permission(&body.user, &body.scope, &body.permission, at)?;
    Ok(Json(json!({
        "allowed": allowed,
        "roles": roles,
        "revision": snapshot.revision(),
    })))
}

/// The query of the decision lists: `at`, paging and `min_revision`.
struct ListParams {
    params: Params,
    snapshot: Arc<Snapshot>,
    at: Time,
}

async fn list_params(
    state: &AppState,
    query: Vec<(String, String)>,
    known: &[&str],
) -> Result<ListParams, ApiError> {
    let params = Params::paged(state, query, known, false)?;
    let snapshot = state.snapshot_at_least(params.min_revision).await?;
    let at = params.at.unwrap_or_else(Time::now);
    Ok(ListParams {
        params,
        snapshot,
        at,
    })
}

fn page_json(snapshot: &Snapshot, params: &Params, total: u64, items: Vec<Value>) -> Value {
    json!({
        "revision": snapshot.revision(),
        "total": total,
        "offset": params.offset,
        "limit": params.limit,
        "items": items,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("INVARIANT: model types serialize to JSON")
}

/// The paged decision lists: what a user may reach (assets, or the nodes holding
/// them) and who may reach an asset.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DecisionList {
    UserAssets,
    UserNodes,
    AssetUsers,
}

impl DecisionList {
    /// The query parameters the list takes.
    pub(crate) fn query(self) -> &'static [&'static str] {
        match self {
            DecisionList::UserAssets => &["at", "offset", "limit", "min_revision", "node"],
            DecisionList::UserNodes | DecisionList::AssetUsers => {
                &["at", "offset", "limit", "min_revision"]
            }
        }
    }
}

/// A page of a [`DecisionList`] about the user or asset the path names.
pub(crate) async fn list(
    list: DecisionList,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let ListParams {
        params,
        snapshot,
        at,
    } = list_params(&state, query, list.query()).await?;
    let (offset, limit) = (params.offset, params.limit);
    let (total, items) = match list {
        DecisionList::UserAssets => {
            let page =
                snapshot.user_assets_page(&name, params.node.as_deref(), at, offset, limit)?;
            let items = page.items.iter().map(|asset| to_json(&**asset)).collect();
            (page.total, items)
        }
        DecisionList::UserNodes => {
            let nodes = snapshot.user_nodes(&name, at)?;
            let items = nodes
                .iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(limit)
                .map(to_json)
                .collect();
            (nodes.len() as u64, items)
        }
        DecisionList::AssetUsers => {
            let page = snapshot.asset_users_page(&name, at, offset, limit)?;
            let items = page.items.iter().map(|user| to_json(&**user)).collect();
            (page.total, items)
        }
    };
    Ok(Json(page_json(&snapshot, &params, total, items)))
}

pub(crate) async fn user_accounts(
    State(state): State<AppState>,
    ApiPath((user, asset)): ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let ListParams { snapshot, at, .. } =
        list_params(&state, query, &["at", "min_revision"]).await?;
    let grants = snapshot.user_accounts(&user, &asset, at)?;
    let items: Vec<Value> = grants
        .iter()
        .map(|grant| {
            let protocols: Vec<Value> = grant
                .protocols
                .iter()
                .map(|(protocol, actions)| json!({"protocol": protocol, "actions": actions}))
                .collect();
            json!({
                "username": grant.username,
                "account": grant.account,
                "actions": grant.actions,
                "protocols": protocols,
            })
        })
        .collect();
    Ok(Json(
        json!({"revision": snapshot.revision(), "items": items}),
    ))
}
