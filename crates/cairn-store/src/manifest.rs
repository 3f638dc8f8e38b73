//! The manifest: the one file that says what the store holds.
//!
//! Every change to the set of segments, the dictionaries or the log checkpoint becomes visible
//! in a single atomic step: write `MANIFEST.json.tmp`, fsync it, rename it over `MANIFEST.json`,
//! fsync the directory. A file not named by the manifest is not part of the store (an import or
//! compaction that was interrupted) and is removed when a writer next opens it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{fsync_dir, write_atomically};

pub const MANIFEST_FILE: &str = "MANIFEST.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Bumped by every commit, so a reader can tell that it raced with a writer.
    pub version: u64,
    pub next_segment_id: u64,
    /// The ingest sequence number the next event gets. It orders events that share a
    /// customer and a timestamp, and it is the position of an event in the log.
    pub next_seq: u64,
    /// Segments in log order: each covers a contiguous range of sequence numbers, and later
    /// segments hold later ones (compaction only merges neighbours).
    pub segments: Vec<SegmentMeta>,
    /// Event-name dictionary: the scan files store an index into this list.
    pub event_names: Vec<String>,
    /// Channel dictionary, likewise.
    pub channels: Vec<String>,
    /// How much of `customers.dict` is committed.
    pub customers: DictExtent,
    /// Log records with a batch sequence number at or below this are in segments.
    pub wal_checkpoint: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DictExtent {
    pub count: u64,
    pub bytes: u64,
    /// CRC-32 of the first `bytes` bytes.
    pub crc: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub id: u64,
    pub events: u64,
    pub customers: u64,
    pub min_seq: u64,
    pub max_seq: u64,
    pub first_event: i64,
    pub last_event: i64,
    pub parquet_bytes: u64,
    pub scan_bytes: u64,
}

impl SegmentMeta {
    pub fn parquet_name(&self) -> String {
        format!("seg-{:08}.parquet", self.id)
    }
    pub fn scan_name(&self) -> String {
        format!("seg-{:08}.scan", self.id)
    }
}

impl Manifest {
    pub fn new() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            next_segment_id: 1,
            ..Default::default()
        }
    }

    /// Reads the manifest, or `None` for a directory that holds no store yet.
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path,
                found: manifest.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Some(manifest))
    }

    /// Makes this manifest the store's state, atomically and durably.
    pub fn commit(&mut self, dir: &Path) -> Result<()> {
        self.version += 1;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Corrupt {
            path: dir.join(MANIFEST_FILE),
            reason: format!("cannot encode manifest: {e}"),
        })?;
        write_atomically(&dir.join(MANIFEST_FILE), &bytes)?;
        fsync_dir(dir).at(dir)
    }
}
