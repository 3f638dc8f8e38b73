//! The live runner (`cairn journeys run`, `cairn serve --journeys`). It follows the event log, drives the engine with a
//! clock, sends messages through the outbox, and writes progress back to the log.
//!
//! # Why nothing is lost or sent twice after `kill -9`
//!
//! The engine is deterministic, so its state (waiting customers, timers) is never saved: it is
//! re-derived on start by replaying the runner's *journal* against the event log. The journal
//! (`DATA/journeys/runner/journal.jsonl`, fsynced line by line, written *before* the step it
//! describes is acted on) records only the runner's inputs:
//!
//! - `start {from}`: events before sequence number `from` are history (they set traits and
//!   consent, they trigger nothing);
//! - `load {journey}` / `accept {journey, on}`: a version applied, paused, resumed, archived;
//! - `step {upto, now}`: feed the stored events with sequence numbers below `upto`, then fire
//!   timers due at `now` (the clock reading, which is why it is written down).
//!
//! Replaying the same inputs gives the same effects, messages included, each with its
//! idempotency key. The outbox's `delivered.jsonl` says which keys are done; the others are
//! (re)queued. So a timer due while the runner was down fires on the first step after restart,
//! and a message in flight at the crash is sent again with the same key, which the receiver
//! (`Idempotency-Key` header, `Message-ID`) uses to drop the copy.
//!
//! Progress goes back into the log as events (`journey_entered`, `journey_step`,
//! `journey_goal`, `journey_exited`, `message_sent`, `message_failed`, ...) whose message ids
//! are derived from what they record, so re-appending them on replay is a no-op (the store
//! drops known message ids). The runner skips these events as inputs.
//!
//! The cost of this design: a restart replays every event since `start`. Snapshotting the
//! engine's state every N steps would bound that; it is not built yet.
//!
//! The runner works on a store handle it is given: its own (`cairn journeys run`, which then
//! is the store's single writer) or the server's (`cairn serve --journeys`, where it runs on a
//! thread beside the HTTP handlers and is woken when the log's group commit lands).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io};
use cairn_channels::Templates;
use cairn_channels::outbox::{Channels, Delivery, Outbound, Outbox, RetryPolicy, Status};
use cairn_channels::sms::SmsConfig;
use cairn_channels::smtp::SmtpConfig;
use cairn_channels::webhook::WebhookConfig;
use cairn_journey::{Effect, Engine, InputEvent, JourneyEvent, JourneyEventKind, Message};
use cairn_model::{Event, EventKind, Micros, format_micros, parse_timestamp};
use cairn_store::{Store, StoredEvent};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::metrics::{Fact, Metrics, Outcome, Progress};
use crate::registry::{self, Registry};
use crate::{WRITEBACK_PREFIX, consent};

/// `cairn journeys run`: the runner's settings, and whether to stop when idle.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Process what is stored and due now, deliver, then exit (instead of following the log).
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub live: LiveArgs,
}

const DEFAULT_POLL_MS: u64 = 100;
const DEFAULT_FROM: &str = "cairn@localhost";
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_RETRY_BASE_MS: u64 = 500;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// How the runner reaches its channels, retries and keeps time: flags of both `cairn
/// journeys run` and `cairn serve` (one definition, flattened into each).
#[derive(Args, Debug, Clone)]
pub struct LiveArgs {
    /// How often to look for new events when idle, in milliseconds (`cairn serve --journeys`
    /// is also woken by each append).
    #[arg(long, default_value_t = DEFAULT_POLL_MS, value_name = "MS")]
    pub poll_ms: u64,
    /// SMTP relay for email, host:port.
    #[arg(long, env = "CAIRN_SMTP_SERVER", value_name = "HOST:PORT")]
    pub smtp_server: Option<String>,
    /// Sender address of emails.
    #[arg(long, env = "CAIRN_SMTP_FROM", default_value = DEFAULT_FROM)]
    pub smtp_from: String,
    #[arg(long, env = "CAIRN_SMTP_USER")]
    pub smtp_user: Option<String>,
    #[arg(long, env = "CAIRN_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// Where webhook messages are POSTed (http://).
    #[arg(long, env = "CAIRN_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Secret of the HMAC-SHA256 signature in the X-Cairn-Signature header.
    #[arg(
        long,
        env = "CAIRN_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub webhook_secret: String,
    /// Base URL of a Twilio-shaped SMS API (…/2010-04-01/Accounts/SID/Messages.json).
    #[arg(long, env = "CAIRN_SMS_BASE_URL", value_name = "URL")]
    pub sms_base_url: Option<String>,
    #[arg(long, env = "CAIRN_SMS_ACCOUNT", default_value = "")]
    pub sms_account: String,
    #[arg(
        long,
        env = "CAIRN_SMS_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub sms_token: String,
    #[arg(long, env = "CAIRN_SMS_FROM", default_value = "")]
    pub sms_from: String,
    /// Delivery attempts before a message goes to the dead-letter file.
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS, value_name = "N")]
    pub max_attempts: u32,
    /// Wait before the first retry, doubled for each one after (ms).
    #[arg(long, default_value_t = DEFAULT_RETRY_BASE_MS, value_name = "MS")]
    pub retry_base_ms: u64,
    /// A global send rate for a channel (email, sms or webhook), messages per second, across
    /// all journeys: messages over it wait their turn, none is dropped. Repeatable; e.g.
    /// `--send-rate sms=10 --send-rate email=50`. Unlimited by default.
    #[arg(
        long = "send-rate",
        env = "CAIRN_SEND_RATES",
        value_delimiter = ',',
        value_name = "CHANNEL=PER_SECOND",
        value_parser = parse_send_rate
    )]
    pub send_rates: Vec<(String, f64)>,
    /// Timeout of one delivery attempt (ms).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS, value_name = "MS")]
    pub timeout_ms: u64,
    /// Test clock: the journey time at the moment given by --clock-origin-ms.
    #[arg(long, hide = true, value_name = "T")]
    pub clock_start: Option<String>,
    /// Test clock: wall time (unix ms) at which the journey time is --clock-start
    /// [default: now].
    #[arg(long, hide = true)]
    pub clock_origin_ms: Option<i64>,
    /// Test clock: journey seconds per wall second.
    #[arg(long, hide = true, default_value_t = 1.0)]
    pub clock_rate: f64,
}

