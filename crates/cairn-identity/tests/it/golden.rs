//! The graph's public outputs on pseudo-random event sets, pinned: every profile's identifiers,
//! merges (with their messages), conflicts, store keys and stitched-scan groups, and what each
//! identifier looks up to. Resolution is rewritten for speed from time to time; its outputs must
//! not move by a byte. The digests below were taken from the implementation of commit 3198928
//! (before session 9's resolution rewrite); a change in behaviour must change them on purpose.
//!
//! The events cover what resolution distinguishes: identifies, tracks and aliases (previous id
//! a user id, an anonymous id, unknown or blocked), e-mails, phones, device and external ids in
//! traits and context, blocked placeholders, a user-id limit reached, equal times (ties broken
//! by message hash and text), one message linking several ids, runs of the same pair, store keys
//! sent once as user id and once as anonymous id, and operator splits.

use std::collections::HashMap;
use std::fmt::Write;

use cairn_identity::{
    Config, Detached, GraphBuilder, IdKind, Identifier, IdentityGraph, Splits, extract,
};
use cairn_model::{Event, EventKind};
use xxhash_rust::xxh3::xxh3_64;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn events(seed: u64, n: usize, people: u64) -> Vec<Event> {
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = r.below(people);
        let q = r.below(people);
        let user = |r: &mut Rng| match r.below(10) {
            // A second user id for some people: the limit refuses it.
            0 => format!("u-{p}-b"),
            1 => "null".to_string(),
            _ => format!("u-{p}"),
        };
        let anon = |r: &mut Rng| format!("a-{}-{}", p, r.below(4));
        let kind = match r.below(10) {
            0..=3 => EventKind::Identify,
            4..=7 => EventKind::Track,
            _ => EventKind::Alias,
        };
        let (user_id, anonymous_id) = match kind {
            EventKind::Track => match r.below(3) {
                0 => (Some(user(&mut r)), Some(anon(&mut r))),
                1 => (None, Some(anon(&mut r))),
                _ => (Some(user(&mut r)), None),
            },
            EventKind::Alias => (Some(user(&mut r)), None),
            _ => (Some(user(&mut r)), (r.below(4) > 0).then(|| anon(&mut r))),
        };
        let previous_id = (kind == EventKind::Alias).then(|| match r.below(5) {
            0 => format!("u-{q}"),
            1 => format!("a-{q}-{}", r.below(4)),
            2 => "undefined".to_string(),
            // The raw id of a store key sent as both kinds.
            3 => format!("both-{}", q % 7),
            _ => format!("never-seen-{q}"),
        });
        let traits = match r.below(6) {
            0 => Some(format!(
                r#"{{"email":" Person{q}@Example.COM ","name":"x"}}"#
            )),
            1 => Some(format!(r#"{{"phone":"(415) 555-{:04}"}}"#, q % 50)),
            // Mostly one per person, now and then shared by a few.
            2 => Some(format!(r#"{{"crm_id":{}}}"#, p / 4 + r.below(2) * 1000)),
            _ => None,
        };
        let context = match r.below(6) {
            0 => Some(format!(r#"{{"device":{{"id":"dev-{}"}}}}"#, q % 30)),
            1 => Some(format!(
                r#"{{"externalIds":[{{"id":"L{p}","type":"loyalty_id"}},{{"id":"e{q}@x.io","type":"email"}}]}}"#
            )),
            2 => Some(format!(r#"{{"traits":{{"email":"p{p}@x.io"}}}}"#)),
            _ => None,
        };
        // Few distinct times: many ties, broken by message hash and text.
        let timestamp = r.below(n as u64 / 8 + 1) as i64 * 1_000;
        // Now and then the same message again, or a customer's run of events.
        let message_id = if r.below(20) == 0 && i > 0 {
            format!("m-{}", i - 1)
        } else {
            format!("m-{i}")
        };
        let e = Event {
            message_id,
            kind,
            event: kind.as_str().to_string(),
            user_id,
            anonymous_id,
            timestamp,
            sent_at: None,
            received_at: None,
            channel: "web".into(),
            value: None,
            group_id: None,
            previous_id,
            properties: None,
            traits,
            context,
        };
        if r.below(8) == 0 {
            out.push(e.clone());
        }
        // A raw id sent once as a user id and once as an anonymous id: one store key.
        if r.below(30) == 0 {
            let raw = format!("both-{}", p % 7);
            let mut as_user = e.clone();
            as_user.user_id = Some(raw.clone());
            out.push(as_user);
            let mut as_anon = e.clone();
            as_anon.user_id = None;
            as_anon.anonymous_id = Some(raw);
            out.push(as_anon);
        }
        out.push(e);
    }
    out
}

fn config() -> Config {
    Config {
        external_ids: vec!["crm_id".into(), "loyalty_id".into()],
        limits: vec![(IdKind::UserId, 1), (IdKind::Email, 2)],
        max_identifiers: 12,
        ..Config::default()
    }
}

/// The store's customer keys: raw ids numbered in order of first appearance in `events`.
fn keys(events: &[Event]) -> HashMap<String, u32> {
    let mut keys = HashMap::new();
    for e in events {
        let next = keys.len() as u32;
        keys.entry(e.customer_id().to_string()).or_insert(next);
    }
    keys
}

/// Builds with every event's store key, as a scan of the store gives them.
fn build(events: &[Event], keys: &HashMap<String, u32>, splits: &Splits) -> IdentityGraph {
    let mut b = GraphBuilder::new(config());
    for e in events {
        b.add(Some(keys[e.customer_id()]), e);
    }
    b.finish(splits)
}

/// Everything the graph shows, as text: per profile (in the order of its first identifier
/// met in `events`) its identifiers, merges, conflicts and keys; counts; the stitched-scan group
/// of every key; and the lookups of typed texts.
fn dump(g: &IdentityGraph, events: &[Event]) -> String {
    let mut out = String::new();
    let (mut ids, mut of_event) = (Vec::new(), Vec::new());
    for e in events {
        of_event.clear();
        extract::identifiers(e, g.config(), &mut of_event);
        ids.append(&mut of_event);
        if let Some(p) = &e.previous_id {
            ids.push(Identifier::new(IdKind::UserId, p.clone()));
            ids.push(Identifier::new(IdKind::AnonymousId, p.clone()));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    writeln!(
        out,
        "profiles {} identifiers {} merges {} conflicts {}",
        g.profile_count(),
        g.identifier_count(),
        g.merge_count(),
        g.conflict_count()
    )
    .unwrap();
    for id in &ids {
        let Some(p) = g.find(id) else {
            writeln!(out, "unknown {id}").unwrap();
            continue;
        };
        if !seen.insert(p) {
            continue;
        }
        writeln!(out, "profile of {id}").unwrap();
        for i in g.identifiers(p) {
            writeln!(out, "  id {i}").unwrap();
        }
        for m in g.merges(p) {
            writeln!(
                out,
                "  merge {} {} {} {}",
                m.a, m.b, m.message_id, m.timestamp
            )
            .unwrap();
        }
        for c in g.conflicts(p) {
            writeln!(
                out,
                "  conflict {} {} {} {} {}",
                c.ours, c.theirs, c.message_id, c.timestamp, c.reason
            )
            .unwrap();
        }
        writeln!(out, "  keys {:?}", g.keys(p)).unwrap();
    }
    let map = g.profile_map();
    for key in 0..events.len() as u32 {
        if let Some(p) = g.profile_of_key(key) {
            let first = g.identifiers(p).into_iter().next();
            let group = map.group(key).map(|(rep, keys)| (rep, keys.to_vec()));
            writeln!(out, "key {key} {first:?} {group:?}").unwrap();
        }
    }
    writeln!(out, "multi-key {}", map.multi_key_profiles()).unwrap();
    for text in [
        "u-3",
        "a-3-1",
        "email:person5@example.com",
        "L7",
        "7",
        "dev-2",
        "nope",
    ] {
        let p = g.lookup(text).map(|p| g.identifiers(p));
        writeln!(out, "lookup {text} {:?} {p:?}", g.identifier(text)).unwrap();
    }
    out
}

/// The dump's first line (the counts), its length and its xxh3.
fn digest_of(seed: u64, n: usize, people: u64, split: bool) -> (String, usize, u64) {
    let events = events(seed, n, people);
    let mut splits = Splits::default();
    if split {
        for id in [
            Identifier::new(IdKind::AnonymousId, "a-1-1"),
            Identifier::new(IdKind::UserId, "u-2"),
            Identifier::new(IdKind::DeviceId, "dev-3"),
        ] {
            splits.detach(Detached {
                identifier: id,
                reason: None,
                at: None,
            });
        }
    }
    let keys = keys(&events);
    let text = dump(&build(&events, &keys, &splits), &events);
    // The same events in another order give the same graph.
    let mut reversed = events.clone();
    reversed.reverse();
    assert!(
        dump(&build(&reversed, &keys, &splits), &events) == text,
        "seed {seed}: order changed the graph"
    );
    let counts = text.lines().next().unwrap_or_default().to_string();
    (counts, text.len(), xxh3_64(text.as_bytes()))
}

#[test]
fn small_graphs_resolve_as_pinned() {
    let got: Vec<(String, usize, u64)> = [
        (1, 40, 6, false),
        (2, 300, 40, false),
        (3, 300, 40, true),
        (4, 2_000, 150, true),
        (5, 2_000, 1_500, false),
    ]
    .iter()
    .map(|&(seed, n, people, split)| digest_of(seed, n, people, split))
    .collect();
    let want = [
        (
            "profiles 14 identifiers 59 merges 45 conflicts 13",
            8531,
            1927238568037355018,
        ),
        (
            "profiles 95 identifiers 394 merges 295 conflicts 194",
            65423,
            13579632700441628032,
        ),
        (
            "profiles 89 identifiers 368 merges 275 conflicts 170",
            61967,
            10801558659605116261,
        ),
        (
            "profiles 345 identifiers 1519 merges 1167 conflicts 1631",
            401590,
            9556270743812697582,
        ),
        (
            "profiles 1318 identifiers 3853 merges 2528 conflicts 909",
            521346,
            9438664357432816088,
        ),
    ]
    .map(|(c, len, hash)| (c.to_string(), len, hash));
    assert_eq!(got, want.to_vec());
}

#[test]
fn a_graph_past_the_two_thread_size_resolves_as_pinned() {
    // Over 65,536 sightings and edges: the sorts and fills run on two threads.
    let got = digest_of(6, 50_000, 12_000, true);
    let want = "profiles 20699 identifiers 66699 merges 45993 conflicts 35749";
    assert_eq!(got, (want.to_string(), 12714426, 7290129075432965317));
}
