//! `portcullis ldap-sync` and the periodic sync inside `serve`, against a real slapd.

use std::time::{Duration, Instant};

use portcullis_ldap::testing::{
    READER_PASSWORD, Slapd, group_of_names, person, person_dn, source_toml,
};
use serde_json::Value;

use crate::support::{BOOTSTRAP, Served, run, stderr, stdout};

fn directory() -> Slapd {
    let slapd = Slapd::start();
    let mut ldif = String::new();
    ldif.push_str(&person("alice", "Alice Liddell", Some("alice@example.org")));
    ldif.push_str(&person("bob", "Bob Builder", None));
    ldif.push_str(&group_of_names(
        "ops",
        &[person_dn("alice"), person_dn("bob")],
    ));
    slapd.add(&ldif);
    slapd
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn ldap_sync_dry_run_then_real_run() {
    let slapd = directory();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &source_toml(&slapd, "corp", ""));
    let data_arg = data.display().to_string();

    let dry = run(&[
        "ldap-sync",
        "--data",
        &data_arg,
        "--config",
        &config,
        "--dry-run",
    ]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(text.contains("dry run: nothing written"), "{text}");
    assert!(text.contains("+ user `alice` added"), "{text}");
    assert!(text.contains("+ group `ops` added: members +2"), "{text}");
    // Nothing was written: alice is unknown.
    let listed = run(&["list-assets", "--data", &data_arg, "--user", "alice"]);
    assert_eq!(listed.status.code(), Some(2), "{}", stderr(&listed));

    let real = run(&[
        "ldap-sync",
        "--data",
        &data_arg,
        "--config",
        &config,
        "--source",
        "corp",
        "--json",
    ]);
    assert_eq!(real.status.code(), Some(0), "{}", stderr(&real));
    let reports: Value = serde_json::from_str(&stdout(&real)).unwrap();
    assert_eq!(reports[0]["source"], "corp");
    assert_eq!(reports[0]["mode"], "full");
    assert_eq!(reports[0]["counts"]["users_added"], 2);
    assert_eq!(reports[0]["counts"]["groups_added"], 1);
    let all = format!("{}{}", stdout(&real), stderr(&real));
    assert!(!all.contains(READER_PASSWORD));

    // alice now exists (and may reach nothing yet).
    let listed = run(&["list-assets", "--data", &data_arg, "--user", "alice"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));

    // A second run finds nothing to change, incrementally.
    let again = run(&["ldap-sync", "--data", &data_arg, "--config", &config]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).contains("Incremental"), "{}", stdout(&again));
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn ldap_sync_exit_codes_bad_config_2_server_failure_3() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let slapd = directory();
    let cases: Vec<(&str, String, i32, &str)> = vec![
        (
            "unknown key",
            source_toml(&slapd, "corp", "colour = \"blue\""),
            2,
            "unknown field",
        ),
        (
            "bad filter",
            source_toml(&slapd, "corp", "").replace(
                "[ldap.corp.users]\n",
                "[ldap.corp.users]\nfilter = \"(uid=\"\n",
            ),
            2,
            "is not an LDAP filter",
        ),
        (
            "no password",
            source_toml(&slapd, "corp", "").replace("bind_password_file", "# bind_password_file"),
            2,
            "bind_dn needs",
        ),
        (
            "no source",
            "listen = \"127.0.0.1:1\"\n".to_owned(),
            2,
            "no [ldap.<name>] source",
        ),
        (
            "unreachable",
            source_toml(&slapd, "corp", "").replace(&slapd.url(), "ldap://127.0.0.1:9"),
            3,
            "cannot connect",
        ),
        (
            "wrong password",
            source_toml(&slapd, "corp", "").replace(
                "bind_password_file",
                "bind_password_env = \"PORTCULLIS_TEST_LDAP_PW\"\n# ",
            ),
            3,
            "invalid credentials",
        ),
    ];
    for (case, toml, code, needle) in cases {
        let config = write_config(dir.path(), &toml);
        let output = crate::support::bin()
            .args(["ldap-sync", "--data", &data, "--config", &config])
            .env("PORTCULLIS_TEST_LDAP_PW", "wrong-password")
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{case}: {message}");
        assert!(message.contains(needle), "{case}: {message}");
        assert!(!message.contains(READER_PASSWORD), "{case}");
    }
    // With --json, a failed source is reported as such, not left out (issue 23).
    let unreachable = source_toml(&slapd, "corp", "").replace(&slapd.url(), "ldap://127.0.0.1:9");
    let config = write_config(dir.path(), &unreachable);
    let output = run(&["ldap-sync", "--data", &data, "--config", &config, "--json"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let reports: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(reports[0]["source"], "corp", "{reports}");
    assert!(
        reports[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("cannot connect")),
        "{reports}"
    );
    // An unknown --source is bad input.
    let config = write_config(dir.path(), &source_toml(&slapd, "corp", ""));
    let output = run(&[
        "ldap-sync",
        "--data",
        &data,
        "--config",
        &config,
        "--source",
        "nope",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn serve_syncs_periodically_and_reports_status() {
    let slapd = directory();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &source_toml(&slapd, "corp", "interval_secs = 10"),
    );
    let served = Served::start(dir.path(), &["--config", &config]);
    let url = served.url("/api/v1/sync/ldap");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status: Value = loop {
        let answer: Value = served
            .client
            .get(&url)
            .bearer_auth(BOOTSTRAP)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if answer["sources"][0]["runs"].as_u64().unwrap_or(0) >= 1 {
            break answer;
        }
        assert!(Instant::now() < deadline, "no run reported: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let corp = &status["sources"][0];
    assert_eq!(status["kind"], "ldap");
    assert_eq!(corp["source"], "corp");
    assert_eq!(corp["last_error"], Value::Null, "{status}");
    assert_eq!(corp["last_counts"]["users_added"], 2, "{status}");
    assert!(corp["last_duration_ms"].is_u64());
    assert!(corp["last_run_at"].is_string());
    assert!(!status.to_string().contains(READER_PASSWORD));

    // The synced users are there over the API.
    let user: Value = served
        .client
        .get(served.url("/api/v1/users/alice"))
        .bearer_auth(BOOTSTRAP)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(user["source"], "ldap:corp", "{user}");

    // Authorized like other admin reads: no token 401, a checker token 403.
    let anonymous = served.client.get(&url).send().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let created: Value = served
        .client
        .post(served.url("/api/v1/tokens"))
        .bearer_auth(BOOTSTRAP)
        .json(&serde_json::json!({"name": "bastion", "roles": ["checker"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let checker = created["secret"].as_str().expect("token secret").to_owned();
    let forbidden = served
        .client
        .get(&url)
        .bearer_auth(&checker)
        .send()
        .unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    let unknown = served
        .client
        .get(served.url("/api/v1/sync/scim"))
        .bearer_auth(BOOTSTRAP)
        .send()
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);

    let logs = served.logs();
    assert!(served.stop(), "serve stops cleanly");
    assert!(logs.contains("ldap sync done"), "{logs}");
    assert!(!logs.contains(READER_PASSWORD));
}

#[test]
fn ldap_sync_dry_run_lists_adoptions_and_refusals_with_their_reason() {
    let slapd = directory();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    // Imported before the directory: alice, and bob as an administrator.
    let sheet = dir.path().join("users.csv");
    std::fs::write(
        &sheet,
        "Username,Email,System roles\nalice,alice@example.org,user\nbob,,system-admin\n",
    )
    .unwrap();
    let imported = run(&[
        "import",
        "--data",
        &data_arg,
        "--kind",
        "users",
        sheet.to_str().unwrap(),
    ]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let config = write_config(
        dir.path(),
        &source_toml(&slapd, "corp", "adopt = [\"import\"]"),
    );

    let dry = run(&[
        "ldap-sync",
        "--data",
        &data_arg,
        "--config",
        &config,
        "--dry-run",
    ]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(text.contains("users: 0 added, 1 adopted"), "{text}");
    assert!(
        text.contains("+ user `alice` adopted: from `import`"),
        "{text}"
    );
    assert!(
        text.contains("clash: user username `bob`") && text.contains("system-admin"),
        "{text}"
    );

    let real = run(&[
        "ldap-sync",
        "--data",
        &data_arg,
        "--config",
        &config,
        "--json",
    ]);
    assert_eq!(real.status.code(), Some(0), "{}", stderr(&real));
    let reports: Value = serde_json::from_str(&stdout(&real)).unwrap();
    assert_eq!(reports[0]["counts"]["users_adopted"], 1);
    assert_eq!(reports[0]["counts"]["groups_added"], 1);
    assert_eq!(reports[0]["clashes"][0]["value"], "bob");
    let reason = reports[0]["clashes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("privileged"), "{reason}");
    assert!(
        reports[0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["action"] == "adopted" && c["name"] == "alice"),
        "{}",
        reports[0]
    );
}
