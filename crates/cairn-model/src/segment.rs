//! Validating Segment Spec messages into [`Event`]s.
//!
//! One function, [`parse_message`], is the only way outside JSON becomes an event: the HTTP API
//! and the JSONL importer both call it, so both accept and reject exactly the same things.

use serde_json::{Map, Value};

use crate::channel::{UNKNOWN_CHANNEL, derive_channel, normalize_channel};
use crate::{Event, EventKind, Micros, derive_message_id, parse_timestamp};

/// Which field of a message is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field \"{field}\": {reason}")]
pub struct FieldError {
    /// The field's JSON name, with a dotted path for nested fields (`properties.revenue`).
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What the receiver knows about a message beyond its own fields.
#[derive(Debug, Clone, Default)]
pub struct MessageDefaults<'a> {
    /// The message type when the endpoint implies it (`/v1/track`) and the body has none.
    pub kind: Option<EventKind>,
    /// The channel of the source that sent it (from its write key), used when the message sets none.
    pub channel: Option<&'a str>,
    /// When the server received it. Set by the HTTP server, which also corrects client clock
    /// skew with it; `None` for imported history, whose times are taken as they are.
    pub received_at: Option<Micros>,
    /// A batch's top-level `sentAt`, used for items without their own.
    pub sent_at: Option<Micros>,
}

/// Validates one Segment message.
///
/// Rules (Segment's own, see `../shared/SEGMENT.md`): every message needs `userId` or
/// `anonymousId`; `track` needs `event`; `group` needs `groupId`; `alias` needs `previousId` and
/// `userId`. Ids may be strings or numbers. `timestamp` defaults to `receivedAt`, then `sentAt`.
/// When the server stamps `receivedAt` and the message has a `sentAt`, the timestamp is corrected
/// for client clock skew: `timestamp = receivedAt − (sentAt − timestamp)`.
pub fn parse_message(msg: &Value, defaults: &MessageDefaults) -> Result<Event, FieldError> {
    let obj = msg.as_object().ok_or_else(|| {
        FieldError::new(
            "(message)",
            format!("expected a JSON object, got {}", type_name(msg)),
        )
    })?;

    let kind = match obj.get("type") {
        None | Some(Value::Null) => defaults
            .kind
            .ok_or_else(|| FieldError::new("type", "missing; expected one of track, identify, page, screen, group, alias"))?,
        Some(Value::String(s)) => EventKind::parse(s).ok_or_else(|| {
            FieldError::new("type", format!("unknown type {s:?}; expected one of track, identify, page, screen, group, alias"))
        })?,
        Some(other) => return Err(FieldError::new("type", format!("expected a string, got {}", type_name(other)))),
    };

    let user_id = id_field(obj, "userId")?;
    let anonymous_id = id_field(obj, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(FieldError::new(
            "userId",
            "a message needs a userId or an anonymousId",
        ));
    }

    let event = match kind {
        EventKind::Track => string_field(obj, "event")?
            .ok_or_else(|| FieldError::new("event", "a track message needs an event name"))?,
        EventKind::Page | EventKind::Screen => {
            string_field(obj, "name")?.unwrap_or_else(|| kind.as_str().to_string())
        }
        _ => kind.as_str().to_string(),
    };
    let group_id = id_field(obj, "groupId")?;
    if kind == EventKind::Group && group_id.is_none() {
        return Err(FieldError::new(
            "groupId",
            "a group message needs a groupId",
        ));
    }
    let previous_id = id_field(obj, "previousId")?;
    if kind == EventKind::Alias {
        if previous_id.is_none() {
            return Err(FieldError::new(
                "previousId",
                "an alias message needs a previousId",
            ));
        }
        if user_id.is_none() {
            return Err(FieldError::new("userId", "an alias message needs a userId"));
        }
    }

    let sent_at = time_field(obj, "sentAt")?.or(defaults.sent_at);
    let received_at = defaults.received_at.or(time_field(obj, "receivedAt")?);
    let original = match time_field(obj, "timestamp")? {
        Some(t) => Some(t),
        None => time_field(obj, "originalTimestamp")?,
    };
    let timestamp = match (original, defaults.received_at, sent_at) {
        (Some(t), Some(received), Some(sent)) => received - (sent - t),
        (Some(t), _, _) => t,
        (None, _, _) => received_at.or(sent_at).ok_or_else(|| {
            FieldError::new(
                "timestamp",
                "missing, and no receivedAt or sentAt to default to",
            )
        })?,
    };

    let properties = object_field(obj, "properties")?;
    let traits = object_field(obj, "traits")?;
    let context = object_field(obj, "context")?;

    let channel = match obj.get("channel") {
        None | Some(Value::Null) => match defaults.channel {
            Some(ch) => normalize_channel(ch),
            None => derive_channel(context, kind),
        },
        Some(Value::String(s)) => match normalize_channel(s).as_str() {
            "browser" | "client" => "web".to_string(),
            "" => UNKNOWN_CHANNEL.to_string(),
            ch => ch.to_string(),
        },
        Some(other) => {
            return Err(FieldError::new(
                "channel",
                format!("expected a string, got {}", type_name(other)),
            ));
        }
    };

    let value = value_field(obj, properties)?;

    let message_id = match obj.get("messageId") {
        None | Some(Value::Null) => derive_message_id("msg", &[msg.to_string().as_bytes()]),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
        Some(Value::String(_)) => {
            return Err(FieldError::new("messageId", "must be 1 to 256 characters"));
        }
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(FieldError::new(
                "messageId",
                format!("expected a string, got {}", type_name(other)),
            ));
        }
    };

    Ok(Event {
        message_id,
        kind,
        event,
        user_id,
        anonymous_id,
        timestamp,
        sent_at,
        received_at,
        channel,
        value,
        group_id,
        previous_id,
        properties: properties.and_then(object_text),
        traits: traits.and_then(object_text),
        context: context.and_then(object_text),
    })
}

