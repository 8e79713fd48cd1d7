//! Check latency at each size: by dense index (`Snapshot::check_idx`), by names
//! (`Evaluator::check` with a `Query`), and the reference evaluator on the same
//! queries at small and medium (the ratio is the point), and `by_idx_cold`: users and
//! assets drawn uniformly from the whole estate (2^18 pairs, `root` over `ssh`), so
//! nothing a check reads is in cache. After criterion, prints
//! percentiles of single checks by index, each timed on its own.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion};
use portcullis_benches::{
    AT, EstateSize, IdxSample, Sample, Synthetic, asset_name, bench_mode, cached_store, resolve,
    user_name,
};
use portcullis_engine::{Actions, AssetIdx, Engine, Evaluator, Reference, Snapshot, UserIdx};

portcullis_benches::server_allocator!();

#[path = "support/cpu_clock.rs"]
mod cpu_clock;

/// Queries per size; every criterion iteration takes the next one.
const N_QUERIES: usize = 4096;
/// Checks timed one by one for the percentiles.
const N_TIMED: usize = 1_000_000;

struct Setup {
    size: EstateSize,
    snapshot: std::sync::Arc<Snapshot>,
    samples: Vec<Sample>,
    indexed: Vec<IdxSample>,
    /// Users and assets drawn uniformly from the whole estate: nothing in cache.
    cold: Vec<(UserIdx, AssetIdx)>,
}

/// Cold checks per size: far more than any cache holds.
const N_COLD: usize = 1 << 18;

/// `N_COLD` (user, asset) pairs drawn uniformly from the whole estate, by a fixed seed.
fn cold_pairs(snapshot: &Snapshot, size: EstateSize) -> Vec<(UserIdx, AssetIdx)> {
    let shape = size.shape();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |below: u32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(below)) as u32
    };
    let mut pairs = Vec::with_capacity(N_COLD);
    while pairs.len() < N_COLD {
        let user = snapshot.user_idx(&user_name(next(shape.n_users)));
        let asset = snapshot.asset_idx(&asset_name(next(shape.n_assets)));
        if let (Some(user), Some(asset)) = (user, asset) {
            pairs.push((user, asset));
        }
    }
    pairs
}

fn setup(size: EstateSize) -> Setup {
    let synthetic = Synthetic::of(size);
    let path = cached_store(&synthetic);
    let started = Instant::now();
    let engine = Engine::open(&path).expect("the cached store opens");
    eprintln!(
        "[check] opened {} in {:.1} s",
        size.name(),
        started.elapsed().as_secs_f64()
    );
    let snapshot = engine.snapshot();
    drop(engine);
    let samples = synthetic.queries(&snapshot, N_QUERIES);
    let allowed = samples.iter().filter(|s| s.allowed).count();
    eprintln!(
        "[check] {}: {} queries, {allowed} allowed",
        size.name(),
        samples.len()
    );
    let indexed = resolve(&snapshot, &samples);
    let cold = cold_pairs(&snapshot, size);
    Setup {
        size,
        snapshot,
        samples,
        indexed,
        cold,
    }
}

fn fast<M: Measurement>(c: &mut Criterion<M>, group_name: &str, setup: &Setup) {
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let snapshot = &*setup.snapshot;
    let mask = setup.indexed.len() - 1;
    group.bench_function(BenchmarkId::new("by_idx", setup.size.name()), |b| {
        let mut i = 0;
        b.iter(|| {
            let q = &setup.indexed[i & mask];
            i += 1;
            black_box(snapshot.check_idx(q.user, q.asset, &q.account, q.protocol, q.action, AT))
        });
    });
    let cold_mask = setup.cold.len() - 1;
    group.bench_function(BenchmarkId::new("by_idx_cold", setup.size.name()), |b| {
        let mut i = 0;
        b.iter(|| {
            let (user, asset) = setup.cold[i & cold_mask];
            i += 1;
            black_box(snapshot.check_idx(user, asset, "root", "ssh", Actions::CONNECT, AT))
        });
    });
    group.bench_function(BenchmarkId::new("by_name", setup.size.name()), |b| {
        let mut i = 0;
        b.iter(|| {
            let q = setup.samples[i & mask].query();
            i += 1;
            black_box(snapshot.check(&q).expect("names exist"))
        });
    });
    group.bench_function(BenchmarkId::new("names_only", setup.size.name()), |b| {
        let mut i = 0;
        b.iter(|| {
            let q = &setup.samples[i & mask];
            i += 1;
            black_box((snapshot.user_idx(&q.user), snapshot.asset_idx(&q.asset)))
        });
    });
    group.finish();
}

