//! Cluster mode end to end: `portcullis serve --cluster` nodes as real processes on
//! their own data directories, one real PostgreSQL (`portcullis_cluster::testing`)
//! holding their change log.
//!
//! - a write on one node is read on another with `min_revision`; `/api/v1/cluster`,
//!   `/healthz` and `/metrics` show the cluster;
//! - nodes killed with SIGKILL under write load (`PORTCULLIS_CLUSTER_KILL_CYCLES`,
//!   default 20) lose no acknowledged write, and the survivors answer every check;
//! - PostgreSQL stopped and restarted under load (3 times): checks never fail,
//!   writes fail with 503 `cluster_unavailable` while it is down, and every node
//!   ends with the same estate.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_cluster::testing::Postgres;
use serde_json::{Value, json};

use crate::support::{Api, Server};

fn start_node(postgres: &Postgres, data: &Path) -> Server {
    let url = postgres.url();
    Server::start(
        data,
        &[
            ("PORTCULLIS_CLUSTER", url.as_str()),
            // A revision no node reaches is answered after this, not the default 5 s.
            ("PORTCULLIS_MIN_REVISION_WAIT_MS", "500"),
        ],
    )
}

/// The checker every test asks with.
fn checker(api: &Api) -> String {
    api.token("cluster-checker", &["checker"], None)
}

fn check_body(user: &str, min_revision: u64) -> Value {
    json!({
        "user": user, "asset": "db-01", "account": "postgres", "protocol": "ssh",
        "action": "connect", "min_revision": min_revision,
    })
}

