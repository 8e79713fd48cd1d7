//! `/Bulk` (RFC 7644 §3.7): many operations in one request, each its own write.
//!
//! A `bulkId:<id>` anywhere in an operation's `data` or `path` stands for the resource
//! the POST with that `bulkId` creates; an operation waits for the one it refers to,
//! wherever it sits in the request. A reference to no operation, to a failed one, or
//! in a cycle fails with 409. After `failOnErrors` errors, the rest is not attempted.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::error::ScimError;
use crate::query::Projection;
use crate::schema::{BULK_RESPONSE, ResourceKind};
use crate::service::{Answer, Context, Service};

const PREFIX: &str = "bulkId:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One operation as the request wrote it.
struct Operation {
    method: Result<Method, ScimError>,
    method_text: String,
    bulk_id: Option<String>,
    version: Option<String>,
    path: Option<String>,
    data: Option<Value>,
    references: Vec<String>,
}

fn references_in(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            if let Some(id) = text.strip_prefix(PREFIX) {
                found.push(id.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references_in(item, found)),
        Value::Object(fields) => fields.values().for_each(|item| references_in(item, found)),
        Value::Bool(_) | Value::Number(_) | Value::Null => {}
    }
}

fn substitute(value: &mut Value, resolved: &HashMap<String, String>) {
    match value {
        Value::String(text) => {
            if let Some(id) = text.strip_prefix(PREFIX).and_then(|b| resolved.get(b)) {
                *text = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| substitute(item, resolved)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|item| substitute(item, resolved)),
        Value::Bool(_) | Value::Number(_) | Value::Null => {}
    }
}

fn text_field(fields: &Map<String, Value>, name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str())
        .map(str::to_owned)
}

fn parse_operation(value: &Value) -> Operation {
    let empty = Map::new();
    let fields = value.as_object().unwrap_or(&empty);
    let method_text = text_field(fields, "method").unwrap_or_default();
    let method = match method_text.to_ascii_uppercase().as_str() {
        "POST" => Ok(Method::Post),
        "PUT" => Ok(Method::Put),
        "PATCH" => Ok(Method::Patch),
        "DELETE" => Ok(Method::Delete),
        "" if value.is_object() => Err(ScimError::invalid_syntax("an operation needs a `method`")),
        "" => Err(ScimError::invalid_syntax(
            "each operation must be an object",
        )),
        other => Err(ScimError::invalid_syntax(format!(
            "`{other}` is not a bulk method (POST, PUT, PATCH, DELETE)"
        ))),
    };
    let path = text_field(fields, "path");
    let data = fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("data"))
        .map(|(_, value)| value.clone());
    let mut references = Vec::new();
    if let Some(data) = &data {
        references_in(data, &mut references);
    }
    if let Some(path) = &path {
        for segment in path.split('/') {
            if let Some(id) = segment.strip_prefix(PREFIX) {
                references.push(id.to_owned());
            }
        }
    }
    Operation {
        method,
        method_text,
        bulk_id: text_field(fields, "bulkId"),
        version: text_field(fields, "version"),
        path,
        data,
        references,
    }
}

/// `/Users` or `/Users/{id}` (or Groups).
fn target(path: &str) -> Result<(ResourceKind, Option<String>), ScimError> {
    let invalid = || {
        ScimError::invalid_value(format!(
            "`{path}` is not `/Users`, `/Groups` or one of their resources"
        ))
    };
    let trimmed = path.trim().strip_prefix('/').ok_or_else(invalid)?;
    let mut segments = trimmed.split('/');
    let kind = match segments.next() {
        Some("Users") => ResourceKind::User,
        Some("Groups") => ResourceKind::Group,
        _ => return Err(invalid()),
    };
    let id = segments.next().filter(|s| !s.is_empty()).map(str::to_owned);
    if segments.next().is_some() {
        return Err(invalid());
    }
    Ok((kind, id))
}

