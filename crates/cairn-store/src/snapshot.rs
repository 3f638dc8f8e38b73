//! Read views: a consistent snapshot of the store and the two read paths every feature uses.
//!
//! - [`Snapshot::scan`] / [`Snapshot::scan_parallel`]: customers one at a time, in customer-key
//!   order (in parallel, within each range of keys a thread takes), each with its events in
//!   time order, reading only the columns asked for. The data comes straight from the
//!   memory-mapped scan files; a customer whose events sit in one segment is handed out
//!   without copying, one spread over several is merged first.
//! - [`Snapshot::timeline`]: one customer's full events, in order, from Parquet.
//!
//! A snapshot is what the manifest named when it was taken plus the log's batches after the
//! checkpoint, so readers in other processes see everything a writer has acknowledged.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::{Array, StringArray};
use cairn_model::{Micros, NameSet};

use crate::dict::ReaderDict;
use crate::error::{Result, StoreError};
use crate::manifest::{Manifest, SegmentMeta};
use crate::parquet_io::{self, EventColumns, SegmentFile, StoredEvent};
use crate::scanfile::{Ids, ScanData, View};
use crate::segment::{DictionaryIds, scan_columns};
use crate::{SEGMENTS_DIR, wal};

/// Which columns a scan reads. Columns not asked for come back as empty slices and are never
/// paged in from disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct Columns {
    pub times: bool,
    pub names: bool,
    pub channels: bool,
    pub values: bool,
    /// Each event's `properties` JSON text. Not in the scan files: read from the Parquet
    /// segments when asked for, so it costs a pass over that column first.
    pub properties: bool,
}

impl Columns {
    pub const ALL: Columns = Columns {
        times: true,
        names: true,
        channels: true,
        values: true,
        properties: true,
    };
}

/// The `group` of scans without groups: every key alone.
type Alone = fn(u32) -> Option<&'static [u32]>;

/// How many runs of adjacent keys [`Snapshot::scan_sample_parallel`] reads.
pub const SAMPLE_SLICES: u64 = 256;

/// About how many events a parallel scan hands a thread at a time (see
/// [`Snapshot::scan_parallel`]). Each range costs only a few lookups per source to start;
/// what matters is the scan's end, where one thread finishes its last range while the
/// others have none left. With ranges of 2¹⁹ events (22 at 12 M events), one core sat idle
/// for about 15 ms of a 12 M-event map's 215 ms under `perf`; ranges of 2¹⁶ (128 there,
/// the cap of 64 per thread) are a few milliseconds each: 12 M map 0.95–0.98× wall, funnel
/// 0.99× (21 and 31 interleaved rounds); 96 M events were cut at the cap before and are
/// unchanged.
const RANGE_EVENTS: u64 = 1 << 16;

/// One customer's events, as parallel slices in time order.
#[derive(Debug, Clone, Copy)]
pub struct Customer<'a> {
    pub key: u32,
    pub times: &'a [i64],
    /// Indexes into [`Snapshot::event_names`].
    pub names: &'a [u16],
    /// Indexes into [`Snapshot::channels`].
    pub channels: &'a [u16],
    /// NaN where an event has no value.
    pub values: &'a [f64],
    /// JSON object text; empty where an event has no properties.
    pub properties: &'a [&'a str],
}

