//! The engine: a deterministic state machine per (customer, journey), driven by events and
//! time given as arguments. It never reads a clock and does no I/O: [`Engine::on_event`] and
//! [`Engine::on_time`] return [`Effect`]s, and the caller (a backtest, the live runner and its
//! outbox) decides what to do with them. Same inputs in the same order give the same effects,
//! however `on_time` ticks are interleaved: every effect carries the time it logically
//! happened (an event's time or a timer's due time), never the time of the tick that found it.
//!
//! Timers live in one `BTreeMap` ordered by (due, sequence number), so the next due timer is
//! the first key and a waiting customer costs one map entry, not a poll. A timer due at or
//! before an event's time fires before that event.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use cairn_model::Micros;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::definition::{Channel, Condition, Journey, Reentry, StepKind};
use crate::guard;

/// What the engine sees of an event. Identify calls carry `traits`; any message may carry
/// consent changes (`context.consent.categoryPreferences`). Both update the customer's profile
/// before the event is matched.
#[derive(Debug, Clone, Copy)]
pub struct InputEvent<'a> {
    pub name: &'a str,
    pub properties: &'a Map<String, Value>,
    pub traits: &'a Map<String, Value>,
    pub consent: &'a [(String, bool)],
}

/// Something the engine wants done. The engine has already updated its state as if it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Send(Message),
    SetTraits {
        customer: String,
        journey: String,
        traits: Map<String, Value>,
        at: Micros,
    },
    Emit {
        customer: String,
        journey: String,
        event: String,
        properties: Map<String, Value>,
        at: Micros,
    },
    /// Progress to write back to the log as an event, so discovery sees journeys too.
    Journey(JourneyEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `journey@version/customer/step/entry`: the same message gets the same key on every
    /// replay, so an outbox can drop duplicates after a crash.
    pub idempotency_key: String,
    pub customer: String,
    pub journey: String,
    pub step: String,
    pub entry: u32,
    pub channel: Channel,
    pub template: String,
    pub category: Option<String>,
    pub at: Micros,
    /// The entry event's properties, for templates.
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JourneyEvent {
    pub customer: String,
    /// `id@version`.
    pub journey: String,
    pub entry: u32,
    pub at: Micros,
    #[serde(flatten)]
    pub kind: JourneyEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JourneyEventKind {
    /// `holdout`: the sticky split will hold this customer out (known at entry, so goals can
    /// be compared over every entrant).
    Entered {
        holdout: bool,
    },
    StepReached {
        step: String,
    },
    SplitArm {
        step: String,
        arm: String,
    },
    /// A send step that sent nothing.
    Suppressed {
        step: String,
        reason: Suppression,
    },
    /// A message held back by quiet hours or the frequency cap.
    Delayed {
        step: String,
        until: Micros,
    },
    GoalReached,
    Exited {
        step: String,
        reason: String,
    },
    /// The entry is over: steps done and the goal window closed (or the goal reached).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    Holdout,
    NoConsent,
}

#[derive(Debug, Default)]
struct Customer {
    /// Only the traits some journey looks at.
    traits: Map<String, Value>,
    consent: BTreeMap<String, bool>,
    /// Times of messages sent, oldest first, for the frequency cap.
    sent: VecDeque<Micros>,
    /// Per journey slot.
    journeys: Vec<JourneyState>,
}

#[derive(Debug, Default, Clone)]
struct JourneyState {
    entries: u32,
    last_entry: Micros,
    run: Option<Run>,
}

#[derive(Debug, Clone)]
struct Run {
    entry: u32,
    entered_at: Micros,
    step: usize,
    holdout: bool,
    phase: Phase,
    timer: Option<TimerKey>,
    /// The entry event's properties, for branch conditions on `property`.
    properties: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running steps (transient, inside one call).
    Moving,
    Waiting,
    WaitingForEvent,
    /// A message held back by a guard.
    Sending,
    /// Steps done; the goal window is still open.
    Measuring,
}

type TimerKey = (Micros, u64);

pub struct Engine {
    journeys: Vec<Arc<Journey>>,
    /// Per slot: whether new customers may enter (a paused, archived or superseded version
    /// takes none, but the customers in it finish it).
    accepting: Vec<bool>,
    holdouts: Vec<Option<std::ops::Range<u32>>>,
    wanted_traits: BTreeSet<String>,
    /// The longest frequency-cap window: older send times are forgotten.
    cap_horizon: Micros,
    customers: HashMap<String, Customer>,
    timers: BTreeMap<TimerKey, (String, usize)>,
    next_timer: u64,
}

impl Engine {
    pub fn new(journeys: Vec<Arc<Journey>>) -> Engine {
        let mut wanted_traits = BTreeSet::from(["timezone".to_string()]);
        for j in &journeys {
            wanted_traits.extend(Engine::traits_of(j));
        }
        Engine {
            accepting: vec![true; journeys.len()],
            holdouts: journeys.iter().map(|j| j.holdout_range()).collect(),
            cap_horizon: journeys
                .iter()
                .filter_map(|j| j.frequency_cap.map(|c| c.per))
                .max()
                .unwrap_or(0),
            journeys,
            wanted_traits,
            customers: HashMap::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
        }
    }

    /// Adds a journey (e.g. a new version of one already running) and returns its slot.
    /// Customers already in other slots stay where they are.
    pub fn add_journey(&mut self, journey: Arc<Journey>) -> usize {
        for c in Engine::traits_of(&journey) {
            self.wanted_traits.insert(c);
        }
        if let Some(cap) = journey.frequency_cap {
            self.cap_horizon = self.cap_horizon.max(cap.per);
        }
        self.holdouts.push(journey.holdout_range());
        self.accepting.push(true);
        self.journeys.push(journey);
        self.journeys.len() - 1
    }

    /// Opens or closes a slot to new entries. Customers already in it go on.
    pub fn set_accepting(&mut self, slot: usize, accepting: bool) {
        if let Some(a) = self.accepting.get_mut(slot) {
            *a = accepting;
        }
    }

    pub fn journeys(&self) -> &[Arc<Journey>] {
        &self.journeys
    }

    fn traits_of(j: &Journey) -> Vec<String> {
        let all = j.steps.iter().flat_map(|s| match &s.kind {
            StepKind::Branch { conditions, .. } => conditions.as_slice(),
            _ => &[],
        });
        all.filter_map(|c| match c {
            Condition::Trait { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
    }

    /// Timers not yet fired: customers waiting, messages held back, goal windows open.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The due time of the next timer, so a runner knows how long it may sleep.
    pub fn next_due(&self) -> Option<Micros> {
        self.timers.keys().next().map(|k| k.0)
    }

    /// One event of one customer at `now` (its time). Events must come in time order; timers
    /// due at or before `now` fire first.
    pub fn on_event(&mut self, customer: &str, event: &InputEvent<'_>, now: Micros) -> Vec<Effect> {
        let mut out = self.on_time(now);
        let slots = self.journeys.len();
        let c = self.customers.entry(customer.to_string()).or_default();
        c.journeys.resize_with(slots, JourneyState::default);
        for (k, v) in event.traits {
            if self.wanted_traits.contains(k) {
                c.traits.insert(k.clone(), v.clone());
            }
        }
        for (category, allowed) in event.consent {
            c.consent.insert(category.clone(), *allowed);
        }
        for slot in 0..slots {
            let j = Arc::clone(&self.journeys[slot]);
            // 1. A wait for this event ends with `happened`.
            if let Some(run) = self.run_mut(customer, slot)
                && run.phase == Phase::WaitingForEvent
                && let StepKind::WaitFor {
                    event: name,
                    conditions,
                    happened,
                    ..
                } = &j.steps[run.step].kind
                && name == event.name
                && conditions_hold(conditions, None, event.properties)
            {
                run.step = *happened;
                self.cancel_timer(customer, slot);
                self.advance(customer, slot, now, &mut out);
            }
            // 2. The goal ends the entry as a success.
            if let Some(goal) = &j.goal
                && goal.event == event.name
                && conditions_hold(&goal.conditions, None, event.properties)
                && let Some(run) = self.run_mut(customer, slot)
                && now < run.entered_at + goal.within
            {
                let entry = run.entry;
                let (step, phase) = (run.step, run.phase);
                self.cancel_timer(customer, slot);
                let ev =
                    |kind| Effect::Journey(self.journey_event(customer, slot, entry, now, kind));
                out.push(ev(JourneyEventKind::GoalReached));
                if phase != Phase::Measuring {
                    out.push(ev(JourneyEventKind::Exited {
                        step: j.steps[step].id.clone(),
                        reason: "goal".to_string(),
                    }));
                }
                out.push(ev(JourneyEventKind::Closed));
                self.state_mut(customer, slot).run = None;
            }
            // 3. Entry.
            if j.entry.event == event.name
                && conditions_hold(&j.entry.conditions, None, event.properties)
            {
                self.try_enter(customer, slot, event.properties, now, &mut out);
            }
        }
        out
    }

    /// Fires every timer due at or before `now`, in (due, creation) order.
    pub fn on_time(&mut self, now: Micros) -> Vec<Effect> {
        let mut out = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            let (due, _) = *entry.key();
            if due > now {
                break;
            }
            let (customer, slot) = entry.remove();
            let j = Arc::clone(&self.journeys[slot]);
            let Some(run) = self.run_mut(&customer, slot) else {
                debug_assert!(false, "a timer outlived its run");
                continue;
            };
            run.timer = None;
            match (run.phase, &j.steps[run.step].kind) {
                (Phase::Waiting, StepKind::Wait { next, .. }) => {
                    run.step = *next;
                    self.advance(&customer, slot, due, &mut out);
                }
                (Phase::WaitingForEvent, StepKind::WaitFor { timed_out, .. }) => {
                    run.step = *timed_out;
                    self.advance(&customer, slot, due, &mut out);
                }
                (Phase::Sending, _) => self.send(&customer, slot, due, false, &mut out),
                (Phase::Measuring, _) => {
                    let entry = run.entry;
                    self.state_mut(&customer, slot).run = None;
                    out.push(Effect::Journey(self.journey_event(
                        &customer,
                        slot,
                        entry,
                        due,
                        JourneyEventKind::Closed,
                    )));
                }
                _ => debug_assert!(false, "timer in a phase without one"),
            }
        }
        out
    }

    fn try_enter(
        &mut self,
        customer: &str,
        slot: usize,
        properties: &Map<String, Value>,
        now: Micros,
        out: &mut Vec<Effect>,
    ) {
        let j = Arc::clone(&self.journeys[slot]);
        if !self.accepting[slot] {
            return;
        }
        // A customer in one version of a journey does not enter another version of it.
        let c = &self.customers[customer];
        let in_other_version = (0..self.journeys.len())
            .any(|s| s != slot && self.journeys[s].id == j.id && c.journeys[s].run.is_some());
        if in_other_version {
            return;
        }
        let holdout = self.holdouts[slot]
            .as_ref()
            .is_some_and(|r| r.contains(&bucket(customer, &j.id)));
        let st = self.state_mut(customer, slot);
        if st.run.is_some() {
            return;
        }
        let allowed = match j.entry.reentry {
            _ if st.entries == 0 => true,
            Reentry::Never => false,
            Reentry::WhenExited => true,
            Reentry::After(d) => now - st.last_entry >= d,
        };
        if !allowed {
            return;
        }
        st.entries += 1;
        st.last_entry = now;
        let entry = st.entries;
        st.run = Some(Run {
            entry,
            entered_at: now,
            step: 0,
            holdout,
            phase: Phase::Moving,
            timer: None,
            properties: properties.clone(),
        });
        out.push(Effect::Journey(self.journey_event(
            customer,
            slot,
            entry,
            now,
            JourneyEventKind::Entered { holdout },
        )));
        self.advance(customer, slot, now, out);
    }

    /// Runs steps from the run's current one until it waits, holds a message or exits.
    fn advance(&mut self, customer: &str, slot: usize, at: Micros, out: &mut Vec<Effect>) {
        let j = Arc::clone(&self.journeys[slot]);
        // A path through the steps that never waits would loop forever; cut it.
        for _ in 0..=j.steps.len() {
            let c = &self.customers[customer];
            let run = c.journeys[slot].run.as_ref().expect("advance needs a run");
            let (entry, step_i) = (run.entry, run.step);
            let step = &j.steps[step_i];
            let ev = |kind| Effect::Journey(self.journey_event(customer, slot, entry, at, kind));
            out.push(ev(JourneyEventKind::StepReached {
                step: step.id.clone(),
            }));
            let next = match &step.kind {
                StepKind::Wait { duration, .. } => {
                    self.wait(customer, slot, Phase::Waiting, at + duration);
                    return;
                }
                StepKind::WaitFor { timeout, .. } => {
                    self.wait(customer, slot, Phase::WaitingForEvent, at + timeout);
                    return;
                }
                StepKind::Branch {
                    conditions,
                    then,
                    otherwise,
                } => {
                    if conditions_hold(conditions, Some(c), &run.properties) {
                        *then
                    } else {
                        *otherwise
                    }
                }
                StepKind::Split { arms } => {
                    let b = bucket(customer, &j.id);
                    let mut from = 0;
                    let arm = arms
                        .iter()
                        .find(|a| {
                            from += a.basis_points;
                            b < from
                        })
                        .expect("arms cover 0..10,000 (validated)");
                    out.push(ev(JourneyEventKind::SplitArm {
                        step: step.id.clone(),
                        arm: arm.name.clone(),
                    }));
                    self.run_mut(customer, slot).expect("checked").holdout |= arm.holdout;
                    arm.next
                }
                StepKind::Send { .. } => {
                    self.send(customer, slot, at, true, out);
                    return;
                }
                StepKind::SetTraits { traits, next } => {
                    out.push(Effect::SetTraits {
                        customer: customer.to_string(),
                        journey: j.versioned_id(),
                        traits: traits.clone(),
                        at,
                    });
                    let c = self.customers.get_mut(customer).expect("checked");
                    for (k, v) in traits {
                        if self.wanted_traits.contains(k) {
                            c.traits.insert(k.clone(), v.clone());
                        }
                    }
                    *next
                }
                StepKind::Emit {
                    event, properties, ..
                } => {
                    out.push(Effect::Emit {
                        customer: customer.to_string(),
                        journey: j.versioned_id(),
                        event: event.clone(),
                        properties: properties.clone(),
                        at,
                    });
                    match &step.kind {
                        StepKind::Emit { next, .. } => *next,
                        _ => unreachable!("matched above"),
                    }
                }
                StepKind::Exit { reason } => {
                    out.push(ev(JourneyEventKind::Exited {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    }));
                    self.finish_steps(customer, slot, at, out);
                    return;
                }
            };
            self.run_mut(customer, slot).expect("checked").step = next;
        }
        let run = self.run_mut(customer, slot).expect("checked");
        let (entry, step) = (run.entry, j.steps[run.step].id.clone());
        out.push(Effect::Journey(self.journey_event(
            customer,
            slot,
            entry,
            at,
            JourneyEventKind::Exited {
                step,
                reason: "loop without a wait".to_string(),
            },
        )));
        self.finish_steps(customer, slot, at, out);
    }

    /// The send step the run is on: sends now, holds the message back, or suppresses it, then
    /// moves on. `first` is false when a held-back message's timer fired.
    fn send(
        &mut self,
        customer: &str,
        slot: usize,
        at: Micros,
        first: bool,
        out: &mut Vec<Effect>,
    ) {
        let j = Arc::clone(&self.journeys[slot]);
        let c = &self.customers[customer];
        let run = c.journeys[slot].run.as_ref().expect("send needs a run");
        let (entry, step_i) = (run.entry, run.step);
        let properties = run.properties.clone();
        let step = &j.steps[step_i];
        let StepKind::Send {
            channel,
            template,
            category,
            quiet_hours,
            next,
        } = &step.kind
        else {
            unreachable!("send is only called on send steps");
        };
        let ev = |kind| Effect::Journey(self.journey_event(customer, slot, entry, at, kind));
        let suppressed = if run.holdout {
            Some(Suppression::Holdout)
        } else if category
            .as_ref()
            .is_some_and(|cat| c.consent.get(cat) != Some(&true))
        {
            Some(Suppression::NoConsent)
        } else {
            None
        };
        if let Some(reason) = suppressed {
            out.push(ev(JourneyEventKind::Suppressed {
                step: step.id.clone(),
                reason,
            }));
        } else {
            let due = guard::send_time(
                at,
                quiet_hours.as_ref(),
                &timezone(c),
                j.frequency_cap.as_ref(),
                &c.sent,
            );
            if due > at {
                if first || due != at {
                    out.push(ev(JourneyEventKind::Delayed {
                        step: step.id.clone(),
                        until: due,
                    }));
                }
                self.wait(customer, slot, Phase::Sending, due);
                return;
            }
            out.push(Effect::Send(Message {
                idempotency_key: format!("{}/{customer}/{}/{entry}", j.versioned_id(), step.id),
                customer: customer.to_string(),
                journey: j.versioned_id(),
                step: step.id.clone(),
                entry,
                channel: *channel,
                template: template.clone(),
                category: category.clone(),
                at,
                properties,
            }));
            let horizon = self.cap_horizon;
            let c = self.customers.get_mut(customer).expect("checked");
            c.sent.push_back(at);
            while c.sent.front().is_some_and(|t| *t <= at - horizon) {
                c.sent.pop_front();
            }
        }
        self.run_mut(customer, slot).expect("checked").step = *next;
        self.advance(customer, slot, at, out);
    }

    /// Steps are done: keep the entry open until the goal window closes, or close it now.
    fn finish_steps(&mut self, customer: &str, slot: usize, at: Micros, out: &mut Vec<Effect>) {
        let j = Arc::clone(&self.journeys[slot]);
        let run = self.run_mut(customer, slot).expect("finish needs a run");
        let entry = run.entry;
        match &j.goal {
            Some(g) if run.entered_at + g.within > at => {
                let until = run.entered_at + g.within;
                self.wait(customer, slot, Phase::Measuring, until);
            }
            _ => {
                self.state_mut(customer, slot).run = None;
                out.push(Effect::Journey(self.journey_event(
                    customer,
                    slot,
                    entry,
                    at,
                    JourneyEventKind::Closed,
                )));
            }
        }
    }

    fn wait(&mut self, customer: &str, slot: usize, phase: Phase, due: Micros) {
        let key = (due, self.next_timer);
        self.next_timer += 1;
        self.timers.insert(key, (customer.to_string(), slot));
        let run = self.run_mut(customer, slot).expect("wait needs a run");
        run.phase = phase;
        run.timer = Some(key);
    }

    fn cancel_timer(&mut self, customer: &str, slot: usize) {
        if let Some(run) = self.run_mut(customer, slot) {
            run.phase = Phase::Moving;
            if let Some(key) = run.timer.take() {
                self.timers.remove(&key);
            }
        }
    }

    fn state_mut(&mut self, customer: &str, slot: usize) -> &mut JourneyState {
        let c = self.customers.get_mut(customer).expect("customer exists");
        &mut c.journeys[slot]
    }

    fn run_mut(&mut self, customer: &str, slot: usize) -> Option<&mut Run> {
        self.customers
            .get_mut(customer)?
            .journeys
            .get_mut(slot)?
            .run
            .as_mut()
    }

    fn journey_event(
        &self,
        customer: &str,
        slot: usize,
        entry: u32,
        at: Micros,
        kind: JourneyEventKind,
    ) -> JourneyEvent {
        JourneyEvent {
            customer: customer.to_string(),
            journey: self.journeys[slot].versioned_id(),
            entry,
            at,
            kind,
        }
    }
}

/// The customer's sticky bucket in 0..10,000 for a journey id: a hash, no random state, so
/// every replay and every version of the journey puts the customer in the same arm.
pub fn bucket(customer: &str, journey_id: &str) -> u32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(customer.as_bytes());
    h.update(&[0]);
    h.update(journey_id.as_bytes());
    (h.digest() % 10_000) as u32
}

fn timezone(c: &Customer) -> jiff::tz::TimeZone {
    // An unknown or missing zone falls back to UTC (documented default).
    c.traits
        .get("timezone")
        .and_then(Value::as_str)
        .and_then(|name| jiff::tz::TimeZone::get(name).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

fn conditions_hold(
    conditions: &[Condition],
    customer: Option<&Customer>,
    properties: &Map<String, Value>,
) -> bool {
    conditions.iter().all(|c| match c {
        Condition::Property { name, test } => test.check(properties.get(name)),
        Condition::Trait { name, test } => test.check(customer.and_then(|c| c.traits.get(name))),
        Condition::Consent { category } => {
            customer.is_some_and(|c| c.consent.get(category) == Some(&true))
        }
    })
}
