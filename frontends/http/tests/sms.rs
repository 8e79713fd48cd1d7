//! SMS codes over a real loopback socket: the webhook sender against a real HTTP sink
//! (an axum server on 127.0.0.1 written here), retries and failures, and the command
//! sender running a real program.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use portcullis_engine::Time;
use portcullis_http::{SmsSender, SmsSettings};
use portcullis_signin::{AuthSettings, LoginOutcome, LoginRequest, SmsLimits};
use serde_json::{Value, json};

use crate::signin::{GOOD, cheap, login, outcome, start_with};
use crate::support::{Server, code};

/// What the sink received: the `Authorization` header and the JSON body.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// An HTTP sink on 127.0.0.1 that records every `POST /send` and answers the
/// statuses of `script` in turn, then 200.
async fn webhook_sink(script: Vec<u16>) -> (String, Received) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let seen = seen.clone();
            let script = script.clone();
            async move {
                let bearer = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock().unwrap().push((bearer, body.0));
                let status = script.lock().unwrap().next().unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/send"), received)
}

fn sms_settings(limits: SmsLimits) -> AuthSettings {
    AuthSettings {
        sms_codes: true,
        sms_limits: limits,
        ..cheap()
    }
}

/// A server sending SMS codes with `sender`, `retries` times retried, and a user
/// `sam` (phone `+15550100`, MFA on).
async fn sms_server(
    settings: AuthSettings,
    sender: SmsSender,
    retries: u32,
) -> (Server, Arc<portcullis_signin::Auth>) {
    let (server, auth) = start_with(settings, None, move |signin| {
        signin.sms = Some(SmsSettings {
            sender,
            timeout: Duration::from_secs(5),
            retries,
        });
    })
    .await;
    server
        .create(
            "users",
            json!({"username": "sam", "phone": "+15550100", "password": GOOD, "mfa": "enabled"}),
        )
        .await;
    (server, auth)
}

async fn ask_sms(server: &Server) -> (u16, Value) {
    server
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"login": "sam", "password": GOOD, "method": "sms"})),
        )
        .await
}

