//! The right to be forgotten: removing every event of some customers from the store, and
//! keeping them out afterwards.
//!
//! [`Store::forget`] takes identifier values (raw user ids, anonymous ids, e-mail addresses, …;
//! identity resolution decides which belong to the person) and:
//!
//! 1. records a **suppression entry** for each value first — a salted SHA-256, never the value —
//!    in `suppressed.json`, so from that moment `append` and imports drop any event whose
//!    `userId` or `anonymousId` is one of them, even if the rest fails;
//! 2. flushes the log into a segment, which removes the log files holding their events;
//! 3. rewrites every segment (Parquet and scan file) holding an event filed under one of the
//!    values, or carrying one as `userId` / `anonymousId`, without those events; a segment left
//!    empty is dropped;
//! 4. rewrites `customers.dict` with each forgotten customer id replaced by a placeholder, so
//!    every other customer keeps its key and no scan file needs renumbering;
//! 5. commits all of it in one manifest commit, then deletes the old files, and drops
//!    quarantined (rejected) import records that mention a value.
//!
//! # Crash safety
//!
//! New segments and the new dictionary (`customers.dict.new`) are written before the manifest
//! commit; the old files are removed after it. The dictionary is the one file that is replaced
//! rather than added, so its swap is finished by whoever opens the store next: a
//! `customers.dict.new` whose checksum matches the manifest is the committed one (the writer
//! renames it into place), any other is a leftover of a forget that never committed and is
//! deleted. A crash therefore leaves either the old state (with the suppression entries, so a
//! second `forget` finishes the job) or the new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cairn_model::Event;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dict::{CustomerDict, DICT_FILE};
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{fsync_dir, write_atomically};
use crate::hash::FxHashSet;
use crate::manifest::DictExtent;
use crate::parquet_io::{self, EventColumns};
use crate::scanfile::ScanData;
use crate::segment::{self, DictionaryIds};
use crate::{SEGMENTS_DIR, SegmentMeta, Store, intern_cached, remove_segment_files};

/// Salted hashes of forgotten identifiers, in the data directory.
pub const SUPPRESSION_FILE: &str = "suppressed.json";
/// A rewritten customer dictionary waiting for (or just after) its manifest commit.
const DICT_NEW: &str = "customers.dict.new";
/// Where `cairn import` puts rejected records by default.
const QUARANTINE_DIR: &str = "quarantine";

/// What [`Store::forget`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ForgetOutcome {
    /// Customer ids (store keys) whose events were filed under a forgotten value.
    pub customers: u64,
    pub events_removed: u64,
    pub segments_rewritten: u64,
    /// Segments that held nothing else and were dropped.
    pub segments_dropped: u64,
    /// Suppression entries added (values already suppressed are not counted twice).
    pub suppressed: u64,
    /// Rejected import records (quarantine lines) that mentioned a value.
    pub quarantine_lines_removed: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SuppressionFile {
    /// Hex; random per data directory, so the hashes are useless against another store's.
    salt: String,
    /// Hex SHA-256 of salt ‖ value, sorted.
    hashes: Vec<String>,
}

/// The suppression list a writer checks every incoming event against.
#[derive(Debug, Default)]
pub(crate) struct Suppression {
    salt: Vec<u8>,
    hashes: FxHashSet<[u8; 32]>,
    /// Events dropped since the store was opened.
    dropped: AtomicU64,
}

