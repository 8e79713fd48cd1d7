#![doc = include_str!("../README.md")]
//!
//! This crate must never decide what a rule means, nor write to the store except
//! through the engine's writes; engine errors become SCIM errors in `error.rs` and
//! nowhere else. It serves HTTP only through the HTTP stack (`portcullis-http`): its
//! routes join that stack's one route table, whose layers authenticate, limit, time
//! and count SCIM's requests as they do every other, and word their refusals as SCIM
//! errors (`error.rs`).

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

pub use error::{ScimError, ScimType};
pub use routes::{ADOPTED_FROM_HEADER, REVISION_HEADER, ROOT, routes};

/// Limits of the SCIM service provider. The bulk and filter limits are advertised in
/// `/ServiceProviderConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimSettings {
    /// The absolute URL of the SCIM root as clients reach it
    /// (`https://pam.example.com/scim/v2`), for `Location`, `meta.location` and
    /// `$ref`. `None`: built from each request's `Host` (and `X-Forwarded-Proto`)
    /// and [`ROOT`].
    pub base_url: Option<String>,
    /// The most resources one list response holds (`filter.maxResults`); a larger
    /// `count` is lowered to it.
    pub max_results: usize,
    /// The most operations in one bulk request (`bulk.maxOperations`); more is 413.
    pub max_operations: usize,
    /// The largest request body in bytes (`bulk.maxPayloadSize`, and every other
    /// request too): the body limit of SCIM's routes in the HTTP stack; larger is 413.
    pub max_payload_size: usize,
    /// The longest filter or PATCH path, in bytes; longer is `invalidFilter`.
    pub max_filter_len: usize,
    /// The deepest nesting of groups, `not` and value filters; deeper is
    /// `invalidFilter`.
    pub max_filter_depth: usize,
    /// The most matching resources a request may ask to sort; more is `tooMany`.
    pub max_sort: usize,
    /// The users and groups of other sources SCIM may take over (`[scim] adopt`,
    /// `adopt_privileged`): default none, so an identity provider's token cannot
    /// claim an existing account unless the operator says so.
    pub adopt: portcullis_engine::AdoptionPolicy,
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
            adopt: portcullis_engine::AdoptionPolicy::default(),
        }
    }
}
