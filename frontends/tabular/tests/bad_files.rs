//! Files with errors: each is refused with every problem, row and column, and the
//! store stays exactly as it was.

use portcullis_tabular::{Format, Kind, ParseOptions, parse};
use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook};

use crate::support::*;

/// The problems of parsing `bytes`.
fn refused(kind: Kind, format: Format, bytes: &[u8]) -> Vec<portcullis_tabular::Problem> {
    match parse(kind, format, bytes, &ParseOptions::default()) {
        Ok(rows) => panic!("accepted: {rows:?}"),
        Err(problems) => problems,
    }
}

fn one(problems: &[portcullis_tabular::Problem], needle: &str) {
    assert!(
        problems.iter().any(|p| p.message.contains(needle)),
        "no problem says `{needle}`: {problems:#?}"
    );
}

fn xlsx(build: impl FnOnce(&mut Workbook)) -> Vec<u8> {
    let mut workbook = Workbook::new();
    build(&mut workbook);
    workbook.save_to_buffer().unwrap()
}

#[test]
fn every_problem_is_listed_with_row_and_column_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    generate(&engine, 3);
    let before = state(&engine);
    let text = "\
Username,Email,Active,Expires at,MFA
fine,fine@example.com,yes,,
bad-email,not-an-email,yes,,
bad-bool,,perhaps,,
bad-time,,,next tuesday,
bad-mfa,,,,sometimes
,,,,
,nobody@example.com,no,,
";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Users, text, false));
    assert_eq!(
        places(&problems),
        [
            (Some(3), Some("Email".to_owned())),
            (Some(4), Some("Active".to_owned())),
            (Some(5), Some("Expires at".to_owned())),
            (Some(6), Some("MFA".to_owned())),
            (Some(8), Some("Username".to_owned())),
        ],
        "{problems:#?}"
    );
    assert!(
        problems[0]
            .to_string()
            .starts_with("row 3, column `Email`: `not-an-email`")
    );
    assert_eq!(
        serde_json::to_value(&problems[0]).unwrap(),
        serde_json::json!({"row": 3, "column": "Email", "message": "`not-an-email` is not an email address"})
    );
    assert_unchanged(&engine, &before);

    // Problems found against the store are listed the same way.
    let text = "\
Name,Members,Subgroups,Roles
new-1,\"u1, ghost\",,
new-2,u2,g-missing,
new-3,,,no-such-role
u-dup,u1 until 2027-01-01T00:00:00Z,,
u-dup,,,
g5,,,
";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Groups, text, false));
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("Members".to_owned())),
            (Some(3), Some("Subgroups".to_owned())),
            (Some(4), Some("Roles".to_owned())),
            (Some(6), Some("Name".to_owned())),
            (Some(7), Some("Name".to_owned())),
        ],
        "{problems:#?}"
    );
    one(&problems, "unknown user `ghost`");
    one(&problems, "unknown group `g-missing`");
    one(&problems, "unknown role `no-such-role`");
    one(&problems, "already on row 5");
    one(&problems, "group `g5` already exists with other values");
    assert_unchanged(&engine, &before);
}

#[test]
fn rule_references_and_windows_are_checked_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    generate(&engine, 3);
    let before = state(&engine);
    let text = "\
Name,Users,Groups,Assets,Nodes,Accounts,Protocols,Actions,Starts at,Expires at
ok,u1,,a1,,@ALL,ssh,connect,,
r-a,nobody,,a1,,@ALL,ssh,connect,,
r-b,u1,,,/Default/Nowhere,@ALL,ssh,connect,,
r-c,u1,,a1,,@SOMEONE,ssh,connect,,
r-d,u1,,a1,,@ALL,,connect,,
r-e,u1,,a1,,@ALL,ssh,fly,,
r-f,u1,,a1,,@ALL,ssh,connect,2031-01-01T00:00:00Z,2030-01-01T00:00:00Z
r-g,u1,,a1,,@ALL,ssh,,,
";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Rules, text, false));
    assert_eq!(
        places(&problems),
        [
            (Some(3), Some("Users".to_owned())),
            (Some(4), Some("Nodes".to_owned())),
            (Some(5), Some("Accounts".to_owned())),
            (Some(6), Some("Protocols".to_owned())),
            (Some(7), Some("Actions".to_owned())),
            (Some(8), Some("Expires at".to_owned())),
            (Some(9), Some("Actions".to_owned())),
        ],
        "{problems:#?}"
    );
    assert_unchanged(&engine, &before);
}

