//! The protocol beyond what scim2-tester covers: filters, sorting, paging, ETags,
//! Bulk, errors, limits and authentication, over a real socket.

use portcullis_engine::Actor;
use portcullis_engine::{EntityKind, Op, Spec};
use portcullis_scim::ScimSettings;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, filter, test_settings};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

async fn people(server: &Server) {
    for (user_name, display, email, active, external) in [
        (
            "bjensen",
            "Barbara Jensen",
            "bjensen@example.com",
            true,
            "E1",
        ),
        ("jsmith", "John Smith", "john@work.example.org", true, "e1"),
        ("adoe", "Alice Doe", "alice@example.com", false, "E3"),
        ("zed", "Zed Zulu", "zed@x.test", true, "E4"),
    ] {
        server
            .post(
                "/Users",
                json!({
                    "schemas": [USER],
                    "userName": user_name,
                    "displayName": display,
                    "emails": [{"value": email, "type": "work"}],
                    "active": active,
                    "externalId": external,
                }),
            )
            .await
            .expect(201);
    }
}

async fn user_names(server: &Server, query: &str) -> Vec<String> {
    let reply = server.get(&format!("/Users?{query}")).await.expect(200);
    reply
        .resources()
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_owned())
        .collect()
}

async fn matching(server: &Server, text: &str) -> Vec<String> {
    user_names(server, &filter(text)).await
}

