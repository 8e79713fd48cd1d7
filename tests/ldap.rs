//! The LDAP directory of a real `portcullis serve` (issue 17), driven with OpenLDAP's
//! `ldapsearch` and `ldapwhoami` while the HTTP API changes the estate: changes show
//! at once, a deactivated user disappears and can no longer bind, and the
//! authorization matrix extended to LDAP binds (which tokens may read).

use std::process::Command;

use serde_json::json;

use crate::support::Server;

const BASE: &str = "dc=example,dc=org";
const PASSWORD: &str = "Correct-Horse-42";

struct Ldap {
    url: String,
}

impl Ldap {
    /// Runs `tool` with `args`; (exit code, stdout).
    fn run(&self, tool: &str, args: &[&str]) -> (i32, String) {
        let path = std::path::Path::new("/usr/bin").join(tool);
        assert!(
            path.exists(),
            "{tool} is missing: apt-get install ldap-utils"
        );
        let mut command = Command::new(path);
        command.env("LDAPNOINIT", "1").args(["-H", &self.url, "-x"]);
        if tool == "ldapsearch" {
            command.args(["-LLL", "-o", "ldif-wrap=no"]);
        }
        let output = command.args(args).output().expect("run an ldap-utils tool");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    fn whoami(&self, dn: &str, password: &str) -> (i32, String) {
        self.run("ldapwhoami", &["-D", dn, "-w", password])
    }

    /// The DNs `filter` finds from the base, bound as `dn`; or the exit code.
    fn find(&self, dn: &str, password: &str, filter: &str) -> Result<Vec<String>, i32> {
        let (code, out) = self.run(
            "ldapsearch",
            &["-D", dn, "-w", password, "-b", BASE, filter, "1.1"],
        );
        if code != 0 {
            return Err(code);
        }
        let mut dns: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("dn: "))
            .map(str::to_owned)
            .collect();
        dns.sort();
        Ok(dns)
    }
}

fn user(name: &str) -> String {
    format!("uid={name},ou=people,{BASE}")
}

fn token(name: &str) -> String {
    format!("cn={name},ou=tokens,{BASE}")
}

#[test]
fn the_directory_follows_the_api_and_tokens_read_by_their_roles() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = with_directory(dir.path());
    assert!(url.starts_with("ldap://127.0.0.1:"), "{url}");
    let ldap = Ldap { url };
    let admin = server.admin();
    admin.create(
        "/api/v1/users",
        json!({"username":"zed","name":"Zed Shaw","password":PASSWORD}),
    );
    admin.create(
        "/api/v1/users",
        json!({"username":"yan","password":PASSWORD}),
    );
    admin.create("/api/v1/groups", json!({"name":"ops","members":["zed"]}));
    let reader = admin.token("sssd", &["system-auditor"], None);

    let (code, out) = ldap.whoami(&user("zed"), PASSWORD);
    assert_eq!(
        (code, out.trim()),
        (0, format!("dn:{}", user("zed")).as_str())
    );
    assert_eq!(ldap.whoami(&user("zed"), "Wrong-Horse-42").0, 49);
    // The bind went through sign-in: an event in the operation log.
    let changes = admin.get("/api/v1/changes?since=0&limit=1000");
    let events: Vec<&str> = changes.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["after"]["event"].as_str())
        .collect();
    assert!(events.contains(&"login_ok"), "{events:?}");
    assert!(events.contains(&"login_denied"), "{events:?}");

    let ops = format!("(memberOf=cn=ops,ou=groups,{BASE})");
    assert_eq!(
        ldap.find(&token("sssd"), &reader, &ops),
        Ok(vec![user("zed")])
    );
    // A member added over HTTP shows on the next search.
    let added = admin.post("/api/v1/groups/ops/members", &json!("yan"));
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(
        ldap.find(&token("sssd"), &reader, &ops),
        Ok(vec![user("yan"), user("zed")])
    );
    // zed deactivated over HTTP: gone from the directory, and no longer binds.
    let patched = admin.send(
        "PATCH",
        "/api/v1/users/zed",
        Some(&json!({"active": false})),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(ldap.find(&token("sssd"), &reader, "(uid=zed)"), Ok(vec![]));
    assert_eq!(
        ldap.find(&token("sssd"), &reader, &ops),
        Ok(vec![user("yan")])
    );
    assert_eq!(ldap.whoami(&user("zed"), PASSWORD).0, 49);

    // The matrix: which tokens bind (49 when not), and which may read (50 when not).
    // A token that expires in a second (waited out below).
    let soon = portcullis_engine::Time::now().add_micros(1_000_000);
    let soon = serde_json::to_value(soon).unwrap();
    let expired = admin.token("old", &["system-admin"], soon.as_str());
    let revoked = admin.token("gone", &["system-admin"], None);
    let deleted = admin.send("DELETE", "/api/v1/tokens/gone", None);
    assert!((200..300).contains(&deleted.status), "{}", deleted.text());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let cases = [
        (
            "admin",
            admin.token("admin", &["system-admin"], None),
            Ok(vec![user("yan")]),
        ),
        (
            "auditor",
            admin.token("auditor", &["system-auditor"], None),
            Ok(vec![user("yan")]),
        ),
        (
            "checker",
            admin.token("checker", &["checker"], None),
            Err(50),
        ),
        ("scim", admin.token("scim", &["scim"], None), Err(50)),
        ("old", expired, Err(49)),
        ("gone", revoked, Err(49)),
    ];
    for (name, secret, expected) in cases {
        assert_eq!(
            ldap.find(&token(name), &secret, "(uid=yan)"),
            expected,
            "token {name}"
        );
    }
    // Anonymous: the root DSE only.
    let (code, out) = ldap.run("ldapsearch", &["-b", "", "-s", "base", "namingContexts"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("namingContexts: {BASE}")), "{out}");
    assert_eq!(ldap.run("ldapsearch", &["-b", BASE, "(uid=yan)"]).0, 50);
    server.stop();
}