#[test]
fn malformed_csv_is_refused() {
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Username,Name\nalice,\"Alice\nbob,Bob\n",
    );
    one(&problems, "unclosed double quote");
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Username,Name\nalice,Alice,extra\nbob\ncarol,Carol\n",
    );
    assert_eq!(
        places(&problems),
        [(Some(2), None), (Some(3), None)],
        "{problems:#?}"
    );
    one(&problems, "3 values where the header has 2 columns");
    let problems = refused(Kind::Users, Format::Csv, b"Username;Name\nalice;Alice\n");
    one(&problems, "comma-separated");
    let problems = refused(Kind::Users, Format::Csv, b"\n\n");
    one(&problems, "empty");
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let rows = parse(
        Kind::Users,
        Format::Csv,
        b"\xEF\xBB\xBFUsername,Name\nalice,Al\xC3\xAFce\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(rows[0].name(), "alice");
}

#[test]
fn other_encodings_are_refused() {
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "Username\nalice\n".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    one(&refused(Kind::Users, Format::Csv, &utf16), "UTF-16");
    let mut without_bom = Vec::new();
    for unit in "Username\nalice\n".encode_utf16() {
        without_bom.extend(unit.to_le_bytes());
    }
    one(
        &refused(Kind::Users, Format::Csv, &without_bom),
        "NUL bytes",
    );
    // Latin-1 `ï`.
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Username,Name\nalice,Alice\nbob,Bo\xEFte\n",
    );
    assert_eq!(places(&problems), [(Some(3), Some("Name".to_owned()))]);
    one(&problems, "not UTF-8");
}

#[test]
fn the_wrong_format_is_named() {
    let workbook = xlsx(|w| {
        w.add_worksheet().write_string(0, 0, "Username").unwrap();
    });
    one(
        &refused(Kind::Users, Format::Csv, &workbook),
        "import it as xlsx",
    );
    one(
        &refused(Kind::Users, Format::Xlsx, b"Username\nalice\n"),
        "import it as csv",
    );
    one(
        &refused(Kind::Users, Format::Xlsx, b"PK\x03\x04garbage"),
        "cannot read the workbook",
    );
}

#[test]
fn missing_unknown_and_repeated_columns_are_refused() {
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Name,Email\nAlice,a@example.com\n",
    );
    assert_eq!(places(&problems), [(Some(1), None)]);
    one(&problems, "missing column `Username`");
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Username,Password,Shoe size\nalice,secret,42\n",
    );
    assert_eq!(
        places(&problems),
        [
            (Some(1), Some("Password".to_owned())),
            (Some(1), Some("Shoe size".to_owned()))
        ]
    );
    one(
        &problems,
        "unknown column; the users columns are ID, Username",
    );
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Username,Comment,Description\nalice,a,b\n",
    );
    one(&problems, "twice (also as `Comment`)");
    let problems = refused(Kind::Users, Format::Csv, b"Username,\nalice,stray\n");
    one(&problems, "column 2 holds values but has no header");
    // Read-only columns of other exports are ignored.
    let rows = parse(
        Kind::Users,
        Format::Csv,
        b"Username,Date joined,Last login,Created by\nalice,2020-01-01,,admin\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn the_row_limit_is_enforced() {
    let options = ParseOptions {
        max_rows: 3,
        ..ParseOptions::default()
    };
    let text = "Username\na\nb\nc\n";
    assert_eq!(
        parse(Kind::Users, Format::Csv, text.as_bytes(), &options)
            .unwrap()
            .len(),
        3
    );
    let text = "Username\na\nb\nc\nd\n";
    let problems = parse(Kind::Users, Format::Csv, text.as_bytes(), &options).unwrap_err();
    one(&problems, "more than 3 rows");
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        for row in 1..=4 {
            sheet.write_string(row, 0, format!("u{row}")).unwrap();
        }
    });
    let problems = parse(Kind::Users, Format::Xlsx, &workbook, &options).unwrap_err();
    one(&problems, "more than 3 rows");
    assert_eq!(portcullis_tabular::MAX_ROWS, 1_000_000);
}

#[test]
fn blank_rows_are_skipped() {
    let rows = parse(
        Kind::Users,
        Format::Csv,
        b"Username,Name\n,\nalice,\n , \nbob,\n",
        &ParseOptions::default(),
    )
    .unwrap();
    let lines: Vec<usize> = rows.iter().map(|r| r.line()).collect();
    assert_eq!(lines, [3, 5]);
}