impl Customer<'_> {
    pub fn len(&self) -> usize {
        self.times
            .len()
            .max(self.names.len())
            .max(self.channels.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a scan does with each customer. Any `Fn(&mut S, Customer)` is one: it is handed
/// every customer whole. A visitor of its own can also take customers in from their event
/// names alone ([`Visit::by_names`]), and the scan then decodes nothing else of them.
pub trait Visit<S>: Sync {
    /// Offered a customer's event names before the scan reads anything else of it; returns
    /// whether they were all it needed (it took the customer into `state`), in which case the
    /// scan reads nothing more of the customer and does not [`Visit::visit`] it. The names
    /// are the customer's events but not necessarily in time order (a profile's keys are
    /// offered one run after the other), as stored (one byte each in a store of at most 256
    /// names: taken from the file as they are, not widened). Only scans that read names
    /// offer them, and not every customer is offered (not a profile whose keys sit in
    /// several segments): those are visited as usual. By default nothing is taken from names
    /// alone.
    fn by_names(&self, state: &mut S, names: Names<'_>) -> bool {
        let _ = (state, names);
        false
    }

    /// One customer, with the columns the scan reads.
    fn visit(&self, state: &mut S, customer: Customer<'_>);
}

impl<S, F: Fn(&mut S, Customer<'_>) + Sync> Visit<S> for F {
    fn visit(&self, state: &mut S, customer: Customer<'_>) {
        self(state, customer)
    }
}

/// A customer's event names as offered to [`Visit::by_names`].
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// The names' indexes, as the scan file holds them.
    pub ids: Ids<'a>,
    /// Which names they are, when the scan file keeps it (files written before format 5 do
    /// not).
    pub set: Option<NameSet>,
}

/// A scan thread's visitor bound to its state, as the scan loop calls it.
trait Sink {
    fn by_names(&mut self, names: Names<'_>) -> bool;
    fn visit(&mut self, customer: Customer<'_>);
}

struct Bound<'a, S, V> {
    state: &'a mut S,
    visitor: &'a V,
}

impl<S, V: Visit<S>> Sink for Bound<'_, S, V> {
    fn by_names(&mut self, names: Names<'_>) -> bool {
        self.visitor.by_names(self.state, names)
    }
    fn visit(&mut self, customer: Customer<'_>) {
        self.visitor.visit(self.state, customer)
    }
}

/// The serial scans' callback: every customer whole.
struct Each<F>(F);

impl<F: FnMut(Customer<'_>)> Sink for Each<F> {
    fn by_names(&mut self, _: Names<'_>) -> bool {
        false
    }
    fn visit(&mut self, customer: Customer<'_>) {
        (self.0)(customer)
    }
}

struct Source {
    scan: ScanData,
    /// Where the full events live: a Parquet file, or memory for events still in the log.
    rows: Rows,
}

enum Rows {
    Parquet(SegmentFile),
    Memory(Vec<StoredEvent>),
}

pub struct Snapshot {
    dir: PathBuf,
    manifest: Manifest,
    dict: ReaderDict,
    /// Identifiers of customers first seen in the log tail, keyed after the dictionary.
    tail_customers: Vec<String>,
    event_names: Vec<String>,
    channels: Vec<String>,
    /// Segments in log order, then the log tail.
    sources: Vec<Source>,
}

/// Summary figures of a snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub customers: u64,
    pub events: u64,
    pub first_event: Option<Micros>,
    pub last_event: Option<Micros>,
    pub event_names: Vec<(String, u64)>,
    pub channels: Vec<(String, u64)>,
    pub segments: u64,
    pub log_events: u64,
    pub disk_bytes: u64,
}

impl Snapshot {
    /// Loads the current state of the store in `dir` without taking the writer's lock.
    pub fn load(dir: &Path) -> Result<Snapshot> {
        // A writer may commit between reading the manifest and reading the files it names
        // (a compaction removes segments, a checkpoint removes log files): retry until the
        // manifest is the same before and after.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Snapshot::try_load(dir) {
                Ok(Some(s)) => return Ok(s),
                Ok(None) if attempts < 20 => continue,
                Ok(None) => {
                    return Err(StoreError::Corrupt {
                        path: dir.to_path_buf(),
                        reason: "the store kept changing while being read".into(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_load(dir: &Path) -> Result<Option<Snapshot>> {
        let manifest = Manifest::load(dir)?.unwrap_or_else(Manifest::new);
        let dict = match ReaderDict::open(dir, &manifest.customers) {
            Ok(d) => d,
            // A forget replaced the dictionary after the manifest was read: read both again.
            Err(_) if Manifest::load(dir)?.map(|m| m.version) != Some(manifest.version) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut sources = Vec::with_capacity(manifest.segments.len() + 1);
        for seg in &manifest.segments {
            let scan_path = dir.join(SEGMENTS_DIR).join(seg.scan_name());
            let parquet = SegmentFile::open(&dir.join(SEGMENTS_DIR).join(seg.parquet_name()));
            match ScanData::open(&scan_path).and_then(|scan| Ok((scan, parquet?))) {
                Ok((scan, parquet)) => sources.push(Source {
                    scan,
                    rows: Rows::Parquet(parquet),
                }),
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        let batches = wal::read(dir, manifest.wal_checkpoint)?;
        if Manifest::load(dir)?.map(|m| m.version) != Some(manifest.version)
            && manifest.version != 0
        {
            return Ok(None);
        }
        let mut snapshot = Snapshot {
            dir: dir.to_path_buf(),
            event_names: manifest.event_names.clone(),
            channels: manifest.channels.clone(),
            manifest,
            dict,
            tail_customers: Vec::new(),
            sources,
        };
        if !batches.is_empty() {
            snapshot.add_tail(batches)?;
        }
        Ok(Some(snapshot))
    }

    /// Turns log batches into an in-memory source, keyed and sorted like a segment.
    fn add_tail(&mut self, batches: Vec<wal::Batch>) -> Result<()> {
        // Look every customer of the tail up in the dictionary in one pass (a reader has no
        // index of it); those not in it get keys after it, in order of first appearance.
        let mut keys = crate::hash::FxHashMap::<String, Option<u32>>::default();
        for batch in &batches {
            for event in &batch.events {
                if !keys.contains_key(event.customer_id()) {
                    keys.insert(event.customer_id().to_string(), None);
                }
            }
        }
        self.dict.keys_of(&mut keys)?;
        let mut seq = self.manifest.next_seq;
        let mut rows = Vec::new();
        for batch in batches {
            for event in batch.events {
                let slot = keys.get_mut(event.customer_id());
                let key = match slot {
                    Some(Some(k)) => *k,
                    Some(slot) => {
                        self.tail_customers.push(event.customer_id().to_string());
                        let k = (self.dict.len() + self.tail_customers.len() - 1) as u32;
                        *slot = Some(k);
                        k
                    }
                    // Every tail customer was put in `keys` above.
                    None => continue,
                };
                rows.push(StoredEvent { key, seq, event });
                seq += 1;
            }
        }
        // The same columns and order as a segment written from these events.
        let mut columns = EventColumns::default();
        let mut ids = DictionaryIds::default();
        let (names, channels) = (&mut self.event_names, &mut self.channels);
        for r in &rows {
            let (name, channel) =
                ids.of(&r.event, |n| intern(names, n), |c| intern(channels, c))?;
            columns.push(r.key, r.seq, name, channel, &r.event);
        }
        let order = columns.order(&[]);
        let scan = scan_columns(&columns, &order);
        let mut slots: Vec<Option<StoredEvent>> = rows.into_iter().map(Some).collect();
        // `order` is a permutation of the row indexes, so every slot is taken exactly once.
        let rows = order
            .iter()
            .filter_map(|&i| slots[i as usize].take())
            .collect();
        self.sources.push(Source {
            scan: ScanData::from_columns(&scan),
            rows: Rows::Memory(rows),
        });
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn segments(&self) -> &[SegmentMeta] {
        &self.manifest.segments
    }

    pub fn event_names(&self) -> &[String] {
        &self.event_names
    }

    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Number of customer keys in use (keys are `0..key_count()`).
    pub fn key_count(&self) -> usize {
        self.dict.len() + self.tail_customers.len()
    }

    /// The raw identifier of a customer key.
    pub fn customer_id(&self, key: u32) -> Option<&str> {
        self.dict.id(key).or_else(|| {
            self.tail_customers
                .get((key as usize).checked_sub(self.dict.len())?)
                .map(String::as_str)
        })
    }

    /// Checks the customer dictionary (its checksum and count), which a snapshot otherwise
    /// reads only when an identifier is first asked for: a damaged one knows no identifier,
    /// so [`Snapshot::customer_id`] and [`Snapshot::customer_key`] answer `None`, and this
    /// says why.
    pub fn check_customers(&self) -> Result<()> {
        self.dict.check()
    }

    /// The key of a raw customer identifier.
    pub fn customer_key(&self, id: &str) -> Option<u32> {
        self.dict.key(id).or_else(|| {
            let i = self.tail_customers.iter().position(|c| c == id)?;
            Some((self.dict.len() + i) as u32)
        })
    }

    pub fn events(&self) -> u64 {
        self.sources.iter().map(|s| s.scan.events() as u64).sum()
    }

    /// Visits every customer in key order. Fails only when properties are asked for and a
    /// segment cannot be read.
    pub fn scan(&self, columns: Columns, visit: impl FnMut(Customer<'_>)) -> Result<()> {
        let arrays = self.load_properties(columns)?;
        let texts = property_texts(&self.sources, &arrays, columns);
        let all = 0..u32::MAX;
        self.scan_range(columns, None::<&Alone>, &texts, all, &mut Each(visit));
        Ok(())
    }

    /// [`Snapshot::scan`] over groups of keys, such as the keys identity resolution found to
    /// be one person: `group(key)` names the keys `key` is scanned with (ascending), or `None`
    /// when it stands alone. A group is visited once, as one customer under its lowest key,
    /// with its keys' events merged by time (equal times keep key order, then log order);
    /// its keys' own runs are not visited. It is visited where the scan meets the last of its
    /// keys that holds events, and reads the others' runs from there, behind the scan's
    /// cursors (data the scan has just passed, still in cache; reading ahead of the cursors
    /// instead broke the forward streams the hardware prefetches), so nothing is buffered.
    /// Keys alone are visited as by [`Snapshot::scan`].
    /// Times are always read for a group's keys (to merge them), whatever `columns.times`
    /// says, but handed out only when asked for.
    pub fn scan_grouped<'g, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        columns: Columns,
        group: &G,
        visit: impl FnMut(Customer<'_>),
    ) -> Result<()> {
        let arrays = self.load_properties(columns)?;
        let texts = property_texts(&self.sources, &arrays, columns);
        let all = 0..u32::MAX;
        self.scan_range(columns, Some(group), &texts, all, &mut Each(visit));
        Ok(())
    }

    /// [`Snapshot::scan_grouped`] on `threads` threads, like [`Snapshot::scan_parallel`]: a
    /// group is visited by the thread that takes the key range holding its last key with
    /// events.
    pub fn scan_parallel_grouped<'g, S: Send, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        columns: Columns,
        group: &G,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        self.parallel(columns, Some(group), threads, init, visit)
    }

    /// Scans the customers on `threads` threads; returns each thread's state. The key space
    /// is cut into ranges of similar event counts, many more than threads, and each thread
    /// takes the next range not yet taken until none is left. A fixed half each made the
    /// scan wait for the slower thread: on a shared VM one core can run much slower than the
    /// other for a whole scan, whichever half it has (0.17 s against 0.11 s for the halves of
    /// a 12 M-event funnel, in a slow phase of the host). So a state holds the
    /// customers of the ranges its thread took, each range in key order, and which ranges
    /// those are changes from run to run: analyses merge states without regard to order.
    pub fn scan_parallel<S: Send>(
        &self,
        columns: Columns,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        self.parallel(columns, None::<&Alone>, threads, init, visit)
    }

    /// Visits about one customer in `every` (all of them when `every` is 1) on `threads`
    /// threads, as [`Snapshot::scan_parallel`] visits all of them, for analyses that plan on
    /// a sample before they scan everything; returns each thread's state.
    /// The sample is [`SAMPLE_SLICES`] runs of adjacent keys spread evenly over the key
    /// space, so that it holds customers of every age (keys are handed out in order of first
    /// appearance) and reads a few stretches of each file, not one customer here and there.
    /// Threads take slices as they take ranges in a full scan.
    pub fn scan_sample_parallel<S: Send>(
        &self,
        columns: Columns,
        every: u32,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        self.sample(columns, every, None::<&Alone>, threads, init, visit)
    }

    /// [`Snapshot::scan_sample_parallel`] over groups of keys, as
    /// [`Snapshot::scan_parallel_grouped`]: a group is in the sample when its last key with
    /// events is.
    pub fn scan_sample_parallel_grouped<
        'g,
        S: Send,
        G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized,
    >(
        &self,
        columns: Columns,
        every: u32,
        group: &G,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        self.sample(columns, every, Some(group), threads, init, visit)
    }

    fn sample<'g, S: Send, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        columns: Columns,
        every: u32,
        group: Option<&G>,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        let keys = self.key_count() as u64;
        let slices = SAMPLE_SLICES.min(keys.max(1));
        let per_slice = (keys / slices / u64::from(every.max(1))).max(1);
        let ranges: Vec<Range<u32>> = (0..slices)
            .map(|i| {
                let start = keys * i / slices;
                let end = (start + per_slice).min(keys);
                // Keys fit u32 (the dictionary hands them out as such).
                start as u32..end as u32
            })
            .collect();
        self.on_threads(columns, group, ranges, threads, init, visit)
    }

    /// Generic over `group` (not `dyn`): the scan asks it about every key, and most keys are
    /// alone, so the check inlines to one array read.
    fn parallel<'g, S: Send, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        columns: Columns,
        group: Option<&G>,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        let threads = threads.max(1);
        let ranges = if threads == 1 {
            1
        } else {
            (self.events() / RANGE_EVENTS).clamp(4 * threads as u64, 64 * threads as u64) as usize
        };
        self.on_threads(
            columns,
            group,
            self.key_ranges(ranges),
            threads,
            init,
            visit,
        )
    }

    /// Scans `ranges` on `threads` threads, each taking the next range not yet taken; returns
    /// each thread's state.
    fn on_threads<'g, S: Send, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        columns: Columns,
        group: Option<&G>,
        ranges: Vec<Range<u32>>,
        threads: usize,
        init: impl Fn() -> S + Sync,
        visit: impl Visit<S>,
    ) -> Result<Vec<S>> {
        let arrays = self.load_properties(columns)?;
        let texts = property_texts(&self.sources, &arrays, columns);
        let next = AtomicUsize::new(0);
        let (texts, init, visit, ranges, next) = (&texts, &init, &visit, &ranges, &next);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads.clamp(1, ranges.len().max(1)))
                .map(|_| {
                    scope.spawn(move || {
                        let mut state = init();
                        let sink = &mut Bound {
                            state: &mut state,
                            visitor: visit,
                        };
                        while let Some(range) = ranges.get(next.fetch_add(1, Ordering::Relaxed)) {
                            self.scan_range(columns, group, texts, range.clone(), sink);
                        }
                        state
                    })
                })
                .collect();
            // A scan thread only panics on a bug; re-raise it in the caller.
            Ok(handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect())
        })
    }

    /// Key ranges holding about equal numbers of events of all sources together. (Cutting on
    /// one source alone splits a store written in time order badly: each segment holds the
    /// customers active in its stretch of time, whose keys cluster by when they first came.)
    fn key_ranges(&self, parts: usize) -> Vec<Range<u32>> {
        // Events of all sources with a key below `key`.
        let below = |key: u32| -> u64 {
            self.sources
                .iter()
                .map(|s| {
                    let i = s.scan.keys().partition_point(|&k| k < key);
                    s.scan.starts().get(i).map_or(0, |&e| e as u64)
                })
                .sum()
        };
        let total: u64 = self.sources.iter().map(|s| s.scan.events() as u64).sum();
        // Every event is below this key.
        let end = self
            .sources
            .iter()
            .filter_map(|s| s.scan.keys().last())
            .max();
        let end = end.map_or(0, |&k| k.saturating_add(1));
        let mut bounds = vec![0u32];
        for p in 1..parts {
            let target = total * p as u64 / parts as u64;
            // The smallest key with at least `target` events below it, searched from the
            // bound before: the searches are the scan's wait to start (a few dozen of them).
            let lo = match &self.sources[..] {
                // One source: the key after the last one whose events start below `target`.
                [s] => {
                    let i = s.scan.starts().partition_point(|&e| (e as u64) < target);
                    match i.checked_sub(1) {
                        None => 0,
                        Some(j) => s
                            .scan
                            .keys()
                            .get(j)
                            .map_or(u32::MAX, |k| k.saturating_add(1)),
                    }
                }
                _ => {
                    let (mut lo, mut hi) = (*bounds.last().unwrap_or(&0), end);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if below(mid) < target {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                    lo
                }
            };
            if lo > *bounds.last().unwrap_or(&0) && lo < u32::MAX {
                bounds.push(lo);
            }
        }
        bounds.push(u32::MAX);
        bounds.windows(2).map(|w| w[0]..w[1]).collect()
    }

    /// Whether `key` is the last of a group's `keys` that holds events (the one the group
    /// is visited at), searching each source from its scan cursor in `near`.
    fn last_with_events(
        views: &[View<'_>],
        keys: &[u32],
        key: u32,
        near: &[usize],
        known: Option<&HasEvents>,
    ) -> bool {
        // No key after `key` holds events.
        for &k in keys.iter().rev() {
            if k <= key {
                return true;
            }
            if Self::holds(views, k, near, known) {
                return false;
            }
        }
        true
    }

    /// Whether any source holds events of `key`: from `known` when it covers the key, else
    /// searching each source from its scan cursor in `near`.
    fn holds(views: &[View<'_>], key: u32, near: &[usize], known: Option<&HasEvents>) -> bool {
        if let Some(has) = known.and_then(|k| k.of(key)) {
            return has;
        }
        views
            .iter()
            .zip(near)
            .any(|(v, &at)| v.find_near(key, at).is_some())
    }

    /// Visits the group of `keys` (see [`Snapshot::scan_grouped`]) if `key` is the last of
    /// them with events, where the scan meets it; at its other keys, notes where their runs
    /// are (see [`Grouped::passed`]). The group's earlier keys, usually close behind, are read
    /// from those notes, or searched from each source's scan cursor when a note is gone.
    fn visit_group<'s>(
        &self,
        scan: &mut Scan<'s>,
        texts: &[Vec<&'s str>],
        keys: &[u32],
        key: u32,
        columns: Columns,
        sink: &mut dyn Sink,
    ) {
        let (grouped, near, views) = (&mut scan.grouped, &scan.cursors, &scan.views);
        if !Self::last_with_events(views, keys, key, near, grouped.has_events.as_ref()) {
            grouped.pass(key, &scan.holders, near, &scan.value_cursors);
            return;
        }
        grouped.find_spans(views, keys, key, &scan.holders, near, &scan.value_cursors);
        let merger = &mut grouped.merger;
        merger.read(views, texts, columns, &mut scan.value_cursors);
        sink.visit(merger.view(keys[0], columns));
    }

    /// The properties column of every Parquet source, when the scan asks for it.
    fn load_properties(&self, columns: Columns) -> Result<Vec<Vec<StringArray>>> {
        if !columns.properties {
            return Ok(Vec::new());
        }
        self.sources
            .iter()
            .map(|src| match &src.rows {
                Rows::Parquet(path) => parquet_io::read_text_column(path, "properties"),
                Rows::Memory(_) => Ok(Vec::new()),
            })
            .collect()
    }

    /// Visits the customers (and groups) whose keys are in `range`, in key order. The
    /// sources' cursors advance together; where one source alone holds the smallest key, the
    /// run of its keys below every other source's next key is read from it alone
    /// ([`Snapshot::scan_stretch`]), without looking at the other sources for each key.
    /// Segments written from the log hold the customers of a stretch of arrivals, so their key
    /// ranges mostly follow one another: long stretches. A compacted store is one stretch.
    fn scan_range<'s, 'g, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        columns: Columns,
        group: Option<&G>,
        texts: &[Vec<&'s str>],
        range: Range<u32>,
        sink: &mut dyn Sink,
    ) {
        let views: Vec<View<'_>> = self.sources.iter().map(|s| s.scan.view()).collect();
        let keys: Vec<&[u32]> = views.iter().map(|v| v.keys()).collect();
        let mut scan = Scan {
            cursors: keys
                .iter()
                .map(|k| k.partition_point(|&k| k < range.start))
                .collect(),
            value_cursors: vec![usize::MAX; self.sources.len()],
            views,
            merged: Merger::default(),
            single: Merged::default(),
            grouped: Grouped::default(),
            holders: Vec::with_capacity(self.sources.len()),
        };
        if group.is_some() {
            scan.grouped.has_events = HasEvents::new(&self.sources, range.clone());
        }
        loop {
            // The smallest key at the cursors, the sources holding it, and the smallest key
            // any other source holds next.
            let (mut min, mut next) = (u32::MAX, u32::MAX);
            scan.holders.clear();
            for (i, (keys, &c)) in keys.iter().zip(&scan.cursors).enumerate() {
                match keys.get(c) {
                    Some(&k) if k < min => {
                        next = min;
                        min = k;
                        scan.holders.clear();
                        scan.holders.push(i);
                    }
                    Some(&k) if k == min => scan.holders.push(i),
                    Some(&k) => next = next.min(k),
                    None => {}
                }
            }
            if min >= range.end {
                return;
            }
            if let [h] = scan.holders[..] {
                let end = next.min(range.end);
                self.scan_stretch(&mut scan, h, end, columns, group, texts, sink);
                continue;
            }
            if let Some(members) = group.and_then(|g| g(min)) {
                self.visit_group(&mut scan, texts, members, min, columns, sink);
            } else {
                let merged = &mut scan.merged;
                merged.spans.clear();
                merged.spans.extend(
                    scan.holders
                        .iter()
                        .map(|&h| Span::at_scan(h, scan.cursors[h])),
                );
                let cursors = &mut scan.value_cursors;
                merged.read(&scan.views, texts, columns, cursors);
                sink.visit(merged.view(min, columns));
            }
            for &i in &scan.holders {
                scan.cursors[i] += 1;
            }
        }
    }

    /// Visits the customers of source `h` from its cursor up to key `end`, knowing that no
    /// other source holds any of them (every other cursor is at `end` or later), without the
    /// per-key bookkeeping of merging sources, which cost as much as decoding a short customer.
    #[allow(clippy::too_many_arguments)]
    fn scan_stretch<'s, 'g, G: Fn(u32) -> Option<&'g [u32]> + Sync + ?Sized>(
        &self,
        scan: &mut Scan<'s>,
        h: usize,
        end: u32,
        columns: Columns,
        group: Option<&G>,
        texts: &[Vec<&'s str>],
        sink: &mut dyn Sink,
    ) {
        let (view, text) = (scan.views[h], texts.get(h));
        let keys = view.keys();
        let mut i = scan.cursors[h];
        while let Some(&key) = keys.get(i).filter(|&&k| k < end) {
            i += 1;
            let value_cursor = &mut scan.value_cursors[h];
            let Some(members) = group.and_then(|g| g(key)) else {
                if let Some(run) = scan
                    .single
                    .read_run(&view, i - 1, columns, value_cursor, sink)
                {
                    sink.visit(run.view(key, text));
                }
                continue;
            };
            // The usual group: its keys are this source's next customers (an anonymous id
            // and the id it signed in with get neighbouring keys), so before `end` and in no
            // other source, and their runs follow each other in time: its events are one
            // stretch of rows, read as one customer's, and its other keys are stepped over.
            let (n, at) = (members.len(), i - 1..i - 1 + members.len());
            let neighbours = members[0] == key && members[n - 1] < end;
            if neighbours && keys.get(at.clone()) == Some(members) {
                let read = match (scan.single).read_runs(&view, at, columns, value_cursor, sink) {
                    Read::Whole(run) => {
                        sink.visit(run.view(key, text));
                        true
                    }
                    Read::ByNames => true,
                    Read::Interleaved => false,
                };
                if read {
                    i += n - 1;
                    continue;
                }
            }
            // Visited where the scan meets the group's last key with events: skipped at the
            // others.
            scan.cursors[h] = i - 1;
            self.visit_group(scan, texts, members, key, columns, sink);
        }
        scan.cursors[h] = i;
    }

    /// One customer's events in order, with every field, from the Parquet segments and the log.
    pub fn timeline(&self, customer_id: &str) -> Result<Option<Vec<StoredEvent>>> {
        self.dict.check()?;
        let Some(key) = self.customer_key(customer_id) else {
            return Ok(None);
        };
        self.events_of_keys(&[key]).map(Some)
    }

    /// The events of the customers `keys` (a profile's), with every field, in (timestamp,
    /// seq) order. Each source is read once for all of them: a profile's keys are often
    /// neighbours in a segment, in the same Parquet pages, which a read per key decoded again.
    pub fn events_of_keys(&self, keys: &[u32]) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::new();
        let mut ranges = Vec::with_capacity(keys.len());
        for src in &self.sources {
            ranges.clear();
            ranges.extend(
                keys.iter()
                    .filter_map(|&key| src.scan.find(key))
                    .map(|i| src.scan.rows(i)),
            );
            if ranges.is_empty() {
                continue;
            }
            ranges.sort_by_key(|r| r.start);
            ranges.dedup();
            match &src.rows {
                Rows::Parquet(path) => events.extend(parquet_io::read(path, Some(&ranges))?),
                Rows::Memory(all) => {
                    for r in &ranges {
                        events.extend_from_slice(&all[r.clone()]);
                    }
                }
            }
        }
        events.sort_by_key(|e| (e.event.timestamp, e.seq));
        Ok(events)
    }

    /// Visits every event with all its fields, source by source (segments in log order, then
    /// the log tail); not in customer order. For passes that need fields the scan files do not
    /// hold, such as identity resolution reading `traits` and `context`. Memory stays bounded:
    /// Parquet segments are read a batch at a time.
    pub fn for_each_event(&self, visit: impl FnMut(&StoredEvent)) -> Result<()> {
        self.for_each_event_skipping(&[], visit)
    }

    /// [`Snapshot::for_each_event`] without reading the columns `skip` names from segments
    /// (e.g. `properties`, often most of a segment's bytes): those fields come out empty.
    /// Events still in the log tail are whole.
    pub fn for_each_event_skipping(
        &self,
        skip: &[&str],
        mut visit: impl FnMut(&StoredEvent),
    ) -> Result<()> {
        for src in &self.sources {
            match &src.rows {
                Rows::Parquet(path) => {
                    parquet_io::read_each_skipping(path, skip, &mut |e| visit(&e))?
                }
                Rows::Memory(all) => all.iter().for_each(&mut visit),
            }
        }
        Ok(())
    }

    /// Visits every event whose sequence number is `from` or more, source by source,
    /// skipping segments that hold none (a segment knows its sequence range): how a follower
    /// of the log, such as the journey runner, reads what is new. Not in sequence order.
    pub fn for_each_event_from(
        &self,
        from: u64,
        mut visit: impl FnMut(&StoredEvent),
    ) -> Result<()> {
        for (i, src) in self.sources.iter().enumerate() {
            // Sources are the manifest's segments in order, then the log tail.
            if self
                .manifest
                .segments
                .get(i)
                .is_some_and(|s| s.max_seq < from)
            {
                continue;
            }
            let mut keep = |e: &StoredEvent| {
                if e.seq >= from {
                    visit(e);
                }
            };
            match &src.rows {
                Rows::Parquet(path) => parquet_io::read_each(path, &mut |e| keep(&e))?,
                Rows::Memory(all) => all.iter().for_each(&mut keep),
            }
        }
        Ok(())
    }

    /// The sequence number the next stored event will get.
    pub fn next_seq(&self) -> u64 {
        let tail = match self.sources.last().map(|s| &s.rows) {
            Some(Rows::Memory(rows)) => rows.len() as u64,
            _ => 0,
        };
        self.manifest.next_seq + tail
    }

    pub fn stats(&self) -> Stats {
        let mut name_counts = vec![0u64; self.event_names.len()];
        let mut channel_counts = vec![0u64; self.channels.len()];
        let mut seen = vec![false; self.key_count()];
        let (mut first, mut last) = (None::<Micros>, None::<Micros>);
        for src in &self.sources {
            src.scan.names().count_into(&mut name_counts);
            src.scan.channels().count_into(&mut channel_counts);
            for &k in src.scan.keys() {
                seen[k as usize] = true;
            }
            if let Some((a, b)) = src.scan.time_range() {
                first = Some(first.map_or(a, |f| f.min(a)));
                last = Some(last.map_or(b, |l| l.max(b)));
            }
        }
        let named = |names: &[String], counts: Vec<u64>| {
            let mut v: Vec<(String, u64)> = names
                .iter()
                .cloned()
                .zip(counts)
                .filter(|(_, c)| *c > 0)
                .collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v
        };
        let log_events = self
            .sources
            .iter()
            .filter(|s| matches!(s.rows, Rows::Memory(_)))
            .map(|s| s.scan.events() as u64)
            .sum();
        Stats {
            customers: seen.iter().filter(|&&s| s).count() as u64,
            events: self.events(),
            first_event: first,
            last_event: last,
            event_names: named(&self.event_names, name_counts),
            channels: named(&self.channels, channel_counts),
            segments: self.manifest.segments.len() as u64,
            log_events,
            disk_bytes: crate::fsutil::disk_bytes(&self.dir),
        }
    }
}

fn intern(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            list.push(name.to_string());
            list.len() - 1
        }
    }
}

/// Each source's properties as one `&str` per row (empty when absent), or nothing when the
/// scan does not ask for them.
fn property_texts<'a>(
    sources: &'a [Source],
    arrays: &'a [Vec<StringArray>],
    columns: Columns,
) -> Vec<Vec<&'a str>> {
    if !columns.properties {
        return Vec::new();
    }
    sources
        .iter()
        .zip(arrays)
        .map(|(src, arrays)| match &src.rows {
            Rows::Parquet(_) => arrays
                .iter()
                .flat_map(|a| {
                    (0..a.len()).map(move |i| if a.is_valid(i) { a.value(i) } else { "" })
                })
                .collect(),
            Rows::Memory(rows) => rows
                .iter()
                .map(|r| r.event.properties.as_deref().unwrap_or(""))
                .collect(),
        })
        .collect()
}

/// Scratch space for one customer's (or group's) events, column by column.
#[derive(Default)]
struct Merged<'s> {
    times: Vec<i64>,
    names: Vec<u16>,
    channels: Vec<u16>,
    values: Vec<f64>,
    properties: Vec<&'s str>,
}

impl<'s> Merged<'s> {
    /// Customer `i` of one source `view`, the columns asked for, for [`Run::view`], unless
    /// `sink` takes it by its names (`None`); `value_cursor` as in
    /// [`View::values_into_from`].
    fn read_run(
        &mut self,
        view: &View<'_>,
        i: usize,
        columns: Columns,
        value_cursor: &mut usize,
        sink: &mut dyn Sink,
    ) -> Option<Run<'_, 's>> {
        let rows = view.rows(i);
        self.clear();
        if self.taken_by_names(view, i..i + 1, rows.clone(), columns, sink) {
            return None;
        }
        if columns.times {
            view.times().customer_into(i, &mut self.times);
        }
        let rest = Columns {
            names: false,
            ..columns
        };
        self.read_rows(view, rows.clone(), rest, value_cursor);
        Some(Run { read: self, rows })
    }

    /// Offers the names of `rows`, those of the customers at `at`, when the scan reads names,
    /// to `sink`, as the file holds them: whether it took the customer by them. Read into
    /// `names` when it did not. (Half a funnel's customers are taken, and widening their
    /// names first was a tenth of its time.)
    fn taken_by_names(
        &mut self,
        view: &View<'_>,
        at: Range<usize>,
        rows: Range<usize>,
        columns: Columns,
        sink: &mut dyn Sink,
    ) -> bool {
        if !columns.names {
            return false;
        }
        let names = view.names();
        let offered = Names {
            ids: names.slice(rows.clone()),
            set: view.name_set(at),
        };
        if sink.by_names(offered) {
            return true;
        }
        names.extend_into(rows, &mut self.names);
        false
    }

    /// Appends rows `rows` of `view`: every column `columns` asks for but times (read per
    /// customer). `value_cursor` as in [`View::values_into_from`]: runs come in key order
    /// per source, near each other, so the cursor of the run read before is close, where a
    /// fresh search per run cost as much as the values' copy.
    fn read_rows(
        &mut self,
        view: &View<'_>,
        rows: Range<usize>,
        columns: Columns,
        value_cursor: &mut usize,
    ) {
        if columns.names {
            view.names().extend_into(rows.clone(), &mut self.names);
        }
        if columns.channels {
            view.channels()
                .extend_into(rows.clone(), &mut self.channels);
        }
        if columns.values {
            view.values_into_from(rows, value_cursor, &mut self.values);
        }
    }

    /// Customers `at` of one source `view` (neighbours) as one customer, like
    /// [`Merged::read_run`], when their runs follow each other in time (each starts no
    /// earlier than the one before ends: then their rows in order are the group's events in
    /// order, ties in key order); [`Read::Interleaved`] when they do not. Their names are
    /// offered to `sink` first (whatever their order). Times are read otherwise (to check),
    /// and handed out only when `columns` asks for them.
    fn read_runs(
        &mut self,
        view: &View<'_>,
        at: Range<usize>,
        columns: Columns,
        value_cursor: &mut usize,
        sink: &mut dyn Sink,
    ) -> Read<'_, 's> {
        self.clear();
        let rows = view.rows(at.start).start..view.rows(at.end - 1).end;
        if self.taken_by_names(view, at.clone(), rows.clone(), columns, sink) {
            return Read::ByNames;
        }
        let mut sorted = true;
        for i in at.clone() {
            let seam = self.times.len();
            view.times().customer_into(i, &mut self.times);
            if let (Some(end), Some(start)) = (seam.checked_sub(1), self.times.get(seam)) {
                sorted &= self.times[end] <= *start;
            }
        }
        if !sorted {
            return Read::Interleaved;
        }
        if !columns.times {
            self.times.clear();
        }
        let rest = Columns {
            names: false,
            ..columns
        };
        self.read_rows(view, rows.clone(), rest, value_cursor);
        Read::Whole(Run { read: self, rows })
    }

    fn clear(&mut self) {
        self.times.clear();
        self.names.clear();
        self.channels.clear();
        self.values.clear();
        self.properties.clear();
    }

    fn view(&self, key: u32) -> Customer<'_> {
        Customer {
            key,
            times: &self.times,
            names: &self.names,
            channels: &self.channels,
            values: &self.values,
            properties: &self.properties,
        }
    }
}

