//! Integration tests of cairn-generate: determinism, realism, and the three file formats.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use cairn_generate::{GenerateOptions, OutputFormat, generate, write_file};
use cairn_model::{Event, EventKind, MessageDefaults, parse_message};

fn options(customers: u64, seed: u64) -> GenerateOptions {
    GenerateOptions { customers, seed }
}

fn all_events(opts: &GenerateOptions) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    generate(opts, |events| out.push(events.to_vec()));
    out
}

fn write(dir: &Path, name: &str, opts: &GenerateOptions) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let summary = write_file(opts, &path, |_| {}).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.customers, opts.customers);
    (path, bytes)
}

const START: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z in microseconds
const END: i64 = START + 180 * 86_400_000_000;

#[test]
fn same_seed_same_bytes_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.jsonl", "a.csv", "a.parquet"] {
        let (_, first) = write(dir.path(), name, &options(300, 42));
        let (_, again) = write(dir.path(), &format!("again-{name}"), &options(300, 42));
        assert!(first == again, "{name}: same options gave different files");
        let (_, other) = write(dir.path(), &format!("other-{name}"), &options(300, 43));
        assert!(first != other, "{name}: another seed gave the same file");
    }
}

#[test]
fn a_customer_does_not_depend_on_the_population_size() {
    let small = all_events(&options(50, 7));
    let large = all_events(&options(200, 7));
    assert_eq!(small[..], large[..50]);
}

