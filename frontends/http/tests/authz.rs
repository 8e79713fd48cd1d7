//! The authorization matrix: every route × every kind of caller → the designed status.
//!
//! A caller that may use a route gets the route's own answer (200 for reads; for
//! writes a body or target chosen to be refused, 404 or 422, so that the matrix
//! changes nothing); one that may not gets 403; no token or a bad one gets 401.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, estate};

/// The permission each route needs, by design (docs/semantics.md and the issue).
fn designed_permission(method: &str, path: &str) -> Option<String> {
    let public = [
        "/healthz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/whoami",
    ];
    // Sign-in and self-service routes carry the user's own credentials in the body.
    if public.contains(&path)
        || (path.starts_with("/api/v1/auth/")
            && !["/api/v1/auth/events", "/api/v1/auth/housekeeping"].contains(&path))
    {
        return None;
    }
    if path == "/api/v1/auth/events" {
        return Some("changes.view".to_owned());
    }
    // Reading a user's passkeys or own MFA policy is viewing the user.
    if method == "GET"
        && [
            "/api/v1/users/{user}/passkeys",
            "/api/v1/users/{user}/mfa/policy",
        ]
        .contains(&path)
    {
        return Some("users.view".to_owned());
    }
    // Administrators' sign-in routes change the user.
    if path == "/api/v1/auth/housekeeping"
        || ["/password", "/mfa", "/lockout", "/passkeys"]
            .iter()
            .any(|part| path.starts_with(&format!("/api/v1/users/{{user}}{part}")))
    {
        return Some("users.change".to_owned());
    }
    let decisions = [
        "/api/v1/check",
        "/api/v1/check/batch",
        "/api/v1/explain",
        "/api/v1/permissions/check",
        "/api/v1/users/{user}/assets",
        "/api/v1/users/{user}/nodes",
        "/api/v1/users/{user}/assets/{asset}/accounts",
        "/api/v1/assets/{asset}/users",
    ];
    if decisions.contains(&path) {
        return Some("decisions.check".to_owned());
    }
    if path == "/api/v1/changes" || path == "/api/v1/watch" {
        return Some("changes.view".to_owned());
    }
    if path.starts_with("/api/v1/sync/") || path == "/api/v1/cluster" {
        return Some("users.view".to_owned());
    }
    if path.starts_with("/api/v1/groups/{group}/members") {
        return Some("groups.change".to_owned());
    }
    let resource = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .unwrap();
    // Handing an adopted user or group back to `local` changes it.
    if path.ends_with("/release") {
        return Some(format!("{resource}.change"));
    }
    let verb = match method {
        "GET" => "view",
        "POST" => "add",
        "PUT" | "PATCH" => "change",
        "DELETE" => "delete",
        other => panic!("unexpected method {other}"),
    };
    Some(format!("{resource}.{verb}"))
}

/// The concrete request of a route, and what a caller allowed to send it gets.
fn request_for(method: &str, path: &str) -> (String, Option<Value>, u16) {
    let reads = method == "GET";
    let target = |real: &str| {
        if reads {
            real.to_owned()
        } else {
            "missing".to_owned()
        }
    };
    let concrete = path
        .replace(
            "{user}",
            &if path.contains("/members/") {
                "alice".to_owned()
            } else {
                target("alice")
            },
        )
        .replace("{asset}", &target("web-01"))
        .replace("{group}", &target("ops"))
        .replace("{node}", &target("%2FDefault%2FProd"))
        .replace("{rule}", &target("ops-prod"))
        .replace("{role}", &target("user"))
        .replace("{token}", &target("admin"))
        .replace("{passkey}", "missing")
        .replace("{source_kind}", "ldap");
    if path == "/api/v1/cluster" {
        // The test server is no cluster node: past authorization, the route says so.
        return (concrete, None, 404);
    }
    if reads {
        return (concrete, None, 200);
    }
    let is_decision = designed_permission(method, path).as_deref() == Some("decisions.check");
    match method {
        "POST" if path == "/api/v1/auth/housekeeping" => (concrete, Some(json!({})), 200),
        "POST" if path.ends_with("/reset-link") => (concrete, Some(json!({})), 404),
        "POST" if path.ends_with("/clone") => (concrete, Some(json!({"name": "x"})), 404),
        "POST" if path.ends_with("/release") => (concrete, Some(json!({})), 404),
        "POST" if path.ends_with("/members") => (concrete, Some(json!("alice")), 404),
        "POST" if is_decision => (concrete, Some(json!({})), 422),
        "POST" => (concrete, Some(json!({})), 422),
        "PUT" if path.starts_with("/api/v1/users/") => {
            (concrete, Some(json!({"username": "x"})), 404)
        }
        "PUT" if path.starts_with("/api/v1/tokens/") => (
            concrete,
            Some(json!({"name": "x", "roles": ["checker"]})),
            404,
        ),
        "PUT" => (concrete, Some(json!({"name": "x"})), 404),
        "PATCH" => (concrete, Some(json!({})), 404),
        "DELETE" => (concrete, None, 404),
        other => panic!("unexpected method {other}"),
    }
}

