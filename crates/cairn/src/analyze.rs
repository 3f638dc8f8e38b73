//! `cairn map`, `variants`, `funnel`, `paths`, `retention`: the discovery commands.
//!
//! Each command resolves its flags against the store's name tables, runs a
//! `cairn_discovery` analysis over a parallel scan (one partial result per thread, merged at the
//! end) and renders the result as a table, JSON or DOT. No analysis logic lives here.
//!
//! Every command analyses *profiles* by default: it builds the identity graph once from the
//! snapshot (with the operator's splits and merge rules from the data directory) and scans with
//! `cairn_identity::scan_profiles_parallel`, so the events an anonymous id sent before login
//! belong to the customer, whatever order identify and events arrived in. `--no-stitch` scans
//! the raw ids as stored.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use cairn_discovery::funnel::{BreakdownBy, FunnelResult, FunnelSpec, StepResult};
use cairn_discovery::map::{MapResult, run_windowed};
use cairn_discovery::stats::human_duration;
use cairn_discovery::{
    ActivityCounts, Analysis, Funnel, FunnelMode, ProcessMap, ScanSize, Scope, Scoped, StepSpec,
    Timeline, Variants, VariantsResult, error::parse_duration, finish_partials, name_id,
};
use cairn_identity::Splits;
use cairn_identity::cache::Profiles;
use cairn_store::{Columns, Customer, Ids, Names, Snapshot, Visit};
use clap::{Args, ValueEnum};

use crate::cli::{Format, open_snapshot};

/// Which customers and which period every analysis looks at.
#[derive(Args, Debug, Clone, Default)]
pub struct ScopeArgs {
    /// Only events at or after this time (e.g. 2026-01-01, midnight in --tz, or
    /// 2026-01-01T08:00:00Z).
    #[arg(long, value_name = "TIME", help_heading = "Scope")]
    pub since: Option<String>,
    /// Only events before this time.
    #[arg(long, value_name = "TIME", help_heading = "Scope")]
    pub until: Option<String>,
    /// Only customers who did EVENT (in the period). EVENT may carry property conditions and
    /// a window after the customer's first event: 'Order Completed[plan=pro] within 7d'.
    /// Repeat to require several.
    #[arg(long, value_name = "EVENT", help_heading = "Scope")]
    pub where_did: Vec<String>,
    /// Only customers who never did EVENT (in the period; same syntax as --where-did, so
    /// 'Order Completed within 7d' keeps those who did not order in their first 7 days).
    /// Repeatable.
    #[arg(long, value_name = "EVENT", help_heading = "Scope")]
    pub where_not_did: Vec<String>,
    /// Only customers whose first event (in the period) came through CHANNEL.
    #[arg(long, value_name = "CHANNEL", help_heading = "Scope")]
    pub first_channel: Option<String>,
    /// Only customers first seen in PERIOD (their first event ever, in --tz): a day
    /// 2026-01-15, an ISO week 2026-W03, a month 2026-01 or a year 2026.
    #[arg(long, value_name = "PERIOD", help_heading = "Scope")]
    pub cohort: Option<String>,
    /// Time zone for everything bucketed by calendar day (cohorts, retention periods, bare
    /// dates in --since / --until): an IANA name such as Europe/Paris, or UTC.
    #[arg(
        long,
        default_value = "UTC",
        value_name = "ZONE",
        help_heading = "Scope"
    )]
    pub tz: String,
}

/// Resolves a --tz value.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    jiff::tz::TimeZone::get(name).with_context(|| {
        format!("--tz {name:?}: unknown time zone (try an IANA name such as Europe/Paris)")
    })
}

/// A --since / --until value: a bare date is midnight in `tz`, anything else a timestamp.
fn parse_time(s: &str, tz: &jiff::tz::TimeZone) -> Result<i64> {
    if let Ok(date) = s.trim().parse::<jiff::civil::Date>() {
        return Ok(date.to_zoned(tz.clone())?.timestamp().as_microsecond());
    }
    Ok(cairn_model::parse_timestamp(s)?)
}

impl ScopeArgs {
    fn resolve(&self, snap: &Snapshot) -> Result<Scope> {
        let tz = time_zone(&self.tz)?;
        let time = |s: &Option<String>, flag: &str| -> Result<Option<i64>> {
            s.as_deref()
                .map(|s| parse_time(s, &tz).with_context(|| format!("--{flag}")))
                .transpose()
        };
        let names = snap.event_names();
        // Plain event names are the fast did / did-not lists; conditions make behaviours.
        let (mut did, mut did_not, mut behaviours) = (Vec::new(), Vec::new(), Vec::new());
        for (list, negate, flag) in [
            (&self.where_did, false, "where-did"),
            (&self.where_not_did, true, "where-not-did"),
        ] {
            for text in list {
                let b =
                    cairn_discovery::scope::parse_behaviour(text, negate, |n| name_id(names, n))
                        .with_context(|| format!("--{flag}"))?;
                match (b.within, b.properties.is_empty(), negate) {
                    (None, true, false) => did.push(b.event),
                    (None, true, true) => did_not.push(b.event),
                    _ => behaviours.push(b),
                }
            }
        }
        let first_channel = match &self.first_channel {
            None => None,
            Some(ch) => Some(
                snap.channels()
                    .iter()
                    .position(|c| c == ch)
                    .map(|i| i as u16)
                    .ok_or_else(|| cairn_discovery::DiscoveryError::UnknownChannel {
                        name: ch.clone(),
                        known: snap.channels().to_vec(),
                    })
                    .context("--first-channel")?,
            ),
        };
        Ok(Scope {
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            did,
            did_not,
            first_channel,
            behaviours,
            cohort: self
                .cohort
                .as_deref()
                .map(|c| cairn_discovery::scope::parse_cohort(c, &tz))
                .transpose()
                .context("--cohort")?,
        })
    }
}

