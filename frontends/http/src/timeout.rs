//! The request timeout, which never answers for a write the engine already took.
//!
//! A timeout that drops a handler after it handed a write to the engine would answer
//! 503 while the write commits anyway, and a client that retries duplicates work or
//! fails confusingly. So a handler says when it hands over a write
//! ([`write_started`]); from then on the request runs to its real answer, whose time
//! the engine's writer bounds. Before that, the timeout answers 503 `timeout` and
//! nothing was written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::Response;

use crate::error::ApiError;
use crate::error_format::ErrorFormat;

tokio::task_local! {
    static WRITE_STARTED: Arc<AtomicBool>;
}

/// Marks the current request as having handed a write to the engine: the request
/// timeout no longer cuts it. Outside a timed request it does nothing.
pub fn write_started() {
    let _ = WRITE_STARTED.try_with(|started| started.store(true, Ordering::Release));
}

/// `answer`, bounded by `limit` up to the hand-over of a write; a request cut before
/// it is answered 503 `timeout` in `format`.
pub(crate) async fn bounded(
    limit: Duration,
    format: &ErrorFormat,
    answer: impl Future<Output = Response>,
) -> Response {
    let started = Arc::new(AtomicBool::new(false));
    let run = WRITE_STARTED.scope(started.clone(), answer);
    tokio::pin!(run);
    tokio::select! {
        response = &mut run => response,
        () = tokio::time::sleep(limit) => {
            if started.load(Ordering::Acquire) {
                run.await
            } else {
                format.render(ApiError::Timeout)
            }
        }
    }
}
