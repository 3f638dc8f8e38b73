//! The identity graph: identifiers as nodes, "seen together on one message" as edges, and
//! profiles as the connected parts that the merge rules allow.
//!
//! # Why the result does not depend on arrival order
//!
//! The builder only collects: every link with the message that shows it (by event time, then
//! a hash of the message id, then the message id itself). Resolution then sorts the links by
//! that (time, message) order — within one message, from the link of the highest-priority
//! identifier down — and runs a union-find over them, refusing any union that would break a
//! limit. Sorting uses only what the events say, never when or in which order they arrived,
//! so the same events give the same profiles, merges and conflicts whether an identify came
//! before, between or after the events it explains. Node numbers are the rank of an
//! identifier's digest, so they do not depend on arrival order either.
//!
//! # How identifiers become nodes
//!
//! Intake does not look identifiers up. It appends each one it meets (a *sighting*: its kind
//! and text) to a list, and links refer to sightings. Resolution computes the 128-bit digest
//! of every sighting's kind and value, sorts the sightings by digest (both on two threads),
//! and each run of equal digests becomes one node. A hash map from digest to node did the same with a cache miss per
//! identifier, and with its growth — gigabytes of fresh pages for ten million identifiers — it
//! was half of the build's time. The sorted digests are also the graph's index: finding an
//! identifier is a binary search. A customer's run of events in a scan names the same ids
//! again and again; the builder remembers the last identifier of each kind, so such a run is
//! one sighting.
//!
//! Customer keys of the store come in as well: events are filed under their raw `userId`, else
//! `anonymousId`, so a key is the node of that raw id. A raw id that was sent once as a user id
//! and once as an anonymous id is one key in the store, so its two nodes are joined
//! unconditionally before any edge.

use std::cmp::Ordering;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use cairn_model::{Event, EventKind, Micros};
use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::config::Config;
use crate::extract;
use crate::ident::{IdKind, Identifier, is_blocked};
use crate::idents::{Idents, Texts};
use crate::splits::Splits;

use crate::hash::{FxSet, Groups, PREFETCH_AHEAD, prefetch};

const NONE: u32 = u32::MAX;

/// The message that shows an edge: the earliest one wins.
#[derive(Debug, Clone, Copy)]
struct Cause {
    time: Micros,
    /// xxh3 of the message id: a cheap, order-independent tie-break before comparing texts.
    hash: u64,
    msg: u32,
}

/// A sighting in resolution: the digest of its kind and value in two halves, then its
/// occurrence number (high 32 bits) and kind number (low 32 bits). Plain integers, so that
/// the list is allocated zeroed and its pages are first touched by the thread that fills them.
type Sighting = [u64; 3];

fn sighting_digest(s: &Sighting) -> u128 {
    (u128::from(s[0]) << 64) | u128::from(s[1])
}

/// An identifier of the event being added.
struct Found {
    rank: u32,
    occ: u32,
}

/// The last identifier of a kind: a scan hands over a customer's events one after another,
/// each with the same ids, so most identifiers end here as the sighting they already are.
struct Recent {
    kind: IdKind,
    value: String,
    occ: u32,
}

/// Collects identifiers and edges from events, in any order; [`GraphBuilder::finish`] resolves.
pub struct GraphBuilder {
    config: Config,
    /// The kind and text of every sighting, by occurrence number.
    idents: Idents,
    /// Per store key, a sighting of its raw id as a user id and one as an anonymous id
    /// (`NONE` where not seen).
    key_occ: Vec<[u32; 2]>,
    /// Every link as it came (its two sightings, smaller first, and its cause). Kept as a
    /// list, not a map of distinct pairs: appending touches memory in order. A repeated pair
    /// costs nothing at resolution (its later copies join nodes already joined); the run of
    /// one customer's events in a scan, which repeats the same pair, is folded as it comes.
    /// An alias's link is `(NONE, sighting)`: its other end is the alias's previous id.
    edges: Vec<((u32, u32), Cause)>,
    messages: Messages,
    /// Alias `previousId`s, in the order of their links in `edges`, resolved to a kind once
    /// all user ids are known (stored as anonymous ids until then).
    aliases: Idents,
    /// The current event's identifiers.
    found: Vec<Found>,
    recent: Vec<Recent>,
}

/// The 128-bit digest identifiers are interned by: kind, a separator no kind name holds, value.
fn digest(buf: &mut Vec<u8>, kind: &IdKind, value: &str) -> u128 {
    buf.clear();
    buf.extend_from_slice(kind.as_str().as_bytes());
    buf.push(0xff);
    buf.extend_from_slice(value.as_bytes());
    xxh3_128(buf)
}

/// The sighting of (kind, value): the last one of that kind when it is the same, else new.
fn sight_recent(recent: &mut Vec<Recent>, idents: &mut Idents, kind: &IdKind, value: &str) -> u32 {
    match recent.iter_mut().find(|r| &r.kind == kind) {
        Some(r) if r.value == value => r.occ,
        Some(r) => {
            let k = idents.kind_number(kind);
            r.occ = idents.push(k, value);
            r.value.clear();
            r.value.push_str(value);
            r.occ
        }
        None => {
            let k = idents.kind_number(kind);
            let occ = idents.push(k, value);
            recent.push(Recent {
                kind: kind.clone(),
                value: value.to_string(),
                occ,
            });
            occ
        }
    }
}

