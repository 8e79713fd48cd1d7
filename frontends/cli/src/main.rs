//! `portcullis`: the Portcullis server (`serve`) and the commands that work on a data
//! directory directly (`check`, `explain`, `list-assets`, `token`, `user`).
//!
//! Exit codes are decided in `error.rs` only: 0 done or allowed, 1 denied, 2 bad
//! input, 3 any other failure.

mod commands;
mod config;
mod demo;
mod error;
mod serve;

use clap::{Parser, Subcommand};

use crate::commands::{CheckArgs, ListAssetsArgs, TokenCommand, UserCommand};
use crate::error::Outcome;
use crate::serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Portcullis: access decisions for infrastructure, as a server or on a data directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (/api/v1, /healthz, /metrics).
    Serve(ServeArgs),
    /// May this user reach this asset as this account over this protocol and do this
    /// action? Exits 0 when allowed, 1 when denied, 2 on bad input.
    Check(CheckArgs),
    /// Like check, with the reasons, rule by rule.
    Explain(CheckArgs),
    /// The assets a user may reach.
    ListAssets(ListAssetsArgs),
    /// Create, list or revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sign-in administration: set a password, reset MFA, lift a lockout,
    /// housekeeping.
    #[command(subcommand)]
    User(UserCommand),
}

fn main() -> Outcome {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check(args) => commands::check(&args),
        Command::Explain(args) => commands::explain(&args),
        Command::ListAssets(args) => commands::list_assets(&args),
        Command::Token(command) => commands::token(&command),
        Command::User(command) => commands::user(&command),
    };
    result.into()
}
