//! `cairn journeys`: check a journey file (`validate`), replay stored history through it
//! without sending anything (`simulate`, a backtest), manage applied versions
//! (`apply|list|show|pause|resume|archive`, see `cairn_orchestrate::registry`), and run them
//! live (`run`, see `cairn_orchestrate::runner`; `cairn serve --journeys` runs the same runner
//! inside the server). `show` folds the runner's write-backs with `cairn_orchestrate::metrics`.
//!
//! What simulate feeds the engine, per customer (store key), in time order: every stored event
//! in `[--from, --to)` with its properties; traits from `identify` calls (`traits`) and consent
//! from `context.consent.categoryPreferences` on any message, applied at their event's time.
//! Each customer runs through a fresh engine (journeys only look at one customer at a time, so
//! this is exact and lets the scan run in parallel); timers then run up to `--to`, so customers
//! still waiting at `--to` have not finished. Customers are store keys, not stitched profiles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_journey::definition::EntryOn;
use cairn_journey::{Effect, Engine, InputEvent, Journey, JourneyEventKind};
use cairn_model::{EventKind, Micros, format_micros, parse_timestamp};
use cairn_store::{Columns, Customer};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::cli::{Format, open_snapshot};

use cairn_orchestrate::registry::{self, Applied, Registry, Status};
use cairn_orchestrate::view::{self, Source};
use cairn_orchestrate::{StepMetrics, consent, runner};

#[derive(Subcommand, Debug)]
// Parsed once per process from the command line: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum JourneysCommand {
    /// Check a journey definition (YAML); errors give line, column and reason.
    Validate {
        /// The journey file, e.g. examples/journeys/abandoned-cart.yaml.
        file: PathBuf,
    },
    /// Replay stored history through a journey without sending anything.
    #[command(
        long_about = "Replay stored history through a journey without sending anything: who would \
have entered, which steps they reached, which messages would have gone out on which channel, and \
how often the goal was reached by the treatment group and by the holdout.\n\n\
Traits come from identify calls and consent from context.consent.categoryPreferences, as of each \
event's time. Timers (waits, quiet hours, frequency caps, goal windows) run up to --to; customers \
still waiting then are counted where they are.\n\n\
Segments and computed traits are built from the events before --to (those before --from count as \
history: nobody enters before --from); a customer enters a segment-triggered journey at the instant they cross the segment's boundary (30 days after their \
last event, for `did: \"*\"` within 30d), also between events.",
        after_help = "Examples:\n  cairn journeys simulate examples/journeys/abandoned-cart.yaml\n  \
cairn journeys simulate cart.yaml --from 2026-01-01 --to 2026-02-01 --format json --trace trace.jsonl\n  \
cairn journeys simulate cart.yaml --event add_to_cart=\"Product Added\" --event purchase=\"Order Completed\"\n  \
cairn journeys simulate examples/journeys/win-back.yaml --format json"
    )]
    Simulate(SimulateArgs),
    /// Store a journey file as a new version; the runner starts taking entries into it.
    #[command(
        long_about = "Store a journey file (and the templates its send steps use, from templates/ \
next to it) in the data directory as a new version. The new version takes new entries; customers \
already in an older version finish that one. A version never changes: applying the same file again \
does nothing, applying different content under the same version is refused.",
        after_help = "Examples:\n  cairn journeys apply examples/journeys/abandoned-cart.yaml\n  \
cairn journeys apply cart.yaml --templates ./email-templates"
    )]
    Apply {
        file: PathBuf,
        /// Directory of templates (<name>.toml) [default: templates/ next to FILE].
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Applied journeys: status, versions.
    List {
        /// Include archived journeys.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One journey: versions, steps, and live figures from the journey events in the log.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Stop new entries; customers already in the journey go on.
    Pause { id: String },
    /// Take new entries again.
    Resume { id: String },
    /// Stop new entries and hide the journey from `list`; customers already in it finish.
    Archive { id: String },
    /// Run applied journeys live: follow the log, send messages, write progress back.
    #[command(
        long_about = "Run the applied journeys live: follow the event log, enter customers, fire \
timers, send messages by email (SMTP), SMS (a Twilio-shaped HTTP API) and webhooks (HMAC-signed), \
and write journey progress and delivery status back to the log as events.\n\n\
Crash-safe: the runner journals its inputs (DATA/journeys/runner/journal.jsonl) and re-derives \
its state on start by replaying them; delivered messages are recorded by idempotency key \
(delivered.jsonl), so after kill -9 nothing is lost and nothing is sent twice. Messages that fail \
after --max-attempts go to dead-letter.jsonl.\n\n\
It writes to the store, so it runs instead of (not beside) another writer such as `cairn serve`; \
to run journeys beside the HTTP API, use `cairn serve --journeys` (same flags).\n\n\
Settings come from flags, then environment variables (CAIRN_SMTP_SERVER, CAIRN_WEBHOOK_URL, ...).",
        after_help = "Examples:\n  cairn journeys run --smtp-server 127.0.0.1:25 --smtp-from shop@example.com\n  \
CAIRN_WEBHOOK_URL=http://hooks.internal/cairn CAIRN_WEBHOOK_SECRET=... cairn journeys run"
    )]
    Run(runner::RunArgs),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    pub file: PathBuf,
    /// Only events at or after this time (RFC 3339, a date, or epoch).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// Only events before this time; timers run up to it. Default: the last stored event.
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write one JSON line per customer step: {"customer", "step", "at"}.
    #[arg(long, value_name = "OUT.jsonl")]
    pub trace: Option<PathBuf>,
    /// Read stored events named STORED as the journey's event NAME, for history tracked under
    /// other names, e.g. --event add_to_cart="Product Added". Repeatable.
    #[arg(long = "event", value_name = "NAME=STORED", value_parser = parse_alias)]
    pub aliases: Vec<(String, String)>,
}

