//! Scan files: the query-ready twin of each Parquet segment.
//!
//! Parquet is the durable, interchange format, but decoding it costs more per query than an
//! analysis may take. A scan file holds the few columns every analysis reads, memory-mapped,
//! in forms that decode at hundreds of millions of events per second:
//!
//! ```text
//! header       "CAIRNSC3" | version u32 | flags u32 | events u64 | customers u64 | values u64
//!              | time_bytes u64 | first_time i64 | last_time i64                       (64 bytes)
//! keys         [u32; customers]      customer key of each run, ascending
//! starts       [u32; customers + 1]  index of each customer's first event; last = events
//! time_starts  [u64; customers + 1]  byte offset of each customer's times in `times`
//! names        [u8 or u16; events]   index into the manifest's event-name dictionary
//! channels     [u8 or u16; events]   index into the manifest's channel dictionary
//! value_rows   [u32; values]         rows that carry a value, ascending (most events carry none)
//! value_vals   [f64; values]         their values
//! times        [u8; time_bytes]      per customer: the first time (µs since epoch, zigzag
//!                                    LEB128), then each later time as the LEB128 difference
//!                                    from the one before (times ascend within a customer)
//! ```
//! Flags: bit 0 set = names are one byte each, bit 1 = channels are (when every index in the
//! file is below 256, which is the common case); bits 2–3 = the unit the times are stored in
//! (0 = µs, 1 = ms, 2 = s): the largest that divides every time in the file, since most
//! sources record milliseconds or seconds. Each array starts on an 8-byte boundary.
//!
//! Why not plain 8-byte times: the scan file is a second copy of the hot columns, and at 12
//! bytes per event it made the store larger than a DuckDB database of the same data. Deltas
//! between a customer's events take 3–4 bytes; decoding them costs a few nanoseconds per
//! event, far below what any analysis spends per event.
//!
//! A scan file is derived data: it can always be rebuilt from its Parquet segment. Reading a
//! damaged one never panics; it yields wrong times instead (the Parquet file is the truth).

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

const MAGIC: &[u8; 8] = b"CAIRNSC3";
const VERSION: u32 = 3;
const HEADER: usize = 64;
const NARROW_NAMES: u32 = 1;
const NARROW_CHANNELS: u32 = 2;
const UNIT_SHIFT: u32 = 2;
/// Time units in µs, by their code in the flags.
const UNITS: [i64; 3] = [1, 1_000, 1_000_000];

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

/// Where each array starts, from the header's counts.
#[derive(Debug, Clone, Copy)]
struct Layout {
    events: usize,
    customers: usize,
    values: usize,
    time_bytes: usize,
    flags: u32,
    keys: usize,
    starts: usize,
    time_starts: usize,
    names: usize,
    channels: usize,
    value_rows: usize,
    value_vals: usize,
    times: usize,
    end: usize,
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl Layout {
    /// `None` when the counts cannot describe a file (a damaged header).
    fn new(
        events: usize,
        customers: usize,
        values: usize,
        time_bytes: usize,
        flags: u32,
    ) -> Option<Layout> {
        let width = |narrow: u32| if flags & narrow != 0 { 1 } else { 2 };
        let keys = HEADER;
        let starts = align8(keys.checked_add(customers.checked_mul(4)?)?);
        let time_starts = align8(starts.checked_add(customers.checked_add(1)?.checked_mul(4)?)?);
        let names = time_starts.checked_add(customers.checked_add(1)?.checked_mul(8)?)?;
        let channels = align8(names.checked_add(events.checked_mul(width(NARROW_NAMES))?)?);
        let value_rows = align8(channels.checked_add(events.checked_mul(width(NARROW_CHANNELS))?)?);
        let value_vals = align8(value_rows.checked_add(values.checked_mul(4)?)?);
        let times = value_vals.checked_add(values.checked_mul(8)?)?;
        let end = times.checked_add(time_bytes)?;
        Some(Layout {
            events,
            customers,
            values,
            time_bytes,
            flags,
            keys,
            starts,
            time_starts,
            names,
            channels,
            value_rows,
            value_vals,
            times,
            end,
        })
    }
}

/// Appends `v` as LEB128.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// The code of the largest unit in [`UNITS`] that divides every time.
fn time_unit(times: &[i64]) -> u32 {
    (1..UNITS.len())
        .rev()
        .find(|&u| times.iter().all(|t| t % UNITS[u] == 0))
        .unwrap_or(0) as u32
}

/// Encodes the times of every customer in `unit`s; returns the bytes and each customer's
/// offset.
fn encode_times(c: &ScanColumns, unit: i64) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::with_capacity(c.times.len() * 4 + c.keys.len() * 4);
    let mut offsets = Vec::with_capacity(c.keys.len() + 1);
    for run in c.starts.windows(2) {
        offsets.push(bytes.len() as u64);
        let times = &c.times[run[0] as usize..run[1] as usize];
        if let Some((&first, rest)) = times.split_first() {
            put_varint(&mut bytes, zigzag(first / unit));
            let mut prev = first / unit;
            for &t in rest {
                // Times ascend within a customer, so the difference is never negative.
                put_varint(&mut bytes, (t / unit).wrapping_sub(prev) as u64);
                prev = t / unit;
            }
        }
    }
    offsets.push(bytes.len() as u64);
    (bytes, offsets)
}

