//! The commands that work on a data directory directly: check, explain, list-assets
//! and token. They open the store themselves, so a running server (which holds the
//! store's lock) makes them stop with a clear message.

use portcullis_engine::Actor;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use portcullis_engine::{
    Actions, Engine, EntityKind, Evaluator, ListQuery, Op, Query, Time, TokenSpec, protocol_name,
};
use serde_json::{Value, json};

use crate::config::{DEFAULT_DATA, STORE_FILE};
use crate::error::{CliError, Outcome};

/// The actor recorded in the operation log for writes made here.
const ACTOR: &str = "cli";

#[derive(Debug, Args)]
pub struct DataArg {
    /// The data directory (the store is `DIR/portcullis.redb`).
    #[arg(long, value_name = "DIR", env = "PORTCULLIS_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
}

/// Opens the store in `data`. Without `create`, a missing store is an error rather
/// than a new empty one (a mistyped `--data` should not answer "denied").
pub fn open_store(data: &Path, create: bool) -> Result<Engine, CliError> {
    let path = data.join(STORE_FILE);
    if !create && !path.exists() {
        return Err(CliError::NoStore(path));
    }
    Ok(Engine::open(&path)?)
}

fn parse_time(text: &str) -> Result<Time, CliError> {
    text.parse()
        .map_err(|error| CliError::Input(format!("--at: {error}")))
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values print")
    );
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The user, by username or id.
    #[arg(long)]
    pub user: String,
    /// The asset, by name or id.
    #[arg(long)]
    pub asset: String,
    /// The account's username on the asset, or `@INPUT` / `@ANON`.
    #[arg(long)]
    pub account: String,
    /// The protocol, such as `ssh` or `rdp`.
    #[arg(long)]
    pub protocol: String,
    /// The action: connect, upload, download, copy, paste, delete, share (or
    /// transfer, clipboard, all: every one of them).
    #[arg(long)]
    pub action: String,
    /// Judge at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Print the answer as JSON, as the HTTP API gives it.
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    fn query_parts(&self) -> Result<(Actions, Box<str>, Time), CliError> {
        let action = Actions::parse_name(&self.action)
            .map_err(|error| CliError::Input(format!("--action: {error}")))?;
        let protocol = protocol_name(&self.protocol)
            .map_err(|error| CliError::Input(format!("--protocol: {error}")))?;
        let at = self
            .at
            .as_deref()
            .map(parse_time)
            .transpose()?
            .unwrap_or_else(Time::now);
        Ok((action, protocol, at))
    }
}

