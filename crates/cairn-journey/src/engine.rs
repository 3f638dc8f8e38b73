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
//!
//! Customers are numbered on first sight (one id string, shared by the index and the state),
//! timers point at the customer number (the run holding the timer's key is the one it is
//! for), and a run keeps its entry event's
//! properties packed: a customer waiting in five journeys costs under a kilobyte.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cairn_model::Micros;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::definition::{Channel, Condition, EntryOn, Journey, Reentry, StepKind};
use crate::guard;
use crate::schedule::Schedules;
use crate::segment::{self, EventFacts, SEGMENT_TIMER, Tracker};

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

/// One customer's state. Kept small on purpose: a million customers wait at once, so every
/// field here is paid for a million times (see BENCHMARKS.md, "Journey engine").
#[derive(Debug)]
struct Customer {
    /// Shared with the id index, so the id is stored once.
    id: Arc<str>,
    /// Traits some journey looks at and consent; boxed, as most customers have neither.
    profile: Option<Box<Profile>>,
    /// Times of messages sent within the longest cap window, oldest first, for the frequency
    /// cap; without spare room (a `VecDeque` would keep room for four).
    sent: Vec<Micros>,
    /// Per journey slot; empty until the customer first enters one.
    journeys: Vec<JourneyState>,
}

#[derive(Debug, Default)]
struct Profile {
    /// (index into `Engine::trait_names`, value).
    traits: Vec<(u32, Value)>,
    /// (index into `Engine::categories`, allowed).
    consent: Vec<(u32, bool)>,
}

#[derive(Debug, Default, Clone)]
struct JourneyState {
    entries: u32,
    /// When the latest entry began: the running entry's start while `run` is set.
    last_entry: Micros,
    run: Option<Run>,
}

/// The entry in progress; its number is `JourneyState::entries` and its start `last_entry`.
#[derive(Debug, Clone)]
struct Run {
    /// The pending timer; `NO_TIMER` when there is none.
    timer: TimerKey,
    /// The entry event's properties (for branch conditions on `property` and for messages),
    /// packed into one allocation: see [`pack`].
    properties: Option<Box<[u8]>>,
    step: u32,
    holdout: bool,
    phase: Phase,
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

/// (due, sequence number): timers due at the same time fire in the order they were set.
type TimerKey = (Micros, u64);
/// Sequence numbers start at 1, so 0 means "no timer".
const NO_TIMER: TimerKey = (0, 0);

pub struct Engine {
    journeys: Vec<Arc<Journey>>,
    /// `id@version` per slot, built once rather than for every effect.
    versioned: Vec<String>,
    /// Per slot: whether new customers may enter (a paused, archived or superseded version
    /// takes none, but the customers in it finish it).
    accepting: Vec<bool>,
    holdouts: Vec<Option<std::ops::Range<u32>>>,
    /// The traits some journey looks at (only those are kept); `timezone` is always first.
    trait_names: Vec<String>,
    /// Every event name some journey enters on, waits for or counts as a goal.
    wanted_events: HashSet<String>,
    /// Consent categories seen, so a customer's consent is a list of small numbers.
    categories: Vec<Box<str>>,
    /// The longest frequency-cap window: older send times are forgotten.
    cap_horizon: Micros,
    /// Customer id → number, in `SHARDS` maps: growing one map rehashes only its share, so no
    /// event waits for a million ids to be rehashed at once.
    index: Vec<HashMap<Arc<str>, u32>>,
    customers: Customers,
    /// Due timers first; the value is the customer's number, and the journey is the one whose
    /// run holds the key (a slot number here would make every entry 8 bytes larger).
    timers: BTreeMap<TimerKey, u32>,
    next_timer: u64,
    /// Segment membership and computed traits (idle without journeys that use them).
    segments: Tracker,
    /// Set while history is observed: segment crossings enter nothing.
    quiet: bool,
    /// Schedule entries: customers by time zone, a timer per (zone, journey); see
    /// [`crate::schedule`].
    schedules: Schedules,
    /// The latest time given (an event's or a tick's): where a schedule added later starts.
    now: Micros,
}

const SHARDS: usize = 256;

fn shard(id: &str) -> usize {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % SHARDS as u64) as usize
}

/// Customers by number, in fixed-size chunks: adding one never moves the others (a single
/// `Vec` would copy them all, stalling an event, and keep up to twice the room they need).
#[derive(Default)]
struct Customers {
    chunks: Vec<Vec<Customer>>,
    len: u32,
}

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

