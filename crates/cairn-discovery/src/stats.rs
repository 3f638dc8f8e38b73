//! Summaries of duration samples: mean, median and p90 in seconds, and a fixed histogram.
//!
//! Quantiles interpolate linearly between order statistics, as numpy's default
//! (`numpy.percentile(..., method="linear")`) and Python's `statistics.median` do, so a median
//! of an even number of samples is the mean of the two middle ones. That is what pm4py reports,
//! which keeps our process-map times comparable with it to the microsecond.

use serde::Serialize;

/// Mean, median and p90 of a set of durations, in seconds; `None` when there are no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub mean_s: Option<f64>,
    pub median_s: Option<f64>,
    pub p90_s: Option<f64>,
}

impl Summary {
    /// The summary of `n` samples (µs) that sum to `sum`, given `values`, which finds the
    /// samples of four ranks (0-based, ascending order) at once, or `None` when it cannot.
    pub(crate) fn from_ranks(
        n: usize,
        sum: i128,
        values: impl FnOnce([usize; 4]) -> Option<[i64; 4]>,
    ) -> Option<Summary> {
        if n == 0 {
            return Some(Summary::default());
        }
        let (p50, p90) = (Interpolation::new(0.5, n), Interpolation::new(0.9, n));
        let v = values([p50.lo, p50.hi, p90.lo, p90.hi])?;
        Some(Summary {
            mean_s: Some(sum as f64 / n as f64 / 1e6),
            median_s: Some(p50.value(v[0], v[1]) / 1e6),
            p90_s: Some(p90.value(v[2], v[3]) / 1e6),
        })
    }
}

/// Summarises durations given in microseconds. Reorders `samples`.
pub fn summarize(samples: &mut [i64]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    let sum: i128 = samples.iter().map(|&d| d as i128).sum();
    let mean = sum as f64 / samples.len() as f64;
    Summary {
        mean_s: Some(mean / 1e6),
        median_s: Some(quantile(samples, 0.5) / 1e6),
        p90_s: Some(quantile(samples, 0.9) / 1e6),
    }
}

/// The `q` quantile (0..=1) with linear interpolation; reorders `samples`, which must not be
/// empty.
pub fn quantile(samples: &mut [i64], q: f64) -> f64 {
    debug_assert!(!samples.is_empty());
    let at = Interpolation::new(q, samples.len());
    let (_, &mut low, above) = samples.select_nth_unstable(at.lo);
    // The next order statistic is the smallest sample above position `lo`.
    let high = above.iter().copied().min().unwrap_or(low);
    at.value(low, high)
}

/// Duration samples (µs) for exact quantiles over millions of transitions, as a process map
/// keeps per edge. Kept as small as exactness allows, since on VMs the fresh memory samples
/// fill costs more than pushing them (the host backs and the kernel zeroes every new page):
/// - in whole milliseconds while every sample is one (as every duration between the times of
///   a store kept in milliseconds is), else in microseconds;
/// - in 2 bytes below 2¹⁶ of that unit (65 s: half the transitions of a typical journey), in
///   4 bytes below 2³² (49 days), in 8 (µs) otherwise or when negative.
///
/// Every kind is kept in chunks, so a list never copies itself into fresh memory as it grows
/// and partials merge by moving chunks; quantiles come from counting passes rather than from
/// a sorted or copied list.
#[derive(Debug, Clone)]
pub struct Durations {
    /// Whether `tiny` and `short` hold milliseconds (else microseconds).
    ms: bool,
    /// Samples in `0..2¹⁶` units.
    tiny: Chunks<u16>,
    /// Samples in `2¹⁶..2³²` units.
    short: Chunks<u32>,
    /// The others (negative, or 2³² units and more), in µs: below or above all of `tiny` and
    /// `short`.
    long: Chunks<i64>,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            ms: true,
            tiny: Chunks::default(),
            short: Chunks::default(),
            long: Chunks::default(),
        }
    }
}

/// Below this many samples, quantiles are plain selections over a copy.
const RADIX_MIN: usize = 1 << 15;

/// Samples per chunk: a chunk grows by doubling up to this size, then the next one is made at
/// full size. Growing one vector of millions of samples copied each sample about twice and
/// touched half again as much fresh memory, which on VMs costs more than the pushes (the
/// host backs and the kernel zeroes every new page): for the process map of 96 M events, a
/// third of its time while its long samples were one such vector.
const CHUNK: usize = 1 << 16;

