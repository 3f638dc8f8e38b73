//! What can go wrong while reading a file, and where.
//!
//! Two levels: a [`RecordError`] spoils one record and the reader goes on with the next (the
//! caller counts these against its error budget and quarantines them); an [`ImportError`] means
//! the rest of the file cannot be read at all.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based text line of the record's start, for formats that have lines (CSV, JSONL, and
    /// XES, where it is the line of the `<event>` tag).
    pub line: Option<u64>,
    /// 1-based index of the record (row, line or event) among the file's records.
    pub record: u64,
}

/// One record that could not be turned into an event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    pub file: PathBuf,
    pub location: Location,
    /// The field (column, attribute or JSON name) that is wrong, or a parenthesised pseudo
    /// field such as `(json)` or `(row)` when the record as a whole is.
    pub field: String,
    pub reason: String,
    /// The record's text as found in the file, for the quarantine file, when available.
    pub raw: Option<String>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.location.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": record {}: field \"{}\": {}",
            self.location.record, self.field, self.reason
        )
    }
}

impl std::error::Error for RecordError {}

/// A problem that stops the reading of a whole file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be read on: bad XML, not gzip, binary junk, not parquet, a required CSV
    /// column missing, ...
    #[error("{}: {reason}", place(file, *line))]
    Malformed {
        file: PathBuf,
        line: Option<u64>,
        reason: String,
    },
    #[error(
        "{}: unknown file format; expected .xes, .xes.gz, .csv, .csv.gz, .jsonl, .ndjson, .json (each optionally .gz) or .parquet",
        file.display()
    )]
    UnknownFormat { file: PathBuf },
    #[error("{}: the file is empty", file.display())]
    EmptyFile { file: PathBuf },
}

impl ImportError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ImportError::Io { file, .. }
            | ImportError::Malformed { file, .. }
            | ImportError::UnknownFormat { file }
            | ImportError::EmptyFile { file } => file,
        }
    }

    pub(crate) fn malformed(file: &Path, line: Option<u64>, reason: impl Into<String>) -> Self {
        ImportError::Malformed {
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(file: &Path, source: std::io::Error) -> Self {
        ImportError::Io {
            file: file.to_path_buf(),
            source,
        }
    }
}

fn place(file: &Path, line: Option<u64>) -> String {
    match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_and_where() {
        let e = RecordError {
            file: PathBuf::from("a.csv"),
            location: Location {
                line: Some(17),
                record: 16,
            },
            field: "timestamp".into(),
            reason: "expected RFC 3339".into(),
            raw: None,
        };
        assert_eq!(
            e.to_string(),
            "a.csv:17: record 16: field \"timestamp\": expected RFC 3339"
        );
        let e = RecordError {
            location: Location {
                line: None,
                record: 3,
            },
            ..e
        };
        assert_eq!(
            e.to_string(),
            "a.csv: record 3: field \"timestamp\": expected RFC 3339"
        );
        let m = ImportError::malformed(Path::new("x.xes"), Some(4), "unclosed <trace>");
        assert_eq!(m.to_string(), "x.xes:4: unclosed <trace>");
        let m = ImportError::malformed(Path::new("x.xes"), None, "not a gzip file");
        assert_eq!(m.to_string(), "x.xes: not a gzip file");
    }
}
