//! Bulk import: reading XES, CSV, JSONL and Parquet files into [`cairn_model::Event`]s.
//!
//! [`open`] picks a reader by the file's name ([`Format::detect`]) and returns a
//! [`RecordSource`], which hands out events in chunks so the caller can batch them into the
//! store, drive a progress bar ([`RecordSource::progress`]) and stop after too many bad records.
//! This crate does no storage and no printing: it returns values.
//!
//! # Two kinds of errors
//!
//! A bad record (a timestamp that does not parse, a missing customer, a JSON line of the wrong
//! shape) comes back as an `Err(`[`RecordError`]`)` item inside the chunk, naming the file,
//! line, record number and field, with the raw record text when there is one; reading goes on.
//! A problem after which nothing more can be read (XML that is not well-formed, a `.gz` that is
//! not gzip, binary junk, a CSV without a customer column) is an [`ImportError`] from
//! [`open`] or [`RecordSource::next_chunk`].
//!
//! # Formats
//!
//! - **XES** (IEEE 1849; `.xes`, `.xes.gz`): each `<trace>` is a customer, its `concept:name`
//!   the customer id; each `<event>` a `track` event named by its `concept:name`, at its
//!   `time:timestamp`. Every other event attribute becomes a property (ints and floats as JSON
//!   numbers, booleans as booleans, dates and ids as strings; nested attributes flattened as
//!   `parent.child`, lists skipped). Trace attributes other than `concept:name` become
//!   `traits`. The channel is the event's `channel` attribute, else the trace's, else
//!   [`ImportOptions::default_channel`], else `unknown`; the value is a numeric `value`,
//!   `revenue` or `amount` attribute. `<global>` defaults and log-level attributes are ignored.
//! - **CSV** (`.csv`, `.csv.gz`; comma, semicolon or tab separated, detected from the header):
//!   a header row is required. The customer, event and time columns come from
//!   [`CsvMapping`] or else from well-known names (see [`CsvMapping`]); pm4py's
//!   `case:concept:name`, `concept:name`, `time:timestamp` work as they are. Other `case:`
//!   columns become traits (without the prefix), the rest properties (as strings; empty cells
//!   are skipped).
//! - **JSONL** (`.jsonl`, `.ndjson`, `.json`, optionally `.gz`): one Segment message per line,
//!   validated by [`cairn_model::parse_message`] exactly as the HTTP API does.
//! - **Parquet** (`.parquet`): columns found like CSV's; `properties`, `traits` and `context`
//!   columns of JSON object text are taken as they are. This reads what Cairn's own segments
//!   and the demo generator write.
//!
//! Gzip is recognised by its magic bytes too, so a gzipped file named `.csv` reads fine.
//!
//! # Message ids
//!
//! A record without a message id of its own (XES events; CSV and Parquet rows without a
//! `message_id` column) gets
//! `derive_message_id(FORMAT, [customer, event, timestamp as decimal micros, occurrence])`,
//! where FORMAT is `xes`, `csv` or `parquet` and *occurrence* counts the earlier records with
//! the same customer, event and timestamp — within the same trace for XES, within the whole
//! file for CSV and Parquet. So importing the same file again yields identical ids (and the
//! store keeps nothing twice), while two genuinely repeated events stay two. For CSV and
//! Parquet that counter costs 10 to 20 bytes of memory per row while a file is read.

mod columns;
mod csv_file;
mod error;
mod ids;
mod input;
mod json;
mod jsonl;
mod parquet_file;
mod xes;

use std::path::Path;

use cairn_model::Event;

pub use error::{ImportError, Location, RecordError};

