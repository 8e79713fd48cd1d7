//! `--update` upserts by name (or ID); `--dry-run` writes nothing.

use portcullis_engine::Actor;
use portcullis_engine::{EntityKind, Error, MemberSpec, Mfa, Op, Source, Spec, ValidationError};
use portcullis_tabular::{ChangeKind, Format, ImportOptions, Kind, ParseOptions};
use serde_json::json;

use crate::support::*;

const USERS: &str = "\
Username,Name,Email,Active
alice,Alice,alice@example.com,yes
bob,Bob,,yes
carol,Carol,,no
";

#[test]
fn update_upserts_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    import_csv(&engine, dir.path(), Kind::Users, USERS, false).unwrap();
    let changed = "\
Username,Name,Email,Active
ALICE,Alice,alice@example.org,yes
bob,Bob,,yes
carol,Carol,,yes
dave,Dave,,yes
";
    // Without update, a row that would change an existing user is refused.
    let before = state(&engine);
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Users, changed, false));
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("Username".to_owned())),
            (Some(4), Some("Username".to_owned()))
        ]
    );
    assert!(
        problems[0]
            .message
            .contains("user `ALICE` already exists with other values (Username, Email)"),
        "{}",
        problems[0]
    );
    assert_unchanged(&engine, &before);

    // Activating carol lowers protection: allowed explicitly here (and tested apart).
    let allowed = ImportOptions {
        update: true,
        allow_security_changes: true,
        ..ImportOptions::default()
    };
    let report = import_csv_with(&engine, Kind::Users, changed, allowed).unwrap();
    assert_eq!(
        (
            report.counts.created,
            report.counts.updated,
            report.counts.unchanged
        ),
        (1, 2, 1)
    );
    assert_eq!(report.changes[0].kind, ChangeKind::Update);
    assert_eq!(report.changes[0].columns, ["Username", "Email"]);
    assert_eq!(report.changes[1].kind, ChangeKind::Unchanged);
    assert_eq!(report.changes[2].columns, ["Active"]);
    assert_eq!(report.changes[3].kind, ChangeKind::Create);
    let snapshot = engine.snapshot();
    let alice = snapshot.entity_json(EntityKind::User, "alice").unwrap();
    assert_eq!(alice["email"], "alice@example.org");
    assert_eq!(alice["username"], "ALICE");
    assert_eq!(snapshot.counts().users, 4);
}

/// Issue 23: an `--update` import of a sheet whose MFA column said `disabled` switched
/// a user's second factor off, listed only among the changed columns.
#[test]
fn an_update_that_lowers_protection_is_refused_unless_allowed_and_listed_apart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    write(
        &engine,
        EntityKind::User,
        vec![
            json!({"username": "alice", "mfa": "enabled"}),
            json!({"username": "bob", "mfa": "forced"}),
            json!({"username": "carol", "active": false}),
            json!({"username": "dave", "expires_at": "2020-01-01T00:00:00Z"}),
            json!({"username": "erin", "system_roles": ["system-auditor"]}),
            json!({"username": "frank", "mfa": "enabled"}),
        ],
    );
    let lowering = "\
Username,MFA,Active,Expires at,System roles,Name
alice,disabled,,,,
bob,enabled,,,,
carol,,yes,,,
dave,,,2040-01-01T00:00:00Z,,
erin,,,,\"system-auditor, system-admin\",
frank,forced,,,,Frank
";
    let before = state(&engine);
    let options = |dry_run, allow_security_changes| ImportOptions {
        update: true,
        dry_run,
        allow_security_changes,
        ..ImportOptions::default()
    };
    let problems = refusal(import_csv_with(
        &engine,
        Kind::Users,
        lowering,
        options(false, false),
    ));
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("MFA".to_owned())),
            (Some(3), Some("MFA".to_owned())),
            (Some(4), Some("Active".to_owned())),
            (Some(5), Some("Expires at".to_owned())),
            (Some(6), Some("System roles".to_owned())),
        ],
        "{problems:?}"
    );
    assert!(
        problems[0]
            .message
            .contains("lowers the protection of user `alice`: MFA `enabled` → `disabled`"),
        "{}",
        problems[0]
    );
    assert_unchanged(&engine, &before);

    // The dry run lists them apart from the other changes, and writes nothing.
    let report = import_csv_with(&engine, Kind::Users, lowering, options(true, false)).unwrap();
    let listed: Vec<(usize, &str, &str)> = report
        .security_changes
        .iter()
        .map(|change| (change.line, change.name.as_str(), change.column))
        .collect();
    assert_eq!(
        listed,
        [
            (2, "alice", "MFA"),
            (3, "bob", "MFA"),
            (4, "carol", "Active"),
            (5, "dave", "Expires at"),
            (6, "erin", "System roles"),
        ]
    );
    assert_eq!(
        report.counts.updated, 6,
        "frank's row is a change, not a lowering"
    );
    assert_unchanged(&engine, &before);

    // Allowed explicitly, it is written.
    import_csv_with(&engine, Kind::Users, lowering, options(false, true)).unwrap();
    let snapshot = engine.snapshot();
    let alice = snapshot.entity_json(EntityKind::User, "alice").unwrap();
    assert_eq!(alice["mfa"], "disabled");
    let erin = snapshot.entity_json(EntityKind::User, "erin").unwrap();
    assert_eq!(
        erin["system_roles"],
        json!(["system-auditor", "system-admin"])
    );
}

