//! Fast RFC 3339 formatting with milliseconds, the only time shape the generator writes.

/// Milliseconds since the Unix epoch, UTC. Generated times are whole milliseconds so that every
/// output format (text with millisecond precision, Parquet microseconds) holds exactly the same
/// instant.
pub type Millis = i64;

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes). Valid for years 0 to 9999.
pub fn write_rfc3339_millis(t: Millis, out: &mut Vec<u8>) {
    let days = t.div_euclid(86_400_000);
    let ms_of_day = t.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    let ms = ms_of_day % 1000;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut buf[0..4], y);
    put_digits(&mut buf[5..7], m);
    put_digits(&mut buf[8..10], d);
    put_digits(&mut buf[11..13], hh);
    put_digits(&mut buf[14..16], mm);
    put_digits(&mut buf[17..19], ss);
    put_digits(&mut buf[20..23], ms);
    out.extend_from_slice(&buf);
}

/// Fills `dst` with the last `dst.len()` decimal digits of a non-negative `v`, zero-padded.
fn put_digits(dst: &mut [u8], mut v: i64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ms: Millis, want: &str) {
        let mut out = Vec::new();
        write_rfc3339_millis(ms, &mut out);
        assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        assert_eq!(cairn_model::parse_timestamp(want).unwrap(), ms * 1000);
    }

    #[test]
    fn formats_with_milliseconds() {
        check(0, "1970-01-01T00:00:00.000Z");
        check(1_767_225_600_000, "2026-01-01T00:00:00.000Z");
        check(
            1_767_225_600_000 + 59 * 86_400_000 + 1,
            "2026-03-01T00:00:00.001Z",
        );
        check(1_709_251_199_999, "2024-02-29T23:59:59.999Z");
        check(-1, "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn round_trips_every_day_of_a_leap_cycle() {
        let mut out = Vec::new();
        for day in 0..(4 * 366) {
            let ms = 1_704_067_200_000 + day * 86_400_000 + 45_296_789;
            out.clear();
            write_rfc3339_millis(ms, &mut out);
            let s = std::str::from_utf8(&out).unwrap();
            assert_eq!(cairn_model::parse_timestamp(s).unwrap(), ms * 1000, "{s}");
        }
    }
}
