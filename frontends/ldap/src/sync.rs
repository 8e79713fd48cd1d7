//! One sync run, the periodic runs inside a server, and the status they leave behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ldap3::SearchEntry;
use portcullis_engine::{Actor, Engine, Time};
use serde::Serialize;

use crate::config::{Incremental, Source};
use crate::directory::{DirEntry, Directory, stable_id};
use crate::error::SyncError;
use crate::plan::{self, Change, Clash, Counts, IN_CHAIN_ATTRIBUTE};
use crate::state::{self, SavedState};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Compute and report the changes; write nothing (not even the saved state).
    pub dry_run: bool,
    /// Read everything even when an incremental run is possible.
    pub full: bool,
    /// Draw a progress spinner with counts on stderr.
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every entry read (paged).
    Full,
    /// Only what changed since the last run (syncrepl cookie, or polling).
    Incremental,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub source: String,
    pub mode: Mode,
    pub dry_run: bool,
    pub started_at: Time,
    pub duration_ms: u64,
    /// The engine revision holding the run's write; `None` when nothing was written.
    pub revision: Option<u64>,
    pub counts: Counts,
    pub changes: Vec<Change>,
    pub clashes: Vec<Clash>,
    pub warnings: Vec<String>,
}

/// Who a source's writes act for: the operator who configured the source (full
/// authority: a sync may fill groups that hold roles), recorded as `ldap:NAME`.
pub fn actor(source: &Source) -> Actor {
    Actor::system(format!("ldap:{}", source.name))
}

fn progress_bar(options: &RunOptions, source: &Source) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        None,
        if options.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} ldap:{prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(source.name.clone());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reads `source` and makes the engine agree with it in one write. A run that fails
/// anywhere changes nothing: not the engine, not the saved state in `state_dir`.
pub async fn run(
    engine: &Arc<Engine>,
    source: &Source,
    state_dir: &Path,
    options: &RunOptions,
) -> Result<RunReport, SyncError> {
    let started_at = Time::now();
    let clock = Instant::now();
    let bar = progress_bar(options, source);
    let saved = if options.full {
        None
    } else {
        state::load(state_dir, source)
    };
    bar.set_message(format!("connecting to {}", source.config.url));
    let mut directory = Directory::connect(source).await?;
    let fetched = fetch(&mut directory, source, saved, &bar).await;
    directory.close().await;
    let (mode, saved) = fetched?;

    bar.set_message(format!(
        "planning: {} users, {} groups in the directory",
        saved.users.len(),
        saved.groups.len()
    ));
    let plan_engine = engine.clone();
    let plan_source = source.clone();
    let dry_run = options.dry_run;
    let actor = actor(source);
    let (plan, written, state_back) = tokio::task::spawn_blocking(move || {
        let snapshot = plan_engine.snapshot();
        let estate = snapshot.estate();
        let mut plan = plan::plan(
            &plan_source,
            &saved.users,
            &saved.groups,
            &estate,
            &snapshot,
        );
        let ops = std::mem::take(&mut plan.ops);
        let written = if dry_run || ops.is_empty() {
            Ok(None)
        } else {
            plan_engine
                .write(&actor, ops)
                .map(|outcome| Some(outcome.revision))
        };
        (plan, written, saved)
    })
    .await
    .map_err(|error| SyncError::Directory {
        source_name: source.name.clone(),
        message: format!("the planning task failed: {error}"),
    })?;
    let revision = written.map_err(|error| SyncError::Engine {
        source_name: source.name.clone(),
        error,
    })?;
    if !options.dry_run {
        state::save(state_dir, source, state_back)?;
    }
    bar.finish_and_clear();
    Ok(RunReport {
        source: source.name.clone(),
        mode,
        dry_run: options.dry_run,
        started_at,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        revision,
        counts: plan.counts,
        changes: plan.changes,
        clashes: plan.clashes,
        warnings: plan.warnings,
    })
}

fn user_attributes(source: &Source) -> Vec<String> {
    let users = &source.config.users;
    let mut attrs = vec![
        source.id_attribute.clone(),
        users.username.clone(),
        users.name.clone(),
    ];
    attrs.extend(users.email.iter().cloned());
    attrs.extend(users.phone.iter().cloned());
    attrs.extend(poll_attribute(source).map(str::to_owned));
    attrs
}

fn group_attributes(source: &Source) -> Vec<String> {
    let mut attrs = vec![source.id_attribute.clone()];
    if let Some(groups) = &source.config.groups {
        attrs.push(groups.name.clone());
        if !groups.in_chain {
            attrs.extend(groups.membership.iter().cloned());
        }
    }
    attrs.extend(poll_attribute(source).map(str::to_owned));
    attrs
}

fn poll_attribute(source: &Source) -> Option<&'static str> {
    match source.incremental {
        Incremental::ModifyTimestamp => Some("modifyTimestamp"),
        Incremental::UsnChanged => Some("uSNChanged"),
        Incremental::Syncrepl | Incremental::None => None,
    }
}