/// The rule holds at the write too: a user who enrolled a second factor after the
/// file was checked (and before it was written) is not switched off.
#[test]
fn a_lowering_that_appears_between_the_plan_and_the_write_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    write(
        &engine,
        EntityKind::User,
        vec![json!({"username": "alice"})],
    );
    let rows = portcullis_tabular::parse(
        Kind::Users,
        Format::Csv,
        b"Username,MFA,Phone\nalice,disabled,+1 555 0100\n",
        &ParseOptions::default(),
    )
    .unwrap();
    let plan =
        portcullis_tabular::plan(&engine, &Actor::system("importer"), Kind::Users, rows, true)
            .unwrap();
    assert!(plan.security_changes().is_empty(), "alice has no MFA yet");
    // Meanwhile, alice enrols.
    engine
        .write(
            &Actor::system("alice"),
            vec![Op::Modify {
                kind: EntityKind::User,
                target: "alice".to_owned(),
                edit: Box::new(|spec| {
                    if let Spec::User(user) = spec {
                        user.mfa = Mfa::Enabled;
                    }
                    Ok(())
                }),
            }],
        )
        .unwrap();
    let refused = engine.write(&Actor::system("importer"), plan.into_ops());
    assert!(
        matches!(
            refused,
            Err(Error::Validation(ValidationError::Invalid {
                field: "mfa",
                ..
            }))
        ),
        "{refused:?}"
    );
    let alice = engine
        .snapshot()
        .entity_json(EntityKind::User, "alice")
        .unwrap();
    assert_eq!(alice["mfa"], "enabled");
    assert_eq!(alice["phone"], serde_json::Value::Null, "nothing written");
}

#[test]
fn update_keeps_the_columns_a_file_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    import_csv(&engine, dir.path(), Kind::Users, USERS, false).unwrap();
    let report = import_csv(
        &engine,
        dir.path(),
        Kind::Users,
        "Username,Active\nalice,no\n",
        true,
    )
    .unwrap();
    assert_eq!(report.changes[0].columns, ["Active"]);
    let alice = engine
        .snapshot()
        .entity_json(EntityKind::User, "alice")
        .unwrap();
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["name"], "Alice");
    assert_eq!(alice["active"], false);
}

#[test]
fn an_id_column_renames() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    import_csv(&engine, dir.path(), Kind::Users, USERS, false).unwrap();
    let bob = engine.snapshot().resolve(EntityKind::User, "bob").unwrap();
    let text = format!("ID,Username\n{bob},robert\n");
    let report = import_csv(&engine, dir.path(), Kind::Users, &text, true).unwrap();
    assert_eq!(report.changes[0].columns, ["Username"]);
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.resolve(EntityKind::User, "robert").unwrap(), bob);
    assert!(snapshot.resolve(EntityKind::User, "bob").is_err());
    // Taking another user's name is refused.
    let text = format!("ID,Username\n{bob},alice\n");
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Users, &text, true));
    assert_eq!(problems[0].message, "user `alice` already exists");
}