/// A non-empty object as compact JSON text (serialised in place: no copy of the tree).
fn object_text(m: &Map<String, Value>) -> Option<String> {
    if m.is_empty() {
        return None;
    }
    // Serialising a map of JSON values to a Vec cannot fail (string keys, finite numbers).
    serde_json::to_string(m).ok()
}

/// The JSON type of a value, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn id_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string or a number, got {}", type_name(other)),
        )),
    }
}

fn string_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

fn time_field(obj: &Map<String, Value>, field: &str) -> Result<Option<Micros>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(s)
            .map(Some)
            .map_err(|e| FieldError::new(field, e.to_string())),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected an ISO 8601 string, got {}", type_name(other)),
        )),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected an object, got {}", type_name(other)),
        )),
    }
}

/// The numeric value of a message: a top-level `value`, else `properties.revenue`, `.value` or
/// `.total` (Segment's e-commerce spec), as a number or a numeric string.
fn value_field(
    obj: &Map<String, Value>,
    properties: Option<&Map<String, Value>>,
) -> Result<Option<f64>, FieldError> {
    if let Some(v) = obj.get("value").filter(|v| !v.is_null()) {
        return number(v).map(Some).ok_or_else(|| {
            FieldError::new("value", format!("expected a number, got {}", type_name(v)))
        });
    }
    let Some(props) = properties else {
        return Ok(None);
    };
    for key in ["revenue", "value", "total"] {
        if let Some(v) = props.get(key).filter(|v| !v.is_null()) {
            return number(v).map(Some).ok_or_else(|| {
                FieldError::new(
                    format!("properties.{key}"),
                    format!("expected a number, got {}", type_name(v)),
                )
            });
        }
    }
    Ok(None)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Event, FieldError> {
        parse_message(&v, &MessageDefaults::default())
    }

    fn check_err(v: Value, field: &str, reason_part: &str) {
        let err = parse(v).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.reason.contains(reason_part), "{err}");
    }

    #[test]
    fn parses_a_track() {
        let e = parse(json!({
            "type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
            "timestamp": "2024-05-01T10:00:00Z", "properties": {"revenue": "19.5"},
            "context": {"userAgent": "Mozilla"}
        }))
        .unwrap();
        assert_eq!(e.event, "Order Completed");
        assert_eq!(e.customer_id(), "u1");
        assert_eq!(e.value, Some(19.5));
        assert_eq!(e.channel, "web");
        assert_eq!(e.properties.as_deref(), Some(r#"{"revenue":"19.5"}"#));
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        check_err(json!([1]), "(message)", "expected a JSON object");
        check_err(
            json!({"type": "click", "userId": "u"}),
            "type",
            "unknown type",
        );
        check_err(
            json!({"type": "track", "event": "x", "timestamp": "2024-01-01"}),
            "userId",
            "userId or an anonymousId",
        );
        check_err(
            json!({"type": "track", "userId": "u", "timestamp": "2024-01-01"}),
            "event",
            "needs an event",
        );
        check_err(
            json!({"type": "track", "event": 5, "userId": "u"}),
            "event",
            "expected a string",
        );
        check_err(
            json!({"type": "track", "event": "x", "userId": true}),
            "userId",
            "string or a number",
        );
        check_err(
            json!({"type": "track", "event": "x", "userId": "u", "timestamp": "later"}),
            "timestamp",
            "ISO 8601",
        );
        check_err(
            json!({"type": "track", "event": "x", "userId": "u"}),
            "timestamp",
            "missing",
        );
        check_err(
            json!({"type": "track", "event": "x", "userId": "u", "timestamp": "2024-01-01", "properties": []}),
            "properties",
            "expected an object",
        );
        check_err(
            json!({"type": "group", "userId": "u", "timestamp": "2024-01-01"}),
            "groupId",
            "needs a groupId",
        );
        check_err(
            json!({"type": "alias", "anonymousId": "a", "previousId": "p", "timestamp": "2024-01-01"}),
            "userId",
            "alias",
        );
        check_err(
            json!({"type": "track", "event": "x", "userId": "u", "timestamp": "2024-01-01", "properties": {"revenue": "lots"}}),
            "properties.revenue",
            "expected a number",
        );
    }

    #[test]
    fn corrects_clock_skew_only_when_the_server_stamps() {
        let msg = json!({"type": "identify", "anonymousId": "a", "messageId": "m",
            "timestamp": "2024-01-01T00:00:00Z", "sentAt": "2024-01-01T00:00:10Z"});
        let received = parse_timestamp("2024-01-01T00:01:00Z").unwrap();
        let corrected = parse_message(
            &msg,
            &MessageDefaults {
                received_at: Some(received),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            corrected.timestamp,
            parse_timestamp("2024-01-01T00:00:50Z").unwrap()
        );
        let imported = parse(msg).unwrap();
        assert_eq!(
            imported.timestamp,
            parse_timestamp("2024-01-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn missing_message_id_is_derived_from_content() {
        let msg = json!({"type": "page", "anonymousId": "a", "timestamp": "2024-01-01"});
        let a = parse(msg.clone()).unwrap();
        assert_eq!(a.message_id, parse(msg).unwrap().message_id);
        assert_eq!(a.event, "page");
        assert_eq!(a.channel, "web");
    }

    #[test]
    fn explicit_and_source_channels() {
        let msg =
            json!({"type": "track", "event": "call", "userId": "u", "timestamp": "2024-01-01"});
        let ch = parse_message(
            &msg,
            &MessageDefaults {
                channel: Some("call_center"),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ch.channel, "call_center");
        let mut explicit = msg.clone();
        explicit["channel"] = json!("SMS");
        assert_eq!(parse(explicit).unwrap().channel, "sms");
    }
}
