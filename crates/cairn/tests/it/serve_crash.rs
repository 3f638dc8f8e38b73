//! Crash test of `cairn serve`: clients send continuously while the server is SIGKILLed at
//! random moments; after each restart every message that got a 200 is stored exactly once.
//!
//! Clients behave like Segment's SDKs: a batch that got no answer (connection refused, reset)
//! is sent again, with the same message ids, once the server is back. The server flushes its
//! log into segments every 300 events, so kills hit background flushes and compactions too.
//! CI runs 20 kills;
//! `cargo test -p cairn -- --ignored serve_crash_long` runs 300.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{Server, basic, create_key, request};
use crate::{Lcg, seed};

const CLIENTS: usize = 4;
const BATCH: u64 = 25;

/// One client's progress, carried across server restarts.
#[derive(Clone, Default)]
struct Client {
    /// Messages `0..acked` got a 200.
    acked: u64,
}

fn message(client: usize, n: u64) -> Value {
    json!({
        "type": "track",
        "userId": format!("crash-{client}"),
        "event": "tick",
        "messageId": format!("crash-{client}-{n}"),
        "timestamp": "2024-01-01T00:00:00Z",
        "properties": {"n": n},
    })
}

/// Sends batches (client 0 sends single `/v1/track` calls instead) until the server stops
/// answering or `stop` is set.
fn send_until_down(addr: &str, key: &str, id: usize, mut c: Client, stop: &AtomicBool) -> Client {
    let auth = basic(key);
    let headers = [("Authorization", auth.as_str())];
    while !stop.load(Ordering::Relaxed) {
        let (path, body, count) = if id == 0 {
            ("/v1/track", message(id, c.acked).to_string(), 1)
        } else {
            let batch: Vec<Value> = (c.acked..c.acked + BATCH).map(|n| message(id, n)).collect();
            ("/v1/batch", json!({ "batch": batch }).to_string(), BATCH)
        };
        match request(addr, "POST", path, &headers, body.as_bytes()) {
            Ok(a) if a.status == 200 => c.acked += count,
            // Overloaded or shutting down: not stored, send again.
            Ok(a) if a.status == 503 => std::thread::sleep(Duration::from_millis(5)),
            Ok(a) => panic!(
                "unexpected answer {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ),
            // The server is gone (killed): this batch is unacknowledged; resend after restart.
            Err(_) => break,
        }
    }
    c
}

/// Every stored message number of one client, through the CLI.
fn stored(dir: &Path, client: usize) -> Vec<u64> {
    let out = crate::run(
        dir,
        &["timeline", &format!("crash-{client}"), "--format", "json"],
    );
    if !out.status.success() {
        return Vec::new(); // nothing stored for it yet
    }
    let tl: Value = serde_json::from_slice(&out.stdout).unwrap();
    tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["properties"]["n"].as_u64().unwrap())
        .collect()
}

fn serve_kills(kills: usize) {
    let mut rng = Lcg(seed());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let key = create_key(&dir, "crash", None);
    let mut clients = vec![Client::default(); CLIENTS];
    for kill in 0..kills {
        // A small memtable, so that kills also land while the background flusher writes a
        // segment, commits it, cuts the log or compacts.
        let mut server = Server::start(&dir, &["--flush-events", "300"]);
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = clients
            .iter()
            .cloned()
            .enumerate()
            .map(|(id, c)| {
                let (addr, key, stop) = (server.addr.clone(), key.clone(), stop.clone());
                std::thread::spawn(move || send_until_down(&addr, &key, id, c, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.next(250)));
        server.kill(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        clients = threads.into_iter().map(|t| t.join().unwrap()).collect();

        let mut failures = Vec::new();
        for (id, c) in clients.iter().enumerate() {
            let numbers = stored(&dir, id);
            let unique: HashSet<u64> = numbers.iter().copied().collect();
            if unique.len() != numbers.len() {
                failures.push(format!("client {id} has a message stored twice"));
            }
            let missing: Vec<u64> = (0..c.acked).filter(|n| !unique.contains(n)).collect();
            if !missing.is_empty() {
                failures.push(format!(
                    "client {id} (acknowledged 0..{}): acknowledged messages lost: {missing:?}",
                    c.acked
                ));
            }
        }
        if !failures.is_empty() {
            // Keep the store for a post-mortem.
            let kept = work.keep();
            panic!(
                "kill {kill}: {}\nthe store is kept in {}",
                failures.join("\n"),
                kept.display()
            );
        }
    }
    let acked: u64 = clients.iter().map(|c| c.acked).sum();
    eprintln!("{acked} messages acknowledged across {kills} SIGKILLs");
    assert!(
        clients.iter().all(|c| c.acked > 0),
        "a client never got an acknowledgement: the test checked nothing"
    );
}

#[test]
fn serve_crash_loses_and_doubles_nothing_acknowledged() {
    serve_kills(20);
}

#[test]
#[ignore = "long: 300 kills"]
fn serve_crash_long() {
    serve_kills(300);
}
