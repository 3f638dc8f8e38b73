//! From request bytes to validated events: gunzip within limits, the Segment envelope, the
//! write key, and each message through [`cairn_model::parse_message`] (the function the JSONL
//! importer uses too, so HTTP and import accept exactly the same messages).
//!
//! Everything here is synchronous and CPU-bound; the server runs it on blocking threads.
//!
//! # A batch with invalid messages
//!
//! The valid messages of a batch are stored; the invalid ones are not. The answer is then an
//! error (400, or 413 when a message was too large) listing every rejected message by index,
//! field and reason, with `stored` saying how many of the others are now durable. Segment's
//! SDKs never retry a 400 and drop the batch, so storing the valid part is what keeps their
//! data; a client that does resend the batch loses nothing either, because messages are
//! deduplicated by `messageId`. A request whose body is not readable at all (bad JSON, bad
//! gzip, oversize body, bad key) stores nothing.

use std::borrow::Cow;
use std::io::Read;

use cairn_model::{Event, EventKind, MessageDefaults, Micros, parse_message, parse_timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{ApiError, Code, MessageError};

/// What kind of request it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/track`, `/v1/identify`, ...: one message; its type defaults to the endpoint's.
    Single(EventKind),
    /// `/v1/batch` and `/v1/import`: `{"batch": [...], "sentAt", "context", "writeKey"}`.
    Batch,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_batch_bytes: usize,
}

impl Endpoint {
    /// The largest body this endpoint takes, after gunzip.
    pub fn body_limit(self, limits: Limits) -> usize {
        match self {
            Endpoint::Single(_) => limits.max_message_bytes,
            Endpoint::Batch => limits.max_batch_bytes,
        }
    }

    fn too_large(self, size: String, limit: usize) -> ApiError {
        match self {
            Endpoint::Single(_) => ApiError::new(
                Code::MessageTooLarge,
                format!("the message is {size}; the limit is {limit} bytes per message"),
            ),
            Endpoint::Batch => ApiError::new(
                Code::BatchTooLarge,
                format!("the request body is {size}; the limit is {limit} bytes per batch"),
            ),
        }
    }
}

/// The body as JSON bytes: gunzipped when `Content-Encoding: gzip`, never beyond the limit.
pub fn decode_body<'a>(
    endpoint: Endpoint,
    encoding: Option<&str>,
    body: &'a [u8],
    limits: Limits,
) -> Result<Cow<'a, [u8]>, ApiError> {
    let limit = endpoint.body_limit(limits);
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(endpoint.too_large(format!("{} bytes", body.len()), limit));
            }
            Ok(Cow::Borrowed(body))
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len() * 4);
            // One byte past the limit is enough to know it is too large (and a gzip bomb never
            // gets to inflate further).
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::new(
                        Code::InvalidGzip,
                        format!("Content-Encoding is gzip but the body is not valid gzip: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(endpoint.too_large("larger once gunzipped".into(), limit));
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(ApiError::new(
            Code::UnsupportedEncoding,
            format!("Content-Encoding {other:?} is not supported; send gzip or no encoding"),
        )),
    }
}

/// A request's messages, parsed as JSON but not validated yet.
pub struct Envelope {
    /// `writeKey` from the body, if any.
    pub write_key: Option<String>,
    /// `(index, message)`, in request order.
    pub messages: Vec<(usize, Value)>,
    /// Messages rejected already (too large).
    pub rejected: Vec<MessageError>,
    /// The batch's `sentAt`, applied to items without their own.
    pub sent_at: Option<Micros>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
}

fn invalid_json(e: serde_json::Error) -> ApiError {
    ApiError::new(
        Code::InvalidJson,
        format!("the body is not valid JSON: {e}"),
    )
}

fn first_byte(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn write_key_of(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::new(
            Code::InvalidJson,
            format!(
                "field \"writeKey\": expected a string, got {}",
                cairn_model::segment::type_name(other)
            ),
        )),
    }
}

