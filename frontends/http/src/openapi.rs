//! The OpenAPI 3.1 document, generated from the route table (so every route is in it)
//! with hand-written schemas for the bodies.

use portcullis_engine::EntityKind;
use serde_json::{Map, Value, json};

use crate::auth::{Access, Credentials};
use crate::routes::{Route, spec_schema};

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn parameter_description(name: &str) -> &'static str {
    match name {
        "offset" => "How many items to skip",
        "limit" => "Page size (1 to the server's maximum)",
        "search" => "Keep entities whose name contains this text, case-insensitively",
        "min_revision" => {
            "Wait (bounded) until the snapshot is at this revision or later; 503 `revision_not_reached` otherwise"
        }
        "at" => "The instant to judge at (RFC 3339); defaults to now",
        "node" => "Only assets under this node (path or id)",
        "since" => "Only records after this revision",
        _ => "",
    }
}

/// The route's own description of a parameter, if it gives one.
fn described(route: &Route, name: &str) -> Option<&'static str> {
    route
        .parameters
        .iter()
        .find(|(parameter, _)| *parameter == name)
        .map(|(_, description)| *description)
}

fn operation(route: &Route) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(route.summary));
    op.insert("tags".into(), json!([route.tag]));
    let id: String = format!("{} {}", route.method, route.path)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    op.insert("operationId".into(), json!(id.trim_matches('_')));
    // The console's pages take its session cookie, the API's routes a bearer token.
    let scheme = match Credentials::of_path(&route.path) {
        Credentials::Bearer => "bearer",
        Credentials::Session => "session",
    };
    match &route.access {
        Access::Public => {
            op.insert("security".into(), json!([]));
        }
        Access::Authenticated => {
            op.insert("security".into(), json!([{scheme: []}]));
        }
        Access::Permission(permission) => {
            op.insert("security".into(), json!([{scheme: []}]));
            op.insert("x-permission".into(), json!(permission));
        }
    }
    let mut parameters = Vec::new();
    for segment in route.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let description = match described(route, name) {
                Some(description) => description,
                None if name == "node" => {
                    "The node's id or its path, percent-encoded (`%2FDefault%2FProd`)"
                }
                None => "A name (username for users) or an id",
            };
            parameters.push(json!({
                "name": name, "in": "path", "required": true,
                "description": description, "schema": {"type": "string"},
            }));
        }
    }
    for name in route.query {
        if *name == "{field}" {
            parameters.push(json!({
                "name": "field", "in": "query", "required": false,
                "description": "Any other parameter filters on the entity's top-level field of that name (`active=true`, `platform=linux`)",
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
                "style": "form", "explode": true,
            }));
            continue;
        }
        let schema = match *name {
            "offset" | "limit" | "min_revision" | "since" => {
                json!({"type": "integer", "minimum": 0})
            }
            "at" => json!({"type": "string", "format": "date-time"}),
            _ => json!({"type": "string"}),
        };
        parameters.push(json!({
            "name": name, "in": "query", "required": false,
            "description": described(route, name).unwrap_or_else(|| parameter_description(name)),
            "schema": schema,
        }));
    }
    if route.path == "/api/v1/watch" {
        parameters.push(json!({
            "name": "Last-Event-ID", "in": "header", "required": false,
            "description": "Resume after this revision", "schema": {"type": "integer"},
        }));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(request) = &route.request {
        let content = match request.as_str() {
            "MergePatch" => {
                json!({"application/merge-patch+json": {"schema": schema_ref(request)}})
            }
            // A sheet to import: the bytes of a CSV or XLSX file, not JSON.
            "File" => json!({
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                    {"schema": {"type": "string", "format": "binary"}},
            }),
            _ => json!({route.errors.media_type(): {"schema": schema_ref(request)}}),
        };
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": content}),
        );
    }
    let (status, schema) = &route.response;
    let media = match schema.as_str() {
        "Metrics" => "text/plain",
        "EventStream" => "text/event-stream",
        _ => route.errors.media_type(),
    };
    let errors = route.errors.media_type();
    let mut success = json!({"description": status.canonical_reason().unwrap_or("success")});
    if *status != axum::http::StatusCode::NO_CONTENT {
        success["content"] = json!({media: {"schema": schema_ref(schema)}});
    }
    op.insert(
        "responses".into(),
        json!({
            status.as_u16().to_string(): success,
            "default": {
                "description": "An error",
                "content": {errors: {"schema": schema_ref(route.errors.error_schema())}},
            },
        }),
    );
    Value::Object(op)
}

