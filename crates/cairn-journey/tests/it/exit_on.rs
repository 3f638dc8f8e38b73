//! Exit conditions: an event that ends an entry's steps wherever it is; the goal window goes on.

use std::sync::Arc;

use cairn_journey::{Effect, Engine, InputEvent, Journey, JourneyEventKind};
use serde_json::{Map, Value, json};

const MIN: i64 = 60_000_000;

const JOURNEY: &str = "id: j\nversion: 1\nentry:\n  event: go\nexit_on:\n  - event: unsubscribe\n    where:\n      - property: list\n        equals: all\ngoal:\n  event: buy\n  within: 1d\nsteps:\n  - id: pause\n    wait:\n      duration: 1h\n  - id: send\n    send:\n      channel: webhook\n      template: t\n    next: out\n  - id: out\n    exit: done\n";

fn feed(e: &mut Engine, customer: &str, name: &str, props: Value, at: i64) -> Vec<Effect> {
    let properties: Map<String, Value> = props.as_object().cloned().unwrap_or_default();
    let none = Map::new();
    let ev = InputEvent {
        name,
        properties: &properties,
        traits: &none,
        consent: &[],
    };
    e.on_event(customer, &ev, at)
}

/// (customer, what happened) for journey events and sends, in order.
fn story(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some((m.customer.clone(), "send".to_string())),
            Effect::Journey(j) => Some((
                j.customer.clone(),
                match &j.kind {
                    JourneyEventKind::Exited { step, reason } => format!("exited {step}: {reason}"),
                    JourneyEventKind::GoalReached => "goal".to_string(),
                    JourneyEventKind::Closed => "closed".to_string(),
                    JourneyEventKind::Entered { .. } => "entered".to_string(),
                    _ => return None,
                },
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn an_exit_event_ends_the_steps_and_the_goal_is_still_measured() {
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(JOURNEY).unwrap())]);
    let mut out = Vec::new();
    out.extend(feed(&mut e, "a", "go", json!({}), 0));
    out.extend(feed(&mut e, "b", "go", json!({}), 0));
    // `b` unsubscribes from one list only: the condition does not hold, `b` stays.
    out.extend(feed(
        &mut e,
        "b",
        "unsubscribe",
        json!({"list": "weekly"}),
        10 * MIN,
    ));
    out.extend(feed(
        &mut e,
        "a",
        "unsubscribe",
        json!({"list": "all"}),
        30 * MIN,
    ));
    // After the exit, `a` still buys within the goal window: it counts.
    out.extend(feed(&mut e, "a", "buy", json!({}), 90 * MIN));
    out.extend(e.on_time(2 * 24 * 60 * MIN));
    let a: Vec<String> = story(&out)
        .into_iter()
        .filter(|(c, _)| c == "a")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        a,
        [
            "entered",
            "exited pause: exit_on unsubscribe",
            "goal",
            "closed"
        ],
        "{out:?}"
    );
    let b: Vec<String> = story(&out)
        .into_iter()
        .filter(|(c, _)| c == "b")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        b,
        ["entered", "send", "exited out: done", "closed"],
        "{out:?}"
    );
}
