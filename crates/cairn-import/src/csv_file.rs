//! CSV: one event per row, columns found by [`crate::CsvMapping`] or well-known names.
//!
//! The hot loop reads into one reused record, validates UTF-8 once per row (csv's
//! `StringRecord::from_byte_record` moves, it does not copy) and writes `properties`/`traits`
//! as JSON text with pre-escaped keys.

use std::path::{Path, PathBuf};

use cairn_model::{Event, EventKind, parse_timestamp};
use csv::{ByteRecord, StringRecord};

use crate::columns::{self, Roles};
use crate::ids::{IdMaker, Occurrences};
use crate::input::{self, Input, Progress};
use crate::json::ObjectWriter;
use crate::{ImportError, ImportOptions, Location, RecordError, RecordSource};

const SNIFF: usize = 64 * 1024;

pub struct CsvSource {
    file: PathBuf,
    reader: csv::Reader<Box<dyn std::io::Read + Send>>,
    gzip: bool,
    progress: Progress,
    delimiter: u8,
    names: Vec<String>,
    roles: Roles,
    /// A `type` column: rows whose value is a Segment message type take it as their kind.
    kind_column: Option<usize>,
    /// Columns copied into `properties` / `traits`, with their keys as JSON text.
    properties: Vec<(usize, String)>,
    traits: Vec<(usize, String)>,
    default_channel: String,
    /// Always `Some` between calls; taken while a row is validated as UTF-8.
    record: Option<ByteRecord>,
    records: u64,
    occurrences: Occurrences,
    ids: IdMaker,
    props_buf: ObjectWriter,
    traits_buf: ObjectWriter,
    done: bool,
}

impl CsvSource {
    pub fn open(path: &Path, gz_name: bool, options: &ImportOptions) -> Result<Self, ImportError> {
        let (
            Input {
                reader,
                progress,
                gzip,
            },
            head,
        ) = input::open_text(path, gz_name, SNIFF, 0)?;
        let delimiter = detect_delimiter(&head);
        let mut occurrences = Occurrences::default();
        if !gzip {
            // Estimate the row count from the first rows' length; capped, as a wrong guess
            // should not cost much memory.
            let lines = head.iter().filter(|&&b| b == b'\n').count().max(1);
            let estimate = progress.get().1 / (head.len() / lines).max(1) as u64;
            occurrences.reserve(estimate.min(8 << 20) as usize);
        }
        let reader = input::chain_head(head, reader);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .buffer_capacity(256 * 1024)
            .from_reader(reader);
        let names: Vec<String> = reader
            .byte_headers()
            .map_err(|e| csv_error(path, gzip, e))?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .collect();
        let (roles, _) = columns::resolve(path, &names, &options.mapping, None)?;
        // A `type` column holding Segment message types (as Cairn's own CSV export and the demo
        // generator write) gives each row its kind; any other value stays a property.
        let kind_column = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case("type"))
            .filter(|&i| !roles.is_mapped(i, &names));
        let mut properties = Vec::new();
        let mut traits = Vec::new();
        for (i, name) in names.iter().enumerate() {
            // An unnamed column is a spreadsheet's or pandas' row index: nothing to keep.
            if name.is_empty() || roles.is_mapped(i, &names) {
                continue;
            }
            match name.get(..5) {
                Some(prefix) if prefix.eq_ignore_ascii_case("case:") && name.len() > 5 => {
                    traits.push((i, ObjectWriter::key_fragment_of(&name[5..])));
                }
                _ => properties.push((i, ObjectWriter::key_fragment_of(name))),
            }
        }
        Ok(CsvSource {
            file: path.to_path_buf(),
            reader,
            gzip,
            progress,
            delimiter,
            names,
            roles,
            kind_column,
            properties,
            traits,
            default_channel: crate::default_channel(options),
            record: Some(ByteRecord::new()),
            records: 0,
            occurrences,
            ids: IdMaker::default(),
            props_buf: ObjectWriter::default(),
            traits_buf: ObjectWriter::default(),
            done: false,
        })
    }

    fn record_error(
        &self,
        line: Option<u64>,
        field: &str,
        reason: String,
        raw: String,
    ) -> RecordError {
        RecordError {
            file: self.file.clone(),
            location: Location {
                line,
                record: self.records,
            },
            field: field.to_string(),
            reason,
            raw: Some(raw),
        }
    }

    /// Turns one validated row into an event.
    fn convert(&mut self, row: &StringRecord) -> Result<Event, RecordError> {
        let line = row.position().map(|p| p.line());
        let fail = |this: &Self, col: usize, reason: String| {
            this.record_error(
                line,
                &this.names[col],
                reason,
                raw_line(row.iter(), this.delimiter),
            )
        };
        if row.len() != self.names.len() {
            return Err(self.record_error(
                line,
                "(row)",
                format!(
                    "expected {} fields like the header, found {}",
                    self.names.len(),
                    row.len()
                ),
                raw_line(row.iter(), self.delimiter),
            ));
        }
        let roles = &self.roles;
        let customer = row[roles.customer].trim();
        if customer.is_empty() {
            return Err(fail(
                self,
                roles.customer,
                "empty; every row needs a customer id".into(),
            ));
        }
        let event = row[roles.event].trim();
        if event.is_empty() {
            return Err(fail(
                self,
                roles.event,
                "empty; every row needs an event name".into(),
            ));
        }
        let time = &row[roles.time];
        let timestamp = match parse_timestamp(time) {
            Ok(t) => t,
            Err(e) => return Err(fail(self, roles.time, e.to_string())),
        };
        let value = match roles.value.map(|i| (i, row[i].trim())) {
            Some((i, v)) if !v.is_empty() => match v.parse::<f64>() {
                Ok(n) if n.is_finite() => Some(n),
                _ => return Err(fail(self, i, format!("expected a number, got {v:?}"))),
            },
            _ => None,
        };
        let channel = match roles.channel.map(|i| row[i].trim()) {
            Some(c) if !c.is_empty() => crate::channel_of(c),
            _ => self.default_channel.clone(),
        };
        // An empty id is filled in per chunk by `Occurrences::assign_ids`.
        let message_id = match roles.message_id.map(|i| row[i].trim()) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => String::new(),
        };
        let kind_cell = self
            .kind_column
            .map(|i| (i, EventKind::parse(row[i].trim())));
        let kind = kind_cell.and_then(|(_, k)| k).unwrap_or(EventKind::Track);
        self.props_buf.clear();
        for (i, key) in &self.properties {
            let cell = &row[*i];
            let is_kind = matches!(kind_cell, Some((k, Some(_))) if k == *i);
            if !cell.is_empty() && !is_kind {
                self.props_buf.key_fragment(key);
                self.props_buf.str_value(cell);
            }
        }
        self.traits_buf.clear();
        for (i, key) in &self.traits {
            let cell = &row[*i];
            if !cell.is_empty() {
                self.traits_buf.key_fragment(key);
                self.traits_buf.str_value(cell);
            }
        }
        Ok(Event {
            message_id,
            kind,
            event: event.to_string(),
            user_id: Some(customer.to_string()),
            anonymous_id: None,
            timestamp,
            sent_at: None,
            received_at: None,
            channel,
            value,
            group_id: None,
            previous_id: None,
            properties: self.props_buf.finish(),
            traits: self.traits_buf.finish(),
            context: None,
        })
    }
}

