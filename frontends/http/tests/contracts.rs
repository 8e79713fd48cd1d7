//! The HTTP API's contracts, as the README documents them, end to end.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, code, estate};

fn check_body(user: &str, asset: &str, account: &str, action: &str, at: &str) -> Value {
    json!({"user": user, "asset": asset, "account": account, "protocol": "ssh", "action": action, "at": at})
}

async fn allowed(
    server: &Server,
    user: &str,
    asset: &str,
    account: &str,
    action: &str,
    at: &str,
) -> bool {
    let (status, answer) = server
        .post(
            "/api/v1/check",
            check_body(user, asset, account, action, at),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["allowed"].as_bool().expect("allowed is a boolean")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_exactly_the_contract_fields() {
    let server = Server::start().await;
    estate(&server).await;
    let (status, answer) = server
        .post(
            "/api/v1/check",
            check_body("alice", "web-01", "root", "connect", "2026-12-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{answer}");
    assert_eq!(answer["allowed"], json!(true));
    assert_eq!(answer["actions"], json!(["connect", "upload", "download"]));
    assert_eq!(
        answer["valid_until"],
        json!("2027-01-01T00:00:00Z"),
        "the rule's expiry"
    );
    assert_eq!(
        answer["revision"].as_u64(),
        Some(server.engine.snapshot().revision())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_by_id_and_assets_by_id_work_like_names() {
    let server = Server::start().await;
    estate(&server).await;
    let (_, alice) = server.get("/api/v1/users/alice").await;
    let (_, web) = server.get("/api/v1/assets/web-01").await;
    let by_id = allowed(
        &server,
        alice["id"].as_str().unwrap(),
        web["id"].as_str().unwrap(),
        "root",
        "connect",
        "2026-12-01T00:00:00Z",
    )
    .await;
    assert!(by_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_rule_and_temporary_membership_end_on_time() {
    let server = Server::start().await;
    estate(&server).await;
    let cases = [
        (
            "alice",
            "web-01",
            "root",
            "connect",
            "2026-12-01T00:00:00Z",
            true,
        ),
        (
            "alice",
            "web-01",
            "root",
            "connect",
            "2027-01-01T00:00:00Z",
            false,
        ),
        (
            "alice",
            "web-01",
            "root",
            "share",
            "2026-12-01T00:00:00Z",
            false,
        ),
        (
            "bob",
            "web-01",
            "root",
            "upload",
            "2026-12-01T00:00:00Z",
            true,
        ),
        (
            "bob",
            "web-01",
            "root",
            "upload",
            "2026-12-20T00:00:00Z",
            false,
        ),
        (
            "carol",
            "web-01",
            "root",
            "download",
            "2026-12-20T00:00:00Z",
            true,
        ),
        (
            "alice",
            "web-01",
            "nobody",
            "connect",
            "2026-12-01T00:00:00Z",
            false,
        ),
    ];
    for (user, asset, account, action, at, expected) in cases {
        assert_eq!(
            allowed(&server, user, asset, account, action, at).await,
            expected,
            "{user} {asset} {account} {action} {at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_beats_allow_and_explain_says_why() {
    let server = Server::start().await;
    estate(&server).await;
    let at = "2026-12-01T00:00:00Z";
    assert!(!allowed(&server, "alice", "db-01", "root", "connect", at).await);
    assert!(allowed(&server, "alice", "db-01", "postgres", "connect", at).await);
    let (status, answer) = server
        .post(
            "/api/v1/explain",
            check_body("alice", "db-01", "root", "connect", at),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["allowed"], json!(false));
    assert!(
        answer["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("denied_by")),
        "{answer}"
    );
    let deny = answer["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["name"] == "no-root-on-db")
        .expect("the deny rule is explained");
    assert_eq!(deny["applied"], json!(true));
    assert_eq!(deny["reason"], json!("denied_by"));
    assert_eq!(deny["effect"], json!("deny"));
    // The group path that reached carol: dba, nested in ops.
    let (_, answer) = server
        .post(
            "/api/v1/explain",
            check_body("carol", "web-01", "root", "connect", at),
        )
        .await;
    let rule = answer["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ops-prod")
        .unwrap();
    assert_eq!(rule["via"], json!(["dba", "ops"]), "{answer}");
    // No rule at all.
    server.create("users", json!({"username": "zoe"})).await;
    let (_, answer) = server
        .post(
            "/api/v1/explain",
            check_body("zoe", "web-01", "root", "connect", at),
        )
        .await;
    assert_eq!(answer["reasons"], json!(["no_rule"]), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_or_asset_is_404() {
    let server = Server::start().await;
    estate(&server).await;
    let at = "2026-12-01T00:00:00Z";
    for (user, asset) in [("nobody", "web-01"), ("alice", "no-such-asset")] {
        for path in ["/api/v1/check", "/api/v1/explain"] {
            let (status, answer) = server
                .post(path, check_body(user, asset, "root", "connect", at))
                .await;
            assert_eq!(status, 404, "{path} {answer}");
            assert_eq!(code(&answer), "not_found");
        }
    }
    let (status, answer) = server.get("/api/v1/users/nobody/assets").await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_each_check_from_one_snapshot() {
    let server = Server::start().await;
    estate(&server).await;
    let (status, answer) = server
        .post(
            "/api/v1/check/batch",
            json!({"at": "2026-12-01T00:00:00Z", "checks": [
                {"user":"alice","asset":"web-01","account":"root","protocol":"ssh","action":"connect"},
                {"user":"alice","asset":"db-01","account":"root","protocol":"ssh","action":"connect"},
                {"user":"ghost","asset":"db-01","account":"root","protocol":"ssh","action":"connect"},
                {"user":"alice","asset":"web-01","account":"root","protocol":"ssh","action":"connect","at":"2030-01-01T00:00:00Z"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["allowed"], json!(true));
    assert_eq!(results[1]["allowed"], json!(false));
    assert_eq!(code(&results[2]), "not_found");
    assert_eq!(results[3]["allowed"], json!(false), "its own `at` wins");
    assert_eq!(results[0]["revision"], answer["revision"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_user_may_reach_and_who_may_reach_an_asset() {
    let server = Server::start().await;
    estate(&server).await;
    let at = "at=2026-12-01T00:00:00Z";
    let (status, assets) = server
        .get(&format!("/api/v1/users/alice/assets?{at}"))
        .await;
    assert_eq!(status, 200, "{assets}");
    let names: Vec<&str> = assets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-01", "db-01"], "db-01 through postgres");
    assert_eq!(assets["total"], json!(2));
    let (_, page) = server
        .get(&format!("/api/v1/users/alice/assets?{at}&limit=1&offset=1"))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], json!("db-01"));
    let (_, under) = server
        .get(&format!(
            "/api/v1/users/alice/assets?{at}&node=/Default/Prod/DB"
        ))
        .await;
    assert_eq!(under["total"], json!(1));

    let (status, nodes) = server.get(&format!("/api/v1/users/alice/nodes?{at}")).await;
    assert_eq!(status, 200, "{nodes}");
    let paths: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/Default", "/Default/Prod", "/Default/Prod/DB"]);

    let (status, accounts) = server
        .get(&format!("/api/v1/users/alice/assets/db-01/accounts?{at}"))
        .await;
    assert_eq!(status, 200, "{accounts}");
    let items = accounts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "root is denied: {accounts}");
    assert_eq!(items[0]["username"], json!("postgres"));
    assert_eq!(
        items[0]["protocols"],
        json!([{"protocol": "ssh", "actions": ["connect", "upload", "download"]}])
    );

    let (status, users) = server
        .get(&format!("/api/v1/assets/web-01/users?{at}"))
        .await;
    assert_eq!(status, 200, "{users}");
    let mut names: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let (_, later) = server
        .get("/api/v1/assets/web-01/users?at=2026-12-20T00:00:00Z")
        .await;
    assert_eq!(later["total"], json!(2), "bob's membership ended: {later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_checks_follow_groups_and_scopes() {
    let server = Server::start().await;
    estate(&server).await;
    server
        .create(
            "roles",
            json!({"name": "db-operator", "permissions": ["assets.change"]}),
        )
        .await;
    let (status, _) = server
        .patch(
            "/api/v1/groups/dba",
            json!({"roles": [{"scope": "/Default/Prod/DB", "roles": ["db-operator"]}]}),
        )
        .await;
    assert_eq!(status, 200);
    let ask = |user: &str, scope: &str| json!({"user": user, "permission": "assets.change", "scope": scope});
    let (status, answer) = server
        .post(
            "/api/v1/permissions/check",
            ask("carol", "/Default/Prod/DB"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["allowed"], json!(true));
    assert_eq!(answer["roles"], json!(["db-operator", "user"]));
    let (_, answer) = server
        .post("/api/v1/permissions/check", ask("carol", "*"))
        .await;
    assert_eq!(answer["allowed"], json!(false));
    let (_, answer) = server
        .post(
            "/api/v1/permissions/check",
            ask("alice", "/Default/Prod/DB"),
        )
        .await;
    assert_eq!(answer["allowed"], json!(false));
    let (_, answer) = server
        .post(
            "/api/v1/permissions/check",
            json!({"user": "alice", "permission": "users.view"}),
        )
        .await;
    assert_eq!(answer["allowed"], json!(false));
    server
        .patch(
            "/api/v1/users/alice",
            json!({"system_roles": ["system-auditor"]}),
        )
        .await;
    let (_, answer) = server
        .post(
            "/api/v1/permissions/check",
            json!({"user": "alice", "permission": "users.view"}),
        )
        .await;
    assert_eq!(answer["allowed"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_by_path_rename_move_and_delete() {
    let server = Server::start().await;
    let created = server.create("nodes", json!({"name": "Prod"})).await;
    assert_eq!(created["entity"]["path"], json!("/Default/Prod"));
    let created = server
        .create("nodes", json!({"name": "DB", "parent": "/Default/Prod"}))
        .await;
    assert_eq!(created["entity"]["path"], json!("/Default/Prod/DB"));
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, node) = server.get("/api/v1/nodes/%2FDefault%2FProd%2FDB").await;
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["id"], json!(id));
    let (status, _) = server.get(&format!("/api/v1/nodes/{id}")).await;
    assert_eq!(status, 200);
    // Rename and move.
    let (status, answer) = server
        .patch(&format!("/api/v1/nodes/{id}"), json!({"name": "Databases"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["entity"]["path"], json!("/Default/Prod/Databases"));
    server.create("nodes", json!({"name": "Staging"})).await;
    let (_, answer) = server
        .patch(
            &format!("/api/v1/nodes/{id}"),
            json!({"parent": "/Default/Staging"}),
        )
        .await;
    assert_eq!(
        answer["entity"]["path"],
        json!("/Default/Staging/Databases")
    );
    // A node with something in it stays; the root always stays.
    let (status, answer) = server.delete("/api/v1/nodes/%2FDefault%2FStaging").await;
    assert_eq!((status, code(&answer)), (409, "node_not_empty"));
    let (status, answer) = server.delete("/api/v1/nodes/%2FDefault").await;
    assert_eq!((status, code(&answer)), (409, "root_node"));
    let (status, answer) = server.delete(&format!("/api/v1/nodes/{id}")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["revision"].as_u64().unwrap() > 0);
    let (status, _) = server.get(&format!("/api/v1/nodes/{id}")).await;
    assert_eq!(status, 404);
    // Moving a node under itself.
    let (status, answer) = server
        .patch(
            "/api/v1/nodes/%2FDefault%2FProd",
            json!({"parent": "/Default/Prod"}),
        )
        .await;
    assert_eq!((status, code(&answer)), (409, "node_cycle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_with_accounts_as_in_the_design() {
    let server = Server::start().await;
    server.create("nodes", json!({"name": "Prod"})).await;
    let created = server
        .create(
            "assets",
            json!({"name":"web-01","address":"10.0.0.5","platform":"linux","protocols":["ssh/22"],
            "nodes":["/Default/Prod"],"accounts":[{"username":"root","privileged":true}]}),
        )
        .await;
    let entity = &created["entity"];
    assert_eq!(entity["protocols"], json!(["ssh/22"]));
    assert_eq!(entity["accounts"][0]["username"], json!("root"));
    assert_eq!(entity["accounts"][0]["privileged"], json!(true));
    let account_id = entity["accounts"][0]["id"].clone();
    // Replace keeps the account's id (matched by username) and adds one.
    let (status, answer) = server
        .put(
            "/api/v1/assets/web-01",
            json!({"name":"web-01","address":"10.0.0.6","protocols":["ssh/22","rdp/3389"],"nodes":["/Default/Prod"],
            "accounts":[{"username":"root","privileged":true},{"username":"deploy"}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["entity"]["accounts"][0]["id"], account_id);
    assert_eq!(answer["entity"]["address"], json!("10.0.0.6"));
    assert_eq!(
        answer["entity"]["platform"],
        json!(""),
        "a replace is whole"
    );
    // A clone gets new account ids.
    let (status, clone) = server
        .post("/api/v1/assets/web-01/clone", json!({"name": "web-02"}))
        .await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["entity"]["name"], json!("web-02"));
    assert_ne!(clone["entity"]["accounts"][0]["id"], account_id);
    assert_eq!(clone["entity"]["accounts"].as_array().unwrap().len(), 2);
    // A bad protocol is refused whole.
    let (status, answer) = server
        .post(
            "/api/v1/assets",
            json!({"name": "bad", "protocols": ["ssh"]}),
        )
        .await;
    assert_eq!((status, code(&answer)), (422, "invalid_body"));
    let (status, answer) = server
        .post(
            "/api/v1/assets",
            json!({"name": "bad", "nodes": ["/Default/Nowhere"]}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (422, "unknown_reference"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_exactly_as_in_the_design() {
    let server = Server::start().await;
    server.create("nodes", json!({"name": "Prod"})).await;
    server.create("groups", json!({"name": "ops"})).await;
    let created = server
        .create(
            "rules",
            json!({"name":"ops-prod","groups":["ops"],"nodes":["/Default/Prod"],"accounts":["@ALL"],
            "protocols":["ssh"],"actions":["connect","upload","download"],
            "expires_at":"2027-01-01T00:00:00Z"}),
        )
        .await;
    let rule = &created["entity"];
    assert!(created["revision"].as_u64().unwrap() > 0);
    assert_eq!(created["id"], rule["id"]);
    assert_eq!(rule["effect"], json!("allow"));
    assert_eq!(rule["accounts"], json!(["@ALL"]));
    assert_eq!(rule["protocols"], json!(["ssh"]));
    assert_eq!(rule["actions"], json!(["connect", "upload", "download"]));
    assert_eq!(rule["expires_at"], json!("2027-01-01T00:00:00Z"));
    assert_eq!(rule["created_by"], json!("token:admin"));
    let (_, ops) = server.get("/api/v1/groups/ops").await;
    assert_eq!(rule["groups"], json!([ops["id"]]), "stored by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_a_temporary_member() {
    let server = Server::start().await;
    for user in ["alice", "bob", "carol"] {
        server.create("users", json!({"username": user})).await;
    }
    server.create("groups", json!({"name": "dba"})).await;
    let created = server
        .create(
            "groups",
            json!({"name":"ops","members":["alice",{"user":"bob","expires_at":"2027-01-01T00:00:00Z"}],"subgroups":["dba"]}),
        )
        .await;
    let members = created["entity"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["expires_at"], Value::Null);
    assert_eq!(members[1]["expires_at"], json!("2027-01-01T00:00:00Z"));
    // Members one at a time.
    let (status, answer) = server
        .post(
            "/api/v1/groups/ops/members",
            json!({"user": "carol", "expires_at": "2028-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["entity"]["members"].as_array().unwrap().len(), 3);
    let (status, answer) = server
        .post("/api/v1/groups/ops/members", json!("carol"))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["entity"]["members"][2]["expires_at"],
        Value::Null,
        "re-adding replaces the expiry"
    );
    let (status, answer) = server.delete("/api/v1/groups/ops/members/bob").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["entity"]["members"].as_array().unwrap().len(), 2);
    let (status, _) = server.delete("/api/v1/groups/ops/members/bob").await;
    assert_eq!(status, 404, "no longer a member");
    let (status, answer) = server
        .post("/api/v1/groups/ops/members", json!("nobody"))
        .await;
    assert_eq!((status, code(&answer)), (422, "unknown_reference"));
    // A member an administrator adds to a synced group is the administrator's, so
    // the next sync does not take it away as its own; the long form may say otherwise.
    server
        .create("groups", json!({"name": "synced", "source": "ldap:corp"}))
        .await;
    server
        .post("/api/v1/groups/synced/members", json!("alice"))
        .await;
    let (status, answer) = server
        .post(
            "/api/v1/groups/synced/members",
            json!({"user": "carol", "source": "ldap:corp"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let sources: Vec<(&str, &str)> = answer["entity"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user"].as_str().unwrap(), m["source"].as_str().unwrap()))
        .collect();
    let alice = user_id(&server, "alice").await;
    let carol = user_id(&server, "carol").await;
    assert_eq!(
        sources,
        [(alice.as_str(), "local"), (carol.as_str(), "ldap:corp")]
    );
    // A cycle is refused.
    let (status, answer) = server
        .patch("/api/v1/groups/dba", json!({"subgroups": ["ops"]}))
        .await;
    assert_eq!((status, code(&answer)), (409, "group_cycle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_crud_round_trip() {
    let server = Server::start().await;
    for i in 0..7 {
        server
            .create(
                "users",
                json!({"username": format!("user{i}"), "active": i % 2 == 0}),
            )
            .await;
    }
    // List: paged, searched, filtered.
    let (status, page) = server.get("/api/v1/users?limit=3&offset=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], json!(7));
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user2", "user3", "user4"]);
    let (_, found) = server.get("/api/v1/users?search=USER6").await;
    assert_eq!(found["total"], json!(1));
    let (_, inactive) = server.get("/api/v1/users?active=false").await;
    assert_eq!(inactive["total"], json!(3));
    // Get by name and by id.
    let (status, user) = server.get("/api/v1/users/user1").await;
    assert_eq!(status, 200);
    let id = user["id"].as_str().unwrap().to_owned();
    let (_, same) = server.get(&format!("/api/v1/users/{id}")).await;
    assert_eq!(same, user);
    // Replace, patch, clone, delete.
    let (status, answer) = server
        .put(
            &format!("/api/v1/users/{id}"),
            json!({"username": "user1", "email": "u1@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["entity"]["active"],
        json!(true),
        "a replace resets what it does not say"
    );
    let revision = answer["revision"].as_u64().unwrap();
    let (status, answer) = server
        .patch(
            "/api/v1/users/user1",
            json!({"name": "User One", "email": null}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["revision"].as_u64().unwrap() > revision);
    assert_eq!(answer["entity"]["name"], json!("User One"));
    assert_eq!(answer["entity"]["email"], Value::Null);
    let (status, clone) = server
        .post("/api/v1/users/user1/clone", json!({"name": "user1-copy"}))
        .await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["entity"]["name"], json!("User One"));
    assert_ne!(clone["id"], json!(id));
    let (status, answer) = server.delete("/api/v1/users/user1").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], json!(id));
    let (status, answer) = server.delete("/api/v1/users/user1").await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
    // Conflicts.
    let (status, answer) = server
        .post("/api/v1/users", json!({"username": "USER2"}))
        .await;
    assert_eq!((status, code(&answer)), (409, "duplicate"));
    let (status, answer) = server
        .post("/api/v1/users/user2/clone", json!({"name": "user3"}))
        .await;
    assert_eq!((status, code(&answer)), (409, "duplicate"));
    let (status, answer) = server.delete("/api/v1/roles/system-admin").await;
    assert_eq!((status, code(&answer)), (409, "builtin_role"));
    // A patch cannot change the id, nor add unknown fields.
    let (status, answer) = server
        .patch(
            "/api/v1/users/user2",
            json!({"id": "00000000-0000-4000-8000-000000000099"}),
        )
        .await;
    assert_eq!((status, code(&answer)), (422, "invalid"), "{answer}");
    let (status, answer) = server
        .patch("/api/v1/users/user2", json!({"colour": "blue"}))
        .await;
    assert_eq!((status, code(&answer)), (422, "invalid_body"), "{answer}");
    let (status, answer) = server
        .patch("/api/v1/users/user2", json!(["not", "an", "object"]))
        .await;
    assert_eq!((status, code(&answer)), (422, "invalid_body"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_lists_gets_and_clones() {
    let server = Server::start().await;
    estate(&server).await;
    server
        .create(
            "roles",
            json!({"name": "viewer", "permissions": ["users.view"]}),
        )
        .await;
    let cases = [
        ("users", "alice"),
        ("groups", "ops"),
        ("nodes", "%2FDefault%2FProd"),
        ("assets", "web-01"),
        ("rules", "ops-prod"),
        ("roles", "viewer"),
        ("tokens", "admin"),
    ];
    for (collection, reference) in cases {
        let (status, page) = server.get(&format!("/api/v1/{collection}")).await;
        assert_eq!(status, 200, "{collection}: {page}");
        assert!(page["total"].as_u64().unwrap() >= 1);
        let (status, entity) = server
            .get(&format!("/api/v1/{collection}/{reference}"))
            .await;
        assert_eq!(status, 200, "{collection}: {entity}");
        let (status, clone) = server
            .post(
                &format!("/api/v1/{collection}/{reference}/clone"),
                json!({"name": "copy"}),
            )
            .await;
        assert_eq!(status, 201, "{collection}: {clone}");
        assert!(clone["revision"].as_u64().is_some());
        if collection == "tokens" {
            assert!(clone["secret"].as_str().unwrap().starts_with("pct_"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_and_cannot_escalate() {
    let server = Server::start().await;
    let (status, created) = server
        .post(
            "/api/v1/tokens",
            json!({"name": "bastion", "roles": ["checker"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(created["entity"].get("secret").is_none());
    let (status, me) = server
        .call(Method::GET, "/api/v1/whoami", Some(&secret), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["token"], json!("bastion"));
    assert_eq!(me["permissions"], json!(["decisions.check"]));
    let (_, listed) = server.get("/api/v1/tokens/bastion").await;
    assert!(
        listed.get("secret").is_none() && listed.get("hash").is_none(),
        "{listed}"
    );
    // A token that may add tokens cannot mint more than it holds.
    server
        .create("roles", json!({"name": "token-minter", "permissions": ["tokens.add", "tokens.change", "decisions.check"]}))
        .await;
    let minter = server.token("minter", &["token-minter"]).await;
    let ask = |roles: Value| json!({"name": "minted", "roles": roles});
    let (status, answer) = server
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&minter),
            Some(&ask(json!(["system-admin"]))),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "forbidden"), "{answer}");
    let (status, answer) = server
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&minter),
            Some(&ask(json!(["checker"]))),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = server
        .call(
            Method::PATCH,
            "/api/v1/tokens/minted",
            Some(&minter),
            Some(&json!({"roles": ["system-admin"]})),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "forbidden"), "{answer}");
    // Revoked tokens stop working at once.
    let (status, _) = server.delete("/api/v1/tokens/bastion").await;
    assert_eq!(status, 200);
    let (status, answer) = server
        .call(Method::GET, "/api/v1/whoami", Some(&secret), None)
        .await;
    assert_eq!((status, code(&answer)), (401, "unauthenticated"));
    // Expired tokens too: the same secret works until its expiry is moved into the
    // past, so the 401 is the expiry's doing.
    let (_, created) = server
        .post(
            "/api/v1/tokens",
            json!({"name": "old", "roles": ["checker"], "expires_at": "2999-01-01T00:00:00Z"}),
        )
        .await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let (status, answer) = server
        .call(Method::GET, "/api/v1/whoami", Some(&old), None)
        .await;
    assert_eq!(status, 200, "before its expiry: {answer}");
    let (status, answer) = server
        .call(
            Method::PATCH,
            "/api/v1/tokens/old",
            Some(&server.admin.clone()),
            Some(&json!({"expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = server
        .call(Method::GET, "/api/v1/whoami", Some(&old), None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_page_the_operation_log() {
    let server = Server::start().await;
    let start = server.engine.snapshot().revision();
    let created = server.create("users", json!({"username": "alice"})).await;
    let revision = created["revision"].as_u64().unwrap();
    server.create("users", json!({"username": "bob"})).await;
    let (status, page) = server.get(&format!("/api/v1/changes?since={start}")).await;
    assert_eq!(status, 200, "{page}");
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["revision"], json!(revision));
    assert_eq!(changes[0]["operation"], json!("create"));
    assert_eq!(changes[0]["entity"], json!("user"));
    assert_eq!(changes[0]["after"]["username"], json!("alice"));
    assert_eq!(changes[0]["actor"], json!("token:admin"));
    assert_eq!(page["next"], changes[1]["revision"]);
    let (_, page) = server
        .get(&format!("/api/v1/changes?since={start}&limit=1"))
        .await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], json!(revision));
    let (_, rest) = server
        .get(&format!("/api/v1/changes?since={revision}"))
        .await;
    assert_eq!(rest["changes"][0]["after"]["username"], json!("bob"));
    // Deleting a user that a group names records both: a page never splits them.
    server
        .create("groups", json!({"name": "ops", "members": ["alice"]}))
        .await;
    let (_, deleted) = server.delete("/api/v1/users/alice").await;
    let deleted = deleted["revision"].as_u64().unwrap();
    let (_, page) = server
        .get(&format!("/api/v1/changes?since={}&limit=1", deleted - 1))
        .await;
    let records = page["changes"].as_array().unwrap();
    assert!(records.len() >= 2, "the whole revision: {page}");
    assert!(records.iter().all(|c| c["revision"] == json!(deleted)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_revision_waits_then_answers_a_clear_error() {
    let server = Server::start().await;
    estate(&server).await;
    let current = server.engine.snapshot().revision();
    let mut body = check_body("alice", "web-01", "root", "connect", "2026-12-01T00:00:00Z");
    body["min_revision"] = json!(current);
    let (status, answer) = server.post("/api/v1/check", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    // Far ahead: waits the bound, then 503.
    body["min_revision"] = json!(current + 1000);
    let started = std::time::Instant::now();
    let (status, answer) = server.post("/api/v1/check", body.clone()).await;
    assert_eq!(
        (status, code(&answer)),
        (503, "revision_not_reached"),
        "{answer}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // Just ahead: a write arriving while it waits releases it. On a server that would
    // wait a minute, so that a write slowed by a busy machine still arrives in time:
    // answered at all before the minute, the waiter was released by the write.
    let server = Server::start_with(portcullis_http::Settings {
        min_revision_wait: std::time::Duration::from_secs(60),
        ..crate::support::test_settings()
    })
    .await;
    estate(&server).await;
    let current = server.engine.snapshot().revision();
    body["min_revision"] = json!(current + 1);
    let waiting = {
        let client = server.client.clone();
        let url = server.url("/api/v1/check");
        let admin = server.admin.clone();
        let body = body.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let released = std::time::Instant::now();
    server.create("users", json!({"username": "late"})).await;
    assert_eq!(waiting.await.unwrap(), 200);
    assert!(
        released.elapsed() < std::time::Duration::from_secs(30),
        "the waiter was released by the write, not by its bound"
    );
    let (status, _) = server
        .get(&format!("/api/v1/users/late?min_revision={}", current + 1))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi() {
    let server = Server::start().await;
    let (status, health) = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], json!("ok"));
    estate(&server).await;
    server
        .post(
            "/api/v1/check",
            check_body("alice", "web-01", "root", "connect", "2026-12-01T00:00:00Z"),
        )
        .await;
    server
        .post(
            "/api/v1/check",
            check_body("alice", "db-01", "root", "connect", "2026-12-01T00:00:00Z"),
        )
        .await;
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "portcullis_http_requests_total{method=\"POST\",route=\"/api/v1/check\",status=\"200\"} 2",
        "portcullis_decisions_total{decision=\"allowed\"} 1",
        "portcullis_decisions_total{decision=\"denied\"} 1",
        "portcullis_http_request_duration_seconds_bucket{route=\"/api/v1/check\",le=\"+Inf\"} 2",
        "portcullis_write_duration_seconds_count ",
        "portcullis_snapshot_revision ",
        "portcullis_store_commits_total ",
        "portcullis_entities{kind=\"users\"} 3",
        "portcullis_entities{kind=\"assets\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let (status, document) = server
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], json!("3.1.0"));
    let routes = portcullis_http::route_list();
    assert!(routes.len() > 60, "{} routes", routes.len());
    for (method, path) in routes {
        let operation = &document["paths"][&path][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        for schema in [&operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]] {
            if let Some(reference) = schema.as_str() {
                let name = reference.rsplit('/').next().unwrap();
                assert!(
                    document["components"]["schemas"][name].is_object(),
                    "{reference} is not defined"
                );
            }
        }
    }
}

/// The id of a user, by username.
async fn user_id(server: &Server, username: &str) -> String {
    let (status, user) = server.get(&format!("/api/v1/users/{username}")).await;
    assert_eq!(status, 200, "{user}");
    user["id"].as_str().unwrap().to_owned()
}
