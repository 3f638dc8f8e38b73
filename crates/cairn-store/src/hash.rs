//! Fast hashing for the import hot path, where std's SipHash would cost more than parsing:
//! FxHash (rustc's hasher, from `rustc-hash`). None of these maps hold attacker-chosen keys
//! across a trust boundary that could degrade them badly: keys are customer ids and 128-bit
//! message-id digests.

pub type FxHashMap<K, V> = rustc_hash::FxHashMap<K, V>;
pub type FxHashSet<K> = rustc_hash::FxHashSet<K>;

/// The 128-bit digest Cairn deduplicates message ids by. 128 bits make an accidental
/// collision (which would drop an event) negligible even over billions of events.
#[inline]
pub fn message_digest(message_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(message_id.as_bytes())
}

/// The set of stored message-id digests, in shards. Appends insert into it while holding the
/// store lock, and a hash set grows by rehashing everything it holds: at ten million digests
/// that is a few hundred milliseconds during which every request waits (the collection API's
/// worst latencies at a steady load). With [`DIGEST_SHARDS`] shards a growth rehashes one
/// shard's share, so the stall is that many times shorter; lookups cost the same.
#[derive(Debug)]
pub struct DigestSet {
    shards: Vec<FxHashSet<u128>>,
}

pub const DIGEST_SHARDS: usize = 64;

impl DigestSet {
    pub fn with_capacity(n: usize) -> DigestSet {
        let per_shard = n.div_ceil(DIGEST_SHARDS);
        DigestSet {
            shards: (0..DIGEST_SHARDS)
                .map(|_| FxHashSet::with_capacity_and_hasher(per_shard, Default::default()))
                .collect(),
        }
    }

    /// Digests are uniform in every bit (xxh3): the top ones pick the shard, and the shard's
    /// own hash of the whole digest places it inside.
    fn shard(d: u128) -> usize {
        (d >> (128 - DIGEST_SHARDS.trailing_zeros())) as usize
    }

    pub fn contains(&self, d: &u128) -> bool {
        self.shards[Self::shard(*d)].contains(d)
    }

    pub fn insert(&mut self, d: u128) -> bool {
        self.shards[Self::shard(d)].insert(d)
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }
}

impl Default for DigestSet {
    fn default() -> DigestSet {
        DigestSet::with_capacity(0)
    }
}

impl Extend<u128> for DigestSet {
    fn extend<I: IntoIterator<Item = u128>>(&mut self, digests: I) {
        for d in digests {
            self.insert(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_set_holds_what_was_put_in_it_across_its_shards() {
        let mut set = DigestSet::with_capacity(1000);
        assert!(set.is_empty());
        let digests: Vec<u128> = (0..1000)
            .map(|i| message_digest(&format!("m-{i}")))
            .collect();
        set.extend(digests.iter().copied());
        assert!(digests.iter().all(|d| set.contains(d)));
        assert!(!set.contains(&message_digest("m-1000")));
        assert!(!set.insert(digests[7]), "already there");
        let used = set.shards.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(used, DIGEST_SHARDS, "1000 digests reach every shard");
    }
}
