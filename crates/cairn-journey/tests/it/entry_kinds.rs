//! Entry on a schedule (cron, in each customer's timezone) and by API (an event the API
//! appends), driven with an injected clock: a month in a few milliseconds.

use std::sync::Arc;

use cairn_journey::definition::{API_ENTRY_EVENT, EntryOn};
use cairn_journey::{Effect, Engine, InputEvent, Journey, JourneyEventKind};
use cairn_model::{Micros, format_micros, parse_timestamp};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const WEEKLY: &str = include_str!("../../../../examples/journeys/weekly-digest.yaml");

fn t(s: &str) -> Micros {
    parse_timestamp(s).unwrap()
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object literal"),
    }
}

/// An identify call with `traits`.
fn identify(e: &mut Engine, customer: &str, traits: Value, at: Micros) -> Vec<Effect> {
    let (none, traits) = (Map::new(), object(traits));
    let ev = InputEvent {
        name: "identify",
        properties: &none,
        traits: &traits,
        consent: &[],
    };
    e.on_event(customer, &ev, at)
}

/// (customer, UTC time) of each entry.
fn entries(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journey(j) if matches!(j.kind, JourneyEventKind::Entered { .. }) => {
                Some((j.customer.clone(), format_micros(j.at)))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_weekly_digest_example_is_a_schedule() {
    let j = Journey::from_yaml(WEEKLY).unwrap();
    let EntryOn::Schedule(cron) = &j.entry.on else {
        panic!("weekly-digest enters on a schedule: {:?}", j.entry.on)
    };
    assert_eq!(cron.as_str(), "0 9 * * 1");
    assert_eq!(j.entry.event_name(), None);
}

#[test]
fn a_weekly_schedule_fires_at_nine_local_time_in_each_zone() {
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(WEEKLY).unwrap())]);
    let start = t("2026-03-01T00:00:00Z");
    let mut out = Vec::new();
    out.extend(identify(
        &mut e,
        "paris",
        json!({"timezone": "Europe/Paris", "email": "p@example.com"}),
        start,
    ));
    out.extend(identify(
        &mut e,
        "ny",
        json!({"timezone": "America/New_York", "email": "n@example.com"}),
        start,
    ));
    // No timezone: UTC. No email: the entry's condition keeps them out.
    out.extend(identify(
        &mut e,
        "utc",
        json!({"email": "u@example.com"}),
        start,
    ));
    out.extend(identify(&mut e, "noemail", json!({"plan": "free"}), start));
    // One timer per zone, not per customer.
    assert_eq!(e.pending_timers(), 3);
    // A month, one tick per hour (the result does not depend on the ticks).
    for h in 1..=31 * 24 {
        out.extend(e.on_time(start + h * 3_600_000_000));
    }
    let got = entries(&out);
    let of = |who: &str| -> Vec<String> {
        got.iter()
            .filter(|(c, _)| c == who)
            .map(|(_, at)| at.clone())
            .collect()
    };
    // Mondays at 09:00 local. Paris moves to summer time on March 29 (+01:00 → +02:00),
    // New York on March 8 (-05:00 → -04:00).
    assert_eq!(
        of("paris"),
        [
            "2026-03-02T08:00:00Z",
            "2026-03-09T08:00:00Z",
            "2026-03-16T08:00:00Z",
            "2026-03-23T08:00:00Z",
            "2026-03-30T07:00:00Z",
        ]
    );
    assert_eq!(
        of("ny"),
        [
            "2026-03-02T14:00:00Z",
            "2026-03-09T13:00:00Z",
            "2026-03-16T13:00:00Z",
            "2026-03-23T13:00:00Z",
            "2026-03-30T13:00:00Z",
        ]
    );
    assert_eq!(of("utc").len(), 5);
    assert_eq!(of("utc")[0], "2026-03-02T09:00:00Z");
    assert!(of("noemail").is_empty());
    // Each entry sent its digest at once, at the firing.
    let sends: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some((m.customer.clone(), format_micros(m.at))),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 15);
    assert!(sends.contains(&("paris".into(), "2026-03-30T07:00:00Z".into())));
}

