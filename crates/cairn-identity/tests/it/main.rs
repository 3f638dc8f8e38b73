//! Identity resolution through the public API: chains of identifiers, every arrival order,
//! conflicts, splits, and stitched scans over a real store.

mod bench;
mod golden;

/// The allocator of the `cairn` binary, so that the ignored benchmark measures what the
/// product does (its big maps on transparent huge pages).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeSet;

use cairn_identity::{
    Config, Detached, GraphBuilder, IdKind, Identifier, IdentityGraph, Profile, Splits,
    scan_profiles, scan_profiles_parallel,
};
use cairn_model::{Event, EventKind};
use cairn_store::{Columns, Customer, Options, Snapshot, Store};

const MIN: i64 = 60_000_000;

fn event(kind: EventKind, msg: &str, t: i64, user: Option<&str>, anon: Option<&str>) -> Event {
    Event {
        message_id: msg.to_string(),
        kind,
        event: kind.as_str().to_string(),
        user_id: user.map(str::to_string),
        anonymous_id: anon.map(str::to_string),
        timestamp: t * MIN,
        sent_at: None,
        received_at: None,
        channel: "web".to_string(),
        value: None,
        group_id: None,
        previous_id: None,
        properties: None,
        traits: None,
        context: None,
    }
}

fn track(msg: &str, name: &str, t: i64, user: Option<&str>, anon: Option<&str>) -> Event {
    Event {
        event: name.to_string(),
        ..event(EventKind::Track, msg, t, user, anon)
    }
}

fn identify(msg: &str, t: i64, user: &str, anon: Option<&str>, traits: Option<&str>) -> Event {
    Event {
        traits: traits.map(str::to_string),
        ..event(EventKind::Identify, msg, t, Some(user), anon)
    }
}

fn alias(msg: &str, t: i64, previous: &str, user: &str) -> Event {
    Event {
        previous_id: Some(previous.to_string()),
        ..event(EventKind::Alias, msg, t, Some(user), None)
    }
}

fn id(kind: IdKind, v: &str) -> Identifier {
    Identifier::new(kind, v)
}

/// Builds the graph from events in the given order, keying customers the way the store does
/// (raw id, keys in order of first appearance).
fn graph_in_order(events: &[Event], splits: &Splits) -> IdentityGraph {
    let mut b = GraphBuilder::new(Config::default());
    let mut keys: Vec<String> = Vec::new();
    for e in events {
        let raw = e.customer_id().to_string();
        let key = match keys.iter().position(|k| *k == raw) {
            Some(k) => k,
            None => {
                keys.push(raw);
                keys.len() - 1
            }
        };
        b.add(Some(key as u32), e);
    }
    b.finish(splits)
}

/// The partition into profiles as sets of identifiers, independent of node numbering.
fn partition(g: &IdentityGraph, of: &[Identifier]) -> BTreeSet<Vec<String>> {
    of.iter()
        .map(|i| {
            let p = g.find(i).unwrap_or_else(|| panic!("{i} unknown"));
            g.identifiers(p).iter().map(|i| i.to_string()).collect()
        })
        .collect()
}

/// Deterministic shuffles (and the reverse order): enough orders to catch order dependence.
fn orders(n: usize) -> Vec<Vec<usize>> {
    let mut out = vec![(0..n).collect::<Vec<_>>(), (0..n).rev().collect()];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..40 {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            v.swap(i, (state % (i as u64 + 1)) as usize);
        }
        out.push(v);
    }
    out
}

/// Checks that every arrival order gives `expected`, and returns the graph of the given order.
fn check_all_orders(events: &[Event], ids: &[Identifier], expected: &BTreeSet<Vec<String>>) {
    for order in orders(events.len()) {
        let shuffled: Vec<Event> = order.iter().map(|&i| events[i].clone()).collect();
        let g = graph_in_order(&shuffled, &Splits::default());
        assert_eq!(&partition(&g, ids), expected, "order {order:?}");
    }
}