/// Whether the discovery commands analyse profiles (the default) or raw customer ids.
#[derive(Args, Debug, Clone, Default)]
pub struct StitchArgs {
    /// Analyse raw customer ids as stored, without identity resolution. By default the ids
    /// that identify / alias calls and shared identifiers (e-mail, phone, device, …) link into
    /// one profile are one customer: customer counts are profile counts, and events sent
    /// anonymously before login belong to the profile (splits from `cairn profiles split`
    /// apply).
    #[arg(long, help_heading = "Scope")]
    pub no_stitch: bool,
}

/// What a command analyses: the snapshot and, when stitching, which of its keys form one
/// profile. Opened once per command, so the identity graph is built once however many passes
/// the command makes.
pub struct Source {
    pub snap: Snapshot,
    /// None for `--no-stitch`, and when no profile has more than one key (nothing to merge).
    profiles: Option<Profiles>,
}

impl Source {
    pub fn open(dir: &Path, stitch: &StitchArgs) -> Result<Source> {
        let snap = open_snapshot(dir)?;
        let profiles = if stitch.no_stitch {
            None
        } else {
            let splits = Splits::load(dir)?;
            let (map, _) = crate::profile::profile_map(dir, &snap, &splits)?;
            (map.multi_key_profiles() > 0).then_some(map)
        };
        Ok(Source { snap, profiles })
    }
}

impl std::ops::Deref for Source {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

/// Prints a result as pretty JSON for scripts or as the command's table for people.
fn print_result<R: serde::Serialize>(
    format: Format,
    r: &R,
    table: impl FnOnce(&R) -> String,
) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(r)?),
        Format::Table => print!("{}", table(r)),
    }
    Ok(())
}

/// Runs an analysis over every customer (profile, when stitching) of the source, on all cores.
pub fn execute<A: Analysis>(src: &Source, analysis: &A) -> Result<A::Output> {
    Ok(finish_partials(analysis, partials(src, analysis, None)?))
}

/// Runs an analysis over about one customer (or profile) in `every`
/// ([`Snapshot::scan_sample_parallel`]): for plans, such as a process map's duration
/// windows, that the full scan checks.
pub fn execute_sample<A: Analysis>(src: &Source, analysis: &A, every: u32) -> Result<A::Output> {
    Ok(finish_partials(
        analysis,
        partials(src, analysis, Some(every))?,
    ))
}

/// One partial of `analysis` per core, over all the source's customers (profiles, when
/// stitching) or about one in `sample`.
fn partials<A: Analysis>(
    src: &Source,
    analysis: &A,
    sample: Option<u32>,
) -> Result<Vec<A::Partial>> {
    let needs = analysis.needs();
    let columns = Columns {
        times: true,
        names: true,
        channels: needs.channels,
        values: needs.values,
        properties: needs.properties,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let size = ScanSize {
        customers: src.snap.key_count(),
        events: src.snap.events() as usize,
    };
    // A sample's partials stay small: reserving for the whole scan would be waste.
    let init = || match sample {
        None => analysis.partial_for(size),
        Some(_) => analysis.partial(),
    };
    let add = Fold(analysis);
    let snap = &src.snap;
    Ok(match (&src.profiles, sample) {
        (Some(map), None) => {
            cairn_identity::scan_profiles_parallel(snap, map, columns, threads, init, add)?
        }
        (Some(map), Some(every)) => cairn_identity::scan_profiles_sample_parallel(
            snap, map, columns, every, threads, init, add,
        )?,
        (None, None) => snap.scan_parallel(columns, threads, init, add)?,
        (None, Some(every)) => snap.scan_sample_parallel(columns, every, threads, init, add)?,
    })
}

/// A scan's visitor folding customers into an analysis's partials: from their names alone
/// where the analysis can ([`Analysis::add_by_names`]), so the scan decodes nothing else of
/// them, else as timelines.
struct Fold<'a, A>(&'a A);

impl<A: Analysis> Visit<A::Partial> for Fold<'_, A> {
    fn by_names(&self, p: &mut A::Partial, names: Names<'_>) -> bool {
        match names.ids {
            Ids::Narrow(ids) => self.0.add_by_names(p, ids, names.set),
            Ids::Wide(ids) => self.0.add_by_names(p, ids, names.set),
        }
    }

    fn visit(&self, p: &mut A::Partial, c: Customer<'_>) {
        let t = Timeline {
            customer: c.key,
            times: c.times,
            names: c.names,
            channels: c.channels,
            values: c.values,
            properties: c.properties,
        };
        self.0.add(p, &t);
    }
}

/// One customer in this many plans a process map's duration windows, for a thirtieth of a
/// scan. 1 in 16 measured no faster at 12 M events (windows narrower, sample dearer).
const MAP_SAMPLE: u32 = 32;

