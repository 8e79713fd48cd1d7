//! Cluster nodes in one process, each a real engine on its own redb file, following
//! one change log in a real PostgreSQL (started by the harness): every write reaches
//! every node in one order, a node joins late from an empty directory, PostgreSQL
//! going away fails writes cleanly and never checks, and a store that is not the
//! cluster's is refused. The end-to-end tests (`tests/cluster.rs` at the workspace
//! root) run nodes as `portcullis serve` processes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_cluster::testing::Postgres;
use portcullis_cluster::{PostgresLog, Settings};
use portcullis_engine::*;
use serde_json::json;

const ACTOR: &str = "cluster-test";

fn log(postgres: &Postgres) -> Arc<PostgresLog> {
    PostgresLog::connect(&Settings {
        url: postgres.url(),
        password: None,
        ca_file: None,
    })
    .expect("connect to the test PostgreSQL")
}

fn node(postgres: &Postgres, dir: &Path, name: &str) -> Engine {
    Engine::open_clustered(
        dir.join("portcullis.redb"),
        EngineOptions::default(),
        log(postgres),
        name,
    )
    .unwrap_or_else(|error| panic!("node {name} cannot join: {error}"))
}

fn create(kind: EntityKind, value: serde_json::Value) -> Op {
    Op::Create(Spec::from_json(kind, value).expect("a valid spec"))
}

fn write(engine: &Engine, ops: Vec<Op>) -> u64 {
    engine
        .write(&Actor::system(ACTOR), ops)
        .expect("the write is accepted")
        .revision
}

/// Waits until `engine` has applied `revision`.
fn reach(engine: &Engine, revision: u64) -> Arc<Snapshot> {
    let snapshot = engine.wait_for_revision(revision, Duration::from_secs(20));
    assert!(
        snapshot.revision() >= revision,
        "the node stayed at revision {} of {revision}",
        snapshot.revision()
    );
    snapshot
}

