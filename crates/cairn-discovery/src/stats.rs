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
    let mut counts = [0u64; 9];
    for &d in samples {
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