/// The runner's channel settings as the `[channels]` table of `cairn serve`'s config file
/// (`DATA_DIR/cairn.toml`): the same names as the flags, with `send_rates` a table of channel
/// to messages per second. A flag or environment variable wins over the file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsFile {
    pub smtp_server: Option<String>,
    pub smtp_from: Option<String>,
    pub smtp_user: Option<String>,
    pub smtp_password: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub sms_base_url: Option<String>,
    pub sms_account: Option<String>,
    pub sms_token: Option<String>,
    pub sms_from: Option<String>,
    #[serde(default)]
    pub send_rates: std::collections::BTreeMap<String, f64>,
}

impl LiveArgs {
    /// These settings with the file's where no flag or environment variable gave one (an
    /// empty text, or the default sender address, counts as not given). Rates are checked as
    /// the flag checks them.
    pub fn with_file(mut self, file: &ChannelsFile) -> std::result::Result<LiveArgs, String> {
        fn fill(value: &mut Option<String>, file: &Option<String>) {
            if value.is_none() {
                value.clone_from(file);
            }
        }
        fn fill_text(value: &mut String, unset: &str, file: &Option<String>) {
            if let (true, Some(f)) = (value == unset, file) {
                value.clone_from(f);
            }
        }
        fill(&mut self.smtp_server, &file.smtp_server);
        fill(&mut self.smtp_user, &file.smtp_user);
        fill(&mut self.smtp_password, &file.smtp_password);
        fill(&mut self.webhook_url, &file.webhook_url);
        fill(&mut self.sms_base_url, &file.sms_base_url);
        fill_text(&mut self.smtp_from, DEFAULT_FROM, &file.smtp_from);
        fill_text(&mut self.webhook_secret, "", &file.webhook_secret);
        fill_text(&mut self.sms_account, "", &file.sms_account);
        fill_text(&mut self.sms_token, "", &file.sms_token);
        fill_text(&mut self.sms_from, "", &file.sms_from);
        if self.send_rates.is_empty() {
            for (channel, &rate) in &file.send_rates {
                self.send_rates.push(send_rate(channel, rate)?);
            }
        }
        Ok(self)
    }
}

/// `CHANNEL=PER_SECOND`, e.g. `sms=10`.
fn parse_send_rate(s: &str) -> std::result::Result<(String, f64), String> {
    let (channel, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write CHANNEL=PER_SECOND, e.g. sms=10"))?;
    let rate = rate.trim().parse::<f64>().map_err(|_| {
        format!("{rate:?}: the rate must be a positive number of messages per second")
    })?;
    send_rate(channel.trim(), rate)
}

/// A send rate as given (by a flag or the config file), checked: a channel that exists, a
/// positive finite rate.
fn send_rate(channel: &str, rate: f64) -> std::result::Result<(String, f64), String> {
    if !matches!(channel, "email" | "sms" | "webhook") {
        return Err(format!(
            "{channel:?}: the channel must be email, sms or webhook"
        ));
    }
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(format!(
            "{rate}: the rate must be a positive number of messages per second"
        ));
    }
    Ok((channel.to_string(), rate))
}

impl Default for LiveArgs {
    /// The flags' defaults, without reading the environment.
    fn default() -> LiveArgs {
        LiveArgs {
            poll_ms: DEFAULT_POLL_MS,
            smtp_server: None,
            smtp_from: DEFAULT_FROM.to_string(),
            smtp_user: None,
            smtp_password: None,
            webhook_url: None,
            webhook_secret: String::new(),
            sms_base_url: None,
            sms_account: String::new(),
            sms_token: String::new(),
            sms_from: String::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base_ms: DEFAULT_RETRY_BASE_MS,
            send_rates: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            clock_start: None,
            clock_origin_ms: None,
            clock_rate: 1.0,
        }
    }
}

