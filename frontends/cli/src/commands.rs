//! The commands that work on a data directory, or ask a running server with
//! `--server`: check, explain, list-assets, token and user. On a data directory they
//! open the store themselves, so a running server (which holds the store's lock) makes
//! them stop with a message that says to use `--server`.
//!
//! Both ways print the same thing: each command turns what it has (the engine's
//! values, or the server's JSON) into the HTTP API's JSON, and prints from that.

use portcullis_engine::Actor;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use portcullis_engine::{Actions, Engine, EntityKind, Evaluator, ListQuery, Op, Time, TokenSpec};
use portcullis_http::CheckRequest;
use portcullis_signin::{Auth, AuthError};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, segment};
use crate::config::{DEFAULT_DATA, STORE_FILE};
use crate::error::{CliError, Outcome};

/// The actor recorded in the operation log for writes made here.
const ACTOR: &str = "cli";

#[derive(Debug, Args)]
pub struct DataArg {
    /// The data directory (the store is `DIR/portcullis.redb`).
    #[arg(long, value_name = "DIR", env = "PORTCULLIS_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// Ask the server running at this URL (such as http://127.0.0.1:8080) instead of
    /// opening the data directory; the token comes from PORTCULLIS_TOKEN or
    /// --token-file.
    #[arg(long, value_name = "URL", env = "PORTCULLIS_SERVER")]
    pub server: Option<String>,
    /// With --server: a file whose first line is the API token.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl DataArg {
    /// The client of the running server, when `--server` names one.
    pub fn client(&self) -> Result<Option<Client>, CliError> {
        self.server
            .as_deref()
            .map(|server| Client::new(server, self.token_file.as_deref()))
            .transpose()
    }
}

/// Opens the store in `data`. Without `create`, a missing store is an error rather
/// than a new empty one (a mistyped `--data` should not answer "denied").
pub fn open_store(data: &Path, create: bool) -> Result<Engine, CliError> {
    open_store_with(data, create, portcullis_engine::EngineOptions::default())
}

/// [`open_store`] with the engine's options (`serve`'s, from its configuration).
pub fn open_store_with(
    data: &Path,
    create: bool,
    options: portcullis_engine::EngineOptions,
) -> Result<Engine, CliError> {
    let path = data.join(STORE_FILE);
    if !create && !path.exists() {
        return Err(CliError::NoStore(path));
    }
    Ok(Engine::open_with(&path, options)?)
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
    /// The question, as the HTTP API takes it (`at` always set: now, unless given),
    /// with its action and protocol checked.
    fn question(&self) -> Result<(CheckRequest, Actions, Box<str>), CliError> {
        let at = self
            .at
            .as_deref()
            .map(parse_time)
            .transpose()?
            .unwrap_or_else(Time::now);
        let mut question = CheckRequest {
            user: self.user.clone(),
            asset: self.asset.clone(),
            account: self.account.clone(),
            protocol: self.protocol.clone(),
            action: self.action.clone(),
            at: Some(at),
            min_revision: None,
        };
        let (action, protocol) = question
            .action_and_protocol()
            .map_err(|error| CliError::Input(format!("--{error}")))?;
        question.protocol = protocol.to_string();
        Ok((question, action, protocol))
    }

    /// The question and the answer of `/api/v1/check` (`explain`: of
    /// `/api/v1/explain`), from the server or from the store.
    fn answer(&self, explain: bool) -> Result<(CheckRequest, Value), CliError> {
        let (question, action, protocol) = self.question()?;
        if let Some(client) = self.data.client()? {
            let path = if explain {
                "/api/v1/explain"
            } else {
                "/api/v1/check"
            };
            let answer = client.json(client.request(Method::POST, path).json(&question))?;
            return Ok((question, answer));
        }
        let engine = open_store(&self.data.data, false)?;
        let snapshot = engine.snapshot();
        let query = question.query(action, &protocol, Time::now);
        let answer = if explain {
            portcullis_http::explanation_json(&snapshot.explain(&query)?)
        } else {
            portcullis_http::decision_json(&snapshot.check(&query)?)
        };
        Ok((question, answer))
    }
}

