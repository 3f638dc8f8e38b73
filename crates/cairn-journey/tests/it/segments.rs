//! Behavioural segments: membership kept incrementally (after every event and as time passes)
//! equals membership recomputed from scratch over the customer's history; segment entries on
//! enter and leave, at the exact instant; branches on segments and computed traits.

use std::sync::Arc;

use cairn_journey::segment::EventFacts;
use cairn_journey::{DefinitionError, Effect, Engine, InputEvent, Journey, JourneyEventKind};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const MIN: i64 = 60_000_000;
const DAY: i64 = 1440 * MIN;

// ---- the property test ----

/// A criterion as the test knows it: rendered to YAML for the engine, evaluated here by a
/// reference written independently of the engine's code.
#[derive(Debug, Clone)]
enum Crit {
    Did {
        /// `None`: any event.
        event: Option<&'static str>,
        /// `where: [{property: n, gt: K}]`
        n_gt: Option<i64>,
        at_least: u32,
        within_min: Option<i64>,
        negate: bool,
    },
    EventCount(u64),
    RevenueGt(f64),
    LastChannel(&'static str),
    LastSeenOlder(i64),
    FirstSeenNewer(i64),
    Plan(&'static str),
}

#[derive(Debug, Clone)]
struct Ev {
    /// Minutes after the previous event.
    gap: i64,
    /// Empty: a profile change (traits only).
    name: &'static str,
    n: i64,
    value: Option<f64>,
    channel: &'static str,
    plan: &'static str,
}

fn crit() -> impl Strategy<Value = Crit> {
    prop_oneof![
        4 => (
            prop::option::of(prop::sample::select(vec!["a", "b"])),
            prop::option::of(0i64..3),
            1u32..4,
            prop::option::of(1i64..180),
            any::<bool>(),
        )
            .prop_map(|(event, n_gt, at_least, within_min, negate)| Crit::Did {
                event,
                n_gt,
                at_least,
                within_min,
                negate,
            }),
        1 => (0u64..6).prop_map(Crit::EventCount),
        1 => (0u32..30).prop_map(|x| Crit::RevenueGt(f64::from(x))),
        1 => prop::sample::select(vec!["web", "email"]).prop_map(Crit::LastChannel),
        1 => (1i64..120).prop_map(Crit::LastSeenOlder),
        1 => (1i64..240).prop_map(Crit::FirstSeenNewer),
        1 => prop::sample::select(vec!["pro", "free"]).prop_map(Crit::Plan),
    ]
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        prop_oneof![3 => 0i64..20, 1 => 20i64..200],
        prop::sample::select(vec!["a", "a", "b", "c", ""]),
        0i64..4,
        prop::option::of(0u32..10),
        prop::sample::select(vec!["web", "email"]),
        prop::sample::select(vec!["pro", "free"]),
    )
        .prop_map(|(gap, name, n, value, channel, plan)| Ev {
            gap,
            name,
            n,
            value: value.map(f64::from),
            channel,
            plan,
        })
}

fn yaml(crits: &[Crit], any: bool) -> String {
    let mut y =
        String::from("id: p\nversion: 1\nentry:\n  segment: s\n  on: enter\nsegments:\n  s:\n");
    y.push_str(if any { "    any:\n" } else { "    all:\n" });
    for c in crits {
        match c {
            Crit::Did {
                event,
                n_gt,
                at_least,
                within_min,
                negate,
            } => {
                let key = if *negate { "did_not" } else { "did" };
                y.push_str(&format!("      - {key}: \"{}\"\n", event.unwrap_or("*")));
                y.push_str(&format!("        at_least: {at_least}\n"));
                if let Some(w) = within_min {
                    y.push_str(&format!("        within: {w}m\n"));
                }
                if let Some(k) = n_gt {
                    y.push_str(&format!(
                        "        where:\n          - property: n\n            gt: {k}\n"
                    ));
                }
            }
            Crit::EventCount(k) => {
                y.push_str(&format!("      - computed: event_count\n        gt: {k}\n"))
            }
            Crit::RevenueGt(k) => y.push_str(&format!(
                "      - computed: total_revenue\n        gt: {k}\n"
            )),
            Crit::LastChannel(ch) => y.push_str(&format!(
                "      - computed: last_channel\n        equals: {ch}\n"
            )),
            Crit::LastSeenOlder(m) => y.push_str(&format!(
                "      - computed: last_seen\n        older_than: {m}m\n"
            )),
            Crit::FirstSeenNewer(m) => y.push_str(&format!(
                "      - computed: first_seen\n        newer_than: {m}m\n"
            )),
            Crit::Plan(p) => y.push_str(&format!("      - trait: plan\n        equals: {p}\n")),
        }
    }
    y.push_str("steps:\n  - id: out\n    exit: done\n");
    y
}

/// Membership at `now` from the history alone (events at or before `now`, in order).
fn reference(crits: &[Crit], any: bool, history: &[(i64, &Ev)], now: i64) -> bool {
    let named: Vec<(i64, &Ev)> = history
        .iter()
        .copied()
        .filter(|(_, e)| !e.name.is_empty())
        .collect();
    let plan = history
        .iter()
        .rev()
        .find(|(_, e)| e.name.is_empty())
        .map(|(_, e)| e.plan);
    let holds = |c: &Crit| match c {
        Crit::Did {
            event,
            n_gt,
            at_least,
            within_min,
            negate,
        } => {
            let n = named
                .iter()
                .filter(|(t, e)| {
                    event.is_none_or(|x| x == e.name)
                        && n_gt.is_none_or(|k| e.n > k)
                        && within_min.is_none_or(|w| *t > now - w * MIN)
                })
                .count();
            (n >= *at_least as usize) != *negate
        }
        Crit::EventCount(k) => named.len() as u64 > *k,
        Crit::RevenueGt(k) => named.iter().filter_map(|(_, e)| e.value).sum::<f64>() > *k,
        Crit::LastChannel(ch) => named.last().is_some_and(|(_, e)| e.channel == *ch),
        Crit::LastSeenOlder(m) => named.last().is_some_and(|(t, _)| now - t >= m * MIN),
        Crit::FirstSeenNewer(m) => named.first().is_some_and(|(t, _)| now - t < m * MIN),
        Crit::Plan(p) => plan == Some(*p),
    };
    if any {
        crits.iter().any(holds)
    } else {
        crits.iter().all(holds)
    }
}

fn feed_ev(engine: &mut Engine, e: &Ev, at: i64) -> Vec<Effect> {
    let props: Map<String, Value> = json!({"n": e.n}).as_object().cloned().unwrap();
    let traits: Map<String, Value> = json!({"plan": e.plan}).as_object().cloned().unwrap();
    let none = Map::new();
    let profile = e.name.is_empty();
    let ev = InputEvent {
        name: e.name,
        properties: if profile { &none } else { &props },
        traits: if profile { &traits } else { &none },
        consent: &[],
    };
    let facts = EventFacts {
        value: e.value,
        channel: Some(e.channel),
    };
    engine.on_event_with("c", &ev, facts, at)
}

fn entries(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journey(j) if matches!(j.kind, JourneyEventKind::Entered { .. }) => Some(j.at),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_membership_equals_recomputed(
        crits in prop::collection::vec(crit(), 1..4),
        any in any::<bool>(),
        events in prop::collection::vec(ev(), 1..40),
        probes in prop::collection::vec(prop::collection::vec(0i64..300, 0..3), 40),
    ) {
        let j = Arc::new(Journey::from_yaml(&yaml(&crits, any)).unwrap());
        // `live` is also ticked at probe times; `replay` sees events only: same entries.
        let mut live = Engine::new(vec![Arc::clone(&j)]);
        let mut replay = Engine::new(vec![j]);
        let (mut live_fx, mut replay_fx) = (Vec::new(), Vec::new());
        let mut at = 0;
        let mut history: Vec<(i64, &Ev)> = Vec::new();
        let mut member = false;
        let mut crossings_in = 0;
        for (i, e) in events.iter().enumerate() {
            at += e.gap * MIN;
            history.push((at, e));
            live_fx.extend(feed_ev(&mut live, e, at));
            replay_fx.extend(feed_ev(&mut replay, e, at));
            let want = reference(&crits, any, &history, at);
            prop_assert_eq!(live.is_member("c", 0, "s"), want, "after event {} at {}", i, at);
            crossings_in += usize::from(want && !member);
            member = want;
            // Time passes before the next event: membership follows at every probe.
            let next = events.get(i + 1).map_or(at + 300 * MIN, |n| at + n.gap * MIN);
            let mut ps: Vec<i64> = probes[i].iter().map(|p| at + p * MIN).filter(|p| *p < next).collect();
            ps.sort();
            for p in ps {
                live_fx.extend(live.on_time(p));
                let want = reference(&crits, any, &history, p);
                prop_assert_eq!(live.is_member("c", 0, "s"), want, "at {} after event {}", p, i);
                crossings_in += usize::from(want && !member);
                member = want;
            }
        }
        let end = at + 300 * MIN;
        live_fx.extend(live.on_time(end));
        replay_fx.extend(replay.on_time(end));
        prop_assert_eq!(&live_fx, &replay_fx);
        // Every entry into the segment that the probes saw entered the journey (the journey
        // exits at once, so re-entry is always allowed); crossings between probes count too.
        prop_assert!(entries(&live_fx).len() >= crossings_in);
    }
}

// ---- engine tests with an injected clock ----

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

fn entered(effects: &[Effect]) -> Vec<(String, i64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journey(j) if matches!(j.kind, JourneyEventKind::Entered { .. }) => {
                Some((j.customer.clone(), j.at))
            }
            _ => None,
        })
        .collect()
}