impl Suppression {
    pub(crate) fn load(dir: &Path) -> Result<Suppression> {
        let path = dir.join(SUPPRESSION_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Suppression::default()),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file: SuppressionFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let salt = from_hex(&file.salt).ok_or_else(|| corrupt("salt is not hex".into()))?;
        let hashes = file
            .hashes
            .iter()
            .map(|h| {
                from_hex(h)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| corrupt(format!("{h:?} is not a SHA-256 in hex")))
            })
            .collect::<Result<_>>()?;
        Ok(Suppression {
            salt,
            hashes,
            dropped: AtomicU64::new(0),
        })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut hashes: Vec<String> = self.hashes.iter().map(|h| to_hex(h)).collect();
        hashes.sort();
        let file = SuppressionFile {
            salt: to_hex(&self.salt),
            hashes,
        };
        let path = dir.join(SUPPRESSION_FILE);
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        write_atomically(&path, &bytes)?;
        fsync_dir(dir).at(dir)
    }

    fn hash(&self, value: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(value.as_bytes());
        h.finalize().into()
    }

    fn contains(&self, value: &str) -> bool {
        self.hashes.contains(&self.hash(value))
    }

    /// Adds values; returns how many were new.
    fn add(&mut self, dir: &Path, values: &[String]) -> Result<u64> {
        if self.salt.is_empty() {
            self.salt = random_salt(dir)?;
        }
        let mut added = 0;
        for v in values {
            let h = self.hash(v);
            added += u64::from(self.hashes.insert(h));
        }
        Ok(added)
    }

    /// Whether `event` belongs to a forgotten customer (and counts it if so). Costs nothing
    /// while nobody was forgotten.
    pub(crate) fn drops(&self, event: &Event) -> bool {
        self.drops_ids(event.user_id.as_deref(), event.anonymous_id.as_deref())
    }

    /// [`Suppression::drops`] for an event given by its user and anonymous ids.
    pub(crate) fn drops_ids(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> bool {
        if self.hashes.is_empty() {
            return false;
        }
        let hit = [user_id, anonymous_id]
            .into_iter()
            .flatten()
            .any(|v| self.contains(v));
        if hit {
            self.dropped.fetch_add(1, Relaxed);
        }
        hit
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

fn random_salt(dir: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut salt = vec![0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|source| StoreError::Io {
            path: dir.join(SUPPRESSION_FILE),
            source,
        })?;
    Ok(salt)
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| {
            [
                HEX[(b >> 4) as usize] as char,
                HEX[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Which dictionary file a reader or writer opening the store should read: finishes the swap
/// of a forget's rewritten dictionary (see the module doc).
pub(crate) fn dict_path(dir: &Path, extent: &DictExtent, writable: bool) -> Result<PathBuf> {
    let main = dir.join(DICT_FILE);
    let new = dir.join(DICT_NEW);
    let committed = match std::fs::read(&new) {
        Ok(bytes) => {
            let n = extent.bytes as usize;
            bytes.len() == n && crc32fast::hash(&bytes) == extent.crc
        }
        // None, or renamed by the writer meanwhile: the main file is the one.
        Err(_) => return Ok(main),
    };
    if !writable {
        return Ok(if committed { new } else { main });
    }
    if committed {
        std::fs::rename(&new, &main).at(&main)?;
    } else {
        std::fs::remove_file(&new).at(&new)?;
    }
    fsync_dir(dir).at(dir)?;
    Ok(main)
}

impl Store {
    /// Removes every event of the customers named by `values` from the store and suppresses
    /// the values (see the module doc). `values` are raw identifier texts: events filed under
    /// one of them, or carrying one as `userId` or `anonymousId`, are removed.
    pub fn forget(&self, values: &[String]) -> Result<ForgetOutcome> {
        let mut guard = self.lock_settled()?;
        // A plain reference, so that closures below can borrow its fields separately.
        let inner: &mut crate::Inner = &mut guard;
        // Flush first: events of this customer still in the log then reach a segment and are
        // counted below; with the suppression in place, the flush would drop them uncounted.
        self.flush_locked(inner)?;
        let mut outcome = ForgetOutcome {
            suppressed: inner.suppression.add(&self.dir, values)?,
            ..Default::default()
        };
        inner.suppression.save(&self.dir)?;

        let wanted: FxHashSet<&str> = values.iter().map(String::as_str).collect();
        let keys: FxHashSet<u32> = values.iter().filter_map(|v| inner.dict.key(v)).collect();
        outcome.customers = keys.len() as u64;
        let mentions = |e: &Event| {
            [&e.user_id, &e.anonymous_id]
                .into_iter()
                .flatten()
                .any(|v| wanted.contains(v.as_str()))
        };

        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let mut manifest = inner.manifest.clone();
        let mut segments = Vec::with_capacity(manifest.segments.len());
        let mut replaced = Vec::new();
        let mut written = Vec::new();
        let rewrite = (|| -> Result<()> {
            for seg in inner.manifest.segments.clone() {
                if !segment_holds(&seg_dir, &seg, &keys, &wanted)? {
                    segments.push(seg);
                    continue;
                }
                let rows = parquet_io::read(
                    &parquet_io::SegmentFile::open(&seg_dir.join(seg.parquet_name()))?,
                    None,
                )?;
                let mut columns = EventColumns::default();
                let mut ids = DictionaryIds::default();
                for r in &rows {
                    if keys.contains(&r.key) || mentions(&r.event) {
                        outcome.events_removed += 1;
                        continue;
                    }
                    let (name, channel) = ids.of(
                        &r.event,
                        |n| intern_cached(&mut manifest.event_names, &mut inner.names, n),
                        |c| intern_cached(&mut manifest.channels, &mut inner.channels, c),
                    )?;
                    columns.push(r.key, r.seq, name, channel, &r.event);
                }
                replaced.push(seg.id);
                if columns.is_empty() {
                    outcome.segments_dropped += 1;
                    continue;
                }
                let id = manifest.next_segment_id;
                manifest.next_segment_id += 1;
                written.push(id);
                segments.push(segment::write(
                    &seg_dir,
                    id,
                    &columns,
                    &[],
                    &manifest.event_names,
                    &manifest.channels,
                )?);
                outcome.segments_rewritten += 1;
            }
            if !keys.is_empty() {
                manifest.customers = inner.dict.write_replacing(&self.dir.join(DICT_NEW), |k| {
                    keys.contains(&k).then(|| format!("\u{0}forgotten-{k}"))
                })?;
            }
            manifest.segments = std::mem::take(&mut segments);
            fsync_dir(&seg_dir).at(&seg_dir)?;
            manifest.commit(&self.dir)
        })();
        if let Err(e) = rewrite {
            for &id in &written {
                remove_segment_files(&seg_dir, id);
            }
            let _ = std::fs::remove_file(self.dir.join(DICT_NEW));
            return Err(e);
        }
        // Committed: finish the dictionary swap and delete what the manifest no longer names.
        inner.manifest = manifest;
        if !keys.is_empty() {
            let path = dict_path(&self.dir, &inner.manifest.customers, true)?;
            debug_assert_eq!(path, self.dir.join(DICT_FILE));
            inner.dict = CustomerDict::load(&self.dir, &inner.manifest.customers, true)?;
        }
        for id in replaced {
            remove_segment_files(&seg_dir, id);
        }
        fsync_dir(&seg_dir).at(&seg_dir)?;
        // Message ids of removed events are no longer stored; the seen set is rebuilt on need.
        inner.seen = None;
        outcome.quarantine_lines_removed =
            scrub_quarantine(&self.dir.join(QUARANTINE_DIR), values)?;
        Ok(outcome)
    }

    /// Events dropped since the store was opened because they belong to a forgotten customer.
    pub fn suppressed_events(&self) -> u64 {
        self.lock().suppression.dropped.load(Relaxed)
    }
}

/// Whether a segment holds an event filed under one of `keys` (its scan file says) or carrying
/// one of `wanted` as user or anonymous id (read from those two Parquet columns only).
fn segment_holds(
    seg_dir: &Path,
    seg: &SegmentMeta,
    keys: &FxHashSet<u32>,
    wanted: &FxHashSet<&str>,
) -> Result<bool> {
    let scan = ScanData::open(&seg_dir.join(seg.scan_name()))?;
    if keys.iter().any(|&k| scan.find(k).is_some()) {
        return Ok(true);
    }
    let parquet = seg_dir.join(seg.parquet_name());
    for column in ["user_id", "anonymous_id"] {
        for array in
            parquet_io::read_text_column(&parquet_io::SegmentFile::open(&parquet)?, column)?
        {
            if array.iter().flatten().any(|v| wanted.contains(v)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Drops the lines of quarantine files (rejected import records, JSON lines) that mention a
/// value; returns how many. A short value is matched only as a whole JSON string, so that
/// forgetting customer `7` does not drop every record holding the digit.
fn scrub_quarantine(dir: &Path, values: &[String]) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let needles: Vec<String> = values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| match v.len() {
            0..4 => serde_json::to_string(v).unwrap_or_default(),
            _ => v.clone(),
        })
        .collect();
    let mut removed = 0;
    for entry in entries {
        let path = entry.at(dir)?.path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read(&path).at(&path)?;
        let mut kept = Vec::with_capacity(text.len());
        let mut dropped = 0;
        for line in text.split_inclusive(|&b| b == b'\n') {
            if needles.iter().any(|n| contains(line, n.as_bytes())) {
                dropped += 1;
            } else {
                kept.extend_from_slice(line);
            }
        }
        if dropped > 0 {
            write_atomically(&path, &kept)?;
            removed += dropped;
        }
    }
    if removed > 0 {
        fsync_dir(dir).at(dir)?;
    }
    Ok(removed)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