impl RecordSource for CsvSource {
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<Vec<Result<Event, RecordError>>>, ImportError> {
        if self.done {
            return Ok(None);
        }
        let max = max.max(1);
        let mut out = Vec::with_capacity(max.min(64 * 1024));
        while out.len() < max {
            // Invariant: `record` is put back before every return below.
            let mut record = self.record.take().unwrap_or_default();
            let more = self.reader.read_byte_record(&mut record);
            let more = match more {
                Ok(more) => more,
                Err(e) => {
                    self.record = Some(record);
                    return Err(csv_error(&self.file, self.gzip, e));
                }
            };
            if !more {
                self.record = Some(record);
                self.done = true;
                break;
            }
            self.records += 1;
            match StringRecord::from_byte_record(record) {
                Ok(row) => {
                    out.push(self.convert(&row));
                    self.record = Some(row.into_byte_record());
                }
                Err(e) => {
                    let col = e.utf8_error().field();
                    let record = e.into_byte_record();
                    let line = record.position().map(|p| p.line());
                    let raw = raw_line(
                        record
                            .iter()
                            .map(|f| String::from_utf8_lossy(f).into_owned()),
                        self.delimiter,
                    );
                    let field = self.names.get(col).map_or("(row)", String::as_str);
                    out.push(Err(self.record_error(
                        line,
                        field,
                        "not valid UTF-8 text".into(),
                        raw,
                    )));
                    self.record = Some(record);
                }
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        self.occurrences.assign_ids("csv", &mut out, &mut self.ids);
        Ok(Some(out))
    }

    fn progress(&self) -> (u64, u64) {
        self.progress.get()
    }
}

fn csv_error(file: &Path, gzip: bool, e: csv::Error) -> ImportError {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Input::read_error(gzip, file, io),
        other => ImportError::malformed(file, line, format!("{other:?}")),
    }
}

/// Comma, unless the header line has no comma but semicolons or tabs.
fn detect_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let count = |d: u8| line.iter().filter(|&&b| b == d).count();
    let (commas, semicolons, tabs) = (count(b','), count(b';'), count(b'\t'));
    if commas > 0 || (semicolons == 0 && tabs == 0) {
        b','
    } else if tabs > semicolons {
        b'\t'
    } else {
        b';'
    }
}

/// A row as CSV text again, for the quarantine file.
fn raw_line<I, S>(fields: I, delimiter: u8) -> String
where
    I: Iterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(delimiter as char);
        }
        let f = field.as_ref();
        if f.bytes()
            .any(|b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r')
        {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_delimiters() {
        assert_eq!(detect_delimiter(b"a,b;c\n"), b',');
        assert_eq!(detect_delimiter(b"a;b;c\n1,5;2;3"), b';');
        assert_eq!(detect_delimiter(b"a\tb\n"), b'\t');
        assert_eq!(detect_delimiter(b"single\n"), b',');
    }

    #[test]
    fn raw_lines_requote() {
        assert_eq!(
            raw_line(["a", "b,c", "d\"e"].iter(), b','),
            "a,\"b,c\",\"d\"\"e\""
        );
    }
}
