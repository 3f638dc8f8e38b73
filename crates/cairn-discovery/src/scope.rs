//! Which customers and which part of their journeys an analysis looks at.
//!
//! A [`Scope`] first cuts each journey to the time range `[since, until)`, then keeps the
//! journeys that satisfy every segment condition, evaluated on that cut journey: did / did not
//! do an event (optionally one with given property values, optionally within a window after
//! the journey's first event), first channel. A journey with no event left in the range is
//! skipped. The cohort condition (first seen in a period) looks at the whole journey instead:
//! when a customer was first seen does not change with the range analysed. Because conditions
//! look at one customer at a time, segments built from them partition customers cleanly, and
//! an analysis over complementary segments adds up to the analysis over all.

use jiff::tz::TimeZone;

use crate::error::DiscoveryError;
use crate::funnel::properties_match;
use crate::{Analysis, Micros, NameIndex, NameSet, Needs, ScanSize, Timeline};

/// A behavioural condition richer than "did EVENT": the event must carry property values,
/// and/or happen within a window after the journey's first event (e.g. "ordered within 7 days
/// of arriving"); `negate` keeps the customers with no such event instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behaviour {
    pub event: u16,
    /// `(key, value)` pairs the event's properties must all have (values compared as text).
    pub properties: Vec<(String, String)>,
    /// At most this long after the journey's first event (in the range).
    pub within: Option<Micros>,
    pub negate: bool,
}

impl Behaviour {
    fn holds(&self, t: &Timeline<'_>) -> bool {
        let start = t.times.first().copied().unwrap_or(0);
        let found = t.names.iter().enumerate().any(|(i, &n)| {
            n == self.event
                && self
                    .within
                    .is_none_or(|w| t.times[i].saturating_sub(start) <= w)
                && (self.properties.is_empty()
                    || t.properties
                        .get(i)
                        .is_some_and(|p| properties_match(p, &self.properties)))
        });
        found != self.negate
    }
}

/// Parses `EVENT`, `EVENT[key=value,...]`, either followed by ` within DURATION`.
pub fn parse_behaviour(
    text: &str,
    negate: bool,
    name: impl FnOnce(&str) -> Result<u16, DiscoveryError>,
) -> Result<Behaviour, DiscoveryError> {
    let (event, within) = match text.rsplit_once(" within ") {
        Some((e, w)) => (e, Some(crate::error::parse_duration(w)?)),
        None => (text, None),
    };
    let spec = crate::StepSpec::parse(event.trim())?;
    Ok(Behaviour {
        event: name(&spec.name)?,
        properties: spec.conditions,
        within,
        negate,
    })
}

/// Parses a cohort, the period a customer was first seen in, in zone `tz`: a day
/// (`2026-01-15`), an ISO week (`2026-W03`), a month (`2026-01`) or a year (`2026`). Returns
/// its start and end (exclusive), µs.
pub fn parse_cohort(text: &str, tz: &TimeZone) -> Result<(Micros, Micros), DiscoveryError> {
    use jiff::ToSpan;
    use jiff::civil::{Date, ISOWeekDate, Weekday};
    let bad = || DiscoveryError::BadCohort {
        got: text.to_string(),
    };
    let t = text.trim();
    let (first, next): (Date, Date) = if let Some((y, w)) = t.split_once("-W") {
        let (y, w) = (y.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
        let d = ISOWeekDate::new(y, w, Weekday::Monday)
            .map_err(|_| bad())?
            .date();
        (d, d.checked_add(7.days()).map_err(|_| bad())?)
    } else {
        match t.split('-').count() {
            1 => {
                let d = Date::new(t.parse().map_err(|_| bad())?, 1, 1).map_err(|_| bad())?;
                (d, d.checked_add(1.year()).map_err(|_| bad())?)
            }
            2 => {
                let d: Date = format!("{t}-01").parse().map_err(|_| bad())?;
                (d, d.checked_add(1.month()).map_err(|_| bad())?)
            }
            _ => {
                let d: Date = t.parse().map_err(|_| bad())?;
                (d, d.checked_add(1.day()).map_err(|_| bad())?)
            }
        }
    };
    let at = |d: Date| {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp().as_microsecond())
            .map_err(|_| bad())
    };
    Ok((at(first)?, at(next)?))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Keep events at or after this time.
    pub since: Option<Micros>,
    /// Keep events before this time.
    pub until: Option<Micros>,
    /// Keep customers who did every one of these events (in the range).
    pub did: Vec<u16>,
    /// Keep customers who did none of these events (in the range).
    pub did_not: Vec<u16>,
    /// Keep customers whose first event (in the range) came through this channel.
    pub first_channel: Option<u16>,
    /// Keep customers for whom every one of these holds (in the range).
    pub behaviours: Vec<Behaviour>,
    /// Keep customers first seen (their first event, whatever the range) in `[start, end)`.
    pub cohort: Option<(Micros, Micros)>,
}

