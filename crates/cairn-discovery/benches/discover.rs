//! In-process timings of the discovery analyses on a warm store, without the per-process
//! costs (start, first touch of the files) that `bench/discovery.py` includes: to compare
//! changes to an analysis or to the scan quickly and with less noise.
//!
//!     CAIRN_BENCH_STORE=bench/work/cairn-c1000000-s42 cargo bench -p cairn-discovery --bench discover
//!
//! The store is any Cairn data directory (`bench/discovery.py` makes the 12 M-event one). Each
//! figure is the median of `CAIRN_BENCH_RUNS` runs (default 7) after one warm-up, on one
//! thread and on two; every run's result must equal the first (the work cannot be skipped).

use std::path::PathBuf;
use std::time::Instant;

use cairn_discovery::funnel::FunnelSpec;
use cairn_discovery::{
    Analysis, Funnel, FunnelMode, ProcessMap, ScanSize, StepSpec, Timeline, Variants,
    finish_partials,
};
use cairn_store::{Columns, Snapshot};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEPS: [&str; 5] = [
    "Product Viewed",
    "Product Added",
    "Cart Viewed",
    "Checkout Started",
    "Order Completed",
];

fn main() {
    let Some(dir) = std::env::var_os("CAIRN_BENCH_STORE").map(PathBuf::from) else {
        eprintln!("set CAIRN_BENCH_STORE to a Cairn data directory (see the file's comment)");
        return;
    };
    let runs: usize = std::env::var("CAIRN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let only = std::env::var("CAIRN_BENCH_ONLY").unwrap_or_default();
    let snap = Snapshot::load(&dir).expect("load the store");
    println!(
        "store {}: {} events, {} customers",
        dir.display(),
        snap.events(),
        snap.key_count()
    );
    let names = snap.event_names().to_vec();
    let funnel = Funnel::new(
        &names,
        snap.channels().to_vec(),
        FunnelSpec {
            steps: STEPS
                .iter()
                .map(|s| StepSpec::parse(s).expect("step"))
                .collect(),
            window: 7 * 86_400_000_000,
            mode: FunnelMode::ClickHouse,
            exclude: Vec::new(),
            breakdown: None,
        },
    )
    .expect("funnel");
    let map = ProcessMap::new(names.clone());
    let variants = Variants {
        names,
        top: 10,
        goal: None,
    };
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    if want("scan") {
        time(&snap, "scan", &ScanOnly, runs);
    }
    if want("funnel") {
        time(&snap, "funnel", &funnel, runs);
    }
    if want("map") {
        time(&snap, "map", &map, runs);
    }
    if want("variants") {
        time(&snap, "variants", &variants, runs);
    }
}

/// The baseline: reads every event's name and time (into a checksum) and nothing more.
struct ScanOnly;

impl Analysis for ScanOnly {
    type Partial = u64;
    type Output = u64;

    fn needs(&self) -> cairn_discovery::Needs {
        cairn_discovery::Needs::default()
    }
    fn partial(&self) -> u64 {
        0
    }
    fn add(&self, sum: &mut u64, t: &Timeline<'_>) {
        for (&time, &name) in t.times.iter().zip(t.names) {
            *sum = sum.wrapping_add(time as u64 ^ u64::from(name));
        }
    }
    fn merge(&self, into: &mut u64, other: u64) {
        *into = into.wrapping_add(other);
    }
    fn finish(&self, sum: u64) -> u64 {
        sum
    }
}

/// Runs `analysis` over the whole store on 1 and 2 threads; prints the median times.
fn time<A: Analysis>(snap: &Snapshot, label: &str, analysis: &A, runs: usize)
where
    A::Output: serde::Serialize,
{
    let needs = analysis.needs();
    let columns = Columns {
        times: true,
        names: true,
        channels: needs.channels,
        values: needs.values,
        properties: needs.properties,
    };
    let size = ScanSize {
        customers: snap.key_count(),
        events: snap.events() as usize,
    };
    let once = |threads: usize| {
        let partials = snap
            .scan_parallel(
                columns,
                threads,
                || analysis.partial_for(size),
                |p, c| {
                    let t = Timeline {
                        customer: c.key,
                        times: c.times,
                        names: c.names,
                        channels: c.channels,
                        values: c.values,
                        properties: c.properties,
                    };
                    analysis.add(p, &t);
                },
            )
            .expect("scan");
        serde_json::to_string(&finish_partials(analysis, partials)).expect("json")
    };
    let first = once(1);
    for threads in [1, 2] {
        let mut secs: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                let out = once(threads);
                let s = started.elapsed().as_secs_f64();
                assert_eq!(out, first, "{label}: results differ between runs");
                s
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        println!(
            "{label:>8}, {threads} thread(s): median {:.1} ms over {runs} runs",
            secs[runs / 2] * 1e3
        );
    }
}
