//! Entry on a schedule: a five-field cron expression (`0 9 * * 1`: Mondays at 09:00),
//! evaluated in each customer's local time (trait `timezone`, IANA name, UTC without one).
//!
//! [`Cron`] parses the expression and computes the next instant it fires in a time zone, in
//! civil (wall-clock) time: a local time skipped by a daylight-saving change fires at the first
//! instant after the gap (a 02:30 job on a spring-forward night runs at 03:00), a repeated one
//! fires once, at its first occurrence.
//!
//! [`Schedules`] is the engine's bookkeeping for schedule entries, and costs nothing while no
//! journey has one. Customers the engine knows are grouped by time zone (4 bytes each, in
//! customer-number order); each (zone, scheduled journey) pair has one timer, ordered with the
//! engine's own timers by (due, sequence number). When it fires, the engine tries to enter
//! every member of the zone (re-entry policy, cap and the entry's conditions apply) and the
//! timer moves to the next firing. So a million customers in twenty zones cost twenty timers,
//! nothing polls, and the firing times depend only on the inputs: a replay, a simulation and a
//! live run enter the same customers at the same instants.
//!
//! Firings missed because no tick came between them (a runner down for weeks) collapse into
//! the latest: a tick that finds several firings of a (zone, journey) due enters customers for
//! the last one only. So, unlike the engine's other timers, schedule entries depend on when
//! ticks come; the runner journals its ticks, so a replay is still exact, and a simulation
//! ticks at every due time, as a runner that never stopped would.

use std::collections::{BTreeMap, HashMap};

use cairn_model::Micros;
use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde_json::Value;

/// Why a cron expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CronError {
    pub reason: String,
}

fn err(reason: impl Into<String>) -> CronError {
    CronError {
        reason: reason.into(),
    }
}

/// A parsed five-field cron expression: minute, hour, day of month, month, day of week, each
/// `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; months
/// and days of week also by English name (`jan`, `mon`); day of week 0 or 7 is Sunday. As in
/// classic cron, when both day fields are restricted a day matching either fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u8,
    /// The day-of-month field starts with `*` (classic cron's rule for combining the two
    /// day fields).
    any_day: bool,
    any_weekday: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

impl Field {
    fn value(&self, s: &str) -> Result<u32, CronError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names count from 1 (the field's minimum), day names from 0 (Sunday).
            return Ok(i as u32 + self.min);
        }
        let v: u32 = s.parse().map_err(|_| {
            let names = match self.names.first() {
                Some(_) => format!(" or a name ({})", self.names.join(", ")),
                None => String::new(),
            };
            err(format!("{} field: {s:?} is not a number{names}", self.name))
        })?;
        if v < self.min || v > self.max {
            return Err(err(format!(
                "{} field: {v} is out of range {}-{}",
                self.name, self.min, self.max
            )));
        }
        Ok(v)
    }

    /// The bits one field sets.
    fn parse(&self, text: &str) -> Result<u64, CronError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(err(format!(
                    "{} field: empty list item in {text:?}",
                    self.name
                )));
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        err(format!(
                            "{} field: step {s:?} must be a whole number above 0",
                            self.name
                        ))
                    })?;
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (from, to) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(err(format!(
                        "{} field: range {range:?} goes backwards",
                        self.name
                    )));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `5/15` is classic cron for `5-59/15`.
                (a, if step.is_some() { self.max } else { a })
            };
            for v in (from..=to).step_by(step.unwrap_or(1) as usize) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1\"), got {}",
                fields.len()
            )));
        }
        let mut bits = [0u64; 5];
        for (i, f) in FIELDS.iter().enumerate() {
            bits[i] = f.parse(fields[i])?;
        }
        // Day of week 7 is Sunday, like 0.
        let weekdays = ((bits[4] | (bits[4] >> 7)) & 0x7f) as u8;
        let cron = Cron {
            text: fields.join(" "),
            minutes: bits[0],
            hours: bits[1] as u32,
            days: bits[2] as u32,
            months: bits[3] as u16,
            weekdays,
            any_day: fields[2].starts_with('*'),
            any_weekday: fields[4].starts_with('*'),
        };
        // Only a day of month is left to check: every other combination fires some day.
        if cron.any_weekday && !cron.any_day {
            let possible = (1..=12).any(|m| {
                // February 29 exists in leap years.
                let longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
                cron.months & (1 << m) != 0
                    && (cron.days & ((1u64 << (longest + 1)) - 2) as u32) != 0
            });
            if !possible {
                return Err(err(format!(
                    "{:?} never fires: no chosen month has the chosen days",
                    cron.text
                )));
            }
        }
        Ok(cron)
    }

    /// The expression as written (fields separated by one space).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first instant after `t` (strictly) at which the expression fires in `tz`; `None`
    /// when it does not within eight years (e.g. February 29 beyond the calendar's range).
    pub fn next_after(&self, t: Micros, tz: &TimeZone) -> Option<Micros> {
        let ts = Timestamp::from_microsecond(t).unwrap_or(Timestamp::MIN);
        let local = ts.to_zoned(tz.clone()).datetime();
        let mut day = local.date();
        // The next whole minute of local time after `t`.
        let mut from = local.hour() as u32 * 60 + local.minute() as u32 + 1;
        // Eight years cover every leap day, whatever the weekday rules.
        for _ in 0..(8 * 366 + 1) {
            if self.day_matches(day) {
                for minute in from..24 * 60 {
                    let (h, m) = (minute / 60, minute % 60);
                    if self.hours & (1 << h) == 0 || self.minutes & (1 << m) == 0 {
                        continue;
                    }
                    // A fold's second occurrence, or a gap mapped back to an instant already
                    // past, is not a new firing.
                    if let Some(at) = instant(day.at(h as i8, m as i8, 0, 0), tz)
                        && at > t
                    {
                        return Some(at);
                    }
                }
            }
            day = day.tomorrow().ok()?;
            from = 0;
        }
        None
    }
}

