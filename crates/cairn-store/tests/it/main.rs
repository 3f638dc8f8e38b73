//! Store behaviour through its public API: what is written is read back, once, in order.

mod forget;

use std::path::Path;

use cairn_model::{Event, EventKind};
use cairn_store::{Columns, Customer, Options, Snapshot, Store, StoreError, StoredEvent};

fn event(customer: &str, name: &str, t: i64, id: &str) -> Event {
    Event {
        message_id: id.to_string(),
        event: name.to_string(),
        user_id: Some(customer.to_string()),
        timestamp: t,
        channel: "web".to_string(),
        properties: Some(format!(r#"{{"n":"{id}"}}"#)),
        ..Event::default()
    }
}

/// Every customer's (name, time) sequence, by customer id.
fn journeys(snap: &Snapshot) -> Vec<(String, Vec<(String, i64)>)> {
    let mut out = Vec::new();
    snap.scan(Columns::ALL, |c| {
        let id = snap.customer_id(c.key).unwrap().to_string();
        let evs = c
            .names
            .iter()
            .zip(c.times)
            .map(|(&n, &t)| (snap.event_names()[n as usize].clone(), t))
            .collect();
        out.push((id, evs));
    })
    .unwrap();
    out.sort();
    out
}

fn import(store: &Store, events: Vec<Event>) -> cairn_store::Outcome {
    let mut txn = store.import().unwrap();
    txn.add(events).unwrap();
    txn.commit().unwrap()
}

#[test]
fn import_scan_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let out = import(
        &store,
        vec![
            event("b", "view", 30, "1"),
            event("a", "buy", 20, "2"),
            event("a", "view", 10, "3"),
            event("b", "buy", 40, "4"),
        ],
    );
    assert_eq!((out.accepted, out.duplicates), (4, 0));
    let snap = store.snapshot().unwrap();
    assert_eq!(
        journeys(&snap),
        vec![
            ("a".into(), vec![("view".into(), 10), ("buy".into(), 20)]),
            ("b".into(), vec![("view".into(), 30), ("buy".into(), 40)]),
        ]
    );
    let tl = snap.timeline("a").unwrap().unwrap();
    assert_eq!(
        tl.iter()
            .map(|e| e.event.message_id.as_str())
            .collect::<Vec<_>>(),
        ["3", "2"]
    );
    assert_eq!(tl[0].event.properties.as_deref(), Some(r#"{"n":"3"}"#));
    assert!(snap.timeline("nobody").unwrap().is_none());
    let stats = snap.stats();
    assert_eq!((stats.customers, stats.events), (2, 4));
    assert_eq!((stats.first_event, stats.last_event), (Some(10), Some(40)));
}

#[test]
fn the_same_messages_twice_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let batch = vec![
        event("a", "view", 10, "m1"),
        event("a", "buy", 20, "m2"),
        event("a", "buy", 20, "m2"),
    ];
    let first = import(&store, batch.clone());
    assert_eq!((first.accepted, first.duplicates), (2, 1));
    let second = import(&store, batch.clone());
    assert_eq!((second.accepted, second.duplicates), (0, 3));
    let appended = store.append(batch).unwrap();
    assert_eq!((appended.accepted, appended.duplicates), (0, 3));
    drop(store);
    // Also across restarts, where the seen ids come back from the segments.
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        import(&store, vec![event("a", "view", 10, "m1")]).accepted,
        0
    );
    assert_eq!(store.snapshot().unwrap().events(), 2);
}

#[test]
fn a_message_repeated_inside_one_appended_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let out = store
        .append(vec![
            event("a", "view", 10, "r1"),
            event("a", "view", 10, "r1"),
            event("a", "buy", 20, "r2"),
        ])
        .unwrap();
    assert_eq!((out.accepted, out.duplicates), (2, 1));
    assert_eq!(store.snapshot().unwrap().events(), 2);
}

#[test]
fn an_import_not_committed_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    {
        let mut txn = store.import().unwrap();
        txn.add(vec![event("a", "view", 10, "x1")]).unwrap();
        // dropped without commit
    }
    assert_eq!(store.snapshot().unwrap().events(), 0);
    // Its message ids are free again.
    assert_eq!(
        import(&store, vec![event("a", "view", 10, "x1")]).accepted,
        1
    );
    let files = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .count();
    assert_eq!(files, 2, "one parquet file and one scan file");
}