#[tokio::test]
async fn filters_follow_the_grammar() {
    let server = Server::start().await;
    people(&server).await;
    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "BJENSEN""#, &["bjensen"]),
        (r#"USERNAME Eq "bjensen""#, &["bjensen"]),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "j""#,
            &["jsmith"],
        ),
        (r#"displayName co "o""#, &["jsmith", "adoe"]),
        (r#"displayName ew "SEN""#, &["bjensen"]),
        (r#"userName gt "jsmith""#, &["zed"]),
        (r#"userName ge "jsmith""#, &["jsmith", "zed"]),
        (r#"userName lt "b""#, &["adoe"]),
        (r#"userName le "bjensen""#, &["bjensen", "adoe"]),
        (r#"userName ne "zed""#, &["bjensen", "jsmith", "adoe"]),
        ("active eq false", &["adoe"]),
        ("title pr", &[]),
        ("emails pr", &["bjensen", "jsmith", "adoe", "zed"]),
        (r#"emails co "example.com""#, &["bjensen", "adoe"]),
        (
            r#"emails[type eq "work" and value co "@example"]"#,
            &["bjensen", "adoe"],
        ),
        (r#"emails[type eq "home"]"#, &[]),
        // caseExact: externalId is, userName is not.
        (r#"externalId eq "e1""#, &["jsmith"]),
        (r#"externalId eq "E1""#, &["bjensen"]),
        // Precedence: and before or; not; grouping.
        (
            r#"userName eq "zed" or userName sw "j" and active eq true"#,
            &["jsmith", "zed"],
        ),
        (
            r#"(userName eq "zed" or userName sw "a") and active eq true"#,
            &["zed"],
        ),
        (
            r#"not (active eq true) or userName eq "zed""#,
            &["adoe", "zed"],
        ),
        (
            r#"not (userName eq "zed" or userName eq "adoe")"#,
            &["bjensen", "jsmith"],
        ),
        (
            r#"meta.created gt "2000-01-01T00:00:00Z" and userName eq "zed""#,
            &["zed"],
        ),
        (
            r#"meta.resourceType eq "User" and userName sw "z""#,
            &["zed"],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(matching(&server, text).await, *expected, "{text}");
    }
}

#[tokio::test]
async fn bad_filters_are_invalid_filter() {
    let server = Server::start().await;
    for text in [
        "userName",
        "userName eq",
        r#"userName zz "x""#,
        r#"bogus eq "x""#,
        "active gt true",
        r#"(userName eq "x""#,
        r#"emails[type eq "work""#,
        r#"name eq "x""#,
    ] {
        let reply = server
            .get(&format!("/Users?{}", filter(text)))
            .await
            .expect(400);
        assert_eq!(reply.scim_type(), Some("invalidFilter"), "{text}");
        assert_eq!(reply.body["status"], "400");
    }
    let deep = format!("{}userName pr{}", "(".repeat(40), ")".repeat(40));
    let reply = server
        .get(&format!("/Users?{}", filter(&deep)))
        .await
        .expect(400);
    assert_eq!(reply.scim_type(), Some("invalidFilter"));
    let long = format!("userName eq \"{}\"", "x".repeat(5000));
    let reply = server
        .get(&format!("/Users?{}", filter(&long)))
        .await
        .expect(400);
    assert_eq!(reply.scim_type(), Some("invalidFilter"));
}

#[tokio::test]
async fn sorting_and_paging() {
    let server = Server::start().await;
    people(&server).await;
    assert_eq!(
        user_names(&server, "sortBy=userName").await,
        ["adoe", "bjensen", "jsmith", "zed"]
    );
    assert_eq!(
        user_names(&server, "sortBy=displayName&sortOrder=descending").await,
        ["zed", "jsmith", "bjensen", "adoe"]
    );
    assert_eq!(
        user_names(&server, "sortBy=emails&sortOrder=ascending").await,
        ["adoe", "bjensen", "jsmith", "zed"]
    );
    // Without sortBy, creation order; pages never overlap.
    assert_eq!(
        user_names(&server, "startIndex=2&count=2").await,
        ["jsmith", "adoe"]
    );
    assert_eq!(
        user_names(&server, "startIndex=0&count=1").await,
        ["bjensen"]
    );
    let counted = server.get("/Users?count=0").await.expect(200);
    assert_eq!(counted.body["totalResults"], 4);
    assert_eq!(counted.resources().len(), 0);
    assert_eq!(user_names(&server, "count=-5").await, Vec::<String>::new());
    assert_eq!(
        user_names(&server, "startIndex=99").await,
        Vec::<String>::new()
    );
    let reply = server.get("/Users?count=many").await.expect(400);
    assert_eq!(reply.scim_type(), Some("invalidValue"));
    let reply = server
        .get("/Users?sortOrder=sideways&sortBy=userName")
        .await
        .expect(400);
    assert_eq!(reply.scim_type(), Some("invalidValue"));
    // Missing values sort last ascending, first descending.
    server.user("nobody").await;
    assert_eq!(
        user_names(&server, "sortBy=displayName")
            .await
            .last()
            .map(String::as_str),
        Some("nobody")
    );
    assert_eq!(
        user_names(&server, "sortBy=displayName&sortOrder=descending").await[0],
        "nobody"
    );
}

#[tokio::test]
async fn counts_above_max_results_are_lowered() {
    let server = Server::start_with(ScimSettings {
        max_results: 3,
        ..test_settings()
    })
    .await;
    people(&server).await;
    let reply = server.get("/Users?count=100").await.expect(200);
    assert_eq!(reply.body["totalResults"], 4);
    assert_eq!(reply.body["itemsPerPage"], 3);
}

#[tokio::test]
async fn sorting_too_many_is_too_many() {
    let server = Server::start_with(ScimSettings {
        max_sort: 3,
        ..test_settings()
    })
    .await;
    people(&server).await;
    let reply = server.get("/Users?sortBy=userName").await.expect(400);
    assert_eq!(reply.scim_type(), Some("tooMany"));
    // Narrowed by a filter, it is fine.
    assert_eq!(
        user_names(
            &server,
            &format!("sortBy=userName&{}", filter("active eq true"))
        )
        .await,
        ["bjensen", "jsmith", "zed"]
    );
}

#[tokio::test]
async fn attributes_and_excluded_attributes() {
    let server = Server::start().await;
    people(&server).await;
    let only = server
        .get(&format!(
            "/Users?attributes=userName,emails.value&{}",
            filter("userName eq \"zed\"")
        ))
        .await
        .expect(200);
    let zed = &only.resources()[0];
    let mut keys: Vec<&str> = zed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["emails", "id", "schemas", "userName"]);
    assert_eq!(zed["emails"], json!([{"value": "zed@x.test"}]));
    let without = server
        .get(&format!(
            "/Users?excludedAttributes=emails,meta&{}",
            filter("userName eq \"zed\"")
        ))
        .await
        .expect(200);
    let zed = &without.resources()[0];
    assert!(zed.get("emails").is_none() && zed.get("meta").is_none());
    assert!(zed.get("displayName").is_some());
    let id = zed["id"].as_str().unwrap();
    let one = server
        .get(&format!("/Users/{id}?attributes=displayName"))
        .await
        .expect(200);
    assert_eq!(one.body["displayName"], "Zed Zulu");
    assert!(one.body.get("userName").is_none());
}

#[tokio::test]
async fn searches_by_post() {
    let server = Server::start().await;
    people(&server).await;
    server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "zeta"}),
        )
        .await
        .expect(201);
    let search = |filter: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": filter,
            "attributes": ["userName", "displayName"],
            "sortBy": "userName",
            "startIndex": 1,
            "count": 10,
        })
    };
    let users = server
        .post(
            "/Users/.search",
            search(r#"userName sw "j" or userName sw "z""#),
        )
        .await
        .expect(200);
    assert_eq!(users.body["totalResults"], 2);
    assert_eq!(users.resources()[0]["userName"], "jsmith");
    assert!(users.resources()[0].get("emails").is_none());
    // At the root, both kinds; a filter need only make sense for one of them.
    let both = server
        .post("/.search", search(r#"displayName sw "z""#))
        .await
        .expect(200);
    assert_eq!(both.body["totalResults"], 2);
    let users_only = server
        .post("/.search", search(r#"userName eq "zed""#))
        .await
        .expect(200);
    assert_eq!(users_only.body["totalResults"], 1);
    let bad = server
        .post("/Users/.search", json!({"filter": 3}))
        .await
        .expect(400);
    assert_eq!(bad.scim_type(), Some("invalidSyntax"));
}

/// Regression: a misspelt member (`filtr`) or a wrong `schemas` used to be ignored,
/// so the search answered every resource.
#[tokio::test]
async fn search_requests_with_unknown_members_or_wrong_schemas_are_refused() {
    let server = Server::start().await;
    for body in [
        json!({"filtr": "userName eq \"nobody\""}),
        json!({"schemas": 5, "filter": "userName eq \"nobody\""}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}),
    ] {
        let bad = server.post("/Users/.search", body).await.expect(400);
        assert_eq!(bad.scim_type(), Some("invalidSyntax"));
        let bad = server
            .post("/.search", json!({"FILTR": "x"}))
            .await
            .expect(400);
        assert_eq!(bad.scim_type(), Some("invalidSyntax"));
    }
    // Member names are matched ignoring case, and `schemas` may be left out.
    server
        .post(
            "/Users/.search",
            json!({"FILTER": "userName eq \"nobody\"", "Count": 5}),
        )
        .await
        .expect(200);
}

#[tokio::test]
async fn etags_guard_writes() {
    let server = Server::start().await;
    let created = server
        .post("/Users", json!({"schemas": [USER], "userName": "etag"}))
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let first = created.header("etag").unwrap().to_owned();
    assert!(first.starts_with("W/\""));
    let path = format!("/Users/{id}");

    let same = server
        .send_with(Method::GET, &path, None, &[("if-none-match", &first)])
        .await;
    assert_eq!(same.status.as_u16(), 304);

    let ops = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "E. Tag"}]});
    let changed = server
        .send_with(Method::PATCH, &path, Some(&ops), &[("if-match", &first)])
        .await
        .expect(200);
    let second = changed.header("etag").unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(changed.body["meta"]["version"], second.as_str());

    // The old version no longer matches: PATCH, PUT and DELETE are refused.
    let stale = server
        .send_with(Method::PATCH, &path, Some(&ops), &[("if-match", &first)])
        .await
        .expect(412);
    assert_eq!(stale.header("content-type"), Some("application/scim+json"));
    let body = json!({"schemas": [USER], "userName": "etag"});
    server
        .send_with(Method::PUT, &path, Some(&body), &[("if-match", &first)])
        .await
        .expect(412);
    server
        .send_with(Method::DELETE, &path, None, &[("if-match", &first)])
        .await
        .expect(412);
    assert_eq!(server.entity(EntityKind::User, &id)["name"], "E. Tag");

    server
        .send_with(Method::PUT, &path, Some(&body), &[("if-match", "*")])
        .await
        .expect(200);
    let current = server.get(&path).await.expect(200);
    let version = current.header("etag").unwrap().to_owned();
    server
        .send_with(Method::DELETE, &path, None, &[("if-match", &version)])
        .await
        .expect(204);
}

#[tokio::test]
async fn nested_groups_are_members_of_type_group() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let inner = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "inner",
            "members": [{"value": alice, "type": "User"}]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outer = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "outer",
            "members": [{"value": inner, "type": "Group"}]}),
        )
        .await
        .expect(201);
    let outer_id = outer.body["id"].as_str().unwrap().to_owned();
    assert_eq!(outer.body["members"][0]["type"], "Group");
    assert_eq!(
        outer.body["members"][0]["$ref"],
        format!("{}/Groups/{inner}", server.base).as_str()
    );
    let stored = server.entity(EntityKind::Group, &outer_id);
    assert_eq!(stored["subgroups"][0]["group"], inner.as_str());
    assert_eq!(stored["subgroups"][0]["source"], "scim");
    // A member without a type that names a group is a group.
    let third = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "third", "members": [{"value": outer_id}]}),
        )
        .await
        .expect(201);
    assert_eq!(third.body["members"][0]["type"], "Group");
    // A cycle is refused.
    let cycle = server
        .patch_ops(
            &format!("/Groups/{inner}"),
            json!([{"op": "add", "path": "members", "value": [{"value": outer_id, "type": "Group"}]}]),
        )
        .await
        .expect(400);
    assert_eq!(cycle.scim_type(), Some("invalidValue"));
    let filtered = server
        .get(&format!(
            "/Groups?{}",
            filter(&format!(
                "members[type eq \"Group\" and value eq \"{inner}\"]"
            ))
        ))
        .await
        .expect(200);
    assert_eq!(filtered.body["totalResults"], 1);
}