impl Scope {
    /// Whether every customer is kept whole: the default scope. Field by field rather than
    /// compared with a `Scope::default()`, since [`Scoped`] asks for every customer of a scan.
    pub fn is_everything(&self) -> bool {
        let Scope {
            since,
            until,
            did,
            did_not,
            first_channel,
            behaviours,
            cohort,
        } = self;
        since.is_none()
            && until.is_none()
            && did.is_empty()
            && did_not.is_empty()
            && first_channel.is_none()
            && behaviours.is_empty()
            && cohort.is_none()
    }

    pub fn needs(&self) -> Needs {
        Needs {
            channels: self.first_channel.is_some(),
            properties: self.behaviours.iter().any(|b| !b.properties.is_empty()),
            ..Needs::default()
        }
    }

    /// The part of `t` this scope looks at, or `None` when the customer is out of scope.
    pub fn apply<'a>(&self, t: &Timeline<'a>) -> Option<Timeline<'a>> {
        if let Some((from, to)) = self.cohort {
            let first = *t.times.first()?;
            if first < from || first >= to {
                return None;
            }
        }
        // Times ascend within a timeline, so the range is a contiguous slice.
        let start = match self.since {
            Some(s) => t.times.partition_point(|&x| x < s),
            None => 0,
        };
        let end = match self.until {
            Some(u) => t.times.partition_point(|&x| x < u),
            None => t.len(),
        };
        if start >= end {
            return None;
        }
        let cut = if start == 0 && end == t.len() {
            *t
        } else {
            t.slice(start..end)
        };
        if self.did.iter().any(|n| !cut.names.contains(n)) {
            return None;
        }
        if self.did_not.iter().any(|n| cut.names.contains(n)) {
            return None;
        }
        if let Some(ch) = self.first_channel
            && cut.channels.first() != Some(&ch)
        {
            return None;
        }
        if !self.behaviours.iter().all(|b| b.holds(&cut)) {
            return None;
        }
        Some(cut)
    }
}

/// An analysis restricted to a scope.
pub struct Scoped<A> {
    pub scope: Scope,
    pub inner: A,
}

impl<A: Analysis> Analysis for Scoped<A> {
    type Partial = A::Partial;
    type Output = A::Output;

