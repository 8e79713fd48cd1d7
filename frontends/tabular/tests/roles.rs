//! The roles sheet: custom roles round-trip, the built-in ones stay out of exports and
//! cannot be changed by an import, and a role that is held cannot be renamed.

use portcullis_engine::{EntityKind, Spec};
use portcullis_tabular::{ChangeKind, Format, Kind};
use serde_json::json;

use crate::support::*;

fn role_spec(snapshot: &portcullis_engine::Snapshot, name: &str) -> portcullis_engine::RoleSpec {
    match snapshot.spec(EntityKind::Role, name) {
        Ok(Spec::Role(spec)) => spec,
        other => panic!("role `{name}`: {other:?}"),
    }
}

#[test]
fn a_custom_role_round_trips_and_the_builtin_roles_are_left_out() {
    for format in [Format::Csv, Format::Xlsx] {
        let dir = tempfile::tempdir().unwrap();
        let source = store(dir.path(), "source");
        generate(&source, 3);
        let path = file(dir.path(), Kind::Roles, format);
        export_to(&source.snapshot(), Kind::Roles, format, &path);

        let target = store(dir.path(), "target");
        let report = import_from(&target, Kind::Roles, format, &path, false).unwrap();
        assert_eq!(report.counts.created, 2, "{format}: only the custom roles");
        assert_eq!(report.counts.unchanged, 0);

        let (before, after) = (source.snapshot(), target.snapshot());
        for name in [CUSTOM_ROLE, "-unused, odd"] {
            assert_eq!(role_spec(&before, name), role_spec(&after, name), "{name}");
        }
        assert_eq!(
            after.role_permissions(CUSTOM_ROLE).unwrap(),
            ["assets.view", "decisions.check", "rules.view"]
        );
        // The built-in roles keep the target store's own ids.
        assert_ne!(
            role_spec(&before, "system-admin").id,
            role_spec(&after, "system-admin").id
        );

        // Users holding the custom role import now that the role exists.
        let users = file(dir.path(), Kind::Users, format);
        export_to(&before, Kind::Users, format, &users);
        import_from(&target, Kind::Users, format, &users, false).unwrap();
        let holder = target
            .snapshot()
            .entity_json(EntityKind::User, &user_name(2))
            .unwrap();
        assert_eq!(holder["system_roles"], json!([CUSTOM_ROLE]));
    }
}

#[test]
fn without_the_roles_sheet_a_custom_role_is_an_unknown_reference() {
    let dir = tempfile::tempdir().unwrap();
    let source = store(dir.path(), "source");
    generate(&source, 3);
    let users = file(dir.path(), Kind::Users, Format::Csv);
    export_to(&source.snapshot(), Kind::Users, Format::Csv, &users);
    let target = store(dir.path(), "target");
    let before = state(&target);
    let problems = refusal(import_from(
        &target,
        Kind::Users,
        Format::Csv,
        &users,
        false,
    ));
    assert!(
        problems
            .iter()
            .all(|p| p.message == format!("unknown role `{CUSTOM_ROLE}`")),
        "{problems:?}"
    );
    assert_eq!(problems.len(), N_USERS / 5);
    assert_unchanged(&target, &before);
}

#[test]
fn a_builtin_role_row_is_fine_unchanged_and_refused_changed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let checker = role_spec(&engine.snapshot(), "checker");
    assert_eq!(checker.permissions, ["decisions.check"]);
    let unchanged = format!(
        "Name,Permissions,Description\nCHECKER,decisions.check,{}\n",
        checker.description
    );
    let report = import_csv(&engine, dir.path(), Kind::Roles, &unchanged, true).unwrap();
    assert_eq!(report.changes[0].kind, ChangeKind::Unchanged);
    assert_eq!(report.revision, None);

    let before = state(&engine);
    let changed = "\
Name,Permissions
checker,\"decisions.check, users.view\"
system-auditor,
auditor-lite,users.view
";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Roles, changed, true));
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("Name".to_owned())),
            (Some(3), Some("Name".to_owned()))
        ]
    );
    assert_eq!(
        problems[0].message,
        "`checker` is a built-in role and cannot be changed (Permissions)"
    );
    assert_unchanged(&engine, &before);

    // Renaming a built-in role by its id is a change too.
    let renamed = format!("ID,Name\n{},checker2\n", checker.id.unwrap());
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Roles, &renamed, true));
    assert_eq!(
        problems[0].message,
        "`checker` is a built-in role and cannot be changed (Name)"
    );
    assert_unchanged(&engine, &before);
}

#[test]
fn roles_update_by_name_and_a_held_role_keeps_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let roles = "\
Name,Permissions,Description
dba,\"rules.view, assets.view, rules.view\",databases
spare,,
";
    let report = import_csv(&engine, dir.path(), Kind::Roles, roles, false).unwrap();
    assert_eq!(report.counts.created, 2);
    let dba = role_spec(&engine.snapshot(), "dba");
    // Sorted and without repeats, as the engine keeps them: the same file is unchanged.
    assert_eq!(dba.permissions, ["assets.view", "rules.view"]);
    let again = import_csv(&engine, dir.path(), Kind::Roles, roles, false).unwrap();
    assert_eq!(again.counts.unchanged, 2);

    write(
        &engine,
        EntityKind::User,
        vec![json!({"username": "alice", "system_roles": ["dba"]})],
    );
    let before = state(&engine);
    let rename = format!(
        "ID,Name,Permissions\n{},dba-team,assets.view\n",
        dba.id.unwrap()
    );
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Roles, &rename, true));
    assert_eq!(
        problems[0].message,
        "role `dba` cannot be renamed while user `alice` holds it"
    );
    assert_unchanged(&engine, &before);

    // Its permissions may change; a role nobody holds may be renamed.
    let update = "Name,Permissions\ndba,users.view\n";
    let report = import_csv(&engine, dir.path(), Kind::Roles, update, true).unwrap();
    assert_eq!(report.changes[0].columns, ["Permissions"]);
    assert_eq!(
        engine.snapshot().role_permissions("dba").unwrap(),
        ["users.view"]
    );
    let spare = role_spec(&engine.snapshot(), "spare");
    let rename = format!("ID,Name\n{},spare-2\n", spare.id.unwrap());
    let report = import_csv(&engine, dir.path(), Kind::Roles, &rename, true).unwrap();
    assert_eq!(report.changes[0].columns, ["Name"]);
    assert!(engine.snapshot().role_permissions("spare-2").is_some());
}

#[test]
fn bad_role_cells_are_listed_with_their_row_and_column() {
    let text = "Name,Permissions,Description\n\
                ops,\"[\"\"users.view\"\", {\"\"x\"\": 1}]\",\n\
                ,users.view,\n\
                ok,\"users.view, rules\tview\",\n";
    let problems = portcullis_tabular::parse(
        Kind::Roles,
        Format::Csv,
        text.as_bytes(),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("Permissions".to_owned())),
            (Some(3), Some("Name".to_owned())),
            (Some(4), Some("Permissions".to_owned())),
        ],
        "{problems:?}"
    );
    assert_eq!(
        problems[0].message,
        "`{\"x\":1}` is an object; expected text"
    );
}