/// The file formats [`open`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Xes,
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// The format a file name says: `.xes`, `.csv`, `.jsonl`/`.ndjson`/`.json` (each optionally
    /// followed by `.gz`) or `.parquet`, case-insensitively.
    pub fn detect(path: &Path) -> Result<Format, ImportError> {
        let unknown = || ImportError::UnknownFormat {
            file: path.to_path_buf(),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(unknown)?
            .to_ascii_lowercase();
        let (stem, gz) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let ext = stem
            .rsplit_once('.')
            .map(|(_, ext)| ext)
            .ok_or_else(unknown)?;
        match ext {
            "xes" => Ok(Format::Xes),
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "parquet" if !gz => Ok(Format::Parquet),
            _ => Err(unknown()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Xes => "xes",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// Which columns of a CSV or Parquet file hold what. A `None` field means: the first column
/// (compared case-insensitively) among the well-known names:
///
/// | role | names tried, in order |
/// |---|---|
/// | customer | `customer_id`, `customer`, `user_id`, `userId`, `case:concept:name`, `case_id`, `case`, `caseid` |
/// | event | `event`, `activity`, `concept:name`, `event_name`, `name`, `action` |
/// | time | `timestamp`, `time`, `time:timestamp`, `ts`, `date`, `datetime` |
/// | channel | `channel`, `case:channel` |
/// | value | `value`, `revenue`, `amount` |
/// | message_id | `message_id`, `messageId`, `event_id` |
///
/// Customer, event and time are required.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CsvMapping {
    pub customer: Option<String>,
    pub event: Option<String>,
    pub time: Option<String>,
    pub channel: Option<String>,
    pub value: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Column mapping, used by CSV and Parquet.
    pub mapping: CsvMapping,
    /// The channel of events whose record names none.
    pub default_channel: Option<String>,
}

/// A stream of records read from one file.
pub trait RecordSource: Send {
    /// Up to `max` records; `Ok(None)` at end of file. Record-level problems come back as
    /// `Err(RecordError)` items so the caller can count them against `--max-errors` and
    /// quarantine them; a problem that makes the rest of the file unreadable is an
    /// [`ImportError`].
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<Vec<Result<Event, RecordError>>>, ImportError>;

    /// (bytes consumed so far, total bytes of the file on disk), for a progress bar. For gzip
    /// the compressed bytes read so far; for Parquet an estimate from the rows read.
    fn progress(&self) -> (u64, u64);
}

/// Opens `path` in the format its name says.
pub fn open(path: &Path, options: &ImportOptions) -> Result<Box<dyn RecordSource>, ImportError> {
    let format = Format::detect(path)?;
    open_as(path, format, options)
}

/// Opens `path` as `format`, whatever its name.
pub fn open_as(
    path: &Path,
    format: Format,
    options: &ImportOptions,
) -> Result<Box<dyn RecordSource>, ImportError> {
    let gz_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(match format {
        Format::Xes => Box::new(xes::XesSource::open(path, gz_name, options)?),
        Format::Csv => Box::new(csv_file::CsvSource::open(path, gz_name, options)?),
        Format::Jsonl => Box::new(jsonl::JsonlSource::open(path, gz_name, options)?),
        Format::Parquet => Box::new(parquet_file::ParquetSource::open(path, options)?),
    })
}

/// Reads a whole file into memory: for tests and small files.
pub fn read_all(
    path: &Path,
    options: &ImportOptions,
) -> Result<Vec<Result<Event, RecordError>>, ImportError> {
    let mut source = open(path, options)?;
    let mut all = Vec::new();
    while let Some(chunk) = source.next_chunk(64 * 1024)? {
        all.extend(chunk);
    }
    Ok(all)
}

/// A channel name normalised; names that already are (the usual case) are only copied.
fn channel_of(raw: &str) -> String {
    let normal = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if normal {
        raw.to_string()
    } else {
        cairn_model::channel::normalize_channel(raw)
    }
}

/// The channel for records that name none: the option, normalised, or `unknown`.
fn default_channel(options: &ImportOptions) -> String {
    options
        .default_channel
        .as_deref()
        .map(cairn_model::channel::normalize_channel)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| cairn_model::channel::UNKNOWN_CHANNEL.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_fast_path_agrees_with_the_model() {
        for raw in [
            "web",
            "call_center",
            "Call Center",
            " sms ",
            "e-mail",
            "ÉCOLE",
            "x1",
        ] {
            assert_eq!(
                channel_of(raw),
                cairn_model::channel::normalize_channel(raw),
                "{raw}"
            );
        }
    }

    #[test]
    fn detects_formats_by_name() {
        let check = |name: &str, want: Option<Format>| {
            assert_eq!(Format::detect(Path::new(name)).ok(), want, "{name}");
        };
        check("a.xes", Some(Format::Xes));
        check("dir/A.XES.GZ", Some(Format::Xes));
        check("a.csv", Some(Format::Csv));
        check("a.csv.gz", Some(Format::Csv));
        check("a.jsonl", Some(Format::Jsonl));
        check("a.ndjson.gz", Some(Format::Jsonl));
        check("a.json", Some(Format::Jsonl));
        check("a.parquet", Some(Format::Parquet));
        check("a.parquet.gz", None);
        check("a.txt", None);
        check("a.gz", None);
        check("csv", None);
        let err = Format::detect(Path::new("data/x.txt")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("data/x.txt: unknown file format"),
            "{err}"
        );
    }
}
