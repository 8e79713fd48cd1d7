//! Validation of writes: what is refused, with which error, and that a refused write
//! changes nothing.

use portcullis_engine::*;
use serde_json::{Value, json};

pub(crate) fn engine() -> Engine {
    Engine::in_memory().unwrap()
}

pub(crate) fn create(kind: EntityKind, value: Value) -> Op {
    Op::Create(Spec::from_json(kind, value).unwrap())
}

pub(crate) fn write(engine: &Engine, ops: Vec<Op>) -> Result<WriteOutcome, ValidationError> {
    engine
        .write(&Actor::system("test"), ops)
        .map_err(|error| match error {
            Error::Validation(error) => error,
            other => panic!("not a validation error: {other}"),
        })
}

/// Writes `ops` into a fresh engine holding `setup`, expects a refusal whose message
/// contains `message`, and checks nothing changed.
pub(crate) fn refused(setup: Vec<Op>, ops: Vec<Op>, message: &str) {
    let engine = engine();
    if !setup.is_empty() {
        write(&engine, setup).expect("setup applies");
    }
    let before = engine.snapshot().canonical();
    let revision = engine.snapshot().revision();
    let error = write(&engine, ops).expect_err("the write is refused");
    assert!(
        error.to_string().contains(message),
        "`{error}` does not say `{message}`"
    );
    assert_eq!(engine.snapshot().revision(), revision);
    assert_eq!(
        engine.snapshot().canonical(),
        before,
        "a refused write changed something"
    );
}

pub(crate) fn user(name: &str) -> Op {
    create(EntityKind::User, json!({ "username": name }))
}

fn group(name: &str, members: Value, subgroups: Value) -> Op {
    create(
        EntityKind::Group,
        json!({ "name": name, "members": members, "subgroups": subgroups }),
    )
}

#[test]
fn usernames_and_emails_are_unique_case_insensitively() {
    refused(
        vec![user("alice")],
        vec![user("ALICE")],
        "user `ALICE` already exists",
    );
    refused(
        vec![create(
            EntityKind::User,
            json!({"username": "a", "email": "A@x.io"}),
        )],
        vec![create(
            EntityKind::User,
            json!({"username": "b", "email": "a@X.io"}),
        )],
        "email `a@X.io` is already used",
    );
    refused(vec![], vec![user("Ærø"), user("æRØ")], "already exists");
}

#[test]
fn names_are_checked() {
    refused(vec![], vec![user("")], "username: must not be empty");
    refused(vec![], vec![user(" bob")], "surrounding spaces");
    refused(vec![], vec![user("bo\u{7}b")], "control characters");
    refused(vec![], vec![user(&"x".repeat(129))], "longer than 128");
    refused(
        vec![],
        vec![create(
            EntityKind::User,
            json!({"username": "b", "email": "nope"}),
        )],
        "not an email address",
    );
    refused(
        vec![],
        vec![create(EntityKind::Node, json!({"name": "a/b"}))],
        "contains `/`",
    );
}

#[test]
fn references_must_exist() {
    refused(
        vec![],
        vec![group("ops", json!(["ghost"]), json!([]))],
        "unknown user `ghost`",
    );
    refused(
        vec![],
        vec![group("ops", json!([]), json!(["ghost"]))],
        "unknown group `ghost`",
    );
    refused(
        vec![],
        vec![create(
            EntityKind::Rule,
            json!({"name": "r", "nodes": ["/Default/Nope"]}),
        )],
        "unknown node `/Default/Nope`",
    );
    refused(
        vec![],
        vec![create(
            EntityKind::User,
            json!({"username": "a", "system_roles": ["wizard"]}),
        )],
        "unknown role `wizard`",
    );
}

#[test]
fn star_is_just_a_name() {
    refused(
        vec![],
        vec![create(
            EntityKind::Rule,
            json!({"name": "r", "users": ["*"]}),
        )],
        "unknown user `*`",
    );
    let engine = engine();
    write(&engine, vec![user("*"), user("bob")]).unwrap();
    let snapshot = engine.snapshot();
    assert_ne!(
        snapshot.resolve(EntityKind::User, "*").unwrap(),
        snapshot.resolve(EntityKind::User, "bob").unwrap()
    );
}

#[test]
fn malformed_values_are_refused_when_parsed() {
    let bad_action = Spec::from_json(
        EntityKind::Rule,
        json!({"name": "r", "actions": ["connect", "sudo"]}),
    );
    assert!(
        bad_action
            .unwrap_err()
            .to_string()
            .contains("unknown action `sudo`")
    );
    let bad_protocol = Spec::from_json(
        EntityKind::Asset,
        json!({"name": "a", "protocols": ["ssh"]}),
    );
    assert!(
        bad_protocol
            .unwrap_err()
            .to_string()
            .contains("malformed protocol `ssh`")
    );
    let unknown_field = Spec::from_json(EntityKind::User, json!({"username": "a", "admin": true}));
    assert!(
        unknown_field
            .unwrap_err()
            .to_string()
            .contains("unknown field `admin`")
    );
    let bad_time = Spec::from_json(
        EntityKind::User,
        json!({"username": "a", "expires_at": "soon"}),
    );
    assert!(
        bad_time
            .unwrap_err()
            .to_string()
            .contains("`soon` is not an RFC 3339 time")
    );
}

