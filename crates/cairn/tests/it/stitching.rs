//! Discovery over stitched profiles (issue 5): events an anonymous id sent before login belong
//! to the customer in every analysis, whatever order the identify call arrived in.
//!
//! Anonymous `A` views a page, `identify` links `A` to user `U`, `U` buys. Another anonymous
//! visitor `O` only views a page. The same messages are imported in every arrival order (the
//! identify first, in the middle, last, or in a second file imported later), with the
//! identify's own time before, between or after the two events.

use std::path::Path;

use serde_json::Value;

use crate::ok;

const PAGE_VIEW: &str = r#"{"type":"track","anonymousId":"A","event":"page_view","messageId":"p1","timestamp":"2026-03-01T10:00:00Z"}"#;
const PURCHASE: &str = r#"{"type":"track","userId":"U","event":"purchase","messageId":"b1","timestamp":"2026-03-01T10:10:00Z","properties":{"revenue":20}}"#;
const OTHER: &str = r#"{"type":"track","anonymousId":"O","event":"page_view","messageId":"o1","timestamp":"2026-03-01T11:00:00Z"}"#;

/// The identify call linking A to U, at `time`.
fn identify(time: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"U","anonymousId":"A","messageId":"i1","timestamp":"{time}","traits":{{"plan":"free"}}}}"#
    )
}

/// Imports `files` (each a list of JSONL lines) one after another into a fresh store.
fn store(root: &Path, name: &str, files: &[Vec<&str>]) -> std::path::PathBuf {
    let data = root.join(name);
    for (i, lines) in files.iter().enumerate() {
        let file = root.join(format!("{name}-{i}.jsonl"));
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        ok(&data, &["import", file.to_str().unwrap()]);
    }
    data
}

fn json(data: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&ok(data, &all)).unwrap()
}

/// (customers, entered, converted) of `page_view → purchase`.
fn funnel(data: &Path, extra: &[&str]) -> (u64, u64, u64) {
    let mut args = vec!["funnel", "page_view", "purchase"];
    args.extend(extra);
    let f = json(data, &args);
    (
        f["customers"].as_u64().unwrap(),
        f["steps"][0]["customers"].as_u64().unwrap(),
        f["steps"][1]["customers"].as_u64().unwrap(),
    )
}

/// (count, customers) of the map edge `from → to`, zeros when absent.
fn edge(map: &Value, from: &str, to: &str) -> (u64, u64) {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == from && e["to"] == to)
        .map_or((0, 0), |e| {
            (
                e["count"].as_u64().unwrap(),
                e["customers"].as_u64().unwrap(),
            )
        })
}

