//! The customer dictionary: raw customer identifier ⇄ dense customer key.
//!
//! Keys are assigned in order of first appearance and never reused. They are what segments are
//! sorted by and what analyses index arrays with. Identity resolution maps several keys to one
//! profile later, without touching the segments (see ARCHITECTURE.md).
//!
//! On disk, `customers.dict` is a sequence of framed records (one identifier each; the key is
//! the record's position). Only the prefix the manifest names is committed; anything after it
//! was written by an import that did not finish and is cut by the next writer.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};
use crate::framing::{encode_record, scan_records};
use crate::hash::FxHashMap;
use crate::manifest::DictExtent;

pub const DICT_FILE: &str = "customers.dict";

pub struct CustomerDict {
    path: PathBuf,
    ids: Vec<String>,
    /// id → key; built only for writers, which need it for every incoming event.
    index: Option<FxHashMap<String, u32>>,
    committed: DictExtent,
}

impl CustomerDict {
    pub fn load(dir: &Path, extent: &DictExtent, writable: bool) -> Result<CustomerDict> {
        let path = dir.join(DICT_FILE);
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
        let scanned = scan_records(&bytes[..committed_len]);
        if scanned.damage.is_some() || scanned.records.len() as u64 != extent.count {
            return Err(StoreError::Corrupt {
                path,
                reason: format!(
                    "expected {} customer records in the first {committed_len} bytes, found {} readable",
                    extent.count,
                    scanned.records.len()
                ),
            });
        }
        let ids = scanned
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>();
        if writable && bytes.len() > committed_len {
            // An interrupted import appended identifiers it never committed.
            let f = OpenOptions::new().write(true).open(&path).at(&path)?;
            f.set_len(committed_len as u64).at(&path)?;
            f.sync_all().at(&path)?;
        }
        let index = writable.then(|| {
            ids.iter()
                .enumerate()
                .map(|(k, id)| (id.clone(), k as u32))
                .collect()
        });
        Ok(CustomerDict {
            path,
            ids,
            index,
            committed: extent.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The raw identifier of a key.
    pub fn id(&self, key: u32) -> Option<&str> {
        self.ids.get(key as usize).map(String::as_str)
    }

    /// The key of a raw identifier, if it has one.
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
        self.ids.push(id.to_string());
        k
    }

    /// Appends the pending identifiers to the file and fsyncs; returns the extent to commit.
    pub fn persist(&mut self) -> Result<DictExtent> {
        let pending = &self.ids[self.committed.count as usize..];
        if pending.is_empty() {
            return Ok(self.committed.clone());
        }
        let mut buf = Vec::with_capacity(pending.iter().map(|s| s.len() + 12).sum());
        for id in pending {
            encode_record(id.as_bytes(), &mut buf);
        }
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
            for id in &self.ids[keep..] {
                index.remove(id);
            }
        }
        self.ids.truncate(keep);
    }
}