/// The document for `routes`.
pub(crate) fn document(routes: &[Route]) -> Value {
    let mut paths = Map::new();
    let mut schemas = schemas();
    for route in routes {
        for (name, schema) in &route.schemas {
            schemas.insert(name.clone(), schema.clone());
        }
        let entry = paths
            .entry(route.path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method.as_str().to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Access decisions and administration of a Portcullis estate. Every route but /healthz, /metrics and this document needs `Authorization: Bearer <token>`; `x-permission` names the permission a route needs.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "pc_session", "description": "The web console's session (`/ui/login`); state changes carry the session's CSRF token in the form field `_csrf`"},
            },
            "schemas": schemas,
        },
        "paths": paths,
    })
}

fn string() -> Value {
    json!({"type": "string"})
}
fn time() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}
fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn actions() -> Value {
    json!({"type": "array", "items": {"type": "string", "enum": ["connect", "upload", "download", "copy", "paste", "delete", "share", "transfer", "clipboard", "all"]}})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties, "additionalProperties": false})
}

fn spec(kind: EntityKind) -> Value {
    match kind {
        EntityKind::User => object(
            &["username"],
            json!({
                "id": string(), "username": string(), "name": string(), "email": string(), "phone": string(),
                "active": boolean(), "expires_at": time(), "source": string(), "external_id": string(),
                "system_roles": strings(), "mfa": {"type": "string", "enum": ["disabled", "enabled", "forced"]},
                "must_change_password": boolean(), "description": string(),
                "password": {"type": "string", "writeOnly": true},
            }),
        ),
        EntityKind::Group => object(
            &["name"],
            json!({
                "id": string(), "name": string(),
                "members": {"type": "array", "items": schema_ref("MemberSpec")},
                "subgroups": {"type": "array", "items": {"oneOf": [string(), object(&["group"], json!({"group": string(), "expires_at": time(), "source": string()}))]}},
                "roles": {"type": "array", "items": object(&["scope", "roles"], json!({"scope": string(), "roles": strings()}))},
                "source": string(), "external_id": string(), "description": string(),
            }),
        ),
        EntityKind::Node => object(
            &["name"],
            json!({
                "id": string(), "name": string(),
                "parent": {"type": "string", "description": "A path (`/Default/Prod`) or id; defaults to `/Default`"},
                "description": string(),
            }),
        ),
        EntityKind::Asset => object(
            &["name"],
            json!({
                "id": string(), "name": string(), "address": string(), "platform": string(),
                "protocols": {"type": "array", "items": {"type": "string", "example": "ssh/22"}},
                "nodes": strings(),
                "accounts": {"type": "array", "items": object(&["username"], json!({
                    "id": string(), "username": string(), "privileged": boolean(),
                    "secret_kind": {"type": "string", "enum": ["password", "ssh_key", "access_key", "token", "api_key"]},
                }))},
                "active": boolean(), "description": string(),
            }),
        ),
        EntityKind::Rule => object(
            &["name"],
            json!({
                "id": string(), "name": string(), "effect": {"type": "string", "enum": ["allow", "deny"]},
                "users": strings(), "groups": strings(), "assets": strings(), "nodes": strings(),
                "accounts": {"type": "array", "items": {"type": "string", "description": "@ALL, @USER, @INPUT, @ANON, a username or !username"}},
                "protocols": strings(), "actions": actions(),
                "starts_at": time(), "expires_at": time(), "active": boolean(), "description": string(),
            }),
        ),
        EntityKind::Role => object(
            &["name"],
            json!({
                "id": string(), "name": string(), "permissions": strings(), "description": string(),
            }),
        ),
        EntityKind::Token => object(
            &["name", "roles"],
            json!({
                "id": string(), "name": string(), "user": string(), "roles": strings(),
                "expires_at": time(), "description": string(),
            }),
        ),
    }
}

