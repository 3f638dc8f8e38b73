//! The journey engine under load (issue 6, acceptance 5; results in BENCHMARKS.md):
//!
//!     cargo bench -p cairn-journey --bench engine
//!
//! Five journeys from examples/journeys/ run at once. Setup: CAIRN_BENCH_CUSTOMERS customers
//! (default 2,000,000) each enter all five (purchase, signed_up, trial_started, add_to_cart,
//! product_viewed, spread over one simulated hour), so every one of them waits in five journeys:
//! the engine keeps one timer per (customer, journey) run, so 2 M customers make the 10 M pending
//! timers of the target. Then a sustained stream of CAIRN_BENCH_EVENTS events (default
//! 5,000,000) over two more simulated hours: page views no journey wants, entries refused by a
//! condition or the re-entry policy, events that end waits (purchase, order_delivered,
//! subscription_started, add_to_cart), and sign-ups of new customers that send the welcome email
//! at once. The injected clock advances with the events, so the 1-hour cart waits and the
//! 2-hour browse waits of the setup customers time out during the stream (emails, holdout
//! suppressions, frequency-cap delays).
//!
//! Measured per run (CAIRN_BENCH_RUNS, default 3; medians printed at the end):
//! * events/s: stream events over the wall time of the `on_event` calls, including the timers
//!   they fire and counting the effects (the bench's stand-in for the outbox);
//! * latency from an event's arrival to its Send effect being returned: the service time of
//!   each stream event whose call returned a `Send`, and the same under an offered load of
//!   CAIRN_BENCH_RATE events/s (default 100,000) with FIFO queueing computed from the measured
//!   service times (Lindley's recursion: waiting_{i+1} = max(0, waiting_i + service_i - 1/rate));
//! * memory per waiting customer: live heap bytes of the engine (a counting global allocator:
//!   bytes requested and not yet freed, so no allocator overhead) after setup, divided by the
//!   customers waiting; the process RSS growth over setup is printed beside it.
//!
//! The run checks its results against a model of the abandoned-cart journey kept by the bench
//! (timeouts, holdouts, goals) and the welcome emails (one per sign-up), and aborts on a
//! mismatch, so the engine cannot skip work. No harness; the allocator is mimalloc, as in the
//! `cairn` binary that runs journeys live (crates/cairn/src/main.rs), wrapped to count bytes.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use cairn_journey::engine::bucket;
use cairn_journey::{Effect, Engine, InputEvent, Journey, JourneyEventKind, Suppression};
use serde_json::{Map, Value, json};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: forwards to mimalloc unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { INNER.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { INNER.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { INNER.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIN: i64 = 60_000_000;
const HOUR: i64 = 60 * MIN;
/// 2026-03-02 09:00 UTC, a Monday morning: outside quiet hours in UTC and Europe.
const T0: i64 = 1_772_442_000_000_000;
const SETUP_SPAN: i64 = HOUR;
const STREAM_SPAN: i64 = 2 * HOUR;
const CART: &str = "abandoned-cart@1";
const CART_WAIT: i64 = HOUR;
const CART_GOAL: i64 = 7 * 24 * HOUR;
const ID_WIDTH: usize = 12;

const JOURNEYS: [&str; 5] = [
    include_str!("../../../examples/journeys/abandoned-cart.yaml"),
    include_str!("../../../examples/journeys/welcome.yaml"),
    include_str!("../../../examples/journeys/post-purchase.yaml"),
    include_str!("../../../examples/journeys/trial-conversion.yaml"),
    include_str!("../../../examples/journeys/browse-abandonment.yaml"),
];
const ZONES: [&str; 4] = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// splitmix64: the bench's own deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Customer ids, fixed width in one buffer, so the stream borrows them without allocating.
struct Ids(String);
impl Ids {
    fn new(n: usize) -> Ids {
        let mut s = String::with_capacity(n * ID_WIDTH);
        for i in 0..n {
            s.push_str(&format!("cus_{i:08}"));
        }
        Ids(s)
    }
    fn get(&self, i: usize) -> &str {
        &self.0[i * ID_WIDTH..(i + 1) * ID_WIDTH]
    }
}

/// (name, properties, traits, consent) of one setup event.
type Input<'a> = (
    &'a str,
    &'a Map<String, Value>,
    &'a Map<String, Value>,
    &'a [(String, bool)],
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    PageViewed,
    CheapView,
    Purchase,
    Delivered,
    Subscribed,
    AddToCart,
    SignUp,
    TrialAgain,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::PageViewed => "page_viewed",
            Kind::CheapView => "product_viewed",
            Kind::Purchase => "purchase",
            Kind::Delivered => "order_delivered",
            Kind::Subscribed => "subscription_started",
            Kind::AddToCart => "add_to_cart",
            Kind::SignUp => "signed_up",
            Kind::TrialAgain => "trial_started",
        }
    }
}

