//! Read-speed checks, ignored by default. Run in release:
//! `cargo test -p cairn-import --release -- --ignored --nocapture bench`
//! With `CAIRN_BENCH_CSV=/path/file.csv` the CSV check reads that file instead of a synthetic one.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_import::{ImportOptions, open};

use crate::data;

/// Reads a whole file, returning (records, errors, time).
fn time_read(path: &Path) -> (usize, usize, Duration) {
    let start = Instant::now();
    let mut source = open(path, &ImportOptions::default()).unwrap();
    let (mut records, mut errors) = (0, 0);
    while let Some(chunk) = source.next_chunk(8192).unwrap() {
        records += chunk.len();
        errors += chunk.iter().filter(|r| r.is_err()).count();
    }
    (records, errors, start.elapsed())
}

/// Best of `runs` reads (or of `CAIRN_BENCH_RUNS`), as the machine may be shared.
fn best_of(path: &Path, runs: usize) -> (usize, usize, Duration) {
    let runs = std::env::var("CAIRN_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(runs);
    (0..runs)
        .map(|_| time_read(path))
        .min_by_key(|r| r.2)
        .unwrap_or_default()
}

#[test]
#[ignore]
fn bench_xes() {
    let only = std::env::var("CAIRN_BENCH_XES").ok();
    for name in ["helpdesk.xes.gz", "02_teleclaims.xes.gz"] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (n, errors, t) = best_of(&data(name), 15);
        println!(
            "{name}: {n} events ({errors} errors) in {:.1} ms = {:.2} M events/s",
            t.as_secs_f64() * 1e3,
            n as f64 / t.as_secs_f64() / 1e6
        );
    }
}

#[test]
#[ignore]
fn bench_csv() {
    let dir = tempfile::tempdir().unwrap();
    let path = match std::env::var_os("CAIRN_BENCH_CSV") {
        Some(p) => p.into(),
        None => {
            let path = dir.path().join("synthetic.csv");
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            writeln!(w, "customer_id,event,timestamp,channel,value").unwrap();
            let events = [
                "page_view",
                "add_to_cart",
                "checkout",
                "purchase",
                "email_open",
            ];
            for i in 0..1_000_000u64 {
                let secs = 1_700_000_000 + i * 7;
                writeln!(
                    w,
                    "cust-{},{},{},web,{}",
                    i % 50_000,
                    events[(i % 5) as usize],
                    jiff::Timestamp::from_second(secs as i64).unwrap(),
                    i % 100
                )
                .unwrap();
            }
            w.flush().unwrap();
            path
        }
    };
    let size = std::fs::metadata(&path).unwrap().len();
    let (n, errors, t) = best_of(&path, 3);
    println!(
        "{}: {n} rows ({errors} errors, {:.0} MB) in {:.0} ms = {:.2} M rows/s",
        path.display(),
        size as f64 / 1e6,
        t.as_secs_f64() * 1e3,
        n as f64 / t.as_secs_f64() / 1e6
    );
}

#[test]
#[ignore]
fn bench_xes_parts() {
    use std::io::Read as _;
    let path = data("helpdesk.xes.gz");
    let raw = std::fs::read(&path).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        let t_gz = t.elapsed();
        let t = Instant::now();
        let mut reader = quick_xml::Reader::from_reader(&out[..]);
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            buf.clear();
            match reader.read_event_into(&mut buf).unwrap() {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_) => n += 1,
                _ => {}
            }
        }
        let t_xml = t.elapsed();
        let (events, _, t_all) = time_read(&path);
        println!(
            "gunzip {:.1} ms, quick-xml alone {:.1} ms ({n} elements), full {:.1} ms ({events} events)",
            t_gz.as_secs_f64() * 1e3,
            t_xml.as_secs_f64() * 1e3,
            t_all.as_secs_f64() * 1e3
        );
    }
}