/// A kind of caller: its name, its token's secret, the permissions it holds (`None`:
/// not a valid token).
type Caller = (&'static str, Option<String>, Option<Vec<String>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_by_every_caller() {
    let server = Server::start().await;
    estate(&server).await;
    server
        .create(
            "roles",
            json!({"name": "helpdesk", "permissions": ["users.view", "users.change", "groups.view", "groups.change", "decisions.check"]}),
        )
        .await;
    let all: Vec<String> = portcullis_engine::all_permissions();
    // An auditor reads everything, decisions included.
    let views: Vec<String> = all
        .iter()
        .filter(|p| p.ends_with(".view") || *p == "decisions.check")
        .cloned()
        .collect();
    let callers: Vec<Caller> = vec![
        ("no token", None, None),
        ("bad token", Some("pct_not-a-real-token".to_owned()), None),
        (
            "system-admin",
            Some(server.admin.clone()),
            Some(all.clone()),
        ),
        (
            "system-auditor",
            Some(server.token("auditor", &["system-auditor"]).await),
            Some(views),
        ),
        (
            "checker",
            Some(server.token("checker", &["checker"]).await),
            Some(vec!["decisions.check".to_owned()]),
        ),
        (
            "scim",
            Some(server.token("scim", &["scim"]).await),
            Some(vec!["scim.provision".to_owned()]),
        ),
        (
            "helpdesk",
            Some(server.token("helpdesk", &["helpdesk"]).await),
            Some(
                [
                    "users.view",
                    "users.change",
                    "groups.view",
                    "groups.change",
                    "decisions.check",
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        ),
    ];
    let (_, document) = server
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let routes = portcullis_http::route_list();
    let mut failures = Vec::new();
    let mut checked = 0;
    // The designed outcomes each route was asked for: a matrix whose callers all get
    // the same answer from a route says nothing about that route's permission.
    let mut designed: Vec<(String, Option<String>, BTreeSet<u16>)> = Vec::new();
    for (method, path) in routes.iter().filter(|(_, path)| !path.starts_with("/ui")) {
        let permission = designed_permission(method, path);
        let documented = document["paths"][path][method.to_lowercase()]["x-permission"].as_str();
        assert_eq!(
            documented,
            permission.as_deref(),
            "{method} {path}: documented permission"
        );
        let (concrete, body, allowed_status) = request_for(method, path);
        let mut outcomes = BTreeSet::new();
        for (name, token, permissions) in &callers {
            let public = permission.is_none() && path != "/api/v1/whoami";
            let expected = match (public, token, permissions) {
                (true, _, _) => allowed_status,
                (false, _, None) => 401,
                (false, Some(_), Some(held)) => match &permission {
                    None => 200,
                    Some(needed) if held.contains(needed) => allowed_status,
                    Some(_) => 403,
                },
                (false, None, Some(_)) => unreachable!(),
            };
            outcomes.insert(expected);
            let (status, code) =
                send(&server, method, &concrete, token.as_deref(), body.as_ref()).await;
            checked += 1;
            // A 404 must be the entity's, never a missing route.
            if status != expected || code == "route_not_found" || code == "method_not_allowed" {
                failures.push(format!(
                    "{name:>14} {method:>6} {concrete}: got {status} {code}, designed {expected}"
                ));
            }
        }
        designed.push((format!("{method} {path}"), permission, outcomes));
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} calls differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        routes.len() > 60,
        "the route table: {} routes",
        routes.len()
    );
    // Every route that needs a permission was refused without a token (401), refused
    // to some caller lacking it (403) and granted to some caller holding it; a public
    // route answered every caller alike.
    for (route, permission, outcomes) in &designed {
        match permission {
            Some(permission) => assert!(
                outcomes.contains(&401)
                    && outcomes.contains(&403)
                    && outcomes.iter().any(|status| ![401, 403].contains(status)),
                "{route} (needs {permission}): the callers met only {outcomes:?}"
            ),
            // `whoami` needs a token, any token.
            None if route == "GET /api/v1/whoami" => {
                assert_eq!(outcomes, &BTreeSet::from([200, 401]), "{route}")
            }
            None => assert_eq!(outcomes.len(), 1, "{route} (public): {outcomes:?}"),
        }
    }
}

/// The permission of a console page: the API's for what it shows or changes (by
/// design, as `tests/authz.rs` in the workspace spells it out route by route).
fn console_permission(method: &str, path: &str) -> Option<String> {
    if path.starts_with("/ui/static/") || path.starts_with("/ui/login") {
        return None;
    }
    if ["/ui", "/ui/", "/ui/logout"].contains(&path) || path.starts_with("/ui/me") {
        return Some(String::new());
    }
    let fixed = [
        ("/ui/tester", "decisions.check"),
        ("/ui/changes", "changes.view"),
        ("/ui/changes/live", "changes.view"),
        ("/ui/nodes", "nodes.view"),
        ("/ui/assets/{asset}", "assets.view"),
    ];
    if let Some((_, permission)) = fixed.iter().find(|(p, _)| *p == path) {
        return Some((*permission).to_owned());
    }
    let mut segments = path.trim_start_matches("/ui/").split('/');
    let resource = segments.next().unwrap();
    let rest: Vec<&str> = segments.collect();
    let verb = if rest
        .iter()
        .any(|s| ["new", "duplicate", "clone"].contains(s))
    {
        "add"
    } else if method == "GET" {
        if rest.contains(&"edit") {
            "change"
        } else {
            "view"
        }
    } else if rest.is_empty() {
        "add"
    } else {
        "change"
    };
    Some(format!("{resource}.{verb}"))
}

/// The console's routes are in the route table with the designed permission, and
/// take no bearer token: whatever token a request carries, a page redirects to the
/// sign-in form (the session matrix is `tests/authz.rs` in the workspace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_routes_have_their_permissions_and_take_no_bearer_token() {
    let server = Server::start().await;
    let (_, document) = server
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let routes: Vec<(String, String)> = portcullis_http::route_list()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/ui"))
        .collect();
    assert!(routes.len() > 40, "the console's routes: {}", routes.len());
    for (method, path) in &routes {
        let permission = console_permission(method, path);
        let documented = document["paths"][path][method.to_lowercase()]["x-permission"].as_str();
        let designed = permission.as_deref().filter(|p| !p.is_empty());
        assert_eq!(
            documented, designed,
            "{method} {path}: documented permission"
        );
        let concrete = path
            .replace("{user}", "alice")
            .replace("{group}", "ops")
            .replace("{rule}", "ops-prod")
            .replace("{asset}", "web-01");
        let request = client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(&concrete),
            )
            .bearer_auth(&server.admin);
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|value| value.to_str().unwrap().to_owned());
        let expected = match (&permission, method.as_str()) {
            (Some(_), _) => (303, Some("/ui/login".to_owned())),
            (None, "GET") => (200, None),
            // No session and no CSRF token: the sign-in form's posts are refused.
            (None, _) => (403, None),
        };
        assert_eq!((status, location), expected, "{method} {concrete}");
    }
}

