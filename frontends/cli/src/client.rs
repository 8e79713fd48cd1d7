//! The commands as clients of a running server: with `--server URL` (or
//! `PORTCULLIS_SERVER`), `check`, `explain`, `list-assets`, `import`, `export`, `token`
//! and `user` ask the server's HTTP API instead of opening the data directory, which
//! a running server holds locked. They print the same output and exit with the same
//! codes either way: each command turns the server's JSON into the values it prints
//! from the store.
//!
//! The token comes from `PORTCULLIS_TOKEN` or the first line of `--token-file`, never
//! from an argument (other users of the machine can read a process's arguments).
//! Only `http://` URLs: this client has no TLS.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use serde_json::Value;

use crate::error::CliError;

/// How long one request may take; imports of large files take a while.
const TIMEOUT: Duration = Duration::from_secs(600);

/// A running server and the token to ask it with.
pub struct Client {
    base: String,
    token: String,
    http: Http,
}

/// An answer other than 2xx: the error body's code and message, and the whole body.
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub body: Value,
}

impl Client {
    /// The client for `server`, with the token from `token_file` or else the
    /// environment's `PORTCULLIS_TOKEN`.
    pub fn new(server: &str, token_file: Option<&Path>) -> Result<Client, CliError> {
        let base = server.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(CliError::Input(format!(
                "--server `{server}`: give an http:// URL, such as http://127.0.0.1:8080 (this client has no TLS)"
            )));
        }
        let token = match token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    CliError::Input(format!("cannot read `{}`: {error}", path.display()))
                })?;
                text.lines().next().unwrap_or_default().trim().to_owned()
            }
            None => std::env::var("PORTCULLIS_TOKEN").unwrap_or_default(),
        };
        if token.is_empty() {
            return Err(CliError::Input(
                "--server needs an API token: set PORTCULLIS_TOKEN, or pass --token-file FILE"
                    .to_owned(),
            ));
        }
        let http = Http::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|error| CliError::System(format!("cannot start an HTTP client: {error}")))?;
        Ok(Client { base, token, http })
    }

    /// A request to `path` (under the server's root, such as `/api/v1/check`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `request`: a 2xx answer, or the server's refusal.
    pub fn send(&self, request: RequestBuilder) -> Result<Result<Response, Refusal>, CliError> {
        let response = request.send().map_err(|error| {
            CliError::System(format!("cannot reach the server at {}: {error}", self.base))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Ok(response));
        }
        let body: Value = response.json().unwrap_or(Value::Null);
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}"));
        Ok(Err(Refusal {
            status: status.as_u16(),
            message,
            body,
        }))
    }

    /// Sends `request` and reads a JSON answer; a refusal is an error.
    pub fn json(&self, request: RequestBuilder) -> Result<Value, CliError> {
        match self.send(request)? {
            Ok(response) => read_json(response),
            Err(refusal) => Err(refusal.into()),
        }
    }

    /// Every item of a paged list (`{revision, total, items}`), page after page from
    /// offset 0, with the first page's revision. `query` is sent with every page.
    pub fn all_pages(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(Value, Vec<Value>), CliError> {
        let mut items = Vec::new();
        let mut revision = Value::Null;
        loop {
            let offset = [("offset", items.len().to_string())];
            let page = self.json(self.request(Method::GET, path).query(query).query(&offset))?;
            let read = page["items"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or_default();
            if revision.is_null() {
                revision = page["revision"].clone();
            }
            let done = read.is_empty();
            items.extend(read);
            if done || items.len() as u64 >= total {
                return Ok((revision, items));
            }
        }
    }
}

/// A 2xx answer's JSON body.
pub fn read_json(response: Response) -> Result<Value, CliError> {
    response
        .json()
        .map_err(|error| CliError::System(format!("the server's answer is not JSON: {error}")))
}

/// A refusal as the error the same command gets on a data directory: the request's
/// own mistakes (unknown names, bad values, conflicts) are bad input (exit 2); a
/// refused token, a missing permission and the server's own failures mean the command
/// could not run (exit 3).
impl From<Refusal> for CliError {
    fn from(refusal: Refusal) -> CliError {
        match refusal.status {
            401 | 403 => CliError::System(format!(
                "the server refused the token ({}): {}",
                refusal.status, refusal.message
            )),
            400..=499 if refusal.status != 408 && refusal.status != 429 => {
                CliError::Input(refusal.message)
            }
            _ => CliError::System(format!(
                "the server answered {}: {}",
                refusal.status, refusal.message
            )),
        }
    }
}

/// A path segment, percent-encoded (node paths hold `/`).
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'@') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