impl GraphBuilder {
    pub fn new(config: Config) -> GraphBuilder {
        GraphBuilder {
            config,
            idents: Idents::default(),
            key_occ: Vec::new(),
            edges: Vec::new(),
            messages: Messages::default(),
            aliases: Idents::default(),
            found: Vec::new(),
            recent: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adds one event; `key` is its customer key in the store, when it comes from one.
    pub fn add(&mut self, key: Option<u32>, event: &Event) {
        if let Some(key) = key {
            self.add_key(key, event);
        }
        let GraphBuilder {
            config,
            idents,
            found,
            recent,
            ..
        } = self;
        found.clear();
        extract::visit(event, config, &mut |kind, value| {
            let occ = sight_recent(recent, idents, kind, value);
            if !found.iter().any(|f| idents.cmp(f.occ, occ).is_eq()) {
                found.push(Found {
                    rank: config.rank(kind),
                    occ,
                });
            }
        });
        let alias = match (event.kind, event.previous_id.as_deref()) {
            (EventKind::Alias, Some(prev)) if !is_blocked(prev) => Some(prev),
            _ => None,
        };
        // Nothing to link: one identifier alone, unless an alias names the other one.
        let links = found.len() >= 2 || (alias.is_some() && !found.is_empty());
        if !links {
            return;
        }
        // The star's centre is the event's highest-priority identifier (the smallest, among
        // equals: never the first seen, which would depend on arrival order); every other
        // one is linked to it.
        let idents = &self.idents;
        self.found
            .sort_unstable_by(|a, b| a.rank.cmp(&b.rank).then_with(|| idents.cmp(a.occ, b.occ)));
        let cause = Cause {
            time: event.timestamp,
            hash: xxh3_64(event.message_id.as_bytes()),
            msg: self.messages.len(),
        };
        self.messages.push(&event.message_id);
        let found = std::mem::take(&mut self.found);
        let centre = found[0].occ;
        for f in &found[1..] {
            self.add_edge(centre, f.occ, cause);
        }
        self.found = found;
        if let Some(prev) = alias {
            let anon = self.aliases.kind_number(&IdKind::AnonymousId);
            self.aliases.push(anon, prev);
            self.edges.push(((NONE, centre), cause));
        }
    }

    fn add_key(&mut self, key: u32, event: &Event) {
        let (kind, slot) = if event.user_id.is_some() {
            (IdKind::UserId, 0)
        } else {
            (IdKind::AnonymousId, 1)
        };
        let occ = sight_recent(
            &mut self.recent,
            &mut self.idents,
            &kind,
            event.customer_id(),
        );
        let k = key as usize;
        if self.key_occ.len() <= k {
            self.key_occ.resize(k + 1, [NONE; 2]);
        }
        if self.key_occ[k][slot] == NONE {
            self.key_occ[k][slot] = occ;
        }
    }

    fn add_edge(&mut self, a: u32, b: u32, cause: Cause) {
        let pair = (a.min(b), a.max(b));
        if let Some((last, old)) = self.edges.last_mut()
            && *last == pair
        {
            if cause_order(&self.messages, &cause, old) == Ordering::Less {
                *old = cause;
            }
            return;
        }
        self.edges.push((pair, cause));
    }

    /// Resolves the graph: sightings into nodes, aliases, then the union-find over edges in
    /// (time, message) order under the limits, leaving out every edge of an identifier the
    /// operator split off.
    pub fn finish(self, splits: &Splits) -> IdentityGraph {
        let GraphBuilder {
            config,
            mut idents,
            key_occ,
            edges,
            messages,
            aliases,
            ..
        } = self;
        let mut digest_buf = Vec::new();

        // Sightings into nodes: each run of equal digests is one node, numbered in digest order.
        // Filled in place on two threads: no zeroing pass first, and each thread takes the
        // page faults of the half it writes.
        let n = idents.len();
        let mut sightings: Vec<Sighting> = Vec::with_capacity(n);
        on_two_threads(&mut sightings.spare_capacity_mut()[..n], |from, part| {
            let mut buf = Vec::new();
            for (i, s) in part.iter_mut().enumerate() {
                let occ = (from + i) as u32;
                let d = digest(&mut buf, idents.kind(occ), idents.value(occ));
                let kind = idents.kind_number_of(occ);
                s.write([
                    (d >> 64) as u64,
                    d as u64,
                    (u64::from(occ) << 32) | u64::from(kind),
                ]);
            }
        });
        // SAFETY: the capacity is at least `n`, and the two halves together wrote each of the
        // first `n` elements (`on_two_threads` hands every index to exactly one call).
        unsafe { sightings.set_len(n) };
        sort_by_digest(&mut sightings);
        // Runs of equal digests into nodes, on two threads: the list is cut between two runs
        // near its middle, each half counts its runs (so the high half knows its first node
        // number), then writes its nodes and each of its sightings' node. Every sighting is
        // written once, so `occ_node` starts as fresh zeroed pages, not a filling pass.
        let n = sightings.len();
        let same = |a: &Sighting, b: &Sighting| a[..2] == b[..2];
        let mut mid = n / 2;
        while mid > 0 && mid < n && same(&sightings[mid - 1], &sightings[mid]) {
            mid += 1;
        }
        let (low, high) = sightings.split_at(mid);
        let runs = |part: &[Sighting]| {
            part.windows(2).filter(|w| !same(&w[0], &w[1])).count() + usize::from(!part.is_empty())
        };
        let parallel = n >= 1 << 16;
        let (low_runs, high_runs) = both(parallel, || runs(low), || runs(high));
        let distinct = low_runs + high_runs;
        let mut nodes = Nodes {
            digests: Vec::with_capacity(distinct),
            extra: Vec::new(),
            occ: Vec::with_capacity(distinct),
        };
        let mut node_kind: Vec<u32> = Vec::with_capacity(distinct);
        let mut occ_node = vec![0u32; n];
        // SAFETY: `AtomicU32` has the size and bit validity of `u32`, and its alignment (4)
        // is at least `u32`'s; the vector outlives the view and is not touched otherwise
        // while the view lives.
        let cells: &[AtomicU32] =
            unsafe { &*(occ_node.as_mut_slice() as *mut [u32] as *const [AtomicU32]) };
        type Out<'a, T> = &'a mut [MaybeUninit<T>];
        let fill = |part: &[Sighting],
                    first: usize,
                    (digests, occs, kinds): (Out<u128>, Out<u32>, Out<u32>)| {
            let mut at = 0;
            for (i, s) in part.iter().enumerate() {
                // Sightings in digest order write their nodes at random places.
                if let Some(ahead) = part.get(i + PREFETCH_AHEAD) {
                    prefetch(&cells[(ahead[2] >> 32) as usize]);
                }
                let occ = (s[2] >> 32) as u32;
                if i == 0 || !same(&part[i - 1], s) {
                    digests[at].write(sighting_digest(s));
                    occs[at].write(occ);
                    kinds[at].write(s[2] as u32);
                    at += 1;
                }
                cells[occ as usize].store((first + at - 1) as u32, Relaxed);
            }
        };
        let (d_low, d_high) = nodes.digests.spare_capacity_mut()[..distinct].split_at_mut(low_runs);
        let (o_low, o_high) = nodes.occ.spare_capacity_mut()[..distinct].split_at_mut(low_runs);
        let (k_low, k_high) = node_kind.spare_capacity_mut()[..distinct].split_at_mut(low_runs);
        both(
            parallel,
            || fill(low, 0, (d_low, o_low, k_low)),
            || fill(high, low_runs, (d_high, o_high, k_high)),
        );
        // SAFETY: each half wrote one node per run of its own, `low_runs` and `high_runs`
        // of them, into its part of the first `distinct` elements.
        unsafe {
            nodes.digests.set_len(distinct);
            nodes.occ.set_len(distinct);
            node_kind.set_len(distinct);
        }
        drop(sightings);

        // An alias's previous id is a user id if any message used it as one, else anonymous
        // (a node of its own when no message named it). Looked up in digest order, so the
        // search walks the sorted digests once.
        let prev = |i: usize| aliases.value(i as u32);
        let mut alias_node = vec![NONE; aliases.len()];
        // Probes are shaped as sightings (digest, then the alias's number) to be sorted the
        // same way.
        let probe = |kind: &IdKind, i: usize, buf: &mut Vec<u8>| {
            let d = digest(buf, kind, prev(i));
            [(d >> 64) as u64, d as u64, i as u64]
        };
        let mut probes: Vec<Sighting> = (0..aliases.len())
            .map(|i| probe(&IdKind::UserId, i, &mut digest_buf))
            .collect();
        sort_by_digest(&mut probes);
        let mut at = 0;
        for p in &probes {
            let (d, i) = (sighting_digest(p), p[2]);
            at = gallop(&nodes.digests, at, d);
            if nodes.digests.get(at) == Some(&d) {
                alias_node[i as usize] = at as u32;
            }
        }
        probes.clear();
        probes.extend(
            (0..aliases.len())
                .filter(|&i| alias_node[i] == NONE)
                .map(|i| probe(&IdKind::AnonymousId, i, &mut digest_buf)),
        );
        sort_by_digest(&mut probes);
        let anon = idents.kind_number(&IdKind::AnonymousId);
        let mut at = 0;
        for p in &probes {
            let (d, i) = (sighting_digest(p), p[2] as u32);
            at = gallop(&nodes.digests, at, d);
            alias_node[i as usize] = if nodes.digests.get(at) == Some(&d) {
                at as u32
            } else {
                if nodes.extra.last() != Some(&d) {
                    nodes.extra.push(d);
                    // Its text is the alias's.
                    nodes.occ.push(i);
                    node_kind.push(anon);
                }
                (nodes.occ.len() - 1) as u32
            };
        }
        drop(probes);
        let node_count = nodes.occ.len();

        // Only when there are splits: asking for each link would be two cache misses more.
        let mut detached = Vec::new();
        if !splits.detached.is_empty() {
            detached = vec![false; node_count];
        }
        for s in &splits.detached {
            let id = &s.identifier;
            if let Some(n) = nodes.find(digest(&mut digest_buf, &id.kind, &id.value)) {
                detached[n as usize] = true;
            }
        }

        let rank_of_kind: Vec<u32> = idents.kinds().iter().map(|k| config.rank(k)).collect();
        let rank = |n: u32| rank_of_kind[node_kind[n as usize] as usize];
        let cmp_nodes = |a: u32, b: u32| {
            if a == b {
                Ordering::Equal
            } else {
                let (ka, va) = nodes.text(a, &idents, &aliases);
                let (kb, vb) = nodes.text(b, &idents, &aliases);
                ka.cmp(kb).then_with(|| va.cmp(vb))
            }
        };
        // `strong` is the higher-priority end: its link is tried first.
        let edge = |a: u32, b: u32, cause: Cause| {
            let (strong, weak) = if rank(a).cmp(&rank(b)).then_with(|| cmp_nodes(a, b)).is_le() {
                (a, b)
            } else {
                (b, a)
            };
            Edge {
                cause,
                strong,
                weak,
            }
        };
        // Each link's sightings become its (strong, weak) nodes, in place. The reads are at
        // random places: a link's sightings' nodes are asked for two steps ahead, and the kinds
        // of those nodes (for their rank) one step ahead, so the cache misses overlap.
        let mut edges = edges;
        let mut alias = 0;
        for i in 0..edges.len() {
            if let Some(&((a, b), _)) = edges.get(i + 2 * PREFETCH_AHEAD) {
                if a != NONE {
                    prefetch(&occ_node[a as usize]);
                }
                prefetch(&occ_node[b as usize]);
            }
            if let Some(&((a, b), _)) = edges.get(i + PREFETCH_AHEAD) {
                if a != NONE {
                    prefetch(&node_kind[occ_node[a as usize] as usize]);
                }
                prefetch(&node_kind[occ_node[b as usize] as usize]);
            }
            let ((a, b), cause) = edges[i];
            let from = if a == NONE {
                alias += 1;
                alias_node[alias - 1]
            } else {
                occ_node[a as usize]
            };
            let e = edge(from, occ_node[b as usize], cause);
            edges[i].0 = (e.strong, e.weak);
        }
        // Into edges, in place (an edge is as big as a link). An alias of an id to itself
        // links nothing.
        let mut edges: Vec<Edge> = edges
            .into_iter()
            .filter(|&((strong, weak), _)| strong != weak)
            .map(|((strong, weak), cause)| Edge {
                cause,
                strong,
                weak,
            })
            .collect();
        let key_node: Vec<u32> = key_occ
            .iter()
            .map(|k| match *k {
                [NONE, NONE] => NONE,
                [NONE, anon] => occ_node[anon as usize],
                [user, _] => occ_node[user as usize],
            })
            .collect();
        let forced: Vec<(u32, u32)> = key_occ
            .iter()
            .filter(|k| k[0] != NONE && k[1] != NONE)
            .map(|k| (occ_node[k[0] as usize], occ_node[k[1] as usize]))
            .collect();
        drop(occ_node);

        let parallel = edges.len() >= 1 << 16;
        sort_by_time(
            &mut edges,
            &|e: &Edge| e.cause.time,
            &|x: &Edge, y: &Edge| {
                cause_order(&messages, &x.cause, &y.cause)
                    .then_with(|| rank(x.weak).cmp(&rank(y.weak)))
                    .then_with(|| cmp_nodes(x.weak, y.weak))
                    .then_with(|| cmp_nodes(x.strong, y.strong))
            },
            parallel,
        );

        let mut uf = UnionFind::new(&node_kind, idents.kinds(), &config);
        // One end of each forced join that joined two sets: not a merge (see `merge_counts`).
        let forced_joins: Vec<u32> = forced
            .iter()
            .filter(|&&(a, b)| uf.union_unchecked(a, b))
            .map(|&(a, _)| a)
            .collect();
        let mut conflicts = Vec::new();
        // A pair refused once is refused again at each later copy (profiles only grow, and
        // splits do not change here): it is one conflict, with its earliest message.
        let mut refused: FxSet<(u32, u32)> = FxSet::default();
        // The edges that joined two profiles stay, in place, as the merges.
        let mut kept = 0;
        for i in 0..edges.len() {
            // Links come in time order, so their nodes are anywhere: ask for the nodes of a
            // link a few ahead now, and their cache misses overlap instead of queueing.
            if let Some(ahead) = edges.get(i + PREFETCH_AHEAD) {
                uf.prefetch(ahead.strong);
                uf.prefetch(ahead.weak);
            }
            let e = edges[i];
            let split =
                !detached.is_empty() && (detached[e.strong as usize] || detached[e.weak as usize]);
            let reason = if split {
                Refusal::Split
            } else {
                match uf.union(e.strong, e.weak) {
                    Ok(true) => {
                        edges[kept] = e;
                        kept += 1;
                        continue;
                    }
                    Ok(false) => continue,
                    Err(reason) => reason,
                }
            };
            if refused.insert((e.strong, e.weak)) {
                conflicts.push(RawConflict { edge: e, reason });
            }
        }
        edges.truncate(kept);
        let (root, sizes) = uf.into_roots();
        IdentityGraph::new(
            config,
            idents,
            aliases,
            nodes,
            (root, sizes, forced_joins),
            messages,
            edges,
            conflicts,
            key_node,
        )
    }
}

/// The first index at or after `from` whose digest is not below `d` (`digests` ascending):
/// galloping, so looking up ascending digests walks the list once.
fn gallop(digests: &[u128], from: usize, d: u128) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < digests.len() && digests[hi] < d {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(digests.len());
    lo + digests[lo..hi].partition_point(|&x| x < d)
}

/// `work(start, part)` on the two halves of `v`, each on its own thread (small inputs on one).
fn on_two_threads<T: Send>(v: &mut [T], work: impl Fn(usize, &mut [T]) + Sync) {
    if v.len() < 1 << 16 {
        work(0, v);
        return;
    }
    let mid = v.len() / 2;
    let (low, high) = v.split_at_mut(mid);
    both(true, || work(0, low), || work(mid, high));
}

/// Sorts sightings by digest. One pass in place (an American flag sort) puts them into 256
/// buckets by the digest's top byte, which are even because digests are uniform; then each
/// bucket, small enough to stay in the cache, is sorted on its own, half of them on each
/// thread. Sorting the whole list with a comparison sort missed the cache at every step.
fn sort_by_digest(v: &mut [Sighting]) {
    let key = |s: &Sighting| (s[0], s[1]);
    if v.len() < 1 << 16 {
        v.sort_unstable_by_key(key);
        return;
    }
    let starts = into_buckets(v, |s| (s[0] >> 56) as usize);
    let (low, high) = v.split_at_mut(starts[128]);
    let sort_buckets = |part: &mut [Sighting], first: usize| {
        let mut rest = part;
        for b in first..first + 128 {
            let (bucket, after) = std::mem::take(&mut rest).split_at_mut(starts[b + 1] - starts[b]);
            bucket.sort_unstable_by_key(key);
            rest = after;
        }
    };
    both(true, || sort_buckets(low, 0), || sort_buckets(high, 128));
}

/// Puts `v` into 256 buckets by `bucket` (which must be below 256), in place (an American flag
/// sort: one pass to count, one to swap each item straight to its bucket); returns where each
/// bucket starts, and the end of the last.
fn into_buckets<T: Copy>(v: &mut [T], bucket: impl Fn(&T) -> usize) -> [usize; 257] {
    let mut starts = [0usize; 257];
    for s in v.iter() {
        starts[bucket(s) + 1] += 1;
    }
    for b in 0..256 {
        starts[b + 1] += starts[b];
    }
    // `next[b]`: the first place of bucket `b` not yet holding one of its own.
    let mut next = starts;
    for b in 0..256 {
        while next[b] < starts[b + 1] {
            let i = next[b];
            let mut s = v[i];
            let mut t = bucket(&s);
            while t != b {
                std::mem::swap(&mut v[next[t]], &mut s);
                next[t] += 1;
                t = bucket(&s);
            }
            v[i] = s;
            next[b] += 1;
        }
    }
    starts
}

/// Sorts by `cmp`, which orders by `time` first. One pass in place puts the items into 256
/// buckets, the span of their times cut into equal parts; then each bucket, small enough to
/// stay in the cache, is sorted on its own, the buckets of each half of the list on their own
/// thread. A bucket still large (times bunched together) is cut again by its own span. A
/// comparison sort of the whole list missed the cache at every step; this is most of the
/// resolution's sort of ten million links.
fn sort_by_time<T: Copy + Send>(
    v: &mut [T],
    time: &(impl Fn(&T) -> i64 + Sync),
    cmp: &(impl Fn(&T, &T) -> Ordering + Sync),
    parallel: bool,
) {
    if v.len() < 1 << 14 {
        v.sort_unstable_by(cmp);
        return;
    }
    let (lo, hi) = v.iter().fold((i64::MAX, i64::MIN), |(lo, hi), x| {
        (lo.min(time(x)), hi.max(time(x)))
    });
    let span = hi.abs_diff(lo);
    if span == 0 {
        if parallel {
            sort_on_two_threads(v, cmp);
        } else {
            v.sort_unstable_by(cmp);
        }
        return;
    }
    // `span >> shift` has at most 8 bits, so every bucket is below 256.
    let shift = (64 - span.leading_zeros()).saturating_sub(8);
    let starts = into_buckets(v, |x| (time(x).abs_diff(lo) >> shift) as usize);
    // The two halves meet at the bucket boundary nearest the middle.
    let half = (0..=256)
        .min_by_key(|&b| starts[b].abs_diff(v.len() / 2))
        .unwrap_or(0);
    let sort_buckets = |part: &mut [T], buckets: std::ops::Range<usize>| {
        let mut rest = part;
        for b in buckets {
            let (bucket, after) = std::mem::take(&mut rest).split_at_mut(starts[b + 1] - starts[b]);
            sort_by_time(bucket, time, cmp, false);
            rest = after;
        }
    };
    let (low, high) = v.split_at_mut(starts[half]);
    both(
        parallel,
        || sort_buckets(low, 0..half),
        || sort_buckets(high, half..256),
    );
}

/// `a()` and `b()`, on two threads when `parallel`.
fn both<A: Send, B>(parallel: bool, a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let a = s.spawn(a);
        let b = b();
        match a.join() {
            Ok(a) => (a, b),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Sorts on two threads: splits around the median, then sorts each half on its own thread
/// (one core's sort of ten million items is most of a resolution); small inputs on one.
fn sort_on_two_threads<T: Send>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering + Sync) {
    if v.len() < 1 << 16 {
        v.sort_unstable_by(&cmp);
        return;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, &cmp);
    let (low, high) = v.split_at_mut(mid);
    both(
        true,
        || low.sort_unstable_by(&cmp),
        || high.sort_unstable_by(&cmp),
    );
}

/// The graph's nodes: digests in order (the index), and one sighting of each for its text.
#[derive(Debug, Default)]
struct Nodes {
    /// Nodes `0..digests.len()`: the identifiers intake saw, ascending.
    digests: Vec<u128>,
    /// The nodes after them: alias previous ids no message named otherwise, ascending.
    extra: Vec<u128>,
    /// Where each node's text is: an occurrence in intake's [`Idents`], or for the extra
    /// nodes, the number of an alias whose previous id it is.
    occ: Vec<u32>,
}

impl Nodes {
    /// Node `n`'s kind and value.
    fn text<'a>(&self, n: u32, idents: &'a Idents, aliases: &'a Idents) -> (&'a IdKind, &'a str) {
        let (arena, at) = if (n as usize) < self.digests.len() {
            (idents, self.occ[n as usize])
        } else {
            (aliases, self.occ[n as usize])
        };
        (arena.kind(at), arena.value(at))
    }

    fn find(&self, d: u128) -> Option<u32> {
        if let Ok(i) = self.digests.binary_search(&d) {
            return Some(i as u32);
        }
        let i = self.extra.binary_search(&d).ok()?;
        Some((self.digests.len() + i) as u32)
    }
}

/// Message ids of the events that linked something, in chunks of text: ten million small
/// strings would be ten million allocations.
#[derive(Default)]
struct Messages {
    texts: Texts,
}

impl Messages {
    fn len(&self) -> u32 {
        self.texts.len() as u32
    }

    fn push(&mut self, id: &str) {
        self.texts.push(id, None);
    }
}

impl std::ops::Index<usize> for Messages {
    type Output = str;
    fn index(&self, i: usize) -> &str {
        self.texts.get(i as u32)
    }
}

fn cause_order(messages: &Messages, a: &Cause, b: &Cause) -> Ordering {
    a.time.cmp(&b.time).then(a.hash.cmp(&b.hash)).then_with(|| {
        if a.msg == b.msg {
            Ordering::Equal
        } else {
            messages[a.msg as usize].cmp(&messages[b.msg as usize])
        }
    })
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    cause: Cause,
    strong: u32,
    weak: u32,
}

#[derive(Debug, Clone, Copy)]
struct RawConflict {
    edge: Edge,
    reason: Refusal,
}

/// Why a link between two identifiers was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The two profiles together would hold more identifiers of `kind` than allowed.
    Limit { kind_slot: usize, limit: u32 },
    /// The two profiles together would hold more identifiers than `max_identifiers`.
    TooLarge { limit: u32 },
    /// An operator split one of the two identifiers off.
    Split,
}

/// Union-find with, per root, its size and the number of identifiers of each limited kind,
/// side by side in one array (`2 + limits` numbers a node): the links come in time order,
/// which is random in node order, so each node visited is a cache miss, one and not three.
struct UnionFind {
    /// Per node: parent, size, then one counter per limit (meaningful at roots).
    cells: Vec<u32>,
    width: usize,
    limits: Vec<u32>,
    max: u32,
}

impl UnionFind {
    /// Every node alone; `node_kind` is each node's kind number in `kinds`.
    fn new(node_kind: &[u32], kinds: &[IdKind], config: &Config) -> UnionFind {
        let slots = &config.limits;
        let width = 2 + slots.len();
        // Per kind number, its counter for each limit.
        let counters: Vec<Vec<u32>> = kinds
            .iter()
            .map(|kind| slots.iter().map(|(k, _)| u32::from(k == kind)).collect())
            .collect();
        let mut cells = Vec::with_capacity(node_kind.len() * width);
        for (n, &k) in node_kind.iter().enumerate() {
            cells.push(n as u32);
            cells.push(1);
            cells.extend_from_slice(&counters[k as usize]);
        }
        UnionFind {
            cells,
            width,
            limits: slots.iter().map(|&(_, l)| l).collect(),
            max: config.max_identifiers,
        }
    }