#[tokio::test]
async fn a_users_groups_follow_memberships_and_are_read_only() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let inner = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "inner",
            "members": [{"value": alice, "type": "User"}]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outer = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "outer",
            "members": [{"value": inner, "type": "Group"}]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A group another writer owns is no SCIM resource: not listed among her groups.
    let engine = server.engine.clone();
    let alice_id = alice.clone();
    tokio::task::spawn_blocking(move || {
        engine.write(
            &Actor::system("admin"),
            vec![Op::Create(
                Spec::from_json(
                    EntityKind::Group,
                    json!({"name": "local-admins", "members": [alice_id]}),
                )
                .unwrap(),
            )],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let read = server.get(&format!("/Users/{alice}")).await.expect(200);
    let version = read.header("etag").unwrap().to_owned();
    let groups = read.body["groups"].as_array().expect("groups").clone();
    let shown: Vec<(&str, &str, &str)> = groups
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap(),
                g["display"].as_str().unwrap(),
                g["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (inner.as_str(), "inner", "direct"),
            (outer.as_str(), "outer", "indirect")
        ]
    );
    assert_eq!(
        groups[1]["$ref"],
        format!("{}/Groups/{outer}", server.base).as_str()
    );
    // Filterable like any attribute.
    let found = server
        .get(&format!("/Users?{}", filter("groups.display eq \"OUTER\"")))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.resources()[0]["id"], alice.as_str());
    // Read-only: a PATCH of it is a mutability error, a PUT carrying other groups
    // changes no membership.
    let refused = server
        .patch_ops(
            &format!("/Users/{alice}"),
            json!([{"op": "add", "path": "groups", "value": [{"value": outer}]}]),
        )
        .await
        .expect(400);
    assert_eq!(refused.scim_type(), Some("mutability"));
    let mut replaced = read.body.clone();
    replaced["groups"] = json!([]);
    replaced["displayName"] = json!("Alice");
    let put = server
        .put(&format!("/Users/{alice}"), replaced)
        .await
        .expect(200);
    assert_eq!(put.body["groups"].as_array().map(Vec::len), Some(2));
    // Leaving the group empties the list, and the user's version changes with it.
    let before = server.get(&format!("/Users/{alice}")).await.expect(200);
    server
        .patch_ops(
            &format!("/Groups/{inner}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
        )
        .await
        .expect(200);
    let after = server.get(&format!("/Users/{alice}")).await.expect(200);
    assert!(after.body.get("groups").is_none(), "{}", after.body);
    assert_ne!(after.header("etag"), before.header("etag"));
    assert_ne!(before.header("etag"), Some(version.as_str()));
}

#[tokio::test]
async fn scim_sees_only_its_own_entities() {
    let server = Server::start().await;
    let engine = server.engine.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        engine.write(
            &Actor::system("admin"),
            vec![
                Op::Create(
                    Spec::from_json(EntityKind::User, json!({"username": "local-admin"})).unwrap(),
                ),
                Op::Create(
                    Spec::from_json(
                        EntityKind::Group,
                        json!({"name": "admins", "members": ["local-admin"]}),
                    )
                    .unwrap(),
                ),
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let local = outcome.ids[0].to_string();
    let admins = outcome.ids[1].to_string();
    server.get(&format!("/Users/{local}")).await.expect(404);
    assert_eq!(
        server.get("/Users").await.expect(200).body["totalResults"],
        0
    );
    server
        .patch_ops(
            &format!("/Users/{local}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await
        .expect(404);
    server.delete(&format!("/Users/{local}")).await.expect(404);
    assert_eq!(server.entity(EntityKind::User, &local)["active"], true);
    // Taking a local user's name is a conflict, not a takeover.
    let taken = server
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "LOCAL-ADMIN"}),
        )
        .await
        .expect(409);
    assert_eq!(taken.scim_type(), Some("uniqueness"));
    // A local user cannot be made a member, nor a local group touched.
    let scim_group = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "scim-group"}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = server
        .patch_ops(
            &format!("/Groups/{scim_group}"),
            json!([{"op": "add", "path": "members", "value": [{"value": local}]}]),
        )
        .await
        .expect(400);
    assert_eq!(refused.scim_type(), Some("invalidValue"));
    server.get(&format!("/Groups/{admins}")).await.expect(404);
}

#[tokio::test]
async fn memberships_written_elsewhere_survive_scim() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let group = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "eng", "members": [{"value": alice}]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An administrator adds bob, temporarily, by hand.
    let engine = server.engine.clone();
    let group_id = group.clone();
    tokio::task::spawn_blocking(move || {
        engine.write(
            &Actor::system("admin"),
            vec![Op::Modify {
                kind: EntityKind::Group,
                target: group_id,
                edit: Box::new(|spec| {
                    if let Spec::Group(group) = spec {
                        group.members.push(portcullis_engine::MemberSpec::Detailed {
                            user: "bob".to_owned(),
                            expires_at: Some("2099-01-01T00:00:00Z".parse().unwrap()),
                            source: Some(portcullis_engine::Source::Local),
                        });
                    }
                    Ok(())
                }),
            }],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let seen = server.get(&format!("/Groups/{group}")).await.expect(200);
    assert_eq!(
        seen.body["members"].as_array().unwrap().len(),
        1,
        "SCIM sees its own"
    );
    // Replacing SCIM's members leaves the administrator's.
    server
        .put(
            &format!("/Groups/{group}"),
            json!({"schemas": [GROUP], "displayName": "eng", "members": []}),
        )
        .await
        .expect(200);
    let stored = server.entity(EntityKind::Group, &group);
    let members = stored["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["user"], bob.as_str());
    assert_eq!(members[0]["source"], "local");
    // When SCIM adds bob itself, the membership becomes SCIM's and keeps its expiry.
    server
        .patch_ops(
            &format!("/Groups/{group}"),
            json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
        )
        .await
        .expect(200);
    let stored = server.entity(EntityKind::Group, &group);
    assert_eq!(stored["members"][0]["source"], "scim");
    assert_eq!(stored["members"][0]["expires_at"], "2099-01-01T00:00:00Z");
}

#[tokio::test]
async fn write_errors_carry_scim_types() {
    let server = Server::start().await;
    let id = server.user("alice").await;
    let path = format!("/Users/{id}");
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (
            json!([{"op": "replace", "path": "id", "value": "x"}]),
            400,
            Some("mutability"),
        ),
        (
            json!([{"op": "replace", "path": "meta.created", "value": "x"}]),
            400,
            Some("mutability"),
        ),
        (json!([{"op": "remove"}]), 400, Some("noTarget")),
        (
            json!([{"op": "replace", "path": "emails[value co \"none\"].type", "value": "work"}]),
            400,
            Some("noTarget"),
        ),
        (
            json!([{"op": "add", "path": "emails[type eq", "value": "x"}]),
            400,
            Some("invalidPath"),
        ),
        (
            json!([{"op": "add", "path": "bogus", "value": "x"}]),
            400,
            Some("invalidPath"),
        ),
        (
            json!([{"op": "add", "path": "emails[bogus eq \"x\"].value", "value": "x"}]),
            400,
            Some("invalidFilter"),
        ),
        (
            json!([{"op": "jump", "path": "active", "value": true}]),
            400,
            Some("invalidSyntax"),
        ),
        (
            json!([{"op": "replace", "path": "active", "value": "yes"}]),
            400,
            Some("invalidValue"),
        ),
        (
            json!([{"op": "remove", "path": "userName"}]),
            400,
            Some("invalidValue"),
        ),
        (
            json!([{"op": "remove", "path": "active"}]),
            400,
            Some("invalidValue"),
        ),
        (
            json!([{"op": "replace", "path": "emails", "value": [{"value": "not-an-address"}]}]),
            400,
            Some("invalidValue"),
        ),
    ];
    for (operations, status, scim_type) in cases {
        let reply = server.patch_ops(&path, operations.clone()).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{operations}: {}",
            reply.body
        );
        assert_eq!(reply.scim_type(), scim_type, "{operations}");
        assert_eq!(
            reply.body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
    }
    // Nothing of the refused operations was written.
    assert_eq!(server.entity(EntityKind::User, &id)["username"], "alice");

    // Operations apply in order, all or nothing.
    server
        .patch_ops(
            &path,
            json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "id", "value": "x"},
            ]),
        )
        .await
        .expect(400);
    assert_eq!(server.entity(EntityKind::User, &id)["name"], "alice");

    let reply = server
        .send_with(
            Method::POST,
            "/Users",
            None,
            &[("content-type", "application/scim+json")],
        )
        .await
        .expect(400);
    assert_eq!(reply.scim_type(), Some("invalidSyntax"));
    let malformed = server
        .client
        .post(server.url("/Users"))
        .bearer_auth(&server.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["scimType"], "invalidSyntax");
    let missing = server
        .post("/Users", json!({"schemas": [USER]}))
        .await
        .expect(400);
    assert_eq!(missing.scim_type(), Some("invalidValue"));
    let wrong_type = server
        .post("/Users", json!({"userName": ["a"]}))
        .await
        .expect(400);
    assert_eq!(wrong_type.scim_type(), Some("invalidValue"));
    server
        .post(
            "/Users",
            json!({"userName": "bob", "emails": [{"value": "b@x.test"}]}),
        )
        .await
        .expect(201);
    let email = server
        .post(
            "/Users",
            json!({"userName": "carol", "emails": [{"value": "B@X.test"}]}),
        )
        .await
        .expect(409);
    assert_eq!(email.scim_type(), Some("uniqueness"));
    server.get("/Users/not-an-id").await.expect(404);
    server
        .get("/Users/00000000-0000-0000-0000-000000000000")
        .await
        .expect(404);
    let unknown = server.get("/Widgets").await.expect(404);
    assert_eq!(unknown.body["status"], "404");
    server
        .send_with(Method::PUT, "/Users", None, &[])
        .await
        .expect(405);
    server.get("/Me").await.expect(501);
    let big = json!({"userName": "x".repeat(70 * 1024)});
    server.post("/Users", big).await.expect(413);
}

