//! Cairn's event model: the types every other crate speaks, with no I/O.
//!
//! The interchange format is the [Segment Spec](https://segment.com/docs/connections/spec/):
//! `track`, `identify`, `page`, `screen`, `group` and `alias` messages. An [`Event`] is one such
//! message after validation, plus the two fields journeys need on top: a `channel` (where the
//! interaction happened) and a numeric `value` (revenue) when the message carries one.
//!
//! Parsing outside input into events lives here too ([`segment::parse_message`]), so the HTTP
//! server and the bulk importer accept exactly the same messages and report errors the same way.

pub mod channel;
pub mod event;
pub mod name_set;
pub mod segment;
pub mod time;

pub use channel::derive_channel;
pub use event::{Event, EventKind, Micros, derive_message_id, derived_id_text};
pub use name_set::NameSet;
pub use segment::{FieldError, MessageDefaults, parse_message};
pub use time::{TimeError, epoch_to_micros, format_micros, parse_timestamp};
