//! Paths: what customers do after (or before) an event, as a Sankey-ready graph.
//!
//! Each customer's journey is anchored at the **first** occurrence of the `--from` event (or of
//! the `--to` event, or at its first event when neither is given). From the anchor the path
//! follows the next `steps` events (`--to`: the `steps` events before it). Node `k:name` is
//! "name was the k-th event after the anchor" (`-k:name` before it, with `--to`); a journey
//! that ends early goes to a `(drop-off)` node (`(start)` with `--to`, for a journey that began
//! less than `steps` events before the anchor).
//!
//! At each step only the `top` most common events keep their own node; the rest share an
//! `(other)` node, so the graph stays readable while its counts still add up: the links into
//! the nodes of step k+1 sum to the customers at step k.
//!
//! Events can be renamed or merged before anything else (see [`Rename`]), and with
//! `collapse_repeats` runs of the same event count as one (`a a a b` is `a b`).

use serde::Serialize;

use crate::hash::FxHashMap;
use crate::{Analysis, Needs, Timeline};

/// A renaming of event names: each original name id maps to an id in a new name table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// The names after renaming (several originals may share one).
    pub names: Vec<String>,
    /// Original name id → new name id.
    pub map: Vec<u16>,
}

impl Rename {
    /// No renaming.
    pub fn identity(names: &[String]) -> Rename {
        Rename {
            names: names.to_vec(),
            map: (0..names.len() as u16).collect(),
        }
    }

