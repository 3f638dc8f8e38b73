//! Crash tests: a child process importing or ingesting is SIGKILLed at random moments; after
//! each kill the store must open cleanly and hold every acknowledged event exactly once.
//!
//! CI runs 50 kills of each kind; `cargo test -p cairn -- --ignored crash` runs 1,000.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::{Lcg, cairn, ok, seed, stats};

const FILES: usize = 12;
const EVENTS_PER_FILE: usize = 3_000;

/// A CSV whose events are all named `f{i}-...`, so per-file counts show in the stats.
fn write_csv(path: &Path, file: usize) {
    let mut out = String::from("message_id,customer_id,event,timestamp,channel\n");
    for k in 0..EVENTS_PER_FILE {
        out.push_str(&format!(
            "f{file}-m{k},c{},f{file}-e{},2024-01-01T00:{:02}:{:02}Z,web\n",
            k % 97,
            k % 5,
            (k / 60) % 60,
            k % 60
        ));
    }
    std::fs::write(path, out).unwrap();
}

fn per_file_counts(dir: &Path) -> Vec<u64> {
    // The first import may be killed before it created the store (its first manifest):
    // then nothing is stored yet.
    if !dir.join(cairn_store::MANIFEST_FILE).exists() {
        return vec![0; FILES];
    }
    let s = stats(dir);
    let names = s["event_names"].as_object().unwrap();
    (0..FILES)
        .map(|f| {
            names
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("f{f}-")))
                .map(|(_, c)| c.as_u64().unwrap())
                .sum()
        })
        .collect()
}

fn import_kills(target_kills: usize) {
    let mut rng = Lcg(seed());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let files: Vec<_> = (0..FILES)
        .map(|f| {
            let p = work.path().join(format!("f{f}.csv"));
            write_csv(&p, f);
            p
        })
        .collect();
    // Kill at a uniformly random moment of an import's lifetime (measured here, since machines
    // differ), with some margin so that some imports also finish and get acknowledged.
    let probe = work.path().join("probe");
    let started = std::time::Instant::now();
    ok(&probe, &["import", files[0].to_str().unwrap()]);
    let span_ms = (started.elapsed().as_millis() as u64 * 15 / 10).max(5);
    let mut acknowledged = [false; FILES];
    let mut kills = 0;
    let mut i = 0;
    while kills < target_kills {
        i += 1;
        assert!(
            i < target_kills * 5,
            "only {kills} of {i} imports could be killed mid-way"
        );
        let f = rng.next(FILES as u64) as usize;
        let mut child = cairn()
            .arg("--data-dir")
            .arg(&dir)
            .arg("import")
            .arg(&files[f])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every tenth import runs to the end, so that acknowledged imports exist to be checked
        // after the kills that follow, however much slower than the probe a busy machine makes
        // the imports into a growing store.
        if i % 10 == 0 {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "iteration {i}: an import left alone failed"
            );
            acknowledged[f] = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(rng.next(span_ms)));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            // The import finished and said so before the kill: it is acknowledged.
            acknowledged[f] = true;
        } else {
            kills += 1;
        }
        let counts = per_file_counts(&dir);
        for (file, &count) in counts.iter().enumerate() {
            assert!(
                count == 0 || count == EVENTS_PER_FILE as u64,
                "iteration {i}: file {file} is partly imported ({count} events): imports must be atomic"
            );
            if acknowledged[file] {
                assert_eq!(
                    count, EVENTS_PER_FILE as u64,
                    "iteration {i}: acknowledged file {file} lost or doubled"
                );
            }
        }
    }
    // The writer opens cleanly too, and what is there is each file once.
    ok(&dir, &["compact"]);
    let total: u64 = per_file_counts(&dir).iter().sum();
    assert_eq!(stats(&dir)["events"].as_u64(), Some(total));
    eprintln!("{kills} kills during import in {i} runs");
    assert!(
        acknowledged.iter().any(|&a| a),
        "no import ever finished: the test checked nothing acknowledged"
    );
}

/// Sends numbered messages to `cairn ingest` until killed; returns how many were acknowledged
/// (messages are sent in order, so "ack N" means the first N are durable).
fn ingest_until_killed(dir: &Path, first: u64, rng: &mut Lcg) -> u64 {
    let mut child = cairn()
        .arg("--data-dir")
        .arg(dir)
        .args(["ingest", "--batch", "50"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        for n in first.. {
            let line = format!(
                "{{\"type\":\"track\",\"event\":\"tick\",\"userId\":\"u{}\",\"messageId\":\"m{n}\",\"timestamp\":\"2024-01-01T00:00:00Z\",\"properties\":{{\"n\":{n}}}}}\n",
                n % 7
            );
            if stdin.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    let reader = std::thread::spawn(move || {
        let mut acked = 0;
        for line in BufReader::new(stdout).lines() {
            match line
                .ok()
                .and_then(|l| l.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()))
            {
                Some(n) => acked = n,
                None => break,
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(20 + rng.next(150)));
    let _ = child.kill();
    let _ = child.wait();
    let acked = reader.join().unwrap();
    let _ = writer.join();
    first + acked
}

fn stored_message_numbers(dir: &Path) -> Vec<u64> {
    let mut all = Vec::new();
    for u in 0..7 {
        let out = crate::run(dir, &["timeline", &format!("u{u}"), "--format", "json"]);
        if !out.status.success() {
            continue; // that customer has nothing yet
        }
        let tl: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for e in tl["events"].as_array().unwrap() {
            all.push(
                e["messageId"].as_str().unwrap()[1..]
                    .parse::<u64>()
                    .unwrap(),
            );
        }
    }
    all.sort_unstable();
    all
}

fn ingest_kills(iterations: usize) {
    let mut rng = Lcg(seed());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let mut acknowledged = 0u64;
    for i in 0..iterations {
        // Resend from the first unacknowledged message, as a client retrying would.
        acknowledged = ingest_until_killed(&dir, acknowledged, &mut rng);
        let stored = stored_message_numbers(&dir);
        let mut unique = stored.clone();
        unique.dedup();
        assert_eq!(
            unique.len(),
            stored.len(),
            "iteration {i}: a message is stored twice"
        );
        assert!(
            (0..acknowledged).all(|n| stored.binary_search(&n).is_ok()),
            "iteration {i}: an acknowledged message is missing (acked {acknowledged}, stored {})",
            stored.len()
        );
    }
    ok(&dir, &["compact"]);
    assert!(acknowledged > 0, "nothing was ever acknowledged");
    eprintln!("{acknowledged} messages acknowledged over {iterations} kills");
}

#[test]
fn crash_during_import_loses_and_doubles_nothing() {
    import_kills(50);
}

#[test]
fn crash_during_ingest_loses_and_doubles_nothing() {
    ingest_kills(50);
}

#[test]
#[ignore = "long: 1,000 kills"]
fn crash_long_import() {
    import_kills(1_000);
}

#[test]
#[ignore = "long: 1,000 kills"]
fn crash_long_ingest() {
    ingest_kills(1_000);
}
