//! One server per test: a redb store in a temporary directory, the router on
//! 127.0.0.1:0, and a client with helpers that read like the requests they send.

use std::sync::Arc;
use std::time::Duration;

use portcullis_engine::{Actor, Engine, TokenSpec};
use portcullis_http::{AppState, Settings};
use reqwest::Method;
use serde_json::Value;

pub struct Server {
    pub base: String,
    pub engine: Arc<Engine>,
    /// A system-admin token's secret.
    pub admin: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Settings small enough to test the limits quickly.
pub fn test_settings() -> Settings {
    Settings {
        body_limit: 64 * 1024,
        default_page_size: 50,
        max_page_size: 200,
        min_revision_wait: Duration::from_millis(300),
        request_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(1),
        console: portcullis_http::ConsoleSettings::default(),
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(test_settings()).await
    }

    pub async fn start_with(settings: Settings) -> Server {
        Server::start_with_state(move |engine| AppState::new(engine, settings)).await
    }

    /// A server whose state `make` builds from the engine (sign-in settings, say).
    pub async fn start_with_state(make: impl FnOnce(Arc<Engine>) -> AppState) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let engine =
            Arc::new(Engine::open(dir.path().join("portcullis.redb")).expect("open the store"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        let state = make(engine.clone());
        let settings = state.settings().clone();
        // A sync status provider, as the binary registers one for LDAP.
        state.register_sync_status(
            "ldap",
            Arc::new(|| serde_json::json!({"sources": [{"source": "corp", "runs": 0}]})),
        );
        let router = portcullis_http::router(state);
        tokio::spawn(async move {
            portcullis_http::serve(listener, router, &settings, std::future::pending()).await;
        });
        let mut server = Server {
            base: format!("http://{address}"),
            engine,
            admin: String::new(),
            client: reqwest::Client::new(),
            _dir: dir,
        };
        server.admin = server.token("admin", &["system-admin"]).await;
        server
    }

    /// A new token with `roles`; returns its secret.
    pub async fn token(&self, name: &str, roles: &[&str]) -> String {
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

    /// Sends `body` (raw bytes) with `token`; returns the status and the body as JSON
    /// (`Value::Null` when it is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.send(
            method,
            path,
            token,
            body.map(|b| serde_json::to_vec(b).expect("json")),
        )
        .await
    }

    /// As the admin.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(&self.admin.clone()), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(&self.admin.clone()), Some(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(&self.admin.clone()), Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(&self.admin.clone()), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, Some(&self.admin.clone()), None)
            .await
    }

    /// Creates an entity as the admin and insists it worked.
    pub async fn create(&self, collection: &str, body: Value) -> Value {
        let (status, answer) = self
            .post(&format!("/api/v1/{collection}"), body.clone())
            .await;
        assert_eq!(status, 201, "creating {body} in {collection}: {answer}");
        answer
    }
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A small estate built through the API, close to the README's examples:
/// nodes `/Default/Prod` and `/Default/Prod/DB`; asset `web-01` (DESIGN's example) and
/// `db-01`; users alice, bob, carol; group `dba` (carol) nested in `ops` (alice, bob
/// until 2026-12-15); rule `ops-prod` (DESIGN's example, started 2026-01-01); a deny
/// rule for root on the DB node.
pub async fn estate(server: &Server) {
    server
        .create("nodes", serde_json::json!({"name": "Prod"}))
        .await;
    server
        .create(
            "nodes",
            serde_json::json!({"name": "DB", "parent": "/Default/Prod"}),
        )
        .await;
    server
        .create(
            "assets",
            serde_json::json!({"name":"web-01","address":"10.0.0.5","platform":"linux","protocols":["ssh/22"],
            "nodes":["/Default/Prod"],"accounts":[{"username":"root","privileged":true}]}),
        )
        .await;
    server
        .create(
            "assets",
            serde_json::json!({"name":"db-01","address":"10.0.0.9","platform":"linux","protocols":["ssh/22"],
            "nodes":["/Default/Prod/DB"],"accounts":[{"username":"root","privileged":true},{"username":"postgres"}]}),
        )
        .await;
    for user in ["alice", "bob", "carol"] {
        server
            .create(
                "users",
                serde_json::json!({"username": user, "email": format!("{user}@example.com")}),
            )
            .await;
    }
    server
        .create(
            "groups",
            serde_json::json!({"name": "dba", "members": ["carol"]}),
        )
        .await;
    server
        .create(
            "groups",
            serde_json::json!({"name":"ops","members":["alice",{"user":"bob","expires_at":"2026-12-15T00:00:00Z"}],
            "subgroups":["dba"]}),
        )
        .await;
    server
        .create(
            "rules",
            serde_json::json!({"name":"ops-prod","groups":["ops"],"nodes":["/Default/Prod"],"accounts":["@ALL"],
            "protocols":["ssh"],"actions":["connect","upload","download"],"expires_at":"2027-01-01T00:00:00Z"}),
        )
        .await;
    let (status, answer) = server
        .patch(
            "/api/v1/rules/ops-prod",
            serde_json::json!({"starts_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    server
        .create(
            "rules",
            serde_json::json!({"name":"no-root-on-db","effect":"deny","groups":["ops"],"nodes":["/Default/Prod/DB"],
            "accounts":["root"],"actions":["all"],"starts_at":"2026-01-01T00:00:00Z"}),
        )
        .await;
}
