//! Send-time guards: quiet hours in the customer's timezone and the frequency cap. Both only
//! ever delay a message, never drop it.

use cairn_model::Micros;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::definition::{FrequencyCap, QuietHours};

/// The earliest time at or after `at` when the message may go out: outside quiet hours in
/// `tz` and under the cap, given the customer's earlier send times `sent` (oldest first).
pub fn send_time(
    at: Micros,
    quiet: Option<&QuietHours>,
    tz: &TimeZone,
    cap: Option<&FrequencyCap>,
    sent: &[Micros],
) -> Micros {
    let mut t = at;
    // Each guard only moves time forward; a few rounds settle both (a cap delay can land in
    // quiet hours and the end of quiet hours can be capped again).
    for _ in 0..16 {
        let after_quiet = quiet.map_or(t, |q| quiet_end(q, tz, t));
        let after_cap = cap.map_or(after_quiet, |c| cap_free(c, sent, after_quiet));
        if after_cap == t {
            return t;
        }
        t = after_cap;
    }
    t
}

/// The first instant at or after `t` when the local clock in `tz` shows `minute` (minutes after
/// midnight): today's if it is still to come, else tomorrow's.
pub fn next_local_time(minute: u16, tz: &TimeZone, t: Micros) -> Micros {
    let Ok(ts) = Timestamp::from_microsecond(t) else {
        return t;
    };
    let day = ts.to_zoned(tz.clone()).date();
    match local_instant(day, minute, tz) {
        Some(today) if today >= t => today,
        _ => day
            .tomorrow()
            .ok()
            .and_then(|d| local_instant(d, minute, tz))
            .map_or(t, |tomorrow| tomorrow.max(t)),
    }
}

/// The instant `day` at `minute` (after midnight) in `tz`. A wall time skipped by a DST change
/// resolves to the later instant (jiff's "compatible").
fn local_instant(day: jiff::civil::Date, minute: u16, tz: &TimeZone) -> Option<Micros> {
    day.at((minute / 60) as i8, (minute % 60) as i8, 0, 0)
        .to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_microsecond())
}

/// `t` itself when it is outside quiet hours, else the local time they end.
pub fn quiet_end(q: &QuietHours, tz: &TimeZone, t: Micros) -> Micros {
    let Ok(ts) = Timestamp::from_microsecond(t) else {
        return t;
    };
    let local = ts.to_zoned(tz.clone());
    let minute = local.hour() as u16 * 60 + local.minute() as u16;
    let quiet_now = if q.start <= q.end {
        q.start <= minute && minute < q.end
    } else {
        minute >= q.start || minute < q.end
    };
    if !quiet_now {
        return t;
    }
    let mut day = local.date();
    // Evening part of a window that wraps midnight: it ends tomorrow.
    if q.start > q.end && minute >= q.start {
        day = match day.tomorrow() {
            Ok(d) => d,
            Err(_) => return t,
        };
    }
    local_instant(day, q.end, tz).map_or(t, |end| end.max(t))
}

/// The earliest time at or after `t` when fewer than `cap.messages` sends fall in the window
/// `(time - per, time]`.
pub fn cap_free(cap: &FrequencyCap, sent: &[Micros], t: Micros) -> Micros {
    let in_window: Vec<Micros> = sent.iter().copied().filter(|s| *s > t - cap.per).collect();
    if (in_window.len() as u64) < cap.messages as u64 {
        return t;
    }
    if cap.messages == 0 {
        // Nothing may ever be sent; hold it at the latest representable time rather than loop.
        return Micros::MAX / 2;
    }
    // The window frees up when enough of its oldest sends have left it.
    let k = in_window.len() - cap.messages as usize;
    in_window[k] + cap.per
}
