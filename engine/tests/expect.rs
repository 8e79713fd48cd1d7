//! `Op::Expect`: a write's preconditions on the versions of entities, which make a
//! compare-and-swap one write.

use std::sync::Arc;

use portcullis_engine::*;
use serde_json::json;

use crate::writes::{create, engine, user, write};

fn expect(kind: EntityKind, target: &str, version: Option<Time>) -> Op {
    Op::Expect {
        kind,
        target: target.to_owned(),
        version,
    }
}

fn version(engine: &Engine, kind: EntityKind, target: &str) -> Time {
    engine.snapshot().version(kind, target).unwrap()
}

fn rename(user: &str, name: &str) -> Op {
    let name = name.to_owned();
    crate::support::edit_user(user, move |spec| spec.name = name)
}

/// Checks that `ops` are refused with the mismatch `expected`, and change nothing.
fn refused_with(engine: &Engine, ops: Vec<Op>, expected: ValidationError) {
    let before = engine.snapshot().canonical();
    let revision = engine.snapshot().revision();
    assert_eq!(write(engine, ops).expect_err("refused"), expected);
    assert_eq!(engine.snapshot().revision(), revision);
    assert_eq!(
        engine.snapshot().canonical(),
        before,
        "nothing half-applied"
    );
}

#[test]
fn the_version_is_updated_at_and_changes_with_every_edit() {
    let engine = engine();
    write(&engine, vec![user("ada")]).unwrap();
    let first = version(&engine, EntityKind::User, "ada");
    assert_eq!(engine.snapshot().user("ada").unwrap().updated_at, first);
    let entity = engine
        .snapshot()
        .entity_json(EntityKind::User, "ada")
        .unwrap();
    assert_eq!(entity["updated_at"], json!(first.to_string()));
    // Back-to-back writes, however fast, give the user a new version each time.
    let mut seen = vec![first];
    for n in 0..20 {
        write(&engine, vec![rename("ada", &format!("Ada {n}"))]).unwrap();
        let now = version(&engine, EntityKind::User, "ada");
        assert!(now > *seen.last().unwrap(), "{now} after {seen:?}");
        seen.push(now);
    }
    // A sign-in is not an edit.
    let before = version(&engine, EntityKind::User, "ada");
    write(
        &engine,
        vec![Op::RecordLogin {
            user: "ada".to_owned(),
            at: Time::now(),
        }],
    )
    .unwrap();
    assert_eq!(version(&engine, EntityKind::User, "ada"), before);
    assert!(matches!(
        engine.snapshot().version(EntityKind::User, "nobody"),
        Err(NotFound { .. })
    ));
}

#[test]
fn a_holding_expectation_lets_the_write_apply() {
    let engine = engine();
    let created = write(&engine, vec![user("ada")]).unwrap();
    let id = created.ids[0];
    let at = version(&engine, EntityKind::User, "ada");
    // By name or by id; the expectation's id is the entity's.
    for target in ["ada".to_owned(), id.to_string()] {
        let at = version(&engine, EntityKind::User, &target);
        let outcome = write(
            &engine,
            vec![
                expect(EntityKind::User, &target, Some(at)),
                rename("ada", &format!("Ada via {target}")),
            ],
        )
        .unwrap();
        assert_eq!(outcome.ids, [id, id]);
    }
    assert!(version(&engine, EntityKind::User, "ada") > at);
    assert_eq!(
        engine.snapshot().user("ada").unwrap().name,
        format!("Ada via {id}")
    );
}