/// What a runner shares with readers in other threads (the server's HTTP handlers).
#[derive(Debug, Default)]
pub struct Shared {
    metrics: Mutex<Metrics>,
    /// Set once the journal is replayed: the metrics are complete from then on.
    ready: AtomicBool,
    /// Set when the runner stopped on an error.
    failed: AtomicBool,
    /// Bumped by whoever changed the registry in this process (the API's apply, pause, ...):
    /// wakes the runner, which reads the registry at the start of every round.
    registry_changes: AtomicU64,
}

impl Shared {
    /// The fold's state; `None` while the runner replays its journal or after it failed.
    pub fn metrics(&self) -> Option<MutexGuard<'_, Metrics>> {
        if !self.ready.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire) {
            return None;
        }
        Some(lock(&self.metrics))
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Says the registry changed, so the runner takes it up now rather than at its next
    /// poll (`--poll-ms`, which still covers a `cairn journeys apply` from another process).
    pub fn registry_changed(&self) {
        self.registry_changes.fetch_add(1, Ordering::Release);
    }
}

fn lock(m: &Mutex<Metrics>) -> MutexGuard<'_, Metrics> {
    // A panic elsewhere while counting leaves figures that are at worst one fact off.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The injected clock: wall time, or a test clock running at some rate from some start.
#[derive(Debug, Clone, Copy)]
enum Clock {
    System,
    Test {
        origin_wall: Micros,
        start: Micros,
        rate: f64,
    },
}

fn wall_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

impl Clock {
    fn now(self) -> Micros {
        match self {
            Clock::System => wall_micros(),
            Clock::Test {
                origin_wall,
                start,
                rate,
            } => start + ((wall_micros() - origin_wall) as f64 * rate) as Micros,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    /// `at`: the clock when the runner first started (absent in journals written before
    /// schedule entries): history counts as known from then, so a schedule does not fire for
    /// the time before the runner ran.
    Start {
        from: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<Micros>,
    },
    Load {
        journey: String,
    },
    Accept {
        journey: String,
        on: bool,
    },
    Step {
        upto: u64,
        now: Micros,
    },
}

/// The append-only journal of runner inputs.
struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens the journal and reads its operations; a torn last line is cut.
    fn open(path: &Path) -> Result<(Journal, Vec<Op>)> {
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io("opening", path))?;
        let mut ops = Vec::new();
        let mut good = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io("reading", path))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            match serde_json::from_str::<Op>(&line) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
            good += n as u64;
        }
        drop(reader);
        if file.seek(SeekFrom::End(0)).map_err(io("reading", path))? != good {
            eprintln!(
                "warning: cut a torn tail of the journey journal {}",
                path.display()
            );
            file.set_len(good).map_err(io("cutting", path))?;
        }
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            ops,
        ))
    }

    fn write(&mut self, op: &Op) -> Result<()> {
        // An `Op` is plain data: it always serializes.
        let line = serde_json::to_string(op).unwrap_or_default() + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(io("writing", &self.path))
    }
}

/// One stored event as the engine sees it.
struct Input {
    seq: u64,
    customer: String,
    name: String,
    at: Micros,
    properties: Map<String, Value>,
    traits: Map<String, Value>,
    consent: Vec<(String, bool)>,
    /// For computed traits (total revenue, last channel).
    value: Option<f64>,
    channel: String,
}

impl Input {
    /// What the engine sees of it.
    fn event(&self) -> InputEvent<'_> {
        InputEvent {
            name: &self.name,
            properties: &self.properties,
            traits: &self.traits,
            consent: &self.consent,
        }
    }

    /// Its value and channel, for computed traits.
    fn facts(&self) -> cairn_journey::segment::EventFacts<'_> {
        cairn_journey::segment::EventFacts {
            value: self.value,
            channel: Some(&self.channel),
        }
    }

    fn from_stored(e: &StoredEvent) -> Option<Input> {
        let ev = &e.event;
        if ev.message_id.starts_with(WRITEBACK_PREFIX) {
            return None;
        }
        let object = |s: Option<&str>| {
            s.and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok())
                .unwrap_or_default()
        };
        Some(Input {
            seq: e.seq,
            customer: ev.customer_id().to_string(),
            name: ev.event.clone(),
            at: ev.timestamp,
            properties: object(ev.properties.as_deref()),
            traits: match ev.kind {
                EventKind::Identify => object(ev.traits.as_deref()),
                _ => Map::new(),
            },
            consent: consent(ev.context.as_deref()),
            value: ev.value,
            channel: ev.channel.clone(),
        })
    }
}

