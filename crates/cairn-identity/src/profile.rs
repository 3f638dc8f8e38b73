//! The single customer view: everything known about one profile, derived from its events.
//!
//! - **traits**: from `identify` messages; each trait's current value is the one with the
//!   latest (timestamp, message id), and every change is kept in its history;
//! - **computed traits**: first and last seen, event count, total revenue (sum of event
//!   values), last channel and preferred channel (most events; ties go to the latest used),
//!   the last CSAT and NPS answers (events whose properties say `"survey": "csat"|"nps"` with a
//!   numeric `score`, or whose name mentions CSAT or NPS), and a lifecycle stage:
//!   `anonymous` (no user id or e-mail), `lead` (known, nothing bought), `customer` (one event
//!   with a positive value), `repeat_customer` (several), `churned` (a cancellation — an event
//!   whose name mentions "cancel" — after the last purchase);
//! - **consent**: per category, from `context.consent.categoryPreferences` on any message,
//!   latest wins, with history.
//!
//! Pure: the caller gathers the profile's events (e.g. the store timelines of its keys).

use std::collections::BTreeMap;

use cairn_model::{EventKind, Micros};
use cairn_store::StoredEvent;
use serde::Serialize;
use serde_json::Value;

use crate::extract::parse_object;
use crate::graph::{Conflict, IdentityGraph, Merge, ProfileId};
use crate::ident::{IdKind, Identifier};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub identifiers: Vec<Identifier>,
    /// The raw customer ids the store files this profile's events under.
    pub customer_ids: Vec<String>,
    pub traits: BTreeMap<String, Tracked<Value>>,
    pub computed: Computed,
    pub consent: BTreeMap<String, Tracked<bool>>,
    pub merges: Vec<Merge>,
    pub conflicts: Vec<Conflict>,
}

/// A value with when it was set and what it was before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracked<T> {
    pub value: T,
    #[serde(serialize_with = "crate::time_text::one")]
    pub timestamp: Micros,
    pub message_id: String,
    /// Earlier values, oldest first (each change, not each repetition).
    pub history: Vec<Change<T>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change<T> {
    pub value: T,
    #[serde(serialize_with = "crate::time_text::one")]
    pub timestamp: Micros,
    pub message_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Computed {
    #[serde(serialize_with = "crate::time_text::option")]
    pub first_seen: Option<Micros>,
    #[serde(serialize_with = "crate::time_text::option")]
    pub last_seen: Option<Micros>,
    pub event_count: u64,
    pub total_revenue: f64,
    pub last_channel: Option<String>,
    pub preferred_channel: Option<String>,
    pub lifecycle_stage: &'static str,
    pub last_csat: Option<Answer>,
    pub last_nps: Option<Answer>,
}

/// A survey answer: its score and the message that gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub score: f64,
    #[serde(serialize_with = "crate::time_text::one")]
    pub timestamp: Micros,
    pub message_id: String,
}

/// Which survey an event answers and its score, if it is one.
fn survey_answer(event: &cairn_model::Event) -> Option<(&'static str, f64)> {
    let props = event
        .properties
        .as_deref()
        .filter(|p| p.contains("score"))?;
    let props = parse_object(props)?;
    let score = props.get("score")?.as_f64()?;
    let named = props
        .get("survey")
        .and_then(Value::as_str)
        .unwrap_or(&event.event)
        .to_ascii_lowercase();
    if named.contains("csat") {
        Some(("csat", score))
    } else if named.contains("nps") {
        Some(("nps", score))
    } else {
        None
    }
}

