//! Scan files: the query-ready twin of each Parquet segment.
//!
//! Parquet is the durable, interchange format, but decoding it costs more per query than an
//! analysis may take. A scan file holds the few columns every analysis reads, memory-mapped,
//! in forms that decode at hundreds of millions of events per second:
//!
//! ```text
//! header       "CAIRNSC4" | version u32 | flags u32 | events u64 | customers u64 | values u64
//!              | time_bytes u64 | first_time i64 | last_time i64                       (64 bytes)
//! keys         [u32; customers]      customer key of each run, ascending
//! starts       [u32; customers + 1]  index of each customer's first event; last = events
//! time_starts  [u64; customers + 1]  byte offset of each customer's times in `times`
//! name_sets    [u64; customers]      which event names each customer has: bit (index mod 64)
//!                                    for each of its names' indexes (from format 5 on)
//! names        [u8 or u16; events]   index into the manifest's event-name dictionary
//! channels     [u8 or u16; events]   index into the manifest's channel dictionary
//! value_rows   [u32; values]         rows that carry a value, ascending (most events carry none)
//! value_vals   [f64; values]         their values
//! time_codes   [u8; ⌈events / 4⌉]    two bits per row (row r: byte r / 4, bits 2·(r % 4)): how
//!                                    many bytes that row's time takes in `times`
//! times        [u8; time_bytes]      per customer: its first time minus the file's first time,
//!                                    little-endian in 2, 4, 6 or 8 bytes (code 0–3); then each
//!                                    later time as the difference from the one before (times
//!                                    ascend within a customer) in 1–4 bytes (code 0–3); a
//!                                    difference of 2³² − 1 units or more is written as the four
//!                                    bytes FF FF FF FF followed by the difference in 8 bytes
//! ```
//! Flags: bit 0 set = names are one byte each, bit 1 = channels are (when every index in the
//! file is below 256, which is the common case); bits 2–3 = the unit the times are stored in
//! (0 = µs, 1 = ms, 2 = s): the largest that divides every time in the file, since most
//! sources record milliseconds or seconds. Each array starts on an 8-byte boundary.
//!
//! Why name sets: a funnel settles about half of its customers from which names they have
//! (no event of its second step: level 0 or 1). Reading those customers' names took a fifth
//! of its time; their set is one word. In a store of at most 64 names the set is exact; with
//! more, a clear bit still proves a name absent.
//!
//! Why not plain 8-byte times: the scan file is a second copy of the hot columns, and at 12
//! bytes per event it made the store larger than a DuckDB database of the same data. Deltas
//! between a customer's events take 2–3 bytes. Why lengths in a separate code stream (as in
//! Stream VByte) rather than LEB128 (version 3): with LEB128 each value's position is only
//! known once the previous value is decoded, a chain of unpredictable branches that made
//! decoding times the largest cost of a scan (~11 ns an event). Here the position of every
//! value follows from the codes alone, so decoding is a load, a mask and an add per event,
//! and the codes take a quarter byte an event: the file is no larger than with LEB128.
//!
//! A scan file is derived data: it can always be rebuilt from its Parquet segment. Reading a
//! damaged one never panics; it yields wrong times instead (the Parquet file is the truth).

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::Path;

use cairn_model::NameSet;

use crate::error::{IoContext, Result, StoreError};