fn names(actions: Actions) -> String {
    let names: Vec<&str> = actions.names().collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

/// `portcullis check`: exit 0 when allowed, 1 when denied.
pub fn check(args: &CheckArgs) -> Result<Outcome, CliError> {
    let (action, protocol, at) = args.query_parts()?;
    let engine = open_store(&args.data.data, false)?;
    let snapshot = engine.snapshot();
    let decision = snapshot.check(&Query {
        user: &args.user,
        asset: &args.asset,
        account: &args.account,
        protocol: &protocol,
        action,
        at,
    })?;
    if args.json {
        print_json(&portcullis_http::decision_json(&decision));
    } else {
        let verdict = if decision.allowed {
            "allowed"
        } else {
            "denied"
        };
        let until = decision
            .valid_until
            .map(|until| format!(", until {until}"))
            .unwrap_or_default();
        println!(
            "{verdict} (granted: {}; revision {}{until})",
            names(decision.actions),
            decision.revision
        );
    }
    Ok(if decision.allowed {
        Outcome::Allowed
    } else {
        Outcome::Denied
    })
}

/// `portcullis explain`: like check, with the reasons, rule by rule.
pub fn explain(args: &CheckArgs) -> Result<Outcome, CliError> {
    let (action, protocol, at) = args.query_parts()?;
    let engine = open_store(&args.data.data, false)?;
    let snapshot = engine.snapshot();
    let explanation = snapshot.explain(&Query {
        user: &args.user,
        asset: &args.asset,
        account: &args.account,
        protocol: &protocol,
        action,
        at,
    })?;
    let allowed = explanation.decision.allowed;
    if args.json {
        print_json(&portcullis_http::explanation_json(&explanation));
    } else {
        let verdict = if allowed { "allowed" } else { "denied" };
        println!(
            "{verdict}: {} on {} as {} over {}, {} at {at} (granted: {}; revision {})",
            args.user,
            args.asset,
            args.account,
            protocol,
            args.action,
            names(explanation.decision.actions),
            explanation.decision.revision
        );
        if !explanation.reasons.is_empty() {
            let reasons: Vec<&str> = explanation.reasons.iter().map(|r| r.code()).collect();
            println!("reasons: {}", reasons.join(", "));
        }
        for verdict in &explanation.rules {
            let effect = serde_json::to_value(verdict.effect).expect("effects serialize");
            let state = if verdict.applied {
                "applied"
            } else {
                "not applied"
            };
            let reason = verdict
                .reason
                .map(|r| format!(" ({})", r.code()))
                .unwrap_or_default();
            let via = if verdict.via.is_empty() {
                "names the user".to_owned()
            } else {
                format!("via {}", verdict.via.join(" > "))
            };
            println!(
                "  rule `{}` [{}] {state}{reason}: {}; {via}",
                verdict.name,
                effect.as_str().unwrap_or_default(),
                names(verdict.actions)
            );
        }
    }
    Ok(if allowed {
        Outcome::Allowed
    } else {
        Outcome::Denied
    })
}

#[derive(Debug, Args)]
pub struct ListAssetsArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The user, by username or id.
    #[arg(long)]
    pub user: String,
    /// Only assets under this node (path or id).
    #[arg(long)]
    pub node: Option<String>,
    /// Judge at this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `portcullis list-assets`: every asset the user may reach, one per line.
pub fn list_assets(args: &ListAssetsArgs) -> Result<Outcome, CliError> {
    let at = args
        .at
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or_else(Time::now);
    let engine = open_store(&args.data.data, false)?;
    let snapshot = engine.snapshot();
    let mut assets = Vec::new();
    let mut offset = 0;
    loop {
        let page = snapshot.user_assets_page(&args.user, args.node.as_deref(), at, offset, 1000)?;
        let read = page.items.len() as u64;
        assets.extend(page.items);
        offset += read;
        if read == 0 || offset >= page.total {
            break;
        }
    }
    assets.sort_by(|a, b| a.name.cmp(&b.name));
    if args.json {
        let items: Vec<Value> = assets
            .iter()
            .map(|asset| serde_json::to_value(&**asset).expect("assets serialize"))
            .collect();
        print_json(&json!({"revision": snapshot.revision(), "total": items.len(), "items": items}));
    } else {
        for asset in &assets {
            println!("{}\t{}\t{}", asset.name, asset.address, asset.platform);
        }
    }
    Ok(Outcome::Done)
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print its secret (shown this once).
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    List(TokenListArgs),
    /// Delete a token: it stops working at once.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub data: DataArg,
    #[arg(long)]
    pub name: String,
    /// A role whose permissions the token may use (repeat for several):
    /// system-admin, system-auditor, checker, scim or a custom role.
    #[arg(long = "role", required = true)]
    pub roles: Vec<String>,
    /// The user the token acts for.
    #[arg(long)]
    pub user: Option<String>,
    /// When the token stops working (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub data: DataArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The token's name or id.
    pub token: String,
}

pub fn token(command: &TokenCommand) -> Result<Outcome, CliError> {
    match command {
        TokenCommand::Create(args) => {
            let expires_at = args
                .expires_at
                .as_deref()
                .map(|text| {
                    text.parse::<Time>()
                        .map_err(|error| CliError::Input(format!("--expires-at: {error}")))
                })
                .transpose()?;
            let engine = open_store(&args.data.data, true)?;
            let spec = TokenSpec {
                id: None,
                name: args.name.clone(),
                user: args.user.clone(),
                roles: args.roles.clone(),
                expires_at,
                description: args.description.clone(),
            };
            let (outcome, secret) = engine.create_token(&Actor::system(ACTOR), spec)?;
            engine.close();
            eprintln!(
                "portcullis: token `{}` created (revision {}); its secret is shown this once:",
                args.name, outcome.revision
            );
            println!("{secret}");
            Ok(Outcome::Done)
        }
        TokenCommand::List(args) => {
            let engine = open_store(&args.data.data, false)?;
            let snapshot = engine.snapshot();
            let page = snapshot.list_json(
                EntityKind::Token,
                &ListQuery {
                    limit: usize::MAX,
                    ..ListQuery::default()
                },
            );
            if args.json {
                print_json(
                    &json!({"revision": snapshot.revision(), "total": page.total, "items": page.items}),
                );
                return Ok(Outcome::Done);
            }
            for token in &page.items {
                let roles: Vec<&str> = token["roles"]
                    .as_array()
                    .map(|roles| roles.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let expires = token["expires_at"].as_str().unwrap_or("never");
                println!(
                    "{}\troles: {}\texpires: {expires}\tcreated {} by {}",
                    token["name"].as_str().unwrap_or_default(),
                    roles.join(","),
                    token["created_at"].as_str().unwrap_or_default(),
                    token["created_by"].as_str().unwrap_or_default(),
                );
            }
            Ok(Outcome::Done)
        }
        TokenCommand::Revoke(args) => {
            let engine = open_store(&args.data.data, false)?;
            let outcome = engine.write(
                &Actor::system(ACTOR),
                vec![Op::Delete {
                    kind: EntityKind::Token,
                    target: args.token.clone(),
                }],
            )?;
            engine.close();
            eprintln!(
                "portcullis: token `{}` revoked (revision {})",
                args.token, outcome.revision
            );
            Ok(Outcome::Done)
        }
    }
}

/// An engine sign-in error as a command error: storage and engine failures keep their
/// exit codes, refusals are bad input (2).
pub fn auth_error(error: portcullis_engine::AuthError) -> CliError {
    match error {
        portcullis_engine::AuthError::Engine(error) => CliError::Engine(error),
        other => CliError::Input(other.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Set a user's password, read from the first line of stdin (never an argument,
    /// which other users of the machine could see). The password policy applies.
    SetPassword(SetPasswordArgs),
    /// Forget a user's second factors (a lost phone); they enrol again if MFA is
    /// required.
    ResetMfa(UserArgs),
    /// Lift a sign-in lockout now.
    Unlock(UserArgs),
    /// Deactivate idle users (when configured) and purge stale sign-in records.
    Housekeeping(HousekeepingArgs),
}

#[derive(Debug, Args)]
pub struct AuthConfigArg {
    /// A TOML config file whose `[auth]` table holds the sign-in settings (argon2,
    /// password policy, …); `PORTCULLIS_*` variables apply over it.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetPasswordArgs {
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub config: AuthConfigArg,
    /// The user, by username or id.
    #[arg(long)]
    pub user: String,
    /// The user must choose a new password at their next sign-in.
    #[arg(long)]
    pub must_change: bool,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub config: AuthConfigArg,
    /// The user, by username or id.
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, Args)]
pub struct HousekeepingArgs {
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub config: AuthConfigArg,
    #[arg(long)]
    pub json: bool,
}

fn open_auth(
    data: &DataArg,
    config: &AuthConfigArg,
) -> Result<(std::sync::Arc<Engine>, portcullis_engine::Auth), CliError> {
    let file = match &config.config {
        Some(path) => crate::config::read_file(path)?.auth,
        None => None,
    };
    let settings = crate::config::auth_settings(file)?;
    let engine = std::sync::Arc::new(open_store(&data.data, false)?);
    let auth = portcullis_engine::Auth::new(engine.clone(), settings).map_err(auth_error)?;
    Ok((engine, auth))
}

pub fn user(command: &UserCommand) -> Result<Outcome, CliError> {
    let now = Time::now();
    match command {
        UserCommand::SetPassword(args) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|error| CliError::System(format!("cannot read stdin: {error}")))?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(CliError::Input(
                    "give the new password on the first line of stdin".to_owned(),
                ));
            }
            let (engine, auth) = open_auth(&args.data, &args.config)?;
            auth.set_password(ACTOR, &args.user, password, args.must_change, now)
                .map_err(auth_error)?;
            engine.close();
            eprintln!("portcullis: password of `{}` set", args.user);
            Ok(Outcome::Done)
        }
        UserCommand::ResetMfa(args) => {
            let (engine, auth) = open_auth(&args.data, &args.config)?;
            auth.reset_mfa(ACTOR, &args.user, now).map_err(auth_error)?;
            engine.close();
            eprintln!("portcullis: second factors of `{}` forgotten", args.user);
            Ok(Outcome::Done)
        }
        UserCommand::Unlock(args) => {
            let (engine, auth) = open_auth(&args.data, &args.config)?;
            auth.unlock(ACTOR, &args.user, now).map_err(auth_error)?;
            engine.close();
            eprintln!("portcullis: `{}` unlocked", args.user);
            Ok(Outcome::Done)
        }
        UserCommand::Housekeeping(args) => {
            let (engine, auth) = open_auth(&args.data, &args.config)?;
            let report = auth.housekeeping(now).map_err(auth_error)?;
            engine.close();
            if args.json {
                print_json(&json!(report));
            } else {
                for user in &report.deactivated {
                    println!("deactivated\t{user}");
                }
                eprintln!(
                    "portcullis: {} deactivated, {} stale sign-in records purged",
                    report.deactivated.len(),
                    report.purged
                );
            }
            Ok(Outcome::Done)
        }
    }
}
