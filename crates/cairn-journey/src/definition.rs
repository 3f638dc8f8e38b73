//! The journey definition: YAML in, a validated [`Journey`] out.
//!
//! Parsing happens in two passes. serde (through `serde-saphyr`) turns the text into `Raw*`
//! structs that keep the source location of every name a later check may complain about
//! (`Spanned`); [`Journey::from_yaml`] then resolves step references to indexes and checks
//! what serde cannot (unknown or duplicate step ids, split percentages, durations, times), so
//! every error says line, column and reason. The engine only ever sees the resolved form.

use std::collections::HashMap;

use cairn_model::Micros;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::{Location, Spanned};

use crate::schedule::Cron;
use crate::segment::{ComputedTest, ComputedTrait, Segment, SegmentEntry};

/// A definition that cannot be used, with where in the file and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct DefinitionError {
    pub line: u64,
    pub column: u64,
    pub reason: String,
}

impl DefinitionError {
    pub(crate) fn at(loc: Location, reason: impl Into<String>) -> DefinitionError {
        DefinitionError {
            line: loc.line(),
            column: loc.column(),
            reason: reason.into(),
        }
    }
}

/// A validated journey. Steps refer to each other by index into `steps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub id: String,
    /// A customer finishes the version they entered; a new version is a new definition.
    pub version: u32,
    pub name: Option<String>,
    pub entry: Entry,
    pub goal: Option<Goal>,
    /// Events that end an entry's steps wherever it is (an unsubscribe, a support ticket, a
    /// purchase made elsewhere); the goal window, if any, is still measured.
    pub exit_on: Vec<ExitOn>,
    pub frequency_cap: Option<FrequencyCap>,
    pub steps: Vec<Step>,
    /// Behavioural segments, by name (sorted), for a segment entry and `segment` conditions.
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitOn {
    pub event: String,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The event that enters a customer; for an API entry, [`API_ENTRY_EVENT`]; empty for a
    /// schedule (see [`Entry::event_name`]).
    pub event: String,
    /// Conditions on the entry event's properties and on the customer's traits and consent
    /// (a schedule has no event: only traits and consent).
    pub conditions: Vec<Condition>,
    pub reentry: Reentry,
    /// At most this many entries per customer (into this version), whatever the re-entry
    /// policy allows.
    pub max_entries: Option<u32>,
    /// Entry on entering or leaving a segment instead of on an event (`event` is then empty).
    pub segment: Option<SegmentEntry>,
    /// What enters a customer: `event` (the default), a request to the API, a schedule, or
    /// a segment crossing (then `segment` says which).
    pub on: EntryOn,
}

/// The event `POST /v1/journeys/{id}/entries` appends, with the journey id in its `journey`
/// property: an API entry is an entry on this event (the log stays the only input).
pub const API_ENTRY_EVENT: &str = "journey_entry_requested";

#[derive(Debug, Clone, PartialEq)]
pub enum EntryOn {
    /// `entry: {event: NAME}`.
    Event,
    /// `entry: {api: true}`: an [`API_ENTRY_EVENT`] naming this journey.
    Api,
    /// `entry: {schedule: {cron: "0 9 * * 1"}}`, in each customer's timezone (see
    /// [`crate::schedule`]).
    Schedule(Cron),
    /// `entry: {segment: NAME, on: enter|leave}` (see [`Entry::segment`]).
    Segment,
}

impl Entry {
    /// The event whose arrival may enter a customer; `None` for a schedule.
    pub fn event_name(&self) -> Option<&str> {
        match self.on {
            EntryOn::Schedule(_) | EntryOn::Segment => None,
            EntryOn::Event | EntryOn::Api => Some(&self.event),
        }
    }
}

/// When a customer who entered before may enter again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentry {
    /// Once per customer, ever.
    Never,
    /// Again once the previous entry has ended (steps done and goal window closed): YAML
    /// `when_exited`, or `always` (one entry at a time per customer and version).
    WhenExited,
    /// Again once the previous entry has ended and this long has passed since it began.
    After(Micros),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub event: String,
    pub conditions: Vec<Condition>,
    /// The goal counts when it happens within this long of entry.
    pub within: Micros,
}

