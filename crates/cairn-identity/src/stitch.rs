//! Retroactive stitching: scans that hand out *profiles* instead of store customers.
//!
//! The store keeps events under their raw ids, sorted by customer key; the keys of one profile
//! may be far apart in that order. A stitched scan is the store's grouped scan
//! ([`Snapshot::scan_grouped`]) with the profile map as the groups:
//! - a customer whose profile has one key passes straight through, as in a plain scan;
//! - a multi-key profile is read where the scan meets its last key: each key's run is
//!   decoded from the scan files straight into one buffer (the runs of the other keys are
//!   found by key, one array read in a compacted store), merged by time only when the runs
//!   interleave (rarely: browsing anonymously, then signed in, gives runs one after the
//!   other), and handed out as one customer; its other keys are skipped where the scan
//!   meets them.
//!
//! So analyses see merged profiles without anything being rewritten, whatever order identifies
//! and events arrived in, and only multi-key profiles cost extra: no buffering (the runs of
//! its earlier keys are read again from the scan files, just behind the scan), no copy of a
//! run that needs no merge. The item type is the
//! store's own [`Customer`]: an analysis written against [`Snapshot::scan`] switches by
//! changing one call. A stitched customer's `key` is the lowest customer key of its profile.
//!
//! Equal timestamps from different keys of a profile keep key order (the scan files do not
//! carry sequence numbers); within one key the store's (timestamp, seq) order is kept.

use cairn_store::{Columns, Customer, Snapshot, StoreError, Visit};

use crate::cache::Profiles;
use crate::graph::{ALONE, ProfileMap};

/// Which keys form one profile, as a stitched scan reads it: the arrays of a [`ProfileMap`]
/// (see its fields), borrowed from the map or from the mapped `identity-map.bin`
/// ([`Profiles`]), so a command that reads the cache builds nothing; or, from the file, the
/// smaller [`Ascending`] form of the same map.
#[derive(Debug, Clone, Copy)]
pub struct Groups<'a>(Layout<'a>);

#[derive(Debug, Clone, Copy)]
enum Layout<'a> {
    Arrays {
        group_of: &'a [u32],
        starts: &'a [u32],
        members: &'a [u32],
    },
    Ascending(Ascending<'a>),
}

/// A profile map whose `members` ascend across profiles too (each profile's keys are
/// neighbours among the keys of multi-key profiles: the usual map, where an anonymous id and
/// the id it signed in with get neighbouring keys), without the 4 bytes per key of
/// `group_of`: a stitched scan asks about every key, and on the VMs Cairn is measured on,
/// reading those 4 bytes per key the first time in a process cost more than the rest of the
/// stitching (a third of the map's bytes are left to read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ascending<'a> {
    /// Bit `k % 64` of word `k / 64`: whether key `k`'s profile has other keys.
    pub(crate) grouped: &'a [u64],
    /// Per word of `grouped`: the bits set in the words before it (where its first key is
    /// in `members`).
    pub(crate) ranks: &'a [u32],
    /// The keys of every multi-key profile, ascending.
    pub(crate) members: &'a [u32],
    /// One bit per entry of `members` (as in `grouped`): set where a profile's keys start.
    pub(crate) firsts: &'a [u64],
    /// Number of multi-key profiles.
    pub(crate) profiles: usize,
}

impl<'a> Ascending<'a> {
    #[inline]
    fn keys(&self, key: u32) -> Option<&'a [u32]> {
        let (w, b) = ((key / 64) as usize, key % 64);
        let word = *self.grouped.get(w)?;
        if word >> b & 1 == 0 {
            return None;
        }
        let i = *self.ranks.get(w)? as usize + (word & ((1u64 << b) - 1)).count_ones() as usize;
        let start = last_set_up_to(self.firsts, i);
        let end = first_set_from(self.firsts, i + 1).min(self.members.len());
        self.members.get(start..end)
    }
}