#[test]
fn appended_events_are_visible_to_readers_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            memtable_events: 1_000_000,
            ..Default::default()
        },
    )
    .unwrap();
    store
        .append(vec![
            event("a", "view", 10, "w1"),
            event("c", "view", 5, "w2"),
        ])
        .unwrap();
    store.append(vec![event("a", "buy", 20, "w3")]).unwrap();
    // A reader in another process sees the log tail without a flush.
    let snap = Snapshot::load(dir.path()).unwrap();
    assert_eq!(snap.events(), 3);
    assert_eq!(snap.stats().log_events, 3);
    assert_eq!(snap.timeline("a").unwrap().unwrap().len(), 2);
    drop(store); // no flush: recovery replays the log
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.events(), 3);
    assert_eq!(
        snap.stats().log_events,
        0,
        "recovery moved the log into a segment"
    );
    assert_eq!(
        journeys(&snap)[0],
        (
            "a".to_string(),
            vec![("view".to_string(), 10), ("buy".to_string(), 20)]
        )
    );
}

#[test]
fn a_shared_snapshot_is_reused_until_something_is_appended_or_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append(vec![event("a", "view", 10, "s1")]).unwrap();
    let first = store.shared_snapshot().unwrap();
    assert_eq!(first.events(), 1);
    // The dictionary answers by scan once, by index after: the same keys either way.
    for _ in 0..3 {
        assert_eq!(first.timeline("a").unwrap().unwrap().len(), 1);
        assert!(first.timeline("nobody").unwrap().is_none());
    }
    let again = store.shared_snapshot().unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again), "nothing changed");

    store.append(vec![event("b", "view", 11, "s2")]).unwrap();
    let after_append = store.shared_snapshot().unwrap();
    assert_eq!(after_append.events(), 2, "an acknowledged append is seen");
    assert_eq!(after_append.timeline("b").unwrap().unwrap().len(), 1);

    store.flush().unwrap();
    let after_flush = store.shared_snapshot().unwrap();
    assert!(!std::sync::Arc::ptr_eq(&after_append, &after_flush));
    assert_eq!(after_flush.events(), 2);
    assert_eq!(
        after_flush.stats().log_events,
        0,
        "read from the new segment"
    );
    // The older snapshot still reads: it holds its files open.
    assert_eq!(first.timeline("a").unwrap().unwrap().len(), 1);
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), Options::default()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(StoreError::Locked { .. })
    ));
}

fn wal_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn flipped_byte_in_the_log_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(
            dir.path(),
            Options {
                memtable_events: 1_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        store.append(vec![event("a", "view", 10, "t1")]).unwrap();
        store.append(vec![event("a", "buy", 20, "t2")]).unwrap();
    }
    let path = wal_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (cut_file, cut) = store.recovered_cut().unwrap();
    assert_eq!(cut_file, &path);
    assert!(*cut > 0);
    assert_eq!(
        journeys(&store.snapshot().unwrap())[0].1,
        vec![("view".to_string(), 10)]
    );
}

#[test]
fn flipped_byte_in_the_log_middle_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(
            dir.path(),
            Options {
                memtable_events: 1_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..3 {
            store
                .append(vec![event("a", "view", i, &format!("c{i}"))])
                .unwrap();
        }
    }
    let path = wal_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(StoreError::CorruptLog {
            valid_after,
            offset,
            ..
        }) => {
            assert_eq!(offset, 0);
            assert_eq!(valid_after, 2);
        }
        Err(other) => panic!("expected CorruptLog, got {other}"),
        Ok(_) => panic!("expected CorruptLog, opened fine"),
    }
    // Readers refuse too, rather than show a store with a hole.
    assert!(matches!(
        Snapshot::load(dir.path()),
        Err(StoreError::CorruptLog { .. })
    ));
}

#[test]
fn compaction_keeps_every_event_in_order() {
    // A merge reads a range of customers at a time: one range, ranges of a few customers,
    // and ranges smaller than one customer's events must all give the same store.
    for merge_slice_events in [1_000_000, 23, 1] {
        compaction_keeps_every_event_in_order_with(merge_slice_events);
    }
}

