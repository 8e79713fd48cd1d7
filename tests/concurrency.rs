//! Concurrency: checks on several threads while one thread streams writes into an
//! engine on a real redb file. Every decision a checker got must equal the reference
//! evaluator's (plain loops over the entities, `eval::reference`) at the revision the
//! decision reports, and each checker must see revisions only move forward.
//!
//! The writer keeps the snapshot each revision published; after the run, the
//! reference evaluator is run on that revision's plain entities for every recorded
//! decision. `PORTCULLIS_CONCURRENCY_SECS` lengthens the run (default 3 s).

use portcullis_engine::Actor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_engine::{
    Actions, Decision, Engine, EntityKind, Evaluator, Id, Op, Query, Reference, Snapshot, Spec,
    Time,
};
use serde_json::{Value, json};

use crate::support::{Rng, seconds_from_env};

const USERS: usize = 10;
const GROUPS: usize = 4;
const ASSETS: usize = 6;
const RULES: usize = 6;
const CHECKERS: usize = 4;
/// Decisions each checker keeps for the comparison (every one is compared).
const KEPT: usize = 4000;
const ACCOUNTS: [&str; 3] = ["root", "app", "@INPUT"];
const PROTOCOLS: [&str; 2] = ["ssh", "rdp"];
const ACTIONS: [Actions; 3] = [Actions::CONNECT, Actions::UPLOAD, Actions::COPY];

fn spec(kind: EntityKind, json: Value) -> Spec {
    Spec::from_json(kind, json.clone()).unwrap_or_else(|error| panic!("spec {json}: {error}"))
}

fn put(snapshot: &Snapshot, kind: EntityKind, name: &str, json: Value) -> Op {
    if snapshot.entity_json(kind, name).is_ok() {
        Op::Replace {
            target: name.to_owned(),
            spec: spec(kind, json),
        }
    } else {
        Op::Create(spec(kind, json))
    }
}

fn some<T: Clone>(rng: &mut Rng, items: &[T], at_most: u64) -> Vec<T> {
    (0..rng.below(at_most + 1))
        .map(|_| rng.pick(items).clone())
        .collect()
}

/// One random write: a group's members and subgroups (subgroups only of higher
/// numbers, so never a cycle), a rule, a user's activity or an asset's.
fn random_op(rng: &mut Rng, snapshot: &Snapshot) -> Op {
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    let assets: Vec<String> = (0..ASSETS).map(|i| format!("x{i}")).collect();
    match rng.below(10) {
        0..=2 => {
            let g = rng.below(GROUPS as u64) as usize;
            let subgroups: Vec<String> = ((g + 1)..GROUPS)
                .filter(|_| rng.below(2) == 0)
                .map(|h| format!("g{h}"))
                .collect();
            let members: Vec<Value> = some(rng, &users, 4)
                .into_iter()
                .map(|user| {
                    if rng.below(4) == 0 {
                        json!({"user": user, "expires_at": "2026-12-01T00:00:00Z"})
                    } else {
                        json!(user)
                    }
                })
                .collect();
            let name = format!("g{g}");
            put(
                snapshot,
                EntityKind::Group,
                &name,
                json!({"name": name, "members": members, "subgroups": subgroups}),
            )
        }
        3..=6 => {
            let r = rng.below(RULES as u64);
            let groups: Vec<String> = (0..GROUPS).map(|i| format!("g{i}")).collect();
            let name = format!("r{r}");
            let protocols = match rng.below(3) {
                0 => json!(["all"]),
                1 => json!(["ssh"]),
                _ => json!(["rdp", "ssh"]),
            };
            let accounts = match rng.below(4) {
                0 => json!(["@ALL"]),
                1 => json!(["root"]),
                2 => json!(["@ALL", "!root"]),
                _ => json!(["@INPUT", "app"]),
            };
            let actions = match rng.below(3) {
                0 => json!(["all"]),
                1 => json!(["connect"]),
                _ => json!(["connect", "upload"]),
            };
            put(
                snapshot,
                EntityKind::Rule,
                &name,
                json!({
                    "name": name,
                    "effect": if r == 0 { "deny" } else { "allow" },
                    "users": some(rng, &users, 2),
                    "groups": some(rng, &groups, 2),
                    "assets": some(rng, &assets, 2),
                    "nodes": if rng.below(2) == 0 { json!(["/Default/Prod"]) } else { json!([]) },
                    "accounts": accounts,
                    "protocols": protocols,
                    "actions": actions,
                    "starts_at": "2020-01-01T00:00:00Z",
                    "active": rng.below(5) != 0,
                }),
            )
        }
        7 | 8 => {
            let name = rng.pick(&users).clone();
            put(
                snapshot,
                EntityKind::User,
                &name,
                json!({"username": name, "active": rng.below(4) != 0}),
            )
        }
        _ => {
            let i = rng.below(ASSETS as u64);
            asset_op(snapshot, i as usize, rng.below(4) != 0)
        }
    }
}

