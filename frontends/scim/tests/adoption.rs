//! Adoption over SCIM (`ScimSettings::adopt`): users and groups an administrator or
//! an import created are taken over by the identity provider's own request sequences
//! (Entra ID's filter-then-PATCH and POST, Okta's import-and-match then PATCH),
//! keeping their ids and every decision; privileged and ambiguous accounts are
//! refused with the reason; without a policy nothing is adopted.

use portcullis_engine::{
    Actions, Actor, AdoptionPolicy, AssetSpec, EntityKind, Evaluator, GroupSpec, MemberSpec, Op,
    Operation, Query, RuleSpec, Source, Spec, Time, UserSpec,
};
use serde_json::{Value, json};

use crate::support::{Server, filter, test_settings};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ADOPTED_FROM: &str = "x-portcullis-adopted-from";

const USERS: [&str; 4] = ["zoe@example.com", "yan", "pat", "ann-admin"];

fn user(username: &str, email: Option<&str>, source: Source, roles: &[&str]) -> Op {
    let mut spec = UserSpec::new(username);
    spec.email = email.map(str::to_owned);
    spec.source = source;
    if !roles.is_empty() {
        spec.system_roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }
    Op::Create(Spec::User(spec))
}

/// An estate as an administrator and an import leave it: users of `local` and
/// `import`, a local group and an imported one, rules on users and on groups.
fn seed(server: &Server) {
    let asset = |name: &str| {
        Op::Create(Spec::Asset(AssetSpec {
            protocols: vec!["ssh/22".parse().unwrap(), "rdp/3389".parse().unwrap()],
            accounts: vec![portcullis_engine::AccountSpec::new("root")],
            ..AssetSpec::new(name)
        }))
    };
    let rule = |name: &str, users: &[&str], groups: &[&str], asset: &str, protocol: &str| {
        Op::Create(Spec::Rule(RuleSpec {
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            assets: vec![asset.to_owned()],
            accounts: vec![portcullis_engine::AccountSelector::All],
            protocols: portcullis_engine::ProtocolFilter::Only(vec![protocol.into()]),
            actions: Actions::CONNECT,
            ..RuleSpec::new(name)
        }))
    };
    server
        .engine
        .write(
            &Actor::system("seed"),
            vec![
                asset("web-01"),
                asset("db-01"),
                user(
                    "zoe@example.com",
                    Some("zoe@example.com"),
                    Source::Local,
                    &[],
                ),
                user("yan", Some("yan@corp.example"), Source::Import, &[]),
                user("pat", None, Source::Local, &[]),
                user("ann-admin", None, Source::Local, &["user", "system-admin"]),
                Op::Create(Spec::Group(GroupSpec {
                    members: vec![MemberSpec::Name("pat".to_owned())],
                    ..GroupSpec::new("ops")
                })),
                Op::Create(Spec::Group(GroupSpec {
                    members: vec![MemberSpec::Name("yan".to_owned())],
                    source: Source::Import,
                    ..GroupSpec::new("dba")
                })),
                rule("zoe-web", &["zoe@example.com"], &[], "web-01", "ssh"),
                rule("ops-web", &[], &["ops"], "web-01", "rdp"),
                rule("dba-db", &[], &["dba"], "db-01", "ssh"),
            ],
        )
        .expect("seed the estate");
}

/// Every decision for the seeded users: (user, asset, protocol, allowed).
fn decisions(server: &Server) -> Vec<(String, String, String, bool)> {
    let snapshot = server.engine.snapshot();
    let mut all = Vec::new();
    for user in USERS {
        for asset in ["web-01", "db-01"] {
            for protocol in ["ssh", "rdp"] {
                let query = Query {
                    user,
                    asset,
                    account: "root",
                    protocol,
                    action: Actions::CONNECT,
                    at: Time::now(),
                };
                let allowed = snapshot.check(&query).expect("known").allowed;
                all.push((
                    user.to_owned(),
                    asset.to_owned(),
                    protocol.to_owned(),
                    allowed,
                ));
            }
        }
    }
    all
}

fn adopting() -> portcullis_scim::ScimSettings {
    portcullis_scim::ScimSettings {
        adopt: AdoptionPolicy::from_sources([Source::Local, Source::Import]),
        ..test_settings()
    }
}

fn source(server: &Server, kind: EntityKind, name: &str) -> String {
    server.entity(kind, name)["source"]
        .as_str()
        .expect("a source")
        .to_owned()
}