/// Parses the body's JSON into its messages.
pub fn parse_envelope(
    endpoint: Endpoint,
    body: &[u8],
    limits: Limits,
) -> Result<Envelope, ApiError> {
    if first_byte(body) != Some(b'{') {
        let what = match endpoint {
            Endpoint::Single(_) => "a JSON object (one message)",
            Endpoint::Batch => "a JSON object with a \"batch\" array",
        };
        // Say "not JSON" when it is not, else what shape was expected.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Err(invalid_json(e));
        }
        return Err(ApiError::new(Code::InvalidJson, format!("expected {what}")));
    }
    match endpoint {
        Endpoint::Single(_) => {
            let msg: Value = serde_json::from_slice(body).map_err(invalid_json)?;
            let write_key = write_key_of(msg.get("writeKey"))?;
            Ok(Envelope {
                write_key,
                messages: vec![(0, msg)],
                rejected: Vec::new(),
                sent_at: None,
            })
        }
        Endpoint::Batch => {
            let parsed: BatchBody = serde_json::from_slice(body).map_err(invalid_json)?;
            let write_key = write_key_of(parsed.write_key.as_ref())?;
            let sent_at = match &parsed.sent_at {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(parse_timestamp(s).map_err(|e| {
                    ApiError::new(Code::InvalidJson, format!("field \"sentAt\": {e}"))
                })?),
                Some(other) => {
                    return Err(ApiError::new(
                        Code::InvalidJson,
                        format!(
                            "field \"sentAt\": expected an ISO 8601 string, got {}",
                            cairn_model::segment::type_name(other)
                        ),
                    ));
                }
            };
            let shared_context = match parsed.context {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(m),
                Some(other) => {
                    return Err(ApiError::new(
                        Code::InvalidJson,
                        format!(
                            "field \"context\": expected an object, got {}",
                            cairn_model::segment::type_name(&other)
                        ),
                    ));
                }
            };
            let raw = parsed.batch.ok_or_else(|| {
                ApiError::new(
                    Code::InvalidJson,
                    "field \"batch\": missing; expected an array of messages",
                )
            })?;
            if first_byte(raw.get().as_bytes()) != Some(b'[') {
                return Err(ApiError::new(
                    Code::InvalidJson,
                    "field \"batch\": expected an array of messages",
                ));
            }
            let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(invalid_json)?;
            let mut messages = Vec::with_capacity(items.len());
            let mut rejected = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                let size = item.get().len();
                if size > limits.max_message_bytes {
                    rejected.push(MessageError {
                        index,
                        field: "(message)".into(),
                        reason: format!(
                            "the message is {size} bytes; the limit is {} bytes per message",
                            limits.max_message_bytes
                        ),
                        too_large: true,
                    });
                    continue;
                }
                let mut msg: Value = serde_json::from_str(item.get()).map_err(invalid_json)?;
                if let Some(shared) = &shared_context {
                    merge_context(&mut msg, shared);
                }
                messages.push((index, msg));
            }
            Ok(Envelope {
                write_key,
                messages,
                rejected,
                sent_at,
            })
        }
    }
}

