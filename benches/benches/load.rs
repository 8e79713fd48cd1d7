//! Bounded load runs over real HTTP on 127.0.0.1: check throughput of the Portcullis
//! HTTP API against a bare axum+serde handler that parses the same body, and SCIM
//! create-user throughput against the SCIM router backed by a file redb store.
//!
//! The load generator is small and in-process: N keep-alive HTTP/1.1 connections on
//! their own tokio runtime, each sending one request at a time and timing it into an
//! HDR histogram, until a fixed request count or a time cap is reached, whichever comes
//! first. The servers run on a separate two-worker runtime, as `portcullis serve`
//! does; on a 2-core machine client and server share the cores, for both servers
//! alike.
//!
//! - `http-portcullis`: `portcullis_http::router` over a file store holding the small
//!   synthetic estate, `POST /api/v1/check` with a `checker` token, bodies from the
//!   estate's 4,096 sampled queries (half allowed; the first answers are compared
//!   with the engine's).
//! - `http-bare`: `POST /api/v1/check` on a bare axum router whose handler
//!   deserializes the same body into a struct of the same fields and answers a fixed
//!   JSON decision.
//! - `scim-create`: `POST /scim/v2/Users` with 32 clients (group commit, then a
//!   commit per request: `EngineOptions { group_commit: false }`), then 1 client.
//!   After each run the store is closed and reopened, and every acknowledged user
//!   must be in it.
//!
//! Results go to `target/bench-report/load.json` when run with `--bench`; run by
//! `cargo test` (the target is `test = true`), each scenario is a short smoke run with the same
//! assertions.

use portcullis_engine::Actor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use hdrhistogram::Histogram;
use portcullis_benches::{AT, EstateSize, Synthetic, bench_mode};
use portcullis_engine::{Engine, EngineOptions, TokenSpec};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

portcullis_benches::server_allocator!();

/// How long a run may last, and how many requests it sends at most.
struct Bounds {
    requests: u64,
    cap: Duration,
}

fn bounds(requests: u64, cap_secs: u64) -> Bounds {
    if bench_mode() {
        Bounds {
            requests,
            cap: Duration::from_secs(cap_secs),
        }
    } else {
        Bounds {
            requests: (requests / 100).max(200),
            cap: Duration::from_secs(2),
        }
    }
}

/// What one load run measured.
#[derive(Debug)]
struct RunResult {
    name: String,
    connections: usize,
    requests: u64,
    seconds: f64,
    histogram: Histogram<u64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn json(&self) -> serde_json::Value {
        let us = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        serde_json::json!({
            "name": self.name,
            "connections": self.connections,
            "requests": self.requests,
            "seconds": self.seconds,
            "rate": self.rate(),
            "p50_us": us(0.5),
            "p90_us": us(0.9),
            "p99_us": us(0.99),
            "max_us": self.histogram.max() as f64 / 1000.0,
        })
    }

    fn print(&self) {
        let us = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "[load] {}: {} connections, {} requests in {:.2} s = {:.0}/s; p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            self.name,
            self.connections,
            self.requests,
            self.seconds,
            self.rate(),
            us(0.5),
            us(0.99),
            self.histogram.max() as f64 / 1000.0
        );
    }
}

// ----- the client -----------------------------------------------------------------------

