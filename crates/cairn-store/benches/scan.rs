//! The customer scan benchmark: every customer with its time-ordered events, from warm
//! segments. Run with `cargo bench -p cairn-store --bench scan`.
//!
//! It builds (once, then reuses) a store of ~12 M generated events from 1 M customers under
//! `target/bench-data/scan-store`, compacted into one segment, and times full scans reading
//! the time and event-name columns: single-threaded and on two threads. Each figure is the
//! median of several runs; the work is real: every event's name and time are folded into a
//! checksum so nothing can be optimised away.

use std::path::PathBuf;
use std::time::Instant;

use cairn_generate::{GenerateOptions, generate};
use cairn_store::{Columns, Customer, Options, Store};

fn main() {
    let customers: u64 = std::env::var("CAIRN_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("CAIRN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../target/bench-data/scan-store-{customers}"));
    // A store kept from an older build may hold scan files of an older format: build it again.
    if dir.join("MANIFEST.json").exists() && cairn_store::Snapshot::load(&dir).is_err() {
        eprintln!(
            "{} is unreadable by this build; building it again",
            dir.display()
        );
        std::fs::remove_dir_all(&dir).expect("remove the old bench store");
    }
    if !dir.join("MANIFEST.json").exists() {
        eprintln!(
            "building a store of {customers} generated customers in {} …",
            dir.display()
        );
        let started = Instant::now();
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
        eprintln!("built in {:.1}s", started.elapsed().as_secs_f64());
    }
    let snap = cairn_store::Snapshot::load(&dir).expect("load snapshot");
    let events = snap.events();
    let cols = Columns {
        times: true,
        names: true,
        ..Default::default()
    };
    println!(
        "store: {events} events, {} customers, {} segment(s)",
        snap.key_count(),
        snap.segments().len()
    );

    let single = median(runs, || {
        let mut check = 0u64;
        let mut seen = 0u64;
        snap.scan(cols, |c| {
            seen += c.times.len() as u64;
            for (&t, &n) in c.times.iter().zip(c.names) {
                check = check.wrapping_add(t as u64 ^ n as u64);
            }
        })
        .expect("scan");
        assert_eq!(seen, events);
        check
    });
    let parallel = median(runs, || {
        let parts = snap
            .scan_parallel(
                cols,
                2,
                || (0u64, 0u64),
                |s: &mut (u64, u64), c: Customer<'_>| {
                    s.1 += c.times.len() as u64;
                    for (&t, &n) in c.times.iter().zip(c.names) {
                        s.0 = s.0.wrapping_add(t as u64 ^ n as u64);
                    }
                },
            )
            .expect("scan");
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), events);
        parts.iter().fold(0u64, |a, p| a.wrapping_add(p.0))
    });
    for (label, secs) in [("1 thread", single), ("2 threads", parallel)] {
        println!(
            "scan, {label}: median {:.1} ms over {runs} runs = {:.1} M events/s",
            secs * 1e3,
            events as f64 / secs / 1e6
        );
    }
}

/// Median wall time of `runs` runs, after one warm-up.
fn median(runs: usize, mut f: impl FnMut() -> u64) -> f64 {
    std::hint::black_box(f());
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}
