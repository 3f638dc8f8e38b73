//! Prometheus metrics, kept in atomics and written as the text exposition format by hand (a
//! metrics library would cost more compile time than these hundred lines).
//!
//! Ingest rate is `rate(cairn_ingest_events_total[1m])`; latency and log-append time are
//! histograms; so is the log's group-commit time (`cairn_log_fsync_duration_seconds`; the mean is
//! also `rate(cairn_log_fsync_seconds_total[1m]) / rate(cairn_log_fsyncs_total[1m])`); rejects
//! are counted by their stable error code.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::Code;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| (bound, n.load(Relaxed)));
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        write_histogram(out, name, help, buckets, self.count.load(Relaxed), sum);
    }
}

/// A histogram in the exposition format: `buckets` are (upper bound in seconds, count within
/// it and above the bound before), not cumulative; `count` includes those above every bound.
fn write_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: impl Iterator<Item = (f64, u64)>,
    count: u64,
    sum_seconds: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, n) in buckets {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum_seconds}\n{name}_count {count}");
}

#[derive(Default)]
pub struct Metrics {
    /// Ingest requests answered 200.
    pub requests_ok: AtomicU64,
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    /// Rejected requests by error code (index into [`Code::ALL`]).
    rejects: [AtomicU64; Code::ALL.len()],
    /// Invalid messages, counted one by one (a batch may hold several).
    pub invalid_messages: AtomicU64,
    /// From arrival to answer, for ingest requests that reached the store.
    pub request_seconds: Histogram,
    /// `Store::append`: from handing a batch to the store until its log record is fsynced
    /// (includes waiting for the group fsync in progress).
    pub append_seconds: Histogram,
    /// Requests waiting for a write turn right now.
    pub queued: AtomicU64,
    /// Requests being validated and written right now.
    pub writing: AtomicU64,
}

impl Metrics {
    pub fn reject(&self, code: Code) {
        if let Some(i) = Code::ALL.iter().position(|&c| c == code) {
            self.rejects[i].fetch_add(1, Relaxed);
        }
    }

    /// The exposition text; `log` are the store's group-commit counters.
    pub fn render(&self, log: cairn_store::LogSyncStats) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "cairn_ingest_requests_total",
            "Ingest requests acknowledged with 200 (their messages are durable).",
            self.requests_ok.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP cairn_ingest_events_total Messages acknowledged, by result.\n\
             # TYPE cairn_ingest_events_total counter\n\
             cairn_ingest_events_total{{result=\"stored\"}} {}\n\
             cairn_ingest_events_total{{result=\"duplicate\"}} {}",
            self.events_accepted.load(Relaxed),
            self.events_duplicate.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP cairn_rejected_requests_total Requests answered with an error, by error code.\n\
             # TYPE cairn_rejected_requests_total counter"
        );
        for (i, code) in Code::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "cairn_rejected_requests_total{{reason=\"{}\"}} {}",
                code.as_str(),
                self.rejects[i].load(Relaxed)
            );
        }
        counter(
            &mut out,
            "cairn_invalid_messages_total",
            "Messages rejected by validation (one batch may hold several).",
            self.invalid_messages.load(Relaxed),
        );
        self.request_seconds.write(
            &mut out,
            "cairn_ingest_request_duration_seconds",
            "Ingest request latency, from arrival to the durable answer.",
        );
        self.append_seconds.write(
            &mut out,
            "cairn_log_append_duration_seconds",
            "Time for a batch to become durable in the log (write + group fsync, including waiting for the fsync in progress).",
        );
        counter(
            &mut out,
            "cairn_log_fsyncs_total",
            "Group commits of the write-ahead log (each one write and one fsync, shared by concurrent requests).",
            log.syncs,
        );
        let _ = writeln!(
            out,
            "# HELP cairn_log_fsync_seconds_total Time spent writing and fsyncing the log.\n\
             # TYPE cairn_log_fsync_seconds_total counter\n\
             cairn_log_fsync_seconds_total {}",
            log.sync_micros as f64 / 1e6
        );
        let fsync_buckets = cairn_store::SYNC_BOUNDS_MICROS
            .iter()
            .zip(log.by_duration)
            .map(|(&bound, n)| (bound as f64 / 1e6, n));
        write_histogram(
            &mut out,
            "cairn_log_fsync_duration_seconds",
            "Time of each group commit of the log (one write and one fsync).",
            fsync_buckets,
            log.syncs,
            log.sync_micros as f64 / 1e6,
        );
        counter(
            &mut out,
            "cairn_log_written_bytes_total",
            "Bytes written to the log.",
            log.bytes,
        );
        gauge(
            &mut out,
            "cairn_ingest_queued_requests",
            "Requests waiting for a write turn.",
            self.queued.load(Relaxed),
        );
        gauge(
            &mut out,
            "cairn_ingest_writing_requests",
            "Requests being validated and written.",
            self.writing.load(Relaxed),
        );
        out
    }
}
