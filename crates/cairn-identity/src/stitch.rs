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

use crate::cache::Profiles;
use crate::graph::{ALONE, ProfileMap};

/// Which keys form one profile, as a stitched scan reads it: the arrays of a [`ProfileMap`]
/// (see its fields), borrowed from the map or from the mapped `identity-map.bin`
/// ([`Profiles`]), so a command that reads the cache builds nothing.
#[derive(Debug, Clone, Copy)]
pub struct Groups<'a> {
    group_of: &'a [u32],
    starts: &'a [u32],
    members: &'a [u32],
}

impl<'a> Groups<'a> {
    /// Arrays checked to describe a map (see `cache::check`), or taken from a [`ProfileMap`].
    pub(crate) fn new(group_of: &'a [u32], starts: &'a [u32], members: &'a [u32]) -> Groups<'a> {
        Groups {
            group_of,
            starts,
            members,
        }
    }

    /// All keys of the profile of `key` (ascending, so its lowest first) when it has several.
    #[inline]
    pub fn keys(&self, key: u32) -> Option<&'a [u32]> {
        let g = *self.group_of.get(key as usize)? as usize;
        if g == ALONE as usize {
            return None;
        }
        self.members
            .get(*self.starts.get(g)? as usize..*self.starts.get(g + 1)? as usize)
    }

    /// The key a stitched scan reports a profile under: its lowest key.
    pub fn representative(&self, key: u32) -> u32 {
        self.keys(key).map_or(key, |keys| keys[0])
    }

    /// Number of profiles with more than one key.
    pub fn multi_key_profiles(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }
}

impl<'a> From<&'a ProfileMap> for Groups<'a> {
    fn from(map: &'a ProfileMap) -> Groups<'a> {
        let (group_of, starts, members) = map.arrays();
        Groups::new(group_of, starts, members)
    }
}

impl<'a> From<&'a Profiles> for Groups<'a> {
    fn from(map: &'a Profiles) -> Groups<'a> {
        map.groups()
    }
}

/// Visits every profile once, with its merged events in time order, in the order of each
/// profile's first key that holds events.
pub fn scan_profiles<'a>(
    snapshot: &Snapshot,
    map: impl Into<Groups<'a>>,
    columns: Columns,
    visit: impl FnMut(Customer<'_>),
) -> Result<(), StoreError> {
    let map = map.into();
    let group = |key| map.keys(key);
    snapshot.scan_grouped(columns, &group, visit)
}

/// [`Snapshot::scan_parallel`] over profiles: the same states, threads and callback. A
/// profile is visited by the thread whose key range holds its first key with events.
pub fn scan_profiles_parallel<'a, S: Send>(
    snapshot: &Snapshot,
    map: impl Into<Groups<'a>>,
    columns: Columns,
    threads: usize,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, Customer<'_>) + Sync,
) -> Result<Vec<S>, StoreError> {
    let map = map.into();
    let group = |key| map.keys(key);
    snapshot.scan_parallel_grouped(columns, &group, threads, init, visit)
}