#[tokio::test]
async fn tokens_need_the_scim_permission() {
    let server = Server::start().await;
    let plain = server
        .client
        .get(server.url("/Users"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 401);
    assert!(plain.headers().get("www-authenticate").is_some());
    assert_eq!(
        plain.headers().get("content-type").unwrap(),
        "application/scim+json"
    );
    let wrong = server
        .client
        .get(server.url("/Users"))
        .bearer_auth("pc_definitely-not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let checker = server.new_token("gateway", &["checker"]).await;
    let forbidden = server
        .client
        .get(server.url("/ServiceProviderConfig"))
        .bearer_auth(&checker)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    let body: Value = forbidden.json().await.unwrap();
    assert_eq!(body["status"], "403");
    let admin = server.new_token("root", &["system-admin"]).await;
    let allowed = server
        .client
        .get(server.url("/Users"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
}

#[tokio::test]
async fn discovery_advertises_what_is_kept() {
    let server = Server::start().await;
    let config = server.get("/ServiceProviderConfig").await.expect(200);
    assert_eq!(config.body["bulk"]["maxOperations"], 20);
    assert_eq!(config.body["bulk"]["maxPayloadSize"], 64 * 1024);
    assert_eq!(config.body["filter"]["maxResults"], 50);
    for feature in ["patch", "bulk", "filter", "sort", "etag", "changePassword"] {
        assert_eq!(config.body[feature]["supported"], true, "{feature}");
    }
    let schemas = server.get("/Schemas").await.expect(200);
    let user = schemas
        .resources()
        .iter()
        .find(|s| s["id"] == USER)
        .unwrap();
    let names: Vec<&str> = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for kept in [
        "userName",
        "displayName",
        "name",
        "title",
        "addresses",
        "emails",
    ] {
        assert!(names.contains(&kept), "{kept}: {names:?}");
    }
    let groups = user["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "groups")
        .expect("a user's groups are advertised");
    assert_eq!(groups["mutability"], "readOnly");
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    assert!(schemas.resources().iter().any(|s| s["id"] == enterprise));
    server
        .get(&format!("/Schemas/{enterprise}"))
        .await
        .expect(200);
    let types = server.get("/ResourceTypes").await.expect(200);
    assert_eq!(types.body["totalResults"], 2);
    let user_type = server.get("/ResourceTypes/User").await.expect(200);
    assert_eq!(user_type.body["schemaExtensions"][0]["schema"], enterprise);
    server.get("/ResourceTypes/Group").await.expect(200);
    server.get(&format!("/Schemas/{GROUP}")).await.expect(200);
    server.get("/Schemas/urn:nope").await.expect(404);
}

fn bulk(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations})
}

#[tokio::test]
async fn bulk_resolves_bulk_ids_in_any_order() {
    let server = Server::start().await;
    let reply = server
        .post(
            "/Bulk",
            bulk(json!([
                // Refers forward to two users created later in the request.
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {
                    "schemas": [GROUP], "displayName": "bulk-group",
                    "members": [{"type": "User", "value": "bulkId:u1"}, {"type": "User", "value": "bulkId:u2"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"schemas": [USER], "userName": "bulk-1"}},
                {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"schemas": [USER], "userName": "bulk-2"}},
                {"method": "PATCH", "path": "/Users/bulkId:u2", "data": {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}]}},
                {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"schemas": [USER], "userName": "bulk-1"}},
                {"method": "POST", "path": "/Groups", "bulkId": "orphan", "data": {
                    "schemas": [GROUP], "displayName": "orphan", "members": [{"value": "bulkId:missing"}]}},
            ])),
        )
        .await
        .expect(200);
    let operations = reply.body["Operations"].as_array().unwrap();
    assert_eq!(operations.len(), 6);
    let by_bulk_id = |id: &str| {
        operations
            .iter()
            .find(|o| o["bulkId"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .clone()
    };
    assert_eq!(by_bulk_id("g")["status"], "201");
    assert_eq!(by_bulk_id("u1")["status"], "201");
    assert!(
        by_bulk_id("u1")["location"]
            .as_str()
            .unwrap()
            .starts_with(&server.base)
    );
    assert!(
        by_bulk_id("u1")["version"]
            .as_str()
            .unwrap()
            .starts_with("W/")
    );
    assert_eq!(by_bulk_id("dup")["status"], "409");
    assert_eq!(by_bulk_id("dup")["response"]["scimType"], "uniqueness");
    assert_eq!(by_bulk_id("orphan")["status"], "409");
    let patch = operations.iter().find(|o| o["method"] == "PATCH").unwrap();
    assert_eq!(patch["status"], "200");

    let group = by_bulk_id("g")["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let stored = server.entity(EntityKind::Group, &group);
    assert_eq!(stored["members"].as_array().unwrap().len(), 2);
    assert_eq!(server.entity(EntityKind::User, "bulk-2")["active"], false);
}

#[tokio::test]
async fn bulk_stops_after_fail_on_errors() {
    let server = Server::start().await;
    let mut request = bulk(json!([
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "one"}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "one"}},
        {"method": "DELETE", "path": "/Users/00000000-0000-0000-0000-000000000001"},
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "three"}},
    ]));
    request["failOnErrors"] = json!(2);
    let reply = server.post("/Bulk", request).await.expect(200);
    let statuses: Vec<&str> = reply.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "409", "404"]);
    let missing = server
        .get(&format!("/Users?{}", filter("userName eq \"three\"")))
        .await;
    assert_eq!(
        missing.body["totalResults"], 0,
        "nothing after the second error"
    );

    // A cycle of references fails, and the rest goes on.
    let cycle = server
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "POST", "path": "/Groups", "bulkId": "x", "data": {"displayName": "x", "members": [{"value": "bulkId:y"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "y", "data": {"displayName": "y", "members": [{"value": "bulkId:x"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "z", "data": {"userName": "z"}},
                {"method": "POST", "path": "/Users", "data": {"userName": "no-bulk-id"}},
                {"method": "GET", "path": "/Users"},
            ])),
        )
        .await
        .expect(200);
    let statuses: Vec<&str> = cycle.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["409", "409", "201", "400", "400"]);
}

