//! Comparing two segments: which transitions and which journeys are more common in one than
//! in the other.
//!
//! Each segment is analysed on its own (a process map and variants per segment); the
//! comparison works on shares of each segment's customers, so segments of different sizes
//! compare fairly, and lists the largest differences first.

use serde::Serialize;

use crate::error::DiscoveryError;
use crate::map::MapResult;
use crate::scope::Scope;
use crate::variants::VariantsResult;

/// Parses segment conditions written as `did:EVENT`, `not-did:EVENT`, `first-channel:CHANNEL`,
/// separated by `,` (all must hold); `all` is everyone. Names are resolved with `name` and
/// `channel`.
pub fn parse_segment(
    text: &str,
    mut name: impl FnMut(&str) -> Result<u16, DiscoveryError>,
    mut channel: impl FnMut(&str) -> Result<u16, DiscoveryError>,
    tz: &jiff::tz::TimeZone,
) -> Result<Scope, DiscoveryError> {
    let mut scope = Scope::default();
    if text.trim() == "all" {
        return Ok(scope);
    }
    for part in split_top_level(text).filter(|p| !p.is_empty()) {
        let bad = || DiscoveryError::BadSegment {
            segment: text.to_string(),
            part: part.to_string(),
        };
        let (kind, value) = part.split_once(':').ok_or_else(bad)?;
        match kind.trim() {
            k @ ("did" | "not-did") => {
                let b = crate::scope::parse_behaviour(value.trim(), k == "not-did", &mut name)?;
                match (b.within, b.properties.is_empty(), b.negate) {
                    (None, true, false) => scope.did.push(b.event),
                    (None, true, true) => scope.did_not.push(b.event),
                    _ => scope.behaviours.push(b),
                }
            }
            "first-channel" => scope.first_channel = Some(channel(value.trim())?),
            "cohort" => scope.cohort = Some(crate::scope::parse_cohort(value, tz)?),
            _ => return Err(bad()),
        }
    }
    Ok(scope)
}

/// The comma-separated parts of `text`, trimmed; commas inside `[...]` (property conditions)
/// do not split.
fn split_top_level(text: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0i32;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth <= 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeDiff {
    pub from: String,
    pub to: String,
    /// Share of segment A's customers with this transition.
    pub a_share: f64,
    pub b_share: f64,
    /// `a_share - b_share`.
    pub difference: f64,
    pub a_median_s: Option<f64>,
    pub b_median_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantDiff {
    pub events: Vec<String>,
    pub a_share: f64,
    pub b_share: f64,
    pub difference: f64,
}

/// Transitions by how much more common they are in A than in B (largest absolute first).
pub fn compare_maps(a: &MapResult, b: &MapResult, top: usize) -> Vec<EdgeDiff> {
    let share = |c: u64, n: u64| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    let mut out: Vec<EdgeDiff> = Vec::new();
    for e in &a.edges {
        let other = b.edges.iter().find(|o| o.from == e.from && o.to == e.to);
        let (sa, sb) = (
            share(e.customers, a.customers),
            share(other.map_or(0, |o| o.customers), b.customers),
        );
        out.push(EdgeDiff {
            from: e.from.clone(),
            to: e.to.clone(),
            a_share: sa,
            b_share: sb,
            difference: sa - sb,
            a_median_s: Some(e.median_s),
            b_median_s: other.map(|o| o.median_s),
        });
    }
    for e in &b.edges {
        if a.edges.iter().any(|o| o.from == e.from && o.to == e.to) {
            continue;
        }
        let sb = share(e.customers, b.customers);
        out.push(EdgeDiff {
            from: e.from.clone(),
            to: e.to.clone(),
            a_share: 0.0,
            b_share: sb,
            difference: -sb,
            a_median_s: None,
            b_median_s: Some(e.median_s),
        });
    }
    out.sort_by(|x, y| {
        y.difference
            .abs()
            .total_cmp(&x.difference.abs())
            .then_with(|| (&x.from, &x.to).cmp(&(&y.from, &y.to)))
    });
    out.truncate(top);
    out
}

/// Variants (among those listed in either result) by how much more common they are in A.
pub fn compare_variants(a: &VariantsResult, b: &VariantsResult, top: usize) -> Vec<VariantDiff> {
    let mut keys: Vec<&Vec<String>> = a.variants.iter().map(|v| &v.events).collect();
    for v in &b.variants {
        if !keys.contains(&&v.events) {
            keys.push(&v.events);
        }
    }
    let share = |r: &VariantsResult, k: &Vec<String>| {
        r.variants
            .iter()
            .find(|v| &v.events == k)
            .map_or(0.0, |v| v.count as f64 / r.customers.max(1) as f64)
    };
    let mut out: Vec<VariantDiff> = keys
        .into_iter()
        .map(|k| {
            let (sa, sb) = (share(a, k), share(b, k));
            VariantDiff {
                events: k.clone(),
                a_share: sa,
                b_share: sb,
                difference: sa - sb,
            }
        })
        .collect();
    out.sort_by(|x, y| {
        y.difference
            .abs()
            .total_cmp(&x.difference.abs())
            .then_with(|| x.events.cmp(&y.events))
    });
    out.truncate(top);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Owned, names};
    use crate::{ProcessMap, Scoped, run};

    #[test]
    fn segments_parse() {
        let n = |s: &str| match s {
            "buy" => Ok(1),
            other => Err(DiscoveryError::UnknownEvent {
                name: other.into(),
                known: vec![],
            }),
        };
        let utc = jiff::tz::TimeZone::UTC;
        let s = parse_segment("did:buy, first-channel:web", n, |_| Ok(3), &utc).unwrap();
        assert_eq!(s.did, vec![1]);
        assert_eq!(s.first_channel, Some(3));
        assert!(
            parse_segment("all", n, |_| Ok(0), &utc)
                .unwrap()
                .is_everything()
        );
        assert!(parse_segment("bought", n, |_| Ok(0), &utc).is_err());
        assert!(parse_segment("did:sell", n, |_| Ok(0), &utc).is_err());
        let s = parse_segment(
            "not-did:buy[plan=pro,n=2] within 7d, cohort:2026-01",
            n,
            |_| Ok(0),
            &utc,
        )
        .unwrap();
        assert_eq!(s.behaviours.len(), 1);
        let b = &s.behaviours[0];
        assert!(b.negate && b.properties.len() == 2);
        assert_eq!(b.within, Some(7 * 86_400_000_000));
        assert!(s.cohort.is_some());
        assert!(parse_segment("cohort:someday", n, |_| Ok(0), &utc).is_err());
    }

    #[test]
    fn edge_differences_use_shares() {
        let js = [
            Owned::new(1, &[(0, 0), (1, 1)]),
            Owned::new(2, &[(0, 0), (2, 1)]),
            Owned::new(3, &[(0, 0), (2, 1)]),
        ];
        let map = |did: u16| {
            run(
                &Scoped {
                    scope: Scope {
                        did: vec![did],
                        ..Scope::default()
                    },
                    inner: ProcessMap::new(names(&["a", "b", "c"])),
                },
                js.iter().map(|o| o.view()),
            )
        };
        let (a, b) = (map(1), map(2));
        let d = compare_maps(&a, &b, 10);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|e| e.difference.abs() == 1.0));
        assert_eq!(d[0].from, "a");
    }
}