#[test]
fn problems_past_the_limit_are_counted() {
    let mut text = String::from("Username,Active\n");
    for i in 0..50 {
        text.push_str(&format!("u{i},perhaps\n"));
    }
    let options = ParseOptions {
        max_problems: 10,
        ..ParseOptions::default()
    };
    let problems = parse(Kind::Users, Format::Csv, text.as_bytes(), &options).unwrap_err();
    assert_eq!(problems.len(), 11);
    assert_eq!(problems[10].message, "40 more problems are not listed");
}

#[test]
fn workbooks_with_data_on_several_sheets_are_refused() {
    let workbook = xlsx(|w| {
        w.add_worksheet().write_string(0, 0, "Username").unwrap();
        w.add_worksheet()
            .set_name("Notes")
            .unwrap()
            .write_string(3, 3, "remember")
            .unwrap();
    });
    one(
        &refused(Kind::Users, Format::Xlsx, &workbook),
        "data on several sheets (`Notes`); only the first sheet (`Sheet1`) is read",
    );
    // Empty extra sheets, as spreadsheets add them, are fine.
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
        w.add_worksheet();
        w.add_worksheet();
    });
    let rows = parse(
        Kind::Users,
        Format::Xlsx,
        &workbook,
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn formulas_are_refused() {
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(0, 1, "Name").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
        sheet.write_formula(1, 1, "=UPPER(A2)").unwrap();
        sheet.write_string(2, 0, "bob").unwrap();
        sheet.write_formula(2, 1, "=A3").unwrap();
    });
    let problems = refused(Kind::Users, Format::Xlsx, &workbook);
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("Name".to_owned())),
            (Some(3), Some("Name".to_owned()))
        ],
        "{problems:#?}"
    );
    one(&problems, "cell B2 holds a formula (`=UPPER(A2)`)");
}

#[test]
fn merged_cells_are_refused() {
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(0, 1, "Name").unwrap();
        sheet.write_string(0, 2, "Description").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
        sheet
            .merge_range(1, 1, 1, 2, "Alice", &CellFormat::new())
            .unwrap();
    });
    let problems = refused(Kind::Users, Format::Xlsx, &workbook);
    assert_eq!(places(&problems), [(Some(2), Some("Name".to_owned()))]);
    one(&problems, "cells B2:C2 are merged");
}

#[test]
fn numbers_where_dates_are_expected_are_refused_but_date_cells_are_read() {
    let date = CellFormat::new().set_num_format("yyyy-mm-dd hh:mm");
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(0, 1, "Expires at").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
        sheet.write_number(1, 1, 46023.5).unwrap();
        sheet.write_string(2, 0, "bob").unwrap();
        sheet
            .write_datetime_with_format(
                2,
                1,
                ExcelDateTime::from_ymd(2027, 1, 1)
                    .unwrap()
                    .and_hms(12, 30, 0)
                    .unwrap(),
                &date,
            )
            .unwrap();
    });
    let problems = refused(Kind::Users, Format::Xlsx, &workbook);
    assert_eq!(
        places(&problems),
        [(Some(2), Some("Expires at".to_owned()))]
    );
    one(&problems, "a number where a date is expected");
    let problems = refused(
        Kind::Users,
        Format::Csv,
        b"Username,Expires at\nalice,46023.5\n",
    );
    one(&problems, "a number where a date is expected");

    // The date cell alone is fine, read as UTC.
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(0, 1, "Expires at").unwrap();
        sheet.write_string(1, 0, "bob").unwrap();
        sheet
            .write_datetime_with_format(
                1,
                1,
                ExcelDateTime::from_ymd(2027, 1, 1)
                    .unwrap()
                    .and_hms(12, 30, 0)
                    .unwrap(),
                &date,
            )
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let path = dir.path().join("users.xlsx");
    std::fs::write(&path, &workbook).unwrap();
    import_from(&engine, Kind::Users, Format::Xlsx, &path, false).unwrap();
    let bob = engine
        .snapshot()
        .entity_json(portcullis_engine::EntityKind::User, "bob")
        .unwrap();
    assert_eq!(bob["expires_at"], "2027-01-01T12:30:00Z");
}

