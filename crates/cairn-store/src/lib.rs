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
mod flush;
mod forget;
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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use flush::Core;

use cairn_model::Event;

pub use error::{Result, StoreError};
pub use forget::{ForgetOutcome, SUPPRESSION_FILE};
pub use manifest::{MANIFEST_FILE, Manifest, SegmentMeta};
pub use parquet_io::StoredEvent;
pub use repair::{RepairReport, repair};
pub use scanfile::Ids;
pub use snapshot::{Columns, Customer, Names, Snapshot, Stats, Visit};
pub use wal::{LogSyncStats, SYNC_BOUNDS_MICROS};

use dict::CustomerDict;
use error::IoContext;
use hash::{DigestSet, FxHashMap, FxHashSet, message_digest};
use parquet_io::EventColumns;

pub const SEGMENTS_DIR: &str = "segments";
const LOCK_FILE: &str = "LOCK";

/// Tunables, with defaults that suit a laptop and a 2-core server alike.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events buffered from the log before they are flushed into a segment (by a background
    /// thread; appends wait only when three times this many are waiting for it).
    pub memtable_events: usize,
    /// Bytes of events (their text and fixed-size fields, in the memtable's column form) that
    /// may wait in memory for the background flusher, in the memtable and the flush in
    /// progress together; appends wait beyond it, so it bounds the store's memory whatever
    /// the size of the events. A flush is due when the memtable holds a third of it.
    pub max_pending_bytes: usize,
    /// Beyond this many segments, a writer merges neighbouring ones after each commit.
    pub max_segments: usize,
    /// Events a merge of segments holds in memory at once (about 250 bytes each): it merges
    /// one range of customers after another, each of about this many events.
    pub merge_slice_events: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            memtable_events: 250_000,
            max_pending_bytes: 384 << 20,
            max_segments: 8,
            merge_slice_events: 4_000_000,
        }
    }
}

/// An amount of events waiting for the background flusher: their count and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
}

impl std::ops::AddAssign for Pending {
    fn add_assign(&mut self, o: Pending) {
        self.events += o.events;
        self.bytes += o.bytes;
    }
}

impl std::ops::Add for Pending {
    type Output = Pending;
    fn add(mut self, o: Pending) -> Pending {
        self += o;
        self
    }
}

impl std::ops::SubAssign for Pending {
    fn sub_assign(&mut self, o: Pending) {
        self.events -= o.events;
        self.bytes -= o.bytes;
    }
}

impl std::iter::Sum for Pending {
    fn sum<I: Iterator<Item = Pending>>(iter: I) -> Pending {
        let mut total = Pending::default();
        for p in iter {
            total += p;
        }
        total
    }
}

impl Options {
    /// Whether a memtable holding `pending` should become a segment now.
    pub(crate) fn flush_due(&self, pending: Pending) -> bool {
        pending.events >= self.memtable_events || pending.bytes >= self.max_pending_bytes / 3
    }

    /// Whether appends must wait: the memtable and the flush in progress hold `pending`.
    pub(crate) fn full(&self, pending: Pending) -> bool {
        pending.events >= self.memtable_events.saturating_mul(3)
            || pending.bytes >= self.max_pending_bytes
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
    /// Segments merged with their neighbours into fewer.
    pub merged_segments: usize,
    /// Segments written again on their own because an older version wrote their scan file
    /// (see [`Store::compact`]).
    pub rewritten_segments: usize,
    /// Events written.
    pub events: u64,
}

impl std::ops::AddAssign for Compaction {
    fn add_assign(&mut self, o: Compaction) {
        self.merged_segments += o.merged_segments;
        self.rewritten_segments += o.rewritten_segments;
        self.events += o.events;
    }
}

/// A writable store: the single writer of a data directory.
///
/// Its state lives in a `Core` shared with the background flusher thread (`flush.rs`), which
/// moves the log into segments off the append path.
pub struct Store {
    core: Arc<Core>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Store {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

struct Inner {
    manifest: Manifest,
    dict: CustomerDict,
    names: FxHashMap<String, u32>,
    channels: FxHashMap<String, u32>,
    /// Digests of every stored message id; loaded on first need.
    seen: Option<DigestSet>,
    /// Digests in log batches not yet durable, with the batch that carries them.
    in_flight: FxHashMap<u128, u64>,
    /// Durable log batches not yet in a segment.
    memtable: Vec<MemBatch>,
    memtable_size: Pending,
    /// The background flusher's state.
    background: flush::Background,
    /// Forgotten customers: their later events are dropped (see `forget.rs`).
    suppression: forget::Suppression,
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
fn intern_cached(list: &mut Vec<String>, cache: &mut FxHashMap<String, u32>, name: &str) -> usize {
    if let Some(&id) = cache.get(name) {
        return id as usize;
    }
    list.push(name.to_string());
    let id = list.len() - 1;
    cache.insert(name.to_string(), id as u32);
    id
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
        let memtable: Vec<MemBatch> = recovery
            .batches
            .into_iter()
            .map(|b| MemBatch::new(b.number, b.events))
            .collect();
        let memtable_size = memtable.iter().map(MemBatch::size).sum();
        let mut store = Store {
            core: Arc::new(Core {
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
                    memtable,
                    memtable_size,
                    background: Default::default(),
                    suppression: forget::Suppression::load(dir)?,
                }),
                changed: Condvar::new(),
                recovered_cut: recovery.cut,
                shared: Mutex::new(None),
            }),
            flusher: None,
        };
        {
            let mut inner = store.lock();
            inner.rebuild_caches();
            if inner.memtable_size.events > 0 {
                store.flush_locked(&mut inner)?;
            }
        }
        store.flusher = Some(flush::spawn(store.core.clone()).at(dir)?);
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A torn log tail cut during recovery: the file and the number of bytes dropped.
    pub fn recovered_cut(&self) -> Option<&(PathBuf, u64)> {
        self.recovered_cut.as_ref()
    }

    /// What the log's group commits (write + fsync) cost since the store was opened.
    pub fn log_sync_stats(&self) -> LogSyncStats {
        self.wal.sync_stats()
    }

    /// A consistent read view of everything committed or acknowledged so far.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::load(&self.dir)
    }