    fn needs(&self) -> Needs {
        self.inner.needs().or(self.scope.needs())
    }
    fn partial(&self) -> A::Partial {
        self.inner.partial()
    }
    fn partial_for(&self, size: ScanSize) -> A::Partial {
        self.inner.partial_for(size)
    }
    fn add(&self, partial: &mut A::Partial, t: &Timeline<'_>) {
        // The usual scope, everything: the timeline as it is, without a copy cut from it.
        if self.scope.is_everything() {
            return self.inner.add(partial, t);
        }
        if let Some(cut) = self.scope.apply(t) {
            self.inner.add(partial, &cut);
        }
    }
    fn add_by_names<N: NameIndex>(
        &self,
        partial: &mut A::Partial,
        names: &[N],
        set: Option<NameSet>,
    ) -> bool {
        // A narrower scope needs times or other columns to cut the timeline first.
        self.scope.is_everything() && self.inner.add_by_names(partial, names, set)
    }
    fn merge(&self, into: &mut A::Partial, other: A::Partial) {
        self.inner.merge(into, other)
    }
    fn finish(&self, partial: A::Partial) -> A::Output {
        self.inner.finish(partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Owned;

    #[test]
    fn only_the_default_scope_is_everything() {
        let narrowed = [
            Scope {
                since: Some(1),
                ..Scope::default()
            },
            Scope {
                until: Some(1),
                ..Scope::default()
            },
            Scope {
                did: vec![0],
                ..Scope::default()
            },
            Scope {
                did_not: vec![0],
                ..Scope::default()
            },
            Scope {
                first_channel: Some(0),
                ..Scope::default()
            },
            Scope {
                cohort: Some((0, 1)),
                ..Scope::default()
            },
        ];
        assert!(Scope::default().is_everything());
        for s in narrowed {
            assert!(!s.is_everything(), "{s:?}");
        }
    }

    #[test]
    fn time_range_and_conditions() {
        let mut o = Owned::new(1, &[(0, 10), (1, 20), (2, 30)]);
        o.channels = vec![5, 6, 7];
        let t = o.view();
        let s = Scope {
            since: Some(20_000_000),
            until: Some(30_000_000),
            ..Scope::default()
        };
        let cut = s.apply(&t).unwrap();
        assert_eq!(cut.names, &[1]);
        assert_eq!(cut.channels, &[6]);
        let s2 = Scope {
            first_channel: Some(6),
            ..s.clone()
        };
        assert!(s2.apply(&t).is_some());
        let s3 = Scope {
            did: vec![0],
            ..s.clone()
        };
        assert!(s3.apply(&t).is_none(), "event 0 is outside the range");
        let s4 = Scope {
            did_not: vec![2],
            ..Scope::default()
        };
        assert!(s4.apply(&t).is_none());
        let s5 = Scope {
            since: Some(31_000_000),
            ..Scope::default()
        };
        assert!(s5.apply(&t).is_none());
    }

    #[test]
    fn behaviours_within_a_window_and_with_properties() {
        let mut o = Owned::new(1, &[(0, 10), (1, 20), (2, 100)]);
        o.properties = vec!["", r#"{"plan":"pro","n":3}"#, ""];
        let t = o.view();
        let did = |event, within: Option<i64>, properties: &[(&str, &str)], negate| Scope {
            behaviours: vec![Behaviour {
                event,
                within: within.map(|s| s * 1_000_000),
                properties: properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                negate,
            }],
            ..Scope::default()
        };
        // Event 2 comes 90 s after the first event.
        assert!(did(2, Some(90), &[], false).apply(&t).is_some());
        assert!(did(2, Some(89), &[], false).apply(&t).is_none());
        assert!(did(2, Some(89), &[], true).apply(&t).is_some());
        assert!(
            did(1, None, &[("plan", "pro"), ("n", "3")], false)
                .apply(&t)
                .is_some()
        );
        assert!(did(1, None, &[("plan", "free")], false).apply(&t).is_none());
        assert!(did(0, None, &[("plan", "pro")], false).apply(&t).is_none());
        // The window starts at the first event in the range.
        let late = Scope {
            since: Some(20_000_000),
            ..did(2, Some(80), &[], false)
        };
        assert!(late.apply(&t).is_some());
    }

    #[test]
    fn cohorts_by_first_event_in_a_time_zone() {
        let utc = TimeZone::UTC;
        let (a, b) = parse_cohort("2026-01", &utc).unwrap();
        assert_eq!((b - a) / 86_400_000_000, 31);
        let (w, w2) = parse_cohort("2026-W01", &utc).unwrap();
        // ISO week 1 of 2026 starts on Monday 2025-12-29.
        assert_eq!(w, parse_cohort("2025-12-29", &utc).unwrap().0);
        assert_eq!((w2 - w) / 86_400_000_000, 7);
        assert!(parse_cohort("2026-13", &utc).is_err());
        assert!(parse_cohort("soon", &utc).is_err());
        // Paris in winter (the crate's tests have no time zone database).
        let paris = TimeZone::fixed(jiff::tz::offset(1));
        let (p, _) = parse_cohort("2026-01-15", &paris).unwrap();
        assert_eq!(
            parse_cohort("2026-01-15", &utc).unwrap().0 - p,
            3_600_000_000
        );
        // First seen at 2026-01-31 23:30 UTC: January in UTC, February in Paris.
        let first = a + 30 * 86_400_000_000 + 23 * 3_600_000_000 + 1_800_000_000;
        let o = Owned {
            times: vec![first, first + 86_400_000_000 * 40],
            ..Owned::new(1, &[(0, 0), (1, 0)])
        };
        let jan = |tz: &TimeZone| Scope {
            cohort: Some(parse_cohort("2026-01", tz).unwrap()),
            // The range does not move the cohort: only the later event is analysed.
            since: Some(first + 1),
            ..Scope::default()
        };
        assert_eq!(jan(&utc).apply(&o.view()).map(|c| c.len()), Some(1));
        assert!(jan(&paris).apply(&o.view()).is_none());
    }
}
