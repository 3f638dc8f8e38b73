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
//! The file holds the [`ProfileMap`]'s own arrays, so a command maps it and reads it in place
//! (page-cache pages, nothing copied or rebuilt); they are checked once on load (sizes, every
//! multi-key profile's keys ascending and pointing back to it), since a stitched scan trusts
//! them. A file that fails any check is ignored and the map built again.
//!
//! Format, all little-endian u32 unless said: `CAIRNMAP`, version, layout, stamp (u128), key
//! count K (u64), multi-key profile count G (u64), member count M (u64); then
//! - layout 0: `group_of` (one per key), `starts` (G + 1), `members` (M);
//! - layout 1, when `members` ascends across profiles too (the usual map; see
//!   [`Ascending`]): `grouped` (⌈K / 64⌉ u64), `firsts` (⌈M / 64⌉ u64), `ranks` (⌈K / 64⌉),
//!   `members` (M). A third of layout 0's bytes, which a command reads all of.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use cairn_store::{Snapshot, StoreError};

use crate::config::Config;
use crate::graph::ALONE;
use crate::graph::ProfileMap;
use crate::splits::Splits;
use crate::stitch::{Ascending, Groups};

pub const MAP_FILE: &str = "identity-map.bin";
const MAGIC: &[u8; 8] = b"CAIRNMAP";
/// 1 held each key's representative and was rebuilt into a map by every command; 2 had
/// layout 0 only.
const VERSION: u32 = 3;
const ARRAYS: u32 = 0;
const ASCENDING: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 16 + 8 + 8 + 8;

/// The key → profile map a command stitches with: mapped from the cache file, or built.
pub struct Profiles {
    inner: Inner,
}

enum Inner {
    /// The file, checked; `keys`, `groups` and `members` are the counts K, G and M of its
    /// header.
    Mapped {
        map: memmap2::Mmap,
        ascending: bool,
        keys: usize,
        groups: usize,
        members: usize,
    },
    Built(ProfileMap),
}

impl Profiles {
    /// The map as stitched scans read it.
    pub fn groups(&self) -> Groups<'_> {
        match &self.inner {
            Inner::Mapped {
                map,
                ascending: false,
                keys,
                groups,
                ..
            } => {
                let (group_of, starts, members) = split(map, *keys, *groups);
                Groups::new(group_of, starts, members)
            }
            Inner::Mapped {
                map,
                ascending: true,
                keys,
                groups,
                members,
            } => Groups::ascending(split_ascending(map, *keys, *groups, *members)),
            Inner::Built(map) => map.into(),
        }
    }

    /// The key a stitched scan reports a profile under: its lowest key.
    pub fn representative(&self, key: u32) -> u32 {
        self.groups().representative(key)
    }

    /// Number of profiles with more than one key.
    pub fn multi_key_profiles(&self) -> usize {
        self.groups().multi_key_profiles()
    }
}

/// The three arrays of a mapped file whose size matched its header: `u32`s from offset
/// `HEADER` (a multiple of 4) of a page-aligned mapping, so the casts cannot fail.
fn split(map: &[u8], keys: usize, groups: usize) -> (&[u32], &[u32], &[u32]) {
    let all: &[u32] = bytemuck::cast_slice(&map[HEADER..]);
    let (group_of, rest) = all.split_at(keys);
    let (starts, members) = rest.split_at(groups + 1);
    (group_of, starts, members)
}

/// Words of layout 1 after the header: (u64 words of `grouped`, of `firsts`), for K keys and
/// M members.
fn ascending_words(keys: usize, members: usize) -> (usize, usize) {
    (keys.div_ceil(64), members.div_ceil(64))
}

