//! Prometheus metrics, in the text exposition format, kept by hand: requests by route
//! and status, request latency, decisions, write commit latency, and the snapshot's
//! revision and size (read at scrape time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
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

/// Per route template: requests by method and status, and latency.
#[derive(Default)]
struct RouteStats {
    /// (method, status, count); a handful per route, so a list.
    counts: Vec<(String, u16, u64)>,
    latency: LatencyHistogram,
}

#[derive(Default)]
struct Requests {
    routes: BTreeMap<String, RouteStats>,
}

#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<Requests>,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl Metrics {
    pub(crate) fn decision(&self, allowed: bool) {
        let counter = if allowed { &self.allowed } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().expect("metrics lock");
        // No allocation once a route, method and status have been seen.
        if !requests.routes.contains_key(route) {
            requests
                .routes
                .insert(route.to_owned(), RouteStats::default());
        }
        let stats = requests.routes.get_mut(route).expect("inserted above");
        stats.latency.observe(elapsed);
        match stats
            .counts
            .iter_mut()
            .find(|(m, s, _)| m == method && *s == status)
        {
            Some((_, _, count)) => *count += 1,
            None => stats.counts.push((method.to_owned(), status, 1)),
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
fn method_label(method: &Method) -> &'static str {
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
        _ => "other",
    }
}

/// Counts every request by the route template it matched. Labels come only from the
/// route table and the standard methods, so their number is bounded.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) if method != "other" => path.as_str().to_owned(),
        _ => UNMATCHED.to_owned(),
    };
    let response = next.run(request).await;
    state.metrics().request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    let mut out = String::new();
    {
        let requests = metrics.requests.lock().expect("metrics lock");
        out.push_str(
            "# HELP portcullis_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE portcullis_http_requests_total counter\n");
        for (route, stats) in &requests.routes {
            let mut counts = stats.counts.clone();
            counts.sort();
            for (method, status, count) in counts {
                let _ = writeln!(
                    out,
                    "portcullis_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(&method),
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP portcullis_http_request_duration_seconds Time to answer a request, by route.\n",
        );
        out.push_str("# TYPE portcullis_http_request_duration_seconds histogram\n");
        for (route, stats) in &requests.routes {
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
