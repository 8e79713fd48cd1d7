//! Cold start: `Engine::open` of a redb file holding the estate (built once, outside
//! the timed part, and kept in the bench cache), at medium and large; small only
//! in test mode.
//!
//! Criterion needs at least ten samples; an open that takes many seconds is timed
//! by hand instead (`OPEN_RUNS` opens, default 3, or 2 when one takes over 30 s;
//! the first included), and the runs are printed.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use portcullis_benches::{EstateSize, Synthetic, bench_mode, cached_store, process_cpu_time};
use portcullis_engine::Engine;

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
    for size in EstateSize::selected(wanted) {
        let path = cached_store(&Synthetic::of(size));
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
    }
    criterion.final_summary();
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