/// What [`Merged::read_runs`] made of a group's runs.
enum Read<'m, 's> {
    Whole(Run<'m, 's>),
    /// The scan's visitor took the group by its names.
    ByNames,
    /// The runs interleave in time: they need a merge.
    Interleaved,
}

/// One customer's run read by [`Merged::read_run`].
struct Run<'m, 's> {
    read: &'m Merged<'s>,
    rows: Range<usize>,
}

impl<'m, 's> Run<'m, 's> {
    /// The run as a customer, its properties a slice of its source's `texts` (no copy).
    fn view(&self, key: u32, texts: Option<&'m Vec<&'s str>>) -> Customer<'m> {
        let mut customer = self.read.view(key);
        if let Some(t) = texts {
            customer.properties = &t[self.rows.clone()];
        }
        customer
    }
}

/// Where a scan is, and its scratch space (see [`Snapshot::scan_range`]).
struct Scan<'s> {
    /// Per source: the index of its first key not visited yet.
    cursors: Vec<usize>,
    /// Per source: where the values of its next customer start (see `values_into_from`).
    value_cursors: Vec<usize>,
    /// Each source's columns (looked up once per scan, not per key).
    views: Vec<View<'s>>,
    /// A customer spread over several sources, merged.
    merged: Merger<'s>,
    /// A customer, or a group of neighbouring keys, read from one source.
    single: Merged<'s>,
    grouped: Grouped<'s>,
    /// The sources holding the key at hand.
    holders: Vec<usize>,
}