    fn prefetch(&self, n: u32) {
        if let Some(cell) = self.cells.get(n as usize * self.width) {
            prefetch(cell);
        }
    }

    fn parent(&self, n: u32) -> u32 {
        self.cells[n as usize * self.width]
    }

    fn size(&self, n: u32) -> u32 {
        self.cells[n as usize * self.width + 1]
    }

    fn count(&self, n: u32, slot: usize) -> u32 {
        self.cells[n as usize * self.width + 2 + slot]
    }

    fn find(&mut self, mut n: u32) -> u32 {
        loop {
            let p = self.parent(n);
            if p == n {
                return n;
            }
            let grand = self.parent(p);
            self.cells[n as usize * self.width] = grand;
            n = grand;
        }
    }

    /// Joins the two sets if the limits allow; `Ok(false)` when they already were one.
    fn union(&mut self, a: u32, b: u32) -> Result<bool, Refusal> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Ok(false);
        }
        for (i, &limit) in self.limits.iter().enumerate() {
            if self.count(ra, i) + self.count(rb, i) > limit {
                return Err(Refusal::Limit {
                    kind_slot: i,
                    limit,
                });
            }
        }
        if self.size(ra) + self.size(rb) > self.max {
            return Err(Refusal::TooLarge { limit: self.max });
        }
        self.link(ra, rb);
        Ok(true)
    }

    /// Joins the two sets whatever the limits; whether they were two.
    fn union_unchecked(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.link(ra, rb);
        }
        ra != rb
    }

    fn link(&mut self, ra: u32, rb: u32) {
        let (big, small) = if self.size(ra) >= self.size(rb) {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let w = self.width;
        let (b, s) = (big as usize * w, small as usize * w);
        self.cells[s] = big;
        for i in 1..w {
            self.cells[b + i] += self.cells[s + i];
        }
    }

    /// The root of every node, and the size of every set by its root (0 at other nodes).
    fn into_roots(mut self) -> (Vec<u32>, Vec<u32>) {
        let nodes = self.cells.len() / self.width;
        let (mut roots, mut sizes) = (Vec::with_capacity(nodes), Vec::with_capacity(nodes));
        for n in 0..nodes as u32 {
            let root = self.find(n);
            roots.push(root);
            sizes.push(if root == n { self.size(n) } else { 0 });
        }
        (roots, sizes)
    }
}