#[tokio::test]
async fn bulk_limits_are_enforced() {
    let server = Server::start().await;
    let many: Vec<Value> = (0..21)
        .map(|n| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{n}"), "data": {"userName": format!("u{n}")}}))
        .collect();
    let reply = server
        .post("/Bulk", bulk(Value::Array(many)))
        .await
        .expect(413);
    assert_eq!(reply.body["status"], "413");
    assert_eq!(server.get("/Users").await.body["totalResults"], 0);
    let large: Vec<Value> = (0..10)
        .map(|n| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("b{n}"),
            "data": {"userName": format!("u{n}"), "displayName": "x".repeat(8000)}})
        })
        .collect();
    server
        .post("/Bulk", bulk(Value::Array(large)))
        .await
        .expect(413);
    let reply = server
        .post("/Bulk", json!({"Operations": "no"}))
        .await
        .expect(400);
    assert_eq!(reply.scim_type(), Some("invalidSyntax"));
}

#[tokio::test]
async fn concurrent_patches_lose_nothing() {
    let server = std::sync::Arc::new(Server::start().await);
    let group = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "crowd"}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut users = Vec::new();
    for n in 0..24 {
        users.push(server.user(&format!("member{n}")).await);
    }
    let mut tasks = Vec::new();
    for user in users {
        let server = server.clone();
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            server
                .patch_ops(
                    &format!("/Groups/{group}"),
                    json!([{"op": "add", "path": "members", "value": [{"value": user}]}]),
                )
                .await
                .expect(200);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = server.entity(EntityKind::Group, &group);
    assert_eq!(stored["members"].as_array().unwrap().len(), 24);
}

