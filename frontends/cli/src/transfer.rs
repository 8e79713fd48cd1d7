//! The console's import and export pages (`/ui/transfer/…`): every kind's template
//! and export as CSV or XLSX, and an upload whose dry run shows every problem by row
//! before anything is written. They join the one route table beside the API's own
//! import and export routes, with the same permissions, and import through the same
//! function (`spreadsheets::import_bytes`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::{Markup, html};
use portcullis_http::console::{self, Refusal, Viewer, page_response, problem};
use portcullis_http::{Access, ApiError, AppState, Route};
use portcullis_tabular::{Format, ImportError, Kind};
use serde::Deserialize;
use serde_json::Value;

use crate::spreadsheets::{ImportQuery, attachment, export_bytes, format_named, import_bytes};

#[derive(Debug, Deserialize)]
struct FileQuery {
    #[serde(default)]
    format: Option<String>,
}

fn format_of(query: &FileQuery) -> Result<Format, ApiError> {
    format_named(query.format.as_deref())
}

async fn template(kind: Kind, query: FileQuery) -> Result<Response, Refusal> {
    let format = format_of(&query)?;
    let mut bytes = Vec::new();
    portcullis_tabular::template(kind, format, &mut bytes)
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(attachment(
        &format!("{}-template", kind.name()),
        format,
        bytes,
    ))
}

async fn export(kind: Kind, state: AppState, query: FileQuery) -> Result<Response, Refusal> {
    let format = format_of(&query)?;
    let bytes = export_bytes(&state, kind, format).await?;
    Ok(attachment(kind.name(), format, bytes))
}

fn upload_form(viewer: &Viewer, kind: Kind) -> Markup {
    let name = kind.name();
    let action = format!(
        "/ui/transfer/{name}/import?{}={}",
        console::csrf::FIELD,
        viewer.csrf()
    );
    html! {
        form method="post" action=(action) enctype="multipart/form-data" {
            p.field {
                label for=(format!("f-file-{name}")) { "File (CSV or XLSX)" }
                input id=(format!("f-file-{name}")) type="file" name="file" accept=".csv,.xlsx";
            }
            p.field.check {
                input id=(format!("f-dry-{name}")) type="checkbox" name="dry_run" value="on" checked;
                label for=(format!("f-dry-{name}")) { "Dry run: check every row, write nothing" }
            }
            p.field.check {
                input id=(format!("f-update-{name}")) type="checkbox" name="update" value="on";
                label for=(format!("f-update-{name}")) { "Update existing entities" }
            }
            p.field.check {
                input id=(format!("f-security-{name}")) type="checkbox" name="allow_security_changes" value="on";
                label for=(format!("f-security-{name}")) { "Allow changes that lower protection" }
            }
            p { button type="submit" { "Import " (name) } }
        }
    }
}

async fn page(Extension(viewer): Extension<Viewer>) -> Response {
    page_response(
        &viewer,
        "Import and export",
        html! {
            p.muted { "Every import is all or nothing. Start with a dry run: it lists every problem by row before anything is written." }
            @for kind in Kind::ALL {
                @let name = kind.name();
                @if viewer.may(&format!("{name}.view")) {
                    section id=(format!("transfer-{name}")) {
                        h2 { (name) }
                        p {
                            "Template: " a href=(format!("/ui/transfer/{name}/template?format=csv")) { "CSV" } " · "
                            a href=(format!("/ui/transfer/{name}/template?format=xlsx")) { "XLSX" }
                            " — Export: " a href=(format!("/ui/transfer/{name}/export?format=csv")) { "CSV" } " · "
                            a href=(format!("/ui/transfer/{name}/export?format=xlsx")) { "XLSX" }
                        }
                        @if viewer.may(&format!("{name}.add")) {
                            (upload_form(&viewer, kind))
                        }
                    }
                }
            }
        },
    )
}