#[test]
fn long_form_members_refuse_unknown_fields() {
    let spec = |member: Value| {
        Spec::from_json(EntityKind::Group, json!({"name": "g", "members": [member]}))
    };
    assert!(spec(json!({"user": "alice", "expires_at": "2030-01-01T00:00:00Z"})).is_ok());
    assert!(spec(json!("alice")).is_ok());
    assert!(spec(json!({"user": "alice", "expiry": "2030-01-01T00:00:00Z"})).is_err());
    let subgroup = Spec::from_json(
        EntityKind::Group,
        json!({"name": "g", "subgroups": [{"group": "h", "role": "x"}]}),
    );
    assert!(subgroup.is_err());
}

#[test]
fn group_cycles_are_refused() {
    let setup = || {
        vec![
            group("a", json!([]), json!([])),
            group("b", json!([]), json!(["a"])),
            group("c", json!([]), json!(["b"])),
        ]
    };
    let close_cycle = |name: &str| Op::Replace {
        target: "a".into(),
        spec: Spec::from_json(EntityKind::Group, json!({"name": "a", "subgroups": [name]}))
            .unwrap(),
    };
    refused(setup(), vec![close_cycle("c")], "would create a cycle");
    refused(setup(), vec![close_cycle("a")], "would create a cycle");
    // The same group nested twice through different paths is not a cycle.
    let engine = engine();
    write(&engine, setup()).unwrap();
    write(&engine, vec![group("d", json!([]), json!(["a", "b", "c"]))]).unwrap();
}

#[test]
fn one_failing_op_refuses_the_whole_write() {
    refused(
        vec![],
        vec![
            user("alice"),
            user("bob"),
            group("ops", json!(["carol"]), json!([])),
        ],
        "unknown user `carol`",
    );
}

#[test]
fn nodes_move_with_their_subtree() {
    let engine = engine();
    write(
        &engine,
        vec![
            create(EntityKind::Node, json!({"name": "Prod"})),
            create(EntityKind::Node, json!({"name": "DB", "parent": "/Default/Prod"})),
            create(EntityKind::Node, json!({"name": "Mysql", "parent": "/Default/Prod/DB"})),
            create(EntityKind::Node, json!({"name": "Archive"})),
            user("alice"),
            create(EntityKind::Asset, json!({"name": "db-1", "protocols": ["ssh/22"], "nodes": ["/Default/Prod/DB/Mysql"], "accounts": [{"username": "root"}]})),
            create(EntityKind::Rule, json!({"name": "archive", "users": ["alice"], "nodes": ["/Default/Archive"], "accounts": ["@ALL"], "actions": ["connect"]})),
        ],
    )
    .unwrap();
    let query = |snapshot: &Snapshot| {
        snapshot
            .check(&Query {
                user: "alice",
                asset: "db-1",
                account: "root",
                protocol: "ssh",
                action: Actions::CONNECT,
                at: Time::now(),
            })
            .unwrap()
            .allowed
    };
    assert!(!query(&engine.snapshot()));
    let moved = Op::Modify {
        kind: EntityKind::Node,
        target: "/Default/Prod/DB".into(),
        edit: Box::new(|spec| {
            let Spec::Node(node) = spec else {
                unreachable!()
            };
            node.parent = "/Default/Archive".into();
            Ok(())
        }),
    };
    write(&engine, vec![moved]).unwrap();
    let snapshot = engine.snapshot();
    assert!(
        snapshot
            .resolve(EntityKind::Node, "/Default/Archive/DB/Mysql")
            .is_ok()
    );
    assert!(
        snapshot
            .resolve(EntityKind::Node, "/Default/Prod/DB")
            .is_err()
    );
    assert!(query(&snapshot), "the asset moved under the granted node");
    let json = snapshot
        .entity_json(EntityKind::Node, "/default/archive/db/mysql")
        .unwrap();
    assert_eq!(json["path"], "/Default/Archive/DB/Mysql");
    assert_eq!(json["key"].as_str().unwrap().split(':').count(), 4);
    snapshot.check_invariants().unwrap();
}

#[test]
fn node_moves_into_their_own_subtree_are_refused() {
    let setup = || {
        vec![
            create(EntityKind::Node, json!({"name": "A"})),
            create(
                EntityKind::Node,
                json!({"name": "B", "parent": "/Default/A"}),
            ),
        ]
    };
    let into_child = Op::Replace {
        target: "/Default/A".into(),
        spec: Spec::from_json(
            EntityKind::Node,
            json!({"name": "A", "parent": "/Default/A/B"}),
        )
        .unwrap(),
    };
    refused(setup(), vec![into_child], "inside itself");
    refused(
        setup(),
        vec![Op::Delete {
            kind: EntityKind::Node,
            target: "/Default/A".into(),
        }],
        "still has child nodes",
    );
    refused(
        vec![],
        vec![Op::Delete {
            kind: EntityKind::Node,
            target: "/Default".into(),
        }],
        "root node",
    );
    refused(
        setup(),
        vec![create(
            EntityKind::Node,
            json!({"name": "b", "parent": "/Default/A"}),
        )],
        "node `/Default/A/b` already exists",
    );
}

