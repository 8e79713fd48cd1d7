//! The authorization matrix over a running `serve`: every route × every kind of
//! caller → the designed status.
//!
//! Routes: `portcullis_http::route_list()`, plus every other route the server's
//! OpenAPI document lists (the import/export routes the cli adds, SCIM's under
//! `/scim/v2`, and whatever later front-ends add to the one route table), plus the
//! concrete SCIM paths below. A new route joins the matrix by being in the route table
//! (nothing to do) or with one line in [`SCIM_ROUTES`] / [`designed_permission`].
//!
//! Callers: tokens with the built-in roles system-admin, system-auditor, checker and
//! scim, a token with a custom role holding one permission (`users.view`), no token,
//! a revoked (deleted) token and an expired one.
//!
//! Designed outcome: no, revoked or expired token → 401 (public routes: 200); a token
//! whose roles lack the route's permission → 403; one that holds it → the route's own
//! answer, 2xx or a 4xx that is not 401/403 (every request names a missing target or
//! carries an empty body, so the matrix writes nothing: the revision is checked).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::support::{Api, Server, small_estate};

/// The SCIM routes (paths under the server root), one line each.
const SCIM_ROUTES: &[(&str, &str)] = &[
    ("GET", "/scim/v2/ServiceProviderConfig"),
    ("GET", "/scim/v2/ResourceTypes"),
    ("GET", "/scim/v2/ResourceTypes/{id}"),
    ("GET", "/scim/v2/Schemas"),
    ("GET", "/scim/v2/Schemas/{id}"),
    ("POST", "/scim/v2/Bulk"),
    ("POST", "/scim/v2/.search"),
    ("GET", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users/.search"),
    ("GET", "/scim/v2/Users/{id}"),
    ("PUT", "/scim/v2/Users/{id}"),
    ("PATCH", "/scim/v2/Users/{id}"),
    ("DELETE", "/scim/v2/Users/{id}"),
    ("GET", "/scim/v2/Groups"),
    ("POST", "/scim/v2/Groups"),
    ("GET", "/scim/v2/Groups/{id}"),
    ("PATCH", "/scim/v2/Groups/{id}"),
    ("DELETE", "/scim/v2/Groups/{id}"),
];

/// The permission a route needs, by design (docs/semantics.md, the README's role table), not
/// read from the code under test. `None`: public. `Some("")`: any valid token.
/// The sign-in routes a user calls with their own credentials in the body.
const SIGN_IN_SELF_SERVICE: &[&str] = &[
    "/api/v1/auth/login",
    "/api/v1/auth/password/change",
    "/api/v1/auth/password/reset-request",
    "/api/v1/auth/password/reset",
    "/api/v1/auth/mfa/totp/enroll",
    "/api/v1/auth/mfa/totp/confirm",
    "/api/v1/auth/mfa/disable",
    "/api/v1/auth/mfa/recovery-codes",
    "/api/v1/auth/passkeys/register/start",
    "/api/v1/auth/passkeys/register/finish",
    "/api/v1/auth/passkeys/authenticate/start",
    "/api/v1/auth/passkeys/authenticate/finish",
    "/api/v1/auth/passkeys/list",
    "/api/v1/auth/passkeys/rename",
    "/api/v1/auth/passkeys/remove",
];

/// What [`designed_permission`] answers for a route that needs no token but judges
/// the credentials in its body: any caller gets an answer that is neither 401 nor
/// 403 for the (empty) body the matrix sends.
pub const SELF_SERVICE: &str = "(credentials in the body)";

pub fn designed_permission(method: &str, path: &str) -> Option<String> {
    if path == "/ui" || path.starts_with("/ui/") {
        return console_permission(method, path);
    }
    if ["/healthz", "/metrics", "/api/v1/openapi.json"].contains(&path) {
        return None;
    }
    if path == "/api/v1/whoami" {
        return Some(String::new());
    }
    if path.starts_with("/scim/v2/") {
        return Some("scim.provision".to_owned());
    }
    // Sign-in: self-service routes carry the user's credentials in the body (public;
    // the lockout rate-limits them); the administrators' routes change users.
    if SIGN_IN_SELF_SERVICE.contains(&path) {
        return Some(SELF_SERVICE.to_owned());
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
    let sign_in_admin = [
        "/api/v1/users/{user}/passkeys/{passkey}",
        "/api/v1/users/{user}/mfa/policy",
        "/api/v1/users/{user}/password",
        "/api/v1/users/{user}/password/reset-link",
        "/api/v1/users/{user}/mfa",
        "/api/v1/users/{user}/lockout",
        "/api/v1/auth/housekeeping",
    ];
    if sign_in_admin.contains(&path) {
        return Some("users.change".to_owned());
    }
    if path == "/api/v1/auth/events" {
        return Some("changes.view".to_owned());
    }
    // Directory sync status and the cluster's nodes read user data (the cluster's
    // route answers 404 past authorization on a server that is no cluster node).
    if path == "/api/v1/sync/{source_kind}" || path == "/api/v1/cluster" {
        return Some("users.view".to_owned());
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
    if path.starts_with("/api/v1/groups/{group}/members") {
        return Some("groups.change".to_owned());
    }
    let resource = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .expect("a resource");
    // Handing an adopted user or group back to `local` changes it.
    if path.ends_with("/release") {
        return Some(format!("{resource}.change"));
    }
    let verb = if path.ends_with("/export") {
        "view"
    } else if path.ends_with("/import") || path.ends_with("/clone") {
        "add"
    } else {
        match method {
            "GET" => "view",
            "POST" => "add",
            "PUT" | "PATCH" => "change",
            "DELETE" => "delete",
            other => panic!("no designed permission for {other} {path}"),
        }
    };
    Some(format!("{resource}.{verb}"))
}

/// The permission of a console route (a signed-in user's effective roles on the
/// global scope must carry it), by design: the same as the API route it mirrors.
/// `None`: public (the sign-in form, the stylesheet and scripts); `Some("")`: any
/// signed-in user (home, sign-out, my assets, my profile).
pub fn console_permission(method: &str, path: &str) -> Option<String> {
    if path.starts_with("/ui/static/") || path.starts_with("/ui/login") {
        return None;
    }
    if ["/ui", "/ui/", "/ui/logout"].contains(&path) || path.starts_with("/ui/me") {
        return Some(String::new());
    }
    if path == "/ui/tester" {
        return Some("decisions.check".to_owned());
    }
    if path.starts_with("/ui/changes") {
        return Some("changes.view".to_owned());
    }
    if path == "/ui/transfer" {
        return Some("users.view".to_owned());
    }
    if let Some(rest) = path.strip_prefix("/ui/transfer/") {
        let (kind, what) = rest.split_once('/').expect("/ui/transfer/KIND/WHAT");
        let verb = if what == "import" { "add" } else { "view" };
        return Some(format!("{kind}.{verb}"));
    }
    let segments: Vec<&str> = path.trim_start_matches("/ui/").split('/').collect();
    let resource = segments[0];
    let last = *segments.last().expect("a segment");
    let verb = match (method, segments.len(), last) {
        (_, _, "new" | "duplicate" | "clone") => "add",
        (_, _, "edit" | "active" | "release" | "members" | "remove" | "roles") => "change",
        ("GET", _, _) => "view",
        ("POST", 1, _) => "add",
        ("POST", _, _) => "change",
        (other, _, _) => panic!("no designed permission for {other} {path}"),
    };
    Some(format!("{resource}.{verb}"))
}

/// Every route: the route table, the server's OpenAPI document (which adds the cli's
/// routes) and SCIM.
pub fn all_routes(api: &Api) -> Vec<(String, String)> {
    let mut routes: BTreeSet<(String, String)> =
        portcullis_http::route_list().into_iter().collect();
    let document = api.get("/api/v1/openapi.json").json;
    let paths = document["paths"]
        .as_object()
        .expect("paths in the document");
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let method = method.to_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                routes.insert((method, path.clone()));
            }
        }
    }
    for route in portcullis_http::route_list() {
        assert!(
            routes.contains(&route),
            "the server's document lacks {route:?}"
        );
    }
    routes.extend(
        SCIM_ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string())),
    );
    routes.into_iter().collect()
}

