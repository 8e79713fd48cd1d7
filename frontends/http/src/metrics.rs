//! Prometheus metrics, in the text exposition format, kept by hand: requests by route
//! and status, request latency, decisions, write commit latency, and the snapshot's
//! revision and size (read at scrape time).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

use portcullis_engine::{LATENCY_BUCKETS, LatencyHistogram};

/// Writes `histogram` as the metric `name` in the text exposition format.
fn histogram(out: &mut String, histogram: &LatencyHistogram, name: &str, labels: &str) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, count) in LATENCY_BUCKETS.iter().zip(&histogram.at_most) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        histogram.count
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", histogram.seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", histogram.count);
}

/// One route template's requests by method and status, and their latency. Each has
/// its own lock, taken once per request, so requests to different routes never wait
/// for each other.
#[derive(Default)]
pub(crate) struct RouteStats {
    inner: Mutex<RouteCounts>,
}

#[derive(Default, Clone)]
struct RouteCounts {
    /// (method, status, count); a handful per route, so a list.
    counts: Vec<(&'static str, u16, u64)>,
    latency: LatencyHistogram,
}

impl RouteStats {
    /// Counts one request answered with `status` after `elapsed`.
    pub(crate) fn observe(&self, method: &'static str, status: u16, elapsed: Duration) {
        let mut stats = self.inner.lock().expect("route stats lock");
        stats.latency.observe(elapsed);
        match stats
            .counts
            .iter_mut()
            .find(|(m, s, _)| *m == method && *s == status)
        {
            Some((_, _, count)) => *count += 1,
            None => stats.counts.push((method, status, 1)),
        }
    }
}

/// The statistics of one router's route templates, resolved when the router is
/// built: a request finds its route's by the template it matched, with no lock and
/// no allocation.
#[derive(Clone)]
pub(crate) struct RouteTable {
    routes: Arc<HashMap<Arc<str>, Arc<RouteStats>>>,
    unmatched: Arc<RouteStats>,
}

impl RouteTable {
    /// The statistics a request with `method` that matched `template` (if any)
    /// counts toward: its route's, or [`UNMATCHED`]'s for unknown paths and
    /// non-standard methods.
    pub(crate) fn of(&self, method: &'static str, template: Option<&MatchedPath>) -> &RouteStats {
        match template {
            Some(template) if method != OTHER_METHOD => self
                .routes
                .get(template.as_str())
                .unwrap_or(&self.unmatched),
            _ => &self.unmatched,
        }
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    /// Every route template's statistics, by template: registered when a router is
    /// built, read when `/metrics` is rendered.
    routes: RwLock<BTreeMap<Arc<str>, Arc<RouteStats>>>,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl Metrics {
    pub(crate) fn decision(&self, allowed: bool) {
        let counter = if allowed { &self.allowed } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The statistics of `templates` (and of unmatched requests), registered for
    /// `/metrics`. A template registered before (another router over the same state)
    /// keeps its statistics.
    pub(crate) fn route_table<'a>(
        &self,
        templates: impl IntoIterator<Item = &'a str>,
    ) -> RouteTable {
        let mut registered = self.routes.write().expect("metrics lock");
        let mut stats = |template: &str| registered.entry(template.into()).or_default().clone();
        let unmatched = stats(UNMATCHED);
        let routes = templates
            .into_iter()
            .map(|template| (Arc::from(template), stats(template)))
            .collect();
        RouteTable {
            routes: Arc::new(routes),
            unmatched,
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The label of what no route serves: unknown paths, and any method outside the
/// standard ones, whatever its path.
const UNMATCHED: &str = "unmatched";

/// A request's method as a label: the standard methods by name, any other `other`.
/// Labels live as long as the process, so a client must not be able to mint them.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => OTHER_METHOD,
    }
}

/// The label of every non-standard method.
const OTHER_METHOD: &str = "other";

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    let mut out = String::new();
    {
        // A copy of each route's counts, so that no request waits for the rendering;
        // routes no request reached yet are left out.
        let routes: Vec<(Arc<str>, RouteCounts)> = metrics
            .routes
            .read()
            .expect("metrics lock")
            .iter()
            .map(|(route, stats)| {
                let counts = stats.inner.lock().expect("route stats lock").clone();
                (route.clone(), counts)
            })
            .filter(|(_, counts)| !counts.counts.is_empty())
            .collect();
        out.push_str(
            "# HELP portcullis_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE portcullis_http_requests_total counter\n");
        for (route, stats) in &routes {
            let mut counts = stats.counts.clone();
            counts.sort();
            for (method, status, count) in counts {
                let _ = writeln!(
                    out,
                    "portcullis_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(method),
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP portcullis_http_request_duration_seconds Time to answer a request, by route.\n",
        );
        out.push_str("# TYPE portcullis_http_request_duration_seconds histogram\n");
        for (route, stats) in &routes {
            histogram(
                &mut out,
                &stats.latency,
                "portcullis_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
    }
    out.push_str("# HELP portcullis_decisions_total Access checks answered, by outcome.\n");
    out.push_str("# TYPE portcullis_decisions_total counter\n");
    let _ = writeln!(
        out,
        "portcullis_decisions_total{{decision=\"allowed\"}} {}",
        metrics.allowed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "portcullis_decisions_total{{decision=\"denied\"}} {}",
        metrics.denied.load(Ordering::Relaxed)
    );
    out.push_str("# HELP portcullis_write_duration_seconds Time from submitting a write until it is committed and published.\n");
    out.push_str("# TYPE portcullis_write_duration_seconds histogram\n");
    // Kept by the engine, so that writes from every front-end (SCIM, imports, the
    // directory sync) count, not only the admin API's.
    let writes = state.engine().write_stats();
    histogram(
        &mut out,
        &writes.latency,
        "portcullis_write_duration_seconds",
        "",
    );
    out.push_str("# HELP portcullis_write_failures_total Writes refused or failed.\n");
    out.push_str("# TYPE portcullis_write_failures_total counter\n");
    let _ = writeln!(out, "portcullis_write_failures_total {}", writes.failures);
    out.push_str(
        "# HELP portcullis_store_commits_total Store transactions committed (group commit joins concurrent writes into one).\n",
    );
    out.push_str("# TYPE portcullis_store_commits_total counter\n");
    let _ = writeln!(
        out,
        "portcullis_store_commits_total {}",
        state.engine().commits()
    );
    if let Some(cluster) = state.engine().cluster_status() {
        out.push_str("# HELP portcullis_cluster_applied_revision The cluster log's revision this node has applied.\n");
        out.push_str("# TYPE portcullis_cluster_applied_revision gauge\n");
        let _ = writeln!(
            out,
            "portcullis_cluster_applied_revision {}",
            cluster.applied_revision
        );
        out.push_str("# HELP portcullis_cluster_lag_revisions Revisions in the cluster log this node has not applied yet.\n");
        out.push_str("# TYPE portcullis_cluster_lag_revisions gauge\n");
        let _ = writeln!(
            out,
            "portcullis_cluster_lag_revisions {}",
            cluster.lag_revisions
        );
        out.push_str("# HELP portcullis_cluster_lag_seconds While this node is behind, the time since the newest entry it has not applied was appended.\n");
        out.push_str("# TYPE portcullis_cluster_lag_seconds gauge\n");
        let _ = writeln!(
            out,
            "portcullis_cluster_lag_seconds {}",
            cluster.lag_seconds
        );
    }
    let snapshot = state.snapshot();
    out.push_str("# HELP portcullis_snapshot_revision The revision of the published snapshot.\n");
    out.push_str("# TYPE portcullis_snapshot_revision gauge\n");
    let _ = writeln!(out, "portcullis_snapshot_revision {}", snapshot.revision());
    out.push_str("# HELP portcullis_entities Entities in the published snapshot, by kind.\n");
    out.push_str("# TYPE portcullis_entities gauge\n");
    let counts = snapshot.counts();
    for (kind, count) in [
        ("users", counts.users),
        ("groups", counts.groups),
        ("nodes", counts.nodes),
        ("assets", counts.assets),
        ("rules", counts.rules),
        ("roles", counts.roles),
        ("tokens", counts.tokens),
    ] {
        let _ = writeln!(out, "portcullis_entities{{kind=\"{kind}\"}} {count}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
