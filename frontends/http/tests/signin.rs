//! Sign-in over a real loopback socket: login outcomes, lockout, passwords and the
//! policy, TOTP with its QR code, recovery codes, and the mail flows (reset links,
//! emailed codes) through a tiny SMTP sink on 127.0.0.1 written here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use portcullis_engine::Mfa;
use portcullis_http::{AppState, MailSettings, MailTls, SignInSettings};
use portcullis_signin::{Auth, AuthSettings, LockoutSettings};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, code, test_settings};

pub(crate) const GOOD: &str = "Correct-Horse-42";
const PREFIX: &str = "https://portcullis.test/reset?token=";

/// One message the sink received: its envelope recipients and its data, and whether
/// the session was encrypted when it came.
struct Mail {
    to: Vec<String>,
    data: String,
    encrypted: bool,
}

/// How the sink secures a session.
#[derive(Clone)]
enum SinkTls {
    /// Plain SMTP, no STARTTLS offered.
    Plain,
    /// Plain SMTP offering STARTTLS, with this server configuration.
    StartTls(Arc<rustls::ServerConfig>),
    /// TLS from the first byte.
    Implicit(Arc<rustls::ServerConfig>),
}

/// A minimal SMTP server: answers every command a plain client sends, and hands each
/// message to the test.
fn smtp_sink() -> (u16, Receiver<Mail>) {
    smtp_sink_with(SinkTls::Plain)
}

/// As [`smtp_sink`], securing its sessions as `tls` says.
fn smtp_sink_with(tls: SinkTls) -> (u16, Receiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let sender = sender.clone();
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                SinkTls::Plain => {
                    smtp_session(stream, Session::Plain, &sender);
                }
                SinkTls::StartTls(config) => {
                    if let Some(stream) = smtp_session(stream, Session::OfferingTls, &sender) {
                        let connection = rustls::ServerConnection::new(config).unwrap();
                        let stream = rustls::StreamOwned::new(connection, stream);
                        smtp_session(stream, Session::AfterStartTls, &sender);
                    }
                }
                SinkTls::Implicit(config) => {
                    let connection = rustls::ServerConnection::new(config).unwrap();
                    let stream = rustls::StreamOwned::new(connection, stream);
                    smtp_session(stream, Session::Implicit, &sender);
                }
            });
        }
    });
    (port, receiver)
}

/// Where an SMTP conversation of the sink stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    Plain,
    /// Plain, offering STARTTLS.
    OfferingTls,
    /// Inside the tunnel STARTTLS opened: the client speaks first (EHLO again).
    AfterStartTls,
    /// Inside a tunnel opened at connect: the server greets.
    Implicit,
}

/// One SMTP conversation on `stream`, until QUIT or the end; hands the stream back
/// (to be wrapped in TLS) when the client takes the STARTTLS it was offered.
fn smtp_session<S: Read + Write>(stream: S, session: Session, sender: &Sender<Mail>) -> Option<S> {
    let starttls = session == Session::OfferingTls;
    let encrypted = matches!(session, Session::AfterStartTls | Session::Implicit);
    let mut reader = BufReader::new(stream);
    let mut to = Vec::new();
    if session != Session::AfterStartTls {
        let _ = reader.get_mut().write_all(b"220 sink ESMTP\r\n");
        let _ = reader.get_mut().flush();
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            if starttls {
                b"250-sink\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
            } else {
                b"250-sink\r\n250 8BITMIME\r\n"
            }
        } else if command == "STARTTLS" && starttls {
            let _ = reader.get_mut().write_all(b"220 go ahead\r\n");
            return Some(reader.into_inner());
        } else if command.starts_with("RCPT TO:") {
            to.push(
                line.trim_end()[8..]
                    .trim_matches(['<', '>', ' '])
                    .to_owned(),
            );
            b"250 ok\r\n"
        } else if command == "DATA" {
            let _ = reader.get_mut().write_all(b"354 go on\r\n");
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return None;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            let _ = sender.send(Mail {
                to: std::mem::take(&mut to),
                data,
                encrypted,
            });
            b"250 queued\r\n"
        } else if command == "QUIT" {
            let _ = reader.get_mut().write_all(b"221 bye\r\n");
            let _ = reader.get_mut().flush();
            return None;
        } else {
            b"250 ok\r\n"
        };
        let _ = reader.get_mut().write_all(reply);
        let _ = reader.get_mut().flush();
    }
}

