//! The JSON shapes of Cairn's read results, shared by the HTTP API and the CLI's
//! `--format json`, so `GET /v1/stats` and `cairn stats --format json` can never disagree.

use cairn_model::format_micros;
use cairn_store::{Stats, StoredEvent};
use serde_json::{Map, Value, json};

/// Store statistics, as `cairn stats --format json` prints them.
pub fn stats_json(stats: &Stats) -> Value {
    let counts = |list: &[(String, u64)]| -> Map<String, Value> {
        list.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
    };
    json!({
        "customers": stats.customers,
        "events": stats.events,
        "first_event": stats.first_event.map(format_micros),
        "last_event": stats.last_event.map(format_micros),
        "event_names": counts(&stats.event_names),
        "channels": counts(&stats.channels),
        "disk_bytes": stats.disk_bytes,
        "segments": stats.segments,
        "log_events": stats.log_events,
    })
}

fn parse_json_text(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// One stored event in Segment's field names, with its `messageId` and store sequence number.
pub fn event_json(e: &StoredEvent) -> Value {
    let ev = &e.event;
    let mut m = Map::new();
    m.insert("messageId".into(), json!(ev.message_id));
    m.insert("type".into(), json!(ev.kind.as_str()));
    m.insert("event".into(), json!(ev.event));
    m.insert("timestamp".into(), json!(format_micros(ev.timestamp)));
    m.insert("channel".into(), json!(ev.channel));
    let mut opt = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.into(), v);
        }
    };
    opt("userId", json!(ev.user_id));
    opt("anonymousId", json!(ev.anonymous_id));
    opt("value", json!(ev.value));
    opt("sentAt", json!(ev.sent_at.map(format_micros)));
    opt("receivedAt", json!(ev.received_at.map(format_micros)));
    opt("groupId", json!(ev.group_id));
    opt("previousId", json!(ev.previous_id));
    opt("properties", parse_json_text(&ev.properties));
    opt("traits", parse_json_text(&ev.traits));
    opt("context", parse_json_text(&ev.context));
    m.insert("seq".into(), json!(e.seq));
    Value::Object(m)
}

/// One customer's timeline, as `cairn timeline --format json` prints it: `total_events` is
/// the customer's count, `events` the first `limit` of them.
pub fn timeline_json(customer: &str, events: &[StoredEvent], total: usize) -> Value {
    json!({
        "customer": customer,
        "total_events": total,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    })
}
