//! Counts, ids and contents on the real process-mining logs.

use std::collections::HashSet;
use std::path::Path;

use cairn_import::{ImportOptions, open};
use cairn_model::{Event, EventKind, parse_timestamp};

use crate::{customers, data, read};

/// Reads a real log and checks its counts, unique ids and JSON. The big files are read once
/// (tests run unoptimised); the others twice, to check that ids are deterministic.
fn check(name: &str, want_customers: usize, want_events: usize) -> Vec<Event> {
    let path = data(name);
    let events = read_in_chunks(&path);
    check_events(name, &events, want_customers, want_events);
    if std::fs::metadata(&path).unwrap().len() < 3_000_000 {
        let (again, _) = read(&path, &ImportOptions::default());
        assert!(
            events
                .iter()
                .zip(&again)
                .all(|(a, b)| a.message_id == b.message_id),
            "{name}: ids are deterministic"
        );
    }
    events
}

/// Reads in chunks of 1000, checking chunk sizes and progress on the way.
fn read_in_chunks(path: &Path) -> Vec<Event> {
    let mut source = open(path, &ImportOptions::default()).unwrap();
    let total = std::fs::metadata(path).unwrap().len();
    let mut events = Vec::new();
    let mut last = 0;
    while let Some(chunk) = source.next_chunk(1000).unwrap() {
        assert!(!chunk.is_empty() && chunk.len() <= 1000);
        for r in chunk {
            events.push(r.unwrap_or_else(|e| panic!("{e}")));
        }
        let (done, all) = source.progress();
        assert_eq!(all, total);
        assert!(done >= last && done <= total);
        last = done;
    }
    assert_eq!(source.progress().0, total, "{}", path.display());
    assert!(source.next_chunk(1000).unwrap().is_none());
    events
}

fn check_events(name: &str, events: &[Event], want_customers: usize, want_events: usize) {
    assert_eq!(events.len(), want_events, "{name}: events");
    assert_eq!(customers(events), want_customers, "{name}: customers");
    let ids: HashSet<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "{name}: message ids are unique");
    for e in events {
        assert_eq!(e.kind, EventKind::Track);
        assert!(e.user_id.as_deref().is_some_and(|u| !u.is_empty()));
        assert!(!e.event.is_empty());
        for json in [&e.properties, &e.traits].into_iter().flatten() {
            let v: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|err| panic!("{name}: {err}: {json}"));
            assert!(v.is_object());
        }
    }
}

#[test]
fn helpdesk_xes_gz() {
    let events = check("helpdesk.xes.gz", 4_580, 21_348);
    let first = &events[0];
    assert_eq!(first.user_id.as_deref(), Some("Case 1"));
    assert_eq!(first.event, "Assign seriousness");
    assert_eq!(
        first.timestamp,
        parse_timestamp("2012-10-09T14:50:17+00:00").unwrap()
    );
    assert_eq!(first.channel, "unknown");
    let props: serde_json::Value =
        serde_json::from_str(first.properties.as_deref().unwrap()).unwrap();
    assert_eq!(props["org:resource"], "Value 1");
    assert_eq!(props["workgroup"], "Value 1");
    assert!(props.get("concept:name").is_none());
    assert!(props.get("time:timestamp").is_none());
}

#[test]
fn teleclaims_xes_gz() {
    let events = check("02_teleclaims.xes.gz", 3_512, 46_138);
    // Global defaults (`__INVALID__`) are not events, and the log's own name is no customer.
    assert!(events.iter().all(|e| e.event != "__INVALID__"));
    assert!(
        events
            .iter()
            .all(|e| e.user_id.as_deref() != Some("teleclaims.mxml"))
    );
    // Trace attributes other than concept:name become traits.
    let traits: serde_json::Value =
        serde_json::from_str(events[0].traits.as_deref().unwrap()).unwrap();
    assert_eq!(traits["description"], "Simulated process instance");
}

#[test]
fn roadtraffic_xes_typed_attributes() {
    let events = check("roadtraffic100traces.xes", 100, 390);
    let create = &events[0];
    assert_eq!(create.user_id.as_deref(), Some("N77802"));
    assert_eq!(create.event, "Create Fine");
    // A float `amount` is the event's value; ints and floats stay JSON numbers.
    assert_eq!(create.value, Some(35.0));
    let props: serde_json::Value =
        serde_json::from_str(create.properties.as_deref().unwrap()).unwrap();
    assert_eq!(props["article"], 157);
    assert_eq!(props["amount"], 35.0);
    assert_eq!(props["dismissal"], "NIL");
    // The log's nested meta attributes are not events.
    assert!(
        events
            .iter()
            .all(|e| e.event != "Payment" || e.user_id.is_some())
    );
}

#[test]
fn receipt_csv_pm4py_columns() {
    let events = check("receipt.csv", 1_434, 8_577);
    let first = &events[0];
    assert_eq!(first.user_id.as_deref(), Some("case-10011"));
    assert_eq!(first.event, "Confirmation of receipt");
    assert_eq!(
        first.timestamp,
        parse_timestamp("2011-10-11T11:45:40.276Z").unwrap()
    );
    // `case:channel` is the channel fallback (as a trace attribute `channel` is in XES) and
    // stays a trait; other `case:` columns are traits without the prefix.
    assert_eq!(first.channel, "internet");
    let traits: serde_json::Value = serde_json::from_str(first.traits.as_deref().unwrap()).unwrap();
    assert_eq!(traits["department"], "General");
    assert_eq!(traits["channel"], "Internet");
    assert!(traits.get("concept:name").is_none());
    assert!(traits.get("enddate").is_none(), "empty cells are skipped");
    let props: serde_json::Value =
        serde_json::from_str(first.properties.as_deref().unwrap()).unwrap();
    assert_eq!(props["org:resource"], "Resource21");
    assert_eq!(props["lifecycle:transition"], "complete");
    assert!(props.get("time:timestamp").is_none());
}

#[test]
fn running_example_xes_and_csv_agree() {
    let xes = check("running-example.xes", 6, 42);
    let csv = check("running-example.csv", 6, 42);
    let key = |e: &Event| (e.customer_id().to_string(), e.event.clone(), e.timestamp);
    let mut a: Vec<_> = xes.iter().map(key).collect();
    let mut b: Vec<_> = csv.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // The pandas index column (empty header) is not a property.
    let props: serde_json::Value =
        serde_json::from_str(csv[0].properties.as_deref().unwrap()).unwrap();
    assert!(props.get("").is_none());
    assert_eq!(props["Costs"], "50");
}

#[test]
fn default_channel_applies() {
    let options = ImportOptions {
        default_channel: Some("Call Center".into()),
        ..Default::default()
    };
    let (events, _) = read(&data("running-example.xes"), &options);
    assert!(events.iter().all(|e| e.channel == "call_center"));
}
