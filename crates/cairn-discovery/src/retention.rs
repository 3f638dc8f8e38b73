//! Retention: cohorts by the period of a customer's first event, and the share of each cohort
//! active again in each later period.
//!
//! Periods are calendar weeks (Monday to Sunday) or calendar months in a given time zone, so a
//! Sunday-evening purchase in Los Angeles belongs to the week it happened in there. A customer
//! is *active* in a period when they have any event in it; period 0 is the cohort's own period
//! (100 % by definition).

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::hash::FxHashMap;
use crate::{Analysis, Micros, Needs, Timeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Week,
    Month,
}

pub struct Retention {
    pub period: Period,
    pub tz: TimeZone,
    /// Later periods reported per cohort (period 0 is always reported).
    pub periods: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// `2026-01` for a month, the Monday `2026-01-26` for a week.
    pub cohort: String,
    pub customers: u64,
    /// `returning[k]`: customers of this cohort active k periods after their first.
    /// Shorter than `periods + 1` when the data ends before those periods.
    pub returning: Vec<u64>,
    /// `returning[k] / customers`.
    pub retention: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionResult {
    pub by: &'static str,
    pub timezone: String,
    pub customers: u64,
    pub cohorts: Vec<Cohort>,
}

pub struct RetentionPartial {
    /// Period index → (customers, active customers per offset).
    cohorts: FxHashMap<i64, (u64, Vec<u64>)>,
    /// The latest period any event falls in, to cut cohorts' rows at the data's end.
    last: Option<i64>,
    seen: Vec<bool>,
}

impl Retention {
    /// The period index of `t` and the start of the next period (microseconds).
    fn period_of(&self, t: Micros) -> (i64, Micros) {
        let Ok(ts) = Timestamp::from_microsecond(t) else {
            return (0, Micros::MAX);
        };
        let date = ts.to_zoned(self.tz.clone()).date();
        let days = days_from_civil(date.year() as i64, date.month() as i64, date.day() as i64);
        let (index, next) = match self.period {
            // 1970-01-01 was a Thursday: shifting by 3 makes weeks start on Monday.
            Period::Week => {
                let w = (days + 3).div_euclid(7);
                (w, civil_from_days((w + 1) * 7 - 3))
            }
            Period::Month => {
                let m = date.year() as i64 * 12 + date.month() as i64 - 1;
                (m, ((m + 1).div_euclid(12), (m + 1).rem_euclid(12) + 1, 1))
            }
        };
        let next = Date::new(next.0 as i16, next.1 as i8, next.2 as i8)
            .ok()
            .and_then(|d| d.to_zoned(self.tz.clone()).ok())
            .map_or(Micros::MAX, |z| z.timestamp().as_microsecond());
        (index, next)
    }

    fn label(&self, index: i64) -> String {
        match self.period {
            Period::Week => {
                let (y, m, d) = civil_from_days(index * 7 - 3);
                format!("{y:04}-{m:02}-{d:02}")
            }
            Period::Month => format!(
                "{:04}-{:02}",
                index.div_euclid(12),
                index.rem_euclid(12) + 1
            ),
        }
    }
}

impl Analysis for Retention {
    type Partial = RetentionPartial;
    type Output = RetentionResult;

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn partial(&self) -> RetentionPartial {
        RetentionPartial {
            cohorts: FxHashMap::default(),
            last: None,
            seen: vec![false; self.periods + 1],
        }
    }

    fn add(&self, p: &mut RetentionPartial, t: &Timeline<'_>) {
        let Some(&first) = t.times.first() else {
            return;
        };
        let (cohort, mut next) = self.period_of(first);
        p.seen.iter_mut().for_each(|s| *s = false);
        p.seen[0] = true;
        let mut current = cohort;
        // Times ascend: convert only when an event crosses into a new period.
        for &time in &t.times[1..] {
            if time < next {
                continue;
            }
            let (idx, n) = self.period_of(time);
            current = idx;
            next = n;
            let offset = (idx - cohort) as usize;
            if offset <= self.periods {
                p.seen[offset] = true;
            }
        }
        p.last = Some(p.last.map_or(current, |l| l.max(current)));
        let entry = p
            .cohorts
            .entry(cohort)
            .or_insert_with(|| (0, vec![0; self.periods + 1]));
        entry.0 += 1;
        for (c, &s) in entry.1.iter_mut().zip(&p.seen) {
            *c += u64::from(s);
        }
    }