/// A test CA (its certificate as PEM) and a server configuration whose certificate,
/// for 127.0.0.1, it signed.
fn test_pki() -> (Vec<u8>, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Portcullis test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem().into_bytes(), Arc::new(config))
}

/// The message body with quoted-printable soft breaks joined.
fn body_of(mail: &Mail) -> String {
    mail.data.replace("=\r\n", "").replace("=3D", "=")
}

pub(crate) fn cheap() -> AuthSettings {
    portcullis_signin::testing::cheap_settings()
}

/// A server with sign-in `settings`, mail to `smtp_port` when given; and its `Auth`.
pub(crate) async fn start(settings: AuthSettings, smtp_port: Option<u16>) -> (Server, Arc<Auth>) {
    start_with(settings, smtp_port, |_| {}).await
}

/// As [`start`], with the sign-in settings changed by `adjust`.
pub(crate) async fn start_with(
    settings: AuthSettings,
    smtp_port: Option<u16>,
    adjust: impl FnOnce(&mut SignInSettings),
) -> (Server, Arc<Auth>) {
    let slot = Arc::new(std::sync::Mutex::new(None));
    let keep = slot.clone();
    let server = Server::start_with_state(move |engine| {
        let auth = Arc::new(Auth::new(engine.clone(), settings).unwrap());
        *keep.lock().unwrap() = Some(auth.clone());
        let mut signin = SignInSettings {
            mail: smtp_port.map(|port| MailSettings {
                host: "127.0.0.1".to_owned(),
                port,
                from: "Portcullis <portcullis@example.com>".to_owned(),
                username: None,
                password: None,
                timeout: Duration::from_secs(5),
                tls: MailTls::None,
                ca_pem: None,
            }),
            reset_link_prefix: PREFIX.to_owned(),
            max_concurrent_logins: 4,
            ..SignInSettings::default()
        };
        adjust(&mut signin);
        AppState::with_signin(engine, test_settings(), auth, signin).unwrap()
    })
    .await;
    let auth = slot.lock().unwrap().take().unwrap();
    (server, auth)
}

