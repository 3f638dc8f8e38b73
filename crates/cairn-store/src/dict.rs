//! The customer dictionary: raw customer identifier ⇄ dense customer key.
//!
//! Keys are assigned in order of first appearance and never reused. They are what segments are
//! sorted by and what analyses index arrays with. Identity resolution maps several keys to one
//! profile later, without touching the segments (see ARCHITECTURE.md).
//!
//! On disk, `customers.dict` is a sequence of records, each an identifier's length (LEB128)
//! and its bytes; the key is the record's position. Only the prefix the manifest names is
//! committed, with the CRC-32 of that prefix, checked on load; anything after it was written
//! by an import that did not finish and is cut by the next writer. (One checksum for the
//! whole prefix rather than a framed record per identifier: customer ids are short, and
//! 12 bytes of framing each would make this file a tenth of the store.)

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};
use crate::hash::FxHashMap;
use crate::manifest::DictExtent;

pub const DICT_FILE: &str = "customers.dict";

/// `Default` is an empty placeholder, for while a background flush holds the writer's own.
#[derive(Default)]
pub struct CustomerDict {
    path: PathBuf,
    ids: IdList,
    /// id → key; built only for writers, which need it for every incoming event.
    index: Option<FxHashMap<String, u32>>,
    committed: DictExtent,
}

/// Identifiers back to back in one string: a reader loads millions of them without
/// allocating each, which made loading the dictionary a third of a short analysis.
#[derive(Default)]
struct IdList {
    text: String,
    /// Where each identifier ends in `text`.
    ends: Vec<u64>,
}

impl IdList {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, key: usize) -> Option<&str> {
        let end = *self.ends.get(key)? as usize;
        let start = match key {
            0 => 0,
            _ => self.ends[key - 1] as usize,
        };
        // `get`, not indexing: a damaged file that decodes may still cut a character in two.
        self.text.get(start..end)
    }

    fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len() as u64);
    }

    fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            let end = match len {
                0 => 0,
                _ => self.ends[len - 1] as usize,
            };
            self.text.truncate(end);
            self.ends.truncate(len);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|k| self.get(k).unwrap_or_default())
    }
}

