//! The published revision as an async signal: one thread waits on the engine for each
//! new snapshot and announces its revision, so that `min_revision` waits and watch
//! streams await a channel instead of each holding a blocking thread.

use std::sync::{Arc, Weak};
use std::time::Duration;

use portcullis_engine::{Engine, Snapshot};
use tokio::sync::watch;

use crate::AppState;
use crate::error::ApiError;

/// How long the feeding thread waits per round before it checks whether anyone still
/// listens.
const ROUND: Duration = Duration::from_millis(500);

pub(crate) struct Revisions {
    revision: watch::Receiver<u64>,
    closing: watch::Sender<bool>,
}

impl Revisions {
    pub(crate) fn start(engine: &Arc<Engine>) -> Revisions {
        let (sender, revision) = watch::channel(engine.snapshot().revision());
        let weak = Arc::downgrade(engine);
        let spawned = std::thread::Builder::new()
            .name("portcullis-http-revisions".to_owned())
            .spawn(move || feed(&weak, &sender));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the revision thread; min_revision and watch will only time out");
        }
        Revisions {
            revision,
            closing: watch::channel(false).0,
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.clone()
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }
}

fn feed(engine: &Weak<Engine>, sender: &watch::Sender<u64>) {
    loop {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        // A closed engine publishes nothing more; holding it would keep its store
        // locked after its owner let go (a reopen then failed for up to a round).
        if engine.is_closed() {
            return;
        }
        let current = *sender.borrow();
        let revision = engine.wait_for_revision(current + 1, ROUND).revision();
        drop(engine);
        if sender.is_closed() {
            return;
        }
        if revision != current {
            sender.send_replace(revision);
        }
    }
}

impl AppState {
    /// The current snapshot, once it is at `min_revision` or later; waits at most the
    /// configured bound.
    pub(crate) async fn snapshot_at_least(
        &self,
        min_revision: Option<u64>,
    ) -> Result<Arc<Snapshot>, ApiError> {
        let snapshot = self.snapshot();
        let Some(wanted) = min_revision else {
            return Ok(snapshot);
        };
        if snapshot.revision() >= wanted {
            return Ok(snapshot);
        }
        let mut revisions = self.inner.revisions.subscribe();
        let wait = self.settings().min_revision_wait;
        // Either outcome is judged by the snapshot itself below.
        let _reached =
            tokio::time::timeout(wait, revisions.wait_for(|revision| *revision >= wanted)).await;
        let snapshot = self.snapshot();
        if snapshot.revision() >= wanted {
            Ok(snapshot)
        } else {
            Err(ApiError::RevisionNotReached {
                wanted,
                current: snapshot.revision(),
            })
        }
    }

    pub(crate) fn revisions(&self) -> &Revisions {
        &self.inner.revisions
    }
}
