//! The process map: the directly-follows graph of all journeys.
//!
//! For every pair of events that follow each other directly in a customer's journey (`a` then
//! `b`, nothing in between), the map counts the occurrences, the distinct customers, and the
//! time between them (mean, median, p90). It also counts each journey's first and last event
//! (start and end activities). This is the same graph pm4py's `discover_dfg` and
//! `discover_performance_dfg` compute, and the test suite checks it against pm4py on the real
//! logs in `testdata/`.
//!
//! With a `keep` mask (e.g. the top K activities), events of other names are removed from each
//! journey first, so `a → x → b` with `x` dropped becomes an edge `a → b`: the process-mining
//! convention for an activity filter, and what keeps the map of a filtered log a valid map.
//!
//! Each edge's median and p90 time are exact. By default an edge keeps every transition's
//! duration for them; given [`EdgeWindows`], planned by [`PlanWindows`] over a sample of the
//! customers, it keeps only those near the two quantiles (see [`crate::near`]), and the
//! result says when that was not enough ([`MapResult::incomplete`]): the caller then runs
//! the map again without windows. [`run_windowed`] does both for callers that can scan a
//! sample.

use serde::{Serialize, Serializer};

use crate::hash::FxHashMap;
use crate::near::{Near, Windows};
use crate::stats::Summary;
use crate::{Analysis, Micros, Needs, Timeline};

#[derive(Debug, Clone)]
pub struct ProcessMap {
    pub names: Vec<String>,
    /// Which name ids take part; `None` keeps all.
    pub keep: Option<Vec<bool>>,
    /// Edges seen fewer times are left out of the result (but counted in `hidden_edges`).
    pub min_count: u64,
    /// Which durations each edge keeps for its median and p90; `None` keeps them all.
    pub windows: Option<EdgeWindows>,
}

impl ProcessMap {
    pub fn new(names: Vec<String>) -> ProcessMap {
        ProcessMap {
            names,
            keep: None,
            min_count: 1,
            windows: None,
        }
    }

    /// The windows of edge `a → b`: every duration when it has none.
    fn windows_of(&self, a: u16, b: u16) -> Windows {
        (self.windows.as_ref())
            .and_then(|w| w.0.get(&(a, b)).copied())
            .unwrap_or(Windows::ALL)
    }

