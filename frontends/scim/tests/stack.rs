//! SCIM behind the one HTTP stack: its requests are counted in `/metrics`, listed in
//! the OpenAPI document, authenticated, limited and timed by the stack's layers, and
//! every refusal of the stack on a SCIM path is a SCIM error.

use std::time::Duration;

use portcullis_http::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Server, test_settings};

const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Asserts that `body` is a SCIM error of `status`.
#[track_caller]
fn assert_scim_error(content_type: Option<&str>, body: &Value, status: u16) {
    assert_eq!(content_type, Some("application/scim+json"), "{body}");
    assert_eq!(body["schemas"], json!([ERROR]), "{body}");
    assert_eq!(body["status"], json!(status.to_string()), "{body}");
    assert!(body["detail"].is_string(), "{body}");
}

/// A raw HTTP/1.1 exchange over loopback: sends `head` and `body`, then reads the
/// answer (within 10 s). Returns the status and the answer's body as JSON.
async fn raw_exchange(server: &Server, head: &str, body: &[u8], pause: Duration) -> (u16, Value) {
    let address = server.origin.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(body).await.expect("send body");
    tokio::time::sleep(pause).await;
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if complete(&answer) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {text}"));
    let (headers, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/scim+json"),
        "{headers}"
    );
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// Whether `answer` holds a whole response with a `Content-Length`.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

#[tokio::test]
async fn scim_requests_are_counted_in_metrics() {
    let server = Server::start().await;
    server.get("/Users").await.expect(200);
    server.user("metered").await;
    let text = metrics(&server).await;
    for needle in [
        "portcullis_http_requests_total{method=\"GET\",route=\"/scim/v2/{resource}\",status=\"200\"} 1",
        "portcullis_http_requests_total{method=\"POST\",route=\"/scim/v2/{resource}\",status=\"201\"} 1",
        "portcullis_http_request_duration_seconds_count{route=\"/scim/v2/{resource}\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

/// The server's `/metrics` text.
async fn metrics(server: &Server) -> String {
    server
        .client
        .get(format!("{}/metrics", server.origin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the metric line that starts with `name ` in `/metrics`.
async fn metric(server: &Server, name: &str) -> f64 {
    let text = metrics(server).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn scim_writes_are_counted_in_the_write_metrics() {
    let server = Server::start().await;
    let count = "portcullis_write_duration_seconds_count";
    let failures = "portcullis_write_failures_total";
    let (written, failed) = (
        metric(&server, count).await,
        metric(&server, failures).await,
    );
    server.user("metered").await;
    assert_eq!(metric(&server, count).await, written + 1.0);
    assert_eq!(metric(&server, failures).await, failed);
    // The same userName again: refused by the engine, counted as a failed write.
    let user =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "metered"});
    server.post("/Users", user).await.expect(409);
    assert_eq!(metric(&server, count).await, written + 2.0);
    assert_eq!(metric(&server, failures).await, failed + 1.0);
}

#[tokio::test]
async fn the_stack_refuses_in_scim_format_on_scim_paths_only() {
    let server = Server::start().await;
    let checker = server.new_token("gateway", &["checker"]).await;
    for (token, status) in [
        (None, 401),
        (Some("pc_not-a-token"), 401),
        (Some(&*checker), 403),
    ] {
        let mut request = server.client.post(server.url("/Users"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .header("content-type", "application/scim+json")
            .body(json!({"userName": "refused"}).to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), status);
        if status == 401 {
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"portcullis-scim\""
            );
        }
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.expect("a JSON body");
        assert_scim_error(Some(&content_type), &body, status);
    }
    let unknown = server.get("/Users/one/two").await.expect(404);
    assert_scim_error(unknown.header("content-type"), &unknown.body, 404);
    let wrong_method = server
        .send_with(Method::DELETE, "/Bulk", None, &[])
        .await
        .expect(405);
    assert_scim_error(wrong_method.header("content-type"), &wrong_method.body, 405);
    let long_uri = server
        .get(&format!("/Users?filter={}", "x".repeat(9 * 1024)))
        .await
        .expect(414);
    assert_scim_error(long_uri.header("content-type"), &long_uri.body, 414);
    assert!(server.engine.snapshot().user("refused").is_none());
    // Outside /scim/v2, the API's own error shape.
    let api = server
        .client
        .get(format!("{}/api/v1/users", server.origin))
        .send()
        .await
        .expect("send");
    assert_eq!(api.status().as_u16(), 401);
    let body: Value = api.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "unauthenticated");
}

#[tokio::test]
async fn the_stack_limits_scim_bodies() {
    let server = Server::start().await;
    let limit = test_settings().max_payload_size;
    // A declared length over the limit: refused before any handler reads it.
    let big = json!({"userName": "x".repeat(limit)}).to_string();
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: scim.test\r\nauthorization: Bearer {}\r\ncontent-type: application/scim+json\r\ncontent-length: {}\r\n\r\n",
        server.token,
        big.len()
    );
    let (status, body) = raw_exchange(&server, &head, big.as_bytes(), Duration::ZERO).await;
    assert_eq!(status, 413, "{body}");
    assert_scim_error(Some("application/scim+json"), &body, 413);
    assert!(
        body["detail"].as_str().unwrap().contains("maxPayloadSize"),
        "{body}"
    );
    // A chunked body, whose length nobody declared: cut at the limit.
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: scim.test\r\nauthorization: Bearer {}\r\ncontent-type: application/scim+json\r\ntransfer-encoding: chunked\r\n\r\n",
        server.token
    );
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let (status, body) = raw_exchange(&server, &head, chunked.as_bytes(), Duration::ZERO).await;
    assert_eq!(status, 413, "{body}");
    assert_scim_error(Some("application/scim+json"), &body, 413);
    assert_eq!(server.engine.snapshot().counts().users, 0);
}

#[tokio::test]
async fn the_stack_times_out_slow_scim_requests() {
    let stack = Settings {
        request_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let server = Server::start_on(test_settings(), stack).await;
    // The head arrives, the body never does: the handler waits for it past the
    // request timeout, so nothing was handed to the engine and the answer is 503.
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: scim.test\r\nauthorization: Bearer {}\r\ncontent-type: application/scim+json\r\ncontent-length: 100\r\n\r\n",
        server.token
    );
    let (status, body) = raw_exchange(&server, &head, b"{\"userName\"", Duration::ZERO).await;
    assert_eq!(status, 503, "{body}");
    assert_scim_error(Some("application/scim+json"), &body, 503);
    assert_eq!(server.engine.snapshot().counts().users, 0);
    // A request within the timeout is served as ever.
    server.user("prompt").await;
}

#[tokio::test]
async fn the_openapi_document_lists_scim_routes() {
    let server = Server::start().await;
    let document: Value = server
        .client
        .get(format!("{}/api/v1/openapi.json", server.origin))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("a JSON document");
    let paths = document["paths"].as_object().expect("paths");
    let scim: Vec<(&String, &Value)> = paths
        .iter()
        .filter(|(path, _)| path.starts_with("/scim/v2/"))
        .collect();
    for (path, method) in [
        ("/scim/v2/{resource}", "get"),
        ("/scim/v2/{resource}", "post"),
        ("/scim/v2/{resource}/{id}", "patch"),
        ("/scim/v2/{resource}/{id}", "delete"),
        ("/scim/v2/Bulk", "post"),
        ("/scim/v2/Schemas", "get"),
        ("/scim/v2/Schemas/{id}", "get"),
        ("/scim/v2/ServiceProviderConfig", "get"),
    ] {
        let operation = &document["paths"][path][method];
        assert_eq!(
            operation["x-permission"], "scim.provision",
            "{method} {path}"
        );
        assert!(
            operation["responses"]["default"]["content"]["application/scim+json"].is_object(),
            "{method} {path}: {operation}"
        );
    }
    // Every schema a SCIM operation names is defined.
    let mut references = Vec::new();
    for (_, operations) in &scim {
        collect_references(operations, &mut references);
    }
    assert!(references.len() > 20, "{references:?}");
    for reference in references {
        let name = reference.rsplit('/').next().unwrap();
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{reference} is not defined"
        );
    }
}

fn collect_references(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => into.push(reference.clone()),
                    _ => collect_references(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, into)),
        _ => {}
    }
}