/// A small estate with every kind of entity, nesting, a temporary membership, and
/// allow and deny rules on nodes and assets.
fn estate_ops() -> Vec<Op> {
    vec![
        create(EntityKind::Node, json!({"name": "Prod"})),
        create(
            EntityKind::Node,
            json!({"name": "DB", "parent": "/Default/Prod"}),
        ),
        create(EntityKind::User, json!({"username": "alice"})),
        create(EntityKind::User, json!({"username": "bob"})),
        create(EntityKind::User, json!({"username": "carol"})),
        create(
            EntityKind::Group,
            json!({"name": "dba", "members": ["bob"]}),
        ),
        create(
            EntityKind::Group,
            json!({"name": "ops", "members": ["alice", {"user": "carol", "expires_at": "2030-01-01T00:00:00Z"}], "subgroups": ["dba"]}),
        ),
        create(
            EntityKind::Asset,
            json!({"name": "db-01", "address": "10.0.0.5", "protocols": ["ssh/22", "postgresql/5432"], "nodes": ["/Default/Prod/DB"], "accounts": [{"username": "postgres"}, {"username": "root", "privileged": true}]}),
        ),
        create(
            EntityKind::Asset,
            json!({"name": "web-01", "address": "10.0.0.6", "protocols": ["ssh/22"], "nodes": ["/Default/Prod"], "accounts": [{"username": "deploy"}]}),
        ),
        create(
            EntityKind::Rule,
            json!({"name": "ops-prod", "groups": ["ops"], "nodes": ["/Default/Prod"], "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]}),
        ),
        create(
            EntityKind::Rule,
            json!({"name": "no-root", "effect": "deny", "groups": ["dba"], "assets": ["db-01"], "accounts": ["root"], "protocols": ["all"], "actions": ["all"]}),
        ),
    ]
}

/// Every answer of `snapshot`'s fast path on every question about its estate equals
/// the reference evaluator's on the same estate.
fn assert_fast_path_agrees(snapshot: &Snapshot) {
    let estate = snapshot.estate();
    let reference = Reference::new(&estate, snapshot.revision());
    let at: Time = "2026-06-01T00:00:00Z".parse().expect("a time");
    let mut asked = 0;
    for user in &estate.users {
        for asset in &estate.assets {
            let accounts = asset
                .accounts
                .iter()
                .map(|account| account.username.clone())
                .chain(["@INPUT".to_owned(), "@ANON".to_owned()]);
            for account in accounts {
                for protocol in ["ssh", "postgresql", "rdp"] {
                    let query = Query {
                        user: &user.username,
                        asset: &asset.name,
                        account: &account,
                        protocol,
                        action: Actions::CONNECT,
                        at,
                    };
                    let fast = snapshot.check(&query).expect("known names");
                    let slow = reference.check(&query).expect("known names");
                    assert_eq!(fast.allowed, slow.allowed, "{query:?}");
                    asked += 1;
                }
            }
        }
    }
    assert!(asked > 20, "only {asked} questions");
}

#[test]
fn every_node_applies_every_write_in_one_order() {
    let postgres = Postgres::start();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let nodes: Vec<Arc<Engine>> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| Arc::new(node(&postgres, dir.path(), &format!("node-{n}"))))
        .collect();
    write(
        &nodes[0],
        vec![create(EntityKind::Group, json!({"name": "everyone"}))],
    );
    // Each node's writers at once: creates, and memberships of one shared group
    // written alone (the cheap path), racing for the log.
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, engine)| (0..2).map(move |w| (n, w, engine.clone())))
        .map(|(n, w, engine)| {
            std::thread::spawn(move || {
                let mut revisions = Vec::new();
                for i in 0..15 {
                    let name = format!("user-{n}-{w}-{i}");
                    revisions.push(write(
                        &engine,
                        vec![
                            create(EntityKind::User, json!({"username": name})),
                            Op::AddMember {
                                group: "everyone".to_owned(),
                                member: MemberSpec::Name(name.clone()),
                            },
                        ],
                    ));
                }
                revisions
            })
        })
        .collect();
    let mut acknowledged: Vec<u64> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("a writer"))
        .collect();
    acknowledged.sort_unstable();
    let before = acknowledged.len();
    acknowledged.dedup();
    assert_eq!(acknowledged.len(), before, "two writes got one revision");
    let last = *acknowledged.last().expect("writes");
    let snapshots: Vec<_> = nodes.iter().map(|engine| reach(engine, last)).collect();
    for (n, snapshot) in snapshots.iter().enumerate() {
        assert_eq!(snapshot.revision(), last, "node {n}");
        assert_eq!(snapshot.counts().users, 90, "node {n}");
        let group = snapshot.group("everyone").expect("the shared group");
        assert_eq!(group.members.len(), 90, "node {n}: members of everyone");
    }
    let canonical = snapshots[0].canonical();
    for (n, snapshot) in snapshots.iter().enumerate().skip(1) {
        assert!(
            snapshot.canonical() == canonical,
            "node {n} differs from node 0"
        );
    }
    // Each node's store holds what its snapshot does: reopened alone, each rebuilds
    // the same estate.
    for (engine, dir) in nodes.into_iter().zip(&dirs) {
        engine.close();
        drop(engine);
        let reopened = Engine::open_with(
            dir.path().join("portcullis.redb"),
            EngineOptions {
                images: false,
                ..EngineOptions::default()
            },
        )
        .expect("reopen a node's store");
        assert!(
            reopened.snapshot().canonical() == canonical,
            "a store differs from its snapshot"
        );
    }
}

