//! `cairn forget` (issue 5, acceptance 3): after it, no file under the data directory holds the
//! customer's identifiers or property values, analyses no longer count them, and a later event
//! for them is dropped, by `ingest` and `import` alike.

use std::path::Path;

use serde_json::Value;

use crate::{fails, ok};

/// Ann: anonymous on the laptop, then identified with an e-mail, buys; one event is still in
/// the log (ingested, not yet flushed) when she is forgotten. Bob: another customer.
const IMPORTED: &str = r#"{"type":"track","anonymousId":"anon-laptop-4711","event":"page_view","messageId":"ann-1","timestamp":"2026-03-01T10:00:00Z","properties":{"search":"ann-private-search"}}
{"type":"identify","userId":"user-ann-9000","anonymousId":"anon-laptop-4711","messageId":"ann-2","timestamp":"2026-03-01T10:05:00Z","traits":{"email":"Ann.Forget@Example.com","phone":"+49 30 1234567"}}
{"type":"track","anonymousId":"anon-bob-0815","event":"page_view","messageId":"bob-1","timestamp":"2026-03-01T11:00:00Z"}
{"type":"track","userId":"user-bob-0815","anonymousId":"anon-bob-0815","event":"purchase","messageId":"bob-2","timestamp":"2026-03-01T11:05:00Z","properties":{"revenue":10}}
"#;
const INGESTED: &str = r#"{"type":"track","userId":"user-ann-9000","event":"purchase","messageId":"ann-3","timestamp":"2026-03-01T10:10:00Z","properties":{"revenue":99,"sku":"ann-sku-secret"}}
"#;
const LATE: &str = r#"{"type":"track","anonymousId":"anon-laptop-4711","event":"page_view","messageId":"ann-4","timestamp":"2026-03-02T10:00:00Z"}
{"type":"track","userId":"user-ann-9000","event":"purchase","messageId":"ann-5","timestamp":"2026-03-02T10:10:00Z"}
{"type":"track","userId":"user-carl-1","event":"page_view","messageId":"carl-1","timestamp":"2026-03-02T10:10:00Z"}
"#;

/// What identifies Ann or describes her: none of it may be left anywhere.
const ANN: [&str; 6] = [
    "anon-laptop-4711",
    "user-ann-9000",
    "Ann.Forget@Example.com",
    "1234567",
    "ann-private-search",
    "ann-sku-secret",
];

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

fn funnel(data: &Path) -> (u64, u64) {
    let f: Value = serde_json::from_str(&ok(
        data,
        &["funnel", "page_view", "purchase", "--format", "json"],
    ))
    .unwrap();
    (
        f["steps"][0]["customers"].as_u64().unwrap(),
        f["steps"][1]["customers"].as_u64().unwrap(),
    )
}

fn ingest(data: &Path, file: &Path) -> String {
    ok(data, &["ingest", file.to_str().unwrap()])
}

#[test]
fn forgotten_customers_leave_every_file_and_every_analysis_and_stay_out() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let write = |name: &str, text: &str| {
        let path = root.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    ok(
        &data,
        &[
            "import",
            write("imported.jsonl", IMPORTED).to_str().unwrap(),
        ],
    );
    ingest(&data, &write("ingested.jsonl", INGESTED));
    // A split of Ann's e-mail would keep it in identity-splits.json; forget removes it too.
    ok(
        &data,
        &["profiles", "split", "email:ann.forget@example.com"],
    );
    ok(
        &data,
        &["profiles", "unsplit", "email:ann.forget@example.com"],
    );
    ok(&data, &["profiles", "split", "phone:+49301234567"]);
    assert_eq!(funnel(&data), (2, 2));
    // The scan below is not vacuous: before forgetting, Ann's data is in plain bytes somewhere
    // (the dictionary, the log, the splits file).
    for needle in [
        "anon-laptop-4711",
        "user-ann-9000",
        "ann-sku-secret",
        "1234567",
    ] {
        assert!(!files_containing(&data, needle).is_empty(), "{needle}");
    }

    // Without --yes nothing happens.
    let plan = ok(&data, &["forget", "email:ann.forget@example.com"]);
    assert!(plan.contains("--yes"), "{plan}");
    assert_eq!(funnel(&data), (2, 2));

    let out: Value = serde_json::from_str(&ok(
        &data,
        &[
            "forget",
            "email:ANN.FORGET@example.com",
            "--yes",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(out["outcome"]["events_removed"], 3, "{out}");
    assert_eq!(out["outcome"]["customers"], 2, "{out}");
    for needle in ANN {
        assert_eq!(
            files_containing(&data, needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert_eq!(funnel(&data), (1, 1));
    assert!(fails(&data, &["profile", "user-ann-9000"]).contains("no profile"));
    let stats: Value = serde_json::from_str(&ok(&data, &["stats", "--format", "json"])).unwrap();
    assert_eq!(stats["events"], 2);

    // Later events for her are dropped, streamed or imported; Carl's are kept.
    ingest(&data, &write("late.jsonl", LATE));
    ok(
        &data,
        &["import", write("late-import.jsonl", LATE).to_str().unwrap()],
    );
    let stats: Value = serde_json::from_str(&ok(&data, &["stats", "--format", "json"])).unwrap();
    assert_eq!(stats["events"], 3, "{stats}");
    for needle in ["anon-laptop-4711", "user-ann-9000"] {
        assert_eq!(
            files_containing(&data, needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }
}
