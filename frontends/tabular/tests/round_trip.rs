//! Export every kind, import into an empty store, and get the same estate: the same
//! entities (ids kept) and the same answer to every request of a sample.

use portcullis_engine::Actor;
use portcullis_engine::{Actions, EntityKind, Evaluator, Query, Snapshot, Spec, Time};
use portcullis_tabular::{ChangeKind, Format, Kind};

use crate::support::*;

fn round_trip(format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let source = store(dir.path(), "source");
    generate(&source, 7);
    let original = source.snapshot();
    for kind in Kind::ALL {
        export_to(&original, kind, format, &file(dir.path(), kind, format));
    }

    let target = store(dir.path(), "target");
    for kind in Kind::ALL {
        let report = import_from(
            &target,
            kind,
            format,
            &file(dir.path(), kind, format),
            false,
        )
        .unwrap_or_else(|e| panic!("{kind}: {e}: {:#?}", e));
        // Every kind creates something (nodes too: all but the root), so every
        // import is a write.
        assert!(report.revision.is_some(), "{kind}: {report:?}");
        if kind == Kind::Nodes {
            // The root is in every store already.
            assert_eq!(report.changes[0].kind, ChangeKind::Unchanged);
            assert_eq!(report.counts.created, node_paths().len());
        }
    }
    let imported = target.snapshot();

    // The same entities, ids and all.
    for kind in Kind::ALL {
        let entity = kind.entity_kind();
        let ids = ids(&original, entity);
        assert!(!ids.is_empty());
        assert_eq!(ids.len(), self::ids(&imported, entity).len(), "{kind}");
        for id in ids {
            let before = without_account_ids(original.spec(entity, &id).unwrap());
            let after = without_account_ids(
                imported
                    .spec(entity, &id)
                    .unwrap_or_else(|_| panic!("{kind} {id} is missing")),
            );
            assert_eq!(before, after, "{kind} {id}");
        }
    }

    // The same decisions.
    let n = same_decisions(&original, &imported);
    assert!(n > 100_000, "only {n} requests compared");

    // Exporting the import gives the same files.
    for kind in Kind::ALL {
        let mut again = Vec::new();
        portcullis_tabular::export(&imported, kind, Format::Csv, &mut again).unwrap();
        let mut first = Vec::new();
        portcullis_tabular::export(&original, kind, Format::Csv, &mut first).unwrap();
        assert_eq!(
            String::from_utf8(again).unwrap(),
            String::from_utf8(first).unwrap(),
            "{kind}"
        );
    }

    // Importing the same files again changes nothing, even without update.
    let before = state(&target);
    for kind in Kind::ALL {
        let report = import_from(
            &target,
            kind,
            format,
            &file(dir.path(), kind, format),
            false,
        )
        .unwrap();
        assert_eq!(report.revision, None, "{kind}");
        assert_eq!(report.counts.created + report.counts.updated, 0, "{kind}");
    }
    assert_unchanged(&target, &before);
}

/// Account ids are not exported (a copied row must not copy them): an import gives
/// new accounts new ids.
fn without_account_ids(mut spec: Spec) -> Spec {
    if let Spec::Asset(asset) = &mut spec {
        for account in &mut asset.accounts {
            account.id = None;
        }
    }
    spec
}

fn ids(snapshot: &Snapshot, kind: EntityKind) -> Vec<String> {
    let estate = snapshot.estate();
    let ids: Vec<_> = match kind {
        EntityKind::User => estate.users.iter().map(|e| e.id).collect(),
        EntityKind::Group => estate.groups.iter().map(|e| e.id).collect(),
        EntityKind::Node => estate.nodes.iter().map(|e| e.id).collect(),
        EntityKind::Asset => estate.assets.iter().map(|e| e.id).collect(),
        EntityKind::Rule => estate.rules.iter().map(|e| e.id).collect(),
        // The built-in roles are in every store, each with its own ids; not exported.
        EntityKind::Role => estate
            .roles
            .iter()
            .filter(|e| !e.builtin)
            .map(|e| e.id)
            .collect(),
        EntityKind::Token => Vec::new(),
    };
    ids.iter().map(ToString::to_string).collect()
}