    fn kept(&self, n: u16) -> bool {
        match &self.keep {
            Some(k) => k.get(n as usize).copied().unwrap_or(false),
            None => (n as usize) < self.names.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub name: String,
    pub events: u64,
    pub customers: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// Times `to` directly followed `from`.
    pub count: u64,
    /// Distinct customers with this transition.
    pub customers: u64,
    pub mean_s: f64,
    pub median_s: f64,
    pub p90_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapResult {
    /// Customers with at least one (kept) event.
    pub customers: u64,
    pub events: u64,
    /// By descending event count.
    pub activities: Vec<Activity>,
    /// By descending count, then names.
    pub edges: Vec<Edge>,
    /// Journeys starting with each activity, by descending count.
    #[serde(serialize_with = "as_map")]
    pub start: Vec<(String, u64)>,
    /// Journeys ending with each activity, by descending count.
    #[serde(serialize_with = "as_map")]
    pub end: Vec<(String, u64)>,
    /// Edges left out because they occurred fewer than `min_count` times.
    pub hidden_edges: u64,
    /// Some edge's median or p90 lay outside the durations its [`EdgeWindows`] kept, so its
    /// times here are 0: run the map again without windows. Never set without windows.
    #[serde(skip)]
    pub incomplete: bool,
}

/// For each edge, the durations it keeps for its median and p90 ([`Windows`]); edges not
/// listed keep all of theirs.
#[derive(Debug, Clone, Default)]
pub struct EdgeWindows(FxHashMap<(u16, u16), Windows>);

/// The sample pass of a windowed process map: the map of a sample of the customers, whose
/// output is each edge's windows (see [`Windows::around_quantiles`]).
pub struct PlanWindows(ProcessMap);

impl PlanWindows {
    /// Plans windows for `map` (its own windows, if any, are not used).
    pub fn new(map: &ProcessMap) -> PlanWindows {
        PlanWindows(ProcessMap {
            windows: None,
            ..map.clone()
        })
    }
}

impl Analysis for PlanWindows {
    type Partial = MapPartial;
    type Output = EdgeWindows;

    fn needs(&self) -> Needs {
        self.0.needs()
    }
    fn partial(&self) -> MapPartial {
        self.0.partial()
    }
    fn add(&self, p: &mut MapPartial, t: &Timeline<'_>) {
        self.0.add(p, t)
    }
    fn merge(&self, into: &mut MapPartial, other: MapPartial) {
        self.0.merge(into, other)
    }
    /// Each edge's windows on all cores, like the map's own quantiles: on one thread, this
    /// left the other core idle between the two scans.
    fn finish(&self, p: MapPartial) -> EdgeWindows {
        let windows = crate::each_on_cores(
            &p.edges,
            |e| e.durations.len(),
            |e| Some(Windows::around_quantiles(&e.durations)),
        );
        EdgeWindows(
            (p.edges.iter().zip(windows))
                .filter_map(|(e, w)| Some(((e.from, e.to), w?)))
                .filter(|(_, w)| *w != Windows::ALL)
                .collect(),
        )
    }
}

/// Runs `map` keeping only the durations near each edge's quantiles: `sample` runs the
/// [`PlanWindows`] it is given over a sample of the customers (with 1 in 32, the generated
/// 12 M events keep 18 % of their durations and 96 M events 6.6 %, for a thirtieth of a
/// scan), `scan` runs a map over all of them. When the windows were not enough
/// ([`MapResult::incomplete`], rare), `scan` runs once more with `map` itself. The result
/// is always the one `scan(map)` gives.
pub fn run_windowed<E>(
    map: &ProcessMap,
    sample: impl FnOnce(PlanWindows) -> Result<EdgeWindows, E>,
    mut scan: impl FnMut(&ProcessMap) -> Result<MapResult, E>,
) -> Result<MapResult, E> {
    let windows = sample(PlanWindows::new(map))?;
    let windowed = ProcessMap {
        windows: Some(windows),
        ..map.clone()
    };
    let result = scan(&windowed)?;
    if result.incomplete {
        return scan(map);
    }
    Ok(result)
}

/// Serializes `(key, count)` pairs as a JSON object, keeping their order.
pub(crate) fn as_map<S: Serializer>(pairs: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

struct EdgeAcc {
    from: u16,
    to: u16,
    customers: u64,
    /// The customer (partial-local sequence number) that last used this edge.
    last: u32,
    durations: Near,
}

/// Finds an edge's slot: a dense matrix for the usual few hundred names, a hash map beyond.
enum EdgeIndex {
    Dense { n: usize, slots: Vec<u32> },
    Sparse(FxHashMap<(u16, u16), u32>),
}

const DENSE_MAX_NAMES: usize = 1024;

impl EdgeIndex {
    fn new(n: usize) -> EdgeIndex {
        if n <= DENSE_MAX_NAMES {
            EdgeIndex::Dense {
                n,
                slots: vec![u32::MAX; n * n],
            }
        } else {
            EdgeIndex::Sparse(FxHashMap::default())
        }
    }

    /// The slot of `(a, b)`, or `next` after recording it as new.
    #[inline(always)]
    fn slot(&mut self, a: u16, b: u16, next: u32) -> (u32, bool) {
        match self {
            EdgeIndex::Dense { n, slots } => {
                let s = &mut slots[a as usize * *n + b as usize];
                if *s == u32::MAX {
                    *s = next;
                    (next, true)
                } else {
                    (*s, false)
                }
            }
            EdgeIndex::Sparse(map) => Self::sparse_slot(map, a, b, next),
        }
    }

    /// [`EdgeIndex::slot`] beyond [`DENSE_MAX_NAMES`] names, kept out of line: with it inside,
    /// the whole-program build called `slot` for every event instead of inlining the usual
    /// dense lookup into the map's loop (12 M map 0.94–0.95× wall, 0.93–0.94× CPU once
    /// inlined; 21 rounds twice).
    #[inline(never)]
    fn sparse_slot(map: &mut FxHashMap<(u16, u16), u32>, a: u16, b: u16, next: u32) -> (u32, bool) {
        let mut new = false;
        let s = *map.entry((a, b)).or_insert_with(|| {
            new = true;
            next
        });
        (s, new)
    }
}

pub struct MapPartial {
    index: EdgeIndex,
    edges: Vec<EdgeAcc>,
    start: Vec<u64>,
    end: Vec<u64>,
    customers_by: Vec<u64>,
    stamp: Vec<u32>,
    customers: u64,
    seq: u32,
}

impl MapPartial {
    #[inline]
    fn edge(&mut self, map: &ProcessMap, a: u16, b: u16, dt: Micros) {
        let (slot, new) = self.index.slot(a, b, self.edges.len() as u32);
        if new {
            self.edges.push(EdgeAcc {
                from: a,
                to: b,
                customers: 0,
                last: 0,
                durations: Near::new(map.windows_of(a, b)),
            });
        }
        let e = &mut self.edges[slot as usize];
        // Without a branch: whether a customer takes an edge again is a coin toss for the
        // branch predictor (a tenth of the map's samples sat on that branch).
        e.customers += u64::from(e.last != self.seq);
        e.last = self.seq;
        e.durations.push(dt);
    }
}

impl Analysis for ProcessMap {
    type Partial = MapPartial;
    type Output = MapResult;

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn partial(&self) -> MapPartial {
        let n = self.names.len();
        MapPartial {
            index: EdgeIndex::new(n),
            edges: Vec::new(),
            start: vec![0; n],
            end: vec![0; n],
            customers_by: vec![0; n],
            stamp: vec![0; n],
            customers: 0,
            seq: 0,
        }
    }

    fn add(&self, p: &mut MapPartial, t: &Timeline<'_>) {
        p.seq += 1;
        let mut prev: Option<(u16, Micros)> = None;
        let mut first = None;
        for (&n, &time) in t.names.iter().zip(t.times) {
            if !self.kept(n) {
                continue;
            }
            let i = n as usize;
            p.customers_by[i] += u64::from(p.stamp[i] != p.seq);
            p.stamp[i] = p.seq;
            match prev {
                Some((a, at)) => p.edge(self, a, n, time - at),
                None => first = Some(n),
            }
            prev = Some((n, time));
        }
        if let (Some(f), Some((l, _))) = (first, prev) {
            p.customers += 1;
            p.start[f as usize] += 1;
            p.end[l as usize] += 1;
        }
    }

    fn merge(&self, into: &mut MapPartial, other: MapPartial) {
        for e in other.edges {
            let (slot, new) = into.index.slot(e.from, e.to, into.edges.len() as u32);
            if new {
                into.edges.push(EdgeAcc { last: 0, ..e });
                continue;
            }
            let acc = &mut into.edges[slot as usize];
            acc.customers += e.customers;
            acc.durations.append(e.durations);
        }
        let add = |a: &mut Vec<u64>, b: Vec<u64>| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut into.start, other.start);
        add(&mut into.end, other.end);
        add(&mut into.customers_by, other.customers_by);
        into.customers += other.customers;
    }

    fn finish(&self, p: MapPartial) -> MapResult {
        let name = |i: u16| self.names[i as usize].clone();
        // Each event is followed by another (an edge from it) or ends its journey, so the
        // events per activity need no count of their own as the scan goes.
        let mut events = p.end.clone();
        for e in &p.edges {
            events[e.from as usize] += e.durations.len() as u64;
        }
        let mut hidden = 0;
        let mut incomplete = false;
        let shown: Vec<EdgeAcc> = p
            .edges
            .into_iter()
            .filter(|e| {
                let keep = e.durations.len() as u64 >= self.min_count;
                hidden += u64::from(!keep);
                keep
            })
            .collect();
        let summaries =
            crate::each_on_cores(&shown, |e| e.durations.len(), |e| e.durations.summarize());
        let mut edges: Vec<Edge> = (shown.iter().zip(summaries))
            .map(|(e, s)| {
                let s = s.unwrap_or_else(|| {
                    incomplete = true;
                    Summary::default()
                });
                Edge {
                    from: name(e.from),
                    to: name(e.to),
                    count: e.durations.len() as u64,
                    customers: e.customers,
                    // An edge exists only with at least one sample.
                    mean_s: s.mean_s.unwrap_or(0.0),
                    median_s: s.median_s.unwrap_or(0.0),
                    p90_s: s.p90_s.unwrap_or(0.0),
                }
            })
            .collect();
        edges.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.from.cmp(&b.from))
                .then_with(|| a.to.cmp(&b.to))
        });
        let mut activities: Vec<Activity> = (0..self.names.len())
            .filter(|&i| events[i] > 0)
            .map(|i| Activity {
                name: self.names[i].clone(),
                events: events[i],
                customers: p.customers_by[i],
            })
            .collect();
        activities.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.name.cmp(&b.name)));
        MapResult {
            customers: p.customers,
            events: events.iter().sum(),
            activities,
            edges,
            start: ranked(&self.names, &p.start),
            end: ranked(&self.names, &p.end),
            hidden_edges: hidden,
            incomplete,
        }
    }
}

