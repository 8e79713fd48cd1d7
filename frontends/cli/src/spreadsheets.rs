//! CSV and XLSX in and out: the `import` and `export` commands, and the routes
//! `GET /api/v1/{kind}/export` and `POST /api/v1/{kind}/import` that `serve` adds to
//! the HTTP stack's route table. The cli wires `portcullis-tabular` to the http crate:
//! tabular knows no HTTP and the http crate no spreadsheet, so the handlers live here,
//! the one crate that knows both; the sheets themselves are tabular's business.
//!
//! The routes are concrete per kind (`/api/v1/users/export`, …), so each carries its
//! kind's permission and the static segment wins over `/api/v1/users/{user}`: a user
//! named `export` or `import` is reached by id on the admin API.

use portcullis_engine::Actor;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use portcullis_engine::Engine;
use portcullis_http::{Access, ApiError, AppState, Caller, Route};
use portcullis_tabular::{
    Format, ImportError, ImportOptions, ImportReport, Kind, Problem, Progress, Stage,
};
use serde::Deserialize;
use serde_json::Value;

use crate::client::read_json;
use crate::commands::{DataArg, open_store};
use crate::error::{CliError, Outcome};

/// The actor recorded in the operation log for imports made here.
const ACTOR: &str = "cli:import";

/// The largest file the import route takes. A million-row sheet (the row limit) of
/// users is about 100 MiB of CSV; this admits the common case and keeps one request
/// from holding a gigabyte.
pub const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What `export` and `import` both take: the store or server, and the sheet's kind
/// and format.
#[derive(Debug, Args)]
pub struct SheetArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// What the sheet holds: roles, users, groups, nodes, assets or rules.
    #[arg(long)]
    pub kind: Kind,
    /// csv or xlsx; defaults to the file's extension (export: of --output, else csv;
    /// import: required when reading `-`).
    #[arg(long)]
    pub format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub sheet: SheetArgs,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write an empty sheet (the header and one example row) instead of the store's
    /// entities; needs no store.
    #[arg(long)]
    pub template: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub sheet: SheetArgs,
    /// Update entities that exist (matched by id, else by name) instead of refusing
    /// rows that name them.
    #[arg(long)]
    pub update: bool,
    /// Check the whole file and print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Make changes that lower someone's protection: switch off or weaken a user's
    /// MFA, activate an inactive or expired user, add system roles. Without it, a file
    /// that makes any is refused (a dry run lists them apart).
    #[arg(long)]
    pub allow_security_changes: bool,
    /// Print the report as JSON, as the HTTP API gives it.
    #[arg(long)]
    pub json: bool,
    /// The file, or `-` for standard input.
    pub file: PathBuf,
}

/// `portcullis export`.
pub fn export(args: &ExportArgs) -> Result<Outcome, CliError> {
    let format = args
        .sheet
        .format
        .or_else(|| args.output.as_deref().and_then(Format::from_path))
        .unwrap_or(Format::Csv);
    let mut bytes = Vec::new();
    if args.template {
        portcullis_tabular::template(args.sheet.kind, format, &mut bytes)
            .map_err(|error| CliError::System(error.to_string()))?;
    } else if let Some(client) = args.sheet.data.client()? {
        let path = format!("/api/v1/{}/export", args.sheet.kind.name());
        let request = client
            .request(reqwest::Method::GET, &path)
            .query(&[("format", format.extension())]);
        let response = client.send(request)?.map_err(CliError::from)?;
        bytes = response
            .bytes()
            .map_err(|error| CliError::System(format!("cannot read the server's answer: {error}")))?
            .to_vec();
    } else {
        let engine = open_store(&args.sheet.data.data, false)?;
        portcullis_tabular::export(&engine.snapshot(), args.sheet.kind, format, &mut bytes)
            .map_err(|error| CliError::System(error.to_string()))?;
    }
    match &args.output {
        Some(path) => std::fs::write(path, &bytes).map_err(|error| {
            CliError::System(format!("cannot write `{}`: {error}", path.display()))
        })?,
        None => std::io::stdout()
            .lock()
            .write_all(&bytes)
            .map_err(|error| CliError::System(format!("cannot write the output: {error}")))?,
    }
    Ok(Outcome::Done)
}