/// The arrays of a mapped layout-1 file whose size matched its header (all offsets multiples
/// of 8 into a page-aligned mapping, the `u32` arrays last, so the casts cannot fail).
fn split_ascending(map: &[u8], keys: usize, groups: usize, members: usize) -> Ascending<'_> {
    let (wk, wm) = ascending_words(keys, members);
    let words: &[u64] = bytemuck::cast_slice(&map[HEADER..HEADER + 8 * (wk + wm)]);
    let (grouped, firsts) = words.split_at(wk);
    let rest: &[u32] = bytemuck::cast_slice(&map[HEADER + 8 * (wk + wm)..]);
    let (ranks, members) = rest.split_at(wk);
    Ascending {
        grouped,
        ranks,
        members,
        firsts,
        profiles: groups,
    }
}

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
) -> Result<(Profiles, bool), StoreError> {
    let stamp = stamp(snapshot, config, splits);
    if let Some(s) = stamp
        && let Some(map) = load(dir, s, snapshot.key_count())
    {
        return Ok((map, true));
    }
    let graph = crate::build(snapshot, config, splits)?;
    let map = graph.profile_map().clone();
    if let Some(s) = stamp {
        let _ = save(dir, s, &map);
    }
    let map = Profiles {
        inner: Inner::Built(map),
    };
    Ok((map, false))
}

fn load(dir: &Path, stamp: u128, keys: usize) -> Option<Profiles> {
    // The arrays are read in place, as little-endian words.
    if cfg!(target_endian = "big") {
        return None;
    }
    let file = File::open(dir.join(MAP_FILE)).ok()?;
    // SAFETY: the file is never modified in place: `save` writes a new file and renames it
    // over this one, which leaves the mapped file as it was.
    // Populated: every page is read right away by the check below, and mapping them in one
    // call cost less than a fault per few pages (1 ms less at 1 M keys).
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.ok()?;
    let bytes: &[u8] = &map;
    let word = |i: usize| {
        bytes
            .get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let layout = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
    let found = u128::from_le_bytes(bytes[16..32].try_into().ok()?);
    let (count, groups, members) = (word(32)?, word(40)?, word(48)?);
    if version != VERSION || found != stamp || count != keys as u64 {
        return None;
    }
    if layout == ASCENDING {
        let (groups, members) = (
            usize::try_from(groups).ok()?,
            usize::try_from(members).ok()?,
        );
        let (wk, wm) = ascending_words(keys, members);
        let size = wk
            .checked_add(wm)?
            .checked_mul(8)?
            .checked_add(wk.checked_add(members)?.checked_mul(4)?)?;
        if bytes.len() != size.checked_add(HEADER)? {
            return None;
        }
        if !valid_ascending(keys, &split_ascending(bytes, keys, groups, members)) {
            return None;
        }
        return Some(Profiles {
            inner: Inner::Mapped {
                map,
                ascending: true,
                keys,
                groups,
                members,
            },
        });
    }
    let words = (keys as u64)
        .checked_add(groups)?
        .checked_add(1)?
        .checked_add(members)?;
    if layout != ARRAYS || bytes.len() as u64 != words.checked_mul(4)?.checked_add(HEADER as u64)? {
        return None;
    }
    let groups = groups as usize;
    let (group_of, starts, members) = split(bytes, keys, groups);
    if !valid(group_of, starts, members) {
        return None;
    }
    let members = members.len();
    Some(Profiles {
        inner: Inner::Mapped {
            map,
            ascending: false,
            keys,
            groups,
            members,
        },
    })
}

/// Whether the arrays describe a profile map that a stitched scan can trust: `starts` cut
/// `members` into profiles of at least two keys, each ascending, each key pointing back to
/// its profile in `group_of`, and no other key pointing to any profile.
fn valid(group_of: &[u32], starts: &[u32], members: &[u32]) -> bool {
    if starts.first() != Some(&0) || starts.last().map(|&s| s as usize) != Some(members.len()) {
        return false;
    }
    // Both passes read megabytes of a file mapped just now, before any stitched scan can
    // start (4 ms at 1 M keys on one thread): so they run side by side, and as folds
    // without early exits, so that the lookups (one per member, all over `group_of`)
    // overlap instead of each waiting on a branch.
    let profiles_hold_their_keys = || {
        let mut ok = true;
        for (g, w) in starts.windows(2).enumerate() {
            let keys = members
                .get(w[0] as usize..w[1] as usize)
                .unwrap_or_default();
            ok &= w[1] >= w[0].saturating_add(2);
            ok &= keys.windows(2).fold(true, |ok, p| ok & (p[0] < p[1]));
            ok &= (keys.iter()).fold(true, |ok, &k| {
                ok & (group_of.get(k as usize) == Some(&(g as u32)))
            });
        }
        ok
    };
    std::thread::scope(|scope| {
        let grouped = scope.spawn(|| group_of.iter().filter(|&&g| g != ALONE).count());
        profiles_hold_their_keys() && grouped.join().is_ok_and(|n| n == members.len())
    })
}

/// [`valid`] for layout 1, over `keys` keys: `members` strictly ascending below `keys`, each
/// with its bit in `grouped` and no other bit set there, `ranks` counting those bits, and
/// `firsts` cutting `members` into profiles of at least two keys, as many as the header says.
/// Then a key's profile, found by its rank, holds it, and only its profile does.
fn valid_ascending(keys: usize, map: &Ascending<'_>) -> bool {
    // Every stitched command checks the whole map before its scan can start, and a map is
    // almost always valid: so the checks run without early exits, as folds the compiler
    // can unroll (a branch and a call per key and per profile took 4 ms at 1 M keys).
    let members = map.members;
    let ascending = members.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]));
    if !ascending || members.last().is_some_and(|&k| k as usize >= keys) {
        return false;
    }
    // Below `keys`, so every member's word exists.
    let bit = |bits: &[u64], i: usize| bits.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1);
    if !members
        .iter()
        .fold(true, |ok, &k| ok & bit(map.grouped, k as usize))
    {
        return false;
    }
    let mut set = 0u64;
    for (w, &rank) in map.grouped.iter().zip(map.ranks) {
        if rank as u64 != set {
            return false;
        }
        set += w.count_ones() as u64;
    }
    if set != members.len() as u64 {
        return false;
    }
    // Profiles start at the set bits of `firsts`: the first at 0, each two or more after
    // the one before, the last two or more before the end.
    let (mut profiles, mut spaced) = (0usize, true);
    let mut next_allowed = 0usize;
    let mut last = None;
    for (w, &word) in map.firsts.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let at = w * 64 + rest.trailing_zeros() as usize;
            rest &= rest - 1;
            spaced &= at >= next_allowed && (last.is_some() || at == 0);
            next_allowed = at + 2;
            last = Some(at);
            profiles += 1;
        }
    }
    let ends_well = match last {
        None => members.is_empty(),
        Some(at) => at + 2 <= members.len(),
    };
    spaced && ends_well && profiles == map.profiles
}

