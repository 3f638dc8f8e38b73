//! The command line: every command, flag and environment variable in one place.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_store::{Options, Snapshot, Store};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::render;

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: collect every customer interaction, discover and orchestrate journeys.",
    long_about = "Cairn keeps every interaction of every customer in one durable, customer-ordered event \
store and answers journey questions over it.\n\n\
Start with `cairn demo` to generate and import realistic demo journeys, then try `cairn stats` and \
`cairn timeline CUSTOMER`. Import your own history with `cairn import FILE...` (XES, CSV, JSONL of \
Segment messages, Parquet).",
    after_help = "Examples:\n  cairn demo\n  cairn import events.csv --customer user --event action --time ts\n  \
cairn --data-dir /var/lib/cairn stats --format json\n  cairn timeline user-42"
)]
pub struct Cli {
    /// Where the store lives. Created if missing.
    #[arg(
        long,
        global = true,
        env = "CAIRN_DATA_DIR",
        default_value = "./cairn-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per process from the command line: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Generate demo journeys, import them and print a summary.
    Demo(DemoArgs),
    /// Import files (XES, CSV, JSONL, Parquet) into the store.
    #[command(
        long_about = "Import files (XES, CSV, JSONL, Parquet) into the store.\n\n\
Each file is imported atomically: its events become visible together when the whole file has been \
read, or not at all (an interrupted import leaves nothing behind; run it again). Records already \
stored (same message id) are skipped, so importing a file twice stores it once.\n\n\
What identifies a record: a JSONL message's `messageId`; a CSV/Parquet row's message id column \
when there is one; otherwise a hash of (format, customer, event, timestamp, occurrence), where \
occurrence numbers identical (customer, event, timestamp) records in file order (per trace for XES)."
    )]
    Import(ImportArgs),
    /// Stream Segment JSONL messages through the write-ahead log (as the HTTP API does).
    #[command(
        long_about = "Stream Segment JSONL messages through the write-ahead log, batch by batch, \
the way the HTTP collection API writes. Each batch is acknowledged on stdout (`ack N`, the running \
count of accepted messages) only once it is durable. Reads FILE, or stdin when FILE is `-` or absent."
    )]
    Ingest(IngestArgs),
    /// Write realistic multi-channel demo journeys to a file (JSONL, CSV or Parquet).
    Generate(GenerateArgs),
    /// Counts of customers, events, event names and channels.
    Stats(FormatArgs),
    /// One customer's events in time order.
    Timeline(TimelineArgs),
    /// Merge all segments into one, for the fastest scans. A merge reads a range of customers
    /// at a time, so its memory stays near 1 GB plus 14 bytes an event, whatever the store's size.
    /// A segment an older version wrote is written again in the current format (its scan file
    /// then keeps each customer's event names as a set, which funnels read instead of names).
    Compact(FormatArgs),
    /// Make a damaged store openable again: move a corrupt part of the log aside.
    Repair,
    /// The process map: which event directly follows which, how often and how fast.
    #[command(
        long_about = "The process map (directly-follows graph): for every pair of events that follow \
each other directly in a customer's journey, how often (count and distinct customers) and how long \
in between (median, mean, p90); plus the activities journeys start and end with.\n\n\
Examples:\n  cairn map\n  cairn map --top 8 --min-count 50 --format dot | dot -Tsvg > map.svg\n  \
cairn map --first-channel email --since 2026-01-01 --format json"
    )]
    Map(crate::analyze::MapArgs),
    /// Whole journeys grouped by their exact sequence of events.
    #[command(
        long_about = "Variants: customers grouped by their whole journey (the exact sequence of event \
names). For each: count, share, median duration (first to last event) and revenue (sum of event \
values). With --goal EVENT a journey's variant is what came before its first EVENT (the whole \
journey if never), its duration runs to EVENT, and the goal rate is how often that path led to \
it.\n\nExamples:\n  cairn variants --top 20\n  \
cairn variants --goal 'Order Completed' --format json"
    )]
    Variants(crate::analyze::VariantsArgs),
    /// How many customers go through a sequence of steps within a time window.
    Funnel(crate::analyze::FunnelArgs),
    /// The most common next (or previous) events around an event, as a Sankey-ready graph.
    Paths(crate::analyze::PathsArgs),
    /// Cohorts by first event and the share of each active again week by week or month by month.
    Retention(crate::analyze::RetentionArgs),
    /// Pain points: which events, transitions, repeats and channel switches go with reaching a goal or not.
    Insights(crate::analyze::InsightsArgs),
    /// Two segments side by side: funnel, most different transitions and journeys.
    Compare(crate::analyze::CompareArgs),
    /// One customer's unified profile: identifiers, traits, computed traits, consent, merges
    /// and a paginated cross-channel timeline, found by any of their identifiers.
    Profile(crate::profile::ProfileArgs),
    /// Right to be forgotten: remove a customer's profile, identities and every event.
    #[command(long_about = crate::profile::FORGET_ABOUT)]
    Forget(crate::profile::ForgetArgs),
    /// Identity resolution: merge statistics and operator splits (unmerge).
    Profiles {
        #[command(subcommand)]
        command: crate::profile::ProfilesCommand,
    },
    /// Serve the Segment-compatible collection API (and stats, timelines, metrics) over HTTP.
    #[command(
        long_about = "Serve the Segment-compatible HTTP collection API on the store, plus the read \
endpoints, /health and Prometheus /metrics.\n\n\
Point any Segment SDK at it by setting its host to http://ADDR:PORT and its write key to one made \
with `cairn keys create`. Ingest: POST /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, \
/v1/alias, /v1/batch, /v1/import. A request is answered 200 only once its messages are durable. \
Reads (admin token as `Authorization: Bearer`): GET /v1/stats, GET /v1/customers/ID/timeline, \
GET /metrics. `cairn stats` and `cairn timeline` keep working on the same store meanwhile.\n\n\
With --journeys the server also runs the journeys applied with `cairn journeys apply`, live, as \
events arrive (what `cairn journeys run` does alone), sending through the channels set by the \
flags below; GET /v1/journeys and GET /v1/journeys/ID show per-step figures (entered, waiting, \
passed, exited, converted, sent, failed), also on /metrics.\n\n\
Settings come from flags, then environment variables, then the config file, then defaults.",
        after_help = "Examples:\n  cairn keys create --source web\n  cairn serve --listen 0.0.0.0:8240\n  \
CAIRN_ADMIN_TOKEN=$(openssl rand -hex 24) cairn serve\n  \
cairn serve --journeys --smtp-server 127.0.0.1:25 --webhook-url http://hooks.internal/cairn"
    )]
    Serve(crate::serve::ServeArgs),
    /// Create, list and revoke the write keys that `cairn serve` accepts.
    Keys(crate::serve::KeysArgs),
    /// Journeys as code: validate a definition, or backtest it on stored history.
    Journeys {
        #[command(subcommand)]
        command: crate::journeys::JourneysCommand,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Output as a readable table or as JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Files to import; the format comes from the name (.xes, .xes.gz, .csv, .csv.gz, .jsonl, .ndjson, .json, .parquet).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// CSV/Parquet column holding the customer id [default: customer_id, user_id, case:concept:name, ...].
    #[arg(long, value_name = "COL")]
    pub customer: Option<String>,
    /// CSV/Parquet column holding the event (activity) name [default: event, activity, concept:name, ...].
    #[arg(long, value_name = "COL")]
    pub event: Option<String>,
    /// CSV/Parquet column holding the time [default: timestamp, time, time:timestamp, ...].
    #[arg(long, value_name = "COL")]
    pub time: Option<String>,
    /// CSV/Parquet column holding the channel [default: channel].
    #[arg(long, value_name = "COL")]
    pub channel: Option<String>,
    /// CSV/Parquet column holding a numeric value or revenue [default: value, revenue, amount].
    #[arg(long, value_name = "COL")]
    pub value: Option<String>,
    /// CSV/Parquet column holding a unique message id [default: message_id, messageId, event_id].
    #[arg(long, value_name = "COL")]
    pub message_id: Option<String>,
    /// Channel of records that name none (e.g. call_center for a call-center export).
    #[arg(long, value_name = "CHANNEL")]
    pub default_channel: Option<String>,
    /// Bad records to tolerate per file before giving up on it; rejected records go to the quarantine file.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: u64,
    /// Where rejected records are written (JSON lines) [default: DATA_DIR/quarantine/FILE.rejected.jsonl].
    #[arg(long, value_name = "FILE")]
    pub quarantine: Option<PathBuf>,
    /// Events per segment written while importing (memory use grows with it).
    #[arg(long, default_value_t = 2_000_000, value_name = "N", hide = true)]
    pub chunk_events: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// JSONL file of Segment messages, or `-` for stdin.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Messages per batch (one durable write each).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of customers (about 12 events each).
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// Random seed: the same seed always gives the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output file; the format comes from the name: .jsonl, .csv or .parquet.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of demo customers.
    #[arg(long, default_value_t = 20_000)]
    pub customers: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct TimelineArgs {
    /// The customer's id (user id or anonymous id as sent).
    pub customer: String,
    /// Show at most this many events (the earliest).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn open_store(cli_dir: &std::path::Path) -> Result<Store> {
    let store = Store::open(cli_dir, Options::default())
        .with_context(|| format!("cannot open the store in {}", cli_dir.display()))?;
    if let Some((file, bytes)) = store.recovered_cut() {
        eprintln!(
            "warning: cut a torn tail of {bytes} bytes from {} (a write interrupted by a crash, never acknowledged)",
            file.display()
        );
    }
    Ok(store)
}

pub fn open_snapshot(dir: &std::path::Path) -> Result<Snapshot> {
    if !dir.join(cairn_store::MANIFEST_FILE).exists() {
        anyhow::bail!(
            "no cairn store in {} (run `cairn demo` or `cairn import FILE` first, or pass --data-dir)",
            dir.display()
        );
    }
    Snapshot::load(dir).with_context(|| format!("cannot read the store in {}", dir.display()))
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar of `len` steps drawn on stderr with indicatif's `template`, when stderr is a
/// terminal; a hidden one otherwise (scripts and logs get no bar lines).
pub fn progress_bar(len: Option<u64>, template: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// `cairn compact`, with a progress bar on a terminal: merging a large store takes minutes.
fn compact_with_bar(store: &cairn_store::Store) -> Result<cairn_store::Compaction> {
    let bar = progress_bar(
        None,
        "merging [{bar:30}] {human_pos}/{human_len} events {per_sec} eta {eta}",
    );
    // Events of the merges before this one: the bar runs over all of them.
    let mut before = 0;
    let mut last = cairn_store::MergeProgress { done: 0, total: 0 };
    let compacted = store.compact_reporting(true, &mut |p| {
        if p.done < last.done {
            before += last.total;
        }
        last = p;
        bar.set_length(before + p.total);
        bar.set_position(before + p.done);
    });
    bar.finish_and_clear();
    Ok(compacted?)
}

/// What `cairn compact` did, in a line: e.g. "merged 3 segments and rewrote 1 in the current
/// format (1200 events); 1 segment now".
fn compaction_summary(c: &cairn_store::Compaction, segments: usize) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let done = match (c.merged_segments, c.rewritten_segments) {
        (0, 0) => "nothing to merge".to_string(),
        (m, 0) => format!("merged {}", plural(m, "segment")),
        (0, r) => format!("rewrote {} in the current format", plural(r, "segment")),
        (m, r) => format!(
            "merged {} and rewrote {r} in the current format",
            plural(m, "segment")
        ),
    };
    let events = if c.events > 0 {
        format!(" ({} events)", c.events)
    } else {
        String::new()
    };
    format!("{done}{events}; {} now", plural(segments, "segment"))
}

pub fn run(cli: Cli) -> Result<()> {
    let dir = cli.data_dir;
    match cli.command {
        Command::Demo(args) => crate::demo::run(&dir, &args),
        Command::Import(args) => crate::import::run(&dir, &args),
        Command::Ingest(args) => crate::import::ingest(&dir, &args),
        Command::Generate(args) => crate::demo::generate(&args),
        Command::Stats(args) => render::stats(&open_snapshot(&dir)?, args.format),
        Command::Timeline(args) => render::timeline(&open_snapshot(&dir)?, &args),
        Command::Compact(args) => {
            let store = open_store(&dir)?;
            let c = compact_with_bar(&store)?;
            let snap = store.snapshot()?;
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "merged_segments": c.merged_segments,
                        "rewritten_segments": c.rewritten_segments,
                        "events": c.events,
                        "segments": snap.segments().len(),
                    })
                ),
                Format::Table => println!("{}", compaction_summary(&c, snap.segments().len())),
            }
            Ok(())
        }
        Command::Map(args) => crate::analyze::map(&dir, &args),
        Command::Variants(args) => crate::analyze::variants(&dir, &args),
        Command::Funnel(args) => crate::analyze::funnel(&dir, &args),
        Command::Paths(args) => crate::analyze::paths(&dir, &args),
        Command::Retention(args) => crate::analyze::retention(&dir, &args),
        Command::Insights(args) => crate::analyze::insights(&dir, &args),
        Command::Compare(args) => crate::analyze::compare(&dir, &args),
        Command::Profile(args) => crate::profile::show(&dir, &args),
        Command::Profiles { command } => crate::profile::run(&dir, &command),
        Command::Forget(args) => crate::profile::forget(&dir, &args),
        Command::Journeys { command } => crate::journeys::run(&dir, &command),
        Command::Repair => {
            let report = cairn_store::repair(&dir)?;
            println!("{report}");
            Ok(())
        }
        Command::Serve(args) => crate::serve::serve(&dir, args),
        Command::Keys(args) => crate::serve::keys(&dir, args),
    }
}

#[cfg(test)]
mod tests {
    use super::compaction_summary;
    use cairn_store::Compaction;

    #[test]
    fn compaction_summary_says_what_was_merged_and_rewritten() {
        let c = |merged_segments, rewritten_segments, events| Compaction {
            merged_segments,
            rewritten_segments,
            events,
        };
        let cases = [
            (c(0, 0, 0), 1, "nothing to merge; 1 segment now"),
            (
                c(3, 0, 90),
                1,
                "merged 3 segments (90 events); 1 segment now",
            ),
            (
                c(0, 1, 12),
                1,
                "rewrote 1 segment in the current format (12 events); 1 segment now",
            ),
            (
                c(2, 1, 50),
                2,
                "merged 2 segments and rewrote 1 in the current format (50 events); 2 segments now",
            ),
        ];
        for (done, segments, want) in cases {
            assert_eq!(compaction_summary(&done, segments), want);
        }
    }
}
