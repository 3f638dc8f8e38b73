//! Moving the log into segments, off the append path.
//!
//! `Store::append` returns once its log batch is fsynced and put in the memtable. When the
//! memtable holds `memtable_events` (or a third of `max_pending_bytes`), a background thread
//! (`cairn-flush`) turns it into a segment and cuts the log behind it, while appends go on;
//! between flushes it compacts. A segment write (Parquet,
//! scan file, fsyncs) takes about a second for 250 k events; done under the store lock, as it
//! once was, it stalled every request for that long.
//!
//! # Who may change what
//!
//! While a background flush runs (`Background::running`), it alone changes the manifest, the
//! customer dictionary and the name caches. It takes the dictionaries out of the store state
//! and works on them without the store lock, which it holds only for short steps, so that
//! appends never wait behind its work nor its fsyncs:
//!
//! 1. take the gap-free run of durable batches from the memtable (lock);
//! 2. drop the events of forgotten customers (lock, one batch at a time: the suppression list
//!    is shared with appends, and only `forget`, which waits for the flush, changes it);
//! 3. take the customer dictionary and the name caches out of the store state (lock); appends
//!    never use them;
//! 4. key and intern the events into columns, write the segment, commit the manifest with the
//!    new segment and the log checkpoint, then cut the log (no lock: the segment files are new
//!    and named by nothing until the manifest commit, and the log has its own lock);
//! 5. put the dictionaries and the new manifest back (lock);
//! 6. compact when there are too many segments, as a separate step, and only when no flush is
//!    due: read and write without the lock, swap the manifest under it. A merge rewrites
//!    several segments (seconds of work, more than a flush): if it came first, the memtable
//!    would fill up behind it during a burst, and appends would stall for seconds. So the
//!    flusher compacts when it has caught up with the log, four segments of similar size at
//!    a time (see `compaction`), so that an event is rewritten a few times in all; and never
//!    more than `MAX_MERGE_EVENTS` (2 M) events in one merge, so that a due flush never waits
//!    long behind one however large the store grows (larger segments are left to `cairn compact`). Only when the segments pile up to four times
//!    `max_segments` does a merge go before a due flush.
//!
//! Everything else that changes the manifest (`Store::flush`, `compact`, `import`) first
//! waits for a background flush to end (`Store::lock_settled`). Appends only wait when the
//! memtable and the flush in progress together hold three times `memtable_events` or
//! `max_pending_bytes`: that is the store's backpressure, and bounds its memory whatever the
//! size of the events. `Store::append_within` bounds that wait, for a server to answer 503.
//!
//! The invariants of ARCHITECTURE.md hold as before: readers see the log until the manifest
//! commit names the segment holding it; the log is cut only after that commit; a failed flush
//! removes its files, forgets its dictionary entries and puts its batches back.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::SegmentMeta;
use crate::error::{IoContext, Result, StoreError};
use crate::forget::Suppression;
use crate::parquet_io::EventColumns;
use crate::{
    Inner, MemBatch, Options, Pending, PendingSegment, SEGMENTS_DIR, Store, TxnState, commit,
    key_chunk, merge_into, next_segment, remove_segment_files, rollback, take_flushable, wal,
};

/// What a [`Store`] and its background flusher share.
pub struct Core {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) _lock: File,
    pub(crate) wal: wal::Wal,
    pub(crate) inner: Mutex<Inner>,
    /// Signalled (with `inner`) when the memtable grows past its size, when a background
    /// flush ends and when the store closes.
    pub(crate) changed: Condvar,
    /// Bytes cut from a torn log tail during recovery, for the caller to report.
    pub(crate) recovered_cut: Option<(PathBuf, u64)>,
    /// The last snapshot [`Store::shared_snapshot`] loaded, with the state it was loaded at
    /// or after.
    pub(crate) shared: Mutex<Option<(SharedState, Arc<crate::Snapshot>)>>,
}

/// (manifest version, last durable log batch): what a shared snapshot is reused for.
pub(crate) type SharedState = (u64, u64);

