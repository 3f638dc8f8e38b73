//! The validated event, the unit of everything Cairn stores.

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC. Every time in Cairn is one of these.
pub type Micros = i64;

/// The six Segment message types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The default: most messages are tracked events.
    #[default]
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Track,
        EventKind::Identify,
        EventKind::Page,
        EventKind::Screen,
        EventKind::Group,
        EventKind::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Track => "track",
            EventKind::Identify => "identify",
            EventKind::Page => "page",
            EventKind::Screen => "screen",
            EventKind::Group => "group",
            EventKind::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One interaction of one customer, validated.
///
/// `properties`, `traits` and `context` are kept as JSON object text exactly as received
/// (re-serialised compactly): Cairn never drops what a source sent, and keeping text avoids
/// building a tree for every event on the hot import path.
/// `Event::default()` is an empty track event, for building one field by field (tests, fixtures).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per message; the key for deduplication. Derived from the content for sources that
    /// have none (see [`derive_message_id`]).
    pub message_id: String,
    pub kind: EventKind,
    /// The activity name used by every analysis: `event` of a track, `name` of a page or screen
    /// (`page` / `screen` when unnamed), and the type name for identify, group and alias.
    pub event: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// When it happened (after clock-skew correction, where the source allows it).
    pub timestamp: Micros,
    pub sent_at: Option<Micros>,
    pub received_at: Option<Micros>,
    /// Where it happened: web, mobile, email, sms, push, call_center, store, crm, ads, ...
    pub channel: String,
    /// Revenue or another numeric value of the interaction.
    pub value: Option<f64>,
    pub group_id: Option<String>,
    pub previous_id: Option<String>,
    /// JSON object text, or `None` when empty.
    pub properties: Option<String>,
    pub traits: Option<String>,
    pub context: Option<String>,
}

impl Event {
    /// The raw identifier this event is filed under: the `userId` when present, else the
    /// `anonymousId`. Identity resolution later maps several of these to one profile.
    pub fn customer_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or_default()
    }
}

/// A stable message id for a record whose source has none (an XES event, a CSV row).
///
/// The id is a hash of what identifies the record — the parts given by the importer, such as
/// source format, customer, activity, timestamp and the record's position among identical
/// records — so importing the same file twice yields the same ids and stores nothing twice.
pub fn derive_message_id(kind: &str, parts: &[&[u8]]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    derived_id_text(kind, hasher.digest128())
}

/// The text of a derived id: `KIND-` and the 128-bit digest as 32 hex digits. Hand-written
/// because `format!` was a fifth of the CSV import's time.
pub fn derived_id_text(kind: &str, digest: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(kind.len() + 33);
    id.push_str(kind);
    id.push('-');
    for i in (0..32).rev() {
        id.push(HEX[((digest >> (i * 4)) & 0xf) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_unambiguous() {
        let a = derive_message_id("csv", &[b"c1", b"view", b"17"]);
        assert_eq!(a, derive_message_id("csv", &[b"c1", b"view", b"17"]));
        assert!(a.starts_with("csv-"));
        assert_eq!(a.len(), 4 + 32);
        // Length prefixes keep ("ab","c") apart from ("a","bc").
        assert_ne!(
            derive_message_id("csv", &[b"ab", b"c"]),
            derive_message_id("csv", &[b"a", b"bc"])
        );
    }

    #[test]
    fn kind_round_trips() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("click"), None);
    }
}
