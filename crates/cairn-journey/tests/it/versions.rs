//! Versions: a customer finishes the version they entered; a closed version takes no one.

use std::sync::Arc;

use cairn_journey::{Effect, Engine, InputEvent, Journey, JourneyEventKind};
use serde_json::Map;

const HOUR: i64 = 3_600_000_000;

fn journey(version: u32, template: &str) -> Arc<Journey> {
    Arc::new(
        Journey::from_yaml(&format!(
            "id: j\nversion: {version}\nentry:\n  event: go\nsteps:\n  - id: pause\n    wait:\n      duration: 1h\n  - id: send\n    send:\n      channel: webhook\n      template: {template}\n    next: out\n  - id: out\n    exit: done\n"
        ))
        .unwrap(),
    )
}

fn go(e: &mut Engine, customer: &str, at: i64) -> Vec<Effect> {
    let m = Map::new();
    let ev = InputEvent {
        name: "go",
        properties: &m,
        traits: &m,
        consent: &[],
    };
    e.on_event(customer, &ev, at)
}

fn sends(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some((m.customer.clone(), m.template.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn customers_finish_the_version_they_entered() {
    let mut e = Engine::new(vec![journey(1, "old")]);
    let mut out = go(&mut e, "a", 0);
    // Version 2 arrives; version 1 takes no new entries but keeps its customers.
    let v2 = e.add_journey(journey(2, "new"));
    e.set_accepting(0, false);
    out.extend(go(&mut e, "b", HOUR / 2));
    // `a` is in version 1: the same event does not put them into version 2 as well.
    out.extend(go(&mut e, "a", HOUR / 2));
    out.extend(e.on_time(3 * HOUR));
    assert_eq!(
        sends(&out),
        [("a".into(), "old".into()), ("b".into(), "new".into())]
    );
    let entered: Vec<(String, String)> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Journey(j) if matches!(j.kind, JourneyEventKind::Entered { .. }) => {
                Some((j.customer.clone(), j.journey.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        entered,
        [("a".into(), "j@1".into()), ("b".into(), "j@2".into())]
    );
    // Paused: nobody enters.
    e.set_accepting(v2, false);
    assert!(go(&mut e, "c", 4 * HOUR).is_empty());
    assert_eq!(e.pending_timers(), 0);
}

#[test]
fn max_entries_caps_how_often_a_customer_enters() {
    let capped = Journey::from_yaml(
        "id: j\nversion: 1\nentry:\n  event: go\n  reentry: when_exited\n  max_entries: 2\nsteps:\n  - id: out\n    exit: done\n",
    )
    .unwrap();
    let mut e = Engine::new(vec![Arc::new(capped)]);
    let mut out = Vec::new();
    for i in 0..5 {
        out.extend(go(&mut e, "a", i * HOUR));
    }
    out.extend(go(&mut e, "b", 0));
    let entered: Vec<(String, u32)> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Journey(j) if matches!(j.kind, JourneyEventKind::Entered { .. }) => {
                Some((j.customer.clone(), j.entry))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        entered,
        [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)],
        "{out:?}"
    );
    let zero = "id: j\nversion: 1\nentry:\n  event: go\n  max_entries: 0\nsteps:\n  - id: out\n    exit: done\n";
    let err = Journey::from_yaml(zero).unwrap_err();
    assert_eq!((err.line, err.column), (5, 16), "{err}");
    assert!(err.reason.contains("at least 1"), "{err}");
}

#[test]
fn reentry_always_is_when_exited_and_a_bad_policy_names_the_choices() {
    use cairn_journey::definition::Reentry;
    let with = |policy: &str| {
        cairn_journey::Journey::from_yaml(&format!(
            "id: j\nversion: 1\nentry:\n  event: go\n  reentry: {policy}\nsteps:\n  - id: out\n    exit: done\n"
        ))
    };
    assert_eq!(with("always").unwrap().entry.reentry, Reentry::WhenExited);
    assert_eq!(
        with("when_exited").unwrap().entry.reentry,
        Reentry::WhenExited
    );
    let e = with("sometimes").unwrap_err();
    assert_eq!((e.line, e.column), (5, 12));
    assert!(e.reason.contains("`never`, `always`"), "{}", e.reason);
}
