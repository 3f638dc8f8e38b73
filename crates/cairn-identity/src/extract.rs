//! Reading the identifiers an event carries.
//!
//! Where they come from (Segment's conventions):
//! - `userId`, `anonymousId` of every message;
//! - `traits.email`, `traits.phone` (identify) and `context.traits.email|phone` (any message);
//! - `context.device.id` and `context.device.advertisingId`;
//! - `context.externalIds: [{id, type}]` for configured types (and `email`/`phone` types), and
//!   traits named like a configured external id type.
//!
//! An alias's `previousId` is not read here: whether it names a user id or an anonymous id is
//! only known once every event has been seen (see [`crate::graph`]).

use cairn_model::Event;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::ident::{IdKind, Identifier, is_blocked, normalize_email, normalize_phone};

/// Appends the identifiers of `event` to `out` (normalised, blocked values left out, no
/// duplicates). Malformed JSON in `traits` or `context` is not an error here: it simply holds
/// no identifiers (the store accepted it as text).
pub fn identifiers(event: &Event, config: &Config, out: &mut Vec<Identifier>) {
    visit(event, config, &mut |kind, value| {
        if !out.iter().any(|i| &i.kind == kind && i.value == value) {
            out.push(Identifier::new(kind.clone(), value));
        }
    });
}

/// Calls `found` with the kind and normalised value of every identifier of `event`, blocked
/// values left out (a value may come more than once). Allocates nothing for the user and
/// anonymous ids: the identity graph calls this for every stored event.
pub fn visit(event: &Event, config: &Config, found: &mut dyn FnMut(&IdKind, &str)) {
    let mut push = |kind: &IdKind, value: &str| {
        if is_blocked(value) {
            return;
        }
        match kind {
            IdKind::Email => {
                if let Some(v) = normalize_email(value) {
                    found(kind, &v);
                }
            }
            IdKind::Phone => {
                if let Some(v) = normalize_phone(value, &config.phone_country_code) {
                    found(kind, &v);
                }
            }
            // The store files events under the raw ids as sent: keep them byte for byte.
            IdKind::UserId | IdKind::AnonymousId => found(kind, value),
            _ => found(kind, value.trim()),
        }
    };
    if let Some(u) = &event.user_id {
        push(&IdKind::UserId, u);
    }
    if let Some(a) = &event.anonymous_id {
        push(&IdKind::AnonymousId, a);
    }
    // Parse traits only when they may name an identifier: most hold none (the text is compact
    // JSON written by the store, so a key appears as `"name"`).
    if let Some(traits) = event.traits.as_deref().filter(|t| may_hold_ids(t, config))
        && let Some(traits) = parse_object(traits)
    {
        from_traits(&traits, config, &mut push);
    }
    // Most events' context holds no identifier: skip the JSON parse unless it could.
    let Some(context) = event.context.as_deref() else {
        return;
    };
    if !(context.contains("\"traits\"")
        || context.contains("\"device\"")
        || context.contains("\"externalIds\""))
    {
        return;
    }
    let Some(context) = parse_object(context) else {
        return;
    };
    if let Some(Value::Object(traits)) = context.get("traits") {
        from_traits(traits, config, &mut push);
    }
    if let Some(Value::Object(device)) = context.get("device") {
        for field in ["id", "advertisingId"] {
            if let Some(v) = text(device.get(field)) {
                push(&IdKind::DeviceId, &v);
            }
        }
    }
    if let Some(Value::Array(ids)) = context.get("externalIds") {
        for item in ids {
            let (Some(id), Some(kind)) = (text(item.get("id")), text(item.get("type"))) else {
                continue;
            };
            let kind = match kind.as_str() {
                "email" => IdKind::Email,
                "phone" => IdKind::Phone,
                t if config.external_ids.iter().any(|e| e == t) => IdKind::External(kind),
                _ => continue,
            };
            push(&kind, &id);
        }
    }
}

fn may_hold_ids(traits: &str, config: &Config) -> bool {
    traits.contains("\"email\"")
        || traits.contains("\"phone\"")
        || config
            .external_ids
            .iter()
            .any(|name| traits.contains(name.as_str()))
}

fn from_traits(traits: &Map<String, Value>, config: &Config, push: &mut impl FnMut(&IdKind, &str)) {
    if let Some(v) = text(traits.get("email")) {
        push(&IdKind::Email, &v);
    }
    if let Some(v) = text(traits.get("phone")) {
        push(&IdKind::Phone, &v);
    }
    for name in &config.external_ids {
        if let Some(v) = text(traits.get(name)) {
            push(&IdKind::External(name.clone()), &v);
        }
    }
}

pub(crate) fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A JSON string, or a number written as text (ids sent as numbers are still ids).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
