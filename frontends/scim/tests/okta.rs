//! What Okta sends, in the order it sends it (its SCIM 2.0 provisioning
//! sequences), replayed over a real socket.

use portcullis_engine::{Argon2Settings, CredentialPolicy, EntityKind, PasswordPolicy};
use serde_json::json;

use crate::support::{Server, filter};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[tokio::test]
async fn okta_user_lifecycle() {
    let server = Server::start().await;
    // Okta's placeholder passwords (`1mz050nq`) meet an eight-character policy
    // without character classes: what an operator provisioning from Okta configures in
    // `[auth.password_policy]`. The default policy refuses them (weak_passwords_*).
    let okta_policy = PasswordPolicy {
        min_length: 8,
        upper: false,
        ..PasswordPolicy::default()
    };
    server.engine.set_credential_policy(
        CredentialPolicy::new(okta_policy, &Argon2Settings::default()).expect("a policy"),
    );
    let lookup = format!(
        "/Users?{}&startIndex=1&count=100",
        filter("userName eq \"test.user@okta.local\"")
    );
    let empty = server.get(&lookup).await.expect(200);
    assert_eq!(empty.body["totalResults"], 0);
    assert_eq!(empty.body["startIndex"], 1);
    assert_eq!(empty.body["itemsPerPage"], 0);

    // Create with a placeholder password and `"groups": []`.
    let created = server
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "userName": "test.user@okta.local",
                "name": {"givenName": "Test", "familyName": "User"},
                "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
                "displayName": "Test User",
                "locale": "en-US",
                "externalId": "00ujl29u0le5T6Aj10h7",
                "groups": [],
                "password": "1mz050nq",
                "active": true,
            }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(
        created.body.get("password").is_none(),
        "a password is never returned"
    );
    let stored = server.entity(EntityKind::User, &id);
    assert_eq!(stored["has_password"], true);
    assert!(!stored.to_string().contains("1mz050nq"));
    let engine = server.engine.clone();
    let verified = tokio::task::spawn_blocking(move || {
        engine.verify_password("test.user@okta.local", "1mz050nq")
    })
    .await
    .unwrap()
    .unwrap();
    assert!(verified, "the password is stored as an argon2id hash");

    let found = server.get(&lookup).await.expect(200);
    assert_eq!(found.body["totalResults"], 1);
    assert!(
        found.body["totalResults"].is_u64(),
        "paging fields are integers"
    );
    assert!(found.body["itemsPerPage"].is_u64());
    assert!(found.body["startIndex"].is_u64());

    // Profile updates are full PUTs, carrying id, meta and groups back.
    let mut profile = server.get(&format!("/Users/{id}")).await.expect(200).body;
    profile["name"] = json!({"givenName": "Another", "middleName": "", "familyName": "User"});
    profile["displayName"] = json!("Another User");
    profile["groups"] = json!([]);
    profile["emails"] =
        json!([{"primary": true, "value": "another.user@okta.local", "type": "work"}]);
    let replaced = server
        .put(&format!("/Users/{id}"), profile)
        .await
        .expect(200);
    assert_eq!(replaced.body["displayName"], "Another User");
    let stored = server.entity(EntityKind::User, &id);
    assert_eq!(stored["email"], "another.user@okta.local");
    assert_eq!(
        stored["has_password"], true,
        "a PUT without a password keeps it"
    );

    // Deprovisioning: a no-path replace.
    let deactivated = server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await
        .expect(200);
    assert_eq!(deactivated.body["active"], false);
    assert_eq!(server.entity(EntityKind::User, &id)["active"], false);

    // A password change by PATCH is hashed too.
    server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "password", "value": "n3w-Passw0rd"}]),
        )
        .await
        .expect(200);
    let engine = server.engine.clone();
    let verified = tokio::task::spawn_blocking(move || {
        engine.verify_password("test.user@okta.local", "n3w-Passw0rd")
    })
    .await
    .unwrap()
    .unwrap();
    assert!(verified);

    // A duplicate is 409.
    let duplicate = server
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "TEST.USER@okta.local"}),
        )
        .await
        .expect(409);
    assert_eq!(duplicate.scim_type(), Some("uniqueness"));
    assert_eq!(
        duplicate.header("content-type"),
        Some("application/scim+json")
    );
}