/// Scratch space for a customer whose events several runs hold — one key's runs in several
/// sources, or the runs of a group's keys — read as one customer, merged by time.
#[derive(Default)]
struct Merger<'s> {
    /// The runs to read, in the order equal times keep.
    spans: Vec<Span>,
    /// The events, merged.
    out: Merged<'s>,
    /// The runs back to back, when they interleave in time and need a merge.
    runs: Merged<'s>,
    order: Vec<u32>,
}

/// One run of a customer to read: source `h`'s customer at index `i`.
#[derive(Clone, Copy)]
struct Span {
    h: usize,
    i: usize,
    /// Where to look for the run's values from: `None` for a run at the scan's position,
    /// read with the scan's values cursor (which it then advances); for a run behind the scan
    /// (a group's earlier key), searched for from here without moving the scan's cursor, so
    /// that the scan's next customer needs no search back.
    values_from: Option<usize>,
}

impl Span {
    fn at_scan(h: usize, i: usize) -> Span {
        Span {
            h,
            i,
            values_from: None,
        }
    }
}

impl<'s> Merger<'s> {
    /// Reads the runs of `spans` into `out`, merged by time, ties in the order of `spans`.
    /// Times are always read (the merge needs them). `value_cursors` are the scan's (see
    /// [`Scan::value_cursors`]): the runs are at or a little behind its cursors, where a
    /// cursor of the merger's own, left at the last run it read from that source, was often
    /// far behind.
    fn read(
        &mut self,
        views: &[View<'_>],
        texts: &[Vec<&'s str>],
        c: Columns,
        value_cursors: &mut [usize],
    ) {
        // Runs usually follow one another in time (a key's runs in segments written one
        // after the other; browsing anonymously, then signed in), so they are read straight
        // into `runs`, checked at the seams, and reordered only when times go back.
        let runs = &mut self.runs;
        runs.clear();
        let mut sorted = true;
        for &Span { h, i, values_from } in &self.spans {
            let view = &views[h];
            let rows = view.rows(i);
            let seam = runs.times.len();
            view.times().customer_into(i, &mut runs.times);
            if let (Some(end), Some(start)) = (seam.checked_sub(1), runs.times.get(seam)) {
                sorted &= runs.times[end] <= *start;
            }
            let mut behind;
            let cursor = match values_from {
                None => &mut value_cursors[h],
                Some(from) => {
                    behind = from;
                    &mut behind
                }
            };
            runs.read_rows(view, rows.clone(), c, cursor);
            if let Some(t) = texts.get(h) {
                runs.properties.extend_from_slice(&t[rows]);
            }
        }
        if sorted {
            std::mem::swap(&mut self.out, &mut self.runs);
            return;
        }
        // Stable: equal times keep the order of the spans.
        let order = &mut self.order;
        order.clear();
        order.extend(0..runs.times.len() as u32);
        order.sort_by_key(|&i| runs.times[i as usize]);
        let out = &mut self.out;
        out.clear();
        pick(order, &runs.times, &mut out.times);
        pick(order, &runs.names, &mut out.names);
        pick(order, &runs.channels, &mut out.channels);
        pick(order, &runs.values, &mut out.values);
        pick(order, &runs.properties, &mut out.properties);
    }

    /// The merged customer, without times when `c` does not ask for them.
    fn view(&self, key: u32, c: Columns) -> Customer<'_> {
        let mut customer = self.out.view(key);
        if !c.times {
            customer.times = &[];
        }
        customer
    }
}

/// Scratch space for a group of keys scanned as one customer (see [`Snapshot::scan_grouped`]).
#[derive(Default)]
struct Grouped<'s> {
    merger: Merger<'s>,
    /// Which keys of the scanned range hold events, in a store of several sources.
    has_events: Option<HasEvents>,
    /// Where the runs of the group keys the scan passed (to visit their group at a later key)
    /// are, by key modulo its length: a group's keys are usually a few dozen keys apart, so
    /// its earlier keys are found here rather than searched for in every source again.
    passed: Vec<Passed>,
}