/// Encodes `c` into a complete scan file image.
fn encode(c: &ScanColumns) -> Vec<u8> {
    debug_assert_eq!(c.starts.len(), c.keys.len() + 1);
    let narrow = |ids: &[u16], flag: u32| {
        if ids.iter().all(|&i| i < 256) {
            flag
        } else {
            0
        }
    };
    let unit = time_unit(&c.times);
    let flags =
        narrow(&c.names, NARROW_NAMES) | narrow(&c.channels, NARROW_CHANNELS) | unit << UNIT_SHIFT;
    let (times, time_starts) = encode_times(c, UNITS[unit as usize]);
    let events = c.times.len();
    // The counts come from vectors that exist, so they always fit.
    let l = Layout::new(events, c.keys.len(), c.value_rows.len(), times.len(), flags)
        .unwrap_or_else(|| unreachable!("layout of in-memory columns overflows"));
    let mut buf = vec![0u8; l.end];
    buf[..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
    buf[12..16].copy_from_slice(&flags.to_le_bytes());
    buf[16..24].copy_from_slice(&(events as u64).to_le_bytes());
    buf[24..32].copy_from_slice(&(c.keys.len() as u64).to_le_bytes());
    buf[32..40].copy_from_slice(&(c.value_rows.len() as u64).to_le_bytes());
    buf[40..48].copy_from_slice(&(times.len() as u64).to_le_bytes());
    let first = c.times.iter().copied().min().unwrap_or(0);
    let last = c.times.iter().copied().max().unwrap_or(0);
    buf[48..56].copy_from_slice(&first.to_le_bytes());
    buf[56..64].copy_from_slice(&last.to_le_bytes());
    put(&mut buf, l.keys, &c.keys);
    put(&mut buf, l.starts, &c.starts);
    put(&mut buf, l.time_starts, &time_starts);
    put_ids(&mut buf, l.names, &c.names, flags & NARROW_NAMES != 0);
    put_ids(
        &mut buf,
        l.channels,
        &c.channels,
        flags & NARROW_CHANNELS != 0,
    );
    put(&mut buf, l.value_rows, &c.value_rows);
    put(&mut buf, l.value_vals, &c.value_vals);
    buf[l.times..l.end].copy_from_slice(&times);
    buf
}

fn put<T: bytemuck::Pod>(buf: &mut [u8], at: usize, items: &[T]) {
    let bytes: &[u8] = bytemuck::cast_slice(items);
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_ids(buf: &mut [u8], at: usize, ids: &[u16], narrow: bool) {
    if narrow {
        for (slot, &id) in buf[at..at + ids.len()].iter_mut().zip(ids) {
            *slot = id as u8;
        }
    } else {
        put(buf, at, ids);
    }
}

/// Writes a scan file and fsyncs it; returns its size.
pub fn write(path: &Path, c: &ScanColumns) -> Result<u64> {
    let buf = encode(c);
    let mut f = File::create(path).at(path)?;
    f.write_all(&buf).at(path)?;
    f.sync_all().at(path)?;
    Ok(buf.len() as u64)
}

enum Backing {
    Mapped(memmap2::Mmap),
    /// u64 words, so the arrays inside are 8-byte aligned like in a mapping.
    Owned(Vec<u64>),
}

/// Dictionary indexes (event names or channels) as stored: one or two bytes each.
#[derive(Debug, Clone, Copy)]
pub enum Ids<'a> {
    Narrow(&'a [u8]),
    Wide(&'a [u16]),
}

impl Ids<'_> {
    /// The index at row `r`. Rows come from the file's own offsets.
    pub fn get(&self, r: usize) -> u16 {
        match self {
            Ids::Narrow(ids) => ids.get(r).map_or(0, |&i| i as u16),
            Ids::Wide(ids) => ids.get(r).copied().unwrap_or(0),
        }
    }

    /// Appends the indexes of `rows` to `out`.
    pub fn extend_into(&self, rows: Range<usize>, out: &mut Vec<u16>) {
        match self {
            Ids::Narrow(ids) => {
                out.extend(ids.get(rows).unwrap_or_default().iter().map(|&i| i as u16))
            }
            Ids::Wide(ids) => out.extend_from_slice(ids.get(rows).unwrap_or_default()),
        }
    }

    /// Adds one to `counts[i]` for every index `i` (indexes beyond `counts` are ignored).
    pub fn count_into(&self, counts: &mut [u64]) {
        let mut add = |i: usize| {
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
        };
        match self {
            Ids::Narrow(ids) => ids.iter().for_each(|&i| add(i as usize)),
            Ids::Wide(ids) => ids.iter().for_each(|&i| add(i as usize)),
        }
    }
}

/// A scan file in memory: mapped from disk, or built in memory for events still in the log.
pub struct ScanData {
    backing: Backing,
    layout: Layout,
    first_time: i64,
    last_time: i64,
}

impl ScanData {
    pub fn open(path: &Path) -> Result<ScanData> {
        let file = File::open(path).at(path)?;
        // SAFETY: scan files are immutable once written (they are created under a new name and
        // only ever deleted, never modified), so the mapping cannot change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
        let len = map.len();
        ScanData::check(Backing::Mapped(map), len).map_err(|reason| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_columns(c: &ScanColumns) -> ScanData {
        let image = encode(c);
        let mut words = vec![0u64; image.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..image.len()].copy_from_slice(&image);
        // An image we just encoded always passes the check.
        ScanData::check(Backing::Owned(words), image.len())
            .unwrap_or_else(|reason| unreachable!("a fresh scan image is invalid: {reason}"))
    }

    /// Validates the header of the first `len` bytes of `backing` (an owned image is padded
    /// to whole words).
    fn check(backing: Backing, len: usize) -> Result<ScanData, String> {
        let all: &[u8] = match &backing {
            Backing::Mapped(m) => m,
            Backing::Owned(w) => bytemuck::cast_slice(w),
        };
        let bytes = &all[..len.min(all.len())];
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err("not a cairn scan file of this version".into());
        }
        let word32 = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
        let word64 = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        if word32(8) != VERSION {
            return Err(format!("scan file version {} not supported", word32(8)));
        }
        let layout = Layout::new(
            word64(16) as usize,
            word64(24) as usize,
            word64(32) as usize,
            word64(40) as usize,
            word32(12),
        )
        .ok_or("impossible counts in the header")?;
        if bytes.len() != layout.end {
            return Err(format!(
                "size {} does not match its header ({} expected)",
                bytes.len(),
                layout.end
            ));
        }
        let data = ScanData {
            first_time: word64(48) as i64,
            last_time: word64(56) as i64,
            backing,
            layout,
        };
        let starts = data.starts();
        if starts.first() != Some(&0) || starts.last().copied() != Some(layout.events as u32) {
            return Err("customer offsets do not cover the events".into());
        }
        let time_starts = data.time_starts();
        if time_starts.first() != Some(&0)
            || time_starts.last().copied() != Some(layout.time_bytes as u64)
        {
            return Err("time offsets do not cover the times".into());
        }
        Ok(data)
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(w) => bytemuck::cast_slice(w),
        }
    }

    fn slice<T: bytemuck::Pod>(&self, at: usize, n: usize) -> &[T] {
        // Alignment and bounds hold by construction: `check` verified the size against the
        // layout, and every array starts 8-byte aligned in an 8-byte aligned buffer.
        bytemuck::cast_slice(&self.bytes()[at..at + n * std::mem::size_of::<T>()])
    }

    pub fn events(&self) -> usize {
        self.layout.events
    }
    pub fn keys(&self) -> &[u32] {
        self.slice(self.layout.keys, self.layout.customers)
    }
    pub fn starts(&self) -> &[u32] {
        self.slice(self.layout.starts, self.layout.customers + 1)
    }
    fn time_starts(&self) -> &[u64] {
        self.slice(self.layout.time_starts, self.layout.customers + 1)
    }
    /// The earliest and latest event time in the file, if it has events.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (self.layout.events > 0).then_some((self.first_time, self.last_time))
    }
    fn ids(&self, at: usize, narrow: u32) -> Ids<'_> {
        if self.layout.flags & narrow != 0 {
            Ids::Narrow(self.slice(at, self.layout.events))
        } else {
            Ids::Wide(self.slice(at, self.layout.events))
        }
    }
    pub fn names(&self) -> Ids<'_> {
        self.ids(self.layout.names, NARROW_NAMES)
    }
    pub fn channels(&self) -> Ids<'_> {
        self.ids(self.layout.channels, NARROW_CHANNELS)
    }

    /// Appends the times of the customer at index `i` to `out`, in order.
    pub fn times_into(&self, i: usize, out: &mut Vec<i64>) {
        let n = self.rows(i).len();
        let offsets = self.time_starts();
        let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
        let times = &self.bytes()[self.layout.times..self.layout.end];
        let unit = UNITS
            .get((self.layout.flags >> UNIT_SHIFT & 3) as usize)
            .copied()
            .unwrap_or(1);
        decode_times(times.get(from..to).unwrap_or_default(), n, unit, out);
    }

    /// Fills `out` (one slot per row of `rows`) with the values of those rows, NaN where none.
    pub fn values_into(&self, rows: Range<usize>, out: &mut Vec<f64>) {
        out.clear();
        out.resize(rows.len(), f64::NAN);
        let l = self.layout;
        if l.values == 0 {
            return;
        }
        let value_rows: &[u32] = self.slice(l.value_rows, l.values);
        let value_vals: &[f64] = self.slice(l.value_vals, l.values);
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
    pub fn rows(&self, i: usize) -> Range<usize> {
        let s = self.starts();
        s[i] as usize..s[i + 1] as usize
    }
}

