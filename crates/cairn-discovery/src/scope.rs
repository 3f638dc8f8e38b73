//! Which customers and which part of their journeys an analysis looks at.
//!
//! A [`Scope`] first cuts each journey to the time range `[since, until)`, then keeps the
//! journeys that satisfy every segment condition, evaluated on that cut journey: did / did not
//! do an event, first channel. A journey with no event left in the range is skipped. Because
//! conditions look at one customer at a time, segments built from them partition customers
//! cleanly, and an analysis over complementary segments adds up to the analysis over all.

use crate::{Analysis, Micros, Needs, Timeline};

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
}

impl Scope {
    pub fn is_everything(&self) -> bool {
        *self == Scope::default()
    }

    pub fn needs(&self) -> Needs {
        Needs {
            channels: self.first_channel.is_some(),
            ..Needs::default()
        }
    }

    /// The part of `t` this scope looks at, or `None` when the customer is out of scope.
    pub fn apply<'a>(&self, t: &Timeline<'a>) -> Option<Timeline<'a>> {
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
    fn add(&self, partial: &mut A::Partial, t: &Timeline<'_>) {
        if let Some(cut) = self.scope.apply(t) {
            self.inner.add(partial, &cut);
        }
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
}