/// At most `messages` messages per customer in any window of `per`, across all journeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    pub messages: u32,
    pub per: Micros,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Wait a fixed time.
    Wait {
        duration: Micros,
        next: usize,
    },
    /// Wait until the next time the customer's local clock shows `minute` (minutes after
    /// midnight, in their `timezone` trait, UTC without one); no wait when it shows it now.
    WaitUntil {
        minute: u16,
        next: usize,
    },
    /// Wait for an event, at most `timeout`; two exits.
    WaitFor {
        event: String,
        conditions: Vec<Condition>,
        timeout: Micros,
        happened: usize,
        timed_out: usize,
    },
    /// All conditions true: `then`, else `otherwise`.
    Branch {
        conditions: Vec<Condition>,
        then: usize,
        otherwise: usize,
    },
    /// Sticky random split: a hash of (customer, journey id) picks the arm.
    Split {
        arms: Vec<Arm>,
    },
    Send {
        channel: Channel,
        template: String,
        /// Consent category: the message goes out only with consent `true` for it.
        category: Option<String>,
        quiet_hours: Option<QuietHours>,
        next: usize,
    },
    SetTraits {
        traits: Map<String, Value>,
        next: usize,
    },
    Emit {
        event: String,
        properties: Map<String, Value>,
        next: usize,
    },
    Exit {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    /// Share in basis points (1/100 of a percent); arms sum to 10,000.
    pub basis_points: u32,
    /// Held-out customers walk the same steps but are sent nothing, so they can be measured.
    pub holdout: bool,
    pub next: usize,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }
}

/// Local times, in minutes after midnight, between which nothing is sent; `start > end` wraps
/// over midnight (21:00–08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: u16,
    pub end: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Trait {
        name: String,
        test: Test,
    },
    Property {
        name: String,
        test: Test,
    },
    /// Recorded consent `true` for the category.
    Consent {
        category: String,
    },
    /// Membership of one of the journey's segments is `is`.
    Segment {
        name: String,
        is: bool,
    },
    /// A computed trait the engine keeps from the events it sees (see [`crate::segment`]).
    Computed {
        name: ComputedTrait,
        test: ComputedTest,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Exists(bool),
    Equals(Value),
    NotEquals(Value),
    Gt(f64),
    Lt(f64),
}

impl Test {
    pub fn check(&self, v: Option<&Value>) -> bool {
        let v = v.filter(|v| !v.is_null());
        match self {
            Test::Exists(want) => v.is_some() == *want,
            Test::Equals(x) => v == Some(x),
            Test::NotEquals(x) => v != Some(x),
            Test::Gt(x) => v.and_then(Value::as_f64).is_some_and(|v| v > *x),
            Test::Lt(x) => v.and_then(Value::as_f64).is_some_and(|v| v < *x),
        }
    }
}