#[test]
fn output_is_pinned() {
    // Generated files must never change for a given seed, on any machine: a change to the
    // simulation or the text formats must be deliberate, and update these fingerprints.
    // (Parquet is pinned only within a build: its bytes also depend on the parquet and zstd
    // crates' versions.)
    let dir = tempfile::tempdir().unwrap();
    let fingerprint = |name: &str| {
        let (_, bytes) = write(dir.path(), name, &options(200, 1));
        // FNV-1a: simple enough to never change under us.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    };
    let got = [fingerprint("pin.jsonl"), fingerprint("pin.csv")];
    assert_eq!(got, PINNED, "{got:?}");
}
const PINNED: [&str; 2] = ["ee3d37f9d50bd358", "77680142023076cf"];

#[test]
fn about_twelve_events_per_customer() {
    let customers = all_events(&options(2000, 1));
    let events: usize = customers.iter().map(Vec::len).sum();
    let mean = events as f64 / customers.len() as f64;
    eprintln!("mean events per customer: {mean:.2}");
    assert!((10.0..=14.0).contains(&mean), "mean {mean}");
    assert!(customers.iter().all(|c| !c.is_empty()));
}

#[test]
fn events_are_valid_unique_ordered_and_in_the_window() {
    let customers = all_events(&options(2000, 3));
    let mut ids = HashSet::new();
    for events in &customers {
        let mut customer = None;
        for pair in events.windows(2) {
            assert!(pair[0].timestamp <= pair[1].timestamp, "{pair:?}");
        }
        for e in events {
            assert!(
                ids.insert(e.message_id.clone()),
                "duplicate id {}",
                e.message_id
            );
            assert!((START..END).contains(&e.timestamp), "{e:?}");
            assert_eq!(e.timestamp % 1000, 0, "whole milliseconds");
            assert!(e.user_id.is_some() || e.anonymous_id.is_some());
            let key = (e.user_id.clone(), e.anonymous_id.clone());
            // One customer, one user id and at most one anonymous id.
            let (user, anon) = customer.get_or_insert((None, None));
            if let Some(u) = key.0 {
                assert!(user.get_or_insert(u.clone()) == &u);
            }
            if let Some(a) = key.1 {
                assert!(anon.get_or_insert(a.clone()) == &a);
            }
            for json in [&e.properties, &e.traits].into_iter().flatten() {
                let v: serde_json::Value = serde_json::from_str(json).unwrap();
                assert!(v.is_object());
            }
        }
    }
}

#[test]
fn journeys_have_every_channel_and_outcome() {
    let customers = all_events(&options(2000, 5));
    let mut channels = BTreeMap::new();
    let mut names = BTreeMap::new();
    let (mut buyers, mut identified, mut refunds, mut abandoned) = (0, 0, 0, 0);
    let (mut csat, mut nps) = (Vec::new(), Vec::new());
    for events in &customers {
        let has = |name: &str| events.iter().any(|e| e.event == name);
        for e in events {
            *channels.entry(e.channel.as_str()).or_insert(0) += 1;
            *names.entry(e.event.as_str()).or_insert(0) += 1;
            let props: serde_json::Value =
                serde_json::from_str(e.properties.as_deref().unwrap_or("{}")).unwrap();
            match e.event.as_str() {
                "Order Completed" => assert!(e.value.unwrap() > 0.0, "{e:?}"),
                "Order Refunded" => {
                    assert!(e.value.unwrap() < 0.0, "{e:?}");
                    refunds += 1;
                }
                "Survey Answered" => {
                    let score = props["score"].as_i64().unwrap();
                    match props["survey"].as_str().unwrap() {
                        "csat" => csat.push(score),
                        "nps" => nps.push(score),
                        other => panic!("survey {other}"),
                    }
                }
                "Store Visit" | "Support Call" => {
                    let hour = e.timestamp.rem_euclid(86_400_000_000) / 3_600_000_000;
                    assert!((8..20).contains(&hour), "closed at {hour}h: {e:?}");
                }
                "identify" => {
                    assert!(e.user_id.is_some() && e.anonymous_id.is_some(), "{e:?}");
                    assert!(e.traits.as_deref().unwrap().contains("\"email\""));
                }
                _ => assert!(e.value.is_none(), "{e:?}"),
            }
        }
        buyers += has("Order Completed") as u32;
        identified += has("identify") as u32;
        abandoned += (has("Checkout Started") && !has("Order Completed")) as u32;
    }
    eprintln!("channels: {channels:?}");
    eprintln!("events: {names:?}");
    eprintln!("buyers {buyers}, identified {identified}, refunds {refunds}, abandoned {abandoned}");
    for ch in [
        "ads",
        "web",
        "mobile",
        "email",
        "sms",
        "push",
        "call_center",
        "store",
    ] {
        assert!(channels.contains_key(ch), "no {ch} events");
    }
    assert!(
        (10..=25).contains(&names.len()),
        "{} event names",
        names.len()
    );
    for name in [
        "Subscription Cancelled",
        "Product Removed",
        "Signed Up",
        "Support Call",
    ] {
        assert!(names.contains_key(name), "no {name}");
    }
    // Drop-offs everywhere, but a real business underneath.
    let n = customers.len() as u32;
    assert!(buyers > n / 4 && buyers < n * 3 / 4, "{buyers} buyers");
    assert!(
        identified > n / 4 && identified < n * 35 / 100,
        "{identified}"
    );
    assert!(refunds > 0 && abandoned > 0);
    let anonymous_only = customers
        .iter()
        .filter(|c| c.iter().all(|e| e.user_id.is_none()))
        .count();
    assert!(anonymous_only > 0);
    assert!(csat.iter().all(|s| (1..=5).contains(s)) && csat.len() > 50);
    assert!(nps.iter().all(|s| (0..=10).contains(s)) && nps.len() > 50);
    assert!(nps.iter().any(|&s| s <= 6) && nps.iter().any(|&s| s >= 9));
}

#[test]
fn jsonl_lines_parse_into_the_same_events() {
    let opts = options(500, 9);
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = write(dir.path(), "events.jsonl", &opts);
    let expected: Vec<Event> = all_events(&opts).into_iter().flatten().collect();
    let text = std::str::from_utf8(&bytes).unwrap();
    let mut lines = 0;
    for (line, want) in text.lines().zip(&expected) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let got = parse_message(&value, &MessageDefaults::default())
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&got, want, "{line}");
        assert!(line.contains(".000Z") || line.contains("Z\""));
        lines += 1;
    }
    assert_eq!(lines, expected.len());
    assert_eq!(text.lines().count(), expected.len());
}

#[test]
fn csv_rows_carry_the_same_events() {
    let opts = options(500, 11);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), "events.csv", &opts);
    let expected: Vec<Event> = all_events(&opts).into_iter().flatten().collect();
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header.join(","),
        "message_id,type,customer_id,anonymous_id,event,timestamp,channel,value,product,campaign,score"
    );
    let mut rows = 0;
    for (row, want) in reader.records().zip(&expected) {
        let row = row.unwrap();
        let props: serde_json::Value =
            serde_json::from_str(want.properties.as_deref().unwrap_or("{}")).unwrap();
        let prop = |key: &str| match &props[key] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        assert_eq!(&row[0], want.message_id);
        assert_eq!(EventKind::parse(&row[1]), Some(want.kind));
        assert_eq!(&row[2], want.customer_id());
        let anon = if want.user_id.is_some() {
            want.anonymous_id.as_deref().unwrap_or("")
        } else {
            ""
        };
        assert_eq!(&row[3], anon);
        assert_eq!(&row[4], want.event);
        assert_eq!(
            cairn_model::parse_timestamp(&row[5]).unwrap(),
            want.timestamp
        );
        assert_eq!(&row[6], want.channel);
        assert_eq!(row[7].parse::<f64>().ok(), want.value);
        assert_eq!(&row[8], prop("product"));
        assert_eq!(&row[9], prop("campaign"));
        assert_eq!(&row[10], prop("score"));
        rows += 1;
    }
    assert_eq!(rows, expected.len());
}

