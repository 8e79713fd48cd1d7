//! `portcullis ldap-sync`: one run of the LDAP sources of a config file against a data
//! directory, with a progress spinner and a summary (or, with `--dry-run`, the diff).
//!
//! Exit codes: 0 every source synced, 2 a bad config or command line, 3 a source
//! failed (unreachable, refused bind, search or write failure); a failed source
//! changes nothing, and the others still run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use portcullis_ldap::{Action, RunOptions, RunReport, SyncError};

use crate::commands::open_store;
use crate::config::{DEFAULT_DATA, read_file};
use crate::error::{CliError, Outcome};

#[derive(Debug, Args)]
pub struct LdapSyncArgs {
    /// The data directory [default: the config's `data`, else ./portcullis-data].
    #[arg(long, value_name = "DIR", env = "PORTCULLIS_DATA")]
    pub data: Option<PathBuf>,
    /// The TOML config file holding `[ldap.<name>]` sources.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only this source.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Read the whole directory even when an incremental run is possible.
    #[arg(long)]
    pub full: bool,
    /// Print the run reports as JSON.
    #[arg(long)]
    pub json: bool,
}

impl From<SyncError> for CliError {
    fn from(error: SyncError) -> CliError {
        if error.is_config() {
            CliError::Input(error.to_string())
        } else {
            CliError::System(error.to_string())
        }
    }
}

pub fn ldap_sync(args: &LdapSyncArgs) -> Result<Outcome, CliError> {
    let file = read_file(&args.config)?;
    if file.ldap.is_empty() {
        return Err(CliError::Input(format!(
            "config file `{}` has no [ldap.<name>] source",
            args.config.display()
        )));
    }
    let sources = portcullis_ldap::resolve_sources(&file.ldap, args.source.as_deref())?;
    let data = args
        .data
        .clone()
        .or(file.data)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    let engine = Arc::new(open_store(&data, true)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::System(format!("cannot start the runtime: {error}")))?;
    let options = RunOptions {
        dry_run: args.dry_run,
        full: args.full,
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    let state_dir = data.join("ldap");
    // With --json, one entry per source in order: its report, or
    // `{"source", "error"}` when it failed (the exit code still says so).
    let mut reports = Vec::new();
    let mut failures: Vec<SyncError> = Vec::new();
    for source in &sources {
        match runtime.block_on(portcullis_ldap::run(&engine, source, &state_dir, &options)) {
            Ok(report) => {
                if !args.json {
                    print_report(&report);
                }
                reports.push(serde_json::to_value(&report).expect("reports print as JSON"));
            }
            Err(error) => {
                reports.push(serde_json::json!({
                    "source": source.name,
                    "error": format!("{error} (nothing changed)"),
                }));
                failures.push(error);
            }
        }
    }
    engine.close();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports print as JSON")
        );
    }
    // Every failure but the last is printed here; the last one decides the exit code
    // (and is printed by the caller).
    let last = failures.pop();
    for error in failures {
        eprintln!("portcullis: {error} (nothing changed)");
    }
    match last {
        Some(error) => {
            let config = error.is_config();
            let message = format!("{error} (nothing changed)");
            Err(if config {
                CliError::Input(message)
            } else {
                CliError::System(message)
            })
        }
        None => Ok(Outcome::Done),
    }
}

fn print_report(report: &RunReport) {
    let c = &report.counts;
    let written = match (report.dry_run, report.revision) {
        (true, _) => "dry run: nothing written".to_owned(),
        (false, Some(revision)) => format!("revision {revision}"),
        (false, None) => "nothing to change".to_owned(),
    };
    println!(
        "ldap:{} {:?} run in {} ms, {written}",
        report.source, report.mode, report.duration_ms
    );
    println!(
        "  directory: {} users, {} groups",
        c.directory_users, c.directory_groups
    );
    println!(
        "  users: {} added, {} adopted, {} changed, {} deactivated, {} removed",
        c.users_added, c.users_adopted, c.users_changed, c.users_deactivated, c.users_removed
    );
    println!(
        "  groups: {} added, {} adopted, {} changed, {} removed or emptied; memberships +{} -{}",
        c.groups_added,
        c.groups_adopted,
        c.groups_changed,
        c.groups_removed,
        c.memberships_added,
        c.memberships_removed
    );
    if report.dry_run {
        for change in &report.changes {
            let mark = match change.action {
                Action::Added | Action::Adopted => "+",
                Action::Changed => "~",
                Action::Deactivated | Action::Emptied | Action::Removed => "-",
            };
            let action = match change.action {
                Action::Added => "added",
                Action::Adopted => "adopted",
                Action::Changed => "changed",
                Action::Deactivated => "deactivated",
                Action::Emptied => "emptied",
                Action::Removed => "removed",
            };
            let details = if change.details.is_empty() {
                String::new()
            } else {
                format!(": {}", change.details.join(", "))
            };
            println!(
                "  {mark} {} `{}` {action}{details}",
                change.kind, change.name
            );
        }
    }
    for clash in &report.clashes {
        let reason = clash
            .reason
            .as_ref()
            .map_or(String::new(), |reason| format!(" ({reason})"));
        println!(
            "  clash: {} {} `{}` of `{}` is held by {}; not overwritten{reason}",
            clash.kind, clash.field, clash.value, clash.dn, clash.held_by
        );
    }
    for warning in &report.warnings {
        println!("  warning: {warning}");
    }
}