impl Customers {
    fn push(&mut self, c: Customer) -> u32 {
        if self.chunks.last().is_none_or(|last| last.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("pushed above").push(c);
        // More than 4 billion customers do not fit in memory long before this wraps.
        self.len += 1;
        self.len - 1
    }
}

impl std::ops::Index<u32> for Customers {
    type Output = Customer;
    fn index(&self, c: u32) -> &Customer {
        &self.chunks[(c >> CHUNK_BITS) as usize][c as usize & (CHUNK - 1)]
    }
}

impl std::ops::IndexMut<u32> for Customers {
    fn index_mut(&mut self, c: u32) -> &mut Customer {
        &mut self.chunks[(c >> CHUNK_BITS) as usize][c as usize & (CHUNK - 1)]
    }
}

/// A customer's profile as conditions see it.
#[derive(Clone, Copy)]
pub(crate) struct Who<'a> {
    trait_names: &'a [String],
    categories: &'a [Box<str>],
    customer: &'a Customer,
    /// Segments and computed traits, where a branch evaluates them.
    segments: Option<segment::View<'a>>,
}

impl<'a> Who<'a> {
    /// A customer's profile without segments (a branch adds them). From the engine's fields
    /// rather than `Engine::who` where another field is borrowed mutably at the same time.
    fn of(
        trait_names: &'a [String],
        categories: &'a [Box<str>],
        customer: &'a Customer,
    ) -> Who<'a> {
        Who {
            trait_names,
            categories,
            customer,
            segments: None,
        }
    }

    fn trait_value(self, name: &str) -> Option<&'a Value> {
        let i = self.trait_names.iter().position(|n| n == name)? as u32;
        let p = self.customer.profile.as_deref()?;
        p.traits.iter().find(|(t, _)| *t == i).map(|(_, v)| v)
    }

    fn consent(self, category: &str) -> Option<bool> {
        let i = self.categories.iter().position(|c| &**c == category)? as u32;
        let p = self.customer.profile.as_deref()?;
        p.consent.iter().find(|(c, _)| *c == i).map(|(_, a)| *a)
    }
}

impl Engine {
    pub fn new(journeys: Vec<Arc<Journey>>) -> Engine {
        let mut engine = Engine {
            journeys: Vec::new(),
            versioned: Vec::new(),
            accepting: Vec::new(),
            holdouts: Vec::new(),
            trait_names: vec!["timezone".to_string()],
            categories: Vec::new(),
            wanted_events: HashSet::new(),
            cap_horizon: 0,
            index: (0..SHARDS).map(|_| HashMap::new()).collect(),
            customers: Customers::default(),
            timers: BTreeMap::new(),
            next_timer: 1,
            segments: Tracker::default(),
            quiet: false,
            schedules: Schedules::default(),
            now: Micros::MIN,
        };
        for j in journeys {
            engine.add_journey(j);
        }
        engine
    }

