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
    let pos = q * (samples.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut low, above) = samples.select_nth_unstable(lo);
    let low = low as f64;
    if frac == 0.0 || above.is_empty() {
        return low;
    }
    // The next order statistic is the smallest sample above position `lo`.
    let high = above.iter().copied().min().unwrap_or(low as i64) as f64;
    low + (high - low) * frac
}

/// Duration samples (µs) for exact quantiles over millions of transitions, as a process map
/// keeps per edge. Kept as small as exactness allows: a sample that fits in 4 bytes (0 to ~71
/// minutes, most transitions within a session) takes 4, others 8. Partials merge by moving
/// their chunks, never copying samples, and quantiles of large sets come from one counting
/// pass over the top bits plus a selection among the few samples in the bucket that holds the
/// wanted rank, rather than repeated selections over everything.
#[derive(Debug, Default, Clone)]
pub struct Durations {
    /// Samples in `0..=u32::MAX`, in chunks (one per merged partial).
    short: Vec<Vec<u32>>,
    /// The others.
    long: Vec<i64>,
}

/// Below this many short samples, quantiles are plain selections.
const RADIX_MIN: usize = 1 << 15;

/// Short samples per chunk: a chunk grows by doubling up to this size, then the next one is
/// made at full size. Growing one vector of millions of samples copied each sample about
/// twice and touched half again as much fresh memory, which on this VM cost more than the
/// pushes (the kernel zeroes every new page).
const CHUNK: usize = 1 << 16;

impl Durations {
    #[inline]
    pub fn push(&mut self, d: i64) {
        match u32::try_from(d) {
            Ok(s) => match self.short.last_mut() {
                Some(chunk) if chunk.len() < CHUNK => chunk.push(s),
                Some(_) => {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push(s);
                    self.short.push(chunk);
                }
                None => self.short.push(vec![s]),
            },
            Err(_) => self.long.push(d),
        }
    }

    /// The samples, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let short = self.short.iter().flatten().map(|&d| i64::from(d));
        short.chain(self.long.iter().copied())
    }

    /// Adds the samples of `other`.
    pub fn append(&mut self, mut other: Durations) {
        self.short.append(&mut other.short);
        self.long.append(&mut other.long);
    }

    pub fn len(&self) -> usize {
        self.short.iter().map(Vec::len).sum::<usize>() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mean, median and p90 in seconds, like [`summarize`].
    pub fn summarize(&mut self) -> Summary {
        let n = self.len();
        if n == 0 {
            return Summary::default();
        }
        let sum: i128 = self
            .short
            .iter()
            .flatten()
            .map(|&d| i128::from(d))
            .chain(self.long.iter().map(|&d| i128::from(d)))
            .sum();
        let mean = sum as f64 / n as f64;
        Summary {
            mean_s: Some(mean / 1e6),
            median_s: Some(self.quantile(0.5) / 1e6),
            p90_s: Some(self.quantile(0.9) / 1e6),
        }
    }

    /// The `q` quantile with linear interpolation, like [`quantile`]; the set must not be
    /// empty.
    pub fn quantile(&mut self, q: f64) -> f64 {
        let n = self.len();
        debug_assert!(n > 0);
        let pos = q * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let frac = pos - lo as f64;
        let low = self.nth(lo) as f64;
        if frac == 0.0 || lo + 1 >= n {
            return low;
        }
        let high = self.nth(lo + 1) as f64;
        low + (high - low) * frac
    }

    /// The sample of rank `k` (0-based) in ascending order; `k < len()`.
    fn nth(&mut self, k: usize) -> i64 {
        // Negative samples (long) come first, then the short ones, then the long positive ones.
        let negative = self.long.iter().filter(|&&d| d < 0).count();
        let short: usize = self.short.iter().map(Vec::len).sum();
        if k < negative || k >= negative + short {
            let i = if k < negative { k } else { k - short };
            let (_, &mut v, _) = self.long.select_nth_unstable(i);
            return v;
        }
        let k = k - negative;
        if short < RADIX_MIN || self.short.len() == 1 && short < 2 * RADIX_MIN {
            let all = self.flatten_short();
            let (_, &mut v, _) = all.select_nth_unstable(k);
            return i64::from(v);
        }
        let mut counts = vec![0usize; 1 << 16];
        for &d in self.short.iter().flatten() {
            counts[(d >> 16) as usize] += 1;
        }
        let mut before = 0;
        let mut bucket = 0;
        for (b, &c) in counts.iter().enumerate() {
            if before + c > k {
                bucket = b as u32;
                break;
            }
            before += c;
        }
        let mut candidates: Vec<u32> = self
            .short
            .iter()
            .flatten()
            .copied()
            .filter(|&d| d >> 16 == bucket)
            .collect();
        let (_, &mut v, _) = candidates.select_nth_unstable(k - before);
        i64::from(v)
    }

    /// The short samples as one chunk.
    fn flatten_short(&mut self) -> &mut Vec<u32> {
        if self.short.len() != 1 {
            let all: Vec<u32> = self.short.iter().flatten().copied().collect();
            self.short = vec![all];
        }
        &mut self.short[0]
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

/// Counts durations (microseconds) into the fixed buckets.
pub fn histogram(samples: &[i64]) -> Vec<Bucket> {
    histogram_of(samples.iter().copied())
}

/// [`histogram`] of any samples, such as those of a [`Durations`].
pub fn histogram_of(samples: impl IntoIterator<Item = i64>) -> Vec<Bucket> {
    let mut counts = [0u64; 9];
    for d in samples {
        let s = d.div_euclid(1_000_000);
        let i = HISTOGRAM_BOUNDS_S.partition_point(|&b| b <= s);
        counts[i] += 1;
    }
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
                proptest::collection::vec(
                    proptest::prop_oneof![
                        0i64..100,
                        0i64..(1 << 33),
                        -(1i64 << 40)..(1i64 << 40),
                    ],
                    0..200,
                ),
                1..4,
            ),
            radix in proptest::bool::ANY,
        ) {
            // Enough samples to take the counting path when asked; copies keep the ranks.
            let copies = if radix { RADIX_MIN / 100 } else { 1 };
            let mut all = Vec::new();
            let mut merged = Durations::default();
            for chunk in &chunks {
                let mut d = Durations::default();
                for _ in 0..copies {
                    for &x in chunk {
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
    fn histogram_buckets() {
        let h = histogram(&[0, 59_999_999, 60_000_000, 40 * 86_400_000_000]);
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
