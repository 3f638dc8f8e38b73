//! `cairn repair`: the operator's way past log corruption that recovery refuses to skip.

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::framing::{encode_record, salvage, scan_records};
use crate::fsutil::{fsync_dir, write_atomically};
use crate::wal::WAL_DIR;

/// What repair did, in words for the operator.
#[derive(Debug, Default)]
pub struct RepairReport {
    pub files_repaired: Vec<String>,
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.files_repaired.is_empty() {
            return write!(f, "nothing to repair: the log is intact");
        }
        for line in &self.files_repaired {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Rewrites each damaged log file with every record that still reads, and keeps the original
/// beside it as `NAME.damaged` so nothing is destroyed. Records inside the damaged stretch
/// are lost; the report says how many bytes that was.
pub fn repair(data_dir: &Path) -> Result<RepairReport> {
    let dir = data_dir.join(WAL_DIR);
    let mut report = RepairReport::default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(report);
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).at(&path)?;
        let scanned = scan_records(&bytes);
        if scanned.damage.is_none() {
            continue;
        }
        let (records, skipped) = salvage(&bytes);
        let mut out = Vec::with_capacity(bytes.len());
        for r in &records {
            encode_record(r, &mut out);
        }
        let aside = path.with_extension("log.damaged");
        std::fs::copy(&path, &aside).at(&aside)?;
        write_atomically(&path, &out)?;
        report.files_repaired.push(format!(
            "{}: kept {} readable records, dropped {skipped} damaged bytes (original kept as {})",
            path.display(),
            records.len(),
            aside.display()
        ));
    }
    fsync_dir(&dir).at(&dir)?;
    Ok(report)
}
