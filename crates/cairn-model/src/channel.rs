//! Channels: where an interaction happened.

/// The channels Cairn knows by name. Any other lowercase name is accepted as is.
pub const KNOWN_CHANNELS: &[&str] = &[
    "web",
    "mobile",
    "email",
    "sms",
    "push",
    "call_center",
    "store",
    "crm",
    "ads",
    "chat",
    "social",
    "server",
];

/// The channel used when nothing in a message tells where it came from.
pub const UNKNOWN_CHANNEL: &str = "unknown";

/// Normalises a channel name: trimmed, lowercase, spaces and dashes as underscores.
pub fn normalize_channel(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Derives the channel of a Segment message that does not set one explicitly.
///
/// In order: Segment's `context.channel` (`browser` → web, `mobile`, `server`), a mobile
/// `context.app`/`context.device`/`context.os`, a browser `context.userAgent` or `context.page`,
/// then the message type (`page` → web, `screen` → mobile).
pub fn derive_channel(
    context: Option<&serde_json::Map<String, serde_json::Value>>,
    kind: crate::EventKind,
) -> String {
    if let Some(ctx) = context {
        if let Some(ch) = ctx.get("channel").and_then(|v| v.as_str()) {
            let ch = normalize_channel(ch);
            return match ch.as_str() {
                "browser" => "web".to_string(),
                "" => UNKNOWN_CHANNEL.to_string(),
                _ => ch,
            };
        }
        let is_mobile = ctx.contains_key("app")
            || ctx
                .get("device")
                .and_then(|d| d.get("type"))
                .and_then(|t| t.as_str())
                .is_some_and(|t| matches!(t, "ios" | "android" | "mobile" | "tablet"))
            || ctx
                .get("os")
                .and_then(|o| o.get("name"))
                .and_then(|n| n.as_str())
                .is_some_and(|n| {
                    let n = n.to_ascii_lowercase();
                    n.contains("ios") || n.contains("android")
                });
        if is_mobile {
            return "mobile".to_string();
        }
        if ctx.contains_key("userAgent") || ctx.contains_key("page") {
            return "web".to_string();
        }
    }
    match kind {
        crate::EventKind::Page => "web".to_string(),
        crate::EventKind::Screen => "mobile".to_string(),
        _ => UNKNOWN_CHANNEL.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;
    use serde_json::json;

    fn ctx(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn derives_from_context_then_type() {
        let check = |c: serde_json::Value, kind, want: &str| {
            assert_eq!(derive_channel(Some(&ctx(c)), kind), want);
        };
        check(json!({"channel": "browser"}), EventKind::Track, "web");
        check(
            json!({"channel": "Call Center"}),
            EventKind::Track,
            "call_center",
        );
        check(json!({"app": {"name": "x"}}), EventKind::Track, "mobile");
        check(json!({"os": {"name": "iOS"}}), EventKind::Track, "mobile");
        check(json!({"userAgent": "Mozilla"}), EventKind::Track, "web");
        check(json!({}), EventKind::Page, "web");
        check(json!({}), EventKind::Screen, "mobile");
        check(json!({}), EventKind::Track, "unknown");
        assert_eq!(derive_channel(None, EventKind::Identify), "unknown");
    }
}