// ---------------------------------------------------------------------------------------------
// cairn map

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum MapFormat {
    #[default]
    Table,
    Json,
    /// Graphviz: `cairn map --format dot | dot -Tsvg > map.svg`
    Dot,
}

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Leave out edges seen fewer than N times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_count: u64,
    /// Keep only the K most frequent activities; events of others are removed from journeys
    /// first, so a → x → b with x removed shows as a → b.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Edges shown in the table (JSON and DOT have all that pass --min-count).
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub rows: usize,
    #[arg(long, value_enum, default_value_t = MapFormat::Table)]
    pub format: MapFormat,
    /// Keep every transition's duration for the medians and p90s, instead of only those near
    /// them (as planned on a sample of the customers). Same output, for comparisons.
    #[arg(long, hide = true)]
    pub keep_all_durations: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

pub fn map(dir: &Path, args: &MapArgs) -> Result<()> {
    let snap = Source::open(dir, &args.stitch)?;
    let scope = args.scope.resolve(&snap)?;
    let names = snap.event_names().to_vec();
    let keep = match args.top {
        None => None,
        Some(k) => {
            let counts = execute(
                &snap,
                &Scoped {
                    scope: scope.clone(),
                    inner: ActivityCounts { names: names.len() },
                },
            )?;
            let mut keep = vec![false; names.len()];
            for id in counts.top(k) {
                keep[id as usize] = true;
            }
            Some(keep)
        }
    };
    let map = ProcessMap {
        names,
        keep,
        min_count: args.min_count,
        windows: None,
    };
    let scoped = |inner: &ProcessMap| Scoped {
        scope: scope.clone(),
        inner: inner.clone(),
    };
    let r = if args.keep_all_durations {
        execute(&snap, &scoped(&map))?
    } else {
        run_windowed(
            &map,
            |plan| {
                let plan = Scoped {
                    scope: scope.clone(),
                    inner: plan,
                };
                execute_sample(&snap, &plan, MAP_SAMPLE)
            },
            |m| execute(&snap, &scoped(m)),
        )?
    };
    match args.format {
        MapFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        MapFormat::Dot => print!("{}", map_dot(&r)),
        MapFormat::Table => print!("{}", map_table(&r, args.rows)),
    }
    Ok(())
}

fn map_table(r: &MapResult, rows: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "process map: {} customers, {} events, {} activities, {} edges{}",
        r.customers,
        r.events,
        r.activities.len(),
        r.edges.len(),
        if r.hidden_edges > 0 {
            format!(" ({} rarer edges hidden by --min-count)", r.hidden_edges)
        } else {
            String::new()
        }
    );
    let list = |pairs: &[(String, u64)]| {
        pairs
            .iter()
            .take(6)
            .map(|(n, c)| format!("{n} ({c})"))
            .collect::<Vec<_>>()
            .join(", ")
            + if pairs.len() > 6 { ", …" } else { "" }
    };
    let _ = writeln!(o, "start: {}", list(&r.start));
    let _ = writeln!(o, "end:   {}", list(&r.end));
    let _ = writeln!(o);
    let w = r
        .edges
        .iter()
        .take(rows)
        .map(|e| e.from.chars().count() + e.to.chars().count() + 3)
        .max()
        .unwrap_or(4)
        .clamp(4, 70);
    let _ = writeln!(
        o,
        "{:<w$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
        "edge", "count", "customers", "median", "mean", "p90"
    );
    for e in r.edges.iter().take(rows) {
        let label = truncate(&format!("{} → {}", e.from, e.to), w);
        let _ = writeln!(
            o,
            "{label:<w$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
            e.count,
            e.customers,
            human_duration(e.median_s),
            human_duration(e.mean_s),
            human_duration(e.p90_s)
        );
    }
    if r.edges.len() > rows {
        let _ = writeln!(
            o,
            "… and {} more edges (--rows, --min-count, --top, or --format json / dot)",
            r.edges.len() - rows
        );
    }
    o
}

fn map_dot(r: &MapResult) -> String {
    let q = |s: &str| {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        format!("\"{escaped}\"")
    };
    let max = r.edges.iter().map(|e| e.count).max().unwrap_or(1).max(1) as f64;
    let width = |c: u64| 1.0 + 5.0 * (c as f64 / max).sqrt();
    let mut o = String::from(
        "digraph process_map {\n  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    let _ = writeln!(
        o,
        "  \"__start\" [label=\"start\", shape=circle, style=filled, fillcolor=\"#8fd18f\"];\n  \"__end\" [label=\"end\", shape=doublecircle, style=filled, fillcolor=\"#f0a0a0\"];"
    );
    for a in &r.activities {
        let _ = writeln!(
            o,
            "  {} [label={}];",
            q(&a.name),
            q(&format!("{}\n{} events", a.name, a.events))
        );
    }
    for (name, c) in &r.start {
        let _ = writeln!(
            o,
            "  \"__start\" -> {} [label=\"{c}\", style=dashed, penwidth={:.2}];",
            q(name),
            width(*c)
        );
    }
    for e in &r.edges {
        let _ = writeln!(
            o,
            "  {} -> {} [label={}, penwidth={:.2}];",
            q(&e.from),
            q(&e.to),
            q(&format!("{} · {}", e.count, human_duration(e.median_s))),
            width(e.count)
        );
    }
    for (name, c) in &r.end {
        let _ = writeln!(
            o,
            "  {} -> \"__end\" [label=\"{c}\", style=dashed, penwidth={:.2}];",
            q(name),
            width(*c)
        );
    }
    o.push_str("}\n");
    o
}

fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

// ---------------------------------------------------------------------------------------------
// cairn variants

#[derive(Args, Debug)]
pub struct VariantsArgs {
    /// How many variants to list (the most common first).
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub top: usize,
    /// Group journeys by what customers did before their first EVENT (whole journey if
    /// never) and report how often each such path reached it.
    #[arg(long, value_name = "EVENT")]
    pub goal: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

pub fn variants(dir: &Path, args: &VariantsArgs) -> Result<()> {
    let snap = Source::open(dir, &args.stitch)?;
    let names = snap.event_names().to_vec();
    let goal = args
        .goal
        .as_deref()
        .map(|g| name_id(&names, g))
        .transpose()
        .context("--goal")?;
    let analysis = Scoped {
        scope: args.scope.resolve(&snap)?,
        inner: Variants {
            names,
            top: args.top,
            goal,
        },
    };
    let r = execute(&snap, &analysis)?;
    print_result(args.format, &r, variants_table)
}

fn variants_table(r: &VariantsResult) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} variants over {} customers; the top {} cover {:.1}%",
        r.total_variants,
        r.customers,
        r.variants.len(),
        100.0 * (r.customers - r.other_customers) as f64 / r.customers.max(1) as f64
    );
    let goal = r.variants.iter().any(|v| v.goal_rate.is_some());
    let _ = writeln!(
        o,
        "{:>3}  {:>8}  {:>6}  {:>9}  {}{:>10}  journey",
        "#",
        "count",
        "share",
        "duration",
        if goal { "  goal" } else { "" },
        "revenue"
    );
    for (i, v) in r.variants.iter().enumerate() {
        let journey = compress(&v.events);
        let _ = writeln!(
            o,
            "{:>3}  {:>8}  {:>5.1}%  {:>9}  {}{:>10.2}  {}",
            i + 1,
            v.count,
            v.share * 100.0,
            human_duration(v.median_duration_s),
            v.goal_rate
                .map(|g| format!("{:>5.0}%", g * 100.0))
                .unwrap_or_default(),
            v.revenue,
            truncate(&journey, 110)
        );
    }
    o
}

/// `a → b → b → b → c` as `a → b ×3 → c`, so long journeys fit a line.
fn compress(events: &[String]) -> String {
    if events.is_empty() {
        return "(nothing before the goal)".into();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let mut j = i;
        while j + 1 < events.len() && events[j + 1] == events[i] {
            j += 1;
        }
        let n = j - i + 1;
        parts.push(if n > 1 {
            format!("{} ×{n}", events[i])
        } else {
            events[i].clone()
        });
        i = j + 1;
    }
    parts.join(" → ")
}

// ---------------------------------------------------------------------------------------------
// cairn funnel

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum ModeArg {
    /// Ordered steps, other events allowed in between, a later first step restarts the window.
    #[default]
    Default,
    /// Steps must be consecutive events of the journey.
    Strict,
    /// Steps in any order within the window.
    AnyOrder,
    /// Exactly ClickHouse's windowFunnel (default mode): whole seconds, ties in step order.
    Clickhouse,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Semantics of every mode, with worked examples: docs/funnels.md.\n\n\
Examples:\n  cairn funnel 'Product Viewed' 'Product Added' 'Order Completed' --window 7d\n  \
cairn funnel 'Product Viewed' 'Order Completed[plan=pro]' --breakdown channel\n  \
cairn funnel A B C --mode clickhouse --window 30d --format json"
)]
pub struct FunnelArgs {
    /// The steps in order: an event name, optionally with property conditions, e.g.
    /// 'Order Completed[plan=pro,country=FR]'.
    #[arg(required = true, value_name = "STEP")]
    pub steps: Vec<String>,
    /// How long a customer has from the first step to the last (30s, 15m, 2h, 7d, 2w).
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub window: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Default)]
    pub mode: ModeArg,
    /// An event that ends any attempt in progress (repeatable).
    #[arg(long, value_name = "EVENT")]
    pub exclude: Vec<String>,
    /// Split by the first-step event's `channel` or a property: `property:NAME`.
    #[arg(long, value_name = "channel|property:NAME")]
    pub breakdown: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

