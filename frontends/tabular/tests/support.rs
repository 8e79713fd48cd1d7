//! Helpers: stores in a temporary directory, a generated estate, files written and
//! read for real, and comparisons.

#![allow(dead_code)]

use portcullis_engine::Actor;
use std::path::{Path, PathBuf};

use portcullis_engine::{Canonical, Engine, EntityKind, Op, Snapshot, Spec, Time};
use portcullis_tabular::{
    Format, ImportError, ImportOptions, ImportReport, Kind, Problem, export, import,
};
use serde_json::{Value, json};

/// 2030-01-01T00:00:00Z: after the tests run, so defaulted starts are before it.
pub const T0: Time = Time::from_secs(1_893_456_000);
const HOUR: i64 = 3_600_000_000;

pub fn hours(h: i64) -> Time {
    T0.add_micros(h * HOUR)
}

pub fn store(dir: &Path, name: &str) -> Engine {
    Engine::open(dir.join(format!("{name}.redb"))).expect("the store opens")
}

pub fn write(engine: &Engine, kind: EntityKind, specs: Vec<Value>) {
    let ops = specs
        .into_iter()
        .map(|value| Op::Create(Spec::from_json(kind, value).expect("a valid spec")))
        .collect();
    engine
        .write(&Actor::system("test"), ops)
        .expect("the fixture applies");
}

/// A small deterministic generator (no dependency needed for this much randomness).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A role of the generated estate besides the built-in ones; users and a group hold it.
pub const CUSTOM_ROLE: &str = "db-operator";
pub const N_USERS: usize = 30;
pub const N_GROUPS: usize = 10;
pub const N_ASSETS: usize = 24;
pub const N_RULES: usize = 24;
pub const ACCOUNTS: [&str; 4] = ["root", "admin", "deploy", "u3"];
pub const PROTOCOLS: [(&str, u16); 3] = [("ssh", 22), ("rdp", 3389), ("vnc", 5900)];

pub fn user_name(i: usize) -> String {
    match i {
        0 => "Zoë".to_owned(),
        _ => format!("u{i}"),
    }
}

pub fn group_name(i: usize) -> String {
    match i {
        0 => "ops, night shift".to_owned(),
        1 => "=cmd|' /C calc'!A0".to_owned(),
        _ => format!("g{i}"),
    }
}

pub fn asset_name(i: usize) -> String {
    format!("a{i}")
}

/// Node paths, parents first.
pub fn node_paths() -> Vec<String> {
    vec![
        "/Default/Prod (EU)".to_owned(),
        "/Default/Prod (EU)/DB".to_owned(),
        "/Default/Prod (EU)/Web".to_owned(),
        "/Default/Staging".to_owned(),
        "/Default/Staging/-tmp".to_owned(),
        "/Default/Staging/-tmp/deep".to_owned(),
    ]
}

