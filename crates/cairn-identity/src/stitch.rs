//! Retroactive stitching: scans that hand out *profiles* instead of store customers.
//!
//! The store keeps events under their raw ids, sorted by customer key; the keys of one profile
//! are usually far apart in that order. A stitched scan runs the store's scan and:
//! - passes a customer whose profile has one key straight through (no copy, the common case);
//! - copies the events of a key of a multi-key profile into a buffer, and once the last key of
//!   that profile has been seen, merges the buffered runs by time and hands out one customer.
//!
//! So analyses see merged profiles without anything being rewritten, whatever order identifies
//! and events arrived in, and only multi-key profiles cost extra. The item type is the store's
//! own [`Customer`]: an analysis written against [`Snapshot::scan`] switches by changing one
//! call. A stitched customer's `key` is the lowest customer key of its profile.
//!
//! Equal timestamps from different keys of a profile keep key order (the scan files do not
//! carry sequence numbers); within one key the store's (timestamp, seq) order is kept.

use std::collections::HashMap;

use crate::hash::FxMap;

use cairn_store::{Columns, Customer, Snapshot, StoreError};

use crate::graph::ProfileMap;

/// Visits every profile once, with its merged events in time order. Profiles of one key come
/// in key order; a multi-key profile comes when its last key has been scanned.
pub fn scan_profiles(
    snapshot: &Snapshot,
    map: &ProfileMap,
    columns: Columns,
    mut visit: impl FnMut(Customer<'_>),
) -> Result<(), StoreError> {
    let mut pending: FxMap<u32, Pending> = FxMap::default();
    let mut merged = Buffer::default();
    // Emptied buffers, reused: a scan merges many small profiles.
    let mut pool: Vec<Buffer> = Vec::new();
    // Times are needed to merge a profile's keys, even when the caller does not want them.
    let times_for = |key| columns.times || map.group(key).is_some();
    snapshot.scan_times_for(columns, &times_for, |c| {
        let Some((rep, keys)) = map.group(c.key) else {
            visit(c);
            return;
        };
        let p = pending.entry(rep).or_insert_with(|| Pending {
            missing: keys.len(),
            buffer: pool.pop().unwrap_or_default(),
        });
        p.buffer.push(&c, columns);
        p.missing -= 1;
        if p.missing == 0
            && let Some(mut p) = pending.remove(&rep)
        {
            p.buffer.merge_into(&mut merged);
            merged.visit(rep, columns, &mut visit);
            pool.push(p.buffer);
        }
    })?;
    // Keys the snapshot does not hold (a map built on another snapshot): hand out what came.
    let mut rest: Vec<(u32, Pending)> = pending.into_iter().collect();
    rest.sort_by_key(|(rep, _)| *rep);
    for (rep, mut p) in rest {
        p.buffer.merge_into(&mut merged);
        merged.visit(rep, columns, &mut visit);
    }
    Ok(())
}

/// [`Snapshot::scan_parallel`] over profiles: the same states, threads and callback. Profiles
/// whose keys all fall in one thread's range are merged there; the few spanning two ranges are
/// merged after the parallel part and visited with the state of the thread that saw their
/// lowest key.
pub fn scan_profiles_parallel<S: Send>(
    snapshot: &Snapshot,
    map: &ProfileMap,
    columns: Columns,
    threads: usize,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, Customer<'_>) + Sync,
) -> Result<Vec<S>, StoreError> {
    let times_for = |key| columns.times || map.group(key).is_some();
    let parts = snapshot.scan_parallel_times_for(
        columns,
        &times_for,
        threads,
        || (init(), HashMap::<u32, Pending>::new(), Buffer::default()),
        |(state, pending, merged), c| {
            let Some((rep, keys)) = map.group(c.key) else {
                visit(state, c);
                return;
            };
            let p = pending.entry(rep).or_insert_with(|| Pending {
                missing: keys.len(),
                buffer: Buffer::default(),
            });
            p.buffer.push(&c, columns);
            p.missing -= 1;
            if p.missing == 0
                && let Some(mut p) = pending.remove(&rep)
            {
                p.buffer.merge_into(merged);
                merged.visit(rep, columns, |c| visit(state, c));
            }
        },
    )?;
    // Join the pieces of profiles that span threads, thread by thread (= key order).
    let mut states = Vec::with_capacity(parts.len());
    let mut spanning: Vec<(u32, usize, Buffer)> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    for (t, (state, pending, _)) in parts.into_iter().enumerate() {
        states.push(state);
        let mut pieces: Vec<(u32, Pending)> = pending.into_iter().collect();
        pieces.sort_by_key(|(rep, _)| *rep);
        for (rep, p) in pieces {
            match index.get(&rep) {
                Some(&i) => spanning[i].2.append(p.buffer),
                None => {
                    index.insert(rep, spanning.len());
                    spanning.push((rep, t, p.buffer));
                }
            }
        }
    }
    let mut merged = Buffer::default();
    for (rep, t, mut buffer) in spanning {
        buffer.merge_into(&mut merged);
        merged.visit(rep, columns, |c| visit(&mut states[t], c));
    }
    Ok(states)
}

/// `dst` = `src` permuted by `order`; stays empty for a column not read.
fn pick<T: Copy>(order: &[u32], src: &[T], dst: &mut Vec<T>) {
    dst.clear();
    if !src.is_empty() {
        dst.extend(order.iter().map(|&i| src[i as usize]));
    }
}

struct Pending {
    /// Keys of the profile not scanned yet.
    missing: usize,
    buffer: Buffer,
}

/// Owned copies of customers' columns, concatenated.
#[derive(Default)]
struct Buffer {
    times: Vec<i64>,
    names: Vec<u16>,
    channels: Vec<u16>,
    values: Vec<f64>,
    properties: Vec<String>,
    /// Scratch for the merge order (used on the output buffer).
    order: Vec<u32>,
}

impl Buffer {
    fn push(&mut self, c: &Customer<'_>, columns: Columns) {
        self.times.extend_from_slice(c.times);
        if columns.names {
            self.names.extend_from_slice(c.names);
        }
        if columns.channels {
            self.channels.extend_from_slice(c.channels);
        }
        if columns.values {
            self.values.extend_from_slice(c.values);
        }
        if columns.properties {
            self.properties
                .extend(c.properties.iter().map(|p| p.to_string()));
        }
    }

    fn append(&mut self, mut other: Buffer) {
        self.times.append(&mut other.times);
        self.names.append(&mut other.names);
        self.channels.append(&mut other.channels);
        self.values.append(&mut other.values);
        self.properties.append(&mut other.properties);
    }

    /// Writes the events into `out` in time order (equal times keep buffer, i.e. key, order)
    /// and leaves `self` empty, its allocations kept for reuse.
    fn merge_into(&mut self, out: &mut Buffer) {
        if self.times.is_sorted() {
            // The keys' runs do not interleave (the usual case: browsing anonymously, then
            // signed in): the buffer is already the merge. Swap it out, no sort, no copy.
            std::mem::swap(&mut self.times, &mut out.times);
            std::mem::swap(&mut self.names, &mut out.names);
            std::mem::swap(&mut self.channels, &mut out.channels);
            std::mem::swap(&mut self.values, &mut out.values);
            std::mem::swap(&mut self.properties, &mut out.properties);
            self.times.clear();
            self.names.clear();
            self.channels.clear();
            self.values.clear();
            self.properties.clear();
            return;
        }
        let mut order = std::mem::take(&mut out.order);
        order.clear();
        order.extend(0..self.times.len() as u32);
        order.sort_by_key(|&i| self.times[i as usize]);
        pick(&order, &self.times, &mut out.times);
        pick(&order, &self.names, &mut out.names);
        pick(&order, &self.channels, &mut out.channels);
        pick(&order, &self.values, &mut out.values);
        out.properties.clear();
        if !self.properties.is_empty() {
            let props = &mut self.properties;
            out.properties.extend(
                order
                    .iter()
                    .map(|&i| std::mem::take(&mut props[i as usize])),
            );
        }
        out.order = order;
        self.times.clear();
        self.names.clear();
        self.channels.clear();
        self.values.clear();
        self.properties.clear();
    }

    /// Hands the merged events to `visit` as one customer.
    fn visit(&self, key: u32, columns: Columns, visit: impl FnOnce(Customer<'_>)) {
        let properties: Vec<&str> = self.properties.iter().map(String::as_str).collect();
        visit(Customer {
            key,
            times: if columns.times { &self.times } else { &[] },
            names: &self.names,
            channels: &self.channels,
            values: &self.values,
            properties: &properties,
        });
    }
}
