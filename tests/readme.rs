//! The README's walkthrough is a test (issue 23): every ```` ```console ```` block of
//! README.md runs, in order, in one shell session against a fresh demo server (the
//! real binary, real HTTP over 127.0.0.1), and what each command prints must be what
//! the README shows under it. A changed output fails this test until the README says
//! the new truth. ```` ```sh ```` blocks are not run (building, the test command
//! itself, LDAP sync against a directory of your own).
//!
//! How a console block reads:
//!
//! - `$ command` is a command, continued on the next line while a line ends with `\`;
//!   the lines after it, up to the next command, are its output (standard output and
//!   standard error, as a terminal shows them). Lines starting with `#` are comments;
//!   blank lines are ignored.
//! - In an output line, `[..]` stands for any text within the line (ids, secrets,
//!   timestamps); a line holding only `...` stands for any number of lines.
//! - A command that fails (a non-zero exit) must be followed by `echo $?`, which
//!   shows the code; otherwise the test fails.
//! - The first `portcullis serve` command starts the server in the background; its
//!   output is what it printed up to `listening on`. The server listens on a free
//!   port: the README's `127.0.0.1:8080` reads as that address, in commands and in
//!   output.
//! - Commands run in a new empty directory, with the binary under test first on
//!   `PATH` (the README says `portcullis`, which is `cargo run --release -p
//!   portcullis --` in the source tree), no `PORTCULLIS_*` variable but those the
//!   README sets, and `curl`, `jq` and `oathtool` (a TOTP code, as an authenticator
//!   app shows it).
//!
//! The whole walkthrough must finish within [`TIME_LIMIT`].

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::binary;

/// The most the walkthrough may take, server start included.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The address the README writes; the test's server listens elsewhere.
const README_ADDRESS: &str = "127.0.0.1:8080";

/// One `$ command` of a console block, and the output the README shows for it.
#[derive(Debug)]
struct Step {
    /// The README's line number of the command.
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// The console blocks' steps, in README order.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    for (index, line) in readme.lines().enumerate() {
        let trimmed = line.trim_end();
        if !in_console {
            in_console = trimmed == "```console";
            continue;
        }
        if trimmed == "```" {
            in_console = false;
            continue;
        }
        if continued {
            let step = steps.last_mut().expect("a continued command");
            step.command.push('\n');
            step.command.push_str(trimmed);
            continued = trimmed.ends_with('\\');
            continue;
        }
        if let Some(command) = trimmed.strip_prefix("$ ") {
            steps.push(Step {
                line: index + 1,
                command: command.to_owned(),
                expected: Vec::new(),
            });
            continued = trimmed.ends_with('\\');
        } else if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        } else {
            match steps.last_mut() {
                Some(step) => step.expected.push(trimmed.to_owned()),
                None => panic!("README.md:{}: output before any command", index + 1),
            }
        }
    }
    steps
}

/// Whether `line` matches `pattern`, where `[..]` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    let (first, rest) = parts.split_first().expect("split gives one part at least");
    let Some(mut remaining) = line.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// Whether `lines` match `patterns`, where a `...` pattern line stands for any
/// number of lines.
fn lines_match(patterns: &[String], lines: &[String]) -> bool {
    match patterns.split_first() {
        None => lines.is_empty(),
        Some((pattern, rest)) if pattern == "..." => {
            (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..]))
        }
        Some((pattern, rest)) => match lines.split_first() {
            Some((line, more)) => line_matches(pattern, line) && lines_match(rest, more),
            None => false,
        },
    }
}

/// The lines a command printed, as the README compares them: trailing spaces and
/// blank lines dropped, the server's real address written as the README's.
fn output_lines(text: &str, address: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim_end().replace(address, README_ADDRESS))
        .filter(|line| !line.is_empty())
        .collect()
}

/// A free port on 127.0.0.1 (bound, then released for the server).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").to_string()
}

/// A shell for the README's commands: a clean environment, the binary first on PATH.
fn shell(dir: &Path, address: &str) -> Command {
    let bin_dir = binary().parent().expect("the binary's directory");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new("bash");
    for (name, _) in std::env::vars() {
        if name.starts_with("PORTCULLIS_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).expect("a PATH"))
        .env("PORTCULLIS_LISTEN", address)
        .stdin(Stdio::null());
    command
}

/// Fails with the command to install a tool the walkthrough needs.
fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "the README test needs `{tool}`: apt-get install {package} (.ci/run installs it)"
    );
}

/// A background `portcullis serve` of the walkthrough, killed when dropped.
struct Background {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // The shell and the server it started: the whole process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Background {
    fn log(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }
}

/// Starts the README's serve command; returns it and what it printed up to (and with)
/// the line that says where it listens.
fn start_server(dir: &Path, address: &str, command: &str) -> (Background, String) {
    let mut child = shell(dir, address)
        .args(["-c", command])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the README's serve command");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let (logs, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if logs.send(line).is_err() {
                break;
            }
        }
    });
    let server = Background { child, log };
    let mut output = String::new();
    loop {
        match printed.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
                if line.starts_with("portcullis: listening on ") {
                    break;
                }
            }
            Err(_) => panic!(
                "`{command}` did not say where it listens; printed {output:?}; log:\n{}",
                server.log()
            ),
        }
    }
    (server, output)
}