/// A concrete request for a route that, even when allowed, changes nothing: unknown
/// targets, empty bodies.
pub fn harmless_request(
    method: &str,
    path: &str,
) -> (String, Option<&'static str>, Option<Vec<u8>>) {
    let mut concrete = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        concrete.push('/');
        if segment.starts_with('{') {
            concrete.push_str(match segment {
                "{id}" if path.contains("ResourceTypes") => "User",
                "{id}" if path.contains("Schemas") => "urn:ietf:params:scim:schemas:core:2.0:User",
                _ => "no-such-thing",
            });
        } else {
            concrete.push_str(segment);
        }
    }
    if path == "/api/v1/watch" {
        concrete.push_str("?since=0");
    }
    let body = match method {
        "GET" | "DELETE" => None,
        _ if path.ends_with("/import") => return (concrete, Some("text/csv"), Some(Vec::new())),
        _ if path.starts_with("/scim/") => {
            return (
                concrete,
                Some("application/scim+json"),
                Some(b"{}".to_vec()),
            );
        }
        _ => Some(b"{}".to_vec()),
    };
    let content_type = body.as_ref().map(|_| "application/json");
    (concrete, content_type, body)
}

/// The status of a request; streams (`/watch`) are not read past their headers.
fn status(api: &Api, method: &str, path: &str) -> u16 {
    let (url, content_type, body) = harmless_request(method, path);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = api
        .client
        .request(method, format!("{}{url}", api.base))
        .timeout(Duration::from_secs(10));
    if let Some(token) = &api.token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().unwrap_or_else(|e| panic!("{path}: {e}"));
    response.status().as_u16()
}

