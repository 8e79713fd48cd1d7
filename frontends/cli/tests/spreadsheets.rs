//! `portcullis import` / `export` on data directories, and the import and export
//! routes of `serve` over a loopback socket.

use std::path::Path;

use portcullis_tabular::Kind;
use serde_json::{Value, json};

use crate::support::{BOOTSTRAP, Served, demo_store, run, stderr, stdout};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn data(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// What each demo user may reach, one line per asset, as `list-assets` prints it.
fn reach(dir: &Path) -> Vec<(String, String)> {
    ["alice", "bob", "carol", "dave", "erin", "frank"]
        .iter()
        .map(|user| {
            let output = run(&["list-assets", "--data", data(dir), "--user", user]);
            assert!(output.status.success(), "{}", stderr(&output));
            (user.to_string(), stdout(&output))
        })
        .collect()
}

fn export(dir: &Path, kind: Kind, file: &Path) {
    let output = run(&[
        "export",
        "--data",
        data(dir),
        "--kind",
        kind.name(),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "export {kind}: {}",
        stderr(&output)
    );
}

#[test]
fn an_estate_exported_kind_by_kind_imports_into_an_empty_store_with_the_same_reach() {
    let demo = demo_store();
    let files = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    for (n, kind) in Kind::ALL.into_iter().enumerate() {
        // Alternate formats, so both readers take part in one round trip.
        let extension = if n % 2 == 0 { "csv" } else { "xlsx" };
        let file = files.path().join(format!("{kind}.{extension}"));
        export(demo.path(), kind, &file);
        let output = run(&[
            "import",
            "--data",
            data(copy.path()),
            "--kind",
            kind.name(),
            file.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "import {kind}: {}",
            stderr(&output)
        );
        assert!(
            stdout(&output).starts_with("imported "),
            "{}",
            stdout(&output)
        );
    }
    let before = reach(demo.path());
    assert!(
        before
            .iter()
            .filter(|(_, assets)| !assets.is_empty())
            .count()
            >= 3,
        "the demo grants several users something: {before:?}"
    );
    assert_eq!(before, reach(copy.path()));
    // Importing the same files again changes nothing.
    let file = files.path().join("users.csv");
    let again = run(&[
        "import",
        "--data",
        data(copy.path()),
        "--kind",
        "users",
        file.to_str().unwrap(),
    ]);
    assert!(again.status.success());
    assert!(
        stdout(&again).starts_with("nothing to import"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn a_file_with_problems_lists_each_with_its_row_and_writes_nothing() {
    let demo = demo_store();
    let files = tempfile::tempdir().unwrap();
    let before = files.path().join("before.csv");
    export(demo.path(), Kind::Users, &before);
    let bad = files.path().join("bad.csv");
    std::fs::write(
        &bad,
        "Username,Email,Active\nzoe,zoe@example.com,yes\nyan,not-an-email,yes\nxi,,maybe\n",
    )
    .unwrap();
    let output = run(&[
        "import",
        "--data",
        data(demo.path()),
        "--kind",
        "users",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("row 3, column `Email`"), "{message}");
    assert!(message.contains("row 4, column `Active`"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    let after = files.path().join("after.csv");
    export(demo.path(), Kind::Users, &after);
    assert_eq!(
        std::fs::read(&before).unwrap(),
        std::fs::read(&after).unwrap(),
        "zoe, on a good row, was not written either"
    );
}

#[test]
fn dry_run_prints_the_changes_and_writes_nothing_and_update_applies_them() {
    let demo = demo_store();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("users.csv");
    std::fs::write(
        &file,
        "Username,Name,Email\nalice,Alice Renamed,alice@example.com\nnewcomer,New Comer,new@example.com\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    // Without --update, a row naming an existing user that changes it is refused.
    let refused = run(&[
        "import",
        "--data",
        data(demo.path()),
        "--kind",
        "users",
        path,
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("row 2"), "{}", stderr(&refused));

    let dry = run(&[
        "import",
        "--data",
        data(demo.path()),
        "--kind",
        "users",
        "--update",
        "--dry-run",
        path,
    ]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let printed = stdout(&dry);
    assert!(
        printed.contains("row 2: update `alice` (Name)"),
        "{printed}"
    );
    assert!(printed.contains("row 3: create `newcomer`"), "{printed}");
    assert!(printed.contains("dry run, nothing written"), "{printed}");
    let users = files.path().join("now.csv");
    export(demo.path(), Kind::Users, &users);
    let now = std::fs::read_to_string(&users).unwrap();
    assert!(
        !now.contains("newcomer") && !now.contains("Alice Renamed"),
        "{now}"
    );

    let applied = run(&[
        "import",
        "--data",
        data(demo.path()),
        "--kind",
        "users",
        "--update",
        "--json",
        path,
    ]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let report: Value = serde_json::from_str(&stdout(&applied)).unwrap();
    assert_eq!(
        report["counts"],
        json!({"created": 1, "updated": 1, "unchanged": 0})
    );
    assert!(report["revision"].as_u64().unwrap() > 1);
    export(demo.path(), Kind::Users, &users);
    let now = std::fs::read_to_string(&users).unwrap();
    assert!(
        now.contains("newcomer") && now.contains("Alice Renamed"),
        "{now}"
    );
}

#[test]
fn import_refuses_unreadable_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let odd = files.path().join("users.txt");
    std::fs::write(&odd, "Username\nzoe\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--kind", "users", odd.to_str().unwrap()],
            "cannot tell the format",
        ),
        (vec!["--kind", "users", "-"], "--format is needed"),
        (
            vec!["--kind", "tokens", odd.to_str().unwrap()],
            "unknown kind `tokens`",
        ),
        (
            vec!["--kind", "users", "/nonexistent/users.csv"],
            "cannot read `/nonexistent/users.csv`",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["import", "--data", data(dir.path())];
        full.extend(args);
        let output = run(&full);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{full:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{full:?}: {}",
            stderr(&output)
        );
    }
    let missing = run(&["export", "--data", "/nonexistent", "--kind", "users"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no store"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn templates_import_as_their_example_rows() {
    let files = tempfile::tempdir().unwrap();
    // Into the demo estate: the examples use names the demo does not have, so each
    // creates its entity and changes none of the demo's (issue 23: the users
    // template's `alice` rewrote the demo's alice).
    let dir = demo_store();
    // In the order of Kind::ALL, each template's references name the examples before.
    for kind in Kind::ALL {
        let file = files.path().join(format!("{kind}.xlsx"));
        let output = run(&[
            "export",
            "--template",
            "--kind",
            kind.name(),
            "-o",
            file.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let imported = run(&[
            "import",
            "--data",
            data(dir.path()),
            "--kind",
            kind.name(),
            file.to_str().unwrap(),
        ]);
        assert!(imported.status.success(), "{kind}: {}", stderr(&imported));
        assert!(
            stdout(&imported).contains("1 created, 0 updated"),
            "{}",
            stdout(&imported)
        );
    }
}

fn token(served: &Served, name: &str, roles: &[&str]) -> String {
    let response = served
        .client
        .post(served.url("/api/v1/tokens"))
        .bearer_auth(BOOTSTRAP)
        .json(&json!({"name": name, "roles": roles}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json::<Value>().unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn serve_exports_and_imports_sheets_over_http() {
    let demo = demo_store();
    let served = Served::start(demo.path(), &[]);
    let client = &served.client;
    let checker = token(&served, "bastion", &["checker"]);
    let auditor = token(&served, "auditor", &["system-auditor"]);

    // Export: CSV by default, XLSX on request; authorized like a list.
    let csv = client
        .get(served.url("/api/v1/users/export"))
        .bearer_auth(&auditor)
        .send()
        .unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("users.csv")
    );
    let body = csv.text().unwrap();
    assert!(body.contains("alice") && body.contains("frank"), "{body}");
    let xlsx = client
        .get(served.url("/api/v1/rules/export?format=xlsx"))
        .bearer_auth(BOOTSTRAP)
        .send()
        .unwrap();
    assert_eq!(xlsx.status().as_u16(), 200);
    assert_eq!(xlsx.headers()["content-type"], XLSX);
    assert!(xlsx.bytes().unwrap().starts_with(b"PK"), "a zip container");
    for (token, status) in [(None, 401), (Some(checker.as_str()), 403)] {
        let mut request = client.get(served.url("/api/v1/users/export"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().unwrap().status().as_u16(), status);
    }
    let bad_format = client
        .get(served.url("/api/v1/users/export?format=ods"))
        .bearer_auth(BOOTSTRAP)
        .send()
        .unwrap();
    assert_eq!(bad_format.status().as_u16(), 400);

    // Import: format from the content type; the write's revision in the report.
    let sheet = "Username,Email\nzoe,zoe@example.com\n";
    let response = client
        .post(served.url("/api/v1/users/import"))
        .bearer_auth(BOOTSTRAP)
        .header("content-type", "text/csv")
        .body(sheet)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let report: Value = response.json().unwrap();
    assert_eq!(report["counts"]["created"], json!(1));
    let revision = report["revision"].as_u64().unwrap();
    let zoe = client
        .get(served.url(&format!("/api/v1/users/zoe?min_revision={revision}")))
        .bearer_auth(BOOTSTRAP)
        .send()
        .unwrap();
    assert_eq!(zoe.status().as_u16(), 200);

    // An auditor may not import; a role with users.add but not users.change may
    // import new users but not --update.
    let refused = client
        .post(served.url("/api/v1/users/import"))
        .bearer_auth(&auditor)
        .header("content-type", "text/csv")
        .body(sheet)
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let role = client
        .post(served.url("/api/v1/roles"))
        .bearer_auth(BOOTSTRAP)
        .json(&json!({"name": "onboarder", "permissions": ["users.add"]}))
        .send()
        .unwrap();
    assert_eq!(role.status().as_u16(), 201);
    let onboarder = token(&served, "onboarder", &["onboarder"]);
    let update = client
        .post(served.url("/api/v1/users/import?update=true"))
        .bearer_auth(&onboarder)
        .header("content-type", "text/csv")
        .body("Username,Name\nzoe,Zoe Z\n")
        .send()
        .unwrap();
    assert_eq!(update.status().as_u16(), 403);
    let body: Value = update.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("users.change")
    );

    // A file with problems: 422, every problem with its row and column, nothing written.
    let bad = client
        .post(served.url("/api/v1/users/import"))
        .bearer_auth(BOOTSTRAP)
        .header("content-type", "text/csv")
        .body("Username,Email\nyan,yan@example.com\nxi,not-an-email\nzoe,zoe2@example.com\n")
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    let body: Value = bad.json().unwrap();
    assert_eq!(body["error"]["code"], json!("invalid_file"));
    let problems = body["error"]["problems"].as_array().unwrap();
    let rows: Vec<u64> = problems
        .iter()
        .map(|p| p["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![3, 4], "{problems:?}");
    assert_eq!(problems[0]["column"], json!("Email"));
    let yan = client
        .get(served.url("/api/v1/users/yan"))
        .bearer_auth(BOOTSTRAP)
        .send()
        .unwrap();
    assert_eq!(yan.status().as_u16(), 404, "a refused file writes nothing");

    // Wrong content type and unknown query parameters are 400.
    for (path, content_type) in [
        ("/api/v1/users/import", "application/json"),
        ("/api/v1/users/import?overwrite=1", "text/csv"),
    ] {
        let response = client
            .post(served.url(path))
            .bearer_auth(BOOTSTRAP)
            .header("content-type", content_type)
            .body(sheet)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path} {content_type}");
    }

    // Imports take files beyond the API's 1 MiB body limit; other routes do not.
    let mut big = String::from("Username,Description\n");
    let filler = "x".repeat(1000);
    for n in 0..1500 {
        big.push_str(&format!("bulk-{n},{filler}\n"));
    }
    assert!(big.len() > 1024 * 1024);
    let response = client
        .post(served.url("/api/v1/users/import?dry_run=true"))
        .bearer_auth(BOOTSTRAP)
        .header("content-type", "text/csv")
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let report: Value = response.json().unwrap();
    assert_eq!(report["counts"]["created"], json!(1500));
    assert_eq!(report["revision"], Value::Null, "a dry run writes nothing");
    let response = client
        .post(served.url("/api/v1/users"))
        .bearer_auth(BOOTSTRAP)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    // The routes are in the OpenAPI document.
    let document: Value = client
        .get(served.url("/api/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for kind in Kind::ALL {
        assert!(document["paths"][format!("/api/v1/{kind}/import")]["post"].is_object());
        assert!(document["paths"][format!("/api/v1/{kind}/export")]["get"].is_object());
    }
    assert!(served.stop());
}