/// A profile of a resolved graph. Stable only within one [`IdentityGraph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileId(u32);

/// One link that joined two profiles, with the message that caused it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Merge {
    pub a: Identifier,
    pub b: Identifier,
    pub message_id: String,
    #[serde(serialize_with = "crate::time_text::one")]
    pub timestamp: Micros,
}

/// A link that was refused, with the message that asked for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// The identifier of this profile.
    pub ours: Identifier,
    /// The identifier of the other profile.
    pub theirs: Identifier,
    pub message_id: String,
    #[serde(serialize_with = "crate::time_text::one")]
    pub timestamp: Micros,
    /// `limit:user_id=1`, `max_identifiers=1000` or `split`.
    pub reason: String,
}

/// The resolved identity graph: which identifiers and which store keys form each profile.
pub struct IdentityGraph {
    config: Config,
    /// The digest index of the nodes, and where their texts are in `idents` and `aliases`.
    nodes: Nodes,
    idents: Idents,
    aliases: Idents,
    root: Vec<u32>,
    messages: Messages,
    merges: Vec<Edge>,
    conflicts: Vec<RawConflict>,
    /// Store keys grouped by the node of their raw id.
    node_keys: Groups,
    /// Node of each store key's raw id, `NONE` where unknown.
    key_node: Vec<u32>,
    /// Nodes, merges and conflicts grouped by root, so a profile is read in time
    /// proportional to its size. A conflict is listed under both of its roots.
    members_of: Groups,
    merges_of: Groups,
    conflicts_of: Groups,
    map: ProfileMap,
}