impl CustomerDict {
    pub fn load(dir: &Path, extent: &DictExtent, writable: bool) -> Result<CustomerDict> {
        let path = crate::forget::dict_path(dir, extent, writable)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let committed_len = extent.bytes as usize;
        if bytes.len() < committed_len {
            return Err(StoreError::Corrupt {
                path,
                reason: format!(
                    "holds {} bytes but the manifest commits {committed_len}",
                    bytes.len()
                ),
            });
        }
        let prefix = &bytes[..committed_len];
        if crc32fast::hash(prefix) != extent.crc {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("checksum mismatch in the first {committed_len} bytes"),
            });
        }
        let ids = decode(prefix)
            .filter(|ids| ids.len() as u64 == extent.count)
            .ok_or_else(|| StoreError::Corrupt {
                path: path.clone(),
                reason: format!(
                    "expected {} customer ids in the first {committed_len} bytes",
                    extent.count
                ),
            })?;
        if writable && bytes.len() > committed_len {
            // An interrupted import appended identifiers it never committed.
            let f = OpenOptions::new().write(true).open(&path).at(&path)?;
            f.set_len(committed_len as u64).at(&path)?;
            f.sync_all().at(&path)?;
        }
        let index = writable.then(|| {
            ids.iter()
                .enumerate()
                .map(|(k, id)| (id.to_string(), k as u32))
                .collect()
        });
        Ok(CustomerDict {
            path,
            ids,
            index,
            committed: extent.clone(),
        })
    }

    /// The key of an identifier, if it has one.
    pub fn key(&self, id: &str) -> Option<u32> {
        match &self.index {
            Some(index) => index.get(id).copied(),
            None => self.ids.iter().position(|x| x == id).map(|k| k as u32),
        }
    }

    /// The key of an identifier, assigning the next one if it is new. New keys stay pending
    /// until [`CustomerDict::persist`] and a manifest commit.
    pub fn key_or_insert(&mut self, id: &str) -> u32 {
        let index = self.index.get_or_insert_with(Default::default);
        if let Some(&k) = index.get(id) {
            return k;
        }
        let k = self.ids.len() as u32;
        index.insert(id.to_string(), k);
        self.ids.push(id);
        k
    }

    /// Appends the pending identifiers to the file and fsyncs; returns the extent to commit.
    pub fn persist(&mut self) -> Result<DictExtent> {
        let first = self.committed.count as usize;
        if first >= self.ids.len() {
            return Ok(self.committed.clone());
        }
        let new = self.ids.len() - first;
        let mut buf = Vec::with_capacity(self.ids.text.len() + 2 * new);
        for id in self.ids.iter().skip(first) {
            encode(id.as_bytes(), &mut buf);
        }
        let mut crc =
            crc32fast::Hasher::new_with_initial_len(self.committed.crc, self.committed.bytes);
        crc.update(&buf);
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .at(&self.path)?;
        // Drop anything a failed earlier attempt left after the committed prefix.
        f.set_len(self.committed.bytes).at(&self.path)?;
        f.seek(SeekFrom::End(0)).at(&self.path)?;
        f.write_all(&buf).at(&self.path)?;
        f.sync_data().at(&self.path)?;
        Ok(DictExtent {
            count: self.ids.len() as u64,
            bytes: self.committed.bytes + buf.len() as u64,
            crc: crc.finalize(),
        })
    }

    /// Writes the whole dictionary to `path` (fsynced), each key's identifier replaced by
    /// `replace(key)` where that gives one; returns the extent of the new file. Keys stay as
    /// they are: only the texts change (what forgetting a customer needs).
    pub fn write_replacing(
        &self,
        path: &Path,
        replace: impl Fn(u32) -> Option<String>,
    ) -> Result<DictExtent> {
        let mut buf = Vec::with_capacity(self.ids.text.len() + 2 * self.ids.len());
        for (k, id) in self.ids.iter().enumerate() {
            match replace(k as u32) {
                Some(new) => encode(new.as_bytes(), &mut buf),
                None => encode(id.as_bytes(), &mut buf),
            }
        }
        let mut f = std::fs::File::create(path).at(path)?;
        f.write_all(&buf).at(path)?;
        f.sync_all().at(path)?;
        Ok(DictExtent {
            count: self.ids.len() as u64,
            bytes: buf.len() as u64,
            crc: crc32fast::hash(&buf),
        })
    }

    /// Records that `extent` is now committed by the manifest.
    pub fn committed(&mut self, extent: DictExtent) {
        self.committed = extent;
    }

    /// Forgets keys assigned since the last commit (an import that failed).
    pub fn rollback(&mut self) {
        let keep = self.committed.count as usize;
        if let Some(index) = &mut self.index {
            for id in self.ids.iter().skip(keep) {
                index.remove(id);
            }
        }
        self.ids.truncate(keep);
    }
}

fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The dictionary as a reader sees it: the committed prefix of `customers.dict`,
/// memory-mapped, checked against its CRC and decoded only when an identifier is first asked
/// for. Scans work by key and never ask: reading a 20 MB dictionary (a fresh 20 MB copy, which
/// on this VM costs more than the rest of a short analysis's start) and checking it took a
/// quarter of a short analysis. Damage is still never passed over: the first use finds it,
/// [`ReaderDict::check`] reports it (a snapshot's `timeline` and log-tail lookups do), and a
/// damaged dictionary knows no identifier at all rather than wrong ones.
pub struct ReaderDict {
    path: PathBuf,
    bytes: DictBytes,
    count: usize,
    crc: u32,
    /// The identifiers, once checked and decoded; `None` when the bytes are damaged.
    ids: std::sync::OnceLock<Option<IdList>>,
    /// Lookups by identifier so far; from the second on, they use `index`.
    lookups: std::sync::atomic::AtomicU32,
    /// Hash of an identifier → its key, built at the second lookup: a command asks once (a
    /// scan of the list is cheaper than building this), a server's shared snapshot asks for
    /// every request (a scan of a million identifiers each time was milliseconds).
    index: std::sync::OnceLock<FxHashMap<u64, u32>>,
}