/// Runs `steps` (the server's excepted) as one bash script, returning each one's
/// output and exit code.
fn run_script(dir: &Path, address: &str, steps: &[&Step]) -> Vec<(String, i32)> {
    const MARK: &str = "@@portcullis-readme-step";
    let mut script = String::from("exec 2>&1\n");
    for (index, step) in steps.iter().enumerate() {
        script.push_str(&step.command.replace(README_ADDRESS, address));
        script.push_str(&format!(
            "\n__rc=$?; printf '\\n{MARK} {index} %s\\n' \"$__rc\"; (exit $__rc)\n"
        ));
    }
    let path = dir.join(".readme-walkthrough.sh");
    std::fs::write(&path, script).expect("write the script");
    let mut child = shell(dir, address)
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run bash");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        let _ = done.send(text);
    });
    let text = match output.recv_timeout(TIME_LIMIT) {
        Ok(text) => text,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the README walkthrough took more than {TIME_LIMIT:?}");
        }
    };
    let _ = child.wait();
    let text = String::from_utf8_lossy(&text);
    let mut results = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        match line.trim_end().strip_prefix(MARK) {
            Some(rest) => {
                let code = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|code| code.parse().ok())
                    .unwrap_or(-1);
                results.push((std::mem::take(&mut current), code));
            }
            None => current.push_str(line),
        }
    }
    assert_eq!(
        results.len(),
        steps.len(),
        "the walkthrough stopped early; output after the last step:\n{current}"
    );
    results
}

#[test]
fn the_readme_walkthrough_prints_what_the_readme_shows() {
    let started = Instant::now();
    for (tool, package) in [("curl", "curl"), ("jq", "jq"), ("oathtool", "oathtool")] {
        require(tool, package);
    }
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md reads");
    let steps = steps(&readme);
    let serve = steps
        .iter()
        .position(|step| step.command.contains("portcullis serve"))
        .expect("a console block starts the server");
    assert!(steps.len() > 20, "too few console steps: {steps:#?}");

    let dir = tempfile::tempdir().expect("a directory");
    let address = free_address();
    let (server, printed) = start_server(dir.path(), &address, &steps[serve].command);
    let mut failures = Vec::new();
    let compare = |failures: &mut Vec<String>, step: &Step, output: &str| {
        let actual = output_lines(output, &address);
        if !lines_match(&step.expected, &actual) {
            failures.push(format!(
                "README.md:{}: $ {}\n  the README shows:\n    {}\n  it printed:\n    {}",
                step.line,
                step.command,
                step.expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    };
    compare(&mut failures, &steps[serve], &printed);
    let rest: Vec<&Step> = steps
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != serve)
        .map(|(_, step)| step)
        .collect();
    let results = run_script(dir.path(), &address, &rest);
    for (index, (step, (output, code))) in rest.iter().zip(&results).enumerate() {
        compare(&mut failures, step, output);
        let shown = rest
            .get(index + 1)
            .is_some_and(|next| next.command.trim() == "echo $?");
        if *code != 0 && !shown {
            failures.push(format!(
                "README.md:{}: $ {}\n  exited {code}, and the README does not follow it with `echo $?`",
                step.line, step.command
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the README and the program disagree ({} of {} steps); fix the program or make the \
         README say the new truth:\n\n{}\n\nserver log:\n{}",
        failures.len(),
        steps.len(),
        failures.join("\n\n"),
        server.log()
    );
    assert!(
        started.elapsed() < TIME_LIMIT,
        "the walkthrough took {:?}",
        started.elapsed()
    );
}

#[test]
fn placeholders_match_what_they_say() {
    let lines = |text: &[&str]| text.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(line_matches("abc", "abc"));
    assert!(!line_matches("abc", "abcd"));
    assert!(line_matches(
        r#"{"id":"[..]","n":1}"#,
        r#"{"id":"0f3c","n":1}"#
    ));
    assert!(!line_matches(
        r#"{"id":"[..]","n":1}"#,
        r#"{"id":"0f3c","n":2}"#
    ));
    assert!(line_matches("[..]", ""));
    assert!(line_matches("a[..]b[..]c", "a-b-b-c"));
    assert!(
        !line_matches("ab[..]ba", "aba"),
        "the parts may not overlap"
    );
    assert!(lines_match(&lines(&["a", "...", "z"]), &lines(&["a", "z"])));
    assert!(lines_match(
        &lines(&["a", "...", "z"]),
        &lines(&["a", "b", "c", "z"])
    ));
    assert!(!lines_match(
        &lines(&["a", "...", "z"]),
        &lines(&["a", "b"])
    ));
    assert!(!lines_match(&lines(&["a"]), &lines(&["a", "b"])));
    let parsed = steps(
        "```console\n$ one \\\n  two\nout\n# note\n\n$ echo $?\n0\n```\n```sh\n$ skipped\n```\n",
    );
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].command, "one \\\n  two");
    assert_eq!(parsed[0].expected, ["out"]);
    assert_eq!(parsed[1].expected, ["0"]);
}

/// Figures live in BENCHMARKS.md, and the README refers to them (issue 23: its copy of
/// the peer figures had gone stale). A measurement in the README fails this test.
#[test]
fn the_readme_quotes_no_measurement() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md reads");
    let units = ["ns", "µs", "checks/s", "users/s", "×", "ops/s", "req/s"];
    let mut found = Vec::new();
    for (number, line) in readme.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        for (at, c) in chars.iter().enumerate() {
            if !c.is_ascii_digit() {
                continue;
            }
            let after: String = chars[at + 1..].iter().collect();
            let after = after
                .trim_start_matches([',', '.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
            let after = after.strip_prefix(' ').unwrap_or(after);
            for unit in units {
                let unit_ends = after
                    .strip_prefix(unit)
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric()));
                if unit_ends {
                    found.push(format!("README.md:{}: {line}", number + 1));
                }
            }
        }
    }
    found.dedup();
    assert!(
        found.is_empty(),
        "measurements belong in BENCHMARKS.md; link to them instead:\n{}",
        found.join("\n")
    );
}
