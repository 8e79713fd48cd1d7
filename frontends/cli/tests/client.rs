//! The commands as clients of a running server (`--server`, issue 23): each command
//! is run twice on the same estate, once against a real `serve` on 127.0.0.1 and once
//! on a stopped copy of its data directory, and must print the same thing and exit
//! with the same code. Then what only the server mode has: the token from a file or
//! the environment, a refused token, an unreachable server; and a locked store
//! without `--server`, which says to use it (exit 3).
//!
//! Also the import rule of issue 23 end to end: an `--update` import that switches off
//! a user's enrolled TOTP is refused without `--allow-security-changes` at both doors,
//! and sign-in still asks for the code.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::support::{BOOTSTRAP, Served, bin, demo_store, stderr, stdout};

/// `portcullis args…` with `input` on stdin and `env` set.
fn run_env(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut child = bin()
        .args(args)
        .envs(env.iter().copied())
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

/// Two data directories holding the same estate (the demo, with the bootstrap token
/// already in it, so a server started on one writes nothing at start).
fn twin_stores() -> (tempfile::TempDir, tempfile::TempDir) {
    let served = demo_store();
    let twin = tempfile::tempdir().unwrap();
    std::fs::copy(
        served.path().join("portcullis.redb"),
        twin.path().join("portcullis.redb"),
    )
    .unwrap();
    (served, twin)
}

/// Runs `args` (with `{file}` placeholders already filled) on the server and on the
/// data directory; both must exit alike and print alike.
struct Twins<'a> {
    served: &'a Served,
    data: &'a Path,
}

impl Twins<'_> {
    fn server(&self, args: &[&str], input: &str) -> Output {
        let mut all = args.to_vec();
        all.extend(["--server", &self.served.base]);
        run_env(&all, &[("PORTCULLIS_TOKEN", BOOTSTRAP)], input)
    }

    fn local(&self, args: &[&str], input: &str) -> Output {
        let mut all = args.to_vec();
        all.extend(["--data", self.data.to_str().unwrap()]);
        run_env(&all, &[], input)
    }

    /// The exit code both gave, after comparing their outputs.
    fn same(&self, args: &[&str]) -> (Option<i32>, String) {
        self.same_with(args, "")
    }

    fn same_with(&self, args: &[&str], input: &str) -> (Option<i32>, String) {
        let remote = self.server(args, input);
        let local = self.local(args, input);
        assert_eq!(
            (remote.status.code(), stdout(&remote)),
            (local.status.code(), stdout(&local)),
            "{args:?}: --server and --data differ; stderr: {} / {}",
            stderr(&remote),
            stderr(&local)
        );
        assert_eq!(
            stderr(&remote),
            stderr(&local),
            "{args:?}: different messages"
        );
        (remote.status.code(), stdout(&remote))
    }
}

