//! JSONL: one Segment message per line, validated by [`cairn_model::parse_message`] exactly as
//! the HTTP API validates it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use cairn_model::{Event, MessageDefaults, parse_message};

use crate::input::{self, Input, Progress};
use crate::{ImportError, ImportOptions, Location, RecordError, RecordSource};

const SNIFF: usize = 8 * 1024;

pub struct JsonlSource {
    file: PathBuf,
    reader: BufReader<Box<dyn std::io::Read + Send>>,
    gzip: bool,
    progress: Progress,
    default_channel: Option<String>,
    line: Vec<u8>,
    line_no: u64,
    records: u64,
    done: bool,
}

impl JsonlSource {
    pub fn open(path: &Path, gz_name: bool, options: &ImportOptions) -> Result<Self, ImportError> {
        let (
            Input {
                reader,
                progress,
                gzip,
            },
            mut head,
        ) = input::open_text(path, gz_name, SNIFF, 0)?;
        if head.starts_with(b"\xef\xbb\xbf") {
            head.drain(..3);
        }
        Ok(JsonlSource {
            file: path.to_path_buf(),
            reader: BufReader::with_capacity(256 * 1024, input::chain_head(head, reader)),
            gzip,
            progress,
            default_channel: options.default_channel.clone(),
            line: Vec::new(),
            line_no: 0,
            records: 0,
            done: false,
        })
    }

    fn error(&self, field: &str, reason: String) -> RecordError {
        RecordError {
            file: self.file.clone(),
            location: Location {
                line: Some(self.line_no),
                record: self.records,
            },
            field: field.to_string(),
            reason,
            raw: Some(String::from_utf8_lossy(trim_line(&self.line)).into_owned()),
        }
    }

    fn convert(&self, text: &[u8]) -> Result<Event, RecordError> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| self.error("(json)", json_reason(&e)))?;
        let defaults = MessageDefaults {
            channel: self.default_channel.as_deref(),
            ..Default::default()
        };
        parse_message(&value, &defaults).map_err(|e| self.error(&e.field, e.reason))
    }
}

impl RecordSource for JsonlSource {
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<Vec<Result<Event, RecordError>>>, ImportError> {
        if self.done {
            return Ok(None);
        }
        let max = max.max(1);
        let mut out = Vec::with_capacity(max.min(16 * 1024));
        while out.len() < max {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Input::read_error(self.gzip, &self.file, e))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line_no += 1;
            let text = trim_line(&self.line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.records += 1;
            out.push(self.convert(text));
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(out))
    }

    fn progress(&self) -> (u64, u64) {
        self.progress.get()
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// serde_json's message without its "at line 1 column N" (always line 1 here), with the
/// column up front instead.
fn json_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let message = match full.rsplit_once(" at line ") {
        Some((message, _)) => message,
        None => full.as_str(),
    };
    format!("invalid JSON at column {}: {message}", e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_column() {
        let e = serde_json::from_slice::<serde_json::Value>(b"{\"a\": tru}").unwrap_err();
        assert_eq!(
            json_reason(&e),
            format!("invalid JSON at column {}: expected ident", e.column())
        );
        assert_eq!(trim_line(b"{}\r\n"), b"{}");
    }
}
