//! A wait until a time of day, in the customer's timezone (trait `timezone`, UTC without one).

use std::sync::Arc;

use cairn_journey::{Effect, Engine, InputEvent, Journey};
use cairn_model::{Micros, parse_timestamp};
use serde_json::{Map, Value};

fn journey(until: &str) -> Arc<Journey> {
    Arc::new(
        Journey::from_yaml(&format!(
            "id: morning\nversion: 1\nentry:\n  event: go\nsteps:\n  - id: wait\n    wait:\n      until: \"{until}\"\n    next: send\n  - id: send\n    send:\n      channel: webhook\n      template: digest\n    next: out\n  - id: out\n    exit: done\n"
        ))
        .unwrap(),
    )
}

fn t(s: &str) -> Micros {
    parse_timestamp(s).unwrap()
}

/// Enters `customer` (with `zone` as their timezone trait, if any) at `at`, runs the clock two
/// days on, and returns when the message went out.
fn sent_at(engine: &mut Engine, customer: &str, zone: Option<&str>, at: &str) -> Micros {
    let mut traits = Map::new();
    if let Some(z) = zone {
        traits.insert("timezone".into(), Value::from(z));
    }
    let none = Map::new();
    let ev = InputEvent {
        name: "go",
        properties: &none,
        traits: &traits,
        consent: &[],
    };
    let mut out = engine.on_event(customer, &ev, t(at));
    out.extend(engine.on_time(t(at) + 2 * 86_400_000_000));
    let sends: Vec<Micros> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) if m.customer == customer => Some(m.at),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "{customer}: {out:?}");
    sends[0]
}

#[test]
fn a_wait_until_nine_ends_at_nine_local_time() {
    let mut e = Engine::new(vec![journey("09:00")]);
    // 15:00 in New York (EST): the next 09:00 there is tomorrow, 14:00 UTC.
    assert_eq!(
        sent_at(
            &mut e,
            "ny",
            Some("America/New_York"),
            "2026-03-01T20:00:00Z"
        ),
        t("2026-03-02T14:00:00Z")
    );
    // No timezone trait: UTC.
    assert_eq!(
        sent_at(&mut e, "utc", None, "2026-03-01T20:00:00Z"),
        t("2026-03-02T09:00:00Z")
    );
    // 08:00 in Paris: today's 09:00 is still to come.
    assert_eq!(
        sent_at(
            &mut e,
            "paris",
            Some("Europe/Paris"),
            "2026-03-01T07:00:00Z"
        ),
        t("2026-03-01T08:00:00Z")
    );
    // Exactly 09:00: no wait.
    assert_eq!(
        sent_at(&mut e, "now", None, "2026-03-01T09:00:00Z"),
        t("2026-03-01T09:00:00Z")
    );
    // An unknown zone falls back to UTC, like quiet hours.
    assert_eq!(
        sent_at(
            &mut e,
            "nowhere",
            Some("Mars/Olympus"),
            "2026-03-01T10:00:00Z"
        ),
        t("2026-03-02T09:00:00Z")
    );
}

#[test]
fn a_time_skipped_by_daylight_saving_resolves_to_the_later_instant() {
    // New York springs forward on 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 never
    // shows; the wait ends at 03:30 EDT (07:30 UTC), as quiet hours do.
    let mut e = Engine::new(vec![journey("02:30")]);
    assert_eq!(
        sent_at(
            &mut e,
            "ny",
            Some("America/New_York"),
            "2026-03-08T05:00:00Z"
        ),
        t("2026-03-08T07:30:00Z")
    );
}
