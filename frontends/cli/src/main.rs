//! `portcullis`: the Portcullis server (`serve`) and the commands that work on a data
//! directory directly (`check`, `explain`, `list-assets`, `ldap-sync`, `token`, `user`,
//! `import`, `export`), or, all but `ldap-sync`, ask a running server (`--server`).
//!
//! Exit codes are decided in `error.rs` only: 0 done or allowed, 1 denied, 2 bad
//! input, 3 could not run (a locked store, an unreachable or refusing server, any
//! other failure).

mod client;
mod commands;
mod config;
mod demo;
mod error;
mod ldap;
mod serve;
mod spreadsheets;
mod transfer;

use clap::{Parser, Subcommand};

use crate::commands::{CheckArgs, ListAssetsArgs, TokenCommand, UserCommand};
use crate::error::Outcome;
use crate::serve::ServeArgs;
use crate::spreadsheets::{ExportArgs, ImportArgs};

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
    /// Sync users, groups and membership from the LDAP / Active Directory sources of a
    /// config file. Exits 0 when done, 2 on a bad config, 3 when a source failed.
    LdapSync(ldap::LdapSyncArgs),
    /// Create, list or revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write every user, group, node, asset or rule as a CSV or XLSX sheet (or, with
    /// --template, an empty sheet to fill in).
    Export(ExportArgs),
    /// Read a CSV or XLSX sheet into the store: the whole file or nothing. Exits 2
    /// listing every problem when the file has any.
    Import(ImportArgs),
    /// Sign-in administration: set a password, reset MFA, lift a lockout,
    /// housekeeping.
    #[command(subcommand)]
    User(UserCommand),
}

/// mimalloc maps its arenas on transparent huge pages (when the kernel's THP mode is
/// `madvise` or `always`), so a check's dependent reads through a multi-gigabyte
/// snapshot do not each miss the TLB. Embedders of the engine should do the same
/// (docs/snapshot.md, "Memory and huge pages").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Outcome {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check(args) => commands::check(&args),
        Command::Explain(args) => commands::explain(&args),
        Command::ListAssets(args) => commands::list_assets(&args),
        Command::LdapSync(args) => ldap::ldap_sync(&args),
        Command::Token(command) => commands::token(&command),
        Command::Export(args) => spreadsheets::export(&args),
        Command::Import(args) => spreadsheets::import(&args),
        Command::User(command) => commands::user(&command),
    };
    result.into()
}