/// A list kept in chunks of at most [`CHUNK`] items.
#[derive(Debug, Clone)]
struct Chunks<T> {
    /// The chunks before the one being filled (any length up to [`CHUNK`] after a merge).
    full: Vec<Vec<T>>,
    /// The chunk being filled, kept here rather than as the last of `full`: a push reads its
    /// length and room from this struct, with no list of chunks to go through first, and is
    /// small enough to inline into every caller's loop (with [`Durations::push`] inlined too:
    /// 12 M map 0.97–0.98× wall in three sets of 21 rounds, funnel 0.99×, 96 M map 0.99×).
    current: Vec<T>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks {
            full: Vec::new(),
            current: Vec::new(),
        }
    }
}

impl<T: Copy> Chunks<T> {
    #[inline]
    fn push(&mut self, v: T) {
        if self.current.len() == CHUNK {
            self.start_chunk();
        }
        self.current.push(v);
    }

    #[cold]
    #[inline(never)]
    fn start_chunk(&mut self) {
        let done = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
        self.full.push(done);
    }

    /// Every chunk, in no particular order.
    fn chunks(&self) -> impl Iterator<Item = &[T]> + '_ {
        (self.full.iter().map(Vec::as_slice)).chain(std::iter::once(self.current.as_slice()))
    }

    /// Adds the samples of `other`.
    fn append(&mut self, other: Chunks<T>) {
        self.full.extend(other.full);
        if !other.current.is_empty() {
            self.full.push(other.current);
        }
    }

    fn len(&self) -> usize {
        self.chunks().map(<[T]>::len).sum()
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.chunks().flatten().copied()
    }
}

impl Durations {
    #[inline(always)]
    pub fn push(&mut self, d: i64) {
        // The usual sample, whole milliseconds, in a few inlined instructions; others (and
        // the switch to microseconds) out of line.
        let ms = d / 1000;
        if self.ms && ms * 1000 == d {
            if let Ok(v) = u16::try_from(ms) {
                self.tiny.push(v);
            } else if let Ok(v) = u32::try_from(ms) {
                self.short.push(v);
            } else {
                self.long.push(d);
            }
        } else {
            self.push_micros(d);
        }
    }

    #[cold]
    #[inline(never)]
    fn push_micros(&mut self, d: i64) {
        if self.ms {
            self.keep_micros();
        }
        // The same three-way choice as `push`'s, written out again: shared through one
        // function (even `#[inline(always)]`) the process map measured 5–8 % slower.
        if let Ok(v) = u16::try_from(d) {
            self.tiny.push(v);
        } else if let Ok(v) = u32::try_from(d) {
            self.short.push(v);
        } else {
            self.long.push(d);
        }
    }

    /// Keeps the samples in microseconds from now on (a sample was not whole milliseconds).
    fn keep_micros(&mut self) {
        let old = std::mem::take(self);
        self.ms = false;
        old.iter().for_each(|d| self.push(d));
    }

    /// µs in one unit of `tiny` and `short`.
    fn unit(&self) -> i64 {
        if self.ms { 1000 } else { 1 }
    }

