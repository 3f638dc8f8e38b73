//! Any bytes as a Segment message or batch, through `cairn_model::parse_message` — the one
//! validator behind both `cairn serve` and the JSONL importer — with and without the server's
//! receivedAt/sentAt (the clock-skew arithmetic). Nothing may panic, and whatever is accepted
//! must have a customer and a message id.
#![no_main]

use cairn_model::{EventKind, MessageDefaults, parse_message};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check(msg: &Value, defaults: &MessageDefaults) {
    if let Ok(e) = parse_message(msg, defaults) {
        assert!(e.user_id.is_some() || e.anonymous_id.is_some());
        assert!(!e.message_id.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let server = MessageDefaults {
        kind: Some(EventKind::Track),
        channel: Some("web"),
        received_at: Some(1_700_000_000_000_000),
        sent_at: Some(1_700_000_060_000_000),
    };
    check(&v, &MessageDefaults::default());
    check(&v, &server);
    if let Some(items) = v.get("batch").and_then(Value::as_array) {
        for item in items {
            check(item, &server);
        }
    }
});
