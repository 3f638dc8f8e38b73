//! Operator splits (unmerge): identifiers an operator detached from whatever they were merged
//! with. They are kept in a small JSON file in the data directory, next to the store, and
//! applied every time the graph is resolved, so a split shows up in every analysis at once
//! and can be undone by removing it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ident::Identifier;

/// The file, in the data directory.
pub const SPLITS_FILE: &str = "identity-splits.json";

#[derive(Debug, thiserror::Error)]
pub enum SplitsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid splits file: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    pub detached: Vec<Detached>,
}

/// One identifier cut off from every other identifier: no link to it is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detached {
    pub identifier: Identifier,
    /// Why, in the operator's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the operator made the split (RFC 3339, given by the caller: no clock here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl Splits {
    /// Reads the splits of a data directory; none when the file does not exist.
    pub fn load(dir: &Path) -> Result<Splits, SplitsError> {
        let path = dir.join(SPLITS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| SplitsError::Format { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Splits::default()),
            Err(source) => Err(SplitsError::Io { path, source }),
        }
    }

    /// Replaces the file atomically (write a temporary file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), SplitsError> {
        let path = dir.join(SPLITS_FILE);
        let tmp = dir.join(format!("{SPLITS_FILE}.tmp"));
        let io = |source| SplitsError::Io {
            path: path.clone(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| SplitsError::Format {
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Detaches an identifier; false when it already was.
    pub fn detach(&mut self, d: Detached) -> bool {
        if self.is_detached(&d.identifier) {
            return false;
        }
        self.detached.push(d);
        true
    }

    /// Undoes a split; false when there was none.
    pub fn reattach(&mut self, id: &Identifier) -> bool {
        let before = self.detached.len();
        self.detached.retain(|d| &d.identifier != id);
        before != self.detached.len()
    }

    pub fn is_detached(&self, id: &Identifier) -> bool {
        self.detached.iter().any(|d| &d.identifier == id)
    }
}