pub fn funnel(dir: &Path, args: &FunnelArgs) -> Result<()> {
    let snap = Source::open(dir, &args.stitch)?;
    let steps = args
        .steps
        .iter()
        .map(|s| StepSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let breakdown = match &args.breakdown {
        None => None,
        Some(b) => Some(BreakdownBy::parse(b).with_context(|| {
            format!("--breakdown {b:?}: expected `channel` or `property:NAME`")
        })?),
    };
    let spec = FunnelSpec {
        steps,
        window: parse_duration(&args.window).context("--window")?,
        mode: match args.mode {
            ModeArg::Default => FunnelMode::Default,
            ModeArg::Strict => FunnelMode::Strict,
            ModeArg::AnyOrder => FunnelMode::AnyOrder,
            ModeArg::Clickhouse => FunnelMode::ClickHouse,
        },
        exclude: args.exclude.clone(),
        breakdown,
    };
    let analysis = Scoped {
        scope: args.scope.resolve(&snap)?,
        inner: Funnel::new(snap.event_names(), snap.channels().to_vec(), spec)?,
    };
    let r = execute(&snap, &analysis)?;
    print_result(args.format, &r, funnel_table)
}

fn funnel_table(r: &FunnelResult) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "funnel ({} mode, window {}) over {} customers",
        r.mode.as_str(),
        human_duration(r.window_s),
        r.customers
    );
    let w = r
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40)
        + 3;
    let _ = writeln!(
        o,
        "{:<w$}  {:>9}  {:>7}  {:>7}  {:>8}  {:>9}  {:>9}",
        "step", "customers", "of prev", "of 1st", "drop-off", "median", "p90"
    );
    for (k, s) in r.steps.iter().enumerate() {
        let label = truncate(&format!("{}. {}", k + 1, s.name), w);
        let t = |v: Option<f64>| v.map(human_duration).unwrap_or_else(|| "-".into());
        let bar = "█".repeat((s.conversion_from_first * 20.0).round() as usize);
        let _ = writeln!(
            o,
            "{label:<w$}  {:>9}  {:>6.1}%  {:>6.1}%  {:>8}  {:>9}  {:>9}  {bar}",
            s.customers,
            s.conversion_from_previous * 100.0,
            s.conversion_from_first * 100.0,
            if k == 0 {
                "-".into()
            } else {
                s.drop_off.to_string()
            },
            t(s.median_s),
            t(s.p90_s),
        );
    }
    if let Some(groups) = &r.breakdown {
        let _ = writeln!(o, "\nbreakdown (by the first step's event):");
        let gw = groups
            .iter()
            .map(|g| g.value.chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 30);
        let head: Vec<String> = (1..=r.steps.len())
            .map(|k| format!("{:>8}", format!("step {k}")))
            .collect();
        let _ = writeln!(
            o,
            "{:<gw$}  {}  {:>9}",
            "value",
            head.join("  "),
            "converted"
        );
        for g in groups {
            let cells: Vec<String> = g
                .steps
                .iter()
                .map(|s| format!("{:>8}", s.customers))
                .collect();
            let last: &StepResult = &g.steps[g.steps.len() - 1];
            let _ = writeln!(
                o,
                "{:<gw$}  {}  {:>8.1}%",
                truncate(&g.value, gw),
                cells.join("  "),
                last.conversion_from_first * 100.0
            );
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// cairn paths

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  cairn paths --from 'Product Viewed' --steps 3\n  \
cairn paths --to 'Order Completed' --steps 4 --collapse-repeats\n  \
cairn paths --from 'Checkout Started' --rename 'Email .*=Email' --format json"
)]
pub struct PathsArgs {
    /// Follow journeys forward from the first time they did EVENT.
    #[arg(long, value_name = "EVENT", conflicts_with = "to")]
    pub from: Option<String>,
    /// Follow journeys backward from the first time they did EVENT.
    #[arg(long, value_name = "EVENT")]
    pub to: Option<String>,
    /// How many events after (or before) the anchor.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub steps: usize,
    /// Events with their own node at each step (the rest share `(other)`); also how many
    /// whole paths are listed.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top: usize,
    /// Count runs of the same event once (`a a a b` is `a b`).
    #[arg(long)]
    pub collapse_repeats: bool,
    /// Rename events whose whole name matches REGEX (NAME may use $1 for groups); events
    /// renamed alike merge. Repeatable; the first matching rule wins.
    #[arg(long, value_name = "REGEX=NAME")]
    pub rename: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

fn rename_rules(rules: &[String], names: &[String]) -> Result<cairn_discovery::Rename> {
    let mut compiled = Vec::new();
    for rule in rules {
        let bad = |reason: String| cairn_discovery::DiscoveryError::BadRename {
            rule: rule.clone(),
            reason,
        };
        let (re, name) = rule
            .rsplit_once('=')
            .ok_or_else(|| bad("expected REGEX=NAME, e.g. 'Email .*=Email'".into()))?;
        let re = regex_lite::Regex::new(&format!("^(?:{re})$"))
            .map_err(|e| bad(format!("invalid regular expression: {e}")))?;
        compiled.push((re, name.to_string()));
    }
    Ok(cairn_discovery::Rename::with(names, |n| {
        compiled
            .iter()
            .find(|(re, _)| re.is_match(n))
            .map(|(re, name)| re.replace(n, name.as_str()).into_owned())
    }))
}

pub fn paths(dir: &Path, args: &PathsArgs) -> Result<()> {
    let snap = Source::open(dir, &args.stitch)?;
    let rename = rename_rules(&args.rename, snap.event_names())?;
    let anchor = match (&args.from, &args.to) {
        (Some(e), _) => cairn_discovery::Anchor::From(name_id(&rename.names, e).context("--from")?),
        (None, Some(e)) => cairn_discovery::Anchor::To(name_id(&rename.names, e).context("--to")?),
        (None, None) => cairn_discovery::Anchor::Start,
    };
    if args.steps == 0 || args.steps > 50 {
        anyhow::bail!("--steps must be between 1 and 50, got {}", args.steps);
    }
    let analysis = Scoped {
        scope: args.scope.resolve(&snap)?,
        inner: cairn_discovery::Paths {
            rename,
            anchor,
            steps: args.steps,
            top: args.top,
            collapse_repeats: args.collapse_repeats,
        },
    };
    let r = execute(&snap, &analysis)?;
    print_result(args.format, &r, |r| paths_table(r, args))
}

fn paths_table(r: &cairn_discovery::PathsResult, args: &PathsArgs) -> String {
    let mut o = String::new();
    let what = match (&args.from, &args.to) {
        (Some(e), _) => format!("after the first {e:?}"),
        (None, Some(e)) => format!("before the first {e:?}"),
        (None, None) => "from the start of each journey".into(),
    };
    let _ = writeln!(
        o,
        "paths {what}: {} customers, {} steps",
        r.customers, args.steps
    );
    let total = r.customers.max(1) as f64;
    let mut steps: Vec<i32> = r.nodes.iter().map(|n| n.step).collect();
    steps.dedup();
    for s in steps {
        let cells: Vec<String> = r
            .nodes
            .iter()
            .filter(|n| n.step == s)
            .map(|n| format!("{} {:.1}%", n.name, 100.0 * n.customers as f64 / total))
            .collect();
        let _ = writeln!(o, "  step {s:>3}: {}", cells.join(" · "));
    }
    let _ = writeln!(o, "\nmost common paths");
    for p in &r.paths {
        let _ = writeln!(
            o,
            "  {:>8}  {:>5.1}%  {}",
            p.customers,
            100.0 * p.customers as f64 / total,
            truncate(&compress(&p.events), 110)
        );
    }
    o
}

// ---------------------------------------------------------------------------------------------
// cairn retention

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum ByArg {
    /// Calendar weeks, Monday to Sunday.
    #[default]
    Week,
    /// Calendar months.
    Month,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  cairn retention --by week\n  \
cairn retention --by month --tz Europe/Paris --format json")]
pub struct RetentionArgs {
    /// Cohort and period size.
    #[arg(long, value_enum, default_value_t = ByArg::Week)]
    pub by: ByArg,
    /// Later periods reported per cohort.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub periods: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

pub fn retention(dir: &Path, args: &RetentionArgs) -> Result<()> {
    let snap = Source::open(dir, &args.stitch)?;
    // --tz (a scope flag) decides which day, and so which week or month, an event falls in.
    let tz = time_zone(&args.scope.tz)?;
    let analysis = Scoped {
        scope: args.scope.resolve(&snap)?,
        inner: cairn_discovery::Retention {
            period: match args.by {
                ByArg::Week => cairn_discovery::Period::Week,
                ByArg::Month => cairn_discovery::Period::Month,
            },
            tz,
            periods: args.periods,
        },
    };
    let r = execute(&snap, &analysis)?;
    print_result(args.format, &r, retention_table)
}

fn retention_table(r: &cairn_discovery::RetentionResult) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "retention by {} ({}): {} customers, cohorts by first event; share active again in each later {}",
        r.by, r.timezone, r.customers, r.by
    );
    let n = r
        .cohorts
        .iter()
        .map(|c| c.retention.len())
        .max()
        .unwrap_or(1);
    let head: Vec<String> = (0..n).map(|k| format!("{:>6}", format!("+{k}"))).collect();
    let _ = writeln!(
        o,
        "{:<10}  {:>9}  {}",
        "cohort",
        "customers",
        head.join(" ")
    );
    for c in &r.cohorts {
        let cells: Vec<String> = c
            .retention
            .iter()
            .map(|s| format!("{:>5.1}%", s * 100.0))
            .collect();
        let _ = writeln!(
            o,
            "{:<10}  {:>9}  {}",
            c.cohort,
            c.customers,
            cells.join(" ")
        );
    }
    o
}

// ---------------------------------------------------------------------------------------------
// cairn insights

#[derive(Args, Debug)]
#[command(
    after_help = "Only the part of each journey before the first goal event is looked at. \
Behaviours (events, transitions, repeats, channel switches) are compared by the goal rate of \
customers with and without them: odds ratio with a +0.5 prior, a Bonferroni-corrected test, \
ranked by the conversions they go with. Correlation, not causation.\n\n\
Examples:\n  cairn insights --goal 'Order Completed'\n  \
cairn insights --goal 'Order Completed' --first-channel mobile --format json"
)]
pub struct InsightsArgs {
    /// The event that counts as success.
    #[arg(long, value_name = "EVENT")]
    pub goal: String,
    /// Behaviours seen by fewer customers (or by all but fewer) are not tested.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub min_customers: u64,
    /// Family-wise significance level.
    #[arg(long, default_value_t = 0.01, value_name = "P")]
    pub alpha: f64,
    /// Findings (and drop-off rows) to report.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub top: usize,
    /// A customer with no event in this period before the store's last event has churned;
    /// findings show the churn share with and without each behaviour.
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    pub inactive: String,
    /// Rank findings (and call pain points) by their estimated impact on conversions, revenue
    /// (sum of event values) or churn (customers gone quiet, see --inactive).
    #[arg(long, value_enum, default_value_t = RankArg::Conversions)]
    pub rank_by: RankArg,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum RankArg {
    #[default]
    Conversions,
    Revenue,
    Churn,
}

pub fn insights(dir: &Path, args: &InsightsArgs) -> Result<()> {
    let snap = Source::open(dir, &args.stitch)?;
    let goal = name_id(snap.event_names(), &args.goal).context("--goal")?;
    let scope = args.scope.resolve(&snap)?;
    // The usual path: what converting customers most often did before the goal (a first pass),
    // among paths of two or more distinct events (a one-event path has nothing to skip).
    let before_goal = execute(
        &snap,
        &Scoped {
            scope: scope.clone(),
            inner: Variants {
                names: snap.event_names().to_vec(),
                top: 1000,
                goal: Some(goal),
            },
        },
    )?;
    let mut happy_path: Vec<u16> = Vec::new();
    if let Some(v) = before_goal
        .variants
        .iter()
        .filter(|v| v.events.iter().any(|e| *e != v.events[0]))
        .max_by(|a, b| {
            let conv = |v: &cairn_discovery::variants::Variant| {
                v.count as f64 * v.goal_rate.unwrap_or(0.0)
            };
            conv(a).total_cmp(&conv(b))
        })
    {
        for e in &v.events {
            let id = name_id(snap.event_names(), e)?;
            if !happy_path.contains(&id) {
                happy_path.push(id);
            }
        }
    }
    let analysis = Scoped {
        scope,
        inner: cairn_discovery::Insights {
            names: snap.event_names().to_vec(),
            channels: snap.channels().to_vec(),
            goal,
            min_customers: args.min_customers.max(1),
            alpha: args.alpha,
            top: args.top,
            churn: snap
                .stats()
                .last_event
                .map(|as_of| -> Result<cairn_discovery::insights::Churn> {
                    Ok(cairn_discovery::insights::Churn {
                        as_of,
                        inactive: parse_duration(&args.inactive).context("--inactive")?,
                    })
                })
                .transpose()?,
            happy_path,
            rank: match args.rank_by {
                RankArg::Conversions => cairn_discovery::insights::Rank::Conversions,
                RankArg::Revenue => cairn_discovery::insights::Rank::Revenue,
                RankArg::Churn => cairn_discovery::insights::Rank::Churn,
            },
        },
    };
    let r = execute(&snap, &analysis)?;
    print_result(args.format, &r, insights_table)
}

fn pain_title(rank: cairn_discovery::insights::Rank, pain: bool) -> &'static str {
    use cairn_discovery::insights::Rank;
    match (rank, pain) {
        (Rank::Conversions, true) => "pain points: what goes with fewer conversions",
        (Rank::Conversions, false) => "what goes with more conversions",
        (Rank::Revenue, true) => "pain points: what goes with less revenue",
        (Rank::Revenue, false) => "what goes with more revenue",
        (Rank::Churn, true) => "pain points: what goes with more churn",
        (Rank::Churn, false) => "what goes with less churn",
    }
}