const MAGIC: &[u8; 8] = b"CAIRNSC4";
const VERSION: u32 = 5;
/// The oldest format this version reads: format 4 is format 5 without name sets.
const OLDEST_VERSION: u32 = 4;
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
    /// The format the file is written in.
    version: u32,
    events: usize,
    customers: usize,
    values: usize,
    time_bytes: usize,
    flags: u32,
    keys: usize,
    starts: usize,
    time_starts: usize,
    /// Where the name sets start, if the file has them (format 5 on).
    name_sets: Option<usize>,
    names: usize,
    channels: usize,
    value_rows: usize,
    value_vals: usize,
    time_codes: usize,
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
        version: u32,
    ) -> Option<Layout> {
        let width = |narrow: u32| if flags & narrow != 0 { 1 } else { 2 };
        let keys = HEADER;
        let starts = align8(keys.checked_add(customers.checked_mul(4)?)?);
        let time_starts = align8(starts.checked_add(customers.checked_add(1)?.checked_mul(4)?)?);
        let after_time_starts =
            time_starts.checked_add(customers.checked_add(1)?.checked_mul(8)?)?;
        let (name_sets, names) = if version >= 5 {
            let names = after_time_starts.checked_add(customers.checked_mul(8)?)?;
            (Some(after_time_starts), names)
        } else {
            (None, after_time_starts)
        };
        let channels = align8(names.checked_add(events.checked_mul(width(NARROW_NAMES))?)?);
        let value_rows = align8(channels.checked_add(events.checked_mul(width(NARROW_CHANNELS))?)?);
        let value_vals = align8(value_rows.checked_add(values.checked_mul(4)?)?);
        let time_codes = value_vals.checked_add(values.checked_mul(8)?)?;
        let times = time_codes.checked_add(events.div_ceil(4))?;
        let end = times.checked_add(time_bytes)?;
        Some(Layout {
            version,
            events,
            customers,
            values,
            time_bytes,
            flags,
            keys,
            starts,
            time_starts,
            name_sets,
            names,
            channels,
            value_rows,
            value_vals,
            time_codes,
            times,
            end,
        })
    }
}

/// Bytes of a customer's first time (relative to the file's first), by code.
const FIRST_LEN: [usize; 4] = [2, 4, 6, 8];
/// The difference that says "the real one follows in 8 bytes".
const ESCAPE: u32 = u32::MAX;

/// Appends the low `len` bytes of `v`, little-endian.
fn put_le(out: &mut Vec<u8>, v: u64, len: usize) {
    out.extend_from_slice(&v.to_le_bytes()[..len]);
}

/// The code of a first time and of a difference.
fn first_code(v: u64) -> u8 {
    FIRST_LEN
        .iter()
        .position(|&n| n == 8 || v >> (8 * n) == 0)
        .unwrap_or(3) as u8
}
fn delta_code(v: u64) -> u8 {
    match v {
        0..0x100 => 0,
        0x100..0x1_0000 => 1,
        0x1_0000..0x100_0000 => 2,
        _ => 3,
    }
}

/// The code of the largest unit in [`UNITS`] that divides every time.
fn time_unit(times: &[i64]) -> u32 {
    (1..UNITS.len())
        .rev()
        .find(|&u| times.iter().all(|t| t % UNITS[u] == 0))
        .unwrap_or(0) as u32
}

/// Encodes the times of every customer in `unit`s, relative to `base` (the earliest time, in
/// units); returns the codes, the bytes and each customer's offset into the bytes.
fn encode_times(c: &ScanColumns, unit: i64, base: i64) -> (Vec<u8>, Vec<u8>, Vec<u64>) {
    let mut codes = vec![0u8; c.times.len().div_ceil(4)];
    let mut bytes = Vec::with_capacity(c.times.len() * 3 + c.keys.len() * 6);
    let mut offsets = Vec::with_capacity(c.keys.len() + 1);
    let mut set_code = |row: usize, code: u8| codes[row / 4] |= code << (2 * (row % 4));
    for run in c.starts.windows(2) {
        offsets.push(bytes.len() as u64);
        let (from, to) = (run[0] as usize, run[1] as usize);
        let Some(&first) = c.times.get(from) else {
            continue;
        };
        let rel = (first / unit).wrapping_sub(base) as u64;
        let code = first_code(rel);
        set_code(from, code);
        put_le(&mut bytes, rel, FIRST_LEN[code as usize]);
        let mut prev = first / unit;
        for (row, &t) in c.times[from + 1..to].iter().enumerate() {
            // Times ascend within a customer, so the difference is never negative.
            let d = (t / unit).wrapping_sub(prev) as u64;
            prev = t / unit;
            let code = delta_code(d);
            set_code(from + 1 + row, code);
            if d >= u64::from(ESCAPE) {
                put_le(&mut bytes, u64::from(ESCAPE), 4);
                put_le(&mut bytes, d, 8);
            } else {
                put_le(&mut bytes, d, code as usize + 1);
            }
        }
    }
    offsets.push(bytes.len() as u64);
    (codes, bytes, offsets)
}

