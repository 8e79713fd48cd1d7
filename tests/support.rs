//! The harness: the real `portcullis` binary as a child process, an HTTP client for
//! it, and a seeded random source.
//!
//! The binary is found beside the test executable's directory (`target/<profile>/`).
//! `cargo test --workspace` builds it (the cli package's own tests need it). When it
//! is missing, or older than any source file of the engine and the front-ends (run
//! on its own, `cargo test -p portcullis-tests` does not build it), the harness builds
//! it with the same cargo and profile first, so a stale binary is never tested.
//! `PORTCULLIS_TEST_BIN` names another binary to test instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::Value;

/// The first system-admin token of every server the tests start.
pub const BOOTSTRAP: &str = "e2e-bootstrap-secret-7f3a9c2d41b8";

/// The store file inside a data directory (the cli's `STORE_FILE`).
pub const STORE_FILE: &str = "portcullis.redb";

/// The path of the `portcullis` binary, built (or found fresh) once per run.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/<profile>/deps/main-<hash> → target/<profile>/portcullis
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable sits in target/<profile>/deps");
        if let Some(path) = std::env::var_os("PORTCULLIS_TEST_BIN") {
            return PathBuf::from(path);
        }
        let path = profile_dir.join(format!("portcullis{}", std::env::consts::EXE_SUFFIX));
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root");
        let newest_source = ["engine", "frontends", "cluster", "Cargo.lock"]
            .iter()
            .filter_map(|p| newest(&workspace.join(p)))
            .max();
        if let (Some(built), Some(source)) = (built, newest_source) {
            if built >= source {
                return path;
            }
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => "release",
            _ => "test",
        };
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--profile", profile])
            .args(["-p", "portcullis", "--bin", "portcullis"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build the portcullis binary");
        assert!(status.success(), "cargo build -p portcullis failed");
        assert!(path.exists(), "no binary at {}", path.display());
        path
    })
}

/// The newest modification time of a file under `path` (skipping `target`).
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_dir() {
        return metadata.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() != "target")
        .filter_map(|entry| newest(&entry.path()))
        .max()
}

/// A running `portcullis serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    /// Every line the server wrote to standard error (its log), so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The lines of standard output after the first.
    stdout: Mutex<mpsc::Receiver<String>>,
}

impl Server {
    /// `serve --data DIR --listen 127.0.0.1:0` with the bootstrap token and `env`.
    pub fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary());
        for (name, _) in std::env::vars() {
            if name.starts_with("PORTCULLIS_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env("PORTCULLIS_BOOTSTRAP_TOKEN", BOOTSTRAP)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn portcullis serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let line = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "serve did not say where it listens ({status:?}); log:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        let base = line
            .strip_prefix("portcullis: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            base,
            log,
            stdout: Mutex::new(receiver),
        }
    }

    /// The next line the server prints on standard output (such as where its LDAP
    /// directory listens), waiting up to 10 s for it.
    pub fn next_line(&self) -> String {
        self.stdout
            .lock()
            .expect("stdout lock")
            .recv_timeout(Duration::from_secs(10))
            .expect("another line on the server's standard output")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// SIGTERM, then waits (up to 15 s) for a clean exit; returns the whole log.
    pub fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "serve did not stop within 15 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The reader thread may still be draining the pipe.
        std::thread::sleep(Duration::from_millis(50));
        self.log.lock().expect("log lock").clone()
    }

    pub fn api(&self, token: Option<&str>) -> Api {
        Api {
            base: self.base.clone(),
            token: token.map(str::to_owned),
            client: client(),
        }
    }

    pub fn admin(&self) -> Api {
        self.api(Some(BOOTSTRAP))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(4)
        .build()
        .expect("an HTTP client")
}

/// An answer: status, raw body and the body as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A client for one server with one (or no) bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    pub client: Client,
}

impl Api {
    /// Sends `method path` with `body` (raw bytes) of `content_type`.
    pub fn try_raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> reqwest::Result<Answer> {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes()?.to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            bytes,
            json,
        })
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        self.try_raw(method, path, content_type, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// A JSON request (SCIM paths get the SCIM media type).
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let content_type = if path.starts_with("/scim/") {
            "application/scim+json"
        } else {
            "application/json"
        };
        self.raw(
            method,
            path,
            body.map(|_| content_type),
            body.map(|b| serde_json::to_vec(b).expect("JSON")),
        )
    }

    pub fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.send("POST", path, Some(body))
    }

    /// Creates, expecting success; returns the answer's JSON.
    pub fn create(&self, path: &str, body: Value) -> Value {
        let answer = self.post(path, &body);
        assert!(
            (200..300).contains(&answer.status),
            "POST {path} {body}: {} {}",
            answer.status,
            answer.text()
        );
        answer.json
    }

    /// The store revision, from `/healthz`.
    pub fn revision(&self) -> u64 {
        let answer = self.get("/healthz");
        assert_eq!(answer.status, 200);
        answer.json["revision"].as_u64().expect("a revision")
    }

    /// Creates a token with `roles` (and optionally an expiry); returns its secret.
    pub fn token(&self, name: &str, roles: &[&str], expires_at: Option<&str>) -> String {
        let mut body = serde_json::json!({"name": name, "roles": roles});
        if let Some(expires_at) = expires_at {
            body["expires_at"] = Value::from(expires_at);
        }
        let created = self.create("/api/v1/tokens", body);
        created["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("a token secret in {created}"))
            .to_owned()
    }

    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            base: self.base.clone(),
            token: token.map(str::to_owned),
            client: self.client.clone(),
        }
    }
}

/// SplitMix64: small, seeded, good enough to pick moments and cases.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `PORTCULLIS_TEST_SEED` when set, else `default`; prints the seed so
    /// a failure can be replayed.
    pub fn from_env(what: &str, default: u64) -> Rng {
        let seed = std::env::var("PORTCULLIS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("{what}: seed {seed} (PORTCULLIS_TEST_SEED to replay)");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A duration from an environment variable in seconds, else `default`.
pub fn seconds_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// A small estate, created through the API: users alice/bob/carol, group ops (bob)
/// inside which dba (carol) nests, node /Default/Prod, assets web-01 and db-01, and a
/// rule `ops-prod`.
pub fn small_estate(api: &Api) {
    use serde_json::json;
    api.create(
        "/api/v1/nodes",
        json!({"name": "Prod", "parent": "/Default"}),
    );
    for user in ["alice", "bob", "carol"] {
        api.create(
            "/api/v1/users",
            json!({"username": user, "email": format!("{user}@example.com")}),
        );
    }
    api.create(
        "/api/v1/groups",
        json!({"name": "dba", "members": ["carol"]}),
    );
    api.create(
        "/api/v1/groups",
        json!({"name": "ops", "members": ["bob"], "subgroups": ["dba"]}),
    );
    for asset in ["web-01", "db-01"] {
        api.create(
            "/api/v1/assets",
            json!({"name": asset, "address": "10.0.0.5", "platform": "linux",
                   "protocols": ["ssh/22"], "nodes": ["/Default/Prod"],
                   "accounts": [{"username": "root", "privileged": true}]}),
        );
    }
    api.create(
        "/api/v1/rules",
        json!({"name": "ops-prod", "groups": ["ops"], "users": ["alice"],
               "nodes": ["/Default/Prod"], "accounts": ["@ALL"], "protocols": ["ssh"],
               "actions": ["connect"]}),
    );
}
