//! Scan files: the query-ready twin of each Parquet segment.
//!
//! Parquet is the durable, interchange format, but decoding it costs more per query than an
//! analysis may take. A scan file holds the few columns every analysis reads as plain
//! fixed-width little-endian arrays, memory-mapped and used in place without decoding:
//!
//! ```text
//! header   "CAIRNSC1" | version u32 | flags u32 | events u64 | customers u64      (32 bytes)
//! keys     [u32; customers]        customer key of each run, ascending
//! starts   [u32; customers + 1]    index of each customer's first event; last = events
//! times    [i64; events]           µs since epoch, ascending within a customer
//! names    [u32; events]           index into the manifest's event-name dictionary
//! channels [u16; events]           index into the manifest's channel dictionary
//! values   [f64; events]           NaN where none; only when flags & 1
//! ```
//! Each array starts on an 8-byte boundary. About 14 bytes per event, 22 with values.
//! A scan file is derived data: it can always be rebuilt from its Parquet segment.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

const MAGIC: &[u8; 8] = b"CAIRNSC1";
const VERSION: u32 = 1;
const HEADER: usize = 32;
const HAS_VALUES: u32 = 1;

/// The columns of a scan file, as plain vectors (for building one).
#[derive(Debug, Default, Clone)]
pub struct ScanColumns {
    pub keys: Vec<u32>,
    pub starts: Vec<u32>,
    pub times: Vec<i64>,
    pub names: Vec<u32>,
    pub channels: Vec<u16>,
    /// Empty when no event has a value.
    pub values: Vec<f64>,
}

struct Layout {
    keys: usize,
    starts: usize,
    times: usize,
    names: usize,
    channels: usize,
    values: usize,
    end: usize,
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn layout(events: usize, customers: usize, has_values: bool) -> Layout {
    let keys = HEADER;
    let starts = align8(keys + 4 * customers);
    let times = align8(starts + 4 * (customers + 1));
    let names = times + 8 * events;
    let channels = align8(names + 4 * events);
    let values = align8(channels + 2 * events);
    let end = if has_values {
        values + 8 * events
    } else {
        values
    };
    Layout {
        keys,
        starts,
        times,
        names,
        channels,
        values,
        end,
    }
}

/// Writes a scan file and fsyncs it; returns its size.
pub fn write(path: &Path, c: &ScanColumns) -> Result<u64> {
    let events = c.times.len();
    let customers = c.keys.len();
    debug_assert_eq!(c.starts.len(), customers + 1);
    let has_values = !c.values.is_empty();
    let l = layout(events, customers, has_values);
    let mut buf = vec![0u8; l.end];
    buf[..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
    buf[12..16].copy_from_slice(&(if has_values { HAS_VALUES } else { 0 }).to_le_bytes());
    buf[16..24].copy_from_slice(&(events as u64).to_le_bytes());
    buf[24..32].copy_from_slice(&(customers as u64).to_le_bytes());
    put(&mut buf, l.keys, &c.keys);
    put(&mut buf, l.starts, &c.starts);
    put(&mut buf, l.times, &c.times);
    put(&mut buf, l.names, &c.names);
    put(&mut buf, l.channels, &c.channels);
    if has_values {
        put(&mut buf, l.values, &c.values);
    }
    let mut f = File::create(path).at(path)?;
    f.write_all(&buf).at(path)?;
    f.sync_all().at(path)?;
    Ok(buf.len() as u64)
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
    has_values: bool,
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
        let has_values = !c.values.is_empty();
        let l = layout(c.times.len(), c.keys.len(), has_values);
        let mut words = vec![0u64; l.end / 8];
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        put(buf, l.keys, &c.keys);
        put(buf, l.starts, &c.starts);
        put(buf, l.times, &c.times);
        put(buf, l.names, &c.names);
        put(buf, l.channels, &c.channels);
        if has_values {
            put(buf, l.values, &c.values);
        }
        ScanData {
            backing: Backing::Owned(words),
            events: c.times.len(),
            customers: c.keys.len(),
            has_values,
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
        let has_values = word32(12) & HAS_VALUES != 0;
        let events = word64(16) as usize;
        let customers = word64(24) as usize;
        let l = layout(events, customers, has_values);
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
            has_values,
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
        layout(self.events, self.customers, self.has_values)
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
    pub fn names(&self) -> &[u32] {
        self.slice(self.layout().names, self.events)
    }
    pub fn channels(&self) -> &[u16] {
        self.slice(self.layout().channels, self.events)
    }
    pub fn values(&self) -> Option<&[f64]> {
        self.has_values
            .then(|| self.slice(self.layout().values, self.events))
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
            values: vec![f64::NAN, 9.5, f64::NAN],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.scan");
        write(&path, &c).unwrap();
        for data in [ScanData::open(&path).unwrap(), ScanData::from_columns(&c)] {
            assert_eq!(data.keys(), &[3, 7]);
            assert_eq!(data.times(), &[10, 20, 5]);
            assert_eq!(data.names(), &[0, 1, 0]);
            assert_eq!(data.channels(), &[1, 1, 0]);
            assert_eq!(data.values().unwrap()[1], 9.5);
            assert_eq!(data.find(7), Some(1));
            assert_eq!(data.rows(1), 2..3);
        }
        std::fs::write(&path, b"CAIRNSC1 but short").unwrap();
        assert!(ScanData::open(&path).is_err());
    }
}