    /// [`Store::snapshot`], shared: the same snapshot again while nothing was committed or
    /// appended since it was loaded. For a server answering many reads: loading one reads the
    /// manifest, the customer dictionary and the log tail, and its dictionary decodes (and
    /// indexes) the identifiers once, not per request. Never stale: it is reused only while
    /// the manifest version and the last durable log batch are those seen before loading it.
    pub fn shared_snapshot(&self) -> Result<Arc<Snapshot>> {
        let state = (self.lock().manifest.version, self.wal.last_durable());
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, snap)) = shared.as_ref()
            && *seen == state
        {
            return Ok(Arc::clone(snap));
        }
        // Loaded after `state` was read, so it holds at least what `state` names.
        let snap = Arc::new(Snapshot::load(&self.dir)?);
        *shared = Some((state, Arc::clone(&snap)));
        Ok(snap)
    }

    fn load_seen<'a>(&self, inner: &'a mut Inner) -> Result<&'a mut DigestSet> {
        if inner.seen.is_none() {
            let total: u64 = inner.manifest.segments.iter().map(|s| s.events).sum();
            let mut seen = DigestSet::with_capacity(total as usize + inner.memtable_size.events);
            for seg in &inner.manifest.segments {
                let path = self.dir.join(SEGMENTS_DIR).join(seg.parquet_name());
                parquet_io::read_message_digests(&path, |d| {
                    seen.insert(d);
                })?;
            }
            for batch in &inner.memtable {
                for chunk in &batch.chunks {
                    seen.extend(chunk.digests.iter().copied());
                }
            }
            inner.seen = Some(seen);
        }
        Ok(inner.seen.get_or_insert_with(Default::default))
    }

    /// Appends events through the write-ahead log; returns once they are durable. Events whose
    /// message id is already stored are dropped (and counted as duplicates). When storage is
    /// behind (the background flusher holds `max_pending_bytes`), waits for room as long as
    /// it takes: see [`Store::append_within`] for a bounded wait.
    pub fn append(&self, events: Vec<Event>) -> Result<Outcome> {
        self.append_waiting(events, None)
    }

    /// [`Store::append`], waiting at most `patience` for room in the memtable: then it fails
    /// with [`StoreError::Behind`] and nothing of `events` is stored (for a server to answer
    /// 503, and its client to retry later). The wait for the log's fsync is not bounded: once
    /// a batch is in the log, the caller learns whether it is durable.
    pub fn append_within(&self, events: Vec<Event>, patience: Duration) -> Result<Outcome> {
        self.append_waiting(events, Some(patience))
    }

    fn append_waiting(&self, events: Vec<Event>, patience: Option<Duration>) -> Result<Outcome> {
        // The log record's JSON and the message-id digests are made before taking the store
        // lock, which appends (and the flusher) then hold only to deduplicate and enqueue.
        let encoded = EncodedBatch::new(&events).map_err(|e| self.wal.encode_error(e))?;
        let all_digests: Vec<u128> = events
            .iter()
            .map(|e| message_digest(&e.message_id))
            .collect();
        let mut wait_for = 0u64;
        let (number, outcome, digests) = {
            let mut inner = self.wait_for_room(self.lock(), patience)?;
            self.load_seen(&mut inner)?;
            let mut fresh = Vec::with_capacity(events.len());
            let mut fresh_rows = Vec::with_capacity(events.len());
            let mut digests = Vec::with_capacity(events.len());
            // Repeats inside this batch: a set, not a scan of `digests` per event.
            let mut in_batch =
                FxHashSet::with_capacity_and_hasher(events.len(), Default::default());
            let mut outcome = Outcome::default();
            for (row, (e, d)) in events.into_iter().zip(all_digests).enumerate() {
                if inner.suppression.drops(&e) {
                    continue;
                }
                if let Some(&batch) = inner.in_flight.get(&d) {
                    // Sent twice while the first copy is still being written: acknowledge
                    // the duplicate only once the first copy is durable.
                    wait_for = wait_for.max(batch);
                    outcome.duplicates += 1;
                } else if inner.seen.as_ref().is_some_and(|s| s.contains(&d)) || !in_batch.insert(d)
                {
                    outcome.duplicates += 1;
                } else {
                    digests.push(d);
                    fresh.push(e);
                    fresh_rows.push(row);
                }
            }
            outcome.accepted = fresh.len() as u64;
            let number = if fresh.is_empty() {
                0
            } else {
                self.wal.enqueue_json(&encoded.rows(&fresh_rows))?
            };
            for &d in &digests {
                inner.in_flight.insert(d, number);
            }
            (number.max(wait_for), outcome, (digests, fresh, number))
        };
        let (digests, fresh, batch_number) = digests;
        let durable = self.wal.wait_durable(number);
        // Into column form before taking the lock again; the events are freed here, on the
        // thread that made them.
        let batch = MemBatch::new(batch_number, fresh);
        let mut inner = self.lock();
        for d in &digests {
            inner.in_flight.remove(d);
        }
        durable?;
        if batch_number > 0 {
            if let Some(seen) = inner.seen.as_mut() {
                seen.extend(digests);
            }
            inner.memtable_size += batch.size();
            inner.memtable.push(batch);
            if self.options.flush_due(inner.memtable_size) {
                // The background flusher writes the segment; this request is answered now.
                self.changed.notify_all();
            }
        }
        Ok(outcome)
    }

    /// Moves every durable log batch into a new segment and cuts the log behind it, now
    /// (after a background flush in progress, if any, has ended).
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.lock_settled()?;
        self.flush_locked(&mut inner)
    }

    fn flush_locked(&self, inner: &mut Inner) -> Result<()> {
        let Some((batches, upto)) = take_flushable(inner) else {
            return Ok(());
        };
        inner.memtable_size -= batches.iter().map(MemBatch::size).sum();
        self.wal.rotate();
        // The background flusher's steps, holding the lock throughout.
        let mut flush = flush::LogFlush::new(batches, upto);
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        flush.mark_all_suppressed(inner);
        let written = flush.key(inner).and_then(|()| {
            flush
                .seal(inner)
                .map(|pending| pending.write(&seg_dir))
                .transpose()
        });
        flush.finish(self, inner, written)?;
        self.maybe_compact(inner)?;
        Ok(())
    }

    /// Starts a bulk import: chunks added to it become visible together at
    /// [`Import::commit`], or not at all.
    pub fn import(&self) -> Result<Import<'_>> {
        let mut inner = self.lock_settled()?;
        self.flush_locked(&mut inner)?;
        self.load_seen(&mut inner)?;
        Ok(Import {
            store: self,
            inner,
            committed: false,
            outcome: Outcome::default(),
            state: TxnState::default(),
            segment_events: SEGMENT_EVENTS,
            filling: EventColumns::default(),
            digests: Vec::new(),
            chunk: EventChunk::default(),
            keys: Vec::new(),
            writer: None,
            writing: false,
        })
    }

    /// Merges segments: all of them when `all` (into segments of at most
    /// [`MAX_COMPACT_EVENTS`] events), else only while there are more than `max_segments`.
    /// With `all`, a segment whose scan file an older version wrote is also written again on
    /// its own, so that a compacted store has every part of the current format (name sets).
    pub fn compact(&self, all: bool) -> Result<Compaction> {
        self.compact_reporting(all, &mut |_| {})
    }

    /// [`Store::compact`], telling `report` how far each merge has got as it goes (a merge of
    /// a large store takes minutes).
    pub fn compact_reporting(
        &self,
        all: bool,
        report: &mut dyn FnMut(MergeProgress),
    ) -> Result<Compaction> {
        let mut inner = self.lock_settled()?;
        self.flush_locked(&mut inner)?;
        if !all {
            return self.maybe_compact(&mut inner);
        }
        let mut done = Compaction::default();
        while let Some(range) = neighbours_within(&inner.manifest.segments, MAX_COMPACT_EVENTS) {
            done += self.merge(&mut inner, range, report)?;
        }
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        while let Some(i) = first_of_older_format(&inner.manifest.segments, &seg_dir)? {
            let alone = self.merge(&mut inner, i..i + 1, report)?;
            done += Compaction {
                merged_segments: 0,
                rewritten_segments: alone.merged_segments,
                events: alone.events,
            };
        }
        Ok(done)
    }

    fn maybe_compact(&self, inner: &mut Inner) -> Result<Compaction> {
        let mut done = Compaction::default();
        while let Some(range) = flush::compaction(
            &inner.manifest.segments,
            self.options.max_segments,
            MAX_COMPACT_EVENTS,
        ) {
            done += self.merge(inner, range, &mut |_| {})?;
        }
        Ok(done)
    }

    fn merge(
        &self,
        inner: &mut Inner,
        range: std::ops::Range<usize>,
        report: &mut dyn FnMut(MergeProgress),
    ) -> Result<Compaction> {
        let seg_dir = self.dir.join(SEGMENTS_DIR);
        let mut manifest = inner.manifest.clone();
        let slice_events = self.options.merge_slice_events;
        let (old, events) = merge_into(&seg_dir, &mut manifest, range, slice_events, report)?;
        manifest.commit(&self.dir)?;
        inner.manifest = manifest;
        inner.rebuild_caches();
        for seg in &old {
            remove_segment_files(&seg_dir, seg.id);
        }
        crate::fsutil::fsync_dir(&seg_dir).at(&seg_dir)?;
        Ok(Compaction {
            merged_segments: old.len(),
            rewritten_segments: 0,
            events,
        })
    }
}

