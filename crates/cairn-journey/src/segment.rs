//! Behavioural segments and computed traits, kept incrementally as events arrive.
//!
//! A journey may define segments (`segments: {active: {all: [...]}}`) and enter customers when
//! they enter or leave one (`entry: {segment: active, on: leave}`), and branch on membership
//! (`{segment: active}`) or on a computed trait (`{computed: total_revenue, gt: 100}`).
//!
//! Nothing polls and nothing scans all customers. Per customer the [`Tracker`] keeps only what
//! the criteria need: for each event criterion the latest `at_least` matching times (fewer
//! once they leave its window), one bit per segment, the computed traits when some journey
//! uses them, and one engine timer. Membership is re-evaluated on each event of that customer;
//! a criterion that stops (or starts) holding because time passes — the oldest counted event
//! leaves the window, a `did_not` comes true, `last_seen` grows older than 30 days — changes
//! membership at exactly that instant through the timer, set for the earliest such instant.
//! A customer without a matching event, a member bit or a computed trait has no state at all.
//!
//! The window of `within: 7d` at time `now` holds the events at `t` with `now - 7d < t <= now`:
//! an event stops counting at exactly `t + 7d`.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_model::Micros;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use crate::definition::{Condition, DefinitionError, Journey, RawCondition, StepKind, Test};
use crate::engine::{InputEvent, Who, conditions_hold};

/// A named set of criteria; `any` holds when one does, otherwise all must.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub any: bool,
    pub criteria: Vec<Criterion>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Criterion {
    /// `did` / `did_not`: counts matching events.
    Events(EventCriterion),
    /// A trait, consent or computed-trait test (the same tests as a branch's).
    Condition(Condition),
}

/// At least `at_least` events named `event` (`None`: any event) with `conditions` true of
/// their properties, within `within` before now (`None`: ever); `negate` (`did_not`) holds
/// exactly when that does not.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCriterion {
    pub event: Option<String>,
    pub conditions: Vec<Condition>,
    pub at_least: u32,
    pub within: Option<Micros>,
    pub negate: bool,
}

/// The computed traits, named as `cairn-identity` names them in a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputedTrait {
    EventCount,
    /// Sum of the events' `value`.
    TotalRevenue,
    LastChannel,
    FirstSeen,
    LastSeen,
}

impl ComputedTrait {
    pub const NAMES: [&str; 5] = [
        "event_count",
        "total_revenue",
        "last_channel",
        "first_seen",
        "last_seen",
    ];

    pub fn parse(s: &str) -> Option<ComputedTrait> {
        Some(match s {
            "event_count" => ComputedTrait::EventCount,
            "total_revenue" => ComputedTrait::TotalRevenue,
            "last_channel" => ComputedTrait::LastChannel,
            "first_seen" => ComputedTrait::FirstSeen,
            "last_seen" => ComputedTrait::LastSeen,
            _ => return None,
        })
    }

