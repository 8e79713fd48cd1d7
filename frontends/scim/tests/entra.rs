//! What Microsoft Entra ID sends, in the order it sends it (its provisioning
//! validator's sequences), replayed over a real socket.

use portcullis_engine::Actor;
use portcullis_engine::{Actions, EntityKind, Evaluator, Op, Query, Spec, Time};
use serde_json::{Value, json};

use crate::support::{Server, filter};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const MICROSOFT_GROUP: &str =
    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

#[tokio::test]
async fn entra_user_lifecycle() {
    let server = Server::start().await;
    let user_name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1";

    // Matching: no such user is 200 with an empty list, by each matching attribute.
    for query in [
        filter(&format!("userName eq \"{user_name}\"")),
        filter("externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\""),
    ] {
        let reply = server.get(&format!("/Users?{query}")).await.expect(200);
        assert_eq!(reply.body["totalResults"], 0);
        assert_eq!(reply.resources().len(), 0);
    }

    let created = server
        .post(
            "/Users",
            json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": user_name,
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                "roles": [],
                ENTERPRISE: {"department": "Sales", "manager": {"value": "x"}},
            }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("{}/Users/{id}", server.base).as_str())
    );
    assert_eq!(
        created.header("etag"),
        created.body["meta"]["version"].as_str()
    );
    assert_eq!(created.body["displayName"], "givenName familyName");
    let stored = server.entity(EntityKind::User, &id);
    assert_eq!(stored["source"], "scim");
    assert_eq!(
        stored["external_id"],
        "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    );
    assert_eq!(stored["email"], "Test_User_fd0ea19b@testuser.com");

    // Found by each matching attribute, case-insensitively for userName.
    for query in [
        filter(&format!("userName eq \"{}\"", user_name.to_uppercase())),
        filter("externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\""),
    ] {
        let reply = server.get(&format!("/Users?{query}")).await.expect(200);
        assert_eq!(reply.body["totalResults"], 1, "{query}");
        assert_eq!(reply.resources()[0]["id"], id.as_str());
    }
    server.get(&format!("/Users/{id}")).await.expect(200);

    // Multi-valued and dotted paths, op names capitalised.
    let patched = server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            ]),
        )
        .await
        .expect(200);
    assert_eq!(
        patched.body["emails"][0]["value"],
        "updatedEmail@microsoft.com"
    );
    assert_eq!(
        server.entity(EntityKind::User, &id)["email"],
        "updatedEmail@microsoft.com"
    );

    // Single-valued attributes.
    let renamed = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com";
    server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "userName", "value": renamed}]),
        )
        .await
        .expect(200);
    assert_eq!(server.entity(EntityKind::User, &id)["username"], renamed);

    // A no-path replace whose keys are paths: dotted and URN-qualified.
    let reply = server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "value": {
                "displayName": "Updated Name",
                "name.givenName": "Updated",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Engineering",
                "emails[type eq \"work\"].value": "again@microsoft.com",
            }}]),
        )
        .await
        .expect(200);
    assert_eq!(reply.body["displayName"], "Updated Name");
    // Kept as sent (the primary flag too), and the engine's email follows it.
    assert_eq!(
        reply.body["emails"],
        json!([{"value": "again@microsoft.com", "type": "work", "primary": true}])
    );
    assert_eq!(
        server.entity(EntityKind::User, &id)["email"],
        "again@microsoft.com"
    );
    assert_eq!(reply.body["name"]["givenName"], "Updated");
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    assert_eq!(reply.body[enterprise]["department"], "Engineering");
    assert!(
        reply.body["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(enterprise)),
        "{}",
        reply.body
    );
    // And a later read returns the same.
    let read = server.get(&format!("/Users/{id}")).await.expect(200);
    assert_eq!(read.body[enterprise]["department"], "Engineering");
    assert_eq!(read.body["name"]["givenName"], "Updated");

    // Disabled with a boolean written as a string.
    let disabled = server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await
        .expect(200);
    assert_eq!(disabled.body["active"], false);
    assert_eq!(server.entity(EntityKind::User, &id)["active"], false);

    server.delete(&format!("/Users/{id}")).await.expect(204);
    server.get(&format!("/Users/{id}")).await.expect(404);
}