/// The later of two watermarks: numbers compare as numbers (uSNChanged), anything else
/// as text (generalized time in one format orders as text).
fn later(a: Option<String>, b: &str) -> Option<String> {
    match a {
        None => Some(b.to_owned()),
        Some(a) => {
            let b_later = match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(x), Ok(y)) => y > x,
                _ => b > a.as_str(),
            };
            Some(if b_later { b.to_owned() } else { a })
        }
    }
}

async fn fetch(
    directory: &mut Directory,
    source: &Source,
    saved: Option<SavedState>,
    bar: &ProgressBar,
) -> Result<(Mode, SavedState), SyncError> {
    if let Some(saved) = saved {
        let incremental = match source.incremental {
            Incremental::Syncrepl if saved.cookie.is_some() => {
                refresh(directory, source, saved, bar).await?
            }
            Incremental::ModifyTimestamp | Incremental::UsnChanged if saved.watermark.is_some() => {
                Some(poll(directory, source, saved, bar).await?)
            }
            _ => None,
        };
        if let Some(mut state) = incremental {
            in_chain(directory, source, &mut state, bar).await?;
            return Ok((Mode::Incremental, state));
        }
    }
    let mut state = SavedState::default();
    if source.incremental == Incremental::Syncrepl {
        state.cookie = directory
            .current_cookie(&source.config.users.base)
            .await?
            .map(|cookie| String::from_utf8_lossy(&cookie).into_owned());
        if state.cookie.is_none() {
            tracing::warn!(source = %source.name, "the server gave no syncrepl cookie (no syncprov overlay?): every run will read everything");
        }
    }
    let users = &source.config.users;
    let mut n_users = 0usize;
    let found = directory
        .paged_search(
            &users.base,
            users.scope,
            &users.filter,
            &user_attributes(source),
            || {
                n_users += 1;
                if n_users % 100 == 0 {
                    bar.set_message(format!("reading users: {n_users}"));
                }
            },
        )
        .await?;
    keep(
        directory,
        source,
        found,
        &mut state.users,
        &mut state.watermark,
    )
    .await?;
    if let Some(groups) = &source.config.groups {
        let mut n_groups = 0usize;
        let found = directory
            .paged_search(
                &groups.base,
                groups.scope,
                &groups.filter,
                &group_attributes(source),
                || {
                    n_groups += 1;
                    if n_groups % 100 == 0 {
                        bar.set_message(format!("reading groups: {n_groups}"));
                    }
                },
            )
            .await?;
        keep(
            directory,
            source,
            found,
            &mut state.groups,
            &mut state.watermark,
        )
        .await?;
    }
    in_chain(directory, source, &mut state, bar).await?;
    Ok((Mode::Full, state))
}

/// Adds `found` to `into` by stable id (gathering ranged attributes), and raises the
/// watermark.
async fn keep(
    directory: &mut Directory,
    source: &Source,
    found: Vec<SearchEntry>,
    into: &mut BTreeMap<String, DirEntry>,
    watermark: &mut Option<String>,
) -> Result<(), SyncError> {
    let poll = poll_attribute(source);
    for entry in found {
        let Some(id) = stable_id(&entry, &source.id_attribute) else {
            tracing::warn!(source = %source.name, dn = %entry.dn, attribute = %source.id_attribute, "entry without its stable id; skipped");
            continue;
        };
        let entry = directory.complete(entry).await?;
        if let Some(attribute) = poll {
            if let Some(value) = entry.first(attribute) {
                *watermark = later(watermark.take(), value);
            }
        }
        into.insert(id, entry);
    }
    Ok(())
}