pub struct Runner {
    data: PathBuf,
    store: Arc<Store>,
    shared: Arc<Shared>,
    clock: Clock,
    engine: Engine,
    slots: HashMap<String, usize>,
    accepting: HashMap<String, bool>,
    templates: Vec<Templates>,
    /// Every trait each customer has, for templates and recipients.
    profiles: HashMap<String, Map<String, Value>>,
    journal: Journal,
    outbox: Outbox,
    channels: Channels,
    /// The next sequence number to feed.
    pos: u64,
    /// Where to look for new events next (past our own write-backs, which are not inputs).
    peek: u64,
    /// The engine's time: never goes back.
    time: Micros,
    /// Where the runner started: events before it are history, not input.
    start: u64,
    /// Whether a step ran yet (history for segments is counted just before the first).
    stepped: bool,
    writeback: Vec<Event>,
    /// Figures of this process, for the exit summary.
    pub replayed_steps: usize,
    pub sent: u64,
}

impl Runner {
    /// Opens the runner of the journeys applied in `data` on `store` (the store of `data`),
    /// re-deriving its state from its journal.
    pub fn open(data: &Path, store: Arc<Store>, args: &LiveArgs) -> Result<Runner> {
        let clock = match &args.clock_start {
            None => Clock::System,
            Some(t) => Clock::Test {
                start: parse_timestamp(t).map_err(|e| Error::ClockStart {
                    value: t.clone(),
                    reason: e.to_string(),
                })?,
                origin_wall: args
                    .clock_origin_ms
                    .map_or_else(wall_micros, |ms| ms * 1000),
                rate: args.clock_rate,
            },
        };
        let timeout = Duration::from_millis(args.timeout_ms);
        let channels = Channels {
            smtp: args.smtp_server.as_ref().map(|server| SmtpConfig {
                server: server.clone(),
                from: args.smtp_from.clone(),
                helo: "cairn".to_string(),
                username: args.smtp_user.clone(),
                password: args.smtp_password.clone(),
                timeout,
            }),
            webhook: args.webhook_url.as_ref().map(|url| WebhookConfig {
                url: url.clone(),
                secret: args.webhook_secret.clone(),
                timeout,
            }),
            sms: args.sms_base_url.as_ref().map(|base| SmsConfig {
                base_url: base.clone(),
                account: args.sms_account.clone(),
                token: args.sms_token.clone(),
                from: args.sms_from.clone(),
                timeout,
            }),
        };
        let dir = registry::dir(data).join("runner");
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let (journal, ops) = Journal::open(&dir.join("journal.jsonl"))?;
        let mut outbox = Outbox::open(
            &dir,
            RetryPolicy {
                max_attempts: args.max_attempts.max(1),
                base_delay: Duration::from_millis(args.retry_base_ms),
                max_delay: Duration::from_secs(300),
            },
        )?;
        outbox.set_send_rates(args.send_rates.iter().cloned());
        let mut r = Runner {
            data: data.to_path_buf(),
            store,
            shared: Arc::default(),
            clock,
            engine: Engine::new(Vec::new()),
            slots: HashMap::new(),
            accepting: HashMap::new(),
            templates: Vec::new(),
            profiles: HashMap::new(),
            journal,
            outbox,
            channels,
            pos: 0,
            peek: 0,
            time: Micros::MIN,
            start: 0,
            stepped: false,
            writeback: Vec::new(),
            replayed_steps: 0,
            sent: 0,
        };
        r.replay(ops)?;
        r.shared.ready.store(true, Ordering::Release);
        Ok(r)
    }

    /// The figures and state shared with other threads.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Re-derives the engine's state from the journal and the log (see the module doc).
    fn replay(&mut self, ops: Vec<Op>) -> Result<()> {
        let snap = self.store.snapshot()?;
        let (from, at) = match ops.first() {
            Some(Op::Start { from, at }) => (*from, *at),
            _ => {
                // A new runner: what is stored now is history.
                let (from, at) = (snap.next_seq(), Some(self.clock.now()));
                self.journal.write(&Op::Start { from, at })?;
                (from, at)
            }
        };
        let mut history = Vec::new();
        let mut live = Vec::new();
        snap.for_each_event_from(0, |e| {
            if let Some(i) = Input::from_stored(e) {
                if i.seq < from {
                    if !i.traits.is_empty() || !i.consent.is_empty() {
                        history.push(i);
                    }
                } else {
                    live.push(i);
                }
            }
        })?;
        history.sort_by_key(|i| i.seq);
        live.sort_by_key(|i| i.seq);
        for i in &history {
            self.profile_update(i, at.map_or(i.at, |at| i.at.max(at)));
        }
        self.pos = from;
        self.peek = from;
        self.start = from;
        // Engine time starts at the runner's start: an event stored later with an older
        // timestamp counts as then (as it would after any step), not as a time gone by.
        if let Some(at) = at {
            self.time = self.time.max(at);
        }
        let mut live = live.into_iter().peekable();
        for op in ops.into_iter().skip(1) {
            match op {
                Op::Start { .. } => {}
                Op::Load { journey } => self.load(&journey)?,
                Op::Accept { journey, on } => self.accept(&journey, on),
                Op::Step { upto, now } => {
                    let mut batch = Vec::new();
                    while let Some(i) = live.next_if(|i| i.seq < upto) {
                        batch.push(i);
                    }
                    self.step(upto, now, batch)?;
                    self.replayed_steps += 1;
                }
            }
        }
        self.flush_writeback()?;
        Ok(())
    }