#[test]
fn moving_to_another_zone_moves_the_firing_and_max_entries_caps_it() {
    let yaml = WEEKLY.replace(
        "reentry: when_exited",
        "reentry: when_exited\n  max_entries: 2",
    );
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(&yaml).unwrap())]);
    let start = t("2026-03-01T00:00:00Z");
    let mut out = identify(&mut e, "c", json!({"email": "c@example.com"}), start);
    out.extend(e.on_time(t("2026-03-05T00:00:00Z")));
    // Now in Tokyo (+09:00): Monday 09:00 there is Monday 00:00 UTC.
    out.extend(identify(
        &mut e,
        "c",
        json!({"timezone": "Asia/Tokyo"}),
        t("2026-03-05T00:00:00Z"),
    ));
    for day in 1..=27 {
        out.extend(e.on_time(t("2026-03-05T00:00:00Z") + day * 86_400_000_000));
    }
    assert_eq!(
        entries(&out),
        [
            ("c".to_string(), "2026-03-02T09:00:00Z".to_string()),
            ("c".to_string(), "2026-03-09T00:00:00Z".to_string()),
        ]
    );
}

fn api_journey() -> Arc<Journey> {
    Arc::new(
        Journey::from_yaml(
            "id: vip\nversion: 1\nentry:\n  api: true\n  where:\n    - property: tier\n      equals: gold\nsteps:\n  - id: hello\n    send:\n      channel: webhook\n      template: vip\n  - id: done\n    exit: finished\n",
        )
        .unwrap(),
    )
}

fn request(e: &mut Engine, customer: &str, props: Value, at: Micros) -> Vec<Effect> {
    let (none, props) = (Map::new(), object(props));
    let ev = InputEvent {
        name: API_ENTRY_EVENT,
        properties: &props,
        traits: &none,
        consent: &[],
    };
    e.on_event(customer, &ev, at)
}

#[test]
fn an_api_entry_is_the_request_event_naming_the_journey() {
    let mut e = Engine::new(vec![api_journey()]);
    let at = t("2026-03-02T10:00:00Z");
    // Another journey's request, or conditions not met: no entry.
    assert!(
        entries(&request(
            &mut e,
            "a",
            json!({"journey": "other", "tier": "gold"}),
            at
        ))
        .is_empty()
    );
    assert!(
        entries(&request(
            &mut e,
            "a",
            json!({"journey": "vip", "tier": "silver"}),
            at
        ))
        .is_empty()
    );
    let out = request(
        &mut e,
        "a",
        json!({"journey": "vip", "tier": "gold", "coupon": "X1"}),
        at,
    );
    assert_eq!(entries(&out), [("a".to_string(), format_micros(at))]);
    // The request's properties are the entry's, for templates.
    let sent = out.iter().find_map(|e| match e {
        Effect::Send(m) => Some(m),
        _ => None,
    });
    assert_eq!(sent.unwrap().properties["coupon"], "X1");
}

#[test]
fn firings_missed_between_two_ticks_enter_once() {
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(WEEKLY).unwrap())]);
    let start = t("2026-03-01T00:00:00Z");
    let mut out = identify(&mut e, "c", json!({"email": "c@example.com"}), start);
    // No tick for a month (a runner down): four Mondays passed, the latest enters.
    out.extend(e.on_time(t("2026-03-28T00:00:00Z")));
    assert_eq!(
        entries(&out),
        [("c".to_string(), "2026-03-23T09:00:00Z".to_string())]
    );
    // Ticking again, the next Monday fires as usual.
    out.extend(e.on_time(t("2026-03-30T09:00:00Z")));
    assert_eq!(entries(&out).len(), 2);
}

