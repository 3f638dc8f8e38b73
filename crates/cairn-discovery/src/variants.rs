//! Variants: whole journeys grouped by their exact sequence of events.
//!
//! Two customers share a variant when their journeys list the same event names in the same
//! order. For each variant: how many customers, their share, the median journey duration (first
//! to last event), the share that reached the goal event (when one is given) and the revenue
//! (sum of event values) of those journeys. Counts are checked against pm4py's
//! `get_variants` on the real logs in `testdata/`.
//!
//! With a goal, a journey's variant is what the customer did **before** the first goal event
//! (the whole journey when they never reached it), and its duration runs to the goal event. So
//! customers who did `a → b` and then converted share a variant with those who did `a → b` and
//! stopped, and the goal rate says how often that path led to the goal. (Over whole journeys it
//! could only be 0 or 1.) Revenue is always that of the whole journey.

use std::cmp::Ordering;

use serde::Serialize;

use hashbrown::hash_table::{Entry, HashTable};

use crate::stats::quantile;
use crate::{Analysis, Micros, Needs, ScanSize, Timeline};

pub struct Variants {
    pub names: Vec<String>,
    /// How many variants the result lists (the most common first).
    pub top: usize,
    pub goal: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub events: Vec<String>,
    pub count: u64,
    /// Of all customers in scope.
    pub share: f64,
    pub median_duration_s: f64,
    /// Share of this variant's customers who then reached the goal; `null` without a goal.
    pub goal_rate: Option<f64>,
    /// Sum of the event values of this variant's journeys.
    pub revenue: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantsResult {
    pub customers: u64,
    pub total_variants: u64,
    /// The `top` most common, by descending count, ties by event names.
    pub variants: Vec<Variant>,
    /// Customers whose variant is not among the listed ones.
    pub other_customers: u64,
}

#[derive(Default, Clone, Copy)]
pub struct VariantAcc {
    count: u64,
    goal: u64,
    revenue: Money,
}

/// A sum of money kept exactly in millionths, so totals do not depend on the order in which
/// customers and partials are added (floating-point addition is not associative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Money(i128);

impl Money {
    pub fn of(t: &Timeline<'_>) -> Money {
        Money(
            t.values
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| (v * 1e6).round() as i128)
                .sum(),
        )
    }
    pub fn add(&mut self, other: Money) {
        self.0 += other.0;
    }
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

pub struct VariantsPartial {
    /// Each variant's index in `accs`, found by its hash and its events: 4 bytes a slot (and
    /// the table's control byte), where a map from hash to index took 17 and, with the many
    /// variants of merged profiles, twice the fresh memory (which this VM zeroes slowly). Two
    /// variants with one hash both have their slot.
    by_seq: HashTable<u32>,
    /// Every variant's events back to back, where each ends, and its hash: hundreds of
    /// thousands of variants in one buffer rather than as many small allocations, and a
    /// merge reuses the hashes instead of hashing every variant again.
    events: Vec<u16>,
    ends: Vec<usize>,
    hashes: Vec<u64>,
    accs: Vec<VariantAcc>,
    /// Every journey's variant index and duration, in two parallel lists: medians are only
    /// needed for the variants listed, so durations are sorted out at the end instead of each
    /// of hundreds of thousands of variants owning a vector.
    duration_of: Vec<u32>,
    durations: Vec<Micros>,
    /// The same two lists of each partial merged in, their indexes renumbered into this
    /// one's: kept where they are rather than copied onto the end of this partial's, which
    /// for 8 M customers wrote 100 MB of fresh memory on the one thread merging.
    merged_durations: Vec<(Vec<u32>, Vec<Micros>)>,
    customers: u64,
}

fn seq_hash(seq: &[u16]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(seq)
}

/// The events of variant `i`, given the buffers of a [`VariantsPartial`].
fn seq_of<'a>(events: &'a [u16], ends: &[usize], i: u32) -> &'a [u16] {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &events[start..ends[i]]
}

impl VariantsPartial {
    /// The events of variant `i`.
    fn seq(&self, i: u32) -> &[u16] {
        seq_of(&self.events, &self.ends, i)
    }

