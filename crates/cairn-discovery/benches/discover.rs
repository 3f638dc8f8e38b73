//! In-process timings of the discovery analyses on a warm store, without the per-process
//! costs (start, first touch of the files) that `bench/discovery.py` includes: to compare
//! changes to an analysis or to the scan quickly and with less noise.
//!
//!     CAIRN_BENCH_STORE=bench/work/cairn-c1000000-s42 cargo bench -p cairn-discovery --bench discover
//!
//! The store is any Cairn data directory (`bench/discovery.py` makes the 12 M-event one). Each
//! figure is the median of `CAIRN_BENCH_RUNS` runs (default 7) after one warm-up, on one
//! thread and on two; every run's result must equal the first (the work cannot be skipped).
//!
//! With `CAIRN_BENCH_STITCH=1` each figure is taken twice, over stitched profiles (as `cairn`
//! analyses by default) and over raw customer keys (`--no-stitch`), one run of each in turn,
//! with the median of the pairwise ratios: where the stitched scan's extra time goes, without
//! the per-process costs.

use std::path::PathBuf;
use std::time::Instant;

use cairn_discovery::funnel::FunnelSpec;
use cairn_discovery::{
    Analysis, Funnel, FunnelMode, ProcessMap, ScanSize, StepSpec, Timeline, Variants,
    finish_partials,
};
use cairn_identity::cache::Profiles;
use cairn_store::{Columns, Customer, Snapshot};

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
    // `cargo bench` runs this from the package's directory: a relative path is meant from the
    // workspace root, where the command is typed.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = if dir.is_relative() {
        root.join(dir)
    } else {
        dir
    };
    if !dir.join("MANIFEST.json").is_file() {
        eprintln!(
            "CAIRN_BENCH_STORE: {} is not a Cairn data directory",
            dir.display()
        );
        std::process::exit(2);
    }
    let runs: usize = std::env::var("CAIRN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let only = std::env::var("CAIRN_BENCH_ONLY").unwrap_or_default();
    let snap = Snapshot::load(&dir).expect("load the store");
    let profiles = std::env::var_os("CAIRN_BENCH_STITCH").map(|_| {
        let config = cairn_identity::Config::load(&dir).expect("identity rules");
        let splits = cairn_identity::Splits::load(&dir).expect("identity splits");
        let (map, _) =
            cairn_identity::cache::profile_map(&dir, &snap, &config, &splits).expect("profile map");
        map
    });
    let bench = Bench {
        snap: &snap,
        profiles: profiles.as_ref(),
        runs,
    };
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
        bench.time("scan", &ScanOnly);
    }
    if want("funnel") {
        bench.time("funnel", &funnel);
    }
    if want("map") {
        bench.time("map", &map);
    }
    if want("variants") {
        bench.time("variants", &variants);
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

struct Bench<'a> {
    snap: &'a Snapshot,
    /// The profile map, for stitched runs next to the plain ones.
    profiles: Option<&'a Profiles>,
    runs: usize,
}

impl Bench<'_> {
    /// Runs `analysis` over the whole store on 1 and 2 threads; prints the median times.
    fn time<A: Analysis>(&self, label: &str, analysis: &A)
    where
        A::Output: serde::Serialize,
    {
        let runs = self.runs;
        let firsts: Vec<String> = self.modes().map(|m| self.once(analysis, m, 1)).collect();
        for threads in [1, 2] {
            let mut secs = vec![Vec::new(); firsts.len()];
            for _ in 0..runs {
                for (m, first) in self.modes().zip(&firsts) {
                    let started = Instant::now();
                    let out = self.once(analysis, m, threads);
                    secs[usize::from(m)].push(started.elapsed().as_secs_f64());
                    assert_eq!(&out, first, "{label}: results differ between runs");
                }
            }
            let median = |v: &[f64]| {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            print!(
                "{label:>8}, {threads} thread(s): median {:.1} ms over {runs} runs",
                median(&secs[0]) * 1e3
            );
            if let [plain, stitched] = &secs[..] {
                let ratios: Vec<f64> = stitched.iter().zip(plain).map(|(s, p)| s / p).collect();
                print!(
                    "; stitched {:.1} ms, {:.3}x",
                    median(stitched) * 1e3,
                    median(&ratios)
                );
            }
            println!();
        }
    }

    /// The modes to run: plain, then stitched when there is a profile map.
    fn modes(&self) -> impl Iterator<Item = bool> + use<> {
        [false, true]
            .into_iter()
            .take(1 + usize::from(self.profiles.is_some()))
    }

    /// One run of `analysis`, stitched or not, as its JSON output.
    fn once<A: Analysis>(&self, analysis: &A, stitched: bool, threads: usize) -> String
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
            customers: self.snap.key_count(),
            events: self.snap.events() as usize,
        };
        let init = || analysis.partial_for(size);
        let add = |p: &mut A::Partial, c: Customer<'_>| {
            let t = Timeline {
                customer: c.key,
                times: c.times,
                names: c.names,
                channels: c.channels,
                values: c.values,
                properties: c.properties,
            };
            analysis.add(p, &t);
        };
        let partials = match self.profiles.filter(|_| stitched) {
            Some(map) => {
                cairn_identity::scan_profiles_parallel(self.snap, map, columns, threads, init, add)
            }
            None => self.snap.scan_parallel(columns, threads, init, add),
        }
        .expect("scan");
        serde_json::to_string(&finish_partials(analysis, partials)).expect("json")
    }
}