/// Writes `c` as a complete scan file image into `out`, array after array (so a large file
/// is never held whole in memory); returns its length.
fn encode_into(c: &ScanColumns, out: &mut impl Write) -> std::io::Result<usize> {
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
    let first = c.times.iter().copied().min().unwrap_or(0);
    let last = c.times.iter().copied().max().unwrap_or(0);
    let (codes, times, time_starts) =
        encode_times(c, UNITS[unit as usize], first / UNITS[unit as usize]);
    let events = c.times.len();
    // The counts come from vectors that exist, so they always fit.
    let l = Layout::new(
        events,
        c.keys.len(),
        c.value_rows.len(),
        times.len(),
        flags,
        VERSION,
    )
    .unwrap_or_else(|| unreachable!("layout of in-memory columns overflows"));
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&flags.to_le_bytes());
    header[16..24].copy_from_slice(&(events as u64).to_le_bytes());
    header[24..32].copy_from_slice(&(c.keys.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(c.value_rows.len() as u64).to_le_bytes());
    header[40..48].copy_from_slice(&(times.len() as u64).to_le_bytes());
    header[48..56].copy_from_slice(&first.to_le_bytes());
    header[56..64].copy_from_slice(&last.to_le_bytes());
    let mut at = 0;
    // Each array at its place in the layout: zeros up to it, then its bytes.
    let mut put = |offset: usize, bytes: &[u8]| -> std::io::Result<()> {
        debug_assert!(offset >= at);
        let padding = offset.saturating_sub(at) as u64;
        std::io::copy(&mut std::io::Read::take(std::io::repeat(0), padding), out)?;
        out.write_all(bytes)?;
        at = offset + bytes.len();
        Ok(())
    };
    put(0, &header)?;
    put(l.keys, bytemuck::cast_slice(&c.keys))?;
    put(l.starts, bytemuck::cast_slice(&c.starts))?;
    put(l.time_starts, bytemuck::cast_slice(&time_starts))?;
    if let Some(at) = l.name_sets {
        let sets: Vec<u64> = c
            .starts
            .windows(2)
            .map(|run| NameSet::of(&c.names[run[0] as usize..run[1] as usize]).0)
            .collect();
        put(at, bytemuck::cast_slice(&sets))?;
    }
    put_ids(&mut put, l.names, &c.names, flags & NARROW_NAMES != 0)?;
    put_ids(
        &mut put,
        l.channels,
        &c.channels,
        flags & NARROW_CHANNELS != 0,
    )?;
    put(l.value_rows, bytemuck::cast_slice(&c.value_rows))?;
    put(l.value_vals, bytemuck::cast_slice(&c.value_vals))?;
    put(l.time_codes, &codes)?;
    put(l.times, &times)?;
    debug_assert_eq!(at, l.end);
    Ok(l.end)
}

/// Writes one- or two-byte dictionary indexes at `offset` through `put`.
fn put_ids(
    put: &mut impl FnMut(usize, &[u8]) -> std::io::Result<()>,
    offset: usize,
    ids: &[u16],
    narrow: bool,
) -> std::io::Result<()> {
    if !narrow {
        return put(offset, bytemuck::cast_slice(ids));
    }
    let mut bytes = Vec::with_capacity(ids.len().min(1 << 16));
    for (i, chunk) in ids.chunks(1 << 16).enumerate() {
        bytes.clear();
        bytes.extend(chunk.iter().map(|&id| id as u8));
        put(offset + (i << 16), &bytes)?;
    }
    Ok(())
}

/// `c` as a complete scan file image in memory.
fn encode(c: &ScanColumns) -> Vec<u8> {
    let mut image = Vec::new();
    // Writing into a vector cannot fail.
    let _ = encode_into(c, &mut image);
    image
}

/// Writes a scan file and fsyncs it; returns its size.
pub fn write(path: &Path, c: &ScanColumns) -> Result<u64> {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        crate::fsutil::SteadyFile::create(path).at(path)?,
    );
    let len = encode_into(c, &mut f).at(path)?;
    f.into_inner()
        .map_err(|e| e.into_error())
        .at(path)?
        .finish()
        .at(path)?;
    Ok(len as u64)
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

impl<'a> Ids<'a> {
    /// The index at row `r`. Rows come from the file's own offsets.
    #[cfg(test)]
    pub fn get(&self, r: usize) -> u16 {
        match self {
            Ids::Narrow(ids) => ids.get(r).map_or(0, |&i| i as u16),
            Ids::Wide(ids) => ids.get(r).copied().unwrap_or(0),
        }
    }