fn parse_alias(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, stored)) if !name.is_empty() && !stored.is_empty() => {
            Ok((name.to_string(), stored.to_string()))
        }
        _ => Err(format!(
            "expected NAME=STORED (the journey's event name, then the stored one), got {s:?}"
        )),
    }
}

pub fn run(dir: &Path, command: &JourneysCommand) -> Result<()> {
    match command {
        JourneysCommand::Validate { file } => {
            let j = load(file)?;
            let entry = match &j.entry.on {
                EntryOn::Event => format!("on event {:?}", j.entry.event),
                EntryOn::Api => "by API (POST /v1/journeys/ID/entries)".to_string(),
                EntryOn::Schedule(cron) => {
                    format!(
                        "on schedule {:?} in each customer's timezone",
                        cron.as_str()
                    )
                }
                EntryOn::Segment => match &j.entry.segment {
                    Some(s) => format!(
                        "on {} segment {:?}",
                        match s.on {
                            cairn_journey::segment::Edge::Enter => "entering",
                            cairn_journey::segment::Edge::Leave => "leaving",
                        },
                        s.segment
                    ),
                    None => "on a segment".to_string(),
                },
            };
            println!(
                "{}: ok, journey {} with {} steps, entry {entry}",
                file.display(),
                j.versioned_id(),
                j.steps.len()
            );
            Ok(())
        }
        JourneysCommand::Simulate(args) => simulate(dir, args),
        JourneysCommand::Apply { file, templates } => {
            match registry::apply(dir, file, templates.as_deref())? {
                Applied::New {
                    versioned,
                    previous,
                } => match previous {
                    Some(p) => println!(
                        "applied {versioned}: new entries go to it; customers in version {p} finish that one"
                    ),
                    None => println!("applied {versioned}"),
                },
                Applied::Unchanged { versioned } => {
                    println!("{versioned} is already applied, unchanged")
                }
            }
            Ok(())
        }
        JourneysCommand::List { all, format } => list(dir, *all, *format),
        JourneysCommand::Show { id, format } => show(dir, id, *format),
        JourneysCommand::Pause { id } => set_status(dir, id, Status::Paused),
        JourneysCommand::Resume { id } => set_status(dir, id, Status::Active),
        JourneysCommand::Archive { id } => set_status(dir, id, Status::Archived),
        JourneysCommand::Run(args) => {
            // A process that runs for days gives back what it frees, as the server does.
            crate::memory::keep_freed_memory(Some(std::time::Duration::from_secs(10)));
            Ok(runner::run(dir, crate::cli::open_store(dir)?, args)?)
        }
    }
}