/// Sends and returns the status, and the error code if any (the watch stream never
/// ends, so its body is not read).
async fn send(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.client.request(method, server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    if path.starts_with("/api/v1/watch") || status < 400 {
        return (status, String::new());
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_answers_carry_a_challenge_and_the_error_shape() {
    let server = Server::start().await;
    for header in [
        None,
        Some("Basic YWRtaW46YWRtaW4="),
        Some("Bearer "),
        Some("Bearer nope"),
    ] {
        let mut request = server.client.get(server.url("/api/v1/users"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{header:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], json!("unauthenticated"));
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_role_takes_effect_at_once() {
    let server = Server::start().await;
    server
        .create(
            "roles",
            json!({"name": "reader", "permissions": ["users.view"]}),
        )
        .await;
    let reader = server.token("reader", &["reader"]).await;
    let (status, _) = server
        .call(Method::GET, "/api/v1/groups", Some(&reader), None)
        .await;
    assert_eq!(status, 403);
    server
        .patch(
            "/api/v1/roles/reader",
            json!({"permissions": ["users.view", "groups.view"]}),
        )
        .await;
    let (status, _) = server
        .call(Method::GET, "/api/v1/groups", Some(&reader), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_an_inactive_user_is_refused() {
    let server = Server::start().await;
    server.create("users", json!({"username": "ops-bot"})).await;
    let (_, created) = server
        .post(
            "/api/v1/tokens",
            json!({"name": "bot", "user": "ops-bot", "roles": ["checker"]}),
        )
        .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call(Method::GET, "/api/v1/whoami", Some(&secret), None)
        .await;
    assert_eq!(status, 200);
    server
        .patch("/api/v1/users/ops-bot", json!({"active": false}))
        .await;
    let (status, _) = server
        .call(Method::GET, "/api/v1/whoami", Some(&secret), None)
        .await;
    assert_eq!(status, 401);
}
