//! Live figures of applied journeys, per version and per step, kept by one fold.
//!
//! The runner folds each [`Fact`] as it produces it (journey events from the engine, delivery
//! outcomes from the outbox); `cairn journeys show`, and the HTTP API of a server that runs no
//! journeys, fold the same facts read back from the runner's write-back events in the log
//! ([`Metrics::from_log`]). One function, [`Metrics::observe`], does the counting for both, so
//! they agree; and since a restarted runner replays its journal (see [`crate::runner`]), its
//! rebuilt counters equal those it had before the crash.
//!
//! Engagement a provider reports (a message opened or clicked) arrives as events in the log like
//! any other: a track event `message_opened` or `message_clicked` for the customer, with the
//! properties of the runner's `message_sent` write-back (`journey`, `step`, `key`: copy them
//! into the provider's custom arguments). It is counted once per message (per `key`), however
//! often the provider reports it.
//!
//! Counters: entered, reached (per step), exited, converted, sent, failed, bounced, opened,
//! clicked. Gauges:
//! `waiting` per version (entries not closed: on their steps, or measuring their goal window)
//! and per step (entries whose last step is this one and that neither exited nor closed: at a
//! wait, or at a message held back by quiet hours or the cap). `passed` is derived, reached −
//! waiting − exited, and only grows.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_journey::{JourneyEvent, JourneyEventKind};
use cairn_store::Snapshot;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::WRITEBACK_PREFIX;

/// How a message's delivery ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Refused for good, or given up on after every retry (dead-lettered).
    Failed,
    Bounced,
}

impl Outcome {
    pub fn from_status(s: cairn_channels::outbox::Status) -> Outcome {
        use cairn_channels::outbox::Status;
        match s {
            Status::Sent => Outcome::Sent,
            Status::Bounced => Outcome::Bounced,
            Status::Failed | Status::Dead => Outcome::Failed,
        }
    }
}

/// What a provider reported a customer did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engagement {
    Opened,
    Clicked,
}

impl Engagement {
    /// The event name a report has in the log.
    pub fn event_name(self) -> &'static str {
        match self {
            Engagement::Opened => "message_opened",
            Engagement::Clicked => "message_clicked",
        }
    }

    fn from_event_name(name: &str) -> Option<Engagement> {
        match name {
            "message_opened" => Some(Engagement::Opened),
            "message_clicked" => Some(Engagement::Clicked),
            _ => None,
        }
    }
}

