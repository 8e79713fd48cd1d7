//! Crash safety: `portcullis serve` takes concurrent writes through the admin API,
//! the import route and SCIM, and is killed with SIGKILL at seeded random moments,
//! then restarted on the same data, again and again. The servers write a snapshot
//! image after every revision, so kills also cut image writes off (asserted: some
//! kill left a half-written `.image.tmp`), and the next open must ignore what they
//! left and lose nothing.
//!
//! After every kill, the store is opened in this process (the server is dead, so the
//! lock is free) and must hold every write that was acknowledged (answered 2xx), hold
//! each multi-entity write (a five-user CSV import: one transaction) whole or not at
//! all, have a revision no older than the newest acknowledged one, and pass the
//! snapshot's invariant check; that open starts from the snapshot image the previous
//! check left, behind the store by whatever the killed server wrote, so every cycle
//! also checks an image brought up to date after a crash. At the end, what the last server (whose snapshot was
//! maintained write by write) answered is compared with what a server started on the
//! same store (snapshot rebuilt from scratch) answers, every entity and decision
//! lists; and, in process, deletes and a group write applied to the crash-made store
//! give a snapshot whose canonical form (`Snapshot::canonical()`) equals that of a
//! fresh open of the store.
//!
//! `PORTCULLIS_CRASH_CYCLES` sets the number of kill/restart cycles (default 20).
//!
//! What makes the checks worth something is asserted too: every kill cut off a
//! request in flight, some of them five-user imports (so the all-or-nothing check
//! had an interrupted import to look at), and the writers made progress. The run's
//! length is not asserted: on a shared 2-core machine it measures the neighbours, and
//! the CI budget is watched where it is spent, in `.ci/run`'s total.

use portcullis_engine::Actor;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_engine::{Engine, EntityKind};
use serde_json::{Value, json};

use crate::support::{Api, Rng, STORE_FILE, Server, small_estate};

/// Users per import: one write, so all of them or none.
const BATCH: usize = 5;

#[derive(Default)]
struct Ledger {
    /// Single users acknowledged (admin API and SCIM).
    users: Vec<String>,
    /// Import batches acknowledged / sent but not acknowledged.
    batches: Vec<Vec<String>>,
    unacknowledged_batches: Vec<Vec<String>>,
    /// SCIM groups acknowledged, with how many members they were created with.
    groups: Vec<(String, usize)>,
    /// Members added to `ops` and acknowledged.
    ops_members: Vec<String>,
    /// The newest revision an acknowledged write reported.
    revision: u64,
    /// Answers that were not 2xx (a crash shows as a failed connection, never as an
    /// error status).
    errors: Vec<String>,
    acknowledged: usize,
    sent: usize,
    /// Requests cut off by a kill (sent, never answered).
    lost: usize,
    /// Of those, the five-user imports.
    imports_cut: usize,
    /// Unacknowledged imports found whole in the store (committed, answer lost).
    committed_unacknowledged: usize,
    /// Kills that cut off a snapshot image being written (its temporary file was left).
    images_cut: usize,
}

type Shared = Arc<Mutex<Ledger>>;

/// What a request came to: acknowledged (with its JSON), refused with a status, cut
/// off by the crash, or never connected (the server was already dead).
enum Sent {
    Ok(Value),
    Refused(String),
    Lost,
    Unreachable,
}

