//! The operation log on screen: filterable by kind of entity, entity and actor, and
//! updated live from the same stream as `/api/v1/watch` (server-sent events; htmx's
//! SSE extension adds the rows as they come). Users' and groups' detail pages show
//! their own part of it.

use std::collections::VecDeque;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use portcullis_engine::{Change, EntityKind, Id};
use serde::Deserialize;
use serde_json::Value;

use super::html::{Console, Refusal, page_response};
use crate::AppState;
use crate::auth::Access;
use crate::changes::{CHANGES_VIEW, Credential};
use crate::error::ApiError;
use crate::routes::Route;

/// How far back a filtered view reads the log, in revisions.
const SCAN_REVISIONS: u64 = 20_000;
/// How many rows a view shows.
const ROWS: usize = 100;

/// Which records to show.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ChangeFilter {
    /// A kind of entity (`user`, `group`, …).
    #[serde(default)]
    pub(crate) entity: Option<String>,
    /// One entity, by name or id (with `entity`).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// The actor as the log records it (`token:NAME`, `user:NAME`, `cli`, …).
    #[serde(default)]
    pub(crate) actor: Option<String>,
}

/// A filter resolved against the snapshot.
struct Resolved {
    kind: Option<EntityKind>,
    id: Option<Id>,
    /// A name no entity has now: matched against the records' own names.
    name: Option<String>,
    actor: Option<String>,
}

fn blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn kind_named(noun: &str) -> Option<EntityKind> {
    EntityKind::ALL.into_iter().find(|kind| kind.noun() == noun)
}

impl ChangeFilter {
    fn resolve(&self, state: &AppState) -> Result<Resolved, ApiError> {
        let kind =
            match blank(&self.entity) {
                Some(noun) => Some(kind_named(noun).ok_or_else(|| {
                    ApiError::BadRequest(format!("unknown kind of entity `{noun}`"))
                })?),
                None => None,
            };
        let (mut id, mut name) = (None, None);
        if let Some(reference) = blank(&self.name) {
            let found = kind.and_then(|kind| {
                state
                    .snapshot()
                    .entity_json(kind, reference)
                    .ok()
                    .and_then(|json| json.get("id").and_then(Value::as_str).and_then(Id::parse))
            });
            match found.or_else(|| Id::parse(reference)) {
                Some(found) => id = Some(found),
                None => name = Some(reference.to_owned()),
            }
        }
        Ok(Resolved {
            kind,
            id,
            name,
            actor: blank(&self.actor).map(str::to_owned),
        })
    }
}

/// The name a record gives its entity.
fn record_name(change: &Change) -> String {
    let side = change.after.as_ref().or(change.before.as_ref());
    side.and_then(|value| {
        ["username", "name", "path", "user"]
            .iter()
            .find_map(|field| value.get(*field).and_then(Value::as_str))
    })
    .map_or_else(|| change.id.to_string(), str::to_owned)
}

impl Resolved {
    fn matches(&self, change: &Change) -> bool {
        self.kind.is_none_or(|kind| change.entity == kind)
            && self.id.is_none_or(|id| change.id == id)
            && self
                .name
                .as_deref()
                .is_none_or(|name| record_name(change).eq_ignore_ascii_case(name))
            && self
                .actor
                .as_deref()
                .is_none_or(|actor| change.actor.eq_ignore_ascii_case(actor))
    }
}

/// The newest records (at most [`ROWS`], newest first) that `filter` keeps, from the
/// last [`SCAN_REVISIONS`] revisions.
pub(crate) async fn recent(
    state: &AppState,
    filter: &ChangeFilter,
) -> Result<Vec<Change>, ApiError> {
    let resolved = filter.resolve(state)?;
    let engine = state.engine().clone();
    let since = state.snapshot().revision().saturating_sub(SCAN_REVISIONS);
    let read = tokio::task::spawn_blocking(move || {
        let mut kept: VecDeque<Change> = VecDeque::new();
        let mut since = since;
        loop {
            let batch = crate::changes::read_whole_revisions(&engine, since, 1000)?;
            let Some(last) = batch.last().map(|change| change.revision) else {
                break;
            };
            for change in batch.into_iter().filter(|change| resolved.matches(change)) {
                kept.push_back(change);
                if kept.len() > ROWS {
                    kept.pop_front();
                }
            }
            since = last;
        }
        Ok::<_, portcullis_engine::Error>(kept.into_iter().rev().collect())
    })
    .await
    .map_err(|error| ApiError::Internal(format!("changes task failed: {error}")))?;
    Ok(read?)
}

