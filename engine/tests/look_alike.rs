//! Look-alike names: a new unique name whose confusable fold meets the name of another
//! entity of the same kind and scope is refused; lookups never cross from one to the
//! other; a store that already holds look-alike pairs still opens.

use portcullis_engine::*;
use proptest::prelude::*;
use redb::ReadableTable;
use serde_json::json;

use crate::writes::{create, engine, refused, user, write};

/// `аlice` with a Cyrillic `а`.
const CYRILLIC_ALICE: &str = "\u{430}lice";

fn rename(kind: EntityKind, target: &str, spec: serde_json::Value) -> Op {
    Op::Replace {
        target: target.to_owned(),
        spec: Spec::from_json(kind, spec).unwrap(),
    }
}

fn rename_user(target: &str, username: &str) -> Op {
    rename(EntityKind::User, target, json!({ "username": username }))
}

fn delete_user(target: &str) -> Op {
    Op::Delete {
        kind: EntityKind::User,
        target: target.to_owned(),
    }
}

fn is_look_alike(error: &ValidationError) -> bool {
    matches!(error, ValidationError::LookAlike { .. })
}

#[test]
fn a_look_alike_username_is_refused_naming_the_existing_user() {
    refused(
        vec![user("alice")],
        vec![user(CYRILLIC_ALICE)],
        "username `\u{430}lice` looks like `alice`, the username of an existing user",
    );
}

#[test]
fn look_alikes_are_refused_for_every_unique_name() {
    let node = |name: &str, parent: &str| {
        create(EntityKind::Node, json!({ "name": name, "parent": parent }))
    };
    let named = |kind: EntityKind, name: &str| create(kind, json!({ "name": name }));
    let with_email = |username: &str, email: &str| {
        create(
            EntityKind::User,
            json!({ "username": username, "email": email }),
        )
    };
    let cases: Vec<(Vec<Op>, Op, &str)> = vec![
        (
            vec![user("alice")],
            user("ａｌｉｃｅ"),
            "username `ａｌｉｃｅ` looks like `alice`",
        ),
        (
            vec![user("alice")],
            user("ＡＬＩＣＥ"),
            "username `ＡＬＩＣＥ` looks like `alice`",
        ),
        (
            vec![user("Admin")],
            user("ａｄｍｉｎ"),
            "username `ａｄｍｉｎ` looks like `Admin`",
        ),
        (
            vec![user("alice")],
            user("al\u{200B}ice"),
            "looks like `alice`",
        ),
        // An ASCII name beside a non-ASCII one, and two non-ASCII ones.
        (
            vec![user(CYRILLIC_ALICE)],
            user("alice"),
            "username `alice` looks like `\u{430}lice`",
        ),
        (
            vec![user(CYRILLIC_ALICE)],
            user("ａｌｉｃｅ"),
            "username `ａｌｉｃｅ` looks like `\u{430}lice`",
        ),
        (
            vec![with_email("alice", "alice@example.com")],
            with_email("bob", "\u{430}lice@example.com"),
            "email `\u{430}lice@example.com` looks like `alice@example.com`, the email of an existing user",
        ),
        (
            vec![named(EntityKind::Group, "ops")],
            named(EntityKind::Group, "\u{43E}ps"),
            "name `\u{43E}ps` looks like `ops`, the name of an existing group",
        ),
        (
            vec![named(EntityKind::Asset, "web-01")],
            named(EntityKind::Asset, "w\u{435}b-01"),
            "name `w\u{435}b-01` looks like `web-01`, the name of an existing asset",
        ),
        (
            vec![named(EntityKind::Rule, "ops-prod")],
            named(EntityKind::Rule, "ops-pr\u{43E}d"),
            "name `ops-pr\u{43E}d` looks like `ops-prod`, the name of an existing rule",
        ),
        (
            vec![],
            named(EntityKind::Role, "system-\u{430}dmin"),
            "name `system-\u{430}dmin` looks like `system-admin`, the name of an existing role",
        ),
        (
            vec![node("Prod", "/Default")],
            node("Pr\u{43E}d", "/Default"),
            "path `/Default/Pr\u{43E}d` looks like `/Default/Prod`, the path of an existing node",
        ),
    ];
    for (setup, op, message) in cases {
        refused(setup, vec![op], message);
    }
}

#[test]
fn a_look_alike_token_name_is_refused() {
    let engine = engine();
    let token = |name: &str| TokenSpec {
        id: None,
        name: name.into(),
        user: None,
        roles: vec!["system-auditor".into()],
        expires_at: None,
        description: String::new(),
    };
    engine
        .create_token(&Actor::system("test"), token("ci-token"))
        .unwrap();
    let revision = engine.snapshot().revision();
    let error = engine
        .create_token(&Actor::system("test"), token("ci-t\u{43E}ken"))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Validation(e) if is_look_alike(e)),
        "{error}"
    );
    assert_eq!(engine.snapshot().revision(), revision);
}