/// `portcullis import`: all or nothing; every problem of a refused file is listed.
pub fn import(args: &ImportArgs) -> Result<Outcome, CliError> {
    let stdin = args.file.as_os_str() == "-";
    let format = match args.sheet.format {
        Some(format) => format,
        None if stdin => {
            return Err(CliError::Input(
                "--format is needed when the file is read from standard input".to_owned(),
            ));
        }
        None => Format::from_path(&args.file).ok_or_else(|| {
            CliError::Input(format!(
                "cannot tell the format of `{}` from its extension: pass --format csv or --format xlsx",
                args.file.display()
            ))
        })?,
    };
    let bytes = if stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|error| CliError::System(format!("cannot read standard input: {error}")))?;
        bytes
    } else {
        std::fs::read(&args.file).map_err(|error| {
            CliError::Input(format!("cannot read `{}`: {error}", args.file.display()))
        })?
    };
    let report = match args.sheet.data.client()? {
        Some(client) => {
            let path = format!("/api/v1/{}/import", args.sheet.kind.name());
            let request = client
                .request(reqwest::Method::POST, &path)
                .query(&[
                    ("update", args.update),
                    ("dry_run", args.dry_run),
                    ("allow_security_changes", args.allow_security_changes),
                ])
                .header(reqwest::header::CONTENT_TYPE, format.content_type())
                .body(bytes);
            match client.send(request)? {
                Ok(response) => read_json(response)?,
                Err(refusal) if refusal.body["error"]["code"] == "invalid_file" => {
                    let problems: Vec<String> = refusal.body["error"]["problems"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(problem_line)
                        .collect();
                    return Err(CliError::Input(problems_message(&problems)));
                }
                Err(refusal) => return Err(refusal.into()),
            }
        }
        None => {
            let engine = open_store(&args.sheet.data.data, true)?;
            let bar = progress_bar();
            let mut on_progress = |progress: Progress| show(&bar, progress);
            let result = portcullis_tabular::import(
                &engine,
                &Actor::system(ACTOR),
                args.sheet.kind,
                format,
                &bytes,
                ImportOptions {
                    update: args.update,
                    dry_run: args.dry_run,
                    allow_security_changes: args.allow_security_changes,
                    progress: Some(&mut on_progress),
                    ..ImportOptions::default()
                },
            );
            bar.finish_and_clear();
            let report = result.map_err(|error| match error {
                ImportError::Problems(problems) => {
                    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
                    CliError::Input(problems_message(&lines))
                }
                ImportError::Engine(error) => CliError::Engine(error),
            })?;
            serde_json::to_value(&report).expect("reports serialize")
        }
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report).expect("reports serialize");
        println!("{json}");
    } else {
        print_report(&report);
    }
    Ok(Outcome::Done)
}

/// A bar on standard error, drawn only when that is a terminal.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} rows ({per_sec}, {eta})")
            .expect("INVARIANT: the template is valid")
            .progress_chars("=> "),
    );
    bar
}

fn show(bar: &ProgressBar, progress: Progress) {
    let stage = match progress.stage {
        Stage::Reading => "reading",
        Stage::Planning => "checking",
        Stage::Writing => "writing",
    };
    if bar.message() != stage {
        bar.set_message(stage);
        bar.reset();
    }
    bar.set_length(progress.total as u64);
    bar.set_position(progress.done as u64);
}

/// A problem as the server sends it (`row`, `column`, `message`), written as
/// [`Problem`]'s `Display` writes it.
fn problem_line(problem: &Value) -> String {
    let message = problem["message"].as_str().unwrap_or_default();
    match (problem["row"].as_u64(), problem["column"].as_str()) {
        (Some(row), Some(column)) => format!("row {row}, column `{column}`: {message}"),
        (Some(row), None) => format!("row {row}: {message}"),
        (None, Some(column)) => format!("column `{column}`: {message}"),
        (None, None) => message.to_owned(),
    }
}

fn problems_message(problems: &[String]) -> String {
    let mut message = format!(
        "the file has {} problem(s); nothing was imported:",
        problems.len()
    );
    for problem in problems {
        message.push_str("\n  ");
        message.push_str(problem);
    }
    message
}

/// Prints an [`ImportReport`] from its JSON (the server's answer, or the local one).
fn print_report(report: &Value) {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let dry_run = report["dry_run"].as_bool() == Some(true);
    if dry_run {
        for change in report["changes"].as_array().into_iter().flatten() {
            let verb = match change["kind"].as_str() {
                Some("create") => "create",
                Some("update") => "update",
                _ => continue,
            };
            let columns: Vec<&str> = change["columns"]
                .as_array()
                .map(|columns| columns.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if columns.is_empty() {
                println!("row {}: {verb} `{}`", change["line"], text(&change["name"]));
            } else {
                println!(
                    "row {}: {verb} `{}` ({})",
                    change["line"],
                    text(&change["name"]),
                    columns.join(", ")
                );
            }
        }
        let security = report["security_changes"].as_array();
        if let Some(security) = security.filter(|list| !list.is_empty()) {
            println!("changes that lower protection (refused without --allow-security-changes):");
            for change in security {
                println!(
                    "row {}: user `{}`: {}",
                    change["line"],
                    text(&change["name"]),
                    text(&change["change"])
                );
            }
        }
    }
    let counts = &report["counts"];
    let summary = format!(
        "{}: {} created, {} updated, {} unchanged",
        text(&report["kind"]),
        counts["created"],
        counts["updated"],
        counts["unchanged"]
    );
    match (dry_run, report["revision"].as_u64()) {
        (true, _) => println!("dry run, nothing written: {summary}"),
        (false, Some(revision)) => println!("imported {summary} (revision {revision})"),
        (false, None) => println!("nothing to import: {summary}"),
    }
}

/// The import and export routes of every kind, for [`portcullis_http::router_with`].
pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for kind in Kind::ALL {
        let base = format!("/api/v1/{}", kind.name());
        routes.push(
            Route::new(
                Method::GET,
                format!("{base}/export"),
                Access::Permission(format!("{}.view", kind.name())),
                "transfer",
                format!("Every {} as a CSV or XLSX sheet", kind.name()),
                move |state: State<AppState>, query: Result<Query<ExportQuery>, QueryRejection>| {
                    export_route(kind, state, query)
                },
            )
            .query(&["format"])
            .answers(StatusCode::OK, "File"),
        );
        routes.push(
            Route::new(
                Method::POST,
                format!("{base}/import"),
                Access::Permission(format!("{}.add", kind.name())),
                "transfer",
                format!(
                    "Import a CSV or XLSX sheet of {} (format from ?format=, else Content-Type), all or nothing",
                    kind.name()
                ),
                move |state: State<AppState>,
                      caller: Extension<Caller>,
                      query: Result<Query<ImportQuery>, QueryRejection>,
                      headers: HeaderMap,
                      body: Bytes| {
                    import_route(kind, state, caller, query, headers, body)
                },
            )
            .query(&["update", "dry_run", "allow_security_changes", "format"])
            .body("File")
            .answers(StatusCode::OK, "ImportReport")
            .body_limit(IMPORT_BODY_LIMIT)
            .untimed(),
        );
    }
    routes
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    #[serde(default)]
    update: bool,
    #[serde(default)]
    dry_run: bool,
    /// Make changes that lower someone's protection (see `SecurityChange`).
    #[serde(default)]
    allow_security_changes: bool,
    /// `csv` or `xlsx`; wins over the Content-Type.
    #[serde(default)]
    format: Option<String>,
}

