//! Cluster figures (issue 16): bounded runs of in-process nodes, each a real engine
//! on its own redb file, following one change log in a real PostgreSQL (the test
//! harness's: `initdb` + `pg_ctl` on a loopback port). Prints:
//!
//! - replication delay: writes on node A one at a time; from each write's
//!   acknowledgement until node B has applied it (woken by LISTEN/NOTIFY);
//!   p50 / p99 / max;
//! - durable writes per second through the cluster: 32 clients spread over three
//!   nodes, each creating a user per write, for a bounded time;
//! - join: a node with an empty data directory joins a cluster whose log holds the
//!   estate (small in test mode; small and medium as a bench, or
//!   `PORTCULLIS_BENCH_SIZES`): the time until its open returns, at the log's head,
//!   replaying the whole log, then starting from a cluster image;
//! - checks per second per node with 1, 2 and 3 nodes in this process, one thread
//!   per node (the check path reads the node's snapshot only: no PostgreSQL).
//!
//! In test mode (`cargo test`) every run is tiny and each figure is checked for
//! sense (every write reached the other node, counts match); as a bench
//! (`cargo bench -p portcullis-benches --bench cluster`) the runs are the ones
//! BENCHMARKS.md quotes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_benches::{EstateSize, Synthetic, bench_mode};
use portcullis_cluster::testing::Postgres;
use portcullis_engine::*;

portcullis_benches::server_allocator!();

