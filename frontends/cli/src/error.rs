//! The one place where errors become exit codes and messages on stderr.
//!
//! Exit codes: 0 done (or allowed), 1 denied, 2 bad input (unknown names, bad
//! arguments, a refused file, a conflict), 3 could not run (a store held by a running
//! server: use `--server`; a server that cannot be reached, refuses the token or
//! fails; storage, network, a broken configuration the program cannot work around).

use std::path::PathBuf;
use std::process::{ExitCode, Termination};

use portcullis_engine::{Error, StoreError};

/// Why a command could not do its job.
#[derive(Debug)]
pub enum CliError {
    /// The arguments, the configuration or an input value is wrong.
    Input(String),
    /// There is no store where `--data` points.
    NoStore(PathBuf),
    Engine(Error),
    /// A failure of the system around us (binding a socket, reading a file).
    System(String),
}

impl From<Error> for CliError {
    fn from(error: Error) -> CliError {
        CliError::Engine(error)
    }
}

impl From<portcullis_engine::NotFound> for CliError {
    fn from(error: portcullis_engine::NotFound) -> CliError {
        CliError::Engine(Error::from(error))
    }
}

impl CliError {
    fn code_and_message(&self) -> (u8, String) {
        match self {
            CliError::Input(message) => (2, message.clone()),
            CliError::NoStore(path) => (
                2,
                format!(
                    "no store at `{}` (pass --data DIR, or start `portcullis serve` once to create one)",
                    path.display()
                ),
            ),
            CliError::System(message) => (3, message.clone()),
            CliError::Engine(error) => match error {
                // Every refusal of a write is the input's: bad input, exit 2.
                Error::Validation(_) => (2, error.to_string()),
                Error::Store(store) => match store {
                    StoreError::Locked(path) => (
                        3,
                        format!(
                            "the store at `{path}` is in use by another process (a running `portcullis serve`?): ask the server with --server URL (or PORTCULLIS_SERVER) and a token in PORTCULLIS_TOKEN or --token-file, or stop it first"
                        ),
                    ),
                    StoreError::Open { .. }
                    | StoreError::Io(_)
                    | StoreError::Corrupt { .. }
                    | StoreError::Schema { .. } => (3, error.to_string()),
                },
                Error::Closed | Error::Cluster(_) => (3, error.to_string()),
            },
        }
    }
}

/// What `main` returns: the exit code, after printing any error.
pub enum Outcome {
    Done,
    Allowed,
    Denied,
    Failed(CliError),
}

impl From<Result<Outcome, CliError>> for Outcome {
    fn from(result: Result<Outcome, CliError>) -> Outcome {
        result.unwrap_or_else(Outcome::Failed)
    }
}

impl Termination for Outcome {
    fn report(self) -> ExitCode {
        match self {
            Outcome::Done | Outcome::Allowed => ExitCode::SUCCESS,
            Outcome::Denied => ExitCode::from(1),
            Outcome::Failed(error) => {
                let (code, message) = error.code_and_message();
                eprintln!("portcullis: {message}");
                ExitCode::from(code)
            }
        }
    }
}