    fn is_time(self) -> bool {
        matches!(self, ComputedTrait::FirstSeen | ComputedTrait::LastSeen)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ComputedTest {
    /// On the value: a count or sum as a number, a channel as a string, a time as
    /// microseconds since the epoch.
    Value(Test),
    /// A time at least this long ago (false without one).
    OlderThan(Micros),
    /// A time less than this long ago (false without one).
    NewerThan(Micros),
}

/// Which crossing of a segment's boundary enters a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Enter,
    Leave,
}

impl Edge {
    pub fn parse(s: &str) -> Option<Edge> {
        match s {
            "enter" => Some(Edge::Enter),
            "leave" => Some(Edge::Leave),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    pub segment: String,
    pub on: Edge,
}

/// What an event carries besides its name and properties, for computed traits: its `value`
/// (revenue) and `channel`. [`crate::Engine::on_event`] passes none.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFacts<'a> {
    pub value: Option<f64>,
    pub channel: Option<&'a str>,
}

/// `did: "*"` counts any event.
pub const ANY_EVENT: &str = "*";

/// A windowed or counted criterion keeps at most this many times per customer (8 bytes each).
pub const MAX_AT_LEAST: u32 = 64;

// ---- the YAML shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSegment {
    #[serde(default)]
    all: Option<Vec<Spanned<RawCondition>>>,
    #[serde(default)]
    any: Option<Vec<Spanned<RawCondition>>>,
}

/// The journey's segments, sorted by name, each criterion checked.
pub(crate) fn resolve(
    raw: &BTreeMap<String, Spanned<RawSegment>>,
) -> Result<Vec<Segment>, DefinitionError> {
    let mut out = Vec::new();
    for (name, s) in raw {
        let (any, list) = match (&s.value.all, &s.value.any) {
            (Some(l), None) => (false, l),
            (None, Some(l)) => (true, l),
            _ => {
                return Err(DefinitionError::at(
                    s.referenced,
                    format!("segment {name:?} needs exactly one of `all` or `any`"),
                ));
            }
        };
        if list.is_empty() {
            return Err(DefinitionError::at(
                s.referenced,
                format!("segment {name:?} needs at least one criterion"),
            ));
        }
        let criteria = list.iter().map(criterion).collect::<Result<_, _>>()?;
        out.push(Segment {
            name: name.clone(),
            any,
            criteria,
        });
    }
    Ok(out)
}

fn criterion(c: &Spanned<RawCondition>) -> Result<Criterion, DefinitionError> {
    let r = &c.value;
    let err = |reason: String| DefinitionError::at(c.referenced, reason);
    let (event, negate) = match (&r.did, &r.did_not) {
        (Some(e), None) => (e, false),
        (None, Some(e)) => (e, true),
        (Some(_), Some(_)) => {
            return Err(err("a criterion has `did` or `did_not`, not both".into()));
        }
        (None, None) => {
            if r.property.is_some() {
                return Err(err(
                    "a segment is about the customer: test a `trait`, `consent` or `computed` trait, or count events with `did`".into(),
                ));
            }
            if r.segment.is_some() {
                return Err(err("a segment cannot test a segment".into()));
            }
            return crate::definition::condition(c).map(Criterion::Condition);
        }
    };
    let customer_tests = r.trait_name.is_some()
        || r.consent.is_some()
        || r.computed.is_some()
        || r.segment.is_some()
        || r.property.is_some()
        || r.exists.is_some()
        || r.equals.is_some()
        || r.not_equals.is_some()
        || r.gt.is_some()
        || r.lt.is_some()
        || r.is.is_some()
        || r.older_than.is_some()
        || r.newer_than.is_some();
    if customer_tests {
        return Err(err(
            "a `did`/`did_not` criterion takes `where`, `at_least` and `within`; put other tests in a criterion of their own".into(),
        ));
    }
    let at_least = r.at_least.unwrap_or(1);
    if at_least == 0 || at_least > MAX_AT_LEAST {
        return Err(err(format!(
            "at_least must be 1 to {MAX_AT_LEAST} (for larger counts use `computed: event_count`)"
        )));
    }
    let within = match &r.within {
        None => None,
        Some(w) => Some(
            crate::definition::parse_duration(w)
                .filter(|d| *d > 0)
                .ok_or_else(|| {
                    err(format!(
                        "bad duration {w:?}: write a whole number and a unit, s, m, h or d (30d)"
                    ))
                })?,
        ),
    };
    let conditions = r
        .conditions
        .iter()
        .map(|p| {
            let cond = crate::definition::condition(p)?;
            match cond {
                Condition::Property { .. } => Ok(cond),
                _ => Err(DefinitionError::at(
                    p.referenced,
                    "`where` of a `did` tests the event's properties: use `property`",
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Criterion::Events(EventCriterion {
        event: (event != ANY_EVENT).then(|| event.clone()),
        conditions,
        at_least,
        within,
        negate,
    }))
}

/// The `computed` and `segment` forms of a condition (`Ok(None)` for the others, which
/// [`crate::definition`] resolves); `tests` are the value tests the condition gave.
pub(crate) fn condition(
    r: &RawCondition,
    tests: &mut Vec<Test>,
) -> Result<Option<Condition>, String> {
    if r.did.is_some()
        || r.did_not.is_some()
        || r.at_least.is_some()
        || r.within.is_some()
        || !r.conditions.is_empty()
    {
        // Event counts are segment criteria: `criterion` takes them before calling here, so
        // this is one in a branch or an event's `where`.
        return Err(
            "`did`, `did_not`, `where`, `at_least` and `within` count events in a segment criterion".into(),
        );
    }
    let others = r.trait_name.is_some() || r.property.is_some() || r.consent.is_some();
    if let Some(name) = &r.computed {
        if others || r.segment.is_some() || r.is.is_some() {
            return Err("a condition needs exactly one of `trait`, `property`, `consent`, `computed` or `segment`".into());
        }
        let trait_ = ComputedTrait::parse(name).ok_or_else(|| {
            format!(
                "no computed trait {name:?}: there are {}",
                ComputedTrait::NAMES.join(", ")
            )
        })?;
        let duration = |d: &String| {
            crate::definition::parse_duration(d).ok_or_else(|| {
                format!("bad duration {d:?}: write a whole number and a unit, s, m, h or d (30d)")
            })
        };
        let mut all: Vec<ComputedTest> = tests.drain(..).map(ComputedTest::Value).collect();
        if let Some(d) = &r.older_than {
            all.push(ComputedTest::OlderThan(duration(d)?));
        }
        if let Some(d) = &r.newer_than {
            all.push(ComputedTest::NewerThan(duration(d)?));
        }
        if all.len() != 1 {
            return Err("a computed condition needs exactly one of exists, equals, not_equals, gt, lt, older_than, newer_than".into());
        }
        let test = all.remove(0);
        if matches!(
            test,
            ComputedTest::OlderThan(_) | ComputedTest::NewerThan(_)
        ) && !trait_.is_time()
        {
            return Err(format!(
                "older_than and newer_than test a time: first_seen or last_seen, not {name}"
            ));
        }
        return Ok(Some(Condition::Computed { name: trait_, test }));
    }
    if let Some(name) = &r.segment {
        if others || !tests.is_empty() || r.older_than.is_some() || r.newer_than.is_some() {
            return Err("a segment condition takes only `is: true|false`".into());
        }
        return Ok(Some(Condition::Segment {
            name: name.clone(),
            is: r.is.unwrap_or(true),
        }));
    }
    if r.is.is_some() || r.older_than.is_some() || r.newer_than.is_some() {
        return Err(
            "`is` goes with `segment`; `older_than` and `newer_than` with `computed`".into(),
        );
    }
    Ok(None)
}

/// Whether a journey's segments or computed-trait conditions need events named `name` (the
/// backtest skips the others).
pub fn looks_at(j: &Journey, name: &str) -> bool {
    uses_computed(j)
        || j.segments
            .iter()
            .flat_map(|s| &s.criteria)
            .any(|c| match c {
                Criterion::Events(e) => e.event.as_deref().is_none_or(|n| n == name),
                Criterion::Condition(_) => false,
            })
}

/// Whether the journey tests a computed trait (then every event counts).
pub fn uses_computed(j: &Journey) -> bool {
    let branches = j.steps.iter().flat_map(|s| match &s.kind {
        StepKind::Branch { conditions, .. } => conditions.as_slice(),
        _ => &[],
    });
    let criteria = j
        .segments
        .iter()
        .flat_map(|s| &s.criteria)
        .filter_map(|c| match c {
            Criterion::Condition(c) => Some(c),
            Criterion::Events(_) => None,
        });
    branches
        .chain(criteria)
        .any(|c| matches!(c, Condition::Computed { .. }))
}

/// The traits a journey's segments test (the engine keeps only traits some journey reads).
pub(crate) fn traits_of(j: &Journey) -> impl Iterator<Item = &str> {
    j.segments
        .iter()
        .flat_map(|s| &s.criteria)
        .filter_map(|c| match c {
            Criterion::Condition(Condition::Trait { name, .. }) => Some(name.as_str()),
            _ => None,
        })
}

// ---- per-customer state ----

/// The computed traits of one customer, from the events the engine saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Computed {
    pub event_count: u64,
    pub total_revenue: f64,
    /// Index into the tracker's channel names.
    last_channel: Option<u32>,
    pub first_seen: Option<Micros>,
    pub last_seen: Option<Micros>,
}

impl Computed {
    fn observe(&mut self, facts: EventFacts<'_>, channel: Option<u32>, at: Micros) {
        self.event_count += 1;
        if let Some(v) = facts.value.filter(|v| v.is_finite()) {
            self.total_revenue += v;
        }
        if channel.is_some() {
            self.last_channel = channel;
        }
        self.first_seen.get_or_insert(at);
        self.last_seen = Some(at);
    }

    fn time(&self, name: ComputedTrait) -> Option<Micros> {
        match name {
            ComputedTrait::FirstSeen => self.first_seen,
            ComputedTrait::LastSeen => self.last_seen,
            _ => None,
        }
    }
}

fn computed_holds(
    c: Option<&Computed>,
    channels: &[Box<str>],
    name: ComputedTrait,
    test: &ComputedTest,
    now: Micros,
) -> bool {
    match test {
        ComputedTest::OlderThan(d) => c.and_then(|c| c.time(name)).is_some_and(|t| now - t >= *d),
        ComputedTest::NewerThan(d) => c.and_then(|c| c.time(name)).is_some_and(|t| now - t < *d),
        ComputedTest::Value(test) => {
            let value = c.and_then(|c| match name {
                ComputedTrait::EventCount => Some(Value::from(c.event_count)),
                ComputedTrait::TotalRevenue => Some(Value::from(c.total_revenue)),
                ComputedTrait::LastChannel => {
                    c.last_channel.map(|i| Value::from(&*channels[i as usize]))
                }
                ComputedTrait::FirstSeen => c.first_seen.map(Value::from),
                ComputedTrait::LastSeen => c.last_seen.map(Value::from),
            });
            test.check(value.as_ref())
        }
    }
}

/// When a time test on `t` changes its answer: at `t + d`, if that is still ahead.
fn computed_change(
    c: Option<&Computed>,
    name: ComputedTrait,
    test: &ComputedTest,
    now: Micros,
) -> Option<Micros> {
    let d = match test {
        ComputedTest::OlderThan(d) | ComputedTest::NewerThan(d) => *d,
        ComputedTest::Value(_) => return None,
    };
    let at = c?.time(name)?.checked_add(d)?;
    (at > now).then_some(at)
}

#[derive(Debug, Default)]
struct State {
    /// Per event criterion (tracker order): the latest matching times, oldest first; at most
    /// `at_least` of them, and none that left the window.
    times: Vec<Vec<Micros>>,
    /// Per segment (tracker order): a member as of the last evaluation.
    members: Vec<bool>,
    computed: Option<Box<Computed>>,
    /// The pending segment timer; `(0, 0)` for none.
    timer: (Micros, u64),
}

impl State {
    fn is_empty(&self) -> bool {
        self.computed.is_none()
            && self.timer == NO_TIMER
            && !self.members.iter().any(|m| *m)
            && self.times.iter().all(Vec::is_empty)
    }
}

const NO_TIMER: (Micros, u64) = (0, 0);

/// Set in a timer's sequence number when the timer is a segment re-evaluation, not a run's.
pub(crate) const SEGMENT_TIMER: u64 = 1 << 63;

struct Tracked {
    segment: Segment,
    /// Index of its first event criterion in `State::times`.
    counter: usize,
}

/// Segment membership and computed traits for every customer; see the module doc.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Every journey's segments, in slot order.
    segments: Vec<Tracked>,
    /// Per journey slot: the index of its first segment.
    first: Vec<usize>,
    /// Event criteria over all segments.
    counters: usize,
    /// (slot, segment index, edge) of every segment entry.
    entries: Vec<(usize, usize, Edge)>,
    computed: bool,
    /// Some criterion counts any event.
    any_event: bool,
    names: HashSet<String>,
    channels: Vec<Box<str>>,
    states: HashMap<u32, State>,
}

/// A crossing: (segment index, entered?).
pub(crate) type Move = (usize, bool);

/// Where a branch evaluates `segment` and `computed` conditions: customer `c` in journey
/// `slot` at time `at`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) tracker: &'a Tracker,
    pub(crate) c: u32,
    pub(crate) slot: usize,
    pub(crate) at: Micros,
}

impl View<'_> {
    pub(crate) fn holds(self, condition: &Condition, who: Who<'_>) -> bool {
        let t = self.tracker;
        let st = t.states.get(&self.c);
        match condition {
            Condition::Computed { name, test } => computed_holds(
                st.and_then(|s| s.computed.as_deref()),
                &t.channels,
                *name,
                test,
                self.at,
            ),
            Condition::Segment { name, is } => t
                .find(self.slot, name)
                .is_some_and(|g| t.member(g, st, who, self.at) == *is),
            _ => false,
        }
    }
}

impl Tracker {
    pub(crate) fn add_journey(&mut self, j: &Journey, slot: usize) {
        debug_assert_eq!(slot, self.first.len());
        self.first.push(self.segments.len());
        self.computed |= uses_computed(j);
        for s in &j.segments {
            let mut n = 0;
            for c in &s.criteria {
                if let Criterion::Events(e) = c {
                    n += 1;
                    match &e.event {
                        Some(name) => {
                            self.names.insert(name.clone());
                        }
                        None => self.any_event = true,
                    }
                    // A `did_not` holds for a customer first seen on any event.
                    self.any_event |= e.negate;
                }
            }
            if let Some(e) = &j.entry.segment
                && e.segment == s.name
            {
                self.entries.push((slot, self.segments.len(), e.on));
            }
            self.segments.push(Tracked {
                segment: s.clone(),
                counter: self.counters,
            });
            self.counters += n;
        }
    }