/// The instant a local wall time names in `tz`: its first occurrence when the clock repeats
/// it, and the end of the gap when the clock skips it.
fn instant(dt: DateTime, tz: &TimeZone) -> Option<Micros> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    if !matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
        return ambiguous.earlier().ok().map(|ts| ts.as_microsecond());
    }
    // Walk to the first minute that exists: the instant the clock jumped to. Gaps are whole
    // minutes and at most a day long (Samoa skipped 2011-12-30).
    let mut next = dt;
    for _ in 0..=24 * 60 {
        next = next.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
        let a = tz.to_ambiguous_timestamp(next);
        if !matches!(a.offset(), AmbiguousOffset::Gap { .. }) {
            return a.earlier().ok().map(|ts| ts.as_microsecond());
        }
    }
    None
}

/// A time zone as the schedule groups customers by: the `timezone` trait as given (`""`
/// without one), and the zone it names (UTC when it is missing or unknown, as for quiet
/// hours).
pub fn zone_of(value: Option<&Value>) -> (&str, TimeZone) {
    let name = value.and_then(Value::as_str).unwrap_or("");
    let tz = match name {
        "" => TimeZone::UTC,
        n => TimeZone::get(n).unwrap_or(TimeZone::UTC),
    };
    (name, tz)
}

/// (due, sequence number), the engine's timer order.
pub(crate) type TimerKey = (Micros, u64);

struct Zone {
    tz: TimeZone,
    /// Customer numbers, ascending.
    members: Vec<u32>,
    /// Per job: the pending timer (each zone always has one per job).
    timers: Vec<TimerKey>,
}

/// The engine's schedule entries: jobs (journey slots with a schedule), customers by zone,
/// and one timer per (zone, job). See the module doc.
#[derive(Default)]
pub(crate) struct Schedules {
    /// (journey slot, expression) per job.
    jobs: Vec<(usize, Cron)>,
    zones: Vec<Zone>,
    by_name: HashMap<Box<str>, u32>,
    /// Due first: (zone, job).
    timers: BTreeMap<TimerKey, (u32, u32)>,
}

