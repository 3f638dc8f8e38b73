//! The write-ahead log: where streamed events become durable before anything else happens.
//!
//! Files `wal/NNNNNNNNNNNNNNNNNNNN.log` (named by the first batch number they hold) are
//! sequences of framed records (see [`crate::framing`]); each record is one batch:
//! `batch number u64 | events as JSON`. Appends use group commit: callers queue their
//! encoded batches, one of them writes everything queued and fsyncs once, then wakes the
//! others. [`Wal::append`] returns only once its batch is on disk.
//!
//! Recovery reads every file in order. A damaged record with nothing valid after it is a torn
//! tail (a crash mid-write, so never acknowledged): it is cut and reported. A damaged record
//! followed by valid ones is corruption: opening fails with [`StoreError::CorruptLog`] rather
//! than skipping acknowledged data; `cairn repair` moves the damaged part aside.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};

use cairn_model::Event;

use crate::error::{IoContext, Result, StoreError};
use crate::framing::{encode_record, scan_records};
use crate::fsutil::fsync_dir;

pub const WAL_DIR: &str = "wal";

/// One recovered batch.
#[derive(Debug)]
pub struct Batch {
    pub number: u64,
    pub events: Vec<Event>,
}

/// What recovery found, for the log.
#[derive(Debug, Default)]
pub struct Recovery {
    pub batches: Vec<Batch>,
    /// Bytes cut from a torn tail, with the file.
    pub cut: Option<(PathBuf, u64)>,
}

struct State {
    /// Encoded records waiting for the next write.
    queued: Vec<u8>,
    /// The number the next batch gets.
    next: u64,
    /// Every batch up to this number is on disk.
    durable: u64,
    writing: bool,
    failed: bool,
    /// The file group writes go to; a writer takes it out while it writes.
    file: Option<File>,
    /// The first batch number of that file (its name), set from its creation until the next
    /// [`Wal::rotate`], also while a writer has taken `file` out: it tells
    /// [`Wal::remove_upto`] which file must stay, whatever `durable` says yet.
    active: Option<u64>,
}

pub struct Wal {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
    /// Group writes done, their time (write + fsync) and bytes, for monitoring.
    syncs: AtomicU64,
    sync_micros: AtomicU64,
    synced_bytes: AtomicU64,
    /// Group writes by duration: index i counts those within `SYNC_BOUNDS_MICROS[i]` (and
    /// above the bound before), the last one those above every bound.
    sync_durations: [AtomicU64; SYNC_BOUNDS_MICROS.len() + 1],
}

/// Upper bounds of [`LogSyncStats::by_duration`]'s buckets, in microseconds: a log fsync on a
/// quiet disk takes about a millisecond, and one that waits behind other files' writes can
/// take a hundred times that, which every request waiting for it then waits too.
pub const SYNC_BOUNDS_MICROS: [u64; 11] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// What the log's group writes cost so far (counters since the store was opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSyncStats {
    /// Group writes, each ending in one fsync.
    pub syncs: u64,
    /// Time spent writing and fsyncing, in microseconds.
    pub sync_micros: u64,
    pub bytes: u64,
    /// Group writes by their time (write + fsync), in the buckets of [`SYNC_BOUNDS_MICROS`]
    /// (not cumulative; the last counts those above every bound).
    pub by_duration: [u64; SYNC_BOUNDS_MICROS.len() + 1],
}

fn file_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The log files in `dir`, in order, with the first batch number each holds.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    for entry in entries {
        let path = entry.at(dir)?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            files.push((first, path));
        }
    }
    files.sort();
    Ok(files)
}

fn decode(path: &Path, offset: usize, payload: &[u8]) -> Result<Batch> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("record at byte {offset}: {reason}"),
    };
    let number = payload
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .ok_or_else(|| corrupt("too short".into()))?;
    let events = serde_json::from_slice(&payload[8..]).map_err(|e| corrupt(e.to_string()))?;
    Ok(Batch { number, events })
}

