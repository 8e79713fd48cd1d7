//! Moving users to an identity provider, end to end over HTTP against the real
//! binary with a real store: users and groups imported from CSV and created by an
//! administrator, rules on them and decisions asked; then Entra ID's requests (GET
//! with a userName filter, then PATCH or POST) and Okta's (import-and-match, then
//! PATCH) take them over under `[scim] adopt`; every decision stays; a privileged
//! account and an ambiguous entry are refused with the reason; release and
//! re-adoption round-trip; the operation log shows each step.

use std::collections::BTreeMap;

use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support::{BOOTSTRAP, Served, bin, stderr};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ADOPTED_FROM: &str = "x-portcullis-adopted-from";

/// The users whose decisions are compared before and after.
const USERS: [&str; 5] = ["zoe@example.com", "yan", "pat", "lou", "root-ann"];

struct Reply {
    status: u16,
    adopted_from: Option<String>,
    body: Value,
}

fn reply(response: Response) -> Reply {
    let status = response.status().as_u16();
    let adopted_from = response
        .headers()
        .get(ADOPTED_FROM)
        .map(|value| value.to_str().unwrap().to_owned());
    let text = response.text().unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}"))
    };
    Reply {
        status,
        adopted_from,
        body,
    }
}

struct Test {
    served: Served,
    scim_token: String,
}

impl Test {
    fn send(&self, request: RequestBuilder, token: &str) -> Reply {
        reply(request.bearer_auth(token).send().unwrap())
    }

    fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.served.client.request(method, self.served.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request, BOOTSTRAP)
    }

    fn scim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .served
            .client
            .request(method, self.served.url(&format!("/scim/v2{path}")));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        self.send(request, &self.scim_token)
    }

    fn import(&self, kind: &str, csv: &str) {
        let request = self
            .served
            .client
            .post(self.served.url(&format!("/api/v1/{kind}/import")))
            .header("content-type", "text/csv")
            .body(csv.to_owned());
        let answer = self.send(request, BOOTSTRAP);
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    fn source(&self, kind: &str, name: &str) -> String {
        let answer = self.api(
            reqwest::Method::GET,
            &format!("/api/v1/{kind}/{}", name.replace('@', "%40")),
            None,
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["source"].as_str().unwrap().to_owned()
    }

    fn revision(&self) -> u64 {
        self.api(reqwest::Method::GET, "/healthz", None).body["revision"]
            .as_u64()
            .unwrap()
    }

    /// Every decision for `USERS` on web-01 as root: user → protocol → allowed.
    fn decisions(&self) -> BTreeMap<(String, String), bool> {
        let mut all = BTreeMap::new();
        for user in USERS {
            for protocol in ["ssh", "rdp"] {
                let answer = self.api(
                    reqwest::Method::POST,
                    "/api/v1/check",
                    Some(json!({"user": user, "asset": "web-01", "account": "root",
                                "protocol": protocol, "action": "connect"})),
                );
                assert_eq!(answer.status, 200, "{}", answer.body);
                all.insert(
                    (user.to_owned(), protocol.to_owned()),
                    answer.body["allowed"].as_bool().unwrap(),
                );
            }
        }
        all
    }

    fn filter(&self, resource: &str, filter: &str) -> Reply {
        let mut encoded = String::new();
        for byte in filter.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    encoded.push(byte as char)
                }
                other => encoded.push_str(&format!("%{other:02X}")),
            }
        }
        self.scim(
            reqwest::Method::GET,
            &format!("/{resource}?filter={encoded}"),
            None,
        )
    }

    fn patch(&self, resource: &str, id: &str, operations: Value) -> Reply {
        self.scim(
            reqwest::Method::PATCH,
            &format!("/{resource}/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": operations})),
        )
    }
}