fn insights_table(r: &cairn_discovery::InsightsResult) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} of {} customers ({:.1}%) reached {:?}{}; {} behaviours tested, {} significant shown",
        r.converted,
        r.customers,
        r.conversion_rate * 100.0,
        r.goal,
        r.churned
            .map(|c| format!(", {c} went quiet"))
            .unwrap_or_default(),
        r.tested,
        r.findings.len()
    );
    if !r.usual_path.is_empty() {
        let _ = writeln!(o, "usual path to the goal: {}", r.usual_path.join(" → "));
    }
    // Pain points first: what goes with fewer conversions is what to fix.
    for (title, pain) in [
        (pain_title(r.rank, true), true),
        (pain_title(r.rank, false), false),
    ] {
        let _ = writeln!(o, "\n{title}:");
        let rows: Vec<_> = r.findings.iter().filter(|f| f.pain == pain).collect();
        for (i, f) in rows.iter().enumerate() {
            let _ = writeln!(o, "{:>3}. {}", i + 1, f.text);
        }
        if rows.is_empty() {
            let _ = writeln!(
                o,
                "     nothing significant (try a lower --min-customers or a higher --alpha)"
            );
        }
    }
    let _ = writeln!(o, "\nwhere journeys without {:?} end:", r.goal);
    for d in &r.drop_off {
        let _ = writeln!(
            o,
            "  {:>8}  {:>5.1}%  {}",
            d.customers,
            d.share * 100.0,
            d.event
        );
    }
    let _ = writeln!(o, "\nslowest transitions before the goal (median, p90):");
    for s in &r.slow_transitions {
        let _ = writeln!(
            o,
            "  {:>9}  {:>9}  {:>8}×  {} → {}",
            human_duration(s.median_s),
            human_duration(s.p90_s),
            s.count,
            s.from,
            s.to
        );
    }
    o
}

