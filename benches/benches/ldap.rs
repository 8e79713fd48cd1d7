//! Bounded load runs of the LDAP directory (issue 17) over 127.0.0.1, with a client
//! made of `ldap3_proto`'s codec (the server's own codec, so the figures measure the
//! server, not a client library):
//!
//! - `ldap-search-uid`: 16 connections, each bound with a `system-auditor` token, each
//!   sending `(uid=X)` sub-tree searches from the base one at a time, X drawn from the
//!   estate's users; each answer must hold exactly the entries the engine says (one
//!   for a user valid now, none otherwise). Searches per second and latency.
//! - `ldap-paged-groups`: `(objectClass=posixGroup)` under `ou=groups`, paged by 500:
//!   the time until the last page, which must hold every group.
//! - `ldap-bind`: simple binds of a user with a password (argon2 with the default
//!   parameters, as `serve` has them), one at a time: the latency.
//!
//! The server runs on a two-worker runtime, as `portcullis serve` does, the clients
//! on another; on a 2-core machine they share the cores. Medium estate with
//! `--bench` (results in `target/bench-report/ldap.json`); a short smoke run at the
//! small size under `cargo test`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapDerefAliases, LdapFilter, LdapMsg, LdapOp, LdapResultCode,
    LdapSearchRequest, LdapSearchScope,
};
use portcullis_benches::{EstateSize, Synthetic, bench_mode, user_name};
use portcullis_engine::{Actor, Engine, Op, Spec, Time, TokenSpec};
use portcullis_ldap_server::{BaseDn, LdapServer, Settings, Transport};
use portcullis_signin::{Auth, AuthSettings};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

portcullis_benches::server_allocator!();

const BASE: &str = "dc=portcullis";
const PASSWORD: &str = "Correct-Horse-42";
const CONNECTIONS: usize = 16;

type Conn = Framed<TcpStream, LdapCodec>;

async fn connect(address: SocketAddr) -> Conn {
    let stream = TcpStream::connect(address)
        .await
        .expect("the server accepts");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    Framed::new(stream, LdapCodec::new(Some(16 * 1024 * 1024), None))
}

/// Binds; the result code.
async fn bind(conn: &mut Conn, id: i32, dn: &str, password: &str) -> LdapResultCode {
    conn.send(LdapMsg::new(
        id,
        LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: dn.to_owned(),
            cred: LdapBindCred::Simple(password.to_owned()),
        }),
    ))
    .await
    .expect("a bind is sent");
    match conn.next().await.expect("an answer").expect("a message").op {
        LdapOp::BindResponse(response) => response.res.code,
        other => panic!("not a bind response: {other:?}"),
    }
}

fn search(base: &str, filter: LdapFilter) -> LdapSearchRequest {
    LdapSearchRequest {
        base: base.to_owned(),
        scope: LdapSearchScope::Subtree,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit: 0,
        typesonly: false,
        filter,
        attrs: Vec::new(),
    }
}

