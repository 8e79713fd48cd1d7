//! The console's static files, embedded in the binary: its stylesheet and the vendored
//! htmx with its server-sent-events extension (no request to any other host; the
//! product runs in air-gapped networks). htmx is BSD-0 (`assets/htmx-LICENSE`).

use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Access;
use crate::routes::Route;

const CSS: &[u8] = include_bytes!("assets/console.css");
/// htmx 2.0.11, `dist/htmx.min.js` of the npm package `htmx.org`.
const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
/// htmx-ext-sse 2.2.4, `dist/sse.min.js` of the npm package `htmx-ext-sse`.
const SSE: &[u8] = include_bytes!("assets/sse.min.js");

fn file(media_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = super::html::secured(bytes.into_response());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

pub(crate) fn routes() -> Vec<Route> {
    vec![
        super::route(
            Method::GET,
            "/ui/static/console.css",
            Access::Public,
            "The console's stylesheet",
            || async { file("text/css; charset=utf-8", CSS) },
        ),
        super::route(
            Method::GET,
            "/ui/static/htmx.min.js",
            Access::Public,
            "htmx (vendored)",
            || async { file("text/javascript; charset=utf-8", HTMX) },
        ),
        super::route(
            Method::GET,
            "/ui/static/sse.min.js",
            Access::Public,
            "htmx's server-sent-events extension (vendored)",
            || async { file("text/javascript; charset=utf-8", SSE) },
        ),
    ]
}