/// Reads the log without changing it: what a reader sees while a writer runs. A torn tail is
/// ignored (the writer may be in the middle of writing it).
pub fn read(data_dir: &Path, after: u64) -> Result<Vec<Batch>> {
    let mut batches = Vec::new();
    for (_, path) in list(&data_dir.join(WAL_DIR))? {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Removed by a checkpoint after we listed it: its batches are in segments now,
            // and the caller re-reads the manifest when it changed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let scanned = scan_records(&bytes);
        if scanned.valid_after > 0 {
            return Err(StoreError::CorruptLog {
                path,
                offset: scanned.good_len as u64,
                reason: scanned.damage.map(|d| d.to_string()).unwrap_or_default(),
                valid_after: scanned.valid_after,
            });
        }
        let mut offset = 0;
        for payload in scanned.records {
            let batch = decode(&path, offset, payload)?;
            offset += payload.len() + crate::framing::HEADER_LEN;
            if batch.number > after {
                batches.push(batch);
            }
        }
    }
    Ok(batches)
}

impl Wal {
    /// Opens the log for appending after recovering it: returns the batches after `checkpoint`.
    pub fn open(data_dir: &Path, checkpoint: u64) -> Result<(Wal, Recovery)> {
        let dir = data_dir.join(WAL_DIR);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let mut recovery = Recovery::default();
        let mut last = checkpoint;
        let files = list(&dir)?;
        for (i, (_, path)) in files.iter().enumerate() {
            let bytes = std::fs::read(path).at(path)?;
            let scanned = scan_records(&bytes);
            let is_last_file = i + 1 == files.len();
            if let Some(damage) = &scanned.damage
                && (scanned.valid_after > 0 || !is_last_file)
            {
                return Err(StoreError::CorruptLog {
                    path: path.clone(),
                    offset: scanned.good_len as u64,
                    reason: damage.to_string(),
                    valid_after: scanned.valid_after,
                });
            }
            let mut offset = 0;
            for payload in &scanned.records {
                let batch = decode(path, offset, payload)?;
                offset += payload.len() + crate::framing::HEADER_LEN;
                last = last.max(batch.number);
                if batch.number > checkpoint {
                    recovery.batches.push(batch);
                }
            }
            if scanned.damage.is_some() {
                let cut = bytes.len() - scanned.good_len;
                let f = OpenOptions::new().write(true).open(path).at(path)?;
                f.set_len(scanned.good_len as u64).at(path)?;
                f.sync_all().at(path)?;
                recovery.cut = Some((path.clone(), cut as u64));
            }
        }
        let wal = Wal {
            dir,
            state: Mutex::new(State {
                queued: Vec::new(),
                next: last + 1,
                durable: last,
                writing: false,
                failed: false,
                file: None,
                active: None,
            }),
            done: Condvar::new(),
            syncs: AtomicU64::new(0),
            sync_micros: AtomicU64::new(0),
            synced_bytes: AtomicU64::new(0),
            sync_durations: Default::default(),
        };
        Ok((wal, recovery))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent in a way that
        // matters more than the panic itself; keep serving the other callers.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a batch, given as the JSON array of its events, for the next group write and
    /// returns its number at once; it is durable only after [`Wal::wait_durable`] returns for it.
    pub fn enqueue_json(&self, json: &[u8]) -> Result<u64> {
        let mut st = self.lock();
        if st.failed {
            return Err(self.failed_error());
        }
        let number = st.next;
        st.next += 1;
        let mut payload = Vec::with_capacity(8 + json.len());
        payload.extend_from_slice(&number.to_le_bytes());
        payload.extend_from_slice(json);
        encode_record(&payload, &mut st.queued);
        Ok(number)
    }

    pub(crate) fn encode_error(&self, e: serde_json::Error) -> StoreError {
        StoreError::Corrupt {
            path: self.dir.clone(),
            reason: format!("cannot encode batch: {e}"),
        }
    }

    /// Blocks until batch `number` is on disk. The first waiter to find no write in progress
    /// writes everything queued and fsyncs once for all of them (group commit).
    pub fn wait_durable(&self, number: u64) -> Result<()> {
        let mut st = self.lock();
        loop {
            if st.durable >= number {
                return Ok(());
            }
            if st.failed {
                return Err(self.failed_error());
            }
            if st.writing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.writing = true;
            let buf = std::mem::take(&mut st.queued);
            let upto = st.next - 1;
            let mut file = match st.file.take() {
                Some(f) => f,
                None => match self.create_file(st.durable + 1) {
                    Ok(f) => {
                        st.active = Some(st.durable + 1);
                        f
                    }
                    Err(e) => {
                        st.writing = false;
                        st.failed = true;
                        self.done.notify_all();
                        return Err(e);
                    }
                },
            };
            drop(st);
            let started = std::time::Instant::now();
            let res = file.write_all(&buf).and_then(|_| file.sync_data());
            let micros = started.elapsed().as_micros() as u64;
            self.syncs.fetch_add(1, Relaxed);
            self.sync_micros.fetch_add(micros, Relaxed);
            let bucket = SYNC_BOUNDS_MICROS.partition_point(|&b| b < micros);
            self.sync_durations[bucket].fetch_add(1, Relaxed);
            self.synced_bytes.fetch_add(buf.len() as u64, Relaxed);
            st = self.lock();
            st.file = Some(file);
            st.writing = false;
            match res {
                Ok(()) => st.durable = upto,
                Err(_) => st.failed = true,
            }
            self.done.notify_all();
        }
    }

    fn failed_error(&self) -> StoreError {
        StoreError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other("an earlier write to the log failed; reopen the store"),
        }
    }

