//! Sign-in through the binary: `user set-password` on a data directory (password on
//! stdin), then `serve` with sign-in settings from the environment, and logins over
//! HTTP; `user unlock` and `user housekeeping`.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::support::{Served, bin, demo_store, run, stderr};

const GOOD: &str = "Correct-Horse-42";

/// `portcullis args…` with `input` on stdin.
fn run_with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn login(served: &Served, name: &str, password: &str) -> Value {
    let response = served
        .client
        .post(served.url("/api/v1/auth/login"))
        .json(&json!({"login": name, "password": password}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().unwrap()
}

#[test]
fn set_password_then_sign_in_over_http_with_lockout_from_the_environment() {
    let dir = demo_store();
    let data = dir.path().to_str().unwrap();
    let set = |user: &str, input: &str, extra: &[&str]| {
        let mut args = vec!["user", "set-password", "--data", data, "--user", user];
        args.extend_from_slice(extra);
        run_with_stdin(&args, input)
    };
    let weak = set("alice", "short\n", &[]);
    assert_eq!(weak.status.code(), Some(2), "{}", stderr(&weak));
    assert!(
        stderr(&weak).contains("does not meet the policy"),
        "{}",
        stderr(&weak)
    );
    let unknown = set("nobody", &format!("{GOOD}\n"), &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("unknown user `nobody`"),
        "{}",
        stderr(&unknown)
    );
    let empty = set("alice", "", &[]);
    assert_eq!(empty.status.code(), Some(2));
    let ok = set("alice", &format!("{GOOD}\n"), &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(!stderr(&ok).contains(GOOD));
    let ok = set("bob", &format!("{GOOD}\n"), &["--must-change"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    let served = Served::start_with(
        dir.path(),
        &[],
        &[
            ("PORTCULLIS_LOCKOUT_MAX_FAILURES", "2"),
            ("PORTCULLIS_HOUSEKEEPING_INTERVAL_MINUTES", "0"),
        ],
    );
    assert_eq!(login(&served, "alice", GOOD)["status"], json!("ok"));
    assert_eq!(
        login(&served, "alice@example.com", GOOD)["status"],
        json!("ok")
    );
    assert_eq!(
        login(&served, "bob", GOOD)["status"],
        json!("password_change_required")
    );
    let denied = login(&served, "carol", GOOD);
    assert_eq!(
        (denied["status"].clone(), denied["reason"].clone()),
        (json!("denied"), json!("invalid_credentials"))
    );
    login(&served, "alice", "wrong");
    login(&served, "alice", "wrong");
    assert_eq!(login(&served, "alice", GOOD)["reason"], json!("locked"));
    assert!(served.stop(), "serve stops cleanly");

    // The lock is kept in the store; an administrator lifts it on the command line.
    let unlocked = run(&["user", "unlock", "--data", data, "--user", "alice"]);
    assert_eq!(unlocked.status.code(), Some(0), "{}", stderr(&unlocked));
    let served = Served::start_with(dir.path(), &[], &[("PORTCULLIS_LOCKOUT_MAX_FAILURES", "2")]);
    assert_eq!(login(&served, "alice", GOOD)["status"], json!("ok"));
    assert!(served.stop());
}

#[test]
fn housekeeping_on_the_command_line_and_bad_sign_in_settings() {
    let dir = demo_store();
    let data = dir.path().to_str().unwrap();
    let output = run(&["user", "housekeeping", "--data", data, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["deactivated"], json!([]));
    // `0` turns deactivation off.
    let output = bin()
        .args(["user", "housekeeping", "--data", data, "--json"])
        .env("PORTCULLIS_USER_INACTIVITY_DAYS", "0")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["deactivated"], json!([]));
    let output = bin()
        .args(["user", "housekeeping", "--data", data])
        .env("PORTCULLIS_MFA_POLICY", "sometimes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("PORTCULLIS_MFA_POLICY"),
        "{}",
        stderr(&output)
    );
    // Emailed codes without a mail server: serve refuses to start.
    let output = bin()
        .args(["serve", "--data", data, "--listen", "127.0.0.1:0"])
        .env("PORTCULLIS_EMAIL_CODES", "true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("need a mail server"),
        "{}",
        stderr(&output)
    );
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[auth.argon2]\nmemory_kib = 1\n").unwrap();
    let output = run(&[
        "user",
        "housekeeping",
        "--data",
        data,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("argon2"), "{}", stderr(&output));
}
