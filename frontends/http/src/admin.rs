//! The admin REST API: list, create, get, replace, patch (JSON merge patch, RFC 7386),
//! delete and clone, the same for every kind of entity, plus group membership.
//!
//! Bodies are the engine's specs (references by name or id, unknown fields refused).
//! A PATCH is applied inside the writer (`Op::Modify`) to the entity's current spec, so
//! a concurrent write is never lost. Every write answers with its revision.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use portcullis_engine::{
    Actor, EntityKind, Error, ListQuery, MemberSpec, Op, Source, Spec, TokenSpec, ValidationError,
    WriteOutcome,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, JsonBody, Params, RawQuery};

/// Runs a blocking engine write on the blocking pool (the engine times it for the
/// metrics).
async fn blocking_write<T: Send + 'static>(
    state: &AppState,
    write: impl FnOnce(&portcullis_engine::Engine) -> Result<T, Error> + Send + 'static,
) -> Result<Result<T, Error>, ApiError> {
    let engine = state.engine().clone();
    crate::timeout::write_started();
    let result = tokio::task::spawn_blocking(move || write(&engine))
        .await
        .map_err(|error| ApiError::Internal(format!("write task failed: {error}")))?;
    Ok(result)
}

/// Writes `op` as `caller`, off the async workers; a refusal for want of an entity
/// other than `targets` says so (`ApiError::from_write`).
async fn write_op(
    state: &AppState,
    caller: Caller,
    op: Op,
    targets: &[(EntityKind, &str)],
) -> Result<WriteOutcome, ApiError> {
    let actor = caller.actor();
    blocking_write(state, move |engine| engine.write(&actor, vec![op]))
        .await?
        .map_err(|error| ApiError::from_write(error, targets))
}

/// The entity as it is now (after the write), or `null` if a later write removed it.
fn entity_now(state: &AppState, kind: EntityKind, outcome: &WriteOutcome) -> Value {
    outcome
        .ids
        .first()
        .and_then(|id| state.snapshot().entity_json(kind, &id.to_string()).ok())
        .unwrap_or(Value::Null)
}

fn write_answer(state: &AppState, kind: EntityKind, outcome: &WriteOutcome) -> Value {
    json!({
        "revision": outcome.revision,
        "id": outcome.ids.first(),
        "entity": entity_now(state, kind, outcome),
    })
}

fn spec_from_json(kind: EntityKind, body: Value) -> Result<Spec, ApiError> {
    if kind == EntityKind::Group {
        refuse_unknown_member_fields(&body)?;
    }
    Spec::from_json(kind, body).map_err(|error| ApiError::InvalidBody(error.to_string()))
}

/// The long forms of group members and subgroups are untagged enum variants, which
/// serde cannot make refuse unknown fields; checked here until the engine does.
fn refuse_unknown_member_fields(body: &Value) -> Result<(), ApiError> {
    for (list, key) in [("members", "user"), ("subgroups", "group")] {
        let Some(entries) = body.get(list).and_then(Value::as_array) else {
            continue;
        };
        for entry in entries.iter().filter_map(Value::as_object) {
            if let Some(field) = entry
                .keys()
                .find(|field| ![key, "expires_at", "source"].contains(&field.as_str()))
            {
                return Err(ApiError::InvalidBody(format!(
                    "{list}: unknown field `{field}`, expected `{key}`, `expires_at` or `source`"
                )));
            }
        }
    }
    Ok(())
}

/// A member as `POST /groups/{group}/members` takes it: a username or id, or the long
/// form (unknown fields refused).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum MemberRequest {
    Name(String),
    Detailed(DetailedMember),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetailedMember {
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) expires_at: Option<portcullis_engine::Time>,
    #[serde(default)]
    pub(crate) source: Option<Source>,
}

impl From<MemberRequest> for MemberSpec {
    fn from(request: MemberRequest) -> MemberSpec {
        match request {
            MemberRequest::Name(user) => MemberSpec::Name(user),
            MemberRequest::Detailed(DetailedMember {
                user,
                expires_at,
                source,
            }) => MemberSpec::Detailed {
                user,
                expires_at,
                source,
            },
        }
    }
}

