//! The engine's one test that asserts on durations, in a binary of its own: cargo
//! runs test binaries one after another, so this test runs alone, and the property
//! tests of `main` do not load the CPU while it measures. Add a timed test here only
//! with `--test-threads=1` in `.ci/run`, or it runs beside this one.
//!
//! The same property is asserted without a clock in `main` (`auth`: an unknown user
//! costs one argon2 verification, like a wrong password); this test checks that
//! nothing else in a sign-in tells them apart.

use std::sync::Arc;

use portcullis_engine::*;
use serde_json::json;

const T: Time = Time::from_secs(1_900_000_000);

fn denied(auth: &Auth, login: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    let outcome = auth
        .login(
            &LoginRequest {
                login: login.to_owned(),
                password: "Wrong-Password-9".to_owned(),
                code: None,
                method: None,
            },
            T,
        )
        .unwrap();
    let elapsed = started.elapsed();
    match outcome {
        LoginOutcome::Denied { reason } => assert_eq!(reason.code(), "invalid_credentials"),
        other => panic!("{login}: {}", other.status()),
    }
    elapsed
}

/// Issue #7: a login's time does not tell whether the user exists. A statistical test
/// on medians of interleaved attempts (the order alternates, so drift of the machine
/// falls on both sides), with argon2 parameters heavy enough to dominate an attempt.
#[test]
fn unknown_user_and_wrong_password_take_the_same_time_by_their_medians() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path().join("store.redb")).unwrap());
    let auth = Auth::new(
        engine.clone(),
        AuthSettings {
            argon2: Argon2Settings {
                memory_kib: 8 * 1024,
                iterations: 1,
                parallelism: 1,
            },
            lockout: LockoutSettings {
                max_failures: 100_000,
                window_minutes: 10,
                lock_minutes: 30,
            },
            ..AuthSettings::default()
        },
    )
    .unwrap();
    engine
        .write(
            &Actor::system("test"),
            vec![Op::Create(
                Spec::from_json(EntityKind::User, json!({"username": "alice"})).unwrap(),
            )],
        )
        .unwrap();
    auth.set_password("admin", "alice", "Correct-Horse-42", false, T)
        .unwrap();
    let timed = |login: &str| denied(&auth, login);
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for round in 0..21 {
        if round % 2 == 0 {
            wrong.push(timed("alice"));
            unknown.push(timed(&format!("nobody-{round}")));
        } else {
            unknown.push(timed(&format!("nobody-{round}")));
            wrong.push(timed("alice"));
        }
    }
    let median = |times: &mut Vec<std::time::Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (wrong, unknown) = (median(&mut wrong), median(&mut unknown));
    let (low, high) = (wrong.min(unknown), wrong.max(unknown));
    assert!(
        (high - low).as_secs_f64() <= 0.25 * high.as_secs_f64(),
        "median of a wrong password {wrong:?}, of an unknown user {unknown:?}"
    );
}
