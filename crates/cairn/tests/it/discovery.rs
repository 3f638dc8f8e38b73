//! Discovery commands on the real logs, checked against the answers of other tools
//! (`testdata/expected/*.json`: pm4py for the process map and variants, ClickHouse's
//! `windowFunnel` for the funnel).

use std::collections::HashMap;

use serde_json::Value;

use crate::{ok, shared_data};

fn json(dir: &std::path::Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(dir, args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn expected(name: &str) -> Value {
    let path = shared_data(&format!("expected/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn counts(v: &Value) -> HashMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// Imports `file`, then checks map, variants and the ClickHouse-mode funnel against
/// `expected/NAME.json`.
fn check(file: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["import", shared_data(file).to_str().unwrap()]);
    let want = expected(name);

    // Process map: directly-follows counts, start/end activities, times per edge.
    let map = json(d, &["map", "--format", "json"]);
    assert_eq!(map["customers"], want["cases"], "{name}: cases");
    assert_eq!(map["events"], want["events"], "{name}: events");
    let edges: HashMap<(String, String), &Value> = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["from"].as_str().unwrap().to_string(),
                    e["to"].as_str().unwrap().to_string(),
                ),
                e,
            )
        })
        .collect();
    let dfg = want["dfg"].as_array().unwrap();
    assert_eq!(edges.len(), dfg.len(), "{name}: number of edges");
    for e in dfg {
        let key = (
            e["from"].as_str().unwrap().to_string(),
            e["to"].as_str().unwrap().to_string(),
        );
        let got = edges
            .get(&key)
            .unwrap_or_else(|| panic!("{name}: missing edge {key:?}"));
        assert_eq!(got["count"], e["count"], "{name}: count of {key:?}");
    }
    for e in want["dfg_mean_seconds"].as_array().unwrap() {
        let key = (
            e["from"].as_str().unwrap().to_string(),
            e["to"].as_str().unwrap().to_string(),
        );
        let got = edges[&key];
        for field in ["mean_s", "median_s"] {
            let (g, w) = (got[field].as_f64().unwrap(), e[field].as_f64().unwrap());
            assert!(
                (g - w).abs() <= 0.001,
                "{name}: {field} of {key:?}: got {g}, pm4py {w}"
            );
        }
    }
    assert_eq!(
        counts(&map["start"]),
        counts(&want["start_activities"]),
        "{name}: start"
    );
    assert_eq!(
        counts(&map["end"]),
        counts(&want["end_activities"]),
        "{name}: end"
    );

    // Variants: how many, and the count of each of pm4py's top 20.
    let variants = json(d, &["variants", "--top", "1000000", "--format", "json"]);
    assert_eq!(
        variants["total_variants"], want["variant_count"],
        "{name}: variants"
    );
    let by_seq: HashMap<Vec<String>, u64> = variants["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                serde_json::from_value(v["events"].clone()).unwrap(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    for v in want["variants_top20"].as_array().unwrap() {
        let seq: Vec<String> = serde_json::from_value(v["variant"].clone()).unwrap();
        assert_eq!(
            by_seq.get(&seq).copied(),
            v["count"].as_u64(),
            "{name}: variant {seq:?}"
        );
    }

    // Funnel, ClickHouse mode: customers by furthest level.
    let wf = &want["window_funnel"];
    let mut args: Vec<String> = vec!["funnel".into()];
    for s in wf["steps"].as_array().unwrap() {
        args.push(s.as_str().unwrap().into());
    }
    let window = format!("{}s", wf["window_seconds"]);
    args.extend(
        [
            "--mode",
            "clickhouse",
            "--window",
            window.as_str(),
            "--format",
            "json",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let funnel = json(d, &args);
    let got: Vec<u64> = funnel["customers_by_max_level"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let want_levels = counts(&wf["customers_by_max_level"]);
    for (level, n) in got.iter().enumerate() {
        assert_eq!(
            *n,
            want_levels.get(&level.to_string()).copied().unwrap_or(0),
            "{name}: customers at level {level}: got {got:?}, ClickHouse {want_levels:?}"
        );
    }
    // `customers` per step counts those who reached at least that step.
    let steps = funnel["steps"].as_array().unwrap();
    for (k, s) in steps.iter().enumerate() {
        assert_eq!(
            s["customers"].as_u64().unwrap(),
            got[k + 1..].iter().sum::<u64>()
        );
    }
}

#[test]
fn running_example_matches_pm4py_and_clickhouse() {
    check("running-example.xes", "running-example");
}

#[test]
fn running_example_csv_matches_the_xes_answers() {
    check("running-example.csv", "running-example");
}

#[test]
fn roadtraffic_matches_pm4py_and_clickhouse() {
    check("roadtraffic100traces.xes", "roadtraffic100traces");
}

#[test]
fn helpdesk_matches_pm4py_and_clickhouse() {
    check("helpdesk.xes.gz", "helpdesk");
}

#[test]
fn teleclaims_matches_pm4py_and_clickhouse() {
    check("02_teleclaims.xes.gz", "02_teleclaims");
}

fn running_example() -> tempfile::TempDir {
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

#[test]
fn paths_follow_the_directly_follows_graph() {
    let dir = running_example();
    let p = json(
        dir.path(),
        &[
            "paths",
            "--from",
            "register request",
            "--steps",
            "1",
            "--format",
            "json",
        ],
    );
    let node = |id: &str| {
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .map_or(0, |n| n["customers"].as_u64().unwrap())
    };
    assert_eq!(p["customers"], 6);
    // pm4py's edges out of "register request": examine casually 3, check ticket 2, examine thoroughly 1.
    assert_eq!(node("1:examine casually"), 3);
    assert_eq!(node("1:check ticket"), 2);
    assert_eq!(node("1:examine thoroughly"), 1);
    // Backwards from "decide", renaming both examinations to one name.
    let p = json(
        dir.path(),
        &[
            "paths",
            "--to",
            "decide",
            "--steps",
            "2",
            "--rename",
            "examine (.*)=examine",
            "--format",
            "json",
        ],
    );
    let links: u64 = p["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["source"] == "0:decide")
        .map(|l| l["customers"].as_u64().unwrap())
        .sum();
    assert_eq!(
        links, 6,
        "every customer has one step before their first decide"
    );
    assert!(
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "examine")
    );
}

#[test]
fn scope_flags_filter_customers_and_time() {
    let dir = running_example();
    let d = dir.path();
    let map = json(
        d,
        &["map", "--where-did", "reject request", "--format", "json"],
    );
    assert_eq!(map["customers"], 3);
    assert_eq!(
        counts(&map["end"]),
        HashMap::from([("reject request".into(), 3)])
    );
    let map = json(
        d,
        &[
            "map",
            "--where-not-did",
            "reject request",
            "--format",
            "json",
        ],
    );
    assert_eq!(map["customers"], 3);
    // Cases 1, 2 and 3 start on 2010-12-30/31; everything after 2011-01-01 belongs to others.
    let all = json(d, &["map", "--format", "json"]);
    let early = json(d, &["map", "--until", "2011-01-01", "--format", "json"]);
    let late = json(d, &["map", "--since", "2011-01-01", "--format", "json"]);
    assert_eq!(
        early["events"].as_u64().unwrap() + late["events"].as_u64().unwrap(),
        all["events"].as_u64().unwrap()
    );
    let dot = ok(d, &["map", "--format", "dot", "--top", "3"]);
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("\"decide\" -> "));
    let err = crate::fails(d, &["map", "--where-did", "decid"]);
    assert!(err.contains("unknown event \"decid\""), "{err}");
    assert!(err.contains("decide"), "suggests the near name: {err}");
}

#[test]
fn retention_by_month_in_a_time_zone() {
    let dir = running_example();
    let r = json(
        dir.path(),
        &[
            "retention",
            "--by",
            "month",
            "--tz",
            "Europe/Amsterdam",
            "--format",
            "json",
        ],
    );
    let cohorts = r["cohorts"].as_array().unwrap();
    let total: u64 = cohorts
        .iter()
        .map(|c| c["customers"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 6);
    assert_eq!(cohorts[0]["cohort"], "2010-12");
    for c in cohorts {
        assert_eq!(c["retention"][0], 1.0);
    }
}

/// The same events imported as one file, or split over several files imported in another
/// order (so spread over several segments), give the same answers.
#[test]
fn answers_do_not_depend_on_import_order_or_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("all.jsonl");
    ok(
        tmp.path(),
        &[
            "generate",
            "--customers",
            "300",
            "--seed",
            "7",
            "--out",
            whole.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut parts = [String::new(), String::new(), String::new()];
    // Reverse order, dealt round-robin: every customer's events end up in several files.
    for (i, l) in lines.iter().rev().enumerate() {
        parts[i % 3].push_str(l);
        parts[i % 3].push('\n');
    }
    let (one, many) = (tmp.path().join("one"), tmp.path().join("many"));
    ok(&one, &["import", whole.to_str().unwrap()]);
    for (i, p) in parts.iter().enumerate().rev() {
        let f = tmp.path().join(format!("part{i}.jsonl"));
        std::fs::write(&f, p).unwrap();
        ok(&many, &["import", f.to_str().unwrap()]);
    }
    assert!(crate::stats(&many)["segments"].as_u64().unwrap() >= 3);
    for args in [
        &["map", "--format", "json"][..],
        &["variants", "--top", "50", "--format", "json"],
        &[
            "funnel",
            "Product Viewed",
            "Product Added",
            "Order Completed",
            "--breakdown",
            "channel",
            "--format",
            "json",
        ],
        &["paths", "--from", "Product Viewed", "--format", "json"],
        &["retention", "--format", "json"],
        &["insights", "--goal", "Order Completed", "--format", "json"],
        &[
            "map",
            "--where-did",
            "Product Added within 7d",
            "--cohort",
            "2026-01",
            "--tz",
            "Europe/Paris",
            "--format",
            "json",
        ],
    ] {
        assert_eq!(json(&one, args), json(&many, args), "{args:?}");
    }
}

/// The process map keeps only the durations near each edge's median and p90 (windows planned
/// on a sample of the customers) and gives the same map as keeping them all: stitched or
/// not, scoped or not.
#[test]
fn map_durations_kept_near_the_quantiles_give_the_same_map() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("all.jsonl");
    let file = file.to_str().unwrap();
    // Enough customers for the busiest edges to get windows (256 samples in the sample).
    ok(
        tmp.path(),
        &[
            "generate",
            "--customers",
            "8000",
            "--seed",
            "3",
            "--out",
            file,
        ],
    );
    let d = tmp.path().join("data");
    ok(&d, &["import", file]);
    let scoped = ["--where-did", "Product Added within 7d"];
    for extra in [&[][..], &["--no-stitch"], &scoped] {
        let args: Vec<&str> = ["map", "--format", "json"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let all: Vec<&str> = args
            .iter()
            .copied()
            .chain(["--keep-all-durations"])
            .collect();
        let map = json(&d, &args);
        assert!(map["edges"].as_array().unwrap().len() > 20);
        assert_eq!(map, json(&d, &all), "{args:?}");
    }
}

/// "Did X within a window" and "did not", and cohorts, split customers cleanly.
#[test]
fn behaviour_and_cohort_segments_partition_customers() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("all.jsonl");
    ok(
        tmp.path(),
        &[
            "generate",
            "--customers",
            "300",
            "--seed",
            "3",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let d = tmp.path().join("store");
    ok(&d, &["import", file.to_str().unwrap()]);
    let customers = |extra: &[&str]| {
        let mut args = vec!["variants", "--format", "json", "--no-stitch"];
        args.extend_from_slice(extra);
        json(&d, &args)["customers"].as_u64().unwrap()
    };
    let all = customers(&[]);
    let did = customers(&["--where-did", "Order Completed within 3d"]);
    let not = customers(&["--where-not-did", "Order Completed within 3d"]);
    assert_eq!(did + not, all);
    assert!(did > 0 && not > 0, "{did} / {not}");
    // Ordering within 3 days is a subset of ordering at all.
    assert!(did <= customers(&["--where-did", "Order Completed"]));
    // Months of first sight partition customers too.
    let months: u64 = [
        "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07",
    ]
    .iter()
    .map(|m| customers(&["--cohort", m]))
    .sum();
    assert_eq!(months, all);
    let err = crate::fails(&d, &["map", "--cohort", "January"]);
    assert!(err.contains("ISO week"), "{err}");
    let err = crate::fails(&d, &["map", "--where-did", "Order Completed within soon"]);
    assert!(err.contains("duration"), "{err}");
}

#[test]
fn insights_count_goal_and_drop_off() {
    let dir = running_example();
    let r = json(
        dir.path(),
        &[
            "insights",
            "--goal",
            "pay compensation",
            "--min-customers",
            "1",
            "--format",
            "json",
        ],
    );
    assert_eq!(r["customers"], 6);
    assert_eq!(r["converted"], 3);
    // With the default 30 days, only cases whose last event is a month before the log's last
    // event count as gone quiet; the counts are a subset of all customers.
    assert!(r["churned"].as_u64().unwrap() <= 6);
    // The three other cases end with "reject request".
    assert_eq!(r["drop_off"][0]["event"], "reject request");
    assert_eq!(r["drop_off"][0]["customers"], 3);
    // Six cases cannot make anything significant after correcting for every test.
    assert_eq!(r["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn compare_two_segments() {
    let dir = running_example();
    let r = json(
        dir.path(),
        &[
            "compare",
            "did:reject request",
            "not-did:reject request",
            "--funnel",
            "register request",
            "decide",
            "--window",
            "30d",
            "--format",
            "json",
        ],
    );
    assert_eq!(r["a"]["customers"], 3);
    assert_eq!(r["b"]["customers"], 3);
    let first = &r["edges"][0];
    assert_eq!(first["difference"].as_f64().unwrap().abs(), 1.0);
    assert!(
        r["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == "decide" && e["to"] == "reject request" && e["a_share"] == 1.0)
    );
    assert_eq!(r["a"]["funnel"]["steps"][1]["customers"], 3);
    let err = crate::fails(dir.path(), &["compare", "did", "all"]);
    assert!(err.contains("did:EVENT"), "{err}");
}
