//! The cost of one membership change until a check sees it: `Engine::write` of one
//! `Op::AddMember` adding the mover to a group (or `Op::RemoveMember`, alternately), then
//! `Engine::snapshot` and a `check_idx` that must see the change.
//!
//! - `membership/in_memory`: `Engine::in_memory()` loaded through `Engine::write`
//!   (small and medium; large only with `PORTCULLIS_BENCH_INMEMORY_LARGE=1`, since
//!   loading it that way takes about 35 s and 3 GiB).
//! - `membership/file`: a private copy of the cached redb file, so every write
//!   commits durably (fsync).
//! - `big_group/file`: the same change to a group holding 2% of all users.
//! - `user_create_in_memory`: `Engine::write` of one `Op::Create` of a user with a new
//!   ASCII username (uniqueness and look-alike checks included); `…_folds`: the same
//!   once the estate holds a name with a non-ASCII character, so the look-alike fold
//!   map is no longer empty and every ASCII name is looked up in it.
//!
//! After criterion, prints percentiles of every timed change.

use portcullis_engine::Actor;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use portcullis_benches::{
    AT, EstateSize, Synthetic, WriteProbe, cache_dir, cached_store, copy_store, rss_bytes,
};
use portcullis_engine::{Actions, Engine, EntityKind, Op, Spec};

portcullis_benches::server_allocator!();

/// Every timed change, per bench id, for the percentiles.
static TIMES: Mutex<Vec<(String, Vec<Duration>)>> = Mutex::new(Vec::new());

fn record(id: &str, time: Duration) {
    let mut times = TIMES.lock().expect("times lock");
    match times.iter_mut().find(|(name, _)| name == id) {
        Some((_, list)) => list.push(time),
        None => times.push((id.to_owned(), vec![time])),
    }
}

/// Adds or removes the probe's user, then checks through a fresh snapshot.
fn change(engine: &Engine, probe: &WriteProbe, add: bool) {
    engine
        .write(&Actor::system("bench"), vec![probe.op(add)])
        .expect("the membership change applies");
    let snapshot = engine.snapshot();
    let user = snapshot.user_idx(&probe.user).expect("the user exists");
    let asset = snapshot.asset_idx(&probe.asset).expect("the asset exists");
    let decision = snapshot.check_idx(
        user,
        asset,
        probe.account,
        probe.protocol,
        Actions::CONNECT,
        AT,
    );
    assert_eq!(decision.allowed, add, "the check sees the change");
}

fn bench(
    criterion: &mut Criterion,
    name: &str,
    size: EstateSize,
    engine: &Engine,
    probe: &WriteProbe,
) {
    let id = format!("{name}/{}", size.name());
    // A change pair slower than 40 ms gets ten flat samples, so the bench stays short.
    let started = Instant::now();
    change(engine, probe, true);
    change(engine, probe, false);
    let slow = started.elapsed() > Duration::from_millis(40);
    let mut group = criterion.benchmark_group("write");
    group.sample_size(if slow { 10 } else { 30 });
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if slow { 5 } else { 3 }));
    if slow {
        group.sampling_mode(SamplingMode::Flat);
    }
    let mut member = false;
    group.bench_function(BenchmarkId::new(name, size.name()), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                member = !member;
                let started = Instant::now();
                change(engine, probe, member);
                let elapsed = started.elapsed();
                record(&id, elapsed);
                total += elapsed;
            }
            total
        });
    });
    group.finish();
    if member {
        change(engine, probe, false);
    }
}

fn user_op(username: &str) -> Op {
    let spec = serde_json::json!({ "username": username });
    Op::Create(Spec::from_json(EntityKind::User, spec).expect("a valid user"))
}

/// Creates one user with a fresh ASCII username per iteration (`bench-new-N`).
fn bench_create(
    criterion: &mut Criterion,
    name: &str,
    size: EstateSize,
    engine: &Engine,
    next: &mut u64,
) {
    let mut group = criterion.benchmark_group("write");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function(BenchmarkId::new(name, size.name()), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                *next += 1;
                let op = user_op(&format!("bench-new-{next}"));
                let started = Instant::now();
                engine
                    .write(&Actor::system("bench"), vec![op])
                    .expect("the user is created");
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let in_memory_large = std::env::var_os("PORTCULLIS_BENCH_INMEMORY_LARGE").is_some();
    for size in EstateSize::selected(&EstateSize::ALL) {
        let synthetic = Synthetic::of(size);
        let probe = synthetic.write_probe();
        let big = synthetic.big_group_probe();

        if size != EstateSize::Large || in_memory_large {
            let started = Instant::now();
            let rss = rss_bytes();
            let (engine, stats) = synthetic.in_memory_engine(false);
            eprintln!(
                "[write] loaded {} in memory in {:.1} s (RSS +{} MiB)\n{stats}",
                size.name(),
                started.elapsed().as_secs_f64(),
                rss_bytes().saturating_sub(rss) >> 20
            );
            bench(
                &mut criterion,
                "membership_in_memory",
                size,
                &engine,
                &probe,
            );
            let mut next = 0;
            bench_create(
                &mut criterion,
                "user_create_in_memory",
                size,
                &engine,
                &mut next,
            );
            engine
                .write(&Actor::system("bench"), vec![user_op("\u{430}-non-ascii")])
                .expect("a non-ASCII username is created");
            bench_create(
                &mut criterion,
                "user_create_in_memory_folds",
                size,
                &engine,
                &mut next,
            );
        }

        let store = cached_store(&synthetic);
        let dir = tempfile::tempdir_in(cache_dir()).expect("a temporary directory");
        let started = Instant::now();
        let copy = copy_store(&store, dir.path());
        let engine = Engine::open(&copy).expect("the copied store opens");
        eprintln!(
            "[write] copied and opened {} in {:.1} s",
            size.name(),
            started.elapsed().as_secs_f64()
        );
        bench(&mut criterion, "membership_file", size, &engine, &probe);
        bench(&mut criterion, "big_group_file", size, &engine, &big);
    }
    criterion.final_summary();
    println!("membership change until a check sees it, every timed change:");
    for (id, mut times) in TIMES.lock().expect("times lock").drain(..) {
        times.sort_unstable();
        println!(
            "  {id:<30} n {:>6}  p50 {:>10.3?}  p99 {:>10.3?}  max {:>10.3?}",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
}