fn asset_op(snapshot: &Snapshot, i: usize, active: bool) -> Op {
    let name = format!("x{i}");
    let nodes = if i % 2 == 0 {
        json!(["/Default/Prod"])
    } else {
        json!(["/Default"])
    };
    put(
        snapshot,
        EntityKind::Asset,
        &name,
        json!({"name": name, "address": "10.0.0.1", "platform": "linux",
               "protocols": if i % 3 == 0 { json!(["ssh/22", "rdp/3389"]) } else { json!(["ssh/22"]) },
               "nodes": nodes, "active": active,
               "accounts": [{"username": "root"}, {"username": "app"}]}),
    )
}

/// One decision a checker got: the revision of the snapshot it read, the query's
/// parts, and the decision.
type Record = (u64, [usize; 5], Decision);

#[test]
fn concurrent_checks_match_the_reference_at_their_revision() {
    let duration = seconds_from_env("PORTCULLIS_CONCURRENCY_SECS", 3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = Arc::new(Engine::open(dir.path().join("store.redb")).expect("open the store"));
    let mut rng = Rng::from_env("concurrency", 0xc0c0_2026);
    let base_seed = rng.next();
    // The estate every write then changes.
    let snapshot = engine.snapshot();
    let mut setup = vec![Op::Create(spec(
        EntityKind::Node,
        json!({"name": "Prod", "parent": "/Default"}),
    ))];
    setup.extend(
        (0..USERS)
            .map(|i| Op::Create(spec(EntityKind::User, json!({"username": format!("u{i}")})))),
    );
    setup.extend(
        (0..GROUPS).map(|i| Op::Create(spec(EntityKind::Group, json!({"name": format!("g{i}")})))),
    );
    engine.write(&Actor::system("setup"), setup).expect("setup");
    let assets: Vec<Op> = (0..ASSETS).map(|i| asset_op(&snapshot, i, true)).collect();
    engine
        .write(&Actor::system("setup"), assets)
        .expect("assets");
    drop(snapshot);
    let mut published: HashMap<u64, Arc<Snapshot>> = HashMap::new();
    let first = engine.snapshot();
    published.insert(first.revision(), first);

    let done = Arc::new(AtomicBool::new(false));
    let records: Arc<Mutex<Vec<Record>>> = Arc::default();
    let checkers: Vec<_> = (0..CHECKERS)
        .map(|t| {
            let (engine, done, records) = (engine.clone(), done.clone(), records.clone());
            let mut rng = Rng::new(base_seed.wrapping_add(1 + t as u64));
            std::thread::spawn(move || {
                let at: Time = "2026-11-30T00:00:00Z".parse().expect("a time");
                let mut kept = Vec::with_capacity(KEPT);
                let mut last_revision = 0;
                let mut last_kept = u64::MAX;
                let mut n_checks = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let snapshot = engine.snapshot();
                    assert!(snapshot.revision() >= last_revision, "revisions went back");
                    last_revision = snapshot.revision();
                    let parts = [
                        rng.below(USERS as u64) as usize,
                        rng.below(ASSETS as u64) as usize,
                        rng.below(ACCOUNTS.len() as u64) as usize,
                        rng.below(PROTOCOLS.len() as u64) as usize,
                        rng.below(ACTIONS.len() as u64) as usize,
                    ];
                    let (user, asset) = (format!("u{}", parts[0]), format!("x{}", parts[1]));
                    let query = Query {
                        user: &user,
                        asset: &asset,
                        account: ACCOUNTS[parts[2]],
                        protocol: PROTOCOLS[parts[3]],
                        action: ACTIONS[parts[4]],
                        at,
                    };
                    let decision = snapshot.check(&query).expect("known user and asset");
                    assert_eq!(decision.revision, snapshot.revision());
                    n_checks += 1;
                    // Keep a spread: the first decision at each revision, and one in 256.
                    if kept.len() < KEPT
                        && (snapshot.revision() != last_kept || n_checks % 256 == 0)
                    {
                        last_kept = snapshot.revision();
                        kept.push((snapshot.revision(), parts, decision));
                    }
                }
                records.lock().expect("records").extend(kept);
                n_checks
            })
        })
        .collect();

    let started = Instant::now();
    let mut n_writes = 0;
    let mut n_refused = 0;
    while started.elapsed() < duration {
        let snapshot = engine.snapshot();
        let ops: Vec<Op> = (0..1 + rng.below(3))
            .map(|_| random_op(&mut rng, &snapshot))
            .collect();
        match engine.write(&Actor::system("writer"), ops) {
            Ok(outcome) => {
                let after = engine.snapshot();
                // One writer: the snapshot published now is the one of this write.
                assert_eq!(after.revision(), outcome.revision);
                published.insert(outcome.revision, after);
                n_writes += 1;
            }
            // A rule naming nothing in force is still valid; what is refused is
            // refused whole and changes nothing.
            Err(_) => n_refused += 1,
        }
    }
    done.store(true, Ordering::Relaxed);
    let n_checks: u64 = checkers
        .into_iter()
        .map(|c| c.join().expect("a checker"))
        .sum();
    let records = records.lock().expect("records");
    let at: Time = "2026-11-30T00:00:00Z".parse().expect("a time");
    let estates: HashMap<u64, _> = records
        .iter()
        .map(|(revision, _, _)| *revision)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|revision| {
            let snapshot = published.get(&revision).unwrap_or_else(|| {
                panic!("a decision at revision {revision}, which no write published")
            });
            (revision, snapshot.estate())
        })
        .collect();
    let mut n_allowed = 0;
    let mut revisions_seen = std::collections::BTreeSet::new();
    for (revision, parts, decision) in records.iter() {
        let estate = &estates[revision];
        let reference = Reference::new(estate, *revision);
        let (user, asset) = (format!("u{}", parts[0]), format!("x{}", parts[1]));
        let query = Query {
            user: &user,
            asset: &asset,
            account: ACCOUNTS[parts[2]],
            protocol: PROTOCOLS[parts[3]],
            action: ACTIONS[parts[4]],
            at,
        };
        let expected = reference.check(&query).expect("the reference resolves");
        let sorted = |d: &Decision| -> (bool, Actions, Vec<Id>, u64, Option<Time>) {
            (
                d.allowed,
                d.actions,
                d.rules.sorted(),
                d.revision,
                d.valid_until,
            )
        };
        assert_eq!(
            sorted(decision),
            sorted(&expected),
            "revision {revision}, query {query:?}"
        );
        n_allowed += usize::from(decision.allowed);
        revisions_seen.insert(*revision);
    }
    eprintln!(
        "concurrency: {n_writes} writes ({n_refused} refused), {n_checks} checks on {CHECKERS} \
         threads, {} compared with the reference ({n_allowed} allowed) across {} revisions",
        records.len(),
        revisions_seen.len()
    );
    assert!(n_writes > 50, "the writer made progress: {n_writes}");
    assert!(
        revisions_seen.len() > 10,
        "checks saw many revisions: {}",
        revisions_seen.len()
    );
    assert!(
        n_allowed > 0 && n_allowed < records.len(),
        "both outcomes occur"
    );
}
