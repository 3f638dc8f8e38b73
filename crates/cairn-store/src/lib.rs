//! The durable, customer-ordered event store: Cairn's single source of truth.
//!
//! # How data moves
//!
//! ```text
//!  streamed batches ──► write-ahead log (group commit, fsync) ──► memtable ──flush──┐
//!                                                                                   ▼
//!  bulk import ──────────────── chunks, sorted by (customer, time, seq) ──────► segments
//!                                                                                   │
//!  compaction merges neighbouring segments ◄────────────────────────────────────────┘
//! ```
//!
//! A segment is an immutable Parquet file (every field, readable by DuckDB & co.) plus a scan
//! file (the hot columns as memory-mapped arrays). The manifest names the live segments, the
//! dictionaries and the log checkpoint, and changes atomically: that commit is the moment data
//! becomes part of the store. The log is cut only after its events are committed in segments.
//!
//! One process writes (it holds `LOCK`); any number read, through [`Snapshot`], without locks.
//!
//! # Ordering
//!
//! Every event gets a sequence number when it enters the store (log order for streamed
//! events, file order for imports). Within a customer, events are ordered by
//! (timestamp, sequence number): equal timestamps keep arrival order. This order is what the
//! journey engine will replay, so it never depends on how segments happen to be laid out.

mod dict;
mod error;
mod framing;
mod fsutil;
mod hash;
mod manifest;
mod parquet_io;
mod repair;
mod scanfile;
mod segment;
mod snapshot;
mod wal;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cairn_model::Event;

pub use error::{Result, StoreError};
pub use fsutil::disk_bytes;
pub use manifest::{MANIFEST_FILE, Manifest, SegmentMeta};
pub use repair::{RepairReport, repair};
pub use parquet_io::StoredEvent;
pub use snapshot::{Columns, Customer, Snapshot, Stats};

use dict::CustomerDict;
use error::IoContext;
use hash::{FxHashMap, FxHashSet, message_digest};

pub const SEGMENTS_DIR: &str = "segments";
const LOCK_FILE: &str = "LOCK";

/// Tunables, with defaults that suit a laptop and a 2-core server alike.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events buffered from the log before they are flushed into a segment.
    pub memtable_events: usize,
    /// Beyond this many segments, a writer merges neighbouring ones after each commit.
    pub max_segments: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            memtable_events: 250_000,
            max_segments: 8,
        }
    }
}

/// What happened to a batch of events given to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Newly stored.
    pub accepted: u64,
    /// Already stored (same message id): dropped.
    pub duplicates: u64,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Outcome) {
        self.accepted += o.accepted;
        self.duplicates += o.duplicates;
    }
}

/// What compaction did.
#[derive(Debug, Clone, Default)]
pub struct Compaction {
    pub merged_segments: usize,
    pub events: u64,
}

/// A writable store: the single writer of a data directory.
pub struct Store {
    dir: PathBuf,
    options: Options,
    _lock: File,
    wal: wal::Wal,
    inner: Mutex<Inner>,
    /// Bytes cut from a torn log tail during recovery, for the caller to report.
    recovered_cut: Option<(PathBuf, u64)>,
}

struct Inner {
    manifest: Manifest,
    dict: CustomerDict,
    names: FxHashMap<String, u32>,
    channels: FxHashMap<String, u32>,
    /// Digests of every stored message id; loaded on first need.
    seen: Option<FxHashSet<u128>>,
    /// Digests in log batches not yet durable, with the batch that carries them.
    in_flight: FxHashMap<u128, u64>,
    /// Durable log batches not yet in a segment.
    memtable: Vec<wal::Batch>,
    memtable_events: usize,
}

impl Inner {
    fn rebuild_caches(&mut self) {
        self.names = self
            .manifest
            .event_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        self.channels = self
            .manifest
            .channels
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
    }
}

