//! `cairn generate` and `cairn demo`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use cairn_generate::{GenerateOptions, write_file};
use cairn_store::{Columns, Snapshot};
use indicatif::ProgressBar;
use serde_json::json;

use crate::cli::{DemoArgs, Format, GenerateArgs, ImportArgs, progress_bar};
use crate::render;

fn customer_bar(total: u64) -> ProgressBar {
    progress_bar(
        Some(total),
        "generating [{bar:30}] {pos}/{len} customers {per_sec} eta {eta}",
    )
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let started = Instant::now();
    let bar = customer_bar(args.customers);
    let summary = write_file(
        &GenerateOptions {
            customers: args.customers,
            seed: args.seed,
        },
        &args.out,
        |done| bar.set_position(done),
    )?;
    bar.finish_and_clear();
    println!(
        "{}: {} customers, {} events, {} in {:.2}s",
        args.out.display(),
        summary.customers,
        summary.events,
        render::human_bytes(summary.bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run(dir: &Path, args: &DemoArgs) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("cairn-demo-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let file = tmp.join(format!("demo-journeys-seed{}.jsonl", args.seed));
    let result = (|| {
        let quiet = args.format == Format::Json;
        if !quiet {
            println!(
                "Generating {} demo customers (seed {}) …",
                args.customers, args.seed
            );
        }
        let bar = customer_bar(args.customers);
        write_file(
            &GenerateOptions {
                customers: args.customers,
                seed: args.seed,
            },
            &file,
            |d| bar.set_position(d),
        )?;
        bar.finish_and_clear();
        if !quiet {
            println!("Importing into {} …", dir.display());
        }
        let import = ImportArgs {
            files: vec![file.clone()],
            customer: None,
            event: None,
            time: None,
            channel: None,
            value: None,
            message_id: None,
            default_channel: None,
            max_errors: 0,
            quarantine: None,
            chunk_events: 2_000_000,
            format: if quiet { Format::Json } else { Format::Table },
        };
        if quiet {
            // The JSON summary below is the only output in JSON mode.
            crate::import::run_quiet(dir, &import)?;
        } else {
            crate::import::run(dir, &import)?;
        }
        let snap = crate::cli::open_snapshot(dir)?;
        summary(&snap, args.format)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The most common journeys (first steps, repeats collapsed) and hand-offs between steps.
fn summary(snap: &Snapshot, format: Format) -> Result<()> {
    const PREFIX: usize = 5;
    let mut paths: HashMap<Vec<u16>, u64> = HashMap::new();
    let mut edges: HashMap<(u16, u16), u64> = HashMap::new();
    snap.scan(
        Columns {
            names: true,
            ..Default::default()
        },
        |c| {
            let mut path: Vec<u16> = Vec::with_capacity(PREFIX);
            for &n in c.names {
                if path.last() != Some(&n) {
                    if path.len() == PREFIX {
                        break;
                    }
                    path.push(n);
                }
            }
            *paths.entry(path).or_default() += 1;
            for w in c.names.windows(2) {
                *edges.entry((w[0], w[1])).or_default() += 1;
            }
        },
    )?;
    let names = snap.event_names();
    let name = |i: u16| names.get(i as usize).map(String::as_str).unwrap_or("?");
    let mut paths: Vec<_> = paths.into_iter().collect();
    paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let stats = snap.stats();
    if format == Format::Json {
        let out = json!({
            "stats": render::stats_json(&stats),
            "top_paths": paths.iter().take(10).map(|(p, n)| json!({
                "events": p.iter().map(|&i| name(i)).collect::<Vec<_>>(), "customers": n
            })).collect::<Vec<_>>(),
            "top_transitions": edges.iter().take(10).map(|((a, b), n)| json!({
                "from": name(*a), "to": name(*b), "count": n
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!();
    render::print_stats(&stats);
    println!(
        "\n(customers counts raw ids: a visitor's anonymous id and the user id they later sign in \
         with count twice until identity resolution merges them)"
    );
    println!("\nmost common journeys (first {PREFIX} steps, repeats collapsed)");
    for (path, n) in paths.iter().take(10) {
        let share = *n as f64 * 100.0 / stats.customers.max(1) as f64;
        println!(
            "{n:>8} {share:>5.1}%  {}",
            path.iter()
                .map(|&i| name(i))
                .collect::<Vec<_>>()
                .join(" → ")
        );
    }
    println!("\nmost common transitions");
    for ((a, b), n) in edges.iter().take(10) {
        println!("{n:>8}  {} → {}", name(*a), name(*b));
    }
    println!(
        "\nNext: `cairn --data-dir {} timeline CUSTOMER`, `cairn stats --format json`",
        snap.dir().display()
    );
    Ok(())
}