/// The outcome of one operation, as the bulk response lists it.
fn entry(
    operation: &Operation,
    location: Option<String>,
    result: Result<Answer, ScimError>,
) -> Value {
    let mut entry = Map::new();
    let method = operation
        .method
        .as_ref()
        .map(|m| m.name().to_owned())
        .unwrap_or_else(|_| operation.method_text.clone());
    entry.insert("method".to_owned(), json!(method));
    if let Some(bulk_id) = &operation.bulk_id {
        entry.insert("bulkId".to_owned(), json!(bulk_id));
    }
    match result {
        Ok(answer) => {
            let location = answer.location.clone().or(location).or_else(|| {
                answer
                    .body
                    .as_ref()
                    .and_then(|b| b["meta"]["location"].as_str())
                    .map(str::to_owned)
            });
            if let Some(location) = location {
                entry.insert("location".to_owned(), json!(location));
            }
            if let Some(version) = answer.version {
                entry.insert("version".to_owned(), json!(version));
            }
            entry.insert(
                "status".to_owned(),
                json!(answer.status.as_u16().to_string()),
            );
        }
        Err(error) => {
            if let Some(location) = location {
                entry.insert("location".to_owned(), json!(location));
            }
            entry.insert(
                "status".to_owned(),
                json!(error.status().as_u16().to_string()),
            );
            entry.insert("response".to_owned(), error.body());
        }
    }
    Value::Object(entry)
}

fn execute(
    service: &Service,
    operation: &Operation,
    resolved: &HashMap<String, String>,
    context: &Context,
) -> (Option<String>, Result<Answer, ScimError>) {
    let method = match &operation.method {
        Ok(method) => *method,
        Err(error) => return (None, Err(error.clone())),
    };
    let Some(path) = &operation.path else {
        return (
            None,
            Err(ScimError::invalid_syntax("an operation needs a `path`")),
        );
    };
    // A path segment may be a reference.
    let path = path
        .split('/')
        .map(|segment| {
            segment
                .strip_prefix(PREFIX)
                .and_then(|id| resolved.get(id))
                .map_or(segment, String::as_str)
        })
        .collect::<Vec<_>>()
        .join("/");
    let (kind, id) = match target(&path) {
        Ok(target) => target,
        Err(error) => return (None, Err(error)),
    };
    let location = id
        .as_ref()
        .map(|id| format!("{}/{}/{id}", context.base, kind.endpoint()));
    let mut data = operation.data.clone();
    if let Some(data) = &mut data {
        substitute(data, resolved);
    }
    let projection = Projection::default();
    let need_data = || {
        data.clone()
            .ok_or_else(|| ScimError::invalid_syntax("the operation needs `data`"))
    };
    let result = match (method, id) {
        (Method::Post, None) => {
            if operation.bulk_id.is_none() {
                Err(ScimError::invalid_syntax("a POST needs a `bulkId`"))
            } else {
                need_data().and_then(|data| service.create(kind, data, context, &projection))
            }
        }
        (Method::Put, Some(id)) => need_data().and_then(|data| {
            service.replace(
                kind,
                &id,
                data,
                operation.version.clone(),
                context,
                &projection,
            )
        }),
        (Method::Patch, Some(id)) => need_data().and_then(|data| {
            service.patch(
                kind,
                &id,
                &data,
                operation.version.clone(),
                context,
                &projection,
            )
        }),
        (Method::Delete, Some(id)) => service.delete(kind, &id, operation.version.clone(), context),
        (Method::Post, Some(_)) => Err(ScimError::invalid_value(
            "POST goes to `/Users` or `/Groups`",
        )),
        (Method::Put | Method::Patch | Method::Delete, None) => Err(ScimError::invalid_value(
            "PUT, PATCH and DELETE name a resource: `/Users/{id}`",
        )),
    };
    (location, result)
}

