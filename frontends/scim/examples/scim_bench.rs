//! SCIM create-user throughput: concurrent clients POSTing users over HTTP to a
//! server on a durable store (a redb file; every response waits for its commit).
//!
//! ```text
//! cargo run --release -p portcullis-scim --example scim_bench -- [--clients 32] [--users 20000] [--data DIR] [--direct]
//! ```
//!
//! Client and server share the process and the machine, so the figure is a floor
//! for the server alone. `--direct` skips HTTP and SCIM: as many threads call
//! `Engine::write` with the same users, which gives the engine's own ceiling;
//! `--in-process` calls the router without sockets or an HTTP client, which gives
//! the SCIM layer's.

use portcullis_engine::Actor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_engine::{Engine, TokenSpec};
use portcullis_http::{AppState, Settings};
use portcullis_scim::{ScimSettings, routes};
use serde_json::json;

/// The HTTP stack with SCIM's routes, as `portcullis serve` runs it.
fn scim_stack(engine: Arc<Engine>) -> axum::Router {
    portcullis_http::router_with(
        AppState::new(engine, Settings::default()),
        routes(ScimSettings::default()),
    )
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut clients = 32usize;
    let mut users = 20_000usize;
    let mut data = None;
    let mut direct = false;
    let mut in_process = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clients" => clients = args.next().ok_or("--clients N")?.parse()?,
            "--users" => users = args.next().ok_or("--users N")?.parse()?,
            "--data" => data = args.next(),
            "--direct" => direct = true,
            "--in-process" => in_process = true,
            // What `cargo bench` passes to a harness-less target.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let temporary = tempfile::tempdir()?;
    let directory = data.map_or_else(|| temporary.path().to_owned(), Into::into);
    std::fs::create_dir_all(&directory)?;
    let engine = Arc::new(Engine::open(directory.join("bench.redb"))?);
    let secret = "scim-bench-token-0123456789";
    engine.create_token_with_secret(
        &Actor::system("bench"),
        TokenSpec {
            id: None,
            name: format!("bench-{}", std::process::id()),
            user: None,
            roles: vec!["scim".to_owned()],
            expires_at: None,
            description: String::new(),
        },
        secret,
    )?;
    if direct {
        return engine_only(&engine, clients, users);
    }
    if in_process {
        return without_sockets(engine, secret, clients, users).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = scim_stack(engine.clone());
    tokio::spawn(async move {
        portcullis_http::serve(listener, app, &Settings::default(), std::future::pending()).await
    });
    let url = format!("http://{address}/scim/v2/Users");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let run = format!("{:x}", std::process::id());

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let client = client.clone();
        let url = url.clone();
        let run = run.clone();
        let count = users / clients + usize::from(worker < users % clients);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for n in 0..count {
                let user_name = format!("bench-{run}-{worker}-{n}");
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "displayName": format!("Bench User {worker} {n}"),
                    "emails": [{"value": format!("{user_name}@bench.test"), "type": "work", "primary": true}],
                    "externalId": format!("ext-{run}-{worker}-{n}"),
                    "active": true,
                });
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(secret)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status().as_u16(), 201, "create {user_name}");
                response.bytes().await.expect("body");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(users);
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let created = engine.snapshot().counts().users;
    assert!(created >= users as u64, "every user was created");
    println!(
        "{users} SCIM creates, {clients} clients, durable store: {:.2} s, {:.0} users/s, latency p50 {:.1} ms, p99 {:.1} ms, {} commits",
        elapsed.as_secs_f64(),
        users as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        engine.commits(),
    );
    Ok(())
}

/// The same creates through `Engine::write` from `clients` threads.
fn engine_only(
    engine: &Arc<Engine>,
    clients: usize,
    users: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use portcullis_engine::{Op, Source, Spec, UserSpec};
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|worker| {
            let engine = engine.clone();
            let count = users / clients + usize::from(worker < users % clients);
            std::thread::spawn(move || {
                for n in 0..count {
                    let mut spec = UserSpec::new(format!("direct-{worker}-{n}"));
                    spec.name = format!("Bench User {worker} {n}");
                    spec.email = Some(format!("direct-{worker}-{n}@bench.test"));
                    spec.external_id = Some(format!("ext-{worker}-{n}"));
                    spec.source = Source::Scim;
                    engine
                        .write(&Actor::system("bench"), vec![Op::Create(Spec::User(spec))])
                        .expect("create");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a writer thread panicked")?;
    }
    let elapsed = started.elapsed();
    println!(
        "{users} engine creates (no HTTP, no SCIM), {clients} threads, durable store: {:.2} s, {:.0} users/s, {} commits",
        elapsed.as_secs_f64(),
        users as f64 / elapsed.as_secs_f64(),
        engine.commits(),
    );
    Ok(())
}

/// The same requests, handed to the router directly: no sockets, no HTTP client.
async fn without_sockets(
    engine: Arc<Engine>,
    secret: &'static str,
    clients: usize,
    users: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use tower::ServiceExt;
    let app = scim_stack(engine.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let app = app.clone();
        let count = users / clients + usize::from(worker < users % clients);
        tasks.push(tokio::spawn(async move {
            for n in 0..count {
                let user_name = format!("oneshot-{worker}-{n}");
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "displayName": format!("Bench User {worker} {n}"),
                    "emails": [{"value": format!("{user_name}@bench.test"), "type": "work", "primary": true}],
                    "externalId": format!("ext-{worker}-{n}"),
                    "active": true,
                });
                let request = axum::http::Request::post("/scim/v2/Users")
                    .header("authorization", format!("Bearer {secret}"))
                    .header("host", "bench.test")
                    .header("content-type", "application/scim+json")
                    .body(axum::body::Body::from(body.to_string()))
                    .expect("a request");
                let response = app.clone().oneshot(request).await.expect("infallible");
                assert_eq!(response.status().as_u16(), 201, "create {user_name}");
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body");
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    println!(
        "{users} SCIM creates in process (no sockets), {clients} tasks, durable store: {:.2} s, {:.0} users/s, {} commits",
        elapsed.as_secs_f64(),
        users as f64 / elapsed.as_secs_f64(),
        engine.commits(),
    );
    Ok(())
}
