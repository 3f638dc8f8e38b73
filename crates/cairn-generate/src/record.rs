//! The generator's compact in-memory event, and its JSON rendering.
//!
//! The simulation produces [`Record`]s: names, channels and property keys are `&'static str`,
//! values are small enums, so producing an event allocates nothing. Each output format renders
//! records directly; [`Record::to_event`] builds the model's [`Event`] for callers that want one.
//!
//! Properties and traits are rendered exactly as `cairn_model::parse_message` re-serialises
//! them (keys in byte order, numbers in their shortest form), so an event read back from the
//! JSONL output equals the event [`Record::to_event`] builds.

use cairn_model::{Event, EventKind};

use crate::timefmt::Millis;

/// The shop every generated URL points to. `example.com` is reserved for examples (RFC 2606).
pub const SHOP_URL: &str = "https://shop.example.com";

/// One property value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    Str(&'static str),
    /// An amount in cents, rendered as a decimal number (`12.3`, `-4.99`).
    Money(i64),
    Int(i64),
    Bool(bool),
    /// An order id, `ord-<customer number>-<order number>`.
    Order(u64, u32),
    /// A path on the shop, rendered as a full URL.
    Url(&'static str),
    /// The e-mail address of a customer number, `user-<n>@example.com`.
    Email(u64),
}

/// Up to [`Props::CAP`] key/value pairs, kept in key order like the JSON object they become.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Props {
    items: [(&'static str, Val); Props::CAP],
    len: u8,
}

impl Default for Props {
    fn default() -> Props {
        Props {
            items: [("", Val::Bool(false)); Props::CAP],
            len: 0,
        }
    }
}

impl Props {
    pub const CAP: usize = 7;

    /// Builds properties from pairs given in byte order of their keys.
    pub fn of(pairs: &[(&'static str, Val)]) -> Props {
        let mut p = Props::default();
        for &(k, v) in pairs {
            p.push(k, v);
        }
        p
    }

    /// Adds a pair. Keys must come in increasing byte order and fit in [`Props::CAP`]: both are
    /// fixed by the simulation's code, not by input, and tests exercise every call site.
    pub fn push(&mut self, key: &'static str, val: Val) {
        debug_assert!(
            self.len == 0 || self.items[self.len as usize - 1].0 < key,
            "{key}"
        );
        if (self.len as usize) < Props::CAP {
            self.items[self.len as usize] = (key, val);
            self.len += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, Val)> {
        self.items[..self.len as usize].iter()
    }

    pub fn get(&self, key: &str) -> Option<Val> {
        self.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }

    /// Renders the JSON object text.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, &(key, val)) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(key, out);
            out.push(b':');
            val.write_json(out);
        }
        out.push(b'}');
    }

    pub fn to_json(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(96);
        self.write_json(&mut out);
        // Only valid UTF-8 is ever pushed: static strings, digits and ASCII punctuation.
        Some(String::from_utf8(out).expect("rendered JSON is UTF-8"))
    }
}

impl Val {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match *self {
            Val::Str(s) => write_json_str(s, out),
            Val::Money(cents) => write_money(cents, out),
            Val::Int(v) => write_i64(v, out),
            Val::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Val::Order(..) | Val::Url(_) | Val::Email(_) => {
                out.push(b'"');
                self.write_text(out);
                out.push(b'"');
            }
        }
    }

    /// The value as plain text (a CSV cell): strings unquoted, numbers as in JSON.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        match *self {
            Val::Str(s) => out.extend_from_slice(s.as_bytes()),
            Val::Money(cents) => write_money(cents, out),
            Val::Int(v) => write_i64(v, out),
            Val::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Val::Order(customer, n) => {
                out.extend_from_slice(b"ord-");
                write_i64(customer as i64, out);
                out.push(b'-');
                write_i64(n as i64, out);
            }
            Val::Url(path) => {
                out.extend_from_slice(SHOP_URL.as_bytes());
                out.extend_from_slice(path.as_bytes());
            }
            Val::Email(customer) => {
                out.extend_from_slice(b"user-");
                write_i64(customer as i64, out);
                out.extend_from_slice(b"@example.com");
            }
        }
    }

    /// The numeric value, for the `value` column and [`Event::value`].
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            // Dividing two exactly representable integers rounds once, to the same double that
            // parsing the rendered decimal gives.
            Val::Money(cents) => Some(cents as f64 / 100.0),
            Val::Int(v) => Some(v as f64),
            _ => None,
        }
    }
}

/// Which identifiers a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ids {
    Anonymous,
    User,
    Both,
}

/// One generated message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record {
    pub kind: EventKind,
    /// The event name of a track, the name of a page or screen; unused for identify.
    pub name: &'static str,
    pub channel: &'static str,
    pub at: Millis,
    /// 128 random bits, rendered as a UUID v4.
    pub message_id: u128,
    pub ids: Ids,
    pub properties: Props,
    pub traits: Props,
}