#[tokio::test]
async fn entra_group_lifecycle() {
    let server = Server::start().await;
    let alice = server.user("alice@contoso.test").await;
    let bob = server.user("bob@contoso.test").await;
    let carol = server.user("carol@contoso.test").await;

    let reply = server
        .get(&format!(
            "/Groups?excludedAttributes=members&{}",
            filter("displayName eq \"Sales\"")
        ))
        .await
        .expect(200);
    assert_eq!(reply.body["totalResults"], 0);

    // An extra Microsoft schema on create.
    let created = server
        .post(
            "/Groups",
            json!({
                "schemas": [GROUP, MICROSOFT_GROUP],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "Sales",
                "meta": {"resourceType": "Group"},
            }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let by_name = server
        .get(&format!(
            "/Groups?excludedAttributes=members&{}",
            filter("displayName eq \"sales\"")
        ))
        .await
        .expect(200);
    assert_eq!(by_name.body["totalResults"], 1);
    assert_eq!(by_name.resources()[0]["id"], id.as_str());
    let by_external = server
        .get(&format!(
            "/Groups?excludedAttributes=members&{}",
            filter("externalId eq \"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159\"")
        ))
        .await
        .expect(200);
    assert_eq!(by_external.body["totalResults"], 1);

    server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "Replace", "path": "displayName", "value": "Sales Updated"}]),
        )
        .await
        .expect(200);
    server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "Add", "path": "members", "value": [
                {"$ref": null, "value": alice},
                {"$ref": null, "value": bob},
                {"$ref": null, "value": carol},
            ]}]),
        )
        .await
        .expect(200);
    let members = |server: &Server| -> Vec<String> {
        server.entity(EntityKind::Group, &id)["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        members(&server),
        [alice.clone(), bob.clone(), carol.clone()]
    );
    assert!(
        server.entity(EntityKind::Group, &id)["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["source"] == "scim"),
        "memberships written through SCIM are SCIM's"
    );

    // `remove` of `members` with a value array removes only those.
    server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": alice}]}]),
        )
        .await
        .expect(200);
    assert_eq!(members(&server), [bob.clone(), carol.clone()]);

    // A value filter in the path.
    server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "Remove", "path": format!("members[value eq \"{bob}\"]")}]),
        )
        .await
        .expect(200);
    assert_eq!(members(&server), [carol]);

    let fetched = server
        .get(&format!("/Groups/{id}?excludedAttributes=members"))
        .await
        .expect(200);
    assert!(fetched.body.get("members").is_none());
    assert_eq!(fetched.body["displayName"], "Sales Updated");

    server.delete(&format!("/Groups/{id}")).await.expect(204);
    server.get(&format!("/Groups/{id}")).await.expect(404);
}

/// A membership written through SCIM drives the next access check.
#[tokio::test]
async fn a_check_right_after_the_response_sees_the_membership() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let group = server
        .post("/Groups", json!({"schemas": [GROUP], "displayName": "ops"}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let engine = server.engine.clone();
    tokio::task::spawn_blocking(move || {
        let spec = |kind, value: Value| Spec::from_json(kind, value).unwrap();
        engine.write(
            &Actor::system("admin"),
            vec![
                Op::Create(spec(
                    EntityKind::Asset,
                    json!({
                        "name": "web-01", "address": "10.0.0.5", "platform": "linux",
                        "protocols": ["ssh/22"], "accounts": [{"username": "root"}]
                    }),
                )),
                Op::Create(spec(
                    EntityKind::Rule,
                    json!({
                        "name": "ops-web", "groups": ["ops"], "assets": ["web-01"],
                        "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]
                    }),
                )),
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let allowed = |server: &Server| {
        let query = Query {
            user: "alice",
            asset: "web-01",
            account: "root",
            protocol: "ssh",
            action: Actions::CONNECT,
            at: Time::now(),
        };
        server.engine.snapshot().check(&query).unwrap().allowed
    };
    assert!(!allowed(&server));
    let reply = server
        .patch_ops(
            &format!("/Groups/{group}"),
            json!([{"op": "add", "path": "members", "value": [{"value": alice}]}]),
        )
        .await
        .expect(200);
    let revision: u64 = reply
        .header("x-portcullis-revision")
        .unwrap()
        .parse()
        .unwrap();
    assert!(server.engine.snapshot().revision() >= revision);
    assert!(
        allowed(&server),
        "the check after the response sees the membership"
    );
    server
        .patch_ops(
            &format!("/Users/{alice}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await
        .expect(200);
    assert!(!allowed(&server), "a deactivated user is granted nothing");
}
