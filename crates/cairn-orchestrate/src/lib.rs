//! Runs applied journeys live on a store: used by `cairn journeys run` (its own process, its
//! own store) and by `cairn serve --journeys` (a thread on the server's store).
//!
//! - [`registry`]: the applied journey versions kept in the data directory (`apply`, `pause`,
//!   ...), which the runner follows.
//! - [`runner`]: follows the event log, drives the deterministic engine (`cairn-journey`) with
//!   an injected clock, sends messages through the outbox (`cairn-channels`) and writes
//!   progress back to the log; crash-safe by journaling its inputs (see its module doc).
//! - [`metrics`]: the per-version, per-step figures (entered, waiting, passed, exited,
//!   converted, sent, failed), kept by one fold over journey progress, which the runner
//!   applies live and `cairn journeys show` applies to the write-backs in the log.
//! - [`view`]: journeys with their figures as JSON, for the CLI and the HTTP API alike.
//!
//! The engine stays free of I/O and clocks; this crate is where they meet it. It knows no
//! HTTP: the server renders [`metrics::Metrics`] itself.

pub mod error;
pub mod metrics;
pub mod registry;
pub mod runner;
pub mod view;

pub use error::{Error, Result};
pub use metrics::{Fact, Metrics, Outcome, Progress, StepMetrics, VersionMetrics};
pub use runner::{ChannelsFile, LiveArgs, RunArgs, Runner, Shared};

/// Message ids of the events the runner writes back start with this.
pub const WRITEBACK_PREFIX: &str = "cairn-journey:";

/// Consent per category from a message's `context.consent.categoryPreferences`.
pub fn consent(context: Option<&str>) -> Vec<(String, bool)> {
    let Some(ctx) = context.and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok()) else {
        return Vec::new();
    };
    ctx.pointer("/consent/categoryPreferences")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_bool()?)))
                .collect()
        })
        .unwrap_or_default()
}
