//! What can be wrong with an analysis request. The data itself never makes an analysis fail.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("unknown event {name:?}{}", if known.is_empty() { String::new() } else { format!(" (did you mean: {}?)", known.join(", ")) })]
    UnknownEvent { name: String, known: Vec<String> },
    #[error("unknown channel {name:?} (channels: {})", known.join(", "))]
    UnknownChannel { name: String, known: Vec<String> },
    #[error("funnel step {spec:?}: {reason}")]
    BadStep { spec: String, reason: String },
    #[error("a funnel needs between 1 and {max} steps, got {got}")]
    StepCount { got: usize, max: usize },
    #[error("duration {got:?}: expected a number with a unit, e.g. 30s, 15m, 2h, 7d or 2w")]
    BadDuration { got: String },
    #[error("{what} is not available with {with}")]
    Unsupported { what: String, with: String },
    #[error(
        "segment {segment:?}: cannot read {part:?} (expected did:EVENT, not-did:EVENT, first-channel:CHANNEL or cohort:PERIOD, joined by commas, or all; EVENT may be NAME[key=value] and end with ' within 7d')"
    )]
    BadSegment { segment: String, part: String },
    #[error(
        "cohort {got:?}: expected a day (2026-01-15), an ISO week (2026-W03), a month (2026-01) or a year (2026)"
    )]
    BadCohort { got: String },
    #[error("rename rule {rule:?}: {reason}")]
    BadRename { rule: String, reason: String },
}

/// Up to five known names that look like `name` (same letters ignoring case, or sharing a
/// prefix), so a typo gets a useful hint.
pub(crate) fn suggestions(names: &[String], name: &str) -> Vec<String> {
    let want = name.to_lowercase();
    let prefix: String = want.chars().take(3).collect();
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| {
            let l = n.to_lowercase();
            l == want
                || l.contains(&want)
                || want.contains(&l)
                || (!prefix.is_empty() && l.starts_with(&prefix))
        })
        .take(5)
        .cloned()
        .collect();
    if out.is_empty() && names.len() <= 12 {
        out = names.to_vec();
    }
    out
}

/// Parses a duration such as `90s`, `15m`, `2h`, `7d`, `2w` (a bare number is seconds) into
/// microseconds.
pub fn parse_duration(s: &str) -> Result<i64, DiscoveryError> {
    let err = || DiscoveryError::BadDuration { got: s.to_string() };
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return Err(err()),
    };
    let micros = n * secs * 1e6;
    if !micros.is_finite() || micros < 0.0 || micros > i64::MAX as f64 / 2.0 {
        return Err(err());
    }
    Ok(micros.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000));
        assert_eq!(parse_duration("90"), Ok(90_000_000));
        assert_eq!(parse_duration("1.5m"), Ok(90_000_000));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3y").is_err());
    }
}
