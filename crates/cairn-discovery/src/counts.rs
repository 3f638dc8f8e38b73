//! Events and distinct customers per event name: the first pass behind "top K activities".

use crate::{Analysis, NameIndex, NameSet, Needs, Timeline};

pub struct ActivityCounts {
    /// Size of the name table.
    pub names: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub customers: u64,
    pub events: u64,
    /// Events per name id.
    pub events_by_name: Vec<u64>,
    /// Distinct customers per name id.
    pub customers_by_name: Vec<u64>,
}

impl Counts {
    /// Name ids by descending event count (ties by id), at most `k`, only names that occur.
    pub fn top(&self, k: usize) -> Vec<u16> {
        let mut ids: Vec<u16> = (0..self.events_by_name.len() as u16)
            .filter(|&i| self.events_by_name[i as usize] > 0)
            .collect();
        ids.sort_by_key(|&i| (std::cmp::Reverse(self.events_by_name[i as usize]), i));
        ids.truncate(k);
        ids
    }
}

pub struct CountsPartial {
    counts: Counts,
    stamp: Vec<u32>,
    seq: u32,
}

impl Analysis for ActivityCounts {
    type Partial = CountsPartial;
    type Output = Counts;

    fn needs(&self) -> Needs {
        Needs::default()
    }
    fn partial(&self) -> CountsPartial {
        CountsPartial {
            counts: Counts {
                events_by_name: vec![0; self.names],
                customers_by_name: vec![0; self.names],
                ..Counts::default()
            },
            stamp: vec![0; self.names],
            seq: 0,
        }
    }
    fn add(&self, p: &mut CountsPartial, t: &Timeline<'_>) {
        self.add_by_names(p, t.names, None);
    }
    /// Names are all the counts need: a scan decodes no times for them.
    fn add_by_names<N: NameIndex>(
        &self,
        p: &mut CountsPartial,
        names: &[N],
        _: Option<NameSet>,
    ) -> bool {
        if names.is_empty() {
            return true;
        }
        p.seq += 1;
        p.counts.customers += 1;
        p.counts.events += names.len() as u64;
        for &n in names {
            let n: usize = n.into();
            if n >= self.names {
                continue;
            }
            p.counts.events_by_name[n] += 1;
            if p.stamp[n] != p.seq {
                p.stamp[n] = p.seq;
                p.counts.customers_by_name[n] += 1;
            }
        }
        true
    }
    fn merge(&self, into: &mut CountsPartial, other: CountsPartial) {
        let (a, b) = (&mut into.counts, other.counts);
        a.customers += b.customers;
        a.events += b.events;
        for (x, y) in a.events_by_name.iter_mut().zip(b.events_by_name) {
            *x += y;
        }
        for (x, y) in a.customers_by_name.iter_mut().zip(b.customers_by_name) {
            *x += y;
        }
    }
    fn finish(&self, p: CountsPartial) -> Counts {
        p.counts
    }
}