/// The background flusher's side of the store state (inside the store lock).
#[derive(Default)]
pub(crate) struct Background {
    /// A flush or compaction is in progress and owns the manifest and dictionaries.
    running: bool,
    /// Events taken from the memtable by the flush in progress.
    flushing: Pending,
    /// Why the last background flush failed, until one succeeds.
    failed: Option<String>,
    /// The store is closing: the thread ends after the flush in progress.
    stop: bool,
    /// The flusher thread panicked, perhaps holding the dictionaries or a committed manifest
    /// not yet put back: the state in memory can no longer be trusted, so every later write
    /// fails (the files on disk are consistent; reopening the store recovers).
    panicked: bool,
}

/// After a failed background flush, the wait before the next attempt.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub(crate) fn spawn(core: Arc<Core>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cairn-flush".into())
        .spawn(move || run(&core))
}

/// Runs `work` on a thread of lower priority (nice 10; Linux gives each thread its own nice
/// value, and threads it starts inherit it), so that the scheduler gives a core to a waiting
/// append, whose answer a client is waiting for, before the flusher's heavy work: keying,
/// encoding and writing a segment, or merging segments. The flusher uses what the appends
/// leave: it only has to keep up on average, and when it does not, the backpressure of
/// `wait_for_room` slows the appends down to its pace.
///
/// Only work that takes no lock appends wait for: the flusher thread itself, which takes the
/// store lock and the log's lock, keeps normal priority. A niced thread holding a lock that
/// requests wait for is a priority inversion: on a busy machine it gets a tenth of a core,
/// and a step of a few milliseconds under the lock held every request for 100–300 ms.
fn niced<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    // Taken by the worker, or by this thread if no worker could be started.
    let work = Mutex::new(Some(work));
    let take = || work.lock().unwrap_or_else(|p| p.into_inner()).take();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("cairn-flush-work".into())
            .spawn_scoped(scope, || {
                yield_to_appends();
                take().map(|w| w())
            });
        let done = match worker {
            // A panic in the work is the flusher's panic (see `PanicGuard`).
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            // No thread to be had (a resource limit): do it here, at normal priority.
            Err(_) => None,
        };
        match done {
            Some(t) => t,
            None => take()
                .map(|w| w())
                .expect("the work runs on exactly one thread"),
        }
    })
}

/// Lowers the calling thread's priority to nice 10. Best effort: if it fails, the work runs
/// at normal priority.
fn yield_to_appends() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their integer arguments; on failure
    // setpriority returns -1 and changes nothing.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Marks the store broken if the flusher thread panics, so that appends waiting for room get
/// an error instead of waiting forever, and no later write uses the state it left behind.
struct PanicGuard<'a>(&'a Core);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut inner = self.0.lock();
            inner.background.running = false;
            inner.background.failed = Some("the background flush thread panicked".into());
            inner.background.panicked = true;
            self.0.changed.notify_all();
        }
    }
}

