//! The hash maps analyses build per customer: FxHash (rustc's hasher, from `rustc-hash`), one
//! multiply-rotate per word. Keys are small integers and short id sequences, not
//! attacker-chosen strings, so std's DoS-resistant SipHash would only cost time.

pub type FxHashMap<K, V> = rustc_hash::FxHashMap<K, V>;