fn compaction_keeps_every_event_in_order_with(merge_slice_events: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            max_segments: 100,
            merge_slice_events,
            ..Default::default()
        },
    )
    .unwrap();
    for round in 0..5i64 {
        let events = (0..20)
            .map(|c| {
                event(
                    &format!("c{c}"),
                    &format!("e{}", round % 3),
                    round * 10 + c,
                    &format!("{round}-{c}"),
                )
            })
            .collect();
        import(&store, events);
    }
    // Equal timestamps across segments keep log order.
    import(&store, vec![event("c0", "tie-a", 0, "tie1")]);
    import(&store, vec![event("c0", "tie-b", 0, "tie2")]);
    let before = journeys(&store.snapshot().unwrap());
    assert_eq!(store.snapshot().unwrap().segments().len(), 7);
    let mut reports = Vec::new();
    let c = store
        .compact_reporting(true, &mut |p| reports.push((p.done, p.total)))
        .unwrap();
    assert_eq!(c.merged_segments, 7);
    // Progress starts at nothing, grows range by range and ends at every event.
    assert_eq!(reports.first(), Some(&(0, 102)));
    assert_eq!(reports.last(), Some(&(102, 102)));
    assert!(reports.is_sorted(), "{reports:?}");
    if merge_slice_events == 1 {
        // A report per customer: the ranges are as small as one customer allows.
        assert_eq!(reports.len(), 21);
    }
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.segments().len(), 1);
    assert_eq!(journeys(&snap), before);
    // The Parquet file holds every event once, in segment order.
    let mut stored = Vec::new();
    snap.for_each_event(|e| stored.push((e.key, e.event.timestamp, e.seq)))
        .unwrap();
    assert_eq!(stored.len(), 102);
    assert!(stored.is_sorted(), "{stored:?}");
    let c0 = &before.iter().find(|(id, _)| id == "c0").unwrap().1;
    assert_eq!(
        &c0[..3],
        &[
            ("e0".to_string(), 0),
            ("tie-a".to_string(), 0),
            ("tie-b".to_string(), 0)
        ]
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn automatic_compaction_bounds_the_segment_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            max_segments: 3,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..6 {
        import(&store, vec![event("a", "view", i, &format!("auto{i}"))]);
    }
    let snap = store.snapshot().unwrap();
    assert!(snap.segments().len() <= 3);
    assert_eq!(snap.events(), 6);
}

#[test]
fn parallel_scan_sees_each_customer_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let events = (0..1000)
        .flat_map(|c| (0..3).map(move |i| event(&format!("c{c}"), "e", i, &format!("{c}/{i}"))))
        .collect();
    import(&store, events);
    store
        .append(vec![
            event("c7", "late", 99, "late1"),
            event("new", "first", 1, "new1"),
        ])
        .unwrap();
    let snap = store.snapshot().unwrap();
    let parts = snap
        .scan_parallel(
            Columns {
                times: true,
                ..Default::default()
            },
            2,
            Vec::new,
            |v: &mut Vec<(u32, usize)>, c: Customer<'_>| v.push((c.key, c.times.len())),
        )
        .unwrap();
    let all: Vec<(u32, usize)> = parts.into_iter().flatten().collect();
    assert_eq!(all.len(), 1001);
    let mut keys: Vec<u32> = all.iter().map(|a| a.0).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 1001, "no customer twice");
    assert_eq!(all.iter().map(|a| a.1).sum::<usize>(), 3002);
    let c7 = snap.customer_key("c7").unwrap();
    assert_eq!(all.iter().find(|a| a.0 == c7).unwrap().1, 4);
}

#[test]
fn scan_yields_each_events_properties_in_order_across_segments_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // One customer spread over two imported segments and the log tail, plus one event
    // without properties: the scan must pair every event with its own properties.
    import(
        &store,
        vec![event("a", "x", 30, "a3"), event("b", "x", 5, "b1")],
    );
    import(&store, vec![event("a", "x", 10, "a1")]);
    let mut bare = event("a", "x", 20, "a2");
    bare.properties = None;
    store.append(vec![bare]).unwrap();
    let snap = store.snapshot().unwrap();
    let mut seen = Vec::new();
    snap.scan(Columns::ALL, |c| {
        let id = snap.customer_id(c.key).unwrap().to_string();
        let pairs: Vec<(i64, String)> = c
            .times
            .iter()
            .zip(c.properties)
            .map(|(&t, p)| (t, p.to_string()))
            .collect();
        seen.push((id, pairs));
    })
    .unwrap();
    let text = |id: &str| format!(r#"{{"n":"{id}"}}"#);
    assert_eq!(
        seen,
        vec![
            (
                "a".to_string(),
                vec![(10, text("a1")), (20, String::new()), (30, text("a3"))]
            ),
            ("b".to_string(), vec![(5, text("b1"))]),
        ]
    );
    // Without the flag no properties are read.
    snap.scan(
        Columns {
            times: true,
            ..Default::default()
        },
        |c| assert!(c.properties.is_empty()),
    )
    .unwrap();
}

