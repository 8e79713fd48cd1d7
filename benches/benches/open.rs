//! Cold start: `Engine::open` of a redb file holding the estate (built once, outside
//! the timed part, and kept in the bench cache), at medium and large; small only
//! in test mode.
//!
//! Criterion needs at least ten samples; an open that takes many seconds is timed
//! by hand instead (`OPEN_RUNS` opens, default 3, or 2 when one takes over 30 s;
//! the first included), and the runs are printed.
//!
//! A fast open of the wrong thing is no result, so after the timing one more open of
//! each size is checked ([`check_opened`]): the snapshot rebuilt from the file passes its
//! invariant check and holds the shape's assets and nodes; in test mode (small only,
//! what CI runs) it also equals, kind by kind and on 256 sampled decisions, the
//! estate written into an in-memory engine through the write path.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use portcullis_benches::{AT, EstateSize, Synthetic, bench_mode, cached_store, process_cpu_time};
use portcullis_engine::{Engine, Evaluator};

portcullis_benches::server_allocator!();

/// An open slower than this is timed by hand.
const CRITERION_LIMIT: Duration = Duration::from_secs(2);

fn open_once(path: &std::path::Path) -> Duration {
    let cpu = process_cpu_time();
    let started = Instant::now();
    let engine = Engine::open(path).expect("the cached store opens");
    let elapsed = started.elapsed();
    if elapsed > CRITERION_LIMIT {
        eprintln!(
            "[open] {:.2} s wall, {:.2} s CPU (all threads)",
            elapsed.as_secs_f64(),
            (process_cpu_time() - cpu).as_secs_f64()
        );
    }
    // Dropping (closing the writer, freeing the snapshot) is not part of the open.
    drop(engine);
    elapsed
}

/// Panics unless `engine`, opened from the cached store, holds `synthetic`'s estate.
fn check_opened(engine: &Engine, synthetic: &Synthetic) {
    let opened = engine.snapshot();
    let shape = &synthetic.shape;
    opened
        .check_invariants()
        .unwrap_or_else(|error| panic!("[open] {}: invariants: {error}", shape.label));
    let counts = opened.counts();
    assert_eq!(counts.assets, u64::from(shape.n_assets), "{}", shape.label);
    assert_eq!(counts.nodes, u64::from(shape.n_nodes()), "{}", shape.label);
    if bench_mode() {
        // Building the medium or large estate again in memory takes minutes.
        return;
    }
    let (written, _) = synthetic.in_memory_engine(false);
    let written = written.snapshot();
    assert_eq!(
        counts,
        written.counts(),
        "{}: opened vs written",
        shape.label
    );
    let samples = synthetic.queries(&written, 256);
    assert_eq!(samples.len(), 256);
    for sample in &samples {
        let decision = opened
            .check(&sample.query())
            .expect("a known user and asset");
        assert_eq!(
            decision.allowed, sample.allowed,
            "{}: the opened store decides {:?} otherwise than the written estate at {AT:?}",
            shape.label, sample.user
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let wanted: &[EstateSize] = if bench_mode() {
        &[EstateSize::Medium, EstateSize::Large]
    } else {
        &[EstateSize::Small]
    };
    let runs: usize = std::env::var("OPEN_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut by_hand = Vec::new();
    let mut opened = Vec::new();
    for size in EstateSize::selected(wanted) {
        let synthetic = Synthetic::of(size);
        let path = cached_store(&synthetic);
        let first = open_once(&path);
        eprintln!(
            "[open] first open of {}: {:.2} s",
            size.name(),
            first.as_secs_f64()
        );
        if first > CRITERION_LIMIT && bench_mode() {
            // The first open counts as a run (the file is in the page cache for all).
            // Past 30 s an open is run twice at most, to keep the whole run short.
            let runs = if first > Duration::from_secs(30) {
                runs.min(2)
            } else {
                runs
            };
            let mut times: Vec<Duration> = std::iter::once(first)
                .chain((1..runs).map(|_| open_once(&path)))
                .collect();
            times.sort_unstable();
            by_hand.push((size, times));
            opened.push((synthetic, path));
            continue;
        }
        let mut group = criterion.benchmark_group("open");
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        group.bench_function(BenchmarkId::new("engine_open", size.name()), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| open_once(&path)).sum());
        });
        group.finish();
        opened.push((synthetic, path));
    }
    criterion.final_summary();
    // Checked after the timing, which it would otherwise warm up.
    for (synthetic, path) in &opened {
        check_opened(
            &Engine::open(path).expect("the cached store opens"),
            synthetic,
        );
    }
    for (size, times) in by_hand {
        let shown: Vec<String> = times
            .iter()
            .map(|t| format!("{:.2} s", t.as_secs_f64()))
            .collect();
        println!(
            "open/engine_open/{}: median {:.2} s over {} runs timed by hand ({})",
            size.name(),
            times[times.len() / 2].as_secs_f64(),
            times.len(),
            shown.join(", ")
        );
    }
}
