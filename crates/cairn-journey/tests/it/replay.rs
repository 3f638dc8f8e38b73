//! Determinism: the same events give the same effects however time ticks are interleaved
//! (a live runner ticks on a timer; a replay from the log ticks only at events).

use std::sync::Arc;

use cairn_journey::{Effect, Engine, Journey};
use proptest::prelude::*;
use serde_json::{Map, json};

use crate::abandoned_cart::{Input, feed};
use crate::definition::ABANDONED_CART;

const MIN: i64 = 60_000_000;

fn engine() -> Engine {
    let promo = Journey::from_yaml(
        "id: promo\nversion: 1\nentry:\n  event: promo\n  reentry: after 2h\nexit_on:\n  - event: purchase\nfrequency_cap:\n  messages: 2\n  per: 24h\nsteps:\n  - id: pause\n    wait:\n      duration: 30m\n  - id: morning\n    wait:\n      until: \"10:15\"\n  - id: send\n    send:\n      channel: webhook\n      template: promo\n      quiet_hours:\n        start: \"22:00\"\n        end: \"07:30\"\n    next: out\n  - id: out\n    exit: sent\n",
    )
    .unwrap();
    Engine::new(vec![
        Arc::new(Journey::from_yaml(ABANDONED_CART).unwrap()),
        Arc::new(promo),
    ])
}

const NAMES: [&str; 4] = ["add_to_cart", "purchase", "promo", "identify"];
const ZONES: [&str; 3] = ["UTC", "Asia/Kolkata", "America/Los_Angeles"];

/// (gap in minutes to the previous event, customer, event name, zone, phone, consent).
fn stream() -> impl Strategy<Value = Vec<(i64, u8, usize, usize, bool, bool)>> {
    prop::collection::vec(
        (
            0i64..36 * 60,
            0u8..6,
            0usize..4,
            0usize..3,
            any::<bool>(),
            any::<bool>(),
        ),
        1..60,
    )
}

fn to_inputs(raw: &[(i64, u8, usize, usize, bool, bool)]) -> Vec<Input> {
    let mut t = 1_772_409_600_000_000i64;
    raw.iter()
        .map(|&(gap, c, name, zone, phone, consent)| {
            t += gap * MIN;
            let mut traits = Map::new();
            let mut cons = vec![];
            if NAMES[name] == "identify" {
                traits.insert("timezone".into(), json!(ZONES[zone]));
                if phone {
                    traits.insert("phone".into(), json!("+4915100000"));
                }
                cons.push(("sms".to_string(), consent));
            }
            (t, format!("c{c}"), NAMES[name], traits, cons)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ticks_between_events_change_nothing(raw in stream(), ticks in prop::collection::vec((any::<bool>(), 0i64..100), 60)) {
        let inputs = to_inputs(&raw);
        let end = inputs.last().unwrap().0 + 30 * 24 * 60 * MIN;

        let mut one_go = engine();
        let mut a: Vec<Effect> = Vec::new();
        for i in &inputs {
            a.extend(feed(&mut one_go, i));
        }
        a.extend(one_go.on_time(end));

        let mut ticked = engine();
        let mut b: Vec<Effect> = Vec::new();
        let mut prev = inputs[0].0;
        for (i, (tick, frac)) in inputs.iter().zip(&ticks) {
            // A tick somewhere between the previous event and this one.
            if *tick {
                b.extend(ticked.on_time(prev + (i.0 - prev) * frac / 100));
            }
            b.extend(feed(&mut ticked, i));
            prev = i.0;
        }
        b.extend(ticked.on_time(end));

        prop_assert_eq!(&a, &b);
        prop_assert_eq!(one_go.pending_timers(), 0);
        // Effects come out in time order.
        let times: Vec<i64> = a.iter().map(effect_time).collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}

fn effect_time(e: &Effect) -> i64 {
    match e {
        Effect::Send(m) => m.at,
        Effect::Journey(j) => j.at,
        Effect::SetTraits { at, .. } | Effect::Emit { at, .. } => *at,
    }
}
