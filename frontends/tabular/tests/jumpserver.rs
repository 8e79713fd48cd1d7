//! Sheets as JumpServer writes them: its headers, and references as `name(id)`.

use portcullis_engine::{Actions, EntityKind, Evaluator, Query};
use portcullis_tabular::{Format, Kind};
use serde_json::json;

use crate::support::*;

#[test]
fn jumpserver_headers_are_understood() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let text = "\
ID,Name,Username,Email,Role,Is active,Date expired,Comment,Date joined,MFA level
8f2f9a6e-1c0b-4c7e-9d6a-2a4f3f1e9b10,Alice Liddell,alice,alice@example.com,User,True,2099-01-01T00:00:00+08:00,dba,2020-01-01 10:00:00,enabled
";
    import_csv(&engine, dir.path(), Kind::Users, text, false).unwrap();
    let alice = engine
        .snapshot()
        .entity_json(EntityKind::User, "alice")
        .unwrap();
    assert_eq!(alice["id"], "8f2f9a6e-1c0b-4c7e-9d6a-2a4f3f1e9b10");
    assert_eq!(alice["name"], "Alice Liddell");
    assert_eq!(alice["system_roles"], json!(["user"]));
    assert_eq!(alice["expires_at"], "2098-12-31T16:00:00Z");
    assert_eq!(alice["description"], "dba");
    assert_eq!(alice["mfa"], "enabled");
}

#[test]
fn references_in_name_id_form() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    write(
        &engine,
        EntityKind::User,
        vec![json!({"username": "alice"}), json!({"username": "bob"})],
    );
    write(
        &engine,
        EntityKind::Node,
        vec![json!({"name": "Prod", "parent": "/Default"})],
    );
    write(
        &engine,
        EntityKind::Asset,
        vec![
            json!({"name": "web-01", "protocols": ["ssh/22"], "nodes": ["/Default/Prod"], "accounts": [{"username": "root"}]}),
        ],
    );
    let snapshot = engine.snapshot();
    let id = |kind, name| snapshot.resolve(kind, name).unwrap().to_string();
    let alice = id(EntityKind::User, "alice");
    let prod = id(EntityKind::Node, "/Default/Prod");
    let web = id(EntityKind::Asset, "web-01");
    let unknown = "00000000-0000-4000-8000-00000000beef";

    // The id wins when it is known (even under another name); otherwise the name.
    let text = format!("Name,Members\nops,\"alice-old-name({alice}), bob({unknown})\"\n");
    import_csv(&engine, dir.path(), Kind::Groups, &text, false).unwrap();
    let text = format!(
        "Name,Groups,Assets,Nodes,Accounts,Protocols,Actions\nr1,ops({unknown}),web({web}),/Default/Prod({prod}),root,ssh,connect\n"
    );
    import_csv(&engine, dir.path(), Kind::Rules, &text, false).unwrap();
    let snapshot = engine.snapshot();
    let rule = snapshot.entity_json(EntityKind::Rule, "r1").unwrap();
    assert_eq!(rule["assets"], json!([web]));
    assert_eq!(rule["nodes"], json!([prod]));
    for user in ["alice", "bob"] {
        let query = Query {
            user,
            asset: "web-01",
            account: "root",
            protocol: "ssh",
            action: Actions::CONNECT,
            at: T0,
        };
        assert!(snapshot.check(&query).unwrap().allowed, "{user}");
    }

    // An id and a name that match nothing are reported as written.
    let text = format!("Name,Members\nother,ghost({unknown})\n");
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Groups, &text, false));
    assert_eq!(
        problems[0].message,
        format!("unknown user `ghost({unknown})`")
    );
}

#[test]
fn a_jumpserver_style_xlsx_with_leading_blank_rows_and_columns() {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(2, 1, "Username*").unwrap();
    sheet.write_string(2, 2, "Email").unwrap();
    sheet.write_string(3, 1, "alice").unwrap();
    sheet.write_string(3, 2, "nope").unwrap();
    let bytes = workbook.save_to_buffer().unwrap();
    let problems =
        portcullis_tabular::parse(Kind::Users, Format::Xlsx, &bytes, &Default::default())
            .unwrap_err();
    // Rows as the spreadsheet numbers them.
    assert_eq!(places(&problems), [(Some(4), Some("Email".to_owned()))]);
}