/// One HTTP/1.1 keep-alive connection that sends a request and reads the whole
/// response (status line, headers, a `Content-Length` body).
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Connection {
        let stream = TcpStream::connect(address)
            .await
            .expect("the server accepts");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Connection {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Sends `request` (a complete HTTP request) and answers the status and body.
    async fn exchange(&mut self, request: &[u8]) -> (u16, Vec<u8>) {
        self.stream
            .write_all(request)
            .await
            .expect("the request is sent");
        self.buffer.clear();
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end]).expect("an ASCII head");
                let status: u16 = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .expect("a status line");
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("a Content-Length header");
                let body_start = end + 4;
                while self.buffer.len() < body_start + length {
                    self.read_more().await;
                }
                assert_eq!(
                    self.buffer.len(),
                    body_start + length,
                    "no pipelining: nothing may follow the body"
                );
                return (status, self.buffer[body_start..].to_vec());
            }
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .expect("the response is read");
        assert!(n > 0, "the server closed the connection mid-response");
        self.buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn http_request(method: &str, path: &str, token: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Makes the i-th request of a run.
type MakeRequest = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;
/// Judges the i-th answer (status, body) of a run; panics on a wrong one.
type Verify = Arc<dyn Fn(u64, u16, &[u8]) + Send + Sync>;

/// Runs `connections` clients until `bounds` is reached. `make(i)` gives the i-th
/// request and `verify(i, status, body)` judges its answer (it panics on a wrong one).
fn drive(
    name: &str,
    address: SocketAddr,
    connections: usize,
    bounds: &Bounds,
    make: MakeRequest,
    verify: Verify,
) -> RunResult {
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the client runtime starts");
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = bounds.requests;
    let cap = bounds.cap;
    let (requests, seconds, histogram) = client.block_on(async move {
        let mut opened = Vec::new();
        for _ in 0..connections {
            opened.push(Connection::open(address).await);
        }
        let started = Instant::now();
        let deadline = started + cap;
        let tasks: Vec<_> = opened
            .into_iter()
            .map(|mut connection| {
                let (next, make, verify) = (next.clone(), make.clone(), verify.clone());
                tokio::spawn(async move {
                    let mut histogram =
                        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
                    let mut done = 0u64;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total || Instant::now() >= deadline {
                            break;
                        }
                        let request = make(i);
                        let sent = Instant::now();
                        let (status, body) = connection.exchange(&request).await;
                        histogram
                            .record(sent.elapsed().as_nanos() as u64)
                            .expect("in bounds");
                        verify(i, status, &body);
                        done += 1;
                    }
                    (done, histogram)
                })
            })
            .collect();
        let mut requests = 0;
        let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        for task in tasks {
            let (done, histogram) = task.await.expect("a client task ends cleanly");
            requests += done;
            merged.add(histogram).expect("same bounds");
        }
        (requests, started.elapsed().as_secs_f64(), merged)
    });
    client.shutdown_timeout(Duration::from_secs(1));
    let result = RunResult {
        name: name.to_owned(),
        connections,
        requests,
        seconds,
        histogram,
    };
    result.print();
    result
}

/// A two-worker server runtime serving `router` on a fresh 127.0.0.1 port.
fn serve(router: axum::Router) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("load-server")
        .build()
        .expect("the server runtime starts");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let address = listener.local_addr().expect("a local address");
    runtime.spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the server runs");
    });
    (runtime, address)
}

fn token(engine: &Engine, role: &str) -> String {
    engine
        .create_token(
            &Actor::system("load-bench"),
            TokenSpec {
                id: None,
                name: format!("load-{role}"),
                user: None,
                roles: vec![role.to_owned()],
                expires_at: None,
                description: String::new(),
            },
        )
        .expect("a token is created")
        .1
}

// ----- HTTP check ---------------------------------------------------------------------------

/// The same fields as the check API's body, parsed the same way (unknown fields
/// refused), for the bare handler.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "parsed and dropped, like a handler that only answers"
)]
struct BareCheck {
    user: String,
    asset: String,
    account: String,
    protocol: String,
    action: String,
    #[serde(default)]
    at: Option<portcullis_engine::Time>,
    #[serde(default)]
    min_revision: Option<u64>,
}

async fn bare_check(Json(_body): Json<BareCheck>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "allowed": true,
        "actions": ["connect"],
        "revision": 1,
        "valid_until": null,
    }))
}

fn http_runs(dir: &std::path::Path) -> Vec<RunResult> {
    let synthetic = Synthetic::of(EstateSize::Small);
    let engine = Arc::new(Engine::open(dir.join("http.redb")).expect("a new store opens"));
    synthetic.load(&engine, portcullis_benches::DEFAULT_BATCH, false);
    let samples = synthetic.queries(&engine.snapshot(), 4096);
    let secret = token(&engine, "checker");
    let bodies: Arc<Vec<(Vec<u8>, bool)>> = Arc::new(
        samples
            .iter()
            .map(|sample| {
                let body = serde_json::json!({
                    "user": sample.user,
                    "asset": sample.asset,
                    "account": sample.account,
                    "protocol": sample.protocol,
                    "action": sample.action.names().next().expect("one action"),
                    "at": AT.to_string(),
                })
                .to_string();
                (
                    http_request("POST", "/api/v1/check", &secret, "application/json", &body),
                    sample.allowed,
                )
            })
            .collect(),
    );
    let bounds = bounds(400_000, 5);
    let make = {
        let bodies = bodies.clone();
        Arc::new(move |i: u64| bodies[i as usize % bodies.len()].0.clone())
    };

    let state =
        portcullis_http::AppState::new(engine.clone(), portcullis_http::Settings::default());
    let (server, address) = serve(portcullis_http::router(state));
    let verify = {
        let bodies = bodies.clone();
        Arc::new(move |i: u64, status: u16, body: &[u8]| {
            assert_eq!(status, 200, "check {i}: {}", String::from_utf8_lossy(body));
            // The first pass over the samples must give the engine's answers.
            if i < bodies.len() as u64 {
                let answer: serde_json::Value =
                    serde_json::from_slice(body).expect("a JSON decision");
                assert_eq!(
                    answer["allowed"].as_bool(),
                    Some(bodies[i as usize].1),
                    "check {i}: {answer}"
                );
            }
        })
    };
    let portcullis = drive(
        "http-portcullis",
        address,
        64,
        &bounds,
        make.clone(),
        verify,
    );
    server.shutdown_timeout(Duration::from_secs(1));

    let bare = axum::Router::new().route("/api/v1/check", post(bare_check));
    let (server, address) = serve(bare);
    let verify = Arc::new(|i: u64, status: u16, body: &[u8]| {
        assert_eq!(
            status,
            200,
            "bare check {i}: {}",
            String::from_utf8_lossy(body)
        );
        assert!(body.starts_with(b"{\""), "bare check {i}: a JSON answer");
    });
    let bare = drive("http-bare", address, 64, &bounds, make, verify);
    server.shutdown_timeout(Duration::from_secs(1));
    engine.close();
    vec![portcullis, bare]
}

