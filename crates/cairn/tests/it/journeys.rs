//! `cairn journeys validate|simulate` through the binary, on a small store with known answers.

use crate::{fails, ok, run};
use serde_json::json;

const EVENTS: &str = r#"{"type":"identify","userId":"u1","messageId":"i1","timestamp":"2026-03-01T10:00:00Z","traits":{"timezone":"Europe/Paris","phone":"+33600000000"},"context":{"consent":{"categoryPreferences":{"sms":true}}}}
{"type":"track","userId":"u1","event":"add_to_cart","messageId":"a1","timestamp":"2026-03-02T19:30:00Z"}
{"type":"track","userId":"u2","event":"add_to_cart","messageId":"a2","timestamp":"2026-03-02T10:00:00Z"}
{"type":"track","userId":"u2","event":"purchase","messageId":"p2","timestamp":"2026-03-02T10:20:00Z"}
{"type":"track","userId":"u3","event":"add_to_cart","messageId":"a3","timestamp":"2026-03-02T12:00:00Z"}
{"type":"track","userId":"u3","event":"purchase","messageId":"p3","timestamp":"2026-03-04T12:00:00Z"}
{"type":"track","userId":"u4","event":"page","messageId":"x4","timestamp":"2026-03-12T12:00:00Z"}
"#;

const CART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/journeys/abandoned-cart.yaml"
);