// ---------------------------------------------------------------------------------------------
// cairn compare

#[derive(Args, Debug)]
#[command(
    after_help = "A segment is `all`, or conditions joined by commas, all of which must hold: \
did:EVENT, not-did:EVENT, first-channel:CHANNEL, cohort:PERIOD (first seen in a day 2026-01-15, \
ISO week 2026-W03, month 2026-01 or year, in --tz). EVENT may carry property conditions and a \
window after the customer's first event: did:Order Completed[plan=pro] within 7d.\n\n\
Examples:\n  cairn compare first-channel:mobile first-channel:web\n  \
cairn compare 'did:Signed Up' 'not-did:Signed Up' --funnel 'Product Viewed' 'Order Completed'"
)]
pub struct CompareArgs {
    /// Segment A.
    pub a: String,
    /// Segment B.
    pub b: String,
    /// Also compare this funnel (steps as in `cairn funnel`).
    #[arg(long, num_args = 1.., value_name = "STEP")]
    pub funnel: Vec<String>,
    /// Funnel window.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub window: String,
    /// Differences listed per section.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub top: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Time range applied to both segments.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Time zone for cohorts and bare dates (IANA name or UTC).
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    pub tz: String,
    #[command(flatten)]
    pub stitch: StitchArgs,
}