#[test]
fn typed_xlsx_cells_are_read_as_text_booleans_and_numbers() {
    let workbook = xlsx(|w| {
        let sheet = w.add_worksheet();
        for (col, header) in ["Username", "Phone", "Active", "Must change password"]
            .iter()
            .enumerate()
        {
            sheet.write_string(0, col as u16, *header).unwrap();
        }
        sheet.write_string(1, 0, "alice").unwrap();
        sheet.write_number(1, 1, 15550100.0).unwrap();
        sheet.write_boolean(1, 2, false).unwrap();
        sheet.write_number(1, 3, 1).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let path = dir.path().join("users.xlsx");
    std::fs::write(&path, &workbook).unwrap();
    import_from(&engine, Kind::Users, Format::Xlsx, &path, false).unwrap();
    let alice = engine
        .snapshot()
        .entity_json(portcullis_engine::EntityKind::User, "alice")
        .unwrap();
    assert_eq!(alice["phone"], "15550100");
    assert_eq!(alice["active"], false);
    assert_eq!(alice["must_change_password"], true);
    assert_eq!(alice["source"], "import");
}

#[test]
fn a_formula_escape_is_stripped_on_import() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let text = "Username,Description\nalice,'=1+1\nbob,'plain\ncarol,''@x\n";
    import_csv(&engine, dir.path(), Kind::Users, text, false).unwrap();
    let snapshot = engine.snapshot();
    let description = |user: &str| {
        snapshot
            .entity_json(portcullis_engine::EntityKind::User, user)
            .unwrap()["description"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(description("alice"), "=1+1");
    assert_eq!(description("bob"), "'plain");
    assert_eq!(description("carol"), "'@x");
}

#[test]
fn a_row_of_another_kind_is_refused_by_plan() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let rows = parse(
        Kind::Users,
        Format::Csv,
        b"Username\nalice\n",
        &ParseOptions::default(),
    )
    .unwrap();
    let actor = portcullis_engine::Actor::system("importer");
    let problems = match portcullis_tabular::plan(&engine, &actor, Kind::Groups, rows, false) {
        Err(portcullis_tabular::ImportError::Problems(problems)) => problems,
        other => panic!("expected problems: {other:?}"),
    };
    one(&problems, "a users row in a groups import");
}

#[test]
fn nodes_need_their_parents_and_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    let before = state(&engine);
    let text = "Path,Description\n/Default/A/B,\n/Elsewhere/X,\nrelative,\n/Default,changed\n/Default/C,\n/default/c,\n";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Nodes, text, false));
    assert_eq!(
        places(&problems),
        [
            (Some(2), Some("Path".to_owned())),
            (Some(3), Some("Path".to_owned())),
            (Some(4), Some("Path".to_owned())),
            (Some(5), Some("Path".to_owned())),
            (Some(7), Some("Path".to_owned())),
        ],
        "{problems:#?}"
    );
    one(&problems, "the parent node `/Default/A` does not exist");
    one(&problems, "does not start at the root `/Default`");
    one(&problems, "the root node `/Default` cannot be changed");
    assert_unchanged(&engine, &before);
    // Children may come before their parents in the file.
    let text = "Path\n/Default/A/B/C\n/Default/A\n/Default/A/B\n";
    let report = import_csv(&engine, dir.path(), Kind::Nodes, text, false).unwrap();
    assert_eq!(report.counts.created, 3);
    let lines: Vec<usize> = report.changes.iter().map(|c| c.line).collect();
    assert_eq!(lines, [2, 3, 4]);
}

#[test]
fn subgroups_come_first_and_cycles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), "s");
    // `outer` holds `inner`, which is only defined below it.
    let text = "Name,Subgroups\nouter,inner\ninner,\n";
    import_csv(&engine, dir.path(), Kind::Groups, text, false).unwrap();
    let before = state(&engine);
    let text = "Name,Subgroups\ninner,outer\n";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Groups, text, true));
    // The engine finds the cycle, and names the two groups of the refused nesting.
    one(
        &problems,
        "the groups would nest in a cycle: `outer` already contains `inner`",
    );
    let text = "Name,Subgroups\nself,self\n";
    let problems = refusal(import_csv(&engine, dir.path(), Kind::Groups, text, true));
    one(&problems, "cannot contain itself");
    assert_unchanged(&engine, &before);
}