#[test]
fn simulate_replays_history_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.jsonl");
    let trace = dir.path().join("trace.jsonl");
    std::fs::write(&file, EVENTS).unwrap();
    ok(&data, &["import", file.to_str().unwrap()]);
    let out = ok(
        &data,
        &[
            "journeys",
            "simulate",
            CART,
            "--format",
            "json",
            "--trace",
            trace.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // u2 buys within the hour (exits at step 2); u3 is held out (sticky hash) and buys on day
    // 2; u1 (Paris, 21:30 local) gets the email at 08:00 local and the SMS a day later.
    assert_eq!(v["entered"], 3);
    assert_eq!(v["goal_reached"], 2);
    assert_eq!(v["steps"]["wait-for-purchase"], 3);
    assert_eq!(v["steps"]["converted"], 1);
    assert_eq!(v["steps"]["split"], 2);
    assert_eq!(v["steps"]["sms"], 1);
    assert_eq!(v["messages"]["email"], 1);
    assert_eq!(v["messages"]["sms"], 1);
    assert_eq!(v["holdout"]["entered"], 1);
    assert_eq!(v["holdout"]["goal_rate"], 1.0);
    assert_eq!(v["treatment"]["goal_rate"], 0.5);
    let lines = std::fs::read_to_string(&trace).unwrap();
    assert!(
        lines
            .contains(r#"{"at":"2026-03-03T07:00:00Z","customer":"u1","step":"wait-after-email"}"#),
        "{lines}"
    );
    assert_eq!(lines.lines().count(), 15);
}

#[test]
fn validate_points_at_the_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(CART)
        .unwrap()
        .replace("timeout: 1d", "timeout: 1 day");
    std::fs::write(&bad, text).unwrap();
    let out = run(dir.path(), &["journeys", "validate", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 51, column 16: bad duration \"1 day\""),
        "{err}"
    );
    ok(dir.path(), &["journeys", "validate", CART]);
}

/// History tracked under other names (Segment's e-commerce spec): `--event NAME=STORED` makes
/// the journey see it, with the same answers as the same history under the journey's names.
#[test]
fn simulate_maps_stored_event_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.jsonl");
    let renamed = EVENTS
        .replace(r#""event":"add_to_cart""#, r#""event":"Product Added""#)
        .replace(r#""event":"purchase""#, r#""event":"Order Completed""#);
    assert_ne!(renamed, EVENTS);
    std::fs::write(&file, renamed).unwrap();
    ok(&data, &["import", file.to_str().unwrap()]);
    let checked = ok(&data, &["journeys", "validate", WEEKLY]);
    assert!(
        checked.contains("entry on schedule \"0 9 * * 1\" in each customer's timezone"),
        "{checked}"
    );
    let simulate = |extra: &[&str]| {
        let mut args = vec!["journeys", "simulate", CART, "--format", "json"];
        args.extend_from_slice(extra);
        serde_json::from_str::<serde_json::Value>(&ok(&data, &args)).unwrap()
    };
    // Without the mapping nobody enters.
    assert_eq!(simulate(&[])["entered"], 0);
    let v = simulate(&[
        "--event",
        "add_to_cart=Product Added",
        "--event",
        "purchase=Order Completed",
    ]);
    assert_eq!(v["entered"], 3);
    assert_eq!(v["goal_reached"], 2);
    assert_eq!(v["steps"]["converted"], 1);
    assert_eq!(v["messages"]["email"], 1);
    assert_eq!(v["messages"]["sms"], 1);
    let err = fails(
        &data,
        &["journeys", "simulate", CART, "--event", "add_to_cart"],
    );
    assert!(err.contains("expected NAME=STORED"), "{err}");
}

const WIN_BACK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/journeys/win-back.yaml"
);

/// A segment entry in a backtest: customers enter the win-back journey at the instant they
/// leave segment `active` (30 days without an event), and the branch reads the computed
/// total revenue (from the stored events' values).
#[test]
fn simulate_enters_on_leaving_a_segment() {
    const HISTORY: &str = r#"{"type":"track","userId":"u1","event":"purchase","messageId":"b1","timestamp":"2026-03-01T09:00:00Z","properties":{"revenue":150}}
{"type":"track","userId":"u2","event":"page_viewed","messageId":"b2","timestamp":"2026-03-01T12:00:00Z"}
{"type":"track","userId":"u2","event":"purchase","messageId":"b3","timestamp":"2026-03-20T12:00:00Z","properties":{"revenue":20}}
{"type":"track","userId":"u2","event":"purchase","messageId":"b4","timestamp":"2026-04-25T10:00:00Z","properties":{"revenue":30}}
{"type":"track","userId":"u3","event":"page_viewed","messageId":"b5","timestamp":"2026-03-10T12:00:00Z"}
{"type":"track","userId":"u3","event":"page_viewed","messageId":"b6","timestamp":"2026-04-01T12:00:00Z"}
{"type":"track","userId":"u3","event":"page_viewed","messageId":"b7","timestamp":"2026-04-26T00:00:00Z"}
"#;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.jsonl");
    let trace = dir.path().join("trace.jsonl");
    std::fs::write(&file, HISTORY).unwrap();
    ok(&data, &["import", file.to_str().unwrap()]);
    ok(dir.path(), &["journeys", "validate", WIN_BACK]);
    let out = ok(
        &data,
        &[
            "journeys",
            "simulate",
            WIN_BACK,
            "--format",
            "json",
            "--trace",
            trace.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // u1 lapses on 03-31 09:00 (spent 150: the VIP email at 10:00); u2 on 04-19 12:00 (spent
    // 20: the plain email the next morning) and buys on 04-25 (goal); u3 stays active.
    assert_eq!(v["entered"], 2, "{out}");
    assert_eq!(v["goal_reached"], 1);
    assert_eq!(v["steps"]["vip-email"], 1);
    assert_eq!(v["steps"]["email"], 1);
    assert_eq!(v["messages"]["email"], 2);
    let lines = std::fs::read_to_string(&trace).unwrap();
    for want in [
        r#"{"at":"2026-03-31T09:00:00Z","customer":"u1","step":"morning"}"#,
        r#"{"at":"2026-03-31T10:00:00Z","customer":"u1","step":"vip-email"}"#,
        r#"{"at":"2026-04-19T12:00:00Z","customer":"u2","step":"morning"}"#,
        r#"{"at":"2026-04-20T10:00:00Z","customer":"u2","step":"email"}"#,
    ] {
        assert!(lines.contains(want), "{want} not in {lines}");
    }
    assert!(!lines.contains("u3"), "{lines}");

    // From 03-05: u1's purchase before it still makes u1 active (history builds segments and
    // computed traits as they stood), so u1 still lapses on 03-31, as a VIP.
    let from = |t: &str| {
        let out = ok(
            &data,
            &[
                "journeys", "simulate", WIN_BACK, "--format", "json", "--from", t,
            ],
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let v = from("2026-03-05T00:00:00Z");
    assert_eq!(
        (v["entered"].clone(), v["steps"]["vip-email"].clone()),
        (2.into(), 1.into())
    );
    // From 04-15: u1 lapsed before it (silently: nothing enters before --from); u2 lapses on
    // 04-19 and is the only entry.
    let v = from("2026-04-15T00:00:00Z");
    assert_eq!(v["entered"], 1, "{v}");
    assert_eq!(v["steps"]["email"], 1);
    assert_eq!(v["goal_reached"], 1);
}

const WEEKLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/journeys/weekly-digest.yaml"
);

/// A schedule entry in a backtest: Mondays at 09:00 in each customer's timezone, for the
/// customers with an email; with --from, only firings from then on.
#[test]
fn simulate_fires_a_schedule_in_each_customers_timezone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.jsonl");
    let trace = dir.path().join("trace.jsonl");
    std::fs::write(
        &file,
        r#"{"type":"identify","userId":"p","messageId":"i1","timestamp":"2026-03-01T00:00:00Z","traits":{"timezone":"Europe/Paris","email":"p@example.com"}}
{"type":"identify","userId":"n","messageId":"i2","timestamp":"2026-03-01T00:00:00Z","traits":{"timezone":"America/New_York","email":"n@example.com"}}
{"type":"identify","userId":"x","messageId":"i3","timestamp":"2026-03-01T00:00:00Z","traits":{"plan":"free"}}
{"type":"track","userId":"x","event":"page","messageId":"e1","timestamp":"2026-03-31T12:00:00Z"}
"#,
    )
    .unwrap();
    ok(&data, &["import", file.to_str().unwrap()]);
    let checked = ok(&data, &["journeys", "validate", WEEKLY]);
    assert!(
        checked.contains("entry on schedule \"0 9 * * 1\" in each customer's timezone"),
        "{checked}"
    );
    let simulate = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["journeys", "simulate", WEEKLY, "--format", "json"];
        args.extend(extra);
        serde_json::from_str(&ok(&data, &args)).unwrap()
    };
    let v = simulate(&["--trace", trace.to_str().unwrap()]);
    // Five Mondays in March 2026, two customers with an email.
    assert_eq!(
        (&v["entered"], &v["customers"]),
        (&json!(10), &json!(2)),
        "{v:#}"
    );
    assert_eq!(v["messages"]["email"], 10);
    let lines = std::fs::read_to_string(&trace).unwrap();
    let digests: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("digest-email"))
        .collect();
    assert_eq!(digests.len(), 10);
    // 09:00 local: Paris +01:00 then +02:00 from March 29; New York -05:00 then -04:00 from March 8.
    for (customer, at) in [
        ("p", "2026-03-02T08:00:00Z"),
        ("p", "2026-03-30T07:00:00Z"),
        ("n", "2026-03-02T14:00:00Z"),
        ("n", "2026-03-09T13:00:00Z"),
    ] {
        let line = format!(r#"{{"at":"{at}","customer":"{customer}","step":"digest-email"}}"#);
        assert!(digests.contains(&line.as_str()), "{line} in {lines}");
    }
    // From March 10: the firings of the 16th, 23rd and 30th.
    let v = simulate(&["--from", "2026-03-10"]);
    assert_eq!(v["entered"], 6, "{v:#}");
}
