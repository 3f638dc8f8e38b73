//! Bad input: each error names the file, the line and the field, and nothing imported before
//! is lost.

use std::path::Path;

use crate::{fails, ok, shared_data, stats};

/// A store holding the running example, to check that failed imports leave it untouched.
fn store_with_history() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "import",
            shared_data("running-example.xes").to_str().unwrap(),
        ],
    );
    dir
}

fn check_rejected(name: &str, content: &[u8], expect: &[&str]) {
    let dir = store_with_history();
    let before = stats(dir.path());
    let file = dir.path().join(name);
    std::fs::write(&file, content).unwrap();
    let err = fails(dir.path(), &["import", file.to_str().unwrap()]);
    assert!(
        err.contains(name),
        "error should name the file {name}: {err}"
    );
    for part in expect {
        assert!(
            err.contains(part),
            "error for {name} should contain {part:?}: {err}"
        );
    }
    let after = stats(dir.path());
    assert_eq!(
        before["events"], after["events"],
        "{name}: earlier data changed"
    );
    assert_eq!(after["events"], 42);
}

#[test]
fn malformed_xes() {
    check_rejected(
        "broken.xes",
        b"<log>\n<trace>\n<string key=\"concept:name\" value=\"1\"/>\n<event>\n<string key=\"concept:name\" value=\"a\"/>\n</trace>\n</log>\n",
        &[":6"],
    );
}

#[test]
fn csv_with_a_bad_timestamp_on_line_4() {
    check_rejected(
        "bad-time.csv",
        b"customer_id,event,timestamp\nc1,view,2024-01-01T10:00:00Z\nc1,buy,2024-01-01T11:00:00Z\nc2,view,yesterday\n",
        &["bad-time.csv:4", "field \"timestamp\"", "yesterday"],
    );
}

#[test]
fn json_with_wrong_types() {
    check_rejected(
        "wrong-types.jsonl",
        b"{\"type\":\"track\",\"event\":\"a\",\"userId\":\"u\",\"timestamp\":\"2024-01-01T00:00:00Z\"}\n\n{\"type\":\"track\",\"event\":\"a\",\"userId\":true,\"timestamp\":\"2024-01-01T00:00:00Z\"}\n",
        &["wrong-types.jsonl:3", "field \"userId\"", "string or a number"],
    );
}

#[test]
fn empty_file() {
    check_rejected("empty.csv", b"", &["empty"]);
}

#[test]
fn binary_files() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .chain([0, 0, 0])
        .collect();
    for name in ["junk.csv", "junk.jsonl", "junk.xes", "junk.parquet"] {
        check_rejected(name, &junk, &[]);
    }
}

#[test]
fn max_errors_keeps_going_and_quarantines() {
    let dir = store_with_history();
    let file = dir.path().join("some-bad.csv");
    std::fs::write(
        &file,
        "customer_id,event,timestamp\nc1,view,2024-01-01T10:00:00Z\nc1,buy,not-a-time\nc2,view,2024-01-02T10:00:00Z\n,view,2024-01-02T10:00:00Z\n",
    )
    .unwrap();
    let q = dir.path().join("rejected.jsonl");
    let out = ok(
        dir.path(),
        &[
            "import",
            file.to_str().unwrap(),
            "--max-errors",
            "5",
            "--quarantine",
            q.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["files"][0]["imported"], 2);
    assert_eq!(report["files"][0]["rejected"], 2);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&q)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(lines[0]["field"], "timestamp");
    assert!(lines[0]["raw"].as_str().unwrap().contains("not-a-time"));
    assert_eq!(lines[1]["line"], 5);
    assert_eq!(stats(dir.path())["events"], 44);
}

#[test]
fn unknown_format_and_missing_file_import_nothing() {
    let dir = store_with_history();
    let good = shared_data("receipt.csv");
    // The second name is wrong: nothing is imported, not even the first file.
    let err = fails(dir.path(), &["import", good.to_str().unwrap(), "nope.txt"]);
    assert!(
        err.contains("nope.txt") && err.contains("unknown file format"),
        "{err}"
    );
    let err = fails(dir.path(), &["import", "missing.csv"]);
    assert!(err.contains("missing.csv"), "{err}");
    assert_eq!(stats(dir.path())["events"], 42);
}

#[test]
fn reading_an_empty_data_dir_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&dir.path().join("nothing-here"), &["stats"]);
    assert!(
        err.contains("no cairn store") && err.contains("cairn demo"),
        "{err}"
    );
    assert!(
        !Path::new(&dir.path().join("nothing-here")).exists(),
        "a read must not create a store"
    );
}