    /// The samples, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let unit = self.unit();
        let tiny = self.tiny.iter().map(move |v| i64::from(v) * unit);
        let short = self.short.iter().map(move |v| i64::from(v) * unit);
        tiny.chain(short).chain(self.long.iter())
    }

    /// Adds the samples of `other`.
    pub fn append(&mut self, mut other: Durations) {
        if self.ms != other.ms {
            self.keep_micros();
            other.keep_micros();
        }
        self.tiny.append(other.tiny);
        self.short.append(other.short);
        self.long.append(other.long);
    }

    pub fn len(&self) -> usize {
        self.tiny.len() + self.short.len() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mean, median and p90 in seconds, like [`summarize`].
    pub fn summarize(&self) -> Summary {
        // The order statistics both quantiles interpolate between, found together: one
        // counting pass and one gathering pass over the samples for all four, where one
        // quantile at a time took four of each.
        Summary::from_ranks(self.len(), self.sum(), |ranks| Some(self.ranks(ranks)))
            .unwrap_or_default()
    }

    /// The sum of the samples in microseconds, list by list with a plain loop each: summing
    /// through [`Durations::iter`] (one chained iterator, 128-bit adds) took most of the
    /// map's final, single-threaded step at 96 M events.
    fn sum(&self) -> i128 {
        // Per chunk in 64 bits: at most 2¹⁶ samples of 32 bits each.
        let total = |chunks: &[u64]| chunks.iter().map(|&c| u128::from(c)).sum::<u128>();
        let tiny: Vec<u64> = (self.tiny.chunks())
            .map(|c| c.iter().map(|&v| u64::from(v)).sum())
            .collect();
        let short: Vec<u64> = (self.short.chunks())
            .map(|c| c.iter().map(|&v| u64::from(v)).sum())
            .collect();
        let long: i128 = self.long.iter().map(i128::from).sum();
        (total(&tiny) + total(&short)) as i128 * i128::from(self.unit()) + long
    }

    /// The samples counted into the time-to-convert buckets, like [`histogram_of`] over
    /// [`Durations::iter`]: for the 2- and 4-byte lists, the samples at or above each bound
    /// (turned into the list's unit once) are counted in one pass per bound that the list's
    /// values can reach, a loop the compiler vectorizes, where finding each sample's bucket
    /// took a division and a search.
    pub fn histogram(&self) -> Vec<Bucket> {
        // A sample of `v` units is at least `b` seconds when `v * unit >= b * 10⁶`; a unit
        // (1 or 1000 µs) divides 10⁶.
        let bounds = HISTOGRAM_BOUNDS_S.map(|b| (b * 1_000_000 / self.unit()) as u64);
        // Samples of a list at or above each bound; `at_least[0]` all of them.
        fn at_least<T: Copy + Into<u64>>(
            chunks: &Chunks<T>,
            bounds: &[u64; 8],
            max: T,
        ) -> [u64; 9] {
            let mut out = [0u64; 9];
            out[0] = chunks.len() as u64;
            for (i, &b) in bounds.iter().enumerate() {
                if b > max.into() {
                    break;
                }
                out[i + 1] = (chunks.chunks())
                    .map(|c| c.iter().filter(|&&v| v.into() >= b).count() as u64)
                    .sum();
            }
            out
        }
        let tiny = at_least(&self.tiny, &bounds, u16::MAX);
        let short = at_least(&self.short, &bounds, u32::MAX);
        let mut counts = [0u64; 9];
        for i in 0..9 {
            let next = |a: &[u64; 9]| a.get(i + 1).copied().unwrap_or(0);
            counts[i] = tiny[i] - next(&tiny) + short[i] - next(&short);
        }
        self.long
            .iter()
            .for_each(|d| counts[bucket_of_micros(d)] += 1);
        buckets(counts)
    }

    /// The `q` quantile with linear interpolation, like [`quantile`]; the set must not be
    /// empty.
    pub fn quantile(&mut self, q: f64) -> f64 {
        let at = Interpolation::new(q, self.len());
        let v = self.ranks([at.lo, at.hi]);
        at.value(v[0], v[1])
    }

    /// The samples of ranks `ranks` (0-based, ascending order; each below `len()`).
    pub(crate) fn ranks<const N: usize>(&self, ranks: [usize; N]) -> [i64; N] {
        // In ascending order: negative samples (long), tiny, short, then the long positive
        // ones.
        let negative = self.long.iter().filter(|&d| d < 0).count();
        let (tiny, short) = (self.tiny.len(), self.short.len());
        let unit = self.unit();
        let mut out = [0i64; N];
        // (rank within tiny or short, where its value goes).
        let mut in_tiny: Vec<(usize, usize)> = Vec::new();
        let mut in_short: Vec<(usize, usize)> = Vec::new();
        for (slot, &k) in ranks.iter().enumerate() {
            if k < negative {
                out[slot] = nth_long(&self.long, k);
            } else if k < negative + tiny {
                in_tiny.push((k - negative, slot));
            } else if k < negative + tiny + short {
                in_short.push((k - negative - tiny, slot));
            } else {
                out[slot] = nth_long(&self.long, k - tiny - short);
            }
        }
        if !in_tiny.is_empty() && tiny < RADIX_MIN {
            // Few: a copy to select among costs less than clearing a count per value.
            let mut all: Vec<u16> = self.tiny.iter().collect();
            for (k, slot) in in_tiny.drain(..) {
                let (_, &mut v, _) = all.select_nth_unstable(k);
                out[slot] = i64::from(v) * unit;
            }
        }
        if !in_tiny.is_empty() {
            // A count per value, then a walk to each wanted rank: no copy at all.
            with_counts(|counts| {
                for chunk in self.tiny.chunks() {
                    for &v in chunk {
                        counts[v as usize] += 1;
                    }
                }
                for &(k, slot) in &in_tiny {
                    out[slot] = bucket_of_rank(counts, k).0 as i64 * unit;
                }
            });
        }
        if in_short.is_empty() {
            return out;
        }
        if short < RADIX_MIN {
            let mut all: Vec<u32> = self.short.iter().collect();
            for (k, slot) in in_short {
                let (_, &mut v, _) = all.select_nth_unstable(k);
                out[slot] = i64::from(v) * unit;
            }
            return out;
        }
        // One counting pass over the top 16 bits; then the samples of the (at most N) buckets
        // that hold a wanted rank, gathered in one pass and selected among.
        let (at, buckets, mut gathered) = with_counts(|counts| {
            for chunk in self.short.chunks() {
                for &d in chunk {
                    counts[(d >> 16) as usize] += 1;
                }
            }
            // (bucket, samples before it) of each wanted rank.
            let at: Vec<(u32, usize)> = in_short
                .iter()
                .map(|&(k, _)| {
                    let (bucket, before) = bucket_of_rank(counts, k);
                    (bucket as u32, before)
                })
                .collect();
            let mut buckets: Vec<u32> = at.iter().map(|&(b, _)| b).collect();
            buckets.sort_unstable();
            buckets.dedup();
            let gathered: Vec<Vec<u32>> = buckets
                .iter()
                .map(|&b| Vec::with_capacity(counts[b as usize]))
                .collect();
            (at, buckets, gathered)
        });
        for chunk in self.short.chunks() {
            for &d in chunk {
                if let Some(i) = buckets.iter().position(|&b| b == d >> 16) {
                    gathered[i].push(d);
                }
            }
        }
        for ((k, slot), (bucket, before)) in in_short.into_iter().zip(at) {
            let i = buckets
                .iter()
                .position(|&b| b == bucket)
                .unwrap_or_default();
            let (_, &mut v, _) = gathered[i].select_nth_unstable(k - before);
            out[slot] = i64::from(v) * unit;
        }
        out
    }
}

