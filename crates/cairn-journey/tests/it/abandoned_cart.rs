//! Acceptance 1: the abandoned-cart journey over generated customers, with an injected
//! clock, each customer's path checked exactly against the spec written out by hand below.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_journey::engine::bucket;
use cairn_journey::{Effect, Engine, InputEvent, Journey, JourneyEventKind};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use crate::definition::ABANDONED_CART;

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
];

/// splitmix64: the test's own deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub id: String,
    pub zone: &'static str,
    pub phone: bool,
    pub sms_consent: bool,
    pub cart: i64,
    pub purchase: Option<i64>,
}

pub fn generate(n: usize, seed: u64) -> Vec<Generated> {
    let mut rng = Rng(seed);
    let base = Timestamp::from_second(1_772_409_600)
        .unwrap()
        .as_microsecond(); // 2026-03-02
    (0..n)
        .map(|i| {
            let cart = base + rng.below(3 * 24 * 60) * MIN;
            let purchase = match rng.below(5) {
                0 => None,
                1 => Some(cart + (1 + rng.below(58)) * MIN),
                2 => Some(cart + 2 * HOUR + rng.below(30 * 60) * MIN),
                3 => Some(cart + 3 * DAY + rng.below(3 * 24 * 60) * MIN),
                _ => Some(cart + 8 * DAY),
            };
            Generated {
                id: format!("c{i}"),
                zone: ZONES[rng.below(ZONES.len() as u64) as usize],
                phone: rng.below(2) == 0,
                sms_consent: rng.below(3) != 0,
                cart,
                purchase,
            }
        })
        .collect()
}

/// One input event: (time, customer, name, traits, consent).
pub type Input = (
    i64,
    String,
    &'static str,
    Map<String, Value>,
    Vec<(String, bool)>,
);

pub fn inputs(customers: &[Generated]) -> Vec<Input> {
    let mut out = Vec::new();
    for c in customers {
        let mut traits = Map::new();
        traits.insert("timezone".into(), json!(c.zone));
        if c.phone {
            traits.insert("phone".into(), json!("+15550000000"));
        }
        let consent = vec![("sms".to_string(), c.sms_consent)];
        out.push((c.cart - DAY, c.id.clone(), "identify", traits, consent));
        out.push((c.cart, c.id.clone(), "add_to_cart", Map::new(), vec![]));
        if let Some(p) = c.purchase {
            out.push((p, c.id.clone(), "purchase", Map::new(), vec![]));
        }
    }
    // Global time order; ties in customer order, like the log.
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

pub fn feed(engine: &mut Engine, input: &Input) -> Vec<Effect> {
    let props = Map::new();
    let ev = InputEvent {
        name: input.2,
        properties: &props,
        traits: &input.3,
        consent: &input.4,
    };
    engine.on_event(&input.1, &ev, input.0)
}

/// Each effect as (customer, time, label).
pub fn labelled(effects: &[Effect]) -> Vec<(String, i64, String)> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Send(m) => (
                m.customer.clone(),
                m.at,
                format!(
                    "send {} {} {}",
                    m.channel.as_str(),
                    m.template,
                    m.idempotency_key
                ),
            ),
            Effect::Journey(j) => {
                let l = match &j.kind {
                    JourneyEventKind::Entered { holdout } => format!("entered holdout={holdout}"),
                    JourneyEventKind::StepReached { step } => format!("step {step}"),
                    JourneyEventKind::SplitArm { arm, .. } => format!("arm {arm}"),
                    JourneyEventKind::Suppressed { step, reason } => {
                        format!("suppressed {step} {reason:?}")
                    }
                    JourneyEventKind::Delayed { step, until } => {
                        format!("delayed {step} until {until}")
                    }
                    JourneyEventKind::GoalReached => "goal".into(),
                    JourneyEventKind::Exited { step, reason } => format!("exit {step} {reason}"),
                    JourneyEventKind::Closed => "closed".into(),
                };
                (j.customer.clone(), j.at, l)
            }
            other => panic!("abandoned-cart has no such effect: {other:?}"),
        })
        .collect()
}

/// 08:00 local the next morning when `t` falls in 21:00–08:00 local, else `t`; written
/// independently of the engine's guard.
fn after_quiet_hours(t: i64, zone: &str) -> i64 {
    let tz = TimeZone::get(zone).unwrap();
    let local = Timestamp::from_microsecond(t).unwrap().to_zoned(tz.clone());
    let day = match local.hour() {
        21.. => local.date().tomorrow().unwrap(),
        0..8 => local.date(),
        _ => return t,
    };
    day.at(8, 0, 0, 0)
        .to_zoned(tz)
        .unwrap()
        .timestamp()
        .as_microsecond()
}