fn send(api: &Api, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Sent {
    match api.try_raw(method, path, Some(content_type), Some(body)) {
        Ok(answer) if (200..300).contains(&answer.status) => Sent::Ok(answer.json),
        Ok(answer) => Sent::Refused(format!(
            "{method} {path}: {} {}",
            answer.status,
            answer.text()
        )),
        // A refused connection never reached the server: no kill cut it off.
        Err(error) if error.is_connect() => Sent::Unreachable,
        Err(_) => Sent::Lost,
    }
}

fn note_revision(ledger: &mut Ledger, json: &Value) {
    if let Some(revision) = json["revision"].as_u64() {
        ledger.revision = ledger.revision.max(revision);
    }
}

/// Admin API: create users, and add every third one to `ops`.
fn admin_writer(api: Api, cycle: usize, stop: Arc<AtomicBool>, ledger: Shared) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("a{cycle}x{i}");
        let body = serde_json::to_vec(&json!({"username": name})).expect("JSON");
        ledger.lock().expect("ledger").sent += 1;
        match send(&api, "POST", "/api/v1/users", "application/json", body) {
            Sent::Ok(json) => {
                let mut ledger = ledger.lock().expect("ledger");
                note_revision(&mut ledger, &json);
                ledger.users.push(name.clone());
                ledger.acknowledged += 1;
            }
            Sent::Refused(error) => ledger.lock().expect("ledger").errors.push(error),
            Sent::Lost => {
                ledger.lock().expect("ledger").lost += 1;
                return;
            }
            Sent::Unreachable => return,
        }
        if i % 3 == 0 {
            let body = serde_json::to_vec(&json!(name)).expect("JSON");
            ledger.lock().expect("ledger").sent += 1;
            match send(
                &api,
                "POST",
                "/api/v1/groups/ops/members",
                "application/json",
                body,
            ) {
                Sent::Ok(json) => {
                    let mut ledger = ledger.lock().expect("ledger");
                    note_revision(&mut ledger, &json);
                    ledger.ops_members.push(name);
                    ledger.acknowledged += 1;
                }
                Sent::Refused(error) => ledger.lock().expect("ledger").errors.push(error),
                Sent::Lost => {
                    ledger.lock().expect("ledger").lost += 1;
                    return;
                }
                Sent::Unreachable => return,
            }
        }
        i += 1;
    }
}

/// The import route: five users per CSV file, one transaction each.
fn import_writer(api: Api, cycle: usize, stop: Arc<AtomicBool>, ledger: Shared) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let names: Vec<String> = (0..BATCH).map(|k| format!("m{cycle}x{i}x{k}")).collect();
        let mut csv = String::from("Username,Email\n");
        for name in &names {
            csv.push_str(&format!("{name},{name}@example.com\n"));
        }
        ledger.lock().expect("ledger").sent += 1;
        match send(
            &api,
            "POST",
            "/api/v1/users/import",
            "text/csv",
            csv.into_bytes(),
        ) {
            Sent::Ok(json) => {
                let mut ledger = ledger.lock().expect("ledger");
                note_revision(&mut ledger, &json);
                ledger.batches.push(names);
                ledger.acknowledged += 1;
            }
            Sent::Refused(error) => ledger.lock().expect("ledger").errors.push(error),
            Sent::Lost => {
                let mut ledger = ledger.lock().expect("ledger");
                ledger.unacknowledged_batches.push(names);
                ledger.lost += 1;
                ledger.imports_cut += 1;
                return;
            }
            // Never received: it must be absent, which the same check covers.
            Sent::Unreachable => {
                ledger
                    .lock()
                    .expect("ledger")
                    .unacknowledged_batches
                    .push(names);
                return;
            }
        }
        i += 1;
    }
}