#[test]
fn parquet_rows_carry_the_same_events() {
    use arrow_array::{Array, Float64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let opts = options(500, 13);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), "events.parquet", &opts);
    let expected: Vec<Event> = all_events(&opts).into_iter().flatten().collect();
    let file = std::fs::File::open(&path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut i = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let opt = |a: &StringArray, row: usize| a.is_valid(row).then(|| a.value(row).to_string());
        let (ids, kinds, events) = (text("message_id"), text("type"), text("event"));
        let (users, anons, channels) = (text("user_id"), text("anonymous_id"), text("channel"));
        let (props, traits) = (text("properties"), text("traits"));
        let times = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap()
            .clone();
        assert_eq!(times.timezone(), Some("UTC"));
        let values = batch
            .column_by_name("value")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone();
        for row in 0..batch.num_rows() {
            let want = &expected[i];
            assert_eq!(ids.value(row), want.message_id);
            assert_eq!(kinds.value(row), want.kind.as_str());
            assert_eq!(events.value(row), want.event);
            assert_eq!(opt(&users, row), want.user_id);
            assert_eq!(opt(&anons, row), want.anonymous_id);
            assert_eq!(times.value(row), want.timestamp);
            assert_eq!(channels.value(row), want.channel);
            assert_eq!(values.is_valid(row).then(|| values.value(row)), want.value);
            assert_eq!(opt(&props, row), want.properties);
            assert_eq!(opt(&traits, row), want.traits);
            i += 1;
        }
    }
    assert_eq!(i, expected.len());
}

#[test]
fn reports_progress_and_rejects_unknown_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let summary = write_file(&options(10_000, 1), &dir.path().join("p.csv"), |n| {
        seen.push(n)
    })
    .unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&10_000));
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(summary.events > 100_000);
    for name in ["empty.jsonl", "empty.csv", "empty.parquet"] {
        let summary = write_file(&options(0, 1), &dir.path().join(name), |_| {}).unwrap();
        assert_eq!((summary.customers, summary.events), (0, 0), "{name}");
    }
    let file = std::fs::File::open(dir.path().join("empty.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 0);
    let err = write_file(&options(1, 1), &dir.path().join("x.txt"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("unknown output format"), "{err}");
    let err = write_file(&options(1, 1), &dir.path().join("no/such/dir.csv"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("no/such/dir.csv"), "{err}");
    assert_eq!(
        OutputFormat::from_path(Path::new("x.parquet")),
        Some(OutputFormat::Parquet)
    );
}

#[test]
#[ignore = "writes about 12M events per format to /tmp; run with --release -- --ignored --nocapture"]
fn speed_one_million_customers() {
    let opts = options(1_000_000, 1);
    // CAIRN_SPEED_ONLY=csv runs one format; CAIRN_SPEED_DIR picks where the files go.
    let only = std::env::var("CAIRN_SPEED_ONLY").unwrap_or_default();
    for name in [
        "cairn-speed.jsonl",
        "cairn-speed.csv",
        "cairn-speed.parquet",
    ] {
        if !name.ends_with(only.as_str()) {
            continue;
        }
        let dir =
            std::env::var_os("CAIRN_SPEED_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let path = dir.join(name);
        let started = std::time::Instant::now();
        let summary = write_file(&opts, &path, |_| {}).unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {} events ({:.2} per customer) in {secs:.2} s = {:.0} events/s, {:.1} MB",
            summary.events,
            summary.events as f64 / opts.customers as f64,
            summary.events as f64 / secs,
            summary.bytes as f64 / 1e6
        );
        if std::env::var_os("CAIRN_SPEED_KEEP").is_none() {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let started = std::time::Instant::now();
    let mut events = 0u64;
    cairn_generate::generate_journeys(&opts, |j| events += j.records.len() as u64);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulation only: {events} events in {secs:.2} s = {:.0} events/s",
        events as f64 / secs
    );
}
