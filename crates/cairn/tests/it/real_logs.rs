//! The public event logs import with the counts other tools report.

use crate::{ok, shared_data, stats};

fn check(file: &str, customers: u64, events: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_data(file);
    let path = path.to_str().unwrap();
    ok(dir.path(), &["import", path]);
    let s = stats(dir.path());
    assert_eq!(
        (s["customers"].as_u64(), s["events"].as_u64()),
        (Some(customers), Some(events)),
        "{file}"
    );
    // Importing the same file again stores nothing twice.
    let out = ok(dir.path(), &["import", path, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["files"][0]["imported"], 0);
    assert_eq!(report["files"][0]["duplicates"].as_u64(), Some(events));
    assert_eq!(stats(dir.path())["events"].as_u64(), Some(events));
}

#[test]
fn helpdesk() {
    check("helpdesk.xes.gz", 4_580, 21_348);
}

#[test]
fn teleclaims() {
    check("02_teleclaims.xes.gz", 3_512, 46_138);
}

#[test]
fn receipt_csv() {
    check("receipt.csv", 1_434, 8_577);
}

#[test]
fn running_example_timeline_is_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "import",
            shared_data("running-example.xes").to_str().unwrap(),
        ],
    );
    let tl: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["timeline", "3", "--format", "json"])).unwrap();
    let events = tl["events"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "register request",
            "examine casually",
            "check ticket",
            "decide",
            "reinitiate request",
            "examine thoroughly",
            "check ticket",
            "decide",
            "pay compensation"
        ]
    );
    assert!(events.iter().all(|e| {
        e["messageId"]
            .as_str()
            .is_some_and(|m| m.starts_with("xes-"))
    }));
    assert_eq!(events[0]["properties"]["org:resource"], "Pete");
}