/// The committed prefix of the dictionary file.
enum DictBytes {
    /// Nothing committed (a mapping cannot be empty).
    Empty,
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for DictBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            DictBytes::Empty => &[],
            DictBytes::Mapped(m) => m,
        }
    }
}

/// What a damaged dictionary knows.
static NO_IDS: IdList = IdList {
    text: String::new(),
    ends: Vec::new(),
};

impl ReaderDict {
    /// Maps the committed prefix; fails when the file is missing or shorter than it. (A
    /// dictionary that a forget replaced after the manifest was read is caught by the
    /// snapshot, which reads the manifest again after opening its files: the forget commits
    /// its manifest before it renames the new dictionary into place.)
    pub fn open(dir: &Path, extent: &DictExtent) -> Result<ReaderDict> {
        // After a forget, the committed dictionary may still be under its new name.
        let path = crate::forget::dict_path(dir, extent, false)?;
        let committed_len = extent.bytes as usize;
        let file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && committed_len == 0 => None,
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let bytes = match file {
            Some(f) if committed_len > 0 => {
                let len = f.metadata().at(&path)?.len();
                if len < extent.bytes {
                    return Err(StoreError::Corrupt {
                        path,
                        reason: format!(
                            "shorter than the {committed_len} bytes the manifest commits"
                        ),
                    });
                }
                // SAFETY: the committed prefix of a dictionary file is never modified: writers
                // only append after it, cut only what follows it (uncommitted identifiers), and
                // a forget writes a new file and renames it over this one, which leaves the
                // mapped file as it was. So the mapping cannot change or shrink under us.
                let map =
                    unsafe { memmap2::MmapOptions::new().len(committed_len).map(&f) }.at(&path)?;
                DictBytes::Mapped(map)
            }
            _ => DictBytes::Empty,
        };
        Ok(ReaderDict {
            path,
            bytes,
            count: extent.count as usize,
            crc: extent.crc,
            ids: std::sync::OnceLock::new(),
            lookups: Default::default(),
            index: std::sync::OnceLock::new(),
        })
    }

    /// The identifiers, checked and decoded on first use; `None` when damaged.
    fn decoded(&self) -> Option<&IdList> {
        self.ids
            .get_or_init(|| {
                if crc32fast::hash(&self.bytes) != self.crc {
                    return None;
                }
                decode(&self.bytes).filter(|ids| ids.len() == self.count)
            })
            .as_ref()
    }

    /// The identifiers; none when the dictionary is damaged (which [`ReaderDict::check`]
    /// reports).
    fn ids(&self) -> &IdList {
        self.decoded().unwrap_or(&NO_IDS)
    }

