//! What every write through an engine took, whichever front-end sent it: the
//! figures behind `/metrics`' `portcullis_write_duration_seconds` and
//! `portcullis_write_failures_total`, kept where every write passes; and the latency
//! histogram they and the HTTP layer's request latencies are counted in.

use std::time::Duration;

/// Upper bounds, in seconds, of the buckets of a [`LatencyHistogram`].
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Durations counted as a Prometheus histogram counts them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// How many durations were at most each of [`LATENCY_BUCKETS`] (cumulative).
    pub at_most: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    /// The sum of the durations, in seconds.
    pub seconds: f64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&mut self.at_most) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.seconds += seconds;
    }
}

/// Writes since the engine opened: how long each took from submission until it was
/// committed and published, or refused, and how many were refused or failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteStats {
    pub latency: LatencyHistogram,
    /// Writes refused (a weak password, a validation error) or failed.
    pub failures: u64,
}

impl WriteStats {
    pub(crate) fn observe(&mut self, elapsed: Duration, ok: bool) {
        self.latency.observe(elapsed);
        self.failures += u64::from(!ok);
    }
}