/// Starts a server whose LDAP directory listens on a port of its own; its URL.
fn with_directory(dir: &std::path::Path) -> (Server, String) {
    let server = Server::start(
        dir,
        &[
            ("PORTCULLIS_LDAP_LISTEN", "127.0.0.1:0"),
            ("PORTCULLIS_LDAP_BASE_DN", BASE),
        ],
    );
    let line = server.next_line();
    let url = line
        .strip_prefix("portcullis: listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_owned();
    (server, url)
}

/// The rule and what it needs, on a server whose users and groups exist.
fn prod_rule(api: &crate::support::Api) {
    api.create(
        "/api/v1/nodes",
        json!({"name": "Prod", "parent": "/Default"}),
    );
    api.create(
        "/api/v1/assets",
        json!({"name": "web-01", "address": "10.0.0.5", "platform": "linux",
               "protocols": ["ssh/22"], "nodes": ["/Default/Prod"],
               "accounts": [{"username": "root", "privileged": true}]}),
    );
    api.create(
        "/api/v1/rules",
        json!({"name": "ops-prod", "groups": ["ops"], "nodes": ["/Default/Prod"],
               "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]}),
    );
}

#[test]
fn ldap_sync_from_another_portcullis_gives_the_same_groups_and_decisions() {
    // A: the estate, served over LDAP.
    let dir_a = tempfile::tempdir().unwrap();
    let (a, url) = with_directory(dir_a.path());
    let api_a = a.admin();
    for user in ["alice", "bob", "carol"] {
        api_a.create(
            "/api/v1/users",
            json!({"username": user, "name": format!("{user} example"), "email": format!("{user}@example.com")}),
        );
    }
    api_a.create(
        "/api/v1/groups",
        json!({"name": "dba", "members": ["carol"]}),
    );
    api_a.create(
        "/api/v1/groups",
        json!({"name": "ops", "members": ["bob"], "subgroups": ["dba"]}),
    );
    prod_rule(&api_a);
    let secret = api_a.token("sync", &["system-auditor"], None);

    // B: `portcullis ldap-sync` pointed at A's directory.
    let dir_b = tempfile::tempdir().unwrap();
    let password = dir_b.path().join("sync.secret");
    std::fs::write(&password, &secret).unwrap();
    let config = dir_b.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[ldap.a]
url = "{url}"
bind_dn = "cn=sync,ou=tokens,{BASE}"
bind_password_file = "{password}"
incremental = "none"
timeout_secs = 10

[ldap.a.users]
base = "ou=people,{BASE}"

[ldap.a.groups]
base = "ou=groups,{BASE}"
"#,
            password = password.display()
        ),
    )
    .unwrap();
    let data_b = dir_b.path().join("data");
    let output = Command::new(crate::support::binary())
        .args(["ldap-sync", "--data"])
        .arg(&data_b)
        .arg("--config")
        .arg(&config)
        .env_remove("PORTCULLIS_DATA")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ldap-sync failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let b = Server::start(&data_b, &[]);
    let api_b = b.admin();
    prod_rule(&api_b);

    // The same users, with their names and emails, from the LDAP source.
    for user in ["alice", "bob", "carol"] {
        let answer = api_b.get(&format!("/api/v1/users/{user}"));
        assert_eq!(answer.status, 200, "{user}: {}", answer.text());
        assert_eq!(answer.json["source"], "ldap:a");
        assert_eq!(answer.json["email"], format!("{user}@example.com"));
        assert_eq!(answer.json["name"], format!("{user} example"));
    }
    // The same nesting: dba inside ops.
    let ops = api_b.get("/api/v1/groups/ops").json;
    let dba = api_b.get("/api/v1/groups/dba").json;
    assert_eq!(ops["subgroups"][0]["group"], dba["id"], "{ops}");
    // The same decisions, on both sides, for a rule naming the group.
    for user in ["alice", "bob", "carol"] {
        let query = json!({"user": user, "asset": "web-01", "account": "root",
                           "protocol": "ssh", "action": "connect"});
        let on_a = api_a.post("/api/v1/check", &query).json["allowed"].clone();
        let on_b = api_b.post("/api/v1/check", &query).json["allowed"].clone();
        assert_eq!(on_a, on_b, "{user}");
        // bob directly, carol through dba; alice is in neither.
        assert_eq!(on_b, json!(user != "alice"), "{user}");
    }
    b.stop();
    a.stop();
}
