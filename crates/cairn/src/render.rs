//! Rendering store read results as tables for people or JSON for scripts.

use anyhow::{Result, bail};
use cairn_model::format_micros;
// One JSON shape for the CLI and the HTTP API, so they can never disagree.
pub use cairn_server::views::{stats_json, timeline_json};
use cairn_store::{Snapshot, Stats};

use crate::cli::{Format, TimelineArgs};

pub fn stats(snap: &Snapshot, format: Format) -> Result<()> {
    let stats = snap.stats();
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&stats_json(&stats))?);
        return Ok(());
    }
    print_stats(&stats);
    Ok(())
}

pub fn print_stats(stats: &Stats) {
    let time = |t: Option<i64>| t.map(format_micros).unwrap_or_else(|| "-".into());
    println!("customers   {}", stats.customers);
    println!("events      {}", stats.events);
    println!("first event {}", time(stats.first_event));
    println!("last event  {}", time(stats.last_event));
    println!(
        "on disk     {} in {} segment(s){}",
        human_bytes(stats.disk_bytes),
        stats.segments,
        if stats.log_events > 0 {
            format!(", {} events in the log", stats.log_events)
        } else {
            String::new()
        }
    );
    println!();
    print_counts("channel", &stats.channels, stats.events, usize::MAX);
    println!();
    print_counts("event", &stats.event_names, stats.events, 25);
}

fn print_counts(title: &str, rows: &[(String, u64)], total: u64, limit: usize) {
    let width = rows
        .iter()
        .take(limit)
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.len());
    println!("{title:<width$}  {:>12}  {:>6}", "events", "share");
    for (name, count) in rows.iter().take(limit) {
        println!(
            "{name:<width$}  {count:>12}  {:>5.1}%",
            *count as f64 * 100.0 / total.max(1) as f64
        );
    }
    if rows.len() > limit {
        println!("… and {} more", rows.len() - limit);
    }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn timeline(snap: &Snapshot, args: &TimelineArgs) -> Result<()> {
    let Some(mut events) = snap.timeline(&args.customer)? else {
        bail!(
            "no customer {:?} in {}",
            args.customer,
            snap.dir().display()
        );
    };
    let total = events.len();
    if let Some(limit) = args.limit {
        events.truncate(limit);
    }
    if args.format == Format::Json {
        let out = timeline_json(&args.customer, &events, total);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{}: {total} events", args.customer);
    for e in &events {
        let ev = &e.event;
        let value = ev.value.map(|v| format!("  value={v}")).unwrap_or_default();
        let props = ev
            .properties
            .as_deref()
            .map(|p| format!("  {p}"))
            .unwrap_or_default();
        println!(
            "{}  {:<12}  {:<9} {}{value}{props}",
            format_micros(ev.timestamp),
            ev.channel,
            ev.kind.as_str(),
            ev.event
        );
    }
    if events.len() < total {
        println!("… {} more (raise --limit)", total - events.len());
    }
    Ok(())
}