#[test]
fn every_command_says_the_same_over_the_server_as_on_the_data_directory() {
    let (served_dir, local_dir) = twin_stores();
    let served = Served::start(served_dir.path(), &[]);
    let twins = Twins {
        served: &served,
        data: local_dir.path(),
    };
    let at = "2029-06-01T00:00:00Z";
    let question = |user: &'static str, asset: &'static str, account: &'static str| {
        move |command: &'static str, extra: &[&'static str]| {
            let mut args = vec![
                command,
                "--user",
                user,
                "--asset",
                asset,
                "--account",
                account,
                "--protocol",
                "ssh",
                "--action",
                "connect",
                "--at",
                at,
            ];
            args.extend_from_slice(extra);
            args
        }
    };
    let allowed = question("alice", "web-01", "root");
    let denied = question("alice", "db-01", "root");
    let unknown = question("nobody", "web-01", "root");
    // check and explain: allowed (0), denied (1), an unknown user (2); text and JSON.
    for (ask, code) in [(allowed, 0), (denied, 1), (unknown, 2)] {
        for command in ["check", "explain"] {
            for extra in [&[][..], &["--json"][..]] {
                let (got, out) = twins.same(&ask(command, extra));
                assert_eq!(got, Some(code), "{command} {extra:?}: {out}");
            }
        }
    }
    let (_, out) = twins.same(&denied("explain", &[]));
    assert!(out.contains("reasons: denied_by"), "{out}");
    // A bad action is refused before anything is asked.
    let mut bad = allowed("check", &[]);
    bad[10] = "dance";
    assert_eq!(twins.same(&bad).0, Some(2));

    // list-assets, with and without a node, as text and JSON; an unknown user.
    for extra in [
        &[][..],
        &["--json"][..],
        &["--node", "/Default/Prod"][..],
        &["--node", "/Default/Prod", "--json"][..],
    ] {
        let mut args = vec!["list-assets", "--user", "alice", "--at", at];
        args.extend_from_slice(extra);
        let (code, out) = twins.same(&args);
        assert_eq!(code, Some(0));
        assert!(out.contains("web-01"), "{out}");
    }
    assert_eq!(twins.same(&["list-assets", "--user", "nobody"]).0, Some(2));

    // export: the same sheet, byte for byte, in both formats.
    for kind in ["users", "groups", "nodes", "assets", "rules", "roles"] {
        let (code, _) = twins.same(&["export", "--kind", kind]);
        assert_eq!(code, Some(0));
    }
    // In XLSX (whose bytes hold timestamps): the server's sheet, read on the data
    // directory, changes nothing.
    let files = tempfile::tempdir().unwrap();
    let remote_xlsx = files.path().join("remote.xlsx");
    let remote = twins.server(
        &[
            "export",
            "--kind",
            "rules",
            "-o",
            remote_xlsx.to_str().unwrap(),
        ],
        "",
    );
    assert!(remote.status.success(), "{}", stderr(&remote));
    let read_back = twins.local(
        &[
            "import",
            "--kind",
            "rules",
            remote_xlsx.to_str().unwrap(),
            "--dry-run",
        ],
        "",
    );
    assert_eq!(
        stdout(&read_back),
        "dry run, nothing written: rules: 0 created, 0 updated, 6 unchanged\n",
        "{}",
        stderr(&read_back)
    );

    // import: a dry run, a refused file (every problem listed, exit 2), a real one.
    let sheet = files.path().join("users.csv");
    std::fs::write(&sheet, "Username,Email\nzoe,zoe@example.com\nalice,\n").unwrap();
    let sheet_arg = sheet.to_str().unwrap();
    let (code, out) = twins.same(&["import", "--kind", "users", sheet_arg, "--dry-run"]);
    assert_eq!(code, Some(2), "alice exists with other values: {out}");
    std::fs::write(&sheet, "Username,Email\nzoe,zoe@example.com\n").unwrap();
    let (code, out) = twins.same(&["import", "--kind", "users", sheet_arg, "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("row 2: create `zoe`"), "{out}");
    let (code, out) = twins.same(&["import", "--kind", "users", sheet_arg, "--json"]);
    assert_eq!(code, Some(0));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["counts"]["created"], 1);

    // token: create (the secret differs; the rest not), list, revoke, revoke again.
    for twin in [true, false] {
        let args = [
            "token",
            "create",
            "--name",
            "bastion-2",
            "--role",
            "checker",
        ];
        let output = if twin {
            twins.server(&args, "")
        } else {
            twins.local(&args, "")
        };
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(stdout(&output).starts_with("pct_"), "{}", stdout(&output));
        assert!(stderr(&output).contains("token `bastion-2` created"));
    }
    // The two tokens named bastion-2 are two tokens (ids, times, creators differ):
    // the lists agree on the rest.
    let listed = |output: Output| {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let list: Value = serde_json::from_slice(&output.stdout).unwrap();
        let tokens: Vec<(Value, Value, Value)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|token| {
                (
                    token["name"].clone(),
                    token["roles"].clone(),
                    token["expires_at"].clone(),
                )
            })
            .collect();
        (list["revision"].clone(), list["total"].clone(), tokens)
    };
    let remote = listed(twins.server(&["token", "list", "--json"], ""));
    assert_eq!(
        remote,
        listed(twins.local(&["token", "list", "--json"], ""))
    );
    assert_eq!(remote.1, 2, "{remote:?}");
    let names = |output: Output| -> Vec<String> {
        stdout(&output)
            .lines()
            .map(|line| line.split("\tcreated").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(twins.server(&["token", "list"], "")),
        names(twins.local(&["token", "list"], ""))
    );
    assert_eq!(
        twins
            .same(&[
                "token",
                "create",
                "--name",
                "bastion-2",
                "--role",
                "checker"
            ])
            .0,
        Some(2),
        "a duplicate name"
    );
    assert_eq!(twins.same(&["token", "revoke", "bastion-2"]).0, Some(0));
    assert_eq!(twins.same(&["token", "revoke", "bastion-2"]).0, Some(2));

    // user: a password (stdin; the policy applies), MFA reset, unlock, housekeeping.
    let set = ["user", "set-password", "--user", "alice", "--must-change"];
    assert_eq!(twins.same_with(&set, "short\n").0, Some(2), "the policy");
    assert_eq!(twins.same_with(&set, "Correct-Horse-42\n").0, Some(0));
    let login = served
        .client
        .post(served.url("/api/v1/auth/login"))
        .json(&json!({"login": "alice", "password": "Correct-Horse-42"}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(login["status"], "password_change_required", "{login}");
    for command in ["reset-mfa", "unlock"] {
        assert_eq!(twins.same(&["user", command, "--user", "alice"]).0, Some(0));
        assert_eq!(
            twins.same(&["user", command, "--user", "nobody"]).0,
            Some(2)
        );
    }
    let (code, out) = twins.same(&["user", "housekeeping", "--json"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"deactivated\": []"), "{out}");

    // While the server runs, its store is locked: exit 3, naming --server.
    let locked = run_env(
        &["check", "--data", served_dir.path().to_str().unwrap()]
            .into_iter()
            .chain(allowed("check", &[])[1..].iter().copied())
            .collect::<Vec<_>>(),
        &[],
        "",
    );
    assert_eq!(locked.status.code(), Some(3), "{}", stderr(&locked));
    assert!(stderr(&locked).contains("--server"), "{}", stderr(&locked));

    // The token: from a file too; none at all (2); a wrong one (3); no server (3).
    let token_file = files.path().join("token");
    std::fs::write(&token_file, format!("{BOOTSTRAP}\n")).unwrap();
    let from_file = run_env(
        &[
            "list-assets",
            "--user",
            "alice",
            "--server",
            &served.base,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_eq!(from_file.status.code(), Some(0), "{}", stderr(&from_file));
    let env_server = run_env(
        &["list-assets", "--user", "alice"],
        &[
            ("PORTCULLIS_SERVER", &served.base),
            ("PORTCULLIS_TOKEN", BOOTSTRAP),
        ],
        "",
    );
    assert_eq!(stdout(&env_server), stdout(&from_file));
    let no_token = run_env(
        &["list-assets", "--user", "alice", "--server", &served.base],
        &[],
        "",
    );
    assert_eq!(no_token.status.code(), Some(2));
    assert!(stderr(&no_token).contains("PORTCULLIS_TOKEN"));
    let wrong = run_env(
        &["list-assets", "--user", "alice", "--server", &served.base],
        &[("PORTCULLIS_TOKEN", "pct_not-a-real-token-at-all")],
        "",
    );
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("refused the token"),
        "{}",
        stderr(&wrong)
    );
    assert!(served.stop());
    let gone = twins_gone(&question("alice", "web-01", "root")("check", &[]));
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
    assert!(
        stderr(&gone).contains("cannot reach the server"),
        "{}",
        stderr(&gone)
    );
}

/// `args` against a server that is not there (a port nothing listens on).
fn twins_gone(args: &[&str]) -> Output {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut all = args.to_vec();
    all.extend(["--server", &url]);
    run_env(&all, &[("PORTCULLIS_TOKEN", BOOTSTRAP)], "")
}

/// Issue 23: on a store where alice had enrolled TOTP, an `--update` import whose MFA
/// column said `disabled` switched her second factor off.
#[test]
fn an_update_import_that_turns_off_enrolled_totp_is_refused_and_sign_in_still_asks_for_the_code() {
    const PASSWORD: &str = "Correct-Horse-42";
    let dir = demo_store();
    let data = dir.path().to_str().unwrap();
    let set = run_env(
        &["user", "set-password", "--data", data, "--user", "alice"],
        &[],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let served = Served::start(dir.path(), &[]);
    let post = |path: &str, body: Value| -> Value {
        served
            .client
            .post(served.url(path))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let proof = json!({"login": "alice", "password": PASSWORD});
    let enrolment = post("/api/v1/auth/mfa/totp/enroll", proof.clone());
    let uri = enrolment["otpauth_uri"]
        .as_str()
        .expect("an otpauth URI")
        .to_owned();
    let mut confirm = proof.clone();
    confirm["totp_code"] = json!(portcullis_signin::testing::authenticator_code(
        &uri,
        portcullis_engine::Time::now()
    ));
    let confirmed = post("/api/v1/auth/mfa/totp/confirm", confirm);
    assert_eq!(confirmed["status"], "ok", "{confirmed}");
    let asks_for_the_code = || {
        let login = post("/api/v1/auth/login", proof.clone());
        assert_eq!(login["status"], "mfa_required", "{login}");
    };
    asks_for_the_code();

    let files = tempfile::tempdir().unwrap();
    let sheet = files.path().join("users.csv");
    std::fs::write(&sheet, "Username,MFA,Phone\nalice,disabled,+1 555 0100\n").unwrap();
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "--kind",
            "users",
            sheet.to_str().unwrap(),
            "--update",
            "--server",
            &served.base,
        ];
        args.extend_from_slice(extra);
        run_env(&args, &[("PORTCULLIS_TOKEN", BOOTSTRAP)], "")
    };
    // Over the server (the HTTP route): refused, nothing written.
    let refused = import(&[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains(
            "row 2, column `MFA`: lowers the protection of user `alice`: MFA `enabled` → `disabled`"
        ),
        "{}",
        stderr(&refused)
    );
    asks_for_the_code();
    // The dry run lists the lowering apart from the other changes.
    let dry = import(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(
        stdout(&dry),
        "row 2: update `alice` (Phone, MFA)\n\
         changes that lower protection (refused without --allow-security-changes):\n\
         row 2: user `alice`: MFA `enabled` → `disabled`\n\
         dry run, nothing written: users: 0 created, 1 updated, 0 unchanged\n"
    );
    // The HTTP route itself, without the CLI: 422 with the problem.
    let response = served
        .client
        .post(served.url("/api/v1/users/import?update=true&format=csv"))
        .bearer_auth(BOOTSTRAP)
        .body("Username,MFA\nalice,disabled\n")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["problems"][0]["column"], "MFA", "{body}");
    asks_for_the_code();
    // On the data directory (the other door), also refused.
    assert!(served.stop());
    let local = run_env(
        &[
            "import",
            "--data",
            data,
            "--kind",
            "users",
            sheet.to_str().unwrap(),
            "--update",
        ],
        &[],
        "",
    );
    assert_eq!(local.status.code(), Some(2), "{}", stdout(&local));
    assert!(stderr(&local).contains("MFA `enabled` → `disabled`"));
    // Explicitly allowed, it is made: then the password alone signs in.
    let allowed = run_env(
        &[
            "import",
            "--data",
            data,
            "--kind",
            "users",
            sheet.to_str().unwrap(),
            "--update",
            "--allow-security-changes",
        ],
        &[],
        "",
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    let served = Served::start(dir.path(), &[]);
    let login: Value = served
        .client
        .post(served.url("/api/v1/auth/login"))
        .json(&proof)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(login["status"], "ok", "{login}");
}