/// The abandoned-cart journey as the bench expects it to behave, per customer: 0 not in it,
/// `e > 0` waiting for purchase since `e`, `-e` past the wait (goal window open since `e`).
struct CartModel {
    state: Vec<i64>,
    timeouts: u64,
    holdouts: u64,
    goals: u64,
}

impl CartModel {
    /// The wait's timer fires before any event at or after its due time.
    fn settle(&mut self, c: usize, id: &str, now: i64) {
        let e = self.state[c];
        if e > 0 && e + CART_WAIT <= now {
            self.timeouts += 1;
            if bucket(id, "abandoned-cart") < 1_000 {
                self.holdouts += 1;
            }
            self.state[c] = -e;
        }
    }
    fn add_to_cart(&mut self, c: usize, id: &str, now: i64) {
        self.settle(c, id, now);
        if self.state[c] == 0 {
            self.state[c] = now;
        }
    }
    fn purchase(&mut self, c: usize, id: &str, now: i64) {
        self.settle(c, id, now);
        let e = self.state[c].abs();
        if e != 0 && now < e + CART_GOAL {
            self.goals += 1;
            self.state[c] = 0;
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Counts {
    effects: u64,
    sends: u64,
    welcome: u64,
    cart_email: u64,
    cart_split: u64,
    cart_holdout: u64,
    cart_goal: u64,
    delayed: u64,
}

impl Counts {
    /// The bench's outbox: counts what the checks need. Returns whether a message was sent.
    fn take(&mut self, effects: &[Effect]) -> bool {
        let mut sent = false;
        self.effects += effects.len() as u64;
        for e in effects {
            match e {
                Effect::Send(m) => {
                    sent = true;
                    self.sends += 1;
                    match m.template.as_str() {
                        "welcome" => self.welcome += 1,
                        "cart-reminder" => self.cart_email += 1,
                        _ => {}
                    }
                }
                Effect::Journey(j) => match &j.kind {
                    JourneyEventKind::StepReached { step }
                        if step == "split" && j.journey == CART =>
                    {
                        self.cart_split += 1
                    }
                    JourneyEventKind::Suppressed {
                        reason: Suppression::Holdout,
                        ..
                    } if j.journey == CART => self.cart_holdout += 1,
                    JourneyEventKind::GoalReached if j.journey == CART => self.cart_goal += 1,
                    JourneyEventKind::Delayed { .. } => self.delayed += 1,
                    _ => {}
                },
                _ => {}
            }
        }
        sent
    }
}

struct RunResult {
    setup_secs: f64,
    timers_after_setup: usize,
    engine_bytes: isize,
    rss_growth: isize,
    stream_secs: f64,
    events_per_sec: f64,
    events_per_cpu_sec: f64,
    timers_fired: u64,
    send_events: usize,
    p50_service_us: f64,
    p99_service_us: f64,
    p99_send_us: f64,
    max_send_us: f64,
    p99_send_at_rate_us: f64,
    timers_after_stream: usize,
    counts: Counts,
    load: String,
}

impl RunResult {
    /// One line for the parent process: every figure, then the load after a `|`.
    fn to_line(&self) -> String {
        let c = &self.counts;
        format!(
            "RESULT {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}|{}",
            self.setup_secs,
            self.timers_after_setup,
            self.engine_bytes,
            self.rss_growth,
            self.stream_secs,
            self.events_per_sec,
            self.events_per_cpu_sec,
            self.timers_fired,
            self.send_events,
            self.p50_service_us,
            self.p99_service_us,
            self.p99_send_us,
            self.max_send_us,
            self.p99_send_at_rate_us,
            self.timers_after_stream,
            c.effects,
            c.sends,
            c.welcome,
            c.cart_email,
            c.cart_split,
            c.cart_holdout,
            c.cart_goal,
            c.delayed,
            0,
            self.load
        )
    }

    fn from_line(line: &str) -> Option<RunResult> {
        let (figures, load) = line.strip_prefix("RESULT ")?.split_once('|')?;
        let f: Vec<f64> = figures
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let u = |i: usize| f[i] as u64;
        (f.len() == 24).then(|| RunResult {
            setup_secs: f[0],
            timers_after_setup: u(1) as usize,
            engine_bytes: f[2] as isize,
            rss_growth: f[3] as isize,
            stream_secs: f[4],
            events_per_sec: f[5],
            events_per_cpu_sec: f[6],
            timers_fired: u(7),
            send_events: u(8) as usize,
            p50_service_us: f[9],
            p99_service_us: f[10],
            p99_send_us: f[11],
            max_send_us: f[12],
            p99_send_at_rate_us: f[13],
            timers_after_stream: u(14) as usize,
            counts: Counts {
                effects: u(15),
                sends: u(16),
                welcome: u(17),
                cart_email: u(18),
                cart_split: u(19),
                cart_holdout: u(20),
                cart_goal: u(21),
                delayed: u(22),
            },
            load: load.to_string(),
        })
    }
}

fn rss_bytes() -> isize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<isize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU seconds this process has run (user + system), from /proc: on a shared machine the
/// wall clock also counts the time other processes had the cores.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn props(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object literal"),
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1_000.0
}

fn run(customers: usize, events: usize, rate: usize, seed: u64) -> RunResult {
    let journeys: Vec<Arc<Journey>> = JOURNEYS
        .iter()
        .map(|y| Arc::new(Journey::from_yaml(y).expect("example journeys are valid")))
        .collect();
    let load_before = loadavg();

    // Everything the bench itself holds is allocated before the baseline.
    let mut rng = Rng(seed);
    let new_customers = events; // upper bound: at most one sign-up per stream event
    let ids = Ids::new(customers + new_customers);
    let mut model = CartModel {
        state: vec![0; customers + new_customers],
        timeouts: 0,
        holdouts: 0,
        goals: 0,
    };
    let mut stream: Vec<(u32, Kind)> = Vec::with_capacity(events);
    let mut next_new = customers;
    for _ in 0..events {
        let r = rng.below(100);
        let existing = rng.below(customers) as u32;
        let kind = match r {
            0..35 => Kind::PageViewed,
            35..45 => Kind::CheapView,
            45..55 => Kind::Purchase,
            55..65 => Kind::Delivered,
            65..70 => Kind::Subscribed,
            70..80 => Kind::AddToCart,
            80..95 => Kind::SignUp,
            _ => Kind::TrialAgain,
        };
        if kind == Kind::SignUp {
            stream.push((next_new as u32, kind));
            next_new += 1;
        } else {
            stream.push((existing, kind));
        }
    }
    let variants: Vec<[Map<String, Value>; 8]> = (0..64)
        .map(|v| {
            [
                props(json!({"url": format!("https://shop.example.com/c/{v}")})),
                props(json!({"product": format!("sku-{v}"), "price": 19.9, "currency": "EUR"})),
                props(json!({"order_id": format!("o-{v}"), "revenue": 42.5, "currency": "EUR"})),
                props(json!({"order_id": format!("o-{v}"), "carrier": "dhl"})),
                props(json!({"plan": "pro", "price": 29.0})),
                props(json!({"product": format!("sku-{v}"), "price": 49.9, "currency": "EUR", "cart_url": "https://shop.example.com/cart"})),
                props(json!({"plan": "free", "source": "ad"})),
                props(json!({"plan": "pro"})),
            ]
        })
        .collect();
    let mut service: Vec<u64> = Vec::with_capacity(events);
    let mut sent_flags: Vec<bool> = Vec::with_capacity(events);
    let no_traits = Map::new();

    let base_live = LIVE.load(Ordering::Relaxed);
    let base_rss = rss_bytes();
    let mut engine = Engine::new(journeys);
    let mut counts = Counts::default();

    // Setup: every customer enters all five journeys.
    let start = Instant::now();
    for c in 0..customers {
        let id = ids.get(c);
        let t = T0 + (c as i64 * SETUP_SPAN) / customers as i64;
        let v = c % 64;
        let purchase = props(
            json!({"order_id": format!("o-{c}"), "revenue": 20 + c % 200, "currency": "EUR"}),
        );
        let cart = props(json!({
            "product": format!("sku-{}", c % 5_000), "price": 49.9, "currency": "EUR",
            "cart_url": format!("https://shop.example.com/cart/{c}")
        }));
        let viewed = props(json!({
            "product": format!("sku-{}", (c + 7) % 5_000), "price": 80.0,
            "url": format!("https://shop.example.com/p/{}", (c + 7) % 5_000)
        }));
        // A quarter carry a timezone, a phone and SMS consent (as an identify call would).
        let (traits, consent) = if c % 4 == 0 {
            (
                props(json!({
                    "timezone": ZONES[(c / 4) % ZONES.len()],
                    "phone": format!("+4915{c:09}"),
                    "plan_interest": if c % 8 == 0 { "pro" } else { "basic" },
                    "first_name": "Alex",
                })),
                vec![("sms".to_string(), true)],
            )
        } else {
            (Map::new(), Vec::new())
        };
        let inputs: [Input<'_>; 5] = [
            ("purchase", &purchase, &no_traits, &[]),
            ("signed_up", &variants[v][6], &traits, &consent),
            ("trial_started", &variants[v][7], &no_traits, &[]),
            ("add_to_cart", &cart, &no_traits, &[]),
            ("product_viewed", &viewed, &no_traits, &[]),
        ];
        for (name, properties, traits, consent) in inputs {
            let ev = InputEvent {
                name,
                properties,
                traits,
                consent,
            };
            counts.take(&engine.on_event(id, &ev, t));
            match name {
                "purchase" => model.purchase(c, id, t),
                "add_to_cart" => model.add_to_cart(c, id, t),
                _ => {}
            }
        }
    }
    let setup_secs = start.elapsed().as_secs_f64();
    let timers_after_setup = engine.pending_timers();
    let engine_bytes = LIVE.load(Ordering::Relaxed) - base_live;
    let rss_growth = rss_bytes() - base_rss;

    // The sustained stream.
    let t_stream = T0 + SETUP_SPAN;
    let mut now = t_stream;
    let mut split_before = counts.cart_split;
    let cpu_before = cpu_secs();
    let start = Instant::now();
    for (k, &(c, kind)) in stream.iter().enumerate() {
        let c = c as usize;
        let id = ids.get(c);
        now = t_stream + (k as i64 * STREAM_SPAN) / events as i64;
        let properties = &variants[k % 64][match kind {
            Kind::PageViewed => 0,
            Kind::CheapView => 1,
            Kind::Purchase => 2,
            Kind::Delivered => 3,
            Kind::Subscribed => 4,
            Kind::AddToCart => 5,
            Kind::SignUp => 6,
            Kind::TrialAgain => 7,
        }];
        let ev = InputEvent {
            name: kind.name(),
            properties,
            traits: &no_traits,
            consent: &[],
        };
        let t = Instant::now();
        let effects = engine.on_event(id, &ev, now);
        let sent = counts.take(&effects);
        drop(effects);
        service.push(t.elapsed().as_nanos() as u64);
        sent_flags.push(sent);
        match kind {
            Kind::Purchase => model.purchase(c, id, now),
            Kind::AddToCart => model.add_to_cart(c, id, now),
            _ => {}
        }
    }
    let stream_secs = start.elapsed().as_secs_f64();
    let stream_cpu = cpu_secs() - cpu_before;
    let timers_after_stream = engine.pending_timers();
    for c in 0..next_new {
        model.settle(c, ids.get(c), now);
    }
    split_before = counts.cart_split - split_before;
    let load = format!("{load_before} → {}", loadavg());

    // Checks: the engine did what the journeys imply.
    let welcome_expected = next_new as u64;
    let ok = [
        ("welcome emails", counts.welcome, welcome_expected),
        ("cart wait timeouts", counts.cart_split, model.timeouts),
        ("cart holdouts", counts.cart_holdout, model.holdouts),
        ("cart goals", counts.cart_goal, model.goals),
    ];
    for (what, got, want) in ok {
        assert_eq!(
            got, want,
            "{what}: the engine gave {got}, the journeys imply {want}"
        );
    }
    assert!(
        timers_after_setup >= 5 * customers - customers / 100,
        "{timers_after_setup} pending timers after setup, expected about {}",
        5 * customers
    );

    // Latency: service times, and FIFO queueing at the offered rate.
    let gap = 1e9 / rate as f64;
    let mut waiting = 0.0f64;
    let mut send_lat = Vec::new();
    let mut send_service = Vec::new();
    for (s, sent) in service.iter().zip(&sent_flags) {
        let s = *s as f64;
        if *sent {
            send_lat.push((waiting + s) as u64);
            send_service.push(s as u64);
        }
        waiting = (waiting + s - gap).max(0.0);
    }
    send_lat.sort_unstable();
    send_service.sort_unstable();
    let mut all = service.clone();
    all.sort_unstable();
    if std::env::var_os("CAIRN_BENCH_SLOWEST").is_some() {
        let mut slow: Vec<(u64, usize)> = service.iter().copied().zip(0..).collect();
        slow.sort_unstable_by(|a, b| b.cmp(a));
        for (ns, k) in slow.iter().take(8) {
            eprintln!(
                "slow: event {k} ({}) took {} µs",
                stream[*k].1.name(),
                ns / 1_000
            );
        }
    }

    RunResult {
        setup_secs,
        timers_after_setup,
        engine_bytes,
        rss_growth,
        stream_secs,
        events_per_sec: events as f64 / stream_secs,
        events_per_cpu_sec: events as f64 / stream_cpu.max(0.01),
        timers_fired: split_before,
        send_events: send_service.len(),
        p50_service_us: percentile(&all, 0.50),
        p99_service_us: percentile(&all, 0.99),
        p99_send_us: percentile(&send_service, 0.99),
        max_send_us: percentile(&send_service, 1.0),
        p99_send_at_rate_us: percentile(&send_lat, 0.99),
        timers_after_stream,
        counts,
        load,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let customers = env("CAIRN_BENCH_CUSTOMERS", 2_000_000);
    let events = env("CAIRN_BENCH_EVENTS", 5_000_000);
    let runs = env("CAIRN_BENCH_RUNS", 3).max(1);
    let rate = env("CAIRN_BENCH_RATE", 100_000).max(1);
    println!(
        "journey engine: 5 journeys, {customers} customers waiting in each, then {events} events; {runs} runs"
    );
    // Each run in a fresh process: a second run in the same heap measured 1.5-2.5x slower (the
    // first run's freed gigabytes come back fragmented and without huge pages), which says
    // more about the bench than about the engine.
    if std::env::var_os("CAIRN_BENCH_ONE_RUN").is_some() {
        let res = run(customers, events, rate, 42);
        println!("{}", res.to_line());
        return;
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut results = Vec::new();
    for r in 0..runs {
        let out = std::process::Command::new(&exe)
            .env("CAIRN_BENCH_ONE_RUN", "1")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cannot start a run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let res = stdout.lines().find_map(RunResult::from_line);
        let Some(res) = res.filter(|_| out.status.success()) else {
            panic!("run {} failed ({}):\n{stdout}", r + 1, out.status);
        };
        println!(
            "run {}: setup {:.1} s ({} timers, engine heap {} B = {:.0} B/customer, RSS +{} MiB); \
stream {:.2} s = {:.0} events/s ({:.0} per CPU second); service p50 {:.1} µs p99 {:.1} µs; send events {} p99 {:.1} µs max {:.1} µs; \
p99 at {rate}/s {:.1} µs; cart timeouts {}; {} timers left; load {}; counts {:?}",
            r + 1,
            res.setup_secs,
            res.timers_after_setup,
            res.engine_bytes,
            res.engine_bytes as f64 / customers as f64,
            res.rss_growth >> 20,
            res.stream_secs,
            res.events_per_sec,
            res.events_per_cpu_sec,
            res.p50_service_us,
            res.p99_service_us,
            res.send_events,
            res.p99_send_us,
            res.max_send_us,
            res.p99_send_at_rate_us,
            res.timers_fired,
            res.timers_after_stream,
            res.load,
            res.counts,
        );
        if let Some(first) = results.first() {
            let first: &RunResult = first;
            assert_eq!(first.counts, res.counts, "runs must give the same effects");
        }
        results.push(res);
    }
    let m = |f: &dyn Fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    println!("\nmedians of {runs} runs:");
    println!("| figure | value |");
    println!("|---|---|");
    println!("| customers waiting after setup | {customers} |");
    println!(
        "| pending timers after setup | {} |",
        results[0].timers_after_setup
    );
    println!(
        "| setup (5 entries per customer) | {:.1} s |",
        m(&|r| r.setup_secs)
    );
    println!(
        "| engine heap per waiting customer | {:.0} B |",
        m(&|r| r.engine_bytes as f64 / customers as f64)
    );
    println!(
        "| RSS growth per waiting customer | {:.0} B |",
        m(&|r| r.rss_growth as f64 / customers as f64)
    );
    println!(
        "| stream events/s (wall clock) | {:.0} |",
        m(&|r| r.events_per_sec)
    );
    println!(
        "| stream events per CPU second | {:.0} |",
        m(&|r| r.events_per_cpu_sec)
    );
    println!(
        "| cart timers fired in the stream | {} |",
        results[0].timers_fired
    );
    println!(
        "| messages sent in the stream+setup | {} |",
        results[0].counts.sends
    );
    println!(
        "| p50 service time, all events | {:.1} µs |",
        m(&|r| r.p50_service_us)
    );
    println!(
        "| p99 service time, all events | {:.1} µs |",
        m(&|r| r.p99_service_us)
    );
    println!(
        "| p99 event → Send, unloaded | {:.1} µs |",
        m(&|r| r.p99_send_us)
    );
    println!(
        "| p99 event → Send at {rate} events/s offered | {:.1} µs |",
        m(&|r| r.p99_send_at_rate_us)
    );
    println!("| max event → Send | {:.1} µs |", m(&|r| r.max_send_us));
}