impl Schedules {
    /// Whether any journey enters on a schedule (else the engine tracks no zones).
    pub(crate) fn active(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Adds a journey slot entering on `cron`; every zone gets its timer, at the next firing
    /// after `now`. Returns true for the first job: the engine then places the customers it
    /// already knows.
    pub(crate) fn add_job(&mut self, slot: usize, cron: Cron, now: Micros, seq: &mut u64) -> bool {
        let job = self.jobs.len() as u32;
        for z in 0..self.zones.len() {
            let key = self.arm(&cron, z as u32, job, now, seq);
            self.zones[z].timers.push(key);
        }
        self.jobs.push((slot, cron));
        self.jobs.len() == 1
    }

    fn arm(&mut self, cron: &Cron, zone: u32, job: u32, after: Micros, seq: &mut u64) -> TimerKey {
        let tz = &self
            .zones
            .get(zone as usize)
            .map_or(TimeZone::UTC, |z| z.tz.clone());
        let Some(due) = cron.next_after(after, tz) else {
            // Never fires again: no timer (the key stays unique and unused).
            return (Micros::MAX, 0);
        };
        let key = (due, *seq);
        *seq += 1;
        self.timers.insert(key, (zone, job));
        key
    }

    /// Puts a customer the engine has just met into the zone of its `timezone` trait value.
    /// Customer numbers grow, so pushing keeps members ascending.
    pub(crate) fn join(&mut self, c: u32, tz: Option<&Value>, now: Micros, seq: &mut u64) {
        let z = self.zone(tz, now, seq);
        self.zones[z as usize].members.push(c);
    }

    /// Moves a known customer to the zone of its (new) `timezone` trait value, if it changed.
    pub(crate) fn place(&mut self, c: u32, tz: Option<&Value>, now: Micros, seq: &mut u64) {
        let to = self.zone(tz, now, seq);
        for (z, zone) in self.zones.iter_mut().enumerate() {
            if let Ok(i) = zone.members.binary_search(&c) {
                if z as u32 == to {
                    return;
                }
                zone.members.remove(i);
                break;
            }
        }
        let members = &mut self.zones[to as usize].members;
        let i = members.binary_search(&c).unwrap_or_else(|i| i);
        members.insert(i, c);
    }

    /// The zone for a `timezone` value, created (with its timers) on first use.
    fn zone(&mut self, tz: Option<&Value>, now: Micros, seq: &mut u64) -> u32 {
        let (name, resolved) = zone_of(tz);
        if let Some(&z) = self.by_name.get(name) {
            return z;
        }
        let z = self.zones.len() as u32;
        self.by_name.insert(name.into(), z);
        self.zones.push(Zone {
            tz: resolved,
            members: Vec::new(),
            timers: Vec::new(),
        });
        for job in 0..self.jobs.len() {
            let cron = self.jobs[job].1.clone();
            let key = self.arm(&cron, z, job as u32, now, seq);
            self.zones[z as usize].timers.push(key);
        }
        z
    }

    pub(crate) fn next_due(&self) -> Option<TimerKey> {
        self.timers.keys().next().copied()
    }

    pub(crate) fn pending(&self) -> usize {
        self.timers.len()
    }

    /// The first schedule timer, if it is due at or before `now` and comes before `before`
    /// (the engine's next own timer): removed and re-armed at its next firing. Returns its
    /// due time, the journey slot, and the zone's members to try to enter (none when the next
    /// firing is due by `now` too: see the module doc).
    pub(crate) fn pop_due(
        &mut self,
        now: Micros,
        before: Option<TimerKey>,
        seq: &mut u64,
    ) -> Option<(Micros, usize, Vec<u32>)> {
        let (&key, &(zone, job)) = self.timers.first_key_value()?;
        if key.0 > now || before.is_some_and(|b| b < key) {
            return None;
        }
        self.timers.remove(&key);
        let cron = self.jobs[job as usize].1.clone();
        let next = self.arm(&cron, zone, job, key.0, seq);
        let z = &mut self.zones[zone as usize];
        z.timers[job as usize] = next;
        // Missed: the next firing is due by this tick too (the runner was down across both).
        // Only the latest of the firings missed enters anyone, so a runner back after three
        // weeks sends one weekly digest, not three.
        if next.0 <= now {
            return Some((key.0, self.jobs[job as usize].0, Vec::new()));
        }
        Some((key.0, self.jobs[job as usize].0, z.members.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        s.parse::<Timestamp>().unwrap().as_microsecond()
    }

    fn show(t: Micros, tz: &TimeZone) -> String {
        Timestamp::from_microsecond(t)
            .unwrap()
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %a %H:%M %:z")
            .to_string()
    }

    /// The next `n` firings after `from`, as local times with their offsets.
    fn check(cron: &str, zone: &str, from: &str, expected: &[&str]) {
        let c = Cron::parse(cron).unwrap();
        let tz = TimeZone::get(zone).unwrap();
        let mut t = at(from);
        let mut got = Vec::new();
        for _ in expected {
            t = c.next_after(t, &tz).unwrap();
            got.push(show(t, &tz));
        }
        assert_eq!(got, expected, "{cron} in {zone} from {from}");
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        check(
            "0 9 * * 1",
            "UTC",
            "2026-03-04T12:00:00Z",
            &["2026-03-09 Mon 09:00 +00:00", "2026-03-16 Mon 09:00 +00:00"],
        );
        check(
            "*/20 8-9 * * mon-fri",
            "UTC",
            "2026-03-06T09:30:00Z",
            &[
                "2026-03-06 Fri 09:40 +00:00",
                "2026-03-09 Mon 08:00 +00:00",
                "2026-03-09 Mon 08:20 +00:00",
            ],
        );
        check(
            "30 7 1,15 jan,Jul *",
            "UTC",
            "2026-01-15T07:30:00Z",
            &["2026-07-01 Wed 07:30 +00:00", "2026-07-15 Wed 07:30 +00:00"],
        );
        // `5/15` is 5-59/15; Sunday is 0 or 7.
        check(
            "5/15 0 * * 7",
            "UTC",
            "2026-03-01T00:06:00Z",
            &["2026-03-01 Sun 00:20 +00:00", "2026-03-01 Sun 00:35 +00:00"],
        );
        // Both day fields restricted: either matches (classic cron).
        check(
            "0 12 13 * 5",
            "UTC",
            "2026-03-10T00:00:00Z",
            &["2026-03-13 Fri 12:00 +00:00", "2026-03-20 Fri 12:00 +00:00"],
        );
        // Strictly after: a firing exactly at `t` is not the next one.
        check(
            "0 9 * * *",
            "UTC",
            "2026-03-04T09:00:00Z",
            &["2026-03-05 Thu 09:00 +00:00"],
        );
        // Leap days.
        check(
            "0 0 29 2 *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2028-02-29 Tue 00:00 +00:00", "2032-02-29 Sun 00:00 +00:00"],
        );
    }

    #[test]
    fn local_time_in_each_zone_across_dst() {
        // 09:00 local stays 09:00 local when the offset changes (Paris: +01 then +02).
        check(
            "0 9 * * 1",
            "Europe/Paris",
            "2026-03-20T00:00:00Z",
            &["2026-03-23 Mon 09:00 +01:00", "2026-03-30 Mon 09:00 +02:00"],
        );
        check(
            "0 9 * * 1",
            "America/New_York",
            "2026-03-01T00:00:00Z",
            &["2026-03-02 Mon 09:00 -05:00", "2026-03-09 Mon 09:00 -04:00"],
        );
        // Skipped: 02:30 does not exist on 2026-03-29 in Paris; it fires when the clock
        // jumps (03:00 local), once, and normally the next day.
        check(
            "30 2 * * *",
            "Europe/Paris",
            "2026-03-28T12:00:00Z",
            &["2026-03-29 Sun 03:00 +02:00", "2026-03-30 Mon 02:30 +02:00"],
        );
        // Every quarter hour in the skipped hour collapses into one firing at 03:00.
        check(
            "*/15 2-3 29 3 *",
            "Europe/Paris",
            "2026-03-29T00:00:00Z",
            &[
                "2026-03-29 Sun 03:00 +02:00",
                "2026-03-29 Sun 03:15 +02:00",
                "2026-03-29 Sun 03:30 +02:00",
            ],
        );
        // Repeated: 02:30 happens twice on 2026-10-25 in Paris; it fires once, the first time.
        check(
            "30 2 * * *",
            "Europe/Paris",
            "2026-10-24T12:00:00Z",
            &["2026-10-25 Sun 02:30 +02:00", "2026-10-26 Mon 02:30 +01:00"],
        );
        // Starting inside the repeated hour's second pass: its 02:30 already fired.
        check(
            "30 2 * * *",
            "Europe/Paris",
            "2026-10-25T01:10:00Z",
            &["2026-10-26 Mon 02:30 +01:00"],
        );
    }

    /// Whether a local wall time is one the expression names.
    fn names(c: &Cron, dt: DateTime) -> bool {
        c.day_matches(dt.date())
            && c.hours & (1 << dt.hour()) != 0
            && c.minutes & (1 << dt.minute()) != 0
    }

    fn field() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("*".to_string()),
            (0u32..60).prop_map(|n| n.to_string()),
            (0u32..30, 0u32..30).prop_map(|(a, b)| format!("{a}-{}", a + b)),
            (1u32..20).prop_map(|s| format!("*/{s}")),
            (0u32..10, 1u32..10).prop_map(|(a, b)| format!("{a},{}", a + b)),
        ]
    }