proptest! {
    /// However the clock ticks (each tick a few hours to four days apart, so no firing is
    /// missed), a schedule enters the same customers at the same instants as a clock that
    /// ticks at every due time.
    #[test]
    fn schedule_entries_do_not_depend_on_ticks(gaps in proptest::collection::vec(1i64..100, 1..40)) {
        let j = Arc::new(Journey::from_yaml(WEEKLY).unwrap());
        let start = t("2026-03-01T00:00:00Z");
        let run = |ticks: &[i64]| {
            let mut e = Engine::new(vec![Arc::clone(&j)]);
            let mut out = identify(&mut e, "p", json!({"timezone": "Europe/Paris", "email": "p@x"}), start);
            out.extend(identify(&mut e, "n", json!({"timezone": "America/New_York", "email": "n@x"}), start));
            let mut now = start;
            for g in ticks {
                now += g * 3_600_000_000;
                out.extend(e.on_time(now));
            }
            (entries(&out), now)
        };
        let (live, end) = run(&gaps);
        // The same period, ticked at each due time.
        let mut e = Engine::new(vec![Arc::clone(&j)]);
        let mut out = identify(&mut e, "p", json!({"timezone": "Europe/Paris", "email": "p@x"}), start);
        out.extend(identify(&mut e, "n", json!({"timezone": "America/New_York", "email": "n@x"}), start));
        while let Some(due) = e.next_due().filter(|d| *d <= end) {
            out.extend(e.on_time(due));
        }
        prop_assert_eq!(&live, &entries(&out));
    }
}

fn error(yaml: &str) -> (u64, u64, String) {
    let e = Journey::from_yaml(yaml).unwrap_err();
    (e.line, e.column, e.reason)
}

const STEPS: &str = "steps:\n  - id: x\n    exit: done\n";

#[test]
fn entry_errors_say_line_column_and_why() {
    let (l, c, r) = error(&format!(
        "id: j\nversion: 1\nentry:\n  event: a\n  api: true\n{STEPS}"
    ));
    assert_eq!((l, c), (4, 3));
    assert!(
        r.contains("exactly one of `event`, `api: true`, `schedule: {cron: ...}` or `segment`"),
        "{r}"
    );
    let (l, c, r) = error(&format!("id: j\nversion: 1\nentry:\n  api: false\n{STEPS}"));
    assert_eq!((l, c), (4, 8));
    assert!(r.contains("`api: false` enters no one"), "{r}");
    let (l, c, r) = error(&format!(
        "id: j\nversion: 1\nentry:\n  schedule:\n    cron: \"0 25 * * 1\"\n{STEPS}"
    ));
    assert_eq!((l, c), (5, 11));
    assert!(
        r.contains("bad cron expression \"0 25 * * 1\": hour field: 25 is out of range 0-23"),
        "{r}"
    );
    let (l, c, r) = error(&format!(
        "id: j\nversion: 1\nentry:\n  schedule:\n    cron: \"0 9 * * 1\"\n  where:\n    - property: x\n      exists: true\n{STEPS}"
    ));
    assert_eq!((l, c), (7, 7));
    assert!(r.contains("conditions are on traits or consent"), "{r}");
    // The same definition as JSON (JSON is YAML's flow syntax): same checks, JSON positions.
    let (l, c, r) = error(
        "{\"id\": \"j\", \"version\": 1,\n \"entry\": {\"schedule\": {\"cron\": \"0 9 * *\"}},\n \"steps\": [{\"id\": \"x\", \"exit\": \"done\"}]}",
    );
    assert_eq!((l, c), (2, 33));
    assert!(r.contains("has 5 fields"), "{r}");
}