fn save(dir: &Path, stamp: u128, map: &ProfileMap) -> std::io::Result<()> {
    let (group_of, starts, members) = map.arrays();
    // An empty (default) map has no `starts` at all; the file always has G + 1 of them.
    let starts: &[u32] = if starts.is_empty() { &[0] } else { starts };
    let ascending = members.is_sorted_by(|a, b| a < b);
    let words = group_of.len() + starts.len() + members.len();
    let mut bytes = Vec::with_capacity(HEADER + 4 * words);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    let layout = if ascending { ASCENDING } else { ARRAYS };
    bytes.extend_from_slice(&layout.to_le_bytes());
    bytes.extend_from_slice(&stamp.to_le_bytes());
    for n in [group_of.len(), starts.len() - 1, members.len()] {
        bytes.extend_from_slice(&(n as u64).to_le_bytes());
    }
    if ascending {
        let (wk, wm) = ascending_words(group_of.len(), members.len());
        let mut grouped = vec![0u64; wk];
        for (k, _) in group_of.iter().enumerate().filter(|(_, g)| **g != ALONE) {
            grouped[k / 64] |= 1 << (k % 64);
        }
        let mut firsts = vec![0u64; wm];
        for &s in &starts[..starts.len() - 1] {
            firsts[s as usize / 64] |= 1 << (s % 64);
        }
        for w in grouped.iter().chain(&firsts) {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        let mut set = 0u32;
        for w in &grouped {
            bytes.extend_from_slice(&set.to_le_bytes());
            set += w.count_ones();
        }
        for w in members {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
    } else {
        for array in [group_of, starts, members] {
            for w in array {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
    }
    // A temporary file per process: readers run concurrently and may all save.
    let tmp = dir.join(format!("{MAP_FILE}.{}.tmp", std::process::id()));
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MAP_FILE))
}

#[cfg(test)]
mod tests {
    use cairn_model::{Event, EventKind};
    use cairn_store::{Options, Store};

    use super::*;

    /// Profiles {0, 2}, {1, 3, 5}; 4 and 6 alone.
    fn map() -> ProfileMap {
        ProfileMap::from_representatives(vec![0, 1, 0, 1, 4, 1, 6]).expect("valid")
    }

    fn reps(p: &Profiles, keys: u32) -> Vec<u32> {
        (0..keys).map(|k| p.representative(k)).collect()
    }

    fn saved(map: &ProfileMap, stamp: u128) -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), stamp, map).unwrap();
        let bytes = std::fs::read(dir.path().join(MAP_FILE)).unwrap();
        (dir, bytes)
    }

    #[test]
    fn a_saved_map_is_mapped_back_as_it_was() {
        let (dir, _) = saved(&map(), 7);
        let p = load(dir.path(), 7, 7).expect("a matching file");
        assert!(matches!(p.inner, Inner::Mapped { .. }));
        assert_eq!(reps(&p, 7), [0, 1, 0, 1, 4, 1, 6]);
        assert_eq!(p.multi_key_profiles(), 2);
        assert_eq!(p.groups().keys(5), Some(&[1, 3, 5][..]));
        assert_eq!(p.groups().keys(4), None);
        // A map without any multi-key profile, and the empty one.
        let (dir, _) = saved(&ProfileMap::from_representatives(vec![0, 1]).unwrap(), 1);
        assert_eq!(load(dir.path(), 1, 2).unwrap().multi_key_profiles(), 0);
        let (dir, _) = saved(&ProfileMap::default(), 1);
        assert_eq!(load(dir.path(), 1, 0).unwrap().multi_key_profiles(), 0);
    }

    /// 300 keys: profiles of 2 to 5 neighbouring keys (some across 64-key words), every
    /// third stretch of keys alone; `members` ascends, so the file takes layout 1.
    fn neighbours() -> ProfileMap {
        let (mut rep, mut k, mut size) = (Vec::new(), 0u32, 2);
        while k < 300 {
            if k % 3 == 0 {
                rep.push(k);
                k += 1;
                continue;
            }
            let n = size.min(300 - k);
            rep.extend(std::iter::repeat_n(k, n as usize));
            k += n;
            size = size % 5 + 2;
        }
        ProfileMap::from_representatives(rep).expect("valid")
    }

    #[test]
    fn a_map_of_neighbouring_keys_is_saved_smaller_and_reads_the_same() {
        let map = neighbours();
        let (dir, bytes) = saved(&map, 7);
        let (group_of, starts, members) = map.arrays();
        assert!(bytes.len() < HEADER + 4 * (group_of.len() + starts.len() + members.len()) / 2);
        let p = load(dir.path(), 7, 300).expect("a matching file");
        assert!(matches!(
            p.inner,
            Inner::Mapped {
                ascending: true,
                ..
            }
        ));
        let want = Groups::from(&map);
        assert!(want.multi_key_profiles() > 50);
        assert_eq!(p.multi_key_profiles(), want.multi_key_profiles());
        for k in 0..400 {
            assert_eq!(p.groups().keys(k), want.keys(k), "key {k}");
        }
        // Where word `i` after the header is (u32 words): grouped 0..10, firsts, ranks, members.
        let (wk, wm) = ascending_words(300, members.len());
        let (ranks, member) = (2 * (wk + wm), 2 * (wk + wm) + wk);
        fn at(i: usize) -> usize {
            HEADER + 4 * i
        }
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let last = members.len() - 1;
        let damaged: [(&str, Damage); 8] = [
            ("cut short", Box::new(|b| b.truncate(b.len() - 4))),
            ("profile count", Box::new(|b| b[40] += 1)),
            ("a rank off", Box::new(move |b| b[at(ranks + 1)] += 1)),
            ("a grouped key's bit cleared", Box::new(|b| b[at(0)] &= !2)),
            ("a lone key's bit set", Box::new(|b| b[at(0)] |= 1)),
            (
                "a profile of one key",
                Box::new(move |b| b[at(2 * wk)] |= 2),
            ),
            (
                "members not ascending",
                Box::new(move |b| b[at(member)] = 9),
            ),
            (
                "a last profile of one key",
                Box::new(move |b| b[at(2 * wk) + last / 8] |= 1 << (last % 8)),
            ),
        ];
        let path = dir.path().join(MAP_FILE);
        for (what, damage) in damaged {
            let mut bytes = bytes.clone();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            assert!(load(dir.path(), 7, 300).is_none(), "{what}");
        }
    }

    #[test]
    fn a_stale_or_damaged_map_file_is_not_used() {
        let (dir, good) = saved(&map(), 7);
        let path = dir.path().join(MAP_FILE);
        assert!(load(dir.path(), 8, 7).is_none(), "another stamp");
        assert!(load(dir.path(), 7, 8).is_none(), "another key count");
        // Where word `i` after the header is: group_of 0..7, starts 7..10, members 10..15
        // (0 2 | 1 3 5).
        fn word(i: usize) -> usize {
            HEADER + 4 * i
        }
        type Damage = fn(&mut Vec<u8>);
        let damaged: [(&str, Damage); 12] = [
            ("cut short", |b| b.truncate(b.len() - 4)),
            ("a word too long", |b| b.extend_from_slice(&[0; 4])),
            ("header only", |b| b.truncate(HEADER)),
            ("empty", |b| b.clear()),
            ("another magic", |b| b[0] = b'X'),
            ("version 1", |b| {
                b[8..12].copy_from_slice(&1u32.to_le_bytes())
            }),
            ("profile count", |b| b[40] = 3),
            ("members not ascending", |b| {
                b[word(10)..word(12)].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0])
            }),
            ("a member of another profile", |b| {
                b[word(3)..word(4)].copy_from_slice(&0u32.to_le_bytes())
            }),
            ("a lone key claiming a profile", |b| {
                b[word(4)..word(5)].copy_from_slice(&1u32.to_le_bytes())
            }),
            ("a profile of one key", |b| {
                b[word(8)..word(9)].copy_from_slice(&1u32.to_le_bytes())
            }),
            ("a member beyond the keys", |b| {
                b[word(14)..word(15)].copy_from_slice(&9u32.to_le_bytes())
            }),
        ];
        for (what, damage) in damaged {
            let mut bytes = good.clone();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            assert!(load(dir.path(), 7, 7).is_none(), "{what}");
        }
        std::fs::write(&path, &good).unwrap();
        assert!(load(dir.path(), 7, 7).is_some(), "the undamaged file again");
    }

    fn event(msg: &str, kind: EventKind, user: Option<&str>, anon: Option<&str>) -> Event {
        Event {
            message_id: msg.into(),
            kind,
            event: "page_view".into(),
            user_id: user.map(Into::into),
            anonymous_id: anon.map(Into::into),
            timestamp: 1_000_000,
            channel: "web".into(),
            ..Event::default()
        }
    }

    #[test]
    fn a_command_rebuilds_and_rewrites_a_damaged_map_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let mut txn = store.import().unwrap();
        txn.add(vec![
            event("1", EventKind::Track, None, Some("anon-a")),
            event("2", EventKind::Track, Some("ann"), None),
            event("3", EventKind::Identify, Some("ann"), Some("anon-a")),
            event("4", EventKind::Track, Some("bob"), None),
        ])
        .unwrap();
        txn.commit().unwrap();
        let snap = store.snapshot().unwrap();
        let (config, splits) = (Config::default(), Splits::default());
        let run = || profile_map(dir.path(), &snap, &config, &splits).unwrap();
        let (built, cached) = run();
        assert!(!cached);
        let want = reps(&built, snap.key_count() as u32);
        assert_eq!(built.multi_key_profiles(), 1);
        let (p, cached) = run();
        assert!(cached && matches!(p.inner, Inner::Mapped { .. }));
        assert_eq!(reps(&p, snap.key_count() as u32), want);
        // A lone key claims to be in a profile (its bit in `grouped`, the first word of
        // layout 1): the file is ignored, the map built and saved again.
        assert!(matches!(
            p.inner,
            Inner::Mapped {
                ascending: true,
                ..
            }
        ));
        let path = dir.path().join(MAP_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let bob = snap.customer_key("bob").unwrap() as usize;
        assert!(bob < 8 && p.groups().keys(bob as u32).is_none());
        bytes[HEADER] |= 1 << bob;
        std::fs::write(&path, &bytes).unwrap();
        let (p, cached) = run();
        assert!(!cached);
        assert_eq!(reps(&p, snap.key_count() as u32), want);
        assert!(run().1, "rewritten for the next command");
    }
}