/// `connect, upload` from a JSON list of action names; `nothing` when empty.
fn names(actions: &Value) -> String {
    let names: Vec<&str> = actions
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

fn verdict(answer: &Value) -> (&'static str, Outcome) {
    if answer["allowed"].as_bool() == Some(true) {
        ("allowed", Outcome::Allowed)
    } else {
        ("denied", Outcome::Denied)
    }
}

/// `portcullis check`: exit 0 when allowed, 1 when denied.
pub fn check(args: &CheckArgs) -> Result<Outcome, CliError> {
    let (_, answer) = args.answer(false)?;
    let (verdict, outcome) = verdict(&answer);
    if args.json {
        print_json(&answer);
    } else {
        let until = answer["valid_until"]
            .as_str()
            .map(|until| format!(", until {until}"))
            .unwrap_or_default();
        println!(
            "{verdict} (granted: {}; revision {}{until})",
            names(&answer["actions"]),
            answer["revision"]
        );
    }
    Ok(outcome)
}

/// `portcullis explain`: like check, with the reasons, rule by rule.
pub fn explain(args: &CheckArgs) -> Result<Outcome, CliError> {
    let (question, answer) = args.answer(true)?;
    let (verdict, outcome) = verdict(&answer);
    if args.json {
        print_json(&answer);
        return Ok(outcome);
    }
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let at = question.at.map(|at| at.to_string()).unwrap_or_default();
    println!(
        "{verdict}: {} on {} as {} over {}, {} at {at} (granted: {}; revision {})",
        args.user,
        args.asset,
        args.account,
        question.protocol,
        args.action,
        names(&answer["actions"]),
        answer["revision"]
    );
    let reasons: Vec<&str> = answer["reasons"]
        .as_array()
        .map(|reasons| reasons.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !reasons.is_empty() {
        println!("reasons: {}", reasons.join(", "));
    }
    for rule in answer["rules"].as_array().into_iter().flatten() {
        let state = if rule["applied"].as_bool() == Some(true) {
            "applied"
        } else {
            "not applied"
        };
        let reason = rule["reason"]
            .as_str()
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        let via: Vec<&str> = rule["via"]
            .as_array()
            .map(|via| via.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let via = if via.is_empty() {
            "names the user".to_owned()
        } else {
            format!("via {}", via.join(" > "))
        };
        println!(
            "  rule `{}` [{}] {state}{reason}: {}; {via}",
            text(&rule["name"]),
            text(&rule["effect"]),
            names(&rule["actions"])
        );
    }
    Ok(outcome)
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
    let (revision, mut assets) = match args.data.client()? {
        Some(client) => {
            let path = format!("/api/v1/users/{}/assets", segment(&args.user));
            let mut query = vec![("at", at.to_string())];
            if let Some(node) = &args.node {
                query.push(("node", node.clone()));
            }
            client.all_pages(&path, &query)?
        }
        None => {
            let engine = open_store(&args.data.data, false)?;
            let snapshot = engine.snapshot();
            let mut assets = Vec::new();
            let mut offset = 0;
            loop {
                let page = snapshot.user_assets_page(
                    &args.user,
                    args.node.as_deref(),
                    at,
                    offset,
                    1000,
                )?;
                let read = page.items.len() as u64;
                assets.extend(
                    page.items
                        .iter()
                        .map(|asset| serde_json::to_value(&**asset).expect("assets serialize")),
                );
                offset += read;
                if read == 0 || offset >= page.total {
                    break;
                }
            }
            (json!(snapshot.revision()), assets)
        }
    };
    let name = |asset: &Value| asset["name"].as_str().unwrap_or_default().to_owned();
    assets.sort_by_key(name);
    if args.json {
        print_json(&json!({"revision": revision, "total": assets.len(), "items": assets}));
    } else {
        for asset in &assets {
            println!(
                "{}\t{}\t{}",
                name(asset),
                asset["address"].as_str().unwrap_or_default(),
                asset["platform"].as_str().unwrap_or_default()
            );
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
            let spec = TokenSpec {
                id: None,
                name: args.name.clone(),
                user: args.user.clone(),
                roles: args.roles.clone(),
                expires_at,
                description: args.description.clone(),
            };
            let (revision, secret) = match args.data.client()? {
                Some(client) => {
                    let answer = client.json(
                        client
                            .request(Method::POST, "/api/v1/tokens")
                            .json(&serde_json::to_value(&spec).expect("token specs serialize")),
                    )?;
                    let secret = answer["secret"].as_str().unwrap_or_default().to_owned();
                    (answer["revision"].clone(), secret)
                }
                None => {
                    let engine = open_store(&args.data.data, true)?;
                    let (outcome, secret) = engine.create_token(&Actor::system(ACTOR), spec)?;
                    engine.close();
                    (json!(outcome.revision), secret)
                }
            };
            eprintln!(
                "portcullis: token `{}` created (revision {revision}); its secret is shown this once:",
                args.name
            );
            println!("{secret}");
            Ok(Outcome::Done)
        }
        TokenCommand::List(args) => {
            let (revision, total, items) = match args.data.client()? {
                Some(client) => {
                    let (revision, items) = client.all_pages("/api/v1/tokens", &[])?;
                    (revision, json!(items.len()), items)
                }
                None => {
                    let engine = open_store(&args.data.data, false)?;
                    let snapshot = engine.snapshot();
                    let page = snapshot.list_json(
                        EntityKind::Token,
                        &ListQuery {
                            limit: usize::MAX,
                            ..ListQuery::default()
                        },
                    );
                    (json!(snapshot.revision()), json!(page.total), page.items)
                }
            };
            if args.json {
                print_json(&json!({"revision": revision, "total": total, "items": items}));
                return Ok(Outcome::Done);
            }
            for token in &items {
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
            let revision = match args.data.client()? {
                Some(client) => {
                    let path = format!("/api/v1/tokens/{}", segment(&args.token));
                    client.json(client.request(Method::DELETE, &path))?["revision"].clone()
                }
                None => {
                    let engine = open_store(&args.data.data, false)?;
                    let outcome = engine.write(
                        &Actor::system(ACTOR),
                        vec![Op::Delete {
                            kind: EntityKind::Token,
                            target: args.token.clone(),
                        }],
                    )?;
                    engine.close();
                    json!(outcome.revision)
                }
            };
            eprintln!(
                "portcullis: token `{}` revoked (revision {revision})",
                args.token
            );
            Ok(Outcome::Done)
        }
    }
}

/// An engine sign-in error as a command error: storage and engine failures keep their
/// exit codes, refusals are bad input (2).
pub fn auth_error(error: AuthError) -> CliError {
    match error {
        AuthError::Engine(error) => CliError::Engine(error),
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
    /// Hand a user or group an identity source (SCIM, an LDAP directory) adopted
    /// back to `local`: it keeps its id, memberships, rules and history.
    Release(ReleaseArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["user", "group"])))]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The user, by username or id.
    #[arg(long)]
    pub user: Option<String>,
    /// The group, by name or id.
    #[arg(long)]
    pub group: Option<String>,
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
    pub target: UserArgs,
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
) -> Result<(std::sync::Arc<Engine>, Auth), CliError> {
    let file = match &config.config {
        Some(path) => crate::config::read_file(path)?.auth,
        None => None,
    };
    let settings = crate::config::auth_settings(file)?;
    let engine = std::sync::Arc::new(open_store(&data.data, false)?);
    let auth = Auth::new(engine.clone(), settings).map_err(auth_error)?;
    Ok((engine, auth))
}

/// Sends a sign-in administration request to the server; the answer's JSON.
fn ask(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let request = client.request(method, path);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    match client.send(request)? {
        Ok(response) => Ok(response.json().unwrap_or(Value::Null)),
        Err(refusal) => Err(refusal.into()),
    }
}

/// A change to `target`'s sign-in state: the request (method, what, body) to the
/// server's `/api/v1/users/{user}/{what}` when `target` names a server, else `local`
/// on the store.
fn change_signin(
    target: &UserArgs,
    (method, what, body): (Method, &str, Option<Value>),
    local: impl FnOnce(&Auth) -> Result<(), AuthError>,
) -> Result<(), CliError> {
    let UserArgs { data, config, user } = target;
    if let Some(client) = data.client()? {
        let path = format!("/api/v1/users/{}/{what}", segment(user));
        ask(&client, method, &path, body)?;
    } else {
        let (engine, auth) = open_auth(data, config)?;
        local(&auth).map_err(auth_error)?;
        engine.close();
    }
    Ok(())
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
            let (user, must_change) = (&args.target.user, args.must_change);
            let body = json!({"password": password, "must_change_password": must_change});
            change_signin(
                &args.target,
                (Method::PUT, "password", Some(body)),
                |auth| auth.set_password(ACTOR, user, password, must_change, now),
            )?;
            eprintln!("portcullis: password of `{user}` set");
            Ok(Outcome::Done)
        }
        UserCommand::ResetMfa(args) | UserCommand::Unlock(args) => {
            // What the server's route (`DELETE /api/v1/users/{user}/…`) and sign-in do.
            type Forget = fn(&Auth, &str, &str, Time) -> Result<(), AuthError>;
            let (segment, forget, (before, after)): (_, Forget, _) = match command {
                UserCommand::ResetMfa(_) => {
                    ("mfa", Auth::reset_mfa, ("second factors of ", " forgotten"))
                }
                _ => ("lockout", Auth::unlock, ("", " unlocked")),
            };
            change_signin(args, (Method::DELETE, segment, None), |auth| {
                forget(auth, ACTOR, &args.user, now)
            })?;
            eprintln!("portcullis: {before}`{}`{after}", args.user);
            Ok(Outcome::Done)
        }
        UserCommand::Release(args) => {
            let (kind, target) = match (&args.user, &args.group) {
                (Some(user), _) => (EntityKind::User, user),
                (None, Some(group)) => (EntityKind::Group, group),
                (None, None) => {
                    return Err(CliError::Input("give --user or --group".to_owned()));
                }
            };
            if let Some(client) = args.data.client()? {
                let path = format!("/api/v1/{}s/{}/release", kind.noun(), segment(target));
                ask(&client, Method::POST, &path, Some(json!({})))?;
            } else {
                let engine = open_store(&args.data.data, false)?;
                engine.write(
                    &Actor::system(ACTOR),
                    vec![Op::Release {
                        kind,
                        target: target.clone(),
                    }],
                )?;
                engine.close();
            }
            eprintln!("portcullis: {kind} `{target}` released to `local`");
            Ok(Outcome::Done)
        }
        UserCommand::Housekeeping(args) => {
            let report = match args.data.client()? {
                Some(client) => ask(
                    &client,
                    Method::POST,
                    "/api/v1/auth/housekeeping",
                    Some(json!({})),
                )?,
                None => {
                    let (engine, auth) = open_auth(&args.data, &args.config)?;
                    let report = auth.housekeeping(now).map_err(auth_error)?;
                    engine.close();
                    json!(report)
                }
            };
            let deactivated: Vec<&str> = report["deactivated"]
                .as_array()
                .map(|users| users.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if args.json {
                print_json(&report);
            } else {
                for user in &deactivated {
                    println!("deactivated\t{user}");
                }
                eprintln!(
                    "portcullis: {} deactivated, {} stale sign-in records purged",
                    deactivated.len(),
                    report["purged"]
                );
            }
            Ok(Outcome::Done)
        }
    }
}