#[test]
fn deleting_cascades_into_groups_rules_and_tokens() {
    let engine = engine();
    write(
        &engine,
        vec![
            user("alice"),
            user("bob"),
            group("ops", json!(["alice", "bob"]), json!([])),
            create(EntityKind::Asset, json!({"name": "web", "protocols": ["ssh/22"]})),
            create(EntityKind::Rule, json!({"name": "r", "users": ["alice"], "groups": ["ops"], "assets": ["web"], "accounts": ["@INPUT"]})),
        ],
    )
    .unwrap();
    engine
        .create_token(
            &Actor::system("test"),
            TokenSpec {
                id: None,
                name: "alice-token".into(),
                user: Some("alice".into()),
                roles: vec!["checker".into()],
                expires_at: None,
                description: String::new(),
            },
        )
        .unwrap();
    let revision = engine.snapshot().revision();
    write(
        &engine,
        vec![Op::Delete {
            kind: EntityKind::User,
            target: "alice".into(),
        }],
    )
    .unwrap();
    let snapshot = engine.snapshot();
    assert_eq!(
        snapshot.entity_json(EntityKind::Group, "ops").unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        snapshot.entity_json(EntityKind::Rule, "r").unwrap()["users"],
        json!([])
    );
    assert!(snapshot.resolve(EntityKind::Token, "alice-token").is_err());
    snapshot.check_invariants().unwrap();
    let changes = engine.changes_since(revision, 100).unwrap();
    let touched: Vec<(EntityKind, Operation)> =
        changes.iter().map(|c| (c.entity, c.operation)).collect();
    for expected in [
        (EntityKind::Group, Operation::Update),
        (EntityKind::Rule, Operation::Update),
        (EntityKind::Token, Operation::Delete),
        (EntityKind::User, Operation::Delete),
    ] {
        assert!(
            touched.contains(&expected),
            "{expected:?} missing from {touched:?}"
        );
    }
    assert!(
        changes
            .iter()
            .all(|c| c.revision == revision + 1 && c.actor == "test")
    );
}

#[test]
fn built_in_roles_are_fixed() {
    refused(
        vec![],
        vec![Op::Delete {
            kind: EntityKind::Role,
            target: "system-admin".into(),
        }],
        "built-in role `system-admin`",
    );
    refused(
        vec![
            create(
                EntityKind::Role,
                json!({"name": "dba", "permissions": ["assets.view"]}),
            ),
            create(
                EntityKind::User,
                json!({"username": "a", "system_roles": ["dba"]}),
            ),
        ],
        vec![Op::Delete {
            kind: EntityKind::Role,
            target: "dba".into(),
        }],
        "role `dba` is still held by user `a`",
    );
}

/// Every plaintext password written meets the engine's one credential policy, whether
/// it comes in a created or replaced user or is set by an edit; a refused write changes
/// nothing, and the policy is what the engine was given.
#[test]
fn weak_passwords_are_refused_by_every_write() {
    let engine = engine();
    let weak = |name: &str| {
        let mut spec = UserSpec::new(name);
        spec.password = Some(Password::new("a"));
        spec
    };
    let refused = write(&engine, vec![Op::Create(Spec::User(weak("w")))]).unwrap_err();
    assert!(
        matches!(refused, ValidationError::WeakPassword { .. }),
        "{refused}"
    );
    assert!(engine.snapshot().user("w").is_none());
    let mut strong = UserSpec::new("w");
    strong.password = Some(Password::new("Strong-Passw0rd"));
    write(&engine, vec![Op::Create(Spec::User(strong))]).unwrap();
    let refused = write(
        &engine,
        vec![Op::Replace {
            target: "w".into(),
            spec: Spec::User(weak("w")),
        }],
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("does not meet the policy"),
        "{refused}"
    );
    let refused = write(
        &engine,
        vec![Op::Modify {
            kind: EntityKind::User,
            target: "w".into(),
            edit: Box::new(|spec: &mut Spec| {
                if let Spec::User(user) = spec {
                    user.password = Some(Password::new("nouppercase1"));
                }
                Ok(())
            }),
        }],
    )
    .unwrap_err();
    assert!(
        matches!(refused, ValidationError::WeakPassword { .. }),
        "{refused}"
    );
    assert!(engine.verify_password("w", "Strong-Passw0rd").unwrap());
    // A laxer policy, given to the engine, is the one applied.
    let lax = PasswordPolicy {
        min_length: 1,
        upper: false,
        lower: false,
        digit: false,
        ..PasswordPolicy::default()
    };
    engine.set_credential_policy(CredentialPolicy::new(lax, &Argon2Settings::default()).unwrap());
    write(&engine, vec![Op::Create(Spec::User(weak("lax")))]).unwrap();
    assert!(engine.verify_password("lax", "a").unwrap());
}

#[test]
fn the_log_records_before_and_after_without_secrets() {
    let engine = engine();
    let mut spec = UserSpec::new("alice");
    spec.password = Some(Password::new("Hunter2-hunter2"));
    write(&engine, vec![Op::Create(Spec::User(spec))]).unwrap();
    let (_, secret) = engine
        .create_token(
            &Actor::system("test"),
            TokenSpec {
                id: None,
                name: "t".into(),
                user: None,
                roles: vec!["checker".into()],
                expires_at: None,
                description: String::new(),
            },
        )
        .unwrap();
    let log = serde_json::to_string(&engine.changes_since(0, 1000).unwrap()).unwrap();
    assert!(!log.to_lowercase().contains("hunter2"));
    assert!(!log.contains("argon2"));
    assert!(!log.contains(&secret));
    assert!(engine.verify_password("alice", "Hunter2-hunter2").unwrap());
    assert!(!engine.verify_password("alice", "hunter3-hunter3").unwrap());
    assert!(!engine.verify_password("nobody", "hunter2-hunter2").unwrap());
    assert_eq!(
        engine
            .snapshot()
            .entity_json(EntityKind::User, "alice")
            .unwrap()["has_password"],
        true
    );
}