/// Slots of [`Grouped::passed`].
const PASSED_SLOTS: usize = 1024;

/// The runs of one passed key: up to two, as (source, customer index).
#[derive(Clone, Copy)]
struct Passed {
    key: u32,
    n: u8,
    sources: [u8; 2],
    at: [u32; 2],
    /// The scan's values cursor in each source as it passed the key: where the run's values
    /// start, or a little before (see [`Span::values_from`]).
    values_from: [u32; 2],
}

impl Passed {
    const EMPTY: Passed = Passed {
        key: u32::MAX,
        n: 0,
        sources: [0; 2],
        at: [0; 2],
        values_from: [0; 2],
    };
}

/// For a grouped scan of several sources: a bit per key of the range scanned, set when a
/// source holds events of it. Whether a later key of a group has events (is this the key to
/// visit the group at?) otherwise asked every source ahead of the scan, which in a store whose
/// segments overlap in key range (a server's, fed every customer's events interleaved) cost a
/// search in each. One bit, not one per source: the bits of 1 M keys fit in a core's cache (a
/// 16-bit mask per key took 2 MB to write and as much to miss in). Built with one pass over
/// each source's keys in the range.
struct HasEvents {
    /// The first key covered.
    from: u32,
    /// Bit `i % 64` of word `i / 64`: key `from + i`.
    bits: Vec<u64>,
    /// Number of keys covered.
    len: u32,
}