/// An incremental run through the syncrepl cookie; `None` when the server wants a
/// full reload.
async fn refresh(
    directory: &mut Directory,
    source: &Source,
    mut state: SavedState,
    bar: &ProgressBar,
) -> Result<Option<SavedState>, SyncError> {
    let cookie = state.cookie.clone().map(String::into_bytes);
    let users = &source.config.users;
    bar.set_message("reading changed users");
    let Some(user_refresh) = directory
        .refresh(
            &users.base,
            users.scope,
            &users.filter,
            &user_attributes(source),
            cookie.clone(),
            || {},
        )
        .await?
    else {
        return Ok(None);
    };
    apply_refresh(
        &mut state.users,
        user_refresh.changed,
        user_refresh.present,
        user_refresh.deleted,
        user_refresh.present_phase,
    );
    if let Some(groups) = &source.config.groups {
        bar.set_message("reading changed groups");
        let Some(group_refresh) = directory
            .refresh(
                &groups.base,
                groups.scope,
                &groups.filter,
                &group_attributes(source),
                cookie,
                || {},
            )
            .await?
        else {
            return Ok(None);
        };
        apply_refresh(
            &mut state.groups,
            group_refresh.changed,
            group_refresh.present,
            group_refresh.deleted,
            group_refresh.present_phase,
        );
    }
    // The cookie of the first search: changes between the two searches come again
    // next time, which is harmless.
    if let Some(cookie) = user_refresh.cookie {
        state.cookie = Some(String::from_utf8_lossy(&cookie).into_owned());
    }
    Ok(Some(state))
}

fn apply_refresh(
    into: &mut BTreeMap<String, DirEntry>,
    changed: Vec<(String, DirEntry)>,
    present: std::collections::HashSet<String>,
    deleted: std::collections::HashSet<String>,
    present_phase: bool,
) {
    for id in &deleted {
        into.remove(id);
    }
    if present_phase {
        let changed_ids: std::collections::HashSet<&String> =
            changed.iter().map(|(id, _)| id).collect();
        into.retain(|id, _| present.contains(id) || changed_ids.contains(id));
    }
    for (id, entry) in changed {
        into.insert(id, entry);
    }
}

/// An incremental run by polling: entries changed since the watermark, and a listing
/// of stable ids to find deletions.
async fn poll(
    directory: &mut Directory,
    source: &Source,
    mut state: SavedState,
    bar: &ProgressBar,
) -> Result<SavedState, SyncError> {
    let attribute = poll_attribute(source).unwrap_or("modifyTimestamp");
    let watermark = state.watermark.clone().unwrap_or_default();
    let changed_filter = |filter: &str| {
        format!(
            "(&{filter}({attribute}>={}))",
            crate::directory::escape_filter_value(&watermark)
        )
    };
    let id_only = vec![source.id_attribute.clone()];
    let users = source.config.users.clone();
    bar.set_message("reading changed users");
    let changed = directory
        .paged_search(
            &users.base,
            users.scope,
            &changed_filter(&users.filter),
            &user_attributes(source),
            || {},
        )
        .await?;
    let listing = directory
        .paged_search(&users.base, users.scope, &users.filter, &id_only, || {})
        .await?;
    let mut fresh = BTreeMap::new();
    keep(directory, source, changed, &mut fresh, &mut state.watermark).await?;
    reconcile(&mut state.users, fresh, &listing, source);
    if let Some(groups) = source.config.groups.clone() {
        bar.set_message("reading changed groups");
        let changed = directory
            .paged_search(
                &groups.base,
                groups.scope,
                &changed_filter(&groups.filter),
                &group_attributes(source),
                || {},
            )
            .await?;
        let listing = directory
            .paged_search(&groups.base, groups.scope, &groups.filter, &id_only, || {})
            .await?;
        let mut fresh = BTreeMap::new();
        keep(directory, source, changed, &mut fresh, &mut state.watermark).await?;
        reconcile(&mut state.groups, fresh, &listing, source);
    }
    Ok(state)
}

fn reconcile(
    into: &mut BTreeMap<String, DirEntry>,
    fresh: BTreeMap<String, DirEntry>,
    listing: &[SearchEntry],
    source: &Source,
) {
    let present: std::collections::HashSet<String> = listing
        .iter()
        .filter_map(|entry| stable_id(entry, &source.id_attribute))
        .collect();
    into.retain(|id, _| present.contains(id));
    into.extend(fresh);
}

/// Active Directory: each group's transitive user members, from the server.
async fn in_chain(
    directory: &mut Directory,
    source: &Source,
    state: &mut SavedState,
    bar: &ProgressBar,
) -> Result<(), SyncError> {
    if !source.config.groups.as_ref().is_some_and(|g| g.in_chain) {
        return Ok(());
    }
    bar.set_message("reading nested membership (in chain)");
    for entry in state.groups.values_mut() {
        let members = directory.in_chain_members(&entry.dn).await?;
        entry.attrs.insert(IN_CHAIN_ATTRIBUTE.to_owned(), members);
    }
    Ok(())
}

