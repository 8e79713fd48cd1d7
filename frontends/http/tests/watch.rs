//! The watch stream: one server-sent event per revision, resumable with
//! `Last-Event-ID`.

use portcullis_engine::Actor;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::Server;

/// Reads server-sent events from a response.
struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

/// One event: its id and its data as JSON.
#[derive(Debug)]
struct Event {
    id: u64,
    name: String,
    data: Value,
}

impl Events {
    async fn open(server: &Server, last_event_id: Option<u64>, query: &str) -> Events {
        Events::open_as(server, &server.admin, last_event_id, query).await
    }

    /// Opens the stream with `token`; the answer's head must come at once (within 5
    /// seconds), not with the first event or keep-alive.
    async fn open_as(
        server: &Server,
        token: &str,
        last_event_id: Option<u64>,
        query: &str,
    ) -> Events {
        let mut request = server
            .client
            .get(server.url(&format!("/api/v1/watch{query}")))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = tokio::time::timeout(Duration::from_secs(5), request.send())
            .await
            .expect("the stream's head within 5 seconds")
            .expect("watch");
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "{:?}",
            response.headers()
        );
        Events {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), within 5 seconds.
    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut event = Event {
                        id: 0,
                        name: String::new(),
                        data: Value::Null,
                    };
                    let mut seen = false;
                    for line in block.lines() {
                        if let Some(id) = line.strip_prefix("id:") {
                            event.id = id.trim().parse().expect("numeric id");
                            seen = true;
                        } else if let Some(name) = line.strip_prefix("event:") {
                            event.name = name.trim().to_owned();
                        } else if let Some(data) = line.strip_prefix("data:") {
                            event.data = serde_json::from_str(data.trim()).expect("JSON data");
                        }
                    }
                    if seen {
                        return event;
                    }
                    continue;
                }
                let chunk = self
                    .stream
                    .next()
                    .await
                    .expect("the stream goes on")
                    .expect("chunk");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event within 5 seconds")
    }

    /// Reads until the stream ends (within `seconds`); returns the ids of the change
    /// events seen before the end and the name of the last event.
    async fn until_end(&mut self, seconds: u64) -> (Vec<u64>, String) {
        let mut ids = Vec::new();
        let mut last = String::new();
        tokio::time::timeout(Duration::from_secs(seconds), async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    for line in block.lines() {
                        if let Some(id) = line.strip_prefix("id:") {
                            ids.push(id.trim().parse().expect("numeric id"));
                        } else if let Some(name) = line.strip_prefix("event:") {
                            last = name.trim().to_owned();
                        }
                    }
                }
                match self.stream.next().await {
                    Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                    Some(Err(_)) | None => return,
                }
            }
        })
        .await
        .expect("the stream ends");
        (ids, last)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_each_revision_and_resumes() {
    let server = Server::start().await;
    let mut events = Events::open(&server, None, "").await;
    let first = server.create("users", json!({"username": "alice"})).await["revision"]
        .as_u64()
        .unwrap();
    let second = server.create("users", json!({"username": "bob"})).await["revision"]
        .as_u64()
        .unwrap();
    let event = events.next().await;
    assert_eq!((event.id, event.name.as_str()), (first, "change"));
    assert_eq!(event.data["revision"], json!(first));
    assert_eq!(
        event.data["changes"][0]["after"]["username"],
        json!("alice")
    );
    let event = events.next().await;
    assert_eq!(event.id, second);
    drop(events);

    // Resume after the first: the second comes again, then new ones.
    let mut resumed = Events::open(&server, Some(first), "").await;
    let event = resumed.next().await;
    assert_eq!(event.id, second);
    assert_eq!(event.data["changes"][0]["after"]["username"], json!("bob"));
    let third = server
        .create("groups", json!({"name": "ops", "members": ["alice"]}))
        .await["revision"]
        .as_u64()
        .unwrap();
    assert_eq!(resumed.next().await.id, third);
    // A deletion that cascades is one event with every record.
    let (_, deleted) = server.delete("/api/v1/users/alice").await;
    let event = resumed.next().await;
    assert_eq!(event.id, deleted["revision"].as_u64().unwrap());
    let entities: Vec<&str> = event.data["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["entity"].as_str().unwrap())
        .collect();
    assert!(
        entities.contains(&"user") && entities.contains(&"group"),
        "{entities:?}"
    );

    // `?since=` works like Last-Event-ID; the header wins.
    let mut from_query = Events::open(&server, None, &format!("?since={first}")).await;
    assert_eq!(from_query.next().await.id, second);
    let mut header_wins = Events::open(&server, Some(second), "?since=0").await;
    assert_eq!(header_wins.next().await.id, third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refuses_a_bad_last_event_id() {
    let server = Server::start().await;
    let response = server
        .client
        .get(server.url("/api/v1/watch"))
        .bearer_auth(&server.admin)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

/// A token with `roles` (for `user`, if given) that expires at `expires_at`.
async fn token_with(
    server: &Server,
    name: &str,
    roles: &[&str],
    user: Option<&str>,
    expires_at: Option<portcullis_engine::Time>,
) -> String {
    let engine = server.engine.clone();
    let spec = portcullis_engine::TokenSpec {
        id: None,
        name: name.to_owned(),
        user: user.map(str::to_owned),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        expires_at,
        description: String::new(),
    };
    tokio::task::spawn_blocking(move || engine.create_token(&Actor::system("test"), spec))
        .await
        .unwrap()
        .expect("create token")
        .1
}

/// Opens a watch as `token`, sees one event, lets `revoke` take the token's right
/// away, and insists the stream ends without delivering what is written afterwards.
async fn ends_after(server: &Server, token: &str, revoke: impl std::future::Future<Output = ()>) {
    let mut events = Events::open_as(server, token, None, "").await;
    let seen = server
        .create("nodes", json!({"name": format!("n-{}", rand_suffix())}))
        .await["revision"]
        .as_u64()
        .unwrap();
    assert_eq!(events.next().await.id, seen);
    revoke.await;
    let after = server
        .create("nodes", json!({"name": format!("n-{}", rand_suffix())}))
        .await["revision"]
        .as_u64()
        .unwrap();
    let (ids, last) = events.until_end(10).await;
    assert!(
        !ids.contains(&after),
        "a change written after the revocation was streamed: {ids:?}"
    );
    assert_eq!(last, "error", "the stream says why it ends");
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_its_token_is_revoked() {
    let server = Server::start().await;
    let token = server.token("watcher", &["system-auditor"]).await;
    ends_after(&server, &token, async {
        let (status, answer) = server.delete("/api/v1/tokens/watcher").await;
        assert_eq!(status, 200, "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_its_role_loses_the_permission() {
    let server = Server::start().await;
    server
        .create(
            "roles",
            json!({"name": "log-reader", "permissions": ["changes.view", "nodes.view"]}),
        )
        .await;
    let token = server.token("reader", &["log-reader"]).await;
    ends_after(&server, &token, async {
        let (status, answer) = server
            .patch(
                "/api/v1/roles/log-reader",
                json!({"permissions": ["nodes.view"]}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_its_user_is_deactivated() {
    let server = Server::start().await;
    server.create("users", json!({"username": "wendy"})).await;
    let token = token_with(
        &server,
        "wendy-watch",
        &["system-auditor"],
        Some("wendy"),
        None,
    )
    .await;
    ends_after(&server, &token, async {
        let (status, answer) = server
            .patch("/api/v1/users/wendy", json!({"active": false}))
            .await;
        assert_eq!(status, 200, "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_its_token_expires() {
    let server = Server::start().await;
    let expires = portcullis_engine::Time::now().add_micros(1_500_000);
    let token = token_with(&server, "brief", &["system-auditor"], None, Some(expires)).await;
    let mut events = Events::open_as(&server, &token, None, "").await;
    // Nothing is written: the clock alone must end the stream.
    let (ids, last) = events.until_end(10).await;
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(last, "error", "the stream says why it ends");
    // And it cannot be opened again.
    let response = server
        .client
        .get(server.url("/api/v1/watch"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}
