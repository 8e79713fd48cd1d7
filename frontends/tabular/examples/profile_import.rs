//! One import of N users (default 20,000) from CSV into a fresh redb file, for
//! instruction counts under callgrind, which are repeatable on a busy machine where
//! wall-clock times are not (the criterion bench `benches/import.rs` gives rows/s):
//!
//! ```text
//! cargo build --profile bench -p portcullis-tabular --example profile_import
//! valgrind --tool=callgrind target/release/examples/profile_import 20000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! The file has the columns and values of the bench's export (most columns filled).

/// The allocator of the `portcullis` binary, which runs `portcullis import`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_engine::Actor;
use portcullis_engine::Engine;
use portcullis_tabular::{Format, ImportOptions, Kind, import};

fn main() {
    let n_users: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("the argument is a number of users"),
        None => 20_000,
    };
    let mut csv = String::from(
        "ID,Username,Name,Email,Phone,Active,Expires at,Source,External ID,System roles,MFA,\
         Must change password,Description\n",
    );
    for i in 0..n_users {
        let phone = if i % 3 == 0 {
            format!("+1 555 {i:06}")
        } else {
            String::new()
        };
        let expires_at = if i % 10 == 0 {
            "2031-01-01T00:00:00Z"
        } else {
            ""
        };
        let active = i % 50 != 0;
        csv.push_str(&format!(
            ",user{i:06},User Number {i},user{i:06}@example.com,{phone},{active},{expires_at},\
             import,,user,disabled,false,bench user {i}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = Engine::open(dir.path().join("profile.redb")).expect("the store opens");
    let started = std::time::Instant::now();
    let report = import(
        &engine,
        &Actor::system("bench"),
        Kind::Users,
        Format::Csv,
        csv.as_bytes(),
        ImportOptions::default(),
    )
    .expect("the import succeeds");
    assert_eq!(report.counts.created, n_users);
    eprintln!("{n_users} users imported in {:?}", started.elapsed());
}