#[tokio::test]
async fn attributes_without_an_engine_field_round_trip_and_filter() {
    let server = Server::start().await;
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let created = server
        .post(
            "/Users",
            json!({
                "schemas": [USER, enterprise],
                "userName": "grace",
                "name": {"givenName": "Grace", "familyName": "Hopper"},
                "title": "Rear Admiral",
                "emails": [
                    {"value": "grace@home.example", "type": "home"},
                    {"value": "grace@navy.example", "type": "work", "primary": true},
                ],
                "addresses": [{"locality": "Arlington", "type": "work"}],
                enterprise: {"employeeNumber": "1906", "department": "Navy"},
            }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    // The engine keeps the primary email; SCIM returns both, as sent.
    assert_eq!(
        server.entity(EntityKind::User, &id)["email"],
        "grace@navy.example"
    );
    let read = server.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(read.body["emails"].as_array().unwrap().len(), 2);
    assert_eq!(read.body["name"]["familyName"], "Hopper");
    assert_eq!(read.body["displayName"], "Grace Hopper");
    assert_eq!(read.body["addresses"][0]["locality"], "Arlington");
    assert_eq!(read.body[enterprise]["employeeNumber"], "1906");
    // Filters reach kept attributes, the extension's by their URN.
    for (expression, found) in [
        (format!("{enterprise}:employeeNumber eq \"1906\""), 1),
        (format!("{enterprise}:employeeNumber eq \"1907\""), 0),
        ("title sw \"rear\"".to_owned(), 1),
        (
            "emails[type eq \"home\" and value co \"@home\"]".to_owned(),
            1,
        ),
        ("addresses.locality eq \"Paris\"".to_owned(), 0),
    ] {
        let list = server
            .get(&format!("/Users?{}", filter(&expression)))
            .await
            .expect(200);
        assert_eq!(list.body["totalResults"], found, "{expression}");
    }
    // PATCH removes a kept attribute.
    let patched = server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "remove", "path": "title"}]),
        )
        .await
        .expect(200);
    assert!(patched.body.get("title").is_none(), "{}", patched.body);
    assert_eq!(patched.body[enterprise]["department"], "Navy");
    // An administrator changing the email wins over the list SCIM kept.
    let engine = server.engine.clone();
    let user = id.clone();
    tokio::task::spawn_blocking(move || {
        let edit: portcullis_engine::SpecEdit = Box::new(|spec| {
            if let Spec::User(user) = spec {
                user.email = Some("grace@admin.example".to_owned());
            }
            Ok(())
        });
        engine.write(
            &Actor::system("admin"),
            vec![Op::Modify {
                kind: EntityKind::User,
                target: user,
                edit,
            }],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let read = server.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(
        read.body["emails"],
        json!([{"value": "grace@admin.example", "type": "work"}])
    );
    assert_eq!(read.body["title"], Value::Null);
    assert_eq!(read.body["name"]["givenName"], "Grace");
}
