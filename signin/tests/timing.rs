//! The sign-in crate's one test that asserts on durations, in a binary of its own:
//! cargo runs test binaries one after another, so this test runs alone, and the tests
//! of `sign_in` do not load the CPU while it measures. Add a timed test here only
//! with `--test-threads=1` in `.ci/run`, or it runs beside this one.
//!
//! The same property is asserted without a clock in `sign_in` (an unknown user
//! costs one argon2 verification, like a wrong password); these tests check that
//! nothing else in a sign-in tells them apart, with every method: a password alone,
//! with a TOTP code, asking for an emailed or SMS code or a passkey challenge, and
//! the passkey ceremonies without a password (start and finish).

use std::sync::Arc;

use portcullis_engine::*;
use portcullis_signin::*;
use serde_json::json;

const T: Time = Time::from_secs(1_900_000_000);

/// Held by each timed test: the tests of this binary time one at a time, never beside
/// each other.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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

const GOOD: &str = "Correct-Horse-42";
const ORIGIN: &str = "https://portcullis.example.com";

/// Whether the medians of interleaved timings of `known` and `unknown` (each given the
/// round) differ by at most a quarter of the larger.
fn same_time(
    what: &str,
    rounds: usize,
    mut known: impl FnMut(usize),
    mut unknown: impl FnMut(usize),
) {
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    let time = |call: &mut dyn FnMut(usize), round: usize| {
        let started = std::time::Instant::now();
        call(round);
        started.elapsed()
    };
    for round in 0..rounds {
        if round % 2 == 0 {
            known_times.push(time(&mut known, round));
            unknown_times.push(time(&mut unknown, round));
        } else {
            unknown_times.push(time(&mut unknown, round));
            known_times.push(time(&mut known, round));
        }
    }
    let median = |times: &mut Vec<std::time::Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (known, unknown) = (median(&mut known_times), median(&mut unknown_times));
    let (low, high) = (known.min(unknown), known.max(unknown));
    assert!(
        (high - low).as_secs_f64() <= 0.25 * high.as_secs_f64(),
        "{what}: median for a known user {known:?}, for an unknown one {unknown:?}"
    );
}

/// Issue #19: with every method, a sign-in's time does not tell whether the login name
/// names a user. `alice` has every factor (TOTP, a phone, an email address, a
/// passkey); `nobody-N` names nobody.
#[test]
fn unknown_and_known_users_take_the_same_time_with_every_method() {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            email_codes: true,
            sms_codes: true,
            passkeys: Some(PasskeySettings {
                rp_id: "example.com".to_owned(),
                rp_name: "Portcullis".to_owned(),
                origins: vec![ORIGIN.to_owned()],
            }),
            passwordless: true,
            ..AuthSettings::default()
        },
    )
    .unwrap();
    engine
        .write(
            &Actor::system("test"),
            vec![Op::Create(
                Spec::from_json(
                    EntityKind::User,
                    json!({"username": "alice", "email": "alice@example.com", "phone": "+15550100"}),
                )
                .unwrap(),
            )],
        )
        .unwrap();
    auth.set_password("admin", "alice", GOOD, false, T).unwrap();
    let creds = |code: Option<&str>| LoginRequest {
        login: "alice".to_owned(),
        password: GOOD.to_owned(),
        code: code.map(str::to_owned),
        method: None,
    };
    let totp = auth.enrol_totp(&creds(None), T).unwrap();
    let secret = totp
        .uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap()
        .to_owned();
    let bytes = totp_rs::Secret::Encoded(secret).to_bytes().unwrap();
    let code = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes)
        .generate(1_900_000_000);
    let recovery = auth.confirm_totp(&creds(None), &code, T).unwrap();
    // A passkey, registered by a software authenticator.
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    use webauthn_authenticator_rs::prelude::Url;
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;
    let mut device = WebauthnAuthenticator::new(SoftPasskey::new(true));
    let origin = Url::parse(ORIGIN).unwrap();
    let challenge = auth
        .start_passkey_registration(&creds(Some(&recovery[0])), "key", T)
        .unwrap();
    let attestation = device
        .do_registration(
            origin.clone(),
            serde_json::from_value(challenge.options).unwrap(),
        )
        .unwrap();
    auth.finish_passkey_registration(
        &challenge.ceremony,
        &serde_json::to_value(attestation).unwrap(),
        T,
    )
    .unwrap();
    // An assertion that answered another challenge: it names alice's passkey, and is
    // refused for both (a stale challenge for her, an unknown credential for a decoy).
    let first = auth.start_passwordless("alice", T).unwrap();
    let stale = serde_json::to_value(
        device
            .do_authentication(origin, serde_json::from_value(first.options).unwrap())
            .unwrap(),
    )
    .unwrap();
    let unknown = |round: usize| format!("nobody-{round}");
    let refused = |login: &str, code: Option<&str>, method: Option<MfaMethod>| {
        let outcome = auth
            .login(
                &LoginRequest {
                    login: login.to_owned(),
                    password: "Wrong-Password-9".to_owned(),
                    code: code.map(str::to_owned),
                    method,
                },
                T,
            )
            .unwrap();
        assert_eq!(outcome.status(), "denied", "{login}");
    };
    same_time(
        "a password and a TOTP code",
        21,
        |_| refused("alice", Some("123456"), None),
        |round| refused(&unknown(round), Some("123456"), None),
    );
    for method in [MfaMethod::Sms, MfaMethod::Email, MfaMethod::Passkey] {
        same_time(
            method.code(),
            21,
            |_| refused("alice", None, Some(method)),
            |round| refused(&unknown(round), None, Some(method)),
        );
    }
    same_time(
        "a passwordless start",
        41,
        |_| {
            auth.start_passwordless("alice", T).unwrap();
        },
        |round| {
            auth.start_passwordless(&unknown(round), T).unwrap();
        },
    );
    let finish = |login: &str| {
        let challenge = auth.start_passwordless(login, T).unwrap();
        let outcome = auth
            .finish_passkey_login(&challenge.ceremony, &stale, T)
            .unwrap();
        assert_eq!(outcome.status(), "denied", "{login}");
    };
    same_time(
        "a passwordless start and a refused finish",
        41,
        |_| finish("alice"),
        |round| finish(&unknown(round)),
    );
}