fn reference<M: Measurement>(c: &mut Criterion<M>, group_name: &str, setup: &Setup) {
    let estate = setup.snapshot.estate();
    let reference = Reference::new(&estate, setup.snapshot.revision());
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mask = setup.samples.len() - 1;
    group.bench_function(BenchmarkId::new("reference", setup.size.name()), |b| {
        let mut i = 0;
        b.iter(|| {
            let q = setup.samples[i & mask].query();
            i += 1;
            black_box(reference.check(&q).expect("names exist"))
        });
    });
    group.finish();
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Times `N_TIMED` single checks by index and prints percentiles, with the cost of
/// an empty timer pair for comparison.
fn percentiles(setup: &Setup) {
    let snapshot = &*setup.snapshot;
    let mask = setup.indexed.len() - 1;
    let mut overhead: Vec<u64> = (0..N_TIMED)
        .map(|_| {
            let started = Instant::now();
            black_box(());
            started.elapsed().as_nanos() as u64
        })
        .collect();
    let mut times: Vec<u64> = Vec::with_capacity(N_TIMED);
    let mut allowed = 0usize;
    for i in 0..N_TIMED {
        let q = &setup.indexed[i & mask];
        let started = Instant::now();
        let decision =
            black_box(snapshot.check_idx(q.user, q.asset, &q.account, q.protocol, q.action, AT));
        times.push(started.elapsed().as_nanos() as u64);
        allowed += usize::from(decision.allowed);
    }
    assert_eq!(
        allowed,
        (0..N_TIMED)
            .filter(|i| setup.indexed[i & mask].allowed)
            .count()
    );
    overhead.sort_unstable();
    times.sort_unstable();
    let row = |name: &str, v: &[u64]| {
        println!(
            "  {name:<22} p50 {:>6} ns  p90 {:>6} ns  p99 {:>6} ns  p99.9 {:>7} ns  max {:>9} ns",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            percentile(v, 0.999),
            v[v.len() - 1]
        );
    };
    // The same query repeated: what a check costs with its data in cache.
    let mut warm: Vec<u64> = setup
        .indexed
        .iter()
        .map(|q| {
            let started = Instant::now();
            for _ in 0..100 {
                black_box(
                    snapshot.check_idx(q.user, q.asset, &q.account, q.protocol, q.action, AT),
                );
            }
            started.elapsed().as_nanos() as u64 / 100
        })
        .collect();
    warm.sort_unstable();
    println!(
        "check_idx percentiles at {} ({N_TIMED} single checks, timed one by one):",
        setup.size.name()
    );
    row("check_idx + timer", &times);
    row("timer alone", &overhead);
    row("per query, warm (x100)", &warm);
}

fn run<M: Measurement>(mut criterion: Criterion<M>, group_name: &str) {
    for size in EstateSize::selected(&EstateSize::ALL) {
        let setup = setup(size);
        fast(&mut criterion, group_name, &setup);
        if size != EstateSize::Large {
            reference(&mut criterion, group_name, &setup);
        }
        if bench_mode() {
            percentiles(&setup);
        }
    }
    criterion.final_summary();
}

fn main() {
    if cpu_clock::cpu_clock() {
        run(
            Criterion::default()
                .with_measurement(cpu_clock::ThreadCpu)
                .configure_from_args(),
            "check-cpu",
        );
    } else {
        run(Criterion::default().configure_from_args(), "check");
    }
}