#[test]
fn different_ascii_names_never_collide() {
    let engine = engine();
    write(
        &engine,
        vec![
            user("rn"),
            user("m"),
            user("0"),
            user("O"),
            user("l"),
            user("I"),
            create(EntityKind::Asset, json!({ "name": "web-01" })),
            create(EntityKind::Asset, json!({ "name": "web-O1" })),
        ],
    )
    .expect("ASCII names that differ beyond case are all taken");
    assert_eq!(engine.snapshot().counts().users, 6);
}

#[test]
fn renames_move_the_fold_and_deletes_remove_it() {
    let engine = engine();
    let ok = |ops: Vec<Op>| {
        write(&engine, ops).expect("accepted");
        engine.snapshot().check_invariants().unwrap();
    };
    let look_alike = |ops: Vec<Op>| {
        let revision = engine.snapshot().revision();
        let error = write(&engine, ops).expect_err("refused");
        assert!(is_look_alike(&error), "{error}");
        assert_eq!(engine.snapshot().revision(), revision);
    };
    ok(vec![user(CYRILLIC_ALICE), user("bob")]);
    look_alike(vec![rename_user("bob", "ａｌｉｃｅ")]);
    look_alike(vec![user("alice")]);
    // A user may take another look-alike of its own name.
    ok(vec![rename_user(CYRILLIC_ALICE, "ＡＬＩＣＥ")]);
    look_alike(vec![user(CYRILLIC_ALICE)]);
    // Renamed away, the name it imitated is free.
    ok(vec![rename_user("ＡＬＩＣＥ", "carol")]);
    ok(vec![user("alice")]);
    look_alike(vec![user("ａｌｉｃｅ")]);
    // Deleted, its look-alikes are free.
    ok(vec![delete_user("alice")]);
    ok(vec![user("ａｌｉｃｅ")]);
    // A rename within one write sees the earlier ops of that write.
    ok(vec![
        rename_user("ａｌｉｃｅ", "dave"),
        user(CYRILLIC_ALICE),
    ]);
}

#[test]
fn node_names_look_alike_among_siblings_only() {
    let engine = engine();
    let node = |name: &str, parent: &str| {
        create(EntityKind::Node, json!({ "name": name, "parent": parent }))
    };
    write(
        &engine,
        vec![
            node("Prod", "/Default"),
            node("Other", "/Default"),
            node("Pr\u{43E}d", "/Default/Other"),
        ],
    )
    .expect("look-alikes under different parents are fine");
    let moved = rename(
        EntityKind::Node,
        "/Default/Other/Pr\u{43E}d",
        json!({ "name": "Pr\u{43E}d", "parent": "/Default" }),
    );
    let error = write(&engine, vec![moved]).expect_err("moving beside its twin");
    assert_eq!(
        error.to_string(),
        "path `/Default/Pr\u{43E}d` looks like `/Default/Prod`, the path of an existing node"
    );
    engine.snapshot().check_invariants().unwrap();
}

#[test]
fn a_look_alike_never_resolves_to_the_entity_it_imitates() {
    let engine = engine();
    write(&engine, vec![user("alice")]).unwrap();
    let snapshot = engine.snapshot();
    assert!(snapshot.resolve(EntityKind::User, "alice").is_ok());
    assert!(snapshot.resolve(EntityKind::User, CYRILLIC_ALICE).is_err());
    assert!(snapshot.user_idx(CYRILLIC_ALICE).is_none());
    refused(
        vec![user("alice")],
        vec![create(
            EntityKind::Rule,
            json!({ "name": "r", "users": [CYRILLIC_ALICE] }),
        )],
        "unknown user `\u{430}lice`",
    );
}

