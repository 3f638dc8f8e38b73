//! Small file-system helpers for durable writes.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` so that after a crash the file holds either its old content or
/// the new one, never a mix: temp file, fsync, rename. The caller fsyncs the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

/// A new segment file written so that its dirty pages never pile up: every `WRITEBACK_STEP`
/// bytes it asks the kernel to start writing the step just written, and waits for the one
/// before. Why: the log's group commit fsyncs a small file many times a second, and on ext4
/// (ordered data) that fsync also waits for the data of other files whose blocks the same
/// journal commit allocates. A flush or merge that wrote tens of MB and fsynced them at the
/// end made every request acknowledged meanwhile wait 30–50 ms for them; written in steps,
/// the fsync waits for a few MB at most. (RocksDB's `bytes_per_sync` does the same.) The
/// background writer waits a little more instead, which no client sees.
pub struct SteadyFile {
    file: File,
    written: u64,
    /// Writeback was started up to here.
    started: u64,
    /// Writeback is complete up to here.
    waited: u64,
}

/// How much a [`SteadyFile`] writes between two writeback requests.
const WRITEBACK_STEP: u64 = 4 << 20;

impl SteadyFile {
    pub fn create(path: &Path) -> std::io::Result<SteadyFile> {
        Ok(SteadyFile {
            file: File::create(path)?,
            written: 0,
            started: 0,
            waited: 0,
        })
    }

    /// Fsyncs the file and hands it back.
    pub fn finish(self) -> std::io::Result<File> {
        self.file.sync_all()?;
        Ok(self.file)
    }

    /// Best effort: a file system without `sync_file_range` just keeps the pages dirty until
    /// [`SteadyFile::finish`], whose fsync reports any write error.
    fn pace(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            // SAFETY: sync_file_range only reads its integer arguments; `fd` is open for as
            // long as `self.file` lives.
            unsafe {
                if self.started > self.waited {
                    libc::sync_file_range(
                        fd,
                        self.waited as libc::off64_t,
                        (self.started - self.waited) as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                }
                libc::sync_file_range(
                    fd,
                    self.started as libc::off64_t,
                    (self.written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.waited = self.started;
        self.started = self.written;
    }
}

impl Write for SteadyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One large write (a whole scan file) is cut at the next step, so that it is paced too.
        let room = (self.started + WRITEBACK_STEP - self.written) as usize;
        let n = self.file.write(&buf[..buf.len().min(room)])?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            self.pace();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Makes renames and creations in `dir` durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Sum of the sizes of all files below `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_file_holds_exactly_what_was_written_across_writeback_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        // Three steps and a bit, written as one large write and as many odd-sized ones.
        let bytes: Vec<u8> = (0..(3 * WRITEBACK_STEP + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut f = SteadyFile::create(&path).unwrap();
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        f.write_all(head).unwrap();
        for chunk in tail.chunks(7_919) {
            f.write_all(chunk).unwrap();
        }
        let file = f.finish().unwrap();
        assert_eq!(file.metadata().unwrap().len(), bytes.len() as u64);
        assert!(std::fs::read(&path).unwrap() == bytes);
    }
}