/// Regression: calamine's ranges are dense, so a workbook with two cells at opposite
/// corners of a sheet asked for 17 billion cells (an abort, not an error). Sheets are
/// now read cell by cell, and their used area is bounded.
#[test]
fn cells_at_opposite_corners_of_a_sheet_are_refused_without_allocating_the_area() {
    const LAST_ROW: u32 = 1_048_575;
    const LAST_COL: u16 = 16_383;
    let far_right = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
        sheet.write_string(LAST_ROW, LAST_COL, "x").unwrap();
    });
    let problems = refused(Kind::Users, Format::Xlsx, &far_right);
    one(
        &problems,
        "the sheet uses 16384 columns (A:XFD); at most 1000 are read",
    );

    // Far down is fine: blank rows are skipped, and the row keeps its number.
    let far_down = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
        sheet.write_string(LAST_ROW, 0, "zoe").unwrap();
    });
    let rows = parse(
        Kind::Users,
        Format::Xlsx,
        &far_down,
        &ParseOptions::default(),
    )
    .unwrap();
    let lines: Vec<(usize, &str)> = rows.iter().map(|r| (r.line(), r.name())).collect();
    assert_eq!(lines, [(2, "alice"), (1_048_576, "zoe")]);

    // A wide used area on many rows is bounded by the cell budget (32 per row).
    let options = ParseOptions {
        max_rows: 10,
        ..ParseOptions::default()
    };
    let wide = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        for row in 1..=10 {
            sheet.write_string(row, 0, format!("u{row}")).unwrap();
        }
        sheet.write_string(10, 99, "stray").unwrap();
    });
    let problems = parse(Kind::Users, Format::Xlsx, &wide, &options).unwrap_err();
    one(
        &problems,
        "the sheet's used area is 11 rows by 100 columns, more than 352 cells",
    );

    // Formulas and other sheets are read cell by cell too.
    let formulas = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_formula(1, 0, "=\"alice\"").unwrap();
        sheet.write_formula(LAST_ROW, 999, "=1").unwrap();
        let other = w.add_worksheet();
        other
            .write_string(LAST_ROW, LAST_COL, "left behind")
            .unwrap();
    });
    let problems = refused(Kind::Users, Format::Xlsx, &formulas);
    one(&problems, "cell A2 holds a formula");
    one(&problems, "cell ALL1048576 holds a formula");
    one(
        &problems,
        "the workbook has data on several sheets (`Sheet2`)",
    );
}

/// Regression (issue #21): a 412 KB workbook holding a 400 MB shared string made the
/// server allocate 1.2 GB before refusing it. What a workbook unpacks to is now
/// bounded before calamine reads any part of it.
#[test]
fn a_decompression_bomb_in_the_shared_strings_is_refused_before_it_is_unpacked() {
    let base = xlsx(|w| {
        let sheet = w.add_worksheet();
        sheet.write_string(0, 0, "Username").unwrap();
        sheet.write_string(1, 0, "alice").unwrap();
    });
    let bomb = portcullis_tabular::testing::xlsx_with_huge_shared_string(&base, 200);
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
    let problems = refused(Kind::Users, Format::Xlsx, &bomb);
    one(&problems, "unpacks to more than");

    // An absolute bound holds too, whatever the ratio: here, 1 MiB in all.
    let options = ParseOptions {
        max_unpacked_bytes: 1024 * 1024,
        ..ParseOptions::default()
    };
    let two_mib = portcullis_tabular::testing::xlsx_with_huge_shared_string(&base, 2);
    let problems = parse(Kind::Users, Format::Xlsx, &two_mib, &options).unwrap_err();
    one(&problems, "unpacks to more than 1048576 bytes");
}

/// CSV needs no unpacking, but one huge value or one row of a million empty values
/// must not multiply the body's size in memory either.
#[test]
fn csv_bombs_huge_values_and_rows_are_refused() {
    let huge_value = format!(
        "Username,Email\nalice,{}@example.com\n",
        "a".repeat(200_000)
    );
    let problems = refused(Kind::Users, Format::Csv, huge_value.as_bytes());
    one(&problems, "a value longer than 65536 bytes");

    let wide_row = format!("Username,Email\nalice{}\n", ",".repeat(2_000_000));
    let problems = refused(Kind::Users, Format::Csv, wide_row.as_bytes());
    one(&problems, "more than 1000 values");

    let wide_header = format!("Username{}\nalice\n", ",x".repeat(5_000));
    let problems = refused(Kind::Users, Format::Csv, wide_header.as_bytes());
    one(&problems, "more than 1000 values");
}