#[test]
fn a_stale_expectation_refuses_the_whole_write() {
    let engine = engine();
    write(&engine, vec![user("ada"), user("bob")]).unwrap();
    let stale = version(&engine, EntityKind::User, "ada");
    write(&engine, vec![rename("ada", "Ada")]).unwrap();
    let found = version(&engine, EntityKind::User, "ada");
    assert_ne!(stale, found);
    // Mixed with other operations, before and after it: none applies.
    refused_with(
        &engine,
        vec![
            rename("bob", "Bob"),
            expect(EntityKind::User, "ada", Some(stale)),
            rename("ada", "Lost update"),
            user("carol"),
        ],
        ValidationError::VersionMismatch {
            kind: EntityKind::User,
            target: "ada".to_owned(),
            expected: Some(stale),
            found: Some(found),
        },
    );
    assert_eq!(engine.snapshot().user("ada").unwrap().name, "Ada");
    assert_eq!(engine.snapshot().user("bob").unwrap().name, "bob");
    assert!(engine.snapshot().user("carol").is_none());
    // An expectation of an entity that is gone fails too.
    write(
        &engine,
        vec![Op::Delete {
            kind: EntityKind::User,
            target: "ada".to_owned(),
        }],
    )
    .unwrap();
    refused_with(
        &engine,
        vec![expect(EntityKind::User, "ada", Some(found)), user("carol")],
        ValidationError::VersionMismatch {
            kind: EntityKind::User,
            target: "ada".to_owned(),
            expected: Some(found),
            found: None,
        },
    );
}

#[test]
fn absence_can_be_expected() {
    let engine = engine();
    // Create-if-not-exists: the group only if no group of that name exists.
    let create_staff = || {
        vec![
            expect(EntityKind::Group, "staff", None),
            create(EntityKind::Group, json!({"name": "staff"})),
        ]
    };
    let outcome = write(&engine, create_staff()).unwrap();
    assert_eq!(outcome.ids[0], Id::NIL);
    let found = version(&engine, EntityKind::Group, "staff");
    refused_with(
        &engine,
        create_staff(),
        ValidationError::VersionMismatch {
            kind: EntityKind::Group,
            target: "staff".to_owned(),
            expected: None,
            found: Some(found),
        },
    );
    let message = write(&engine, create_staff()).unwrap_err().to_string();
    assert!(
        message.contains("group `staff` is at version") && message.contains("not absent"),
        "{message}"
    );
}

#[test]
fn every_kind_has_a_version() {
    let engine = engine();
    write(
        &engine,
        vec![
            user("ada"),
            create(EntityKind::Group, json!({"name": "g", "members": ["ada"]})),
            create(
                EntityKind::Node,
                json!({"name": "Prod", "parent": "/Default"}),
            ),
            create(
                EntityKind::Asset,
                json!({"name": "db", "nodes": ["/Default/Prod"]}),
            ),
            create(EntityKind::Rule, json!({"name": "r", "users": ["ada"]})),
            create(EntityKind::Role, json!({"name": "viewer"})),
        ],
    )
    .unwrap();
    let token = TokenSpec {
        id: None,
        name: "t".to_owned(),
        user: None,
        roles: vec!["viewer".to_owned()],
        expires_at: None,
        description: String::new(),
    };
    engine.create_token(&Actor::system("test"), token).unwrap();
    for (kind, target) in [
        (EntityKind::User, "ada"),
        (EntityKind::Group, "g"),
        (EntityKind::Node, "/Default/Prod"),
        (EntityKind::Asset, "db"),
        (EntityKind::Rule, "r"),
        (EntityKind::Role, "viewer"),
        (EntityKind::Token, "t"),
    ] {
        let at = version(&engine, kind, target);
        let entity = engine.snapshot().entity_json(kind, target).unwrap();
        assert_eq!(entity["updated_at"], json!(at.to_string()), "{kind}");
        write(&engine, vec![expect(kind, target, Some(at))]).unwrap();
        let error = write(&engine, vec![expect(kind, target, None)]).unwrap_err();
        assert!(
            matches!(error, ValidationError::VersionMismatch { .. }),
            "{kind}: {error}"
        );
    }
}