    /// The indexes of `rows` (none where they lie beyond the column).
    pub fn slice(&self, rows: Range<usize>) -> Ids<'a> {
        match self {
            Ids::Narrow(ids) => Ids::Narrow(ids.get(rows).unwrap_or_default()),
            Ids::Wide(ids) => Ids::Wide(ids.get(rows).unwrap_or_default()),
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

/// Whether the scan file at `path` is of a format older than the one this version writes.
/// It is opened (mapped and checked) as for a scan, so a damaged file is an error naming it.
pub fn is_older_format(path: &Path) -> Result<bool> {
    Ok(ScanData::open(path)?.layout.version < VERSION)
}

/// A format 5 image as format 4 (format 5 without name sets), as an older version wrote it.
#[cfg(test)]
pub(crate) fn as_format_4(v5: &[u8]) -> Vec<u8> {
    let customers = u64::from_le_bytes(v5[24..32].try_into().unwrap()) as usize;
    let at = Layout::new(0, customers, 0, 0, 0, VERSION)
        .and_then(|l| l.name_sets)
        .unwrap_or_else(|| unreachable!("format 5 has name sets"));
    let mut v4 = v5[..at].to_vec();
    v4.extend_from_slice(&v5[at + 8 * customers..]);
    v4[8..12].copy_from_slice(&4u32.to_le_bytes());
    v4
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
        if bytes.len() < HEADER || &bytes[..6] != b"CAIRNS" {
            return Err("not a cairn scan file".into());
        }
        let word32 = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
        let word64 = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        let version = word32(8);
        if &bytes[..8] != MAGIC || !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(format!(
                "scan file format {version} was written by another version of cairn (this one \
                 reads formats {OLDEST_VERSION} to {VERSION}); import the data again into a new \
                 data directory",
            ));
        }
        let layout = Layout::new(
            word64(16) as usize,
            word64(24) as usize,
            word64(32) as usize,
            word64(40) as usize,
            word32(12),
            version,
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
    fn name_sets(&self) -> Option<&[u64]> {
        let at = self.layout.name_sets?;
        Some(self.slice(at, self.layout.customers))
    }

    /// The time column, ready to decode customer after customer (what a scan looks up once
    /// rather than for each of a million customers).
    pub fn times(&self) -> Times<'_> {
        let l = self.layout;
        let bytes = self.bytes();
        let unit = UNITS
            .get((l.flags >> UNIT_SHIFT & 3) as usize)
            .copied()
            .unwrap_or(1);
        Times {
            codes: &bytes[l.time_codes..l.times],
            bytes: bytes.get(l.times..l.end).unwrap_or_default(),
            starts: self.starts(),
            offsets: self.time_starts(),
            base: self.first_time / unit,
            unit,
        }
    }

    /// The index of `key` among this file's customers.
    pub fn find(&self, key: u32) -> Option<usize> {
        let keys = self.keys();
        // A file holding every key from 0 (the usual compacted store) needs no search.
        if keys.get(key as usize) == Some(&key) {
            return Some(key as usize);
        }
        keys.binary_search(&key).ok()
    }

    /// Row range of the customer at index `i`.
    pub fn rows(&self, i: usize) -> Range<usize> {
        self.view().rows(i)
    }

    /// Every column's place in the file, looked up once: what a scan keeps per source. Looked
    /// up for each customer instead (header checks and slice casts), they held a tenth of a
    /// plain scan's `perf` samples on a store of several segments.
    pub fn view(&self) -> View<'_> {
        let l = self.layout;
        View {
            keys: self.keys(),
            starts: self.starts(),
            times: self.times(),
            names: self.names(),
            name_sets: self.name_sets(),
            channels: self.channels(),
            value_rows: self.slice(l.value_rows, l.values),
            value_vals: self.slice(l.value_vals, l.values),
        }
    }
}

/// A scan file's columns (see [`ScanData::view`]).
#[derive(Clone, Copy)]
pub struct View<'a> {
    keys: &'a [u32],
    starts: &'a [u32],
    times: Times<'a>,
    names: Ids<'a>,
    name_sets: Option<&'a [u64]>,
    channels: Ids<'a>,
    value_rows: &'a [u32],
    value_vals: &'a [f64],
}