#[test]
fn update_keeps_who_wrote_a_membership() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    write(
        &engine,
        EntityKind::User,
        vec![json!({"username": "alice"}), json!({"username": "bob"})],
    );
    write(
        &engine,
        EntityKind::Group,
        vec![json!({"name": "ops", "members": [{"user": "alice", "source": "scim"}]})],
    );
    import_csv(
        &engine,
        dir.path(),
        Kind::Groups,
        "Name,Members\nops,\"alice, bob\"\n",
        true,
    )
    .unwrap();
    let Spec::Group(ops) = engine.snapshot().spec(EntityKind::Group, "ops").unwrap() else {
        panic!()
    };
    let source = |user: &str| {
        ops.members.iter().find_map(|m| match m {
            MemberSpec::Detailed {
                user: u, source, ..
            } if u == user => source.clone(),
            _ => None,
        })
    };
    assert_eq!(source("alice"), Some(Source::Scim));
    assert_eq!(source("bob"), Some(Source::Local));
}

#[test]
fn update_of_assets_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    generate(&engine, 11);
    let mut out = Vec::new();
    portcullis_tabular::export(&engine.snapshot(), Kind::Assets, Format::Csv, &mut out).unwrap();
    let text = String::from_utf8(out)
        .unwrap()
        .replacen("10.0.0.3", "10.9.9.9", 1);
    let report = import_csv(&engine, dir.path(), Kind::Assets, &text, true).unwrap();
    assert_eq!(
        (report.counts.updated, report.counts.unchanged),
        (1, N_ASSETS - 1)
    );
    assert_eq!(report.changes[3].columns, ["Address"]);
    let asset = engine
        .snapshot()
        .entity_json(EntityKind::Asset, "a3")
        .unwrap();
    assert_eq!(asset["address"], "10.9.9.9");

    let text = "Name,Actions,Expires at\nr2,connect,\n";
    let report = import_csv(&engine, dir.path(), Kind::Rules, text, true).unwrap();
    assert_eq!(report.counts.updated + report.counts.unchanged, 1);
    let rule = engine
        .snapshot()
        .entity_json(EntityKind::Rule, "r2")
        .unwrap();
    assert_eq!(rule["actions"], json!(["connect"]));
    assert_eq!(rule["expires_at"], serde_json::Value::Null);
}

#[test]
fn dry_run_writes_nothing_and_says_what_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    import_csv(&engine, dir.path(), Kind::Users, USERS, false).unwrap();
    let before = state(&engine);
    let text = "Username,Email\nalice,alice@example.net\nerin,\n";
    let report = portcullis_tabular::import(
        &engine,
        &Actor::system("importer"),
        Kind::Users,
        Format::Csv,
        text.as_bytes(),
        ImportOptions {
            update: true,
            dry_run: true,
            ..ImportOptions::default()
        },
    )
    .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.revision, None);
    // What an HTTP answer would carry.
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "kind": "users",
            "dry_run": true,
            "revision": null,
            "counts": {"created": 1, "updated": 1, "unchanged": 0},
            "changes": [
                {"line": 2, "name": "alice", "kind": "update", "columns": ["Email"]},
                {"line": 3, "name": "erin", "kind": "create", "columns": []},
            ],
            "security_changes": [],
        })
    );
    assert_eq!((report.counts.created, report.counts.updated), (1, 1));
    assert_unchanged(&engine, &before);

    // The same, through `parse` and `plan`, with the summary a CLI prints.
    let rows = portcullis_tabular::parse(
        Kind::Users,
        Format::Csv,
        text.as_bytes(),
        &ParseOptions::default(),
    )
    .unwrap();
    let plan =
        portcullis_tabular::plan(&engine, &Actor::system("importer"), Kind::Users, rows, true)
            .unwrap();
    assert_eq!(
        plan.to_string(),
        "update user `alice` (row 2): Email\ncreate user `erin` (row 3)\n1 to create, 1 to update, 0 unchanged"
    );
    assert_eq!(plan.revision(), before.0);
    assert_unchanged(&engine, &before);
}