    proptest::proptest! {
        /// Any text: an answer, never a panic.
        #[test]
        fn parsing_any_text_never_panics(text in "[0-9*/,\\- a-zA-Z]{0,40}") {
            let _ = Cron::parse(&text);
        }

        /// The next firing is after `t`, is a local time the expression names (or the end of a
        /// DST gap), and nothing the expression names lies between (walked minute by minute).
        #[test]
        fn the_next_firing_is_the_first_named_instant(
            fields in proptest::collection::vec(field(), 2),
            days in prop_oneof_days(),
            zone in 0usize..5,
            minutes in 0i64..(3 * 366 * 24 * 60),
        ) {
            let text = format!("{} {} {days}", fields[0], fields[1]);
            let Ok(c) = Cron::parse(&text) else { return Ok(()) };
            let tz = TimeZone::get(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"][zone]).unwrap();
            // Some instant in 2025-2027, at any second.
            let t = at("2025-01-01T00:00:00Z") + minutes * 60_000_000 + (minutes % 60) * 1_000_000;
            let Some(n) = c.next_after(t, &tz) else { return Ok(()) };
            proptest::prop_assert!(n > t);
            let local = |us: Micros| Timestamp::from_microsecond(us).unwrap().to_zoned(tz.clone());
            let jumped = local(n - 60_000_000).offset() != local(n).offset();
            proptest::prop_assert!(names(&c, local(n).datetime()) || jumped, "{text}: {}", show(n, &tz));
            // Walk the whole minutes between (bounded: sparse expressions are checked near t).
            let mut m = (t / 60_000_000 + 1) * 60_000_000;
            let mut walked = 0;
            while m < n && walked < 20_000 {
                // A wall time's second occurrence (a DST fold) is not a firing.
                let dt = local(m).datetime();
                let repeat = tz.to_ambiguous_timestamp(dt).earlier().unwrap().as_microsecond() != m;
                proptest::prop_assert!(!names(&c, dt) || repeat, "{text}: {} named before {}", show(m, &tz), show(n, &tz));
                m += 60_000_000;
                walked += 1;
            }
        }
    }

    fn prop_oneof_days() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("* * *".to_string()),
            Just("* * 1".to_string()),
            Just("1,15 * *".to_string()),
            Just("* 3,10 sun".to_string()),
            Just("13 * 5".to_string()),
        ]
    }

    fn bad(cron: &str, reason: &str) {
        let e = Cron::parse(cron).unwrap_err();
        assert!(e.reason.contains(reason), "{cron:?}: {e}");
    }

    #[test]
    fn errors_say_which_field_and_why() {
        bad("0 9 * *", "has 5 fields");
        bad("0 9 * * 1 2026", "got 6");
        bad("60 9 * * 1", "minute field: 60 is out of range 0-59");
        bad("0 24 * * 1", "hour field: 24 is out of range 0-23");
        bad("0 9 0 * *", "day of month field: 0 is out of range 1-31");
        bad("0 9 * 13 *", "month field: 13 is out of range 1-12");
        bad("0 9 * * 8", "day of week field: 8 is out of range 0-7");
        bad(
            "0 9 * * monday",
            "\"monday\" is not a number or a name (sun, mon",
        );
        bad("0 9 * * 5-1", "range \"5-1\" goes backwards");
        bad("*/0 9 * * *", "step \"0\" must be a whole number above 0");
        bad("0,,5 9 * * *", "empty list item");
        bad("0 9 30 2 *", "never fires");
        assert!(Cron::parse("0 9 31 1,2 *").is_ok());
        assert_eq!(Cron::parse(" 0  9 * *  1 ").unwrap().as_str(), "0 9 * * 1");
    }
}