impl<'a> View<'a> {
    /// The customers' keys, ascending.
    #[inline]
    pub fn keys(&self) -> &'a [u32] {
        self.keys
    }

    #[inline]
    pub fn times(&self) -> &Times<'a> {
        &self.times
    }

    #[inline]
    pub fn names(&self) -> Ids<'a> {
        self.names
    }

    #[inline]
    pub fn channels(&self) -> Ids<'a> {
        self.channels
    }

    /// The name set of the customers at indexes `at` together, if the file has name sets.
    #[inline]
    pub fn name_set(&self, at: Range<usize>) -> Option<NameSet> {
        let sets = self.name_sets?.get(at)?;
        Some(NameSet(sets.iter().fold(0, |all, &set| all | set)))
    }

    /// Row range of the customer at index `i`.
    #[inline]
    pub fn rows(&self, i: usize) -> Range<usize> {
        self.starts[i] as usize..self.starts[i + 1] as usize
    }

    /// Appends to `out` the values of `rows`, one slot per row, NaN where none. `cursor`
    /// (start it at `usize::MAX`) remembers where the previous call's values ended: a scan
    /// visiting customers in ascending order finds each customer's values with no search.
    pub fn values_into_from(&self, rows: Range<usize>, cursor: &mut usize, out: &mut Vec<f64>) {
        let at = out.len();
        out.resize(at + rows.len(), f64::NAN);
        let (value_rows, value_vals) = (self.value_rows, self.value_vals);
        if value_rows.is_empty() {
            return;
        }
        // Usually at the customer's first value already (the next customer of a scan); short
        // of it or past it when a grouped scan reads a profile's keys out of order: searched
        // from there either way.
        *cursor = partition_point_near(value_rows, *cursor, |&r| (r as usize) < rows.start);
        let slots = &mut out[at..];
        while let Some(&r) = value_rows.get(*cursor) {
            let r = r as usize;
            if r >= rows.end {
                break;
            }
            if let (Some(slot), Some(&v)) = (
                r.checked_sub(rows.start).and_then(|i| slots.get_mut(i)),
                value_vals.get(*cursor),
            ) {
                *slot = v;
            }
            *cursor += 1;
        }
    }

    /// The index of `key` among the file's customers, searching outward from position `near`
    /// (a scan's cursor): a few steps for a key near it, such as another key of the profile
    /// being read, where a binary search over a large file's keys costs a dozen cache misses.
    pub fn find_near(&self, key: u32, near: usize) -> Option<usize> {
        let keys = self.keys;
        // A file holding every key from 0 (the usual compacted store) needs no search.
        if keys.get(key as usize) == Some(&key) {
            return Some(key as usize);
        }
        let i = partition_point_near(keys, near, |&k| k < key);
        (keys.get(i) == Some(&key)).then_some(i)
    }
}

/// A scan file's time column (see [`ScanData::times`]).
#[derive(Clone, Copy)]
pub struct Times<'a> {
    codes: &'a [u8],
    bytes: &'a [u8],
    starts: &'a [u32],
    offsets: &'a [u64],
    base: i64,
    unit: i64,
}

impl Times<'_> {
    /// Appends the times of the customer at index `i` to `out`, in order.
    pub fn customer_into(&self, i: usize, out: &mut Vec<i64>) {
        let rows = self.starts[i] as usize..self.starts[i + 1] as usize;
        decode_times(
            self.codes,
            rows,
            self.bytes,
            self.offsets[i] as usize,
            self.base,
            self.unit,
            out,
        );
    }
}

