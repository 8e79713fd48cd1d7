//! The whole import: parse, plan, and one atomic write.

use portcullis_engine::{Actor, Engine, Error};

use crate::error::{ImportError, Problem};
use crate::kind::{Format, Kind, ParseOptions};
use crate::parse::parse_rows;
use crate::plan::{Change, Options, PlanCounts, SecurityChange, plan_with};
use crate::refusal::refuses_caller;

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading rows and checking each cell.
    Reading,
    /// Comparing rows with the store.
    Planning,
    /// Committing (one transaction: `done` jumps from 0 to `total`).
    Writing,
}

/// A progress report: `done` of `total` rows in a stage. Reports come every few
/// thousand rows and at the end of each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// How to import.
#[derive(Default)]
pub struct ImportOptions<'a> {
    /// Update entities that exist (matched by ID, else by name). Without it, a row
    /// naming an existing entity is a problem unless it changes nothing.
    pub update: bool,
    /// Plan and report, write nothing.
    pub dry_run: bool,
    /// Make the changes that lower someone's protection ([`SecurityChange`]): switch
    /// off or weaken a user's MFA, activate an inactive or expired user, add system
    /// roles. Without it, a file that makes any is refused (a dry run lists them).
    pub allow_security_changes: bool,
    pub limits: ParseOptions,
    /// Called as the import goes, for a progress bar.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub kind: Kind,
    pub dry_run: bool,
    /// The revision the write produced; `None` on a dry run or when nothing changed.
    pub revision: Option<u64>,
    pub counts: PlanCounts,
    /// One entry per row, in row order.
    pub changes: Vec<Change>,
    /// The changes among them that lower someone's protection, apart. An import
    /// that writes has either none or was allowed to make them.
    pub security_changes: Vec<SecurityChange>,
}

/// Imports a file of `kind` in `format` into `engine` on behalf of `actor`: the whole
/// file is read and its cells checked here, then what its rows ask for is committed
/// as one [`Engine::write`]. Either every row applies, or nothing is written and the
/// error lists every problem found: what the engine refuses is found, row by row, by
/// [`Engine::validate`], which a dry run, a file with problems of its own, or a
/// refused write asks (an import that succeeds applies its operations once).
pub fn import(
    engine: &Engine,
    actor: &Actor,
    kind: Kind,
    format: Format,
    bytes: &[u8],
    mut options: ImportOptions<'_>,
) -> Result<ImportReport, ImportError> {
    let mut report = |stage, done, total| {
        if let Some(progress) = options.progress.as_mut() {
            progress(Progress { stage, done, total });
        }
    };
    let parsed = parse_rows(kind, format, bytes, &options.limits, &mut |done, total| {
        report(Stage::Reading, done, total);
    });
    if parsed.fatal {
        return Err(ImportError::Problems(parsed.problems.into_vec()));
    }
    // Rows that read well are compared with the store, and checked by the engine,
    // even when others did not, so that one refusal lists every problem.
    let plan = plan_with(
        engine,
        actor,
        kind,
        parsed.rows,
        Options {
            update: options.update,
            allow_security_changes: options.allow_security_changes,
            judge_now: options.dry_run,
        },
        parsed.problems,
        &parsed.broken,
        &mut |done, total| report(Stage::Planning, done, total),
    )?;
    let counts = plan.counts();
    let changes = plan.changes().to_vec();
    let security_changes = plan.security_changes().to_vec();
    if !options.dry_run && !options.allow_security_changes && !security_changes.is_empty() {
        return Err(ImportError::Problems(
            security_changes
                .iter()
                .map(|change| {
                    Problem::cell(
                        change.line,
                        change.column,
                        format!(
                            "lowers the protection of user `{}`: {}; refused unless security changes are allowed (--allow-security-changes, or ?allow_security_changes=true over HTTP)",
                            change.name, change.change
                        ),
                    )
                })
                .collect(),
        ));
    }
    let mut outcome = ImportReport {
        kind,
        dry_run: options.dry_run,
        revision: None,
        counts,
        changes,
        security_changes,
    };
    if options.dry_run || plan.is_empty() {
        return Ok(outcome);
    }
    let total = counts.created + counts.updated;
    report(Stage::Writing, 0, total);
    match engine.write(actor, plan.ops()) {
        Ok(written) => {
            report(Stage::Writing, total, total);
            outcome.revision = Some(written.revision);
            Ok(outcome)
        }
        // A refusal of the caller, not of the file: a grant beyond its permissions
        // or a revoked token.
        Err(Error::Validation(error)) if refuses_caller(&error) => {
            Err(ImportError::Engine(Error::Validation(error)))
        }
        // The store changed since the check: the engine says again which rows.
        Err(Error::Validation(error)) => {
            Err(plan.refused(engine, actor, error, options.limits.max_problems))
        }
        Err(error) => Err(ImportError::Engine(error)),
    }
}

impl From<Vec<Problem>> for ImportError {
    fn from(problems: Vec<Problem>) -> ImportError {
        ImportError::Problems(problems)
    }
}
