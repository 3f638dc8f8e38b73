//! The identity graph: identifiers as nodes, "seen together on one message" as edges, and
//! profiles as the connected parts that the merge rules allow.
//!
//! # Why the result does not depend on arrival order
//!
//! The builder only collects: every distinct edge with the *earliest* message that shows it
//! (by event time, then a hash of the message id, then the message id itself). Resolution then
//! sorts the edges by that same (time, message) order — within one message, from the link of
//! the highest-priority identifier down — and runs a union-find over them, refusing any union
//! that would break a limit. Sorting uses only what the events say, never when or in which
//! order they arrived, so the same events give the same profiles, merges and conflicts
//! whether an identify came before, between or after the events it explains.
//!
//! Customer keys of the store come in as well: events are filed under their raw `userId`, else
//! `anonymousId`, so a key is the node of that raw id. A raw id that was sent once as a user id
//! and once as an anonymous id is one key in the store, so its two nodes are joined
//! unconditionally before any edge.

use std::cmp::Ordering;

use cairn_model::{Event, EventKind, Micros};
use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::config::Config;
use crate::extract;
use crate::ident::{IdKind, Identifier, is_blocked};
use crate::idents::Idents;
use crate::splits::Splits;

use crate::hash::{FxMap as Map, FxSet, Groups};

const NONE: u32 = u32::MAX;

/// The message that shows an edge: the earliest one wins.
#[derive(Debug, Clone, Copy)]
struct Cause {
    time: Micros,
    /// xxh3 of the message id: a cheap, order-independent tie-break before comparing texts.
    hash: u64,
    msg: u32,
}

/// Collects identifiers and edges from events, in any order; [`GraphBuilder::finish`] resolves.
pub struct GraphBuilder {
    config: Config,
    /// Node of each identifier, by the 128-bit digest of its kind and value: intake hashes
    /// fixed-size keys and allocates only for identifiers it has not seen.
    nodes: Map<u128, u32>,
    idents: Idents,
    /// Node of each store key's raw id, `NONE` where unknown.
    key_node: Vec<u32>,
    /// Nodes that are one store key (same raw id sent as user id and as anonymous id).
    forced: Vec<(u32, u32)>,
    /// Every link as it came (its two nodes, smaller first, and its cause). Kept as a list,
    /// not a map of distinct pairs: appending touches memory in order, while a map of 10 M
    /// pairs was a cache miss per call and gigabytes of fresh pages as it grew. A repeated pair
    /// costs nothing at resolution (its later copies join nodes already joined); the run of
    /// one customer's events in a scan, which repeats the same pair, is folded as it comes.
    edges: Vec<((u32, u32), Cause)>,
    messages: Messages,
    /// Alias `previousId`s (ending where `alias_ends` says in `alias_text`) with the node
    /// they link to, resolved to a kind once all user ids are known.
    aliases: Vec<(u32, Cause)>,
    alias_text: String,
    alias_ends: Vec<usize>,
    /// The current event's identifiers: (priority rank, node).
    found: Vec<(u32, u32)>,
    /// The last identifier of each kind and its node. A scan hands over a customer's events
    /// one after another, each with the same ids, so most lookups end here without hashing.
    recent: Vec<(IdKind, String, u32)>,
    digest_buf: Vec<u8>,
}

/// The 128-bit digest identifiers are interned by: kind, a separator no kind name holds, value.
fn digest(buf: &mut Vec<u8>, kind: &IdKind, value: &str) -> u128 {
    buf.clear();
    buf.extend_from_slice(kind.as_str().as_bytes());
    buf.push(0xff);
    buf.extend_from_slice(value.as_bytes());
    xxh3_128(buf)
}

/// The node of (kind, value), added when new; through `recent` first.
fn intern_recent(
    recent: &mut Vec<(IdKind, String, u32)>,
    nodes: &mut Map<u128, u32>,
    idents: &mut Idents,
    buf: &mut Vec<u8>,
    kind: &IdKind,
    value: &str,
) -> u32 {
    match recent.iter_mut().find(|r| &r.0 == kind) {
        Some(r) if r.1 == value => r.2,
        Some(r) => {
            r.2 = intern(nodes, idents, buf, kind, value);
            r.1.clear();
            r.1.push_str(value);
            r.2
        }
        None => {
            let n = intern(nodes, idents, buf, kind, value);
            recent.push((kind.clone(), value.to_string(), n));
            n
        }
    }
}