// ----- SCIM create ------------------------------------------------------------------------

fn scim_run(
    dir: &std::path::Path,
    clients: usize,
    group_commit: bool,
    requests: u64,
    cap: u64,
) -> RunResult {
    let name = if group_commit {
        format!("scim-create-{clients}")
    } else {
        format!("scim-create-{clients}-per-request")
    };
    let path = dir.join(format!("{name}.redb"));
    let options = EngineOptions {
        group_commit,
        ..EngineOptions::default()
    };
    let engine = Arc::new(Engine::open_with(&path, options).expect("a new store opens"));
    let secret = token(&engine, "scim");
    let users_before = engine.snapshot().counts().users;
    let state =
        portcullis_http::AppState::new(engine.clone(), portcullis_http::Settings::default());
    let router = portcullis_http::router_with(
        state,
        portcullis_scim::routes(portcullis_scim::ScimSettings::default()),
    );
    let (server, address) = serve(router);
    let make = Arc::new(move |i: u64| {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("load-user-{i}"),
            "externalId": format!("ext-{i}"),
            "name": {"givenName": "Load", "familyName": format!("User {i}")},
            "emails": [{"value": format!("load-user-{i}@example.com"), "type": "work", "primary": true}],
            "active": true,
        })
        .to_string();
        http_request(
            "POST",
            "/scim/v2/Users",
            &secret,
            "application/scim+json",
            &body,
        )
    });
    let verify = Arc::new(|i: u64, status: u16, body: &[u8]| {
        assert_eq!(status, 201, "create {i}: {}", String::from_utf8_lossy(body));
    });
    let bounds = bounds(requests, cap);
    let result = drive(&name, address, clients, &bounds, make, verify);
    server.shutdown_timeout(Duration::from_secs(1));
    engine.close();
    drop(engine);
    // Durable: every acknowledged create is in the store after a reopen.
    let reopened = Engine::open(&path).expect("the store reopens");
    let stored = reopened.snapshot().counts().users - users_before;
    assert_eq!(
        stored, result.requests,
        "{name}: {} creates acknowledged, {stored} in the reopened store",
        result.requests
    );
    reopened.close();
    result
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut results = http_runs(dir.path());
    results.push(scim_run(dir.path(), 32, true, 200_000, 5));
    results.push(scim_run(dir.path(), 32, false, 50_000, 4));
    results.push(scim_run(dir.path(), 1, true, 20_000, 4));
    let (portcullis, bare) = (&results[0], &results[1]);
    let ratio = portcullis.rate() / bare.rate();
    let p99_ms = portcullis.histogram.value_at_quantile(0.99) as f64 / 1e6;
    eprintln!(
        "[load] portcullis / bare = {ratio:.2} (target >= 0.8), portcullis p99 {p99_ms:.2} ms (target <= 1 ms)"
    );
    if bench_mode() {
        let out = serde_json::json!({
            "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "runs": results.iter().map(RunResult::json).collect::<Vec<_>>(),
            "http_ratio": ratio,
        });
        let report =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report");
        std::fs::create_dir_all(&report).expect("the report directory can be created");
        std::fs::write(
            report.join("load.json"),
            serde_json::to_string_pretty(&out).expect("json"),
        )
        .expect("the report can be written");
    }
}