/// Asks both snapshots every request of the sample; returns how many.
fn same_decisions(a: &Snapshot, b: &Snapshot) -> usize {
    let mut times: Vec<Time> = (-4..=4).map(hours).collect();
    times.extend([
        hours(-1).add_micros(-1),
        hours(2).add_micros(1),
        Time::now(),
    ]);
    let actions = [
        Actions::CONNECT,
        Actions::UPLOAD,
        Actions::COPY,
        Actions::SHARE,
    ];
    let mut n = 0;
    for u in 0..N_USERS {
        let user = user_name(u);
        let mut accounts: Vec<String> = ACCOUNTS.iter().map(|a| (*a).to_owned()).collect();
        accounts.extend(["@INPUT".to_owned(), "@ANON".to_owned(), user.clone()]);
        for x in 0..N_ASSETS {
            let asset = asset_name(x);
            for account in &accounts {
                for (protocol, _) in PROTOCOLS {
                    for action in actions {
                        for at in &times {
                            let query = Query {
                                user: &user,
                                asset: &asset,
                                account,
                                protocol,
                                action,
                                at: *at,
                            };
                            let mut left = a.check(&query).unwrap();
                            let mut right = b.check(&query).unwrap();
                            left.revision = 0;
                            right.revision = 0;
                            assert_eq!(left, right, "{query:?}");
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    n
}

#[test]
fn csv_round_trip_keeps_every_entity_and_decision() {
    round_trip(Format::Csv);
}

#[test]
fn xlsx_round_trip_keeps_every_entity_and_decision() {
    round_trip(Format::Xlsx);
}

#[test]
fn the_sample_is_not_all_denials() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    generate(&engine, 7);
    let snapshot = engine.snapshot();
    let mut allowed = 0;
    let mut denied = 0;
    for u in 0..N_USERS {
        for x in 0..N_ASSETS {
            for account in ["root", "@INPUT", "admin"] {
                let query = Query {
                    user: &user_name(u),
                    asset: &asset_name(x),
                    account,
                    protocol: "ssh",
                    action: Actions::CONNECT,
                    at: T0,
                };
                if snapshot.check(&query).unwrap().allowed {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
    }
    assert!(
        allowed > 20 && denied > 20,
        "{allowed} allowed, {denied} denied"
    );
}

#[test]
fn formula_cells_are_neutralised_on_export() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    generate(&engine, 7);
    let mut out = Vec::new();
    portcullis_tabular::export(&engine.snapshot(), Kind::Groups, Format::Csv, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with('\u{feff}'),
        "a UTF-8 byte-order mark for Excel"
    );
    assert!(text.contains("'=cmd|' /C calc'!A0"), "{text}");
    assert!(!text.contains(",=cmd"), "{text}");
    let mut out = Vec::new();
    portcullis_tabular::export(&engine.snapshot(), Kind::Rules, Format::Csv, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(",'-1 is a number"), "{text}");
    assert!(!text.lines().any(|line| line.contains(",@")), "{text}");
}

#[test]
fn exports_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let mut spec = portcullis_engine::UserSpec::new("carol");
    spec.password = Some(portcullis_engine::Password::new("Correct horse battery 9"));
    engine
        .write(
            &Actor::system("test"),
            vec![portcullis_engine::Op::Create(
                portcullis_engine::Spec::User(spec),
            )],
        )
        .unwrap();
    let (_, secret) = engine
        .create_token(
            &Actor::system("test"),
            portcullis_engine::TokenSpec {
                id: None,
                name: "ci".to_owned(),
                user: Some("carol".to_owned()),
                roles: vec!["user".to_owned()],
                expires_at: None,
                description: String::new(),
            },
        )
        .unwrap();
    for kind in Kind::ALL {
        let mut out = Vec::new();
        portcullis_tabular::export(&engine.snapshot(), kind, Format::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap().to_lowercase();
        assert!(!text.contains("argon2"), "{kind}");
        assert!(!text.contains("correct horse"), "{kind}");
        assert!(!text.contains(&secret.to_lowercase()), "{kind}");
        let header = text.lines().next().unwrap();
        assert!(!header.contains("hash"), "{kind}: {header}");
        assert!(
            !header.split(',').any(|column| column == "password"),
            "{kind}: {header}"
        );
    }
}

#[test]
fn templates_hold_the_header_and_an_example_that_parses() {
    for kind in Kind::ALL {
        for format in [Format::Csv, Format::Xlsx] {
            let mut out = Vec::new();
            portcullis_tabular::template(kind, format, &mut out).unwrap();
            let rows = portcullis_tabular::parse(kind, format, &out, &Default::default())
                .unwrap_or_else(|p| panic!("{kind} {format}: {p:?}"));
            assert_eq!(rows.len(), 1, "{kind} {format}");
            assert_eq!(rows[0].line(), 2);
        }
    }
}

#[test]
fn the_readme_documents_every_column() {
    let readme = include_str!("../README.md");
    for kind in Kind::ALL {
        let section = readme
            .split(&format!("### {}", kind.name()))
            .nth(1)
            .unwrap_or_else(|| panic!("no `### {kind}` section"));
        let section = section.split("\n### ").next().unwrap();
        for column in portcullis_tabular::columns(kind) {
            assert!(
                section.contains(&format!("| {} |", column.header)),
                "{kind}: `{}` is not documented",
                column.header
            );
        }
    }
}

#[test]
fn an_import_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let mut text = String::from("Username,Email\n");
    for i in 0..10_000 {
        text.push_str(&format!("user{i},user{i}@example.com\n"));
    }
    let mut seen = Vec::new();
    let mut progress = |p: portcullis_tabular::Progress| seen.push(p);
    let report = portcullis_tabular::import(
        &engine,
        &Actor::system("importer"),
        Kind::Users,
        Format::Csv,
        text.as_bytes(),
        portcullis_tabular::ImportOptions {
            progress: Some(&mut progress),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.counts.created, 10_000);
    use portcullis_tabular::Stage;
    for stage in [Stage::Reading, Stage::Planning, Stage::Writing] {
        let last = seen.iter().rfind(|p| p.stage == stage).unwrap();
        assert_eq!((last.done, last.total), (10_000, 10_000), "{stage:?}");
    }
    assert!(seen.len() > 6, "reports along the way: {}", seen.len());
}