    /// Checks the committed prefix against the manifest's checksum and count.
    pub fn check(&self) -> Result<()> {
        if self.decoded().is_some() {
            return Ok(());
        }
        let committed_len = self.bytes.len();
        let reason = if crc32fast::hash(&self.bytes) != self.crc {
            format!("checksum mismatch in the first {committed_len} bytes")
        } else {
            format!(
                "expected {} customer ids in the first {committed_len} bytes",
                self.count
            )
        };
        Err(StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn id(&self, key: u32) -> Option<&str> {
        self.ids().get(key as usize)
    }

    /// The key of an identifier: a scan for the first lookup, an index from the second on.
    pub fn key(&self, id: &str) -> Option<u32> {
        use std::sync::atomic::Ordering::Relaxed;
        let scan = || self.ids().iter().position(|x| x == id).map(|k| k as u32);
        if self.index.get().is_none() && self.lookups.fetch_add(1, Relaxed) == 0 {
            return scan();
        }
        let index = self.index.get_or_init(|| {
            let mut index = FxHashMap::default();
            index.reserve(self.count);
            // Two identifiers with one hash: the first keeps the entry, the other is found
            // by the scan below.
            for (k, x) in self.ids().iter().enumerate() {
                index.entry(id_hash(x)).or_insert(k as u32);
            }
            index
        });
        match index.get(&id_hash(id)) {
            Some(&k) if self.id(k) == Some(id) => Some(k),
            Some(_) => scan(),
            None => None,
        }
    }

    /// Fills in the key of every identifier in `wanted` that has one, in one pass; fails on
    /// a damaged dictionary (see [`ReaderDict::check`]).
    pub fn keys_of(&self, wanted: &mut FxHashMap<String, Option<u32>>) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        self.check()?;
        for (k, id) in self.ids().iter().enumerate() {
            if let Some(slot) = wanted.get_mut(id) {
                *slot = Some(k as u32);
            }
        }
        Ok(())
    }
}

fn encode(id: &[u8], out: &mut Vec<u8>) {
    let mut n = id.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(id);
}

/// The identifiers in `buf`, or `None` if it does not decode exactly.
fn decode(mut buf: &[u8]) -> Option<IdList> {
    let mut text = Vec::with_capacity(buf.len());
    let mut ends = Vec::new();
    while !buf.is_empty() {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&b, rest) = buf.split_first()?;
            buf = rest;
            len |= ((b & 0x7f) as usize).checked_shl(shift)?;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        let (id, rest) = (buf.get(..len)?, &buf[len..]);
        text.extend_from_slice(id);
        ends.push(text.len() as u64);
        buf = rest;
    }
    Some(IdList {
        text: String::from_utf8(text).ok()?,
        ends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = CustomerDict::load(dir.path(), &DictExtent::default(), true).unwrap();
        let long = "x".repeat(300);
        for id in ["a", "", "ünïcode", &long] {
            d.key_or_insert(id);
        }
        let extent = d.persist().unwrap();
        d.committed(extent.clone());
        assert_eq!(d.key_or_insert("b"), 4);
        let extent2 = d.persist().unwrap();
        let again = ReaderDict::open(dir.path(), &extent2).unwrap();
        assert_eq!(again.id(2), Some("ünïcode"));
        assert_eq!(again.id(3).map(str::len), Some(300));
        assert_eq!(again.key("b"), Some(4));
        // Only the committed prefix counts, and a writer cuts the rest.
        let first = CustomerDict::load(dir.path(), &extent, true).unwrap();
        assert_eq!(first.ids.len(), 4);
        let mut bytes = std::fs::read(dir.path().join(DICT_FILE)).unwrap();
        assert_eq!(bytes.len() as u64, extent.bytes);
        bytes[1] ^= 1;
        std::fs::write(dir.path().join(DICT_FILE), bytes).unwrap();
        assert!(CustomerDict::load(dir.path(), &extent, false).is_err());
        // A reader finds the damage at first use: no identifier is known, and it says why.
        let damaged = ReaderDict::open(dir.path(), &extent).unwrap();
        assert_eq!((damaged.id(0), damaged.key("a")), (None, None));
        let err = damaged.check().unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(
            damaged
                .keys_of(&mut [("a".to_string(), None)].into_iter().collect())
                .is_err()
        );
    }

    #[test]
    fn reader_dict_decodes_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let empty = ReaderDict::open(dir.path(), &DictExtent::default()).unwrap();
        assert_eq!((empty.len(), empty.id(0)), (0, None));
        let mut d = CustomerDict::load(dir.path(), &DictExtent::default(), true).unwrap();
        for id in ["a", "ünïcode", "c"] {
            d.key_or_insert(id);
        }
        let extent = d.persist().unwrap();
        let r = ReaderDict::open(dir.path(), &extent).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.id(1), Some("ünïcode"));
        assert_eq!(r.key("c"), Some(2));
        let mut wanted: FxHashMap<String, Option<u32>> =
            [("a".to_string(), None), ("zz".to_string(), None)]
                .into_iter()
                .collect();
        r.keys_of(&mut wanted).unwrap();
        assert!(r.check().is_ok());
        assert_eq!(wanted["a"], Some(0));
        assert_eq!(wanted["zz"], None);
        // A file cut short of the committed prefix is refused.
        let bytes = std::fs::read(dir.path().join(DICT_FILE)).unwrap();
        std::fs::write(dir.path().join(DICT_FILE), &bytes[..bytes.len() - 1]).unwrap();
        assert!(ReaderDict::open(dir.path(), &extent).is_err());
    }
}
