//! Merge throughput at scale (issue 5, acceptance 4). Ignored in the normal test run; run with
//! `cargo test --release -p cairn-identity --test it merge_throughput -- --ignored --nocapture`.
//!
//! 10 M calls into 2 M profiles: per profile one user id, four anonymous ids each linked by an
//! `identify`, and one `alias` from an older anonymous id: five calls, five merges. Calls
//! arrive interleaved across profiles (a bijective scramble of the profile number), with times
//! not in arrival order. Measured: the builder's intake (`add`) and the resolution (`finish`:
//! sort + union-find), as the median of three runs; event construction is not timed.

use std::time::{Duration, Instant};

use cairn_identity::{Config, GraphBuilder, IdKind, Identifier, Splits};
use cairn_model::{Event, EventKind};

const CALLS_PER_PROFILE: u64 = 5;

/// Profiles to build: 2 M unless `CAIRN_BENCH_PROFILES` says otherwise (smaller for profiling).
fn profiles() -> u64 {
    std::env::var("CAIRN_BENCH_PROFILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

fn call(i: u64, profiles: u64) -> Event {
    // Call `i` is call `i / profiles` of profile `scramble(i % profiles)`.
    let round = i / profiles;
    // A prime multiplier (above any profile count) makes this a bijection for every count;
    // 0x9E3779B9, a multiple of 3, was not one when the count was.
    let p = (i % profiles).wrapping_mul(2_654_435_761) % profiles;
    let user = format!("user-{p}");
    let (kind, anon, previous) = if round < 4 {
        (EventKind::Identify, Some(format!("anon-{p}-{round}")), None)
    } else {
        (EventKind::Alias, None, Some(format!("old-{p}")))
    };
    Event {
        message_id: format!("msg-{i}"),
        kind,
        event: kind.as_str().to_string(),
        user_id: Some(user),
        anonymous_id: anon,
        // Later rounds carry earlier times: arrival order is not time order.
        timestamp: 1_700_000_000_000_000
            + ((CALLS_PER_PROFILE - round) as i64) * 1_000_000
            + p as i64,
        sent_at: None,
        received_at: None,
        channel: "web".into(),
        value: None,
        group_id: None,
        previous_id: previous,
        properties: None,
        traits: None,
        context: None,
    }
}

/// CPU seconds this process has used (user + system). The machine is shared and often
/// oversubscribed, so wall time alone says more about the neighbours than about the code;
/// the benchmark is single-threaded, so CPU time is its work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[test]
#[ignore]
fn merge_throughput() {
    let profiles = profiles();
    let calls = profiles * CALLS_PER_PROFILE;
    let mut runs = Vec::new();
    for run in 0..3 {
        let mut b = GraphBuilder::new(Config::default());
        let mut intake = Duration::ZERO;
        let mut intake_cpu = 0.0;
        let mut chunk = Vec::with_capacity(100_000);
        let mut i = 0;
        while i < calls {
            chunk.clear();
            chunk.extend((i..(i + 100_000).min(calls)).map(|i| call(i, profiles)));
            let (t, c) = (Instant::now(), cpu_seconds());
            for e in &chunk {
                b.add(None, e);
            }
            intake += t.elapsed();
            intake_cpu += cpu_seconds() - c;
            i += chunk.len() as u64;
        }
        let (t, c) = (Instant::now(), cpu_seconds());
        let g = b.finish(&Splits::default());
        let resolve = t.elapsed();
        let resolve_cpu = cpu_seconds() - c;
        let cpu = intake_cpu + resolve_cpu;
        assert_eq!(g.merge_count() as u64, calls);
        assert_eq!(g.profile_count() as u64, profiles);
        assert_eq!(g.conflict_count(), 0);

        // Lookup of a profile by any identifier, with its identifiers and merges.
        let mut lookups = Vec::with_capacity(10_000);
        for k in 0..10_000u64 {
            let p = k.wrapping_mul(7919) % profiles;
            let t = Instant::now();
            let prof = g.lookup(&format!("anon-{p}-2")).expect("known id");
            let ids = g.identifiers(prof);
            let merges = g.merges(prof);
            lookups.push(t.elapsed());
            assert_eq!((ids.len(), merges.len()), (6, 5));
            assert!(ids.contains(&Identifier::new(IdKind::AnonymousId, format!("old-{p}"))));
        }
        lookups.sort();
        let p99 = lookups[lookups.len() * 99 / 100];
        let total = intake + resolve;
        println!(
            "run {run}: {calls} calls, wall: intake {:.2}s + resolve {:.2}s = {:.2} M merges/s; CPU {:.2}s (intake {:.2}s + resolve {:.2}s) = {:.2} M merges/s per core; lookup p99 {:.1} µs, peak RSS {} MiB",
            intake.as_secs_f64(),
            resolve.as_secs_f64(),
            calls as f64 / (intake + resolve).as_secs_f64() / 1e6,
            cpu,
            intake_cpu,
            resolve_cpu,
            calls as f64 / cpu / 1e6,
            p99.as_secs_f64() * 1e6,
            peak_rss_mib()
        );
        runs.push((total, intake, resolve, p99, cpu));
    }
    runs.sort_by_key(|r| r.0);
    let (total, intake, resolve, p99, _) = runs[1];
    let mut cpus: Vec<f64> = runs.iter().map(|r| r.4).collect();
    cpus.sort_by(f64::total_cmp);
    println!(
        "median: wall {:.2} M merges/s (intake {:.2}s + resolve {:.2}s), CPU {:.2} M merges/s per core, lookup p99 {:.1} µs",
        calls as f64 / total.as_secs_f64() / 1e6,
        intake.as_secs_f64(),
        resolve.as_secs_f64(),
        calls as f64 / cpus[1] / 1e6,
        p99.as_secs_f64() * 1e6
    );
}
