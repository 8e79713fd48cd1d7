//! The web console's server time (issue 18): the users list's first page, and "my
//! assets" for the heavy user (who reaches a tenth of the assets: 10,000 at the
//! medium estate), each a whole request through the server's router and stack —
//! session, authorization, handler, HTML — in process, without the network.
//!
//! Targets: the users list ≤ 50 ms and my assets ≤ 100 ms at the medium estate
//! (`PORTCULLIS_BENCH_SIZES=medium cargo bench -p portcullis-benches --bench console`).
//! Run by `cargo test`, it is a smoke run at the small size with the same assertions.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, header};
use criterion::{BenchmarkId, Criterion};
use portcullis_benches::{EstateSize, HEAVY_USER, Synthetic, cached_store};
use portcullis_engine::{Actor, Engine, EntityKind, Op, Spec, Time};
use portcullis_http::{AppState, Settings};
use serde_json::json;
use tower_service::Service;

portcullis_benches::server_allocator!();

const PASSWORD: &str = "bench-console-Passw0rd";

fn cookie(response: &Response<Body>, name: &str) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            value
                .split(';')
                .next()?
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no `{name}` cookie"))
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

async fn send(router: &mut axum::Router, request: Request<Body>) -> Response<Body> {
    router.call(request).await.expect("the router answers")
}

/// Signs `login` in through the console's own form; its session cookie.
async fn sign_in(router: &mut axum::Router, login: &str) -> String {
    let form = send(
        router,
        Request::get("/ui/login")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    let csrf = cookie(&form, "pc_csrf");
    let body = format!("_csrf={csrf}&login={login}&password={PASSWORD}");
    let answer = send(
        router,
        Request::post("/ui/login")
            .header(header::COOKIE, format!("pc_csrf={csrf}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("a request"),
    )
    .await;
    assert_eq!(
        answer.status(),
        303,
        "{login} signs in: {}",
        body_text(answer).await
    );
    cookie(&answer, "pc_session")
}

async fn page(router: &mut axum::Router, session: &str, path: &str) -> String {
    let answer = send(
        router,
        Request::get(path)
            .header(header::COOKIE, format!("pc_session={session}"))
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(answer.status(), 200, "{path}");
    body_text(answer).await
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    for size in EstateSize::selected(&[EstateSize::Small, EstateSize::Medium]) {
        let synthetic = Synthetic::of(size);
        let store = cached_store(&synthetic);
        // A copy: the bench writes (a user, a password), the cache stays as built.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("console.redb");
        std::fs::copy(&store, &path).expect("copy the cached store");
        let engine = std::sync::Arc::new(Engine::open(&path).expect("the store opens"));
        let admin = Spec::from_json(
            EntityKind::User,
            json!({"username": "bench-admin", "system_roles": ["system-admin"], "password": PASSWORD}),
        )
        .expect("a user spec");
        engine
            .write(&Actor::system("bench"), vec![Op::Create(admin)])
            .expect("the administrator is created");
        let state = AppState::new(engine.clone(), Settings::default());
        state
            .auth()
            .set_password("bench", HEAVY_USER, PASSWORD, false, Time::now())
            .expect("the heavy user gets a password");
        let mut router = portcullis_http::router(state);
        let (admin_session, heavy_session) = runtime.block_on(async {
            (
                sign_in(&mut router, "bench-admin").await,
                sign_in(&mut router, HEAVY_USER).await,
            )
        });
        let first = runtime.block_on(page(&mut router, &admin_session, "/ui/users"));
        assert!(
            first.contains("/ui/users?offset=50"),
            "the first page links the next"
        );
        let mine = runtime.block_on(page(&mut router, &heavy_session, "/ui/me/assets"));
        assert!(mine.contains("my-assets"));
        // The pager says how many the heavy user reaches: "1–25 of N".
        let reached = mine
            .split(" of ")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap_or("?");
        eprintln!(
            "[console] {}: the heavy user reaches {reached} assets",
            size.name()
        );
        let mut group = criterion.benchmark_group("console");
        group
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        group.bench_function(BenchmarkId::new("users-first-page", size.name()), |b| {
            b.iter(|| runtime.block_on(page(&mut router, &admin_session, "/ui/users")));
        });
        group.bench_function(BenchmarkId::new("my-assets", size.name()), |b| {
            b.iter(|| runtime.block_on(page(&mut router, &heavy_session, "/ui/me/assets")));
        });
        group.finish();
        drop(router);
        engine.close();
    }
    criterion.final_summary();
}