pub(crate) async fn list(
    kind: EntityKind,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::paged(
        &state,
        query,
        &["offset", "limit", "search", "min_revision"],
        true,
    )?;
    let snapshot = state.snapshot_at_least(params.min_revision).await?;
    // `expired=true|false` compares `expires_at` with now; other fields by equality.
    let mut fields = params.others.clone();
    let mut expired = None;
    if let Some(at) = fields.iter().position(|(name, _)| name == "expired") {
        let (_, wanted) = fields.remove(at);
        let wanted = wanted.parse::<bool>().map_err(|_| {
            ApiError::BadRequest(format!(
                "query parameter `expired`: `{wanted}` is neither `true` nor `false`"
            ))
        })?;
        expired = Some((portcullis_engine::Time::now(), wanted));
    }
    let page = snapshot.list_json(
        kind,
        &ListQuery {
            search: params.search.clone(),
            fields,
            expired,
            offset: params.offset,
            limit: params.limit,
        },
    );
    Ok(Json(json!({
        "revision": snapshot.revision(),
        "total": page.total,
        "offset": params.offset,
        "limit": params.limit,
        "items": page.items,
    })))
}

pub(crate) async fn get(
    kind: EntityKind,
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::paged(&state, query, &["min_revision"], false)?;
    let snapshot = state.snapshot_at_least(params.min_revision).await?;
    Ok(Json(snapshot.entity_json(kind, &reference)?))
}

pub(crate) async fn create(
    kind: EntityKind,
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = spec_from_json(kind, body)?;
    create_spec(state, kind, caller, spec).await
}

async fn create_spec(
    state: AppState,
    kind: EntityKind,
    caller: Caller,
    spec: Spec,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if let Spec::Token(token) = spec {
        return create_token(state, caller.actor(), token).await;
    }
    let outcome = write_op(&state, caller, Op::Create(spec), &[]).await?;
    Ok((
        StatusCode::CREATED,
        Json(write_answer(&state, kind, &outcome)),
    ))
}

async fn create_token(
    state: AppState,
    actor: Actor,
    spec: TokenSpec,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (outcome, secret) = blocking_write(&state, move |engine| engine.create_token(&actor, spec))
        .await?
        .map_err(|error| ApiError::from_write(error, &[]))?;
    let mut answer = write_answer(&state, EntityKind::Token, &outcome);
    // Shown this once: only its hash is stored.
    answer["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

pub(crate) async fn replace(
    kind: EntityKind,
    State(state): State<AppState>,
    ApiPath(target): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let spec = spec_from_json(kind, body)?;
    let op = Op::Replace {
        target: target.clone(),
        spec,
    };
    let outcome = write_op(&state, caller, op, &[(kind, &target)]).await?;
    Ok(Json(write_answer(&state, kind, &outcome)))
}

/// RFC 7386: objects merge member by member, `null` removes a member, anything else
/// replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        unreachable!("made an object above");
    };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

pub(crate) async fn patch(
    kind: EntityKind,
    State(state): State<AppState>,
    ApiPath(target): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    JsonBody(patch): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::InvalidBody(
            "a merge patch must be a JSON object".to_owned(),
        ));
    }
    // A new password is checked and hashed here, under the engine's credential policy,
    // not in the writer (whose edits must not wait on argon2).
    let password = match patch.get("password") {
        Some(Value::String(plain)) if kind == EntityKind::User => {
            let policy = state.engine().credential_policy();
            let plain = plain.clone();
            Some(
                tokio::task::spawn_blocking(move || {
                    policy.prepare(portcullis_engine::Password::new(plain))
                })
                .await
                .map_err(|error| ApiError::Internal(format!("password task failed: {error}")))?
                .map_err(|error| ApiError::from_write(error.into(), &[]))?,
            )
        }
        _ => None,
    };
    // The edit runs in the writer, where only engine errors can be returned; the real
    // reason travels back through this slot.
    let actor = caller.actor();
    let refusal: Arc<Mutex<Option<ApiError>>> = Arc::default();
    let slot = refusal.clone();
    let edit = move |spec: &mut Spec| {
        let mut json = spec.to_json();
        merge_patch(&mut json, &patch);
        let refused = match spec_from_json(kind, json) {
            Ok(mut patched) => {
                if let (Spec::User(user), Some(password)) = (&mut patched, &password) {
                    user.password = Some(password.clone());
                }
                *spec = patched;
                return Ok(());
            }
            Err(error) => error,
        };
        *slot.lock().expect("refusal lock") = Some(refused);
        Err(ValidationError::Invalid {
            field: "patch",
            message: "refused".to_owned(),
        })
    };
    let op_target = target.clone();
    let outcome = blocking_write(&state, move |engine| {
        engine.write(
            &actor,
            vec![Op::Modify {
                kind,
                target: op_target,
                edit: Box::new(edit),
            }],
        )
    })
    .await?;
    match outcome {
        Ok(outcome) => Ok(Json(write_answer(&state, kind, &outcome))),
        Err(error) => match refusal.lock().expect("refusal lock").take() {
            Some(refused) => Err(refused),
            None => Err(ApiError::from_write(error, &[(kind, &target)])),
        },
    }
}