/// The permissions of the built-in roles, as docs/semantics.md and the README define them.
fn role_holds(role: &str, permission: &str) -> bool {
    match role {
        "system-admin" => true,
        "system-auditor" => permission.ends_with(".view") || permission == "decisions.check",
        "checker" => permission == "decisions.check",
        "scim" => permission == "scim.provision",
        "custom" => permission == "users.view",
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn every_route_by_every_caller_gets_the_designed_status() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    small_estate(&admin);
    admin.create(
        "/api/v1/roles",
        json!({"name": "one-permission", "permissions": ["users.view"]}),
    );
    let mut callers: Vec<(&str, Option<String>)> = vec![
        (
            "system-admin",
            Some(admin.token("m-admin", &["system-admin"], None)),
        ),
        (
            "system-auditor",
            Some(admin.token("m-auditor", &["system-auditor"], None)),
        ),
        (
            "checker",
            Some(admin.token("m-checker", &["checker"], None)),
        ),
        ("scim", Some(admin.token("m-scim", &["scim"], None))),
        (
            "custom",
            Some(admin.token("m-custom", &["one-permission"], None)),
        ),
    ];
    let revoked = admin.token("m-revoked", &["system-admin"], None);
    assert_eq!(
        admin.with_token(Some(&revoked)).get("/api/v1/users").status,
        200
    );
    let deleted = admin.send("DELETE", "/api/v1/tokens/m-revoked", None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    // A token that expires in 2–3 s (expiries are whole seconds). It must work
    // before its expiry, or its 401 below would not show that expiry is what ends it.
    let expiry = std::time::SystemTime::now() + Duration::from_secs(3);
    let soon = expiry
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let expired = admin.token("m-expired", &["system-admin"], Some(&rfc3339(soon)));
    let before_expiry = admin.with_token(Some(&expired)).get("/api/v1/users");
    assert!(
        std::time::SystemTime::now() < std::time::UNIX_EPOCH + Duration::from_secs(soon),
        "the machine took over 2 s to create and use one token: nothing to compare"
    );
    assert_eq!(
        before_expiry.status,
        200,
        "the token works until it expires: {}",
        before_expiry.text()
    );
    let routes = all_routes(&admin);
    let revision = admin.revision();
    // Wait for the expiry to pass (the server reads the same clock).
    let expired_at = std::time::UNIX_EPOCH + Duration::from_millis(soon * 1000 + 100);
    if let Ok(left) = expired_at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
    callers.push(("none", None));
    callers.push(("revoked", Some(revoked)));
    callers.push(("expired", Some(expired)));
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for (method, path) in routes.iter().filter(|(_, path)| !path.starts_with("/ui")) {
        let needs = designed_permission(method, path);
        for (role, token) in &callers {
            let api = admin.with_token(token.as_deref());
            let got = status(&api, method, path);
            n_cases += 1;
            let unauthenticated = matches!(*role, "none" | "revoked" | "expired");
            let ok = match (&needs, unauthenticated) {
                (None, _) => got == 200,
                (Some(needs), _) if needs == SELF_SERVICE => {
                    (400..500).contains(&got) && got != 401 && got != 403
                }
                (Some(_), true) => got == 401,
                (Some(permission), false)
                    if permission.is_empty() || role_holds(role, permission) =>
                {
                    (200..500).contains(&got) && got != 401 && got != 403
                }
                (Some(_), false) => got == 403,
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {role} (needs {needs:?}): {got}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(admin.revision(), revision, "the matrix wrote something");
    eprintln!(
        "authz: {} routes × {} callers = {n_cases} cases",
        routes.len(),
        callers.len()
    );
    assert!(
        routes.len() > 80,
        "the matrix covers every route: {}",
        routes.len()
    );
}

/// SCIM's routes are routes of the server's one table: the OpenAPI document lists
/// them (so [`all_routes`] walks them), each needs `scim.provision`, and the stack
/// refuses each without a token (401) or without that permission (403) in SCIM's
/// error format.
#[test]
fn scim_routes_are_in_the_matrix_and_refused_in_scim_format() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let document = admin.get("/api/v1/openapi.json").json;
    let mut scim = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        if !path.starts_with("/scim/v2/") {
            continue;
        }
        for (method, operation) in operations.as_object().expect("operations") {
            assert_eq!(
                operation["x-permission"], "scim.provision",
                "{method} {path}"
            );
            scim.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(scim.len() >= 14, "SCIM's routes in the document: {scim:?}");
    let routes = all_routes(&admin);
    let checker = admin.token("scim-less", &["checker"], None);
    let revision = admin.revision();
    for (method, path) in &scim {
        assert!(
            routes.contains(&(method.clone(), path.clone())),
            "the matrix misses {method} {path}"
        );
        let (url, content_type, body) = harmless_request(method, path);
        for (token, status) in [(None, 401), (Some(checker.as_str()), 403)] {
            let answer = admin
                .with_token(token)
                .raw(method, &url, content_type, body.clone());
            let what = format!("{method} {url} with {token:?}: {}", answer.text());
            assert_eq!(answer.status, status, "{what}");
            assert_eq!(
                answer.headers["content-type"], "application/scim+json",
                "{what}"
            );
            assert_eq!(
                answer.json["schemas"],
                json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
                "{what}"
            );
            assert_eq!(answer.json["status"], json!(status.to_string()), "{what}");
        }
    }
    assert_eq!(
        admin.revision(),
        revision,
        "the refused requests wrote nothing"
    );
}

#[test]
fn revocation_and_role_changes_take_effect_on_the_next_request() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    admin.create(
        "/api/v1/roles",
        json!({"name": "viewer", "permissions": ["users.view", "scim.provision"]}),
    );
    let secret = admin.token("short-lived", &["viewer"], None);
    let api = admin.with_token(Some(&secret));
    assert_eq!(api.get("/api/v1/users").status, 200);
    assert_eq!(api.get("/scim/v2/Users").status, 200);
    // The role loses a permission: refused at once, on HTTP and SCIM alike.
    let patched = admin.send(
        "PATCH",
        "/api/v1/roles/viewer",
        Some(&json!({"permissions": ["groups.view"]})),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(api.get("/api/v1/users").status, 403);
    assert_eq!(api.get("/scim/v2/Users").status, 403);
    assert_eq!(api.get("/api/v1/groups").status, 200);
    // Revoked: the very next request is refused, on both.
    let deleted = admin.send("DELETE", "/api/v1/tokens/short-lived", None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let refused = api.get("/api/v1/groups");
    assert_eq!(refused.status, 401);
    assert!(
        refused.json["error"]["code"].is_string(),
        "{}",
        refused.text()
    );
    assert_eq!(api.get("/scim/v2/Users").status, 401);
    // A token acting for a user dies with the user's deactivation.
    admin.create("/api/v1/users", json!({"username": "owner"}));
    let owned = admin.create(
        "/api/v1/tokens",
        json!({"name": "owned", "user": "owner", "roles": ["system-auditor"]}),
    );
    let owned = admin.with_token(owned["secret"].as_str());
    assert_eq!(owned.get("/api/v1/users").status, 200);
    let patched = admin.send(
        "PATCH",
        "/api/v1/users/owner",
        Some(&json!({"active": false})),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(owned.get("/api/v1/users").status, 401);
    // A token never mints a token with more than it holds.
    let auditor = admin.with_token(Some(&admin.token("aud", &["system-auditor"], None)));
    let escalate = auditor.post(
        "/api/v1/tokens",
        &json!({"name": "x", "roles": ["system-admin"]}),
    );
    assert_eq!(escalate.status, 403, "{}", escalate.text());
}

/// Seconds since 1970 as RFC 3339 (UTC).
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let rem = unix % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A console session: its cookie and its CSRF token, made by signing in through the
/// console's own form.
struct Session {
    cookie: String,
    csrf: String,
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

fn set_cookie(answer: &reqwest::blocking::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            value
                .split(';')
                .next()
                .and_then(|pair| pair.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        })
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[at..].split('"').next().expect("a value").to_owned()
}

/// Signs `login` in through `/ui/login`.
fn console_sign_in(base: &str, login: &str, password: &str) -> Session {
    let client = no_redirects();
    let form = client
        .get(format!("{base}/ui/login"))
        .send()
        .expect("the form");
    let double_submit = set_cookie(&form, "pc_csrf").expect("a CSRF cookie");
    let token = csrf_of(&form.text().expect("HTML"));
    let answer = client
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("pc_csrf={double_submit}"))
        .form(&[
            ("_csrf", token.as_str()),
            ("login", login),
            ("password", password),
        ])
        .send()
        .expect("sign in");
    assert_eq!(answer.status().as_u16(), 303, "{login} signs in");
    let cookie = set_cookie(&answer, "pc_session").expect("a session cookie");
    let page = client
        .get(format!("{base}/ui/me"))
        .header("cookie", format!("pc_session={cookie}"))
        .send()
        .expect("my profile");
    assert_eq!(page.status().as_u16(), 200);
    let csrf = csrf_of(&page.text().expect("HTML"));
    Session { cookie, csrf }
}

/// The status of a console request as `session` (with its CSRF token on state
/// changes), and where a redirect goes.
fn console_status(
    base: &str,
    session: Option<&Session>,
    method: &str,
    path: &str,
) -> (u16, String) {
    let (url, _, _) = harmless_request(method, path);
    let client = no_redirects();
    let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let csrf = session.map_or("", |session| session.csrf.as_str());
    let target = if path.ends_with("/import") {
        format!("{base}{url}?_csrf={csrf}")
    } else {
        format!("{base}{url}")
    };
    let mut request = client.request(method_value, target);
    if let Some(session) = session {
        request = request.header("cookie", format!("pc_session={}", session.cookie));
    }
    if method == "POST" {
        request = if path.ends_with("/import") {
            request
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x--\r\n")
        } else {
            request.form(&[("_csrf", csrf)])
        };
    }
    let answer = request.send().unwrap_or_else(|e| panic!("{path}: {e}"));
    let location = answer
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (answer.status().as_u16(), location)
}

/// The console's routes by every kind of signed-in user, and without a session:
/// redirected to the sign-in form without one, 403 without the permission, the
/// page's own answer with it — and nothing written.
#[test]
fn every_console_route_by_every_kind_of_user_gets_the_designed_status() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    small_estate(&admin);
    admin.create(
        "/api/v1/roles",
        json!({"name": "one-permission", "permissions": ["users.view"]}),
    );
    let password = "matrix-Passw0rd-long";
    let roles = [
        ("system-admin", "m-admin"),
        ("system-auditor", "m-auditor"),
        ("user", "m-user"),
        ("one-permission", "m-custom"),
    ];
    for (role, username) in roles {
        admin.create(
            "/api/v1/users",
            json!({"username": username, "password": password, "system_roles": [role]}),
        );
    }
    let sessions: Vec<(&str, Option<Session>)> = roles
        .iter()
        .map(|(role, username)| {
            (
                *role,
                Some(console_sign_in(&admin.base, username, password)),
            )
        })
        .chain([("none", None)])
        .collect();
    let holds = |role: &str, permission: &str| match role {
        "system-admin" => true,
        "system-auditor" => permission.ends_with(".view") || permission == "decisions.check",
        "user" => false,
        "one-permission" => permission == "users.view",
        other => panic!("unknown role {other}"),
    };
    let mut routes: Vec<(String, String)> = all_routes(&admin)
        .into_iter()
        .filter(|(_, path)| path == "/ui" || path.starts_with("/ui/"))
        .collect();
    // Sign-out last (it ends the session); the self-service forms, which record failed
    // sign-ins, after the revision check.
    routes.sort_by_key(|(_, path)| {
        (
            path == "/ui/logout",
            path.starts_with("/ui/me") || path.starts_with("/ui/login"),
        )
    });
    assert!(routes.len() > 50, "the console's routes: {}", routes.len());
    let revision = admin.revision();
    let mut checked_revision = false;
    let mut failures = Vec::new();
    let mut slowest = Vec::new();
    for (method, path) in &routes {
        if !checked_revision
            && (path.starts_with("/ui/me") || path.starts_with("/ui/login") || path == "/ui/logout")
        {
            assert_eq!(
                admin.revision(),
                revision,
                "the console matrix wrote something"
            );
            checked_revision = true;
        }
        let needs = console_permission(method, path);
        for (role, session) in &sessions {
            let started = std::time::Instant::now();
            let (got, location) = console_status(&admin.base, session.as_ref(), method, path);
            slowest.push((started.elapsed(), format!("{method} {path} as {role}")));
            let to_sign_in = got == 303 && location.starts_with("/ui/login");
            let ok = match (&needs, session) {
                (None, _) => !to_sign_in && got < 500,
                // Signing out ends the session and goes to the sign-in form.
                (Some(_), Some(session)) if path == "/ui/logout" => {
                    to_sign_in
                        && console_status(&admin.base, Some(session), "GET", "/ui/me").0 == 303
                }
                (Some(_), None) => to_sign_in,
                (Some(permission), Some(_)) if permission.is_empty() || holds(role, permission) => {
                    !to_sign_in && got != 401 && got != 403 && got < 500
                }
                (Some(_), Some(_)) => got == 403,
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {role} (needs {needs:?}): {got} {location}"
                ));
            }
        }
    }
    slowest.sort();
    eprintln!(
        "slowest console requests: {:?}",
        &slowest[slowest.len().saturating_sub(5)..]
    );
    assert!(
        failures.is_empty(),
        "{} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // No CSRF token: refused, whoever asks (a fresh administrator: the matrix's have
    // signed out, and locked themselves out with the forms' wrong passwords).
    admin.create(
        "/api/v1/users",
        json!({"username": "m-csrf", "password": password, "system_roles": ["system-admin"]}),
    );
    let session = console_sign_in(&admin.base, "m-csrf", password);
    let refused = no_redirects()
        .post(format!("{}/ui/users/m-user/active", admin.base))
        .header("cookie", format!("pc_session={}", session.cookie))
        .form(&[("active", "false")])
        .send()
        .expect("a forged request");
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(admin.get("/api/v1/users/m-user").json["active"], true);
    // A bearer token opens no console page.
    let answer = admin.raw("GET", "/ui/users", None, None);
    assert!(
        answer.status == 200 && answer.text().contains("Sign in"),
        "a bearer token is not a session"
    );
}