/// Variants as (events joined by ` > `, count), by name.
fn variants(data: &Path, extra: &[&str]) -> Vec<(String, u64)> {
    let mut args = vec!["variants"];
    args.extend(extra);
    let v = json(data, &args);
    let mut out: Vec<(String, u64)> = v["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let events: Vec<&str> = v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
                .collect();
            (events.join(" > "), v["count"].as_u64().unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Every arrival order of the messages, as files imported one after another.
fn orders(identify: &str) -> Vec<(&'static str, Vec<Vec<&str>>)> {
    vec![
        ("first", vec![vec![identify, PAGE_VIEW, PURCHASE, OTHER]]),
        ("middle", vec![vec![PAGE_VIEW, identify, PURCHASE, OTHER]]),
        ("last", vec![vec![PAGE_VIEW, PURCHASE, OTHER, identify]]),
        (
            "later-file",
            vec![vec![PAGE_VIEW, PURCHASE, OTHER], vec![identify]],
        ),
        (
            "earlier-file",
            vec![vec![identify], vec![PAGE_VIEW, PURCHASE, OTHER]],
        ),
    ]
}

#[test]
fn funnel_map_and_variants_see_the_profile_whatever_the_identify_order() {
    let root = tempfile::tempdir().unwrap();
    // The identify's own time: before the page view, between the two events, after the purchase.
    for (when, time, journey) in [
        (
            "before",
            "2026-03-01T09:59:00Z",
            "identify > page_view > purchase",
        ),
        (
            "between",
            "2026-03-01T10:05:00Z",
            "page_view > identify > purchase",
        ),
        (
            "after",
            "2026-03-01T10:20:00Z",
            "page_view > purchase > identify",
        ),
    ] {
        let id = identify(time);
        for (order, files) in orders(&id) {
            let case = format!("identify {when}, arriving {order}");
            let data = store(root.path(), &format!("{when}-{order}"), &files);

            // Two profiles (A+U, O); both viewed a page, one bought.
            assert_eq!(funnel(&data, &[]), (2, 2, 1), "{case}");

            let map = json(&data, &["map"]);
            assert_eq!(map["customers"], 2, "{case}");
            let steps: Vec<&str> = journey.split(" > ").collect();
            for pair in steps.windows(2) {
                assert_eq!(edge(&map, pair[0], pair[1]), (1, 1), "{case}: {pair:?}");
            }
            // The anonymous page view leads to the purchase directly unless the identify is
            // between them.
            let direct = if when == "between" { (0, 0) } else { (1, 1) };
            assert_eq!(edge(&map, "page_view", "purchase"), direct, "{case}");

            let mut expected = vec![(journey.to_string(), 1), ("page_view".to_string(), 1)];
            expected.sort();
            assert_eq!(variants(&data, &[]), expected, "{case}");

            // Raw ids: A's page view and U's purchase are different customers.
            assert_eq!(funnel(&data, &["--no-stitch"]), (3, 2, 0), "{case}");
            let raw = json(&data, &["map", "--no-stitch"]);
            assert_eq!(raw["customers"], 3, "{case}");
            assert_eq!(edge(&raw, "page_view", "purchase"), (0, 0), "{case}");
        }
    }
}

#[test]
fn every_discovery_command_counts_profiles_and_honours_splits() {
    let root = tempfile::tempdir().unwrap();
    let id = identify("2026-03-01T10:05:00Z");
    let data = store(root.path(), "s", &[vec![PAGE_VIEW, &id, PURCHASE, OTHER]]);

    let customers = |args: &[&str]| -> u64 { json(&data, args)["customers"].as_u64().unwrap() };
    for args in [
        &["map"][..],
        &["variants"],
        &["funnel", "page_view", "purchase"],
        &["paths"],
        &["retention"],
        &["insights", "--goal", "purchase", "--min-customers", "1"],
    ] {
        assert_eq!(customers(args), 2, "{args:?}");
        let mut raw = args.to_vec();
        raw.push("--no-stitch");
        assert_eq!(customers(&raw), 3, "{raw:?}");
    }
    let paths = json(&data, &["paths", "--from", "page_view", "--steps", "2"]);
    assert!(
        paths["paths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["events"] == serde_json::json!(["page_view", "identify", "purchase"])),
        "{paths}"
    );
    let c = json(&data, &["compare", "did:purchase", "not-did:purchase"]);
    assert_eq!(
        (c["a"]["customers"].as_u64(), c["b"]["customers"].as_u64()),
        (Some(1), Some(1))
    );
    let c = json(
        &data,
        &["compare", "did:purchase", "not-did:purchase", "--no-stitch"],
    );
    assert_eq!(
        (c["a"]["customers"].as_u64(), c["b"]["customers"].as_u64()),
        (Some(1), Some(2))
    );

    // An operator split of the anonymous id takes its page view out of U's journey at once.
    ok(&data, &["profiles", "split", "anonymous_id:A"]);
    assert_eq!(funnel(&data, &[]), (3, 2, 0));
    ok(&data, &["profiles", "unsplit", "anonymous_id:A"]);
    assert_eq!(funnel(&data, &[]), (2, 2, 1));
}
