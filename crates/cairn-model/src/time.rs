//! Timestamps: parsing the forms sources send, formatting for people.
//!
//! Parsing is hand-written for the common ISO 8601 / RFC 3339 shapes because it runs once per
//! imported record and must cost nanoseconds, not a general parser's microseconds.

use crate::Micros;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected an ISO 8601 / RFC 3339 time (e.g. 2024-05-01T13:45:00Z) or epoch seconds/milliseconds, got {got:?}"
)]
pub struct TimeError {
    pub got: String,
}

/// Parses a point in time into microseconds since the epoch (UTC).
///
/// Accepted:
/// - `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (or a space instead of `T`), followed by
///   `Z`, `±HH:MM`, `±HHMM`, `±HH` or nothing. A time without an offset is taken as UTC.
/// - an integer or decimal epoch: seconds below 10^11, milliseconds below 10^14, microseconds
///   below 10^17, nanoseconds above.
pub fn parse_timestamp(s: &str) -> Result<Micros, TimeError> {
    let t = s.trim();
    let err = || TimeError { got: s.to_string() };
    let b = t.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        return parse_iso(b).ok_or_else(err);
    }
    parse_epoch(t).ok_or_else(err)
}

fn parse_epoch(t: &str) -> Option<Micros> {
    if t.is_empty()
        || !t
            .bytes()
            .all(|c| c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return None;
    }
    epoch_to_micros(t.parse().ok()?)
}

/// A number since the epoch, in whichever unit its size says: seconds below 10^11,
/// milliseconds below 10^14, microseconds below 10^17, nanoseconds above.
pub fn epoch_to_micros(v: f64) -> Option<Micros> {
    let a = v.abs();
    let micros = if a < 1e11 {
        v * 1e6
    } else if a < 1e14 {
        v * 1e3
    } else if a < 1e17 {
        v
    } else {
        v / 1e3
    };
    micros.is_finite().then_some(micros.round() as Micros)
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<i64> {
    let part = b.get(from..from + n)?;
    let mut v = 0i64;
    for &c in part {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

fn parse_iso(b: &[u8]) -> Option<Micros> {
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut micros = days_from_civil(year, month, day) * 86_400_000_000;
    let mut i = 10;
    if i == b.len() {
        return Some(micros);
    }
    if b[i] != b'T' && b[i] != b' ' && b[i] != b't' {
        return None;
    }
    i += 1;
    let hour = digits(b, i, 2)?;
    if b.get(i + 2) != Some(&b':') {
        return None;
    }
    let minute = digits(b, i + 3, 2)?;
    i += 5;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = digits(b, i + 1, 2)?;
        i += 3;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    micros += ((hour * 60 + minute) * 60 + second) * 1_000_000;
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let start = i;
        let mut frac = 0i64;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                frac = frac * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            frac *= 10;
        }
        micros += frac;
    }
    match b.get(i) {
        None => Some(micros),
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => Some(micros),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let om = match b.len() - (i + 3) {
                0 => 0,
                3 if b[i + 3] == b':' => digits(b, i + 4, 2)?,
                2 => digits(b, i + 3, 2)?,
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = (oh * 60 + om) * 60_000_000;
            Some(if sign == b'+' {
                micros - offset
            } else {
                micros + offset
            })
        }
        _ => None,
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats a time as RFC 3339 in UTC, e.g. `2024-05-01T13:45:00.123Z`.
pub fn format_micros(t: Micros) -> String {
    match jiff::Timestamp::from_microsecond(t) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("{t}us"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &str) {
        let got = parse_timestamp(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let want = jiff::Timestamp::from_microsecond(
            want.parse::<jiff::Timestamp>().unwrap().as_microsecond(),
        )
        .unwrap();
        assert_eq!(got, want.as_microsecond(), "{input}");
    }

    #[test]
    fn parses_common_shapes() {
        check("2012-10-09T14:50:17+00:00", "2012-10-09T14:50:17Z");
        check("2010-12-30T14:32:00.000+01:00", "2010-12-30T13:32:00Z");
        check(
            "2011-10-11 13:45:40.276000+02:00",
            "2011-10-11T11:45:40.276Z",
        );
        check(
            "2024-02-29T23:59:59.123456789Z",
            "2024-02-29T23:59:59.123456Z",
        );
        check("2024-01-01T00:00:00-0530", "2024-01-01T05:30:00Z");
        check("2024-01-01 10:00", "2024-01-01T10:00:00Z");
        check("2024-01-01", "2024-01-01T00:00:00Z");
        check("1969-12-31T23:59:59Z", "1969-12-31T23:59:59Z");
        check("1700000000", "2023-11-14T22:13:20Z");
        check("1700000000000", "2023-11-14T22:13:20Z");
        check("1700000000.5", "2023-11-14T22:13:20.5Z");
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00+",
            "2024-01-01X10:00",
            "2024-01-01T10:00:00Zjunk",
            "12abc",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_micros(1_500_000), "1970-01-01T00:00:01.5Z");
    }
}