pub(crate) async fn login(server: &Server, body: Value) -> Value {
    let (status, answer) = server
        .call(Method::POST, "/api/v1/auth/login", None, Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// `ok`, `mfa_required`, … or `denied:<reason>`.
pub(crate) async fn outcome(
    server: &Server,
    login_name: &str,
    password: &str,
    code: Option<&str>,
) -> String {
    let mut body = json!({"login": login_name, "password": password});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    let answer = login(server, body).await;
    match answer["status"].as_str().unwrap() {
        "denied" => format!("denied:{}", answer["reason"].as_str().unwrap()),
        status => status.to_owned(),
    }
}

pub(crate) async fn public(server: &Server, path: &str, body: Value) -> (u16, Value) {
    server.call(Method::POST, path, None, Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_outcomes_and_the_cost_of_an_unknown_user() {
    let (server, auth) = start(cheap(), None).await;
    server
        .create(
            "users",
            json!({"username": "alice", "email": "alice@example.com", "password": GOOD}),
        )
        .await;
    server
        .create(
            "users",
            json!({"username": "idle", "password": GOOD, "active": false}),
        )
        .await;
    assert_eq!(outcome(&server, "alice", GOOD, None).await, "ok");
    let answer = login(
        &server,
        json!({"login": "alice@example.com", "password": GOOD}),
    )
    .await;
    assert_eq!(answer["user"]["username"], json!("alice"));
    assert!(answer["user"]["last_login"].is_string(), "{answer}");
    assert!(answer["user"].get("password").is_none());
    assert_eq!(
        outcome(&server, "idle", GOOD, None).await,
        "denied:user_inactive"
    );
    for (name, password) in [("alice", "Wrong-Horse-42"), ("nobody", GOOD), ("idle", "x")] {
        let before = auth.argon2_verifications();
        assert_eq!(
            outcome(&server, name, password, None).await,
            "denied:invalid_credentials"
        );
        assert_eq!(auth.argon2_verifications() - before, 1, "{name}");
    }
    // Bad bodies are errors, not denials.
    let (status, answer) = public(&server, "/api/v1/auth/login", json!({"login": "alice"})).await;
    assert_eq!((status, code(&answer)), (422, "invalid_body"));
    let (status, answer) = public(
        &server,
        "/api/v1/auth/login",
        json!({"login": "x".repeat(2000), "password": "y"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (422, "invalid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_an_administrators_unlock() {
    let (server, _) = start(
        AuthSettings {
            lockout: LockoutSettings {
                max_failures: 2,
                window_minutes: 5,
                lock_minutes: 60,
            },
            ..cheap()
        },
        None,
    )
    .await;
    server
        .create("users", json!({"username": "bob", "password": GOOD}))
        .await;
    assert_eq!(
        outcome(&server, "bob", "nope", None).await,
        "denied:invalid_credentials"
    );
    assert_eq!(
        outcome(&server, "bob", "nope", None).await,
        "denied:invalid_credentials"
    );
    assert_eq!(outcome(&server, "bob", GOOD, None).await, "denied:locked");
    // Self-service is locked too: the credentials are the same.
    let (status, answer) = public(
        &server,
        "/api/v1/auth/password/change",
        json!({"login": "bob", "password": GOOD, "new_password": "Another-Pass-77"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (401, "locked"));
    let (status, _) = server.delete("/api/v1/users/bob/lockout").await;
    assert_eq!(status, 200);
    assert_eq!(outcome(&server, "bob", GOOD, None).await, "ok");
    let (status, events) = server.get("/api/v1/auth/events?limit=100").await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in ["login_denied", "lockout", "unlocked", "login_ok"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_follow_the_policy_and_must_change_is_enforced() {
    let (server, _) = start(cheap(), None).await;
    let (status, answer) = server
        .post(
            "/api/v1/users",
            json!({"username": "weak", "password": "short"}),
        )
        .await;
    assert_eq!((status, code(&answer)), (422, "weak_password"), "{answer}");
    assert!(
        server.engine.snapshot().user("weak").is_none(),
        "nothing half-written"
    );
    server.create("users", json!({"username": "carol"})).await;
    let (status, answer) = server
        .put(
            "/api/v1/users/carol/password",
            json!({"password": "alllowercase123"}),
        )
        .await;
    assert_eq!((status, code(&answer)), (422, "weak_password"));
    let (status, _) = server
        .put(
            "/api/v1/users/carol/password",
            json!({"password": GOOD, "must_change_password": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        outcome(&server, "carol", GOOD, None).await,
        "password_change_required"
    );
    let (status, answer) = public(
        &server,
        "/api/v1/auth/password/change",
        json!({"login": "carol", "password": GOOD, "new_password": "weak"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (422, "weak_password"));
    let (status, _) = public(
        &server,
        "/api/v1/auth/password/change",
        json!({"login": "carol", "password": GOOD, "new_password": "Another-Pass-77"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        outcome(&server, "carol", "Another-Pass-77", None).await,
        "ok"
    );
    // A PATCH that sets a password follows the policy too.
    let (status, answer) = server
        .patch("/api/v1/users/carol", json!({"password": "weak"}))
        .await;
    assert_eq!((status, code(&answer)), (422, "weak_password"));
    let (status, _) = server
        .patch(
            "/api/v1/users/carol",
            json!({"password": "Patched-Pass-99"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        outcome(&server, "carol", "Patched-Pass-99", None).await,
        "ok"
    );
    let (status, answer) = server
        .put("/api/v1/users/ghost/password", json!({"password": GOOD}))
        .await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrolment_with_a_qr_code_recovery_codes_and_forced_mfa() {
    let (server, _) = start(cheap(), None).await;
    server
        .create("users", json!({"username": "dora", "password": GOOD}))
        .await;
    server
        .create(
            "users",
            json!({"username": "fay", "password": GOOD, "mfa": "forced"}),
        )
        .await;
    let proof = json!({"login": "dora", "password": GOOD});
    let (status, enrolment) = public(&server, "/api/v1/auth/mfa/totp/enroll", proof.clone()).await;
    assert_eq!(status, 200, "{enrolment}");
    let uri = enrolment["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("otpauth://totp/Portcullis:dora?"), "{uri}");
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(enrolment["qr_png_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (status, answer) = public(
        &server,
        "/api/v1/auth/mfa/totp/confirm",
        json!({"login": "dora", "password": GOOD, "totp_code": "abcdef"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (422, "invalid_code"));
    let first =
        portcullis_signin::testing::authenticator_code(&uri, portcullis_engine::Time::now());
    let (status, confirmed) = public(
        &server,
        "/api/v1/auth/mfa/totp/confirm",
        json!({"login": "dora", "password": GOOD, "totp_code": first}),
    )
    .await;
    assert_eq!(status, 200, "{confirmed}");
    let recovery: Vec<String> =
        serde_json::from_value(confirmed["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    assert_eq!(
        server.engine.snapshot().user("dora").unwrap().mfa,
        Mfa::Enabled
    );
    let answer = login(&server, proof.clone()).await;
    assert_eq!(answer["status"], json!("mfa_required"));
    assert_eq!(answer["methods"], json!(["totp", "recovery_code"]));
    // The confirming code was used: it cannot sign in.
    assert_eq!(
        outcome(&server, "dora", GOOD, Some(&first)).await,
        "denied:invalid_code"
    );
    assert_eq!(
        outcome(&server, "dora", GOOD, Some(&recovery[0])).await,
        "ok"
    );
    assert_eq!(
        outcome(&server, "dora", GOOD, Some(&recovery[0])).await,
        "denied:invalid_code"
    );
    let (status, answer) = public(&server, "/api/v1/auth/mfa/disable", proof.clone()).await;
    assert_eq!((status, code(&answer)), (401, "code_required"));
    let (status, _) = public(
        &server,
        "/api/v1/auth/mfa/disable",
        json!({"login": "dora", "password": GOOD, "code": recovery[1]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(outcome(&server, "dora", GOOD, None).await, "ok");
    // Forced: enrolment is offered, turning it off is not.
    assert_eq!(
        outcome(&server, "fay", GOOD, None).await,
        "mfa_enrollment_required"
    );
    let fay = json!({"login": "fay", "password": GOOD});
    let (_, enrolment) = public(&server, "/api/v1/auth/mfa/totp/enroll", fay.clone()).await;
    let uri = enrolment["otpauth_uri"].as_str().unwrap().to_owned();
    let (_, confirmed) = public(
        &server,
        "/api/v1/auth/mfa/totp/confirm",
        json!({"login": "fay", "password": GOOD, "totp_code": portcullis_signin::testing::authenticator_code(&uri, portcullis_engine::Time::now())}),
    )
    .await;
    let codes = confirmed["recovery_codes"].as_array().unwrap().clone();
    let (status, answer) = public(
        &server,
        "/api/v1/auth/mfa/disable",
        json!({"login": "fay", "password": GOOD, "code": codes[0]}),
    )
    .await;
    assert_eq!((status, code(&answer)), (409, "mfa_forced"));
    // An administrator's reset: fay enrols again.
    let (status, _) = server.delete("/api/v1/users/fay/mfa").await;
    assert_eq!(status, 200);
    assert_eq!(
        outcome(&server, "fay", GOOD, None).await,
        "mfa_enrollment_required"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_by_smtp_end_to_end() {
    let (port, inbox) = smtp_sink();
    let (server, _) = start(cheap(), Some(port)).await;
    server
        .create(
            "users",
            json!({"username": "erin", "email": "erin@example.com", "password": GOOD}),
        )
        .await;
    // An unknown name gets the same answer, and no mail.
    for name in ["nobody", "erin@example.com"] {
        let (status, answer) = public(
            &server,
            "/api/v1/auth/password/reset-request",
            json!({"login": name}),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], json!("accepted"));
    }
    let mail = inbox
        .recv_timeout(Duration::from_secs(10))
        .expect("a reset mail");
    assert_eq!(mail.to, ["erin@example.com"]);
    let body = body_of(&mail);
    assert!(
        body.contains("Subject: Reset your Portcullis password"),
        "{body}"
    );
    let start = body.find(PREFIX).expect("the link") + PREFIX.len();
    let token: String = body[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(token.len(), 64, "{body}");
    assert!(inbox.try_recv().is_err(), "one mail only");
    let (status, answer) = public(
        &server,
        "/api/v1/auth/password/reset",
        json!({"token": token, "new_password": "Reset-Pass-2027"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcome(&server, "erin", "Reset-Pass-2027", None).await,
        "ok"
    );
    assert_eq!(
        outcome(&server, "erin", GOOD, None).await,
        "denied:invalid_credentials"
    );
    let (status, answer) = public(
        &server,
        "/api/v1/auth/password/reset",
        json!({"token": token, "new_password": "Reset-Pass-2028"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (400, "invalid_reset_token"));
    // An administrator sends a link to a new user without a password.
    server
        .create(
            "users",
            json!({"username": "newbie", "email": "newbie@example.com"}),
        )
        .await;
    let (status, answer) = server
        .post("/api/v1/users/newbie/password/reset-link", json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["to"], json!("newbie@example.com"));
    let mail = inbox
        .recv_timeout(Duration::from_secs(10))
        .expect("a reset mail");
    assert_eq!(mail.to, ["newbie@example.com"]);
    // No secret ever reaches an answer or a log the API shows.
    let (_, changes) = server.get("/api/v1/changes?since=0&limit=200").await;
    let (_, events) = server.get("/api/v1/auth/events?limit=200").await;
    let (_, user) = server.get("/api/v1/users/erin").await;
    for text in [changes.to_string(), events.to_string(), user.to_string()] {
        for secret in [GOOD, "Reset-Pass-2027", token.as_str(), "$argon2"] {
            assert!(!text.contains(secret), "`{secret}` leaked");
        }
    }
}

/// Asks for a reset link for a new user `erin` of a server whose mail goes to `port`
/// as `tls` and `ca_pem` say; the mail the sink got within `wait`, if any.
async fn reset_mail_over(
    port: u16,
    inbox: &Receiver<Mail>,
    tls: MailTls,
    ca_pem: Option<Vec<u8>>,
    wait: Duration,
) -> Option<Mail> {
    let (server, _) = start_with(cheap(), Some(port), |signin| {
        let mail = signin.mail.as_mut().unwrap();
        mail.tls = tls;
        mail.ca_pem = ca_pem;
    })
    .await;
    server
        .create(
            "users",
            json!({"username": "erin", "email": "erin@example.com"}),
        )
        .await;
    let (status, _) = public(
        &server,
        "/api/v1/auth/password/reset-request",
        json!({"login": "erin"}),
    )
    .await;
    assert_eq!(status, 202);
    inbox.recv_timeout(wait).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_or_implicit_tls_to_a_server_the_ca_vouches_for() {
    let (ca, config) = test_pki();
    let (port, inbox) = smtp_sink_with(SinkTls::StartTls(config.clone()));
    let wait = Duration::from_secs(10);
    let mail = reset_mail_over(port, &inbox, MailTls::StartTls, Some(ca.clone()), wait)
        .await
        .expect("a reset mail over STARTTLS");
    assert!(mail.encrypted, "the message came after STARTTLS");
    assert_eq!(mail.to, ["erin@example.com"]);
    assert!(body_of(&mail).contains(PREFIX));

    let (port, inbox) = smtp_sink_with(SinkTls::Implicit(config));
    let mail = reset_mail_over(port, &inbox, MailTls::Implicit, Some(ca), wait)
        .await
        .expect("a reset mail over implicit TLS");
    assert!(mail.encrypted);
    assert!(body_of(&mail).contains(PREFIX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_starttls_sends_nothing_in_clear_or_to_an_unverified_server() {
    // A server that does not offer STARTTLS gets no message.
    let (port, inbox) = smtp_sink();
    let wait = Duration::from_secs(3);
    let (ca, config) = test_pki();
    let mail = reset_mail_over(port, &inbox, MailTls::StartTls, Some(ca), wait).await;
    assert!(mail.is_none(), "a reset link was sent in clear");
    // Nor does one whose certificate the system's roots do not vouch for.
    let (port, inbox) = smtp_sink_with(SinkTls::StartTls(config.clone()));
    let mail = reset_mail_over(port, &inbox, MailTls::StartTls, None, wait).await;
    assert!(mail.is_none(), "a reset link went to an unverified server");
    // Nor one whose certificate another CA signed.
    let (other_ca, _) = test_pki();
    let (port, inbox) = smtp_sink_with(SinkTls::Implicit(config));
    let mail = reset_mail_over(port, &inbox, MailTls::Implicit, Some(other_ca), wait).await;
    assert!(
        mail.is_none(),
        "a reset link went to a server of another CA"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emailed_code_by_smtp_signs_in_once() {
    let (port, inbox) = smtp_sink();
    let (server, _) = start(
        AuthSettings {
            email_codes: true,
            ..cheap()
        },
        Some(port),
    )
    .await;
    server
        .create(
            "users",
            json!({"username": "gil", "email": "gil@example.com", "password": GOOD, "mfa": "enabled"}),
        )
        .await;
    let answer = login(
        &server,
        json!({"login": "gil", "password": GOOD, "method": "email"}),
    )
    .await;
    assert_eq!(answer["status"], json!("mfa_required"));
    assert_eq!(answer["methods"], json!(["email"]));
    assert_eq!(answer["code_sent"], json!(true));
    let mail = inbox
        .recv_timeout(Duration::from_secs(10))
        .expect("a code mail");
    assert_eq!(mail.to, ["gil@example.com"]);
    let body = body_of(&mail);
    let start = body.find("Your sign-in code is ").expect("the code") + 21;
    let code_sent = &body[start..start + 6];
    assert!(code_sent.chars().all(|c| c.is_ascii_digit()), "{body}");
    assert!(!answer.to_string().contains(code_sent));
    assert_eq!(outcome(&server, "gil", GOOD, Some(code_sent)).await, "ok");
    assert_eq!(
        outcome(&server, "gil", GOOD, Some(code_sent)).await,
        "denied:invalid_code"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_mail_server_links_are_refused_but_requests_are_not() {
    let server = Server::start().await;
    server
        .create(
            "users",
            json!({"username": "hal", "email": "hal@example.com"}),
        )
        .await;
    let (status, answer) = server
        .post("/api/v1/users/hal/password/reset-link", json!({}))
        .await;
    assert_eq!((status, code(&answer)), (503, "mail_unavailable"));
    let (status, _) = public(
        &server,
        "/api/v1/auth/password/reset-request",
        json!({"login": "hal"}),
    )
    .await;
    assert_eq!(status, 202);
}

/// An SMTP server that takes connections and never says a word: a mailer that blocks.
fn silent_smtp() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the silent server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_does_not_wait_for_the_mailer() {
    let port = silent_smtp();
    let (server, _) = start_with(cheap(), Some(port), |signin| {
        if let Some(mail) = &mut signin.mail {
            mail.timeout = Duration::from_secs(60);
        }
    })
    .await;
    server
        .create(
            "users",
            json!({"username": "erin", "email": "erin@example.com"}),
        )
        .await;
    // The mail to erin can never be sent; the answer must not wait for it, and must
    // be the one an unknown name gets (the request timeout is 10 s, the mailer's 60 s).
    for name in ["erin", "nobody", "erin@example.com"] {
        let request = public(
            &server,
            "/api/v1/auth/password/reset-request",
            json!({"login": name}),
        );
        let (status, answer) = tokio::time::timeout(Duration::from_secs(5), request)
            .await
            .expect("the answer does not wait for the mailer");
        assert_eq!((status, answer["status"].clone()), (202, json!("accepted")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_requests_are_throttled_per_account_and_per_address() {
    let (port, inbox) = smtp_sink();
    let (server, _) = start_with(cheap(), Some(port), |signin| {
        signin.reset_limits.per_account = 2;
        signin.reset_limits.per_address = 6;
    })
    .await;
    server
        .create(
            "users",
            json!({"username": "erin", "email": "erin@example.com"}),
        )
        .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, answer) = public(
            &server,
            "/api/v1/auth/password/reset-request",
            json!({"login": "erin"}),
        )
        .await;
        if status == 429 {
            assert_eq!(code(&answer), "too_many_requests", "{answer}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [202, 202, 429, 429, 429], "per account");
    // An unknown name is limited alike, so the limit tells nothing of existence;
    // the address's own limit (6 accepted requests) is then reached whatever the
    // names (refused requests count toward neither limit).
    let mut statuses = Vec::new();
    for name in ["ghost", "ghost", "ghost", "x1", "x2", "x3"] {
        let (status, _) = public(
            &server,
            "/api/v1/auth/password/reset-request",
            json!({"login": name}),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [202, 202, 429, 202, 202, 429], "per address");
    // Five requests for erin sent two mails, no more.
    for _ in 0..2 {
        inbox
            .recv_timeout(Duration::from_secs(10))
            .expect("a reset mail");
    }
    assert!(
        inbox.recv_timeout(Duration::from_millis(500)).is_err(),
        "mails are capped by the limit"
    );
}
