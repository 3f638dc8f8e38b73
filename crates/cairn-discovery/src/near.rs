//! Exact medians and p90s of millions of durations, keeping only the samples near them.
//!
//! A process map reports each edge's median and p90 time exactly, so it used to keep every
//! transition's duration until the end: 11 M samples for 12 M events. Those samples were
//! most of the map's memory and, since memory touched for the first time is slow on VMs (the
//! kernel zeroes each page, the host backs it), about half its time. But a quantile only
//! needs the samples near it, and counts of those below and above.
//!
//! Where "near" is cannot be known before the scan, but a scan of a sample of the customers
//! tells it closely: [`Windows::around_quantiles`] puts a range of values around each
//! quantile of the sample, wide enough that the whole data's quantile lies inside it unless
//! chance moved the sample's rank by more than eight standard errors. The full scan then keeps
//! the samples inside the windows and only counts the others ([`Near`]). If a quantile still
//! falls outside its window (the sample misled, or the data scanned differ from the sample's,
//! as stitched profiles do), [`Near::summarize`] says so instead of guessing, and the caller
//! scans again keeping every sample: the answer is exact either way, only its time differs.

use crate::stats::{Durations, Interpolation, Summary};

/// The quantiles [`Near`] answers, as [`Summary`] reports them.
const QUANTILES: [f64; 2] = [0.5, 0.9];

/// How many standard errors of the sample's rank a window reaches on each side of it.
const REACH: f64 = 8.0;

/// Fewer samples than this say too little: the windows keep everything.
const MIN_SAMPLES: usize = 256;

/// Ranges of values (µs, inclusive) whose samples a [`Near`] keeps: one around the median
/// and one around the p90, or a single one when they overlap. The other range is then
/// empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    ranges: [(i64, i64); 2],
}

/// A range no value below `i64::MAX` falls in, placed above all others so that
/// [`Near::push`]'s count of the bounds below a value stays in order.
const EMPTY: (i64, i64) = (i64::MAX, i64::MAX - 1);

impl Windows {
    /// Keeps every sample.
    pub const ALL: Windows = Windows {
        ranges: [(i64::MIN, i64::MAX), EMPTY],
    };

    /// Windows for data of which `sample` (kept in [`Windows::ALL`]) is a random sample:
    /// around each quantile of the sample, from the sample's value [`REACH`] standard
    /// errors of its rank below it to the one as far above (the whole range's end where
    /// that runs past the sample's). With fewer than [`MIN_SAMPLES`] samples, or not all of
    /// them kept, [`Windows::ALL`].
    pub fn around_quantiles(sample: &Near) -> Windows {
        let n = sample.len();
        if n < MIN_SAMPLES || sample.windows != Windows::ALL {
            return Windows::ALL;
        }
        // The sample's ranks each window starts and ends at; `None` past its ends.
        let mut ends = [None; 4];
        for (i, q) in QUANTILES.into_iter().enumerate() {
            let at = Interpolation::new(q, n);
            let reach = (REACH * (n as f64 * q * (1.0 - q)).sqrt()).ceil() as usize + 1;
            ends[2 * i] = at.lo.checked_sub(reach);
            ends[2 * i + 1] = Some(at.hi + reach).filter(|&r| r < n);
        }
        let Some(values) = sample.values_of_ranks(ends.map(|r| r.unwrap_or(0))) else {
            return Windows::ALL; // not reached: every sample is kept
        };
        let bound = |i: usize, beyond: i64| ends[i].map_or(beyond, |_| values[i]);
        let median = (bound(0, i64::MIN), bound(1, i64::MAX));
        let p90 = (bound(2, i64::MIN), bound(3, i64::MAX));
        if p90.0 <= median.1 {
            return Windows {
                ranges: [(median.0.min(p90.0), median.1.max(p90.1)), EMPTY],
            };
        }
        Windows {
            ranges: [median, p90],
        }
    }
}

/// Durations (µs) of which only those inside [`Windows`] are kept, for an exact mean,
/// median and p90 (see the module docs).
///
/// What [`Near::push`] touches for every sample (windows, counts, sum) comes first and the
/// kept samples' lists sit behind a pointer: a process map holds one `Near` per edge and
/// pushes to them in no order, so the fewer cache lines one takes, the fewer misses.
#[derive(Debug, Clone)]
pub struct Near {
    windows: Windows,
    /// Samples below the first window's start, and below the second's.
    below: [u64; 2],
    count: u64,
    sum: i128,
    /// The samples inside each window.
    kept: Box<[Durations; 2]>,
}

impl Near {
    pub fn new(windows: Windows) -> Near {
        Near {
            windows,
            below: [0; 2],
            count: 0,
            sum: 0,
            kept: Default::default(),
        }
    }

    #[inline]
    pub fn push(&mut self, d: i64) {
        self.count += 1;
        self.sum += i128::from(d);
        // Where `d` falls, found without a branch (which it is varies from sample to
        // sample, and a chain of comparisons was mispredicted often enough to make the map
        // no faster than keeping every sample): 0 to 4 for below the first window, in it,
        // between the two, in the second, above it.
        let [(lo0, hi0), (lo1, hi1)] = self.windows.ranges;
        self.below[0] += u64::from(d < lo0);
        self.below[1] += u64::from(d < lo1);
        let at = usize::from(d >= lo0)
            + usize::from(d > hi0)
            + usize::from(d >= lo1)
            + usize::from(d > hi1);
        if at % 2 == 1 {
            self.kept[at / 2].push(d);
        }
    }