/// SCIM: create users, and every fourth time a group holding the last two of them.
fn scim_writer(api: Api, cycle: usize, stop: Arc<AtomicBool>, ledger: Shared) {
    let mut i = 0;
    let mut created: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let name = format!("s{cycle}x{i}");
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
        });
        let body = serde_json::to_vec(&body).expect("JSON");
        ledger.lock().expect("ledger").sent += 1;
        match send(
            &api,
            "POST",
            "/scim/v2/Users",
            "application/scim+json",
            body,
        ) {
            Sent::Ok(json) => {
                let mut ledger = ledger.lock().expect("ledger");
                ledger.users.push(name.clone());
                ledger.acknowledged += 1;
                created.push(json["id"].as_str().expect("a SCIM id").to_owned());
            }
            Sent::Refused(error) => ledger.lock().expect("ledger").errors.push(error),
            Sent::Lost => {
                ledger.lock().expect("ledger").lost += 1;
                return;
            }
            Sent::Unreachable => return,
        }
        if i % 4 == 3 && created.len() >= 2 {
            let group = format!("sg{cycle}x{i}");
            let members: Vec<Value> = created[created.len() - 2..]
                .iter()
                .map(|id| json!({"value": id}))
                .collect();
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": group,
                "members": members,
            });
            let body = serde_json::to_vec(&body).expect("JSON");
            ledger.lock().expect("ledger").sent += 1;
            match send(
                &api,
                "POST",
                "/scim/v2/Groups",
                "application/scim+json",
                body,
            ) {
                Sent::Ok(_) => {
                    let mut ledger = ledger.lock().expect("ledger");
                    ledger.groups.push((group, 2));
                    ledger.acknowledged += 1;
                }
                Sent::Refused(error) => ledger.lock().expect("ledger").errors.push(error),
                Sent::Lost => {
                    ledger.lock().expect("ledger").lost += 1;
                    return;
                }
                Sent::Unreachable => return,
            }
        }
        i += 1;
    }
}

/// Opens the store of a stopped server and checks the ledger against it; returns the
/// store's revision and how many unacknowledged imports it holds whole.
fn verify_store(data: &std::path::Path, ledger: &Ledger, cycle: usize) -> (u64, usize) {
    let engine = Engine::open(data.join(STORE_FILE)).expect("the store opens after a crash");
    // The previous check's clean close left an image; the killed server wrote more
    // after it, so this open started from an image behind the store and caught up.
    if cycle > 0 {
        assert!(
            engine.opened_from().is_ok(),
            "cycle {cycle}: the snapshot image was not used: {:?}",
            engine.opened_from()
        );
    }
    let snapshot = engine.snapshot();
    snapshot
        .check_invariants()
        .unwrap_or_else(|error| panic!("cycle {cycle}: invariants after restart: {error}"));
    assert!(
        snapshot.revision() >= ledger.revision,
        "cycle {cycle}: store at revision {} but revision {} was acknowledged",
        snapshot.revision(),
        ledger.revision
    );
    let has_user = |name: &str| snapshot.entity_json(EntityKind::User, name).is_ok();
    for name in &ledger.users {
        assert!(
            has_user(name),
            "cycle {cycle}: acknowledged user `{name}` lost"
        );
    }
    for batch in &ledger.batches {
        for name in batch {
            assert!(
                has_user(name),
                "cycle {cycle}: acknowledged import lost `{name}`"
            );
        }
    }
    let mut whole = 0;
    for batch in &ledger.unacknowledged_batches {
        let present = batch.iter().filter(|name| has_user(name)).count();
        whole += usize::from(present == batch.len());
        assert!(
            present == 0 || present == batch.len(),
            "cycle {cycle}: an unacknowledged import is half applied: {present} of {batch:?}"
        );
    }
    for (group, n_members) in &ledger.groups {
        let json = snapshot
            .entity_json(EntityKind::Group, group)
            .unwrap_or_else(|_| panic!("cycle {cycle}: acknowledged SCIM group `{group}` lost"));
        let members = json["members"].as_array().map_or(0, Vec::len);
        assert_eq!(
            members, *n_members,
            "cycle {cycle}: members of `{group}`: {json}"
        );
    }
    let ops = snapshot.group("ops").expect("group ops");
    for name in &ledger.ops_members {
        let id = snapshot.user(name).expect("an acknowledged member").id;
        assert!(
            ops.members.iter().any(|member| member.user == id),
            "cycle {cycle}: acknowledged membership of `{name}` in ops lost: {:?}",
            ops.members
        );
    }
    let revision = snapshot.revision();
    drop(snapshot);
    engine.close();
    (revision, whole)
}

