//! Integration tests: the real logs in `testdata/`, and small broken files written into a
//! temporary directory.

mod bad_input;
mod bench;
mod formats;
mod real_data;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cairn_import::{ImportError, ImportOptions, RecordError, read_all};
use cairn_model::Event;

/// `testdata/` in the repository (or `CAIRN_TESTDATA`).
pub fn data(name: &str) -> PathBuf {
    let dir = std::env::var_os("CAIRN_TESTDATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: the real-data tests need testdata/ in the repository (or CAIRN_TESTDATA)",
        path.display()
    );
    path
}

/// Splits a whole file's records into events and record errors.
pub fn read(path: &Path, options: &ImportOptions) -> (Vec<Event>, Vec<RecordError>) {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for r in read_all(path, options).unwrap_or_else(|e| panic!("{e}")) {
        match r {
            Ok(e) => events.push(e),
            Err(e) => errors.push(e),
        }
    }
    (events, errors)
}

/// Reads a file that must fail as a whole.
pub fn read_fails(path: &Path) -> ImportError {
    match read_all(path, &ImportOptions::default()) {
        Ok(records) => panic!(
            "{} read {} records, expected an error",
            path.display(),
            records.len()
        ),
        Err(e) => e,
    }
}

pub fn customers(events: &[Event]) -> usize {
    events
        .iter()
        .map(Event::customer_id)
        .collect::<HashSet<_>>()
        .len()
}

/// Writes a fixture file into `dir`.
pub fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}
