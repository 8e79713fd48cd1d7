//! Sign-in latency per method, with the default (OWASP) argon2id parameters, on a
//! redb file: what the server spends on one whole sign-in of a user who has every
//! factor, from the first request to `ok`:
//!
//! - `signin/password`: a password alone (a user without MFA);
//! - `signin/totp`: the password with a TOTP code;
//! - `signin/email` and `signin/sms`: the password asking for a code (issued, stored
//!   hashed, counted toward the SMS limits), then the password with the code: two
//!   requests, two argon2 verifications; sending is the front-end's and not timed;
//! - `signin/recovery_code`: the password with a recovery code;
//! - `signin/passkey`: the password asking for a passkey challenge, then the
//!   assertion (two requests, one argon2 verification);
//! - `signin/passwordless`: the passkey alone (challenge, then assertion: no argon2).
//!
//! Only the server's calls are timed: the software authenticator's signing, the TOTP
//! app's code and the recovery codes' issuing happen outside the clock. Each
//! iteration signs in at a `now` 30 s after the last one's, so a TOTP code is never a
//! replay. Lockout and SMS limits are set out of reach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use portcullis_engine::{Actor, Engine, EntityKind, Op, Spec, Time};
use portcullis_signin::{
    Auth, AuthSettings, LockoutSettings, LoginOutcome, LoginRequest, MfaMethod, PasskeySettings,
    SmsLimits,
};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

portcullis_benches::server_allocator!();

const GOOD: &str = "Correct-Horse-42";
const ORIGIN: &str = "https://portcullis.example.com";
const STEP: i64 = 30 * 1_000_000;

struct Fixture {
    auth: Auth,
    totp_secret: Vec<u8>,
    device: WebauthnAuthenticator<SoftPasskey>,
    /// The `now` of the next sign-in.
    now: Time,
    _dir: tempfile::TempDir,
}