/// What a server answers about `names` (each user and the assets it reaches), and
/// every entity of every kind.
fn observe(api: &Api, names: &[String]) -> BTreeMap<String, (Value, Value)> {
    let mut seen = BTreeMap::new();
    for name in names {
        let user = api.get(&format!("/api/v1/users/{name}"));
        assert_eq!(user.status, 200, "GET user {name}: {}", user.text());
        let assets = api.get(&format!("/api/v1/users/{name}/assets"));
        assert_eq!(assets.status, 200, "assets of {name}: {}", assets.text());
        let mut assets = assets.json;
        // The revision differs between the two servers by design; the page does not.
        if let Some(object) = assets.as_object_mut() {
            object.remove("revision");
        }
        seen.insert(name.clone(), (user.json, assets));
    }
    // And every entity of every kind, page by page.
    for kind in [
        "users", "groups", "nodes", "assets", "rules", "roles", "tokens",
    ] {
        let mut items = Vec::new();
        loop {
            let path = format!("/api/v1/{kind}?limit=1000&offset={}", items.len());
            let page = api.get(&path);
            assert_eq!(page.status, 200, "{path}: {}", page.text());
            let batch = page.json["items"].as_array().expect("items").clone();
            let total = page.json["total"].as_u64().expect("a total") as usize;
            items.extend(batch);
            if items.len() >= total {
                break;
            }
        }
        seen.insert(format!("list {kind}"), (Value::from(items), Value::Null));
    }
    seen
}

/// On the store the crashes left: writes applied in process to the snapshot built
/// from it (updated write by write) give the same canonical snapshot as a fresh open
/// of the store afterwards (everything rebuilt from redb).
fn incremental_equals_rebuilt(data: &std::path::Path, ledger: &Ledger) {
    let path = data.join(STORE_FILE);
    let engine = Engine::open(&path).expect("the store opens");
    let victims: Vec<&String> = ledger.ops_members.iter().take(3).collect();
    let mut ops = Vec::new();
    for victim in &victims {
        ops.push(portcullis_engine::Op::Delete {
            kind: EntityKind::User,
            target: (*victim).clone(),
        });
    }
    let members: Vec<&String> = ledger.users.iter().rev().take(4).collect();
    ops.push(portcullis_engine::Op::Create(
        portcullis_engine::Spec::from_json(
            EntityKind::Group,
            json!({"name": "after-the-crashes", "members": members, "subgroups": ["ops"]}),
        )
        .expect("a group spec"),
    ));
    engine
        .write(&Actor::system("test"), ops)
        .expect("the write applies");
    if let Some((group, _)) = ledger.groups.first() {
        engine
            .write(
                &Actor::system("test"),
                vec![portcullis_engine::Op::Delete {
                    kind: EntityKind::Group,
                    target: group.clone(),
                }],
            )
            .expect("the delete applies");
    }
    let incremental = engine.snapshot();
    incremental
        .check_invariants()
        .expect("invariants after incremental writes");
    let incremental = incremental.canonical();
    engine.close();
    drop(engine);
    // Rebuilt from redb, not from the image the close just wrote.
    let options = portcullis_engine::EngineOptions {
        images: false,
        ..portcullis_engine::EngineOptions::default()
    };
    let reopened = Engine::open_with(&path, options).expect("the store opens again");
    let rebuilt = reopened.snapshot().canonical();
    assert!(
        incremental == rebuilt,
        "the incrementally updated snapshot differs from the one rebuilt from the store"
    );
    reopened.close();
}