/// The dictionary index of `name`, adding it to `list` when new; `cache` mirrors `list`.
fn intern_cached(list: &mut Vec<String>, cache: &mut FxHashMap<String, u32>, name: &str) -> u32 {
    if let Some(&id) = cache.get(name) {
        return id;
    }
    list.push(name.to_string());
    let id = (list.len() - 1) as u32;
    cache.insert(name.to_string(), id);
    id
}

/// Channels are stored as u16: more than 65,536 distinct channels would be a misuse, and they
/// share the last slot rather than fail an import.
fn channel_index(id: u32) -> u16 {
    id.min(u16::MAX as u32) as u16
}

impl Store {
    /// Opens (creating if needed) the store in `dir` for writing, recovering the log.
    pub fn open(dir: &Path, options: Options) -> Result<Store> {
        std::fs::create_dir_all(dir.join(SEGMENTS_DIR)).at(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io {
                    path: lock_path,
                    source: e,
                });
            }
        }
        let manifest = match Manifest::load(dir)? {
            Some(m) => m,
            None => {
                let mut m = Manifest::new();
                m.commit(dir)?;
                m
            }
        };
        remove_orphans(dir, &manifest)?;
        let dict = CustomerDict::load(dir, &manifest.customers, true)?;
        let (wal, recovery) = wal::Wal::open(dir, manifest.wal_checkpoint)?;
        let memtable_events = recovery.batches.iter().map(|b| b.events.len()).sum();
        let store = Store {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            wal,
            inner: Mutex::new(Inner {
                manifest,
                dict,
                names: Default::default(),
                channels: Default::default(),
                seen: None,
                in_flight: Default::default(),
                memtable: recovery.batches,
                memtable_events,
            }),
            recovered_cut: recovery.cut,
        };
        {
            let mut inner = store.lock();
            inner.rebuild_caches();
            if inner.memtable_events > 0 {
                store.flush_locked(&mut inner)?;
            }
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A torn log tail cut during recovery: the file and the number of bytes dropped.
    pub fn recovered_cut(&self) -> Option<&(PathBuf, u64)> {
        self.recovered_cut.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A consistent read view of everything committed or acknowledged so far.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::load(&self.dir)
    }

    fn load_seen<'a>(&self, inner: &'a mut Inner) -> Result<&'a mut FxHashSet<u128>> {
        if inner.seen.is_none() {
            let total: u64 = inner.manifest.segments.iter().map(|s| s.events).sum();
            let mut seen = FxHashSet::with_capacity_and_hasher(
                total as usize + inner.memtable_events,
                Default::default(),
            );
            for seg in &inner.manifest.segments {
                let path = self.dir.join(SEGMENTS_DIR).join(seg.parquet_name());
                parquet_io::read_message_ids(&path, |id| {
                    seen.insert(message_digest(id));
                })?;
            }
            for batch in &inner.memtable {
                seen.extend(batch.events.iter().map(|e| message_digest(&e.message_id)));
            }
            inner.seen = Some(seen);
        }
        Ok(inner.seen.get_or_insert_with(Default::default))
    }

    /// Appends events through the write-ahead log; returns once they are durable. Events whose
    /// message id is already stored are dropped (and counted as duplicates).
    pub fn append(&self, events: Vec<Event>) -> Result<Outcome> {
        let mut wait_for = 0u64;
        let (number, outcome, digests) = {
            let mut inner = self.lock();
            self.load_seen(&mut inner)?;
            let mut fresh = Vec::with_capacity(events.len());
            let mut digests = Vec::with_capacity(events.len());
            let mut outcome = Outcome::default();
            for e in events {
                let d = message_digest(&e.message_id);
                if let Some(&batch) = inner.in_flight.get(&d) {
                    // Sent twice while the first copy is still being written: acknowledge
                    // the duplicate only once the first copy is durable.
                    wait_for = wait_for.max(batch);
                    outcome.duplicates += 1;
                } else if inner.seen.as_ref().is_some_and(|s| s.contains(&d))
                    || digests.contains(&d)
                {
                    outcome.duplicates += 1;
                } else {
                    digests.push(d);
                    fresh.push(e);
                }
            }
            outcome.accepted = fresh.len() as u64;
            let number = if fresh.is_empty() {
                0
            } else {
                self.wal.enqueue(&fresh)?
            };
            for &d in &digests {
                inner.in_flight.insert(d, number);
            }
            (number.max(wait_for), outcome, (digests, fresh, number))
        };
        let (digests, fresh, batch_number) = digests;
        let durable = self.wal.wait_durable(number);
        let mut inner = self.lock();
        for d in &digests {
            inner.in_flight.remove(d);
        }
        durable?;
        if batch_number > 0 {
            if let Some(seen) = inner.seen.as_mut() {
                seen.extend(digests);
            }
            inner.memtable_events += fresh.len();
            inner.memtable.push(wal::Batch {
                number: batch_number,
                events: fresh,
            });
            if inner.memtable_events >= self.options.memtable_events {
                self.flush_locked(&mut inner)?;
            }
        }
        Ok(outcome)
    }

    /// Moves every durable log batch into a new segment and cuts the log behind it.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.lock();
        self.flush_locked(&mut inner)
    }

    fn flush_locked(&self, inner: &mut Inner) -> Result<()> {
        if inner.memtable.is_empty() {
            return Ok(());
        }
        // Only a gap-free run of batch numbers after the checkpoint may be checkpointed: a
        // batch still on its way into the memtable must not be skipped over.
        inner.memtable.sort_by_key(|b| b.number);
        let mut upto = inner.manifest.wal_checkpoint;
        let mut take = 0;
        for b in &inner.memtable {
            if b.number != upto + 1 {
                break;
            }
            upto = b.number;
            take += 1;
        }
        if take == 0 {
            return Ok(());
        }
        self.wal.rotate();
        let batches: Vec<wal::Batch> = inner.memtable.drain(..take).collect();
        let events: Vec<Event> = batches.into_iter().flat_map(|b| b.events).collect();
        inner.memtable_events -= events.len();
        let mut txn = Txn::begin(self, inner);
        let result = txn.add(events).and_then(|_| {
            txn.manifest.wal_checkpoint = upto;
            txn.commit()
        });
        result?;
        self.wal.remove_upto(upto)?;
        self.maybe_compact(inner)?;
        Ok(())
    }

    /// Starts a bulk import: chunks added to it become visible together at
    /// [`Import::commit`], or not at all.
    pub fn import(&self) -> Result<Import<'_>> {
        let mut inner = self.lock();
        self.flush_locked(&mut inner)?;
        self.load_seen(&mut inner)?;
        Ok(Import {
            store: self,
            inner,
            committed: false,
            outcome: Outcome::default(),
            state: TxnState::default(),
        })
    }

    /// Merges segments: all of them when `all`, else only while there are more than
    /// `max_segments`.
    pub fn compact(&self, all: bool) -> Result<Compaction> {
        let mut inner = self.lock();
        self.flush_locked(&mut inner)?;
        if all {
            let n = inner.manifest.segments.len();
            if n <= 1 {
                return Ok(Compaction::default());
            }
            return self.merge(&mut inner, 0..n);
        }
        self.maybe_compact(&mut inner)
    }

    fn maybe_compact(&self, inner: &mut Inner) -> Result<Compaction> {
        let mut done = Compaction::default();
        while inner.manifest.segments.len() > self.options.max_segments {
            // Merge the neighbouring pair with the fewest events: cheap, and it keeps
            // segments covering contiguous ranges of the log.
            let segs = &inner.manifest.segments;
            let i = (0..segs.len() - 1)
                .min_by_key(|&i| segs[i].events + segs[i + 1].events)
                .unwrap_or(0);
            let c = self.merge(inner, i..i + 2)?;
            done.merged_segments += c.merged_segments;
            done.events += c.events;
        }
        Ok(done)
    }

    fn merge(&self, inner: &mut Inner, range: std::ops::Range<usize>) -> Result<Compaction> {
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let old: Vec<SegmentMeta> = inner.manifest.segments[range.clone()].to_vec();
        let mut rows = Vec::with_capacity(old.iter().map(|s| s.events as usize).sum());
        for seg in &old {
            rows.extend(parquet_io::read(&seg_dir.join(seg.parquet_name()), None)?);
        }
        let mut manifest = inner.manifest.clone();
        let scan = segment::scan_columns(
            &mut rows,
            |n| intern_cached(&mut manifest.event_names, &mut inner.names, n),
            |c| {
                channel_index(intern_cached(
                    &mut manifest.channels,
                    &mut inner.channels,
                    c,
                ))
            },
        );
        let id = manifest.next_segment_id;
        manifest.next_segment_id += 1;
        let meta = segment::write(&seg_dir, id, &rows, &scan)?;
        manifest.segments.splice(range, [meta]);
        manifest.commit(&self.dir)?;
        inner.manifest = manifest;
        for seg in &old {
            for name in [seg.parquet_name(), seg.scan_name()] {
                let path = seg_dir.join(name);
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        crate::fsutil::fsync_dir(&seg_dir).at(&seg_dir)?;
        Ok(Compaction {
            merged_segments: old.len(),
            events: rows.len() as u64,
        })
    }
}

/// Removes files a crashed import or compaction left behind: anything in `segments/` the
/// manifest does not name.
fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<()> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let live: std::collections::HashSet<String> = manifest
        .segments
        .iter()
        .flat_map(|s| [s.parquet_name(), s.scan_name()])
        .collect();
    for entry in std::fs::read_dir(&seg_dir).at(&seg_dir)? {
        let entry = entry.at(&seg_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !live.contains(&name) {
            std::fs::remove_file(entry.path()).at(entry.path())?;
        }
    }
    Ok(())
}

/// The part of a write in progress that is undone if it is not committed.
#[derive(Default)]
struct TxnState {
    manifest: Option<Manifest>,
    written: Vec<PathBuf>,
    digests: Vec<u128>,
}

/// Writes chunks as new segments against a working copy of the manifest.
struct Txn<'a, 'b> {
    store: &'a Store,
    inner: &'b mut Inner,
    manifest: Manifest,
    state: TxnState,
}

impl<'a, 'b> Txn<'a, 'b> {
    fn begin(store: &'a Store, inner: &'b mut Inner) -> Txn<'a, 'b> {
        let manifest = inner.manifest.clone();
        Txn {
            store,
            inner,
            manifest,
            state: TxnState::default(),
        }
    }

    fn add(&mut self, events: Vec<Event>) -> Result<()> {
        write_chunk(
            self.store,
            self.inner,
            &mut self.manifest,
            &mut self.state,
            events,
            false,
        )
        .map(|_| ())
    }

    fn commit(mut self) -> Result<()> {
        let state = std::mem::take(&mut self.state);
        commit(
            self.store,
            self.inner,
            std::mem::take(&mut self.manifest),
            state,
        )
    }
}

impl Drop for Txn<'_, '_> {
    fn drop(&mut self) {
        rollback(self.inner, std::mem::take(&mut self.state));
    }
}

/// Dedupes, keys, sorts and writes one chunk as a segment into the working manifest.
fn write_chunk(
    store: &Store,
    inner: &mut Inner,
    manifest: &mut Manifest,
    state: &mut TxnState,
    events: Vec<Event>,
    dedupe: bool,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut rows = Vec::with_capacity(events.len());
    let mut last_customer: Option<(String, u32)> = None;
    for event in events {
        if dedupe {
            let d = message_digest(&event.message_id);
            // `insert` is false when the id is stored already or earlier in this import.
            if !inner.seen.get_or_insert_with(Default::default).insert(d) {
                outcome.duplicates += 1;
                continue;
            }
            state.digests.push(d);
        }
        // Sources mostly list a customer's events together: skip the map lookup then.
        let key = match &last_customer {
            Some((id, key)) if id == event.customer_id() => *key,
            _ => {
                let key = inner.dict.key_or_insert(event.customer_id());
                last_customer = Some((event.customer_id().to_string(), key));
                key
            }
        };
        rows.push(StoredEvent {
            key,
            seq: manifest.next_seq,
            event,
        });
        manifest.next_seq += 1;
    }
    outcome.accepted = rows.len() as u64;
    if rows.is_empty() {
        return Ok(outcome);
    }
    let scan = segment::scan_columns(
        &mut rows,
        |n| intern_cached(&mut manifest.event_names, &mut inner.names, n),
        |c| {
            channel_index(intern_cached(
                &mut manifest.channels,
                &mut inner.channels,
                c,
            ))
        },
    );
    let id = manifest.next_segment_id;
    manifest.next_segment_id += 1;
    let seg_dir = store.dir.join(SEGMENTS_DIR);
    let probe = SegmentMeta {
        id,
        ..Default::default()
    };
    state.written.push(seg_dir.join(probe.parquet_name()));
    state.written.push(seg_dir.join(probe.scan_name()));
    let meta = segment::write(&seg_dir, id, &rows, &scan)?;
    manifest.segments.push(meta);
    Ok(outcome)
}

fn commit(
    store: &Store,
    inner: &mut Inner,
    mut manifest: Manifest,
    mut state: TxnState,
) -> Result<()> {
    let result = (|| {
        crate::fsutil::fsync_dir(&store.dir.join(SEGMENTS_DIR)).at(store.dir.join(SEGMENTS_DIR))?;
        manifest.customers = inner.dict.persist()?;
        manifest.commit(&store.dir)
    })();
    match result {
        Ok(()) => {
            inner.dict.committed(manifest.customers.clone());
            inner.manifest = manifest;
            state.written.clear();
            state.digests.clear();
            Ok(())
        }
        Err(e) => {
            rollback(inner, state);
            Err(e)
        }
    }
}

fn rollback(inner: &mut Inner, state: TxnState) {
    if state.written.is_empty() && state.digests.is_empty() {
        return;
    }
    for path in &state.written {
        let _ = std::fs::remove_file(path);
    }
    if let Some(seen) = inner.seen.as_mut() {
        for d in &state.digests {
            seen.remove(d);
        }
    }
    inner.dict.rollback();
    // Dictionary entries the failed write added to the working manifest are gone with it.
    inner.rebuild_caches();
}

/// A bulk import in progress. Dropping it without [`Import::commit`] undoes it: its
/// segments are deleted and nothing of it was ever visible.
pub struct Import<'a> {
    store: &'a Store,
    inner: MutexGuard<'a, Inner>,
    committed: bool,
    outcome: Outcome,
    state: TxnState,
}

impl Import<'_> {
    /// Adds a chunk of events: deduplicated by message id (against the store and earlier
    /// chunks), sorted, and written as a segment that becomes visible at commit.
    pub fn add(&mut self, events: Vec<Event>) -> Result<Outcome> {
        let inner = &mut *self.inner;
        let mut manifest = self
            .state
            .manifest
            .take()
            .unwrap_or_else(|| inner.manifest.clone());
        let result = write_chunk(
            self.store,
            inner,
            &mut manifest,
            &mut self.state,
            events,
            true,
        );
        self.state.manifest = Some(manifest);
        let outcome = result?;
        self.outcome += outcome;
        Ok(outcome)
    }

    /// Makes every chunk visible at once, durably.
    pub fn commit(mut self) -> Result<Outcome> {
        let inner = &mut *self.inner;
        let mut state = std::mem::take(&mut self.state);
        self.committed = true;
        if let Some(manifest) = state.manifest.take() {
            commit(self.store, inner, manifest, state)?;
            self.store.maybe_compact(inner)?;
        }
        Ok(self.outcome)
    }
}

impl Drop for Import<'_> {
    fn drop(&mut self) {
        if !self.committed {
            rollback(&mut self.inner, std::mem::take(&mut self.state));
        }
    }
}
