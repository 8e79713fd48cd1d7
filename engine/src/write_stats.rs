//! What every write through an engine took, whichever front-end sent it: the
//! figures behind `/metrics`' `portcullis_write_duration_seconds` and
//! `portcullis_write_failures_total`, kept where every write passes.

use std::time::Duration;

/// Upper bounds, in seconds, of the latency buckets Portcullis's histograms use.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Writes since the engine opened: how long each took from submission until it was
/// committed and published, or refused, and how many were refused or failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteStats {
    /// How many writes took at most each of [`LATENCY_BUCKETS`] (cumulative, as a
    /// Prometheus histogram counts).
    pub at_most: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    /// The sum of their durations, in seconds.
    pub seconds: f64,
    /// Writes refused (a weak password, a validation error) or failed.
    pub failures: u64,
}

impl WriteStats {
    pub(crate) fn observe(&mut self, elapsed: Duration, ok: bool) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&mut self.at_most) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.seconds += seconds;
        self.failures += u64::from(!ok);
    }
}