/// An estate with nested groups, expiring memberships, a node tree, assets with
/// accounts and protocols, and allow and deny rules with windows.
pub fn generate(engine: &Engine, seed: u64) {
    let mut rng = Lcg::new(seed);
    write(
        engine,
        EntityKind::Role,
        vec![
            json!({"name": CUSTOM_ROLE, "permissions": ["assets.view", "decisions.check", "rules.view"], "description": "reads, asks"}),
            json!({"name": "-unused, odd", "permissions": [], "description": "=1+1"}),
        ],
    );
    let nodes: Vec<Value> = node_paths()
        .iter()
        .map(|path| {
            let (parent, name) = path.rsplit_once('/').unwrap();
            json!({"name": name, "parent": parent, "description": format!("@{name}")})
        })
        .collect();
    write(engine, EntityKind::Node, nodes);

    let users = (0..N_USERS)
        .map(|i| {
            let mut user = json!({
                "username": user_name(i),
                "name": format!("User {i}"),
                "active": !rng.chance(10),
                "description": if i % 7 == 0 { "+1 line\nsecond line".to_owned() } else { String::new() },
            });
            if i % 3 == 0 {
                user["email"] = json!(format!("user{i}@example.com"));
            }
            if rng.chance(20) {
                user["expires_at"] = json!(hours(rng.below(6) as i64 - 3).to_string());
            }
            if i % 5 == 1 {
                user["mfa"] = json!("forced");
                user["system_roles"] = json!(["user", "system-auditor"]);
            }
            if i % 5 == 2 {
                user["system_roles"] = json!([CUSTOM_ROLE]);
            }
            user
        })
        .collect();
    write(engine, EntityKind::User, users);

    // Groups: g_i may hold g_j for j > i only, so nesting has no cycle.
    let groups = (0..N_GROUPS)
        .rev()
        .map(|i| {
            let mut members = Vec::new();
            for u in 0..N_USERS {
                if rng.chance(15) {
                    if rng.chance(30) {
                        members.push(json!({"user": user_name(u), "expires_at": hours(rng.below(6) as i64 - 3).to_string()}));
                    } else {
                        members.push(json!(user_name(u)));
                    }
                }
            }
            let mut subgroups = Vec::new();
            for j in i + 1..N_GROUPS {
                if rng.chance(20) {
                    if rng.chance(30) {
                        subgroups.push(json!({"group": group_name(j), "expires_at": hours(rng.below(6) as i64 - 3).to_string()}));
                    } else {
                        subgroups.push(json!(group_name(j)));
                    }
                }
            }
            let mut group = json!({"name": group_name(i), "members": members, "subgroups": subgroups});
            if i == 2 {
                group["roles"] = json!([{"scope": "*", "roles": ["system-auditor"]}, {"scope": "/Default/Prod (EU)", "roles": ["system-admin", "user"]}]);
            }
            if i == 3 {
                group["roles"] = json!([{"scope": "/Default/Staging", "roles": [CUSTOM_ROLE]}]);
            }
            group
        })
        .collect();
    write(engine, EntityKind::Group, groups);

    let paths = node_paths();
    let assets = (0..N_ASSETS)
        .map(|i| {
            let mut protocols = Vec::new();
            for (name, port) in PROTOCOLS {
                if rng.chance(60) || protocols.is_empty() && name == "vnc" {
                    protocols.push(format!("{name}/{port}"));
                }
            }
            let mut accounts = Vec::new();
            for (k, username) in ACCOUNTS.iter().enumerate() {
                if rng.chance(50) {
                    accounts.push(json!({
                        "username": username,
                        "privileged": k == 0,
                        "secret_kind": if k == 2 { "ssh_key" } else { "password" },
                    }));
                }
            }
            let mut nodes = vec![paths[rng.below(paths.len())].clone()];
            if rng.chance(20) {
                let other = paths[rng.below(paths.len())].clone();
                if other != nodes[0] {
                    nodes.push(other);
                }
            }
            json!({
                "name": asset_name(i),
                "address": format!("10.0.0.{i}"),
                "platform": if i % 2 == 0 { "linux" } else { "windows" },
                "protocols": protocols,
                "nodes": nodes,
                "accounts": accounts,
                "active": !rng.chance(10),
            })
        })
        .collect();
    write(engine, EntityKind::Asset, assets);

    let selectors = [
        "@ALL", "@USER", "@INPUT", "@ANON", "root", "!root", "admin", "deploy",
    ];
    let action_sets = [
        vec!["all"],
        vec!["connect"],
        vec!["connect", "transfer"],
        vec!["clipboard"],
        vec!["upload", "download"],
    ];
    let rules = (0..N_RULES)
        .map(|i| {
            let pick = |rng: &mut Lcg, n: usize, name: &dyn Fn(usize) -> String, percent| {
                (0..n)
                    .filter(|_| rng.chance(percent))
                    .map(name)
                    .collect::<Vec<_>>()
            };
            let mut accounts: Vec<&str> = selectors
                .iter()
                .copied()
                .filter(|_| rng.chance(30))
                .collect();
            if accounts.is_empty() {
                accounts.push("@ALL");
            }
            let protocols: Vec<&str> = if rng.chance(40) {
                vec!["all"]
            } else {
                PROTOCOLS
                    .iter()
                    .map(|(name, _)| *name)
                    .filter(|_| rng.chance(50))
                    .collect()
            };
            let mut rule = json!({
                "name": format!("r{i}"),
                "effect": if i % 4 == 3 { "deny" } else { "allow" },
                "users": pick(&mut rng, N_USERS, &user_name, 8),
                "groups": pick(&mut rng, N_GROUPS, &group_name, 20),
                "assets": pick(&mut rng, N_ASSETS, &asset_name, 10),
                "nodes": pick(&mut rng, paths.len(), &|k| paths[k].clone(), 15),
                "accounts": accounts,
                "protocols": if protocols.is_empty() { vec!["ssh"] } else { protocols },
                "actions": action_sets[rng.below(action_sets.len())],
                "active": !rng.chance(10),
                "description": if i == 0 { "-1 is a number" } else { "" },
            });
            if rng.chance(50) {
                rule["starts_at"] = json!(hours(rng.below(4) as i64 - 2).to_string());
            }
            if rng.chance(50) {
                rule["expires_at"] = json!(hours(rng.below(3) as i64 + 2).to_string());
            }
            rule
        })
        .collect();
    write(engine, EntityKind::Rule, rules);
}