/// What changed, in a few words: the fields that differ.
fn summary(change: &Change) -> String {
    let fields = |value: &Option<Value>| {
        value
            .as_ref()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (fields(&change.before), fields(&change.after));
    let mut changed: Vec<&str> = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(key, _)| key.as_str())
        .chain(
            before
                .keys()
                .filter(|key| !after.contains_key(*key))
                .map(String::as_str),
        )
        .filter(|key| !["updated_at", "created_at"].contains(key))
        .collect();
    changed.sort_unstable();
    changed.dedup();
    if changed.len() > 8 {
        changed.truncate(8);
        changed.push("…");
    }
    changed.join(", ")
}

fn operation(change: &Change) -> String {
    serde_json::to_value(change.operation)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn row(change: &Change) -> Markup {
    html! {
        tr {
            td { (change.revision) }
            td { (change.time.to_string()) }
            td { (change.actor) }
            td { (change.entity.noun()) }
            td { (record_name(change)) }
            td { (operation(change)) }
            td.muted { (summary(change)) }
        }
    }
}

/// A table of records, newest first; `live` names the stream that adds rows on top.
pub(crate) fn table(changes: &[Change], live: Option<&str>) -> Markup {
    html! {
        table.log {
            thead { tr { th { "Revision" } th { "Time" } th { "Actor" } th { "Entity" } th { "Name" } th { "Operation" } th { "Changed" } } }
            @if let Some(stream) = live {
                tbody id="log-rows" hx-ext="sse" sse-connect=(stream) sse-swap="change" hx-swap="afterbegin" {
                    @for change in changes { (row(change)) }
                }
            } @else {
                tbody { @for change in changes { (row(change)) } }
            }
        }
        @if changes.is_empty() {
            p.muted id="log-empty" { "No operation recorded." }
        }
    }
}

fn query_of(filter: &ChangeFilter) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("entity", &filter.entity),
        ("name", &filter.name),
        ("actor", &filter.actor),
    ] {
        if let Some(value) = blank(value) {
            query.append_pair(key, value);
        }
    }
    query.finish()
}

async fn log_page(
    Console { state, viewer }: Console,
    Query(filter): Query<ChangeFilter>,
) -> Result<Response, Refusal> {
    let changes = recent(&state, &filter).await?;
    let live = format!(
        "/ui/changes/live?since={}&{}",
        state.snapshot().revision(),
        query_of(&filter)
    );
    let chosen = blank(&filter.entity).unwrap_or("");
    Ok(page_response(
        &viewer,
        "Operation log",
        html! {
            form.filters method="get" action="/ui/changes" {
                div {
                    label for="f-entity" { "Kind" }
                    select id="f-entity" name="entity" {
                        option value="" { "any" }
                        @for kind in EntityKind::ALL {
                            option value=(kind.noun()) selected[kind.noun() == chosen] { (kind.noun()) }
                        }
                    }
                }
                div { label for="f-name" { "Entity (name or id)" } input id="f-name" type="text" name="name" value=(blank(&filter.name).unwrap_or("")); }
                div { label for="f-actor" { "Actor" } input id="f-actor" type="text" name="actor" value=(blank(&filter.actor).unwrap_or("")) placeholder="user:alice, token:ci, cli"; }
                div { button type="submit" { "Filter" } }
            }
            p.muted { "Newest first; new operations appear at the top as they happen." }
            (table(&changes, Some(&live)))
        },
    ))
}

#[derive(Deserialize)]
struct LiveQuery {
    since: Option<u64>,
    #[serde(flatten)]
    filter: ChangeFilter,
}

async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Result<Response, Refusal> {
    let resolved = query.filter.resolve(&state)?;
    let secret = super::cookie(&headers, super::SESSION_COOKIE)
        .ok_or(ApiError::Unauthenticated("sign in first"))?
        .to_owned();
    let since = query.since.unwrap_or_else(|| state.snapshot().revision());
    let render = Box::new(move |changes: Vec<Change>| {
        let rows: Vec<&Change> = changes
            .iter()
            .rev()
            .filter(|change| resolved.matches(change))
            .collect();
        let mut events = VecDeque::new();
        if let Some(revision) = rows.first().map(|change| change.revision) {
            let markup = html! { @for change in &rows { (row(change)) } };
            events.push_back(
                Event::default()
                    .id(revision.to_string())
                    .event("change")
                    .data(markup.into_string()),
            );
        }
        events
    });
    let stream = crate::changes::stream(&state, Credential::Session(secret), since, render);
    Ok(super::html::secured(stream.into_response()))
}

pub(crate) fn routes() -> Vec<Route> {
    let view = || Access::Permission(CHANGES_VIEW.to_owned());
    vec![
        super::route(
            Method::GET,
            "/ui/changes",
            view(),
            "The operation log, filterable by kind, entity and actor",
            log_page,
        ),
        super::route(
            Method::GET,
            "/ui/changes/live",
            view(),
            "New operations as HTML rows, as server-sent events",
            live,
        )
        .untimed(),
    ]
}
