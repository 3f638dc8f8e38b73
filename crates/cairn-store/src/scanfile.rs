//! Scan files: the query-ready twin of each Parquet segment.
//!
//! Parquet is the durable, interchange format, but decoding it costs more per query than an
//! analysis may take. A scan file holds the few columns every analysis reads as plain
//! fixed-width little-endian arrays, memory-mapped and used in place without decoding:
//!
//! ```text
//! header     "CAIRNSC2" | version u32 | flags u32 | events u64 | customers u64 | values u64  (40 bytes)
//! keys       [u32; customers]      customer key of each run, ascending
//! starts     [u32; customers + 1]  index of each customer's first event; last = events
//! times      [i64; events]         µs since epoch, ascending within a customer
//! names      [u16; events]         index into the manifest's event-name dictionary
//! channels   [u16; events]         index into the manifest's channel dictionary
//! value_rows [u32; values]         rows that carry a value, ascending (most events carry none)
//! value_vals [f64; values]         their values
//! ```
//! Each array starts on an 8-byte boundary: 12 bytes per event plus 12 per valued event.
//! A scan file is derived data: it can always be rebuilt from its Parquet segment.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

const MAGIC: &[u8; 8] = b"CAIRNSC2";
const VERSION: u32 = 2;
const HEADER: usize = 40;

/// The columns of a scan file, as plain vectors (for building one).
#[derive(Debug, Default, Clone)]
pub struct ScanColumns {
    pub keys: Vec<u32>,
    pub starts: Vec<u32>,
    pub times: Vec<i64>,
    pub names: Vec<u16>,
    pub channels: Vec<u16>,
    /// Rows (ascending) that carry a value, and the values.
    pub value_rows: Vec<u32>,
    pub value_vals: Vec<f64>,
}

