//! Passkeys end to end over a real loopback socket: a software authenticator
//! (webauthn-authenticator-rs's `SoftToken`, kept in a file so that it can be copied
//! like a cloned device) answers the server's challenges, and the server verifies
//! with webauthn-rs.

use std::fs::File;
use std::path::{Path, PathBuf};

use portcullis_engine::Mfa;
use portcullis_signin::{AuthSettings, PasskeySettings};
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softtoken::{SoftToken, SoftTokenFile};

use crate::signin::{GOOD, cheap, login, outcome, public, start};
use crate::support::{Server, code};

const ORIGIN: &str = "https://portcullis.example.com";

fn passkey_settings(passwordless: bool) -> AuthSettings {
    AuthSettings {
        passkeys: Some(PasskeySettings {
            rp_id: "example.com".to_owned(),
            rp_name: "Portcullis test".to_owned(),
            origins: vec![ORIGIN.to_owned()],
        }),
        passwordless,
        ..cheap()
    }
}

/// A software authenticator saved in a file: each use opens it and saves it back.
struct Device {
    path: PathBuf,
}

impl Device {
    fn new(dir: &Path, name: &str) -> Device {
        let path = dir.join(name);
        let (token, _) = SoftToken::new(true).unwrap();
        drop(SoftTokenFile::new(token, File::create(&path).unwrap()));
        Device { path }
    }

    /// A copy of this device as it is now: the same keys and sign count.
    fn clone_to(&self, dir: &Path, name: &str) -> Device {
        let path = dir.join(name);
        std::fs::copy(&self.path, &path).unwrap();
        Device { path }
    }

    fn open(&self) -> WebauthnAuthenticator<SoftTokenFile> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .unwrap();
        WebauthnAuthenticator::new(SoftTokenFile::open(file).unwrap())
    }

    /// The attestation for a registration challenge's options, made at `origin`.
    fn register(&self, origin: &str, options: &Value) -> Value {
        let options = serde_json::from_value(options.clone()).unwrap();
        let credential = self
            .open()
            .do_registration(Url::parse(origin).unwrap(), options)
            .unwrap();
        serde_json::to_value(credential).unwrap()
    }

    /// The assertion for a sign-in challenge's options, made at `origin`; `None` when
    /// the device holds none of the credentials asked for.
    fn assert(&self, origin: &str, options: &Value) -> Option<Value> {
        let options = serde_json::from_value(options.clone()).unwrap();
        self.open()
            .do_authentication(Url::parse(origin).unwrap(), options)
            .ok()
            .map(|credential| serde_json::to_value(credential).unwrap())
    }
}