// ---- the YAML shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJourney {
    id: Spanned<String>,
    version: u32,
    #[serde(default)]
    name: Option<String>,
    entry: Spanned<RawEntry>,
    #[serde(default)]
    goal: Option<RawGoal>,
    #[serde(default)]
    exit_on: Vec<RawExitOn>,
    #[serde(default)]
    frequency_cap: Option<RawCap>,
    steps: Spanned<Vec<RawStep>>,
    #[serde(default)]
    segments: std::collections::BTreeMap<String, Spanned<crate::segment::RawSegment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExitOn {
    event: String,
    #[serde(default, rename = "where")]
    conditions: Vec<Spanned<RawCondition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    event: Option<String>,
    #[serde(default, rename = "where")]
    conditions: Vec<Spanned<RawCondition>>,
    #[serde(default)]
    reentry: Option<Spanned<String>>,
    #[serde(default)]
    max_entries: Option<Spanned<u32>>,
    #[serde(default)]
    segment: Option<Spanned<String>>,
    /// `enter` or `leave`, with `segment`.
    #[serde(default)]
    on: Option<Spanned<String>>,
    #[serde(default)]
    api: Option<Spanned<bool>>,
    #[serde(default)]
    schedule: Option<RawSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    event: String,
    #[serde(default, rename = "where")]
    conditions: Vec<Spanned<RawCondition>>,
    within: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    messages: u32,
    per: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    #[serde(default)]
    wait: Option<RawWait>,
    #[serde(default)]
    branch: Option<RawBranch>,
    #[serde(default)]
    split: Option<Spanned<Vec<RawArm>>>,
    #[serde(default)]
    send: Option<RawSend>,
    #[serde(default)]
    set_traits: Option<Map<String, Value>>,
    #[serde(default)]
    emit: Option<RawEmit>,
    #[serde(default)]
    exit: Option<String>,
    #[serde(default)]
    next: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    #[serde(default)]
    duration: Option<Spanned<String>>,
    #[serde(default)]
    event: Option<Spanned<String>>,
    /// A local time of day, HH:MM.
    #[serde(default)]
    until: Option<Spanned<String>>,
    #[serde(default, rename = "where")]
    conditions: Vec<Spanned<RawCondition>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    happened: Option<Spanned<String>>,
    #[serde(default)]
    timed_out: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    #[serde(rename = "if")]
    conditions: Vec<Spanned<RawCondition>>,
    then: Spanned<String>,
    #[serde(rename = "else")]
    otherwise: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    arm: Spanned<String>,
    percent: f64,
    #[serde(default)]
    holdout: bool,
    #[serde(default)]
    next: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSend {
    channel: Channel,
    template: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    quiet_hours: Option<RawQuiet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuiet {
    start: Spanned<String>,
    end: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmit {
    event: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCondition {
    #[serde(default, rename = "trait")]
    pub(crate) trait_name: Option<String>,
    #[serde(default)]
    pub(crate) property: Option<String>,
    #[serde(default)]
    pub(crate) consent: Option<String>,
    #[serde(default)]
    pub(crate) exists: Option<bool>,
    #[serde(default)]
    pub(crate) equals: Option<Value>,
    #[serde(default)]
    pub(crate) not_equals: Option<Value>,
    #[serde(default)]
    pub(crate) gt: Option<f64>,
    #[serde(default)]
    pub(crate) lt: Option<f64>,
    // Segment criteria and computed traits (see `crate::segment`).
    #[serde(default)]
    pub(crate) computed: Option<String>,
    #[serde(default)]
    pub(crate) segment: Option<String>,
    #[serde(default)]
    pub(crate) is: Option<bool>,
    #[serde(default)]
    pub(crate) older_than: Option<String>,
    #[serde(default)]
    pub(crate) newer_than: Option<String>,
    #[serde(default)]
    pub(crate) did: Option<String>,
    #[serde(default)]
    pub(crate) did_not: Option<String>,
    #[serde(default, rename = "where")]
    pub(crate) conditions: Vec<Spanned<RawCondition>>,
    #[serde(default)]
    pub(crate) at_least: Option<u32>,
    #[serde(default)]
    pub(crate) within: Option<String>,
}

impl Journey {
    /// Parses and validates a YAML definition.
    pub fn from_yaml(text: &str) -> Result<Journey, DefinitionError> {
        let raw: RawJourney = serde_saphyr::from_str(text).map_err(|e| {
            let loc = e.location().unwrap_or(Location::UNKNOWN);
            DefinitionError::at(loc, first_line(&e.to_string()))
        })?;
        resolve(raw)
    }

    /// Parses and validates a definition sent as JSON (the API's form): the same structure
    /// as the YAML. JSON is YAML's flow syntax, so after a strict JSON syntax check (whose
    /// errors say where) the YAML parser reads it, and every error gives the line and column
    /// of the JSON text.
    pub fn from_json(text: &str) -> Result<Journey, DefinitionError> {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(DefinitionError {
                line: e.line() as u64,
                column: e.column() as u64,
                reason: format!("not valid JSON: {}", json_reason(&e)),
            });
        }
        if !text.trim_start().starts_with('{') {
            return Err(DefinitionError {
                line: 1,
                column: 1,
                reason: "a journey definition is a JSON object".to_string(),
            });
        }
        Journey::from_yaml(text)
    }

    /// The idempotency-key prefix and display name: `id@version`.
    pub fn versioned_id(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// The index of a step by id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// The holdout arm's bucket range, when some split has one: customers hashing into it are
    /// held out. Known at entry, so goals can be compared for every entrant (intent to treat).
    pub fn holdout_range(&self) -> Option<std::ops::Range<u32>> {
        self.steps.iter().find_map(|s| match &s.kind {
            StepKind::Split { arms } => {
                let mut from = 0;
                for a in arms {
                    if a.holdout {
                        return Some(from..from + a.basis_points);
                    }
                    from += a.basis_points;
                }
                None
            }
            _ => None,
        })
    }
}

/// serde_json's message without its trailing " at line L column C" (reported separately).
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rsplit_once(" at line ") {
        Some((reason, _)) => reason.to_string(),
        None => s,
    }
}

/// serde-saphyr's message may carry a rendered snippet after the first line; the location is
/// reported separately.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // It also repeats the location ("error: line 6 column 17: ..."): said once is enough.
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((at, reason)) if at.contains(" column ") => reason.to_string(),
        _ => line.to_string(),
    }
}

fn resolve(raw: RawJourney) -> Result<Journey, DefinitionError> {
    if raw.id.value.is_empty() || raw.id.value.contains(['@', '/', ' ']) {
        return Err(DefinitionError::at(
            raw.id.referenced,
            "journey id must be non-empty, without '@', '/' or spaces",
        ));
    }
    let mut index = HashMap::new();
    for (i, s) in raw.steps.value.iter().enumerate() {
        if index.insert(s.id.value.clone(), i).is_some() {
            return Err(DefinitionError::at(
                s.id.referenced,
                format!("duplicate step id {:?}", s.id.value),
            ));
        }
    }
    if raw.steps.value.is_empty() {
        return Err(DefinitionError::at(
            raw.steps.referenced,
            "a journey needs at least one step",
        ));
    }
    let lookup = |r: &Spanned<String>| {
        index.get(&r.value).copied().ok_or_else(|| {
            DefinitionError::at(r.referenced, format!("no step with id {:?}", r.value))
        })
    };
    let n = raw.steps.value.len();
    let mut steps = Vec::with_capacity(n);
    for (i, s) in raw.steps.value.iter().enumerate() {
        // Without `next`, a step continues with the one below it.
        let next = |field: Option<&Spanned<String>>| match field {
            Some(r) => lookup(r),
            None if i + 1 < n => Ok(i + 1),
            None => Err(DefinitionError::at(
                s.id.referenced,
                format!(
                    "step {:?} is the last one: it needs a `next` or must be an `exit`",
                    s.id.value
                ),
            )),
        };
        let kinds = [
            s.wait.is_some(),
            s.branch.is_some(),
            s.split.is_some(),
            s.send.is_some(),
            s.set_traits.is_some(),
            s.emit.is_some(),
            s.exit.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(DefinitionError::at(
                s.id.referenced,
                format!(
                    "step {:?} must have exactly one of wait, branch, split, send, set_traits, emit, exit",
                    s.id.value
                ),
            ));
        }
        let kind = if let Some(w) = &s.wait {
            match (&w.duration, &w.event, &w.until) {
                (None, None, Some(u)) => {
                    if w.timeout.is_some() || w.happened.is_some() || w.timed_out.is_some() {
                        return Err(DefinitionError::at(
                            u.referenced,
                            "a wait until a time of day has no timeout, happened or timed_out: use `next`",
                        ));
                    }
                    StepKind::WaitUntil {
                        minute: clock(u)?,
                        next: next(s.next.as_ref())?,
                    }
                }
                (Some(d), None, None) => {
                    if w.timeout.is_some() || w.happened.is_some() || w.timed_out.is_some() {
                        return Err(DefinitionError::at(
                            d.referenced,
                            "a wait for a duration has no timeout, happened or timed_out: use `next`",
                        ));
                    }
                    StepKind::Wait {
                        duration: duration(d)?,
                        next: next(s.next.as_ref())?,
                    }
                }
                (None, Some(ev), None) => {
                    let timeout = w.timeout.as_ref().ok_or_else(|| {
                        DefinitionError::at(ev.referenced, "a wait for an event needs a `timeout`")
                    })?;
                    if let Some(n) = &s.next {
                        return Err(DefinitionError::at(
                            n.referenced,
                            "a wait for an event exits by `happened` and `timed_out`, not `next`",
                        ));
                    }
                    StepKind::WaitFor {
                        event: ev.value.clone(),
                        conditions: conditions(&w.conditions)?,
                        timeout: duration(timeout)?,
                        happened: next(w.happened.as_ref())?,
                        timed_out: next(w.timed_out.as_ref())?,
                    }
                }
                _ => {
                    return Err(DefinitionError::at(
                        s.id.referenced,
                        "a wait needs exactly one of `duration`, `until` or `event`",
                    ));
                }
            }
        } else if let Some(b) = &s.branch {
            StepKind::Branch {
                conditions: conditions(&b.conditions)?,
                then: lookup(&b.then)?,
                otherwise: lookup(&b.otherwise)?,
            }
        } else if let Some(arms) = &s.split {
            let mut out = Vec::new();
            let mut total = 0u32;
            for a in &arms.value {
                if !(a.percent > 0.0 && a.percent <= 100.0) {
                    return Err(DefinitionError::at(
                        a.arm.referenced,
                        format!("arm {:?}: percent must be in (0, 100]", a.arm.value),
                    ));
                }
                let bp = (a.percent * 100.0).round() as u32;
                total += bp;
                out.push(Arm {
                    name: a.arm.value.clone(),
                    basis_points: bp,
                    holdout: a.holdout,
                    next: next(a.next.as_ref().or(s.next.as_ref()))?,
                });
            }
            if total != 10_000 {
                return Err(DefinitionError::at(
                    arms.referenced,
                    format!(
                        "split percentages add up to {}, not 100",
                        total as f64 / 100.0
                    ),
                ));
            }
            if out.iter().filter(|a| a.holdout).count() > 1 {
                return Err(DefinitionError::at(
                    arms.referenced,
                    "at most one arm can be the holdout",
                ));
            }
            StepKind::Split { arms: out }
        } else if let Some(send) = &s.send {
            let quiet_hours = match &send.quiet_hours {
                None => None,
                Some(q) => Some(QuietHours {
                    start: clock(&q.start)?,
                    end: clock(&q.end)?,
                }),
            };
            StepKind::Send {
                channel: send.channel,
                template: send.template.clone(),
                category: send.category.clone(),
                quiet_hours,
                next: next(s.next.as_ref())?,
            }
        } else if let Some(t) = &s.set_traits {
            StepKind::SetTraits {
                traits: t.clone(),
                next: next(s.next.as_ref())?,
            }
        } else if let Some(e) = &s.emit {
            StepKind::Emit {
                event: e.event.clone(),
                properties: e.properties.clone(),
                next: next(s.next.as_ref())?,
            }
        } else {
            StepKind::Exit {
                reason: s.exit.clone().unwrap_or_default(),
            }
        };
        steps.push(Step {
            id: s.id.value.clone(),
            kind,
        });
    }
    let segments = crate::segment::resolve(&raw.segments)?;
    check_segment_conditions(&raw, &segments)?;
    let (event, on, mut entry_conditions) = entry_on(&raw.id.value, &raw.entry)?;
    let entry_segment = entry_segment(&raw.entry, &segments)?;
    let raw_entry = raw.entry.value;
    let reentry = match &raw_entry.reentry {
        None => Reentry::WhenExited,
        Some(r) => match r.value.as_str() {
            "never" => Reentry::Never,
            "when_exited" | "always" => Reentry::WhenExited,
            v => match v.strip_prefix("after ") {
                Some(d) => Reentry::After(parse_duration(d.trim()).ok_or_else(|| {
                    DefinitionError::at(r.referenced, format!("bad duration {d:?}"))
                })?),
                None => {
                    return Err(DefinitionError::at(
                        r.referenced,
                        format!(
                            "reentry must be `never`, `always` (= `when_exited`) or `after DURATION`, not {v:?}"
                        ),
                    ));
                }
            },
        },
    };
    if let Some(m) = &raw_entry.max_entries
        && m.value == 0
    {
        return Err(DefinitionError::at(
            m.referenced,
            "max_entries must be at least 1 (to stop entries, pause the journey)",
        ));
    }
    Ok(Journey {
        id: raw.id.value,
        version: raw.version,
        name: raw.name,
        entry: Entry {
            event,
            conditions: {
                entry_conditions.extend(conditions(&raw_entry.conditions)?);
                entry_conditions
            },
            reentry,
            max_entries: raw_entry.max_entries.map(|m| m.value),
            segment: entry_segment,
            on,
        },
        goal: match raw.goal {
            None => None,
            Some(g) => Some(Goal {
                event: g.event,
                conditions: conditions(&g.conditions)?,
                within: duration(&g.within)?,
            }),
        },
        exit_on: raw
            .exit_on
            .iter()
            .map(|x| {
                Ok(ExitOn {
                    event: x.event.clone(),
                    conditions: conditions(&x.conditions)?,
                })
            })
            .collect::<Result<_, DefinitionError>>()?,
        frequency_cap: match raw.frequency_cap {
            None => None,
            Some(c) => Some(FrequencyCap {
                messages: c.messages,
                per: duration(&c.per)?,
            }),
        },
        steps,
        segments,
    })
}

/// The segment an entry enters on, if it is a segment entry (`entry_on` checked that it is
/// the only kind given): a segment of the journey, `on: enter` or `on: leave`, and no `where`.
fn entry_segment(
    e: &Spanned<RawEntry>,
    segments: &[Segment],
) -> Result<Option<SegmentEntry>, DefinitionError> {
    let r = &e.value;
    let Some(name) = &r.segment else {
        return match &r.on {
            Some(on) => Err(DefinitionError::at(
                on.referenced,
                "`on` goes with a `segment` entry",
            )),
            None => Ok(None),
        };
    };
    if !segments.iter().any(|s| s.name == name.value) {
        return Err(DefinitionError::at(
            name.referenced,
            format!("no segment named {:?} under `segments`", name.value),
        ));
    }
    if let Some(c) = r.conditions.first() {
        return Err(DefinitionError::at(
            c.referenced,
            "a segment entry has no `where`: put the conditions in the segment",
        ));
    }
    let on = r.on.as_ref().ok_or_else(|| {
        DefinitionError::at(
            name.referenced,
            "a segment entry needs `on: enter` or `on: leave`",
        )
    })?;
    let on = crate::segment::Edge::parse(&on.value)
        .ok_or_else(|| DefinitionError::at(on.referenced, "`on` is `enter` or `leave`"))?;
    Ok(Some(SegmentEntry {
        segment: name.value.clone(),
        on,
    }))
}

/// `segment` and `computed` conditions are for branches (they are about the customer, not an
/// event), and a `segment` condition names a segment of the journey.
fn check_segment_conditions(raw: &RawJourney, segments: &[Segment]) -> Result<(), DefinitionError> {
    let event_conditions = raw
        .entry
        .value
        .conditions
        .iter()
        .chain(raw.goal.iter().flat_map(|g| &g.conditions))
        .chain(raw.exit_on.iter().flat_map(|x| &x.conditions))
        .chain(
            raw.steps
                .value
                .iter()
                .filter_map(|s| s.wait.as_ref())
                .flat_map(|w| &w.conditions),
        );
    for c in event_conditions {
        if c.value.segment.is_some() || c.value.computed.is_some() {
            return Err(DefinitionError::at(
                c.referenced,
                "`segment` and `computed` conditions are about the customer: use them in a branch or a segment",
            ));
        }
    }
    let branch_conditions = raw
        .steps
        .value
        .iter()
        .filter_map(|s| s.branch.as_ref())
        .flat_map(|b| &b.conditions);
    for c in branch_conditions {
        if let Some(name) = &c.value.segment
            && !segments.iter().any(|s| &s.name == name)
        {
            return Err(DefinitionError::at(
                c.referenced,
                format!("no segment named {name:?} under `segments`"),
            ));
        }
    }
    Ok(())
}

/// What enters a customer: exactly one of `event`, `api: true`, `schedule` and `segment`
/// (see [`entry_segment`] for the last). An API entry
/// is an entry on [`API_ENTRY_EVENT`] with this journey's id in its `journey` property (the
/// condition returned first).
fn entry_on(
    id: &str,
    entry: &Spanned<RawEntry>,
) -> Result<(String, EntryOn, Vec<Condition>), DefinitionError> {
    let e = &entry.value;
    let given = [
        e.event.is_some(),
        e.api.is_some(),
        e.schedule.is_some(),
        e.segment.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(DefinitionError::at(
            entry.referenced,
            "an entry needs exactly one of `event`, `api: true`, `schedule: {cron: ...}` or `segment`",
        ));
    }
    if e.segment.is_some() {
        return Ok((String::new(), EntryOn::Segment, Vec::new()));
    }
    if let Some(api) = &e.api {
        if !api.value {
            return Err(DefinitionError::at(
                api.referenced,
                "`api: false` enters no one: write `api: true`, or use `event` or `schedule`",
            ));
        }
        let journey = Condition::Property {
            name: "journey".to_string(),
            test: Test::Equals(Value::String(id.to_string())),
        };
        return Ok((API_ENTRY_EVENT.to_string(), EntryOn::Api, vec![journey]));
    }
    if let Some(s) = &e.schedule {
        let cron = Cron::parse(&s.cron.value).map_err(|err| {
            DefinitionError::at(
                s.cron.referenced,
                format!("bad cron expression {:?}: {}", s.cron.value, err.reason),
            )
        })?;
        if let Some(c) = e.conditions.iter().find(|c| c.value.property.is_some()) {
            return Err(DefinitionError::at(
                c.referenced,
                "a schedule has no entry event: its conditions are on traits or consent",
            ));
        }
        return Ok((String::new(), EntryOn::Schedule(cron), Vec::new()));
    }
    Ok((
        e.event.clone().unwrap_or_default(),
        EntryOn::Event,
        Vec::new(),
    ))
}

fn conditions(raw: &[Spanned<RawCondition>]) -> Result<Vec<Condition>, DefinitionError> {
    raw.iter().map(condition).collect()
}

pub(crate) fn condition(c: &Spanned<RawCondition>) -> Result<Condition, DefinitionError> {
    let r = &c.value;
    let err = |reason: &str| DefinitionError::at(c.referenced, reason);
    let tests = [
        r.exists.map(Test::Exists),
        r.equals.clone().map(Test::Equals),
        r.not_equals.clone().map(Test::NotEquals),
        r.gt.map(Test::Gt),
        r.lt.map(Test::Lt),
    ];
    let mut tests: Vec<Test> = tests.into_iter().flatten().collect();
    if let Some(c) = crate::segment::condition(r, &mut tests).map_err(|reason| err(&reason))? {
        return Ok(c);
    }
    match (&r.trait_name, &r.property, &r.consent) {
        (Some(_), None, None) | (None, Some(_), None) => {
            if tests.len() != 1 {
                return Err(err(
                    "a trait or property condition needs exactly one of exists, equals, not_equals, gt, lt",
                ));
            }
            let test = tests.remove(0);
            Ok(match (&r.trait_name, &r.property) {
                (Some(name), _) => Condition::Trait {
                    name: name.clone(),
                    test,
                },
                (_, Some(name)) => Condition::Property {
                    name: name.clone(),
                    test,
                },
                _ => unreachable!("matched above"),
            })
        }
        (None, None, Some(category)) => {
            if !tests.is_empty() {
                return Err(err("a consent condition takes no test"));
            }
            Ok(Condition::Consent {
                category: category.clone(),
            })
        }
        _ => Err(err(
            "a condition needs exactly one of `trait`, `property` or `consent`",
        )),
    }
}

fn duration(s: &Spanned<String>) -> Result<Micros, DefinitionError> {
    parse_duration(&s.value).ok_or_else(|| {
        DefinitionError::at(
            s.referenced,
            format!(
                "bad duration {:?}: write a whole number and a unit, s, m, h or d (90m, 1d)",
                s.value
            ),
        )
    })
}

/// `90s`, `30m`, `1h`, `7d` → microseconds.
pub fn parse_duration(s: &str) -> Option<Micros> {
    let unit = match s.chars().last()? {
        's' => 1_000_000,
        'm' => 60_000_000,
        'h' => 3_600_000_000,
        'd' => 86_400_000_000,
        _ => return None,
    };
    let n: i64 = s[..s.len() - 1].parse().ok()?;
    if n < 0 {
        return None;
    }
    n.checked_mul(unit)
}

fn clock(s: &Spanned<String>) -> Result<u16, DefinitionError> {
    let parsed = s.value.split_once(':').and_then(|(h, m)| {
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && s.value.len() == 5).then_some(h * 60 + m)
    });
    parsed.ok_or_else(|| {
        DefinitionError::at(
            s.referenced,
            format!("bad time of day {:?}: write HH:MM, 00:00 to 23:59", s.value),
        )
    })
}