pub(crate) async fn delete(
    kind: EntityKind,
    State(state): State<AppState>,
    ApiPath(target): ApiPath<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let op = Op::Delete {
        kind,
        target: target.clone(),
    };
    let outcome = write_op(&state, caller, op, &[(kind, &target)]).await?;
    Ok(Json(
        json!({"revision": outcome.revision, "id": outcome.ids.first()}),
    ))
}

/// `POST /users/{user}/release`, `POST /groups/{group}/release`: an empty object,
/// kept an object so that options can join it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseRequest {}

/// Hands a user or group back to `local` (`Op::Release`): after an identity source
/// adopted it, when leaving that source.
pub(crate) async fn release(
    kind: EntityKind,
    State(state): State<AppState>,
    ApiPath(target): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    JsonBody(_): JsonBody<ReleaseRequest>,
) -> Result<Json<Value>, ApiError> {
    let op = Op::Release {
        kind,
        target: target.clone(),
    };
    let outcome = write_op(&state, caller, op, &[(kind, &target)]).await?;
    Ok(Json(write_answer(&state, kind, &outcome)))
}

/// `POST /{id}/clone`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloneRequest {
    /// The new entity's name (username for users).
    #[serde(alias = "username")]
    name: String,
}

impl CloneRequest {
    /// A copy named `name`.
    pub(crate) fn named(name: String) -> CloneRequest {
        CloneRequest { name }
    }
}

pub(crate) async fn clone(
    kind: EntityKind,
    State(state): State<AppState>,
    ApiPath(source): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CloneRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut spec = state.snapshot().spec(kind, &source)?;
    let name = body.name;
    match &mut spec {
        Spec::User(user) => {
            // Unique or owned by an identity provider: not copied.
            user.username = name;
            user.email = None;
            user.external_id = None;
            user.source = Source::Local;
            user.id = None;
        }
        Spec::Group(group) => {
            group.name = name;
            group.external_id = None;
            group.source = Source::Local;
            group.id = None;
        }
        Spec::Node(node) => {
            node.name = name;
            node.id = None;
        }
        Spec::Asset(asset) => {
            asset.name = name;
            asset.id = None;
            for account in &mut asset.accounts {
                account.id = None;
            }
        }
        Spec::Rule(rule) => {
            rule.name = name;
            rule.id = None;
        }
        Spec::Role(role) => {
            role.name = name;
            role.id = None;
        }
        Spec::Token(token) => {
            token.name = name;
            token.id = None;
        }
    }
    create_spec(state, kind, caller, spec).await
}

/// `POST /groups/{group}/members`: adds a member, or changes the expiry of one.
pub(crate) async fn add_member(
    State(state): State<AppState>,
    ApiPath(group): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    JsonBody(member): JsonBody<MemberRequest>,
) -> Result<Json<Value>, ApiError> {
    // A member an administrator adds is the administrator's (`local`) unless the
    // request says otherwise, whoever owns the group: a synced group's source would
    // let the next sync remove it as one of its own.
    let member = match MemberSpec::from(member) {
        MemberSpec::Name(user) => MemberSpec::Detailed {
            user,
            expires_at: None,
            source: Some(Source::Local),
        },
        MemberSpec::Detailed {
            user,
            expires_at,
            source,
        } => MemberSpec::Detailed {
            user,
            expires_at,
            source: Some(source.unwrap_or(Source::Local)),
        },
    };
    let op = Op::AddMember {
        group: group.clone(),
        member,
    };
    write_membership(state, group, caller, op).await
}

/// `DELETE /groups/{group}/members/{user}`.
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    ApiPath((group, user)): ApiPath<(String, String)>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let op = Op::RemoveMember {
        group: group.clone(),
        user,
    };
    write_membership(state, group, caller, op).await
}

async fn write_membership(
    state: AppState,
    group: String,
    caller: Caller,
    op: Op,
) -> Result<Json<Value>, ApiError> {
    let outcome = write_op(&state, caller, op, &[(EntityKind::Group, &group)]).await?;
    Ok(Json(write_answer(&state, EntityKind::Group, &outcome)))
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    /// The examples of RFC 7386, appendix A.
    #[test]
    fn merge_patch_follows_rfc_7386() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }
}