/// The estate before the identity provider: imported users and group, an
/// administrator's users and group, an administrator, rules.
fn estate(test: &Test) {
    use reqwest::Method;
    test.import(
        "users",
        "Username,Email\nzoe@example.com,zoe@example.com\nyan,yan@corp.example\npat,\nkimberly,kim@corp.example\n",
    );
    test.import("groups", "Name,Members\ndba,yan\n");
    for (kind, body) in [
        (
            "users",
            json!({"username": "lou", "email": "lou@example.com"}),
        ),
        ("users", json!({"username": "kim"})),
        (
            "users",
            json!({"username": "root-ann", "system_roles": ["user", "system-admin"]}),
        ),
        ("groups", json!({"name": "ops", "members": ["lou", "pat"]})),
        (
            "assets",
            json!({"name": "web-01", "address": "10.0.0.5", "platform": "linux",
                   "protocols": ["ssh/22", "rdp/3389"], "accounts": [{"username": "root"}]}),
        ),
        (
            "rules",
            json!({"name": "zoe-ssh", "users": ["zoe@example.com"], "assets": ["web-01"],
                   "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]}),
        ),
        (
            "rules",
            json!({"name": "ops-ssh", "groups": ["ops"], "assets": ["web-01"],
                   "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]}),
        ),
        (
            "rules",
            json!({"name": "dba-rdp", "groups": ["dba"], "assets": ["web-01"],
                   "accounts": ["@ALL"], "protocols": ["rdp"], "actions": ["connect"]}),
        ),
    ] {
        let answer = test.api(Method::POST, &format!("/api/v1/{kind}"), Some(body));
        assert_eq!(answer.status, 201, "{kind}: {}", answer.body);
    }
    assert_eq!(test.source("users", "yan"), "import");
    assert_eq!(test.source("groups", "dba"), "import");
    assert_eq!(test.source("users", "lou"), "local");
}

#[test]
fn identity_providers_take_over_imported_and_local_accounts_keeping_every_decision() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, "[scim]\nadopt = [\"local\", \"import\"]\n").unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data, &["--config", config.to_str().unwrap()]);
    let mut test = Test {
        served,
        scim_token: String::new(),
    };
    let token = test.api(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "idp", "roles": ["scim"]})),
    );
    test.scim_token = token.body["secret"].as_str().unwrap().to_owned();
    estate(&test);
    let before = test.decisions();
    assert!(before[&("zoe@example.com".to_owned(), "ssh".to_owned())]);
    assert!(before[&("yan".to_owned(), "rdp".to_owned())]);
    assert!(before[&("pat".to_owned(), "ssh".to_owned())]);
    let start = test.revision();

    // Entra ID: GET with a userName filter finds the imported user ...
    let found = test.filter("Users", "userName eq \"zoe@example.com\"");
    assert_eq!(found.status, 200);
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    let zoe = found.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // ... and its PATCH adopts it.
    let patched = test.patch(
        "Users",
        &zoe,
        json!([{"op": "Replace", "path": "active", "value": true}]),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.adopted_from.as_deref(), Some("import"));
    assert_eq!(test.source("users", "zoe@example.com"), "scim");
    // Entra's POST of a user its filter missed (another case) adopts too.
    let lou_id = test.api(Method::GET, "/api/v1/users/lou", None).body["id"].clone();
    let created = test.scim(
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "LOU", "active": true,
                    "emails": [{"primary": true, "value": "lou@example.com"}]})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.adopted_from.as_deref(), Some("local"));
    assert_eq!(created.body["id"], lou_id);
    // A group: GET by displayName, then PATCH.
    let ops = test.filter("Groups", "displayName eq \"ops\"");
    assert_eq!(ops.body["totalResults"], 1);
    let ops_id = ops.body["Resources"][0]["id"].as_str().unwrap().to_owned();
    let patched = test.patch(
        "Groups",
        &ops_id,
        json!([{"op": "Replace", "path": "displayName", "value": "ops"}]),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.adopted_from.as_deref(), Some("local"));

    // Okta: import (a plain list), match on userName, then PATCH each match.
    let listed = test.scim(Method::GET, "/Users?startIndex=1&count=100", None);
    let mut names: Vec<&str> = listed.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["userName"].as_str().unwrap())
        .collect();
    names.sort();
    // root-ann, the administrator, is not offered.
    assert_eq!(
        names,
        ["LOU", "kim", "kimberly", "pat", "yan", "zoe@example.com"]
    );
    for user in listed.body["Resources"].as_array().unwrap() {
        let name = user["userName"].as_str().unwrap();
        if !["yan", "pat"].contains(&name) {
            continue;
        }
        let id = user["id"].as_str().unwrap();
        let answer = test.patch(
            "Users",
            id,
            json!([{"op": "replace", "value": {"active": true}}]),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.adopted_from.is_some());
    }
    let groups = test.scim(Method::GET, "/Groups?startIndex=1&count=100", None);
    let dba = groups.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == "dba")
        .expect("the imported group is offered")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = test.patch(
        "Groups",
        &dba,
        json!([{"op": "replace", "value": {"displayName": "dba"}}]),
    );
    assert_eq!(answer.adopted_from.as_deref(), Some("import"));

    // Refusals, with the reason, changing nothing.
    let revision = test.revision();
    let privileged = test.scim(
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "root-ann"})),
    );
    assert_eq!(privileged.status, 409);
    assert_eq!(privileged.body["scimType"], "uniqueness");
    let detail = privileged.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("privileged") && detail.contains("system-admin"),
        "{detail}"
    );
    let ambiguous = test.scim(
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "kim",
                    "emails": [{"primary": true, "value": "kim@corp.example"}]})),
    );
    assert_eq!(ambiguous.status, 409);
    assert_eq!(ambiguous.body["scimType"], "uniqueness");
    let detail = ambiguous.body["detail"].as_str().unwrap();
    assert!(detail.contains("matches two users"), "{detail}");
    assert_eq!(test.revision(), revision);
    assert_eq!(test.source("users", "kim"), "local");
    assert_eq!(test.source("users", "kimberly"), "import");
    assert_eq!(test.source("users", "root-ann"), "local");

    // Every decision for those users is the one before.
    assert_eq!(test.decisions(), before);

    // Release: over the API, and with the command line as a client.
    let released = test.api(
        Method::POST,
        "/api/v1/users/zoe%40example.com/release",
        Some(json!({})),
    );
    assert_eq!(released.status, 200, "{}", released.body);
    assert_eq!(released.body["entity"]["source"], "local");
    let output = bin()
        .args([
            "user",
            "release",
            "--group",
            "ops",
            "--server",
            &test.served.base,
        ])
        .env("PORTCULLIS_TOKEN", BOOTSTRAP)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(test.source("groups", "ops"), "local");
    let again = test.api(Method::POST, "/api/v1/groups/ops/release", Some(json!({})));
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "already_local");
    // Re-adoption: the identity provider's next PATCH takes zoe back.
    let readopted = test.patch(
        "Users",
        &zoe,
        json!([{"op": "Replace", "path": "active", "value": true}]),
    );
    assert_eq!(readopted.adopted_from.as_deref(), Some("local"));
    assert_eq!(test.source("users", "zoe@example.com"), "scim");
    assert_eq!(test.decisions(), before);

    // The operation log: each adoption and release, with the source before and after.
    let changes = test.api(
        Method::GET,
        &format!("/api/v1/changes?since={start}&limit=1000"),
        None,
    );
    let steps: Vec<(String, String, String, String)> = changes.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == "adopt" || c["operation"] == "release")
        .map(|c| {
            let after = &c["after"];
            let name = after["username"]
                .as_str()
                .or(after["name"].as_str())
                .unwrap();
            (
                c["operation"].as_str().unwrap().to_owned(),
                name.to_owned(),
                c["before"]["source"].as_str().unwrap().to_owned(),
                after["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let step = |op: &str, name: &str, from: &str, to: &str| {
        (
            op.to_owned(),
            name.to_owned(),
            from.to_owned(),
            to.to_owned(),
        )
    };
    assert_eq!(
        steps,
        [
            step("adopt", "zoe@example.com", "import", "scim"),
            step("adopt", "lou", "local", "scim"),
            step("adopt", "ops", "local", "scim"),
            step("adopt", "yan", "import", "scim"),
            step("adopt", "pat", "import", "scim"),
            step("adopt", "dba", "import", "scim"),
            step("release", "zoe@example.com", "scim", "local"),
            step("release", "ops", "scim", "local"),
            step("adopt", "zoe@example.com", "local", "scim"),
        ]
    );
    assert!(test.served.stop());
}

#[test]
fn without_scim_adopt_nothing_is_adopted() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &[]);
    let mut test = Test {
        served,
        scim_token: String::new(),
    };
    let token = test.api(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "idp", "roles": ["scim"]})),
    );
    test.scim_token = token.body["secret"].as_str().unwrap().to_owned();
    estate(&test);
    let found = test.filter("Users", "userName eq \"zoe@example.com\"");
    assert_eq!(found.body["totalResults"], 0);
    let refused = test.scim(
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "zoe@example.com"})),
    );
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["scimType"], "uniqueness");
    let groups = test.scim(Method::GET, "/Groups", None);
    assert_eq!(groups.body["totalResults"], 0);
    let refused = test.scim(
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "ops"})),
    );
    assert_eq!(refused.status, 409);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("may not adopt"),
        "{}",
        refused.body
    );
    assert_eq!(test.source("users", "zoe@example.com"), "import");
    assert!(test.served.stop());
}
