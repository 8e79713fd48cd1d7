//! One server per test: a redb store in a temporary directory, the HTTP stack with
//! SCIM's routes under `/scim/v2` on 127.0.0.1:0 (as `serve` mounts them), and a client
//! whose helpers read like the requests they send.

use portcullis_engine::Actor;
use std::sync::Arc;

use portcullis_engine::{Engine, TokenSpec};
use portcullis_http::{AppState, Settings};
use portcullis_scim::ScimSettings;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Server {
    /// `http://127.0.0.1:port/scim/v2`
    pub base: String,
    /// `http://127.0.0.1:port`
    pub origin: String,
    pub engine: Arc<Engine>,
    /// A token with the `scim` role.
    pub token: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A response: status, headers, JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `scimType` of an error body.
    pub fn scim_type(&self) -> Option<&str> {
        self.body["scimType"].as_str()
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self
    }

    /// The resources of a list response.
    pub fn resources(&self) -> &Vec<Value> {
        self.body["Resources"].as_array().expect("a list response")
    }
}

pub fn test_settings() -> ScimSettings {
    ScimSettings {
        max_operations: 20,
        max_payload_size: 64 * 1024,
        max_results: 50,
        ..ScimSettings::default()
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(test_settings()).await
    }

    pub async fn start_with(settings: ScimSettings) -> Server {
        Server::start_on(settings, Settings::default()).await
    }

    /// A server whose HTTP stack has `stack`'s limits and timeouts.
    pub async fn start_on(settings: ScimSettings, stack: Settings) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let engine =
            Arc::new(Engine::open(dir.path().join("portcullis.redb")).expect("open the store"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        let state = AppState::new(engine.clone(), stack.clone());
        let app = portcullis_http::router_with(state, portcullis_scim::routes(settings));
        tokio::spawn(async move {
            portcullis_http::serve(listener, app, &stack, std::future::pending()).await;
        });
        let mut server = Server {
            base: format!("http://{address}/scim/v2"),
            origin: format!("http://{address}"),
            engine,
            token: String::new(),
            client: reqwest::Client::new(),
            _dir: dir,
        };
        server.token = server.new_token("idp", &["scim"]).await;
        server
    }

    /// A new token with `roles`; returns its secret.
    pub async fn new_token(&self, name: &str, roles: &[&str]) -> String {
        let engine = self.engine.clone();
        let spec = TokenSpec {
            id: None,
            name: name.to_owned(),
            user: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            expires_at: None,
            description: String::new(),
        };
        tokio::task::spawn_blocking(move || engine.create_token(&Actor::system("test"), spec))
            .await
            .expect("token task")
            .expect("create token")
            .1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with the SCIM token and the given extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body: {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send_with(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send_with(Method::POST, path, Some(&body), &[]).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send_with(Method::PUT, path, Some(&body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send_with(Method::PATCH, path, Some(&body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send_with(Method::DELETE, path, None, &[]).await
    }

    /// PATCH with a PatchOp wrapping `operations`.
    pub async fn patch_ops(&self, path: &str, operations: Value) -> Reply {
        self.patch(
            path,
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": operations,
            }),
        )
        .await
    }

    /// Creates a user with just a userName; returns its id.
    pub async fn user(&self, user_name: &str) -> String {
        let reply = self
            .post(
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                }),
            )
            .await
            .expect(201);
        reply.body["id"].as_str().expect("an id").to_owned()
    }

    /// The engine's JSON of a user or group.
    pub fn entity(&self, kind: portcullis_engine::EntityKind, reference: &str) -> Value {
        self.engine
            .snapshot()
            .entity_json(kind, reference)
            .expect("the entity exists")
    }
}

/// `?filter=` with the filter URL-encoded.
pub fn filter(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    format!("filter={encoded}")
}
