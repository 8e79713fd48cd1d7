//! List latency at each size: how many assets the heavy user reaches
//! (`user_asset_count`), and the first page of 100 (`user_assets_page`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion};
use portcullis_benches::{AT, EstateSize, HEAVY_USER, Synthetic, cached_store};
use portcullis_engine::Engine;

portcullis_benches::server_allocator!();

#[path = "support/cpu_clock.rs"]
mod cpu_clock;

fn run<M: Measurement>(mut criterion: Criterion<M>, group_name: &str) {
    for size in EstateSize::selected(&EstateSize::ALL) {
        let synthetic = Synthetic::of(size);
        let path = cached_store(&synthetic);
        let started = Instant::now();
        let engine = Engine::open(&path).expect("the cached store opens");
        eprintln!(
            "[list] opened {} in {:.1} s",
            size.name(),
            started.elapsed().as_secs_f64()
        );
        let snapshot = engine.snapshot();
        drop(engine);
        let heavy = snapshot
            .user_idx(HEAVY_USER)
            .expect("the heavy user exists");
        let total = snapshot.user_asset_count(heavy, AT);
        eprintln!(
            "[list] {}: the heavy user reaches {total} of {} assets",
            size.name(),
            snapshot.counts().assets
        );

        let mut group = criterion.benchmark_group(group_name);
        group
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        group.bench_function(BenchmarkId::new("count", size.name()), |b| {
            b.iter(|| black_box(snapshot.user_asset_count(heavy, AT)));
        });
        group.bench_function(BenchmarkId::new("page100", size.name()), |b| {
            b.iter(|| {
                let page = snapshot
                    .user_assets_page(HEAVY_USER, None, AT, 0, 100)
                    .expect("the user exists");
                assert_eq!(page.items.len(), 100.min(total as usize));
                black_box(page)
            });
        });
        group.finish();
    }
    criterion.final_summary();
}

fn main() {
    if cpu_clock::cpu_clock() {
        run(
            Criterion::default()
                .with_measurement(cpu_clock::ThreadCpu)
                .configure_from_args(),
            "list-cpu",
        );
    } else {
        run(Criterion::default().configure_from_args(), "list");
    }
}