fn report_page(viewer: &Viewer, kind: Kind, report: &Value) -> Response {
    let dry_run = report["dry_run"] == Value::Bool(true);
    let counts = &report["counts"];
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    page_response(
        viewer,
        &format!("Import of {}", kind.name()),
        html! {
            p.notice id="import-result" role="status" {
                @if dry_run { "Dry run, nothing written: " } @else { "Imported: " }
                (text(&counts["created"])) " created, " (text(&counts["updated"])) " updated, " (text(&counts["unchanged"])) " unchanged"
                @if let Some(revision) = report["revision"].as_u64() { " (revision " (revision) ")" }
            }
            table id="import-rows" {
                thead { tr { th { "Row" } th { "Change" } th { "Name" } th { "Columns" } } }
                tbody {
                    @for change in report["changes"].as_array().into_iter().flatten() {
                        tr { td { (text(&change["line"])) } td { (text(&change["kind"])) } td { (text(&change["name"])) } td { (console::html::joined(change, "columns")) } }
                    }
                }
            }
            @let security = report["security_changes"].as_array().cloned().unwrap_or_default();
            @if !security.is_empty() {
                h2 { "Changes that lower protection" }
                ul { @for change in &security { li { "row " (text(&change["line"])) ": " (text(&change["name"])) ": " (text(&change["change"])) } } }
            }
            p { a href="/ui/transfer" { "Back to import and export" } }
        },
    )
}

async fn import(
    kind: Kind,
    state: AppState,
    viewer: Viewer,
    mut form: Multipart,
) -> Result<Response, Refusal> {
    let mut body = None;
    let mut file_name = String::new();
    let mut ticked = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|error| ApiError::BadRequest(error.body_text()))?
    {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            file_name = field.file_name().unwrap_or("").to_owned();
            body = Some(
                field
                    .bytes()
                    .await
                    .map_err(|error| ApiError::BadRequest(error.body_text()))?,
            );
        } else {
            ticked.push(name);
        }
    }
    let body: Bytes = body
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| ApiError::BadRequest("choose a file to import".to_owned()))?;
    let format = if file_name.to_ascii_lowercase().ends_with(".xlsx") {
        Format::Xlsx
    } else {
        Format::Csv
    };
    let query = ImportQuery::from_form(
        ticked.iter().any(|name| name == "update"),
        ticked.iter().any(|name| name == "dry_run"),
        ticked.iter().any(|name| name == "allow_security_changes"),
    );
    if query.updates() {
        viewer.caller.require(&format!("{}.change", kind.name()))?;
    }
    match import_bytes(&state, &viewer.caller, kind, format, body, &query).await? {
        Ok(report) => Ok(report_page(
            &viewer,
            kind,
            &serde_json::to_value(&report).expect("reports serialize"),
        )),
        Err(ImportError::Problems(problems)) => {
            let mut response = page_response(
                &viewer,
                &format!("Import of {}", kind.name()),
                html! {
                    (problem(Some(&format!("The file has {} problem(s); nothing was imported.", problems.len()))))
                    table id="import-problems" {
                        thead { tr { th { "Row" } th { "Column" } th { "Problem" } } }
                        tbody {
                            @for problem in &problems {
                                tr.row-problem {
                                    td { (problem.row.map_or(String::new(), |row| row.to_string())) }
                                    td { (problem.column.clone().unwrap_or_default()) }
                                    td { (problem.message) }
                                }
                            }
                        }
                    }
                    p { a href="/ui/transfer" { "Back to import and export" } }
                },
            );
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(ImportError::Engine(error)) => Err(ApiError::Engine(error).into()),
    }
}

/// The console's import and export routes, for [`portcullis_http::router_with`].
pub fn routes() -> Vec<Route> {
    let mut routes = vec![console::route(
        Method::GET,
        "/ui/transfer",
        Access::Permission("users.view".to_owned()),
        "Import and export: templates, exports, uploads with a dry run",
        page,
    )];
    for kind in Kind::ALL {
        let name = kind.name();
        routes.push(console::route(
            Method::GET,
            &format!("/ui/transfer/{name}/template"),
            Access::Permission(format!("{name}.view")),
            &format!("An empty {name} sheet to fill (CSV or XLSX)"),
            move |Query(query): Query<FileQuery>| template(kind, query),
        ));
        routes.push(console::route(
            Method::GET,
            &format!("/ui/transfer/{name}/export"),
            Access::Permission(format!("{name}.view")),
            &format!("Every {name} as a CSV or XLSX sheet"),
            move |State(state): State<AppState>, Query(query): Query<FileQuery>| {
                export(kind, state, query)
            },
        ));
        routes.push(
            console::route(
                Method::POST,
                &format!("/ui/transfer/{name}/import"),
                Access::Permission(format!("{name}.add")),
                &format!("Import a {name} sheet (multipart form): a dry run's rows, its problems by row, or the result"),
                move |State(state): State<AppState>, Extension(viewer): Extension<Viewer>, form: Multipart| {
                    import(kind, state, viewer, form)
                },
            )
            .body_limit(crate::spreadsheets::IMPORT_BODY_LIMIT)
            .untimed(),
        );
    }
    routes
}