    /// The index of variant `seq` (whose hash is `hash`), adding it when new.
    fn index(&mut self, seq: &[u16], hash: u64) -> u32 {
        let (events, ends, hashes) = (&self.events, &self.ends, &self.hashes);
        let same = |&i: &u32| seq_of(events, ends, i) == seq;
        let entry = self.by_seq.entry(hash, same, |&i| hashes[i as usize]);
        match entry {
            Entry::Occupied(o) => *o.get(),
            Entry::Vacant(v) => {
                self.events.extend_from_slice(seq);
                self.ends.push(self.events.len());
                self.hashes.push(hash);
                self.accs.push(VariantAcc::default());
                let i = (self.accs.len() - 1) as u32;
                v.insert(i);
                i
            }
        }
    }
}

impl Analysis for Variants {
    type Partial = VariantsPartial;
    type Output = VariantsResult;

    fn needs(&self) -> Needs {
        Needs {
            values: true,
            ..Needs::default()
        }
    }

    fn partial(&self) -> VariantsPartial {
        self.partial_for(ScanSize::default())
    }

    /// Every list reserved for the whole scan: a variant per customer at most, and its events.
    /// Grown by doubling instead, they copied themselves into fresh memory at each step,
    /// which was a third of this analysis's time.
    fn partial_for(&self, size: ScanSize) -> VariantsPartial {
        let ScanSize { customers, events } = size;
        VariantsPartial {
            by_seq: HashTable::new(),
            events: Vec::with_capacity(events),
            ends: Vec::with_capacity(customers),
            hashes: Vec::with_capacity(customers),
            accs: Vec::with_capacity(customers),
            duration_of: Vec::with_capacity(customers),
            durations: Vec::with_capacity(customers),
            merged_durations: Vec::new(),
            customers: 0,
        }
    }

    fn add(&self, p: &mut VariantsPartial, t: &Timeline<'_>) {
        if t.is_empty() {
            return;
        }
        p.customers += 1;
        let goal_at = self.goal.and_then(|g| t.names.iter().position(|&n| n == g));
        let (seq, end) = match goal_at {
            Some(i) => (&t.names[..i], i),
            None => (t.names, t.len() - 1),
        };
        let i = p.index(seq, seq_hash(seq));
        let acc = &mut p.accs[i as usize];
        acc.count += 1;
        acc.goal += u64::from(goal_at.is_some());
        acc.revenue.add(Money::of(t));
        p.duration_of.push(i);
        p.durations.push(t.times[end] - t.times[0]);
    }

    fn merge(&self, into: &mut VariantsPartial, other: VariantsPartial) {
        into.customers += other.customers;
        // Room for all of other's at once: growing these lists step by step while merging
        // hundreds of thousands of variants copied them several times into fresh memory.
        let n = other.accs.len();
        let hashes = &into.hashes;
        into.by_seq.reserve(n, |&i| hashes[i as usize]);
        into.events.reserve(other.events.len());
        into.ends.reserve(n);
        into.hashes.reserve(n);
        into.accs.reserve(n);
        // Other's indexes, renumbered into `into`'s.
        let renumber: Vec<u32> = (0..other.accs.len() as u32)
            .map(|i| {
                let j = into.index(other.seq(i), other.hashes[i as usize]);
                let (acc, v) = (&mut into.accs[j as usize], other.accs[i as usize]);
                acc.count += v.count;
                acc.goal += v.goal;
                acc.revenue.add(v.revenue);
                j
            })
            .collect();
        let lists = std::iter::once((other.duration_of, other.durations));
        for (mut of, durations) in lists.chain(other.merged_durations) {
            of.iter_mut().for_each(|i| *i = renumber[*i as usize]);
            into.merged_durations.push((of, durations));
        }
    }