fn schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    for kind in EntityKind::ALL {
        schemas.insert(spec_schema(kind), spec(kind));
    }
    let check = object(
        &["user", "asset", "account", "protocol", "action"],
        json!({
            "user": string(), "asset": string(), "account": string(), "protocol": string(),
            "action": {"type": "string", "example": "connect"},
            "at": time(), "min_revision": {"type": "integer"},
        }),
    );
    let decision = json!({"type": "object", "properties": {
        "allowed": boolean(), "actions": actions(), "revision": {"type": "integer"}, "valid_until": time(),
    }});
    let more = json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": string(), "message": string()},
        }}},
        "Object": {"type": "object"},
        "SyncStatus": {"type": "object", "properties": {"kind": string(), "sources": {"type": "array", "items": {"type": "object"}}}},
        "Entity": {"type": "object", "description": "An entity, with the model's field names"},
        "MergePatch": {"type": "object", "description": "A JSON merge patch (RFC 7386) of the entity's spec"},
        "Health": {"type": "object", "properties": {"status": string(), "revision": {"type": "integer"}}},
        "Metrics": {"type": "string"},
        "Cluster": {"type": "object", "properties": {
            "node": {"type": "object"},
            "head_revision": {"type": "integer"},
            "nodes": {"type": "array", "items": {"type": "object"}},
        }},
        "EventStream": {"type": "string", "description": "Server-sent events `change`, data `{revision, changes}`"},
        "Whoami": {"type": "object"},
        "CheckRequest": check,
        "CheckResponse": decision,
        "BatchRequest": object(&["checks"], json!({
            "checks": {"type": "array", "items": schema_ref("CheckRequest")},
            "at": time(), "min_revision": {"type": "integer"},
        })),
        "BatchResponse": {"type": "object", "properties": {
            "revision": {"type": "integer"},
            "results": {"type": "array", "items": {"oneOf": [schema_ref("CheckResponse"), schema_ref("Error")]}},
        }},
        "ExplainResponse": {"type": "object", "properties": {
            "allowed": boolean(), "actions": actions(), "revision": {"type": "integer"}, "valid_until": time(),
            "reasons": strings(), "matched_rules": strings(),
            "rules": {"type": "array", "items": {"type": "object", "properties": {
                "rule": string(), "name": string(), "effect": string(), "applied": boolean(),
                "reason": {"type": ["string", "null"]}, "actions": actions(), "via": strings(),
            }}},
        }},
        "PermissionCheckRequest": object(&["user", "permission"], json!({
            "user": string(), "permission": string(), "scope": {"type": "string", "default": "*"},
            "at": time(), "min_revision": {"type": "integer"},
        })),
        "PermissionCheckResponse": {"type": "object", "properties": {
            "allowed": boolean(), "roles": strings(), "revision": {"type": "integer"},
        }},
        "Page": {"type": "object", "properties": {
            "revision": {"type": "integer"}, "total": {"type": "integer"}, "offset": {"type": "integer"},
            "limit": {"type": "integer"}, "items": {"type": "array", "items": schema_ref("Entity")},
        }},
        "AccountGrants": {"type": "object", "properties": {
            "revision": {"type": "integer"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "username": string(), "account": {"type": ["string", "null"]}, "actions": actions(),
                "protocols": {"type": "array", "items": {"type": "object", "properties": {"protocol": string(), "actions": actions()}}},
            }}},
        }},
        "WriteResult": {"type": "object", "properties": {
            "revision": {"type": "integer"}, "id": string(), "entity": schema_ref("Entity"),
        }},
        "TokenCreated": {"type": "object", "properties": {
            "revision": {"type": "integer"}, "id": string(), "entity": schema_ref("Entity"),
            "secret": {"type": "string", "description": "Shown this once"},
        }},
        "DeleteResult": {"type": "object", "properties": {"revision": {"type": "integer"}, "id": string()}},
        "ReleaseRequest": {"type": "object", "properties": {}, "additionalProperties": false},
        "CloneRequest": object(&["name"], json!({"name": {"type": "string", "description": "The new name (username for users)"}})),
        "MemberSpec": {"oneOf": [
            {"type": "string", "description": "A username or id"},
            object(&["user"], json!({"user": string(), "expires_at": time(), "source": string()})),
        ]},
        "ChangesPage": {"type": "object", "properties": {
            "revision": {"type": "integer"}, "since": {"type": "integer"}, "next": {"type": "integer"},
            "changes": {"type": "array", "items": {"type": "object"}},
        }},
    });
    if let Value::Object(more) = more {
        schemas.extend(more);
    }
    schemas.extend(crate::signin::schemas());
    schemas.insert(
        "ConsolePage".to_owned(),
        json!({"type": "string", "description": "An HTML page of the web console (or a 303 to the next page, or to the sign-in form without a session)"}),
    );
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckRequest;

    /// The document's `CheckRequest` is the wire type's: the same properties, the same
    /// required ones, and `BatchRequest`'s items are that schema.
    #[test]
    fn the_check_request_schema_is_the_wire_type() {
        let full = CheckRequest {
            user: "alice".to_owned(),
            asset: "web-01".to_owned(),
            account: "root".to_owned(),
            protocol: "ssh".to_owned(),
            action: "connect".to_owned(),
            at: Some(portcullis_engine::Time::from_secs(0)),
            min_revision: Some(1),
        };
        let serialized = serde_json::to_value(&full).unwrap();
        let mut wire: Vec<&String> = serialized.as_object().unwrap().keys().collect();
        wire.sort();
        let schemas = schemas();
        let schema = &schemas["CheckRequest"];
        let mut documented: Vec<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        documented.sort();
        assert_eq!(documented, wire);

        // Every property the document calls required is one a request cannot omit.
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect();
        for name in wire {
            let mut without = serialized.clone();
            without.as_object_mut().unwrap().remove(name);
            let parses = serde_json::from_value::<CheckRequest>(without).is_ok();
            assert_eq!(
                parses,
                !required.contains(&name.as_str()),
                "{name}: required in the document exactly when the wire type needs it"
            );
        }
        assert_eq!(
            schemas["BatchRequest"]["properties"]["checks"]["items"]["$ref"],
            "#/components/schemas/CheckRequest"
        );
    }
}