/// The path the spec prescribes for one customer.
fn expected(c: &Generated, holdout: bool) -> Vec<(i64, String)> {
    let mut p = vec![
        (c.cart, format!("entered holdout={holdout}")),
        (c.cart, "step wait-for-purchase".into()),
    ];
    let goal_end = c.cart + 7 * DAY;
    let converted = |p: &mut Vec<(i64, String)>, at: i64| {
        p.push((at, "step converted".into()));
        p.push((at, "exit converted goal reached".into()));
        p.push((at, "goal".into()));
        p.push((at, "closed".into()));
    };
    let purchase = c.purchase;
    // Step 2: purchase within the hour (a purchase exactly at the timeout is too late).
    let t1 = c.cart + HOUR;
    if let Some(at) = purchase.filter(|at| *at < t1) {
        converted(&mut p, at);
        return p;
    }
    p.push((t1, "step split".into()));
    p.push((
        t1,
        format!("arm {}", if holdout { "holdout" } else { "treatment" }),
    ));
    p.push((t1, "step email".into()));
    let key = |step: &str| format!("abandoned-cart@1/{}/{step}/1", c.id);
    let email_at = if holdout {
        p.push((t1, "suppressed email Holdout".into()));
        t1
    } else {
        let at = after_quiet_hours(t1, c.zone);
        if at > t1 {
            p.push((t1, format!("delayed email until {at}")));
            // A purchase while the email is held back ends the journey: no email.
            if let Some(pt) = purchase.filter(|pt| *pt < at) {
                p.push((pt, "goal".into()));
                p.push((pt, "exit email goal".into()));
                p.push((pt, "closed".into()));
                return p;
            }
        }
        p.push((at, format!("send email cart-reminder {}", key("email"))));
        at
    };
    p.push((email_at, "step wait-after-email".into()));
    let t2 = email_at + DAY;
    if let Some(at) = purchase.filter(|at| *at < t2) {
        converted(&mut p, at);
        return p;
    }
    p.push((t2, "step sms-allowed".into()));
    if c.phone && c.sms_consent {
        p.push((t2, "step sms".into()));
        if holdout {
            p.push((t2, "suppressed sms Holdout".into()));
        } else {
            p.push((t2, format!("send sms cart-last-chance {}", key("sms"))));
        }
    }
    p.push((t2, "step done".into()));
    p.push((t2, "exit done finished".into()));
    match purchase.filter(|at| *at < goal_end) {
        Some(at) => {
            p.push((at, "goal".into()));
            p.push((at, "closed".into()));
        }
        None => p.push((goal_end, "closed".into())),
    }
    p
}

fn run(customers: &[Generated]) -> BTreeMap<String, Vec<(i64, String)>> {
    let journey = Arc::new(Journey::from_yaml(ABANDONED_CART).unwrap());
    let mut engine = Engine::new(vec![journey]);
    let mut effects = Vec::new();
    for input in inputs(customers) {
        effects.extend(feed(&mut engine, &input));
    }
    effects.extend(engine.on_time(i64::MAX / 2));
    assert_eq!(engine.pending_timers(), 0);
    let mut paths: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (customer, at, label) in labelled(&effects) {
        paths.entry(customer).or_default().push((at, label));
    }
    paths
}

#[test]
fn every_customer_walks_the_path_the_spec_prescribes() {
    let customers = generate(600, 7);
    let paths = run(&customers);
    let mut seen = BTreeMap::<&str, usize>::new();
    for c in &customers {
        let holdout = bucket(&c.id, "abandoned-cart") < 1000;
        let want = expected(c, holdout);
        assert_eq!(paths[&c.id], want, "customer {c:?}");
        // Count the cases, so the test cannot pass by never exercising them.
        for (_, l) in &want {
            let case = match l.as_str() {
                "exit converted goal reached" => "converted",
                "suppressed email Holdout" => "held out",
                "exit email goal" => "bought while the email was held back",
                l if l.starts_with("delayed email") => "quiet hours",
                l if l.starts_with("send sms") => "sms",
                l if l.starts_with("send email") => "email",
                "step sms-allowed" => "reached the sms branch",
                _ => continue,
            };
            *seen.entry(case).or_default() += 1;
        }
        if c.purchase.is_some_and(|p| p < c.cart + HOUR) {
            *seen.entry("exits at step 2").or_default() += 1;
        }
    }
    for case in [
        "converted",
        "held out",
        "bought while the email was held back",
        "quiet hours",
        "sms",
        "email",
        "reached the sms branch",
        "exits at step 2",
    ] {
        assert!(
            seen.get(case).copied().unwrap_or(0) > 0,
            "no customer hit {case}: {seen:?}"
        );
    }
    // About 10 % of those who reach the split are held out.
    let held = seen["held out"] as f64
        / (seen["held out"] + seen["email"] + seen["bought while the email was held back"]) as f64;
    assert!((0.05..0.15).contains(&held), "holdout share {held}");
}