#[test]
fn a_json_definition_is_checked_like_yaml_with_json_positions() {
    let ok = "{\n  \"id\": \"vip\", \"version\": 2,\n  \"entry\": {\"api\": true},\n  \"steps\": [{\"id\": \"x\", \"exit\": \"done\"}]\n}";
    let j = Journey::from_json(ok).unwrap();
    assert_eq!(
        (j.versioned_id().as_str(), &j.entry.on),
        ("vip@2", &EntryOn::Api)
    );
    // JSON syntax: serde_json's position and reason.
    let e = Journey::from_json("{\n  \"id\": \"vip\",\n  \"version\": 2,\n}").unwrap_err();
    assert_eq!((e.line, e.column), (4, 1), "{e}");
    assert!(
        e.reason.starts_with("not valid JSON: key must be a string"),
        "{e}"
    );
    // Structure: a typo in a field name, where it is.
    let e = Journey::from_json(&ok.replace("\"exit\"", "\"exitt\"")).unwrap_err();
    assert_eq!((e.line, e.column), (4, 25), "{e}");
    assert!(e.reason.starts_with("unknown field `exitt`"), "{e}");
    // Not an object.
    let e = Journey::from_json("[1]").unwrap_err();
    assert!(e.reason.contains("a JSON object"), "{e}");
}

/// Scale of a schedule firing: N customers in four zones, one weekly firing each. Run with
/// `cargo test --release -p cairn-journey --test it schedule_at_scale -- --ignored --nocapture`
/// (CAIRN_SCHEDULE_CUSTOMERS, default 1,000,000).
#[test]
#[ignore = "a measurement; run in release"]
fn schedule_at_scale() {
    let n: usize = std::env::var("CAIRN_SCHEDULE_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(WEEKLY).unwrap())]);
    let zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"];
    let start = t("2026-03-01T00:00:00Z");
    let began = std::time::Instant::now();
    for i in 0..n {
        let traits = json!({"timezone": zones[i % 4], "email": format!("c{i}@example.com")});
        identify(&mut e, &format!("c{i}"), traits, start);
    }
    let known = began.elapsed();
    assert_eq!(e.pending_timers(), 4);
    let began = std::time::Instant::now();
    let out = e.on_time(t("2026-03-03T00:00:00Z"));
    let fired = began.elapsed();
    let entered = entries(&out).len();
    assert_eq!(entered, n);
    eprintln!(
        "schedule: {n} customers in 4 zones known in {known:.2?} ({:.0} per s); one weekly firing entered and sent to all in {fired:.2?} ({:.0} entries per s, {} effects)",
        n as f64 / known.as_secs_f64(),
        n as f64 / fired.as_secs_f64(),
        out.len()
    );
}

#[test]
fn a_timezone_set_by_a_journey_moves_the_schedule_too() {
    let relocate = Journey::from_yaml(
        "id: relocate\nversion: 1\nentry:\n  api: true\nsteps:\n  - id: tz\n    set_traits:\n      timezone: Asia/Tokyo\n  - id: done\n    exit: moved\n",
    )
    .unwrap();
    let weekly = Journey::from_yaml(WEEKLY).unwrap();
    let mut e = Engine::new(vec![Arc::new(weekly), Arc::new(relocate)]);
    let start = t("2026-03-01T00:00:00Z");
    let mut out = identify(&mut e, "c", json!({"email": "c@example.com"}), start);
    out.extend(request(
        &mut e,
        "c",
        json!({"journey": "relocate"}),
        t("2026-03-03T00:00:00Z"),
    ));
    for day in 4..=10 {
        out.extend(e.on_time(start + day * 86_400_000_000));
    }
    let digests: Vec<_> = entries(&out)
        .into_iter()
        .filter(|(_, at)| at != "2026-03-03T00:00:00Z")
        .collect();
    // Monday 2 at 09:00 UTC; Monday 9 at 09:00 in Tokyo.
    assert_eq!(
        digests,
        [
            ("c".to_string(), "2026-03-02T09:00:00Z".to_string()),
            ("c".to_string(), "2026-03-09T00:00:00Z".to_string()),
        ]
    );
}
