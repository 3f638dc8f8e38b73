//! Opening a file as a byte stream: gzip by magic bytes (decompressed on a thread of its own),
//! progress counting, binary sniffing.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::MultiGzDecoder;

use crate::ImportError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const READ_BUFFER: usize = 256 * 1024;
/// How much of a text file's start is checked for signs of binary content.
const SNIFF_BYTES: usize = 8 * 1024;

/// Bytes of the file on disk read so far, shared with the reader that counts them.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    consumed: Arc<AtomicU64>,
    total: u64,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        Progress {
            consumed: Arc::default(),
            total,
        }
    }

    pub fn get(&self) -> (u64, u64) {
        (self.consumed.load(Ordering::Relaxed), self.total)
    }

    pub fn set(&self, consumed: u64) {
        self.consumed.store(consumed, Ordering::Relaxed);
    }
}

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A text file opened for reading, decompressed when it is gzip.
pub struct Input {
    pub reader: Box<dyn Read + Send>,
    pub progress: Progress,
    pub gzip: bool,
}

impl Input {
    /// Maps an error met while reading: bad gzip data makes the file malformed, anything else
    /// is an I/O error.
    pub fn read_error(gzip: bool, file: &Path, e: io::Error) -> ImportError {
        if gzip
            && matches!(
                e.kind(),
                io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::UnexpectedEof
            )
        {
            return ImportError::malformed(file, None, format!("corrupt gzip data: {e}"));
        }
        ImportError::io(file, e)
    }
}

/// Opens `path`, failing on an empty file, and decompresses it when it starts with the gzip
/// magic bytes. `gz_name` says the name ends in `.gz`: such a file must be gzip.
pub fn open_file(path: &Path, gz_name: bool) -> Result<Input, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
    let total = file.metadata().map_err(|e| ImportError::io(path, e))?.len();
    if total == 0 {
        return Err(ImportError::EmptyFile {
            file: path.to_path_buf(),
        });
    }
    let progress = Progress::new(total);
    let counting = Counting {
        inner: file,
        consumed: progress.consumed.clone(),
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, counting);
    let head = buffered.fill_buf().map_err(|e| ImportError::io(path, e))?;
    let gzip = head.starts_with(&GZIP_MAGIC);
    if gz_name && !gzip {
        return Err(ImportError::malformed(
            path,
            None,
            "not a gzip file: the name ends in .gz but the content does not start with the gzip magic bytes",
        ));
    }
    let reader: Box<dyn Read + Send> = if gzip && total >= INLINE_GUNZIP_BELOW {
        Box::new(Background::spawn(MultiGzDecoder::new(buffered)))
    } else if gzip {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok(Input {
        reader,
        progress,
        gzip,
    })
}

/// A reader whose data is produced by a thread of its own: decompression overlaps parsing
/// instead of adding to it (gunzip is a fifth of reading an XES file).
///
/// The thread reads ahead at most [`AHEAD`] blocks, and stops when this reader is dropped
/// (its next send fails).
struct Background {
    blocks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Read blocks go back to the thread to be filled again: a fresh block is memory the
    /// kernel must zero, which cost more than the copying.
    spent: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

const AHEAD: usize = 4;
const BLOCK: usize = 256 * 1024;

/// Compressed files smaller than this are decompressed on the reading thread: the overlap
/// would save a few milliseconds, while a thread of its own touches memory of its own, which
/// on this kind of VM costs more (helpdesk.xes.gz, 0.3 MB, imports faster without it).
const INLINE_GUNZIP_BELOW: u64 = 4 << 20;

impl Background {
    fn spawn(mut inner: impl Read + Send + 'static) -> Background {
        let (send, blocks) = std::sync::mpsc::sync_channel(AHEAD);
        let (spent, reusable) = std::sync::mpsc::channel::<Vec<u8>>();
        let work = move || {
            loop {
                let mut block = reusable
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
                block.clear();
                let result = (&mut inner).take(BLOCK as u64).read_to_end(&mut block);
                let end = matches!(result, Ok(0) | Err(_));
                let message = result.map(|_| block);
                if send.send(message).is_err() || end {
                    return;
                }
            }
        };
        let spawned = std::thread::Builder::new()
            .name("cairn-import-gunzip".into())
            .spawn(work);
        match spawned {
            Ok(_) => Background {
                blocks,
                spent,
                current: Vec::new(),
                pos: 0,
                done: false,
            },
            // No thread to be had: report it as the read error it amounts to.
            Err(e) => {
                let (send, blocks) = std::sync::mpsc::sync_channel(1);
                let _ = send.send(Err(e));
                Background {
                    blocks,
                    spent,
                    current: Vec::new(),
                    pos: 0,
                    done: false,
                }
            }
        }
    }
}

impl Read for Background {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.blocks.recv() {
                Ok(Ok(block)) if block.is_empty() => self.done = true,
                Ok(Ok(block)) => {
                    let spent = std::mem::replace(&mut self.current, block);
                    // The thread has ended when this fails; the block is simply dropped.
                    let _ = self.spent.send(spent);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The thread ended without a last message: it panicked.
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the decompression thread stopped"));
                }
            }
        }
        let n = (self.current.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Why the start of a text file looks like binary data, with the line it happens on: a NUL byte
/// or bytes that are not UTF-8. A multi-byte character cut at the end of `head` is fine.
pub fn sniff_binary(head: &[u8]) -> Option<(u64, String)> {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let line_at = |pos: usize| 1 + head[..pos].iter().filter(|&&b| b == b'\n').count() as u64;
    if let Some(pos) = head.iter().position(|&b| b == 0) {
        return Some((
            line_at(pos),
            format!(
                "this looks like a binary file, not text: NUL byte at byte offset {pos} (UTF-16 text must be converted to UTF-8)"
            ),
        ));
    }
    if let Err(e) = std::str::from_utf8(head)
        && e.error_len().is_some()
    {
        let pos = e.valid_up_to();
        return Some((
            line_at(pos),
            format!(
                "this is not UTF-8 text: invalid byte 0x{:02x} at byte offset {pos} (convert the file to UTF-8)",
                head[pos]
            ),
        ));
    }
    None
}

/// Reads until `buf` holds `want` bytes or the stream ends; returns how many it holds.
pub fn fill_head(reader: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let mut filled = start;
    while filled < start + want {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(e);
            }
        }
    }
    buf.truncate(filled);
    Ok(filled - start)
}