#[test]
fn a_node_joining_late_from_an_empty_directory_converges() {
    let postgres = Postgres::start();
    let first_dir = tempfile::tempdir().expect("temp dir");
    let first = node(&postgres, first_dir.path(), "first");
    write(&first, estate_ops());
    // Changes after creation: a rename, a membership removed, a deletion.
    write(
        &first,
        vec![Op::RemoveMember {
            group: "ops".to_owned(),
            user: "alice".to_owned(),
        }],
    );
    write(
        &first,
        vec![Op::Delete {
            kind: EntityKind::Rule,
            target: "no-root".to_owned(),
        }],
    );
    let revision = write(
        &first,
        vec![create(EntityKind::User, json!({"username": "dave"}))],
    );
    let late_dir = tempfile::tempdir().expect("temp dir");
    let late = node(&postgres, late_dir.path(), "late");
    // Open returns once the node has caught up with the log.
    let snapshot = late.snapshot();
    assert_eq!(snapshot.revision(), revision);
    assert!(snapshot.canonical() == first.snapshot().canonical());
    assert_fast_path_agrees(&snapshot);
    // And it follows what comes after, without a write of its own.
    let next = write(
        &first,
        vec![create(EntityKind::User, json!({"username": "erin"}))],
    );
    let followed = reach(&late, next);
    assert!(followed.user("erin").is_some());
    assert_fast_path_agrees(&followed);
    // A write on the late node is seen by the first.
    let back = write(&late, estate_ops_again());
    assert!(reach(&first, back).user("frank").is_some());
    assert!(first.snapshot().canonical() == late.snapshot().canonical());
}

fn estate_ops_again() -> Vec<Op> {
    vec![
        create(EntityKind::User, json!({"username": "frank"})),
        Op::AddMember {
            group: "dba".to_owned(),
            member: MemberSpec::Name("frank".to_owned()),
        },
    ]
}

#[test]
fn writes_fail_cleanly_while_postgres_is_down_and_checks_go_on() {
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = node(&postgres, dir.path(), "solo");
    let before = write(&engine, estate_ops());
    postgres.stop();
    let refused = engine.write(
        &Actor::system(ACTOR),
        vec![create(EntityKind::User, json!({"username": "while-down"}))],
    );
    assert!(
        matches!(refused, Err(Error::Cluster(LogError::Unavailable(_)))),
        "{refused:?}"
    );
    let snapshot = engine.snapshot();
    assert_eq!(
        snapshot.revision(),
        before,
        "a refused write published nothing"
    );
    assert!(snapshot.user("while-down").is_none());
    assert_fast_path_agrees(&snapshot);
    postgres.start_again();
    // The node reconnects by itself (after its backoff).
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        match engine.write(
            &Actor::system(ACTOR),
            vec![create(EntityKind::User, json!({"username": "after"}))],
        ) {
            Ok(outcome) => break outcome.revision,
            Err(Error::Cluster(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => panic!("the write after the restart failed: {error}"),
        }
    };
    assert_eq!(after, before + 1, "the refused write took no revision");
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = node(&postgres, other_dir.path(), "other");
    assert!(other.snapshot().user("after").is_some());
    assert!(other.snapshot().user("while-down").is_none());
}

#[test]
fn a_store_that_is_not_the_clusters_is_refused() {
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let single = Engine::open(dir.path().join("portcullis.redb")).expect("a single server");
        write(
            &single,
            vec![create(EntityKind::User, json!({"username": "mine"}))],
        );
    }
    let refused = Engine::open_clustered(
        dir.path().join("portcullis.redb"),
        EngineOptions::default(),
        log(&postgres),
        "stray",
    );
    assert!(
        matches!(refused, Err(Error::Cluster(LogError::Refused(_)))),
        "{:?}",
        refused.err()
    );
    // A node of another cluster is refused too.
    let other_postgres = Postgres::start();
    let member_dir = tempfile::tempdir().expect("temp dir");
    drop(node(&other_postgres, member_dir.path(), "member"));
    let refused = Engine::open_clustered(
        member_dir.path().join("portcullis.redb"),
        EngineOptions::default(),
        log(&postgres),
        "member",
    );
    assert!(
        matches!(refused, Err(Error::Cluster(LogError::Refused(_)))),
        "{:?}",
        refused.err()
    );
}