fn run(core: &Core) {
    let _guard = PanicGuard(core);
    let mut inner = core.lock();
    loop {
        if inner.background.stop {
            return;
        }
        // Compaction waits while the log is due for a flush (under a burst, flushing is what
        // keeps appends going); only when the segments pile up to four times the limit does it go
        // first, and appends may then have to wait for room.
        let piled_up = compaction(
            &inner.manifest.segments,
            PILE_UP * core.options.max_segments,
            MAX_MERGE_EVENTS,
        )
        .is_some();
        let taken = if core.options.flush_due(inner.memtable_size) && !piled_up {
            take_flushable(&mut inner)
        } else {
            None
        };
        let work = match taken {
            Some((batches, upto)) => {
                let flush = LogFlush::new(batches, upto);
                let size = flush.size();
                inner.memtable_size -= size;
                inner.background.flushing = size;
                Work::Flush(Box::new(flush))
            }
            None => match compaction(
                &inner.manifest.segments,
                core.options.max_segments,
                MAX_MERGE_EVENTS,
            ) {
                Some(range) => Work::Compact(range),
                // Not due yet, or the next batch is still on its way into the memtable (its
                // append notifies once it is in).
                None => {
                    inner = core.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
            },
        };
        inner.background.running = true;
        drop(inner);
        let result = match work {
            Work::Flush(mut flush) => {
                let r = flush_in_background(core, &mut flush);
                // Freeing a flush's events takes a while: not while holding the lock
                // appends wait for, and not ahead of them.
                niced(move || drop(flush));
                r
            }
            Work::Compact(range) => compact_in_background(core, range),
        };
        inner = core.lock();
        inner.background.running = false;
        inner.background.flushing = Pending::default();
        match result {
            Ok(()) => inner.background.failed = None,
            Err(e) => {
                // The batches are in the memtable again (or already in a segment, if only
                // compaction failed); the log still holds them either way.
                inner.background.failed = Some(e.to_string());
                core.changed.notify_all();
                inner = core
                    .changed
                    .wait_timeout(inner, RETRY_AFTER_FAILURE)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
        }
        core.changed.notify_all();
    }
}

/// What the background flusher does next.
enum Work {
    Flush(Box<LogFlush>),
    /// Merge these segments (indexes into the manifest's list).
    Compact(std::ops::Range<usize>),
}

/// How many times `max_segments` the segments may pile up to, during a burst, before a merge
/// goes ahead of a due flush. Under a sustained burst the flusher has no time to merge
/// (merging is slower per event than flushing); segments are then left to accumulate for a
/// while, readers pay a little more per segment, and the merges happen once the burst eases.
const PILE_UP: usize = 4;

/// Segments the flusher merges in one step: merging a long run at once (after a burst left
/// many small segments) would make flushes wait long behind it; a few steps bring the count
/// down instead.
const MAX_MERGE_WIDTH: usize = 4;

/// The most events a background merge writes: a merge cannot stop for a due flush, so this
/// bounds how long flushes wait behind one (and, below `Options::merge_slice_events`, its
/// memory); the same size as an import's segments ([`crate::SEGMENT_EVENTS`]). Larger
/// segments are left as they are (`cairn compact` merges them).
const MAX_MERGE_EVENTS: u64 = crate::SEGMENT_EVENTS as u64;

/// The next merge when there are more than `limit` segments: `MAX_MERGE_WIDTH` neighbours
/// of similar sizes (none more than twice another), the run with the fewest events; failing
/// that, three or two; failing that, the run with the fewest events whatever their sizes.
/// Never more than `max_events` in all: `None` when no run fits.
///
/// Merging similar sizes is what keeps the work of compaction low (as in an LSM tree's tiers):
/// an event is rewritten once each time its segment joins three others of its size, so about
/// log4(events / flush size) times. Bringing the count back to the limit with the smallest
/// possible merge instead merges each new segment into its neighbour at once, rewriting the
/// newest events again after every flush: at a steady rate, several times more work than
/// the flushes themselves, which a 2-core server could not keep up with.
pub(crate) fn compaction(
    segs: &[SegmentMeta],
    limit: usize,
    max_events: u64,
) -> Option<std::ops::Range<usize>> {
    if segs.len() <= limit {
        return None;
    }
    let widths = || (2..=MAX_MERGE_WIDTH.min(segs.len())).rev();
    let events = |run: &[SegmentMeta]| run.iter().map(|s| s.events).sum::<u64>();
    let similar = |run: &[SegmentMeta]| {
        let least = run.iter().map(|s| s.events).min().unwrap_or(0);
        let most = run.iter().map(|s| s.events).max().unwrap_or(0);
        most <= least.saturating_mul(2)
    };
    let best = |width: usize, want_similar: bool| {
        (0..=segs.len() - width)
            .map(|i| (i, &segs[i..i + width]))
            .filter(|(_, run)| events(run) <= max_events && (!want_similar || similar(run)))
            .min_by_key(|(_, run)| events(run))
            .map(|(i, _)| i..i + width)
    };
    widths()
        .find_map(|w| best(w, true))
        .or_else(|| widths().find_map(|w| best(w, false)))
}

/// Steps 2 to 5 of the module doc. On failure the batches are back in the memtable.
fn flush_in_background(core: &Core, flush: &mut LogFlush) -> Result<()> {
    core.wal.rotate();
    flush.drop_suppressed(core);
    let mut own = detach(&mut core.lock());
    let seg_dir = core.dir.join(SEGMENTS_DIR);
    let written = niced(|| {
        flush.key(&mut own).and_then(|()| {
            flush
                .seal(&own)
                .map(|pending| pending.write(&seg_dir))
                .transpose()
        })
    });
    let result = flush.finish(core, &mut own, written);
    reattach(&mut core.lock(), own);
    result
}

/// The part of the store state a background flush works on without the store lock: the
/// customer dictionary and the name caches (taken out), with a copy of the manifest. The rest
/// is empty; `finish` puts the batches of a failed flush in its memtable.
fn detach(inner: &mut Inner) -> Inner {
    Inner {
        manifest: inner.manifest.clone(),
        dict: std::mem::take(&mut inner.dict),
        names: std::mem::take(&mut inner.names),
        channels: std::mem::take(&mut inner.channels),
        seen: None,
        in_flight: Default::default(),
        memtable: Vec::new(),
        memtable_size: Pending::default(),
        background: Default::default(),
        // Forgotten customers' events were dropped before (`LogFlush::drop_suppressed`).
        suppression: Default::default(),
    }
}

/// Puts back what [`detach`] took, with the manifest the flush committed (or the unchanged
/// one) and the batches of a failed flush.
fn reattach(inner: &mut Inner, mut own: Inner) {
    inner.manifest = own.manifest;
    inner.dict = own.dict;
    inner.names = own.names;
    inner.channels = own.channels;
    inner.memtable_size += own.memtable_size;
    inner.memtable.append(&mut own.memtable);
}

/// Step 6 of the module doc: one merge of `range`, chosen by [`compaction`].
fn compact_in_background(core: &Core, range: std::ops::Range<usize>) -> Result<()> {
    // Only this thread changes the segment list while it runs: the range is still valid.
    let mut manifest = core.lock().manifest.clone();
    let seg_dir = core.dir.join(SEGMENTS_DIR);
    let slice_events = core.options.merge_slice_events;
    let (old, _) = niced(|| merge_into(&seg_dir, &mut manifest, range, slice_events, &mut |_| {}))?;
    // Appends never read the manifest, and no one else changes it while this flush runs:
    // commit it without holding them up, then swap it in.
    let new_id = manifest.next_segment_id - 1;
    if let Err(e) = manifest.commit(&core.dir) {
        remove_segment_files(&seg_dir, new_id);
        return Err(e);
    }
    {
        let mut inner = core.lock();
        inner.manifest = manifest;
        inner.rebuild_caches();
    }
    for seg in &old {
        remove_segment_files(&seg_dir, seg.id);
    }
    crate::fsutil::fsync_dir(&seg_dir).at(&seg_dir)
}

/// A flush of durable log batches into one segment, in steps, so that the background flusher
/// can let go of the store lock between them. `Store::flush` runs the same steps holding it.
pub(crate) struct LogFlush {
    batches: Vec<MemBatch>,
    /// The last batch number taken: the log checkpoint once the segment is committed.
    upto: u64,
    state: TxnState,
    columns: EventColumns,
    /// Rows of forgotten customers, by (batch, chunk): left out of the segment.
    dropped: FxHashMap<(usize, usize), Vec<bool>>,
}

impl LogFlush {
    pub(crate) fn new(batches: Vec<MemBatch>, upto: u64) -> LogFlush {
        LogFlush {
            batches,
            upto,
            state: TxnState::default(),
            columns: EventColumns::default(),
            dropped: FxHashMap::default(),
        }
    }

    /// What the flush took from the memtable, events and bytes.
    pub(crate) fn size(&self) -> Pending {
        self.batches.iter().map(MemBatch::size).sum()
    }

    /// Marks the rows of forgotten customers (see `forget.rs`) in batch `b`.
    fn mark_suppressed(&mut self, suppression: &Suppression, b: usize) {
        for (c, chunk) in self.batches[b].chunks.iter().enumerate() {
            let marks: Vec<bool> = (0..chunk.len())
                .map(|row| {
                    let (user, anon) = chunk.columns.ids(row);
                    suppression.drops_ids(user, anon)
                })
                .collect();
            if marks.contains(&true) {
                self.dropped.insert((b, c), marks);
            }
        }
    }

    /// [`LogFlush::mark_suppressed`] for every batch, holding the store lock.
    pub(crate) fn mark_all_suppressed(&mut self, inner: &Inner) {
        if !inner.suppression.is_empty() {
            for b in 0..self.batches.len() {
                self.mark_suppressed(&inner.suppression, b);
            }
        }
    }

    /// [`LogFlush::mark_all_suppressed`] taking the store lock for one batch at a time.
    fn drop_suppressed(&mut self, core: &Core) {
        for b in 0..self.batches.len() {
            let inner = core.lock();
            if inner.suppression.is_empty() {
                return;
            }
            self.mark_suppressed(&inner.suppression, b);
        }
    }

    /// Keys and interns every batch into the segment's columns.
    pub(crate) fn key(&mut self, inner: &mut Inner) -> Result<()> {
        for (b, batch) in self.batches.iter().enumerate() {
            for (c, chunk) in batch.chunks.iter().enumerate() {
                let dropped = self.dropped.get(&(b, c)).map(Vec::as_slice);
                key_chunk(inner, &mut self.state, &mut self.columns, chunk, dropped)?;
            }
        }
        Ok(())
    }

    /// The segment to write once every batch is keyed (`None` if they hold no event).
    pub(crate) fn seal(&mut self, inner: &Inner) -> Option<PendingSegment> {
        if self.columns.is_empty() {
            return None;
        }
        let columns = std::mem::take(&mut self.columns);
        Some(next_segment(inner, &mut self.state, columns, Vec::new()))
    }

    /// Commits the written segment with the log checkpoint and cuts the log; or, when
    /// anything failed, undoes the flush and puts its batches back in the memtable.
    pub(crate) fn finish(
        &mut self,
        core: &Core,
        inner: &mut Inner,
        written: Result<Option<crate::SegmentMeta>>,
    ) -> Result<()> {
        let state = std::mem::take(&mut self.state);
        let committed = match written {
            Ok(meta) => {
                let mut state = state;
                let manifest = state.manifest.get_or_insert_with(|| inner.manifest.clone());
                manifest.segments.extend(meta);
                manifest.wal_checkpoint = self.upto;
                // `commit` rolls back itself when it fails.
                commit(core, inner, state)
            }
            Err(e) => {
                rollback(core, inner, state);
                Err(e)
            }
        };
        if let Err(e) = committed {
            inner.memtable_size += self.size();
            inner.memtable.append(&mut self.batches);
            return Err(e);
        }
        core.wal.remove_upto(self.upto)
    }
}

impl Core {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store lock, once no background flush is in progress: for everything else that
    /// changes the manifest or the dictionaries.
    pub(crate) fn lock_settled(&self) -> Result<MutexGuard<'_, Inner>> {
        let mut inner = self.lock();
        while inner.background.running {
            inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        self.check_not_broken(&inner)?;
        Ok(inner)
    }

    fn check_not_broken(&self, inner: &Inner) -> Result<()> {
        if inner.background.panicked {
            return Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(
                    "the background flush thread panicked; reopen the store to go on writing",
                ),
            });
        }
        Ok(())
    }

    /// Waits while the memtable and the flush in progress hold too much (storage is behind):
    /// the store's backpressure. Fails when the background flush keeps failing, and after
    /// `patience` (if given) with [`StoreError::Behind`].
    pub(crate) fn wait_for_room<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        patience: Option<Duration>,
    ) -> Result<MutexGuard<'a, Inner>> {
        self.check_not_broken(&inner)?;
        let started = Instant::now();
        while self
            .options
            .full(inner.memtable_size + inner.background.flushing)
        {
            if let Some(reason) = &inner.background.failed {
                return Err(StoreError::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other(format!(
                        "the log cannot be moved into segments ({reason}); appends stop until it can"
                    )),
                });
            }
            inner = match patience {
                None => self.changed.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(patience) => {
                    let left = patience.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(StoreError::Behind { waited: patience });
                    }
                    self.changed
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        Ok(inner)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.lock().background.stop = true;
        self.changed.notify_all();
        if let Some(flusher) = self.flusher.take() {
            // A flush in progress finishes first; if the thread panicked, the log still
            // holds everything and the next open recovers it.
            let _ = flusher.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::{Event, EventKind};

    fn event(id: &str, properties_len: usize) -> Event {
        Event {
            message_id: id.to_string(),
            kind: EventKind::Track,
            event: "view".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: 1,
            sent_at: None,
            received_at: None,
            channel: "web".into(),
            value: None,
            group_id: None,
            previous_id: None,
            properties: Some(format!(r#"{{"p":"{}"}}"#, "x".repeat(properties_len))),
            traits: None,
            context: None,
        }
    }

    fn open(dir: &std::path::Path, max_pending_bytes: usize) -> Store {
        let options = Options {
            memtable_events: 1_000_000,
            max_pending_bytes,
            ..Options::default()
        };
        Store::open(dir, options).unwrap()
    }

    /// A flush in progress holding the whole byte budget makes a bounded append fail with
    /// `Behind` (storing nothing) and an unbounded one wait until the flush ends.
    #[test]
    fn appends_wait_for_room_within_the_byte_bound_then_give_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        {
            // Pretend the flusher took 1 MiB of events and is still writing them.
            let mut inner = store.lock();
            inner.background.flushing = Pending {
                events: 1,
                bytes: 1 << 20,
            };
        }
        let patience = Duration::from_millis(50);
        let started = Instant::now();
        let err = store
            .append_within(vec![event("m1", 10)], patience)
            .unwrap_err();
        assert!(matches!(err, StoreError::Behind { .. }), "{err}");
        assert!(started.elapsed() >= patience);
        assert!(err.to_string().contains("nothing of this batch was stored"));
        assert_eq!(store.wal.last_durable(), 0, "nothing reached the log");
        assert_eq!(store.snapshot().unwrap().stats().log_events, 0);

        std::thread::scope(|s| {
            let waiting = s.spawn(|| store.append(vec![event("m1", 10)]).unwrap());
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !waiting.is_finished(),
                "the append waits while the store is full"
            );
            store.lock().background.flushing = Pending::default();
            store.changed.notify_all();
            assert_eq!(waiting.join().unwrap().accepted, 1);
        });
        assert_eq!(store.snapshot().unwrap().stats().log_events, 1);
    }

    /// Merges bring the count back to the limit four neighbours at a time, of similar sizes
    /// when there are such.
    #[test]
    fn merges_take_four_neighbours_of_similar_size_within_a_cap() {
        let check_within = |events: &[u64], limit, max_events, expected: Option<_>| {
            let segs: Vec<SegmentMeta> = events
                .iter()
                .map(|&events| SegmentMeta {
                    events,
                    ..Default::default()
                })
                .collect();
            assert_eq!(
                compaction(&segs, limit, max_events),
                expected,
                "{events:?} limit {limit} max {max_events}"
            );
        };
        let check =
            |events: &[u64], limit, expected| check_within(events, limit, u64::MAX, expected);
        check(&[5, 5, 5], 3, None);
        check(&[9, 1], 1, Some(0..2));
        // One over the limit: four similar ones, the fewest events of such runs; not the
        // smallest run (9 + 11 + 8 + 2), which would rewrite the 2 again and again.
        check(&[40, 10, 12, 9, 11, 8, 2], 6, Some(2..6));
        // Ten over the limit: four now, the rest in later steps.
        let many = [8, 8, 1, 1, 1, 1, 1, 8, 8, 8, 8, 8, 8];
        check(&many, 3, Some(2..6));
        // No similar run: the smallest.
        check(&[100, 1, 30, 3, 90, 9], 5, Some(1..5));
        // Never more than the cap: fewer neighbours, or none.
        check_within(&[8, 8, 8, 8, 8], 4, 30, Some(0..3));
        check_within(&[40, 50, 60], 2, 80, None);
        check_within(&[40, 50, 10, 60], 3, 80, Some(1..3));
    }

    /// Large events make a flush due by their bytes long before `memtable_events` of them
    /// are in memory, and what waits for the flusher stays near `max_pending_bytes`.
    #[test]
    fn a_flush_is_due_by_bytes_and_the_memtable_stays_within_them() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 300_000;
        let store = open(dir.path(), limit);
        let mut most = 0;
        for b in 0..40 {
            let events = (0..5)
                .map(|i| event(&format!("m{b}-{i}"), 10_000))
                .collect();
            let outcome = store
                .append_within(events, Duration::from_secs(30))
                .unwrap();
            assert_eq!(outcome.accepted, 5);
            let inner = store.lock();
            most = most.max((inner.memtable_size + inner.background.flushing).bytes);
        }
        // An append may land while the store is just under its bound.
        assert!(
            most < limit + 5 * 11_000,
            "{most} bytes waited for the flusher"
        );
        store.flush().unwrap();
        let snap = store.snapshot().unwrap();
        assert!(
            snap.segments().len() > 1,
            "2 MB of events at 300 kB each flush: several segments"
        );
        assert_eq!(snap.stats().events, 200);
    }
}
