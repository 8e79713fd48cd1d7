#![doc = include_str!("../README.md")]

mod adoption;
mod cluster;
mod credentials;
mod engine;
mod error;
mod eval;
mod image;
mod mapped;
mod model;
mod secrets;
mod side;
mod snapshot;
mod store;
mod write;
mod write_stats;

pub use adoption::{
    AdoptionEntry, AdoptionPolicy, AdoptionRefusal, Matched, MatchedBy, find_match,
};
pub use cluster::{ChangeLog, LockedLog, LogEntry, LogError, NodeStatus};
pub use credentials::{Argon2Settings, CredentialPolicy, PasswordPolicy};
pub use engine::{ClusterStatus, Engine, EngineOptions, WriteOutcome};
pub use error::*;
pub use eval::*;
pub use image::Rejected as ImageRejected;
pub use model::*;
pub use secrets::TOKEN_PREFIX;
pub use side::{SideRecord, SideTable, SideTxn};
pub use snapshot::{Canonical, Counts, Footprint, ListQuery, Snapshot, UserGroup, name_folds};
pub use store::TableSize;
pub use write::*;
pub use write_stats::{LATENCY_BUCKETS, LatencyHistogram, WriteStats};