fn id(server: &Server, kind: EntityKind, name: &str) -> String {
    server.entity(kind, name)["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

/// The adoption records since `revision`: (kind, name at the time, before, after).
fn adoptions_since(server: &Server, revision: u64) -> Vec<(EntityKind, String, String, String)> {
    server
        .engine
        .changes_since(revision, 1000)
        .expect("the log")
        .into_iter()
        .filter(|change| change.operation == Operation::Adopt)
        .map(|change| {
            let (before, after) = (change.before.unwrap(), change.after.unwrap());
            let name = after
                .get("username")
                .or_else(|| after.get("name"))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned();
            (
                change.entity,
                name,
                before["source"].as_str().unwrap().to_owned(),
                after["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn without_a_policy_scim_neither_sees_nor_takes_existing_accounts() {
    let server = Server::start().await;
    seed(&server);
    let revision = server.engine.snapshot().revision();
    let found = server
        .get(&format!(
            "/Users?{}",
            filter("userName eq \"zoe@example.com\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 0);
    let refused = server
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "zoe@example.com"}),
        )
        .await
        .expect(409);
    assert_eq!(refused.scim_type(), Some("uniqueness"));
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("source `local`"), "{detail}");
    assert!(detail.contains("may not adopt"), "{detail}");
    assert_eq!(server.engine.snapshot().revision(), revision);
    assert_eq!(
        source(&server, EntityKind::User, "zoe@example.com"),
        "local"
    );
}

#[tokio::test]
async fn entra_finds_by_filter_then_patches_or_posts_and_adopts() {
    let server = Server::start_with(adopting()).await;
    seed(&server);
    let before = decisions(&server);
    assert!(before.iter().any(|d| d.3), "the estate grants something");
    let start = server.engine.snapshot().revision();
    let zoe = id(&server, EntityKind::User, "zoe@example.com");

    // GET with a userName filter (in other case): the local user is shown.
    let found = server
        .get(&format!(
            "/Users?{}",
            filter("userName eq \"ZOE@example.com\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.resources()[0]["id"], zoe.as_str());
    assert_eq!(
        source(&server, EntityKind::User, "zoe@example.com"),
        "local"
    );

    // ... then PATCH: adopted in the same write.
    let patched = server
        .patch_ops(
            &format!("/Users/{zoe}"),
            json!([{"op": "Replace", "path": "active", "value": true}]),
        )
        .await
        .expect(200);
    assert_eq!(patched.header(ADOPTED_FROM), Some("local"));
    assert_eq!(patched.body["id"], zoe.as_str());
    assert_eq!(source(&server, EntityKind::User, &zoe), "scim");
    // A second write is an ordinary one.
    let again = server
        .patch_ops(
            &format!("/Users/{zoe}"),
            json!([{"op": "Replace", "path": "active", "value": true}]),
        )
        .await
        .expect(200);
    assert_eq!(again.header(ADOPTED_FROM), None);

    // Entra's other road: POST of a user its filter did not find (here, by email).
    let yan = id(&server, EntityKind::User, "yan");
    let created = server
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "userName": "yan",
                "emails": [{"primary": true, "type": "work", "value": "yan@corp.example"}],
                "active": true,
            }),
        )
        .await
        .expect(201);
    assert_eq!(created.header(ADOPTED_FROM), Some("import"));
    assert_eq!(created.body["id"], yan.as_str());
    assert_eq!(source(&server, EntityKind::User, "yan"), "scim");

    // Groups: GET by displayName, then PATCH; the local members stay, as local.
    let ops = id(&server, EntityKind::Group, "ops");
    let found = server
        .get(&format!("/Groups?{}", filter("displayName eq \"ops\"")))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.resources()[0]["id"], ops.as_str());
    let patched = server
        .patch_ops(
            &format!("/Groups/{ops}"),
            json!([{"op": "Replace", "path": "displayName", "value": "ops"}]),
        )
        .await
        .expect(200);
    assert_eq!(patched.header(ADOPTED_FROM), Some("local"));
    let group = server.entity(EntityKind::Group, "ops");
    assert_eq!(group["source"], "scim");
    assert_eq!(group["members"].as_array().unwrap().len(), 1);
    assert_eq!(group["members"][0]["source"], "local");
    // ... and a POST of the imported group adopts it.
    let dba = id(&server, EntityKind::Group, "dba");
    let created = server
        .post("/Groups", json!({"schemas": [GROUP], "displayName": "dba"}))
        .await
        .expect(201);
    assert_eq!(created.header(ADOPTED_FROM), Some("import"));
    assert_eq!(created.body["id"], dba.as_str());

    assert_eq!(decisions(&server), before);
    assert_eq!(
        adoptions_since(&server, start),
        [
            (
                EntityKind::User,
                "zoe@example.com".to_owned(),
                "local".to_owned(),
                "scim".to_owned()
            ),
            (
                EntityKind::User,
                "yan".to_owned(),
                "import".to_owned(),
                "scim".to_owned()
            ),
            (
                EntityKind::Group,
                "ops".to_owned(),
                "local".to_owned(),
                "scim".to_owned()
            ),
            (
                EntityKind::Group,
                "dba".to_owned(),
                "import".to_owned(),
                "scim".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn okta_imports_matches_then_patches_and_adopts() {
    let server = Server::start_with(adopting()).await;
    seed(&server);
    let before = decisions(&server);
    // Import: every user SCIM may take over, the administrator left out.
    let listed = server
        .get("/Users?startIndex=1&count=100")
        .await
        .expect(200);
    let mut names: Vec<&str> = listed
        .resources()
        .iter()
        .map(|user| user["userName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["pat", "yan", "zoe@example.com"]);
    let groups = server
        .get("/Groups?startIndex=1&count=100")
        .await
        .expect(200);
    assert_eq!(groups.body["totalResults"], 2);
    // Match (Okta compares userName in its own store), then PATCH each.
    for resource in listed.resources() {
        let id = resource["id"].as_str().unwrap();
        let reply = server
            .patch_ops(
                &format!("/Users/{id}"),
                json!([{"op": "replace", "value": {"active": true}}]),
            )
            .await
            .expect(200);
        assert!(reply.header(ADOPTED_FROM).is_some());
    }
    for resource in groups.resources() {
        let id = resource["id"].as_str().unwrap();
        let name = resource["displayName"].as_str().unwrap();
        server
            .patch_ops(
                &format!("/Groups/{id}"),
                json!([{"op": "replace", "value": {"id": id, "displayName": name}}]),
            )
            .await
            .expect(200);
    }
    for name in ["pat", "yan", "zoe@example.com"] {
        assert_eq!(source(&server, EntityKind::User, name), "scim");
    }
    assert_eq!(source(&server, EntityKind::User, "ann-admin"), "local");
    assert_eq!(source(&server, EntityKind::Group, "dba"), "scim");
    assert_eq!(decisions(&server), before);
}

#[tokio::test]
async fn a_privileged_account_is_refused_with_the_reason_unless_named() {
    let server = Server::start_with(adopting()).await;
    seed(&server);
    let revision = server.engine.snapshot().revision();
    let found = server
        .get(&format!("/Users?{}", filter("userName eq \"ann-admin\"")))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 0);
    let admin = id(&server, EntityKind::User, "ann-admin");
    server.get(&format!("/Users/{admin}")).await.expect(404);
    let refused = server
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "ann-admin", "password": "Correct-Horse-9"}),
        )
        .await
        .expect(409);
    assert_eq!(refused.scim_type(), Some("uniqueness"));
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("privileged") && detail.contains("system-admin"),
        "{detail}"
    );
    assert_eq!(server.engine.snapshot().revision(), revision);

    let named = Server::start_with(portcullis_scim::ScimSettings {
        adopt: AdoptionPolicy {
            sources: vec![Source::Local],
            privileged: vec!["ann-admin".to_owned()],
        },
        ..test_settings()
    })
    .await;
    seed(&named);
    let created = named
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "ann-admin"}),
        )
        .await
        .expect(201);
    assert_eq!(created.header(ADOPTED_FROM), Some("local"));
    // Its system roles are not SCIM's: they stay.
    assert_eq!(
        named.entity(EntityKind::User, "ann-admin")["system_roles"],
        json!(["user", "system-admin"])
    );
}

#[tokio::test]
async fn an_entry_matching_two_accounts_is_refused_and_changes_nothing() {
    let server = Server::start_with(adopting()).await;
    seed(&server);
    let revision = server.engine.snapshot().revision();
    // Its userName is pat's, its email zoe's.
    let refused = server
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "userName": "pat",
                "emails": [{"primary": true, "value": "zoe@example.com"}],
            }),
        )
        .await
        .expect(409);
    assert_eq!(refused.scim_type(), Some("uniqueness"));
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("matches two users") && detail.contains("`pat`"),
        "{detail}"
    );
    assert_eq!(server.engine.snapshot().revision(), revision);
    assert_eq!(source(&server, EntityKind::User, "pat"), "local");
    assert_eq!(
        source(&server, EntityKind::User, "zoe@example.com"),
        "local"
    );
}

