//! What stitching costs an analysis: a funnel (Product Viewed → Order Completed, per
//! customer) over the plain scan and over the stitched scan of the same store, plus the time
//! to build the identity graph. Run with `cargo bench -p cairn-identity --bench stitch`.
//!
//! The store holds generated journeys (`cairn-generate`: about 30 % of customers browse
//! anonymously and identify at sign-up, so their events sit under two keys), built once under
//! `target/bench-data/stitch-store-N` and compacted into one segment. Each figure is the median
//! of several runs.

use std::path::PathBuf;
use std::time::Instant;

use cairn_generate::{GenerateOptions, generate};
use cairn_identity::{Config, Splits, scan_profiles};
use cairn_store::{Columns, Customer, Options, Snapshot, Store};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (customers entering, converting) of the funnel.
struct Funnel {
    first: u16,
    then: u16,
    entered: u64,
    converted: u64,
}

impl Funnel {
    fn new(first: u16, then: u16) -> Funnel {
        Funnel {
            first,
            then,
            entered: 0,
            converted: 0,
        }
    }

    fn visit(&mut self, c: Customer<'_>) {
        let Some(i) = c.names.iter().position(|&n| n == self.first) else {
            return;
        };
        self.entered += 1;
        if c.names[i..].contains(&self.then) {
            self.converted += 1;
        }
    }
}

fn main() {
    let customers = env("CAIRN_BENCH_CUSTOMERS", 500_000);
    let runs = env("CAIRN_BENCH_RUNS", 5) as usize;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../target/bench-data/stitch-store-{customers}"));
    if !dir.join("MANIFEST.json").exists() {
        eprintln!(
            "building a store of {customers} generated customers in {} …",
            dir.display()
        );
        let store = Store::open(&dir, Options::default()).expect("open store");
        let mut txn = store.import().expect("start import");
        let mut chunk = Vec::new();
        generate(&GenerateOptions { customers, seed: 7 }, |events| {
            chunk.extend_from_slice(events);
            if chunk.len() >= 2_000_000 {
                txn.add(std::mem::take(&mut chunk)).expect("import chunk");
            }
        });
        txn.add(chunk).expect("import chunk");
        txn.commit().expect("commit");
        store.compact(true).expect("compact");
    }
    let snap = Snapshot::load(&dir).expect("load snapshot");
    let name = |n: &str| {
        snap.event_names()
            .iter()
            .position(|x| x == n)
            .map(|i| i as u16)
            .expect("event name in store")
    };
    let (first, then) = (name("Product Viewed"), name("Order Completed"));
    let cols = Columns {
        names: true,
        ..Columns::default()
    };

    let mut build = Vec::new();
    let mut graph = None;
    for _ in 0..runs.min(3) {
        let t = Instant::now();
        graph = Some(
            cairn_identity::build(&snap, &Config::default(), &Splits::default()).expect("build"),
        );
        build.push(t.elapsed().as_secs_f64());
    }
    let graph = graph.expect("at least one run");
    let map = graph.profile_map();

    // Names only (the kernel's own needs), and names with times, as every discovery
    // analysis reads them: a stitched scan must decode the times of a multi-key profile's
    // keys to merge them, which a plain names-only scan never does.
    let with_times = Columns {
        times: true,
        ..cols
    };
    let (mut plain, mut stitched) = (Vec::new(), Vec::new());
    let (mut plain_t, mut stitched_t) = (Vec::new(), Vec::new());
    let (mut plain_result, mut stitched_result) = ((0, 0), (0, 0));
    for _ in 0..runs {
        for (cols, plain, stitched) in [
            (cols, &mut plain, &mut stitched),
            (with_times, &mut plain_t, &mut stitched_t),
        ] {
            let mut f = Funnel::new(first, then);
            let t = Instant::now();
            snap.scan(cols, |c| f.visit(c)).expect("scan");
            plain.push(t.elapsed().as_secs_f64());
            plain_result = (f.entered, f.converted);

            let mut f = Funnel::new(first, then);
            let t = Instant::now();
            scan_profiles(&snap, map, cols, |c| f.visit(c)).expect("stitched scan");
            stitched.push(t.elapsed().as_secs_f64());
            stitched_result = (f.entered, f.converted);
        }
    }
    let (pt, st) = (median(plain_t), median(stitched_t));
    let (p, s) = (median(plain), median(stitched));
    println!(
        "{} events, {} customer keys, {} profiles with several keys",
        snap.events(),
        snap.key_count(),
        map.multi_key_profiles()
    );
    println!(
        "identity graph build (one pass over all events): {:.2}s median; {} identifiers, {} merges, {} conflicts",
        median(build),
        graph.identifier_count(),
        graph.merge_count(),
        graph.conflict_count()
    );
    println!(
        "funnel over plain scan:    {:.3}s  entered {} converted {}",
        p, plain_result.0, plain_result.1
    );
    println!(
        "funnel over stitched scan: {:.3}s  entered {} converted {}",
        s, stitched_result.0, stitched_result.1
    );
    println!("stitched / plain: {:.2}x", s / p);
    println!(
        "with times (what analyses read): plain {pt:.3}s, stitched {st:.3}s, stitched / plain: {:.2}x",
        st / pt
    );
}
