//! Running the built binary: one-shot commands, and `serve` as a child process that
//! says where it listens and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BOOTSTRAP: &str = "test-bootstrap-token-0123456789";

pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PORTCULLIS_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `portcullis args…` to the end.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run portcullis")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `portcullis serve`.
pub struct Served {
    pub child: Child,
    /// Everything the server wrote on stderr so far (its log).
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    pub base: String,
    /// The lines serve printed on stdout before it said where it listens.
    pub printed: Vec<String>,
    pub client: reqwest::blocking::Client,
}

impl Served {
    /// Starts `serve --data DIR --listen 127.0.0.1:0 extra…` with the bootstrap token
    /// and waits until it listens.
    pub fn start(data: &Path, extra: &[&str]) -> Served {
        Served::start_with(data, extra, &[("PORTCULLIS_BOOTSTRAP_TOKEN", BOOTSTRAP)])
    }

    pub fn start_with(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
        let mut args = vec![
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Served::spawn(&args, env)
    }

    /// Runs `portcullis args…`, a `serve` command, and waits until it listens.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut command = bin();
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        // What serve prints before it listens (a demo token), then where it listens.
        let mut printed = Vec::new();
        let base = loop {
            let line = match receiver.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "serve did not say where it listens: {:?}; printed {printed:?}",
                        child.wait()
                    );
                }
            };
            match line.strip_prefix("portcullis: listening on ") {
                Some(base) => break base.to_owned(),
                None => printed.push(line),
            }
        };
        Served {
            child,
            log,
            base,
            printed,
            client: reqwest::blocking::Client::new(),
        }
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("serve did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A data directory holding the demo estate (loaded by `serve --demo`, then stopped).
pub fn demo_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &["--demo"]);
    assert!(served.stop(), "serve stops cleanly");
    dir
}