#[test]
fn tokens_authenticate_until_revoked_or_expired() {
    let engine = engine();
    let expires: Time = "2030-01-01T00:00:00Z".parse().unwrap();
    let (_, secret) = engine
        .create_token(
            &Actor::system("test"),
            TokenSpec {
                id: None,
                name: "gw".into(),
                user: None,
                roles: vec!["checker".into()],
                expires_at: Some(expires),
                description: String::new(),
            },
        )
        .unwrap();
    assert!(
        engine
            .authenticate_token(&secret, expires.add_micros(-1))
            .is_some()
    );
    assert!(engine.authenticate_token(&secret, expires).is_none());
    assert!(
        engine
            .authenticate_token("pct_wrong", Time::now())
            .is_none()
    );
    write(
        &engine,
        vec![Op::Delete {
            kind: EntityKind::Token,
            target: "gw".into(),
        }],
    )
    .unwrap();
    assert!(engine.authenticate_token(&secret, Time::now()).is_none());
    // A chosen secret works the same way, and a reused one is refused.
    let spec = || TokenSpec {
        id: None,
        name: "boot".into(),
        user: None,
        roles: vec!["system-admin".into()],
        expires_at: None,
        description: String::new(),
    };
    engine
        .create_token_with_secret(
            &Actor::system("test"),
            spec(),
            "a-long-enough-bootstrap-secret",
        )
        .unwrap();
    assert!(
        engine
            .authenticate_token("a-long-enough-bootstrap-secret", Time::now())
            .is_some()
    );
    assert!(
        engine
            .create_token_with_secret(
                &Actor::system("test"),
                TokenSpec {
                    name: "other".into(),
                    ..spec()
                },
                "a-long-enough-bootstrap-secret"
            )
            .is_err()
    );
    assert!(
        engine
            .create_token_with_secret(
                &Actor::system("test"),
                TokenSpec {
                    name: "short".into(),
                    ..spec()
                },
                "short"
            )
            .is_err()
    );
}

#[test]
fn a_store_in_use_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = Engine::open(&path).unwrap();
    match Engine::open(&path) {
        Err(Error::Store(StoreError::Locked(shown))) => assert!(shown.ends_with("store.redb")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second engine opened a store in use"),
    }
}

/// 8 threads × 25 user creates; every revision they report.
fn eight_writers(engine: &std::sync::Arc<Engine>) -> Vec<u64> {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        write(&engine, vec![user(&format!("u{t}-{i}"))])
                            .unwrap()
                            .revision
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn concurrent_writes_all_land_with_distinct_revisions() {
    let engine = std::sync::Arc::new(engine());
    let mut revisions = eight_writers(&engine);
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 200);
    assert_eq!(engine.snapshot().counts().users, 200);
    assert_eq!(engine.snapshot().revision(), *revisions.last().unwrap());
}

/// Without group commit every write is its own transaction; with it, 8 writers that
/// each wait for their answer find others queued behind every fsync, so fewer
/// transactions than writes. Either way every acknowledged write is in the file.
#[test]
fn group_commit_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    for group_commit in [false, true] {
        let path = dir.path().join(format!("grouped-{group_commit}.redb"));
        let engine = std::sync::Arc::new(
            Engine::open_with(
                &path,
                EngineOptions {
                    group_commit,
                    ..EngineOptions::default()
                },
            )
            .unwrap(),
        );
        let before = engine.commits();
        let revisions = eight_writers(&engine);
        let commits = engine.commits() - before;
        if group_commit {
            assert!(
                commits < 200,
                "{commits} commits for 200 writes: none grouped"
            );
        } else {
            assert_eq!(commits, 200, "one commit per write");
        }
        assert_eq!(revisions.len(), 200);
        engine.close();
        drop(engine);
        let reopened = Engine::open(&path).unwrap();
        assert_eq!(reopened.snapshot().counts().users, 200);
    }
}