    /// Whether anything is tracked: without segments or computed traits the engine pays
    /// nothing for this module.
    pub(crate) fn active(&self) -> bool {
        self.computed || !self.segments.is_empty()
    }

    /// Whether an event of this name changes some customer's state here.
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.active()
            && !name.is_empty()
            && (self.computed || self.any_event || self.names.contains(name))
    }

    /// The journey slots a crossing enters.
    pub(crate) fn entering<'a>(&'a self, moves: &'a [Move]) -> impl Iterator<Item = usize> + 'a {
        self.entries.iter().filter_map(move |(slot, g, on)| {
            moves
                .iter()
                .any(|(m, entered)| m == g && *entered == (*on == Edge::Enter))
                .then_some(*slot)
        })
    }

    /// Counts the event (an empty name is a profile change, which counts for nothing but can
    /// change trait criteria) and re-evaluates the customer's segments.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_event(
        &mut self,
        c: u32,
        who: Who<'_>,
        event: &InputEvent<'_>,
        facts: EventFacts<'_>,
        now: Micros,
        timers: &mut BTreeMap<(Micros, u64), u32>,
        next_timer: &mut u64,
    ) -> Vec<Move> {
        let mut st = self.states.remove(&c).unwrap_or_default();
        self.grow(&mut st);
        if !event.name.is_empty() {
            if self.computed {
                let channel = facts.channel.filter(|ch| !ch.is_empty()).map(|ch| {
                    match self.channels.iter().position(|x| **x == *ch) {
                        Some(i) => i as u32,
                        None => {
                            self.channels.push(ch.into());
                            self.channels.len() as u32 - 1
                        }
                    }
                });
                st.computed
                    .get_or_insert_default()
                    .observe(facts, channel, now);
            }
            for t in &self.segments {
                let mut k = t.counter;
                for c in &t.segment.criteria {
                    let Criterion::Events(e) = c else { continue };
                    if e.event.as_deref().is_none_or(|n| n == event.name)
                        && conditions_hold(&e.conditions, None, event.properties)
                    {
                        let times = &mut st.times[k];
                        times.push(now);
                        if times.len() > e.at_least as usize {
                            times.remove(0);
                        }
                    }
                    k += 1;
                }
            }
        }
        self.settle(c, st, who, now, timers, next_timer)
    }

    /// The customer's segment timer fired at `due`.
    pub(crate) fn on_timer(
        &mut self,
        c: u32,
        who: Who<'_>,
        due: Micros,
        timers: &mut BTreeMap<(Micros, u64), u32>,
        next_timer: &mut u64,
    ) -> Vec<Move> {
        let Some(mut st) = self.states.remove(&c) else {
            debug_assert!(false, "a segment timer outlived its state");
            return Vec::new();
        };
        st.timer = NO_TIMER;
        self.grow(&mut st);
        self.settle(c, st, who, due, timers, next_timer)
    }

    /// Room for segments of journeys added since the state was made.
    fn grow(&self, st: &mut State) {
        if st.times.len() < self.counters {
            st.times.resize_with(self.counters, Vec::new);
        }
        if st.members.len() < self.segments.len() {
            st.members.resize(self.segments.len(), false);
        }
    }

    /// Drops times that left their window, re-evaluates every segment, sets the timer for
    /// the next instant time alone can change a criterion, and keeps the state if it is not
    /// empty.
    fn settle(
        &mut self,
        c: u32,
        mut st: State,
        who: Who<'_>,
        now: Micros,
        timers: &mut BTreeMap<(Micros, u64), u32>,
        next_timer: &mut u64,
    ) -> Vec<Move> {
        let mut moves = Vec::new();
        let mut next: Option<Micros> = None;
        // Only instants ahead of now: a timer due now would fire again at once.
        let mut soonest = |at: Micros| {
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for (g, t) in self.segments.iter().enumerate() {
            let mut k = t.counter;
            for crit in &t.segment.criteria {
                match crit {
                    Criterion::Events(e) => {
                        let times = &mut st.times[k];
                        if let Some(w) = e.within {
                            times.retain(|t| t + w > now);
                            if times.len() >= e.at_least as usize {
                                // Holds until the oldest counted time leaves the window.
                                soonest(times[times.len() - e.at_least as usize] + w);
                            }
                        }
                        if times.is_empty() && times.capacity() > 0 {
                            *times = Vec::new();
                        }
                        k += 1;
                    }
                    Criterion::Condition(Condition::Computed { name, test }) => {
                        if let Some(at) = computed_change(st.computed.as_deref(), *name, test, now)
                        {
                            soonest(at);
                        }
                    }
                    Criterion::Condition(_) => {}
                }
            }
            let member = self.member(g, Some(&st), who, now);
            if member != st.members[g] {
                st.members[g] = member;
                moves.push((g, member));
            }
        }
        let current = (st.timer != NO_TIMER).then_some(st.timer.0);
        if next != current {
            if st.timer != NO_TIMER {
                timers.remove(&st.timer);
            }
            st.timer = NO_TIMER;
            if let Some(at) = next {
                let key = (at, *next_timer | SEGMENT_TIMER);
                *next_timer += 1;
                timers.insert(key, c);
                st.timer = key;
            }
        }
        if !st.is_empty() {
            self.states.insert(c, st);
        }
        moves
    }

    /// Whether the customer with state `st` is in segment `g` at `now`, from the state alone
    /// (times out of the window do not count, whether or not they were dropped yet).
    fn member(&self, g: usize, st: Option<&State>, who: Who<'_>, now: Micros) -> bool {
        let t = &self.segments[g];
        let mut k = t.counter;
        let mut results = t.segment.criteria.iter().map(|crit| match crit {
            Criterion::Events(e) => {
                let times = st
                    .and_then(|s| s.times.get(k))
                    .map_or(&[][..], Vec::as_slice);
                k += 1;
                let n = match e.within {
                    Some(w) => times.iter().filter(|t| **t + w > now).count(),
                    None => times.len(),
                };
                (n >= e.at_least as usize) != e.negate
            }
            Criterion::Condition(Condition::Computed { name, test }) => computed_holds(
                st.and_then(|s| s.computed.as_deref()),
                &self.channels,
                *name,
                test,
                now,
            ),
            Criterion::Condition(cond) => {
                conditions_hold(std::slice::from_ref(cond), Some(who), &Map::new())
            }
        });
        if t.segment.any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }

    pub(crate) fn customers(&self) -> usize {
        self.states.len()
    }

    /// The segment of journey `slot` named `name`.
    fn find(&self, slot: usize, name: &str) -> Option<usize> {
        let end = self
            .first
            .get(slot + 1)
            .copied()
            .unwrap_or(self.segments.len());
        (*self.first.get(slot)?..end).find(|g| self.segments[*g].segment.name == name)
    }

    /// Membership as of the customer's last evaluation.
    pub(crate) fn stored_member(&self, c: u32, slot: usize, name: &str) -> bool {
        self.find(slot, name).is_some_and(|g| {
            self.states
                .get(&c)
                .is_some_and(|s| s.members.get(g).copied().unwrap_or(false))
        })
    }
}
