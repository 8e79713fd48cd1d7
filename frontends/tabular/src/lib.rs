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
//! - [`plan`] compares the rows with a [`Snapshot`](portcullis_engine::Snapshot): which entities would be created,
//!   updated or left unchanged, as engine operations and a readable summary
//!   ([`ImportPlan`]). This is what `--dry-run` shows.
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

pub use columns::{Column, columns};
pub use error::{ImportError, Problem, TabularError};
pub use export::{export, template};
pub use import::{ImportOptions, ImportReport, Progress, Stage, import};
pub use kind::{
    Format, Kind, MAX_PROBLEMS, MAX_ROWS, MAX_UNPACKED_BYTES, ParseOptions, UnknownFormat,
    UnknownKind,
};
pub use parse::{Row, parse};
pub use plan::{Change, ChangeKind, ImportPlan, PlanCounts, plan};

/// The fuzz target's entry point (`fuzz/fuzz_targets/tabular_rows.rs`), shared with the
/// test that replays its corpus: the first byte picks the kind and the format, the rest
/// is the file. It must never panic.
#[doc(hidden)]
pub fn fuzz_rows(data: &[u8]) {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(selector) % Kind::ALL.len()];
    let format = if selector & 0x80 == 0 {
        Format::Csv
    } else {
        Format::Xlsx
    };
    let options = ParseOptions {
        max_rows: 10_000,
        max_problems: 100,
        max_unpacked_bytes: 64 * 1024 * 1024,
    };
    let _ = parse(kind, format, file, &options);
}
