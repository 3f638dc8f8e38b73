//! Building a segment: ordering events and writing the Parquet file and its scan file.

use std::path::Path;

use crate::error::{Result, StoreError};
use crate::manifest::SegmentMeta;
use crate::parquet_io::{self, StoredEvent};
use crate::scanfile::{self, ScanColumns};

/// Events on their way into a segment, in arrival order, with their dictionary indexes.
#[derive(Debug, Default)]
pub struct Chunk {
    pub rows: Vec<StoredEvent>,
    pub names: Vec<u16>,
    pub channels: Vec<u16>,
}

/// The most event names (and channels) a store holds: scan files keep their indexes in 16
/// bits. Product analytics tools cap event types far lower (a few thousand).
pub const MAX_NAMES: usize = u16::MAX as usize;

impl Chunk {
    /// Dictionary indexes for every row, from `name_id` / `channel_id` (which add new names).
    pub fn new(
        rows: Vec<StoredEvent>,
        mut name_id: impl FnMut(&str) -> usize,
        mut channel_id: impl FnMut(&str) -> usize,
    ) -> Result<Chunk> {
        let mut names = Vec::with_capacity(rows.len());
        let mut channels = Vec::with_capacity(rows.len());
        // Consecutive events mostly share a name or a channel: skip the lookup when they do.
        let mut last_name: Option<(&str, u16)> = None;
        let mut last_channel: Option<(&str, u16)> = None;
        for r in &rows {
            let name = match last_name {
                Some((n, id)) if n == r.event.event => id,
                _ => {
                    let id = checked(name_id(&r.event.event), "event names")?;
                    last_name = Some((&r.event.event, id));
                    id
                }
            };
            names.push(name);
            let channel = match last_channel {
                Some((c, id)) if c == r.event.channel => id,
                _ => {
                    let id = checked(channel_id(&r.event.channel), "channels")?;
                    last_channel = Some((&r.event.channel, id));
                    id
                }
            };
            channels.push(channel);
        }
        Ok(Chunk {
            rows,
            names,
            channels,
        })
    }

    /// Row indexes in segment order: (customer key, timestamp, seq). The events themselves are
    /// large, so they are never moved; the writers follow this order instead.
    pub fn order(&self) -> Vec<u32> {
        let mut keyed: Vec<(u32, i64, u64, u32)> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key, r.event.timestamp, r.seq, i as u32))
            .collect();
        if !keyed.is_sorted() {
            keyed.sort_unstable();
        }
        keyed.into_iter().map(|k| k.3).collect()
    }

    /// The scan columns, in `order`.
    pub fn scan_columns(&self, order: &[u32]) -> ScanColumns {
        let n = order.len();
        let mut c = ScanColumns {
            times: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            channels: Vec::with_capacity(n),
            ..Default::default()
        };
        for (pos, &i) in order.iter().enumerate() {
            let r = &self.rows[i as usize];
            if c.keys.last() != Some(&r.key) {
                c.keys.push(r.key);
                c.starts.push(pos as u32);
            }
            c.times.push(r.event.timestamp);
            c.names.push(self.names[i as usize]);
            c.channels.push(self.channels[i as usize]);
            if let Some(v) = r.event.value {
                c.value_rows.push(pos as u32);
                c.value_vals.push(v);
            }
        }
        c.starts.push(n as u32);
        c
    }

    /// Puts the rows themselves in segment order (for in-memory sources, which index rows by
    /// scan position).
    pub fn into_sorted(self) -> (Vec<StoredEvent>, ScanColumns) {
        let order = self.order();
        let scan = self.scan_columns(&order);
        let mut slots: Vec<Option<StoredEvent>> = self.rows.into_iter().map(Some).collect();
        // `order` is a permutation of the row indexes, so every slot is taken exactly once.
        let rows = order
            .iter()
            .filter_map(|&i| slots[i as usize].take())
            .collect();
        (rows, scan)
    }
}

fn checked(id: usize, what: &str) -> Result<u16> {
    u16::try_from(id)
        .ok()
        .filter(|&i| (i as usize) < MAX_NAMES)
        .ok_or_else(|| StoreError::Limit {
            reason: format!(
                "more than {MAX_NAMES} distinct {what}; map them to fewer names before importing"
            ),
        })
}

/// Writes segment `id` into `dir` (Parquet first, then its scan file) and describes it.
pub fn write(dir: &Path, id: u64, chunk: &Chunk) -> Result<SegmentMeta> {
    let order = chunk.order();
    let scan = chunk.scan_columns(&order);
    let mut meta = SegmentMeta {
        id,
        events: chunk.rows.len() as u64,
        customers: scan.keys.len() as u64,
        min_seq: chunk.rows.iter().map(|r| r.seq).min().unwrap_or(0),
        max_seq: chunk.rows.iter().map(|r| r.seq).max().unwrap_or(0),
        first_event: scan.times.iter().copied().min().unwrap_or(0),
        last_event: scan.times.iter().copied().max().unwrap_or(0),
        parquet_bytes: 0,
        scan_bytes: 0,
    };
    meta.parquet_bytes = parquet_io::write(&dir.join(meta.parquet_name()), &chunk.rows, &order)?;
    meta.scan_bytes = scanfile::write(&dir.join(meta.scan_name()), &scan)?;
    Ok(meta)
}