const WIN_BACK: &str = include_str!("../../../../examples/journeys/win-back.yaml");

#[test]
fn leaving_by_time_enters_at_the_exact_instant() {
    let j = Journey::from_yaml(WIN_BACK).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    let mut out = Vec::new();
    out.extend(feed(&mut e, "a", "page_viewed", json!({}), 0));
    out.extend(feed(&mut e, "b", "page_viewed", json!({}), 0));
    // `b` stays active; `a` does nothing more.
    out.extend(feed(&mut e, "b", "page_viewed", json!({}), 20 * DAY));
    assert!(e.is_member("a", 0, "active") && e.is_member("b", 0, "active"));
    // One microsecond before 30 days nothing has happened yet; at 30 days `a` leaves.
    out.extend(e.on_time(30 * DAY - 1));
    assert_eq!(entered(&out), vec![]);
    assert!(e.is_member("a", 0, "active"));
    out.extend(e.on_time(30 * DAY + 5 * DAY));
    assert!(!e.is_member("a", 0, "active"));
    assert_eq!(entered(&out), vec![("a".to_string(), 30 * DAY)]);
    // `b` leaves 30 days after its last event, whenever the clock is read.
    out.extend(e.on_time(60 * DAY));
    assert_eq!(
        entered(&out),
        vec![("a".to_string(), 30 * DAY), ("b".to_string(), 50 * DAY)]
    );
    // The win-back message went out at each entry (no quiet hours in the example at midnight
    // UTC: it waits until 10:00 local time).
    let sends: Vec<(String, i64)> = out
        .iter()
        .filter_map(|x| match x {
            Effect::Send(m) => Some((m.customer.clone(), m.at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sends,
        vec![
            ("a".to_string(), 30 * DAY + 600 * MIN),
            ("b".to_string(), 50 * DAY + 600 * MIN)
        ]
    );
}

#[test]
fn coming_back_ends_the_win_back_and_the_next_lapse_enters_again() {
    let j = Journey::from_yaml(WIN_BACK).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    let mut out = Vec::new();
    out.extend(feed(&mut e, "a", "page_viewed", json!({}), 0));
    out.extend(e.on_time(31 * DAY));
    // Back within the goal window: goal reached (and back in the segment).
    out.extend(feed(&mut e, "a", "purchase", json!({}), 32 * DAY));
    assert!(e.is_member("a", 0, "active"));
    let goals = out
        .iter()
        .filter(|x| matches!(x, Effect::Journey(j) if j.kind == JourneyEventKind::GoalReached))
        .count();
    assert_eq!(goals, 1);
    // Lapses again: re-entry is allowed `after 60d` from the first entry (day 30): the lapse
    // at day 62 is too early, so no second entry; a later one (day 100) enters.
    out.extend(e.on_time(70 * DAY));
    assert_eq!(entered(&out), vec![("a".to_string(), 30 * DAY)]);
    out.extend(feed(&mut e, "a", "page_viewed", json!({}), 70 * DAY));
    out.extend(e.on_time(101 * DAY));
    assert_eq!(
        entered(&out),
        vec![("a".to_string(), 30 * DAY), ("a".to_string(), 100 * DAY)]
    );
}

const ENTER_AND_BRANCH: &str = "id: vip
version: 1
entry:
  segment: big_spender
  on: enter
segments:
  big_spender:
    all:
      - did: purchase
        where:
          - property: total
            gt: 100
        at_least: 2
        within: 7d
  recent:
    any:
      - did: \"*\"
        within: 1h
steps:
  - id: check
    branch:
      if:
        - segment: recent
      then: welcome
      else: later
  - id: welcome
    send:
      channel: webhook
      template: vip-welcome
    next: done
  - id: later
    branch:
      if:
        - computed: event_count
          gt: 3
      then: busy
      else: done
  - id: busy
    send:
      channel: webhook
      template: vip-busy
    next: done
  - id: done
    exit: done
";

fn templates(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|x| match x {
            Effect::Send(m) => Some((m.customer.clone(), m.template.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn entering_a_segment_enters_once_per_crossing_and_branches_see_segments() {
    let j = Journey::from_yaml(ENTER_AND_BRANCH).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    let mut out = Vec::new();
    // Small purchases never count; two big ones within 7 days make `a` a big spender.
    out.extend(feed(&mut e, "a", "purchase", json!({"total": 20}), 0));
    out.extend(feed(&mut e, "a", "purchase", json!({"total": 150}), DAY));
    assert!(!e.is_member("a", 0, "big_spender"));
    out.extend(feed(
        &mut e,
        "a",
        "purchase",
        json!({"total": 200}),
        3 * DAY,
    ));
    assert!(e.is_member("a", 0, "big_spender"));
    assert_eq!(entered(&out), vec![("a".to_string(), 3 * DAY)]);
    // Entered on an event: `recent` holds, so the welcome message.
    assert_eq!(templates(&out), vec![("a".into(), "vip-welcome".into())]);
    // A third big purchase keeps `a` in: no new entry.
    out.extend(feed(
        &mut e,
        "a",
        "purchase",
        json!({"total": 300}),
        4 * DAY,
    ));
    assert_eq!(entered(&out).len(), 1);
    // Two big purchases within 7 days are needed: the latest two are of days 3 and 4, and
    // the one of day 3 leaves the window at day 10, so `a` is a member until day 10, exactly.
    out.extend(e.on_time(10 * DAY - 1));
    assert!(e.is_member("a", 0, "big_spender"));
    out.extend(e.on_time(10 * DAY));
    assert!(!e.is_member("a", 0, "big_spender"));
    // Two big purchases again: a new crossing, a new entry (re-entry: when exited).
    out.extend(feed(
        &mut e,
        "a",
        "purchase",
        json!({"total": 101}),
        12 * DAY,
    ));
    out.extend(feed(
        &mut e,
        "a",
        "purchase",
        json!({"total": 101}),
        12 * DAY + 1,
    ));
    assert_eq!(
        entered(&out),
        vec![("a".to_string(), 3 * DAY), ("a".to_string(), 12 * DAY + 1)]
    );
}

#[test]
fn branches_on_computed_traits_and_on_not_being_in_a_segment() {
    // Enter on leaving `recent` (one hour after the last event): `recent` is false then, so
    // the branch goes on to the computed event count.
    let yaml = ENTER_AND_BRANCH.replace(
        "segment: big_spender\n  on: enter",
        "segment: recent\n  on: leave",
    );
    let j = Journey::from_yaml(&yaml).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    let mut out = Vec::new();
    for i in 0..4 {
        out.extend(feed(&mut e, "busy", "page_viewed", json!({}), i * MIN));
    }
    out.extend(feed(&mut e, "quiet", "page_viewed", json!({}), 0));
    out.extend(e.on_time(DAY));
    assert_eq!(
        entered(&out),
        vec![
            ("quiet".to_string(), 60 * MIN),
            ("busy".to_string(), 63 * MIN)
        ]
    );
    // `quiet` saw 1 event (not > 3): no message; `busy` saw 4: the busy message.
    assert_eq!(templates(&out), vec![("busy".into(), "vip-busy".into())]);
}

#[test]
fn computed_traits_follow_value_and_channel() {
    let yaml = "id: c\nversion: 1\nentry:\n  event: go\nsteps:\n  - id: b\n    branch:\n      if:\n        - computed: total_revenue\n          gt: 50\n        - computed: last_channel\n          equals: email\n        - computed: first_seen\n          older_than: 1d\n      then: send\n      else: out\n  - id: send\n    send:\n      channel: webhook\n      template: t\n    next: out\n  - id: out\n    exit: done\n";
    let j = Journey::from_yaml(yaml).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    let none = Map::new();
    let event = |name| InputEvent {
        name,
        properties: &none,
        traits: &none,
        consent: &[],
    };
    let facts = |value, channel| EventFacts {
        value: Some(value),
        channel: Some(channel),
    };
    let mut out = Vec::new();
    out.extend(e.on_event_with("a", &event("purchase"), facts(30.0, "web"), 0));
    out.extend(e.on_event_with("a", &event("purchase"), facts(30.0, "email"), DAY / 2));
    // Revenue 60 and last channel email, but first seen only half a day ago.
    out.extend(e.on_event_with("a", &event("go"), facts(0.0, "email"), DAY - 1));
    assert!(templates(&out).is_empty());
    // Re-entry when exited: now first seen a day ago, but the last channel is web.
    out.extend(e.on_event_with("a", &event("go"), facts(0.0, "web"), DAY));
    assert!(templates(&out).is_empty());
    out.extend(e.on_event_with("a", &event("go"), facts(0.0, "email"), DAY + 1));
    assert_eq!(templates(&out), vec![("a".into(), "t".into())]);
}

fn check(yaml: &str, line: u64, column: u64, reason_has: &str) {
    let err: DefinitionError = Journey::from_yaml(yaml).unwrap_err();
    assert_eq!((err.line, err.column), (line, column), "{err}");
    assert!(err.reason.contains(reason_has), "{err}");
}

#[test]
fn segment_errors_say_line_column_and_why() {
    let steps = "steps:\n  - id: out\n    exit: done\n";
    let seg = "segments:\n  active:\n    all:\n      - did: a\n        within: 30d\n";
    // An entry on an unknown segment points at the name.
    check(
        &format!("id: j\nversion: 1\nentry:\n  segment: nope\n  on: leave\n{seg}{steps}"),
        4,
        12,
        "no segment named \"nope\"",
    );
    check(
        &format!("id: j\nversion: 1\nentry:\n  segment: active\n  on: exit\n{seg}{steps}"),
        5,
        7,
        "`enter` or `leave`",
    );
    // A branch on an unknown segment points at the condition.
    check(
        &format!(
            "id: j\nversion: 1\nentry:\n  event: a\n{seg}steps:\n  - id: b\n    branch:\n      if:\n        - segment: other\n      then: out\n      else: out\n  - id: out\n    exit: done\n"
        ),
        14,
        11,
        "no segment named \"other\"",
    );
    // Bad criteria.
    check(
        &format!(
            "id: j\nversion: 1\nentry:\n  event: a\nsegments:\n  s:\n    all:\n      - did: a\n        within: 30 days\n{steps}"
        ),
        8,
        9,
        "bad duration",
    );
    check(
        &format!(
            "id: j\nversion: 1\nentry:\n  event: a\nsegments:\n  s:\n    all:\n      - computed: lifetime_value\n        gt: 3\n{steps}"
        ),
        8,
        9,
        "no computed trait \"lifetime_value\"",
    );
    check(
        &format!("id: j\nversion: 1\nentry:\n  event: a\nsegments:\n  s:\n    any: []\n{steps}"),
        7,
        5,
        "at least one criterion",
    );
    check(
        &format!(
            "id: j\nversion: 1\nentry:\n  event: a\nsegments:\n  s:\n    all:\n      - computed: event_count\n        older_than: 3d\n{steps}"
        ),
        8,
        9,
        "first_seen or last_seen",
    );
}

#[test]
fn only_customers_with_something_to_keep_have_segment_state() {
    let yaml = "id: s\nversion: 1\nentry:\n  segment: big\n  on: enter\nsegments:\n  big:\n    all:\n      - did: purchase\n        where:\n          - property: total\n            gt: 100\n        within: 7d\n  recent:\n    any:\n      - did: login\n        within: 1h\nsteps:\n  - id: out\n    exit: done\n";
    let j = Journey::from_yaml(yaml).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    // Events no criterion counts: no state, not even a customer number.
    for i in 0..1000 {
        feed(&mut e, &format!("c{i}"), "page_viewed", json!({}), i);
        feed(&mut e, &format!("c{i}"), "purchase", json!({"total": 5}), i);
    }
    assert_eq!(e.segment_customers(), 0);
    // One counted purchase and one login: state while they are in their windows.
    feed(&mut e, "a", "purchase", json!({"total": 500}), DAY);
    feed(&mut e, "b", "login", json!({}), DAY);
    assert_eq!(e.segment_customers(), 2);
    assert_eq!(e.pending_timers(), 2);
    // The login leaves its window after an hour, the purchase after 7 days: state and
    // timers go with them.
    e.on_time(DAY + 60 * MIN);
    assert_eq!(e.segment_customers(), 1);
    e.on_time(8 * DAY);
    assert_eq!((e.segment_customers(), e.pending_timers()), (0, 0));
}

#[test]
fn journeys_without_segments_keep_no_segment_state() {
    let cart = include_str!("../../../../examples/journeys/abandoned-cart.yaml");
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(cart).unwrap())]);
    for i in 0..100 {
        feed(&mut e, &format!("c{i}"), "add_to_cart", json!({}), i);
    }
    assert_eq!(e.segment_customers(), 0);
    assert_eq!(e.pending_timers(), 100);
}

#[test]
fn history_builds_segments_silently() {
    let j = Journey::from_yaml(WIN_BACK).unwrap();
    let mut e = Engine::new(vec![Arc::new(j)]);
    let none = Map::new();
    let page = InputEvent {
        name: "page_viewed",
        properties: &none,
        traits: &none,
        consent: &[],
    };
    // History: `a` active at day 0 (lapses at day 30, before the start), `b` at day 20.
    e.observe("a", &page, EventFacts::default(), 0);
    e.observe("b", &page, EventFacts::default(), 20 * DAY);
    e.observe_time(40 * DAY - 1);
    assert!(!e.is_member("a", 0, "active") && e.is_member("b", 0, "active"));
    // Live from day 40: `b` lapses at day 50 and enters; `a`'s lapse went by unentered.
    let out = e.on_time(60 * DAY);
    assert_eq!(entered(&out), vec![("b".to_string(), 50 * DAY)]);
}

#[test]
fn max_entries_caps_segment_entries() {
    let yaml = ENTER_AND_BRANCH.replace("  on: enter\n", "  on: enter\n  max_entries: 1\n");
    let mut e = Engine::new(vec![Arc::new(Journey::from_yaml(&yaml).unwrap())]);
    let mut out = Vec::new();
    for day in [0, 1, 20, 21] {
        out.extend(feed(
            &mut e,
            "a",
            "purchase",
            json!({"total": 500}),
            day * DAY,
        ));
    }
    // Two crossings into `big_spender` (day 1 and day 21), one entry.
    assert!(e.is_member("a", 0, "big_spender"));
    assert_eq!(entered(&out), vec![("a".to_string(), DAY)]);
}