/// Applies a batch's top-level `context` to a message: the message's own keys win.
fn merge_context(msg: &mut Value, shared: &Map<String, Value>) {
    let Some(obj) = msg.as_object_mut() else {
        return;
    };
    match obj.get_mut("context") {
        Some(Value::Object(own)) => {
            for (k, v) in shared {
                own.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        None | Some(Value::Null) => {
            obj.insert("context".into(), Value::Object(shared.clone()));
        }
        // A context of the wrong type is reported by validation.
        Some(_) => {}
    }
}

/// What the server adds to every message of a request.
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    /// `receivedAt`: the server's clock when the request arrived.
    pub received_at: Micros,
    /// The client's address, for messages without `context.ip` (`None`: leave them so).
    pub ip: Option<String>,
}

/// Sets `context.ip` when the message has an object (or no) context without one.
fn stamp_ip(msg: &mut Value, ip: &str) {
    let Some(obj) = msg.as_object_mut() else {
        return;
    };
    let context = obj
        .entry("context")
        .or_insert_with(|| Value::Object(Map::new()));
    if context.is_null() {
        *context = Value::Object(Map::new());
    }
    // A context of the wrong type is left for validation to report.
    if let Some(ctx) = context.as_object_mut() {
        ctx.entry("ip")
            .or_insert_with(|| Value::String(ip.to_string()));
    }
}

/// Validates every message; returns the valid events and the rejected messages (appended to
/// `envelope.rejected`), both in request order.
pub fn validate(
    endpoint: Endpoint,
    envelope: Envelope,
    channel: Option<&str>,
    stamp: &Stamp,
) -> (Vec<Event>, Vec<MessageError>) {
    let kind = match endpoint {
        Endpoint::Single(kind) => Some(kind),
        Endpoint::Batch => None,
    };
    let defaults = MessageDefaults {
        kind,
        channel,
        received_at: Some(stamp.received_at),
        sent_at: envelope.sent_at,
    };
    let mut events = Vec::with_capacity(envelope.messages.len());
    let mut rejected = envelope.rejected;
    for (index, mut msg) in envelope.messages {
        if let Some(ip) = &stamp.ip {
            stamp_ip(&mut msg, ip);
        }
        if let (Some(kind), Some(Value::String(t))) = (kind, msg.get("type"))
            && t != kind.as_str()
        {
            rejected.push(MessageError {
                index,
                field: "type".into(),
                reason: format!(
                    "this endpoint takes {} messages, got {t:?} (send other types to /v1/{t} or /v1/batch)",
                    kind.as_str()
                ),
                too_large: false,
            });
            continue;
        }
        match parse_message(&msg, &defaults) {
            Ok(e) => events.push(e),
            Err(e) => rejected.push(MessageError {
                index,
                field: e.field,
                reason: e.reason,
                too_large: false,
            }),
        }
    }
    rejected.sort_by_key(|e| e.index);
    (events, rejected)
}

/// The error answer for a request with rejected messages, `stored` of its others durable.
pub fn rejection(rejected: Vec<MessageError>, total: usize, stored: u64) -> ApiError {
    let code = if rejected.iter().any(|e| e.too_large) {
        Code::MessageTooLarge
    } else {
        Code::InvalidMessage
    };
    let first = &rejected[0];
    let message = if total == 1 && rejected.len() == 1 {
        format!("field \"{}\": {}", first.field, first.reason)
    } else {
        format!(
            "message {}: field \"{}\": {} ({} of {total} messages rejected; the {stored} others are stored)",
            first.index,
            first.field,
            first.reason,
            rejected.len(),
        )
    };
    ApiError {
        code,
        message,
        errors: rejected,
        stored: Some(stored),
        at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_message_bytes: 200,
        max_batch_bytes: 1000,
    };

    fn batch(v: Value) -> Result<Envelope, ApiError> {
        parse_envelope(Endpoint::Batch, v.to_string().as_bytes(), LIMITS)
    }

    #[test]
    fn batch_context_and_sent_at_apply_to_items() {
        let env = batch(json!({
            "writeKey": "k", "sentAt": "2024-01-01T00:00:10Z",
            "context": {"library": {"name": "x"}, "ip": "1.2.3.4"},
            "batch": [
                {"type": "track", "event": "a", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "context": {"ip": "5.6.7.8"}},
                {"type": "identify", "userId": "u"}
            ]
        }))
        .unwrap();
        assert_eq!(env.write_key.as_deref(), Some("k"));
        let received = parse_timestamp("2024-01-01T00:01:00Z").unwrap();
        let stamp = Stamp {
            received_at: received,
            ip: Some("9.9.9.9".into()),
        };
        let (events, rejected) = validate(Endpoint::Batch, env, None, &stamp);
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(
            events[0].timestamp,
            parse_timestamp("2024-01-01T00:00:50Z").unwrap()
        );
        let ctx: Value = serde_json::from_str(events[0].context.as_deref().unwrap()).unwrap();
        assert_eq!(ctx["ip"], "5.6.7.8", "the message's own ip wins");
        assert_eq!(ctx["library"]["name"], "x");
        let ctx: Value = serde_json::from_str(events[1].context.as_deref().unwrap()).unwrap();
        assert_eq!(ctx["ip"], "1.2.3.4", "then the batch's");
        // No timestamp: it happened when it was received.
        assert_eq!(events[1].timestamp, received);
        assert_eq!(events[1].received_at, Some(received));
    }

    #[test]
    fn shapes_that_are_not_a_batch_say_so() {
        let msg = |v: Value| batch(v).err().map(|e| e.message).unwrap_or_default();
        assert!(msg(json!([1])).contains("expected a JSON object"));
        assert!(msg(json!({"batch": {}})).contains("expected an array"));
        assert!(msg(json!({"x": 1})).contains("\"batch\": missing"));
        assert!(msg(json!({"batch": [], "sentAt": "soon"})).contains("sentAt"));
        let e = parse_envelope(Endpoint::Batch, b"{\"batch\": [", LIMITS)
            .err()
            .unwrap();
        assert_eq!(e.code, Code::InvalidJson);
        assert!(e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn oversize_items_are_rejected_by_index() {
        let big = "x".repeat(300);
        let env = batch(json!({"batch": [
            {"type": "identify", "userId": "u", "timestamp": "2024-01-01"},
            {"type": "identify", "userId": big}
        ]}))
        .unwrap();
        let (events, rejected) = validate(Endpoint::Batch, env, None, &Stamp::default());
        assert_eq!(events.len(), 1);
        assert_eq!(rejected[0].index, 1);
        assert_eq!(rejection(rejected, 2, 1).code, Code::MessageTooLarge);
    }

    #[test]
    fn gzip_is_inflated_within_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b' '; 5000]).unwrap();
        let zipped = gz.finish().unwrap();
        let e = decode_body(Endpoint::Batch, Some("gzip"), &zipped, LIMITS).unwrap_err();
        assert_eq!(e.code, Code::BatchTooLarge);
        let e = decode_body(Endpoint::Batch, Some("gzip"), b"not gzip", LIMITS).unwrap_err();
        assert_eq!(e.code, Code::InvalidGzip);
        let e = decode_body(Endpoint::Batch, Some("br"), b"{}", LIMITS).unwrap_err();
        assert_eq!(e.code, Code::UnsupportedEncoding);
    }

    #[test]
    fn single_endpoints_default_and_check_the_type() {
        let body = br#"{"userId": "u", "event": "e", "timestamp": "2024-01-01"}"#;
        let env = parse_envelope(Endpoint::Single(EventKind::Track), body, LIMITS).unwrap();
        let (events, _) = validate(
            Endpoint::Single(EventKind::Track),
            env,
            Some("sms"),
            &Stamp::default(),
        );
        assert_eq!(events[0].kind, EventKind::Track);
        assert_eq!(events[0].channel, "sms");
        let body = br#"{"type": "identify", "userId": "u"}"#;
        let env = parse_envelope(Endpoint::Single(EventKind::Track), body, LIMITS).unwrap();
        let (_, rejected) = validate(
            Endpoint::Single(EventKind::Track),
            env,
            None,
            &Stamp::default(),
        );
        assert_eq!(rejected[0].field, "type");
    }
}