/// Refused writes grouped with accepted ones leave nothing behind: neither a refused
/// single operation nor a write of several refused after its first one applied. 8
/// threads write at once to a file store, so the writer groups them.
#[test]
fn refused_writes_in_a_group_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grouped.redb");
    let engine = std::sync::Arc::new(Engine::open(&path).unwrap());
    write(&engine, vec![user("taken")]).unwrap();
    let start = engine.snapshot().revision();
    let commits_before = engine.commits();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                for i in 0..30 {
                    let ok = write(&engine, vec![user(&format!("ok-{t}-{i}"))]).unwrap();
                    accepted.push(ok.revision);
                    write(&engine, vec![user("TAKEN")]).unwrap_err();
                    // The first operation applies, the second is refused: the first
                    // must not survive.
                    let refused = write(
                        &engine,
                        vec![
                            user(&format!("half-{t}-{i}")),
                            group(&format!("half-{t}-{i}"), json!(["nobody"]), json!([])),
                        ],
                    );
                    assert!(
                        matches!(refused, Err(ValidationError::NotFound(_))),
                        "{refused:?}"
                    );
                    let pair = write(
                        &engine,
                        vec![
                            user(&format!("pair-{t}-{i}")),
                            group(
                                &format!("pair-{t}-{i}"),
                                json!([format!("pair-{t}-{i}")]),
                                json!([]),
                            ),
                        ],
                    )
                    .unwrap();
                    accepted.push(pair.revision);
                }
                accepted
            })
        })
        .collect();
    let mut revisions: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    revisions.sort_unstable();
    let expected: Vec<u64> = (start + 1..=start + 480).collect();
    assert_eq!(
        revisions, expected,
        "one revision per accepted write, none for refused ones"
    );
    // The refusals above were inside groups only if the writer grouped at all.
    let commits = engine.commits() - commits_before;
    assert!(
        commits < 480,
        "{commits} commits for 480 accepted writes: none grouped"
    );
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.counts().users, 1 + 480);
    assert_eq!(snapshot.counts().groups, 240);
    assert!(snapshot.user("half-0-0").is_none());
    snapshot.check_invariants().unwrap();
    let changes = engine.changes_since(start, 10_000).unwrap();
    assert_eq!(
        changes.len(),
        720,
        "a record per accepted entity, none for refused ones"
    );
    let mut by_revision: Vec<u64> = changes.iter().map(|c| c.revision).collect();
    by_revision.dedup();
    assert_eq!(by_revision, expected);
    let canonical = snapshot.canonical();
    engine.close();
    drop(engine);
    let reopened = Engine::open(&path).unwrap();
    assert_eq!(reopened.snapshot().canonical(), canonical);
}

/// Change records are written as JSON text straight from the entity; read back, their
/// `before` and `after` are the entity's JSON form, as `entity_json` gives it.
#[test]
fn change_records_read_back_as_the_entities_json() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("s.redb")).unwrap();
    let created = write(
        &engine,
        vec![
            create(
                EntityKind::User,
                json!({"username": "Zoë \"q\"", "email": "z@example.com", "expires_at": "2031-01-01T00:00:00Z", "system_roles": ["user", "system-auditor"], "description": "line\nbreak"}),
            ),
            create(EntityKind::Group, json!({"name": "ops", "members": ["Zoë \"q\""]})),
        ],
    )
    .unwrap();
    let user_before = engine
        .snapshot()
        .entity_json(EntityKind::User, "zoë \"q\"")
        .unwrap();
    let group = engine
        .snapshot()
        .entity_json(EntityKind::Group, "ops")
        .unwrap();
    write(
        &engine,
        vec![Op::Modify {
            kind: EntityKind::User,
            target: "Zoë \"q\"".to_owned(),
            edit: Box::new(|spec| {
                if let Spec::User(user) = spec {
                    user.phone = Some("+1 555".to_owned());
                }
                Ok(())
            }),
        }],
    )
    .unwrap();
    let user_after = engine
        .snapshot()
        .entity_json(EntityKind::User, "zoë \"q\"")
        .unwrap();
    drop(engine);
    // Reopened: the records come from the file.
    let engine = Engine::open(dir.path().join("s.redb")).unwrap();
    let changes = engine.changes_since(created.revision - 1, 100).unwrap();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(changes[0].operation, Operation::Create);
    assert_eq!(changes[0].before, None);
    assert_eq!(changes[0].after.as_ref(), Some(&user_before));
    assert_eq!(changes[1].after.as_ref(), Some(&group));
    assert_eq!(changes[2].operation, Operation::Update);
    assert_eq!(changes[2].before.as_ref(), Some(&user_before));
    assert_eq!(changes[2].after.as_ref(), Some(&user_after));
    assert_eq!(user_after["phone"], "+1 555");
}

// ----- grants: a token actor never grants what it does not hold ----------------------

/// An engine holding a role `limited` with `permissions`, a token `caller` with it, a
/// role `power` with `users.view` and `tokens.add`, a user `alice` and a group `admins`
/// that holds `power` on `*`. Returns the engine and the caller's actor.
fn granting_engine(permissions: &[&str]) -> (Engine, Actor) {
    let engine = engine();
    write(
        &engine,
        vec![
            create(
                EntityKind::Role,
                json!({"name": "limited", "permissions": permissions}),
            ),
            create(
                EntityKind::Role,
                json!({"name": "power", "permissions": ["users.view", "tokens.add"]}),
            ),
            user("alice"),
            create(
                EntityKind::Group,
                json!({"name": "admins", "roles": [{"scope": "*", "roles": ["power"]}]}),
            ),
            create(EntityKind::Group, json!({"name": "plain"})),
        ],
    )
    .unwrap();
    let spec = serde_json::from_value(json!({"name": "caller", "roles": ["limited"]})).unwrap();
    let (outcome, _secret) = engine.create_token(&Actor::system("test"), spec).unwrap();
    let actor = Actor::token(outcome.ids[0], "caller");
    (engine, actor)
}

/// The permissions a refusal names as missing, or a panic when it is another error.
fn missing(engine: &Engine, actor: &Actor, ops: Vec<Op>) -> Vec<String> {
    let before = engine.snapshot().canonical();
    match engine.write(actor, ops) {
        Err(Error::Validation(ValidationError::GrantBeyondCaller { missing, .. })) => {
            assert_eq!(
                engine.snapshot().canonical(),
                before,
                "a refusal changed something"
            );
            missing
        }
        other => panic!("expected a refused grant, got {other:?}"),
    }
}