#[tokio::test]
async fn put_and_delete_adopt_too_and_an_if_match_from_the_search_holds() {
    let server = Server::start_with(adopting()).await;
    seed(&server);
    let pat = id(&server, EntityKind::User, "pat");
    let shown = server.get(&format!("/Users/{pat}")).await.expect(200);
    let version = shown.header("etag").unwrap().to_owned();
    let replaced = server
        .send_with(
            reqwest::Method::PUT,
            &format!("/Users/{pat}"),
            Some(&json!({"schemas": [USER], "userName": "pat", "displayName": "Pat Doe"})),
            &[("if-match", &version)],
        )
        .await
        .expect(200);
    assert_eq!(replaced.header(ADOPTED_FROM), Some("local"));
    assert_eq!(server.entity(EntityKind::User, &pat)["name"], "Pat Doe");
    assert_eq!(source(&server, EntityKind::User, &pat), "scim");

    let yan = id(&server, EntityKind::User, "yan");
    let start = server.engine.snapshot().revision();
    let deleted = server.delete(&format!("/Users/{yan}")).await.expect(204);
    assert_eq!(deleted.header(ADOPTED_FROM), Some("import"));
    assert!(
        server
            .engine
            .snapshot()
            .entity_json(EntityKind::User, &yan)
            .is_err()
    );
    // Recorded as what it was: adopted, then deleted.
    let operations: Vec<Operation> = server
        .engine
        .changes_since(start, 100)
        .unwrap()
        .into_iter()
        .filter(|c| c.entity == EntityKind::User)
        .map(|c| c.operation)
        .collect();
    assert_eq!(operations, [Operation::Adopt, Operation::Delete]);
}