fn request(login: &str, code: Option<&str>, method: Option<MfaMethod>) -> LoginRequest {
    LoginRequest {
        login: login.to_owned(),
        password: GOOD.to_owned(),
        code: code.map(str::to_owned),
        method,
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = Arc::new(Engine::open(dir.path().join("signin.redb")).expect("open"));
    let auth = Auth::new(
        engine.clone(),
        AuthSettings {
            lockout: LockoutSettings {
                max_failures: u32::MAX,
                ..LockoutSettings::default()
            },
            email_codes: true,
            sms_codes: true,
            sms_limits: SmsLimits {
                per_user: u32::MAX,
                per_number: u32::MAX,
                window_minutes: 1,
            },
            passkeys: Some(PasskeySettings {
                rp_id: "example.com".to_owned(),
                rp_name: "Portcullis".to_owned(),
                origins: vec![ORIGIN.to_owned()],
            }),
            passwordless: true,
            ..AuthSettings::default()
        },
    )
    .expect("sign-in");
    for spec in [
        serde_json::json!({"username": "plain"}),
        serde_json::json!({"username": "alice", "email": "alice@example.com", "phone": "+15550100"}),
    ] {
        let spec = Spec::from_json(EntityKind::User, spec).expect("spec");
        engine
            .write(&Actor::system("bench"), vec![Op::Create(spec)])
            .expect("user");
    }
    let now = Time::from_secs(1_900_000_000);
    for user in ["plain", "alice"] {
        auth.set_password("bench", user, GOOD, false, now)
            .expect("password");
    }
    let enrolment = auth
        .enrol_totp(&request("alice", None, None), now)
        .expect("totp");
    let secret = enrolment
        .uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("secret")
        .to_owned();
    let totp_secret = totp_rs::Secret::Encoded(secret).to_bytes().expect("base32");
    let mut fixture = Fixture {
        auth,
        totp_secret,
        device: WebauthnAuthenticator::new(SoftPasskey::new(true)),
        now,
        _dir: dir,
    };
    let code = fixture.totp(now);
    let recovery = fixture
        .auth
        .confirm_totp(&request("alice", None, None), &code, now)
        .expect("confirm");
    fixture.now = now.add_micros(STEP);
    let challenge = fixture
        .auth
        .start_passkey_registration(
            &request("alice", Some(&recovery[0]), None),
            "key",
            fixture.now,
        )
        .expect("registration");
    let attestation = fixture
        .device
        .do_registration(
            Url::parse(ORIGIN).expect("origin"),
            serde_json::from_value(challenge.options).expect("options"),
        )
        .expect("attestation");
    fixture
        .auth
        .finish_passkey_registration(
            &challenge.ceremony,
            &serde_json::to_value(attestation).expect("json"),
            fixture.now,
        )
        .expect("registered");
    fixture
}

impl Fixture {
    fn totp(&self, now: Time) -> String {
        let secs = u64::try_from(now.as_micros() / 1_000_000).expect("time");
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, self.totp_secret.clone())
            .generate(secs)
    }

    fn assertion(&mut self, options: serde_json::Value) -> serde_json::Value {
        let credential = self
            .device
            .do_authentication(
                Url::parse(ORIGIN).expect("origin"),
                serde_json::from_value(options).expect("options"),
            )
            .expect("assertion");
        serde_json::to_value(credential).expect("json")
    }

    /// One whole sign-in with `method`; the time the server spent on it.
    fn sign_in(&mut self, method: &str) -> Duration {
        self.now = self.now.add_micros(STEP);
        let now = self.now;
        let timed = |call: &mut dyn FnMut() -> LoginOutcome| {
            let started = Instant::now();
            let outcome = call();
            (started.elapsed(), outcome)
        };
        let (spent, outcome) = match method {
            "password" => timed(&mut || {
                self.auth
                    .login(&request("plain", None, None), now)
                    .expect("login")
            }),
            "totp" => {
                let code = self.totp(now);
                timed(&mut || {
                    self.auth
                        .login(&request("alice", Some(&code), None), now)
                        .expect("login")
                })
            }
            "email" | "sms" => {
                let asked = if method == "email" {
                    MfaMethod::Email
                } else {
                    MfaMethod::Sms
                };
                let (first, outcome) = timed(&mut || {
                    self.auth
                        .login(&request("alice", None, Some(asked)), now)
                        .expect("ask")
                });
                let LoginOutcome::MfaRequired {
                    delivery: Some(delivery),
                    ..
                } = outcome
                else {
                    panic!("{method}: {}", outcome.status());
                };
                let (second, outcome) = timed(&mut || {
                    self.auth
                        .login(&request("alice", Some(&delivery.secret), None), now)
                        .expect("login")
                });
                (first + second, outcome)
            }
            "recovery_code" => {
                let code = self.totp(now);
                let codes = self
                    .auth
                    .new_recovery_codes(&request("alice", Some(&code), None), now)
                    .expect("codes");
                self.now = self.now.add_micros(STEP);
                let now = self.now;
                timed(&mut || {
                    self.auth
                        .login(&request("alice", Some(&codes[0]), None), now)
                        .expect("login")
                })
            }
            "passkey" | "passwordless" => {
                let (first, challenge) = if method == "passkey" {
                    let started = Instant::now();
                    let outcome = self
                        .auth
                        .login(&request("alice", None, Some(MfaMethod::Passkey)), now)
                        .expect("ask");
                    let LoginOutcome::PasskeyRequired { challenge, .. } = outcome else {
                        panic!("passkey: {}", outcome.status());
                    };
                    (started.elapsed(), challenge)
                } else {
                    let started = Instant::now();
                    let challenge = self.auth.start_passwordless("alice", now).expect("start");
                    (started.elapsed(), challenge)
                };
                let assertion = self.assertion(challenge.options);
                let (second, outcome) = timed(&mut || {
                    self.auth
                        .finish_passkey_login(&challenge.ceremony, &assertion, now)
                        .expect("finish")
                });
                (first + second, outcome)
            }
            other => panic!("unknown method {other}"),
        };
        assert!(
            matches!(outcome, LoginOutcome::Ok { .. }),
            "{method}: {}",
            outcome.status()
        );
        spent
    }
}

const METHODS: [&str; 7] = [
    "password",
    "totp",
    "email",
    "sms",
    "recovery_code",
    "passkey",
    "passwordless",
];

fn bench(c: &mut Criterion) {
    let mut fixture = fixture();
    let mut group = c.benchmark_group("signin");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for method in METHODS {
        group.bench_function(method, |b| {
            b.iter_custom(|iterations| (0..iterations).map(|_| fixture.sign_in(method)).sum());
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
