//! Memory and load time per estate size (criterion cannot measure memory).
//!
//! `cargo run --release -p portcullis-benches --bin memory -- [small] [medium] [large]`
//!
//! Each size runs in child processes of its own, so one size's heap never counts
//! against the next:
//! - `load`: draws the estate and writes it through `Engine::write` into
//!   `Engine::in_memory()`, timing each kind of entity;
//! - `open`: `Engine::open` of a redb file holding the estate (built once, kept in
//!   the bench cache), then the engine is dropped and only its snapshot kept;
//! - `split`: the heap of snapshots built from the stored estate without its assets,
//!   and without its users and groups.
//!
//! Figures are the RSS delta (`/proc/self/statm`) and the live heap (a counting
//! global allocator), both relative to the start of the child.

use std::process::Command;
use std::time::Instant;

use cap::Cap;
use portcullis_benches::{
    EstateSize, ServerAllocator, Synthetic, cached_store, process_cpu_time, rss_bytes,
};
use portcullis_engine::{Engine, Estate, Snapshot};

#[global_allocator]
static ALLOCATOR: Cap<ServerAllocator> = Cap::new(ServerAllocator, usize::MAX);

fn mib(bytes: i128) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

struct Mark {
    rss: u64,
    heap: usize,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            rss: rss_bytes(),
            heap: ALLOCATOR.allocated(),
        }
    }

    fn since(&self, label: &str) {
        let now = Mark::now();
        println!(
            "  {label:<44} rss {:>11}   heap {:>11}",
            mib(i128::from(now.rss) - i128::from(self.rss)),
            mib(now.heap as i128 - self.heap as i128)
        );
    }
}

fn load(size: EstateSize) {
    let start = Mark::now();
    let started = Instant::now();
    let synthetic = Synthetic::of(size);
    println!(
        "  drawing the estate: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    start.since("after drawing (the plan)");
    let (engine, stats) = synthetic.in_memory_engine(true);
    println!("  loading through Engine::write into Engine::in_memory():\n{stats}");
    start.since("in-memory engine + plan");
    drop(synthetic);
    start.since("in-memory engine (store + log + snapshot)");
    println!(
        "  peak heap during the load: {}",
        mib((ALLOCATOR.max_allocated() - start.heap) as i128)
    );
    let counts = engine.snapshot().counts();
    println!("  {counts:?}");
}

fn build(size: EstateSize) {
    let synthetic = Synthetic::of(size);
    let path = cached_store(&synthetic);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "  store file: {} ({})",
        path.display(),
        mib(i128::from(bytes))
    );
    let engine = Engine::open(&path).expect("the cached store opens");
    let mut tables = engine
        .store_tables()
        .expect("the store's tables are listed");
    tables.sort_by_key(|t| std::cmp::Reverse(t.stored_bytes + t.metadata_bytes));
    println!("  where the store's bytes go (Engine::store_tables):");
    println!(
        "  {:<20} {:>10} {:>12} {:>12} {:>12}",
        "table", "entries", "stored", "b-tree", "free in pages"
    );
    let mut total = 0;
    for table in &tables {
        total += table.stored_bytes + table.metadata_bytes + table.fragmented_bytes;
        println!(
            "  {:<20} {:>10} {:>12} {:>12} {:>12}",
            table.name,
            table.entries,
            mib(i128::from(table.stored_bytes)),
            mib(i128::from(table.metadata_bytes)),
            mib(i128::from(table.fragmented_bytes))
        );
    }
    println!(
        "  tables' pages {}; the rest of the file is pages the store holds free",
        mib(i128::from(total))
    );
}

fn open(size: EstateSize) {
    let path = cached_store(&Synthetic::of(size));
    let start = Mark::now();
    let cpu = process_cpu_time();
    let started = Instant::now();
    let engine = Engine::open(&path).expect("the cached store opens");
    println!(
        "  Engine::open: {:.2} s wall, {:.2} s CPU",
        started.elapsed().as_secs_f64(),
        (process_cpu_time() - cpu).as_secs_f64()
    );
    start.since("open engine (redb cache + snapshot)");
    println!(
        "  peak heap during open: {}",
        mib((ALLOCATOR.max_allocated() - start.heap) as i128)
    );
    let snapshot = engine.snapshot();
    drop(engine);
    start.since("snapshot alone (engine dropped)");
    println!(
        "  where the snapshot's heap goes (Snapshot::footprint):\n{}",
        snapshot.footprint()
    );
    println!(
        "  records read in place from the mapped image (not heap): {}",
        mib(snapshot.mapped_record_bytes() as i128)
    );
    println!(
        "  tables probed in place in the mapped image (not heap): {}",
        mib(snapshot.mapped_table_bytes() as i128)
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let resident = status.lines().filter(|line| line.starts_with("Rss"));
        println!("  {}", resident.collect::<Vec<_>>().join(", "));
    }
    let counts = snapshot.counts();
    let per_million = (ALLOCATOR.allocated() - start.heap) as f64 / (counts.users as f64 / 1e6);
    println!(
        "  heap per million users (whole snapshot / users): {}",
        mib(per_million as i128)
    );
}

/// Which part of the snapshot's heap users (with groups) and assets take: snapshots
/// built (`Snapshot::build`) from the stored estate with one side left out.
fn split(size: EstateSize) {
    let path = cached_store(&Synthetic::of(size));
    let estate = {
        let engine = Engine::open(&path).expect("the cached store opens");
        engine.snapshot().estate()
    };
    // Each side is cloned inside the measured span: `Snapshot::build` consumes (and
    // frees) its input, so the delta is the snapshot's own heap.
    let measure = |label: &str, side: &dyn Fn() -> Estate| {
        let start = Mark::now();
        let snapshot = Snapshot::build(side(), &[]).expect("the estate builds");
        start.since(label);
        drop(snapshot);
    };
    let start = Mark::now();
    let copy = estate.clone();
    start.since("the plain Estate (Vec<User>, Vec<Asset>, ...)");
    drop(copy);
    measure("snapshot without assets (users, groups, rules)", &|| {
        let mut side = estate.clone();
        side.assets.clear();
        for rule in &mut side.rules {
            rule.assets.clear();
        }
        side
    });
    measure("snapshot without users and groups (assets, rules)", &|| {
        let mut side = estate.clone();
        side.users.clear();
        side.groups.clear();
        for rule in &mut side.rules {
            rule.users.clear();
            rule.groups.clear();
        }
        side
    });
    measure("whole snapshot", &|| estate.clone());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, mode, size] = args.as_slice() {
        if flag == "--child" {
            let size = EstateSize::parse(size).expect("a size name");
            match mode.as_str() {
                "load" => load(size),
                "build" => build(size),
                "open" => open(size),
                "split" => split(size),
                other => panic!("unknown mode {other}"),
            }
            return;
        }
    }
    let sizes: Vec<EstateSize> = if args.is_empty() {
        EstateSize::ALL.to_vec()
    } else {
        args.iter()
            .map(|a| EstateSize::parse(a).unwrap_or_else(|| panic!("unknown size `{a}`")))
            .collect()
    };
    let exe = std::env::current_exe().expect("own path");
    for size in sizes {
        for mode in ["load", "build", "open", "split"] {
            println!("== {} / {mode}", size.name());
            let status = Command::new(&exe)
                .args(["--child", mode, size.name()])
                .status()
                .expect("the child runs");
            assert!(status.success(), "{mode} {} failed", size.name());
        }
    }
}
