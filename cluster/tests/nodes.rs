//! Cluster nodes in one process, each a real engine on its own redb file, following
//! one change log in a real PostgreSQL (started by the harness): every write reaches
//! every node in one order, a node joins late from an empty directory, PostgreSQL
//! going away fails writes cleanly and never checks, and a store that is not the
//! cluster's is refused; sign-in state (lockouts, used TOTP steps and recovery codes)
//! is one for the whole cluster. The end-to-end tests (`tests/cluster.rs` at the workspace
//! root) run nodes as `portcullis serve` processes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_cluster::testing::Postgres;
use portcullis_engine::*;
use portcullis_signin::*;
use serde_json::json;

const ACTOR: &str = "cluster-test";

fn node(postgres: &Postgres, dir: &Path, name: &str) -> Engine {
    postgres.node(dir, name, EngineOptions::default())
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
    // And a node restarted meanwhile starts from its own store.
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
    // A node restarted while PostgreSQL is down starts from its own store and
    // answers at its revision.
    drop(snapshot);
    engine.close();
    drop(engine);
    let engine = node(&postgres, dir.path(), "solo");
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.revision(), before, "restarted at its own revision");
    assert!(snapshot.user("alice").is_some());
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
        postgres.change_log(),
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
        postgres.change_log(),
        "member",
    );
    assert!(
        matches!(refused, Err(Error::Cluster(LogError::Refused(_)))),
        "{:?}",
        refused.err()
    );
}

#[test]
fn sign_in_state_is_one_for_the_whole_cluster() {
    const GOOD: &str = "Correct-Horse-42";
    let postgres = Postgres::start();
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let settings = AuthSettings {
        // Cheap parameters: this test counts outcomes, it does not time them.
        lockout: LockoutSettings {
            max_failures: 3,
            window_minutes: 15,
            lock_minutes: 30,
        },
        ..portcullis_signin::testing::cheap_settings()
    };
    let nodes: Vec<(Arc<Engine>, Auth)> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| {
            let engine = Arc::new(node(&postgres, dir.path(), &format!("node-{n}")));
            let auth = Auth::new(engine.clone(), settings.clone()).expect("sign-in");
            (engine, auth)
        })
        .collect();
    let (a, b) = (&nodes[0].1, &nodes[1].1);
    write(
        &nodes[0].0,
        vec![
            create(EntityKind::User, json!({"username": "mallory-target"})),
            create(EntityKind::User, json!({"username": "dora"})),
        ],
    );
    for user in ["mallory-target", "dora"] {
        a.set_password("admin", user, GOOD, false, Time::now())
            .expect("a password");
    }
    let creds = |login: &str, password: &str, code: Option<&str>| LoginRequest {
        login: login.to_owned(),
        password: password.to_owned(),
        code: code.map(str::to_owned),
        method: None,
    };
    let status = |auth: &Auth, request: LoginRequest, now: Time| match auth
        .login(&request, now)
        .expect("an answer")
    {
        LoginOutcome::Denied { reason } => reason.code().to_owned(),
        other => other.status().to_owned(),
    };
    let now = Time::now();
    // Failures on both nodes count toward one lock; the lock holds on both.
    assert_eq!(
        status(a, creds("mallory-target", "wrong-1", None), now),
        "invalid_credentials"
    );
    assert_eq!(
        status(b, creds("mallory-target", "wrong-2", None), now),
        "invalid_credentials"
    );
    assert_eq!(
        status(a, creds("mallory-target", "wrong-3", None), now),
        "invalid_credentials"
    );
    assert_eq!(
        status(b, creds("mallory-target", GOOD, None), now),
        "locked"
    );
    assert_eq!(
        status(a, creds("mallory-target", GOOD, None), now),
        "locked"
    );
    // An unlock on one node lifts it on the other.
    b.unlock("admin", "mallory-target", now).expect("unlock");
    assert_eq!(status(a, creds("mallory-target", GOOD, None), now), "ok");

    // Enrolled on A, confirmed on B; a TOTP step and a recovery code used on one
    // node are used on the other.
    let enrolment = a
        .enrol_totp(&creds("dora", GOOD, None), now)
        .expect("enrol");
    let codes = b
        .confirm_totp(
            &creds("dora", GOOD, None),
            &portcullis_signin::testing::authenticator_code(&enrolment.uri, now),
            now,
        )
        .expect("confirm on the other node");
    let later = now.add_micros(60_000_000);
    let code = portcullis_signin::testing::authenticator_code(&enrolment.uri, later);
    assert_eq!(status(a, creds("dora", GOOD, Some(&code)), later), "ok");
    assert_eq!(
        status(b, creds("dora", GOOD, Some(&code)), later),
        "invalid_code"
    );
    assert_eq!(status(b, creds("dora", GOOD, Some(&codes[0])), later), "ok");
    assert_eq!(
        status(a, creds("dora", GOOD, Some(&codes[0])), later),
        "invalid_code"
    );
    // Both nodes hold one sign-in event log.
    let head = nodes[0].0.snapshot().revision();
    reach(&nodes[1].0, head);
    let events = |auth: &Auth| auth.events_since(0, usize::MAX).expect("events");
    assert_eq!(events(a), events(b));
    assert!(events(a).iter().any(|e| e.event == "lockout"));
}