/// The six digits after "code is " in an SMS text.
fn code_in(text: &str) -> String {
    let start = text.find("code is ").expect("the code") + 8;
    let code: String = text[start..].chars().take(6).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{text}");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sms_code_arrives_works_once_expires_and_is_rate_limited() {
    let (url, received) = webhook_sink(Vec::new()).await;
    let sender = SmsSender::Webhook {
        url,
        bearer: Some("hook-secret-1".to_owned()),
    };
    let limits = SmsLimits {
        per_user: 2,
        per_number: 10,
        window_minutes: 15,
    };
    let (server, auth) = sms_server(sms_settings(limits), sender, 0).await;
    let answer = login(
        &server,
        json!({"login": "sam", "password": GOOD, "method": "sms"}),
    )
    .await;
    assert_eq!(answer["status"], json!("mfa_required"), "{answer}");
    assert_eq!(answer["methods"], json!(["sms"]));
    assert_eq!(answer["code_sent"], json!(true));
    let (bearer, body) = received.lock().unwrap()[0].clone();
    assert_eq!(bearer.as_deref(), Some("Bearer hook-secret-1"));
    assert_eq!(body["to"], json!("+15550100"));
    let first = code_in(body["text"].as_str().unwrap());
    assert!(!answer.to_string().contains(&first));
    // Good once.
    assert_eq!(outcome(&server, "sam", GOOD, Some(&first)).await, "ok");
    assert_eq!(
        outcome(&server, "sam", GOOD, Some(&first)).await,
        "denied:invalid_code"
    );
    // The second code arrives too, and has expired six minutes later.
    let (status, _) = ask_sms(&server).await;
    assert_eq!(status, 200);
    let second = code_in(received.lock().unwrap()[1].1["text"].as_str().unwrap());
    let later = Time::from_micros(Time::now().as_micros() + 6 * 60 * 1_000_000);
    let request = LoginRequest {
        login: "sam".to_owned(),
        password: GOOD.to_owned(),
        code: Some(second.clone()),
        method: None,
    };
    let expired = auth.login(&request, later).unwrap();
    assert!(
        matches!(expired, LoginOutcome::Denied { .. }),
        "{}",
        expired.status()
    );
    // The limit per user holds: no third message.
    let (status, answer) = ask_sms(&server).await;
    assert_eq!((status, code(&answer)), (429, "too_many_codes"), "{answer}");
    assert_eq!(received.lock().unwrap().len(), 2);
    // Sent codes are in both logs; no code and no secret in any.
    let (_, events) = server.get("/api/v1/auth/events?limit=200").await;
    let (_, changes) = server.get("/api/v1/changes?since=0&limit=200").await;
    let sent = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == json!("sms_sent"))
        .count();
    assert_eq!(sent, 2, "{events}");
    assert!(changes.to_string().contains("sms_sent"));
    for text in [events.to_string(), changes.to_string()] {
        for secret in [first.as_str(), second.as_str(), "hook-secret-1"] {
            assert!(!text.contains(secret), "`{secret}` leaked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_and_a_failure_is_reported_without_the_code() {
    // Two failures, then the third try goes through.
    let (url, received) = webhook_sink(vec![500, 502]).await;
    let (server, _) = sms_server(
        sms_settings(SmsLimits::default()),
        SmsSender::Webhook { url, bearer: None },
        2,
    )
    .await;
    let (status, answer) = ask_sms(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["code_sent"], json!(true));
    let seen = received.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0, None, "no bearer configured, none sent");
    assert_eq!(seen[0].1, seen[2].1, "the same message each try");

    // A sink that never takes it: one retry, then 503 and `sms_failed`.
    let (url, received) = webhook_sink(vec![500; 10]).await;
    let (server, _) = sms_server(
        sms_settings(SmsLimits::default()),
        SmsSender::Webhook { url, bearer: None },
        1,
    )
    .await;
    let (status, answer) = ask_sms(&server).await;
    assert_eq!(
        (status, code(&answer)),
        (503, "sms_unavailable"),
        "{answer}"
    );
    assert_eq!(received.lock().unwrap().len(), 2);
    let failed_code = code_in(received.lock().unwrap()[0].1["text"].as_str().unwrap());
    let (_, events) = server.get("/api/v1/auth/events?limit=200").await;
    let failed: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == json!("sms_failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{events}");
    assert_eq!(failed[0]["detail"], json!("webhook"));
    assert!(!events.to_string().contains(&failed_code));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_sender_runs_a_program_with_the_number_and_text_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("send-sms");
    std::fs::write(&script, "#!/bin/sh\ncat > \"$1\"\n").unwrap();
    let failing = dir.path().join("refuse-sms");
    std::fs::write(&failing, "#!/bin/sh\ncat > /dev/null\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for program in [&script, &failing] {
        std::fs::set_permissions(program, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let outbox = dir.path().join("outbox.txt");
    let sender = SmsSender::Command {
        program: script,
        args: vec![outbox.display().to_string()],
    };
    let (server, _) = sms_server(sms_settings(SmsLimits::default()), sender, 0).await;
    let (status, answer) = ask_sms(&server).await;
    assert_eq!(status, 200, "{answer}");
    let written = std::fs::read_to_string(&outbox).unwrap();
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("+15550100"));
    let sent = code_in(lines.next().unwrap());
    assert_eq!(outcome(&server, "sam", GOOD, Some(&sent)).await, "ok");

    let sender = SmsSender::Command {
        program: failing,
        args: Vec::new(),
    };
    let (server, _) = sms_server(sms_settings(SmsLimits::default()), sender, 0).await;
    let (status, answer) = ask_sms(&server).await;
    assert_eq!(
        (status, code(&answer)),
        (503, "sms_unavailable"),
        "{answer}"
    );
}
