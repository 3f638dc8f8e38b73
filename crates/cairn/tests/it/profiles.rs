//! `cairn profile` and `cairn profiles split|unsplit` through the binary.

use crate::{fails, ok};

const EVENTS: &str = r#"{"type":"page","anonymousId":"kiosk","name":"Home","messageId":"m1","timestamp":"2026-01-01T10:00:00Z","context":{"consent":{"categoryPreferences":{"Advertising":true}}}}
{"type":"identify","userId":"U","anonymousId":"kiosk","messageId":"m2","timestamp":"2026-01-01T10:04:00Z","traits":{"email":"Ann@Example.com","plan":"free"}}
{"type":"track","userId":"U","event":"purchase","messageId":"m3","timestamp":"2026-01-01T10:05:00Z","properties":{"revenue":42.5}}
{"type":"identify","userId":"U2","anonymousId":"kiosk","messageId":"m4","timestamp":"2026-01-02T10:04:00Z"}
{"type":"identify","userId":"U","messageId":"m5","timestamp":"2026-01-03T10:00:00Z","traits":{"plan":"pro"}}
"#;

#[test]
fn profile_shows_identities_traits_merges_conflicts_and_splits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, EVENTS).unwrap();
    ok(&data, &["import", file.to_str().unwrap()]);

    let json = |id: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&data, &["profile", id, "--format", "json"])).unwrap()
    };
    let p = json("email:ANN@example.com");
    let ids: Vec<String> = p["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["kind"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ids,
        ["user_id:U", "email:ann@example.com", "anonymous_id:kiosk"]
    );
    assert_eq!(p["traits"]["plan"]["value"], "pro");
    assert_eq!(p["traits"]["plan"]["history"][0]["value"], "free");
    assert_eq!(p["computed"]["event_count"], 4);
    assert_eq!(p["computed"]["total_revenue"], 42.5);
    assert_eq!(p["consent"]["Advertising"]["value"], true);
    assert_eq!(p["merges"].as_array().unwrap().len(), 2);
    assert_eq!(p["conflicts"][0]["theirs"]["value"], "U2");
    assert_eq!(p["conflicts"][0]["message_id"], "m4");
    assert_eq!(p["timeline"]["total_events"], 4);
    // The same profile by any identifier, and a table for people.
    assert_eq!(json("kiosk")["identifiers"], p["identifiers"]);
    let table = ok(&data, &["profile", "U"]);
    assert!(table.contains("limit:user_id=1"), "{table}");
    assert!(fails(&data, &["profile", "nobody"]).contains("no profile"));

    // The kiosk was shared: split it off; U keeps its e-mail, the kiosk's events leave U.
    ok(
        &data,
        &[
            "profiles",
            "split",
            "anonymous_id:kiosk",
            "--reason",
            "shared kiosk",
        ],
    );
    let u = json("U");
    assert_eq!(u["identifiers"].as_array().unwrap().len(), 2);
    assert_eq!(u["computed"]["event_count"], 3);
    assert_eq!(json("kiosk")["computed"]["event_count"], 1);
    assert!(ok(&data, &["profiles", "splits"]).contains("shared kiosk"));
    ok(&data, &["profiles", "unsplit", "kiosk"]);
    assert_eq!(json("U")["computed"]["event_count"], 4);
}