    /// Renames every name `f` gives a new name for; names with the same new name merge.
    pub fn with(names: &[String], mut f: impl FnMut(&str) -> Option<String>) -> Rename {
        let mut out = Rename {
            names: Vec::new(),
            map: Vec::with_capacity(names.len()),
        };
        let mut ids: FxHashMap<String, u16> = FxHashMap::default();
        for n in names {
            let new = f(n).unwrap_or_else(|| n.clone());
            let id = *ids.entry(new.clone()).or_insert_with(|| {
                out.names.push(new);
                (out.names.len() - 1) as u16
            });
            out.map.push(id);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// From the first occurrence of this (renamed) event, forwards.
    From(u16),
    /// Up to the first occurrence of this (renamed) event, backwards.
    To(u16),
    /// From each journey's first event, forwards.
    Start,
}

pub struct Paths {
    pub rename: Rename,
    pub anchor: Anchor,
    pub steps: usize,
    /// Events with their own node at each step; the rest go to `(other)`.
    pub top: usize,
    pub collapse_repeats: bool,
}

/// Marks a journey that ended (or began) before the path was `steps` long.
const EDGE: u16 = u16::MAX;
/// The shared node of less common events.
const OTHER: u16 = u16::MAX - 1;

pub struct PathsPartial {
    customers: u64,
    /// (step, from, to) → customers. Step k links step k to step k+1.
    links: FxHashMap<(u8, u16, u16), u64>,
    /// Customers per anchor event (step 0).
    anchors: FxHashMap<u16, u64>,
    /// Whole paths (anchor first), without the drop-off marker.
    paths: FxHashMap<Box<[u16]>, u64>,
    scratch: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// `step:name`, unique in the graph.
    pub id: String,
    /// Events after the anchor (negative: before it, with `--to`).
    pub step: i32,
    pub name: String,
    pub customers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub source: String,
    pub target: String,
    pub customers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathCount {
    /// In time order.
    pub events: Vec<String>,
    pub customers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathsResult {
    /// Customers whose journey has the anchor event.
    pub customers: u64,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// The most common whole paths (up to `top`), anchor included.
    pub paths: Vec<PathCount>,
}

impl Analysis for Paths {
    type Partial = PathsPartial;
    type Output = PathsResult;

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn partial(&self) -> PathsPartial {
        PathsPartial {
            customers: 0,
            links: FxHashMap::default(),
            anchors: FxHashMap::default(),
            paths: FxHashMap::default(),
            scratch: Vec::new(),
        }
    }

    fn add(&self, p: &mut PathsPartial, t: &Timeline<'_>) {
        let seq = &mut p.scratch;
        seq.clear();
        for &n in t.names {
            let Some(&id) = self.rename.map.get(n as usize) else {
                continue;
            };
            if self.collapse_repeats && seq.last() == Some(&id) {
                continue;
            }
            seq.push(id);
        }
        // The path in walking order: anchor first, then away from it.
        let (path, ended): (Vec<u16>, bool) = match self.anchor {
            Anchor::Start => {
                let end = seq.len().min(self.steps + 1);
                (seq[..end].to_vec(), seq.len() <= self.steps)
            }
            Anchor::From(a) => {
                let Some(i) = seq.iter().position(|&x| x == a) else {
                    return;
                };
                let end = seq.len().min(i + self.steps + 1);
                (seq[i..end].to_vec(), seq.len() - i <= self.steps)
            }
            Anchor::To(a) => {
                let Some(i) = seq.iter().position(|&x| x == a) else {
                    return;
                };
                let begin = i.saturating_sub(self.steps);
                let mut v = seq[begin..=i].to_vec();
                v.reverse();
                (v, i < self.steps)
            }
        };
        let Some(&first) = path.first() else {
            return;
        };
        p.customers += 1;
        *p.anchors.entry(first).or_default() += 1;
        for (k, w) in path.windows(2).enumerate() {
            *p.links.entry((k as u8, w[0], w[1])).or_default() += 1;
        }
        if ended {
            let k = path.len() - 1;
            *p.links.entry((k as u8, path[k], EDGE)).or_default() += 1;
        }
        let mut whole = path;
        if matches!(self.anchor, Anchor::To(_)) {
            whole.reverse();
        }
        *p.paths.entry(whole.into_boxed_slice()).or_default() += 1;
    }

    fn merge(&self, into: &mut PathsPartial, other: PathsPartial) {
        into.customers += other.customers;
        for (k, v) in other.links {
            *into.links.entry(k).or_default() += v;
        }
        for (k, v) in other.anchors {
            *into.anchors.entry(k).or_default() += v;
        }
        for (k, v) in other.paths {
            *into.paths.entry(k).or_default() += v;
        }
    }

    fn finish(&self, p: PathsPartial) -> PathsResult {
        let names = &self.rename.names;
        let backwards = matches!(self.anchor, Anchor::To(_));
        let edge_name = if backwards { "(start)" } else { "(drop-off)" };
        let label = |id: u16| -> String {
            match id {
                EDGE => edge_name.to_string(),
                OTHER => "(other)".to_string(),
                _ => names[id as usize].clone(),
            }
        };
        let step_of = |k: usize| if backwards { -(k as i32) } else { k as i32 };
        let node_id = |k: usize, id: u16| format!("{}:{}", step_of(k), label(id));

        // Raw customers per (step, event).
        let mut raw: Vec<FxHashMap<u16, u64>> = vec![FxHashMap::default(); self.steps + 2];
        raw[0] = p.anchors.clone();
        for (&(k, _, b), &c) in &p.links {
            *raw[k as usize + 1].entry(b).or_default() += c;
        }
        // Per step, the events that keep their own node.
        let kept: Vec<Vec<u16>> = raw
            .iter()
            .map(|m| {
                let mut v: Vec<(u16, u64)> = m
                    .iter()
                    .filter(|e| *e.0 != EDGE)
                    .map(|(&a, &c)| (a, c))
                    .collect();
                v.sort_by(|a, b| {
                    b.1.cmp(&a.1)
                        .then_with(|| names[a.0 as usize].cmp(&names[b.0 as usize]))
                });
                v.truncate(self.top.max(1));
                v.into_iter().map(|e| e.0).collect()
            })
            .collect();
        let bucket = |k: usize, id: u16| {
            if id == EDGE || kept[k].contains(&id) {
                id
            } else {
                OTHER
            }
        };

        let mut nodes: FxHashMap<(usize, u16), u64> = FxHashMap::default();
        for (&a, &c) in &p.anchors {
            *nodes.entry((0, bucket(0, a))).or_default() += c;
        }
        let mut links: FxHashMap<(usize, u16, u16), u64> = FxHashMap::default();
        for (&(k, a, b), &c) in &p.links {
            let k = k as usize;
            let (ba, bb) = (bucket(k, a), bucket(k + 1, b));
            *links.entry((k, ba, bb)).or_default() += c;
            *nodes.entry((k + 1, bb)).or_default() += c;
        }
        let mut nodes: Vec<((usize, u16), u64)> = nodes.into_iter().collect();
        // By step, then busiest first, with other and drop-off last.
        let rank = |id: u16| match id {
            EDGE => 2,
            OTHER => 1,
            _ => 0,
        };
        nodes.sort_by(|a, b| {
            (a.0.0, rank(a.0.1))
                .cmp(&(b.0.0, rank(b.0.1)))
                .then(b.1.cmp(&a.1))
                .then_with(|| label(a.0.1).cmp(&label(b.0.1)))
        });
        let mut links: Vec<((usize, u16, u16), u64)> = links.into_iter().collect();
        links.sort_by(|a, b| {
            a.0.0
                .cmp(&b.0.0)
                .then(b.1.cmp(&a.1))
                .then_with(|| (label(a.0.1), label(a.0.2)).cmp(&(label(b.0.1), label(b.0.2))))
        });
        let mut paths: Vec<(Box<[u16]>, u64)> = p.paths.into_iter().collect();
        paths.sort_by(|a, b| {
            b.1.cmp(&a.1).then_with(|| {
                a.0.iter()
                    .map(|&i| &names[i as usize])
                    .cmp(b.0.iter().map(|&i| &names[i as usize]))
            })
        });
        paths.truncate(self.top);
        PathsResult {
            customers: p.customers,
            nodes: nodes
                .into_iter()
                .map(|((k, id), c)| Node {
                    id: node_id(k, id),
                    step: step_of(k),
                    name: label(id),
                    customers: c,
                })
                .collect(),
            links: links
                .into_iter()
                .map(|((k, a, b), c)| Link {
                    source: node_id(k, a),
                    target: node_id(k + 1, b),
                    customers: c,
                })
                .collect(),
            paths: paths
                .into_iter()
                .map(|(seq, c)| PathCount {
                    events: seq.iter().map(|&i| names[i as usize].clone()).collect(),
                    customers: c,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;
    use crate::testutil::{Owned, names};

    fn paths(anchor: Anchor, steps: usize, top: usize) -> Paths {
        Paths {
            rename: Rename::identity(&names(&["a", "b", "c", "d"])),
            anchor,
            steps,
            top,
            collapse_repeats: false,
        }
    }

    fn journeys() -> Vec<Owned> {
        vec![
            Owned::new(1, &[(0, 0), (1, 1), (2, 2)]),
            Owned::new(2, &[(3, 0), (0, 1), (1, 2), (3, 3)]),
            Owned::new(3, &[(0, 0), (2, 1)]),
            Owned::new(4, &[(1, 0)]),
        ]
    }

    fn node(r: &PathsResult, id: &str) -> u64 {
        r.nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(0, |n| n.customers)
    }

    #[test]
    fn forward_from_an_event() {
        let js = journeys();
        let r = run(&paths(Anchor::From(0), 2, 5), js.iter().map(|o| o.view()));
        assert_eq!(r.customers, 3);
        assert_eq!(node(&r, "0:a"), 3);
        assert_eq!(node(&r, "1:b"), 2);
        assert_eq!(node(&r, "1:c"), 1);
        assert_eq!(node(&r, "2:(drop-off)"), 1);
        assert_eq!(node(&r, "2:c"), 1);
        assert_eq!(node(&r, "2:d"), 1);
        // Links out of each node add up to the node (minus journeys that already ended).
        let out: u64 = r
            .links
            .iter()
            .filter(|l| l.source == "1:b")
            .map(|l| l.customers)
            .sum();
        assert_eq!(out, 2);
        assert_eq!(r.paths[0].customers, 1);
    }

    #[test]
    fn backward_to_an_event_and_other_bucket() {
        let js = journeys();
        let r = run(&paths(Anchor::To(1), 1, 1), js.iter().map(|o| o.view()));
        assert_eq!(r.customers, 3);
        assert_eq!(node(&r, "0:b"), 3);
        assert_eq!(node(&r, "-1:a"), 2);
        assert_eq!(node(&r, "-1:(start)"), 1);
        let r = run(&paths(Anchor::Start, 1, 1), js.iter().map(|o| o.view()));
        assert_eq!(node(&r, "0:a"), 2);
        assert_eq!(node(&r, "0:(other)"), 2);
    }

    #[test]
    fn rename_and_collapse() {
        let n = names(&["view shoe", "view tent", "buy"]);
        let rename = Rename::with(&n, |s| s.starts_with("view").then(|| "view".to_string()));
        assert_eq!(rename.names, ["view", "buy"]);
        assert_eq!(rename.map, [0, 0, 1]);
        let p = Paths {
            rename,
            anchor: Anchor::Start,
            steps: 3,
            top: 5,
            collapse_repeats: true,
        };
        let o = Owned::new(1, &[(0, 0), (1, 1), (2, 2)]);
        let r = run(&p, [o.view()]);
        assert_eq!(r.paths[0].events, ["view", "buy"]);
        assert_eq!(node(&r, "2:(drop-off)"), 1);
    }
}