impl ImportQuery {
    /// The options of the console's upload form.
    pub fn from_form(update: bool, dry_run: bool, allow_security_changes: bool) -> ImportQuery {
        ImportQuery {
            update,
            dry_run,
            allow_security_changes,
            format: None,
        }
    }

    /// Whether the import updates entities that exist (which needs `change` too).
    pub fn updates(&self) -> bool {
        self.update
    }
}

async fn export_route(
    kind: Kind,
    State(state): State<AppState>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let format = format_named(query.format.as_deref())?;
    let bytes = export_bytes(&state, kind, format).await?;
    Ok(attachment(kind.name(), format, bytes))
}

/// The format a query names (`csv` when none).
pub(crate) fn format_named(name: Option<&str>) -> Result<Format, ApiError> {
    match name {
        None | Some("") => Ok(Format::Csv),
        Some(name) => name
            .parse::<Format>()
            .map_err(|error| ApiError::BadRequest(error.to_string())),
    }
}

/// Every entity of `kind` as a sheet, made off the async workers.
pub(crate) async fn export_bytes(
    state: &AppState,
    kind: Kind,
    format: Format,
) -> Result<Vec<u8>, ApiError> {
    let snapshot = state.engine().snapshot();
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        portcullis_tabular::export(&snapshot, kind, format, &mut bytes).map(|()| bytes)
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))?
    .map_err(|error| ApiError::Internal(error.to_string()))
}

/// A sheet as a download named `NAME.csv` or `NAME.xlsx`.
pub(crate) fn attachment(name: &str, format: Format, bytes: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}.{}\"", format.extension());
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

async fn import_route(
    kind: Kind,
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let Query(query) = query?;
    if query.update {
        caller.require(&format!("{}.change", kind.name()))?;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let format = match query.format.as_deref() {
        Some(name) => name
            .parse::<Format>()
            .map_err(|error| ApiError::BadRequest(error.to_string()))?,
        None => Format::from_content_type(content_type).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "cannot import a body of type `{content_type}`: send text/csv or {}, or say ?format=csv or ?format=xlsx",
                Format::Xlsx.content_type()
            ))
        })?,
    };
    let result = import_bytes(&state, &caller, kind, format, body, &query).await?;
    match result {
        Ok(report) => Ok(Json(report)),
        Err(ImportError::Problems(problems)) => Err(ApiError::InvalidFile {
            message: format!(
                "the file has {} problem(s); nothing was imported",
                problems.len()
            ),
            problems: serde_json::to_value(&problems).expect("problems serialize"),
        }),
        Err(ImportError::Engine(error)) => Err(ApiError::Engine(error)),
    }
}

/// Imports `body` as `caller`, off the async workers: the import route's and the
/// console's one way in.
pub(crate) async fn import_bytes(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    format: Format,
    body: Bytes,
    query: &ImportQuery,
) -> Result<Result<ImportReport, ImportError>, ApiError> {
    let engine: Arc<Engine> = state.engine().clone();
    let actor = caller.actor();
    let options = (query.update, query.dry_run, query.allow_security_changes);
    tokio::task::spawn_blocking(move || {
        portcullis_tabular::import(
            &engine,
            &actor,
            kind,
            format,
            &body,
            ImportOptions {
                update: options.0,
                dry_run: options.1,
                allow_security_changes: options.2,
                ..ImportOptions::default()
            },
        )
    })
    .await
    .map_err(|error| ApiError::Internal(error.to_string()))
}
