//! Journey orchestration: definitions (YAML, validated with line and column) and a
//! deterministic engine that turns events and time into effects.
//!
//! The engine never reads a clock and does no I/O: time is an argument, effects are return
//! values. So a backtest over last month's events and a live run give the same decisions, and
//! a test can run a week in a millisecond. See ARCHITECTURE.md, "Journeys".

pub mod definition;
pub mod engine;
pub mod guard;
pub mod schedule;
pub mod segment;

pub use definition::{Channel, DefinitionError, Journey};
pub use engine::{
    Effect, Engine, InputEvent, JourneyEvent, JourneyEventKind, Message, Suppression,
};