impl IdentityGraph {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: Config,
        idents: Idents,
        aliases: Idents,
        nodes: Nodes,
        (root, sizes, forced_joins): (Vec<u32>, Vec<u32>, Vec<u32>),
        messages: Messages,
        merges: Vec<Edge>,
        conflicts: Vec<RawConflict>,
        key_node: Vec<u32>,
    ) -> IdentityGraph {
        let n = root.len();
        let known_keys = || {
            key_node
                .iter()
                .enumerate()
                .filter(|&(_, &node)| node != NONE)
                .map(|(key, &node)| (node, key as u32))
        };
        let node_keys = Groups::new(n, known_keys());
        // Per profile with keys (by its root): its lowest key and how many it has.
        let mut rep: Vec<u32> = (0..key_node.len() as u32).collect();
        if !key_node.is_empty() {
            let mut min_key = vec![NONE; n];
            let mut keys_per_root = vec![0u32; n];
            for (node, key) in known_keys() {
                let r = root[node as usize] as usize;
                min_key[r] = min_key[r].min(key);
                keys_per_root[r] += 1;
            }
            for (node, key) in known_keys() {
                let r = root[node as usize] as usize;
                if keys_per_root[r] > 1 {
                    rep[key as usize] = min_key[r];
                }
            }
        }
        let map = ProfileMap::from_valid_representatives(&rep);
        // Sizes come from the union-find, so grouping needs no counting pass (a random
        // increment per node and per merge). A set of `size` nodes took `size - 1` joins:
        // its merges, and the forced joins of store keys made in it.
        let mut merge_counts: Vec<u32> = sizes.iter().map(|&s| s.saturating_sub(1)).collect();
        for &a in &forced_joins {
            merge_counts[root[a as usize] as usize] -= 1;
        }
        let merges_by_root = || {
            merges.iter().enumerate().map(|(i, e)| {
                if let Some(ahead) = merges.get(i + PREFETCH_AHEAD) {
                    prefetch(&root[ahead.strong as usize]);
                }
                (root[e.strong as usize], i as u32)
            })
        };
        let (members_of, merges_of) = both(
            n >= 1 << 16,
            || Groups::with_counts(sizes, root.iter().enumerate().map(|(i, &r)| (r, i as u32))),
            || Groups::with_counts(merge_counts, merges_by_root()),
        );
        // Both ends ended up together through another path: nothing to show.
        let split_ends = |c: &RawConflict| {
            let (rs, rw) = (root[c.edge.strong as usize], root[c.edge.weak as usize]);
            (rs != rw).then_some((rs, rw))
        };
        let conflicts_of = Groups::new(
            n,
            conflicts.iter().enumerate().flat_map(|(i, c)| {
                split_ends(c)
                    .into_iter()
                    .flat_map(move |(rs, rw)| [(rs, i as u32), (rw, i as u32)])
            }),
        );
        IdentityGraph {
            config,
            nodes,
            idents,
            aliases,
            root,
            messages,
            merges,
            conflicts,
            node_keys,
            key_node,
            members_of,
            merges_of,
            conflicts_of,
            map,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What stitched scans need: which store keys belong together.
    pub fn profile_map(&self) -> &ProfileMap {
        &self.map
    }

    /// Number of identifiers in the graph.
    pub fn identifier_count(&self) -> usize {
        self.nodes.occ.len()
    }

    /// Number of links that joined two profiles.
    pub fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// Number of links refused (limits or splits).
    pub fn conflict_count(&self) -> usize {
        self.conflicts.len()
    }

    /// Number of profiles (sets of identifiers).
    pub fn profile_count(&self) -> usize {
        self.members_of.non_empty()
    }

    /// The profile holding this identifier.
    pub fn find(&self, id: &Identifier) -> Option<ProfileId> {
        let n = self.node(id)?;
        Some(ProfileId(self.root[n as usize]))
    }

    fn node(&self, id: &Identifier) -> Option<u32> {
        self.nodes
            .find(digest(&mut Vec::new(), &id.kind, &id.value))
    }

    /// The profile of an identifier as a person types it: `kind:value` (`email:ann@x.com`,
    /// `user_id:42`, `crm_id:7`), or a bare value tried as user id, anonymous id, e-mail,
    /// phone, device id and each external id type, in that order.
    pub fn lookup(&self, text: &str) -> Option<ProfileId> {
        candidates(text, &self.config)
            .iter()
            .find_map(|id| self.find(id))
    }

    /// The identifier a typed text names (see [`IdentityGraph::lookup`]), as the graph holds it.
    pub fn identifier(&self, text: &str) -> Option<Identifier> {
        candidates(text, &self.config)
            .into_iter()
            .find(|id| self.node(id).is_some())
    }

    /// The profile of a store customer key.
    pub fn profile_of_key(&self, key: u32) -> Option<ProfileId> {
        let node = *self.key_node.get(key as usize)?;
        (node != NONE).then(|| ProfileId(self.root[node as usize]))
    }

    /// The profile's identifiers, highest priority first.
    pub fn identifiers(&self, p: ProfileId) -> Vec<Identifier> {
        let mut ids: Vec<Identifier> = self.members(p).map(|n| self.ident(n)).collect();
        ids.sort_by(|a, b| {
            self.config
                .rank(&a.kind)
                .cmp(&self.config.rank(&b.kind))
                .then_with(|| a.cmp(b))
        });
        ids
    }

    /// The store customer keys whose events belong to the profile, ascending.
    pub fn keys(&self, p: ProfileId) -> Vec<u32> {
        let mut keys: Vec<u32> = self
            .members(p)
            .flat_map(|n| self.node_keys.get(n))
            .copied()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Node `n` as an identifier.
    fn ident(&self, n: u32) -> Identifier {
        let (kind, value) = self.nodes.text(n, &self.idents, &self.aliases);
        Identifier::new(kind.clone(), value)
    }

    fn members(&self, p: ProfileId) -> impl Iterator<Item = u32> + '_ {
        self.members_of.get(p.0).iter().copied()
    }

    /// The links that built the profile, in the order they were made.
    pub fn merges(&self, p: ProfileId) -> Vec<Merge> {
        self.merges_of
            .get(p.0)
            .iter()
            .map(|&i| &self.merges[i as usize])
            .map(|e| Merge {
                a: self.ident(e.strong),
                b: self.ident(e.weak),
                message_id: self.messages[e.cause.msg as usize].to_string(),
                timestamp: e.cause.time,
            })
            .collect()
    }

    /// Links refused at either end of the profile, in the order they were tried.
    pub fn conflicts(&self, p: ProfileId) -> Vec<Conflict> {
        let mut out = Vec::new();
        for &i in self.conflicts_of.get(p.0) {
            let c = &self.conflicts[i as usize];
            let (s, w) = (c.edge.strong, c.edge.weak);
            let (ours, theirs) = if self.root[s as usize] == p.0 {
                (s, w)
            } else if self.root[w as usize] == p.0 {
                (w, s)
            } else {
                continue;
            };
            let reason = match c.reason {
                Refusal::Limit { kind_slot, limit } => {
                    format!("limit:{}={limit}", self.config.limits[kind_slot].0)
                }
                Refusal::TooLarge { limit } => format!("max_identifiers={limit}"),
                Refusal::Split => "split".to_string(),
            };
            out.push(Conflict {
                ours: self.ident(ours),
                theirs: self.ident(theirs),
                message_id: self.messages[c.edge.cause.msg as usize].to_string(),
                timestamp: c.edge.cause.time,
                reason,
            });
        }
        out
    }
}

/// The identifiers a typed text may mean, most likely first.
pub fn candidates(text: &str, config: &Config) -> Vec<Identifier> {
    if let Some((kind, value)) = text.split_once(':') {
        let kind = IdKind::parse(kind);
        let known = matches!(
            kind,
            IdKind::UserId | IdKind::AnonymousId | IdKind::Email | IdKind::Phone | IdKind::DeviceId
        ) || config.external_ids.iter().any(|e| e == kind.as_str());
        if known {
            return normalized(kind, value, config).into_iter().collect();
        }
    }
    let mut kinds = vec![
        IdKind::UserId,
        IdKind::AnonymousId,
        IdKind::Email,
        IdKind::Phone,
        IdKind::DeviceId,
    ];
    kinds.extend(config.external_ids.iter().cloned().map(IdKind::External));
    kinds
        .into_iter()
        .filter_map(|k| normalized(k, text, config))
        .collect()
}

fn normalized(kind: IdKind, value: &str, config: &Config) -> Option<Identifier> {
    let value = match kind {
        IdKind::Email => crate::ident::normalize_email(value)?,
        IdKind::Phone => crate::ident::normalize_phone(value, &config.phone_country_code)?,
        IdKind::UserId | IdKind::AnonymousId => value.to_string(),
        _ => value.trim().to_string(),
    };
    Some(Identifier::new(kind, value))
}

/// Which store customer keys form one profile: all a stitched scan needs.
///
/// A stitched scan asks, for every customer it reads, whether that key belongs to a profile of
/// several keys: one array read here (`group_of`), not a hash lookup (which was half of a
/// stitched funnel's extra time: most keys are alone, and a miss still probes the map).
#[derive(Debug, Clone, Default)]
pub struct ProfileMap {
    /// For each key, the index of its profile in `starts` when the profile has several keys;
    /// [`ALONE`] otherwise.
    group_of: Vec<u32>,
    /// Where each multi-key profile's keys begin in `members`, plus the end of the last.
    starts: Vec<u32>,
    /// The keys of every multi-key profile, profile after profile, each ascending (so its
    /// first key is its lowest, the profile's representative).
    members: Vec<u32>,
}

/// A key whose profile has no other key.
pub(crate) const ALONE: u32 = u32::MAX;

impl ProfileMap {
    /// Given each key's representative (the lowest key of its profile, itself when alone;
    /// checked by the callers).
    fn from_valid_representatives(rep: &[u32]) -> ProfileMap {
        let mut size = vec![0u32; rep.len()];
        for &r in rep {
            size[r as usize] += 1;
        }
        let mut group_of = vec![ALONE; rep.len()];
        let mut starts = Vec::new();
        let mut total = 0u32;
        for (k, &n) in size.iter().enumerate() {
            if n > 1 {
                group_of[k] = starts.len() as u32;
                starts.push(total);
                total += n;
            }
        }
        starts.push(total);
        let mut next = starts.clone();
        let mut members = vec![0u32; total as usize];
        // Keys ascending: each profile's keys come out ascending.
        for (k, &r) in rep.iter().enumerate() {
            let g = group_of[r as usize];
            if g != ALONE {
                members[next[g as usize] as usize] = k as u32;
                next[g as usize] += 1;
                group_of[k] = g;
            }
        }
        ProfileMap {
            group_of,
            starts,
            members,
        }
    }

    /// The lowest key of the profile `key` belongs to, and all its keys, when it has several.
    pub fn group(&self, key: u32) -> Option<(u32, &[u32])> {
        crate::stitch::Groups::from(self)
            .keys(key)
            .map(|keys| (keys[0], keys))
    }

    /// The key a stitched scan reports a profile under: its lowest key.
    pub fn representative(&self, key: u32) -> u32 {
        crate::stitch::Groups::from(self).representative(key)
    }

    /// Number of profiles with more than one key.
    pub fn multi_key_profiles(&self) -> usize {
        crate::stitch::Groups::from(self).multi_key_profiles()
    }

    /// The map given each key's representative (the lowest key of its profile); `None` when
    /// that is not what `rep` holds (a representative above its key or not its own).
    pub fn from_representatives(rep: Vec<u32>) -> Option<ProfileMap> {
        for (k, &r) in rep.iter().enumerate() {
            if r > k as u32 || rep.get(r as usize) != Some(&r) {
                return None;
            }
        }
        Some(ProfileMap::from_valid_representatives(&rep))
    }

    /// The map's arrays as stored: (`group_of`, `starts`, `members`), as documented on the
    /// fields; what `identity-map.bin` holds, so a command can map them instead of rebuilding.
    pub fn arrays(&self) -> (&[u32], &[u32], &[u32]) {
        (&self.group_of, &self.starts, &self.members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift: enough to scatter values over the whole range.
    fn numbers(n: usize, mut state: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            })
            .collect()
    }

    #[test]
    fn large_sorts_on_two_threads_equal_a_plain_sort() {
        // Above the size where the two-thread paths start, with repeated digests.
        let n = 200_000;
        let r = numbers(n, 0x2545_f491_4f6c_dd1d);
        let mut sightings: Vec<Sighting> =
            (0..n).map(|i| [r[i / 3 * 3], r[i / 2], i as u64]).collect();
        let mut want = sightings.clone();
        want.sort_unstable_by_key(|s| (s[0], s[1]));
        sort_by_digest(&mut sightings);
        let digests = |v: &[Sighting]| v.iter().map(sighting_digest).collect::<Vec<_>>();
        assert_eq!(digests(&sightings), digests(&want));
        let mut all: Vec<u64> = sightings.iter().map(|s| s[2]).collect();
        all.sort_unstable();
        assert_eq!(all, (0..n as u64).collect::<Vec<_>>(), "a permutation");

        let mut v: Vec<(u64, u32)> = r.iter().map(|&x| (x % 1000, x as u32)).collect();
        let mut want = v.clone();
        want.sort_unstable();
        sort_on_two_threads(&mut v, |a, b| a.cmp(b));
        assert_eq!(v, want);
    }

    #[test]
    fn sorting_by_time_equals_a_plain_sort_even_with_bunched_times() {
        // Most times in a narrow band, a few far out: buckets cut again; ties by the second
        // field; a run of equal times.
        let n = 300_000;
        let r = numbers(n, 0x9e37_79b9_7f4a_7c15);
        let mut v: Vec<(i64, u32)> = (0..n)
            .map(|i| {
                let t = match i % 100 {
                    0 => (r[i] >> 1) as i64,
                    1 => -((r[i] >> 3) as i64),
                    2..=9 => 42,
                    _ => 1_000_000 + (r[i] % 5_000) as i64,
                };
                (t, (r[i] >> 40) as u32 % 97)
            })
            .collect();
        let mut want = v.clone();
        want.sort_unstable();
        sort_by_time(&mut v, &|x: &(i64, u32)| x.0, &|a, b| a.cmp(b), true);
        assert_eq!(v, want);
    }

    #[test]
    fn gallop_finds_the_first_digest_not_below() {
        let d: Vec<u128> = (0..100u128).map(|i| i * 2).collect();
        for from in [0, 3, 50, 99, 100] {
            for x in 0..210u128 {
                let want = d.partition_point(|&y| y < x).max(from);
                assert_eq!(gallop(&d, from, x), want, "from {from} x {x}");
            }
        }
    }

    fn call(kind: EventKind, msg: String, t: i64, user: &str, anon: Option<String>) -> Event {
        Event {
            message_id: msg,
            kind,
            event: kind.as_str().to_string(),
            user_id: Some(user.to_string()),
            anonymous_id: anon,
            timestamp: t,
            channel: "web".into(),
            ..Event::default()
        }
    }

    #[test]
    fn a_graph_above_the_two_thread_size_resolves_every_profile() {
        // 125,000 sightings, past the size where resolution sorts and digests on two
        // threads; calls interleaved across profiles, later ones with earlier times.
        let profiles = 25_000u32;
        let mut b = GraphBuilder::new(Config::default());
        for round in 0..3u32 {
            for i in 0..profiles {
                let p = (i * 7919) % profiles;
                let (user, msg) = (format!("u-{p}"), format!("m-{round}-{p}"));
                let t = i64::from(10 - round);
                let e = if round < 2 {
                    call(
                        EventKind::Identify,
                        msg,
                        t,
                        &user,
                        Some(format!("a-{p}-{round}")),
                    )
                } else {
                    Event {
                        previous_id: Some(format!("old-{p}")),
                        ..call(EventKind::Alias, msg, t, &user, None)
                    }
                };
                b.add(None, &e);
            }
        }
        // A second user id for a-0-0: refused, recorded.
        b.add(
            None,
            &call(
                EventKind::Identify,
                "late".into(),
                20,
                "u-1",
                Some("a-0-0".into()),
            ),
        );
        let g = b.finish(&Splits::default());
        assert_eq!(g.profile_count(), profiles as usize);
        assert_eq!(g.merge_count(), 3 * profiles as usize);
        assert_eq!(g.conflict_count(), 1);
        assert_eq!(g.identifier_count(), 4 * profiles as usize);
        for p in [0, 1, 12_345, profiles - 1] {
            let prof = g.lookup(&format!("a-{p}-1")).expect("known");
            let ids: Vec<String> = g.identifiers(prof).iter().map(|i| i.to_string()).collect();
            let want = [
                format!("user_id:u-{p}"),
                format!("anonymous_id:a-{p}-0"),
                format!("anonymous_id:a-{p}-1"),
                format!("anonymous_id:old-{p}"),
            ];
            assert_eq!(ids, want);
            let merges = g.merges(prof);
            assert_eq!(merges.len(), 3);
            // The alias came with the earliest time, so it is the first merge.
            assert_eq!(merges[0].message_id, format!("m-2-{p}"));
        }
        let conflicts = g.conflicts(g.lookup("a-0-0").expect("known"));
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].message_id, "late");
        assert_eq!(conflicts[0].reason, "limit:user_id=1");
    }
}