    /// Counts the events stored before the runner started into the segments of the journeys
    /// loaded by then, without entering anyone (`Engine::observe`): a win-back journey applied
    /// today sees who was active last month, as `journeys simulate --from` does. Done once,
    /// before the first step, both live and on replay (the journal loads the same journeys
    /// before its first step), so a restart derives the same state. A journey loaded after
    /// the first step counts the events from its load on. Segment changes that time alone
    /// makes up to the first step's `now` are history too (a customer who went quiet before
    /// the runner ran left the segment before: no entry).
    fn count_history_for_segments(&mut self, now: Micros) -> Result<()> {
        if !self.has_segments() {
            return Ok(());
        }
        let snap = self.store.snapshot()?;
        let mut history = Vec::new();
        snap.for_each_event_from(0, |e| {
            if e.seq < self.start
                && let Some(i) = Input::from_stored(e)
            {
                history.push(i);
            }
        })?;
        history.sort_by_key(|i| i.seq);
        for i in &history {
            self.engine
                .observe(&i.customer, &i.event(), i.facts(), i.at);
        }
        self.engine.observe_time(now);
        Ok(())
    }

    fn has_segments(&self) -> bool {
        self.engine
            .journeys()
            .iter()
            .any(|j| !j.segments.is_empty())
    }