/// Decodes the times of `rows` (one customer), whose bytes start at `from` in `times` (the
/// file's whole time column), with the rows' length codes from `codes` and `base` (the file's
/// first time) in `unit`s. Damaged bytes give wrong times, never a panic: a value that runs
/// past the end is cut there, and missing codes read as 0.
///
/// Speed matters here: every scan decodes every customer's times. Each value is read with one
/// 8-byte load and a mask for its length, from the whole column rather than the customer's
/// bytes, so a load near a customer's end may see the next customer's bytes, which the mask
/// drops; only the last bytes of the file take the careful, copying read. (Copying a value's
/// bytes into a word for every customer's first and last few values cost a store-forwarding
/// stall each and made decoding twice as slow.) Rows go four at a time where a code byte
/// holds four of them: one 16-byte load holds four values of at most four bytes.
fn decode_times(
    codes: &[u8],
    rows: Range<usize>,
    times: &[u8],
    from: usize,
    base: i64,
    unit: i64,
    out: &mut Vec<i64>,
) {
    const MASK: [u32; 4] = [0xff, 0xffff, 0xff_ffff, 0xffff_ffff];
    let code = |r: usize| codes.get(r / 4).map_or(0, |&c| (c >> (2 * (r % 4))) & 3) as usize;
    // The eight bytes at `pos`, little-endian, as far as they exist.
    let word = |pos: usize| match times.get(pos..pos + 8) {
        Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
        None => {
            let mut word = [0u8; 8];
            let have = times.get(pos..).unwrap_or_default();
            let n = have.len().min(8);
            word[..n].copy_from_slice(&have[..n]);
            u64::from_le_bytes(word)
        }
    };
    if rows.is_empty() {
        return;
    }
    let n = rows.len();
    let at = out.len();
    out.resize(at + n, 0);
    let dst = &mut out[at..];
    let first_len = FIRST_LEN[code(rows.start)];
    let first = word(from) & (u64::MAX >> (64 - 8 * first_len));
    let mut prev = base.wrapping_add(first as i64);
    dst[0] = prev.wrapping_mul(unit);
    let mut pos = from + first_len;
    // One row: its difference from the row before, escaped or not.
    let step = |r: usize, pos: &mut usize, prev: &mut i64| {
        let c = code(r);
        let v = word(*pos) as u32 & MASK[c];
        *pos += c + 1;
        let d = if v == ESCAPE {
            *pos += 8;
            word(*pos - 8)
        } else {
            u64::from(v)
        };
        *prev = prev.wrapping_add(d as i64);
        prev.wrapping_mul(unit)
    };
    let mut j = 1;
    // Up to the first row that starts a code byte.
    while j < n && !(rows.start + j).is_multiple_of(4) {
        dst[j] = step(rows.start + j, &mut pos, &mut prev);
        j += 1;
    }
    while n - j >= 4 {
        let Some(&c) = codes.get((rows.start + j) / 4) else {
            break;
        };
        let Some(w) = times.get(pos..pos + 16) else {
            break;
        };
        // Four values' lengths from one code byte, and their bytes from one load.
        let mut x = u128::from_le_bytes(w.try_into().unwrap_or([0; 16]));
        let mut vals = [0u32; 4];
        let mut len = 0;
        for (k, v) in vals.iter_mut().enumerate() {
            let c = (c >> (2 * k) & 3) as usize;
            *v = x as u32 & MASK[c];
            x >>= 8 * (c + 1);
            len += c + 1;
        }
        // An escaped difference: the row-by-row path reads it.
        if vals.contains(&ESCAPE) {
            break;
        }
        for (k, &v) in vals.iter().enumerate() {
            prev = prev.wrapping_add(i64::from(v));
            dst[j + k] = prev.wrapping_mul(unit);
        }
        pos += len;
        j += 4;
    }
    while j < n {
        dst[j] = step(rows.start + j, &mut pos, &mut prev);
        j += 1;
    }
}