#[test]
fn every_field_survives_import_log_and_compaction_unchanged() {
    let full = |id: &str, t: i64| Event {
        message_id: id.to_string(),
        kind: EventKind::Identify,
        event: "identify".to_string(),
        user_id: Some("ü-user".to_string()),
        anonymous_id: Some("anon-1".to_string()),
        timestamp: t,
        sent_at: Some(t + 5),
        received_at: Some(t + 7),
        channel: "call_center".to_string(),
        value: Some(12.5),
        group_id: Some("g".to_string()),
        previous_id: Some("p".to_string()),
        properties: Some(r#"{"a":[1,2]}"#.to_string()),
        traits: Some(r#"{"email":"x@y.z"}"#.to_string()),
        context: Some(r#"{"ip":"10.0.0.1"}"#.to_string()),
    };
    let sparse = |id: &str, t: i64| Event {
        user_id: None,
        sent_at: None,
        received_at: None,
        value: None,
        group_id: None,
        previous_id: None,
        properties: None,
        traits: None,
        context: None,
        ..full(id, t)
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // A canonical UUID (stored as 16 bytes) and other ids (stored as text), through both the
    // import and the log.
    let imported = vec![
        full("0f8fad5b-d9cb-469f-a165-70867728950e", 10),
        sparse("msg-2", 20),
    ];
    import(&store, imported.clone());
    let appended = vec![
        full("msg-3", 30),
        sparse("7c9e6679-7425-40de-944b-e07fc1f90ae7", 5),
    ];
    store.append(appended.clone()).unwrap();
    let timeline = |store: &Store, customer: &str| -> Vec<Event> {
        let snap = store.snapshot().unwrap();
        let rows = snap.timeline(customer).unwrap().unwrap();
        rows.into_iter().map(|r| r.event).collect()
    };
    let by_user: Vec<Event> = vec![imported[0].clone(), appended[0].clone()];
    let by_anon: Vec<Event> = vec![appended[1].clone(), imported[1].clone()];
    for _ in 0..2 {
        assert_eq!(timeline(&store, "ü-user"), by_user);
        assert_eq!(timeline(&store, "anon-1"), by_anon);
        // Then again once the log is flushed and everything merged into one segment.
        store.compact(true).unwrap();
    }
    // Everything is in one segment now: a reader that skips columns gets the same events
    // with exactly those fields empty.
    let skip = ["event", "value", "properties", "sent_at"];
    let mut whole = Vec::new();
    let mut lean = Vec::new();
    let snap = store.snapshot().unwrap();
    snap.for_each_event(|e| whole.push(e.clone())).unwrap();
    snap.for_each_event_skipping(&skip, |e| lean.push(e.clone()))
        .unwrap();
    assert_eq!(whole.len(), 4);
    let emptied: Vec<StoredEvent> = whole
        .into_iter()
        .map(|mut e| {
            e.event.event.clear();
            e.event.value = None;
            e.event.properties = None;
            e.event.sent_at = None;
            e
        })
        .collect();
    assert_eq!(lean, emptied);
}

#[test]
fn duplicates_are_found_within_and_across_the_segments_of_one_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    import(&store, vec![event("a", "view", 1, "stored")]);
    let mut txn = store.import().unwrap();
    // Three events a segment: the repeats land in the same segment, in a later one, and in
    // the store already.
    txn.set_segment_events(3);
    let ids = ["x", "y", "x", "z", "y", "stored", "w", "w"];
    for (t, id) in ids.iter().enumerate() {
        txn.add(vec![event("b", "view", t as i64, id)]).unwrap();
    }
    let out = txn.commit().unwrap();
    assert_eq!((out.accepted, out.duplicates), (4, 4));
    let snap = store.snapshot().unwrap();
    let stored: Vec<i64> = snap
        .timeline("b")
        .unwrap()
        .unwrap()
        .iter()
        .map(|r| r.event.timestamp)
        .collect();
    // The first occurrence of each id is kept.
    assert_eq!(stored, [0, 1, 3, 6]);
    assert_eq!(snap.events(), 5);
}

/// Appends from several threads while the background flusher writes and compacts small
/// segments, with readers looking on: every event is stored once, in each customer's order,
/// before and after a reopen, and the log ends up cut behind the segments.
#[test]
fn appends_while_the_background_flusher_writes_and_compacts() {
    const THREADS: usize = 4;
    const BATCHES: usize = 60;
    const PER_BATCH: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_events: 200,
        max_segments: 3,
        ..Options::default()
    };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for b in 0..BATCHES {
                    let events = (0..PER_BATCH)
                        .map(|i| {
                            let n = (b * PER_BATCH + i) as i64;
                            event(&format!("t{t}"), "tick", n, &format!("{t}-{n}"))
                        })
                        .collect();
                    let outcome = store.append(events).unwrap();
                    assert_eq!(outcome.accepted, PER_BATCH as u64);
                    // Resending what was acknowledged stores nothing, whether it is still
                    // in the memtable, being flushed or in a segment.
                    if b % 10 == 9 {
                        let again = vec![event(&format!("t{t}"), "tick", 0, &format!("{t}-0"))];
                        assert_eq!(store.append(again).unwrap().duplicates, 1);
                    }
                }
            });
        }
        // A reader in the meantime never sees an event twice.
        s.spawn(|| {
            for _ in 0..20 {
                let snap = Snapshot::load(dir.path()).unwrap();
                for (_, evs) in journeys(&snap) {
                    let mut times: Vec<i64> = evs.iter().map(|e| e.1).collect();
                    times.dedup();
                    assert_eq!(times.len(), evs.len(), "an event seen twice");
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    });
    let expected: Vec<(String, Vec<(String, i64)>)> = (0..THREADS)
        .map(|t| {
            let evs = (0..(BATCHES * PER_BATCH) as i64)
                .map(|n| ("tick".to_string(), n))
                .collect();
            (format!("t{t}"), evs)
        })
        .collect();
    let snap = store.snapshot().unwrap();
    assert_eq!(journeys(&snap), expected);
    assert!(
        snap.segments().len() > 1,
        "the memtable was flushed in the background"
    );
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.stats().log_events, 0);
    assert!(snap.segments().len() <= 3, "compaction kept up");
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(journeys(&store.snapshot().unwrap()), expected);
}

