//! The commands that work on a data directory: check, explain, list-assets, token.

use serde_json::Value;

use crate::support::{Served, demo_store, run, stderr, stdout};

fn check(
    data: &str,
    user: &str,
    asset: &str,
    account: &str,
    protocol: &str,
    action: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "check",
        "--data",
        data,
        "--user",
        user,
        "--asset",
        asset,
        "--account",
        account,
        "--protocol",
        protocol,
        "--action",
        action,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// user, asset, account, protocol, action, more arguments, exit code.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    i32,
);

#[test]
fn check_exits_0_allowed_1_denied_2_bad_input() {
    let dir = demo_store();
    let data = dir.path().to_str().unwrap();
    let cases: &[Case] = &[
        ("alice", "web-01", "root", "ssh", "connect", &[], 0),
        ("alice", "db-01", "root", "ssh", "connect", &[], 1),
        ("bob", "db-01", "postgres", "postgresql", "connect", &[], 0),
        ("carol", "web-01", "root", "ssh", "connect", &[], 1),
        ("dave", "dev-01", "dev", "ssh", "connect", &[], 0),
        (
            "dave",
            "dev-01",
            "dev",
            "ssh",
            "connect",
            &["--at", "2030-06-01T00:00:00Z"],
            1,
        ),
        (
            "alice",
            "web-02",
            "deploy",
            "ssh",
            "upload",
            &["--at", "2031-06-01T00:00:00Z"],
            1,
        ),
        ("frank", "win-01", "@INPUT", "RDP", "paste", &[], 0),
        ("zed", "web-01", "root", "ssh", "connect", &[], 2),
        ("alice", "nowhere", "root", "ssh", "connect", &[], 2),
        ("alice", "web-01", "root", "ssh", "fly", &[], 2),
        ("alice", "web-01", "root", "s s h", "connect", &[], 2),
        (
            "alice",
            "web-01",
            "root",
            "ssh",
            "connect",
            &["--at", "next tuesday"],
            2,
        ),
    ];
    for (user, asset, account, protocol, action, extra, expected) in cases {
        let output = check(data, user, asset, account, protocol, action, extra);
        assert_eq!(
            output.status.code(),
            Some(*expected),
            "{user} {asset} {account} {protocol} {action} {extra:?}: {} {}",
            stdout(&output),
            stderr(&output)
        );
    }
    let output = check(data, "zed", "web-01", "root", "ssh", "connect", &[]);
    assert_eq!(stderr(&output).trim(), "portcullis: unknown user `zed`");
    assert!(stdout(&output).is_empty());
    let output = check(data, "alice", "web-01", "root", "ssh", "connect", &[]);
    assert!(
        stdout(&output).starts_with("allowed"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_json_prints_the_api_answer() {
    let dir = demo_store();
    let data = dir.path().to_str().unwrap();
    let output = check(
        data,
        "alice",
        "web-02",
        "deploy",
        "ssh",
        "connect",
        &["--json"],
    );
    assert_eq!(output.status.code(), Some(0));
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(answer["allowed"], Value::Bool(true));
    assert_eq!(
        answer["actions"],
        serde_json::json!(["connect", "upload", "download"])
    );
    assert_eq!(
        answer["valid_until"],
        serde_json::json!("2031-01-01T00:00:00Z")
    );
    assert!(answer["revision"].as_u64().is_some());
    let output = check(
        data,
        "alice",
        "db-01",
        "root",
        "ssh",
        "connect",
        &["--json"],
    );
    assert_eq!(output.status.code(), Some(1));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["allowed"], Value::Bool(false));
}

#[test]
fn usage_errors_and_missing_stores_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let output = check(
        missing.to_str().unwrap(),
        "alice",
        "web-01",
        "root",
        "ssh",
        "connect",
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no store at"),
        "{}",
        stderr(&output)
    );
    assert!(!missing.exists(), "a check creates nothing");
    let output = run(&["check", "--user", "alice"]);
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let output = run(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn explain_and_list_assets() {
    let dir = demo_store();
    let data = dir.path().to_str().unwrap();
    let output = run(&[
        "explain",
        "--data",
        data,
        "--user",
        "bob",
        "--asset",
        "db-01",
        "--account",
        "root",
        "--protocol",
        "ssh",
        "--action",
        "connect",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("reasons: denied_by"), "{text}");
    assert!(
        text.contains("rule `no-root-on-db` [deny] applied (denied_by)"),
        "{text}"
    );
    assert!(text.contains("via dba > ops"), "{text}");
    let output = run(&[
        "explain",
        "--data",
        data,
        "--user",
        "bob",
        "--asset",
        "db-01",
        "--account",
        "root",
        "--protocol",
        "ssh",
        "--action",
        "connect",
        "--json",
    ]);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["reasons"], serde_json::json!(["denied_by"]));

    let output = run(&["list-assets", "--data", data, "--user", "alice"]);
    assert_eq!(output.status.code(), Some(0));
    let names: Vec<String> = stdout(&output)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["db-01", "web-01", "web-02"]);
    let output = run(&[
        "list-assets",
        "--data",
        data,
        "--user",
        "alice",
        "--node",
        "/Default/Prod/DB",
        "--json",
    ]);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["total"], serde_json::json!(1));
    let output = run(&["list-assets", "--data", data, "--user", "nobody"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn token_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = run(&[
        "token", "create", "--data", data, "--name", "bastion", "--role", "checker",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let secret = stdout(&output).trim().to_owned();
    assert!(
        secret.starts_with("pct_") && !secret.contains('\n'),
        "{secret}"
    );
    assert!(stderr(&output).contains("shown this once"));
    let output = run(&[
        "token", "create", "--data", data, "--name", "bastion", "--role", "checker",
    ]);
    assert_eq!(output.status.code(), Some(2), "duplicate name");
    let output = run(&[
        "token", "create", "--data", data, "--name", "x", "--role", "emperor",
    ]);
    assert_eq!(output.status.code(), Some(2), "unknown role");
    assert!(
        stderr(&output).contains("unknown role `emperor`"),
        "{}",
        stderr(&output)
    );
    let output = run(&["token", "create", "--data", data, "--name", "x"]);
    assert_eq!(output.status.code(), Some(2), "--role is required");

    let output = run(&["token", "list", "--data", data]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).starts_with("bastion\troles: checker"),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains(&secret));

    // The secret works against a server on the same data.
    let served = Served::start_with(dir.path(), &[], &[]);
    let response = served
        .client
        .get(served.url("/api/v1/whoami"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = served
        .client
        .get(served.url("/api/v1/users"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        403,
        "a checker may not list users"
    );
    // While the server holds the store, commands refuse cleanly.
    let output = run(&["token", "list", "--data", data]);
    assert_eq!(output.status.code(), Some(3), "could not run");
    assert!(
        stderr(&output).contains("in use by another process")
            && stderr(&output).contains("--server"),
        "{}",
        stderr(&output)
    );
    assert!(served.stop());

    let output = run(&["token", "revoke", "--data", data, "bastion"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run(&["token", "list", "--data", data, "--json"]);
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["total"], serde_json::json!(0));
    let output = run(&["token", "revoke", "--data", data, "bastion"]);
    assert_eq!(output.status.code(), Some(2));
}