fn patch(kind: EntityKind, target: &str, value: Value) -> Op {
    Op::Modify {
        kind,
        target: target.to_owned(),
        edit: Box::new(move |spec: &mut Spec| {
            let mut json = spec.to_json();
            json.as_object_mut()
                .unwrap()
                .extend(value.as_object().unwrap().clone());
            *spec = Spec::from_json(spec.kind(), json).unwrap();
            Ok(())
        }),
    }
}

#[test]
fn a_token_grants_only_permissions_it_holds() {
    let (engine, caller) = granting_engine(&["roles.add", "users.view"]);
    // A role with one permission too many names exactly that one.
    assert_eq!(
        missing(
            &engine,
            &caller,
            vec![create(
                EntityKind::Role,
                json!({"name": "r", "permissions": ["users.view", "tokens.add"]})
            )]
        ),
        vec!["tokens.add"]
    );
    // Within its permissions: taken.
    engine
        .write(
            &caller,
            vec![create(
                EntityKind::Role,
                json!({"name": "r", "permissions": ["users.view"]}),
            )],
        )
        .unwrap();
    // System roles, group roles and a token's roles are grants of a role's permissions.
    for op in [
        patch(
            EntityKind::User,
            "alice",
            json!({"system_roles": ["user", "power"]}),
        ),
        patch(
            EntityKind::Group,
            "plain",
            json!({"roles": [{"scope": "/Default", "roles": ["power"]}]}),
        ),
    ] {
        assert_eq!(missing(&engine, &caller, vec![op]), vec!["tokens.add"]);
    }
}

#[test]
fn joining_a_group_that_holds_roles_is_a_grant_and_leaving_is_not() {
    let (engine, caller) = granting_engine(&["groups.change", "users.view"]);
    let system = Actor::system("test");
    // A member, directly; a subgroup nested in `admins`.
    assert_eq!(
        missing(
            &engine,
            &caller,
            vec![patch(
                EntityKind::Group,
                "admins",
                json!({"members": ["alice"]})
            )]
        ),
        vec!["tokens.add"]
    );
    assert_eq!(
        missing(
            &engine,
            &caller,
            vec![patch(
                EntityKind::Group,
                "admins",
                json!({"subgroups": ["plain"]})
            )]
        ),
        vec!["tokens.add"]
    );
    // A group nested in `admins` passes `power` on to whoever joins it.
    engine
        .write(
            &system,
            vec![patch(
                EntityKind::Group,
                "admins",
                json!({"subgroups": ["plain"]}),
            )],
        )
        .unwrap();
    assert_eq!(
        missing(
            &engine,
            &caller,
            vec![patch(
                EntityKind::Group,
                "plain",
                json!({"members": ["alice"]})
            )]
        ),
        vec!["tokens.add"]
    );
    // A temporary membership lengthened is a grant; shortened or removed, it is not.
    engine
        .write(
            &system,
            vec![patch(
                EntityKind::Group,
                "plain",
                json!({"members": [{"user": "alice", "expires_at": "2030-01-01T00:00:00Z"}]}),
            )],
        )
        .unwrap();
    assert_eq!(
        missing(
            &engine,
            &caller,
            vec![patch(
                EntityKind::Group,
                "plain",
                json!({"members": [{"user": "alice", "expires_at": "2031-01-01T00:00:00Z"}]})
            )]
        ),
        vec!["tokens.add"]
    );
    engine
        .write(
            &caller,
            vec![patch(
                EntityKind::Group,
                "plain",
                json!({"members": [{"user": "alice", "expires_at": "2029-01-01T00:00:00Z"}]}),
            )],
        )
        .unwrap();
    engine
        .write(
            &caller,
            vec![patch(EntityKind::Group, "plain", json!({"members": []}))],
        )
        .unwrap();
    engine
        .write(
            &caller,
            vec![patch(
                EntityKind::Group,
                "admins",
                json!({"subgroups": [], "description": "x"}),
            )],
        )
        .unwrap();
}

#[test]
fn a_revoked_token_writes_nothing() {
    let (engine, caller) = granting_engine(&["users.add"]);
    engine
        .write(
            &Actor::system("test"),
            vec![Op::Delete {
                kind: EntityKind::Token,
                target: "caller".to_owned(),
            }],
        )
        .unwrap();
    let revision = engine.snapshot().revision();
    match engine.write(&caller, vec![user("bob")]) {
        Err(Error::Validation(ValidationError::ActorRevoked(name))) => assert_eq!(name, "caller"),
        other => panic!("expected a revoked actor, got {other:?}"),
    }
    assert_eq!(engine.snapshot().revision(), revision);
}

#[test]
fn a_login_name_never_names_two_users() {
    let ambiguous = |setup: Vec<Op>, op: Op| {
        let engine = engine();
        write(&engine, setup).unwrap();
        match write(&engine, vec![op]) {
            Err(ValidationError::AmbiguousLogin { .. }) => {}
            other => panic!("expected an ambiguous login, got {other:?}"),
        }
    };
    let with_email = |name: &str, email: &str| {
        create(EntityKind::User, json!({"username": name, "email": email}))
    };
    ambiguous(
        vec![with_email("alice", "alice@example.com")],
        user("ALICE@example.com"),
    );
    ambiguous(
        vec![user("bob@corp.example")],
        with_email("carol", "Bob@Corp.example"),
    );
    ambiguous(
        vec![with_email("alice", "alice@example.com"), user("bob")],
        patch(
            EntityKind::User,
            "bob",
            json!({"username": "alice@example.com"}),
        ),
    );
    // One's own email as one's username is no ambiguity.
    let engine = engine();
    write(
        &engine,
        vec![with_email("dave@example.com", "dave@example.com")],
    )
    .unwrap();
}