impl Profile {
    /// Builds the view of profile `p` from its events, in any order.
    pub fn build(graph: &IdentityGraph, p: ProfileId, events: &[StoredEvent]) -> Profile {
        let mut ordered: Vec<&StoredEvent> = events.iter().collect();
        ordered.sort_by(|a, b| {
            (a.event.timestamp, &a.event.message_id).cmp(&(b.event.timestamp, &b.event.message_id))
        });
        let mut customer_ids: Vec<String> = ordered
            .iter()
            .map(|e| e.event.customer_id().to_string())
            .collect();
        customer_ids.sort();
        customer_ids.dedup();

        let mut traits = BTreeMap::new();
        let mut consent = BTreeMap::new();
        let mut computed = Computed::default();
        let mut channel_counts: BTreeMap<&str, (u64, Micros)> = BTreeMap::new();
        let (mut purchases, mut churned) = (0u64, false);
        for e in &ordered {
            let ev = &e.event;
            computed.first_seen.get_or_insert(ev.timestamp);
            computed.last_seen = Some(ev.timestamp);
            computed.event_count += 1;
            if let Some(v) = ev.value.filter(|v| v.is_finite()) {
                computed.total_revenue += v;
                if v > 0.0 {
                    purchases += 1;
                    churned = false;
                }
            }
            if ev.event.to_ascii_lowercase().contains("cancel") {
                churned = true;
            }
            if let Some((survey, score)) = survey_answer(ev) {
                let answer = Some(Answer {
                    score,
                    timestamp: ev.timestamp,
                    message_id: ev.message_id.clone(),
                });
                match survey {
                    "csat" => computed.last_csat = answer,
                    _ => computed.last_nps = answer,
                }
            }
            computed.last_channel = Some(ev.channel.clone());
            let entry = channel_counts.entry(&ev.channel).or_default();
            *entry = (entry.0 + 1, ev.timestamp);
            if ev.kind == EventKind::Identify
                && let Some(map) = ev.traits.as_deref().and_then(parse_object)
            {
                for (name, value) in map {
                    track(&mut traits, name, value, ev.timestamp, &ev.message_id);
                }
            }
            if let Some(prefs) = ev
                .context
                .as_deref()
                .filter(|c| c.contains("categoryPreferences"))
                .and_then(parse_object)
                .and_then(|c| {
                    c.get("consent")?
                        .get("categoryPreferences")?
                        .as_object()
                        .cloned()
                })
            {
                for (category, granted) in prefs {
                    if let Some(granted) = granted.as_bool() {
                        track(
                            &mut consent,
                            category,
                            granted,
                            ev.timestamp,
                            &ev.message_id,
                        );
                    }
                }
            }
        }
        computed.preferred_channel = channel_counts
            .into_iter()
            .max_by_key(|(_, (count, last))| (*count, *last))
            .map(|(c, _)| c.to_string());
        let identifiers = graph.identifiers(p);
        let known = identifiers
            .iter()
            .any(|i| matches!(i.kind, IdKind::UserId | IdKind::Email));
        computed.lifecycle_stage = match (known, purchases, churned) {
            (_, 1.., true) => "churned",
            (_, 2.., false) => "repeat_customer",
            (_, 1, false) => "customer",
            (true, 0, _) => "lead",
            (false, 0, _) => "anonymous",
        };
        Profile {
            identifiers,
            customer_ids,
            traits,
            computed,
            consent,
            merges: graph.merges(p),
            conflicts: graph.conflicts(p),
        }
    }
}

/// Records an observation; called in time order, so the last one is the current value.
fn track<T: PartialEq + Clone>(
    map: &mut BTreeMap<String, Tracked<T>>,
    name: String,
    value: T,
    timestamp: Micros,
    message_id: &str,
) {
    match map.get_mut(&name) {
        None => {
            map.insert(
                name,
                Tracked {
                    value,
                    timestamp,
                    message_id: message_id.to_string(),
                    history: Vec::new(),
                },
            );
        }
        Some(t) if t.value == value => {}
        Some(t) => {
            let old = Change {
                value: std::mem::replace(&mut t.value, value),
                timestamp: t.timestamp,
                message_id: std::mem::replace(&mut t.message_id, message_id.to_string()),
            };
            t.timestamp = timestamp;
            t.history.push(old);
        }
    }
}