/// Runs `f` with this thread's table of 2¹⁶ counts, all zero, and zeroes it again after.
/// Kept from call to call because a process map asks for one per large edge (two for some),
/// and a fresh 512 KB table is fresh memory each time: the allocator hands large blocks back
/// to the system, and on VMs the kernel's zeroing of new pages cost more than the counting.
fn with_counts<R>(f: impl FnOnce(&mut [usize]) -> R) -> R {
    thread_local! {
        static COUNTS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    COUNTS.with(|cell| {
        // A table already lent out (never, as no caller nests) gets a fresh one instead.
        let Ok(mut counts) = cell.try_borrow_mut() else {
            return f(&mut vec![0; 1 << 16]);
        };
        counts.resize(1 << 16, 0);
        let r = f(&mut counts);
        counts.fill(0);
        r
    })
}

/// The bucket that holds the sample of rank `k`, given each bucket's count of samples
/// (buckets in ascending order of their samples), and how many samples come before it.
fn bucket_of_rank(counts: &[usize], k: usize) -> (usize, usize) {
    let mut before = 0;
    for (b, &c) in counts.iter().enumerate() {
        if before + c > k {
            return (b, before);
        }
        before += c;
    }
    (0, before)
}

/// Where quantile `q` of `n` samples (n > 0) falls: between the order statistics of ranks
/// `lo` and `hi`, with linear interpolation (see the module docs). [`quantile`],
/// [`Durations`] and [`crate::near::Near`] use it.
pub(crate) struct Interpolation {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    frac: f64,
}

impl Interpolation {
    pub(crate) fn new(q: f64, n: usize) -> Interpolation {
        let pos = q * n.saturating_sub(1) as f64;
        let lo = pos.floor() as usize;
        Interpolation {
            lo,
            hi: (lo + 1).min(n.saturating_sub(1)),
            frac: pos - lo as f64,
        }
    }

    /// The quantile, given the samples of ranks `lo` and `hi`.
    fn value(&self, low: i64, high: i64) -> f64 {
        let low = low as f64;
        if self.frac == 0.0 {
            return low;
        }
        low + (high as f64 - low) * self.frac
    }
}

/// The sample of rank `k` (0-based, ascending) of `samples`; `k` < their number. Long samples
/// span up to 2⁶⁴ µs, so this is a radix selection over their range: count the samples in
/// each of 2¹⁶ equal buckets of the range, narrow the range to the bucket that holds rank k,
/// and repeat (one pass each) until few samples are left, which are copied and selected
/// among. A copy of them all, as a plain selection needs, would touch as much fresh memory as
/// the samples themselves.
fn nth_long(samples: &Chunks<i64>, k: usize) -> i64 {
    const BUCKET_BITS: u32 = 16;
    /// Few enough samples to copy.
    const FEW: usize = 1 << 12;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for d in samples.iter() {
        min = min.min(d);
        max = max.max(d);
    }
    // The range is lo ..= lo + span; a sample d is in it when d - lo, taken modulo 2⁶⁴, is
    // at most span (below lo, the difference wraps to more than any span can be).
    let (mut lo, mut span, mut k) = (min, max.wrapping_sub(min) as u64, k);
    let offset = |d: i64, lo: i64| d.wrapping_sub(lo) as u64;
    let mut counts = Vec::new();
    loop {
        if span == 0 {
            return lo;
        }
        if samples.len() > FEW {
            let shift = (u64::BITS - span.leading_zeros()).saturating_sub(BUCKET_BITS);
            counts.clear();
            counts.resize(1 << BUCKET_BITS, 0usize);
            let mut n = 0;
            for d in samples.iter() {
                let off = offset(d, lo);
                if off <= span {
                    counts[(off >> shift) as usize] += 1;
                    n += 1;
                }
            }
            if n > FEW {
                let (bucket, before) = bucket_of_rank(&counts, k);
                k -= before;
                let start = (bucket as u64) << shift;
                lo = lo.wrapping_add(start as i64);
                span = (span - start).min((1u64 << shift) - 1);
                continue;
            }
        }
        let mut few: Vec<i64> = samples.iter().filter(|&d| offset(d, lo) <= span).collect();
        let (_, &mut v, _) = few.select_nth_unstable(k);
        return v;
    }
}

/// Upper bounds (exclusive, seconds) of the time-to-convert histogram buckets; the last bucket
/// is open-ended. Chosen for journeys: minutes, hours, days, weeks.
pub const HISTOGRAM_BOUNDS_S: [i64; 8] =
    [60, 600, 3_600, 21_600, 86_400, 259_200, 604_800, 2_592_000];
const HISTOGRAM_LABELS: [&str; 9] = [
    "< 1m", "1m-10m", "10m-1h", "1h-6h", "6h-1d", "1d-3d", "3d-7d", "7d-30d", ">= 30d",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub label: &'static str,
    pub from_s: i64,
    /// Exclusive; `null` for the last, open-ended bucket.
    pub to_s: Option<i64>,
    pub customers: u64,
}

/// Counts durations (microseconds), such as those of a [`Durations`], into the fixed buckets.
pub fn histogram_of(samples: impl IntoIterator<Item = i64>) -> Vec<Bucket> {
    let mut counts = [0u64; 9];
    for d in samples {
        counts[bucket_of_micros(d)] += 1;
    }
    buckets(counts)
}

/// The histogram bucket of a duration in microseconds.
fn bucket_of_micros(d: i64) -> usize {
    let s = d.div_euclid(1_000_000);
    HISTOGRAM_BOUNDS_S.partition_point(|&b| b <= s)
}

/// The buckets with their counts.
fn buckets(counts: [u64; 9]) -> Vec<Bucket> {
    (0..9)
        .map(|i| Bucket {
            label: HISTOGRAM_LABELS[i],
            from_s: if i == 0 { 0 } else { HISTOGRAM_BOUNDS_S[i - 1] },
            to_s: HISTOGRAM_BOUNDS_S.get(i).copied(),
            customers: counts[i],
        })
        .collect()
}

/// Formats seconds for people: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
pub fn human_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let s = secs.round() as i64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua} {b}{ub}")
        }
    };
    if d > 0 {
        pair(d, "d", h, "h")
    } else if h > 0 {
        pair(h, "h", m, "m")
    } else if m > 0 {
        pair(m, "m", sec, "s")
    } else if secs < 10.0 && secs.fract() != 0.0 {
        format!("{secs:.1}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy() {
        // numpy.median([1, 2, 3, 4]) == 2.5; numpy.percentile([1, 2, 3, 4], 90) == 3.7
        let mut v = vec![4, 1, 3, 2];
        assert_eq!(quantile(&mut v, 0.5), 2.5);
        assert!((quantile(&mut v, 0.9) - 3.7).abs() < 1e-9);
        let mut one = vec![7];
        assert_eq!(quantile(&mut one, 0.9), 7.0);
        let s = summarize(&mut [1_000_000, 3_000_000]);
        assert_eq!(s.mean_s, Some(2.0));
        assert_eq!(s.median_s, Some(2.0));
        assert!((s.p90_s.unwrap() - 2.8).abs() < 1e-9);
        assert_eq!(summarize(&mut []), Summary::default());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        #[test]
        fn durations_quantiles_equal_plain_ones(
            chunks in proptest::collection::vec(
                (
                    proptest::collection::vec(
                        proptest::prop_oneof![
                            0i64..100,
                            0i64..70_000,
                            0i64..(1 << 33),
                            -(1i64 << 40)..(1i64 << 40),
                        ],
                        0..200,
                    ),
                    // Whole milliseconds (kept in ms) or any microseconds.
                    proptest::prop_oneof![proptest::strategy::Just(1i64), proptest::strategy::Just(1000)],
                ),
                1..4,
            ),
            radix in proptest::bool::ANY,
        ) {
            // Enough samples to take the counting path when asked; copies keep the ranks.
            let copies = if radix { RADIX_MIN / 100 } else { 1 };
            let mut all = Vec::new();
            let mut merged = Durations::default();
            for (chunk, scale) in &chunks {
                let mut d = Durations::default();
                for _ in 0..copies {
                    for x in chunk.iter().map(|&x| x.saturating_mul(*scale)) {
                        d.push(x);
                        all.push(x);
                    }
                }
                merged.append(d);
            }
            proptest::prop_assume!(!all.is_empty());
            proptest::prop_assert_eq!(merged.len(), all.len());
            for q in [0.0, 0.5, 0.9, 1.0] {
                proptest::prop_assert_eq!(merged.quantile(q), quantile(&mut all, q));
            }
            proptest::prop_assert_eq!(merged.summarize(), summarize(&mut all));
        }
    }

    #[test]
    fn skewed_durations_quantiles_equal_plain_ones() {
        // Most samples within a second, a tail of months and a few negative ones: the
        // selection narrows its range several times before few samples are left.
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        // In microseconds, then in whole milliseconds (kept in ms).
        for scale in [1, 1000] {
            let mut all = Vec::new();
            let mut d = Durations::default();
            for i in 0..200_000 {
                let x = match i % 10 {
                    0 => (next() % 5_000_000_000_000) as i64,
                    1 if i % 1000 == 1 => -((next() % 1_000_000) as i64),
                    _ => (next() % 1_000_000) as i64,
                } * scale;
                d.push(x);
                all.push(x);
            }
            assert_eq!(d.ms, scale == 1000);
            for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0] {
                assert_eq!(d.quantile(q), quantile(&mut all, q), "q = {q}");
            }
            assert_eq!(d.summarize(), summarize(&mut all));
        }
    }

    /// The histogram of a `Durations` equals the one of its samples, in milliseconds or in
    /// microseconds, with samples at the bounds, negative and long ones.
    #[test]
    fn durations_histogram_equals_the_samples_one() {
        for scale in [1000, 1] {
            let mut d = Durations::default();
            let mut all = Vec::new();
            for s in [0, 59, 60, 599, 600, 3_599, 86_400, 2_592_000, 9_000_000] {
                for x in [s * 1_000_000 - scale, s * 1_000_000, s * 1_000_000 + scale] {
                    d.push(x);
                    all.push(x);
                }
            }
            assert_eq!(d.ms, scale == 1000);
            assert_eq!(d.histogram(), histogram_of(all.iter().copied()));
            assert_eq!(d.sum(), all.iter().map(|&x| i128::from(x)).sum::<i128>());
        }
    }

    #[test]
    fn histogram_buckets() {
        let h = histogram_of([0, 59_999_999, 60_000_000, 40 * 86_400_000_000]);
        assert_eq!(h[0].customers, 2);
        assert_eq!(h[1].customers, 1);
        assert_eq!(h[8].customers, 1);
        assert_eq!(h[8].to_s, None);
        assert_eq!(h.iter().map(|b| b.customers).sum::<u64>(), 4);
    }

    #[test]
    fn human() {
        assert_eq!(human_duration(45.0), "45s");
        assert_eq!(human_duration(725.0), "12m 5s");
        assert_eq!(human_duration(2.0 * 86_400.0 + 4.0 * 3_600.0), "2d 4h");
        assert_eq!(human_duration(30.0 * 86_400.0), "30d");
    }
}