impl HasEvents {
    /// `None` for one source: its keys are searched as fast.
    fn new(sources: &[Source], range: Range<u32>) -> Option<HasEvents> {
        if sources.len() < 2 {
            return None;
        }
        let top = sources
            .iter()
            .filter_map(|s| s.scan.keys().last())
            .max()?
            .saturating_add(1)
            .min(range.end);
        let len = top.checked_sub(range.start)?;
        let mut bits = vec![0u64; (len as usize).div_ceil(64)];
        for src in sources {
            let keys = src.scan.keys();
            let from = keys.partition_point(|&k| k < range.start);
            for &k in keys[from..].iter().take_while(|&&k| k < top) {
                // (Keys ascend in a sound file; a damaged one must not panic.)
                let at = k
                    .checked_sub(range.start)
                    .map_or(usize::MAX, |i| i as usize);
                if let Some(w) = bits.get_mut(at / 64) {
                    *w |= 1 << (at % 64);
                }
            }
        }
        Some(HasEvents {
            from: range.start,
            bits,
            len,
        })
    }

    /// Whether a source holds events of `key`, when the key is in the range covered (a
    /// group's keys can lie beyond it).
    fn of(&self, key: u32) -> Option<bool> {
        let i = key.checked_sub(self.from).filter(|&i| i < self.len)? as usize;
        Some(self.bits.get(i / 64)? >> (i % 64) & 1 == 1)
    }
}

impl Grouped<'_> {
    /// Notes where `key`'s runs are (the `holders`' runs at `near`), as the scan passes it.
    /// `values` are the scan's values cursors.
    fn pass(&mut self, key: u32, holders: &[usize], near: &[usize], values: &[usize]) {
        if self.passed.is_empty() {
            self.passed = vec![Passed::EMPTY; PASSED_SLOTS];
        }
        // A cursor past u32 (still `usize::MAX`: nothing read from that source yet) is only
        // a worse place to search from.
        let value = |h: usize| u32::try_from(values[h]).unwrap_or(u32::MAX);
        let entry = match *holders {
            [h] => Passed {
                key,
                n: 1,
                sources: [h as u8, 0],
                at: [near[h] as u32, 0],
                values_from: [value(h), 0],
            },
            [h, g] => Passed {
                key,
                n: 2,
                sources: [h as u8, g as u8],
                at: [near[h] as u32, near[g] as u32],
                values_from: [value(h), value(g)],
            },
            // More runs than a note holds: searched for again at the group's visit.
            _ => Passed::EMPTY,
        };
        self.passed[key as usize % PASSED_SLOTS] = entry;
    }

    /// The runs of the group of `keys` (ascending) as `merger.spans`, key by key, sources in
    /// store order (so equal times keep key order, then the store's order). `key`, the last
    /// with events, is where the scan is: its runs are the `holders`' runs at `near`. The keys
    /// before it are searched in each source from its position in `near` (see `visit_group`).
    fn find_spans(
        &mut self,
        views: &[View<'_>],
        keys: &[u32],
        key: u32,
        holders: &[usize],
        near: &[usize],
        values: &[usize],
    ) {
        let spans = &mut self.merger.spans;
        spans.clear();
        for &earlier in keys.iter().take_while(|&&k| k < key) {
            if let Some(p) = self
                .passed
                .get(earlier as usize % PASSED_SLOTS)
                .filter(|p| p.key == earlier)
            {
                for r in 0..usize::from(p.n) {
                    spans.push(Span {
                        h: usize::from(p.sources[r]),
                        i: p.at[r] as usize,
                        values_from: Some(p.values_from[r] as usize),
                    });
                }
                continue;
            }
            if self.has_events.as_ref().and_then(|k| k.of(earlier)) == Some(false) {
                continue;
            }
            for (h, (view, &at)) in views.iter().zip(near).enumerate() {
                if let Some(i) = view.find_near(earlier, at) {
                    // Behind the scan's values cursor in that source: searched back from it.
                    spans.push(Span {
                        h,
                        i,
                        values_from: Some(values[h]),
                    });
                }
            }
        }
        for &h in holders {
            spans.push(Span::at_scan(h, near[h]));
        }
    }
}

/// `dst` = `src` permuted by `order`; stays empty for a column not read.
fn pick<T: Copy>(order: &[u32], src: &[T], dst: &mut Vec<T>) {
    dst.clear();
    if !src.is_empty() {
        dst.extend(order.iter().map(|&i| src[i as usize]));
    }
}

#[cfg(test)]
mod tests {
    use cairn_model::Event;

    use super::*;
    use crate::{Options, Store};

