//! A real PostgreSQL for tests: `initdb` into a temporary directory, then `pg_ctl`
//! on a free loopback port with its socket in that directory; stopped, and its files
//! removed, when dropped. Run as root, it runs PostgreSQL as the `postgres` user
//! (PostgreSQL refuses to run as root).
//!
//! Needs Debian's `postgresql` package (`.ci/run` installs it). Not part of the
//! public API.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The superuser the cluster is made with; tests connect as it, without a password
/// (trust on loopback: a temporary server of the test's own).
pub const USER: &str = "portcullis";

/// A running PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Run the server's programs as `postgres` (the tests run as root).
    as_postgres: bool,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// The directory of `initdb` and `pg_ctl`: on the `PATH`, or Debian's
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return dir;
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's initdb is missing: install Debian's `postgresql` package (.ci/run does)"
        )
    })
}

impl Postgres {
    /// Makes and starts a new server.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = running_as_root();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the data dir");
        }
        let postgres = Postgres {
            bin: bin_dir(),
            port: free_port(),
            as_postgres,
            dir,
        };
        let data = postgres.data();
        postgres.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        postgres.start_again();
        postgres
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A change log on this server, as a node connects to it.
    pub fn change_log(&self) -> std::sync::Arc<crate::PostgresLog> {
        crate::PostgresLog::connect(&crate::Settings {
            url: self.url(),
            password: None,
            ca_file: None,
        })
        .expect("connect to the test PostgreSQL")
    }

    /// An engine node named `name` with its store in `dir`, joined to this server's
    /// change log.
    ///
    /// # Panics
    ///
    /// When the node cannot join.
    pub fn node(
        &self,
        dir: &std::path::Path,
        name: &str,
        options: portcullis_engine::EngineOptions,
    ) -> portcullis_engine::Engine {
        portcullis_engine::Engine::open_clustered(
            dir.join("portcullis.redb"),
            options,
            self.change_log(),
            name,
        )
        .unwrap_or_else(|error| panic!("node {name} cannot join: {error}"))
    }

    /// `postgres://portcullis@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again, after [`Postgres::stop`]) and waits for it to accept
    /// connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not open its port"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast: open connections are cut, as when it goes away).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        output
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the postgres user exists (Debian's postgresql package makes it)")
    };
    (id("-u"), id("-g"))
}
