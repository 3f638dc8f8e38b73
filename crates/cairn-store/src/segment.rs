//! Building a segment: sorting events and writing the Parquet file and its scan file.

use std::path::Path;

use crate::error::Result;
use crate::manifest::SegmentMeta;
use crate::parquet_io::{self, StoredEvent};
use crate::scanfile::{self, ScanColumns};

/// Sorts rows into segment order — (customer key, timestamp, seq) — and derives the scan
/// columns, asking `name_id` / `channel_id` for dictionary indexes.
pub fn scan_columns(
    rows: &mut [StoredEvent],
    mut name_id: impl FnMut(&str) -> u32,
    mut channel_id: impl FnMut(&str) -> u16,
) -> ScanColumns {
    rows.sort_unstable_by_key(|r| (r.key, r.event.timestamp, r.seq));
    let mut c = ScanColumns {
        times: Vec::with_capacity(rows.len()),
        names: Vec::with_capacity(rows.len()),
        channels: Vec::with_capacity(rows.len()),
        ..Default::default()
    };
    let has_values = rows.iter().any(|r| r.event.value.is_some());
    if has_values {
        c.values.reserve(rows.len());
    }
    // Consecutive events mostly share a name and a channel: skip the lookup when they do.
    let mut last_name: (&str, u32) = ("", u32::MAX);
    let mut last_channel: (&str, u16) = ("", u16::MAX);
    for (i, r) in rows.iter().enumerate() {
        if c.keys.last() != Some(&r.key) {
            c.keys.push(r.key);
            c.starts.push(i as u32);
        }
        c.times.push(r.event.timestamp);
        if last_name.1 == u32::MAX || last_name.0 != r.event.event {
            last_name = (&r.event.event, name_id(&r.event.event));
        }
        c.names.push(last_name.1);
        if last_channel.1 == u16::MAX || last_channel.0 != r.event.channel {
            last_channel = (&r.event.channel, channel_id(&r.event.channel));
        }
        c.channels.push(last_channel.1);
        if has_values {
            c.values.push(r.event.value.unwrap_or(f64::NAN));
        }
    }
    c.starts.push(rows.len() as u32);
    c
}

/// Writes segment `id` into `dir` (Parquet first, then its scan file) and describes it.
/// The rows must already be in segment order (see [`scan_columns`]).
pub fn write(dir: &Path, id: u64, rows: &[StoredEvent], scan: &ScanColumns) -> Result<SegmentMeta> {
    let mut meta = SegmentMeta {
        id,
        events: rows.len() as u64,
        customers: scan.keys.len() as u64,
        min_seq: rows.iter().map(|r| r.seq).min().unwrap_or(0),
        max_seq: rows.iter().map(|r| r.seq).max().unwrap_or(0),
        first_event: scan.times.iter().copied().min().unwrap_or(0),
        last_event: scan.times.iter().copied().max().unwrap_or(0),
        parquet_bytes: 0,
        scan_bytes: 0,
    };
    meta.parquet_bytes = parquet_io::write(&dir.join(meta.parquet_name()), rows)?;
    meta.scan_bytes = scanfile::write(&dir.join(meta.scan_name()), scan)?;
    Ok(meta)
}
