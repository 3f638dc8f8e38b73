//! CSV: flat columns for spreadsheets and simple importers.
//!
//! `customer_id` is the user id when the message has one, else the anonymous id; the
//! `anonymous_id` column is filled only when both are known (the `identify` that links them), so
//! each row names one customer and the link is still there. `value` is revenue (negative for
//! refunds), `score` a survey score; properties without a column are left out.

use std::io::Write;
use std::ops::Range;

use super::{ChunkWriter, Failure, Render};
use crate::journey::simulate;
use crate::record::{Journey, Record, write_uuid};
use crate::timefmt::write_rfc3339_millis;

pub const HEADER: &str = "message_id,type,customer_id,anonymous_id,event,timestamp,channel,value,product,campaign,score\n";

#[derive(Default)]
pub struct CsvRender {
    journey: Journey,
    cell: Vec<u8>,
}

impl Render for CsvRender {
    type Chunk = Vec<u8>;
    const CHUNK_CUSTOMERS: u64 = 1024;

    fn render(&mut self, seed: u64, _chunk: u64, customers: Range<u64>) -> (Vec<u8>, u64) {
        let mut out = Vec::with_capacity((customers.end - customers.start) as usize * 1500);
        let mut events = 0;
        for index in customers {
            simulate(seed, index, &mut self.journey);
            for record in &self.journey.records {
                write_row(record, &self.journey, &mut out, &mut self.cell);
            }
            events += self.journey.records.len() as u64;
        }
        (out, events)
    }
}

pub struct CsvWriter<W: Write> {
    out: W,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(mut out: W) -> Result<CsvWriter<W>, Failure> {
        out.write_all(HEADER.as_bytes())?;
        Ok(CsvWriter { out })
    }
}

impl<W: Write> ChunkWriter<Vec<u8>> for CsvWriter<W> {
    fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<(), Failure> {
        self.out.write_all(&chunk)?;
        Ok(())
    }

    fn finish(mut self) -> Result<(), Failure> {
        self.out.flush()?;
        Ok(())
    }
}

fn write_row(record: &Record, journey: &Journey, out: &mut Vec<u8>, cell: &mut Vec<u8>) {
    write_uuid(record.message_id, out);
    out.push(b',');
    out.extend_from_slice(record.kind.as_str().as_bytes());
    out.push(b',');
    let user = record.user_id(journey);
    let anon = record.anonymous_id(journey);
    write_cell(user.or(anon).unwrap_or_default().as_bytes(), out);
    out.push(b',');
    if user.is_some() {
        write_cell(anon.unwrap_or_default().as_bytes(), out);
    }
    out.push(b',');
    write_cell(record.event_name().as_bytes(), out);
    out.push(b',');
    write_rfc3339_millis(record.at, out);
    out.push(b',');
    write_cell(record.channel.as_bytes(), out);
    for value in [
        record.revenue(),
        record.properties.get("product"),
        record.properties.get("campaign"),
        record.properties.get("score"),
    ] {
        out.push(b',');
        if let Some(v) = value {
            cell.clear();
            v.write_text(cell);
            write_cell(cell, out);
        }
    }
    out.push(b'\n');
}

/// Writes a cell, quoted (with quotes doubled) when it holds a comma, a quote or a line break.
pub fn write_cell(cell: &[u8], out: &mut Vec<u8>) {
    if !cell
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(cell);
        return;
    }
    out.push(b'"');
    for &b in cell {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Val;

    #[test]
    fn quotes_only_when_needed() {
        let check = |cell: &str, want: &str| {
            let mut out = Vec::new();
            write_cell(cell.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        };
        check("Trail Runner", "Trail Runner");
        check("a,b", "\"a,b\"");
        check("say \"hi\"", "\"say \"\"hi\"\"\"");
        check("two\nlines", "\"two\nlines\"");
        check("", "");
    }

    #[test]
    fn money_cells_are_plain_numbers() {
        let mut cell = Vec::new();
        Val::Money(-1999).write_text(&mut cell);
        assert_eq!(cell, b"-19.99");
    }
}
