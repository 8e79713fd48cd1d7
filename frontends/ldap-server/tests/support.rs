//! The harness: a real engine on a redb file in a temporary directory, the real LDAP
//! server on a loopback port, and OpenLDAP's command-line clients (`ldap-utils`) run
//! against it as subprocesses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use portcullis_engine::{Actor, Engine, Op, Spec, Time, TokenSpec};
use portcullis_ldap_server::{BaseDn, LdapServer, Settings, Transport};
use portcullis_signin::{Auth, AuthSettings};
use serde_json::{Value, json};

pub const BASE: &str = "dc=example,dc=org";
pub const PASSWORD: &str = "Correct-Horse-42";

/// A served directory; stops with the test.
pub struct Directory {
    pub engine: Arc<Engine>,
    pub auth: Arc<Auth>,
    pub port: u16,
    pub ldaps_port: Option<u16>,
    /// The test CA's certificate, when the server has TLS.
    pub ca: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Directory {
    /// A directory with the small estate, default settings but `change`, no TLS.
    pub fn start(change: impl FnOnce(&mut Settings)) -> Directory {
        Directory::start_with(change, false)
    }

    pub fn start_with(change: impl FnOnce(&mut Settings), tls: bool) -> Directory {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(dir.path().join("portcullis.redb")).unwrap());
        let auth = Arc::new(Auth::new(engine.clone(), cheap()).unwrap());
        let mut settings = Settings::new(BaseDn::parse(BASE).unwrap());
        change(&mut settings);
        let (ca, config) = if tls {
            let (ca_pem, config) = test_pki();
            let path = dir.path().join("ca.pem");
            std::fs::write(&path, ca_pem).unwrap();
            (Some(path), Some(config))
        } else {
            (None, None)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = LdapServer::new(auth.clone(), settings, config.clone());
        let listen = |transport: Transport| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = server.clone();
            runtime.spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                server
                    .serve(listener, transport, std::future::pending())
                    .await
                    .unwrap();
            });
            port
        };
        let port = listen(Transport::Plain);
        let ldaps_port = config.is_some().then(|| listen(Transport::Ldaps));
        let directory = Directory {
            engine,
            auth,
            port,
            ldaps_port,
            ca,
            dir,
            runtime,
        };
        directory.estate();
        directory
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The small estate: users alice, bob, carol (MFA forced), dave (inactive), erin;
    /// groups ops ⊃ dba, devs with erin until `expiring` (set later by tests).
    fn estate(&self) {
        let users = [
            json!({"username":"alice","name":"Alice Liddell","email":"alice@example.org","phone":"+1 555-0100","password":PASSWORD}),
            json!({"username":"bob","name":"Bob Stone","email":"bob@example.org","password":PASSWORD}),
            json!({"username":"carol","name":"Carol","password":PASSWORD,"mfa":"forced"}),
            json!({"username":"dave","active":false,"password":PASSWORD}),
            json!({"username":"erin","name":"Erin Kim","password":PASSWORD}),
        ];
        let mut ops: Vec<Op> = users
            .into_iter()
            .map(|user| Op::Create(Spec::User(serde_json::from_value(user).unwrap())))
            .collect();
        let groups = [
            json!({"name":"dba","members":["bob"]}),
            json!({"name":"ops","members":["alice","dave"],"subgroups":["dba"]}),
            json!({"name":"devs","members":["alice"],"description":"developers"}),
        ];
        ops.extend(
            groups
                .into_iter()
                .map(|group| Op::Create(Spec::Group(serde_json::from_value(group).unwrap()))),
        );
        self.engine.write(&Actor::system("test"), ops).unwrap();
    }

    /// Writes `ops` as the operator.
    pub fn write(&self, ops: Vec<Op>) {
        self.engine.write(&Actor::system("test"), ops).unwrap();
    }

    /// A token with `roles`; its secret.
    pub fn token(&self, name: &str, roles: &[&str]) -> String {
        let spec = TokenSpec {
            id: None,
            name: name.to_owned(),
            user: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            expires_at: None,
            description: String::new(),
        };
        self.engine
            .create_token(&Actor::system("test"), spec)
            .unwrap()
            .1
    }

    /// Runs an ldap-utils `tool` against this server with `args`; (exit code, stdout,
    /// stderr).
    pub fn run(&self, tool: &str, args: &[&str]) -> Run {
        self.run_at(&self.url(), tool, args)
    }

    pub fn run_at(&self, url: &str, tool: &str, args: &[&str]) -> Run {
        let path = Path::new("/usr/bin").join(tool);
        assert!(
            path.exists(),
            "{tool} is missing: apt-get install ldap-utils"
        );
        let mut command = Command::new(path);
        // No ldap.conf or ldaprc of this machine's (LDAPNOINIT would also drop the
        // LDAPTLS_* variables the TLS tests set).
        command
            .env("LDAPCONF", "/dev/null")
            .env("LDAPRC", "portcullis-test-no-ldaprc")
            .env_remove("LDAPTLS_CACERT")
            .args(["-H", url, "-o", "nettimeout=20"]);
        if let Some(ca) = &self.ca {
            command.env("LDAPTLS_CACERT", ca);
        }
        if tool == "ldapsearch" {
            command.args(["-LLL", "-o", "ldif-wrap=no"]);
        }
        let output = command.args(args).output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `ldapsearch` bound as `who` (a DN) with `password`.
    pub fn search_as(&self, who: &str, password: &str, args: &[&str]) -> Run {
        let mut all = vec!["-x", "-D", who, "-w", password];
        all.extend_from_slice(args);
        self.run("ldapsearch", &all)
    }

    /// `ldapsearch` bound as alice.
    pub fn search(&self, args: &[&str]) -> Run {
        self.search_as(&user_dn("alice"), PASSWORD, args)
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// What a client printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The DNs of the entries printed, in order.
    pub fn dns(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("dn: "))
            .map(str::to_owned)
            .collect()
    }

    /// The values of `attribute` over every entry printed.
    pub fn values(&self, attribute: &str) -> Vec<String> {
        let prefix = format!("{attribute}: ");
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
            .collect()
    }

    /// Asserts a zero exit; returns self.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

pub fn user_dn(name: &str) -> String {
    format!("uid={name},ou=people,{BASE}")
}

pub fn group_dn(name: &str) -> String {
    format!("cn={name},ou=groups,{BASE}")
}

pub fn token_dn(name: &str) -> String {
    format!("cn={name},ou=tokens,{BASE}")
}

/// Sorted, for comparing sets.
pub fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

pub fn cheap() -> AuthSettings {
    portcullis_signin::testing::cheap_settings()
}

pub fn user_spec(value: Value) -> Op {
    Op::Create(Spec::User(serde_json::from_value(value).unwrap()))
}

pub fn now_plus(seconds: i64) -> Time {
    Time::now().add_micros(seconds * 1_000_000)
}

/// A test CA (its certificate as PEM) and a server configuration whose certificate,
/// for 127.0.0.1, it signed.
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Portcullis LDAP test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    // Through the same loader `serve` uses.
    let config = portcullis_ldap_server::tls_config(&cert, &key).unwrap();
    (ca.pem(), config)
}