/// The last runs of every source, for `GET /api/v1/sync/ldap`. Holds no secret: the
/// bind DN is shown, the password never.
#[derive(Debug, Default)]
pub struct StatusBoard {
    sources: Mutex<BTreeMap<String, SourceStatus>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub url: String,
    pub bind_dn: Option<String>,
    pub interval_secs: u64,
    pub running: bool,
    pub runs: u64,
    pub failures: u64,
    pub last_run_at: Option<Time>,
    pub last_duration_ms: Option<u64>,
    pub last_success_at: Option<Time>,
    pub last_mode: Option<Mode>,
    pub last_revision: Option<u64>,
    pub last_counts: Option<Counts>,
    pub last_clashes: Vec<Clash>,
    pub last_warnings: Vec<String>,
    pub last_error: Option<String>,
    pub next_run_at: Option<Time>,
}

impl StatusBoard {
    /// Lists `sources` as not yet run.
    pub fn new(sources: &[Source]) -> StatusBoard {
        let board = StatusBoard::default();
        {
            let mut map = board.sources.lock().expect("status lock");
            for source in sources {
                map.insert(
                    source.name.clone(),
                    SourceStatus {
                        source: source.name.clone(),
                        url: source.config.url.clone(),
                        bind_dn: source.config.bind_dn.clone(),
                        interval_secs: source.config.interval_secs,
                        running: false,
                        runs: 0,
                        failures: 0,
                        last_run_at: None,
                        last_duration_ms: None,
                        last_success_at: None,
                        last_mode: None,
                        last_revision: None,
                        last_counts: None,
                        last_clashes: Vec::new(),
                        last_warnings: Vec::new(),
                        last_error: None,
                        next_run_at: None,
                    },
                );
            }
        }
        board
    }

    fn update(&self, source: &str, change: impl FnOnce(&mut SourceStatus)) {
        let mut map = self.sources.lock().expect("status lock");
        if let Some(status) = map.get_mut(source) {
            change(status);
        }
    }

    pub fn started(&self, source: &str, at: Time) {
        self.update(source, |status| {
            status.running = true;
            status.last_run_at = Some(at);
            status.next_run_at = None;
        });
    }

    pub fn finished(
        &self,
        source: &str,
        result: &Result<RunReport, SyncError>,
        duration: Duration,
        next_run_at: Option<Time>,
    ) {
        self.update(source, |status| {
            status.running = false;
            status.runs += 1;
            status.last_duration_ms = Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
            status.next_run_at = next_run_at;
            match result {
                Ok(report) => {
                    status.last_success_at = status.last_run_at;
                    status.last_mode = Some(report.mode);
                    status.last_revision = report.revision;
                    status.last_counts = Some(report.counts.clone());
                    status.last_clashes = report.clashes.clone();
                    status.last_warnings = report.warnings.clone();
                    status.last_error = None;
                }
                Err(error) => {
                    status.failures += 1;
                    status.last_error = Some(error.to_string());
                }
            }
        });
    }

    /// `{"sources": [...]}`, one object per source.
    pub fn json(&self) -> serde_json::Value {
        let map = self.sources.lock().expect("status lock");
        serde_json::json!({ "sources": map.values().collect::<Vec<_>>() })
    }
}

/// Runs every source now and then every `interval_secs`, until `stop` turns true.
/// Failures are logged and shown on `board`; they never stop the loop.
pub async fn run_periodically(
    engine: Arc<Engine>,
    sources: Vec<Source>,
    state_dir: PathBuf,
    board: Arc<StatusBoard>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for source in sources {
        let engine = engine.clone();
        let state_dir = state_dir.clone();
        let board = board.clone();
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let started = Instant::now();
                board.started(&source.name, Time::now());
                let result = run(&engine, &source, &state_dir, &RunOptions::default()).await;
                match &result {
                    Ok(report) => tracing::info!(
                        source = %source.name,
                        mode = ?report.mode,
                        revision = ?report.revision,
                        users_added = report.counts.users_added,
                        users_changed = report.counts.users_changed,
                        groups_added = report.counts.groups_added,
                        groups_changed = report.counts.groups_changed,
                        clashes = report.counts.clashes,
                        duration_ms = report.duration_ms,
                        "ldap sync done"
                    ),
                    Err(error) => tracing::warn!(source = %source.name, %error, "ldap sync failed; nothing changed"),
                }
                let next = Time::now().add_micros(
                    i64::try_from(source.interval().as_micros()).unwrap_or(i64::MAX),
                );
                board.finished(&source.name, &result, started.elapsed(), Some(next));
                tokio::select! {
                    () = tokio::time::sleep(source.interval()) => {}
                    _ = stop.wait_for(|stopping| *stopping) => break,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_compare_as_numbers_or_as_times() {
        assert_eq!(later(Some("999".into()), "1000").as_deref(), Some("1000"));
        assert_eq!(
            later(Some("20260101000000Z".into()), "20251231235959Z").as_deref(),
            Some("20260101000000Z")
        );
        assert_eq!(later(None, "5").as_deref(), Some("5"));
    }
}