/// A reader over `head` (bytes already read) and then the rest of the stream.
pub fn chain_head(head: Vec<u8>, rest: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
    Box::new(io::Cursor::new(head).chain(rest))
}

/// Counts `\n` bytes eight at a time (SWAR): about ten times fewer instructions than a
/// byte loop, which the compiler does not vectorise here.
pub fn count_newlines(bytes: &[u8]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let (words, rest) = bytes.as_chunks::<8>();
    let mut total = 0u64;
    for word in words {
        // Bytes equal to `\n` become zero; a byte's high bit in `nonzero` is set iff it is not.
        let x = u64::from_le_bytes(*word) ^ NEWLINES;
        let nonzero = ((x & LOW7) + LOW7) | x;
        total += u64::from((!nonzero & !LOW7).count_ones());
    }
    total + rest.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Opens a text file (CSV, JSONL, XES) and reads its first `want` bytes, refusing an empty
/// file or one that looks binary, so every text reader starts from the same checks.
pub fn open_text(
    path: &Path,
    gz_name: bool,
    want: usize,
    capacity: usize,
) -> Result<(Input, Vec<u8>), ImportError> {
    let mut input = open_file(path, gz_name)?;
    let mut head = Vec::with_capacity(capacity.max(want));
    fill_head(&mut input.reader, &mut head, want)
        .map_err(|e| Input::read_error(input.gzip, path, e))?;
    if head.is_empty() {
        return Err(ImportError::EmptyFile {
            file: path.to_path_buf(),
        });
    }
    if let Some((line, reason)) = sniff_binary(&head) {
        return Err(ImportError::malformed(path, Some(line), reason));
    }
    Ok((input, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_binary_and_non_utf8() {
        assert_eq!(sniff_binary(b"a,b\n1,2\n"), None);
        assert_eq!(sniff_binary("héllo".as_bytes()), None);
        // A character cut at the end of the sniffed bytes is not an error.
        assert_eq!(sniff_binary(&"é".as_bytes()[..1]), None);
        let (line, reason) = sniff_binary(b"a,b\n1\x002\n").unwrap();
        assert_eq!(line, 2);
        assert!(reason.contains("NUL byte at byte offset 5"), "{reason}");
        let (line, reason) = sniff_binary(b"a\nb\n\xff\xfe").unwrap();
        assert_eq!(line, 3);
        assert!(reason.contains("not UTF-8"), "{reason}");
    }

    #[test]
    fn counts_newlines_like_a_byte_loop() {
        // Every byte value, newlines in runs and alone, at every alignment.
        let mut text: Vec<u8> = (0..=255u8).collect();
        text.extend_from_slice(&[b'\n'; 300]);
        text.extend(std::iter::repeat_n(b"ab\n\x8a\x0b\xff\x00\n".iter().copied(), 50).flatten());
        for start in 0..64 {
            let part = &text[start..];
            let want = part.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_newlines(part), want, "from {start}");
        }
        assert_eq!(count_newlines(b""), 0);
    }
}