/// `slice.partition_point(pred)` (`pred` holds for a prefix of `slice`), searched outward
/// from position `near` with a doubling step: a few probes when the answer is close to it (a
/// scan's cursor), where a binary search over a large file costs a dozen cache misses.
fn partition_point_near<T>(slice: &[T], near: usize, pred: impl Fn(&T) -> bool) -> usize {
    let near = near.min(slice.len());
    // Narrow to lo..hi: `pred` holds before lo and fails from hi on.
    let (lo, hi) = if slice.get(near).is_some_and(&pred) {
        let (mut lo, mut step) = (near + 1, 1);
        loop {
            let probe = near.saturating_add(step);
            match slice.get(probe) {
                Some(x) if pred(x) => {
                    lo = probe + 1;
                    step *= 2;
                }
                _ => break (lo, probe.min(slice.len())),
            }
        }
    } else {
        let (mut hi, mut step) = (near, 1);
        loop {
            match near.checked_sub(step) {
                Some(probe) if !pred(&slice[probe]) => {
                    hi = probe;
                    step *= 2;
                }
                Some(probe) => break (probe + 1, hi),
                None => break (0, hi),
            }
        }
    };
    lo + slice[lo..hi].partition_point(pred)
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
                data.times().customer_into(0, &mut times);
                data.times().customer_into(1, &mut times);
                assert_eq!(times, c.times);
                let mut ids = Vec::new();
                data.names().extend_into(0..3, &mut ids);
                assert_eq!(ids, names);
                assert_eq!(data.channels().get(2), 0);
                assert_eq!(
                    data.time_range(),
                    Some((i64::MIN / 2, 1_700_000_000_000_000))
                );
                let (mut v, mut cursor) = (Vec::new(), usize::MAX);
                data.view().values_into_from(0..2, &mut cursor, &mut v);
                assert!(v[0].is_nan() && v[1] == 9.5);
                v.clear();
                data.view().values_into_from(2..3, &mut cursor, &mut v);
                assert_eq!(v, [1.0]);
                assert_eq!(data.find(7), Some(1));
                assert_eq!(data.rows(1), 2..3);
            }
        }
    }

    /// From any starting point, before, at or after the answer: the answer of a binary search.
    #[test]
    fn partition_point_near_agrees_with_partition_point() {
        for len in 0..40usize {
            let slice: Vec<usize> = (0..len).map(|i| i * 3).collect();
            for bound in 0..3 * len + 3 {
                let want = slice.partition_point(|&x| x < bound);
                for near in 0..len + 3 {
                    let got = partition_point_near(&slice, near, |&x| x < bound);
                    assert_eq!(got, want, "len {len} bound {bound} near {near}");
                }
            }
        }
    }

    /// From any starting point, near or far, before or after, found or not: the same answer
    /// as a binary search.
    #[test]
    fn find_near_agrees_with_find_from_every_position() {
        for keys in [
            vec![],
            vec![5],
            vec![0, 1, 2, 3],
            vec![2, 3, 5, 8, 13, 21, 34, 55, 89, 144],
        ] {
            let c = ScanColumns {
                starts: (0..=keys.len() as u32).collect(),
                times: vec![0; keys.len()],
                names: vec![0; keys.len()],
                channels: vec![0; keys.len()],
                keys: keys.clone(),
                ..Default::default()
            };
            let data = ScanData::from_columns(&c);
            for key in 0..150 {
                for near in 0..=keys.len() + 2 {
                    assert_eq!(
                        data.view().find_near(key, near),
                        data.find(key),
                        "key {key} near {near} in {keys:?}"
                    );
                }
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
        data.times().customer_into(0, &mut times);
        assert_eq!(times, c.times);
    }

    #[test]
    fn every_length_code_and_long_gaps_read_back() {
        // Differences of every byte length, the escape for gaps of 2³² units and more, and
        // customers of one event, in µs (no coarser unit divides 1).
        let mut times = vec![1i64];
        for d in [
            0i64,
            1,
            255,
            256,
            65_535,
            65_536,
            (1 << 24) - 1,
            1 << 24,
            (1 << 32) - 2,
        ] {
            times.push(times.last().unwrap() + d);
        }
        for d in [(1i64 << 32) - 1, 1 << 32, 1 << 50, 3] {
            times.push(times.last().unwrap() + d);
        }
        let n = times.len() as u32;
        let c = ScanColumns {
            keys: vec![1, 2, 3],
            starts: vec![0, 1, n - 1, n],
            names: vec![0; n as usize],
            channels: vec![0; n as usize],
            times,
            ..Default::default()
        };
        let data = ScanData::from_columns(&c);
        let mut got = Vec::new();
        for i in 0..3 {
            data.times().customer_into(i, &mut got);
        }
        assert_eq!(got, c.times);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Customers of any length starting at any row (so every alignment of the four-row
        /// groups), with differences of every length and escapes, read back exactly.
        #[test]
        fn times_of_any_customers_read_back(
            runs in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        4 => 0i64..256,
                        3 => 0i64..(1 << 24),
                        2 => 0i64..(1 << 32),
                        1 => 0i64..(1 << 45),
                    ],
                    1..40,
                ),
                1..12,
            ),
            ms in proptest::bool::ANY,
        ) {
            let scale = if ms { 1_000 } else { 1 };
            let (mut times, mut starts) = (Vec::new(), vec![0u32]);
            let mut t = 1_700_000_000_000_000i64;
            for run in &runs {
                for &d in run {
                    t += d * scale;
                    times.push(t);
                }
                starts.push(times.len() as u32);
            }
            let n = times.len();
            let c = ScanColumns {
                keys: (0..runs.len() as u32).collect(),
                starts,
                names: vec![0; n],
                channels: vec![0; n],
                times,
                ..Default::default()
            };
            let data = ScanData::from_columns(&c);
            let mut got = vec![7];
            for i in 0..runs.len() {
                data.times().customer_into(i, &mut got);
            }
            proptest::prop_assert_eq!(&got[1..], &c.times[..]);
        }
    }

    #[test]
    fn values_read_from_any_cursor_equal_values_searched_for() {
        // 200 customers of 3 rows, every other row with a value; visited in a grouped
        // scan's orders: ascending, pairs far apart, backwards.
        let n = 200u32;
        let c = ScanColumns {
            keys: (0..n).collect(),
            starts: (0..=n).map(|i| 3 * i).collect(),
            times: vec![0; 3 * n as usize],
            names: vec![0; 3 * n as usize],
            channels: vec![0; 3 * n as usize],
            value_rows: (0..3 * n).step_by(2).collect(),
            value_vals: (0..3 * n).step_by(2).map(f64::from).collect(),
        };
        let data = ScanData::from_columns(&c);
        let orders: [Vec<usize>; 3] = [
            (0..n as usize).collect(),
            (0..n as usize / 2).flat_map(|i| [i, i + 100]).collect(),
            (0..n as usize).rev().collect(),
        ];
        for order in orders {
            let mut cursor = usize::MAX;
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for i in order {
                got.clear();
                want.clear();
                data.view()
                    .values_into_from(data.rows(i), &mut cursor, &mut got);
                // Against a search from no cursor.
                let mut fresh = usize::MAX;
                data.view()
                    .values_into_from(data.rows(i), &mut fresh, &mut want);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "customer {i}");
            }
        }
    }

    #[test]
    fn name_sets_hold_each_customers_names() {
        // Indexes 1 and 65 share a bit; 300 makes the names two bytes wide.
        for names in [vec![1, 65, 2], vec![0, 300, 63]] {
            let c = sample(names.clone());
            let data = ScanData::from_columns(&c);
            let view = data.view();
            let want = |from: usize, to: usize| NameSet::of(&names[from..to]);
            assert_eq!(view.name_set(0..1), Some(want(0, 2)));
            assert_eq!(view.name_set(1..2), Some(want(2, 3)));
            assert_eq!(view.name_set(0..2), Some(want(0, 3)));
            assert_eq!(view.name_set(1..3), None, "beyond the customers");
        }
    }

    #[test]
    fn format_4_reads_without_name_sets() {
        let c = sample(vec![4, 1, 4]);
        let v4 = as_format_4(&encode(&c));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.scan");
        std::fs::write(&path, &v4).unwrap();
        let old = ScanData::open(&path).unwrap();
        assert!(is_older_format(&path).unwrap());
        let new = ScanData::from_columns(&c);
        assert_eq!(old.view().name_set(0..1), None);
        assert_eq!(new.view().name_set(0..1), Some(NameSet::of(&[4u16, 1])));
        let ids = |d: &ScanData| (0..3).map(|r| d.names().get(r)).collect::<Vec<_>>();
        assert_eq!(ids(&old), ids(&new));
        let times = |d: &ScanData| {
            let mut t = Vec::new();
            (0..2).for_each(|i| d.times().customer_into(i, &mut t));
            t
        };
        assert_eq!(times(&old), times(&new));
    }

    #[test]
    fn older_formats_are_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.scan");
        let mut image = encode(&sample(vec![0, 1, 0]));
        image[..8].copy_from_slice(b"CAIRNSC3");
        image[8..12].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, &image).unwrap();
        let err = ScanData::open(&path).err().unwrap().to_string();
        assert!(err.contains("format 3") && err.contains("import"), "{err}");
    }

    #[test]
    fn a_header_too_short_for_its_version_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.scan");
        std::fs::write(&path, b"CAIRNSC4").unwrap();
        let err = is_older_format(&path).unwrap_err().to_string();
        assert!(err.contains("short.scan"), "{err}");
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
        data.times().customer_into(0, &mut times);
        data.times().customer_into(1, &mut times);
        assert_eq!(times.len(), 3);
    }
}
