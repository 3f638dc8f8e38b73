//! Any bytes sent to the collection API: gunzip (when they look like gzip), the batch and
//! single-message envelopes, and every message through `parse_message`. Nothing may panic,
//! and whatever is accepted must be a message with a customer.
#![no_main]

use cairn_model::{EventKind, MessageDefaults, parse_message};
use cairn_server::ingest::{Endpoint, Limits, decode_body, parse_envelope, validate};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_message_bytes: 32 * 1024,
    max_batch_bytes: 500 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    for endpoint in [Endpoint::Batch, Endpoint::Single(EventKind::Track)] {
        let Ok(json) = decode_body(endpoint, gzip.then_some("gzip"), data, LIMITS) else {
            continue;
        };
        if let Ok(envelope) = parse_envelope(endpoint, &json, LIMITS) {
            let (events, _rejected) = validate(endpoint, envelope, Some("web"), 1_700_000_000_000_000);
            for e in events {
                assert!(e.user_id.is_some() || e.anonymous_id.is_some());
                assert!(!e.message_id.is_empty());
            }
        }
    }
    // The importer's path: one JSON value per line.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = parse_message(&v, &MessageDefaults::default());
    }
});
