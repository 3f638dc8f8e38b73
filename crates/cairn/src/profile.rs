//! `cairn profile` and `cairn profiles ...`: the single customer view and operator splits.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cairn_identity::{Config, Detached, IdentityGraph, Profile, Splits};
use cairn_model::format_micros;
use cairn_store::Snapshot;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::{Format, FormatArgs, open_snapshot};

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// Any identifier of the customer: `user_id:42`, `email:ann@example.com`, `phone:+4930…`,
    /// `anonymous_id:…`, `device_id:…`, `crm_id:…`, or a bare value (tried as user id,
    /// anonymous id, e-mail, phone, device id, external ids, in that order).
    pub identifier: String,
    /// Timeline events per page (the latest first page; see --page).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Timeline page, from 1 (the newest events).
    #[arg(long, default_value_t = 1)]
    pub page: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print everything held on the customer as JSON (the profile and every event), as
    /// `GET /v1/profiles/IDENTIFIER/export` answers: a subject access request.
    #[arg(long)]
    pub export: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProfilesCommand {
    /// Counts of identifiers, profiles, merges and refused merges (conflicts).
    Stats(FormatArgs),
    /// Detach an identifier from the profile it was merged into (unmerge).
    #[command(
        long_about = "Detach an identifier from the profile it was merged into (unmerge).\n\n\
No link to the identifier is made any more, so its events form a profile of their own again (with \
any identifier that was linked only through it). The split is kept in DATA_DIR/identity-splits.json \
and applies to every analysis at once; nothing in the store is rewritten. Undo it with \
`cairn profiles unsplit`."
    )]
    Split(SplitArgs),
    /// Undo a split: the identifier merges again where its events say it belongs.
    Unsplit(SplitArgs),
    /// The identifiers split off by operators.
    Splits(FormatArgs),
}

#[derive(Args, Debug)]
pub struct SplitArgs {
    /// The identifier, as for `cairn profile`.
    pub identifier: String,
    /// Why (kept with the split).
    #[arg(long)]
    pub reason: Option<String>,
}

fn load_config(dir: &Path) -> Result<Config> {
    Ok(Config::load(dir)?)
}

pub(crate) fn graph(dir: &Path, snap: &Snapshot, splits: &Splits) -> Result<IdentityGraph> {
    let config = load_config(dir)?;
    cairn_identity::build(snap, &config, splits).context("cannot read the store's events")
}

/// Which keys form one profile, from `DATA_DIR/identity-map.bin` while it matches the store
/// (see `cairn_identity::cache`), else built from the events; the flag says it was cached.
pub(crate) fn profile_map(
    dir: &Path,
    snap: &Snapshot,
    splits: &Splits,
) -> Result<(cairn_identity::cache::Profiles, bool)> {
    let config = load_config(dir)?;
    cairn_identity::cache::profile_map(dir, snap, &config, splits)
        .context("cannot read the store's events")
}

