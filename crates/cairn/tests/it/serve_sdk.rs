//! The official Segment SDKs against `cairn serve`: `segment-analytics-python` (PyPI) and
//! `@segment/analytics-node` (npm), installed by `tests/sdk/setup.sh` into a gitignored cache,
//! each pointed at the server through its host option. Each sends identify, track, page,
//! screen, group and alias calls in several batches and flushes; every message it sent must
//! then be stored exactly once, with its fields and its (skew-corrected) timestamp.
//!
//! Set `CAIRN_SKIP_SDK_TESTS=1` to skip them on a machine without Python 3, Node.js and npm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::serve::{Server, cli_timeline, create_key, parse};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

fn skip() -> bool {
    let skip = std::env::var_os("CAIRN_SKIP_SDK_TESTS").is_some_and(|v| v == "1");
    if skip {
        eprintln!("CAIRN_SKIP_SDK_TESTS=1: the real-SDK test is skipped");
    }
    skip
}

fn setup() {
    let out = Command::new("bash")
        .arg(sdk_dir().join("setup.sh"))
        .output()
        .expect("cannot run tests/sdk/setup.sh");
    assert!(
        out.status.success(),
        "tests/sdk/setup.sh failed (it needs python3 with venv, node and npm, and PyPI/npm access):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs an SDK driver; returns the messages it sent, one JSON object per line of its stdout.
fn drive(program: &Path, script: &str, server: &Server, key: &str, run: &str) -> Vec<Value> {
    let out = Command::new(program)
        .arg(sdk_dir().join(script))
        .args([&server.url(), key, run])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks that every message an SDK sent is stored exactly once, as sent.
fn check_stored(dir: &Path, sent: &[Value], prefix: &str) {
    assert_eq!(sent.len(), 13, "the driver reports what it sent");
    let user = format!("{prefix}-user-1");
    let anon = format!("{prefix}-anon-1");
    let mut stored: Vec<Value> = cli_timeline(dir, &user);
    stored.extend(cli_timeline(dir, &anon));
    let mut by_id: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in &stored {
        by_id
            .entry(e["messageId"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    assert_eq!(stored.len(), sent.len(), "stored: {stored:#?}");
    for m in sent {
        let id = m["messageId"].as_str().unwrap();
        let copies = by_id.get(id).map(Vec::len).unwrap_or(0);
        assert_eq!(copies, 1, "message {id} stored {copies} times: {m}");
        let e = by_id[id][0];
        assert_eq!(e["type"], m["type"], "{id}");
        for field in ["userId", "anonymousId", "groupId", "previousId"] {
            if let Some(v) = m.get(field).filter(|v| !v.is_null()) {
                assert_eq!(&e[field], v, "{id}: {field}");
            }
        }
        match m["type"].as_str().unwrap() {
            "track" => {
                assert_eq!(e["event"], m["event"], "{id}");
                assert_eq!(e["properties"], m["properties"], "{id}");
            }
            "page" | "screen" => {
                assert_eq!(e["event"], m["name"], "{id}");
                // The SDKs put the category inside properties (python) or at the top (node).
                assert_eq!(e["properties"]["path"], m["properties"]["path"], "{id}");
                assert_eq!(e["properties"]["tab"], m["properties"]["tab"], "{id}");
            }
            "identify" | "group" => assert_eq!(e["traits"], m["traits"], "{id}"),
            _ => {}
        }
        // The library's context is kept.
        assert!(e["context"]["library"]["name"].is_string(), "{id}: {e}");
        // Timestamps: the SDK's own time, corrected for clock skew by its sentAt (same machine,
        // so within a few seconds), and receivedAt stamped by the server.
        let sent_ts = parse(&m["timestamp"]);
        let stored_ts = parse(&e["timestamp"]);
        assert!(
            (stored_ts - sent_ts).abs() < 5_000_000,
            "{id}: timestamp {} stored as {}",
            m["timestamp"],
            e["timestamp"]
        );
        assert!(
            e["receivedAt"].is_string() && e["sentAt"].is_string(),
            "{id}: {e}"
        );
        assert!(
            parse(&e["receivedAt"]) >= parse(&e["sentAt"]) - 5_000_000,
            "{id}: {e}"
        );
    }
}

#[test]
fn the_official_segment_sdks_deliver_every_message_exactly_once() {
    if skip() {
        return;
    }
    setup();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let key = create_key(&dir, "sdk-tests", None);
    let server = Server::start(&dir, &[]);
    let cache = sdk_dir().join(".cache");

    let python = cache.join("venv/bin/python");
    let sent = drive(&python, "python_client.py", &server, &key, "1");
    check_stored(&dir, &sent, "py");

    let sent = drive(Path::new("node"), "node_client.mjs", &server, &key, "1");
    check_stored(&dir, &sent, "node");
    // The node SDK's ids are not UUIDs; the server takes them as they are.
    assert!(
        sent[0]["messageId"]
            .as_str()
            .unwrap()
            .starts_with("node-next-")
    );

    // Nothing else was stored: 13 messages from each SDK.
    let stats: Value =
        serde_json::from_str(&crate::ok(&dir, &["stats", "--format", "json"])).unwrap();
    assert_eq!(stats["events"], 26);
}