    fn create_file(&self, first: u64) -> Result<File> {
        let path = self.dir.join(file_name(first));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        fsync_dir(&self.dir).at(&self.dir)?;
        Ok(f)
    }

    /// Counters of the group writes so far.
    pub fn sync_stats(&self) -> LogSyncStats {
        LogSyncStats {
            syncs: self.syncs.load(Relaxed),
            sync_micros: self.sync_micros.load(Relaxed),
            bytes: self.synced_bytes.load(Relaxed),
            by_duration: std::array::from_fn(|i| self.sync_durations[i].load(Relaxed)),
        }
    }

    /// The number of the last durable batch.
    pub fn last_durable(&self) -> u64 {
        self.lock().durable
    }

    /// Starts a new file for the next batches, so that the current ones can be removed once
    /// they are in segments. Returns the last batch number in the closed files.
    pub fn rotate(&self) -> u64 {
        let mut st = self.lock();
        while st.writing {
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.file = None;
        st.active = None;
        st.durable
    }

    /// Removes log files whose batches are all at or below `checkpoint`.
    ///
    /// Decided under the log lock, which a writer also holds to create a file: the file
    /// writes go to is never removed, even while a writer has it out and `durable` does not
    /// yet count the batch being written (removing it then once lost acknowledged batches,
    /// written to an unlinked file). Any other file ends where the next one begins, or, the
    /// newest, at `durable`: no write is in progress to it (`rotate` waited for the last).
    pub fn remove_upto(&self, checkpoint: u64) -> Result<()> {
        let removable = {
            let st = self.lock();
            let files = list(&self.dir)?;
            let mut removable = Vec::new();
            for (i, (first, path)) in files.iter().enumerate() {
                if st.active == Some(*first) {
                    continue;
                }
                let last = match files.get(i + 1) {
                    Some((next_first, _)) => next_first - 1,
                    None => st.durable,
                };
                if last <= checkpoint {
                    removable.push(path.clone());
                }
            }
            removable
        };
        if removable.is_empty() {
            return Ok(());
        }
        // Outside the lock: these files are never written again (a new file is named after
        // a batch number above every existing one).
        for path in &removable {
            std::fs::remove_file(path).at(path)?;
        }
        fsync_dir(&self.dir).at(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// Checkpoints race with group writes: the flusher rotates the log and, once its segment
    /// is committed, removes the files it covers, while appends go on writing (and creating)
    /// the next file. Every batch that was acknowledged durable must still be readable.
    #[test]
    fn removing_checkpointed_files_never_removes_a_file_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 0).unwrap();
        let wal = Arc::new(wal);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (wal, stop) = (wal.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        let n = wal.enqueue_json(b"[]").unwrap();
                        wal.wait_durable(n).unwrap();
                    }
                })
            })
            .collect();
        let mut checkpoint = 0;
        let mut rounds = 0;
        // Enough rounds, and enough of them overlapping writes (the writers take a moment to
        // start).
        while rounds < 300 || checkpoint < 300 {
            rounds += 1;
            // What a flush does: rotate, (write its segment), cut the log up to what it took.
            let upto = wal.rotate();
            wal.remove_upto(upto).unwrap();
            checkpoint = upto;
            let durable = wal.last_durable();
            let numbers: Vec<u64> = read(dir.path(), checkpoint)
                .unwrap()
                .iter()
                .map(|b| b.number)
                .collect();
            let missing: Vec<u64> = (checkpoint + 1..=durable)
                .filter(|n| !numbers.contains(n))
                .collect();
            assert!(
                missing.is_empty(),
                "durable batches {missing:?} are gone (checkpoint {checkpoint})"
            );
        }
        stop.store(true, Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }
}