fn create_user(name: &str) -> Vec<Op> {
    let spec = serde_json::json!({ "username": name });
    vec![Op::Create(
        Spec::from_json(EntityKind::User, spec).expect("a user spec"),
    )]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// From each write's acknowledgement on `a` to its visibility on `b`.
fn replication_delay(a: &Engine, b: &Arc<Engine>, writes: usize) {
    let (sender, receiver) = std::sync::mpsc::channel::<(u64, Instant)>();
    let watcher = {
        let b = b.clone();
        std::thread::spawn(move || {
            let mut delays = Vec::new();
            for (revision, acknowledged) in receiver {
                let seen = b.wait_for_revision(revision, Duration::from_secs(10));
                assert!(
                    seen.revision() >= revision,
                    "node B never applied revision {revision}"
                );
                delays.push(acknowledged.elapsed());
            }
            delays
        })
    };
    for n in 0..writes {
        let outcome = a
            .write(&Actor::system("bench"), create_user(&format!("delay-{n}")))
            .expect("a write");
        sender
            .send((outcome.revision, Instant::now()))
            .expect("the watcher listens");
        // One write at a time, spaced, so each delay is a write's own, not a queue's.
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(sender);
    let mut delays = watcher.join().expect("the watcher");
    assert_eq!(delays.len(), writes);
    delays.sort_unstable();
    println!(
        "[cluster] replication delay A→B over {writes} writes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&delays, 0.50)),
        ms(percentile(&delays, 0.99)),
        ms(*delays.last().expect("delays")),
    );
}

/// Writes per second from `clients` threads spread over `nodes`.
fn write_throughput(nodes: &[Arc<Engine>], clients: usize, run: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let engine = nodes[client % nodes.len()].clone();
            let (stop, written) = (stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    engine
                        .write(
                            &Actor::system("bench"),
                            create_user(&format!("w-{client}-{n}")),
                        )
                        .expect("a write");
                    latencies.push(began.elapsed());
                    written.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("a client"))
        .collect();
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let total = written.load(Ordering::Relaxed);
    // Every acknowledged write is on every node.
    let head = nodes
        .iter()
        .map(|n| n.snapshot().revision())
        .max()
        .expect("nodes");
    let users: Vec<u64> = nodes
        .iter()
        .map(|n| {
            n.wait_for_revision(head, Duration::from_secs(20))
                .counts()
                .users
        })
        .collect();
    assert!(
        users.windows(2).all(|pair| pair[0] == pair[1]),
        "the nodes differ after the run: {users:?}"
    );
    println!(
        "[cluster] writes: {clients} clients over {} nodes for {:.1} s: {total} acknowledged, {:.0} writes/s; latency p50 {:.2} ms, p99 {:.2} ms",
        nodes.len(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
    );
}

/// A node joining from an empty directory a cluster whose log holds `size`'s estate:
/// first with no cluster image (it replays the whole log), then from an image.
fn join(size: EstateSize) {
    let postgres = Postgres::start();
    let synthetic = Synthetic::of(size);
    let loader_dir = tempfile::tempdir().expect("temp dir");
    let no_images = EngineOptions {
        cluster_image_every: 0,
        ..EngineOptions::default()
    };
    let (head, counts, load_time) = {
        let loader = postgres.node(loader_dir.path(), "a-loader", no_images);
        let started = Instant::now();
        synthetic.load(&loader, portcullis_benches::DEFAULT_BATCH, false);
        let loaded = started.elapsed();
        let snapshot = loader.snapshot();
        (snapshot.revision(), snapshot.counts(), loaded)
    };
    let timed_join = |name: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let joined = postgres.node(dir.path(), name, no_images);
        let took = started.elapsed();
        let snapshot = joined.snapshot();
        assert_eq!(snapshot.revision(), head, "{name} is at the log's head");
        assert_eq!(snapshot.counts(), counts, "{name} holds the estate");
        took
    };
    let replayed = timed_join("b-replay");
    // The loader, started again with images on, keeps one (it is the first node by
    // name and the log is past the image interval).
    let loader = postgres.node(
        loader_dir.path(),
        "a-loader",
        EngineOptions {
            cluster_image_every: 1,
            ..EngineOptions::default()
        },
    );
    let observer = postgres.change_log();
    let deadline = Instant::now() + Duration::from_secs(120);
    while observer.newest_image_revision().expect("the log answers") != Some(head) {
        assert!(Instant::now() < deadline, "no cluster image was kept");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(loader);
    let from_image = timed_join("c-image");
    println!(
        "[cluster] join at {}: {} users, {} assets, log of {head} revisions (written in {:.1} s): from an empty directory {:.2} s replaying the whole log, {:.2} s from the cluster image",
        size.name(),
        counts.users,
        counts.assets,
        load_time.as_secs_f64(),
        replayed.as_secs_f64(),
        from_image.as_secs_f64(),
    );
}

/// Checks per second on each of `nodes`, one thread per node, for `run`.
fn checks_per_node(nodes: &[Arc<Engine>], synthetic: &Synthetic, run: Duration) {
    let samples = Arc::new(synthetic.queries(&nodes[0].snapshot(), 4096));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = nodes
        .iter()
        .map(|engine| {
            let (engine, samples, stop) = (engine.clone(), samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let snapshot = engine.snapshot();
                let mut checks = 0u64;
                let mut allowed = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for sample in samples.iter().take(256) {
                        let decision = snapshot.check(&sample.query()).expect("known names");
                        assert_eq!(decision.allowed, sample.allowed, "a wrong answer");
                        allowed += u64::from(decision.allowed);
                    }
                    checks += 256;
                }
                std::hint::black_box(allowed);
                checks
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = threads
        .into_iter()
        .map(|thread| thread.join().expect("a checker"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let per_node: Vec<String> = counts
        .iter()
        .map(|n| format!("{:.2} M", *n as f64 / elapsed / 1e6))
        .collect();
    println!(
        "[cluster] checks/s with {} node(s) in one process ({} threads on {} cores): per node {}; total {:.2} M/s",
        nodes.len(),
        nodes.len(),
        std::thread::available_parallelism().map_or(1, usize::from),
        per_node.join(", "),
        counts.iter().sum::<u64>() as f64 / elapsed / 1e6,
    );
}

fn main() {
    let bench = bench_mode();
    let (delay_writes, run, clients) = if bench {
        (500, Duration::from_secs(10), 32)
    } else {
        (20, Duration::from_millis(500), 8)
    };
    {
        let postgres = Postgres::start();
        let dirs: Vec<_> = (0..3)
            .map(|_| tempfile::tempdir().expect("temp dir"))
            .collect();
        let nodes: Vec<Arc<Engine>> = dirs
            .iter()
            .enumerate()
            .map(|(n, dir)| {
                // No cluster images during these runs: they time following and
                // writing alone.
                let options = EngineOptions {
                    cluster_image_every: 0,
                    ..EngineOptions::default()
                };
                Arc::new(postgres.node(dir.path(), &format!("node-{n}"), options))
            })
            .collect();
        replication_delay(&nodes[0], &nodes[1], delay_writes);
        write_throughput(&nodes, clients, run);
        // The small estate, for the checks: written on one node, read on all.
        let synthetic = Synthetic::of(EstateSize::Small);
        synthetic.load(&nodes[0], portcullis_benches::DEFAULT_BATCH, false);
        let head = nodes[0].snapshot().revision();
        for engine in &nodes {
            engine.wait_for_revision(head, Duration::from_secs(20));
        }
        for n in 1..=3 {
            checks_per_node(&nodes[..n], &synthetic, run);
        }
    }
    for size in EstateSize::selected(&[EstateSize::Small, EstateSize::Medium]) {
        join(size);
    }
}