#[tokio::test]
async fn okta_group_push() {
    let server = Server::start().await;
    let user = server.user("test.user@okta.local").await;
    let other = server.user("other.user@okta.local").await;

    let created = server
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []}),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let found = server
        .get(&format!(
            "/Groups?{}&startIndex=1&count=100",
            filter("displayName eq \"Test SCIMv2\"")
        ))
        .await
        .expect(200);
    assert_eq!(found.body["totalResults"], 1);

    // Rename: a no-path replace carrying the read-only id.
    let renamed = server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "replace", "value": {"id": id, "displayName": "Test SCIMv2 Updated"}}]),
        )
        .await
        .expect(200);
    assert_eq!(renamed.body["displayName"], "Test SCIMv2 Updated");
    assert_eq!(renamed.body["id"], id.as_str());

    // Members without `type`.
    let added = server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "add", "path": "members", "value": [
                {"value": user, "display": "test.user@okta.local"},
                {"value": other, "display": "other.user@okta.local"},
            ]}]),
        )
        .await
        .expect(200);
    assert_eq!(added.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(added.body["members"][0]["type"], "User");
    assert_eq!(
        added.body["members"][0]["$ref"],
        format!("{}/Users/{user}", server.base).as_str()
    );

    server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{user}\"]")}]),
        )
        .await
        .expect(200);
    let members = server.entity(EntityKind::Group, &id)["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["user"], other.as_str());

    // Replacing the members wholesale.
    let replaced = server
        .patch_ops(
            &format!("/Groups/{id}"),
            json!([{"op": "replace", "path": "members", "value": [{"value": user, "display": "x"}]}]),
        )
        .await
        .expect(200);
    assert_eq!(replaced.body["members"][0]["value"], user.as_str());
    assert_eq!(replaced.body["members"].as_array().unwrap().len(), 1);

    server.delete(&format!("/Groups/{id}")).await.expect(204);
}

#[tokio::test]
async fn okta_pages_with_integers() {
    let server = Server::start().await;
    for n in 0..5 {
        server.user(&format!("user{n}@okta.local")).await;
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let page = server
            .get(&format!("/Users?startIndex={start}&count=2"))
            .await
            .expect(200);
        assert_eq!(page.body["totalResults"], 5);
        assert_eq!(page.body["startIndex"], start);
        let resources = page.resources().clone();
        assert_eq!(page.body["itemsPerPage"], resources.len());
        if resources.is_empty() {
            break;
        }
        seen.extend(
            resources
                .iter()
                .map(|r| r["userName"].as_str().unwrap().to_owned()),
        );
        start += 2;
    }
    assert_eq!(
        seen,
        (0..5)
            .map(|n| format!("user{n}@okta.local"))
            .collect::<Vec<_>>(),
        "pages follow creation order, nothing lost or repeated"
    );
}

/// The engine's credential policy holds at the SCIM door: a weak password is refused
/// by POST, PUT and PATCH alike, with SCIM's own error (400 `invalidValue`), and
/// nothing is written.
#[tokio::test]
async fn weak_passwords_are_refused_by_post_put_and_patch() {
    let server = Server::start().await;
    let user = |name: &str, password: &str| json!({"schemas": [USER], "userName": name, "password": password, "active": true});
    let refused = server
        .post("/Users", user("weak.post", "a"))
        .await
        .expect(400);
    assert_eq!(refused.body["scimType"], "invalidValue", "{}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("policy"),
        "{}",
        refused.body
    );
    let lookup = format!("/Users?{}", filter("userName eq \"weak.post\""));
    assert_eq!(
        server.get(&lookup).await.expect(200).body["totalResults"],
        0
    );

    let created = server
        .post("/Users", user("strong", "Strong-Passw0rd"))
        .await
        .expect(201);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let before = server.entity(EntityKind::User, &id);
    let refused = server
        .put(&format!("/Users/{id}"), user("strong", "short"))
        .await
        .expect(400);
    assert_eq!(refused.body["scimType"], "invalidValue", "{}", refused.body);
    let refused = server
        .patch_ops(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "password", "value": "alllowercase"}]),
        )
        .await
        .expect(400);
    assert_eq!(refused.body["scimType"], "invalidValue", "{}", refused.body);
    assert_eq!(
        server.entity(EntityKind::User, &id),
        before,
        "refused writes change nothing"
    );
    let engine = server.engine.clone();
    let kept =
        tokio::task::spawn_blocking(move || engine.verify_password("strong", "Strong-Passw0rd"))
            .await
            .unwrap()
            .unwrap();
    assert!(kept, "the old password still signs in");
}

/// The engine's default expiry reaches users an identity provider creates, as it
/// does those the admin API creates; an expiry the provider sends is kept.
#[tokio::test]
async fn users_created_over_scim_get_the_default_expiry() {
    let server = Server::start().await;
    server
        .engine
        .set_credential_policy(CredentialPolicy::default().with_default_expiry_days(Some(30)));
    let before = portcullis_engine::Time::now();
    let created = server
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "new.hire", "active": true}),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let user = server.engine.snapshot().user(&id).expect("created");
    let expiry = user.expires_at.expect("the default expiry");
    let day = 24 * 60 * 60 * 1_000_000;
    assert!(
        before.add_micros(30 * day) <= expiry
            && expiry <= portcullis_engine::Time::now().add_micros(30 * day),
        "{expiry:?}"
    );
}