/// Runs a bulk request.
pub(crate) fn run(service: &Service, body: &Value, context: &Context) -> Result<Answer, ScimError> {
    let Value::Object(fields) = body else {
        return Err(ScimError::invalid_syntax(
            "the body must be a BulkRequest object",
        ));
    };
    let Some(Value::Array(operations)) = fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("Operations"))
        .map(|(_, value)| value)
    else {
        return Err(ScimError::invalid_syntax("`Operations` must be an array"));
    };
    let max = service.settings.max_operations;
    if operations.len() > max {
        return Err(ScimError::PayloadTooLarge(format!(
            "the request holds {} operations; at most {max} are allowed (maxOperations)",
            operations.len()
        )));
    }
    let fail_on_errors = match fields
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("failOnErrors"))
        .map(|(_, value)| value)
    {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(0) | None => {
                return Err(ScimError::invalid_value(
                    "`failOnErrors` must be a positive integer",
                ));
            }
            Some(limit) => Some(limit),
        },
    };
    let operations: Vec<Operation> = operations.iter().map(parse_operation).collect();

    let mut declared: HashMap<String, usize> = HashMap::new();
    for (index, operation) in operations.iter().enumerate() {
        if let (Ok(Method::Post), Some(bulk_id)) = (&operation.method, &operation.bulk_id) {
            declared.entry(bulk_id.clone()).or_insert(index);
        }
    }
    let mut resolved: HashMap<String, String> = HashMap::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut results: Vec<Option<Value>> = vec![None; operations.len()];
    let mut errors = 0u64;
    let mut revision = service.engine.snapshot().revision();
    'passes: loop {
        let mut progress = false;
        for (index, operation) in operations.iter().enumerate() {
            if results[index].is_some() {
                continue;
            }
            let blocked_by = operation.references.iter().find(|r| {
                !resolved.contains_key(*r)
                    && (failed.contains(*r) || declared.get(*r).is_none_or(|&i| i == index))
            });
            let waiting = operation
                .references
                .iter()
                .any(|r| !resolved.contains_key(r));
            let (location, result) = if let Some(reference) = blocked_by {
                (
                    None,
                    Err(ScimError::UnresolvedReference(format!(
                        "`{PREFIX}{reference}` names no operation that succeeded"
                    ))),
                )
            } else if waiting {
                continue;
            } else {
                execute(service, operation, &resolved, context)
            };
            progress = true;
            match &result {
                Ok(answer) => {
                    revision = revision.max(answer.revision);
                    if let (Ok(Method::Post), Some(bulk_id), Some(body)) =
                        (&operation.method, &operation.bulk_id, &answer.body)
                    {
                        if let Some(id) = body.get("id").and_then(Value::as_str) {
                            resolved.insert(bulk_id.clone(), id.to_owned());
                        }
                    }
                }
                Err(_) => {
                    errors += 1;
                    if let (Ok(Method::Post), Some(bulk_id)) =
                        (&operation.method, &operation.bulk_id)
                    {
                        failed.insert(bulk_id.clone());
                    }
                }
            }
            results[index] = Some(entry(operation, location, result));
            if fail_on_errors.is_some_and(|limit| errors >= limit) {
                break 'passes;
            }
        }
        if results.iter().all(Option::is_some) {
            break;
        }
        if !progress {
            // Whatever still waits, waits on a cycle.
            for (index, operation) in operations.iter().enumerate() {
                if results[index].is_none() {
                    let error = ScimError::UnresolvedReference(
                        "the operation's bulkId references form a cycle".to_owned(),
                    );
                    results[index] = Some(entry(operation, None, Err(error)));
                }
            }
            break;
        }
    }
    Ok(Answer {
        status: StatusCode::OK,
        body: Some(json!({
            "schemas": [BULK_RESPONSE],
            "Operations": results.into_iter().flatten().collect::<Vec<_>>(),
        })),
        location: None,
        version: None,
        revision,
        adopted_from: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_in_data_and_paths() {
        let operation = parse_operation(&json!({
            "method": "patch",
            "path": "/Groups/bulkId:g",
            "data": {"Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u"}]}]},
        }));
        assert_eq!(operation.method, Ok(Method::Patch));
        assert_eq!(operation.references, ["u", "g"]);
        let mut data = operation.data.clone().unwrap();
        substitute(
            &mut data,
            &HashMap::from([("u".to_owned(), "1234".to_owned())]),
        );
        assert_eq!(data["Operations"][0]["value"][0]["value"], "1234");
    }

    #[test]
    fn paths_name_endpoints() {
        assert_eq!(target("/Users").unwrap(), (ResourceKind::User, None));
        assert_eq!(
            target("/Groups/abc").unwrap(),
            (ResourceKind::Group, Some("abc".to_owned()))
        );
        for bad in ["Users", "/Schemas", "/Users/a/b", ""] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }
}