pub fn file(dir: &Path, kind: Kind, format: Format) -> PathBuf {
    dir.join(format!("{kind}.{}", format.extension()))
}

pub fn export_to(snapshot: &Snapshot, kind: Kind, format: Format, path: &Path) {
    let mut out = std::fs::File::create(path).expect("the file is created");
    export(snapshot, kind, format, &mut out).expect("the export succeeds");
}

pub fn import_from(
    engine: &Engine,
    kind: Kind,
    format: Format,
    path: &Path,
    update: bool,
) -> Result<ImportReport, ImportError> {
    let bytes = std::fs::read(path).expect("the file reads");
    import(
        engine,
        &Actor::system("importer"),
        kind,
        format,
        &bytes,
        ImportOptions {
            update,
            ..ImportOptions::default()
        },
    )
}

/// The problems of a refused import.
pub fn refusal(result: Result<ImportReport, ImportError>) -> Vec<Problem> {
    match result {
        Err(ImportError::Problems(problems)) => problems,
        Err(error) => panic!("expected problems, got {error}"),
        Ok(report) => panic!("expected problems, the import succeeded: {report:?}"),
    }
}

/// (row, column) of each problem, for comparisons.
pub fn places(problems: &[Problem]) -> Vec<(Option<usize>, Option<String>)> {
    problems.iter().map(|p| (p.row, p.column.clone())).collect()
}

/// What must not change when an import is refused.
pub fn state(engine: &Engine) -> (u64, Canonical) {
    let snapshot = engine.snapshot();
    (snapshot.revision(), snapshot.canonical())
}

pub fn assert_unchanged(engine: &Engine, before: &(u64, Canonical)) {
    let after = state(engine);
    assert_eq!(after.0, before.0, "the revision moved");
    assert!(after.1 == before.1, "the store changed");
}

/// Writes `text` as a CSV file and imports it.
/// Imports `text` as CSV with every option given.
pub fn import_csv_with(
    engine: &Engine,
    kind: Kind,
    text: &str,
    options: ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    import(
        engine,
        &Actor::system("importer"),
        kind,
        Format::Csv,
        text.as_bytes(),
        options,
    )
}

pub fn import_csv(
    engine: &Engine,
    dir: &Path,
    kind: Kind,
    text: &str,
    update: bool,
) -> Result<ImportReport, ImportError> {
    let path = dir.join(format!("input-{kind}.csv"));
    std::fs::write(&path, text).expect("the file is written");
    import_from(engine, kind, Format::Csv, &path, update)
}