/// One step of progress of one entry (customer × entry number) of a journey version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    Entered,
    Step(&'a str),
    Exited(&'a str),
    Goal,
    Closed,
    Delivery {
        step: &'a str,
        outcome: Outcome,
    },
    /// A provider's report on the message with idempotency key `key`, sent at `step`.
    Engaged {
        step: &'a str,
        key: &'a str,
        engagement: Engagement,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact<'a> {
    /// `id@version`.
    pub journey: &'a str,
    pub customer: &'a str,
    pub entry: u64,
    pub progress: Progress<'a>,
}

impl<'a> Fact<'a> {
    /// The fact an engine event states, if it is one that is counted.
    pub fn from_journey_event(j: &'a JourneyEvent) -> Option<Fact<'a>> {
        let progress = match &j.kind {
            JourneyEventKind::Entered { .. } => Progress::Entered,
            JourneyEventKind::StepReached { step } => Progress::Step(step),
            JourneyEventKind::Exited { step, .. } => Progress::Exited(step),
            JourneyEventKind::GoalReached => Progress::Goal,
            JourneyEventKind::Closed => Progress::Closed,
            JourneyEventKind::SplitArm { .. }
            | JourneyEventKind::Suppressed { .. }
            | JourneyEventKind::Delayed { .. } => return None,
        };
        Some(Fact {
            journey: &j.journey,
            customer: &j.customer,
            entry: u64::from(j.entry),
            progress,
        })
    }

    /// The fact a write-back event in the log states: its name, customer and parsed
    /// properties (as the runner writes them, see `runner::journey_event`).
    pub fn from_writeback(
        name: &str,
        customer: &'a str,
        props: &'a Map<String, Value>,
    ) -> Option<Fact<'a>> {
        let journey = props.get("journey").and_then(Value::as_str)?;
        let step = props.get("step").and_then(Value::as_str);
        let delivery = |outcome| {
            Some(Progress::Delivery {
                step: step?,
                outcome,
            })
        };
        let progress = match name {
            "journey_entered" => Progress::Entered,
            "journey_step" => Progress::Step(step?),
            "journey_exited" => Progress::Exited(step?),
            "journey_goal" => Progress::Goal,
            "journey_closed" => Progress::Closed,
            "message_sent" => delivery(Outcome::Sent)?,
            "message_failed" => delivery(Outcome::Failed)?,
            "message_bounced" => delivery(Outcome::Bounced)?,
            other => return Fact::from_report(other, customer, props),
        };
        Some(Fact {
            journey,
            customer,
            entry: props.get("entry").and_then(Value::as_u64).unwrap_or(0),
            progress,
        })
    }

    /// The fact an engagement report states (`message_opened` / `message_clicked` with the
    /// message's `journey`, `step` and `key`); `None` for any other event.
    pub fn from_report(
        name: &str,
        customer: &'a str,
        props: &'a Map<String, Value>,
    ) -> Option<Fact<'a>> {
        let engagement = Engagement::from_event_name(name)?;
        Some(Fact {
            journey: props.get("journey").and_then(Value::as_str)?,
            customer,
            entry: props.get("entry").and_then(Value::as_u64).unwrap_or(0),
            progress: Progress::Engaged {
                step: props.get("step").and_then(Value::as_str)?,
                key: props.get("key").and_then(Value::as_str)?,
                engagement,
            },
        })
    }
}

/// Figures of one journey version. The field names are those of `cairn journeys show
/// --format json` and `GET /v1/journeys/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionMetrics {
    pub entered: u64,
    pub waiting: u64,
    pub converted: u64,
    pub exited: u64,
    /// Per step id: entries that reached it (the same as `step_metrics[..].reached`).
    pub steps: BTreeMap<String, u64>,
    pub sent: u64,
    pub failed: u64,
    pub bounced: u64,
    /// Messages a provider reported opened / clicked (each message counted once).
    pub opened: u64,
    pub clicked: u64,
    pub step_metrics: BTreeMap<String, StepMetrics>,
}

/// Figures of one step of one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepMetrics {
    pub reached: u64,
    pub waiting: u64,
    pub passed: u64,
    pub exited: u64,
    /// Entries that reached the goal while this was their last step.
    pub converted: u64,
    pub sent: u64,
    pub failed: u64,
    pub opened: u64,
    pub clicked: u64,
}

/// Where one open entry is.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Index into `Metrics::step_names`.
    step: Option<u32>,
    exited: bool,
}

/// The fold's state: figures per version, and where each open entry is (for the gauges).
#[derive(Debug, Default)]
pub struct Metrics {
    versions: BTreeMap<String, VersionMetrics>,
    /// Open entries by customer: (journey index, entry number, where). Keyed by customer
    /// alone so a fact is looked up by `&str`, without allocating; journey and step names are
    /// interned (a million customers may wait at once).
    open: HashMap<Box<str>, Vec<(u32, u64, Open)>>,
    journey_ids: HashMap<String, u32>,
    step_names: Vec<String>,
    step_ids: HashMap<String, u32>,
    /// Messages already counted as opened / clicked, by idempotency key.
    engaged: HashSet<(Engagement, Box<str>)>,
}

