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