// ----- one membership: Op::AddMember and Op::RemoveMember -----------------------------

#[test]
fn a_membership_op_changes_one_membership_and_logs_only_it() {
    let engine = engine();
    let mut setup: Vec<Op> = (0..50).map(|i| user(&format!("u{i}"))).collect();
    setup.push(create(
        EntityKind::Group,
        json!({"name": "big", "members": (0..40).map(|i| format!("u{i}")).collect::<Vec<_>>()}),
    ));
    write(&engine, setup).unwrap();
    let since = engine.snapshot().revision();
    let until = "2030-01-01T00:00:00Z";
    write(
        &engine,
        vec![Op::AddMember {
            group: "big".to_owned(),
            member: serde_json::from_value(json!({"user": "u45", "expires_at": until})).unwrap(),
        }],
    )
    .unwrap();
    write(
        &engine,
        vec![Op::RemoveMember {
            group: "big".to_owned(),
            user: "U3".to_owned(),
        }],
    )
    .unwrap();
    let group = engine
        .snapshot()
        .entity_json(EntityKind::Group, "big")
        .unwrap();
    let members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    let id_of = |name: &str| {
        engine
            .snapshot()
            .entity_json(EntityKind::User, name)
            .unwrap()["id"]
            .clone()
    };
    let (u45, u3) = (id_of("u45"), id_of("u3"));
    assert_eq!(members.len(), 40);
    assert!(
        members.contains(&u45.as_str().unwrap()) && !members.contains(&u3.as_str().unwrap()),
        "{members:?}"
    );
    engine.snapshot().check_invariants().unwrap();
    let changes = engine.changes_since(since, 10).unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    for change in &changes {
        assert_eq!(change.operation, Operation::Membership);
        assert_eq!(change.entity, EntityKind::Group);
    }
    assert_eq!(changes[0].before, None);
    assert_eq!(changes[0].after.as_ref().unwrap()["user"], u45);
    assert_eq!(changes[0].after.as_ref().unwrap()["expires_at"], until);
    assert!(changes[1].after.is_none() && changes[1].before.is_some());
}

/// `Engine::validate` finds every problem of a write, each with its operation's
/// index and a typed reason, later operations seeing the earlier ones that apply;
/// it writes nothing, and `write` refuses the same operations with one of them.
#[test]
fn validate_reports_every_problem_with_its_operation() {
    let engine = engine();
    let user_with = |name: &str, password: &str| {
        create(
            EntityKind::User,
            json!({"username": name, "password": password}),
        )
    };
    let ops = || {
        vec![
            user("ada"),
            user("ADA"),
            user_with("weak", "a"),
            create(
                EntityKind::Group,
                json!({"name": "g", "members": ["ghost"]}),
            ),
            create(EntityKind::Group, json!({"name": "h", "members": ["ada"]})),
            user_with("strong", "Str0ng-enough-passw0rd"),
        ]
    };
    let revision = engine.snapshot().revision();
    let problems = engine.validate(&Actor::system("test"), ops());
    let at: Vec<Option<usize>> = problems.iter().map(|p| p.op).collect();
    assert_eq!(at, [Some(1), Some(2), Some(3)], "{problems:?}");
    assert!(matches!(
        problems[0].error,
        ValidationError::Duplicate {
            kind: EntityKind::User,
            ..
        }
    ));
    assert!(matches!(
        problems[1].error,
        ValidationError::WeakPassword { .. }
    ));
    assert!(
        matches!(problems[2].error, ValidationError::NotFound(_)),
        "{problems:?}"
    );
    assert_eq!(
        engine.snapshot().revision(),
        revision,
        "a dry run writes nothing"
    );
    assert!(engine.snapshot().user("ada").is_none());
    match engine.write(&Actor::system("test"), ops()) {
        // Passwords are checked before any operation applies, so the refusal is the
        // weak password's here, not the duplicate's: one of the problems found.
        Err(Error::Validation(error)) => assert!(
            problems.iter().any(|p| p.error == error),
            "{error:?} is one of {problems:?}"
        ),
        other => panic!("refused with one of the problems: {other:?}"),
    }
    // The good operations alone validate clean, and then write.
    let good = || {
        vec![
            user("ada"),
            create(EntityKind::Group, json!({"name": "h", "members": ["ada"]})),
        ]
    };
    assert_eq!(engine.validate(&Actor::system("test"), good()), []);
    write(&engine, good()).unwrap();
}