#[test]
fn chunks_with_their_own_dictionaries_land_in_the_stores_across_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let named = |customer: &str, name: &str, channel: &str, t: i64| Event {
        channel: channel.to_string(),
        ..event(customer, name, t, &format!("{customer}-{t}"))
    };
    let mut txn = store.import().unwrap();
    // Two events a segment, chunks of three: every chunk is split between two segments.
    txn.set_segment_events(2);
    let chunks = [
        vec![
            named("a", "view", "web", 1),
            named("a", "buy", "store", 2),
            named("b", "view", "web", 3),
        ],
        // Names and channels first seen in another order, so the chunk's own indexes differ
        // from the store's.
        vec![
            named("b", "buy", "email", 4),
            named("c", "refund", "store", 5),
            named("a", "view", "web", 6),
        ],
    ];
    let mut chunk = cairn_store::EventChunk::default();
    for events in chunks.iter() {
        chunk.fill_from(&mut events.clone()).unwrap();
        assert_eq!(chunk.len(), 3);
        txn.add_chunk(&chunk).unwrap();
    }
    let out = txn.commit().unwrap();
    assert_eq!((out.accepted, out.duplicates), (6, 0));
    let snap = store.snapshot().unwrap();
    for (customer, expected) in [
        (
            "a",
            vec![("view", "web", 1), ("buy", "store", 2), ("view", "web", 6)],
        ),
        ("b", vec![("view", "web", 3), ("buy", "email", 4)]),
        ("c", vec![("refund", "store", 5)]),
    ] {
        let got: Vec<(String, String, i64)> = snap
            .timeline(customer)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|r| (r.event.event, r.event.channel, r.event.timestamp))
            .collect();
        let expected: Vec<(String, String, i64)> = expected
            .into_iter()
            .map(|(n, c, t)| (n.to_string(), c.to_string(), t))
            .collect();
        assert_eq!(got, expected, "customer {customer}");
    }
    // The scan files carry the store's name indexes too.
    let s = |v: &str| v.to_string();
    assert_eq!(
        journeys(&snap),
        vec![
            (s("a"), vec![(s("view"), 1), (s("buy"), 2), (s("view"), 6)]),
            (s("b"), vec![(s("view"), 3), (s("buy"), 4)]),
            (s("c"), vec![(s("refund"), 5)]),
        ]
    );
    // Sequence numbers follow arrival order (the times above) across chunks and segments.
    let mut by_time: Vec<(i64, u64)> = ["a", "b", "c"]
        .iter()
        .flat_map(|c| snap.timeline(c).unwrap().unwrap())
        .map(|r| (r.event.timestamp, r.seq))
        .collect();
    by_time.sort();
    assert!(by_time.windows(2).all(|w| w[0].1 < w[1].1), "{by_time:?}");
}
