//! What can go wrong: a [`Problem`] in a file (with its row and column), and the
//! errors of an import and an export. Front-ends map these to exit codes and HTTP
//! statuses; nothing here chooses one.

use std::fmt;

/// One thing wrong with a file or one of its rows.
///
/// Rows are numbered as a spreadsheet shows them: the header is row 1, the first entity
/// row 2 (in a CSV file, a record; a quoted value spanning several lines is still one
/// row). A problem about the whole file has no row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub row: Option<usize>,
    /// The column's header as the file writes it.
    pub column: Option<String>,
    pub message: String,
}

impl Problem {
    pub(crate) fn file(message: impl Into<String>) -> Problem {
        Problem {
            row: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn row(row: usize, message: impl Into<String>) -> Problem {
        Problem {
            row: Some(row),
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn cell(row: usize, column: &str, message: impl Into<String>) -> Problem {
        Problem {
            row: Some(row),
            column: Some(column.to_owned()),
            message: message.into(),
        }
    }
}

/// `row 3, column `Email`: …`.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, &self.column) {
            (Some(row), Some(column)) => write!(f, "row {row}, column `{column}`: ")?,
            (Some(row), None) => write!(f, "row {row}: ")?,
            (None, Some(column)) => write!(f, "column `{column}`: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// A list of problems that stops at a limit, then counts what it left out.
pub(crate) struct Problems {
    list: Vec<Problem>,
    limit: usize,
    left_out: usize,
}

impl Problems {
    pub(crate) fn new(limit: usize) -> Problems {
        Problems {
            list: Vec::new(),
            limit: limit.max(1),
            left_out: 0,
        }
    }

    pub(crate) fn push(&mut self, problem: Problem) {
        if self.list.len() < self.limit {
            self.list.push(problem);
        } else {
            self.left_out += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The problems by row (problems about the whole file first), each row's in the
    /// order they were found.
    pub(crate) fn into_vec(mut self) -> Vec<Problem> {
        self.list.sort_by_key(|problem| problem.row);
        if self.left_out > 0 {
            self.list.push(Problem::file(format!(
                "{} more problems are not listed",
                self.left_out
            )));
        }
        self.list
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file, or what its rows ask for, is wrong: every problem found, each with
    /// its row and column where it has one.
    #[error("the file has {} problem(s); nothing was imported", .0.len())]
    Problems(Vec<Problem>),
    /// The engine could not write (a storage failure, or it is shutting down), or it
    /// refused the caller (a grant beyond its permissions, a revoked token).
    #[error(transparent)]
    Engine(portcullis_engine::Error),
}

/// Why an export or a template could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TabularError {
    #[error("cannot write the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot build the workbook: {0}")]
    Xlsx(String),
}

impl From<csv::Error> for TabularError {
    fn from(error: csv::Error) -> TabularError {
        match error.into_kind() {
            csv::ErrorKind::Io(error) => TabularError::Io(error),
            other => TabularError::Io(std::io::Error::other(format!("{other:?}"))),
        }
    }
}

impl From<rust_xlsxwriter::XlsxError> for TabularError {
    fn from(error: rust_xlsxwriter::XlsxError) -> TabularError {
        TabularError::Xlsx(error.to_string())
    }
}
