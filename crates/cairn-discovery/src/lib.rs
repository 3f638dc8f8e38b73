//! Journey discovery: process maps, variants, funnels, paths and retention, computed as pure
//! functions over customer timelines.
//!
//! # The idea
//!
//! Every analysis sees customers one at a time, each as a [`Timeline`]: parallel slices of its
//! events in time order (event-name ids, microsecond times, channel ids, values, property JSON).
//! It never reads files, the clock or the store: whoever owns the data hands timelines in. Today
//! that is the CLI, which adapts `cairn_store::Snapshot::scan_parallel`; once identities are
//! merged, the scan will hand out a profile's merged timeline in exactly the same shape, so every
//! analysis follows merges without change.
//!
//! An analysis implements [`Analysis`]: it makes an empty *partial* result, folds timelines
//! into it ([`Analysis::add`]), merges partials of disjoint customer sets
//! ([`Analysis::merge`]) and turns the final partial into its output ([`Analysis::finish`]).
//! That shape is what lets a scan run on several threads, one partial per thread, and what makes
//! results independent of how customers are split or ordered: `merge` only ever adds counts and
//! concatenates samples, and outputs are sorted by value, never by arrival.
//!
//! [`Scoped`] wraps any analysis with a [`Scope`] (time range and segment conditions), so every
//! analysis accepts the same filters.
//!
//! # Order and time
//!
//! A timeline's events are in the store's order: by timestamp, then by the order the store
//! received them (its sequence number). Analyses rely on that order and never re-sort, except the
//! ClickHouse-compatible funnel mode, which reproduces ClickHouse's own tie order (see
//! [`funnel`]). Durations are computed in microseconds and reported in seconds (`*_s`).

pub mod compare;
pub mod counts;
pub mod error;
pub mod funnel;
mod hash;
pub mod insights;
pub mod map;
pub mod near;
pub mod paths;
pub mod retention;
pub mod scope;
pub mod stats;
pub mod variants;

pub use counts::{ActivityCounts, Counts};
pub use error::DiscoveryError;
pub use funnel::{Funnel, FunnelMode, FunnelResult, StepSpec};
pub use insights::{Insights, InsightsResult};
pub use map::{MapResult, ProcessMap};
pub use paths::{Anchor, Paths, PathsResult, Rename};
pub use retention::{Period, Retention, RetentionResult};
pub use scope::{Scope, Scoped};
pub use variants::{Variants, VariantsResult};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// One customer's events in time order, as parallel slices.
///
/// `times` and `names` are always present and of equal length. `channels`, `values` and
/// `properties` are either empty (not read, see [`Needs`]) or of the same length.
#[derive(Debug, Clone, Copy)]
pub struct Timeline<'a> {
    /// The customer (or, after identity merges, the profile) this journey belongs to.
    pub customer: u32,
    pub times: &'a [Micros],
    /// Event-name ids: indexes into the name table the analysis was built with.
    pub names: &'a [u16],
    /// Channel ids: indexes into the channel table the analysis was built with.
    pub channels: &'a [u16],
    /// An event's numeric value (e.g. revenue); NaN where it has none.
    pub values: &'a [f64],
    /// Each event's properties as JSON object text; empty where it has none.
    pub properties: &'a [&'a str],
}

impl<'a> Timeline<'a> {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The events in `range` (indexes), keeping every column that is present.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Timeline<'a> {
        fn cut<'b, T>(s: &'b [T], r: &std::ops::Range<usize>) -> &'b [T] {
            if s.is_empty() { s } else { &s[r.clone()] }
        }
        Timeline {
            customer: self.customer,
            times: cut(self.times, &range),
            names: cut(self.names, &range),
            channels: cut(self.channels, &range),
            values: cut(self.values, &range),
            properties: cut(self.properties, &range),
        }
    }

    /// Sum of the values that are present (not NaN).
    pub fn revenue(&self) -> f64 {
        self.values.iter().filter(|v| !v.is_nan()).sum()
    }
}

/// The optional columns an analysis reads; the caller may leave the others empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub channels: bool,
    pub values: bool,
    pub properties: bool,
}

impl Needs {
    pub fn or(self, other: Needs) -> Needs {
        Needs {
            channels: self.channels || other.channels,
            values: self.values || other.values,
            properties: self.properties || other.properties,
        }
    }
}

/// At most how many customers and events a scan folds into its partials, for
/// [`Analysis::partial_for`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSize {
    pub customers: usize,
    pub events: usize,
}

/// An analysis over customer timelines, computed as mergeable partial results.
///
/// Contract: for any partition of the customers into groups, folding each group into its own
/// partial and merging the partials gives the same output as folding all customers into one.
pub trait Analysis: Sync {
    type Partial: Send;
    type Output;

