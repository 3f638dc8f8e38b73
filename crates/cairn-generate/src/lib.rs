//! Synthetic multi-channel customer journeys, for demos, tests and benchmarks.
//!
//! [`generate`] simulates a population of customers of a fictional outdoor-gear shop (see
//! [`journey`] for the shapes their journeys take: every lifecycle stage with drop-offs, loops,
//! skipped steps, channel switches, anonymous visitors who identify, revenue, refunds, survey
//! scores, churn) and hands each customer's events to a sink, customer after customer;
//! [`write_file`] writes them to a file in the format its extension names:
//!
//! - **JSONL**: one Segment Spec message per line — `type`, `messageId` (a UUID v4), `event`
//!   (track) or `name` (page, screen), `userId` and/or `anonymousId`, `timestamp` (RFC 3339 with
//!   milliseconds, UTC), `channel`, `properties` (revenue in `properties.revenue`), `traits`
//!   (identify). `cairn_model::parse_message` reads each line back into exactly the event
//!   [`generate`] hands out.
//! - **CSV**: `message_id,type,customer_id,anonymous_id,event,timestamp,channel,value,product,
//!   campaign,score`, see [`OutputFormat::Csv`].
//! - **Parquet**: `message_id, type, event, user_id, anonymous_id, timestamp` (µs, UTC),
//!   `channel, value, properties, traits` (JSON text); ZSTD, row groups of about a million rows.
//!
//! Two promises:
//! - **Deterministic.** The same `customers` and `seed` give the same events, and byte-identical
//!   JSONL and CSV files, on any machine and with any future build: the generator has its own
//!   PRNG ([`rng`]), uses no platform math functions, and its time window is fixed (from
//!   2026-01-01T00:00:00Z), never "now". Customer `i` is the same in a population of 10 and of
//!   10 million. Parquet files are byte-identical too for a given build (the bytes also depend
//!   on the `parquet` and `zstd` crates' versions).
//! - **Streaming.** Nothing holds more than a chunk of customers per worker thread: about a
//!   thousand customers for text, one encoded row group for Parquet (some 170 MB in all with two
//!   workers), whatever the number of customers.

pub mod catalog;
mod format;
pub mod journey;
pub mod record;
pub mod rng;
pub mod timefmt;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use cairn_model::Event;

use crate::format::{
    CsvRender, CsvWriter, Failure, JsonlRender, JsonlWriter, ParquetRender, ParquetWriter, Plan,
};
use crate::record::Journey;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// How many customers (people, not events: about 12 events each).
    pub customers: u64,
    pub seed: u64,
}

/// The file formats [`write_file`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One Segment Spec message per line.
    Jsonl,
    /// Flat columns with a header: `message_id,type,customer_id,anonymous_id,event,timestamp,
    /// channel,value,product,campaign,score`. `customer_id` is the user id, or the anonymous id
    /// before identification; `anonymous_id` is filled only when both are known (the
    /// `identify`); `value` is revenue (negative for refunds), `score` a survey score.
    Csv,
    /// One row per event, properties and traits as JSON text; ZSTD-compressed.
    Parquet,
}

impl OutputFormat {
    /// The format a file name implies: `.jsonl`, `.ndjson`, `.json`, `.csv`, `.parquet`
    /// (any case).
    pub fn from_path(path: &Path) -> Option<OutputFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(OutputFormat::Jsonl),
            "csv" => Some(OutputFormat::Csv),
            "parquet" => Some(OutputFormat::Parquet),
            _ => None,
        }
    }
}

/// What [`write_file`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateSummary {
    pub customers: u64,
    pub events: u64,
    /// The size of the file.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(
        "{}: unknown output format; expected a .jsonl, .ndjson, .json, .csv or .parquet file",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: writing parquet: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
}

/// Calls `sink` with each customer's events, in time order, customer after customer.
///
/// The slice is reused: copy what you keep.
pub fn generate(options: &GenerateOptions, mut sink: impl FnMut(&[Event])) {
    let mut journey = Journey::default();
    let mut events = Vec::new();
    for index in 0..options.customers {
        journey::simulate(options.seed, index, &mut journey);
        events.clear();
        events.extend(journey.records.iter().map(|r| r.to_event(&journey)));
        sink(&events);
    }
}

/// Calls `sink` with each customer's [`Journey`], the generator's compact form of the events:
/// [`generate`] without building an [`Event`] (and its strings) per message.
pub fn generate_journeys(options: &GenerateOptions, mut sink: impl FnMut(&Journey)) {
    let mut journey = Journey::default();
    for index in 0..options.customers {
        journey::simulate(options.seed, index, &mut journey);
        sink(&journey);
    }
}

/// Generates `options.customers` customers into `path`, in the format its extension names
/// (see [`OutputFormat::from_path`]), replacing the file if it exists.
///
/// Customers are rendered on one worker thread per core (the file is the same whatever the
/// number of cores); `progress` is called on the calling thread with the number of customers
/// written so far, after every chunk of a few thousand customers and at the end.
pub fn write_file(
    options: &GenerateOptions,
    path: &Path,
    progress: impl FnMut(u64),
) -> Result<GenerateSummary, GenerateError> {
    let format = OutputFormat::from_path(path).ok_or_else(|| GenerateError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let io = |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    // Text chunks are larger than the buffer and go straight through; the buffer gathers the
    // Parquet writer's many small writes.
    let out = BufWriter::with_capacity(256 << 10, file);
    let written = match format {
        OutputFormat::Jsonl => format::run(
            options,
            Plan::default_for::<JsonlRender>(),
            JsonlRender::default,
            JsonlWriter::new(out),
            progress,
        ),
        OutputFormat::Csv => CsvWriter::new(out).and_then(|w| {
            format::run(
                options,
                Plan::default_for::<CsvRender>(),
                CsvRender::default,
                w,
                progress,
            )
        }),
        OutputFormat::Parquet => ParquetWriter::new(out).and_then(|(w, factory)| {
            let render = || ParquetRender::new(factory.clone());
            format::run(
                options,
                Plan::default_for::<ParquetRender>(),
                render,
                w,
                progress,
            )
        }),
    };
    let events = written.map_err(|failure| match failure {
        Failure::Io(source) => io(source),
        Failure::Parquet(source) => GenerateError::Parquet {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    Ok(GenerateSummary {
        customers: options.customers,
        events,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension() {
        let check = |name: &str, want| assert_eq!(OutputFormat::from_path(Path::new(name)), want);
        check("a.jsonl", Some(OutputFormat::Jsonl));
        check("a.NDJSON", Some(OutputFormat::Jsonl));
        check("dir.x/a.json", Some(OutputFormat::Jsonl));
        check("a.csv", Some(OutputFormat::Csv));
        check("a.parquet", Some(OutputFormat::Parquet));
        check("a.txt", None);
        check("jsonl", None);
    }
}