pub fn compare(dir: &Path, args: &CompareArgs) -> Result<()> {
    use cairn_discovery::compare::{compare_maps, compare_variants, parse_segment};
    let snap = Source::open(dir, &args.stitch)?;
    let names = snap.event_names().to_vec();
    let range = ScopeArgs {
        since: args.since.clone(),
        until: args.until.clone(),
        tz: args.tz.clone(),
        ..ScopeArgs::default()
    }
    .resolve(&snap)?;
    let tz = time_zone(&args.tz)?;
    let segment = |text: &str| -> Result<Scope> {
        let s = parse_segment(
            text,
            |n| name_id(&names, n),
            |c| {
                snap.channels()
                    .iter()
                    .position(|x| x == c)
                    .map(|i| i as u16)
                    .ok_or_else(|| cairn_discovery::DiscoveryError::UnknownChannel {
                        name: c.to_string(),
                        known: snap.channels().to_vec(),
                    })
            },
            &tz,
        )?;
        Ok(Scope {
            since: range.since,
            until: range.until,
            ..s
        })
    };
    let (sa, sb) = (segment(&args.a)?, segment(&args.b)?);
    let map = |scope: &Scope| {
        execute(
            &snap,
            &Scoped {
                scope: scope.clone(),
                inner: ProcessMap::new(names.clone()),
            },
        )
    };
    let variants = |scope: &Scope| {
        execute(
            &snap,
            &Scoped {
                scope: scope.clone(),
                inner: Variants {
                    names: names.clone(),
                    top: 500,
                    goal: None,
                },
            },
        )
    };
    let funnel = |scope: &Scope| -> Result<Option<FunnelResult>> {
        if args.funnel.is_empty() {
            return Ok(None);
        }
        let spec = FunnelSpec {
            steps: args
                .funnel
                .iter()
                .map(|s| StepSpec::parse(s))
                .collect::<Result<Vec<_>, _>>()?,
            window: parse_duration(&args.window).context("--window")?,
            ..FunnelSpec::default()
        };
        Ok(Some(execute(
            &snap,
            &Scoped {
                scope: scope.clone(),
                inner: Funnel::new(&names, snap.channels().to_vec(), spec)?,
            },
        )?))
    };
    let (ma, mb) = (map(&sa)?, map(&sb)?);
    let (va, vb) = (variants(&sa)?, variants(&sb)?);
    let (fa, fb) = (funnel(&sa)?, funnel(&sb)?);
    let edges = compare_maps(&ma, &mb, args.top);
    let vdiff = compare_variants(&va, &vb, args.top);
    if args.format == Format::Json {
        let out = serde_json::json!({
            "a": {"segment": args.a, "customers": ma.customers, "funnel": fa},
            "b": {"segment": args.b, "customers": mb.customers, "funnel": fb},
            "edges": edges,
            "variants": vdiff,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(o, "A = {}: {} customers", args.a, ma.customers);
    let _ = writeln!(o, "B = {}: {} customers", args.b, mb.customers);
    if let (Some(fa), Some(fb)) = (&fa, &fb) {
        let _ = writeln!(
            o,
            "\nfunnel (share of each segment's entrants, window {}):",
            args.window
        );
        for (x, y) in fa.steps.iter().zip(&fb.steps) {
            let _ = writeln!(
                o,
                "  {:<30}  A {:>6.1}%  B {:>6.1}%  ({:+.1} points)",
                truncate(&x.name, 30),
                x.conversion_from_first * 100.0,
                y.conversion_from_first * 100.0,
                (x.conversion_from_first - y.conversion_from_first) * 100.0
            );
        }
    }
    let _ = writeln!(
        o,
        "\ntransitions most different (share of each segment's customers):"
    );
    for e in &edges {
        let _ = writeln!(
            o,
            "  A {:>5.1}%  B {:>5.1}%  ({:+5.1})  {}",
            e.a_share * 100.0,
            e.b_share * 100.0,
            e.difference * 100.0,
            truncate(&format!("{} → {}", e.from, e.to), 80)
        );
    }
    let _ = writeln!(o, "\njourneys most different:");
    for v in &vdiff {
        let _ = writeln!(
            o,
            "  A {:>5.1}%  B {:>5.1}%  ({:+5.1})  {}",
            v.a_share * 100.0,
            v.b_share * 100.0,
            v.difference * 100.0,
            truncate(&compress(&v.events), 90)
        );
    }
    print!("{o}");
    Ok(())
}