/// The position of the last bit set at or before position `i` of `bits` (0 when none).
fn last_set_up_to(bits: &[u64], i: usize) -> usize {
    let mut w = i / 64;
    let mut word = bits.get(w).map_or(0, |&x| x & (u64::MAX >> (63 - i % 64)));
    loop {
        if word != 0 {
            return w * 64 + 63 - word.leading_zeros() as usize;
        }
        let Some(before) = w.checked_sub(1) else {
            return 0;
        };
        w = before;
        word = bits.get(w).copied().unwrap_or(0);
    }
}

/// The position of the first bit set at or after position `i` of `bits` (`usize::MAX` when
/// none).
pub(crate) fn first_set_from(bits: &[u64], i: usize) -> usize {
    let mut w = i / 64;
    let Some(&first) = bits.get(w) else {
        return usize::MAX;
    };
    let mut word = first & (u64::MAX << (i % 64));
    loop {
        if word != 0 {
            return w * 64 + word.trailing_zeros() as usize;
        }
        w += 1;
        match bits.get(w) {
            Some(&x) => word = x,
            None => return usize::MAX,
        }
    }
}

impl<'a> Groups<'a> {
    /// Arrays checked to describe a map (see `cache::check`), or taken from a [`ProfileMap`].
    pub(crate) fn new(group_of: &'a [u32], starts: &'a [u32], members: &'a [u32]) -> Groups<'a> {
        Groups(Layout::Arrays {
            group_of,
            starts,
            members,
        })
    }

    /// An [`Ascending`] map checked by `cache::check_ascending`.
    pub(crate) fn ascending(map: Ascending<'a>) -> Groups<'a> {
        Groups(Layout::Ascending(map))
    }

    /// All keys of the profile of `key` (ascending, so its lowest first) when it has several.
    #[inline]
    pub fn keys(&self, key: u32) -> Option<&'a [u32]> {
        match self.0 {
            Layout::Arrays {
                group_of,
                starts,
                members,
            } => {
                let g = *group_of.get(key as usize)? as usize;
                if g == ALONE as usize {
                    return None;
                }
                members.get(*starts.get(g)? as usize..*starts.get(g + 1)? as usize)
            }
            Layout::Ascending(map) => map.keys(key),
        }
    }

    /// The key a stitched scan reports a profile under: its lowest key.
    pub fn representative(&self, key: u32) -> u32 {
        self.keys(key).map_or(key, |keys| keys[0])
    }

    /// Number of profiles with more than one key.
    pub fn multi_key_profiles(&self) -> usize {
        match self.0 {
            Layout::Arrays { starts, .. } => starts.len().saturating_sub(1),
            Layout::Ascending(map) => map.profiles,
        }
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
/// profile's last key that holds events.
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

/// [`Snapshot::scan_sample_parallel`] over profiles: about one profile in `every`, those
/// whose last key with events is in the sample's keys.
pub fn scan_profiles_sample_parallel<'a, S: Send>(
    snapshot: &Snapshot,
    map: impl Into<Groups<'a>>,
    columns: Columns,
    every: u32,
    threads: usize,
    init: impl Fn() -> S + Sync,
    visit: impl Visit<S>,
) -> Result<Vec<S>, StoreError> {
    let map = map.into();
    let group = |key| map.keys(key);
    snapshot.scan_sample_parallel_grouped(columns, every, &group, threads, init, visit)
}

/// [`Snapshot::scan_parallel`] over profiles: the same states, threads and callback. A
/// profile is visited by the thread whose key range holds its last key with events.
pub fn scan_profiles_parallel<'a, S: Send>(
    snapshot: &Snapshot,
    map: impl Into<Groups<'a>>,
    columns: Columns,
    threads: usize,
    init: impl Fn() -> S + Sync,
    visit: impl Visit<S>,
) -> Result<Vec<S>, StoreError> {
    let map = map.into();
    let group = |key| map.keys(key);
    snapshot.scan_parallel_grouped(columns, &group, threads, init, visit)
}
