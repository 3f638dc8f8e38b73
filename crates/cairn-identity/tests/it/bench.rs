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

const PROFILES: u64 = 2_000_000;
const CALLS_PER_PROFILE: u64 = 5;

fn call(i: u64) -> Event {
    // Call `i` is call `i / PROFILES` of profile `scramble(i % PROFILES)`.
    let round = i / PROFILES;
    let p = (i % PROFILES).wrapping_mul(0x9E37_79B9) % PROFILES;
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
    let calls = PROFILES * CALLS_PER_PROFILE;
    let mut runs = Vec::new();
    for run in 0..3 {
        let mut b = GraphBuilder::new(Config::default());
        let mut intake = Duration::ZERO;
        let mut chunk = Vec::with_capacity(100_000);
        let mut i = 0;
        while i < calls {
            chunk.clear();
            chunk.extend((i..(i + 100_000).min(calls)).map(call));
            let t = Instant::now();
            for e in &chunk {
                b.add(None, e);
            }
            intake += t.elapsed();
            i += chunk.len() as u64;
        }
        let t = Instant::now();
        let g = b.finish(&Splits::default());
        let resolve = t.elapsed();
        assert_eq!(g.merge_count() as u64, calls);
        assert_eq!(g.profile_count() as u64, PROFILES);
        assert_eq!(g.conflict_count(), 0);

        // Lookup of a profile by any identifier, with its identifiers and merges.
        let mut lookups = Vec::with_capacity(10_000);
        for k in 0..10_000u64 {
            let p = k.wrapping_mul(7919) % PROFILES;
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
            "run {run}: {calls} calls, intake {:.2}s, resolve {:.2}s, {:.2} M merges/s, lookup p99 {:.1} µs, peak RSS {} MiB",
            intake.as_secs_f64(),
            resolve.as_secs_f64(),
            calls as f64 / total.as_secs_f64() / 1e6,
            p99.as_secs_f64() * 1e6,
            peak_rss_mib()
        );
        runs.push((total, intake, resolve, p99));
    }
    runs.sort();
    let (total, intake, resolve, p99) = runs[1];
    println!(
        "median: {:.2} M merges/s (intake {:.2}s + resolve {:.2}s), lookup p99 {:.1} µs",
        calls as f64 / total.as_secs_f64() / 1e6,
        intake.as_secs_f64(),
        resolve.as_secs_f64(),
        p99.as_secs_f64() * 1e6
    );
}
