//! Writes computed from a snapshot and guarded by the engine (`Op::Expect`):
//! `If-Match` refusals write nothing, and writers racing on one resource lose no
//! update, whether they are SCIM clients or other front-ends.

use std::sync::Arc;

use portcullis_engine::{Actor, EntityKind, MemberSpec, Op, Source};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn add_members(users: &[&str]) -> Value {
    let value: Vec<Value> = users.iter().map(|u| json!({"value": u})).collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": value}]})
}

async fn group(server: &Server, name: &str) -> String {
    server
        .post("/Groups", json!({"schemas": [GROUP], "displayName": name}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The ETag the server gives `path` now.
async fn etag(server: &Server, path: &str) -> String {
    server
        .get(path)
        .await
        .expect(200)
        .header("etag")
        .unwrap()
        .to_owned()
}

fn member_ids(server: &Server, group: &str) -> Vec<String> {
    let mut ids: Vec<String> = server.entity(EntityKind::Group, group)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_writes_nothing() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let group = group(&server, "ops").await;
    let path = format!("/Groups/{group}");
    let stale = etag(&server, &path).await;
    server
        .send_with(
            Method::PATCH,
            &path,
            Some(&add_members(&[&alice])),
            &[("if-match", &stale)],
        )
        .await
        .expect(200);
    let revision = server.engine.snapshot().revision();
    let before = server.engine.snapshot().canonical();

    let refused = server
        .send_with(
            Method::PATCH,
            &path,
            Some(&add_members(&[&bob])),
            &[("if-match", &stale)],
        )
        .await
        .expect(412);
    assert_eq!(refused.body["status"], "412");
    let body = json!({"schemas": [GROUP], "displayName": "renamed"});
    server
        .send_with(Method::PUT, &path, Some(&body), &[("if-match", &stale)])
        .await
        .expect(412);
    server
        .send_with(Method::DELETE, &path, None, &[("if-match", &stale)])
        .await
        .expect(412);
    let user_path = format!("/Users/{alice}");
    let user_version = etag(&server, &user_path).await;
    let user_body =
        json!({"schemas": [USER], "userName": "alice", "password": "Str0ng-enough-passw0rd"});
    server
        .send_with(
            Method::PUT,
            &user_path,
            Some(&user_body),
            &[("if-match", "W/\"0000000000000000\"")],
        )
        .await
        .expect(412);

    assert_eq!(
        server.engine.snapshot().revision(),
        revision,
        "nothing written"
    );
    assert_eq!(server.engine.snapshot().canonical(), before);
    assert_eq!(member_ids(&server, &group), std::slice::from_ref(&alice));

    // The current versions still apply.
    let current = etag(&server, &path).await;
    server
        .send_with(
            Method::PATCH,
            &path,
            Some(&add_members(&[&bob])),
            &[("if-match", &current)],
        )
        .await
        .expect(200);
    server
        .send_with(
            Method::PUT,
            &user_path,
            Some(&user_body),
            &[("if-match", &user_version)],
        )
        .await
        .expect(200);
}

/// Two clients PATCH one group with the same `If-Match`: one applies, the other is
/// 412 (whether it read before or after the first wrote), never both.
#[tokio::test]
async fn racing_if_matches_let_exactly_one_through() {
    let server = Arc::new(Server::start().await);
    for round in 0..5 {
        let alice = server.user(&format!("alice{round}")).await;
        let bob = server.user(&format!("bob{round}")).await;
        let group = group(&server, &format!("race{round}")).await;
        let path = format!("/Groups/{group}");
        let version = etag(&server, &path).await;
        let tasks: Vec<_> = [alice.clone(), bob.clone()]
            .into_iter()
            .map(|user| {
                let server = server.clone();
                let path = path.clone();
                let version = version.clone();
                tokio::spawn(async move {
                    let reply = server
                        .send_with(
                            Method::PATCH,
                            &path,
                            Some(&add_members(&[&user])),
                            &[("if-match", &version)],
                        )
                        .await;
                    (user, reply.status.as_u16())
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let mut statuses: Vec<u16> = outcomes.iter().map(|(_, s)| *s).collect();
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
        let winner = outcomes.iter().find(|(_, s)| *s == 200).unwrap().0.clone();
        assert_eq!(member_ids(&server, &group), [winner]);
    }
}

/// SCIM PATCHes race with another front-end adding memberships to the same group
/// straight through the engine: every membership of both ends up in the group.
#[tokio::test]
async fn scim_patches_racing_another_writer_lose_nothing() {
    const EACH: usize = 16;
    let server = Arc::new(Server::start().await);
    let group = group(&server, "contended").await;
    let mut scim_users = Vec::new();
    for n in 0..EACH {
        scim_users.push(server.user(&format!("scim{n}")).await);
    }
    let mut other_users = Vec::new();
    for n in 0..EACH {
        other_users.push(server.user(&format!("other{n}")).await);
    }
    // The other writer: one membership per write, as fast as the writer takes them.
    let engine = server.engine.clone();
    let target = group.clone();
    let others = other_users.clone();
    let other = tokio::task::spawn_blocking(move || {
        for user in others {
            engine
                .write(
                    &Actor::system("directory-sync"),
                    vec![Op::AddMember {
                        group: target.clone(),
                        member: MemberSpec::Detailed {
                            user,
                            expires_at: None,
                            source: Some(Source::Local),
                        },
                    }],
                )
                .unwrap();
        }
    });
    let mut tasks = Vec::new();
    for user in &scim_users {
        let server = server.clone();
        let path = format!("/Groups/{group}");
        let body = add_members(&[user]);
        tasks.push(tokio::spawn(async move {
            server.patch(&path, body).await.expect(200);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    other.await.unwrap();
    let mut expected: Vec<String> = scim_users.into_iter().chain(other_users).collect();
    expected.sort();
    assert_eq!(member_ids(&server, &group), expected);
}
