#![doc = include_str!("../README.md")]

mod bind;
mod config;
mod directory;
mod error;
mod plan;
pub mod range;
mod state;
mod sync;

pub use bind::LdapPasswordBackend;
pub use config::{
    BindPassword, Flavor, GroupConfig, Incremental, MAX_PAGE_SIZE, MIN_INTERVAL_SECS,
    RemovedGroups, RemovedUsers, Scope, Source, SourceConfig, Sources, UserConfig,
    sources_from_toml,
};
pub use directory::{escape_filter_value, normalize_dn, object_guid};
pub use error::SyncError;
pub use plan::{Action, Change, Clash, Counts};
pub use sync::{
    Mode, RunOptions, RunReport, SourceStatus, StatusBoard, actor, run, run_periodically,
};

/// Resolves every source of `sources` (or only `only`), in name order.
pub fn resolve_sources(sources: &Sources, only: Option<&str>) -> Result<Vec<Source>, SyncError> {
    if let Some(name) = only {
        let config = sources
            .get(name)
            .ok_or_else(|| SyncError::UnknownSource(name.to_owned()))?;
        return Ok(vec![Source::resolve(name, config)?]);
    }
    sources
        .iter()
        .map(|(name, config)| Source::resolve(name, config))
        .collect()
}

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
