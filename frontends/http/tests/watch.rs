//! The watch stream: one server-sent event per revision, resumable with
//! `Last-Event-ID`.

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
        let mut request = server
            .client
            .get(server.url(&format!("/api/v1/watch{query}")))
            .bearer_auth(&server.admin);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("watch");
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