#[test]
fn cascades_and_memberships_change_the_version() {
    let engine = engine();
    write(
        &engine,
        vec![
            user("ada"),
            user("bob"),
            create(EntityKind::Group, json!({"name": "g", "members": ["ada"]})),
        ],
    )
    .unwrap();
    let mut last = version(&engine, EntityKind::Group, "g");
    let ops: Vec<Box<dyn Fn() -> Op>> = vec![
        Box::new(|| Op::AddMember {
            group: "g".to_owned(),
            member: MemberSpec::Name("bob".to_owned()),
        }),
        Box::new(|| Op::RemoveMember {
            group: "g".to_owned(),
            user: "bob".to_owned(),
        }),
        // Deleting a member removes it from the group.
        Box::new(|| Op::Delete {
            kind: EntityKind::User,
            target: "ada".to_owned(),
        }),
    ];
    for op in ops {
        write(&engine, vec![op()]).unwrap();
        let now = version(&engine, EntityKind::Group, "g");
        assert!(now > last);
        last = now;
    }
}

#[test]
fn validate_reports_a_mismatch_at_its_operation() {
    let engine = engine();
    write(&engine, vec![user("ada")]).unwrap();
    let at = version(&engine, EntityKind::User, "ada");
    let stale = at.add_micros(-1);
    let ops = || {
        vec![
            expect(EntityKind::User, "ada", Some(at)),
            user("bob"),
            expect(EntityKind::User, "ada", Some(stale)),
            expect(EntityKind::User, "bob", Some(stale)),
            expect(EntityKind::User, "carol", None),
            expect(EntityKind::User, "ada", None),
        ]
    };
    let problems = engine.validate(&Actor::system("test"), ops());
    let at_ops: Vec<Option<usize>> = problems.iter().map(|p| p.op).collect();
    assert_eq!(at_ops, [Some(2), Some(3), Some(5)], "{problems:?}");
    assert_eq!(
        problems[0].error,
        ValidationError::VersionMismatch {
            kind: EntityKind::User,
            target: "ada".to_owned(),
            expected: Some(stale),
            found: Some(at),
        }
    );
    // bob exists only in the dry run, at the dry run's time.
    assert!(matches!(
        &problems[1].error,
        ValidationError::VersionMismatch { found: Some(_), .. }
    ));
    assert_eq!(
        problems[2].error,
        ValidationError::VersionMismatch {
            kind: EntityKind::User,
            target: "ada".to_owned(),
            expected: None,
            found: Some(at),
        }
    );
    assert!(
        engine.snapshot().user("bob").is_none(),
        "a dry run writes nothing"
    );
    // And the write is refused with the first of them.
    assert_eq!(write(&engine, ops()).unwrap_err(), problems[0].error);
}

/// Compare-and-swap from many threads: each reads the counter, writes it plus one
/// behind an expectation, and retries on a mismatch. No increment is lost.
#[test]
fn compare_and_swap_loses_no_update() {
    const THREADS: usize = 4;
    const EACH: usize = 10;
    let engine = Arc::new(engine());
    write(
        &engine,
        vec![create(
            EntityKind::User,
            json!({"username": "counter", "description": "0"}),
        )],
    )
    .unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut mismatches = 0;
                for _ in 0..EACH {
                    loop {
                        let snapshot = engine.snapshot();
                        let at = snapshot.version(EntityKind::User, "counter").unwrap();
                        let Spec::User(mut spec) =
                            snapshot.spec(EntityKind::User, "counter").unwrap()
                        else {
                            unreachable!()
                        };
                        let count: usize = spec.description.parse().unwrap();
                        spec.description = (count + 1).to_string();
                        let ops = vec![
                            expect(EntityKind::User, "counter", Some(at)),
                            Op::Replace {
                                target: "counter".to_owned(),
                                spec: Spec::User(spec),
                            },
                        ];
                        match write(&engine, ops) {
                            Ok(_) => break,
                            Err(ValidationError::VersionMismatch { .. }) => mismatches += 1,
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
                mismatches
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let counter = engine.snapshot().user("counter").unwrap();
    assert_eq!(counter.description, (THREADS * EACH).to_string());
}
