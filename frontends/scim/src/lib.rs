#![doc = include_str!("../README.md")]
//!
//! This crate must never decide what a rule means, nor write to the store except
//! through the engine's writes; engine errors become SCIM errors in `error.rs` and
//! nowhere else.

mod auth;
mod bulk;
mod error;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
mod patch;
mod query;
mod resource;
mod routes;
mod schema;
mod service;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use portcullis_engine::Engine;

pub use error::{ScimError, ScimType};
pub use routes::REVISION_HEADER;

/// Limits of the SCIM service provider. The bulk and filter limits are advertised in
/// `/ServiceProviderConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimSettings {
    /// The absolute URL of the SCIM root as clients reach it
    /// (`https://pam.example.com/scim/v2`), for `Location`, `meta.location` and
    /// `$ref`. `None`: built from each request's `Host` (and `X-Forwarded-Proto`)
    /// and the path the router is nested under.
    pub base_url: Option<String>,
    /// The most resources one list response holds (`filter.maxResults`); a larger
    /// `count` is lowered to it.
    pub max_results: usize,
    /// The most operations in one bulk request (`bulk.maxOperations`); more is 413.
    pub max_operations: usize,
    /// The largest request body in bytes (`bulk.maxPayloadSize`, and every other
    /// request too); larger is 413.
    pub max_payload_size: usize,
    /// The longest filter or PATCH path, in bytes; longer is `invalidFilter`.
    pub max_filter_len: usize,
    /// The deepest nesting of groups, `not` and value filters; deeper is
    /// `invalidFilter`.
    pub max_filter_depth: usize,
    /// The most matching resources a request may ask to sort; more is `tooMany`.
    pub max_sort: usize,
}

impl Default for ScimSettings {
    fn default() -> ScimSettings {
        ScimSettings {
            base_url: None,
            max_results: 1000,
            max_operations: 1000,
            max_payload_size: 1024 * 1024,
            max_filter_len: 4096,
            max_filter_depth: 16,
            max_sort: 100_000,
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Scim {
    service: Arc<service::Service>,
}

/// The SCIM 2.0 service provider, with paths relative to the SCIM root: nest it,
/// `Router::new().nest("/scim/v2", portcullis_scim::router(engine, settings))`.
/// Every route requires a bearer token whose roles carry `scim.provision`.
pub fn router(engine: Arc<Engine>, settings: ScimSettings) -> Router {
    let scim = Scim {
        service: Arc::new(service::Service { engine, settings }),
    };
    Router::new()
        .route(
            "/ServiceProviderConfig",
            get(routes::service_provider_config),
        )
        .route("/ResourceTypes", get(routes::resource_types))
        .route("/ResourceTypes/{id}", get(routes::resource_type))
        .route("/Schemas", get(routes::schemas))
        .route("/Schemas/{id}", get(routes::schema))
        .route("/Bulk", post(routes::bulk))
        .route("/.search", post(routes::search_all))
        .route("/{resource}", get(routes::list).post(routes::create))
        .route("/{resource}/.search", post(routes::search))
        .route(
            "/{resource}/{id}",
            get(routes::get)
                .put(routes::replace)
                .patch(routes::patch)
                .delete(routes::delete),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            scim.clone(),
            auth::authorize,
        ))
        .with_state(scim)
}
