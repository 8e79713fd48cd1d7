//! What a source remembers between runs, in `<state dir>/<source>.json`: the
//! directory's entries as last seen (the mapped attributes only), the syncrepl cookie
//! or the polling watermark, and a fingerprint of the config they were read with.
//!
//! The state is saved only after the engine committed the run's write, so a failed
//! run leaves it as it was; a run that finds no state, or state from another config,
//! reads the whole directory. Losing the file costs one full run, nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Source;
use crate::directory::DirEntry;
use crate::error::SyncError;

const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SavedState {
    pub version: u32,
    pub fingerprint: String,
    /// The syncrepl cookie (OpenLDAP's is text).
    pub cookie: Option<String>,
    /// The highest `modifyTimestamp` / `uSNChanged` seen.
    pub watermark: Option<String>,
    /// Users by stable id.
    pub users: BTreeMap<String, DirEntry>,
    /// Groups by stable id.
    pub groups: BTreeMap<String, DirEntry>,
}

pub(crate) fn path(state_dir: &Path, source: &Source) -> PathBuf {
    state_dir.join(format!("{}.json", source.name))
}

/// The saved state of `source`, or `None` when there is none usable (missing,
/// unreadable, from another version or another config).
pub(crate) fn load(state_dir: &Path, source: &Source) -> Option<SavedState> {
    let path = path(state_dir, source);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<SavedState>(&text) {
        Ok(state) if state.version == VERSION && state.fingerprint == source.fingerprint() => {
            Some(state)
        }
        Ok(_) => {
            tracing::info!(source = %source.name, "the saved sync state is from another config; reading everything");
            None
        }
        Err(error) => {
            tracing::warn!(source = %source.name, path = %path.display(), %error, "cannot read the saved sync state; reading everything");
            None
        }
    }
}

/// Saves `state` atomically (a temporary file renamed over the old one).
pub(crate) fn save(
    state_dir: &Path,
    source: &Source,
    mut state: SavedState,
) -> Result<(), SyncError> {
    state.version = VERSION;
    state.fingerprint = source.fingerprint();
    let path = path(state_dir, source);
    let failed = |message: String| SyncError::State {
        source_name: source.name.clone(),
        path: path.display().to_string(),
        message,
    };
    std::fs::create_dir_all(state_dir).map_err(|error| failed(error.to_string()))?;
    let text = serde_json::to_string(&state).map_err(|error| failed(error.to_string()))?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text).map_err(|error| failed(error.to_string()))?;
    std::fs::rename(&temporary, &path).map_err(|error| failed(error.to_string()))?;
    Ok(())
}
