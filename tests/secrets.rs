//! Secrets never leave: a full scenario against `serve` logging at trace level
//! (`RUST_LOG=trace`, more than the debug level the issue asks for): the bootstrap
//! token, tokens created over the API, a local user's password, a SCIM user's
//! password, a wrong token tried. Then every secret is searched for in the
//! server's log, every API and SCIM answer, the operation log, the CSV and XLSX
//! exports of every kind, and the store file itself (which holds only hashes).

use std::io::Cursor;

use calamine::{Reader, Xlsx, open_workbook_from_rs};
use serde_json::json;

use crate::support::{Answer, BOOTSTRAP, STORE_FILE, Server, small_estate};

const LOCAL_PASSWORD: &str = "Local-Pa55word-q8Zr1";
const SCIM_PASSWORD: &str = "Scim-Pa55word-k3Vx7";
const WRONG_TOKEN: &str = "pcs_wrong-token-never-valid-93jd";

/// The text of every cell of an XLSX file.
fn xlsx_text(bytes: &[u8]) -> String {
    let mut workbook: Xlsx<_> =
        open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("an XLSX export");
    let mut text = String::new();
    for name in workbook.sheet_names() {
        let range = workbook.worksheet_range(&name).expect("a sheet");
        for row in range.rows() {
            for cell in row {
                text.push_str(&cell.to_string());
                text.push('\t');
            }
            text.push('\n');
        }
    }
    text
}

#[test]
fn secrets_are_never_logged_exported_or_returned() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[("RUST_LOG", "trace")]);
    let admin = server.admin();
    small_estate(&admin);
    let checker = admin.token("bastion", &["checker"], None);
    let provisioner = admin.token("idp", &["scim"], None);
    let local = admin.post(
        "/api/v1/users",
        &json!({"username": "dora", "password": LOCAL_PASSWORD}),
    );
    assert_eq!(local.status, 201, "{}", local.text());
    let scim = admin.with_token(Some(&provisioner));
    let created = scim.post(
        "/scim/v2/Users",
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "eve", "password": SCIM_PASSWORD, "active": true}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let eve = created.json["id"].as_str().expect("an id").to_owned();
    let replaced = scim.send(
        "PATCH",
        &format!("/scim/v2/Users/{eve}"),
        Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "password", "value": SCIM_PASSWORD}]})),
    );
    assert!(replaced.status < 300, "{}", replaced.text());
    assert_eq!(
        admin
            .with_token(Some(WRONG_TOKEN))
            .get("/api/v1/users")
            .status,
        401
    );
    let check = admin.with_token(Some(&checker)).post(
        "/api/v1/check",
        &json!({"user": "bob", "asset": "db-01", "account": "root", "protocol": "ssh", "action": "connect"}),
    );
    assert_eq!(check.status, 200, "{}", check.text());

    // Everything a client can read.
    let mut answers: Vec<(String, Answer)> = Vec::new();
    let mut read = |path: String, api: &crate::support::Api| {
        let answer = api.get(&path);
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.text());
        answers.push((path, answer));
    };
    for path in [
        "/api/v1/users?limit=1000",
        "/api/v1/users/dora",
        "/api/v1/users/eve",
        "/api/v1/tokens?limit=1000",
        "/api/v1/tokens/bastion",
        "/api/v1/tokens/bootstrap",
        "/api/v1/changes?since=0&limit=1000",
        "/api/v1/whoami",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        read(path.to_owned(), &admin);
    }
    read(format!("/scim/v2/Users/{eve}"), &scim);
    read("/scim/v2/Users?count=1000".to_owned(), &scim);
    read("/scim/v2/Users?attributes=password".to_owned(), &scim);
    let mut exports = Vec::new();
    for kind in ["users", "groups", "nodes", "assets", "rules"] {
        let csv = admin.get(&format!("/api/v1/{kind}/export?format=csv"));
        assert_eq!(csv.status, 200, "{}", csv.text());
        exports.push((format!("{kind}.csv"), csv.text()));
        let xlsx = admin.get(&format!("/api/v1/{kind}/export?format=xlsx"));
        assert_eq!(xlsx.status, 200);
        exports.push((format!("{kind}.xlsx"), xlsx_text(&xlsx.bytes)));
    }
    let users_csv = &exports[0].1;
    assert!(
        users_csv.contains("dora") && users_csv.contains("eve"),
        "{users_csv}"
    );
    let log = server.stop();
    let store = std::fs::read(dir.path().join(STORE_FILE)).expect("the store file");

    let secrets = [
        BOOTSTRAP,
        &checker,
        &provisioner,
        LOCAL_PASSWORD,
        SCIM_PASSWORD,
        WRONG_TOKEN,
    ];
    let mut leaks = Vec::new();
    let log_text = log.join("\n");
    // The server logs little even at trace level (refusals at debug, not every
    // request): the wrong token's refusal must be there, so the search is not vacuous.
    assert!(
        log_text.contains("DEBUG") && log_text.contains("request refused"),
        "the log is at debug level and shows the refusal:\n{log_text}"
    );
    for secret in secrets {
        if log_text.contains(secret) {
            leaks.push(format!("log holds `{secret}`"));
        }
        for (path, answer) in &answers {
            if answer.text().contains(secret) {
                leaks.push(format!("GET {path} returns `{secret}`"));
            }
            for value in answer.headers.values() {
                if String::from_utf8_lossy(value.as_bytes()).contains(secret) {
                    leaks.push(format!("GET {path} has a header with `{secret}`"));
                }
            }
        }
        for (name, text) in &exports {
            if text.contains(secret) {
                leaks.push(format!("export {name} holds `{secret}`"));
            }
        }
        if store.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            leaks.push(format!("the store file holds `{secret}` in plain text"));
        }
    }
    // Nor the hashes that stand for them.
    for marker in ["$argon2", "password_hash", "secret_hash", "token_hash"] {
        for (path, answer) in &answers {
            if answer.text().contains(marker) {
                leaks.push(format!("GET {path} returns a `{marker}`"));
            }
        }
        for (name, text) in &exports {
            if text.contains(marker) {
                leaks.push(format!("export {name} holds a `{marker}`"));
            }
        }
        if log_text.contains(marker) {
            leaks.push(format!("the log holds a `{marker}`"));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    eprintln!(
        "secrets: {} secrets searched in {} log lines, {} answers, {} exports and the store",
        secrets.len(),
        log.len(),
        answers.len(),
        exports.len()
    );
}