/// Decodes `n` times from one customer's bytes. Damaged bytes give wrong times, never a panic:
/// a value that runs past the end is cut there, and missing values repeat the last one.
fn decode_times(bytes: &[u8], n: usize, unit: i64, out: &mut Vec<i64>) {
    out.reserve(n);
    let mut pos = 0;
    let mut prev = 0i64;
    for k in 0..n {
        let mut v = 0u64;
        let mut shift = 0u32;
        while let Some(&b) = bytes.get(pos) {
            pos += 1;
            v |= u64::from(b & 0x7f).wrapping_shl(shift);
            if b < 0x80 || shift >= 63 {
                break;
            }
            shift += 7;
        }
        prev = if k == 0 {
            unzigzag(v)
        } else {
            prev.wrapping_add(v as i64)
        };
        out.push(prev.wrapping_mul(unit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(names: Vec<u16>) -> ScanColumns {
        ScanColumns {
            keys: vec![3, 7],
            starts: vec![0, 2, 3],
            times: vec![-5, 1_700_000_000_000_000, i64::MIN / 2],
            names,
            channels: vec![1, 1, 0],
            value_rows: vec![1, 2],
            value_vals: vec![9.5, 1.0],
        }
    }

    #[test]
    fn written_file_reads_back_with_narrow_and_wide_ids() {
        for names in [vec![0, 1, 0], vec![0, 300, 0]] {
            let c = sample(names.clone());
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.scan");
            write(&path, &c).unwrap();
            for data in [ScanData::open(&path).unwrap(), ScanData::from_columns(&c)] {
                assert_eq!(data.keys(), &[3, 7]);
                let mut times = Vec::new();
                data.times_into(0, &mut times);
                data.times_into(1, &mut times);
                assert_eq!(times, c.times);
                let mut ids = Vec::new();
                data.names().extend_into(0..3, &mut ids);
                assert_eq!(ids, names);
                assert_eq!(data.channels().get(2), 0);
                assert_eq!(
                    data.time_range(),
                    Some((i64::MIN / 2, 1_700_000_000_000_000))
                );
                let mut v = Vec::new();
                data.values_into(0..2, &mut v);
                assert!(v[0].is_nan() && v[1] == 9.5);
                data.values_into(2..3, &mut v);
                assert_eq!(v, [1.0]);
                assert_eq!(data.find(7), Some(1));
                assert_eq!(data.rows(1), 2..3);
            }
        }
    }

    #[test]
    fn one_byte_ids_and_delta_times_keep_a_typical_event_under_six_bytes() {
        let n = 10_000usize;
        let c = ScanColumns {
            keys: vec![1],
            starts: vec![0, n as u32],
            // Milliseconds, seconds to half an hour apart, like events in real sessions.
            times: (0..n as i64)
                .scan(1_700_000_000_000_000, |t, i| {
                    *t += (i % 1800 + 1) * 1_123_000;
                    Some(*t)
                })
                .collect(),
            names: vec![7; n],
            channels: vec![2; n],
            ..Default::default()
        };
        let size = encode(&c).len();
        assert!(size < n * 6, "{size} bytes for {n} events");
        let data = ScanData::from_columns(&c);
        let mut times = Vec::new();
        data.times_into(0, &mut times);
        assert_eq!(times, c.times);
    }

    #[test]
    fn damaged_files_are_refused_or_read_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.scan");
        std::fs::write(&path, b"CAIRNSC3 but short").unwrap();
        assert!(ScanData::open(&path).is_err());
        let mut image = encode(&sample(vec![0, 1, 0]));
        // Counts that overflow any layout.
        let mut bad = image.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert!(ScanData::open(&path).is_err());
        // Garbage in the time bytes: every continuation bit set.
        let len = image.len();
        for b in &mut image[len - 8..] {
            *b = 0xff;
        }
        std::fs::write(&path, &image).unwrap();
        let data = ScanData::open(&path).unwrap();
        let mut times = Vec::new();
        data.times_into(0, &mut times);
        data.times_into(1, &mut times);
        assert_eq!(times.len(), 3);
    }
}