/// A batch of events encoded as the log's JSON array, one event at a time, so that a record
/// of only some of them (the rest being duplicates) is cut from it without encoding again.
struct EncodedBatch {
    /// `[e0,e1,...]`.
    json: Vec<u8>,
    /// Where each event's JSON ends in `json` (it starts after the previous one's comma).
    ends: Vec<usize>,
}

impl EncodedBatch {
    fn new(events: &[Event]) -> serde_json::Result<EncodedBatch> {
        let mut json = Vec::with_capacity(events.len() * 512 + 2);
        let mut ends = Vec::with_capacity(events.len());
        json.push(b'[');
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, e)?;
            ends.push(json.len());
        }
        json.push(b']');
        Ok(EncodedBatch { json, ends })
    }

    /// The JSON array of the events at `rows` (ascending): the whole batch when that is all.
    fn rows(&self, rows: &[usize]) -> std::borrow::Cow<'_, [u8]> {
        if rows.len() == self.ends.len() {
            return std::borrow::Cow::Borrowed(&self.json);
        }
        let mut out = Vec::with_capacity(self.json.len());
        out.push(b'[');
        for (i, &row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Each event starts after the '[' or the ',' that ends its predecessor.
            let start = if row == 0 { 1 } else { self.ends[row - 1] + 1 };
            out.extend_from_slice(&self.json[start..self.ends[row]]);
        }
        out.push(b']');
        std::borrow::Cow::Owned(out)
    }
}

/// Takes the memtable's batches that may become a segment now: the gap-free run of batch
/// numbers after the log checkpoint (a batch still on its way into the memtable must not be
/// skipped over). Returns them with the last batch number, or `None` when there are none.
fn take_flushable(inner: &mut Inner) -> Option<(Vec<MemBatch>, u64)> {
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
        return None;
    }
    Some((inner.memtable.drain(..take).collect(), upto))
}

/// How far a merge of segments has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeProgress {
    /// Events written into the new segment so far.
    pub done: u64,
    /// Events of the segments being merged.
    pub total: u64,
}

/// The most events one merge writes into a segment: scan files number rows in 32 bits. (A
/// merge's memory no longer grows with its size: see [`merge_into`].)
pub const MAX_COMPACT_EVENTS: u64 = 1 << 31;

