//! Building a segment: ordering events and writing the Parquet file and its scan file.

use std::path::Path;

use cairn_model::Event;

use crate::error::{Result, StoreError};
use crate::manifest::SegmentMeta;
use crate::parquet_io::{EventColumns, ParquetSink};
use crate::scanfile::{self, ScanColumns};

/// The most event names (and channels) a store holds: scan files keep their indexes in 16
/// bits. Product analytics tools cap event types far lower (a few thousand).
pub const MAX_NAMES: usize = u16::MAX as usize;

/// Dictionary indexes of events' names and channels. Consecutive events mostly share a name
/// or a channel: the lookup is skipped when they do.
#[derive(Default)]
pub struct DictionaryIds<'e> {
    last_name: Option<(&'e str, u16)>,
    last_channel: Option<(&'e str, u16)>,
}

impl<'e> DictionaryIds<'e> {
    /// The (name, channel) indexes of `e`, from `name_id` / `channel_id` (which add new
    /// names to the dictionaries).
    pub fn of(
        &mut self,
        e: &'e Event,
        name_id: impl FnOnce(&str) -> usize,
        channel_id: impl FnOnce(&str) -> usize,
    ) -> Result<(u16, u16)> {
        let name = match self.last_name {
            Some((n, id)) if n == e.event => id,
            _ => {
                let id = checked(name_id(&e.event), "event names")?;
                self.last_name = Some((&e.event, id));
                id
            }
        };
        let channel = match self.last_channel {
            Some((c, id)) if c == e.channel => id,
            _ => {
                let id = checked(channel_id(&e.channel), "channels")?;
                self.last_channel = Some((&e.channel, id));
                id
            }
        };
        Ok((name, channel))
    }
}

pub(crate) fn checked(id: usize, what: &str) -> Result<u16> {
    u16::try_from(id)
        .ok()
        .filter(|&i| (i as usize) < MAX_NAMES)
        .ok_or_else(|| StoreError::Limit {
            reason: format!(
                "more than {MAX_NAMES} distinct {what}; map them to fewer names before importing"
            ),
        })
}

/// The scan columns of `c`, in `order`.
pub fn scan_columns(c: &EventColumns, order: &[u32]) -> ScanColumns {
    let mut s = ScanColumns {
        times: Vec::with_capacity(order.len()),
        names: Vec::with_capacity(order.len()),
        channels: Vec::with_capacity(order.len()),
        ..Default::default()
    };
    append_scan_columns(&mut s, c, order);
    s.starts.push(order.len() as u32);
    s
}

/// Appends the rows of `c` in `order` to `s` (without the final `starts` entry). The rows'
/// keys must all be above those already in `s`.
fn append_scan_columns(s: &mut ScanColumns, c: &EventColumns, order: &[u32]) {
    for &i in order {
        let i = i as usize;
        let pos = s.times.len() as u32;
        if s.keys.last() != Some(&c.keys[i]) {
            s.keys.push(c.keys[i]);
            s.starts.push(pos);
        }
        s.times.push(c.times[i]);
        s.names.push(c.names[i]);
        s.channels.push(c.channels[i]);
        if let Some(v) = c.value(i) {
            s.value_rows.push(pos);
            s.value_vals.push(v);
        }
    }
}

/// Writes the events of `c` that `keep` marks (all when it is empty) as segment `id` into
/// `dir` (Parquet first, then its scan file) and describes it. `names` and `channels` are the
/// dictionaries `c`'s indexes point into.
pub fn write(
    dir: &Path,
    id: u64,
    c: &EventColumns,
    keep: &[bool],
    names: &[String],
    channels: &[String],
) -> Result<SegmentMeta> {
    let mut sink = SegmentSink::create(dir, id)?;
    sink.reserve(c.len());
    sink.write(c, keep, names, channels)?;
    sink.finish()
}

/// A segment written in parts, each holding customers all above those of the parts before
/// (a merge writes one key range after another, so that it never holds all its events). The
/// Parquet file grows a row group at a time; the scan columns (about 14 bytes an event) are
/// held until [`SegmentSink::finish`] writes the scan file, whose header needs them all.
pub struct SegmentSink {
    dir: std::path::PathBuf,
    meta: SegmentMeta,
    parquet: ParquetSink,
    scan: ScanColumns,
}

impl SegmentSink {
    pub fn create(dir: &Path, id: u64) -> Result<SegmentSink> {
        let meta = SegmentMeta {
            id,
            events: 0,
            customers: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            first_event: 0,
            last_event: 0,
            parquet_bytes: 0,
            scan_bytes: 0,
        };
        Ok(SegmentSink {
            dir: dir.to_path_buf(),
            parquet: ParquetSink::create(&dir.join(meta.parquet_name()))?,
            meta,
            scan: ScanColumns::default(),
        })
    }

    /// Makes room for `events` more events' scan columns at once: growing them by doubling
    /// would hold up to twice their size (a merge knows its total from the start).
    pub fn reserve(&mut self, events: usize) {
        let s = &mut self.scan;
        s.times.reserve_exact(events);
        s.names.reserve_exact(events);
        s.channels.reserve_exact(events);
    }

    /// Appends the events of `c` that `keep` marks (all when it is empty), in segment order.
    /// `names` and `channels` are the dictionaries `c`'s indexes point into.
    pub fn write(
        &mut self,
        c: &EventColumns,
        keep: &[bool],
        names: &[String],
        channels: &[String],
    ) -> Result<()> {
        let order = c.order(keep);
        for &i in &order {
            let seq = c.seqs[i as usize];
            self.meta.min_seq = self.meta.min_seq.min(seq);
            self.meta.max_seq = self.meta.max_seq.max(seq);
        }
        self.parquet.write(c, &order, names, channels)?;
        append_scan_columns(&mut self.scan, c, &order);
        Ok(())
    }

    /// Finishes the Parquet file, then writes the scan file; describes the segment.
    pub fn finish(mut self) -> Result<SegmentMeta> {
        let scan = &mut self.scan;
        scan.starts.push(scan.times.len() as u32);
        let meta = &mut self.meta;
        meta.events = scan.times.len() as u64;
        meta.customers = scan.keys.len() as u64;
        if meta.events == 0 {
            meta.min_seq = 0;
        }
        meta.first_event = scan.times.iter().copied().min().unwrap_or(0);
        meta.last_event = scan.times.iter().copied().max().unwrap_or(0);
        meta.parquet_bytes = self.parquet.finish()?;
        meta.scan_bytes = scanfile::write(&self.dir.join(meta.scan_name()), scan)?;
        Ok(self.meta)
    }
}
