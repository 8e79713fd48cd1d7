//! What the rows ask for is judged by the engine, in a dry run of the write
//! (`Engine::validate`): every problem it finds comes back on the row, and the column,
//! that asked for it. Real files in a temporary directory, a real store.

use std::path::Path;

use portcullis_engine::{Actor, Engine, EntityKind, Error, Id, ValidationError};
use portcullis_tabular::{Format, ImportError, ImportOptions, Kind, Stage, import};
use serde_json::json;

use crate::support::*;

/// alice, and the groups `ops` and `dba`. Returns `ops`'s id.
fn estate(engine: &Engine) -> Id {
    write(engine, EntityKind::User, vec![json!({"username": "alice"})]);
    write(
        engine,
        EntityKind::Group,
        vec![
            json!({"name": "ops", "members": ["alice"]}),
            json!({"name": "dba"}),
        ],
    );
    engine.snapshot().resolve(EntityKind::Group, "ops").unwrap()
}

/// A groups sheet with three problems of three kinds, none of which the file alone
/// shows: rows 2 and 3 nest two new groups in each other (a cycle), row 4 renames
/// `ops` (by its ID) to the name `dba` holds (a duplicate name), row 5 lists a user
/// who does not exist (an unknown reference).
fn sheet(ops: Id) -> Vec<Vec<String>> {
    let ops = ops.to_string();
    [
        ["ID", "Name", "Members", "Subgroups"],
        ["", "a", "", "b"],
        ["", "b", "", "a"],
        [&ops, "dba", "alice", ""],
        ["", "night", "alice, ghost", ""],
    ]
    .iter()
    .map(|row| row.iter().map(|cell| (*cell).to_owned()).collect())
    .collect()
}

fn save(path: &Path, format: Format, rows: &[Vec<String>]) {
    match format {
        Format::Csv => {
            let mut text = String::new();
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|cell| {
                        if cell.contains(',') {
                            format!("\"{cell}\"")
                        } else {
                            cell.clone()
                        }
                    })
                    .collect();
                text.push_str(&cells.join(","));
                text.push('\n');
            }
            std::fs::write(path, text).unwrap();
        }
        Format::Xlsx => {
            let mut workbook = rust_xlsxwriter::Workbook::new();
            let sheet = workbook.add_worksheet();
            for (r, row) in rows.iter().enumerate() {
                for (c, cell) in row.iter().enumerate() {
                    if !cell.is_empty() {
                        sheet.write_string(r as u32, c as u16, cell).unwrap();
                    }
                }
            }
            workbook.save(path).unwrap();
        }
    }
}

fn import_file(
    engine: &Engine,
    actor: &Actor,
    path: &Path,
    format: Format,
    kind: Kind,
    dry_run: bool,
) -> Result<portcullis_tabular::ImportReport, ImportError> {
    let bytes = std::fs::read(path).unwrap();
    import(
        engine,
        actor,
        kind,
        format,
        &bytes,
        ImportOptions {
            update: true,
            dry_run,
            ..ImportOptions::default()
        },
    )
}

#[test]
fn three_problems_of_three_kinds_are_each_reported_on_their_row() {
    for format in [Format::Csv, Format::Xlsx] {
        let dir = tempfile::tempdir().unwrap();
        let engine = store(dir.path(), "s");
        let ops = estate(&engine);
        let path = file(dir.path(), Kind::Groups, format);
        save(&path, format, &sheet(ops));
        let before = state(&engine);
        let importer = Actor::system("importer");
        for dry_run in [true, false] {
            let problems = refusal(import_file(
                &engine,
                &importer,
                &path,
                format,
                Kind::Groups,
                dry_run,
            ));
            let found: Vec<(Option<usize>, Option<&str>, &str)> = problems
                .iter()
                .map(|p| (p.row, p.column.as_deref(), p.message.as_str()))
                .collect();
            assert_eq!(
                found,
                [
                    // `b` is created first, `a` holding it, then `b`'s subgroups.
                    (
                        Some(3),
                        Some("Subgroups"),
                        "the groups would nest in a cycle: `a` already contains `b`, directly or through its subgroups"
                    ),
                    (Some(4), Some("Name"), "group `dba` already exists"),
                    (Some(5), Some("Members"), "unknown user `ghost`"),
                ],
                "{format}, dry run: {dry_run}"
            );
        }
        assert_unchanged(&engine, &before);

        // Mended, the same file imports: `a` holds `b`, which the file creates after
        // naming it.
        let mut mended = sheet(ops);
        mended[2][3].clear();
        mended[3][1] = "ops".to_owned();
        mended[4][2] = "alice".to_owned();
        save(&path, format, &mended);
        let report = import_file(&engine, &importer, &path, format, Kind::Groups, false).unwrap();
        assert_eq!(
            (report.counts.created, report.counts.updated),
            (3, 0),
            "{format}: ops is unchanged"
        );
        let snapshot = engine.snapshot();
        let a = snapshot.entity_json(EntityKind::Group, "a").unwrap();
        let b = snapshot.resolve(EntityKind::Group, "b").unwrap();
        assert_eq!(a["subgroups"][0]["group"], json!(b.to_string()), "{a}");
    }
}

/// A refusal of the whole write (the caller's token no longer exists) is the
/// caller's, not a row's, dry run or not.
#[test]
fn a_refusal_of_the_whole_write_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let path = dir.path().join("users.csv");
    std::fs::write(&path, "Username\nzed\n").unwrap();
    let gone = Actor::token(Id::random(), "gone");
    let before = state(&engine);
    for dry_run in [true, false] {
        match import_file(&engine, &gone, &path, Format::Csv, Kind::Users, dry_run) {
            Err(ImportError::Engine(Error::Validation(ValidationError::ActorRevoked(name)))) => {
                assert_eq!(name, "gone");
            }
            other => panic!("dry run {dry_run}: {other:?}"),
        }
    }
    assert_unchanged(&engine, &before);
}

/// The store changes between the check and the write: the write is refused, and the
/// engine, asked again, names the row.
#[test]
fn a_write_refused_after_the_check_is_reported_on_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let path = dir.path().join("users.csv");
    std::fs::write(&path, "Username,Email\nyan,yan@example.com\nzed,\n").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut raced = false;
    let mut progress = |progress: portcullis_tabular::Progress| {
        if progress.stage == Stage::Writing && !raced {
            raced = true;
            write(&engine, EntityKind::User, vec![json!({"username": "ZED"})]);
        }
    };
    let result = import(
        &engine,
        &Actor::system("importer"),
        Kind::Users,
        Format::Csv,
        &bytes,
        ImportOptions {
            progress: Some(&mut progress),
            ..ImportOptions::default()
        },
    );
    let problems = refusal(result);
    assert_eq!(
        places(&problems),
        [(Some(3), Some("Username".to_owned()))],
        "{problems:?}"
    );
    assert_eq!(problems[0].message, "user `zed` already exists");
    assert!(
        engine.snapshot().resolve(EntityKind::User, "yan").is_err(),
        "nothing of the file was written"
    );
}