/// A user and an asset the checks ask about, made on `api`'s node; the revision.
fn seed(api: &Api) -> u64 {
    api.create("/api/v1/users", json!({"username": "alice"}));
    api.create(
        "/api/v1/assets",
        json!({"name": "db-01", "address": "10.0.0.5", "protocols": ["ssh/22"], "accounts": [{"username": "postgres"}]}),
    );
    api.create(
        "/api/v1/rules",
        json!({"name": "alice-db", "users": ["alice"], "assets": ["db-01"], "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]}),
    );
    api.revision()
}

/// The usernames `api`'s node holds, once it has applied `revision`. A node that
/// has not yet (it reconnects to PostgreSQL after a backoff) answers 503
/// `revision_not_reached` with `Retry-After`: asked again, as a client would.
fn usernames(api: &Api, revision: u64) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = api.get(&format!("/api/v1/users?limit=1&min_revision={revision}"));
        if answer.status == 200 {
            break;
        }
        assert_eq!(
            answer.json["error"]["code"],
            "revision_not_reached",
            "{}",
            answer.text()
        );
        assert!(answer.headers.contains_key("retry-after"));
        assert!(
            Instant::now() < deadline,
            "{} never reached {revision}",
            api.base
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut names = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = api.get(&format!(
            "/api/v1/users?limit=200&offset={offset}&min_revision={revision}"
        ));
        assert_eq!(page.status, 200, "{}", page.text());
        let items = page.json["items"].as_array().expect("a page of users");
        names.extend(
            items
                .iter()
                .map(|user| user["username"].as_str().expect("a username").to_owned()),
        );
        if items.len() < 200 {
            return names;
        }
        offset += 200;
    }
}

#[test]
fn a_write_on_one_node_is_read_on_another() {
    let postgres = Postgres::start();
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let a = start_node(&postgres, dirs[0].path());
    let b = start_node(&postgres, dirs[1].path());
    let (admin_a, admin_b) = (a.admin(), b.admin());
    seed(&admin_a);
    let token = checker(&admin_a);
    // What a client does: the revision its writes reached, as min_revision.
    let revision = admin_a.revision();
    let answer = b
        .api(Some(&token))
        .post("/api/v1/check", &check_body("alice", revision));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json["allowed"], true, "{}", answer.text());
    assert!(answer.json["revision"].as_u64().expect("a revision") >= revision);
    // A revision no node has reached: 503 with Retry-After, after the wait.
    let ahead = b
        .api(Some(&token))
        .post("/api/v1/check", &check_body("alice", revision + 1000));
    assert_eq!(ahead.status, 503, "{}", ahead.text());
    assert_eq!(ahead.json["error"]["code"], "revision_not_reached");
    assert!(ahead.headers.contains_key("retry-after"));
    // Both nodes report themselves.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cluster = admin_b.get("/api/v1/cluster");
        assert_eq!(cluster.status, 200, "{}", cluster.text());
        let nodes = cluster.json["nodes"].as_array().expect("nodes").len();
        if nodes == 2 {
            assert!(cluster.json["node"]["applied_revision"].as_u64() >= Some(revision));
            break;
        }
        assert!(Instant::now() < deadline, "{}", cluster.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let health = b.api(None).get("/healthz");
    assert_eq!(health.status, 200);
    assert!(
        health.json["lag"]["revisions"].is_u64(),
        "{}",
        health.text()
    );
    let metrics = b.api(None).get("/metrics").text();
    assert!(
        metrics.contains("portcullis_cluster_applied_revision "),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_cluster_lag_seconds "),
        "{metrics}"
    );
    // The cluster's route needs users.view.
    let refused = b.api(Some(&token)).get("/api/v1/cluster");
    assert_eq!(refused.status, 403, "{}", refused.text());
}

#[test]
fn killed_nodes_lose_no_acknowledged_write() {
    let cycles: usize = std::env::var("PORTCULLIS_CLUSTER_KILL_CYCLES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let postgres = Postgres::start();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let nodes: Vec<Arc<Mutex<Option<Server>>>> = dirs
        .iter()
        .map(|dir| Arc::new(Mutex::new(Some(start_node(&postgres, dir.path())))))
        .collect();
    let first = nodes[0].lock().unwrap().as_ref().unwrap().admin();
    let revision = seed(&first);
    let token = checker(&first);
    let bases: Vec<Arc<Mutex<String>>> = nodes
        .iter()
        .map(|node| {
            Arc::new(Mutex::new(
                node.lock().unwrap().as_ref().unwrap().base.clone(),
            ))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    // Two writers, each on its own node in turn; a write to a node being killed
    // may fail, and then it was not acknowledged.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (bases, stop, acknowledged) = (bases.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let base = bases[(w + n) % bases.len()].lock().unwrap().clone();
                    let api = Api {
                        base,
                        token: Some(crate::support::BOOTSTRAP.to_owned()),
                        client: crate::support::client(),
                    };
                    let name = format!("writer-{w}-{n}");
                    let body = serde_json::to_vec(&json!({"username": name})).expect("JSON");
                    let answer = api.try_raw(
                        "POST",
                        "/api/v1/users",
                        Some("application/json"),
                        Some(body),
                    );
                    if let Ok(answer) = answer {
                        if answer.status == 201 {
                            let revision = answer.json["revision"].as_u64().expect("a revision");
                            acknowledged.lock().unwrap().push((name, revision));
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut survivors_checked = 0u64;
    let mut random = 0x2545_f491_4f6c_dd1du64;
    for cycle in 0..cycles {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let victim = (random % 3) as usize;
        let server = nodes[victim]
            .lock()
            .unwrap()
            .take()
            .expect("a running node");
        std::thread::sleep(Duration::from_millis(100 + random % 200));
        server.kill();
        // The others answer checks while it is down.
        for (n, base) in bases.iter().enumerate() {
            if n == victim {
                continue;
            }
            let api = Api {
                base: base.lock().unwrap().clone(),
                token: Some(token.clone()),
                client: crate::support::client(),
            };
            let answer = api.post("/api/v1/check", &check_body("alice", revision));
            assert_eq!(
                answer.status,
                200,
                "cycle {cycle}: node {n}: {}",
                answer.text()
            );
            assert_eq!(answer.json["allowed"], true);
            survivors_checked += 1;
        }
        let restarted = start_node(&postgres, dirs[victim].path());
        *bases[victim].lock().unwrap() = restarted.base.clone();
        *nodes[victim].lock().unwrap() = Some(restarted);
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("a writer");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= cycles,
        "only {} writes acknowledged in {cycles} cycles",
        acknowledged.len()
    );
    assert!(survivors_checked >= 2 * cycles as u64);
    let last = acknowledged
        .iter()
        .map(|(_, revision)| *revision)
        .max()
        .unwrap_or(revision);
    let mut estates = Vec::new();
    for node in &nodes {
        let guard = node.lock().unwrap();
        let api = guard.as_ref().expect("running").admin();
        let names = usernames(&api, last);
        for (name, revision) in &acknowledged {
            assert!(
                names.contains(name),
                "{name} (acknowledged at revision {revision}) is missing on {}",
                api.base
            );
        }
        estates.push(names);
    }
    assert!(
        estates.windows(2).all(|pair| pair[0] == pair[1]),
        "the nodes' users differ"
    );
}

#[test]
fn checks_go_on_while_postgres_restarts() {
    let postgres = Postgres::start();
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let a = start_node(&postgres, dirs[0].path());
    let b = start_node(&postgres, dirs[1].path());
    let revision = seed(&a.admin());
    let token = checker(&a.admin());
    let stop = Arc::new(AtomicBool::new(false));
    let checks = {
        let (stop, api) = (stop.clone(), b.api(Some(&token)));
        std::thread::spawn(move || {
            let mut asked = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let answer = api.post("/api/v1/check", &check_body("alice", revision));
                assert_eq!(answer.status, 200, "a check failed: {}", answer.text());
                asked += 1;
            }
            asked
        })
    };
    let outcomes = Arc::new(Mutex::new((Vec::<String>::new(), 0u64)));
    let writer = {
        let (stop, api, outcomes) = (stop.clone(), a.admin(), outcomes.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("during-{n}");
                let answer = api.post("/api/v1/users", &json!({"username": name}));
                match answer.status {
                    201 => outcomes.lock().unwrap().0.push(name),
                    503 => {
                        assert_eq!(answer.json["error"]["code"], "cluster_unavailable");
                        outcomes.lock().unwrap().1 += 1;
                    }
                    other => panic!("write answered {other}: {}", answer.text()),
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        postgres.stop();
        std::thread::sleep(Duration::from_millis(1000));
        postgres.start_again();
    }
    // Writes succeed again once the nodes reconnect.
    let deadline = Instant::now() + Duration::from_secs(20);
    let final_revision = loop {
        let answer = a
            .admin()
            .post("/api/v1/users", &json!({"username": "after-restarts"}));
        if answer.status == 201 {
            break answer.json["revision"].as_u64().expect("a revision");
        }
        assert!(Instant::now() < deadline, "{}", answer.text());
        std::thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, Ordering::SeqCst);
    let asked = checks.join().expect("the checker");
    writer.join().expect("the writer");
    let (acknowledged, refused) = outcomes.lock().unwrap().clone();
    assert!(asked > 0);
    assert!(
        refused > 0,
        "no write was refused while PostgreSQL was down"
    );
    let on_a = usernames(&a.admin(), final_revision);
    let on_b = usernames(&b.admin(), final_revision);
    assert_eq!(on_a, on_b, "the nodes differ");
    for name in &acknowledged {
        assert!(
            on_a.contains(name),
            "{name} was acknowledged and is missing"
        );
    }
}
