//! FxHash (rustc's hasher) for the graph's maps: one multiply-rotate per word. Building the
//! graph hashes every identifier of every event, and std's SipHash (or a streaming xxh3
//! state per key) cost more than everything else there. Keys are identifiers and node
//! numbers, not values chosen to collide across a trust boundary.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the entropy in the high bits, but hashbrown picks buckets with
        // the low ones: ids that differ only near their end ("anon-17-2", "anon-17-3") would
        // pile up in a few buckets. Rotating brings the good bits down (as rustc-hash 2 does).
        self.hash.rotate_left(26)
    }
}

/// Items grouped by a dense group number with a counting sort: the items of group `g` are
/// `items[starts[g]..starts[g + 1]]`, in the order they were given.
pub struct Groups {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Groups {
    pub fn new(groups: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Groups {
        let mut starts = vec![0u32; groups + 1];
        for (g, _) in pairs.clone() {
            starts[g as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut items = vec![0u32; starts[groups] as usize];
        for (g, item) in pairs {
            items[next[g as usize] as usize] = item;
            next[g as usize] += 1;
        }
        Groups { starts, items }
    }

    pub fn get(&self, group: u32) -> &[u32] {
        let g = group as usize;
        match (self.starts.get(g), self.starts.get(g + 1)) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Number of groups with at least one item.
    pub fn non_empty(&self) -> usize {
        self.starts.windows(2).filter(|w| w[1] > w[0]).count()
    }
}