    fn event(customer: &str, name: &str, t: i64, id: &str) -> Event {
        Event {
            message_id: id.to_string(),
            event: name.to_string(),
            user_id: Some(customer.to_string()),
            timestamp: t,
            channel: "web".to_string(),
            value: Some(t as f64),
            properties: Some(format!(r#"{{"n":"{id}"}}"#)),
            ..Event::default()
        }
    }

    type Row = (i64, u16, u16, String, String);

    /// Every customer's events as owned rows, by key.
    fn by_key(snap: &Snapshot) -> Vec<(u32, Vec<Row>)> {
        let mut out = Vec::new();
        snap.scan(Columns::ALL, |c| out.push((c.key, rows(&c))))
            .unwrap();
        out
    }

    fn rows(c: &Customer<'_>) -> Vec<Row> {
        (0..c.len())
            .map(|i| {
                let t = c.times.get(i).copied().unwrap_or(-1);
                let v = c.values.get(i).map_or(String::new(), |v| v.to_string());
                (t, c.names[i], c.channels[i], v, c.properties[i].to_string())
            })
            .collect()
    }

    /// Groups read where the scan meets their last key with events, from every source,
    /// merged by time with ties in key order, on one thread and on several, equal what the
    /// plain scan gives per key, merged the same way.
    #[test]
    fn grouped_scans_merge_each_groups_keys_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let ids = ["gone", "a", "b", "c", "d", "e"];
        let mut n = 0;
        let mut batch = |from: i64| {
            let mut events = Vec::new();
            for (k, id) in ids.iter().enumerate() {
                for j in 0..3 {
                    n += 1;
                    // Interleaved times, some equal across keys.
                    let t = from + (j * 10 + (k as i64 % 3) * 4) * 1_000_000;
                    events.push(event(id, ["x", "y", "z"][j as usize], t, &format!("m{n}")));
                }
            }
            events
        };
        for from in [0, 5_000_000] {
            let mut txn = store.import().unwrap();
            txn.add(batch(from)).unwrap();
            txn.commit().unwrap();
        }
        store.append(batch(2_000_000)).unwrap();
        // Key 0 keeps its key but loses its events.
        store.forget(&["gone".to_string()]).unwrap();
        let snap = Snapshot::load(dir.path()).unwrap();
        assert!(snap.sources.len() >= 2, "segments and the log tail");
        // Keys 0 (no events), 2 and 4; keys 1 and 5; key 3 alone.
        check_grouped(&snap, &[vec![0, 2, 4], vec![1, 5]]);
    }

    /// A sample is about one customer in `every`, from runs of keys spread over the whole key
    /// space, each customer as the plain scan gives it and each thread's in key order;
    /// `every` = 1 is all.
    #[test]
    fn samples_spread_over_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let customers = 4 * SAMPLE_SLICES as usize * 8;
        let events: Vec<Event> = (0..customers)
            .flat_map(|c| {
                let id = format!("c{c}");
                (0..2).map(move |j| event(&id, "x", j * 1000, &format!("m{c}-{j}")))
            })
            .collect();
        let mut txn = store.import().unwrap();
        txn.add(events).unwrap();
        txn.commit().unwrap();
        let snap = Snapshot::load(dir.path()).unwrap();
        let plain = by_key(&snap);
        let sample = |every: u32, threads: usize| {
            let parts = snap
                .scan_sample_parallel(
                    Columns::ALL,
                    every,
                    threads,
                    Vec::new,
                    |v: &mut Vec<_>, c: Customer<'_>| v.push((c.key, rows(&c))),
                )
                .unwrap();
            assert!(
                parts.iter().all(|p| p.is_sorted_by(|a, b| a.0 < b.0)),
                "key order"
            );
            let mut all = parts.concat();
            all.sort_by_key(|c| c.0);
            all
        };
        assert_eq!(sample(1, 1), plain);
        assert_eq!(sample(1, 3), plain);
        // Grouped: key 1 scanned with key 0, visited at key 1.
        let group = |k: u32| (k < 2).then_some(&[0u32, 1][..]);
        let mut grouped = (snap.scan_sample_parallel_grouped(
            Columns::ALL,
            1,
            &group,
            2,
            Vec::new,
            |v: &mut Vec<u32>, c: Customer<'_>| v.push(c.key),
        ))
        .unwrap()
        .concat();
        grouped.sort_unstable();
        assert_eq!(grouped.len(), customers - 1);
        assert_eq!(grouped[0], 0);
        let got = sample(8, 2);
        assert_eq!(got, sample(8, 1));
        assert_eq!(got.len(), customers / 8);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "no customer twice");
        assert!(got.iter().all(|g| plain.contains(g)));
        // Both ends of the key space are in it.
        assert!(got[0].0 == 0 && got.last().unwrap().0 as usize >= customers * 7 / 8);
    }

    /// Takes the customers whose name ids add up to an odd number by their names (sorted),
    /// and keeps the others whole.
    struct OddByNames;

    type Taken = (Vec<Vec<u16>>, Vec<(u32, Vec<Row>)>);

    impl Visit<Taken> for OddByNames {
        fn by_names(&self, state: &mut Taken, names: Names<'_>) -> bool {
            let set = names.set;
            let mut names = match names.ids {
                Ids::Narrow(ids) => ids.iter().map(|&n| u16::from(n)).collect(),
                Ids::Wide(ids) => ids.to_vec(),
            };
            // Every file this version writes keeps name sets, and a run's set is its names'.
            assert_eq!(set, Some(NameSet::of(&names)));
            if names.iter().map(|&n| usize::from(n)).sum::<usize>() % 2 == 0 {
                return false;
            }
            names.sort_unstable();
            state.0.push(names);
            true
        }
        fn visit(&self, state: &mut Taken, c: Customer<'_>) {
            state.1.push((c.key, rows(&c)));
        }
    }

    /// Checks the states of a scan with [`OddByNames`] against `want` (key order), the
    /// customers it should see: each was either visited whole or taken by its names, and
    /// not both. Returns how many were taken.
    fn check_taken(parts: Vec<Taken>, want: &[(u32, Vec<Row>)]) -> usize {
        let (mut taken, mut visited): (Vec<Vec<u16>>, Vec<_>) = (Vec::new(), Vec::new());
        for (t, v) in parts {
            taken.extend(t);
            visited.extend(v);
        }
        visited.sort_by_key(|g: &(u32, Vec<Row>)| g.0);
        assert!(visited.iter().all(|v| want.contains(v)));
        let not_visited = want.iter().filter(|w| !visited.iter().any(|v| v.0 == w.0));
        let mut want_taken: Vec<Vec<u16>> = not_visited
            .map(|(_, rows)| {
                let mut names: Vec<u16> = rows.iter().map(|r| r.1).collect();
                names.sort_unstable();
                names
            })
            .collect();
        want_taken.sort();
        taken.sort();
        assert_eq!(taken, want_taken);
        taken.len()
    }

    /// Checks grouped scans of `snap` with `groups` against its plain scan: each group is
    /// visited where the scan meets its last key with events, with its keys' events merged
    /// by time, ties in key order; on one thread and on several; without times asked for.
    /// Returns how many customers a scan on one thread took by their names, with the groups
    /// and without.
    fn check_grouped(snap: &Snapshot, groups: &[Vec<u32>]) -> (usize, usize) {
        let group = |k: u32| groups.iter().find(|g| g.contains(&k)).map(Vec::as_slice);
        let plain = by_key(snap);
        let mut want: Vec<(u32, Vec<Row>)> = Vec::new();
        for (key, rows) in &plain {
            match group(*key) {
                None => want.push((*key, rows.clone())),
                Some(g)
                    if g.iter().rev().find(|&&k| plain.iter().any(|p| p.0 == k)) == Some(key) =>
                {
                    let mut all: Vec<Row> = g
                        .iter()
                        .flat_map(|k| plain.iter().filter(move |p| p.0 == *k))
                        .flat_map(|p| p.1.clone())
                        .collect();
                    all.sort_by_key(|r| r.0);
                    want.push((g[0], all));
                }
                Some(_) => {}
            }
        }
        let mut got = Vec::new();
        snap.scan_grouped(Columns::ALL, &group, |c| got.push((c.key, rows(&c))))
            .unwrap();
        assert_eq!(got, want);
        let mut want_sorted = want.clone();
        want_sorted.sort_by_key(|g| g.0);
        for threads in [2, 3, 5] {
            let parts = snap
                .scan_parallel_grouped(
                    Columns::ALL,
                    &group,
                    threads,
                    Vec::new,
                    |v: &mut Vec<_>, c: Customer<'_>| v.push((c.key, rows(&c))),
                )
                .unwrap();
            let mut got: Vec<_> = parts.into_iter().flatten().collect();
            got.sort_by_key(|g| g.0);
            assert_eq!(got, want_sorted);
        }
        // A visitor taking some customers by their names: those are not visited, and the
        // others are visited whole; with groups and without.
        let mut taken_on_one_thread = (0, 0);
        for threads in [1, 2, 3] {
            let parts = snap
                .scan_parallel_grouped(Columns::ALL, &group, threads, Default::default, OddByNames)
                .unwrap();
            let taken = check_taken(parts, &want_sorted);
            let parts =
                (snap.scan_parallel(Columns::ALL, threads, Default::default, OddByNames)).unwrap();
            let alone = check_taken(parts, &plain);
            if threads == 1 {
                taken_on_one_thread = (taken, alone);
            }
        }
        // Without times asked for, groups still merge by them but hand none out.
        let mut names = Vec::new();
        let cols = Columns {
            names: true,
            values: true,
            ..Columns::default()
        };
        snap.scan_grouped(cols, &group, |c| {
            assert!(c.times.is_empty());
            let values: Vec<String> = c.values.iter().map(f64::to_string).collect();
            names.push((c.key, c.names.to_vec(), values));
        })
        .unwrap();
        let want_names: Vec<_> = want
            .iter()
            .map(|(k, r)| {
                let names = r.iter().map(|r| r.1).collect::<Vec<_>>();
                (*k, names, r.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
            })
            .collect();
        assert_eq!(names, want_names);
        taken_on_one_thread
    }

    /// Segments holding neighbouring key ranges, as the log's flushes write them (read a
    /// stretch at a time), overlapping at their edges, and a log tail: groups within one
    /// stretch, across the edge of a stretch, over several sources, and with a key that holds
    /// no events are read as the plain scan gives them.
    #[test]
    fn grouped_scans_of_segments_with_neighbouring_key_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let id = |k: u32| format!("c{k:02}");
        let mut n = 0;
        let mut events = |keys: std::ops::Range<u32>, from: i64| {
            let mut events = Vec::new();
            for k in keys {
                for j in 0..3 {
                    n += 1;
                    // Interleaved times across neighbours, some equal; runs one after
                    // another for keys 3..6 and 8..10 (in the first segment).
                    let t = match k {
                        3..6 | 8..10 => from + (k as i64 * 100 + j * 10) * 1_000_000,
                        _ => from + (j * 10 + (k as i64 % 3) * 4) * 1_000_000,
                    };
                    events.push(event(
                        &id(k),
                        ["x", "y", "z"][j as usize],
                        t,
                        &format!("m{n}"),
                    ));
                }
            }
            events
        };
        // Keys are given in order of first arrival: c00..c09, then c10..c14, then c15..c19.
        for (keys, from) in [(0..10, 0), (7..15, 3_000_000)] {
            let mut txn = store.import().unwrap();
            txn.add(events(keys, from)).unwrap();
            txn.commit().unwrap();
        }
        store.append(events(13..20, 1_000_000)).unwrap();
        let snap = Snapshot::load(dir.path()).unwrap();
        assert_eq!(snap.sources.len(), 3, "two segments and the log tail");
        let key = |k: u32| snap.customer_key(&id(k)).unwrap();
        assert!((0..20).all(|k| key(k) == k));
        let groups: Vec<Vec<u32>> = vec![
            // Neighbours inside the first segment's stretch.
            vec![1, 2],
            vec![3, 4, 5],
            // Across the stretch's end: 6 in the first segment only, 7 in both.
            vec![6, 7],
            // In both segments, and in different ones.
            vec![8, 9],
            vec![0, 11],
            // Over the second segment and the log tail; with a key that has no events.
            vec![10, 14, 19],
            vec![13, 16],
            vec![17, 1000],
        ];
        check_grouped(&snap, &groups);
    }

    /// In one segment (a compacted store), a group whose keys are neighbours is read as one
    /// stretch of rows when its runs follow each other in time (ties included), and merged
    /// when they interleave; groups of keys apart, and keys alone, as before.
    #[test]
    fn grouped_scans_of_one_segment_read_neighbouring_keys_as_one_stretch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        // (customer, times in seconds); customers get keys in this order.
        let runs: [(&str, &[i64]); 12] = [
            ("gone", &[9]),
            ("alone", &[5, 6]),
            ("anon-1", &[0, 10, 20]),
            ("user-1", &[30, 40, 50]),
            ("anon-2", &[0, 20, 40]),
            ("user-2", &[10, 30, 50]),
            ("anon-3", &[0, 10, 20]),
            ("user-3", &[20, 30]),
            ("a-4", &[1]),
            ("b-4", &[2, 3]),
            ("c-4", &[4]),
            ("apart", &[7, 8]),
        ];
        let mut events = Vec::new();
        for (c, times) in runs {
            for &t in times {
                let id = format!("{c}-{t}");
                events.push(event(
                    c,
                    ["x", "y", "z"][t as usize % 3],
                    t * 1_000_000,
                    &id,
                ));
            }
        }
        let mut txn = store.import().unwrap();
        txn.add(events).unwrap();
        txn.commit().unwrap();
        let gone = store.snapshot().unwrap().customer_key("gone").unwrap();
        // Keeps its key, loses its events.
        store.forget(&["gone".to_string()]).unwrap();
        let snap = Snapshot::load(dir.path()).unwrap();
        assert_eq!(snap.sources.len(), 1, "one segment");
        let key = |c: &str| snap.customer_key(c).unwrap();
        let groups: Vec<Vec<u32>> = vec![
            vec![key("anon-1"), key("user-1")],
            vec![key("anon-2"), key("user-2")],
            vec![key("anon-3"), key("user-3")],
            vec![key("a-4"), key("b-4"), key("c-4")],
            // A group's first key without events, and one whose later key has none.
            vec![gone, key("alone")],
            vec![key("apart"), key("apart") + 1],
        ];
        for g in &groups[..4] {
            assert!(g.windows(2).all(|w| w[1] == w[0] + 1), "neighbours: {g:?}");
        }
        let (grouped, alone) = check_grouped(&snap, &groups);
        assert!(
            grouped > 0 && alone > 0,
            "names are offered in both kinds of scan"
        );
    }

    /// A group's earlier keys are found where the scan passed them, and searched for again
    /// when that note is gone: overwritten by a later key in the same slot, or not kept for a
    /// key with more runs than a note holds.
    #[test]
    fn grouped_scans_find_earlier_keys_noted_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let id = |k: u32| format!("c{k:04}");
        let mut n = 0;
        let mut events = |keys: &[u32], from: i64| {
            let mut out = Vec::new();
            for &k in keys {
                n += 1;
                let t = from + (k as i64 % 7) * 1_000_000;
                out.push(event(&id(k), "x", t, &format!("m{n}")));
            }
            out
        };
        let all: Vec<u32> = (0..2100).collect();
        let first = events(&all, 0);
        let second = events(&[0, 3, 5, 7, 1029], 500_000);
        for batch in [first, second] {
            let mut txn = store.import().unwrap();
            txn.add(batch).unwrap();
            txn.commit().unwrap();
        }
        store.append(events(&[3, 5], 250_000)).unwrap();
        let snap = Snapshot::load(dir.path()).unwrap();
        assert_eq!(snap.sources.len(), 3, "two segments and the log tail");
        assert!((0..2100).all(|k| snap.customer_key(&id(k)) == Some(k)));
        let slots = PASSED_SLOTS as u32;
        let groups: Vec<Vec<u32>> = vec![
            // Key 3 in all three sources: more runs than a note holds.
            vec![3, 1500],
            // 5 and 5 + PASSED_SLOTS share a slot; the later note replaces the earlier.
            vec![5, 2000],
            vec![5 + slots, 1600],
            // Far apart, noted, and in one source or two.
            vec![9, 2050],
            vec![7, 8, 1700],
            vec![0, 12, 2099],
        ];
        check_grouped(&snap, &groups);
    }

    /// Threads get about equal shares of all sources' events, even when the sources' keys
    /// are spread differently (a store written in time order: each segment holds the
    /// customers active in its time, whose keys cluster).
    #[test]
    fn key_ranges_share_the_events_of_all_sources() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let mut n = 0;
        let mut events = |customers: std::ops::Range<u32>, each: i64| {
            let mut out = Vec::new();
            for c in customers {
                for j in 0..each {
                    n += 1;
                    out.push(event(&format!("c{c:03}"), "x", j, &format!("m{n}")));
                }
            }
            out
        };
        // Keys 0..100 with 10 events each; then keys 0..100 with one more, and keys
        // 100..200 with 30 each (the largest segment, with most of its events above key 100).
        let (first, mut second) = (events(0..100, 10), events(0..100, 1));
        second.extend(events(100..200, 30));
        for batch in [first, second] {
            let mut txn = store.import().unwrap();
            txn.add(batch).unwrap();
            txn.commit().unwrap();
        }
        let snap = Snapshot::load(dir.path()).unwrap();
        assert_eq!(snap.sources.len(), 2);
        store.compact(true).unwrap();
        let one = Snapshot::load(dir.path()).unwrap();
        assert_eq!(one.sources.len(), 1);
        let mut per_key = vec![0u64; snap.key_count()];
        snap.scan(Columns::ALL, |c| per_key[c.key as usize] += c.len() as u64)
            .unwrap();
        let total: u64 = per_key.iter().sum();
        assert_eq!(total, 4_100);
        // Each bound is the smallest key with at least its share of the events below it,
        // whether the search runs over two sources or reads one source's starts.
        let below = |key: u32| per_key.iter().take(key as usize).sum::<u64>();
        for parts in [2, 3, 5, 64] {
            let mut want = vec![0u32];
            for p in 1..parts {
                let target = total * p as u64 / parts as u64;
                let bound = (0..=per_key.len() as u32)
                    .find(|&k| below(k) >= target)
                    .unwrap();
                if bound > *want.last().unwrap() {
                    want.push(bound);
                }
            }
            want.push(u32::MAX);
            let want: Vec<_> = want.windows(2).map(|w| w[0]..w[1]).collect();
            assert_eq!(snap.key_ranges(parts), want, "{parts} parts");
            assert_eq!(one.key_ranges(parts), want, "{parts} parts, one source");
        }
        for parts in [2, 3, 5] {
            let ranges = snap.key_ranges(parts);
            assert_eq!(ranges.len(), parts);
            assert_eq!((ranges[0].start, ranges[parts - 1].end), (0, u32::MAX));
            for r in &ranges {
                let events: u64 = per_key
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| r.contains(&(*k as u32)))
                    .map(|(_, e)| e)
                    .sum();
                // Within one customer's events of an equal share.
                let share = total / parts as u64;
                assert!(
                    events.abs_diff(share) <= 31,
                    "{parts} parts: {r:?} has {events}"
                );
            }
        }
    }
}