impl Record {
    /// The activity name, as [`Event::event`] has it.
    pub fn event_name(&self) -> &'static str {
        match self.kind {
            EventKind::Track | EventKind::Page | EventKind::Screen => self.name,
            other => other.as_str(),
        }
    }

    /// Revenue in cents (negative for refunds), when the message carries any.
    pub fn revenue(&self) -> Option<Val> {
        self.properties
            .get("revenue")
            .filter(|v| matches!(v, Val::Money(_)))
    }

    pub fn user_id<'a>(&self, journey: &'a Journey) -> Option<&'a str> {
        match self.ids {
            Ids::User | Ids::Both => Some(&journey.user_id),
            Ids::Anonymous => None,
        }
    }

    pub fn anonymous_id<'a>(&self, journey: &'a Journey) -> Option<&'a str> {
        match self.ids {
            Ids::Anonymous | Ids::Both => Some(&journey.anonymous_id),
            Ids::User => None,
        }
    }

    /// The model's event for this record, equal to what `parse_message` makes of its JSONL line.
    pub fn to_event(&self, journey: &Journey) -> Event {
        let mut id = Vec::with_capacity(36);
        write_uuid(self.message_id, &mut id);
        Event {
            // Hex digits and dashes only.
            message_id: String::from_utf8(id).expect("uuid is ASCII"),
            kind: self.kind,
            event: self.event_name().to_string(),
            user_id: self.user_id(journey).map(str::to_string),
            anonymous_id: self.anonymous_id(journey).map(str::to_string),
            timestamp: self.at * 1000,
            sent_at: None,
            received_at: None,
            channel: self.channel.to_string(),
            value: self.revenue().and_then(|v| v.as_f64()),
            group_id: None,
            previous_id: None,
            properties: self.properties.to_json(),
            traits: self.traits.to_json(),
            context: None,
        }
    }
}

/// The messages of one customer, in time order, with the identifiers they refer to.
#[derive(Clone, Debug, Default)]
pub struct Journey {
    /// The customer's position in the generated population, from 0.
    pub index: u64,
    /// `user-<index + 1>`.
    pub user_id: String,
    /// `anon-<16 hex digits>`, unique per customer for a given seed.
    pub anonymous_id: String,
    pub records: Vec<Record>,
}

/// Writes a string as a JSON string literal, escaping like serde_json does.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Everything the generator writes takes this path; the loop below is for the rest.
    if bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub fn write_i64(v: i64, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes cents as the shortest decimal that reads back as the same `f64` (serde_json's form):
/// `1230` → `12.3`, `1200` → `12.0`, `5` → `0.05`.
pub fn write_money(cents: i64, out: &mut Vec<u8>) {
    if cents < 0 {
        out.push(b'-');
    }
    let c = cents.unsigned_abs();
    write_i64((c / 100) as i64, out);
    out.push(b'.');
    let frac = c % 100;
    out.push(b'0' + (frac / 10) as u8);
    if !frac.is_multiple_of(10) {
        out.push(b'0' + (frac % 10) as u8);
    }
}

/// Writes 128 bits as a version-4, variant-1 UUID: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
pub fn write_uuid(bits: u128, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v = (bits & !(0xF000u128 << 64) & !(0xC000u128 << 48))
        | (0x4000u128 << 64)
        | (0x8000u128 << 48);
    let mut buf = [b'-'; 36];
    let mut digit = 0;
    for slot in [0..8, 9..13, 14..18, 19..23, 24..36] {
        for b in &mut buf[slot] {
            *b = HEX[((v >> (124 - 4 * digit)) & 0xf) as usize];
            digit += 1;
        }
    }
    out.extend_from_slice(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn money_matches_serde_json() {
        for cents in [0, 5, 10, 99, 100, 1230, 1200, 123_456, -499, -1, 99_999_999] {
            let mine = text(|o| write_money(cents, o));
            let theirs = serde_json::Value::from(cents as f64 / 100.0).to_string();
            assert_eq!(mine, theirs, "{cents}");
            assert_eq!(mine.parse::<f64>().unwrap(), cents as f64 / 100.0);
        }
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "plain",
            "quote\"back\\slash",
            "ctl\n\t\r\u{1}\u{1f}",
            "naïve €",
        ] {
            let mine = text(|o| write_json_str(s, o));
            assert_eq!(mine, serde_json::Value::from(s).to_string());
        }
    }

    #[test]
    fn integers_render_in_full() {
        for v in [0, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            assert_eq!(text(|o| write_i64(v, o)), v.to_string());
        }
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let s = text(|o| write_uuid(u128::MAX, o));
        assert_eq!(s, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let s = text(|o| write_uuid(0, o));
        assert_eq!(s, "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn props_render_sorted_json() {
        let p = Props::of(&[
            ("category", Val::Str("shoes")),
            ("order_id", Val::Order(12, 2)),
            ("price", Val::Money(8999)),
            ("score", Val::Int(9)),
            ("url", Val::Url("/p/x")),
        ]);
        assert_eq!(
            p.to_json().unwrap(),
            r#"{"category":"shoes","order_id":"ord-12-2","price":89.99,"score":9,"url":"https://shop.example.com/p/x"}"#
        );
        assert_eq!(Props::default().to_json(), None);
    }
}