/// The node of (kind, value), added when new.
fn intern(
    nodes: &mut Map<u128, u32>,
    idents: &mut Idents,
    buf: &mut Vec<u8>,
    kind: &IdKind,
    value: &str,
) -> u32 {
    let d = digest(buf, kind, value);
    *nodes.entry(d).or_insert_with(|| idents.push(kind, value))
}

impl GraphBuilder {
    pub fn new(config: Config) -> GraphBuilder {
        GraphBuilder {
            config,
            nodes: Map::default(),
            idents: Idents::default(),
            key_node: Vec::new(),
            forced: Vec::new(),
            edges: Vec::new(),
            messages: Messages::default(),
            aliases: Vec::new(),
            alias_text: String::new(),
            alias_ends: Vec::new(),
            found: Vec::new(),
            recent: Vec::new(),
            digest_buf: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn intern(&mut self, kind: &IdKind, value: &str) -> u32 {
        intern(
            &mut self.nodes,
            &mut self.idents,
            &mut self.digest_buf,
            kind,
            value,
        )
    }

    /// Adds one event; `key` is its customer key in the store, when it comes from one.
    pub fn add(&mut self, key: Option<u32>, event: &Event) {
        if let Some(key) = key {
            self.add_key(key, event);
        }
        let GraphBuilder {
            config,
            nodes,
            idents,
            found,
            recent,
            digest_buf,
            ..
        } = self;
        found.clear();
        extract::visit(event, config, &mut |kind, value| {
            let n = intern_recent(recent, nodes, idents, digest_buf, kind, value);
            if !found.iter().any(|&(_, m)| m == n) {
                found.push((config.rank(kind), n));
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
        // equals: never the first interned, which would depend on arrival order); every other
        // one is linked to it.
        let idents = &self.idents;
        self.found
            .sort_unstable_by(|&(ra, a), &(rb, b)| ra.cmp(&rb).then_with(|| idents.cmp(a, b)));
        let cause = Cause {
            time: event.timestamp,
            hash: xxh3_64(event.message_id.as_bytes()),
            msg: self.messages.len(),
        };
        self.messages.push(&event.message_id);
        let found = std::mem::take(&mut self.found);
        let centre = found[0].1;
        for &(_, n) in &found[1..] {
            self.add_edge(centre, n, cause);
        }
        self.found = found;
        if let Some(prev) = alias {
            self.alias_text.push_str(prev);
            self.alias_ends.push(self.alias_text.len());
            self.aliases.push((centre, cause));
        }
    }

    fn add_key(&mut self, key: u32, event: &Event) {
        let kind = if event.user_id.is_some() {
            IdKind::UserId
        } else {
            IdKind::AnonymousId
        };
        let node = intern_recent(
            &mut self.recent,
            &mut self.nodes,
            &mut self.idents,
            &mut self.digest_buf,
            &kind,
            event.customer_id(),
        );
        let k = key as usize;
        if self.key_node.len() <= k {
            self.key_node.resize(k + 1, NONE);
        }
        match self.key_node[k] {
            NONE => self.key_node[k] = node,
            other if other != node && !self.forced.contains(&(other, node)) => {
                self.forced.push((other, node));
            }
            _ => {}
        }
    }

    fn add_edge(&mut self, a: u32, b: u32, cause: Cause) {
        if a == b {
            return;
        }
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

    /// Resolves the graph: aliases, then the union-find over edges in (time, message) order
    /// under the limits, leaving out every edge of an identifier the operator split off.
    pub fn finish(mut self, splits: &Splits) -> IdentityGraph {
        // An alias's previous id is a user id if any message used it as one, else anonymous.
        let alias_text = std::mem::take(&mut self.alias_text);
        let alias_ends = std::mem::take(&mut self.alias_ends);
        for (i, (to, cause)) in std::mem::take(&mut self.aliases).into_iter().enumerate() {
            let start = if i == 0 { 0 } else { alias_ends[i - 1] };
            let prev = &alias_text[start..alias_ends[i]];
            let as_user = digest(&mut self.digest_buf, &IdKind::UserId, prev);
            let node = match self.nodes.get(&as_user) {
                Some(&n) => n,
                None => self.intern(&IdKind::AnonymousId, prev),
            };
            if to != NONE {
                self.add_edge(node, to, cause);
            }
        }
        let detached: Vec<bool> = {
            let mut d = vec![false; self.idents.len()];
            for s in &splits.detached {
                let id = &s.identifier;
                let key = digest(&mut self.digest_buf, &id.kind, &id.value);
                if let Some(&n) = self.nodes.get(&key) {
                    d[n as usize] = true;
                }
            }
            d
        };

        let config = &self.config;
        let idents = &self.idents;
        let rank: Vec<u32> = idents.per_node(|kind| config.rank(kind));
        let mut edges: Vec<Edge> = std::mem::take(&mut self.edges)
            .into_iter()
            .map(|((a, b), cause)| {
                // `strong` is the higher-priority end: its link is tried first.
                let (strong, weak) = if rank[a as usize]
                    .cmp(&rank[b as usize])
                    .then_with(|| idents.cmp(a, b))
                    .is_le()
                {
                    (a, b)
                } else {
                    (b, a)
                };
                Edge {
                    cause,
                    strong,
                    weak,
                }
            })
            .collect();
        let messages = &self.messages;
        edges.sort_unstable_by(|x, y| {
            cause_order(messages, &x.cause, &y.cause)
                .then_with(|| rank[x.weak as usize].cmp(&rank[y.weak as usize]))
                .then_with(|| idents.cmp(x.weak, y.weak))
                .then_with(|| idents.cmp(x.strong, y.strong))
        });

        let slots: Vec<(IdKind, u32)> = config.limits.clone();
        let mut uf = UnionFind::new(idents, &slots, config.max_identifiers);
        for &(a, b) in &self.forced {
            uf.union_unchecked(a, b);
        }
        let mut merges = Vec::new();
        let mut conflicts = Vec::new();
        // A pair refused once is refused again at each later copy (profiles only grow, and
        // splits do not change here): it is one conflict, with its earliest message.
        let mut refused: FxSet<(u32, u32)> = FxSet::default();
        for e in &edges {
            let reason = if detached[e.strong as usize] || detached[e.weak as usize] {
                Refusal::Split
            } else {
                match uf.union(e.strong, e.weak) {
                    Ok(true) => {
                        merges.push(*e);
                        continue;
                    }
                    Ok(false) => continue,
                    Err(reason) => reason,
                }
            };
            if refused.insert((e.strong, e.weak)) {
                conflicts.push(RawConflict { edge: *e, reason });
            }
        }
        let root: Vec<u32> = (0..idents.len() as u32).map(|n| uf.find(n)).collect();
        IdentityGraph::new(self, root, merges, conflicts)
    }
}

/// Message ids of the events that linked something, in one text: ten million small strings
/// would be ten million allocations.
#[derive(Default)]
struct Messages {
    text: String,
    ends: Vec<usize>,
}

impl Messages {
    fn len(&self) -> u32 {
        self.ends.len() as u32
    }

    fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len());
    }
}

impl std::ops::Index<usize> for Messages {
    type Output = str;
    fn index(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
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

/// Union-find with, per root, the number of identifiers of each limited kind.
struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
    /// `slots.len()` counters per node, meaningful at roots.
    counts: Vec<u32>,
    limits: Vec<u32>,
    max: u32,
}

impl UnionFind {
    fn new(idents: &Idents, slots: &[(IdKind, u32)], max: u32) -> UnionFind {
        let s = slots.len();
        let mut counts = vec![0u32; idents.len() * s];
        for n in 0..idents.len() {
            for (i, (kind, _)) in slots.iter().enumerate() {
                if idents.is(n as u32, kind) {
                    counts[n * s + i] = 1;
                }
            }
        }
        UnionFind {
            parent: (0..idents.len() as u32).collect(),
            size: vec![1; idents.len()],
            counts,
            limits: slots.iter().map(|&(_, l)| l).collect(),
            max,
        }
    }

    fn find(&mut self, mut n: u32) -> u32 {
        while self.parent[n as usize] != n {
            let grand = self.parent[self.parent[n as usize] as usize];
            self.parent[n as usize] = grand;
            n = grand;
        }
        n
    }

    /// Joins the two sets if the limits allow; `Ok(false)` when they already were one.
    fn union(&mut self, a: u32, b: u32) -> Result<bool, Refusal> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Ok(false);
        }
        let s = self.limits.len();
        for i in 0..s {
            let together = self.counts[ra as usize * s + i] + self.counts[rb as usize * s + i];
            if together > self.limits[i] {
                return Err(Refusal::Limit {
                    kind_slot: i,
                    limit: self.limits[i],
                });
            }
        }
        if self.size[ra as usize] + self.size[rb as usize] > self.max {
            return Err(Refusal::TooLarge { limit: self.max });
        }
        self.link(ra, rb);
        Ok(true)
    }

    fn union_unchecked(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.link(ra, rb);
        }
    }

    fn link(&mut self, ra: u32, rb: u32) {
        let (big, small) = if self.size[ra as usize] >= self.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        let s = self.limits.len();
        for i in 0..s {
            self.counts[big as usize * s + i] += self.counts[small as usize * s + i];
        }
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
    nodes: Map<u128, u32>,
    idents: Idents,
    root: Vec<u32>,
    messages: Messages,
    merges: Vec<Edge>,
    conflicts: Vec<RawConflict>,
    /// Store keys by node, for nodes that are a key's raw id.
    node_keys: Map<u32, Vec<u32>>,
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
    fn new(
        b: GraphBuilder,
        root: Vec<u32>,
        merges: Vec<Edge>,
        conflicts: Vec<RawConflict>,
    ) -> IdentityGraph {
        let mut node_keys: Map<u32, Vec<u32>> = Map::default();
        let mut min_key = vec![NONE; b.idents.len()];
        let mut keys_per_root = vec![0u32; b.idents.len()];
        for (key, &node) in b.key_node.iter().enumerate() {
            if node == NONE {
                continue;
            }
            node_keys.entry(node).or_default().push(key as u32);
            let r = root[node as usize] as usize;
            min_key[r] = min_key[r].min(key as u32);
            keys_per_root[r] += 1;
        }
        let mut rep: Vec<u32> = (0..b.key_node.len() as u32).collect();
        for (key, &node) in b.key_node.iter().enumerate() {
            if node == NONE {
                continue;
            }
            let r = root[node as usize] as usize;
            if keys_per_root[r] > 1 {
                rep[key] = min_key[r];
            }
        }
        let map = ProfileMap::from_valid_representatives(&rep);
        let n = root.len();
        let members_of = Groups::new(n, root.iter().enumerate().map(|(i, &r)| (r, i as u32)));
        let merges_of = Groups::new(
            n,
            merges
                .iter()
                .enumerate()
                .map(|(i, e)| (root[e.strong as usize], i as u32)),
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
            config: b.config,
            nodes: b.nodes,
            idents: b.idents,
            root,
            messages: b.messages,
            merges,
            conflicts,
            node_keys,
            key_node: b.key_node,
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
        self.idents.len()
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
        let d = digest(&mut Vec::new(), &id.kind, &id.value);
        self.nodes.get(&d).copied()
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
        let mut ids: Vec<Identifier> = self.members(p).map(|n| self.idents.get(n)).collect();
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
            .filter_map(|n| self.node_keys.get(&n))
            .flatten()
            .copied()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
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
                a: self.idents.get(e.strong),
                b: self.idents.get(e.weak),
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
                ours: self.idents.get(ours),
                theirs: self.idents.get(theirs),
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
const ALONE: u32 = u32::MAX;

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
        let g = *self.group_of.get(key as usize)?;
        if g == ALONE {
            return None;
        }
        let (start, end) = (self.starts[g as usize], self.starts[g as usize + 1]);
        let keys = &self.members[start as usize..end as usize];
        Some((keys[0], keys))
    }

    /// The key a stitched scan reports a profile under: its lowest key.
    pub fn representative(&self, key: u32) -> u32 {
        self.group(key).map_or(key, |(rep, _)| rep)
    }

    /// Number of profiles with more than one key.
    pub fn multi_key_profiles(&self) -> usize {
        self.starts.len().saturating_sub(1)
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
}