    fn finish(&self, p: VariantsPartial) -> VariantsResult {
        let total = p.accs.len() as u64;
        let accs = &p.accs;
        let mut all: Vec<u32> = (0..accs.len() as u32).collect();
        let names = &self.names;
        let count = |i: u32| accs[i as usize].count;
        let order = |&a: &u32, &b: &u32| -> Ordering {
            count(b).cmp(&count(a)).then_with(|| {
                p.seq(a)
                    .iter()
                    .map(|&i| names[i as usize].as_str())
                    .cmp(p.seq(b).iter().map(|&i| names[i as usize].as_str()))
            })
        };
        // Only the top K need a full order, and only variants counted at least as often as
        // the K-th most common can be among them: picking those by count first spares the
        // selection comparing the event names of the many variants seen once.
        if self.top < all.len() {
            if self.top > 0 {
                let mut counts: Vec<u64> = accs.iter().map(|a| a.count).collect();
                let (_, &mut kth, _) = counts.select_nth_unstable_by(self.top - 1, |a, b| b.cmp(a));
                all.retain(|&v| count(v) >= kth);
                all.select_nth_unstable_by(self.top - 1, order);
            }
            all.truncate(self.top);
        }
        all.sort_by(order);
        let shown: u64 = all.iter().map(|&v| count(v)).sum();
        // The durations of the listed variants, gathered in one pass.
        let mut slot = vec![usize::MAX; accs.len()];
        for (k, &i) in all.iter().enumerate() {
            slot[i as usize] = k;
        }
        let mut durations: Vec<Vec<Micros>> = vec![Vec::new(); all.len()];
        let lists = std::iter::once((&p.duration_of, &p.durations));
        for (of, ds) in lists.chain(p.merged_durations.iter().map(|(o, d)| (o, d))) {
            for (&i, &d) in of.iter().zip(ds) {
                if let Some(list) = durations.get_mut(slot[i as usize]) {
                    list.push(d);
                }
            }
        }
        let variants = all
            .into_iter()
            .zip(&mut durations)
            .map(|(i, durations)| {
                let acc = accs[i as usize];
                Variant {
                    events: p
                        .seq(i)
                        .iter()
                        .map(|&n| names[n as usize].clone())
                        .collect(),
                    count: acc.count,
                    share: acc.count as f64 / p.customers.max(1) as f64,
                    median_duration_s: quantile(durations, 0.5) / 1e6,
                    goal_rate: self.goal.map(|_| acc.goal as f64 / acc.count as f64),
                    revenue: acc.revenue.to_f64(),
                }
            })
            .collect();
        VariantsResult {
            customers: p.customers,
            total_variants: total,
            variants,
            other_customers: p.customers - shown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;
    use crate::testutil::{Owned, names};

    #[test]
    fn variants_sharing_a_hash_stay_apart() {
        let v = Variants {
            names: names(&["x", "y"]),
            top: 10,
            goal: None,
        };
        let mut p = v.partial();
        // Forced to one hash, as two different journeys could (in theory) have.
        let (a, b, c) = (p.index(&[0, 1], 7), p.index(&[1, 0], 7), p.index(&[1], 7));
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(
            (p.index(&[1, 0], 7), p.index(&[0, 1], 7), p.index(&[1], 7)),
            (1, 0, 2)
        );
        assert_eq!(p.seq(1), &[1, 0]);
        // A merge keeps them apart too.
        let mut q = v.partial();
        q.index(&[1], 7);
        q.index(&[0, 1], 7);
        v.merge(&mut q, p);
        assert_eq!((q.accs.len(), q.index(&[1, 0], 7)), (3, 2));
    }

    #[test]
    fn groups_whole_journeys() {
        let mut a = Owned::new(1, &[(0, 0), (1, 10)]);
        a.values = vec![f64::NAN, 20.5];
        let b = Owned::new(2, &[(0, 0), (1, 30)]);
        let c = Owned::new(3, &[(1, 0), (0, 5)]);
        let d = Owned::new(4, &[(0, 0)]);
        let mut v = Variants {
            names: names(&["x", "y"]),
            top: 1,
            goal: None,
        };
        let r = run(&v, [a.view(), b.view(), c.view(), d.view()]);
        assert_eq!(r.total_variants, 3);
        assert_eq!(r.customers, 4);
        assert_eq!(r.variants.len(), 1);
        let top = &r.variants[0];
        assert_eq!(top.events, ["x", "y"]);
        assert_eq!(top.count, 2);
        assert_eq!(top.median_duration_s, 20.0);
        assert_eq!(top.goal_rate, None);
        assert_eq!(top.revenue, 20.5);
        assert_eq!(r.other_customers, 2);
        // With goal y: a and b did x before it, d did x and stopped, c reached y first.
        v.goal = Some(1);
        v.top = 10;
        let r = run(&v, [a.view(), b.view(), c.view(), d.view()]);
        assert_eq!(r.total_variants, 2);
        let x = &r.variants[0];
        assert_eq!((x.events.clone(), x.count), (vec!["x".to_string()], 3));
        assert!((x.goal_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(x.median_duration_s, 10.0, "to the goal: 10, 30; d: 0");
        assert!(r.variants[1].events.is_empty());
        assert_eq!(r.variants[1].goal_rate, Some(1.0));
    }
}