#[test]
fn acknowledged_writes_survive_sigkill_and_nothing_is_half_applied() {
    let cycles: usize = std::env::var("PORTCULLIS_CRASH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng::from_env("crash", 0x5eed_c0de);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let server = Server::start(dir.path(), &[]);
        small_estate(&server.admin());
        server.stop();
    }
    let ledger: Shared = Arc::default();
    // The killed servers write a snapshot image after every revision, so the writes
    // and image writes overlap and kills land in both.
    let imaging = [("PORTCULLIS_IMAGE_EVERY_REVISIONS", "1")];
    let half_written_image = dir.path().join(format!("{STORE_FILE}.image.tmp"));
    // Cycles whose kill cut off a request in flight.
    let mut cut_cycles = 0;
    for cycle in 0..cycles {
        let lost_before = ledger.lock().expect("ledger").lost;
        let _ = std::fs::remove_file(&half_written_image);
        let server = Server::start(dir.path(), &imaging);
        let admin = server.admin();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = [admin_writer, import_writer, scim_writer]
            .into_iter()
            .map(|writer| {
                let (api, stop, ledger) = (admin.clone(), stop.clone(), ledger.clone());
                std::thread::spawn(move || writer(api, cycle, stop, ledger))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(40 + rng.below(360)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().expect("a writer thread");
        }
        let mut ledger = ledger.lock().expect("ledger");
        ledger.images_cut += usize::from(half_written_image.exists());
        assert!(
            ledger.errors.is_empty(),
            "error answers: {:?}",
            ledger.errors
        );
        // Three writers loop without pause, so a kill nearly always lands
        // mid-request; now and then all three are between requests at that instant.
        cut_cycles += usize::from(ledger.lost > lost_before);
        ledger.committed_unacknowledged = verify_store(dir.path(), &ledger, cycle).1;
    }
    // A run whose kills cut off nothing crashed nothing the checks could catch: most
    // cycles must have cut a request off (all but one or two do).
    assert!(
        cut_cycles * 2 >= cycles,
        "only {cut_cycles} of {cycles} kills cut off a request in flight"
    );
    // The end: a server that has taken writes since it started (its snapshot updated
    // write by write) against the store rebuilt by a fresh start.
    let ledger = ledger.lock().expect("ledger");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let mut sample: Vec<String> = ledger.ops_members.iter().rev().take(10).cloned().collect();
    sample.extend(ledger.users.iter().step_by(7).take(20).cloned());
    sample.extend(["alice".to_owned(), "bob".to_owned(), "carol".to_owned()]);
    for name in ledger.users.iter().take(5) {
        let answer = admin.post("/api/v1/groups/dba/members", &json!(name));
        assert_eq!(answer.status, 200, "{}", answer.text());
        sample.push(name.clone());
    }
    let live = observe(&admin, &sample);
    let live_revision = admin.revision();
    server.stop();
    let (stored_revision, _) = verify_store(dir.path(), &ledger, cycles);
    assert_eq!(
        stored_revision, live_revision,
        "a clean stop keeps every write"
    );
    let server = Server::start(dir.path(), &[]);
    let rebuilt = observe(&server.admin(), &sample);
    assert_eq!(
        live, rebuilt,
        "the live snapshot and the one rebuilt from the store differ"
    );
    for name in ledger.users.iter().take(5) {
        let assets = &rebuilt[name].1;
        assert!(
            assets.to_string().contains("db-01"),
            "dba members reach db-01 through ops-prod: {assets}"
        );
    }
    server.stop();
    incremental_equals_rebuilt(dir.path(), &ledger);
    let elapsed = started.elapsed();
    eprintln!(
        "crash: {cycles} SIGKILL cycles, {} writes sent, {} acknowledged and all kept, {} cut off \
         by a kill ({} imports, {} image writes); of {} unacknowledged five-user imports {} were \
         committed whole, the rest absent; in {elapsed:?}",
        ledger.sent,
        ledger.acknowledged,
        ledger.lost,
        ledger.imports_cut,
        ledger.images_cut,
        ledger.unacknowledged_batches.len(),
        ledger.committed_unacknowledged
    );
    assert!(
        ledger.imports_cut > 0,
        "no kill cut off an import in {cycles} cycles: the all-or-nothing check saw none"
    );
    assert!(
        ledger.images_cut > 0,
        "no kill cut off an image being written in {cycles} cycles"
    );
    assert!(
        ledger.acknowledged > cycles,
        "the writers made progress: {}",
        ledger.acknowledged
    );
}