/// Non-zero counts with their names, by descending count, then name.
pub(crate) fn ranked(names: &[String], counts: &[u64]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, &c)| (names[i].clone(), c))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Owned, names};
    use crate::{finish_partials, run};

    fn journeys() -> Vec<Owned> {
        vec![
            Owned::new(1, &[(0, 0), (1, 10), (2, 40)]),
            Owned::new(2, &[(0, 0), (1, 20), (1, 25), (2, 30)]),
            Owned::new(3, &[(1, 5)]),
        ]
    }

    #[test]
    fn counts_edges_starts_and_ends() {
        let js = journeys();
        let map = ProcessMap::new(names(&["a", "b", "c"]));
        let r = run(&map, js.iter().map(|o| o.view()));
        assert_eq!(r.customers, 3);
        assert_eq!(r.events, 8);
        let ab = r
            .edges
            .iter()
            .find(|e| e.from == "a" && e.to == "b")
            .unwrap();
        assert_eq!((ab.count, ab.customers), (2, 2));
        assert_eq!(ab.mean_s, 15.0);
        assert_eq!(ab.median_s, 15.0);
        let bc = r
            .edges
            .iter()
            .find(|e| e.from == "b" && e.to == "c")
            .unwrap();
        assert_eq!((bc.count, bc.mean_s), (2, 17.5));
        let bb = r
            .edges
            .iter()
            .find(|e| e.from == "b" && e.to == "b")
            .unwrap();
        assert_eq!((bb.count, bb.customers, bb.median_s), (1, 1, 5.0));
        assert_eq!(r.start, vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(
            r.end,
            vec![("b".into(), 1), ("c".into(), 2)]
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn keep_mask_bridges_removed_events() {
        let js = journeys();
        let mut map = ProcessMap::new(names(&["a", "b", "c"]));
        map.keep = Some(vec![true, false, true]);
        let r = run(&map, js.iter().map(|o| o.view()));
        assert_eq!(r.edges.len(), 1);
        assert_eq!(r.edges[0].from, "a");
        assert_eq!(r.edges[0].to, "c");
        assert_eq!(r.edges[0].count, 2);
        assert_eq!(r.customers, 2, "customer 3 has no kept event");
    }

    #[test]
    fn merging_partials_equals_one_pass() {
        let js = journeys();
        let map = ProcessMap::new(names(&["a", "b", "c"]));
        let whole = run(&map, js.iter().map(|o| o.view()));
        let mut parts = Vec::new();
        for o in &js {
            let mut p = map.partial();
            map.add(&mut p, &o.view());
            parts.push(p);
        }
        assert_eq!(finish_partials(&map, parts), whole);
    }

    /// `count` customers of 3–12 events over names 0–2, gaps of 0 to 10 minutes in whole
    /// ms, times scaled by `slow` (deterministic).
    fn many(count: u32, seed: u64, slow: i64) -> Vec<Owned> {
        let mut x = seed | 1;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        (0..count)
            .map(|c| {
                let mut t = 0i64;
                let events: Vec<(u16, i64)> = (0..3 + next(10))
                    .map(|_| {
                        t += next(600_000) as i64 * slow;
                        (next(3) as u16, t)
                    })
                    .collect();
                let mut o = Owned::new(c, &[]);
                o.names = events.iter().map(|e| e.0).collect();
                o.times = events.iter().map(|e| e.1 * 1000).collect();
                o.channels = vec![0; events.len()];
                o.values = vec![f64::NAN; events.len()];
                o.properties = vec![""; events.len()];
                o
            })
            .collect()
    }

    #[test]
    fn windows_planned_on_a_sample_give_the_same_map() {
        let js = many(30_000, 42, 1);
        let map = ProcessMap::new(names(&["a", "b", "c"]));
        let whole = run(&map, js.iter().map(|o| o.view()));
        let plan = PlanWindows::new(&map);
        let windows = run(&plan, js.iter().step_by(16).map(|o| o.view()));
        assert_eq!(windows.0.len(), 9, "every edge has enough samples");
        let windowed = ProcessMap {
            windows: Some(windows),
            ..map.clone()
        };
        // On two partials, as two scan threads would.
        let (a, b) = js.split_at(js.len() / 3);
        let parts = [a, b].map(|half| {
            let mut p = windowed.partial();
            half.iter().for_each(|o| windowed.add(&mut p, &o.view()));
            p
        });
        let r = finish_partials(&windowed, parts);
        assert!(!r.incomplete);
        assert_eq!(r, whole);
    }

    #[test]
    fn windows_that_miss_are_noticed_and_the_map_scanned_again() {
        let js = many(20_000, 7, 1);
        let map = ProcessMap::new(names(&["a", "b", "c"]));
        let whole = run(&map, js.iter().map(|o| o.view()));
        let mut scans = 0;
        let r = run_windowed(
            &map,
            // A sample of other journeys, ten times slower: its windows miss.
            |plan| Ok::<_, ()>(run(&plan, many(2_000, 9, 10).iter().map(|o| o.view()))),
            |m| {
                scans += 1;
                Ok(run(m, js.iter().map(|o| o.view())))
            },
        );
        assert_eq!(r, Ok(whole.clone()));
        assert_eq!(scans, 2);
        // A sample of the same journeys: one scan.
        scans = 0;
        let r = run_windowed(
            &map,
            |plan| Ok::<_, ()>(run(&plan, js.iter().step_by(8).map(|o| o.view()))),
            |m| {
                scans += 1;
                Ok(run(m, js.iter().map(|o| o.view())))
            },
        );
        assert_eq!((r, scans), (Ok(whole), 1));
    }
}
