//! The operation log over HTTP: `GET /changes?since=N` pages it, `GET /watch` streams
//! it as server-sent events, one event per revision, the event id being the revision,
//! so a client resumes with `Last-Event-ID`.
//!
//! Pages and events always hold whole revisions: a client that asks again from the
//! last revision it saw never misses a record.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::Stream;
use portcullis_engine::{Change, Engine, Time};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::AppState;
use crate::auth::{Access, Caller};
use crate::error::ApiError;
use crate::extract::{Params, RawQuery};

/// The permission of `/changes` and `/watch`.
pub(crate) const CHANGES_VIEW: &str = "changes.view";

/// How many records the stream reads from the log at a time.
const WATCH_BATCH: usize = 1000;

/// Reads records with a revision above `since`, whole revisions only: at most `limit`
/// records, unless the first revision alone holds more (then all of it).
pub(crate) fn read_whole_revisions(
    engine: &Engine,
    since: u64,
    limit: usize,
) -> Result<Vec<Change>, portcullis_engine::Error> {
    let mut changes = engine.changes_since(since, limit.saturating_add(1))?;
    if changes.len() <= limit {
        return Ok(changes);
    }
    // The last revision may continue past the page: drop it, unless it is the only one.
    let last = changes[limit - 1].revision;
    let complete = changes[limit].revision != last;
    changes.truncate(limit);
    if complete {
        return Ok(changes);
    }
    let first = changes[0].revision;
    if last != first {
        changes.retain(|change| change.revision != last);
        return Ok(changes);
    }
    // One revision larger than a page: read all of it.
    let mut size = limit.saturating_mul(2).max(WATCH_BATCH);
    loop {
        let all = engine.changes_since(since, size)?;
        let done = all.len() < size || all.last().is_some_and(|change| change.revision != first);
        if done {
            return Ok(all
                .into_iter()
                .filter(|change| change.revision == first)
                .collect());
        }
        size = size.saturating_mul(2);
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (since, limit) = Params::log_page(&state, query)?;
    let engine = state.engine().clone();
    let changes = tokio::task::spawn_blocking(move || read_whole_revisions(&engine, since, limit))
        .await
        .map_err(|error| ApiError::Internal(format!("changes task failed: {error}")))??;
    let next = changes.last().map_or(since, |change| change.revision);
    Ok(Json(json!({
        "revision": state.snapshot().revision(),
        "since": since,
        "next": next,
        "changes": changes,
    })))
}

/// How often an open stream checks its caller's authorization when nothing else
/// makes it: revocations, role changes and deactivations are writes (they wake the
/// stream at once) and expiries are timed; this is the safety net.
const RECHECK: Duration = Duration::from_secs(30);

/// What a stream's caller proved who they are with, authorized again as a request
/// would be before every event.
pub(crate) enum Credential {
    /// A bearer token's secret (`/api/v1/watch`).
    Bearer(String),
    /// The console's session cookie (the live operation log).
    Session(String),
}

/// Makes the events of a batch of records (whole revisions).
pub(crate) type Render = Box<dyn Fn(Vec<Change>) -> VecDeque<Event> + Send>;

struct Watch {
    state: AppState,
    credential: Credential,
    access: Access,
    render: Render,
    engine: Arc<Engine>,
    since: u64,
    pending: VecDeque<Event>,
    revisions: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    /// The head was sent: the first item of the stream is a comment, so the client
    /// has its answer's head at once, not with the first event.
    opened: bool,
    /// The stream said why it ends; the next call ends it.
    ended: bool,
}

/// Groups records by revision into one event each.
pub(crate) fn events(changes: Vec<Change>) -> VecDeque<Event> {
    let mut events = VecDeque::new();
    let mut group: Vec<Change> = Vec::new();
    let flush = |group: &mut Vec<Change>, events: &mut VecDeque<Event>| {
        let Some(revision) = group.first().map(|c| c.revision) else {
            return;
        };
        let data = json!({"revision": revision, "changes": std::mem::take(group)});
        let event = Event::default()
            .id(revision.to_string())
            .event("change")
            .data(data.to_string());
        events.push_back(event);
    };
    for change in changes {
        if group
            .first()
            .is_some_and(|first| first.revision != change.revision)
        {
            flush(&mut group, &mut events);
        }
        group.push(change);
    }
    flush(&mut group, &mut events);
    events
}

/// How long until `at`, from `now` (zero when past).
fn until(now: Time, at: Time) -> Duration {
    let micros = at.as_micros().saturating_sub(now.as_micros()).max(0);
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

impl Watch {
    /// Authorizes the caller again, as of now. `Err` is the event that ends the
    /// stream; `Ok` is how long until it must be checked again at the latest.
    fn recheck(&self) -> Result<Duration, Event> {
        let now = Time::now();
        let checked = match &self.credential {
            Credential::Bearer(secret) => {
                crate::auth::authenticate(&self.state, &self.access, secret, now)
                    .map(|(_, expiry)| expiry.map_or(RECHECK, |at| until(now, at).min(RECHECK)))
            }
            Credential::Session(secret) => {
                crate::console::recheck(&self.state, &self.access, secret).map(|()| RECHECK)
            }
        };
        checked.map_err(|error| {
            Event::default()
                .event("error")
                .data(crate::error::error_body(&error).to_string())
        })
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.closing.borrow() || self.ended {
                return None;
            }
            // INVARIANT: every event is preceded by an authorization as of the newest
            // snapshot, which is published before its revision is announced: nothing
            // written after a revocation reaches a revoked caller.
            let recheck = match self.recheck() {
                Ok(recheck) => recheck,
                Err(event) => {
                    self.ended = true;
                    return Some(event);
                }
            };
            if !self.opened {
                self.opened = true;
                return Some(Event::default().comment("stream open"));
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            // Everything up to `published` is committed (the engine commits, then
            // publishes), so an empty read lets `since` move up to it.
            let published = *self.revisions.borrow_and_update();
            let engine = self.engine.clone();
            let since = self.since;
            let read = tokio::task::spawn_blocking(move || {
                read_whole_revisions(&engine, since, WATCH_BATCH)
            })
            .await;
            let changes = match read {
                Ok(Ok(changes)) => changes,
                Ok(Err(error)) => {
                    tracing::error!(%error, "watch: cannot read the operation log");
                    return None;
                }
                Err(error) => {
                    tracing::error!(%error, "watch: the read task failed");
                    return None;
                }
            };
            if let Some(last) = changes.last() {
                self.since = last.revision;
                self.pending = (self.render)(changes);
                continue;
            }
            self.since = self.since.max(published);
            let since = self.since;
            tokio::select! {
                changed = self.revisions.wait_for(|revision| *revision > since) => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.closing.wait_for(|closing| *closing) => return None,
                () = tokio::time::sleep(recheck) => {}
            }
        }
    }
}

pub(crate) async fn watch(
    State(state): State<AppState>,
    Extension(_caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let params = Params::paged(&state, query, &["since"], false)?;
    let resume = match headers.get("last-event-id") {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::BadRequest("`Last-Event-ID` is not text".to_owned()))?;
            Some(text.trim().parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("`Last-Event-ID`: `{text}` is not a revision"))
            })?)
        }
        None => None,
    };
    let since = resume
        .or(params.since)
        .unwrap_or_else(|| state.snapshot().revision());
    let secret = crate::auth::bearer_of(&headers)
        .ok_or(ApiError::Unauthenticated("missing bearer token"))?
        .to_owned();
    Ok(stream(
        &state,
        Credential::Bearer(secret),
        since,
        Box::new(events),
    ))
}

/// The operation log from `since` on as server-sent events made by `render`, for as
/// long as `credential` may read it.
pub(crate) fn stream(
    state: &AppState,
    credential: Credential,
    since: u64,
    render: Render,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let watch = Watch {
        state: state.clone(),
        credential,
        access: Access::Permission(CHANGES_VIEW.to_owned()),
        render,
        opened: false,
        ended: false,
        engine: state.engine().clone(),
        since,
        pending: VecDeque::new(),
        revisions: state.revisions().subscribe(),
        closing: state.revisions().closing(),
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok::<Event, Infallible>(event), watch))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
