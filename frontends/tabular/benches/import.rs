//! Bulk import rate: 100,000 users from CSV and from XLSX into an empty store (a redb
//! file in a temporary directory, so the one commit is durable), through
//! `portcullis_tabular::import`: read, check every cell, plan against the store, one
//! `Engine::write`. Also `parse/*`, the reading and checking alone.
//!
//! `cargo bench -p portcullis-tabular --bench import`; criterion reports `thrpt` in
//! rows per second (elements). Target: ≥ 50,000 rows/s for CSV.

/// The allocator of the `portcullis` binary, which runs `portcullis import`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_engine::Actor;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use portcullis_engine::{Engine, EntityKind, Op, Spec, UserSpec};
use portcullis_tabular::{Format, ImportOptions, Kind, ParseOptions, export, import, parse};

const N_USERS: usize = 100_000;

/// The files: exported from a store holding `N_USERS` users with most columns filled.
fn files() -> (Vec<u8>, Vec<u8>) {
    let engine = Engine::in_memory().expect("an in-memory store");
    let ops: Vec<Op> = (0..N_USERS)
        .map(|i| {
            let mut spec = UserSpec::new(format!("user{i:06}"));
            spec.name = format!("User Number {i}");
            spec.email = Some(format!("user{i:06}@example.com"));
            spec.phone = (i % 3 == 0).then(|| format!("+1 555 {i:06}"));
            spec.active = i % 50 != 0;
            spec.expires_at = (i % 10 == 0).then(|| "2031-01-01T00:00:00Z".parse().unwrap());
            spec.description = format!("bench user {i}");
            Op::Create(Spec::User(spec))
        })
        .collect();
    engine
        .write(&Actor::system("bench"), ops)
        .expect("the users are created");
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.counts().users, N_USERS as u64);
    let mut csv = Vec::new();
    export(&snapshot, Kind::Users, Format::Csv, &mut csv).expect("CSV export");
    let mut xlsx = Vec::new();
    export(&snapshot, Kind::Users, Format::Xlsx, &mut xlsx).expect("XLSX export");
    (csv, xlsx)
}

fn import_once(format: Format, bytes: &[u8]) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = Engine::open(dir.path().join("bench.redb")).expect("the store opens");
    let started = Instant::now();
    let report = import(
        &engine,
        &Actor::system("bench"),
        Kind::Users,
        format,
        bytes,
        ImportOptions::default(),
    )
    .expect("the import succeeds");
    let elapsed = started.elapsed();
    assert_eq!(report.counts.created, N_USERS);
    assert_eq!(
        engine.snapshot().counts().users,
        N_USERS as u64,
        "every user is in the store"
    );
    let _ = engine
        .snapshot()
        .entity_json(EntityKind::User, "user000042");
    elapsed
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let (csv, xlsx) = files();
    println!(
        "files: CSV {} KiB, XLSX {} KiB, {N_USERS} users",
        csv.len() / 1024,
        xlsx.len() / 1024
    );
    let mut group = criterion.benchmark_group("tabular");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(N_USERS as u64));
    for (format, bytes) in [(Format::Csv, &csv), (Format::Xlsx, &xlsx)] {
        group.bench_function(BenchmarkId::new("import", format.name()), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| import_once(format, bytes)).sum());
        });
        group.bench_function(BenchmarkId::new("parse", format.name()), |b| {
            b.iter(|| {
                let rows = parse(Kind::Users, format, bytes, &ParseOptions::default())
                    .expect("the file parses");
                assert_eq!(rows.len(), N_USERS);
                rows
            });
        });
    }
    group.finish();
    criterion.final_summary();
}
