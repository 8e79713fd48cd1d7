#![doc = include_str!("../README.md")]
//!
//! ## Map
//!
//! One sheet holds one kind of entity (roles, users, groups, nodes, assets or rules): a header
//! row of readable column names, then one row per entity. The columns of each kind, and
//! how a cell is written, are in this crate's `README.md`.
//!
//! The pieces, in the order an import uses them:
//!
//! - [`parse`] reads a file into [`Row`]s, checking its encoding, its shape and every
//!   cell, and lists every [`Problem`] with its row and column.
//! - [`plan`] compares the rows with the engine's store: which entities would be
//!   created, updated or left unchanged, as engine operations and a readable summary
//!   ([`ImportPlan`]). This is what `--dry-run` shows. Whether the engine takes the
//!   operations is the engine's to say: [`Engine::validate`](portcullis_engine::Engine::validate)
//!   (the write as a dry run) finds every problem, and each is reported on the row
//!   whose operation it belongs to.
//! - [`import`] does both and commits the whole plan as one
//!   [`Engine::write`](portcullis_engine::Engine::write): all or nothing.
//! - [`export`] and [`template`] write sheets that [`import`] reads back.
//!
//! This crate never chooses exit codes or HTTP statuses (the CLI and the HTTP server
//! map [`ImportError`] and [`TabularError`]), never draws a progress bar (it calls a
//! [`Progress`] callback), and never writes a secret: entities carry no password or
//! token hash, and no column takes one.

mod cell;
mod columns;
mod error;
mod export;
mod import;
mod kind;
mod parse;
mod plan;
mod read;
mod refusal;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use columns::{Column, columns};
pub use error::{ImportError, Problem, TabularError};
pub use export::{export, template};
pub use import::{ImportOptions, ImportReport, Progress, Stage, import};
pub use kind::{
    Format, Kind, MAX_PROBLEMS, MAX_ROWS, MAX_UNPACKED_BYTES, ParseOptions, UnknownFormat,
    UnknownKind,
};
pub use parse::{Row, parse};
pub use plan::{Change, ChangeKind, ImportPlan, PlanCounts, SecurityChange, plan};

/// The fuzz target's entry point (`fuzz/fuzz_targets/tabular_rows.rs`), shared with the
/// test that replays its corpus: the first byte picks the kind and the format, the rest
/// is the file. It must never panic.
///
/// The oracle, for a file that parses into `n` rows: the row limit is exact. With
/// `max_rows = n` the same rows come back; with `max_rows = n - 1` the file is refused
/// for having too many rows. Both are checked on every input that parses, so the
/// limit is tried at every size the fuzzer reaches, not only at 10,000. A failed
/// check panics, which the fuzzer reports as a crash. Returns how many rows the file
/// parsed into, if it parsed (so the corpus test can tell the oracle ran).
#[doc(hidden)]
pub fn fuzz_rows(data: &[u8]) -> Option<usize> {
    let (&selector, file) = data.split_first()?;
    let kind = Kind::ALL[usize::from(selector) % Kind::ALL.len()];
    let format = if selector & 0x80 == 0 {
        Format::Csv
    } else {
        Format::Xlsx
    };
    let with_max_rows = |max_rows: usize| ParseOptions {
        max_rows,
        max_problems: 100,
        max_unpacked_bytes: 64 * 1024 * 1024,
    };
    let rows = parse(kind, format, file, &with_max_rows(10_000)).ok()?;
    assert!(rows.len() <= 10_000, "{} rows past the limit", rows.len());
    // The cell budget (32 cells a row, `max_rows` + 1 rows) shrinks with `max_rows`
    // too: a sheet padded wide may meet it first, and that is the only other refusal.
    match parse(kind, format, file, &with_max_rows(rows.len())) {
        Ok(again) => assert_eq!(again, rows, "{kind:?} {format:?}: other rows"),
        Err(problems) => assert!(
            problems
                .iter()
                .all(|problem| problem.message.contains("filled cells")),
            "{kind:?} {format:?}: refused with max_rows = its own row count: {problems:?}"
        ),
    }
    if let Some(fewer) = rows.len().checked_sub(1) {
        match parse(kind, format, file, &with_max_rows(fewer)) {
            Ok(rows) => panic!(
                "{kind:?} {format:?}: {} rows accepted with max_rows = {fewer}",
                rows.len()
            ),
            Err(problems) => assert!(
                problems
                    .iter()
                    .any(|problem| problem.to_string().contains("more than")),
                "{kind:?} {format:?}: with max_rows = {fewer}, refused for another reason: \
                 {problems:?}"
            ),
        }
    }
    Some(rows.len())
}
