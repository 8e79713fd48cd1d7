//! Sign-in latency with the default (OWASP) argon2id parameters, on a redb file:
//!
//! - `login/wrong_password`: a real user, a wrong password;
//! - `login/unknown_user`: a login name nobody has (verified against the dummy hash);
//! - `login/ok`: the right password (includes recording `last_login`: a durable write).
//!
//! The first two must take the same time: an attacker must not learn which names
//! exist by timing. Lockout is set out of reach so that every attempt takes the
//! password path. After criterion, prints the median of each; then, since criterion
//! runs one case after the other and a shared machine drifts, a bounded interleaved
//! run (`PORTCULLIS_BENCH_PAIRS` pairs, default 60: wrong password, unknown user,
//! alternately) prints both medians and their ratio.

use portcullis_engine::Actor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use portcullis_engine::{Engine, EntityKind, Op, Spec, Time};
use portcullis_signin::{Auth, AuthSettings, LockoutSettings, LoginOutcome, LoginRequest};

portcullis_benches::server_allocator!();

const GOOD: &str = "Correct-Horse-42";

static TIMES: Mutex<Vec<(&'static str, Vec<Duration>)>> = Mutex::new(Vec::new());

fn record(id: &'static str, time: Duration) {
    let mut times = TIMES.lock().expect("times lock");
    match times.iter_mut().find(|(name, _)| *name == id) {
        Some((_, list)) => list.push(time),
        None => times.push((id, vec![time])),
    }
}

fn request(login: &str, password: &str) -> LoginRequest {
    LoginRequest {
        login: login.to_owned(),
        password: password.to_owned(),
        code: None,
        method: None,
    }
}

struct Fixture {
    auth: Auth,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Arc::new(Engine::open(dir.path().join("login.redb")).expect("open"));
    let auth = Auth::new(
        engine.clone(),
        AuthSettings {
            lockout: LockoutSettings {
                max_failures: u32::MAX,
                ..LockoutSettings::default()
            },
            ..AuthSettings::default()
        },
    )
    .expect("sign-in");
    let spec =
        Spec::from_json(EntityKind::User, serde_json::json!({"username": "alice"})).expect("spec");
    engine
        .write(&Actor::system("bench"), vec![Op::Create(spec)])
        .expect("user");
    auth.set_password("bench", "alice", GOOD, false, Time::now())
        .expect("password");
    Fixture { auth, _dir: dir }
}

fn bench(c: &mut Criterion) {
    let fixture = fixture();
    let auth = &fixture.auth;
    let mut group = c.benchmark_group("login");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    let cases: [(&'static str, &str, &str); 3] = [
        ("wrong_password", "alice", "Wrong-Horse-42"),
        ("unknown_user", "nobody", "Wrong-Horse-42"),
        ("ok", "alice", GOOD),
    ];
    for (id, login, password) in cases {
        let attempt = request(login, password);
        group.bench_function(id, |b| {
            b.iter(|| {
                let started = Instant::now();
                let outcome = auth.login(&attempt, Time::now()).expect("login");
                record(id, started.elapsed());
                assert_eq!(matches!(outcome, LoginOutcome::Ok { .. }), id == "ok");
            });
        });
    }
    group.finish();
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    let mut times = TIMES.lock().expect("times lock");
    let mut medians = Vec::new();
    for (id, list) in times.iter_mut() {
        let m = median(list);
        println!("login/{id}: median {m:?} over {} attempts", list.len());
        medians.push((*id, m));
    }
    let get = |id| {
        medians
            .iter()
            .find(|(name, _)| *name == id)
            .map(|(_, m)| *m)
    };
    if let (Some(wrong), Some(unknown)) = (get("wrong_password"), get("unknown_user")) {
        println!(
            "unknown_user / wrong_password median ratio: {:.3}",
            unknown.as_secs_f64() / wrong.as_secs_f64()
        );
    }
    drop(times);
    let pairs: usize = std::env::var("PORTCULLIS_BENCH_PAIRS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    // Without `--bench` (`cargo test --benches`), criterion only tests; so do we.
    if pairs == 0 || !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let fixture = fixture();
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        for (login, list) in [("alice", &mut wrong), ("nobody", &mut unknown)] {
            let started = Instant::now();
            let outcome = fixture
                .auth
                .login(&request(login, "Wrong-Horse-42"), Time::now())
                .expect("login");
            list.push(started.elapsed());
            assert!(matches!(outcome, LoginOutcome::Denied { .. }));
        }
    }
    let (wrong, unknown) = (median(&mut wrong), median(&mut unknown));
    println!(
        "interleaved, {pairs} pairs: wrong_password median {wrong:?}, unknown_user median {unknown:?}, ratio {:.3}",
        unknown.as_secs_f64() / wrong.as_secs_f64()
    );
}