impl Metrics {
    /// Starts every named version at zero, so versions nobody entered yet are listed too.
    pub fn with_versions<'a>(versions: impl IntoIterator<Item = &'a str>) -> Metrics {
        let mut m = Metrics::default();
        for v in versions {
            m.versions.entry(v.to_string()).or_default();
        }
        m
    }

    fn intern_step(&mut self, step: &str) -> u32 {
        if let Some(&i) = self.step_ids.get(step) {
            return i;
        }
        let i = self.step_names.len() as u32;
        self.step_names.push(step.to_string());
        self.step_ids.insert(step.to_string(), i);
        i
    }

    fn journey_index(&mut self, journey: &str) -> u32 {
        if let Some(&i) = self.journey_ids.get(journey) {
            return i;
        }
        let i = self.journey_ids.len() as u32;
        self.journey_ids.insert(journey.to_string(), i);
        i
    }

    /// Counts one fact: the one function behind every journey figure.
    pub fn observe(&mut self, f: &Fact) {
        let j = self.journey_index(f.journey);
        // Where the entry was before this fact.
        let at = self.open.get(f.customer).and_then(|entries| {
            entries
                .iter()
                .find(|e| (e.0, e.1) == (j, f.entry))
                .map(|e| e.2)
        });
        let set = |open: &mut HashMap<Box<str>, Vec<(u32, u64, Open)>>, o: Option<Open>| {
            set_open(open, f.customer, j, f.entry, o)
        };
        let here = match f.progress {
            Progress::Step(s) | Progress::Exited(s) => Some(self.intern_step(s)),
            _ => None,
        };
        let v = match self.versions.get_mut(f.journey) {
            Some(v) => v,
            None => self.versions.entry(f.journey.to_string()).or_default(),
        };
        // The step the entry waited at, if it waited at one.
        let waited_at = match at {
            Some(Open {
                step: Some(s),
                exited: false,
            }) => Some(self.step_names[s as usize].as_str()),
            _ => None,
        };
        let leave = |v: &mut VersionMetrics| {
            if let Some(s) = waited_at {
                let m = step_mut(v, s);
                m.waiting = m.waiting.saturating_sub(1);
            }
        };
        match f.progress {
            Progress::Entered => {
                v.entered += 1;
                v.waiting += 1;
                let open = Open {
                    step: None,
                    exited: false,
                };
                set(&mut self.open, Some(open));
            }
            Progress::Step(s) => {
                *v.steps.entry(s.to_string()).or_default() += 1;
                step_mut(v, s).reached += 1;
                if let Some(o) = at
                    && !o.exited
                {
                    leave(v);
                    step_mut(v, s).waiting += 1;
                    set(&mut self.open, Some(Open { step: here, ..o }));
                }
            }
            Progress::Exited(s) => {
                v.exited += 1;
                step_mut(v, s).exited += 1;
                if let Some(o) = at {
                    leave(v);
                    set(&mut self.open, Some(Open { exited: true, ..o }));
                }
            }
            Progress::Goal => {
                v.converted += 1;
                if let Some(Open { step: Some(s), .. }) = at {
                    step_mut(v, &self.step_names[s as usize]).converted += 1;
                }
            }
            Progress::Closed => {
                v.waiting = v.waiting.saturating_sub(1);
                leave(v);
                set(&mut self.open, None);
            }
            Progress::Delivery { step: s, outcome } => match outcome {
                Outcome::Sent => {
                    v.sent += 1;
                    step_mut(v, s).sent += 1;
                }
                Outcome::Failed => {
                    v.failed += 1;
                    step_mut(v, s).failed += 1;
                }
                Outcome::Bounced => v.bounced += 1,
            },
            Progress::Engaged {
                step: s,
                key,
                engagement,
            } => {
                if self.engaged.insert((engagement, key.into())) {
                    match engagement {
                        Engagement::Opened => {
                            v.opened += 1;
                            step_mut(v, s).opened += 1;
                        }
                        Engagement::Clicked => {
                            v.clicked += 1;
                            step_mut(v, s).clicked += 1;
                        }
                    }
                }
            }
        }
    }

    /// The figures now, `passed` filled in.
    pub fn snapshot(&self) -> BTreeMap<String, VersionMetrics> {
        let mut out = self.versions.clone();
        for v in out.values_mut() {
            for m in v.step_metrics.values_mut() {
                m.passed = m.reached.saturating_sub(m.waiting + m.exited);
            }
        }
        out
    }

    /// Folds the write-back events stored in the log, in the order they were written.
    pub fn from_log(
        snap: &Snapshot,
        versions: &[String],
    ) -> Result<Metrics, cairn_store::StoreError> {
        let mut m = Metrics::with_versions(versions.iter().map(String::as_str));
        // (seq, name, customer, properties): the scan is not in sequence order, the fold
        // needs it (an entry's steps, then its exit).
        let mut facts: Vec<(u64, String, String, Map<String, Value>)> = Vec::new();
        snap.for_each_event(|s| {
            let ev = &s.event;
            // The runner's write-backs, and engagement reports from anywhere.
            if !ev.message_id.starts_with(WRITEBACK_PREFIX)
                && Engagement::from_event_name(&ev.event).is_none()
            {
                return;
            }
            let Some(props) = ev
                .properties
                .as_deref()
                .and_then(|p| serde_json::from_str::<Map<String, Value>>(p).ok())
            else {
                return;
            };
            facts.push((s.seq, ev.event.clone(), ev.customer_id().to_string(), props));
        })?;
        facts.sort_unstable_by_key(|f| f.0);
        for (_, name, customer, props) in &facts {
            if let Some(f) = Fact::from_writeback(name, customer, props) {
                m.observe(&f);
            }
        }
        Ok(m)
    }
}