#[test]
fn new_and_long_gone_nodes_start_from_the_cluster_image_and_the_log_is_compacted() {
    const GOOD: &str = "Correct-Horse-42";
    let postgres = Postgres::start();
    let options = EngineOptions {
        cluster_image_every: 10,
        cluster_retain_revisions: 5,
        ..EngineOptions::default()
    };
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let a = Arc::new(postgres.node(dirs[0].path(), "node-a", options));
    // node-b follows a little, then goes away.
    let b = postgres.node(dirs[1].path(), "node-b", options);
    let early = write(&a, estate_ops());
    reach(&b, early);
    b.close();
    drop(b);
    // Sign-in state rides in the image too: dora is locked out.
    let auth = Auth::new(
        a.clone(),
        AuthSettings {
            lockout: LockoutSettings {
                max_failures: 1,
                window_minutes: 15,
                lock_minutes: 60,
            },
            ..portcullis_signin::testing::cheap_settings()
        },
    )
    .expect("sign-in");
    write(
        &a,
        vec![create(EntityKind::User, json!({"username": "dora"}))],
    );
    auth.set_password("admin", "dora", GOOD, false, Time::now())
        .expect("a password");
    let login = |auth: &Auth, password: &str| {
        let request = LoginRequest {
            login: "dora".to_owned(),
            password: password.to_owned(),
            code: None,
            method: None,
        };
        match auth.login(&request, Time::now()).expect("an answer") {
            LoginOutcome::Denied { reason } => reason.code().to_owned(),
            other => other.status().to_owned(),
        }
    };
    assert_eq!(login(&auth, "wrong"), "invalid_credentials");
    for i in 0..40 {
        write(
            &a,
            vec![create(
                EntityKind::User,
                json!({"username": format!("later-{i}")}),
            )],
        );
    }
    // node-b has not reported for over a minute, as far as the log can tell: what it
    // needs is no longer kept for it.
    let mut sql = postgres::Client::connect(&postgres.url(), postgres::NoTls).expect("psql");
    sql.execute(
        "UPDATE portcullis_nodes SET last_contact = now() - interval '1 hour' WHERE name = 'node-b'",
        &[],
    )
    .expect("age node-b's report");
    // node-a keeps an image and compacts the log (it looks every 5 s).
    let observer = postgres.change_log();
    let head = a.snapshot().revision();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let image = observer.newest_image_revision().expect("the log answers");
        let kept = observer.oldest_kept().expect("the log answers");
        if image.is_some_and(|r| r + 10 > head) && kept.is_some_and(|first| first > early + 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no image and compaction: image {image:?}, oldest kept {kept:?}, head {head}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let canonical = a.snapshot().canonical();
    // A new node starts from the image: the entries before it are gone.
    let c = Arc::new(postgres.node(dirs[2].path(), "node-c", options));
    let snapshot = reach(&c, head);
    assert!(
        snapshot.canonical() == canonical,
        "node-c differs from node-a"
    );
    assert_fast_path_agrees(&snapshot);
    let auth_c = Auth::new(c.clone(), AuthSettings::default()).expect("sign-in");
    assert_eq!(
        login(&auth_c, GOOD),
        "locked",
        "the lockout came with the image"
    );
    // node-b, away longer than the log keeps, starts again from the image.
    let b = postgres.node(dirs[1].path(), "node-b", options);
    let snapshot = reach(&b, head);
    assert!(
        snapshot.canonical() == canonical,
        "node-b differs from node-a"
    );
    assert!(
        dirs[1].path().join("portcullis.redb.stale").exists(),
        "node-b's old store is set aside"
    );
    // Every node goes on following.
    let last = write(
        &c,
        vec![create(EntityKind::User, json!({"username": "after-image"}))],
    );
    for engine in [&*a, &b, &*c] {
        assert!(reach(engine, last).user("after-image").is_some());
    }
}