    fn merge(&self, into: &mut RetentionPartial, other: RetentionPartial) {
        for (k, (n, counts)) in other.cohorts {
            let e = into
                .cohorts
                .entry(k)
                .or_insert_with(|| (0, vec![0; self.periods + 1]));
            e.0 += n;
            for (a, b) in e.1.iter_mut().zip(counts) {
                *a += b;
            }
        }
        into.last = match (into.last, other.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn finish(&self, p: RetentionPartial) -> RetentionResult {
        let mut keys: Vec<i64> = p.cohorts.keys().copied().collect();
        keys.sort_unstable();
        let last = p.last.unwrap_or(0);
        let customers = p.cohorts.values().map(|c| c.0).sum();
        let cohorts = keys
            .into_iter()
            .map(|k| {
                let (n, counts) = &p.cohorts[&k];
                // Periods after the data's last one have not been observed: leave them out
                // rather than report a false 0 %.
                let observed = ((last - k).max(0) as usize + 1).min(counts.len());
                let returning = counts[..observed].to_vec();
                Cohort {
                    cohort: self.label(k),
                    customers: *n,
                    retention: returning.iter().map(|&r| r as f64 / *n as f64).collect(),
                    returning,
                }
            })
            .collect();
        RetentionResult {
            by: match self.period {
                Period::Week => "week",
                Period::Month => "month",
            },
            timezone: self.tz.iana_name().unwrap_or("UTC").to_string(),
            customers,
            cohorts,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run;
    use crate::testutil::Owned;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn weekly_cohorts_in_a_time_zone() {
        // Monday 2026-01-05 is the start of a week.
        let a = Owned::new(
            1,
            &[
                (0, at("2026-01-05T10:00:00Z")),
                (0, at("2026-01-13T10:00:00Z")),
            ],
        );
        let b = Owned::new(
            2,
            &[
                (0, at("2026-01-11T23:30:00Z")),
                (0, at("2026-01-26T10:00:00Z")),
            ],
        );
        let r = Retention {
            period: Period::Week,
            tz: TimeZone::UTC,
            periods: 4,
        };
        let out = run(&r, [a.view(), b.view()]);
        assert_eq!(out.cohorts.len(), 1);
        assert_eq!(out.cohorts[0].cohort, "2026-01-05");
        assert_eq!(out.cohorts[0].customers, 2);
        assert_eq!(out.cohorts[0].returning, vec![2, 1, 0, 1]);
        // One hour east, b's first event falls on Monday the 12th: a different week.
        let east = Retention {
            tz: TimeZone::fixed(jiff::tz::offset(1)),
            ..r
        };
        let out = run(&east, [a.view(), b.view()]);
        assert_eq!(out.cohorts.len(), 2);
        assert_eq!(out.cohorts[1].cohort, "2026-01-12");
    }

    #[test]
    fn monthly() {
        let a = Owned::new(
            1,
            &[
                (0, at("2026-01-31T10:00:00Z")),
                (0, at("2026-03-01T10:00:00Z")),
            ],
        );
        let r = Retention {
            period: Period::Month,
            tz: TimeZone::UTC,
            periods: 12,
        };
        let out = run(&r, [a.view()]);
        assert_eq!(out.cohorts[0].cohort, "2026-01");
        assert_eq!(out.cohorts[0].returning, vec![1, 0, 1]);
        assert_eq!(out.cohorts[0].retention, vec![1.0, 0.0, 1.0]);
    }
}