fn set_status(dir: &Path, id: &str, status: Status) -> Result<()> {
    let before = registry::set_status(dir, id, status)?;
    println!("{id}: {} (was {})", status.as_str(), before.as_str());
    Ok(())
}

fn list(dir: &Path, all: bool, format: Format) -> Result<()> {
    let reg = Registry::load(dir)?;
    let rows: Vec<_> = reg
        .journeys
        .iter()
        .filter(|(_, e)| all || e.status != Status::Archived)
        .collect();
    match format {
        Format::Json => {
            let out: Vec<Value> = rows
                .iter()
                .map(|(id, e)| json!({"id": id, "status": e.status.as_str(), "current": e.current(), "versions": e.versions}))
                .collect();
            println!("{}", Value::Array(out));
        }
        Format::Table => {
            if rows.is_empty() {
                println!(
                    "no journeys applied (try `cairn journeys apply examples/journeys/abandoned-cart.yaml`)"
                );
            } else {
                println!(
                    "{:<28} {:<10} {:>8}  versions",
                    "journey", "status", "current"
                );
                for (id, e) in rows {
                    let versions: Vec<String> = e.versions.iter().map(u32::to_string).collect();
                    println!(
                        "{id:<28} {:<10} {:>8}  {}",
                        e.status.as_str(),
                        e.current(),
                        versions.join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}

fn show(dir: &Path, id: &str, format: Format) -> Result<()> {
    let no_journey =
        || anyhow::anyhow!("no journey {id:?} is applied (see `cairn journeys list --all`)");
    // The same fold the live runner keeps its figures with, over its write-backs.
    if format == Format::Json {
        let v = view::journey_json(dir, id, Source::Log)?.ok_or_else(no_journey)?;
        println!("{v:#}");
        return Ok(());
    }
    let reg = Registry::load(dir)?;
    let e = reg.journeys.get(id).ok_or_else(no_journey)?;
    let live = view::figures(dir, Source::Log, &view::versions_of(id, e))?;
    let (current, _) = registry::load_version(dir, &format!("{id}@{}", e.current()))?;
    println!(
        "journey {id} ({}), current version {}{}",
        e.status.as_str(),
        e.current(),
        current
            .name
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default()
    );
    for (v, l) in &live {
        println!(
            "\n{v}: entered {}, waiting {}, converted {}, exited {}; messages sent {}, failed {}, bounced {}",
            l.entered, l.waiting, l.converted, l.exited, l.sent, l.failed, l.bounced
        );
        println!(
            "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "step", "reached", "waiting", "passed", "exited", "converted", "sent", "failed"
        );
        let none = StepMetrics::default();
        for s in &current.steps {
            let m = l.step_metrics.get(&s.id).unwrap_or(&none);
            println!(
                "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                s.id, m.reached, m.waiting, m.passed, m.exited, m.converted, m.sent, m.failed
            );
        }
    }

    Ok(())
}

fn load(file: &Path) -> Result<Journey> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Journey::from_yaml(&text).with_context(|| format!("{} is not a valid journey", file.display()))
}

/// Per arm: entries and goals.
#[derive(Default, Clone, Copy)]
struct Arm {
    entered: u64,
    goal: u64,
}

#[derive(Default)]
struct Tally {
    entered: u64,
    customers: u64,
    goal_reached: u64,
    steps: BTreeMap<String, u64>,
    messages: BTreeMap<&'static str, u64>,
    suppressed: u64,
    delayed: u64,
    treatment: Arm,
    holdout: Arm,
    /// Lines of the --trace file, each with its customer's key: the scan's threads take
    /// ranges of keys in no fixed order, so the lines are put in key order at the end.
    trace: Vec<(u32, String)>,
}

/// Profile changes of one customer: (time, traits, consent).
type Updates0 = (Micros, Map<String, Value>, Vec<(String, bool)>);
type Updates = Vec<Updates0>;

fn simulate(dir: &Path, args: &SimulateArgs) -> Result<()> {
    let journey = Arc::new(load(&args.file)?);
    let snap = open_snapshot(dir)?;
    let time = |s: &Option<String>, flag: &str| -> Result<Option<Micros>> {
        s.as_deref()
            .map(|s| parse_timestamp(s).with_context(|| format!("--{flag} {s:?}")))
            .transpose()
    };
    let from = time(&args.from, "from")?.unwrap_or(Micros::MIN);
    let to = match time(&args.to, "to")? {
        Some(t) => t,
        None => snap.stats().last_event.unwrap_or(0) + 1,
    };

    // Profile changes are not in the scan files: one pass over full events collects them.
    let mut updates: HashMap<u32, Updates> = HashMap::new();
    snap.for_each_event(|e| {
        let ev = &e.event;
        let traits = match (ev.kind, ev.traits.as_deref()) {
            (EventKind::Identify, Some(t)) => serde_json::from_str::<Map<String, Value>>(t).ok(),
            _ => None,
        }
        .unwrap_or_default();
        let consent = consent(ev.context.as_deref());
        if (!traits.is_empty() || !consent.is_empty()) && ev.timestamp < to {
            updates
                .entry(e.key)
                .or_default()
                .push((ev.timestamp, traits, consent));
        }
    })?;
    for u in updates.values_mut() {
        u.sort_by_key(|x| x.0);
    }

    // Stored names as the journey reads them (--event NAME=STORED).
    let names: Vec<&str> = snap
        .event_names()
        .iter()
        .map(|stored| {
            let alias = args.aliases.iter().find(|(_, s)| s == stored);
            alias.map_or(stored.as_str(), |(name, _)| name.as_str())
        })
        .collect();
    // Events the journey never looks at change nothing (a timer they would fire still fires,
    // at its own due time, on the next event or at the end), so they are not parsed or fed.
    let wanted: Vec<bool> = names.iter().map(|n| looks_at(&journey, n)).collect();
    // Computed traits (total revenue, last channel) read each event's value and channel.
    let computed = cairn_journey::segment::uses_computed(&journey);
    let columns = Columns {
        times: true,
        names: true,
        properties: true,
        channels: computed,
        values: computed,
    };
    let channels = snap.channels();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tracing = args.trace.is_some();
    let empty = Map::new();
    let parts = snap.scan_parallel(
        columns,
        threads,
        Tally::default,
        |tally: &mut Tally, c: Customer<'_>| {
            let id = snap.customer_id(c.key).unwrap_or("?");
            let mut engine = Engine::new(vec![Arc::clone(&journey)]);
            let mut effects = Vec::new();
            let none: &Updates = &Vec::new();
            let ups = updates.get(&c.key).unwrap_or(none);
            let mut u = 0;
            // Before --from, history only builds profiles, segments and computed traits as they
            // stood at --from (nothing enters); `started` once the engine is past it.
            // Once past it, timers due before each input fire at their own due times, as in a
            // live runner (see `tick_until`).
            let mut started = false;
            let mut advance = |engine: &mut Engine, at: Micros, effects: &mut Vec<Effect>| {
                if at < from {
                    return;
                }
                if !started {
                    engine.observe_time(from.saturating_sub(1));
                    started = true;
                }
                tick_until(engine, at, effects);
            };
            for i in 0..c.len() {
                let t = c.times[i];
                if t >= to {
                    continue;
                }
                // Profile changes up to this event, each as an event of its own at its time.
                // (also those before --from: they are the profile as it stood).
                while u < ups.len() && ups[u].0 <= t {
                    advance(&mut engine, ups[u].0, &mut effects);
                    effects.extend(apply(&mut engine, id, &ups[u], from));
                    u += 1;
                }
                if !wanted[c.names[i] as usize] {
                    continue;
                }
                let props = match c.properties.get(i) {
                    Some(p) if !p.is_empty() => serde_json::from_str(p).unwrap_or_default(),
                    _ => Map::new(),
                };
                let ev = InputEvent {
                    name: names[c.names[i] as usize],
                    properties: &props,
                    traits: &empty,
                    consent: &[],
                };
                let facts = cairn_journey::segment::EventFacts {
                    value: c.values.get(i).copied().filter(|v| !v.is_nan()),
                    channel: c.channels.get(i).map(|ch| channels[*ch as usize].as_str()),
                };
                if t < from {
                    engine.observe(id, &ev, facts, t);
                    continue;
                }
                advance(&mut engine, t, &mut effects);
                effects.extend(engine.on_event_with(id, &ev, facts, t));
            }
            for up in &ups[u..] {
                advance(&mut engine, up.0, &mut effects);
                effects.extend(apply(&mut engine, id, up, from));
            }
            advance(&mut engine, from.max(to - 1), &mut effects);
            effects.extend(engine.on_time(to - 1));
            count(tally, c.key, id, &effects, tracing);
        },
    )?;

    let mut total = Tally::default();
    for p in parts {
        total.entered += p.entered;
        total.customers += p.customers;
        total.goal_reached += p.goal_reached;
        for (k, v) in p.steps {
            *total.steps.entry(k).or_default() += v;
        }
        for (k, v) in p.messages {
            *total.messages.entry(k).or_default() += v;
        }
        total.suppressed += p.suppressed;
        total.delayed += p.delayed;
        for (a, b) in [
            (&mut total.treatment, p.treatment),
            (&mut total.holdout, p.holdout),
        ] {
            a.entered += b.entered;
            a.goal += b.goal;
        }
        total.trace.extend(p.trace);
    }
    if let Some(path) = &args.trace {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        // Stable: a customer's lines keep their order.
        total.trace.sort_by_key(|t| t.0);
        for (_, line) in &total.trace {
            writeln!(w, "{line}")?;
        }
        w.flush()?;
    }
    render(&journey, &total, args.format);
    Ok(())
}

/// Whether the journey enters on, waits for or has as its goal an event of this name, or its
/// segments or computed traits count it.
fn looks_at(j: &Journey, name: &str) -> bool {
    cairn_journey::segment::looks_at(j, name)
        || j.entry.event_name() == Some(name)
        || j.goal.as_ref().is_some_and(|g| g.event == name)
        || j.exit_on.iter().any(|x| x.event == name)
        || j.steps.iter().any(
            |s| matches!(&s.kind, cairn_journey::definition::StepKind::WaitFor { event, .. } if event == name),
        )
}

/// Fires the timers due before `t` at their own due times, as a live runner (which never
/// sleeps past a due timer) would: only schedule entries tell the difference (missed firings
/// collapse, see `cairn_journey::schedule`).
fn tick_until(engine: &mut Engine, t: Micros, effects: &mut Vec<Effect>) {
    while let Some(due) = engine.next_due().filter(|d| *d < t) {
        effects.extend(engine.on_time(due));
    }
}

/// A profile change as an event no journey matches (an empty name), at its own time (as
/// history before `from`: the profile as it stood, nothing enters and no schedule fires).
fn apply(engine: &mut Engine, customer: &str, up: &Updates0, from: Micros) -> Vec<Effect> {
    let empty = Map::new();
    let ev = InputEvent {
        name: "",
        properties: &empty,
        traits: &up.1,
        consent: &up.2,
    };
    if up.0 < from {
        engine.observe(customer, &ev, Default::default(), up.0);
        return Vec::new();
    }
    engine.on_event(customer, &ev, up.0)
}

fn count(tally: &mut Tally, key: u32, customer: &str, effects: &[Effect], tracing: bool) {
    let mut steps = BTreeSet::new();
    // Entry number → held out?
    let mut arms: HashMap<u32, bool> = HashMap::new();
    for e in effects {
        match e {
            Effect::Send(m) => *tally.messages.entry(m.channel.as_str()).or_default() += 1,
            Effect::Journey(j) => match &j.kind {
                JourneyEventKind::Entered { holdout } => {
                    tally.entered += 1;
                    arms.insert(j.entry, *holdout);
                    let arm = if *holdout {
                        &mut tally.holdout
                    } else {
                        &mut tally.treatment
                    };
                    arm.entered += 1;
                }
                JourneyEventKind::StepReached { step } => {
                    steps.insert(step.clone());
                    if tracing {
                        tally.trace.push((
                            key,
                            json!({"customer": customer, "step": step, "at": format_micros(j.at)})
                                .to_string(),
                        ));
                    }
                }
                JourneyEventKind::GoalReached => {
                    tally.goal_reached += 1;
                    match arms.get(&j.entry) {
                        Some(true) => tally.holdout.goal += 1,
                        _ => tally.treatment.goal += 1,
                    }
                }
                JourneyEventKind::Suppressed { .. } => tally.suppressed += 1,
                JourneyEventKind::Delayed { .. } => tally.delayed += 1,
                _ => {}
            },
            Effect::SetTraits { .. } | Effect::Emit { .. } => {}
        }
    }
    if !arms.is_empty() {
        tally.customers += 1;
    }
    for s in steps {
        *tally.steps.entry(s).or_default() += 1;
    }
}

fn rate(a: Arm) -> Option<f64> {
    (a.entered > 0).then(|| a.goal as f64 / a.entered as f64)
}

fn render(j: &Journey, t: &Tally, format: Format) {
    // Steps in definition order, with zeros, so the output reads like the journey.
    let steps: Vec<(String, u64)> = j
        .steps
        .iter()
        .map(|s| (s.id.clone(), t.steps.get(&s.id).copied().unwrap_or(0)))
        .collect();
    match format {
        Format::Json => {
            let out = json!({
                "journey": j.versioned_id(),
                "entered": t.entered,
                "customers": t.customers,
                "goal_reached": t.goal_reached,
                "steps": steps.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
                "messages": t.messages,
                "suppressed": t.suppressed,
                "delayed": t.delayed,
                "treatment": {"entered": t.treatment.entered, "goal_reached": t.treatment.goal, "goal_rate": rate(t.treatment)},
                "holdout": {"entered": t.holdout.entered, "goal_reached": t.holdout.goal, "goal_rate": rate(t.holdout)},
            });
            println!("{out:#}");
        }
        Format::Table => {
            let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1} %", r * 100.0));
            println!("journey {} (simulated, nothing sent)", j.versioned_id());
            println!(
                "entered {} ({} customers), goal reached {}",
                t.entered, t.customers, t.goal_reached
            );
            println!(
                "goal rate: treatment {} of {}, holdout {} of {}",
                pct(rate(t.treatment)),
                t.treatment.entered,
                pct(rate(t.holdout)),
                t.holdout.entered
            );
            println!("\n{:<24} {:>10}", "step", "customers");
            for (s, n) in &steps {
                println!("{s:<24} {n:>10}");
            }
            println!("\n{:<24} {:>10}", "channel", "messages");
            for (c, n) in &t.messages {
                println!("{c:<24} {n:>10}");
            }
            println!(
                "\n{} messages held back by quiet hours or the cap, {} suppressed (holdout or no consent)",
                t.delayed, t.suppressed
            );
        }
    }
}
