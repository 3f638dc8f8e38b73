//! Rendering store read results as tables for people or JSON for scripts.

use anyhow::{Result, bail};
use cairn_model::format_micros;
use cairn_store::{Snapshot, Stats, StoredEvent};
use serde_json::{Map, Value, json};

use crate::cli::{Format, TimelineArgs};

pub fn stats_json(stats: &Stats) -> Value {
    let counts = |list: &[(String, u64)]| -> Map<String, Value> {
        list.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
    };
    json!({
        "customers": stats.customers,
        "events": stats.events,
        "first_event": stats.first_event.map(format_micros),
        "last_event": stats.last_event.map(format_micros),
        "event_names": counts(&stats.event_names),
        "channels": counts(&stats.channels),
        "disk_bytes": stats.disk_bytes,
        "segments": stats.segments,
        "log_events": stats.log_events,
    })
}

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

fn parse_json_text(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

pub fn event_json(e: &StoredEvent) -> Value {
    let ev = &e.event;
    let mut m = Map::new();
    m.insert("messageId".into(), json!(ev.message_id));
    m.insert("type".into(), json!(ev.kind.as_str()));
    m.insert("event".into(), json!(ev.event));
    m.insert("timestamp".into(), json!(format_micros(ev.timestamp)));
    m.insert("channel".into(), json!(ev.channel));
    let mut opt = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.into(), v);
        }
    };
    opt("userId", json!(ev.user_id));
    opt("anonymousId", json!(ev.anonymous_id));
    opt("value", json!(ev.value));
    opt("sentAt", json!(ev.sent_at.map(format_micros)));
    opt("receivedAt", json!(ev.received_at.map(format_micros)));
    opt("groupId", json!(ev.group_id));
    opt("previousId", json!(ev.previous_id));
    opt("properties", parse_json_text(&ev.properties));
    opt("traits", parse_json_text(&ev.traits));
    opt("context", parse_json_text(&ev.context));
    m.insert("seq".into(), json!(e.seq));
    Value::Object(m)
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
        let out = json!({
            "customer": args.customer,
            "total_events": total,
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
        });
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