pub fn show(dir: &Path, args: &ProfileArgs) -> Result<()> {
    let snap = open_snapshot(dir)?;
    let splits = Splits::load(dir)?;
    let g = graph(dir, &snap, &splits)?;
    let Some(p) = g.lookup(&args.identifier) else {
        bail!(
            "no profile has the identifier {:?} (try kind:value, e.g. email:ann@example.com)",
            args.identifier
        );
    };
    let events = cairn_identity::profile_events(&snap, &g, p)?;
    let profile = Profile::build(&g, p, &events);
    // Newest first, a page at a time.
    let limit = args.limit.max(1);
    let page = args.page.max(1);
    let pages = events.len().div_ceil(limit).max(1);
    let page_events: Vec<_> = events
        .iter()
        .rev()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    if args.export {
        let out = cairn_server::profiles::export_json(&profile, &events);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if args.format == Format::Json {
        let out = cairn_server::profiles::profile_json(&profile, &events, page, limit);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let ids: Vec<String> = profile.identifiers.iter().map(|i| i.to_string()).collect();
    println!("profile of {}", args.identifier);
    println!("identifiers  {}", ids.join(", "));
    let time = |t: Option<i64>| t.map(format_micros).unwrap_or_else(|| "-".into());
    let c = &profile.computed;
    println!("first seen   {}", time(c.first_seen));
    println!("last seen    {}", time(c.last_seen));
    println!("events       {}", c.event_count);
    println!("revenue      {:.2}", c.total_revenue);
    println!(
        "channels     last {}, preferred {}",
        c.last_channel.as_deref().unwrap_or("-"),
        c.preferred_channel.as_deref().unwrap_or("-")
    );
    println!("stage        {}", c.lifecycle_stage);
    for (name, answer) in [("last CSAT", &c.last_csat), ("last NPS", &c.last_nps)] {
        if let Some(a) = answer {
            println!("{name:<12} {} on {}", a.score, format_micros(a.timestamp));
        }
    }
    if !profile.traits.is_empty() {
        println!("\ntraits");
        for (name, t) in &profile.traits {
            let changes = if t.history.is_empty() {
                String::new()
            } else {
                format!("  ({} earlier value(s))", t.history.len())
            };
            println!(
                "  {name:<16} {}  since {}{changes}",
                t.value,
                format_micros(t.timestamp)
            );
        }
    }
    if !profile.consent.is_empty() {
        println!("\nconsent");
        for (category, t) in &profile.consent {
            let state = if t.value { "granted" } else { "denied" };
            println!(
                "  {category:<16} {state}  since {} ({})",
                format_micros(t.timestamp),
                t.message_id
            );
        }
    }
    if !profile.merges.is_empty() {
        println!("\nmerges");
        for m in &profile.merges {
            println!(
                "  {}  {} + {}  by message {}",
                format_micros(m.timestamp),
                m.a,
                m.b,
                m.message_id
            );
        }
    }
    if !profile.conflicts.is_empty() {
        println!("\nnot merged (conflicts)");
        for c in &profile.conflicts {
            println!(
                "  {}  {} with {}  by message {}: {}",
                format_micros(c.timestamp),
                c.ours,
                c.theirs,
                c.message_id,
                c.reason
            );
        }
    }
    println!(
        "\ntimeline: {} events, page {page} of {pages}, newest first",
        events.len()
    );
    for e in page_events {
        let ev = &e.event;
        println!(
            "  {}  {:<12} {:<9} {}  ({})",
            format_micros(ev.timestamp),
            ev.channel,
            ev.kind.as_str(),
            ev.event,
            ev.customer_id()
        );
    }
    Ok(())
}

pub fn run(dir: &Path, command: &ProfilesCommand) -> Result<()> {
    match command {
        ProfilesCommand::Stats(args) => {
            let snap = open_snapshot(dir)?;
            let g = graph(dir, &snap, &Splits::load(dir)?)?;
            let out = json!({
                "identifiers": g.identifier_count(),
                "profiles": g.profile_count(),
                "merges": g.merge_count(),
                "conflicts": g.conflict_count(),
                "profiles_with_several_customer_ids": g.profile_map().multi_key_profiles(),
            });
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
                Format::Table => {
                    if let Some(map) = out.as_object() {
                        for (k, v) in map {
                            println!("{k:<36} {v}");
                        }
                    }
                }
            }
            Ok(())
        }
        ProfilesCommand::Split(args) => {
            let snap = open_snapshot(dir)?;
            let mut splits = Splits::load(dir)?;
            let g = graph(dir, &snap, &splits)?;
            let Some(id) = g.identifier(&args.identifier) else {
                bail!("no identifier {:?} in the store", args.identifier);
            };
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| format_micros(d.as_micros() as i64))
                .ok();
            let added = splits.detach(Detached {
                identifier: id.clone(),
                reason: args.reason.clone(),
                at,
            });
            if !added {
                println!("{id} was already split off");
                return Ok(());
            }
            splits.save(dir)?;
            let g = graph(dir, &snap, &splits)?;
            let left = g.find(&id).map(|p| g.identifiers(p).len()).unwrap_or(0);
            println!("split {id} off: its profile now has {left} identifier(s)");
            Ok(())
        }
        ProfilesCommand::Unsplit(args) => {
            let mut splits = Splits::load(dir)?;
            let config = load_config(dir)?;
            let found = cairn_identity::graph::candidates(&args.identifier, &config)
                .into_iter()
                .find(|id| splits.is_detached(id));
            let Some(id) = found else {
                bail!("{:?} is not split off", args.identifier);
            };
            splits.reattach(&id);
            splits.save(dir)?;
            println!("{id} merges again where its events say it belongs");
            Ok(())
        }
        ProfilesCommand::Splits(args) => {
            let splits = Splits::load(dir)?;
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&splits)?),
                Format::Table => {
                    if splits.detached.is_empty() {
                        println!("no splits");
                    }
                    for d in &splits.detached {
                        println!(
                            "{}  at {}  {}",
                            d.identifier,
                            d.at.as_deref().unwrap_or("-"),
                            d.reason.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

pub const FORGET_ABOUT: &str = "Right to be forgotten: remove a customer's profile, identities and \
every event.\n\n\
The identifier is resolved to its profile (as for `cairn profile`); every identifier merged into it \
and every customer id its events are filed under are forgotten together: their events are removed \
from the log and from every segment (the Parquet and scan files are rewritten), their ids from the \
customer dictionary, their rejected import records from DATA_DIR/quarantine and their operator \
splits. What stays is a suppression entry per identifier (a salted SHA-256 in \
DATA_DIR/suppressed.json, not the identifier), so later events sent under a forgotten user id or \
anonymous id are dropped when they arrive, by `cairn serve`, `ingest` and `import` alike.\n\n\
Without --yes it only shows what would be forgotten. Needs the writer lock: while `cairn serve` \
runs, use DELETE /v1/profiles/IDENTIFIER instead.";

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Any identifier of the customer, as for `cairn profile`.
    pub identifier: String,
    /// Really forget (without it, only show what would be forgotten).
    #[arg(long)]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn forget(dir: &Path, args: &ForgetArgs) -> Result<()> {
    open_snapshot(dir)?;
    let store = crate::cli::open_store(dir)?;
    let snap = store.snapshot()?;
    let mut splits = Splits::load(dir)?;
    let g = graph(dir, &snap, &splits)?;
    let Some(p) = g.lookup(&args.identifier) else {
        bail!(
            "no profile has the identifier {:?} (try kind:value, e.g. email:ann@example.com)",
            args.identifier
        );
    };
    let events = cairn_identity::profile_events(&snap, &g, p)?;
    let plan = cairn_identity::ForgetPlan::new(&g, &snap, p, &events);
    drop(events);
    drop(snap);
    let outcome = if args.yes {
        let outcome = store.forget(&plan.values())?;
        if plan.scrub_splits(&mut splits) {
            splits.save(dir)?;
        }
        Some(outcome)
    } else {
        None
    };
    if args.format == Format::Json {
        let out = json!({"plan": plan, "forgotten": outcome.is_some(), "outcome": outcome});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let ids: Vec<String> = plan.identifiers.iter().map(|i| i.to_string()).collect();
    println!("identifiers   {}", ids.join(", "));
    println!("customer ids  {}", plan.customer_ids.join(", "));
    if !plan.also_on_events.is_empty() {
        let other: Vec<String> = plan.also_on_events.iter().map(|i| i.to_string()).collect();
        println!(
            "also on their events (removed with them, not suppressed)  {}",
            other.join(", ")
        );
    }
    match outcome {
        None => println!("\nnothing changed: run again with --yes to forget them"),
        Some(o) => println!(
            "\nforgotten: {} events removed ({} segments rewritten, {} dropped), {} customer ids, \
{} quarantined records; {} identifiers suppressed",
            o.events_removed,
            o.segments_rewritten,
            o.segments_dropped,
            o.customers,
            o.quarantine_lines_removed,
            o.suppressed
        ),
    }
    Ok(())
}