    /// Adds a journey (e.g. a new version of one already running) and returns its slot.
    /// Customers already in other slots stay where they are.
    pub fn add_journey(&mut self, journey: Arc<Journey>) -> usize {
        let segment_traits = segment::traits_of(&journey).map(str::to_string);
        for name in Engine::traits_of(&journey)
            .into_iter()
            .chain(segment_traits)
        {
            if !self.trait_names.contains(&name) {
                self.trait_names.push(name);
            }
        }
        self.segments.add_journey(&journey, self.journeys.len());
        if let Some(cap) = journey.frequency_cap {
            self.cap_horizon = self.cap_horizon.max(cap.per);
        }
        self.wanted_events.extend(
            Engine::names_of(&journey)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        );
        self.holdouts.push(journey.holdout_range());
        self.accepting.push(true);
        self.versioned.push(journey.versioned_id());
        let slot = self.journeys.len();
        if let EntryOn::Schedule(cron) = &journey.entry.on {
            let first = self
                .schedules
                .add_job(slot, cron.clone(), self.now, &mut self.next_timer);
            // Zones are tracked from the first schedule on: place the customers known so far.
            if first {
                for c in 0..self.customers.len {
                    let tz = self.who(c).trait_value("timezone").cloned();
                    self.schedules
                        .join(c, tz.as_ref(), self.now, &mut self.next_timer);
                }
            }
        }
        self.journeys.push(journey);
        slot
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
        let all = all.chain(&j.entry.conditions);
        all.filter_map(|c| match c {
            Condition::Trait { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
    }

    /// Whether the customer is in segment `name` of the journey in `slot`, as of the last event
    /// or timer the engine processed (what segment entries act on).
    pub fn is_member(&self, customer: &str, slot: usize, name: &str) -> bool {
        self.index[shard(customer)]
            .get(customer)
            .is_some_and(|&c| self.segments.stored_member(c, slot, name))
    }

    /// Customers the segment tracker keeps state for (those with a counted event, a
    /// membership or computed traits), for memory figures.
    pub fn segment_customers(&self) -> usize {
        self.segments.customers()
    }

    /// Timers not yet fired: customers waiting, messages held back, goal windows open.
    pub fn pending_timers(&self) -> usize {
        self.timers.len() + self.schedules.pending()
    }

    /// The due time of the next timer, so a runner knows how long it may sleep.
    pub fn next_due(&self) -> Option<Micros> {
        let first = self.timers.keys().next().copied();
        first
            .into_iter()
            .chain(self.schedules.next_due())
            .min()
            .map(|k| k.0)
    }

    /// The event names some journey enters on, waits for, exits on or counts as a goal.
    fn names_of(j: &Journey) -> impl Iterator<Item = &str> {
        let waits = j.steps.iter().filter_map(|s| match &s.kind {
            StepKind::WaitFor { event, .. } => Some(event.as_str()),
            _ => None,
        });
        j.entry
            .event_name()
            .into_iter()
            .chain(j.goal.as_ref().map(|g| g.event.as_str()))
            .chain(j.exit_on.iter().map(|x| x.event.as_str()))
            .chain(waits)
    }

    /// One event of one customer at `now` (its time). Events must come in time order; timers
    /// due at or before `now` fire first.
    pub fn on_event(&mut self, customer: &str, event: &InputEvent<'_>, now: Micros) -> Vec<Effect> {
        self.on_event_with(customer, event, EventFacts::default(), now)
    }

    /// [`Engine::on_event`] with the event's value and channel, for computed traits.
    pub fn on_event_with(
        &mut self,
        customer: &str,
        event: &InputEvent<'_>,
        facts: EventFacts<'_>,
        now: Micros,
    ) -> Vec<Effect> {
        let mut out = self.on_time(now);
        // An event no journey looks at, without profile changes, changes nothing: skip even
        // the customer lookup (and so keep no state for a customer only ever seen in such).
        if event.traits.is_empty()
            && event.consent.is_empty()
            && !self.wanted_events.contains(event.name)
            && !self.segments.wants(event.name)
        {
            return out;
        }
        let (c, new) = match self.index[shard(customer)].get(customer) {
            Some(&c) => (c, false),
            None => (self.add_customer(customer), true),
        };
        self.update_profile(c, event.traits, event.consent);
        let moves = self.segment_event(c, event, facts, now);
        if new {
            self.zone_schedules(c, true);
        } else if event.traits.contains_key("timezone") {
            self.zone_schedules(c, false);
        }
        let slots = self.journeys.len();
        for slot in 0..slots {
            let j = Arc::clone(&self.journeys[slot]);
            // 1. A wait for this event ends with `happened`.
            if let Some(run) = self.run_mut(c, slot)
                && run.phase == Phase::WaitingForEvent
                && let StepKind::WaitFor {
                    event: name,
                    conditions,
                    happened,
                    ..
                } = &j.steps[run.step as usize].kind
                && is_event(event, name, conditions)
            {
                run.step = *happened as u32;
                self.cancel_timer(c, slot);
                self.advance(c, slot, now, &mut out);
            }
            // 2. The goal ends the entry as a success.
            if let Some(goal) = &j.goal
                && is_event(event, &goal.event, &goal.conditions)
                && let Some(st) = self.state(c, slot)
                && let Some(run) = &st.run
                && now < st.last_entry + goal.within
            {
                let entry = st.entries;
                let (step, phase) = (run.step as usize, run.phase);
                self.cancel_timer(c, slot);
                let ev = |kind| Effect::Journey(self.journey_event(c, slot, entry, now, kind));
                out.push(ev(JourneyEventKind::GoalReached));
                if phase != Phase::Measuring {
                    out.push(ev(JourneyEventKind::Exited {
                        step: j.steps[step].id.clone(),
                        reason: "goal".to_string(),
                    }));
                }
                out.push(ev(JourneyEventKind::Closed));
                self.state_mut(c, slot).run = None;
            }
            // 3. An exit condition ends the entry's steps (its goal window goes on).
            if let Some(st) = self.state(c, slot)
                && let Some(run) = &st.run
                && run.phase != Phase::Measuring
                && j.exit_on
                    .iter()
                    .any(|x| is_event(event, &x.event, &x.conditions))
            {
                let (entry, step) = (st.entries, j.steps[run.step as usize].id.clone());
                self.cancel_timer(c, slot);
                out.push(Effect::Journey(self.journey_event(
                    c,
                    slot,
                    entry,
                    now,
                    JourneyEventKind::Exited {
                        step,
                        reason: format!("exit_on {}", event.name),
                    },
                )));
                self.finish_steps(c, slot, now, &mut out);
            }
            // 4. Entry (its conditions may look at traits too).
            if j.entry.event_name() == Some(event.name)
                && conditions_hold(&j.entry.conditions, Some(self.who(c)), event.properties)
            {
                self.try_enter(c, slot, event.properties, now, &mut out);
            }
        }
        self.enter_on_segments(c, &moves, event.properties, now, &mut out);
        out
    }

    /// History from before a backtest's `--from`: keeps the event's traits and consent and
    /// counts it for segments and computed traits, as it stood then, but enters nothing:
    /// segment crossings up to `at` (this event's and those of timers due by then) change
    /// membership silently. Only before any entry (no run can be waiting yet).
    pub fn observe(
        &mut self,
        customer: &str,
        event: &InputEvent<'_>,
        facts: EventFacts<'_>,
        at: Micros,
    ) {
        self.observe_time(at);
        if event.traits.is_empty() && event.consent.is_empty() && !self.segments.wants(event.name) {
            return;
        }
        let (c, new) = match self.index[shard(customer)].get(customer) {
            Some(&c) => (c, false),
            None => (self.add_customer(customer), true),
        };
        self.update_profile(c, event.traits, event.consent);
        // Known to the schedules from now on (their firings in history enter no one).
        if new {
            self.zone_schedules(c, true);
        } else if event.traits.contains_key("timezone") {
            self.zone_schedules(c, false);
        }
        self.quiet = true;
        let _ = self.segment_event(c, event, facts, at);
        self.quiet = false;
    }

    /// Time passes in history (see [`Engine::observe`]): segment timers and schedules due by
    /// `at` fire without entering anyone.
    pub fn observe_time(&mut self, at: Micros) {
        self.quiet = true;
        let effects = self.on_time(at);
        self.quiet = false;
        debug_assert!(
            effects.is_empty(),
            "history while customers are in journeys"
        );
    }

    /// Segment crossings caused by the event (usually none).
    fn segment_event(
        &mut self,
        c: u32,
        event: &InputEvent<'_>,
        facts: EventFacts<'_>,
        now: Micros,
    ) -> Vec<segment::Move> {
        if !self.segments.active() {
            return Vec::new();
        }
        let who = Who::of(&self.trait_names, &self.categories, &self.customers[c]);
        let (timers, next) = (&mut self.timers, &mut self.next_timer);
        self.segments
            .on_event(c, who, event, facts, now, timers, next)
    }

    /// Enters the journeys whose entry is a segment crossing in `moves`.
    fn enter_on_segments(
        &mut self,
        c: u32,
        moves: &[segment::Move],
        properties: &Map<String, Value>,
        at: Micros,
        out: &mut Vec<Effect>,
    ) {
        if moves.is_empty() || self.quiet {
            return;
        }
        let slots: Vec<usize> = self.segments.entering(moves).collect();
        for slot in slots {
            self.try_enter(c, slot, properties, at, out);
        }
    }

    /// Fires every timer due at or before `now`, in (due, creation) order.
    pub fn on_time(&mut self, now: Micros) -> Vec<Effect> {
        let mut out = Vec::new();
        self.now = self.now.max(now);
        loop {
            // A schedule due before the next timer of a run fires first.
            let before = self.timers.keys().next().copied();
            if let Some((due, slot, members)) =
                self.schedules.pop_due(now, before, &mut self.next_timer)
            {
                // In history (`observe_time`) a firing passes: nobody enters.
                if !self.quiet {
                    self.enter_on_schedule(slot, &members, due, &mut out);
                }
                continue;
            }
            let Some(entry) = self.timers.first_entry() else {
                break;
            };
            let key = *entry.key();
            let due = key.0;
            if due > now {
                break;
            }
            let c = entry.remove();
            if key.1 & SEGMENT_TIMER != 0 {
                // A segment criterion changes with time alone: re-evaluate at that instant.
                let who = Who::of(&self.trait_names, &self.categories, &self.customers[c]);
                let (timers, next) = (&mut self.timers, &mut self.next_timer);
                let moves = self.segments.on_timer(c, who, due, timers, next);
                self.enter_on_segments(c, &moves, &Map::new(), due, &mut out);
                continue;
            }
            let Some(slot) = self.customers[c]
                .journeys
                .iter()
                .position(|st| st.run.as_ref().is_some_and(|r| r.timer == key))
            else {
                debug_assert!(false, "a timer outlived its run");
                continue;
            };
            let j = Arc::clone(&self.journeys[slot]);
            let Some(run) = self.run_mut(c, slot) else {
                debug_assert!(false, "a timer outlived its run");
                continue;
            };
            run.timer = NO_TIMER;
            match (run.phase, &j.steps[run.step as usize].kind) {
                (
                    Phase::Waiting,
                    StepKind::Wait { next, .. } | StepKind::WaitUntil { next, .. },
                ) => {
                    run.step = *next as u32;
                    self.advance(c, slot, due, &mut out);
                }
                (Phase::WaitingForEvent, StepKind::WaitFor { timed_out, .. }) => {
                    run.step = *timed_out as u32;
                    self.advance(c, slot, due, &mut out);
                }
                (Phase::Sending, _) => self.send(c, slot, due, false, &mut out),
                (Phase::Measuring, _) => {
                    let st = self.state_mut(c, slot);
                    st.run = None;
                    let entry = st.entries;
                    out.push(Effect::Journey(self.journey_event(
                        c,
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

    /// Puts a customer (`new`: just met) in the schedule zone of its `timezone` trait, from
    /// the engine's time (a late event does not reach back to earlier firings).
    fn zone_schedules(&mut self, c: u32, new: bool) {
        if !self.schedules.active() {
            return;
        }
        let tz = self.who(c).trait_value("timezone").cloned();
        let now = self.now;
        if new {
            self.schedules
                .join(c, tz.as_ref(), now, &mut self.next_timer);
        } else {
            self.schedules
                .place(c, tz.as_ref(), now, &mut self.next_timer);
        }
    }

    /// A schedule fired in the zone of `members`: each enters if the entry's conditions hold
    /// of their traits and consent and the re-entry policy and cap allow.
    fn enter_on_schedule(
        &mut self,
        slot: usize,
        members: &[u32],
        at: Micros,
        out: &mut Vec<Effect>,
    ) {
        let j = Arc::clone(&self.journeys[slot]);
        let none = Map::new();
        for &c in members {
            if conditions_hold(&j.entry.conditions, Some(self.who(c)), &none) {
                self.try_enter(c, slot, &none, at, out);
            }
        }
    }

    fn add_customer(&mut self, id: &str) -> u32 {
        let id: Arc<str> = Arc::from(id);
        let c = self.customers.push(Customer {
            id: Arc::clone(&id),
            profile: None,
            sent: Vec::new(),
            journeys: Vec::new(),
        });
        self.index[shard(&id)].insert(id, c);
        c
    }

    /// Keeps the traits some journey looks at, and all consent.
    fn update_profile(&mut self, c: u32, traits: &Map<String, Value>, consent: &[(String, bool)]) {
        for (k, v) in traits {
            if let Some(i) = self.trait_names.iter().position(|n| n == k) {
                let p = self.customers[c].profile.get_or_insert_default();
                match p.traits.iter_mut().find(|(t, _)| *t == i as u32) {
                    Some(slot) => slot.1 = v.clone(),
                    None => {
                        p.traits.push((i as u32, v.clone()));
                        // Kept for as long as the customer: no spare room.
                        p.traits.shrink_to_fit();
                    }
                }
            }
        }
        for (category, allowed) in consent {
            let i = match self.categories.iter().position(|x| **x == **category) {
                Some(i) => i,
                None => {
                    self.categories.push(category.as_str().into());
                    self.categories.len() - 1
                }
            } as u32;
            let p = self.customers[c].profile.get_or_insert_default();
            match p.consent.iter_mut().find(|(x, _)| *x == i) {
                Some(slot) => slot.1 = *allowed,
                None => {
                    p.consent.push((i, *allowed));
                    p.consent.shrink_to_fit();
                }
            }
        }
    }

    fn who(&self, c: u32) -> Who<'_> {
        Who::of(&self.trait_names, &self.categories, &self.customers[c])
    }

    fn try_enter(
        &mut self,
        c: u32,
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
        let in_other_version = (0..self.journeys.len()).any(|s| {
            s != slot
                && self.journeys[s].id == j.id
                && self.state(c, s).is_some_and(|st| st.run.is_some())
        });
        if in_other_version {
            return;
        }
        let holdout = self.holdouts[slot]
            .as_ref()
            .is_some_and(|r| r.contains(&bucket(&self.customers[c].id, &j.id)));
        let st = self.state_mut(c, slot);
        if st.run.is_some() {
            return;
        }
        let allowed = match j.entry.reentry {
            _ if j.entry.max_entries.is_some_and(|m| st.entries >= m) => false,
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
            timer: NO_TIMER,
            properties: pack(properties),
            step: 0,
            holdout,
            phase: Phase::Moving,
        });
        out.push(Effect::Journey(self.journey_event(
            c,
            slot,
            entry,
            now,
            JourneyEventKind::Entered { holdout },
        )));
        self.advance(c, slot, now, out);
    }

    /// Runs steps from the run's current one until it waits, holds a message or exits.
    fn advance(&mut self, c: u32, slot: usize, at: Micros, out: &mut Vec<Effect>) {
        let j = Arc::clone(&self.journeys[slot]);
        // A path through the steps that never waits would loop forever; cut it.
        for _ in 0..=j.steps.len() {
            let st = self.state(c, slot).expect("advance needs a run");
            let run = st.run.as_ref().expect("advance needs a run");
            let (entry, step_i) = (st.entries, run.step as usize);
            let step = &j.steps[step_i];
            let ev = |kind| Effect::Journey(self.journey_event(c, slot, entry, at, kind));
            out.push(ev(JourneyEventKind::StepReached {
                step: step.id.clone(),
            }));
            let next = match &step.kind {
                StepKind::Wait { duration, .. } => {
                    self.wait(c, slot, Phase::Waiting, at + duration);
                    return;
                }
                StepKind::WaitUntil { minute, .. } => {
                    let due = guard::next_local_time(*minute, &timezone(self.who(c)), at);
                    self.wait(c, slot, Phase::Waiting, due);
                    return;
                }
                StepKind::WaitFor { timeout, .. } => {
                    self.wait(c, slot, Phase::WaitingForEvent, at + timeout);
                    return;
                }
                StepKind::Branch {
                    conditions,
                    then,
                    otherwise,
                } => {
                    let properties = unpack(run.properties.as_deref());
                    let who = Who {
                        segments: Some(segment::View {
                            tracker: &self.segments,
                            c,
                            slot,
                            at,
                        }),
                        ..self.who(c)
                    };
                    if conditions_hold(conditions, Some(who), &properties) {
                        *then
                    } else {
                        *otherwise
                    }
                }
                StepKind::Split { arms } => {
                    let b = bucket(&self.customers[c].id, &j.id);
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
                    self.run_mut(c, slot).expect("checked").holdout |= arm.holdout;
                    arm.next
                }
                StepKind::Send { .. } => {
                    self.send(c, slot, at, true, out);
                    return;
                }
                StepKind::SetTraits { traits, next } => {
                    out.push(Effect::SetTraits {
                        customer: self.customers[c].id.to_string(),
                        journey: self.versioned[slot].clone(),
                        traits: traits.clone(),
                        at,
                    });
                    self.update_profile(c, traits, &[]);
                    if traits.contains_key("timezone") {
                        self.zone_schedules(c, false);
                    }
                    *next
                }
                StepKind::Emit {
                    event,
                    properties,
                    next,
                } => {
                    out.push(Effect::Emit {
                        customer: self.customers[c].id.to_string(),
                        journey: self.versioned[slot].clone(),
                        event: event.clone(),
                        properties: properties.clone(),
                        at,
                    });
                    *next
                }
                StepKind::Exit { reason } => {
                    out.push(ev(JourneyEventKind::Exited {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    }));
                    self.finish_steps(c, slot, at, out);
                    return;
                }
            };
            self.run_mut(c, slot).expect("checked").step = next as u32;
        }
        let st = self.state(c, slot).expect("checked");
        let run = st.run.as_ref().expect("checked");
        let (entry, step) = (st.entries, j.steps[run.step as usize].id.clone());
        out.push(Effect::Journey(self.journey_event(
            c,
            slot,
            entry,
            at,
            JourneyEventKind::Exited {
                step,
                reason: "loop without a wait".to_string(),
            },
        )));
        self.finish_steps(c, slot, at, out);
    }

    /// The send step the run is on: sends now, holds the message back, or suppresses it, then
    /// moves on. `first` is false when a held-back message's timer fired.
    fn send(&mut self, c: u32, slot: usize, at: Micros, first: bool, out: &mut Vec<Effect>) {
        let j = Arc::clone(&self.journeys[slot]);
        let who = self.who(c);
        let st = self.state(c, slot).expect("send needs a run");
        let run = st.run.as_ref().expect("send needs a run");
        let (entry, step_i) = (st.entries, run.step as usize);
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
        let ev = |kind| Effect::Journey(self.journey_event(c, slot, entry, at, kind));
        let suppressed = if run.holdout {
            Some(Suppression::Holdout)
        } else if category
            .as_ref()
            .is_some_and(|cat| who.consent(cat) != Some(true))
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
                &timezone(who),
                j.frequency_cap.as_ref(),
                &who.customer.sent,
            );
            if due > at {
                if first || due != at {
                    out.push(ev(JourneyEventKind::Delayed {
                        step: step.id.clone(),
                        until: due,
                    }));
                }
                self.wait(c, slot, Phase::Sending, due);
                return;
            }
            let customer = who.customer.id.to_string();
            let versioned = &self.versioned[slot];
            out.push(Effect::Send(Message {
                idempotency_key: format!("{versioned}/{customer}/{}/{entry}", step.id),
                customer,
                journey: versioned.clone(),
                step: step.id.clone(),
                entry,
                channel: *channel,
                template: template.clone(),
                category: category.clone(),
                at,
                properties: unpack(run.properties.as_deref()),
            }));
            let horizon = self.cap_horizon;
            let sent = &mut self.customers[c].sent;
            sent.push(at);
            sent.retain(|t| *t > at - horizon);
            sent.shrink_to_fit();
        }
        self.run_mut(c, slot).expect("checked").step = *next as u32;
        self.advance(c, slot, at, out);
    }

    /// Steps are done: keep the entry open until the goal window closes, or close it now.
    fn finish_steps(&mut self, c: u32, slot: usize, at: Micros, out: &mut Vec<Effect>) {
        let j = Arc::clone(&self.journeys[slot]);
        let st = self.state(c, slot).expect("finish needs a run");
        let (entry, entered_at) = (st.entries, st.last_entry);
        match &j.goal {
            Some(g) if entered_at + g.within > at => {
                self.wait(c, slot, Phase::Measuring, entered_at + g.within);
            }
            _ => {
                self.state_mut(c, slot).run = None;
                out.push(Effect::Journey(self.journey_event(
                    c,
                    slot,
                    entry,
                    at,
                    JourneyEventKind::Closed,
                )));
            }
        }
    }

    fn wait(&mut self, c: u32, slot: usize, phase: Phase, due: Micros) {
        let key = (due, self.next_timer);
        self.next_timer += 1;
        self.timers.insert(key, c);
        let run = self.run_mut(c, slot).expect("wait needs a run");
        run.phase = phase;
        run.timer = key;
    }

    fn cancel_timer(&mut self, c: u32, slot: usize) {
        if let Some(run) = self.run_mut(c, slot) {
            run.phase = Phase::Moving;
            let key = std::mem::replace(&mut run.timer, NO_TIMER);
            if key != NO_TIMER {
                self.timers.remove(&key);
            }
        }
    }

    fn state(&self, c: u32, slot: usize) -> Option<&JourneyState> {
        self.customers[c].journeys.get(slot)
    }

    /// The customer's state in a slot, making room for every slot on first use (exactly: a
    /// doubling `Vec` would cost up to twice the memory for each of millions of customers).
    fn state_mut(&mut self, c: u32, slot: usize) -> &mut JourneyState {
        let slots = self.journeys.len();
        let js = &mut self.customers[c].journeys;
        if js.len() < slots {
            js.reserve_exact(slots - js.len());
            js.resize_with(slots, JourneyState::default);
        }
        &mut js[slot]
    }

    fn run_mut(&mut self, c: u32, slot: usize) -> Option<&mut Run> {
        self.customers[c].journeys.get_mut(slot)?.run.as_mut()
    }

    fn journey_event(
        &self,
        c: u32,
        slot: usize,
        entry: u32,
        at: Micros,
        kind: JourneyEventKind,
    ) -> JourneyEvent {
        JourneyEvent {
            customer: self.customers[c].id.to_string(),
            journey: self.versioned[slot].clone(),
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

fn timezone(who: Who<'_>) -> jiff::tz::TimeZone {
    // An unknown or missing zone falls back to UTC (documented default).
    who.trait_value("timezone")
        .and_then(Value::as_str)
        .and_then(|name| jiff::tz::TimeZone::get(name).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Whether `event` is the event `name` with `conditions` true of its properties: what an
/// entry, a wait, a goal and an exit condition each ask of an event.
fn is_event(event: &InputEvent<'_>, name: &str, conditions: &[Condition]) -> bool {
    event.name == name && conditions_hold(conditions, None, event.properties)
}

pub(crate) fn conditions_hold(
    conditions: &[Condition],
    who: Option<Who<'_>>,
    properties: &Map<String, Value>,
) -> bool {
    conditions.iter().all(|c| match c {
        Condition::Property { name, test } => test.check(properties.get(name)),
        Condition::Trait { name, test } => test.check(who.and_then(|w| w.trait_value(name))),
        Condition::Consent { category } => who.is_some_and(|w| w.consent(category) == Some(true)),
        Condition::Segment { .. } | Condition::Computed { .. } => {
            who.is_some_and(|w| w.segments.is_some_and(|v| v.holds(c, w)))
        }
    })
}

// ---- entry-event properties, packed ----
//
// A waiting customer keeps the properties of the event they entered on, for templates. As a
// `serde_json::Map` that is a B-tree node of ~600 bytes plus one allocation per key and string
// value, per journey the customer waits in; packed it is one allocation about the size of the
// JSON text. The format is private and exact (numbers keep their type and bits, unlike a JSON
// text round trip, whose float parsing is best-effort).

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const U64: u8 = 3;
const I64: u8 = 4;
const F64: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

/// The properties in one allocation; `None` when there are none.
fn pack(properties: &Map<String, Value>) -> Option<Box<[u8]>> {
    if properties.is_empty() {
        return None;
    }
    // Room for a typical event's properties up front, then one shrink to the exact size,
    // rather than growing byte by byte through five reallocations.
    let mut out = Vec::with_capacity(256);
    pack_object(properties, &mut out);
    Some(out.into_boxed_slice())
}

fn pack_len(n: usize, out: &mut Vec<u8>) {
    let mut n = n as u64;
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn pack_str(s: &str, out: &mut Vec<u8>) {
    pack_len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn pack_object(m: &Map<String, Value>, out: &mut Vec<u8>) {
    pack_len(m.len(), out);
    for (k, v) in m {
        pack_str(k, out);
        pack_value(v, out);
    }
}

fn pack_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(U64);
                out.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(I64);
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.push(F64);
                let f = n.as_f64().unwrap_or(0.0);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(STRING);
            pack_str(s, out);
        }
        Value::Array(a) => {
            out.push(ARRAY);
            pack_len(a.len(), out);
            for v in a {
                pack_value(v, out);
            }
        }
        Value::Object(m) => {
            out.push(OBJECT);
            pack_object(m, out);
        }
    }
}

/// The properties [`pack`] packed (an empty map for `None`).
fn unpack(packed: Option<&[u8]>) -> Map<String, Value> {
    let mut r = Reader(packed.unwrap_or(&[]));
    if r.0.is_empty() {
        return Map::new();
    }
    // Only ever reads what `pack` wrote; a malformed buffer would give an empty map, not a panic.
    r.object().unwrap_or_default()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }

    fn eight(&mut self) -> Option<[u8; 8]> {
        self.bytes(8)?.try_into().ok()
    }

    fn len(&mut self) -> Option<usize> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return usize::try_from(n).ok();
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }

    fn object(&mut self) -> Option<Map<String, Value>> {
        let n = self.len()?;
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.value()?;
            m.insert(k, v);
        }
        Some(m)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            U64 => Value::from(u64::from_le_bytes(self.eight()?)),
            I64 => Value::from(i64::from_le_bytes(self.eight()?)),
            F64 => Value::from(f64::from_bits(u64::from_le_bytes(self.eight()?))),
            STRING => Value::String(self.string()?),
            ARRAY => {
                let n = self.len()?;
                let mut a = Vec::with_capacity(n.min(self.0.len()));
                for _ in 0..n {
                    a.push(self.value()?);
                }
                Value::Array(a)
            }
            OBJECT => Value::Object(self.object()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_properties_come_back_exactly() {
        let v = serde_json::json!({
            "product": "sku-1", "price": 49.9, "tiny": 1e-300, "third": 0.1 + 0.2,
            "qty": 3, "neg": -7, "big": u64::MAX, "ok": true, "no": false, "none": null,
            "tags": ["a", 1, 2.5, {"x": [null]}], "nested": {"é": "ü", "empty": {}},
        });
        let Value::Object(m) = v else { unreachable!() };
        let back = unpack(pack(&m).as_deref());
        assert_eq!(back, m);
        // Number types survive too (an integer stays an integer, a float a float).
        assert!(back["qty"].is_u64() && back["neg"].is_i64() && back["price"].is_f64());
        assert_eq!(pack(&Map::new()), None);
        assert_eq!(unpack(None), Map::new());
    }
}
