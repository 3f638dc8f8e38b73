//! The key → profile map, kept between commands.
//!
//! Building the identity graph reads every event (seconds for millions of customers), while a
//! stitched analysis only needs which keys form one profile: 4 bytes per key. So the map is
//! saved in `DATA_DIR/identity-map.bin` with a stamp of what it was derived from — the
//! manifest (its version changes with every commit, forgetting included), the merge rules and
//! the splits — and reused while the stamp matches. A snapshot with events still in the log
//! tail is not covered by any manifest version, so it is never cached. The file holds key
//! numbers only, no identifier.
//!
//! Format: `CAIRNMAP` + version u32, stamp u128, key count u64, then the profile's lowest key
//! for every key (u32), all little-endian.

use std::io::Write;
use std::path::Path;

use cairn_store::{Snapshot, StoreError};

use crate::config::Config;
use crate::graph::ProfileMap;
use crate::splits::Splits;

pub const MAP_FILE: &str = "identity-map.bin";
const MAGIC: &[u8; 8] = b"CAIRNMAP";
const VERSION: u32 = 1;

/// What a map derived from `snapshot` under these rules is stamped with; `None` when the
/// snapshot holds log events (not described by the manifest alone).
fn stamp(snapshot: &Snapshot, config: &Config, splits: &Splits) -> Option<u128> {
    let in_segments: u64 = snapshot.segments().iter().map(|s| s.events).sum();
    (in_segments == snapshot.events()).then(|| data_stamp(snapshot, config, splits))
}

/// A digest of what identities derived from `snapshot` under these rules depend on: the
/// manifest version (changed by every flush, compaction and forget), its segments, the next
/// sequence number (changed by every append, log tail included), the number of customer keys,
/// the merge rules and the splits. Equal stamps of one data directory mean equal profiles.
pub fn data_stamp(snapshot: &Snapshot, config: &Config, splits: &Splits) -> u128 {
    let m = snapshot.manifest();
    let text = serde_json::json!({
        "manifest": m.version,
        "next_seq": snapshot.next_seq(),
        "segments": m.segments.iter().map(|s| s.id).collect::<Vec<_>>(),
        "keys": snapshot.key_count(),
        "config": config,
        "splits": splits,
    })
    .to_string();
    xxhash_rust::xxh3::xxh3_128(text.as_bytes())
}

/// The key → profile map of `snapshot`: from the cache file when it matches, else built from
/// the events and saved for the next command. Returns the map and whether it came from the
/// cache. A cache that cannot be written (read-only directory) is only a slower next command.
pub fn profile_map(
    dir: &Path,
    snapshot: &Snapshot,
    config: &Config,
    splits: &Splits,
) -> Result<(ProfileMap, bool), StoreError> {
    let stamp = stamp(snapshot, config, splits);
    if let Some(s) = stamp
        && let Some(map) = load(dir, s, snapshot.key_count())
    {
        return Ok((map, true));
    }
    let graph = crate::build(snapshot, config, splits)?;
    let map = graph.profile_map().clone();
    if let Some(s) = stamp {
        let _ = save(dir, s, &map, snapshot.key_count());
    }
    Ok((map, false))
}

fn load(dir: &Path, stamp: u128, keys: usize) -> Option<ProfileMap> {
    let bytes = std::fs::read(dir.join(MAP_FILE)).ok()?;
    let header = 8 + 4 + 16 + 8;
    if bytes.len() != header + 4 * keys || &bytes[..8] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    let version = u32_at(8);
    let found = u128::from_le_bytes(bytes[12..28].try_into().ok()?);
    let count = u64::from_le_bytes(bytes[28..36].try_into().ok()?);
    if version != VERSION || found != stamp || count != keys as u64 {
        return None;
    }
    let rep: Vec<u32> = (0..keys).map(|k| u32_at(header + 4 * k)).collect();
    ProfileMap::from_representatives(rep)
}

fn save(dir: &Path, stamp: u128, map: &ProfileMap, keys: usize) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(36 + 4 * keys);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&stamp.to_le_bytes());
    bytes.extend_from_slice(&(keys as u64).to_le_bytes());
    for k in 0..keys as u32 {
        bytes.extend_from_slice(&map.representative(k).to_le_bytes());
    }
    // A temporary file per process: readers run concurrently and may all save.
    let tmp = dir.join(format!("{MAP_FILE}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MAP_FILE))
}