/// The first of `segments` (in `seg_dir`) whose scan file is of an older format than this
/// version writes.
fn first_of_older_format(segments: &[SegmentMeta], seg_dir: &Path) -> Result<Option<usize>> {
    for (i, seg) in segments.iter().enumerate() {
        if scanfile::is_older_format(&seg_dir.join(seg.scan_name()))? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// The first run of two or more neighbouring segments whose events add up to at most
/// `max_events`, taken as long as it fits.
fn neighbours_within(segs: &[SegmentMeta], max_events: u64) -> Option<std::ops::Range<usize>> {
    (0..segs.len().saturating_sub(1)).find_map(|start| {
        let mut total = 0;
        let end = start
            + segs[start..]
                .iter()
                .take_while(|s| {
                    total += s.events;
                    total <= max_events
                })
                .count();
        (end - start >= 2).then_some(start..end)
    })
}

/// Writes the merge of `manifest.segments[range]` as one new segment and puts it in their
/// place in `manifest` (not committed: the caller commits, then removes the old files).
/// Returns the replaced segments and the number of events merged. Reads only immutable
/// segment files, so it needs no lock.
///
/// The merge goes one range of customer keys at a time ([`merge_slices`]), reading each old
/// segment onwards from where the previous range stopped: an event in memory costs about
/// 230 bytes, so holding them all made a merge's memory grow with the store.
fn merge_into(
    seg_dir: &Path,
    manifest: &mut Manifest,
    range: std::ops::Range<usize>,
    slice_events: u64,
    report: &mut dyn FnMut(MergeProgress),
) -> Result<(Vec<SegmentMeta>, u64)> {
    let old: Vec<SegmentMeta> = manifest.segments[range.clone()].to_vec();
    let mut names = FxHashMap::default();
    let mut channels = FxHashMap::default();
    for (i, n) in manifest.event_names.iter().enumerate() {
        names.insert(n.clone(), i as u32);
    }
    for (i, c) in manifest.channels.iter().enumerate() {
        channels.insert(c.clone(), i as u32);
    }
    let slices = merge_slices(seg_dir, &old, slice_events)?;
    let mut cursors = old
        .iter()
        .map(|seg| {
            let file = parquet_io::SegmentFile::open(&seg_dir.join(seg.parquet_name()))?;
            parquet_io::SegmentCursor::open(&file, None)
        })
        .collect::<Result<Vec<_>>>()?;
    let id = manifest.next_segment_id;
    manifest.next_segment_id += 1;
    let mut columns = EventColumns::default();
    let written = segment::SegmentSink::create(seg_dir, id).and_then(|mut sink| {
        let mut progress = MergeProgress {
            done: 0,
            total: old.iter().map(|s| s.events).sum(),
        };
        sink.reserve(progress.total as usize);
        report(progress);
        for end in slices {
            columns.clear();
            for cursor in &mut cursors {
                let mut failed = None;
                cursor.take_below(end, &mut |r| {
                    if failed.is_some() {
                        return;
                    }
                    let name = intern_cached(&mut manifest.event_names, &mut names, &r.event.event);
                    let channel =
                        intern_cached(&mut manifest.channels, &mut channels, &r.event.channel);
                    match (
                        segment::checked(name, "event names"),
                        segment::checked(channel, "channels"),
                    ) {
                        (Ok(name), Ok(channel)) => {
                            columns.push(r.key, r.seq, name, channel, &r.event)
                        }
                        (Err(e), _) | (_, Err(e)) => failed = Some(e),
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            sink.write(&columns, &[], &manifest.event_names, &manifest.channels)?;
            progress.done += columns.len() as u64;
            report(progress);
        }
        // The last range's columns are not needed while the scan file is written.
        drop(columns);
        let meta = sink.finish()?;
        // The new files' directory entries must be durable before a manifest names them (the
        // files themselves were fsynced as they were written).
        crate::fsutil::fsync_dir(seg_dir).at(seg_dir)?;
        Ok(meta)
    });
    let meta = match written {
        Ok(meta) => meta,
        Err(e) => {
            remove_segment_files(seg_dir, id);
            return Err(e);
        }
    };
    let events = meta.events;
    manifest.segments.splice(range, [meta]);
    Ok((old, events))
}

/// Where a merge of `segs` cuts the customer keys: the end (exclusive) of each key range,
/// ranges of about `events` events each (more when one customer alone has more), the last
/// ending at `u64::MAX`. From the segments' scan files, which list each customer's first row.
fn merge_slices(seg_dir: &Path, segs: &[SegmentMeta], events: u64) -> Result<Vec<u64>> {
    let scans = segs
        .iter()
        .map(|seg| scanfile::ScanData::open(&seg_dir.join(seg.scan_name())))
        .collect::<Result<Vec<_>>>()?;
    // Events of customers with keys below `key`, in all the segments.
    let below = |key: u32| -> u64 {
        scans
            .iter()
            .map(|s| u64::from(s.starts()[s.keys().partition_point(|&k| k < key)]))
            .sum()
    };
    let last_key = scans
        .iter()
        .filter_map(|s| s.keys().last().copied())
        .max()
        .unwrap_or(0);
    let mut ends = Vec::new();
    let mut from = 0u32;
    let mut wanted = events;
    while from < last_key {
        // The least key above `from` with at least `wanted` events below it.
        let (mut lo, mut hi) = (from + 1, last_key);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid) >= wanted {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        ends.push(u64::from(lo));
        from = lo;
        wanted = below(lo) + events;
    }
    ends.push(u64::MAX);
    Ok(ends)
}

/// Removes a segment's files, if they exist. Only for segments the manifest no longer (or
/// never) named: a failure leaves garbage that the next writer removes, never a broken store.
fn remove_segment_files(seg_dir: &Path, id: u64) {
    let meta = SegmentMeta {
        id,
        ..Default::default()
    };
    for name in [meta.parquet_name(), meta.scan_name()] {
        let _ = std::fs::remove_file(seg_dir.join(name));
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
    /// The working copy of the manifest the write adds to.
    manifest: Option<Manifest>,
    /// Segments written (or being written) that the manifest does not name yet.
    written: Vec<u64>,
    /// Sorted message-id digests of each chunk written so far, to find duplicates across
    /// chunks of one import without a hash set insert per event (cache misses dominate
    /// those); merging sorted runs is sequential and several times cheaper.
    runs: Vec<Vec<u128>>,
}

/// Marks (false) the rows whose message-id digest is already stored (`seen`), in an earlier
/// segment of this write (`runs`) or earlier in `digests`; adds the kept digests to `runs`.
/// The first occurrence in input order is kept.
fn find_duplicates(
    digests: &[u128],
    seen: Option<&DigestSet>,
    runs: &mut Vec<Vec<u128>>,
) -> Vec<bool> {
    let mut tagged: Vec<(u128, u32)> = digests
        .iter()
        .enumerate()
        .map(|(i, &d)| (d, i as u32))
        .collect();
    tagged.sort_unstable();
    let seen = seen.filter(|s| !s.is_empty());
    let mut keep = vec![true; digests.len()];
    let mut cursors = vec![0usize; runs.len()];
    let mut previous = None;
    let mut run = Vec::with_capacity(tagged.len());
    for &(d, i) in &tagged {
        let duplicate = previous == Some(d)
            || seen.is_some_and(|s| s.contains(&d))
            || runs.iter().zip(cursors.iter_mut()).any(|(r, c)| {
                // Digests arrive in ascending order, so each cursor only moves forward.
                while *c < r.len() && r[*c] < d {
                    *c += 1;
                }
                r.get(*c) == Some(&d)
            });
        previous = Some(d);
        if duplicate {
            keep[i as usize] = false;
        } else {
            run.push(d);
        }
    }
    runs.push(run);
    // Beyond a few runs, the two neighbours shortest together are merged: a large import
    // checks each digest against a few runs, not against one run per segment written before
    // (which made the checks grow with the square of the import's size). A small import merges
    // nothing (merging copies every digest into fresh memory, which costs more than a few
    // sequential checks), and no merged run grows past `MAX_MERGED_RUN` (a merge holds both
    // runs and their union).
    while runs.len() > MAX_RUNS {
        let Some(i) = (0..runs.len() - 1)
            .filter(|&i| runs[i].len() + runs[i + 1].len() <= MAX_MERGED_RUN)
            .min_by_key(|&i| runs[i].len() + runs[i + 1].len())
        else {
            break;
        };
        let b = runs.remove(i + 1);
        let a = std::mem::take(&mut runs[i]);
        runs[i] = merge_sorted(a, b);
    }
    keep
}

/// Digest runs an import keeps before it merges some (one per segment it wrote: 8 is an
/// import of 16 M events).
const MAX_RUNS: usize = 8;

/// The longest digest run an import merges (256 MB): beyond it runs are kept apart, one per
/// 16 M events, few enough to check each digest against.
const MAX_MERGED_RUN: usize = 16 << 20;

/// The union of two ascending lists without common elements, ascending.
fn merge_sorted(a: Vec<u128>, b: Vec<u128>) -> Vec<u128> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// A durable log batch in the memtable, in column form ([`EventChunk`]): a few buffers
/// instead of a dozen separately allocated strings per event, so it is cheaper to hold, to
/// key into a segment and to free (on the flusher thread, a quarter of a second per 250 k
/// events as `Event`s).
pub(crate) struct MemBatch {
    pub(crate) number: u64,
    /// Usually one; more only if a batch holds more distinct event names or channels than a
    /// chunk may.
    pub(crate) chunks: Vec<EventChunk>,
    /// What its events take in the chunks (see [`event_bytes`]).
    bytes: usize,
}

/// The memory an event takes in column form, near enough for a memory bound: its text plus
/// its fixed-size fields (key, times, sequence number, indexes, digest, offsets).
fn event_bytes(e: &Event) -> usize {
    const FIXED: usize = 160;
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    FIXED
        + e.message_id.len()
        + text(&e.user_id)
        + text(&e.anonymous_id)
        + text(&e.group_id)
        + text(&e.previous_id)
        + text(&e.properties)
        + text(&e.traits)
        + text(&e.context)
}

impl MemBatch {
    fn new(number: u64, events: Vec<Event>) -> MemBatch {
        let mut chunks = vec![EventChunk::default()];
        for e in &events {
            let Some(last) = chunks.last_mut() else {
                break;
            };
            if last.push(e).is_err() {
                // Refused only by a chunk holding as many distinct names or channels as a
                // segment may: an empty one always takes the event.
                let mut fresh = EventChunk::default();
                let _ = fresh.push(e);
                chunks.push(fresh);
            }
        }
        let bytes = events.iter().map(event_bytes).sum();
        MemBatch {
            number,
            chunks,
            bytes,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(EventChunk::len).sum()
    }

    pub(crate) fn size(&self) -> Pending {
        Pending {
            events: self.len(),
            bytes: self.bytes,
        }
    }
}

/// The store's event-name and channel indexes of a chunk's own dictionary entries, in the
/// chunk's order; names and channels new to the store are added to the working `manifest`.
fn store_ids(
    manifest: &mut Manifest,
    inner: &mut Inner,
    chunk: &EventChunk,
) -> Result<(Vec<u16>, Vec<u16>)> {
    let names = chunk
        .names
        .iter()
        .map(|n| {
            let id = intern_cached(&mut manifest.event_names, &mut inner.names, n);
            segment::checked(id, "event names")
        })
        .collect::<Result<Vec<u16>>>()?;
    let channels = chunk
        .channels
        .iter()
        .map(|c| {
            let id = intern_cached(&mut manifest.channels, &mut inner.channels, c);
            segment::checked(id, "channels")
        })
        .collect::<Result<Vec<u16>>>()?;
    Ok((names, channels))
}

/// Adds a memtable chunk's rows to `columns` with customer keys, sequence numbers and the
/// store's name and channel indexes, leaving out the rows `dropped` marks (forgotten
/// customers). Log events were deduplicated when they were appended: every other row is kept.
fn key_chunk(
    inner: &mut Inner,
    state: &mut TxnState,
    columns: &mut EventColumns,
    chunk: &EventChunk,
    dropped: Option<&[bool]>,
) -> Result<()> {
    let manifest = state.manifest.get_or_insert_with(|| inner.manifest.clone());
    let (names, channels) = store_ids(manifest, inner, chunk)?;
    let mut keys = Vec::with_capacity(chunk.len());
    let mut start = 0;
    // Sources mostly send a customer's events together: skip the map lookup then.
    let mut last: Option<(&str, u32)> = None;
    for row in 0..=chunk.len() {
        let drop_row = row < chunk.len() && dropped.is_some_and(|d| d[row]);
        if row == chunk.len() || drop_row {
            // The run of kept rows before this one.
            if row > start {
                columns.append_rows(
                    &chunk.columns,
                    start..row,
                    &keys,
                    manifest.next_seq,
                    &names,
                    &channels,
                );
                manifest.next_seq += (row - start) as u64;
                keys.clear();
            }
            start = row + 1;
            continue;
        }
        let id = chunk.columns.customer_id(row);
        let key = match last {
            Some((last_id, key)) if last_id == id => key,
            _ => {
                let key = inner.dict.key_or_insert(id);
                last = Some((id, key));
                key
            }
        };
        keys.push(key);
    }
    Ok(())
}

/// Takes `columns` as the write's next segment (only the rows `keep` marks, all when it is
/// empty), with a copy of the dictionaries its indexes point into.
fn next_segment(
    inner: &Inner,
    state: &mut TxnState,
    columns: EventColumns,
    keep: Vec<bool>,
) -> PendingSegment {
    let manifest = state.manifest.get_or_insert_with(|| inner.manifest.clone());
    let id = manifest.next_segment_id;
    manifest.next_segment_id += 1;
    state.written.push(id);
    PendingSegment {
        id,
        columns,
        keep,
        names: manifest.event_names.clone(),
        channels: manifest.channels.clone(),
    }
}

/// A segment ready to be written. Its dictionaries are a copy, so that it can be written on
/// another thread while the next segment adds names.
struct PendingSegment {
    id: u64,
    columns: EventColumns,
    /// Which rows to write (all when empty): duplicates found at the end are left out.
    keep: Vec<bool>,
    names: Vec<String>,
    channels: Vec<String>,
}

impl PendingSegment {
    fn write(&self, seg_dir: &Path) -> Result<SegmentMeta> {
        segment::write(
            seg_dir,
            self.id,
            &self.columns,
            &self.keep,
            &self.names,
            &self.channels,
        )
    }
}

/// The error for a segment writer that stopped taking work: it can only have panicked, and
/// the panic is passed on rather than reported as an I/O failure.
fn writer_gone(writer: Option<SegmentWriter>) -> StoreError {
    if let Some(writer) = writer {
        writer.stop();
    }
    StoreError::WriterStopped
}

/// Makes a write's segments part of the store: one atomic manifest commit.
fn commit(store: &Core, inner: &mut Inner, mut state: TxnState) -> Result<()> {
    let Some(mut manifest) = state.manifest.take() else {
        return Ok(());
    };
    let result = (|| {
        let seg_dir = store.dir.join(SEGMENTS_DIR);
        crate::fsutil::fsync_dir(&seg_dir).at(&seg_dir)?;
        manifest.customers = inner.dict.persist()?;
        manifest.commit(&store.dir)
    })();
    match result {
        Ok(()) => {
            inner.dict.committed(manifest.customers.clone());
            inner.manifest = manifest;
            if !state.runs.is_empty() {
                // Rather than insert every new digest into the seen set (slow, and useless
                // to a one-off import), drop it: it is rebuilt from the segments when needed.
                inner.seen = None;
            }
            Ok(())
        }
        Err(e) => {
            rollback(store, inner, state);
            Err(e)
        }
    }
}

fn rollback(store: &Core, inner: &mut Inner, state: TxnState) {
    if state.manifest.is_none() && state.written.is_empty() {
        return;
    }
    let seg_dir = store.dir.join(SEGMENTS_DIR);
    for &id in &state.written {
        remove_segment_files(&seg_dir, id);
    }
    inner.dict.rollback();
    // Dictionary entries the failed write added to its working manifest are gone with it.
    inner.rebuild_caches();
}

/// Events an import puts in one segment unless told otherwise: memory grows with it (about
/// 150 bytes an event, twice: one segment filling while the one before is written).
pub const SEGMENT_EVENTS: usize = 2_000_000;

/// A bulk import in progress. Events are keyed and copied into columns on the caller's
/// thread; every [`SEGMENT_EVENTS`] of them are deduplicated and written as a segment on a
/// background thread while the caller goes on. Dropping an import without
/// [`Import::commit`] undoes it: its segments are deleted and nothing of it was ever visible.
pub struct Import<'a> {
    store: &'a Store,
    inner: MutexGuard<'a, Inner>,
    committed: bool,
    outcome: Outcome,
    state: TxnState,
    segment_events: usize,
    /// The segment being filled, and the message-id digest of each of its rows.
    filling: EventColumns,
    digests: Vec<u128>,
    /// Scratch space kept from chunk to chunk: the chunk [`Import::add_from`] converts
    /// events into, and the customer keys of a chunk's rows.
    chunk: EventChunk,
    keys: Vec<u32>,
    /// Writes sealed segments while the next one fills; started with the first segment.
    writer: Option<SegmentWriter>,
    /// Whether the writer holds a segment whose result is not yet taken back.
    writing: bool,
}

/// Events in column form, built by [`EventChunk::fill_from`] on whichever thread parses
/// them, so that the import's own thread only looks up customer keys and copies blocks of
/// bytes ([`Import::add_chunk`]). An event is a dozen separately allocated strings: copying
/// and freeing them is most of the per-event cost, and it is best paid where they were made.
/// Event names and channels get indexes into the chunk's own small dictionaries.
#[derive(Debug, Default)]
pub struct EventChunk {
    columns: EventColumns,
    digests: Vec<u128>,
    names: Vec<String>,
    channels: Vec<String>,
    name_ids: FxHashMap<String, u32>,
    channel_ids: FxHashMap<String, u32>,
    last_name: Option<usize>,
    last_channel: Option<usize>,
}

impl EventChunk {
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Empties the chunk, keeping its memory.
    pub fn clear(&mut self) {
        self.columns.clear();
        self.digests.clear();
        self.names.clear();
        self.channels.clear();
        self.name_ids.clear();
        self.channel_ids.clear();
        self.last_name = None;
        self.last_channel = None;
    }

    /// Adds an event. Fails only when the chunk would hold more distinct names or channels
    /// than a segment can.
    pub fn push(&mut self, event: &Event) -> Result<()> {
        // Consecutive events mostly share a name or a channel: skip the map lookup then.
        let name = match self.last_name {
            Some(id) if self.names[id] == event.event => id,
            _ => intern_cached(&mut self.names, &mut self.name_ids, &event.event),
        };
        let channel = match self.last_channel {
            Some(id) if self.channels[id] == event.channel => id,
            _ => intern_cached(&mut self.channels, &mut self.channel_ids, &event.channel),
        };
        self.last_name = Some(name);
        self.last_channel = Some(channel);
        let name = segment::checked(name, "event names")?;
        let channel = segment::checked(channel, "channels")?;
        // Keys and sequence numbers are the store's to give, in `Import::add_chunk`.
        self.columns.push(0, 0, name, channel, event);
        self.digests.push(message_digest(&event.message_id));
        Ok(())
    }

    /// Replaces the chunk's events with `events`, which it empties (keeping its allocation).
    pub fn fill_from(&mut self, events: &mut Vec<Event>) -> Result<()> {
        self.clear();
        for event in events.drain(..) {
            self.push(&event)?;
        }
        Ok(())
    }
}

/// The thread an import writes its segments on: one for the whole import, not one per
/// segment. Each new thread allocates its encoding buffers afresh, and memory freed by a
/// finished thread was not reused by the next: every segment paid again for the kernel to
/// fault in and zero a few hundred megabytes (a quarter of a 10 M-event import's CPU time).
struct SegmentWriter {
    jobs: std::sync::mpsc::SyncSender<PendingSegment>,
    done: std::sync::mpsc::Receiver<(Result<SegmentMeta>, EventColumns)>,
    thread: std::thread::JoinHandle<()>,
}

impl SegmentWriter {
    fn start(seg_dir: PathBuf) -> SegmentWriter {
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<PendingSegment>(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            for pending in job_rx {
                let written = pending.write(&seg_dir);
                if done_tx.send((written, pending.columns)).is_err() {
                    return;
                }
            }
        });
        SegmentWriter { jobs, done, thread }
    }

    /// Waits for the writer to end; a panic on it is passed on.
    fn stop(self) {
        drop(self.jobs);
        drop(self.done);
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Import<'_> {
    /// Sets how many events go into each segment (at least one).
    pub fn set_segment_events(&mut self, events: usize) {
        self.segment_events = events.max(1);
    }

    /// Adds events: deduplicated by message id (against the store and the rest of this
    /// import), sorted, and written in segments that become visible at commit. Returns the
    /// counts of the segments completed during this call (the totals come from commit).
    pub fn add(&mut self, mut events: Vec<Event>) -> Result<Outcome> {
        self.add_from(&mut events)
    }

    /// [`Import::add`] that empties `events`, leaving its allocation to the caller.
    pub fn add_from(&mut self, events: &mut Vec<Event>) -> Result<Outcome> {
        let mut chunk = std::mem::take(&mut self.chunk);
        let added = chunk
            .fill_from(events)
            .and_then(|()| self.add_chunk(&chunk));
        self.chunk = chunk;
        added
    }

    /// Adds a chunk of events already in column form (see [`EventChunk`]): like
    /// [`Import::add`], with the per-event work left being a customer-key lookup.
    pub fn add_chunk(&mut self, chunk: &EventChunk) -> Result<Outcome> {
        let manifest = self
            .state
            .manifest
            .get_or_insert_with(|| self.inner.manifest.clone());
        let inner = &mut *self.inner;
        let (names, channels) = store_ids(manifest, inner, chunk)?;
        let mut outcome = Outcome::default();
        let mut keys = std::mem::take(&mut self.keys);
        // The rows to add, as runs: all of them, unless some belong to a forgotten customer.
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        if self.inner.suppression.is_empty() {
            runs.push(0..chunk.len());
        } else {
            for row in 0..chunk.len() {
                let (user, anon) = chunk.columns.ids(row);
                if self.inner.suppression.drops_ids(user, anon) {
                    continue;
                }
                match runs.last_mut() {
                    Some(run) if run.end == row => run.end += 1,
                    _ => runs.push(row..row + 1),
                }
            }
        }
        for run in runs {
            let mut start = run.start;
            while start < run.end {
                let room = self.segment_events - self.filling.len();
                let end = run.end.min(start + room);
                keys.clear();
                // Sources mostly list a customer's events together: skip the map lookup then.
                let mut last: Option<(&str, u32)> = None;
                for row in start..end {
                    let id = chunk.columns.customer_id(row);
                    let key = match last {
                        Some((last_id, key)) if last_id == id => key,
                        _ => {
                            let key = self.inner.dict.key_or_insert(id);
                            last = Some((id, key));
                            key
                        }
                    };
                    keys.push(key);
                }
                let manifest = self
                    .state
                    .manifest
                    .get_or_insert_with(|| self.inner.manifest.clone());
                let first_seq = manifest.next_seq;
                manifest.next_seq += (end - start) as u64;
                self.filling.append_rows(
                    &chunk.columns,
                    start..end,
                    &keys,
                    first_seq,
                    &names,
                    &channels,
                );
                self.digests.extend_from_slice(&chunk.digests[start..end]);
                start = end;
                if self.filling.len() >= self.segment_events {
                    outcome += self.seal()?;
                }
            }
        }
        self.keys = keys;
        Ok(outcome)
    }

    /// Deduplicates the segment being filled and starts writing it, once the one before is
    /// written (segments join the working manifest in id order).
    fn seal(&mut self) -> Result<Outcome> {
        let keep = find_duplicates(
            &self.digests,
            self.inner.seen.as_ref(),
            &mut self.state.runs,
        );
        self.digests.clear();
        let duplicates = keep.iter().filter(|&&k| !k).count();
        let outcome = Outcome {
            accepted: (keep.len() - duplicates) as u64,
            duplicates: duplicates as u64,
        };
        self.outcome += outcome;
        let mut columns = std::mem::take(&mut self.filling);
        // The writer hands back its emptied columns as the next `filling`.
        self.finish_writing()?;
        if outcome.accepted == 0 {
            columns.clear();
            self.filling = columns;
            return Ok(outcome);
        }
        let pending = next_segment(&self.inner, &mut self.state, columns, keep);
        let seg_dir = self.store.dir.join(SEGMENTS_DIR);
        let writer = self
            .writer
            .get_or_insert_with(|| SegmentWriter::start(seg_dir));
        if writer.jobs.send(pending).is_err() {
            return Err(writer_gone(self.writer.take()));
        }
        self.writing = true;
        Ok(outcome)
    }

    /// Waits for the segment being written and adds it to the working manifest; takes its
    /// emptied columns back for the next segment (their memory is already paged in).
    fn finish_writing(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.writing) {
            return Ok(());
        }
        let Some(Ok((written, mut columns))) = self.writer.as_ref().map(|w| w.done.recv()) else {
            return Err(writer_gone(self.writer.take()));
        };
        columns.clear();
        self.filling = columns;
        let meta = written?;
        if let Some(manifest) = self.state.manifest.as_mut() {
            manifest.segments.push(meta);
        }
        Ok(())
    }

    /// Makes every event added visible at once, durably; returns the totals.
    pub fn commit(mut self) -> Result<Outcome> {
        if !self.filling.is_empty() {
            self.seal()?;
        }
        self.finish_writing()?;
        if let Some(writer) = self.writer.take() {
            writer.stop();
        }
        let state = std::mem::take(&mut self.state);
        self.committed = true;
        let inner = &mut *self.inner;
        commit(self.store, inner, state)?;
        self.store.maybe_compact(inner)?;
        Ok(self.outcome)
    }
}

impl Drop for Import<'_> {
    fn drop(&mut self) {
        // Let a segment still being written finish before its files are removed.
        if let Some(writer) = self.writer.take() {
            writer.stop();
        }
        if !self.committed {
            rollback(self.store, &mut self.inner, std::mem::take(&mut self.state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose one segment an older version wrote gets it written again by a full
    /// compaction (with name sets), and its events stay the same.
    #[test]
    fn a_full_compaction_writes_older_scan_files_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let events = (0..30)
            .map(|i| Event {
                message_id: format!("m{i}"),
                event: format!("e{}", i % 4),
                user_id: Some(format!("u{}", i % 7)),
                timestamp: i,
                channel: "web".into(),
                ..Event::default()
            })
            .collect();
        let mut txn = store.import().unwrap();
        txn.add(events).unwrap();
        txn.commit().unwrap();
        store.compact(true).unwrap();
        let scan_files = || -> Vec<PathBuf> {
            let seg_dir = dir.path().join(SEGMENTS_DIR);
            let mut files: Vec<PathBuf> = std::fs::read_dir(seg_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "scan"))
                .collect();
            files.sort();
            files
        };
        let timelines = |store: &Store| {
            let mut all = Vec::new();
            let snap = store.snapshot().unwrap();
            snap.scan(Columns::ALL, |c| {
                all.push((c.key, c.names.to_vec(), c.times.to_vec()))
            })
            .unwrap();
            all
        };
        let [old] = &scan_files()[..] else {
            panic!("one segment expected")
        };
        let before = timelines(&store);
        std::fs::write(old, scanfile::as_format_4(&std::fs::read(old).unwrap())).unwrap();
        assert!(scanfile::is_older_format(old).unwrap());
        drop(store);
        let store = Store::open(dir.path(), Options::default()).unwrap();
        assert_eq!(timelines(&store), before, "format 4 reads the same");
        let c = store.compact(true).unwrap();
        assert_eq!((c.merged_segments, c.rewritten_segments), (0, 1));
        assert_eq!(c.events, 30, "every event written again");
        let [new] = &scan_files()[..] else {
            panic!("one segment expected")
        };
        assert_ne!(new, old);
        assert!(!scanfile::is_older_format(new).unwrap());
        assert_eq!(timelines(&store), before);
        // Nothing is left to write again.
        let c = store.compact(true).unwrap();
        assert_eq!(
            (c.merged_segments, c.rewritten_segments, c.events),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_full_compaction_merges_neighbours_only_up_to_the_cap() {
        let segs = |events: &[u64]| -> Vec<SegmentMeta> {
            events
                .iter()
                .map(|&events| SegmentMeta {
                    events,
                    ..Default::default()
                })
                .collect()
        };
        assert_eq!(neighbours_within(&segs(&[2, 2, 2, 2]), 100), Some(0..4));
        assert_eq!(neighbours_within(&segs(&[2, 2, 2, 2]), 5), Some(0..2));
        // A segment at the cap is left alone; its neighbours still merge.
        assert_eq!(neighbours_within(&segs(&[5, 2, 3]), 5), Some(1..3));
        assert_eq!(neighbours_within(&segs(&[5, 5, 5]), 5), None);
        assert_eq!(neighbours_within(&segs(&[7]), 5), None);
        assert_eq!(neighbours_within(&segs(&[]), 5), None);
    }

    /// Duplicates are found against every earlier chunk of a write, however its sorted runs
    /// were merged, and the runs stay few.
    #[test]
    fn duplicates_are_found_across_many_chunks() {
        let mut runs = Vec::new();
        let chunk = |c: u128| (0..50u128).map(|i| i * 1000 + c).collect::<Vec<_>>();
        for c in 0..40u128 {
            // Each chunk holds 50 new digests and repeats one of every earlier chunk.
            let mut digests = chunk(c);
            digests.extend((0..c).map(|earlier| 7 * 1000 + earlier));
            let keep = find_duplicates(&digests, None, &mut runs);
            assert!(keep[..50].iter().all(|&k| k), "chunk {c}");
            assert!(keep[50..].iter().all(|&k| !k), "chunk {c}");
        }
        assert_eq!(runs.len(), MAX_RUNS);
        let all: Vec<u128> = runs.concat();
        assert_eq!(all.len(), 40 * 50);
        assert!(runs.iter().all(|r| r.is_sorted()));
    }

    /// A record cut from a batch holds exactly the chosen events, as one JSON array.
    #[test]
    fn an_encoded_batch_gives_the_json_of_any_of_its_rows() {
        let events: Vec<Event> = (0..4)
            .map(|i| Event {
                message_id: format!("m{i}"),
                kind: cairn_model::EventKind::Track,
                // Text with the array's own punctuation in it.
                event: format!("e, \"{i}\"]"),
                user_id: Some(format!("u{i}")),
                anonymous_id: None,
                timestamp: i,
                sent_at: None,
                received_at: Some(i),
                channel: "web".into(),
                value: None,
                group_id: None,
                previous_id: None,
                properties: Some(r#"{"a":[1,2]}"#.into()),
                traits: None,
                context: None,
            })
            .collect();
        let batch = EncodedBatch::new(&events).unwrap();
        for rows in [
            vec![0, 1, 2, 3],
            vec![0],
            vec![3],
            vec![1, 3],
            vec![0, 2, 3],
        ] {
            let json = batch.rows(&rows);
            let back: Vec<Event> = serde_json::from_slice(&json).unwrap();
            let want: Vec<Event> = rows.iter().map(|&r| events[r].clone()).collect();
            assert_eq!(back, want, "rows {rows:?}");
        }
    }
}
