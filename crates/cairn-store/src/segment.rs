//! Building a segment: ordering events and writing the Parquet file and its scan file.

use std::path::Path;

use cairn_model::Event;

use crate::error::{Result, StoreError};
use crate::manifest::SegmentMeta;
use crate::parquet_io::EventColumns;
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
    let n = order.len();
    let mut s = ScanColumns {
        times: Vec::with_capacity(n),
        names: Vec::with_capacity(n),
        channels: Vec::with_capacity(n),
        ..Default::default()
    };
    for (pos, &i) in order.iter().enumerate() {
        let i = i as usize;
        if s.keys.last() != Some(&c.keys[i]) {
            s.keys.push(c.keys[i]);
            s.starts.push(pos as u32);
        }
        s.times.push(c.times[i]);
        s.names.push(c.names[i]);
        s.channels.push(c.channels[i]);
        if let Some(v) = c.values[i] {
            s.value_rows.push(pos as u32);
            s.value_vals.push(v);
        }
    }
    s.starts.push(n as u32);
    s
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
    let order = c.order(keep);
    let scan = scan_columns(c, &order);
    let seqs = || order.iter().map(|&i| c.seqs[i as usize]);
    let mut meta = SegmentMeta {
        id,
        events: order.len() as u64,
        customers: scan.keys.len() as u64,
        min_seq: seqs().min().unwrap_or(0),
        max_seq: seqs().max().unwrap_or(0),
        first_event: scan.times.iter().copied().min().unwrap_or(0),
        last_event: scan.times.iter().copied().max().unwrap_or(0),
        parquet_bytes: 0,
        scan_bytes: 0,
    };
    meta.parquet_bytes = c.write(&dir.join(meta.parquet_name()), &order, names, channels)?;
    meta.scan_bytes = scanfile::write(&dir.join(meta.scan_name()), &scan)?;
    Ok(meta)
}