/// Records where an open entry is (`Some`), or that it is over (`None`).
fn set_open(
    open: &mut HashMap<Box<str>, Vec<(u32, u64, Open)>>,
    customer: &str,
    journey: u32,
    entry: u64,
    to: Option<Open>,
) {
    let Some(entries) = open.get_mut(customer) else {
        if let Some(o) = to {
            open.insert(customer.into(), vec![(journey, entry, o)]);
        }
        return;
    };
    let i = entries.iter().position(|e| (e.0, e.1) == (journey, entry));
    match (i, to) {
        (Some(i), Some(o)) => entries[i].2 = o,
        (None, Some(o)) => entries.push((journey, entry, o)),
        (Some(i), None) => {
            entries.swap_remove(i);
            if entries.is_empty() {
                open.remove(customer);
            }
        }
        (None, None) => {}
    }
}

/// The figures of step `s`, created at zero when new (allocating only then).
fn step_mut<'v>(v: &'v mut VersionMetrics, s: &str) -> &'v mut StepMetrics {
    if !v.step_metrics.contains_key(s) {
        v.step_metrics.insert(s.to_string(), StepMetrics::default());
    }
    // Present: inserted just above when missing.
    v.step_metrics.get_mut(s).expect("step inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact<'a>(customer: &'a str, progress: Progress<'a>) -> Fact<'a> {
        Fact {
            journey: "cart@1",
            customer,
            entry: 1,
            progress,
        }
    }

    fn step(
        reached: u64,
        waiting: u64,
        passed: u64,
        exited: u64,
        converted: u64,
        sent: u64,
        failed: u64,
    ) -> StepMetrics {
        StepMetrics {
            reached,
            waiting,
            passed,
            exited,
            converted,
            sent,
            failed,
            ..Default::default()
        }
    }

    #[test]
    fn a_reported_open_or_click_counts_once_per_message() {
        let props = |key: &str| {
            serde_json::json!({"journey": "cart@1", "step": "email", "key": key})
                .as_object()
                .cloned()
                .unwrap()
        };
        let (k1, k2) = (props("cart@1/a/email/1"), props("cart@1/b/email/1"));
        let mut m = Metrics::with_versions(["cart@1"]);
        let reports = [
            ("message_opened", "a", &k1),
            ("message_opened", "a", &k1), // reported again: the same message
            ("message_clicked", "a", &k1),
            ("message_opened", "b", &k2),
            ("email_opened", "b", &k2), // not a report Cairn knows
        ];
        for (name, customer, p) in reports {
            if let Some(f) = Fact::from_writeback(name, customer, p) {
                m.observe(&f);
            }
        }
        let missing_key = serde_json::json!({"journey": "cart@1", "step": "email"});
        assert!(
            Fact::from_writeback("message_opened", "c", missing_key.as_object().unwrap()).is_none(),
            "a report without the message's key cannot be counted once"
        );
        let s = &m.snapshot()["cart@1"];
        assert_eq!((s.opened, s.clicked), (2, 1));
        let email = &s.step_metrics["email"];
        assert_eq!((email.opened, email.clicked), (2, 1));
        assert_eq!(s.sent, 0, "a report is not a delivery");
    }

    #[test]
    fn counts_a_known_sequence() {
        use Progress::*;
        let sent = |s| Delivery {
            step: s,
            outcome: Outcome::Sent,
        };
        let failed = |s| Delivery {
            step: s,
            outcome: Outcome::Failed,
        };
        let facts = [
            // a: emailed, exits at `done`, converts while its goal window is open.
            fact("a", Entered),
            fact("a", Step("wait")),
            fact("a", Step("email")),
            fact("a", sent("email")),
            fact("a", Step("done")),
            fact("a", Exited("done")),
            fact("a", Goal),
            fact("a", Closed),
            // b: buys during the first wait.
            fact("b", Entered),
            fact("b", Step("wait")),
            fact("b", Goal),
            fact("b", Exited("wait")),
            fact("b", Closed),
            // c: waits at the first wait.
            fact("c", Entered),
            fact("c", Step("wait")),
            // d: its email failed; it is held at the email step (e.g. quiet hours).
            fact("d", Entered),
            fact("d", Step("wait")),
            fact("d", Step("email")),
            fact("d", failed("email")),
            // A fact of a journey nobody asked for is counted under its own name.
            Fact {
                journey: "other@2",
                ..fact("a", Entered)
            },
        ];
        let mut m = Metrics::with_versions(["cart@1", "unused@1"]);
        for f in &facts {
            m.observe(f);
        }
        let s = m.snapshot();
        assert_eq!(s["unused@1"], VersionMetrics::default());
        assert_eq!(s["other@2"].entered, 1);
        let v = &s["cart@1"];
        assert_eq!(
            (
                v.entered,
                v.waiting,
                v.converted,
                v.exited,
                v.sent,
                v.failed
            ),
            (4, 2, 2, 2, 1, 1)
        );
        assert_eq!(v.steps["wait"], 4);
        let sm = &v.step_metrics;
        assert_eq!(sm["wait"], step(4, 1, 2, 1, 1, 0, 0));
        assert_eq!(sm["email"], step(2, 1, 1, 0, 0, 1, 1));
        assert_eq!(sm["done"], step(1, 0, 0, 1, 1, 0, 0));
    }

    #[test]
    fn a_fact_without_its_entry_counts_but_moves_no_gauge() {
        // Facts of entries begun before the figures started (never the case for the runner,
        // which replays from its start) count their counters and leave gauges alone.
        let mut m = Metrics::default();
        m.observe(&fact("x", Progress::Step("wait")));
        m.observe(&fact("x", Progress::Exited("wait")));
        let s = m.snapshot();
        assert_eq!(s["cart@1"].step_metrics["wait"], step(1, 0, 0, 1, 0, 0, 0));
    }

    #[test]
    fn entries_of_one_customer_are_kept_apart() {
        // The same customer in two journeys, and entering one of them a second time.
        let at = |journey, entry, progress| Fact {
            journey,
            customer: "a",
            entry,
            progress,
        };
        let mut m = Metrics::default();
        for f in [
            at("cart@1", 1, Progress::Entered),
            at("news@1", 1, Progress::Entered),
            at("cart@1", 1, Progress::Step("wait")),
            at("news@1", 1, Progress::Step("wait")),
            at("cart@1", 1, Progress::Exited("wait")),
            at("cart@1", 1, Progress::Closed),
            at("cart@1", 2, Progress::Entered),
            at("cart@1", 2, Progress::Step("wait")),
        ] {
            m.observe(&f);
        }
        let s = m.snapshot();
        assert_eq!((s["cart@1"].entered, s["cart@1"].waiting), (2, 1));
        assert_eq!(s["cart@1"].step_metrics["wait"], step(2, 1, 0, 1, 0, 0, 0));
        assert_eq!(s["news@1"].step_metrics["wait"], step(1, 1, 0, 0, 0, 0, 0));
        m.observe(&at("cart@1", 2, Progress::Closed));
        m.observe(&at("news@1", 1, Progress::Closed));
        assert!(m.open.is_empty(), "closed entries are forgotten");
    }
}