/// A store written before look-alikes were refused may hold a pair. It opens, both
/// entities resolve by their own names only, and both stay editable; only a new name
/// is judged.
#[test]
fn a_store_holding_look_alike_pairs_opens_and_both_stay_editable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let bob = {
        let engine = Engine::open(&path).unwrap();
        write(&engine, vec![user("alice"), user("bob")]).unwrap();
        engine.snapshot().resolve(EntityKind::User, "bob").unwrap()
    };
    {
        // Rename bob to `аlice` behind the engine's back, in its own table.
        let users = redb::TableDefinition::<u128, &[u8]>::new("users");
        let database = redb::Database::open(&path).unwrap();
        let txn = database.begin_write().unwrap();
        {
            let mut table = txn.open_table(users).unwrap();
            let key = u128::from_be_bytes(*bob.as_bytes());
            let mut record: User =
                postcard::from_bytes(table.get(key).unwrap().unwrap().value()).unwrap();
            record.username = CYRILLIC_ALICE.to_owned();
            let bytes = postcard::to_allocvec(&record).unwrap();
            table.insert(key, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    // The store stands for one written by an older build, which kept no snapshot
    // image; the image the first engine left would not know of the edit.
    std::fs::remove_file(dir.path().join("store.redb.image")).unwrap();
    let engine = Engine::open(&path).expect("a look-alike pair does not stop the store opening");
    let snapshot = engine.snapshot();
    snapshot.check_invariants().unwrap();
    let alice = snapshot.resolve(EntityKind::User, "alice").unwrap();
    assert_eq!(
        snapshot.resolve(EntityKind::User, CYRILLIC_ALICE).unwrap(),
        bob
    );
    assert_ne!(alice, bob);
    let set_email = |target: &str, email: &'static str| Op::Modify {
        kind: EntityKind::User,
        target: target.to_owned(),
        edit: Box::new(move |spec| {
            if let Spec::User(user) = spec {
                user.email = Some(email.to_owned());
            }
            Ok(())
        }),
    };
    write(&engine, vec![set_email(CYRILLIC_ALICE, "bob@example.com")])
        .expect("the look-alike keeps its name through an update");
    write(&engine, vec![set_email("alice", "alice@example.com")])
        .expect("so does the name it imitates");
    let error = write(&engine, vec![user("ａｌｉｃｅ")]).expect_err("a third one is new");
    assert!(is_look_alike(&error), "{error}");
    write(&engine, vec![rename_user(CYRILLIC_ALICE, "bob")]).expect("renamed apart");
    engine.snapshot().check_invariants().unwrap();
}

/// Names in look-alike classes, drawn by the test below. Within a class every two
/// names look alike (case variants included); across classes none do.
const POOL: &[(&str, usize)] = &[
    ("alice", 0),
    ("Alice", 0),
    ("\u{430}lice", 0),
    ("ａｌｉｃｅ", 0),
    ("ＡＬＩＣＥ", 0),
    ("al\u{131}ce", 0),
    ("bob", 1),
    ("BOB", 1),
    ("\u{412}ob", 1),
    ("ｂｏｂ", 1),
    ("web-01", 2),
    ("w\u{435}b-01", 2),
    ("web-\u{1D7CE}1", 2),
    ("web-O1", 3),
    ("w\u{435}b-O1", 3),
    ("rn", 4),
    ("m", 5),
    ("\u{FF4D}", 5),
    ("admin", 6),
    ("ａｄｍｉｎ", 6),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random creates, renames and deletes over the pool: a write is accepted exactly
    /// when no other live user's name is in the new name's class, and the fold maps
    /// stay exact (`check_invariants`).
    #[test]
    fn writes_follow_the_look_alike_classes(
        steps in prop::collection::vec((0..3u8, 0..POOL.len(), 0..POOL.len()), 1..30)
    ) {
        let engine = engine();
        // Pool indexes of the names live users hold.
        let mut live: Vec<usize> = Vec::new();
        let taken = |live: &[usize], wanted: usize, except: Option<usize>| {
            live.iter().any(|&held| Some(held) != except && POOL[held].1 == POOL[wanted].1)
        };
        for (what, a, b) in steps {
            match what {
                0 => {
                    let result = write(&engine, vec![user(POOL[a].0)]);
                    prop_assert_eq!(result.is_ok(), !taken(&live, a, None), "create {:?} beside {:?}", POOL[a].0, live);
                    if result.is_ok() {
                        live.push(a);
                    }
                }
                1 if live.contains(&a) => {
                    let result = write(&engine, vec![rename_user(POOL[a].0, POOL[b].0)]);
                    prop_assert_eq!(result.is_ok(), !taken(&live, b, Some(a)), "rename {:?} to {:?} beside {:?}", POOL[a].0, POOL[b].0, live);
                    if result.is_ok() {
                        live.retain(|&held| held != a);
                        live.push(b);
                    }
                }
                _ if live.contains(&a) => {
                    write(&engine, vec![delete_user(POOL[a].0)]).unwrap();
                    live.retain(|&held| held != a);
                }
                _ => continue,
            }
            let snapshot = engine.snapshot();
            prop_assert_eq!(snapshot.counts().users as usize, live.len());
            for &held in &live {
                prop_assert!(snapshot.resolve(EntityKind::User, POOL[held].0).is_ok());
            }
            if let Err(message) = snapshot.check_invariants() {
                prop_assert!(false, "{}", message);
            }
        }
    }
}
