//! Format details on small fixtures: gzip, delimiters, mappings, ids, XES attribute types,
//! JSONL and Parquet.

use std::io::Write as _;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, types::Int32Type,
};
use arrow_schema::{Field, Schema};
use cairn_import::{CsvMapping, ImportOptions, open};
use cairn_model::{EventKind, parse_timestamp};
use parquet::arrow::ArrowWriter;

use crate::{read, write};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn json(text: &Option<String>) -> serde_json::Value {
    serde_json::from_str(text.as_deref().expect("some JSON")).unwrap()
}

#[test]
fn csv_gzip_by_name_and_by_magic() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"customer_id,event,timestamp\nc1,view,2024-01-01T00:00:00Z\n";
    for name in ["a.csv.gz", "gzipped-but-named.csv"] {
        let path = write(dir.path(), name, gzip(text));
        let (events, errors) = read(&path, &ImportOptions::default());
        assert!(errors.is_empty(), "{name}");
        assert_eq!(events.len(), 1, "{name}");
        assert_eq!(events[0].event, "view");
    }
}

#[test]
fn csv_columns_mapping_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "m.csv",
        "\u{feff}who;what;when;Channel;amount;note;case:tier\n\
         c1;buy;1700000000;Call Center;19.5;first;gold\n\
         c1;buy;1700000000;;;;gold\n\
         c1;buy;1700000000;;;\"a;b\";gold\n",
    );
    let options = ImportOptions {
        mapping: CsvMapping {
            customer: Some("who".into()),
            event: Some("what".into()),
            time: Some("when".into()),
            ..Default::default()
        },
        default_channel: Some("web".into()),
    };
    let (events, errors) = read(&path, &options);
    assert!(errors.is_empty(), "{}", errors[0]);
    assert_eq!(events.len(), 3);
    let e = &events[0];
    assert_eq!(e.user_id.as_deref(), Some("c1"));
    assert_eq!(
        e.timestamp,
        parse_timestamp("2023-11-14T22:13:20Z").unwrap()
    );
    assert_eq!(e.channel, "call_center");
    assert_eq!(e.value, Some(19.5));
    assert_eq!(e.properties.as_deref(), Some(r#"{"note":"first"}"#));
    assert_eq!(e.traits.as_deref(), Some(r#"{"tier":"gold"}"#));
    assert_eq!(events[1].channel, "web");
    assert_eq!(events[1].properties, None);
    assert_eq!(events[2].properties.as_deref(), Some(r#"{"note":"a;b"}"#));
    // Three identical (customer, event, time) rows: three distinct ids, the same on re-read.
    let ids: Vec<_> = events.iter().map(|e| e.message_id.clone()).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert!(ids.iter().all(|id| id.starts_with("csv-")));
    let (again, _) = read(&path, &options);
    assert_eq!(
        ids,
        again
            .iter()
            .map(|e| e.message_id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ids[1],
        cairn_model::derive_message_id(
            "csv",
            &[
                b"c1",
                b"buy",
                1_700_000_000_000_000i64.to_string().as_bytes(),
                b"1"
            ]
        )
    );
}

#[test]
fn csv_message_id_column_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "ids.csv",
        "message_id,user_id,event,ts\nm-1,u,a,2024-01-01\n,u,a,2024-01-01\n",
    );
    let (events, _) = read(&path, &ImportOptions::default());
    assert_eq!(events[0].message_id, "m-1");
    assert!(events[1].message_id.starts_with("csv-"));
}

#[test]
fn csv_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("customer_id,event,timestamp\n");
    for i in 0..25 {
        text.push_str(&format!("c{},e,2024-01-01T00:00:{:02}Z\n", i % 4, i));
    }
    let path = write(dir.path(), "c.csv", &text);
    let mut source = open(&path, &ImportOptions::default()).unwrap();
    let mut sizes = Vec::new();
    while let Some(chunk) = source.next_chunk(10).unwrap() {
        sizes.push(chunk.len());
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(source.progress(), (text.len() as u64, text.len() as u64));
}

#[test]
fn xes_attribute_types_channels_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let xes = r#"<?xml version="1.0" encoding="UTF-8"?>
<log xmlns="http://www.xes-standard.org/">
  <string key="concept:name" value="the log"/>
  <trace>
    <string key="concept:name" value="Ann &amp; Bob"/>
    <string key="channel" value="Store"/>
    <int key="age" value="42"><string key="unit" value="years"/></int>
    <event>
      <string key="concept:name" value="buy"/>
      <date key="time:timestamp" value="2024-01-01T10:00:00.000+01:00"/>
      <float key="amount" value="5"/>
      <float key="revenue" value="7.25"/>
      <boolean key="gift" value="true"/>
      <id key="ref" value="x-1"/>
      <list key="items"><values><string key="item" value="a"/></values></list>
      <container key="addr"><string key="city" value="Rome"/></container>
    </event>
    <event>
      <string key="concept:name" value="call"/>
      <date key="time:timestamp" value="2024-01-02T00:00:00Z"/>
      <string key="channel" value="Call-Center"/>
    </event>
    <event>
      <string key="concept:name" value="call"/>
      <date key="time:timestamp" value="2024-01-02T00:00:00Z"/>
    </event>
  </trace>
</log>
"#;
    let path = write(dir.path(), "t.xes", xes);
    let (events, errors) = read(&path, &ImportOptions::default());
    assert!(errors.is_empty(), "{}", errors[0]);
    assert_eq!(events.len(), 3);
    let buy = &events[0];
    assert_eq!(buy.user_id.as_deref(), Some("Ann & Bob"));
    assert_eq!(
        buy.timestamp,
        parse_timestamp("2024-01-01T09:00:00Z").unwrap()
    );
    assert_eq!(buy.channel, "store", "the trace's channel is the fallback");
    assert_eq!(buy.value, Some(7.25), "revenue ranks above amount");
    assert_eq!(
        json(&buy.properties),
        serde_json::json!({"amount": 5, "revenue": 7.25, "gift": true, "ref": "x-1", "addr.city": "Rome"})
    );
    assert_eq!(
        json(&buy.traits),
        serde_json::json!({"channel": "Store", "age": 42, "age.unit": "years"})
    );
    assert_eq!(events[1].channel, "call_center");
    // Two identical events in a trace keep two ids.
    assert_ne!(events[1].message_id, events[2].message_id);
    assert!(events[1].message_id.starts_with("xes-"));
}

#[test]
fn xes_gzip_and_bom() {
    let dir = tempfile::tempdir().unwrap();
    let xes = "\u{feff}<log><trace><string key=\"concept:name\" value=\"c\"/><event><string key=\"concept:name\" value=\"a\"/><date key=\"time:timestamp\" value=\"2024-01-01\"/></event></trace></log>";
    let path = write(dir.path(), "b.xes.gz", gzip(xes.as_bytes()));
    let (events, errors) = read(&path, &ImportOptions::default());
    assert!(errors.is_empty());
    assert_eq!(events.len(), 1);
}

#[test]
fn jsonl_gzip_and_default_channel() {
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"m1","timestamp":"2024-05-01T10:00:00Z","properties":{"revenue":19.5}}"#,
        "\n",
        r#"{"type":"identify","userId":"u1","timestamp":"2024-05-01T10:00:00Z","traits":{"plan":"pro"}}"#,
    );
    let path = write(dir.path(), "m.ndjson.gz", gzip(text.as_bytes()));
    let options = ImportOptions {
        default_channel: Some("crm".into()),
        ..Default::default()
    };
    let (events, errors) = read(&path, &options);
    assert!(errors.is_empty(), "{}", errors[0]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].message_id, "m1");
    assert_eq!(events[0].value, Some(19.5));
    assert_eq!(events[0].channel, "crm");
    assert_eq!(events[1].kind, EventKind::Identify);
    assert_eq!(events[1].traits.as_deref(), Some(r#"{"plan":"pro"}"#));
}

fn write_parquet(path: &std::path::Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_in_cairn_segment_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.parquet");
    let t0 = parse_timestamp("2024-05-01T10:00:00Z").unwrap();
    let ts = TimestampMicrosecondArray::from(vec![t0, t0 + 1, t0 + 2]).with_timezone("UTC");
    write_parquet(
        &path,
        vec![
            (
                "message_id",
                Arc::new(StringArray::from(vec![Some("m1"), Some("m2"), None])) as ArrayRef,
            ),
            (
                "type",
                Arc::new(StringArray::from(vec!["track", "identify", "track"])),
            ),
            (
                "event",
                Arc::new(StringArray::from(vec![
                    Some("Order Completed"),
                    None,
                    Some("View"),
                ])),
            ),
            (
                "user_id",
                Arc::new(StringArray::from(vec![Some("u1"), Some("u1"), None])),
            ),
            (
                "anonymous_id",
                Arc::new(StringArray::from(vec![None, Some("a1"), Some("a2")])),
            ),
            ("timestamp", Arc::new(ts)),
            (
                "channel",
                Arc::new(StringArray::from(vec![Some("web"), None, Some("email")])),
            ),
            (
                "value",
                Arc::new(Float64Array::from(vec![Some(19.5), None, None])),
            ),
            (
                "properties",
                Arc::new(StringArray::from(vec![
                    Some(r#"{"sku":"x"}"#),
                    None,
                    Some("{}"),
                ])),
            ),
            (
                "traits",
                Arc::new(StringArray::from(vec![
                    None,
                    Some(r#"{"plan":"pro"}"#),
                    None,
                ])),
            ),
            (
                "context",
                Arc::new(StringArray::from(vec![
                    Some(r#"{"ip":"1.2.3.4"}"#),
                    None,
                    None,
                ])),
            ),
            (
                "sent_at",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(t0 + 5), None, None])
                        .with_timezone("UTC"),
                ),
            ),
            (
                "coupon",
                Arc::new(StringArray::from(vec![Some("SPRING"), None, None])),
            ),
        ],
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert!(errors.is_empty(), "{}", errors[0]);
    assert_eq!(events.len(), 3);
    let e = &events[0];
    assert_eq!(e.message_id, "m1");
    assert_eq!(e.kind, EventKind::Track);
    assert_eq!(e.event, "Order Completed");
    assert_eq!(e.timestamp, t0);
    assert_eq!(e.sent_at, Some(t0 + 5));
    assert_eq!(e.channel, "web");
    assert_eq!(e.value, Some(19.5));
    assert_eq!(
        e.properties.as_deref(),
        Some(r#"{"sku":"x","coupon":"SPRING"}"#)
    );
    assert_eq!(e.context.as_deref(), Some(r#"{"ip":"1.2.3.4"}"#));
    let id = &events[1];
    assert_eq!(
        (id.kind, id.event.as_str()),
        (EventKind::Identify, "identify")
    );
    assert_eq!(id.anonymous_id.as_deref(), Some("a1"));
    assert_eq!(id.traits.as_deref(), Some(r#"{"plan":"pro"}"#));
    assert_eq!(id.channel, "unknown");
    let anon = &events[2];
    assert_eq!(anon.user_id, None);
    assert_eq!(anon.customer_id(), "a2");
    assert!(anon.message_id.starts_with("parquet-"));
    assert_eq!(anon.properties, None);
}

#[test]
fn parquet_dictionary_epoch_and_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.parquet");
    let activity: DictionaryArray<Int32Type> = vec![Some("a"), Some("b"), None, Some("a")]
        .into_iter()
        .collect();
    write_parquet(
        &path,
        vec![
            (
                "case:concept:name",
                Arc::new(Int64Array::from(vec![7, 7, 8, 9])) as ArrayRef,
            ),
            ("concept:name", Arc::new(activity)),
            (
                "time:timestamp",
                Arc::new(Int64Array::from(vec![
                    1_700_000_000,
                    1_700_000_000_000,
                    1_700_000_000,
                    5,
                ])),
            ),
            (
                "org:resource",
                Arc::new(Int64Array::from(vec![Some(3), None, None, None])),
            ),
        ],
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].user_id.as_deref(), Some("7"));
    assert_eq!(events[0].event, "a");
    assert_eq!(
        events[0].timestamp, events[1].timestamp,
        "seconds and millis epochs"
    );
    assert_eq!(
        events[0].properties.as_deref(),
        Some(r#"{"org:resource":3}"#)
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location.record, 3);
    assert_eq!(errors[0].field, "concept:name");
    assert!(
        errors[0]
            .raw
            .as_deref()
            .unwrap()
            .contains("\"case:concept:name\":8")
    );
    // A schema without a time column is malformed as a whole.
    let path = dir.path().join("notime.parquet");
    write_parquet(
        &path,
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec!["u"])) as ArrayRef,
            ),
            ("event", Arc::new(StringArray::from(vec!["e"]))),
        ],
    );
    let err = crate::read_fails(&path).to_string();
    assert!(err.contains("no time column"), "{err}");
    // Only an anonymous id column: it files the customers.
    let path = dir.path().join("anon.parquet");
    write_parquet(
        &path,
        vec![
            (
                "anonymousId",
                Arc::new(StringArray::from(vec![Some("a1"), None])) as ArrayRef,
            ),
            ("event", Arc::new(StringArray::from(vec!["e", "e"]))),
            (
                "ts",
                Arc::new(StringArray::from(vec!["2024-01-01", "2024-01-02"])),
            ),
        ],
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].user_id.as_deref(),
            events[0].anonymous_id.as_deref()
        ),
        (None, Some("a1"))
    );
    assert_eq!(errors[0].field, "anonymousId");
}

#[test]
fn xes_larger_than_a_block_with_tricky_comments() {
    // Several MiB (the read block is one), mostly comments holding `<`, so block cuts land
    // inside them and are parsed again with more data (checked by hand: this file takes that
    // path); line numbers must still be right afterwards.
    let dir = tempfile::tempdir().unwrap();
    let mut xes = String::from("<?xml version=\"1.0\"?>\n<log>\n");
    let mut line = 3;
    let mut want_lines = Vec::new();
    let comment = "a < b ".repeat(700);
    for t in 0..1000 {
        xes.push_str(&format!(
            "<trace><string key=\"concept:name\" value=\"c{t}\"/>\n<!-- {comment} -->\n"
        ));
        line += 2;
        for e in 0..4 {
            want_lines.push(line);
            xes.push_str(&format!(
                "<event>\n<string key=\"concept:name\" value=\"e{e}\"/><![CDATA[ x < y ]]>\n<date key=\"time:timestamp\" value=\"2024-01-01T00:00:0{e}Z\"/>\n<string key=\"pad\" value=\"{}\"/>\n</event>\n",
                "p".repeat(40)
            ));
            line += 5;
        }
        xes.push_str("</trace>\n");
        line += 1;
    }
    xes.push_str("<event><string key=\"concept:name\" value=\"orphan\"/></event>\n</log>\n");
    want_lines.push(line);
    assert!(xes.len() > 3_000_000);
    let path = write(dir.path(), "big.xes", &xes);
    let records = cairn_import::read_all(&path, &ImportOptions::default()).unwrap();
    assert_eq!(records.len(), 4_001);
    assert!(records[..4_000].iter().all(Result::is_ok));
    // The last record is an error, and knows its line: counting stayed right across blocks.
    let last = records[4_000].as_ref().unwrap_err();
    assert_eq!(last.location.line, Some(*want_lines.last().unwrap()));
    assert_eq!(last.location.record, 4_001);
}

#[test]
fn csv_type_column_gives_the_kind_when_it_holds_segment_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.csv");
    std::fs::write(
        &path,
        "customer_id,event,timestamp,type\nc1,identify,2024-01-01T00:00:00Z,identify\nc1,Ticket,2024-01-01T00:01:00Z,complaint\n",
    )
    .unwrap();
    let events: Vec<_> = cairn_import::read_all(&path, &Default::default())
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(events[0].kind, cairn_model::EventKind::Identify);
    assert_eq!(events[0].properties, None, "the kind is not kept twice");
    assert_eq!(events[1].kind, cairn_model::EventKind::Track);
    assert_eq!(
        events[1].properties.as_deref(),
        Some(r#"{"type":"complaint"}"#)
    );
}
