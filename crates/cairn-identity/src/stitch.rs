//! Retroactive stitching: scans that hand out *profiles* instead of store customers.
//!
//! The store keeps events under their raw ids, sorted by customer key; the keys of one profile
//! may be far apart in that order. A stitched scan is the store's grouped scan
//! ([`Snapshot::scan_grouped`]) with the profile map as the groups:
//! - a customer whose profile has one key passes straight through, as in a plain scan;
//! - a multi-key profile is read where the scan meets its first key: each key's run is
//!   decoded from the scan files straight into one buffer (the runs of the other keys are
//!   found by key, one array read in a compacted store), merged by time only when the runs
//!   interleave (rarely: browsing anonymously, then signed in, gives runs one after the
//!   other), and handed out as one customer; its other keys are skipped when the scan
//!   reaches them.
//!
//! So analyses see merged profiles without anything being rewritten, whatever order identifies
//! and events arrived in, and only multi-key profiles cost extra: no buffering until a
//! profile's last key comes by, no copy of a run that needs no merge. The item type is the
//! store's own [`Customer`]: an analysis written against [`Snapshot::scan`] switches by
//! changing one call. A stitched customer's `key` is the lowest customer key of its profile.
//!
//! Equal timestamps from different keys of a profile keep key order (the scan files do not
//! carry sequence numbers); within one key the store's (timestamp, seq) order is kept.

use cairn_store::{Columns, Customer, Snapshot, StoreError};

use crate::graph::ProfileMap;

/// Visits every profile once, with its merged events in time order, in the order of each
/// profile's first key that holds events.
pub fn scan_profiles(
    snapshot: &Snapshot,
    map: &ProfileMap,
    columns: Columns,
    visit: impl FnMut(Customer<'_>),
) -> Result<(), StoreError> {
    let group = |key| map.group(key).map(|(_, keys)| keys);
    snapshot.scan_grouped(columns, &group, visit)
}

/// [`Snapshot::scan_parallel`] over profiles: the same states, threads and callback. A
/// profile is visited by the thread whose key range holds its first key with events.
pub fn scan_profiles_parallel<S: Send>(
    snapshot: &Snapshot,
    map: &ProfileMap,
    columns: Columns,
    threads: usize,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, Customer<'_>) + Sync,
) -> Result<Vec<S>, StoreError> {
    let group = |key| map.group(key).map(|(_, keys)| keys);
    snapshot.scan_parallel_grouped(columns, &group, threads, init, visit)
}