    /// Which optional columns [`Analysis::add`] looks at.
    fn needs(&self) -> Needs;
    /// An empty partial result.
    fn partial(&self) -> Self::Partial;
    /// An empty partial for a scan of at most `size` (the whole scan's, so that merging the
    /// other partials into this one needs no more room either). An analysis whose lists grow
    /// with the customers reserves them here: room reserved but never written costs nothing
    /// (the kernel maps a page on its first write), while a list grown by doubling copies
    /// itself into fresh memory at every step, and fresh memory is slow on VMs (the host
    /// backs and zeroes each page).
    fn partial_for(&self, size: ScanSize) -> Self::Partial {
        let _ = size;
        self.partial()
    }
    /// Folds one customer's timeline in.
    fn add(&self, partial: &mut Self::Partial, timeline: &Timeline<'_>);
    /// Folds one customer in from its event names alone, when they are all this analysis
    /// needs of it; returns whether it did (then [`Analysis::add`] is not called for this
    /// customer). `names` are the customer's events in no particular order. A scan offers
    /// names before it decodes anything else, so a customer taken here costs no time
    /// decoding: a funnel's customers who never did its second step, for one. Whatever this
    /// returns, the result must be the one `add` of the whole timeline gives. By default
    /// nothing is taken from names alone. Names come as the store holds them (`u8` or `u16`
    /// name indexes), so that a customer taken here costs no copy either, with their
    /// [`NameSet`] where the store keeps one.
    fn add_by_names<N: NameIndex>(
        &self,
        partial: &mut Self::Partial,
        names: &[N],
        set: Option<NameSet>,
    ) -> bool {
        let _ = (partial, names, set);
        false
    }
    /// Folds the partial of a disjoint set of customers in.
    fn merge(&self, into: &mut Self::Partial, other: Self::Partial);
    /// The result.
    fn finish(&self, partial: Self::Partial) -> Self::Output;
}

/// An event name's index into the analysis's names, as a store keeps it: one byte each in a
/// store of at most 256 names, two otherwise.
pub trait NameIndex: Copy + Into<usize> {}
impl NameIndex for u8 {}
impl NameIndex for u16 {}

/// A customer's name set, as the store keeps it (the one definition, shared with the store).
pub use cairn_model::NameSet;

/// Runs an analysis over timelines on the calling thread.
pub fn run<'a, A: Analysis>(
    analysis: &A,
    timelines: impl IntoIterator<Item = Timeline<'a>>,
) -> A::Output {
    let mut partial = analysis.partial();
    for t in timelines {
        analysis.add(&mut partial, &t);
    }
    analysis.finish(partial)
}

/// Merges partials (e.g. one per scan thread) and finishes.
pub fn finish_partials<A: Analysis>(
    analysis: &A,
    partials: impl IntoIterator<Item = A::Partial>,
) -> A::Output {
    let mut iter = partials.into_iter();
    let mut acc = iter.next().unwrap_or_else(|| analysis.partial());
    for p in iter {
        analysis.merge(&mut acc, p);
    }
    analysis.finish(acc)
}

/// Looks an event name up in a name table.
pub fn name_id(names: &[String], name: &str) -> Result<u16, DiscoveryError> {
    names
        .iter()
        .position(|n| n == name)
        .map(|i| i as u16)
        .ok_or_else(|| DiscoveryError::UnknownEvent {
            name: name.to_string(),
            known: error::suggestions(names, name),
        })
}

/// Below this many samples in all, [`each_on_cores`] stays on the calling thread: starting
/// threads would cost more than it saves.
const CORES_MIN_WORK: usize = 1 << 16;

/// `f` of every item, in the items' order, computed on all cores when there is enough work
/// (`size` of each item, in samples): each thread takes the largest item left. For the
/// quantiles a finishing analysis takes of each edge or step, which otherwise leave every
/// core but one idle after the scan (a tenth of a 12 M-event process map's time).
pub(crate) fn each_on_cores<T: Sync, R: Send + Default>(
    items: &[T],
    size: impl Fn(&T) -> usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.min(items.len());
    if threads < 2 || items.iter().map(&size).sum::<usize>() < CORES_MIN_WORK {
        return items.iter().map(f).collect();
    }
    let mut largest_first: Vec<usize> = (0..items.len()).collect();
    largest_first.sort_by_key(|&i| std::cmp::Reverse(size(&items[i])));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (order, next, f) = (&largest_first, &next, &f);
    let done: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let take = || next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    while let Some(&i) = order.get(take()) {
                        out.push((i, f(&items[i])));
                    }
                    out
                })
            })
            .collect();
        (handles.into_iter())
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut results: Vec<R> = items.iter().map(|_| R::default()).collect();
    for (i, r) in done.into_iter().flatten() {
        results[i] = r;
    }
    results
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// An owned journey for tests: (name, time in seconds, channel, value).
    #[derive(Debug, Clone, Default)]
    pub struct Owned {
        pub customer: u32,
        pub times: Vec<Micros>,
        pub names: Vec<u16>,
        pub channels: Vec<u16>,
        pub values: Vec<f64>,
        pub properties: Vec<&'static str>,
    }

    impl Owned {
        /// Events as (name id, seconds).
        pub fn new(customer: u32, events: &[(u16, i64)]) -> Owned {
            Owned {
                customer,
                times: events.iter().map(|e| e.1 * 1_000_000).collect(),
                names: events.iter().map(|e| e.0).collect(),
                channels: vec![0; events.len()],
                values: vec![f64::NAN; events.len()],
                properties: vec![""; events.len()],
            }
        }

        pub fn view(&self) -> Timeline<'_> {
            Timeline {
                customer: self.customer,
                times: &self.times,
                names: &self.names,
                channels: &self.channels,
                values: &self.values,
                properties: &self.properties,
            }
        }
    }

    pub fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    /// On threads or not, every item's result lands at the item's place.
    #[test]
    fn each_on_cores_keeps_the_items_order() {
        let items: Vec<u64> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        let want: Vec<u64> = items.iter().map(|x| x * 2).collect();
        for size in [1, 1000] {
            // 1 000 samples in all stay on this thread; a million go to every core.
            assert_eq!(super::each_on_cores(&items, |_| size, |x| x * 2), want);
        }
        assert!(super::each_on_cores(&[] as &[u64], |_| 1, |x| *x).is_empty());
    }
}
