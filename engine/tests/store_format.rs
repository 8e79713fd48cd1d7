//! A store written by an earlier build opens, as it is, with the same estate.
//!
//! `fixtures/store-0.1.redb` was written by release 0.1 as of 2026-12-02 (store
//! schema 3, with the store id and next node number in its meta table) from a
//! deterministic script, without an image beside it, and
//! `fixtures/store-0.1.estate.json` is the estate that build read back from it.
//! Every later build must open the file and find that estate, or refuse it with a
//! message saying how to export and re-import: a format change that forgets the
//! stores already out there fails here. Regenerate both (only when a release
//! deliberately drops support for the old file) with
//! `PORTCULLIS_WRITE_STORE_FIXTURE=1 cargo test -p portcullis-engine --test main store_format -- --ignored`.

use std::path::{Path, PathBuf};

use portcullis_engine::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::Value;

use crate::support::{arb_script, run_script};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The estate as JSON, each list sorted by id: dense indexes may differ between the
/// engine that wrote a store and one that rebuilt it.
fn sorted_estate(snapshot: &Snapshot) -> Value {
    let mut estate = serde_json::to_value(snapshot.estate()).expect("an estate is JSON");
    for list in estate.as_object_mut().expect("an object").values_mut() {
        let items = list.as_array_mut().expect("a list");
        items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    }
    estate
}

#[test]
fn a_store_written_by_release_0_1_opens_with_its_estate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    // Opening may migrate the file, so the test opens a copy.
    std::fs::copy(fixture("store-0.1.redb"), &path).expect("the fixture is there");
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixture("store-0.1.estate.json")).expect("the expected estate"),
    )
    .expect("JSON");
    let engine = Engine::open(&path).expect("the old store opens");
    assert_eq!(engine.opened_from(), &Err(ImageRejected::Missing));
    let snapshot = engine.snapshot();
    snapshot.check_invariants().expect("invariants");
    let counts = snapshot.counts();
    assert!(
        counts.users >= 5 && counts.groups >= 3 && counts.assets >= 3 && counts.rules >= 3,
        "the fixture holds an estate: {counts:?}"
    );
    assert_eq!(sorted_estate(&snapshot), expected);
    // Its operation log (JSON rows) reads back, and goes on in binary rows after it.
    let old_log = engine
        .changes_since(0, usize::MAX)
        .expect("the old log reads");
    assert!(
        old_log
            .iter()
            .any(|c| c.entity == EntityKind::User && c.after.is_some()),
        "the fixture's log records its users"
    );
    // A write, a clean close (which leaves an image) and a second open from that
    // image: the migrated store goes on like a new one.
    engine
        .write(
            &Actor::system("test"),
            vec![Op::Create(
                Spec::from_json(EntityKind::User, serde_json::json!({"username": "later"}))
                    .expect("a user spec"),
            )],
        )
        .expect("a write to the old store");
    let log = engine.changes_since(0, usize::MAX).expect("the log reads");
    assert_eq!(
        log[..old_log.len()],
        old_log[..],
        "old records read as before"
    );
    let [new] = &log[old_log.len()..] else {
        panic!("one new record: {:?}", &log[old_log.len()..]);
    };
    assert_eq!(new.operation, Operation::Create);
    assert_eq!(
        new.after.as_ref(),
        Some(
            &engine
                .snapshot()
                .entity_json(EntityKind::User, "later")
                .expect("the user")
        ),
        "a binary record reads back as the entity's JSON"
    );
    drop(snapshot);
    engine.close();
    drop(engine);
    let engine = Engine::open(&path).expect("the store opens again");
    assert!(engine.opened_from().is_ok(), "{:?}", engine.opened_from());
    assert!(engine.snapshot().user("later").is_some());
}

#[test]
#[ignore = "writes the fixture; run by hand with PORTCULLIS_WRITE_STORE_FIXTURE=1"]
fn write_the_store_fixture() {
    if std::env::var_os("PORTCULLIS_WRITE_STORE_FIXTURE").is_none() {
        return;
    }
    let path = fixture("store-0.1.redb");
    let _ = std::fs::remove_file(&path);
    let options = EngineOptions {
        images: false,
        ..EngineOptions::default()
    };
    let engine = Engine::open_with(&path, options).unwrap();
    let mut runner = TestRunner::deterministic();
    // The longest of a few scripts, for an estate with some of everything.
    let (tree, steps) = (0..20)
        .map(|_| arb_script(200).new_tree(&mut runner).unwrap().current())
        .max_by_key(|(_, steps)| steps.len())
        .expect("scripts");
    run_script(&engine, &tree, &steps);
    let estate = sorted_estate(&engine.snapshot());
    engine.close();
    std::fs::write(
        fixture("store-0.1.estate.json"),
        serde_json::to_vec_pretty(&estate).unwrap(),
    )
    .unwrap();
}

/// The store's tables, as the `memory` report lists them: every entity a table holds
/// is counted, with its bytes.
#[test]
fn the_store_reports_what_each_table_holds() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("store.redb")).unwrap();
    for name in ["ada", "grace", "alan"] {
        crate::support::create_user(&engine, serde_json::json!({ "username": name }));
    }
    let tables = engine.store_tables().unwrap();
    let users = tables
        .iter()
        .find(|table| table.name == "users")
        .expect("the users table is listed");
    assert_eq!(users.entries, 3);
    // Three ids (16 bytes each) and three records.
    assert!(users.stored_bytes > 3 * 16, "{users:?}");
    let groups = tables.iter().find(|table| table.name == "groups");
    assert!(
        groups.is_none_or(|groups| groups.entries == 0),
        "{groups:?}"
    );
}

/// Rows written in key order fill their pages. An import creates users in one write,
/// with time-ordered ids: in key order one after the other, redb's middle splits
/// would leave every leaf of `users` and `members` half empty (the store writes them
/// in three passes instead; see `filling_order` in src/store.rs).
#[test]
fn a_bulk_write_leaves_its_tables_pages_mostly_full() {
    const USERS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("store.redb")).unwrap();
    let mut ops: Vec<Op> = (0..USERS)
        .map(|i| Op::Create(Spec::User(UserSpec::new(format!("user{i:05}")))))
        .collect();
    let mut everyone = GroupSpec::new("everyone");
    everyone.members = (0..USERS)
        .map(|i| MemberSpec::Name(format!("user{i:05}")))
        .collect();
    ops.push(Op::Create(Spec::Group(everyone)));
    engine.write(&Actor::system("import"), ops).unwrap();
    let tables = engine.store_tables().unwrap();
    for name in ["users", "members"] {
        let table = tables.iter().find(|t| t.name == name).unwrap();
        assert_eq!(table.entries, USERS as u64, "{name}");
        let pages = table.stored_bytes + table.metadata_bytes + table.fragmented_bytes;
        let free = table.fragmented_bytes as f64 / pages as f64;
        assert!(
            free < 0.3,
            "{name}: {:.0}% of its pages are free ({table:?})",
            free * 100.0
        );
    }
}