    /// Traits and consent of a history event (nothing can enter on it), known from `at`.
    fn profile_update(&mut self, i: &Input, at: Micros) {
        let empty = Map::new();
        let ev = InputEvent {
            name: "",
            properties: &empty,
            traits: &i.traits,
            consent: &i.consent,
        };
        let effects = self.engine.on_event(&i.customer, &ev, at);
        debug_assert!(effects.is_empty(), "history triggered effects");
        if !i.traits.is_empty() {
            let p = self.profiles.entry(i.customer.clone()).or_default();
            p.extend(i.traits.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    fn load(&mut self, versioned: &str) -> Result<()> {
        let (j, t) = registry::load_version(&self.data, versioned)?;
        let slot = self.engine.add_journey(j);
        self.slots.insert(versioned.to_string(), slot);
        self.accepting.insert(versioned.to_string(), true);
        self.templates.push(t);
        // The engine keeps only the traits its journeys look at: give the new one the traits
        // seen so far (a profile update triggers nothing).
        let empty = Map::new();
        for (customer, traits) in &self.profiles {
            let ev = InputEvent {
                name: "",
                properties: &empty,
                traits,
                consent: &[],
            };
            let effects = self.engine.on_event(customer, &ev, self.time);
            debug_assert!(effects.is_empty(), "a profile update triggered effects");
        }
        Ok(())
    }

    fn accept(&mut self, versioned: &str, on: bool) {
        if let Some(&slot) = self.slots.get(versioned) {
            self.engine.set_accepting(slot, on);
            self.accepting.insert(versioned.to_string(), on);
        }
    }

    /// Brings the engine in line with the registry, journaling each change first.
    fn sync_registry(&mut self) -> Result<()> {
        for (versioned, on) in Registry::load(&self.data)?.versions() {
            if !self.slots.contains_key(&versioned) {
                self.journal.write(&Op::Load {
                    journey: versioned.clone(),
                })?;
                self.load(&versioned)?;
            }
            if self.accepting.get(&versioned) != Some(&on) {
                self.journal.write(&Op::Accept {
                    journey: versioned.clone(),
                    on,
                })?;
                self.accept(&versioned, on);
            }
        }
        Ok(())
    }

    /// Feeds `batch` (the inputs below `upto`) and fires timers due at `now`.
    fn step(&mut self, upto: u64, now: Micros, batch: Vec<Input>) -> Result<()> {
        if !self.stepped {
            self.stepped = true;
            self.count_history_for_segments(now)?;
        }
        let mut effects = Vec::new();
        for i in batch {
            if !i.traits.is_empty() {
                let p = self.profiles.entry(i.customer.clone()).or_default();
                p.extend(i.traits.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            // A provider's report that a message was opened or clicked.
            if let Some(f) = Fact::from_report(&i.name, &i.customer, &i.properties) {
                lock(&self.shared.metrics).observe(&f);
            }
            // Engine time never goes back (a late event counts as now), nor ahead of the
            // clock (a client clock in the future would fire timers early).
            self.time = self.time.max(i.at.min(now));
            effects.extend(self.engine.on_event_with(
                &i.customer,
                &i.event(),
                i.facts(),
                self.time,
            ));
            self.handle(&mut effects)?;
        }
        self.time = self.time.max(now);
        effects.extend(self.engine.on_time(self.time));
        self.handle(&mut effects)?;
        self.pos = upto;
        self.peek = self.peek.max(upto);
        Ok(())
    }

    fn handle(&mut self, effects: &mut Vec<Effect>) -> Result<()> {
        if effects.is_empty() {
            return Ok(());
        }
        {
            let mut m = lock(&self.shared.metrics);
            for e in effects.iter() {
                if let Effect::Journey(j) = e
                    && let Some(f) = Fact::from_journey_event(j)
                {
                    m.observe(&f);
                }
            }
        }
        for e in effects.drain(..) {
            match e {
                Effect::Send(m) => self.enqueue(&m)?,
                Effect::Journey(j) => {
                    let ev = journey_event(&j);
                    self.writeback.push(ev);
                }
                Effect::SetTraits {
                    customer,
                    journey,
                    traits,
                    at,
                } => {
                    let id = format!("{WRITEBACK_PREFIX}{journey}/{customer}/traits/{at}");
                    let mut ev = event(
                        &id,
                        EventKind::Identify,
                        "identify",
                        &customer,
                        at,
                        "journey",
                    );
                    ev.traits = Some(Value::Object(traits).to_string());
                    self.writeback.push(ev);
                }
                Effect::Emit {
                    customer,
                    journey,
                    event: name,
                    properties,
                    at,
                } => {
                    let id = format!("{WRITEBACK_PREFIX}{journey}/{customer}/emit/{name}/{at}");
                    let mut ev = event(&id, EventKind::Track, &name, &customer, at, "journey");
                    ev.properties = Some(Value::Object(properties).to_string());
                    self.writeback.push(ev);
                }
            }
        }
        Ok(())
    }

    /// Renders a message and queues it, unless its key is done.
    fn enqueue(&mut self, m: &Message) -> Result<()> {
        if let Some(d) = self.outbox.outcome(&m.idempotency_key) {
            // Delivered before a restart: count it again (the figures are rebuilt by this
            // replay) and write its status again, in case the crash came before that write
            // (a copy already in the log is dropped by its message id).
            let o = Outbound {
                key: m.idempotency_key.clone(),
                customer: m.customer.clone(),
                journey: m.journey.clone(),
                step: m.step.clone(),
                channel: m.channel.as_str().to_string(),
                to: None,
                payload: Value::Null,
                subject: None,
                body: String::new(),
            };
            self.status_event(&o, &d);
            return Ok(());
        }
        let empty = Map::new();
        let profile = self.profiles.get(&m.customer).unwrap_or(&empty);
        let ctx = json!({
            "customer": m.customer,
            "journey": m.journey,
            "step": m.step,
            "profile": profile,
            "event": m.properties,
        });
        let slot = self.slots.get(&m.journey).copied();
        let rendered = slot
            .and_then(|s| self.templates.get(s))
            .ok_or_else(|| format!("journey {} is not loaded", m.journey))
            .and_then(|t| t.render(&m.template, &ctx).map_err(|e| e.to_string()));
        let to = match m.channel.as_str() {
            "email" => profile
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_string),
            "sms" => profile
                .get("phone")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let (subject, body, error) = match rendered {
            Ok(r) => (r.subject, r.body, None),
            Err(e) => (None, String::new(), Some(e)),
        };
        let error = error.or_else(|| {
            (m.channel.as_str() != "webhook" && to.is_none()).then(|| {
                format!(
                    "customer {} has no {} trait",
                    m.customer,
                    if m.channel.as_str() == "email" {
                        "email"
                    } else {
                        "phone"
                    }
                )
            })
        });
        let o = Outbound {
            key: m.idempotency_key.clone(),
            customer: m.customer.clone(),
            journey: m.journey.clone(),
            step: m.step.clone(),
            channel: m.channel.as_str().to_string(),
            to,
            payload: json!({
                "key": m.idempotency_key,
                "customer": m.customer,
                "journey": m.journey,
                "step": m.step,
                "entry": m.entry,
                "template": m.template,
                "at": format_micros(m.at),
                "subject": subject,
                "body": body,
                "event": m.properties,
            }),
            subject,
            body,
        };
        match error {
            None => self.outbox.enqueue(o, Instant::now()),
            Some(e) => {
                let d = self.outbox.give_up(&o, e)?;
                self.status_event(&o, &d);
            }
        }
        Ok(())
    }

    fn status_event(&mut self, o: &Outbound, d: &Delivery) {
        lock(&self.shared.metrics).observe(&Fact {
            journey: &o.journey,
            customer: &o.customer,
            entry: 0,
            progress: Progress::Delivery {
                step: &o.step,
                outcome: Outcome::from_status(d.status),
            },
        });
        let name = match d.status {
            Status::Sent => "message_sent",
            Status::Bounced => "message_bounced",
            Status::Failed | Status::Dead => "message_failed",
        };
        let id = format!("{WRITEBACK_PREFIX}{}:{}", o.key, d.status.as_str());
        let mut ev = event(
            &id,
            EventKind::Track,
            name,
            &o.customer,
            self.clock.now(),
            &o.channel,
        );
        ev.properties = Some(
            json!({
                "journey": o.journey,
                "step": o.step,
                "key": o.key,
                "status": d.status.as_str(),
                "attempts": d.attempts,
                "error": d.error,
            })
            .to_string(),
        );
        self.writeback.push(ev);
    }

    fn flush_writeback(&mut self) -> Result<()> {
        if !self.writeback.is_empty() {
            let events = std::mem::take(&mut self.writeback);
            self.store.append(events)?;
        }
        Ok(())
    }

    /// One round: registry changes, new events and due timers, deliveries. Returns whether
    /// anything was left to do.
    pub fn round(&mut self) -> Result<bool> {
        self.round_with(true)
    }

    /// A round; with `appended` false the log is known to hold nothing new since the last
    /// round, so no snapshot is loaded (loading one parses the log tail not yet in a segment,
    /// up to a memtable's worth of events: too much for every idle poll).
    fn round_with(&mut self, appended: bool) -> Result<bool> {
        let now = self.clock.now();
        let mut batch = Vec::new();
        let mut upto = self.peek;
        if appended {
            let snap = self.store.snapshot()?;
            upto = snap.next_seq();
            if upto > self.peek {
                snap.for_each_event_from(self.peek, |e| {
                    if let Some(i) = Input::from_stored(e) {
                        batch.push(i);
                    }
                })?;
                batch.sort_by_key(|i| i.seq);
            }
        }
        // The registry is read after the log: every event of this round was appended before
        // it, so an event appended after a pause (or archive) was written meets the pause.
        // (Read first, a pause landing between the two reads let the events after it enter.)
        self.sync_registry()?;
        let due = self.engine.next_due().is_some_and(|d| d <= now);
        // The first step counts history into segments (and sets their timers), with or
        // without new events.
        let first = !self.stepped && self.has_segments();
        if !batch.is_empty() || due || first {
            // Written before it is acted on: a crash from here on replays this very step.
            self.journal.write(&Op::Step { upto, now })?;
            self.step(upto, now, batch)?;
        } else {
            // Only our own write-backs are new: no input, nothing to journal.
            self.peek = upto;
        }
        self.flush_writeback()?;
        let unix = (wall_micros() / 1_000_000).max(0) as u64;
        let done = self.outbox.run_due(&self.channels, Instant::now(), unix)?;
        for (o, d) in &done {
            self.sent += u64::from(d.status == Status::Sent);
            self.status_event(o, d);
        }
        self.flush_writeback()?;
        Ok(self.outbox.pending() > 0)
    }

    /// How long the loop may sleep: until the next timer or retry, at most `poll`.
    fn idle_for(&self, poll: Duration) -> Duration {
        let mut wait = poll;
        if let Some(at) = self.outbox.next_attempt() {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        if let (Some(due), Clock::System) = (self.engine.next_due(), self.clock) {
            let us = (due - self.clock.now()).max(0) as u64;
            wait = wait.min(Duration::from_micros(us));
        }
        wait
    }

    /// What a start did, for the operator: the replay, and the work it left pending.
    pub fn start_summary(&self, took: Duration) -> String {
        format!(
            "journey runner: replayed {} steps in {took:.1?}; {} timers pending, {} messages to deliver",
            self.replayed_steps,
            self.pending_timers(),
            self.pending_messages()
        )
    }

    pub fn pending_timers(&self) -> usize {
        self.engine.pending_timers()
    }

    pub fn pending_messages(&self) -> usize {
        self.outbox.pending()
    }
}

fn event(
    id: &str,
    kind: EventKind,
    name: &str,
    customer: &str,
    at: Micros,
    channel: &str,
) -> Event {
    Event {
        message_id: id.to_string(),
        kind,
        event: name.to_string(),
        user_id: Some(customer.to_string()),
        anonymous_id: None,
        timestamp: at,
        sent_at: None,
        received_at: None,
        channel: channel.to_string(),
        value: None,
        group_id: None,
        previous_id: None,
        properties: None,
        traits: None,
        context: None,
    }
}

/// A journey progress effect as a log event.
fn journey_event(j: &JourneyEvent) -> Event {
    let (name, step, extra) = match &j.kind {
        JourneyEventKind::Entered { holdout } => {
            ("journey_entered", "", json!({"holdout": holdout}))
        }
        JourneyEventKind::StepReached { step } => ("journey_step", step.as_str(), json!({})),
        JourneyEventKind::SplitArm { step, arm } => {
            ("journey_split", step.as_str(), json!({"arm": arm}))
        }
        JourneyEventKind::Suppressed { step, reason } => (
            "journey_suppressed",
            step.as_str(),
            json!({"reason": reason}),
        ),
        JourneyEventKind::Delayed { step, until } => (
            "journey_delayed",
            step.as_str(),
            json!({"until": format_micros(*until)}),
        ),
        JourneyEventKind::GoalReached => ("journey_goal", "", json!({})),
        JourneyEventKind::Exited { step, reason } => {
            ("journey_exited", step.as_str(), json!({"reason": reason}))
        }
        JourneyEventKind::Closed => ("journey_closed", "", json!({})),
    };
    let id = format!(
        "{WRITEBACK_PREFIX}{}/{}/{}/{name}/{step}/{}",
        j.journey, j.customer, j.entry, j.at
    );
    let mut ev = event(&id, EventKind::Track, name, &j.customer, j.at, "journey");
    let mut props = json!({"journey": j.journey, "entry": j.entry});
    if !step.is_empty() {
        props["step"] = json!(step);
    }
    if let (Some(p), Value::Object(extra)) = (props.as_object_mut(), extra) {
        p.extend(extra);
    }
    ev.properties = Some(props.to_string());
    ev
}

impl Runner {
    /// Runs rounds until `stop` is set, or with `once` until nothing is left to do. Between
    /// rounds it sleeps until the next timer or retry, at most `poll`; `appended` (the log's
    /// group-commit count, an atomic read) is watched meanwhile, so an append wakes it
    /// within a millisecond; and a round reads the log only when that count moved. The count
    /// must cover every append to the store: true of the store's own counter, since whoever
    /// runs the runner holds the store's only writer.
    pub fn follow(
        &mut self,
        poll: Duration,
        once: bool,
        stop: &AtomicBool,
        appended: impl Fn() -> u64,
    ) -> Result<()> {
        let poll = poll.max(Duration::from_millis(1));
        // The count the last round's snapshot covered (read before it was loaded).
        let mut covered = None;
        let shared = Arc::clone(&self.shared);
        let changes = || shared.registry_changes.load(Ordering::Acquire);
        while !stop.load(Ordering::Acquire) {
            let count = appended();
            let registry = changes();
            let busy = self.round_with(covered != Some(count))?;
            covered = Some(count);
            if once && !busy {
                break;
            }
            // Our own write-backs count as appends too: one more round reads past them.
            let until = Instant::now() + self.idle_for(poll);
            while Instant::now() < until
                && appended() == count
                && changes() == registry
                && !stop.load(Ordering::Acquire)
            {
                std::thread::sleep(
                    Duration::from_millis(1).min(until.saturating_duration_since(Instant::now())),
                );
            }
        }
        Ok(())
    }
}

/// `cairn journeys run`: the runner on its own store, until killed (or idle, with `--once`).
pub fn run(data: &Path, store: Store, args: &RunArgs) -> Result<()> {
    let started = Instant::now();
    let store = Arc::new(store);
    let mut r = Runner::open(data, Arc::clone(&store), &args.live)?;
    eprintln!("{}", r.start_summary(started.elapsed()));
    let poll = Duration::from_millis(args.live.poll_ms);
    r.follow(poll, args.once, &AtomicBool::new(false), || {
        store.log_sync_stats().syncs
    })?;
    eprintln!(
        "journey runner: {} messages sent; {} timers pending",
        r.sent,
        r.pending_timers()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_rate_is_a_known_channel_and_a_positive_rate() {
        assert_eq!(parse_send_rate(" sms = 2.5"), Ok(("sms".to_string(), 2.5)));
        let err = |s: &str| parse_send_rate(s).unwrap_err();
        assert!(err("sms").contains("write CHANNEL=PER_SECOND"));
        assert!(err("fax=3").contains("email, sms or webhook"));
        assert!(err("sms=fast").contains("positive number"));
        assert!(err("sms=0").contains("positive number"));
        assert!(err("sms=-1").contains("positive number"));
        assert!(err("sms=inf").contains("positive number"));
    }

    /// The log fold (`journeys show`, the API without a runner) reads back exactly the facts
    /// the runner folds live: each engine event, written back and parsed, states the same.
    #[test]
    fn a_written_back_event_states_the_fact_of_its_journey_event() {
        let kinds = [
            JourneyEventKind::Entered { holdout: true },
            JourneyEventKind::StepReached {
                step: "email".into(),
            },
            JourneyEventKind::Exited {
                step: "done".into(),
                reason: "finished".into(),
            },
            JourneyEventKind::GoalReached,
            JourneyEventKind::Closed,
            JourneyEventKind::Delayed {
                step: "email".into(),
                until: 5,
            },
        ];
        for kind in kinds {
            let j = JourneyEvent {
                customer: "u1".into(),
                journey: "cart@1".into(),
                entry: 3,
                at: 1_000,
                kind,
            };
            let ev = journey_event(&j);
            assert!(ev.message_id.starts_with(WRITEBACK_PREFIX));
            let props: Map<String, Value> =
                serde_json::from_str(ev.properties.as_deref().unwrap()).unwrap();
            assert_eq!(
                Fact::from_writeback(&ev.event, ev.customer_id(), &props),
                Fact::from_journey_event(&j),
                "{j:?}"
            );
        }
    }
}