/// Sends a search; the entries' count, the result code and the paging cookie.
async fn run_search(
    conn: &mut Conn,
    id: i32,
    request: LdapSearchRequest,
    controls: Vec<LdapControl>,
) -> (usize, LdapResultCode, Option<Vec<u8>>) {
    conn.send(LdapMsg::new_with_ctrls(
        id,
        LdapOp::SearchRequest(request),
        controls,
    ))
    .await
    .expect("a search is sent");
    let mut entries = 0;
    loop {
        let message = conn.next().await.expect("an answer").expect("a message");
        match message.op {
            LdapOp::SearchResultEntry(_) => entries += 1,
            LdapOp::SearchResultDone(result) => {
                let cookie = message.ctrl.into_iter().find_map(|c| match c {
                    LdapControl::SimplePagedResults { cookie, .. } => Some(cookie),
                    _ => None,
                });
                return (entries, result.code, cookie);
            }
            other => panic!("unexpected answer: {other:?}"),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("a histogram")
}

fn main() {
    let size = if bench_mode() {
        EstateSize::Medium
    } else {
        EstateSize::Small
    };
    let synthetic = Synthetic::of(size);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store =
        portcullis_benches::copy_store(&portcullis_benches::cached_store(&synthetic), dir.path());
    let engine = Arc::new(Engine::open(&store).expect("the estate opens"));
    let auth = Arc::new(Auth::new(engine.clone(), AuthSettings::default()).expect("sign-in"));
    // A user with a password (hashed with the default argon2 parameters) and a token.
    let user = serde_json::json!({"username": "ldap-bench", "password": PASSWORD});
    engine
        .write(
            &Actor::system("bench"),
            vec![Op::Create(Spec::User(
                serde_json::from_value(user).expect("a user spec"),
            ))],
        )
        .expect("the bench user is written");
    let spec = TokenSpec {
        id: None,
        name: "ldap-bench".to_owned(),
        user: None,
        roles: vec!["system-auditor".to_owned()],
        expires_at: None,
        description: String::new(),
    };
    let (_, secret) = engine
        .create_token(&Actor::system("bench"), spec)
        .expect("the bench token is made");
    let token_dn = format!("cn=ldap-bench,ou=tokens,{BASE}");

    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the server runtime");
    let mut settings = Settings::new(BaseDn::parse(BASE).expect("the base DN"));
    settings.max_connections = 64;
    let server = LdapServer::new(auth, settings, None);
    let address = server_runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("its address");
        tokio::spawn(server.serve(listener, Transport::Plain, std::future::pending()));
        address
    });
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the client runtime");

    // The answers expected, from the engine: users valid now give one entry.
    let n_users = synthetic.shape.n_users;
    let snapshot = engine.snapshot();
    let now = Time::now();
    let expected: Arc<Vec<usize>> = Arc::new(
        (0..n_users)
            .map(|i| {
                usize::from(
                    snapshot
                        .user(&user_name(i))
                        .is_some_and(|user| user.is_valid_at(now)),
                )
            })
            .collect(),
    );
    let (limit, cap) = if bench_mode() {
        (400_000u64, Duration::from_secs(20))
    } else {
        (2_000, Duration::from_secs(2))
    };
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let histograms: Vec<Histogram<u64>> = client.block_on(async {
        let mut tasks = Vec::new();
        for connection in 0..CONNECTIONS {
            let (sent, expected, token_dn, secret) = (
                sent.clone(),
                expected.clone(),
                token_dn.clone(),
                secret.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut conn = connect(address).await;
                assert_eq!(
                    bind(&mut conn, 1, &token_dn, &secret).await,
                    LdapResultCode::Success
                );
                let mut histogram = histogram();
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ connection as u64;
                let mut id = 2;
                while sent.fetch_add(1, Ordering::Relaxed) < limit && started.elapsed() < cap {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let index = (state % u64::from(n_users)) as u32;
                    let filter = LdapFilter::Equality("uid".to_owned(), user_name(index));
                    let begun = Instant::now();
                    let (entries, code, _) =
                        run_search(&mut conn, id, search(BASE, filter), Vec::new()).await;
                    histogram
                        .record(begun.elapsed().as_nanos() as u64)
                        .expect("a latency fits");
                    assert_eq!(code, LdapResultCode::Success);
                    assert_eq!(entries, expected[index as usize], "{}", user_name(index));
                    id += 1;
                }
                histogram
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.push(task.await.expect("a client task"));
        }
        all
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut merged = histogram();
    for h in &histograms {
        merged.add(h).expect("histograms merge");
    }
    let searches = merged.len();
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    eprintln!(
        "[ldap] ldap-search-uid ({}): {CONNECTIONS} connections, {searches} searches in {seconds:.2} s = {:.0}/s; p50 {:.0} µs, p99 {:.0} µs",
        size.name(),
        searches as f64 / seconds,
        us(&merged, 0.5),
        us(&merged, 0.99)
    );

    // Every group, paged by 500: the time until the last page.
    let groups = snapshot.counts().groups as usize;
    let mut paged = histogram();
    let rounds = if bench_mode() { 5 } else { 1 };
    client.block_on(async {
        let mut conn = connect(address).await;
        assert_eq!(
            bind(&mut conn, 1, &token_dn, &secret).await,
            LdapResultCode::Success
        );
        let mut id = 2;
        for _ in 0..rounds {
            let begun = Instant::now();
            let (mut total, mut cookie) = (0, Vec::new());
            loop {
                let request = search(
                    &format!("ou=groups,{BASE}"),
                    LdapFilter::Equality("objectClass".to_owned(), "posixGroup".to_owned()),
                );
                let control = LdapControl::SimplePagedResults { size: 500, cookie };
                let (entries, code, next) = run_search(&mut conn, id, request, vec![control]).await;
                id += 1;
                assert_eq!(code, LdapResultCode::Success);
                total += entries;
                match next {
                    Some(next) if !next.is_empty() => cookie = next,
                    _ => break,
                }
            }
            paged
                .record(begun.elapsed().as_nanos() as u64)
                .expect("a duration fits");
            assert_eq!(total, groups, "every group, once");
        }
    });
    eprintln!(
        "[ldap] ldap-paged-groups ({}): {groups} groups by 500, median {:.1} ms to the last page",
        size.name(),
        us(&paged, 0.5) / 1000.0
    );

    // Binds with a password: argon2 with the default parameters.
    let mut binds = histogram();
    let n_binds = if bench_mode() { 50 } else { 3 };
    client.block_on(async {
        let mut conn = connect(address).await;
        let dn = format!("uid=ldap-bench,ou=people,{BASE}");
        for id in 1..=n_binds {
            let begun = Instant::now();
            assert_eq!(
                bind(&mut conn, id, &dn, PASSWORD).await,
                LdapResultCode::Success
            );
            binds
                .record(begun.elapsed().as_nanos() as u64)
                .expect("a latency fits");
        }
    });
    eprintln!(
        "[ldap] ldap-bind ({}): {n_binds} binds, median {:.1} ms, p90 {:.1} ms",
        size.name(),
        us(&binds, 0.5) / 1000.0,
        us(&binds, 0.9) / 1000.0
    );
    if bench_mode() {
        let report = serde_json::json!({
            "estate": size.name(),
            "search_uid": {"connections": CONNECTIONS, "searches": searches, "seconds": seconds,
                           "rate": searches as f64 / seconds, "p50_us": us(&merged, 0.5),
                           "p99_us": us(&merged, 0.99)},
            "paged_groups": {"groups": groups, "page": 500, "rounds": rounds,
                             "median_ms": us(&paged, 0.5) / 1000.0},
            "bind": {"binds": n_binds, "median_ms": us(&binds, 0.5) / 1000.0,
                     "p90_ms": us(&binds, 0.9) / 1000.0},
        });
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report");
        std::fs::create_dir_all(&dir).expect("the report directory");
        std::fs::write(dir.join("ldap.json"), format!("{report:#}\n"))
            .expect("the report is written");
    }
    engine.close();
}
