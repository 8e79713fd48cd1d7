//! The one end-to-end test that asserts a duration (the load test's p99 check
//! latency), in a binary of its own. Cargo runs test binaries one after another, so
//! nothing else of `cargo test` runs beside it, and a binary of one test runs that
//! test alone: on a 2-core machine the CPU-heavy tests of `main` (the crash test,
//! the concurrency test) would otherwise be measured with it. Add a timed test here
//! only with `--test-threads=1` in `.ci/run`, or it runs beside this one.

#[expect(
    dead_code,
    reason = "the harness is shared with `main`; this binary uses a part of it"
)]
mod support;

mod load;