fn set(profiles: &[&[&str]]) -> BTreeSet<Vec<String>> {
    profiles
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// A, B anonymous → U by identify; e-mail E → U (identify traits, then seen on an anonymous
/// track through context.traits, in another case); alias D → U; identifies before, between
/// and after the events; timestamps out of arrival order.
#[test]
fn chains_give_one_profile_in_every_order() {
    let events = vec![
        track("m1", "page_view", 10, None, Some("A")),
        identify("m2", 5, "U", Some("A"), None), // identify *before* A's events (by time)
        track("m3", "page_view", 20, None, Some("B")),
        track("m4", "add_to_cart", 25, None, Some("B")),
        identify(
            "m5",
            22,
            "U",
            Some("B"),
            Some(r#"{"email":" Ann@Example.COM "}"#),
        ), // between
        Event {
            context: Some(r#"{"traits":{"email":"ann@example.com"}}"#.into()),
            ..track("m6", "email_open", 30, None, Some("C"))
        },
        alias("m7", 40, "D", "U"),
        track("m8", "page_view", 1, None, Some("D")), // long before anything else
        track("m9", "purchase", 50, Some("U"), None),
        identify("m10", 60, "U", Some("A"), None), // a repeated identify *after* everything
    ];
    let ids = [
        id(IdKind::AnonymousId, "A"),
        id(IdKind::AnonymousId, "B"),
        id(IdKind::AnonymousId, "C"),
        id(IdKind::AnonymousId, "D"),
        id(IdKind::UserId, "U"),
        id(IdKind::Email, "ann@example.com"),
    ];
    let one = set(&[&[
        "user_id:U",
        "email:ann@example.com",
        "anonymous_id:A",
        "anonymous_id:B",
        "anonymous_id:C",
        "anonymous_id:D",
    ]]);
    check_all_orders(&events, &ids, &one);

    let g = graph_in_order(&events, &Splits::default());
    let p = g.find(&id(IdKind::UserId, "U")).unwrap();
    // Each link names the message that made it, and the earliest one wins: A–U is m2, not m10.
    let merges = g.merges(p);
    assert_eq!(merges.len(), 5, "{merges:?}");
    let a_u = merges
        .iter()
        .find(|m| m.b == id(IdKind::AnonymousId, "A"))
        .unwrap();
    assert_eq!(a_u.message_id, "m2");
    let e_c = merges
        .iter()
        .find(|m| m.b == id(IdKind::AnonymousId, "C"))
        .unwrap();
    assert_eq!(
        (e_c.a.clone(), e_c.message_id.as_str()),
        (id(IdKind::Email, "ann@example.com"), "m6")
    );
    assert!(merges.iter().any(|m| m.message_id == "m7"), "alias merge");
    assert!(g.conflicts(p).is_empty());
    // All five raw customer ids of the store are keys of the one profile.
    assert_eq!(g.keys(p).len(), 5);
    assert_eq!(g.profile_map().multi_key_profiles(), 1);
}

#[test]
fn a_second_user_id_is_not_merged_and_the_conflict_shows() {
    let events = vec![
        track("m1", "page_view", 1, None, Some("A")),
        identify("m2", 2, "U1", Some("A"), None),
        identify("m3", 3, "U2", Some("A"), None), // a shared device: another user logs in
        track("m4", "purchase", 4, Some("U2"), None),
    ];
    let ids = [
        id(IdKind::AnonymousId, "A"),
        id(IdKind::UserId, "U1"),
        id(IdKind::UserId, "U2"),
    ];
    // The earlier identify wins whatever the arrival order.
    let expected = set(&[&["user_id:U1", "anonymous_id:A"], &["user_id:U2"]]);
    check_all_orders(&events, &ids, &expected);

    for order in orders(events.len()) {
        let shuffled: Vec<Event> = order.iter().map(|&i| events[i].clone()).collect();
        let g = graph_in_order(&shuffled, &Splits::default());
        let u1 = g.find(&id(IdKind::UserId, "U1")).unwrap();
        let u2 = g.find(&id(IdKind::UserId, "U2")).unwrap();
        let c1 = g.conflicts(u1);
        assert_eq!(c1.len(), 1, "{c1:?}");
        assert_eq!(c1[0].ours, id(IdKind::AnonymousId, "A"));
        assert_eq!(c1[0].theirs, id(IdKind::UserId, "U2"));
        assert_eq!(c1[0].message_id, "m3");
        assert_eq!(c1[0].reason, "limit:user_id=1");
        let c2 = g.conflicts(u2);
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].ours, id(IdKind::UserId, "U2"));
    }
}

#[test]
fn a_link_sent_again_and_again_is_one_merge_or_one_conflict_with_its_earliest_message() {
    // U2 logs in on A's device three times (m5 is the earliest), U1 twice: every arrival
    // order gives one merge of A with U1 (from m2) and one conflict with U2 (from m5).
    let events = [
        identify("m2", 2, "U1", Some("A"), None),
        identify("m3", 3, "U1", Some("A"), None),
        identify("m6", 6, "U2", Some("A"), None),
        identify("m5", 5, "U2", Some("A"), None),
        identify("m7", 7, "U2", Some("A"), None),
    ];
    for order in orders(events.len()) {
        let shuffled: Vec<Event> = order.iter().map(|&i| events[i].clone()).collect();
        let g = graph_in_order(&shuffled, &Splits::default());
        assert_eq!(g.merge_count(), 1, "order {order:?}");
        assert_eq!(g.conflict_count(), 1, "order {order:?}");
        let u1 = g.find(&id(IdKind::UserId, "U1")).unwrap();
        assert_eq!(g.find(&id(IdKind::AnonymousId, "A")), Some(u1));
        let c = g.conflicts(u1);
        assert_eq!(c.len(), 1, "order {order:?}: {c:?}");
        assert_eq!(c[0].theirs, id(IdKind::UserId, "U2"));
        assert_eq!(c[0].message_id, "m5", "order {order:?}");
        let merges = g.merges(u1);
        assert_eq!(merges.len(), 1, "order {order:?}: {merges:?}");
        assert_eq!(merges[0].message_id, "m2", "order {order:?}");
    }
}

#[test]
fn alias_between_two_user_ids_is_a_conflict_too() {
    // Two identified users stay apart unless the limit is raised: the same rule as identify.
    let events = vec![
        track("m1", "a", 1, Some("old"), None),
        alias("m2", 2, "old", "new"),
    ];
    let g = graph_in_order(&events, &Splits::default());
    let p = g.find(&id(IdKind::UserId, "new")).unwrap();
    assert_eq!(g.identifiers(p), vec![id(IdKind::UserId, "new")]);
    assert_eq!(g.conflicts(p)[0].theirs, id(IdKind::UserId, "old"));
}

#[test]
fn placeholder_ids_never_merge_anyone() {
    let events = vec![
        identify("m1", 1, "U1", Some("anonymous"), None),
        identify("m2", 2, "U2", Some("anonymous"), None),
        identify("m3", 3, "U3", Some("A3"), Some(r#"{"email":"null"}"#)),
        identify("m4", 4, "U4", Some("A4"), Some(r#"{"email":"null"}"#)),
    ];
    let g = graph_in_order(&events, &Splits::default());
    for u in ["U1", "U2", "U3", "U4"] {
        let p = g.find(&id(IdKind::UserId, u)).unwrap();
        assert!(g.identifiers(p).len() <= 2, "{u}: {:?}", g.identifiers(p));
        assert!(g.conflicts(p).is_empty());
    }
}

#[test]
fn phones_device_ids_and_external_ids_link_profiles() {
    let config = Config {
        external_ids: vec!["crm_id".into()],
        phone_country_code: "49".into(),
        ..Config::default()
    };
    let mut b = GraphBuilder::new(config);
    b.add(
        Some(0),
        &identify(
            "m1",
            1,
            "U",
            None,
            Some(r#"{"phone":"030 1234567","crm_id":"C-7"}"#),
        ),
    );
    b.add(
        Some(1),
        &Event {
            context: Some(
                r#"{"device":{"id":"dev-9"},"traits":{"phone":"+49 30 1234567"}}"#.into(),
            ),
            ..track("m2", "app_open", 2, None, Some("A"))
        },
    );
    b.add(
        Some(2),
        &Event {
            context: Some(
                r#"{"device":{"id":"dev-9"},"externalIds":[{"id":"C-7","type":"crm_id","collection":"users","encoding":"none"}]}"#
                    .into(),
            ),
            ..track("m3", "call", 3, None, Some("B"))
        },
    );
    let g = b.finish(&Splits::default());
    let p = g.lookup("+49301234567").unwrap();
    assert_eq!(g.lookup("crm_id:C-7"), Some(p));
    assert_eq!(g.lookup("device_id:dev-9"), Some(p));
    assert_eq!(g.lookup("B"), Some(p));
    assert_eq!(g.keys(p), vec![0, 1, 2]);
}

#[test]
fn an_operator_split_detaches_an_identifier_and_can_be_undone() {
    let events = vec![
        track("m1", "page_view", 1, None, Some("shared-device")),
        identify("m2", 2, "U1", Some("shared-device"), None),
        identify("m3", 3, "U1", Some("A1"), None),
    ];
    let mut splits = Splits::default();
    let shared = id(IdKind::AnonymousId, "shared-device");
    splits.detach(Detached {
        identifier: shared.clone(),
        reason: Some("shared kiosk".into()),
        at: None,
    });
    let g = graph_in_order(&events, &splits);
    let p = g.find(&shared).unwrap();
    assert_eq!(g.identifiers(p), vec![shared.clone()]);
    assert_eq!(g.conflicts(p)[0].reason, "split");
    let u = g.find(&id(IdKind::UserId, "U1")).unwrap();
    assert_eq!(g.identifiers(u).len(), 2);

    assert!(splits.reattach(&shared));
    let g = graph_in_order(&events, &splits);
    assert_eq!(
        g.find(&shared),
        g.find(&id(IdKind::UserId, "U1")),
        "undoing the split merges again"
    );

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Splits::load(dir.path()).unwrap(), Splits::default());
    splits.detach(Detached {
        identifier: shared,
        reason: None,
        at: Some("2026-11-29T18:00:00Z".into()),
    });
    splits.save(dir.path()).unwrap();
    assert_eq!(Splits::load(dir.path()).unwrap(), splits);
}

// ---- over a real store -------------------------------------------------------------------

/// The journey of the funnel tests: anonymous browsing, then a purchase once logged in, for
/// `n` customers; one customer in three never logs in.
fn shop(n: usize) -> (Vec<Event>, Vec<Event>) {
    let (mut events, mut identifies) = (Vec::new(), Vec::new());
    for i in 0..n {
        let anon = format!("anon-{i}");
        let user = format!("user-{i}");
        let t = (i as i64) * 100;
        events.push(track(
            &format!("pv-{i}"),
            "page_view",
            t + 1,
            None,
            Some(&anon),
        ));
        events.push(track(
            &format!("pv2-{i}"),
            "page_view",
            t + 2,
            None,
            Some(&anon),
        ));
        if i % 3 == 2 {
            continue;
        }
        let mut buy = track(&format!("buy-{i}"), "purchase", t + 5, Some(&user), None);
        buy.value = Some(10.0 + i as f64);
        buy.channel = "mobile".into();
        events.push(buy);
        identifies.push(identify(
            &format!("id-{i}"),
            t + 4,
            &user,
            Some(&anon),
            Some(&format!(r#"{{"email":"u{i}@example.com"}}"#)),
        ));
    }
    (events, identifies)
}

/// Per profile: did a page_view come before a purchase? Returns (entered, converted).
fn funnel(
    snap: &Snapshot,
    scan: impl FnOnce(&mut dyn FnMut(cairn_store::Customer<'_>)),
) -> (u64, u64) {
    let names = snap.event_names();
    let pv = names
        .iter()
        .position(|n| n == "page_view")
        .map(|i| i as u16);
    let buy = names.iter().position(|n| n == "purchase").map(|i| i as u16);
    let (mut entered, mut converted) = (0, 0);
    scan(&mut |c| {
        let Some(first) = c.names.iter().position(|&n| Some(n) == pv) else {
            return;
        };
        entered += 1;
        if c.names[first..].iter().any(|&n| Some(n) == buy) {
            converted += 1;
        }
    });
    (entered, converted)
}

fn store_with(batches: &[Vec<Event>], streamed: bool) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for b in batches {
        if streamed {
            store.append(b.clone()).unwrap();
        } else {
            let mut txn = store.import().unwrap();
            txn.add(b.clone()).unwrap();
            txn.commit().unwrap();
        }
    }
    let snap = store.snapshot().unwrap();
    (dir, snap)
}

fn stitched_funnel(snap: &Snapshot) -> (u64, u64) {
    let g = cairn_identity::build(snap, &Config::default(), &Splits::default()).unwrap();
    funnel(snap, |f| {
        scan_profiles(snap, g.profile_map(), Columns::ALL, f).unwrap()
    })
}

#[test]
fn funnel_converts_after_stitching_whether_identify_came_first_or_last() {
    let (events, identifies) = shop(30);
    for streamed in [false, true] {
        let (_d1, first) = store_with(&[identifies.clone(), events.clone()], streamed);
        let (_d2, last) = store_with(&[events.clone(), identifies.clone()], streamed);
        // Unstitched, nobody converts: the purchase is filed under another id than the views.
        let raw = funnel(&first, |f| first.scan(Columns::ALL, f).unwrap());
        assert_eq!(raw, (30, 0));
        // Stitched, the 20 who logged in convert, in either arrival order.
        assert_eq!(stitched_funnel(&first), (30, 20), "identify first");
        assert_eq!(stitched_funnel(&last), (30, 20), "identify last");
    }
}

#[test]
fn stitched_scans_merge_by_time_and_parallel_equals_sequential() {
    let (events, identifies) = shop(50);
    // Several segments: stitched profiles are spread over sources and key ranges.
    let (_d, snap) = store_with(
        &[events[..60].to_vec(), identifies, events[60..].to_vec()],
        false,
    );
    let g = cairn_identity::build(&snap, &Config::default(), &Splits::default()).unwrap();
    let mut seq = Vec::new();
    scan_profiles(&snap, g.profile_map(), Columns::ALL, |c| {
        assert!(c.times.windows(2).all(|w| w[0] <= w[1]), "time order");
        assert_eq!(c.len(), c.properties.len());
        seq.push((c.key, c.times.to_vec(), c.names.to_vec(), c.values.len()));
    })
    .unwrap();
    // 50 customers: the 34 who identified are one profile each, of anonymous + user key.
    assert_eq!(seq.len(), 50);
    assert_eq!(seq.iter().filter(|c| c.1.len() == 4).count(), 34);
    let states = scan_profiles_parallel(
        &snap,
        g.profile_map(),
        Columns::ALL,
        2,
        Vec::new,
        |v: &mut Vec<_>, c: Customer<'_>| {
            v.push((c.key, c.times.to_vec(), c.names.to_vec(), c.values.len()))
        },
    )
    .unwrap();
    let mut par: Vec<_> = states.into_iter().flatten().collect();
    par.sort();
    seq.sort();
    assert_eq!(par, seq);

    // Columns not asked for stay empty, as in the store's own scan.
    scan_profiles(
        &snap,
        g.profile_map(),
        Columns {
            names: true,
            ..Columns::default()
        },
        |c| {
            assert!(c.times.is_empty() && c.values.is_empty() && !c.names.is_empty());
        },
    )
    .unwrap();
}

#[test]
fn profile_view_merges_traits_computes_and_tracks_consent() {
    let consent = |ads: bool| {
        Some(format!(
            r#"{{"consent":{{"categoryPreferences":{{"Advertising":{ads},"Analytics":true}}}}}}"#
        ))
    };
    let mut buy = track("m4", "purchase", 40, Some("U"), None);
    buy.value = Some(25.5);
    buy.channel = "mobile".into();
    let events = [
        Event {
            context: consent(true),
            ..track("m1", "page_view", 10, None, Some("A"))
        },
        identify(
            "m2",
            20,
            "U",
            Some("A"),
            Some(r#"{"plan":"free","email":"ann@example.com"}"#),
        ),
        Event {
            context: consent(false),
            ..identify("m3", 30, "U", None, Some(r#"{"plan":"pro"}"#))
        },
        buy,
        Event {
            value: Some(4.5),
            ..track("m5", "page_view", 50, Some("U"), None)
        },
    ];
    let (_d, snap) = store_with(&[events[2..].to_vec(), events[..2].to_vec()], true);
    let g = cairn_identity::build(&snap, &Config::default(), &Splits::default()).unwrap();
    let p = g.lookup("email:ANN@example.com").unwrap();
    let profile = Profile::build(
        &g,
        p,
        &cairn_identity::profile_events(&snap, &g, p).unwrap(),
    );
    assert_eq!(profile.customer_ids, vec!["A", "U"]);
    let plan = &profile.traits["plan"];
    assert_eq!(plan.value, "pro");
    assert_eq!(plan.message_id, "m3");
    assert_eq!(plan.history.len(), 1);
    assert_eq!(plan.history[0].value, "free");
    let c = &profile.computed;
    assert_eq!(
        (c.first_seen, c.last_seen),
        (Some(10 * MIN), Some(50 * MIN))
    );
    assert_eq!(c.event_count, 5);
    assert_eq!(c.total_revenue, 30.0);
    assert_eq!(c.last_channel.as_deref(), Some("web"));
    assert_eq!(c.preferred_channel.as_deref(), Some("web"));
    let ads = &profile.consent["Advertising"];
    assert!(!ads.value);
    assert_eq!(ads.history.len(), 1);
    assert!(ads.history[0].value);
    assert!(profile.consent["Analytics"].value);
    assert_eq!(profile.merges.len(), 2);
    assert_eq!(c.lifecycle_stage, "repeat_customer");
}

#[test]
fn lifecycle_stage_and_last_survey_answers() {
    let survey = |msg: &str, t: i64, survey: &str, score: u32| Event {
        properties: Some(format!(r#"{{"score":{score},"survey":"{survey}"}}"#)),
        ..track(msg, "Survey Answered", t, Some("U"), None)
    };
    let order = |msg: &str, t: i64| Event {
        value: Some(20.0),
        ..track(msg, "Order Completed", t, Some("U"), None)
    };
    let stage_and_answers = |events: &[Event]| {
        let g = graph_in_order(events, &Splits::default());
        let stored: Vec<cairn_store::StoredEvent> = events
            .iter()
            .enumerate()
            .map(|(i, e)| cairn_store::StoredEvent {
                key: 0,
                seq: i as u64,
                event: e.clone(),
            })
            .collect();
        let p = g.lookup(events[0].customer_id()).unwrap();
        let c = Profile::build(&g, p, &stored).computed;
        let score = |a: &Option<cairn_identity::profile::Answer>| a.as_ref().map(|a| a.score);
        (c.lifecycle_stage, score(&c.last_csat), score(&c.last_nps))
    };
    let visitor = [track("v1", "page_view", 1, None, Some("A"))];
    assert_eq!(stage_and_answers(&visitor), ("anonymous", None, None));
    let lead = [
        survey("s1", 1, "csat", 2),
        survey("s2", 3, "nps", 9),
        survey("s3", 2, "csat", 5),
    ];
    // The latest answer by time, not by arrival.
    assert_eq!(stage_and_answers(&lead), ("lead", Some(5.0), Some(9.0)));
    assert_eq!(stage_and_answers(&[order("o1", 1)]).0, "customer");
    let cancelled = [
        order("o1", 1),
        order("o2", 2),
        track("c1", "Subscription Cancelled", 3, Some("U"), None),
    ];
    assert_eq!(stage_and_answers(&cancelled).0, "churned");
    let back = [cancelled.to_vec(), vec![order("o3", 4)]].concat();
    assert_eq!(stage_and_answers(&back).0, "repeat_customer");
}

/// Directly-follows counts (a process map) and variant counts over a scan, by event name.
#[allow(clippy::type_complexity)]
fn process_map_and_variants(
    snap: &Snapshot,
    scan: impl FnOnce(&mut dyn FnMut(cairn_store::Customer<'_>)),
) -> (
    std::collections::BTreeMap<(String, String), u64>,
    std::collections::BTreeMap<Vec<String>, u64>,
) {
    let names = snap.event_names();
    let (mut dfg, mut variants) = (Default::default(), Default::default());
    let (dfg_ref, var_ref): (
        &mut std::collections::BTreeMap<(String, String), u64>,
        &mut std::collections::BTreeMap<Vec<String>, u64>,
    ) = (&mut dfg, &mut variants);
    scan(&mut |c| {
        let seq: Vec<String> = c.names.iter().map(|&n| names[n as usize].clone()).collect();
        for w in seq.windows(2) {
            *dfg_ref.entry((w[0].clone(), w[1].clone())).or_default() += 1;
        }
        *var_ref.entry(seq).or_default() += 1;
    });
    (dfg, variants)
}

#[test]
fn process_map_and_variants_are_equal_whether_identify_came_first_or_last() {
    let (events, identifies) = shop(12);
    let (_d1, first) = store_with(&[identifies.clone(), events.clone()], false);
    let (_d2, last) = store_with(&[events.clone(), identifies], true);
    let stitched = |snap: &Snapshot| {
        let g = cairn_identity::build(snap, &Config::default(), &Splits::default()).unwrap();
        process_map_and_variants(snap, |f| {
            scan_profiles(snap, g.profile_map(), Columns::ALL, f).unwrap()
        })
    };
    let (dfg_first, var_first) = stitched(&first);
    assert_eq!((dfg_first.clone(), var_first.clone()), stitched(&last));
    // The stitched variant of a customer who logged in runs from browsing to the purchase.
    let converted: Vec<String> = ["page_view", "page_view", "identify", "purchase"]
        .map(String::from)
        .to_vec();
    assert_eq!(var_first.get(&converted), Some(&8));
    assert_eq!(
        dfg_first.get(&("identify".into(), "purchase".into())),
        Some(&8)
    );
    // Unstitched, no customer's path leads from a page view to a purchase.
    let (dfg_raw, _) = process_map_and_variants(&first, |f| first.scan(Columns::ALL, f).unwrap());
    assert!(
        !dfg_raw
            .keys()
            .any(|(a, b)| a == "page_view" && b == "identify")
    );
}

#[test]
fn the_profile_map_is_cached_until_the_store_rules_or_splits_change() {
    let (events, identifies) = shop(20);
    let (dir, snap) = store_with(&[events, identifies], false);
    let (config, splits) = (Config::default(), Splits::default());
    let map_of = |snap: &Snapshot, splits: &Splits| {
        let (map, cached) =
            cairn_identity::cache::profile_map(dir.path(), snap, &config, splits).unwrap();
        let reps: Vec<u32> = (0..snap.key_count() as u32)
            .map(|k| map.representative(k))
            .collect();
        (reps, map.multi_key_profiles(), cached)
    };
    let built = cairn_identity::build(&snap, &config, &splits).unwrap();
    let (reps, multi, cached) = map_of(&snap, &splits);
    assert!(!cached);
    assert!(multi > 0);
    assert_eq!(multi, built.profile_map().multi_key_profiles());
    let (again, _, cached) = map_of(&snap, &splits);
    assert!(cached, "the second command reads the map");
    assert_eq!(again, reps);
    // A split, or a commit to the store, makes it stale.
    let mut split = Splits::default();
    let detached = built.identifier("user-0").expect("a user of the shop");
    split.detach(Detached {
        identifier: detached,
        reason: None,
        at: None,
    });
    assert!(!map_of(&snap, &split).2);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut txn = store.import().unwrap();
    txn.add(vec![track("late", "page_view", 99, Some("someone"), None)])
        .unwrap();
    txn.commit().unwrap();
    let (reps2, _, cached) = map_of(&store.snapshot().unwrap(), &splits);
    assert!(!cached);
    assert_eq!(&reps2[..reps.len()], &reps[..]);
}
