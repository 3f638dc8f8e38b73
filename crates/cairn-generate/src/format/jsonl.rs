//! JSONL: one Segment Spec message per line.

use std::io::Write;
use std::ops::Range;

use cairn_model::EventKind;

use super::{ChunkWriter, Failure, Render};
use crate::journey::simulate;
use crate::record::{Journey, Record, write_json_str, write_uuid};
use crate::timefmt::write_rfc3339_millis;

#[derive(Default)]
pub struct JsonlRender {
    journey: Journey,
}

impl Render for JsonlRender {
    type Chunk = Vec<u8>;
    const CHUNK_CUSTOMERS: u64 = 1024;

    fn render(&mut self, seed: u64, _chunk: u64, customers: Range<u64>) -> (Vec<u8>, u64) {
        let mut out = Vec::with_capacity((customers.end - customers.start) as usize * 3200);
        let mut events = 0;
        for index in customers {
            simulate(seed, index, &mut self.journey);
            for record in &self.journey.records {
                write_line(record, &self.journey, &mut out);
            }
            events += self.journey.records.len() as u64;
        }
        (out, events)
    }
}

pub struct JsonlWriter<W: Write> {
    out: W,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> JsonlWriter<W> {
        JsonlWriter { out }
    }
}

impl<W: Write> ChunkWriter<Vec<u8>> for JsonlWriter<W> {
    fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<(), Failure> {
        self.out.write_all(&chunk)?;
        Ok(())
    }

    fn finish(mut self) -> Result<(), Failure> {
        self.out.flush()?;
        Ok(())
    }
}

/// Renders one message and its newline, e.g.
/// `{"type":"track","messageId":"…","event":"Order Completed","userId":"user-7",
/// "timestamp":"2026-02-03T10:11:12.345Z","channel":"web","properties":{…}}`.
pub fn write_line(record: &Record, journey: &Journey, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(record.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"messageId\":\"");
    write_uuid(record.message_id, out);
    out.push(b'"');
    match record.kind {
        EventKind::Track => {
            out.extend_from_slice(b",\"event\":");
            write_json_str(record.name, out);
        }
        EventKind::Page | EventKind::Screen => {
            out.extend_from_slice(b",\"name\":");
            write_json_str(record.name, out);
        }
        _ => {}
    }
    if let Some(user) = record.user_id(journey) {
        out.extend_from_slice(b",\"userId\":");
        write_json_str(user, out);
    }
    if let Some(anon) = record.anonymous_id(journey) {
        out.extend_from_slice(b",\"anonymousId\":");
        write_json_str(anon, out);
    }
    out.extend_from_slice(b",\"timestamp\":\"");
    write_rfc3339_millis(record.at, out);
    out.extend_from_slice(b"\",\"channel\":");
    write_json_str(record.channel, out);
    if !record.properties.is_empty() {
        out.extend_from_slice(b",\"properties\":");
        record.properties.write_json(out);
    }
    if !record.traits.is_empty() {
        out.extend_from_slice(b",\"traits\":");
        record.traits.write_json(out);
    }
    out.extend_from_slice(b"}\n");
}