#[test]
fn sms_needs_phone_and_consent() {
    let mut customers = generate(4, 11);
    for (i, c) in customers.iter_mut().enumerate() {
        c.purchase = None;
        c.phone = i % 2 == 0;
        c.sms_consent = i / 2 == 0;
    }
    let paths = run(&customers);
    for c in &customers {
        let holdout = bucket(&c.id, "abandoned-cart") < 1000;
        let got_sms = paths[&c.id].iter().any(|(_, l)| l.starts_with("send sms"));
        assert_eq!(got_sms, c.phone && c.sms_consent && !holdout, "{c:?}");
    }
}

#[test]
fn the_cap_holds_messages_across_journeys() {
    // A second journey that sends at once on `promo`: two promos just before the cart email
    // fill the cap of 2 per 24 h, so the email waits until the first promo leaves the window.
    let promo = Journey::from_yaml(
        "id: promo\nversion: 3\nentry:\n  event: promo\nfrequency_cap:\n  messages: 2\n  per: 24h\nsteps:\n  - id: send\n    send:\n      channel: webhook\n      template: promo\n    next: out\n  - id: out\n    exit: sent\n",
    )
    .unwrap();
    let cart = Arc::new(Journey::from_yaml(ABANDONED_CART).unwrap());
    let mut engine = Engine::new(vec![cart, Arc::new(promo)]);
    // A customer outside the holdout, in UTC, carting at 10:00.
    let id = (0..)
        .map(|i| format!("p{i}"))
        .find(|id| bucket(id, "abandoned-cart") >= 1000)
        .unwrap();
    let t0 = Timestamp::from_second(1_772_445_600)
        .unwrap()
        .as_microsecond(); // 2026-03-02T10:00Z
    let mut sends = Vec::new();
    let mut step = |name: &'static str, at: i64| {
        let input = (at, id.clone(), name, Map::new(), vec![]);
        for e in feed(&mut engine, &input) {
            if let Effect::Send(m) = e {
                sends.push((m.template, m.at));
            }
        }
    };
    step("promo", t0 - 2 * HOUR);
    step("promo", t0 - HOUR);
    step("add_to_cart", t0);
    for e in engine.on_time(t0 + 10 * DAY) {
        if let Effect::Send(m) = e {
            sends.push((m.template, m.at));
        }
    }
    assert_eq!(
        sends,
        vec![
            ("promo".to_string(), t0 - 2 * HOUR),
            ("promo".to_string(), t0 - HOUR),
            // 24 h after the first promo: 08:00 UTC the next day, outside quiet hours.
            ("cart-reminder".to_string(), t0 - 2 * HOUR + DAY),
        ]
    );
    for w in sends.windows(3) {
        assert!(w[2].1 - w[0].1 >= DAY, "cap broken: {sends:?}");
    }
}

/// Throughput and timer count at scale; run with
/// `cargo test --release -p cairn-journey -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    let customers = generate(200_000, 3);
    let inputs = inputs(&customers);
    let journey = Arc::new(Journey::from_yaml(ABANDONED_CART).unwrap());
    let mut engine = Engine::new(vec![journey]);
    let start = std::time::Instant::now();
    let mut effects = 0usize;
    let mut peak_timers = 0;
    for (i, input) in inputs.iter().enumerate() {
        effects += feed(&mut engine, input).len();
        if i % 1024 == 0 {
            peak_timers = peak_timers.max(engine.pending_timers());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} events in {secs:.2} s = {:.0} events/s; {effects} effects; peak pending timers {peak_timers}",
        inputs.len(),
        inputs.len() as f64 / secs
    );
}
