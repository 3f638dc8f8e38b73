//! Forgetting customers: their events leave every file, the others stay, later ones are dropped.

use std::path::Path;

use cairn_model::Event;
use cairn_store::{Options, Snapshot, Store};

use crate::{event, import, journeys};

/// Every file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

fn anonymous(anon: &str, name: &str, t: i64, id: &str) -> Event {
    let mut e = event(anon, name, t, id);
    e.anonymous_id = e.user_id.take();
    e
}

#[test]
fn forgotten_customers_leave_segments_log_and_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_events: 1_000,
        ..Options::default()
    };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    // In a segment from an import, in a second segment, and in the log tail.
    import(
        &store,
        vec![
            event("keep-1", "view", 10, "m1"),
            event("gone-user-x", "view", 11, "msg-gone-two"),
            anonymous("gone-anon-y", "view", 5, "msg-gone-three"),
        ],
    );
    import(&store, vec![event("keep-2", "buy", 20, "m4")]);
    let mut tail = event("gone-user-x", "buy", 30, "msg-gone-five");
    tail.anonymous_id = Some("gone-anon-y".into());
    store
        .append(vec![tail, event("keep-1", "buy", 31, "m6")])
        .unwrap();
    // The identifiers are in plain bytes somewhere before (dictionary, log): the scan below
    // would find them if they were left.
    for id in ["gone-user-x", "gone-anon-y"] {
        assert!(!files_containing(dir.path(), id).is_empty(), "{id}");
    }

    let values = vec!["gone-user-x".to_string(), "gone-anon-y".to_string()];
    let out = store.forget(&values).unwrap();
    assert_eq!(out.customers, 2);
    assert_eq!(out.events_removed, 3);
    assert_eq!(out.suppressed, 2);
    // Message ids long enough not to turn up by chance in compressed bytes (two-letter ones
    // did, in a Parquet file that never held them).
    for id in [
        "gone-user-x",
        "gone-anon-y",
        "msg-gone-two",
        "msg-gone-three",
        "msg-gone-five",
    ] {
        assert_eq!(
            files_containing(dir.path(), id),
            Vec::<String>::new(),
            "{id}"
        );
    }
    let snap = Snapshot::load(dir.path()).unwrap();
    let left: Vec<String> = journeys(&snap).into_iter().map(|(id, _)| id).collect();
    assert_eq!(left, ["keep-1", "keep-2"]);
    assert_eq!(snap.events(), 3);
    assert_eq!(snap.timeline("keep-1").unwrap().unwrap().len(), 2);

    // Later events of a forgotten customer are dropped, by append and by import, and across
    // a reopen (the suppression list is on disk, as hashes).
    store
        .append(vec![event("gone-user-x", "view", 40, "m7")])
        .unwrap();
    assert_eq!(store.suppressed_events(), 1);
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    let outcome = import(
        &store,
        vec![
            anonymous("gone-anon-y", "view", 41, "m8"),
            event("keep-3", "view", 42, "m9"),
        ],
    );
    assert_eq!(outcome.accepted, 1);
    store.flush().unwrap();
    let snap = Snapshot::load(dir.path()).unwrap();
    assert_eq!(snap.events(), 4);
    assert!(snap.timeline("gone-user-x").unwrap().is_none());
    for id in ["gone-user-x", "gone-anon-y"] {
        assert_eq!(
            files_containing(dir.path(), id),
            Vec::<String>::new(),
            "{id}"
        );
    }
    // Forgetting again, or someone unknown, changes nothing.
    let again = store.forget(&values).unwrap();
    assert_eq!((again.events_removed, again.suppressed), (0, 0));
    assert_eq!(Snapshot::load(dir.path()).unwrap().events(), 4);
}

#[test]
fn quarantined_records_that_mention_a_forgotten_customer_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    import(&store, vec![event("someone-z", "view", 1, "q1")]);
    let q = dir.path().join("quarantine");
    std::fs::create_dir_all(&q).unwrap();
    std::fs::write(
        q.join("in.csv.rejected.jsonl"),
        "{\"record\":\"someone-z,,bad\"}\n{\"record\":\"other,,bad\"}\n",
    )
    .unwrap();
    let out = store.forget(&["someone-z".to_string()]).unwrap();
    assert_eq!(out.quarantine_lines_removed, 1);
    assert_eq!(out.segments_dropped, 1);
    assert!(files_containing(dir.path(), "someone-z").is_empty());
    assert_eq!(
        std::fs::read_to_string(q.join("in.csv.rejected.jsonl")).unwrap(),
        "{\"record\":\"other,,bad\"}\n"
    );
}