async fn call(server: &Server, path: &str, body: Value) -> Value {
    let (status, answer) = public(server, path, body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// Registers `device` for `login` as `name`; the answer of the finishing call.
async fn register(server: &Server, device: &Device, login: &str, name: &str) -> Value {
    let challenge = call(
        server,
        "/api/v1/auth/passkeys/register/start",
        json!({"login": login, "password": GOOD, "name": name}),
    )
    .await;
    let credential = device.register(ORIGIN, &challenge["options"]);
    call(
        server,
        "/api/v1/auth/passkeys/register/finish",
        json!({"ceremony": challenge["ceremony"], "credential": credential}),
    )
    .await
}

/// A sign-in with `device` after the password (or without one): the final status,
/// `denied:<reason>` for a refusal.
async fn sign_in(server: &Server, device: &Device, origin: &str, password: bool) -> String {
    let mut body = json!({"login": "pia"});
    if password {
        body["password"] = json!(GOOD);
    }
    let started = call(server, "/api/v1/auth/passkeys/authenticate/start", body).await;
    let credential = device
        .assert(origin, &started["passkey"]["options"])
        .expect("the device answers");
    finish(server, &started["passkey"]["ceremony"], credential).await
}

async fn finish(server: &Server, ceremony: &Value, credential: Value) -> String {
    let answer = call(
        server,
        "/api/v1/auth/passkeys/authenticate/finish",
        json!({"ceremony": ceremony, "credential": credential}),
    )
    .await;
    match answer["status"].as_str().unwrap() {
        "denied" => format!("denied:{}", answer["reason"].as_str().unwrap()),
        status => status.to_owned(),
    }
}

async fn pia(passwordless: bool) -> Server {
    let (server, _) = start(passkey_settings(passwordless), None).await;
    server
        .create("users", json!({"username": "pia", "password": GOOD}))
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_registers_then_signs_in_after_a_password_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = pia(true).await;
    let device = Device::new(dir.path(), "laptop");
    let registered = register(&server, &device, "pia", "laptop").await;
    assert_eq!(registered["passkey"]["name"], json!("laptop"));
    assert!(registered["passkey"]["last_used_at"].is_null());
    let recovery: Vec<String> = serde_json::from_value(registered["recovery_codes"].clone())
        .expect("recovery codes with the first factor");
    assert_eq!(recovery.len(), 10);
    assert_eq!(
        server.engine.snapshot().user("pia").unwrap().mfa,
        Mfa::Enabled
    );
    // The password alone no longer signs in.
    let answer = login(&server, json!({"login": "pia", "password": GOOD})).await;
    assert_eq!(answer["status"], json!("mfa_required"));
    assert_eq!(answer["methods"], json!(["passkey", "recovery_code"]));
    // As the second factor, through the login route too.
    let answer = login(
        &server,
        json!({"login": "pia", "password": GOOD, "method": "passkey"}),
    )
    .await;
    assert_eq!(answer["status"], json!("mfa_required"), "{answer}");
    let credential = device
        .assert(ORIGIN, &answer["passkey"]["options"])
        .unwrap();
    assert_eq!(
        finish(&server, &answer["passkey"]["ceremony"], credential.clone()).await,
        "ok"
    );
    // A ceremony is good once.
    let (status, replay) = public(
        &server,
        "/api/v1/auth/passkeys/authenticate/finish",
        json!({"ceremony": answer["passkey"]["ceremony"], "credential": credential}),
    )
    .await;
    assert_eq!((status, code(&replay)), (400, "invalid_ceremony"));
    assert_eq!(sign_in(&server, &device, ORIGIN, true).await, "ok");
    // Passwordless.
    assert_eq!(sign_in(&server, &device, ORIGIN, false).await, "ok");
    // A wrong password never gets a challenge.
    let (_, answer) = public(
        &server,
        "/api/v1/auth/passkeys/authenticate/start",
        json!({"login": "pia", "password": "Wrong-Horse-42"}),
    )
    .await;
    assert_eq!(answer["reason"], json!("invalid_credentials"), "{answer}");
    assert!(answer.get("passkey").is_none());
    // Listed with its last use, renamed, by the user and an administrator.
    let listed = call(
        &server,
        "/api/v1/auth/passkeys/list",
        json!({"login": "pia", "password": GOOD, "code": recovery[0]}),
    )
    .await;
    let keys = listed["passkeys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0]["last_used_at"].is_string(), "{listed}");
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    call(
        &server,
        "/api/v1/auth/passkeys/rename",
        json!({"login": "pia", "password": GOOD, "code": recovery[1], "passkey": id, "name": "work laptop"}),
    )
    .await;
    let (status, listed) = server.get("/api/v1/users/pia/passkeys").await;
    assert_eq!(status, 200);
    assert_eq!(listed["passkeys"][0]["name"], json!("work laptop"));
    // Both logs tell, with no credential material.
    let (_, events) = server.get("/api/v1/auth/events?limit=200").await;
    let (_, changes) = server.get("/api/v1/changes?since=0&limit=200").await;
    for kind in ["passkey_registered", "passkey_used", "passkey_renamed"] {
        assert!(
            events.to_string().contains(kind),
            "{kind} not in the events"
        );
        assert!(changes.to_string().contains(kind), "{kind} not in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloned_authenticator_is_refused_by_its_sign_count() {
    let dir = tempfile::tempdir().unwrap();
    let server = pia(false).await;
    let device = Device::new(dir.path(), "key");
    register(&server, &device, "pia", "key").await;
    let copy = device.clone_to(dir.path(), "copy");
    assert_eq!(sign_in(&server, &device, ORIGIN, true).await, "ok");
    assert_eq!(sign_in(&server, &device, ORIGIN, true).await, "ok");
    // The copy's count is behind the original's: refused.
    assert_eq!(
        sign_in(&server, &copy, ORIGIN, true).await,
        "denied:invalid_code"
    );
    // The original goes on.
    assert_eq!(sign_in(&server, &device, ORIGIN, true).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceremony_from_another_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = pia(false).await;
    let device = Device::new(dir.path(), "key");
    // A look-alike site under the same registrable domain: the authenticator would
    // answer it, the server must not take the answer.
    let evil = "https://portcullis-login.example.com";
    let challenge = call(
        &server,
        "/api/v1/auth/passkeys/register/start",
        json!({"login": "pia", "password": GOOD, "name": "key"}),
    )
    .await;
    let credential = device.register(evil, &challenge["options"]);
    let (status, answer) = public(
        &server,
        "/api/v1/auth/passkeys/register/finish",
        json!({"ceremony": challenge["ceremony"], "credential": credential}),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (422, "passkey_refused"),
        "{answer}"
    );
    register(&server, &device, "pia", "key").await;
    assert_eq!(
        sign_in(&server, &device, evil, true).await,
        "denied:invalid_code"
    );
    assert_eq!(sign_in(&server, &device, ORIGIN, true).await, "ok");
    // Passwordless is off on this server.
    let (status, answer) = public(
        &server,
        "/api/v1/auth/passkeys/authenticate/start",
        json!({"login": "pia"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (403, "passwordless_disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_passkey_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = pia(true).await;
    let phone = Device::new(dir.path(), "phone");
    let laptop = Device::new(dir.path(), "laptop");
    let first = register(&server, &phone, "pia", "phone").await;
    let recovery: Vec<String> = serde_json::from_value(first["recovery_codes"].clone()).unwrap();
    // The second registration needs the second factor now.
    let (status, answer) = public(
        &server,
        "/api/v1/auth/passkeys/register/start",
        json!({"login": "pia", "password": GOOD, "name": "laptop"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (401, "code_required"));
    let challenge = call(
        &server,
        "/api/v1/auth/passkeys/register/start",
        json!({"login": "pia", "password": GOOD, "code": recovery[0], "name": "laptop"}),
    )
    .await;
    let credential = laptop.register(ORIGIN, &challenge["options"]);
    call(
        &server,
        "/api/v1/auth/passkeys/register/finish",
        json!({"ceremony": challenge["ceremony"], "credential": credential}),
    )
    .await;
    let phone_id = first["passkey"]["id"].as_str().unwrap().to_owned();
    // A ceremony started before the removal does not finish after it.
    let started = call(
        &server,
        "/api/v1/auth/passkeys/authenticate/start",
        json!({"login": "pia"}),
    )
    .await;
    let credential = phone
        .assert(ORIGIN, &started["passkey"]["options"])
        .unwrap();
    let (status, _) = server
        .delete(&format!("/api/v1/users/pia/passkeys/{phone_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        finish(&server, &started["passkey"]["ceremony"], credential).await,
        "denied:invalid_credentials"
    );
    // New challenges no longer name it; the laptop still works.
    let started = call(
        &server,
        "/api/v1/auth/passkeys/authenticate/start",
        json!({"login": "pia"}),
    )
    .await;
    assert!(
        phone
            .assert(ORIGIN, &started["passkey"]["options"])
            .is_none()
    );
    assert_eq!(sign_in(&server, &laptop, ORIGIN, false).await, "ok");
    // The user removes the laptop's too: no passkey is left to sign in with.
    let (_, listed) = server.get("/api/v1/users/pia/passkeys").await;
    let laptop_id = listed["passkeys"][0]["id"].as_str().unwrap().to_owned();
    call(
        &server,
        "/api/v1/auth/passkeys/remove",
        json!({"login": "pia", "password": GOOD, "code": recovery[1], "passkey": laptop_id}),
    )
    .await;
    let started = call(
        &server,
        "/api/v1/auth/passkeys/authenticate/start",
        json!({"login": "pia"}),
    )
    .await;
    assert!(
        laptop
            .assert(ORIGIN, &started["passkey"]["options"])
            .is_none()
    );
    let (_, events) = server.get("/api/v1/auth/events?limit=200").await;
    assert_eq!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == json!("passkey_removed"))
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwordless_challenges_do_not_tell_who_exists() {
    let dir = tempfile::tempdir().unwrap();
    let server = pia(true).await;
    register(&server, &Device::new(dir.path(), "key"), "pia", "key").await;
    let allowed =
        |answer: &Value| answer["passkey"]["options"]["publicKey"]["allowCredentials"].clone();
    let mut shapes = Vec::new();
    for name in ["pia", "pia", "nobody", "nobody"] {
        let answer = call(
            &server,
            "/api/v1/auth/passkeys/authenticate/start",
            json!({"login": name}),
        )
        .await;
        assert_eq!(answer["status"], json!("passkey_required"));
        shapes.push(allowed(&answer));
    }
    assert_eq!(shapes[0].as_array().map(Vec::len), Some(1));
    assert_eq!(shapes[2].as_array().map(Vec::len), Some(1));
    assert_eq!(shapes[0], shapes[1], "a user's credentials are stable");
    assert_eq!(shapes[2], shapes[3], "so are a decoy's");
    assert_ne!(shapes[0], shapes[2]);
    // A decoy ceremony cannot be passed, and counts toward the name's lockout.
    let started = call(
        &server,
        "/api/v1/auth/passkeys/authenticate/start",
        json!({"login": "nobody"}),
    )
    .await;
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null}});
    assert_eq!(
        finish(&server, &started["passkey"]["ceremony"], forged).await,
        "denied:invalid_credentials"
    );
    assert_eq!(
        outcome(&server, "pia", GOOD, None).await,
        "mfa_required",
        "the user's own lockout is untouched"
    );
}