    /// Adds the samples of `other`, which must have the same windows (as the partials of
    /// one analysis do); with others, every quantile is given up on.
    pub fn append(&mut self, other: Near) {
        if self.windows != other.windows {
            // Which of either's uncounted samples lie inside the other's windows is unknown:
            // keep the count and the sum, and no sample, so that no quantile is answered.
            debug_assert!(false, "merging samples kept in different windows");
            let (count, sum) = (self.count + other.count, self.sum + other.sum);
            *self = Near {
                windows: Windows {
                    ranges: [EMPTY, EMPTY],
                },
                below: [count; 2],
                count,
                sum,
                kept: Default::default(),
            };
            return;
        }
        let [a, b] = *other.kept;
        self.kept[0].append(a);
        self.kept[1].append(b);
        self.below[0] += other.below[0];
        self.below[1] += other.below[1];
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Mean, median and p90 in seconds, exactly as [`Durations::summarize`] gives them for
    /// every sample; `None` when the median or p90 lies outside the kept samples.
    pub fn summarize(&self) -> Option<Summary> {
        Summary::from_ranks(self.len(), self.sum, |ranks| self.values_of_ranks(ranks))
    }

    /// The samples of ranks `ranks` (0-based, ascending order), if they are all kept ones.
    fn values_of_ranks<const N: usize>(&self, ranks: [usize; N]) -> Option<[i64; N]> {
        let mut at = [(0usize, 0usize); N];
        for (slot, &rank) in ranks.iter().enumerate() {
            at[slot] = self.window_of_rank(rank)?;
        }
        let mut out = [0i64; N];
        for (w, kept) in self.kept.iter().enumerate() {
            if !at.iter().any(|&(i, _)| i == w) {
                continue;
            }
            // One selection per window for all its ranks (others ask for rank 0, ignored).
            let values = kept.ranks(at.map(|(i, k)| if i == w { k } else { 0 }));
            for (slot, &(i, _)) in at.iter().enumerate() {
                if i == w {
                    out[slot] = values[slot];
                }
            }
        }
        Some(out)
    }

    /// The window holding the sample of rank `rank`, and its rank among the window's
    /// samples; `None` when it is between or outside them.
    fn window_of_rank(&self, rank: usize) -> Option<(usize, usize)> {
        // Every sample below a window's start is below its samples.
        for (w, (&below, kept)) in self.below.iter().zip(self.kept.iter()).enumerate() {
            let k = rank.checked_sub(below as usize)?;
            if k < kept.len() {
                return Some((w, k));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of durations in ms, spread like journeys' (seconds to days).
    fn samples(n: usize, seed: u64) -> Vec<i64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                // Exponential with a mean of 100 s, in whole ms.
                (-(1.0 - u).ln() * 100_000.0) as i64 * 1000
            })
            .collect()
    }

    fn durations(s: &[i64]) -> Durations {
        let mut d = Durations::default();
        s.iter().for_each(|&v| d.push(v));
        d
    }

    fn near(windows: Windows, s: &[i64]) -> Near {
        let mut n = Near::new(windows);
        s.iter().for_each(|&v| n.push(v));
        n
    }

    #[test]
    fn windows_from_a_sample_give_the_exact_quantiles_of_the_whole() {
        let all = samples(200_000, 7);
        // Every 32nd sample, as a sample scan of 1 customer in 32 would see.
        let sample: Vec<i64> = all.iter().step_by(32).copied().collect();
        let w = Windows::around_quantiles(&near(Windows::ALL, &sample));
        assert_ne!(w, Windows::ALL);
        let n = near(w, &all);
        let kept = n.kept[0].len() + n.kept[1].len();
        assert!(kept < all.len() / 5, "kept {kept} of {}", all.len());
        assert_eq!(n.summarize(), Some(durations(&all).summarize()));
    }

    #[test]
    fn all_windows_keep_every_sample() {
        let mut s = samples(5_000, 3);
        s.extend([-5, 7, i64::MAX, i64::MIN, 1]); // microseconds, negative, extremes
        let n = near(Windows::ALL, &s);
        assert_eq!(n.len(), s.len());
        assert_eq!(n.summarize(), Some(crate::stats::summarize(&mut s.clone())));
    }

    #[test]
    fn small_samples_keep_everything() {
        assert_eq!(
            Windows::around_quantiles(&near(Windows::ALL, &samples(MIN_SAMPLES - 1, 1))),
            Windows::ALL
        );
    }

    #[test]
    fn a_quantile_outside_the_windows_is_not_guessed() {
        // Windows planned on short durations, data mostly long ones.
        let w = Windows::around_quantiles(&near(Windows::ALL, &samples(10_000, 5)));
        let mut data: Vec<i64> = samples(10_000, 6).iter().map(|d| d * 50).collect();
        data.extend(samples(100, 8));
        assert_eq!(near(w, &data).summarize(), None);
    }

    #[test]
    fn merged_partials_equal_one() {
        let all = samples(100_000, 11);
        let sample: Vec<i64> = all.iter().step_by(16).copied().collect();
        let w = Windows::around_quantiles(&near(Windows::ALL, &sample));
        let mut merged = near(w, &all[..30_000]);
        merged.append(near(w, &all[30_000..]));
        let one = near(w, &all);
        assert_eq!(merged.summarize(), one.summarize());
        assert_eq!((merged.below, merged.count), (one.below, one.count));
        assert!(merged.summarize().is_some());
    }

    #[test]
    fn overlapping_windows_become_one() {
        // Nearly every sample the same: the median's and p90's windows overlap.
        let mut s = vec![5_000i64; 1_000];
        s.extend(samples(50, 2));
        let w = Windows::around_quantiles(&near(Windows::ALL, &s));
        assert_eq!(w.ranges[1], EMPTY);
        assert_eq!(near(w, &s).summarize(), Some(durations(&s).summarize()));
    }
}