/// Memberships are stored one row each; a store rebuilt without an image gives every
/// group its members in the order the snapshot kept them, whether the group was
/// written whole or a membership alone, in one commit or several.
#[test]
fn members_keep_their_order_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let options = || EngineOptions {
        images: false,
        ..EngineOptions::default()
    };
    let engine = Engine::open_with(&path, options()).unwrap();
    let mut setup: Vec<Op> = (0..8).map(|i| user(&format!("u{i}"))).collect();
    setup.push(create(
        EntityKind::Group,
        json!({"name": "g", "members": ["u5", "u1", "u3"]}),
    ));
    setup.push(create(
        EntityKind::Group,
        json!({"name": "h", "members": ["u2"]}),
    ));
    write(&engine, setup).unwrap();
    let add = |group: &str, user: &str, until: Option<&str>| Op::AddMember {
        group: group.to_owned(),
        member: serde_json::from_value(json!({"user": user, "expires_at": until})).unwrap(),
    };
    let remove = |group: &str, user: &str| Op::RemoveMember {
        group: group.to_owned(),
        user: user.to_owned(),
    };
    write(&engine, vec![add("g", "u0", None), add("g", "u7", None)]).unwrap();
    // A changed membership keeps its place; a removed and re-added one goes last.
    write(&engine, vec![add("g", "u1", Some("2031-01-01T00:00:00Z"))]).unwrap();
    write(
        &engine,
        vec![
            remove("g", "u5"),
            add("g", "u5", None),
            add("h", "u6", None),
        ],
    )
    .unwrap();
    // A group rewritten whole after memberships written alone.
    write(
        &engine,
        vec![patch(
            EntityKind::Group,
            "h",
            json!({"members": ["u4", "u2", "u6"]}),
        )],
    )
    .unwrap();
    write(&engine, vec![add("h", "u3", None), remove("h", "u2")]).unwrap();
    let members = |engine: &Engine, group: &str| -> Vec<Value> {
        let group = engine
            .snapshot()
            .entity_json(EntityKind::Group, group)
            .unwrap();
        group["members"].as_array().unwrap().clone()
    };
    let name = |engine: &Engine, member: &Value| -> String {
        let id = member["user"].as_str().unwrap();
        engine.snapshot().entity_json(EntityKind::User, id).unwrap()["username"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = (members(&engine, "g"), members(&engine, "h"));
    let names: Vec<String> = before.0.iter().map(|m| name(&engine, m)).collect();
    assert_eq!(names, ["u1", "u3", "u0", "u7", "u5"]);
    let names: Vec<String> = before.1.iter().map(|m| name(&engine, m)).collect();
    assert_eq!(names, ["u4", "u6", "u3"]);
    engine.close();
    drop(engine);
    let engine = Engine::open_with(&path, options()).unwrap();
    assert_eq!(engine.opened_from(), &Err(ImageRejected::Missing));
    engine.snapshot().check_invariants().unwrap();
    assert_eq!((members(&engine, "g"), members(&engine, "h")), before);
    // Deleting a group deletes its member rows: its name and members can be reused.
    write(
        &engine,
        vec![Op::Delete {
            kind: EntityKind::Group,
            target: "h".to_owned(),
        }],
    )
    .unwrap();
    write(
        &engine,
        vec![create(EntityKind::Group, json!({"name": "h"}))],
    )
    .unwrap();
    engine.close();
    drop(engine);
    let engine = Engine::open_with(&path, options()).unwrap();
    assert_eq!(members(&engine, "h"), Vec::<Value>::new());
    assert_eq!(members(&engine, "g"), before.0);
}

#[test]
fn removing_a_non_member_or_granting_through_add_member_is_refused() {
    let (engine, caller) = granting_engine(&["groups.change", "users.view"]);
    let before = engine.snapshot().canonical();
    match engine.write(
        &caller,
        vec![Op::RemoveMember {
            group: "plain".to_owned(),
            user: "alice".to_owned(),
        }],
    ) {
        Err(Error::Validation(ValidationError::NotAMember { group, user })) => {
            assert_eq!((group.as_str(), user.as_str()), ("plain", "alice"));
        }
        other => panic!("expected not a member, got {other:?}"),
    }
    assert_eq!(engine.snapshot().canonical(), before);
    let add = |group: &str| Op::AddMember {
        group: group.to_owned(),
        member: MemberSpec::Name("alice".to_owned()),
    };
    assert_eq!(
        missing(&engine, &caller, vec![add("admins")]),
        vec!["tokens.add"]
    );
    engine.write(&caller, vec![add("plain")]).unwrap();
}

#[test]
fn an_account_id_is_one_accounts() {
    let id = Id::from_u128(0xA1);
    let asset = |name: &str, accounts: Value| {
        create(
            EntityKind::Asset,
            json!({"name": name, "accounts": accounts}),
        )
    };
    let engine = engine();
    write(
        &engine,
        vec![asset("web", json!([{"username": "root", "id": id}]))],
    )
    .unwrap();
    let refusals = [
        // Another asset's account, asking for it.
        vec![asset("db", json!([{"username": "root", "id": id}]))],
        // An entity, asking for it.
        vec![create(
            EntityKind::User,
            json!({"username": "alice", "id": id}),
        )],
        // Another account of the same asset, while `root` keeps it.
        vec![Op::Replace {
            target: "web".to_owned(),
            spec: Spec::from_json(
                EntityKind::Asset,
                json!({"name": "web", "accounts": [{"username": "admin", "id": id}, {"username": "root"}]}),
            )
            .unwrap(),
        }],
    ];
    let before = engine.snapshot().canonical();
    for ops in refusals {
        let error = write(&engine, ops).expect_err("an account's id is taken");
        assert!(
            matches!(error, ValidationError::DuplicateId { id: taken, .. } if taken == id),
            "{error:?}"
        );
        assert_eq!(engine.snapshot().canonical(), before);
    }
    // The asset may hand the id to another of its accounts.
    write(
        &engine,
        vec![Op::Replace {
            target: "web".to_owned(),
            spec: Spec::from_json(
                EntityKind::Asset,
                json!({"name": "web", "accounts": [{"username": "admin", "id": id}]}),
            )
            .unwrap(),
        }],
    )
    .unwrap();
    engine.snapshot().check_invariants().unwrap();
}