struct Layout {
    keys: usize,
    starts: usize,
    times: usize,
    names: usize,
    channels: usize,
    value_rows: usize,
    value_vals: usize,
    end: usize,
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn layout(events: usize, customers: usize, values: usize) -> Layout {
    let keys = HEADER;
    let starts = align8(keys + 4 * customers);
    let times = align8(starts + 4 * (customers + 1));
    let names = times + 8 * events;
    let channels = align8(names + 2 * events);
    let value_rows = align8(channels + 2 * events);
    let value_vals = align8(value_rows + 4 * values);
    let end = value_vals + 8 * values;
    Layout {
        keys,
        starts,
        times,
        names,
        channels,
        value_rows,
        value_vals,
        end,
    }
}

/// Writes a scan file and fsyncs it; returns its size.
pub fn write(path: &Path, c: &ScanColumns) -> Result<u64> {
    let l = layout(c.times.len(), c.keys.len(), c.value_rows.len());
    let mut buf = vec![0u8; l.end];
    fill(&mut buf, &l, c);
    let mut f = File::create(path).at(path)?;
    f.write_all(&buf).at(path)?;
    f.sync_all().at(path)?;
    Ok(buf.len() as u64)
}

fn fill(buf: &mut [u8], l: &Layout, c: &ScanColumns) {
    debug_assert_eq!(c.starts.len(), c.keys.len() + 1);
    buf[..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
    buf[16..24].copy_from_slice(&(c.times.len() as u64).to_le_bytes());
    buf[24..32].copy_from_slice(&(c.keys.len() as u64).to_le_bytes());
    buf[32..40].copy_from_slice(&(c.value_rows.len() as u64).to_le_bytes());
    put(buf, l.keys, &c.keys);
    put(buf, l.starts, &c.starts);
    put(buf, l.times, &c.times);
    put(buf, l.names, &c.names);
    put(buf, l.channels, &c.channels);
    put(buf, l.value_rows, &c.value_rows);
    put(buf, l.value_vals, &c.value_vals);
}

fn put<T: bytemuck::Pod>(buf: &mut [u8], at: usize, items: &[T]) {
    let bytes: &[u8] = bytemuck::cast_slice(items);
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

enum Backing {
    Mapped(memmap2::Mmap),
    /// u64 words, so the arrays inside are 8-byte aligned like in a mapping.
    Owned(Vec<u64>),
}

/// A scan file in memory: mapped from disk, or built in memory for events still in the log.
pub struct ScanData {
    backing: Backing,
    events: usize,
    customers: usize,
    values: usize,
}

impl ScanData {
    pub fn open(path: &Path) -> Result<ScanData> {
        let file = File::open(path).at(path)?;
        // SAFETY: scan files are immutable once written (they are created under a new name and
        // only ever deleted, never modified), so the mapping cannot change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
        ScanData::check(Backing::Mapped(map)).map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_columns(c: &ScanColumns) -> ScanData {
        let l = layout(c.times.len(), c.keys.len(), c.value_rows.len());
        let mut words = vec![0u64; l.end / 8];
        fill(bytemuck::cast_slice_mut(&mut words), &l, c);
        ScanData {
            backing: Backing::Owned(words),
            events: c.times.len(),
            customers: c.keys.len(),
            values: c.value_rows.len(),
        }
    }

    fn check(backing: Backing) -> Result<ScanData, String> {
        let bytes: &[u8] = match &backing {
            Backing::Mapped(m) => m,
            Backing::Owned(w) => bytemuck::cast_slice(w),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err("not a cairn scan file".into());
        }
        let word32 =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let word64 = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        if word32(8) != VERSION {
            return Err(format!("scan file version {} not supported", word32(8)));
        }
        let events = word64(16) as usize;
        let customers = word64(24) as usize;
        let values = word64(32) as usize;
        // Checked arithmetic: a damaged header must give an error, not an overflow.
        let fits = events
            .checked_mul(24)
            .and(customers.checked_mul(16))
            .and(values.checked_mul(24))
            .is_some();
        if !fits {
            return Err("impossible counts in the header".into());
        }
        let l = layout(events, customers, values);
        if bytes.len() != l.end {
            return Err(format!(
                "size {} does not match its header ({} expected)",
                bytes.len(),
                l.end
            ));
        }
        let data = ScanData {
            backing,
            events,
            customers,
            values,
        };
        let starts = data.starts();
        if starts.first() != Some(&0) || starts.last().copied() != Some(events as u32) {
            return Err("customer offsets do not cover the events".into());
        }
        Ok(data)
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(w) => bytemuck::cast_slice(w),
        }
    }

    fn layout(&self) -> Layout {
        layout(self.events, self.customers, self.values)
    }

    fn slice<T: bytemuck::Pod>(&self, at: usize, n: usize) -> &[T] {
        // Alignment and bounds hold by construction: `check` verified the size against the
        // layout, and every array starts 8-byte aligned in an 8-byte aligned buffer.
        bytemuck::cast_slice(&self.bytes()[at..at + n * std::mem::size_of::<T>()])
    }

    pub fn events(&self) -> usize {
        self.events
    }
    pub fn keys(&self) -> &[u32] {
        self.slice(self.layout().keys, self.customers)
    }
    pub fn starts(&self) -> &[u32] {
        self.slice(self.layout().starts, self.customers + 1)
    }
    pub fn times(&self) -> &[i64] {
        self.slice(self.layout().times, self.events)
    }
    pub fn names(&self) -> &[u16] {
        self.slice(self.layout().names, self.events)
    }
    pub fn channels(&self) -> &[u16] {
        self.slice(self.layout().channels, self.events)
    }
    /// Fills `out` (one slot per row of `rows`) with the values of those rows, NaN where none.
    pub fn values_into(&self, rows: std::ops::Range<usize>, out: &mut Vec<f64>) {
        out.clear();
        out.resize(rows.len(), f64::NAN);
        if self.values == 0 {
            return;
        }
        let l = self.layout();
        let value_rows: &[u32] = self.slice(l.value_rows, self.values);
        let value_vals: &[f64] = self.slice(l.value_vals, self.values);
        let from = value_rows.partition_point(|&r| (r as usize) < rows.start);
        for (&r, &v) in value_rows[from..].iter().zip(&value_vals[from..]) {
            if r as usize >= rows.end {
                break;
            }
            out[r as usize - rows.start] = v;
        }
    }

    /// The index of `key` among this file's customers.
    pub fn find(&self, key: u32) -> Option<usize> {
        self.keys().binary_search(&key).ok()
    }

    /// Row range of the customer at index `i`.
    pub fn rows(&self, i: usize) -> std::ops::Range<usize> {
        let s = self.starts();
        s[i] as usize..s[i + 1] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_reads_back() {
        let c = ScanColumns {
            keys: vec![3, 7],
            starts: vec![0, 2, 3],
            times: vec![10, 20, 5],
            names: vec![0, 1, 0],
            channels: vec![1, 1, 0],
            value_rows: vec![1, 2],
            value_vals: vec![9.5, 1.0],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.scan");
        write(&path, &c).unwrap();
        for data in [ScanData::open(&path).unwrap(), ScanData::from_columns(&c)] {
            assert_eq!(data.keys(), &[3, 7]);
            assert_eq!(data.times(), &[10, 20, 5]);
            assert_eq!(data.names(), &[0, 1, 0]);
            assert_eq!(data.channels(), &[1, 1, 0]);
            let mut v = Vec::new();
            data.values_into(0..2, &mut v);
            assert!(v[0].is_nan() && v[1] == 9.5);
            data.values_into(2..3, &mut v);
            assert_eq!(v, [1.0]);
            assert_eq!(data.find(7), Some(1));
            assert_eq!(data.rows(1), 2..3);
        }
        std::fs::write(&path, b"CAIRNSC2 but short").unwrap();
        assert!(ScanData::open(&path).is_err());
    }
}
