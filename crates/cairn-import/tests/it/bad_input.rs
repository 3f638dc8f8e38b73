//! Broken files: every error names the file, the line and the field.

use cairn_import::{ImportError, ImportOptions, Location, open};

use crate::{read, read_fails, write};

const XES_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0">
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
  </global>
"#;

fn malformed(e: ImportError) -> (std::path::PathBuf, Option<u64>, String) {
    match e {
        ImportError::Malformed { file, line, reason } => (file, line, reason),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn xes_unclosed_tag() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.xes",
        format!(
            "{XES_HEAD}  <trace>\n    <string key=\"concept:name\" value=\"c1\"/>\n    <event>\n      <string key=\"concept:name\" value=\"a\"/>\n  </trace>\n</log>\n"
        ),
    );
    let (file, line, reason) = malformed(read_fails(&path));
    assert_eq!(file, path);
    assert_eq!(line, Some(10), "{reason}");
    assert!(reason.contains("not well-formed XML"), "{reason}");
    assert!(reason.contains("event"), "{reason}");
}

#[test]
fn xes_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "cut.xes",
        format!("{XES_HEAD}  <trace>\n    <string key=\"concept:name\" value=\"c1\"/>\n"),
    );
    let e = read_fails(&path);
    let msg = e.to_string();
    let (_, line, _) = malformed(e);
    assert!(line.is_some(), "{msg}");
    assert!(msg.contains("trace") || msg.contains("log"), "{msg}");
}

#[test]
fn xes_bad_events_are_record_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "events.xes",
        format!(
            r#"{XES_HEAD}  <trace>
    <string key="concept:name" value="c1"/>
    <event>
      <date key="time:timestamp" value="2020-01-01T00:00:00Z"/>
    </event>
    <event>
      <string key="concept:name" value="b"/>
    </event>
    <event>
      <string key="concept:name" value="c"/>
      <date key="time:timestamp" value="yesterday"/>
    </event>
    <event>
      <string key="concept:name" value="ok"/>
      <date key="time:timestamp" value="2020-01-01T00:00:00Z"/>
    </event>
  </trace>
  <trace>
    <event>
      <string key="concept:name" value="orphan"/>
      <date key="time:timestamp" value="2020-01-01T00:00:00Z"/>
    </event>
  </trace>
</log>
"#
        ),
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "ok");
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.location, e.field.as_str()))
        .collect();
    let at = |line, record| Location {
        line: Some(line),
        record,
    };
    assert_eq!(
        got,
        vec![
            (at(8, 1), "concept:name"),
            (at(11, 2), "time:timestamp"),
            (at(14, 3), "time:timestamp"),
            (at(24, 5), "trace concept:name"),
        ]
    );
    assert!(errors[2].reason.contains("\"yesterday\""), "{}", errors[2]);
    assert!(errors[1].reason.contains("missing"), "{}", errors[1]);
    assert_eq!(errors[0].file, path);
    let raw = errors[3].raw.as_deref().unwrap();
    assert!(
        raw.starts_with("<event>") && raw.ends_with("</event>"),
        "{raw}"
    );
    assert!(raw.contains("orphan"), "{raw}");
    assert!(
        errors[0]
            .to_string()
            .ends_with("events.xes:8: record 1: field \"concept:name\": missing: every event needs a concept:name attribute (its activity)"),
        "{}",
        errors[0]
    );
}

#[test]
fn xes_without_log_or_with_junk() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "html.xes", "<html><body/></html>");
    let (_, line, reason) = malformed(read_fails(&path));
    assert_eq!(line, Some(1));
    assert!(reason.contains("root element is <html>"), "{reason}");

    let path = write(dir.path(), "text.xes", "just some text\n");
    let (_, _, reason) = malformed(read_fails(&path));
    assert!(reason.contains("no <log>"), "{reason}");

    // Header only: a valid log without traces is zero records, not an error.
    let path = write(dir.path(), "none.xes", format!("{XES_HEAD}</log>\n"));
    let (events, errors) = read(&path, &ImportOptions::default());
    assert!(events.is_empty() && errors.is_empty());
}

#[test]
fn csv_bad_timestamp_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.csv",
        "customer_id,event,timestamp\n\
         c1,view,2024-01-01T10:00:00Z\n\
         c1,\"multi\nline\",2024-01-01T10:01:00Z\n\
         c2,buy,not-a-time\n\
         c3,view,2024-01-02\n",
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert_eq!(events.len(), 3);
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.file, path);
    assert_eq!(
        e.location,
        Location {
            line: Some(5),
            record: 3
        }
    );
    assert_eq!(e.field, "timestamp");
    assert!(e.reason.contains("\"not-a-time\""), "{e}");
    assert_eq!(e.raw.as_deref(), Some("c2,buy,not-a-time"));
    assert!(
        e.to_string()
            .contains("bad.csv:5: record 3: field \"timestamp\""),
        "{e}"
    );
}

#[test]
fn csv_row_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "rows.csv",
        b"user_id,activity,time,value\n\
          u1,a,2024-01-01,1.5\n\
          u1,a\n\
          ,b,2024-01-01,\n\
          u2,,2024-01-01,\n\
          u3,c,2024-01-01,lots\n\
          u5,e,2024-01-01,2\n",
    );
    // Invalid UTF-8 at the start of a file makes it malformed (see `binary_junk_is_malformed`);
    // further in, it spoils only its row.
    let padding = "u0,pad,2024-01-01,\n".repeat(1000);
    let mut late = b"user_id,activity,time,value\n".to_vec();
    late.extend_from_slice(padding.as_bytes());
    late.extend_from_slice(b"u4,d\xff,2024-01-01,\nu5,e,2024-01-01,2\n");
    let late_path = write(dir.path(), "late.csv", late);
    let (late_events, late_errors) = read(&late_path, &ImportOptions::default());
    assert_eq!(late_events.len(), 1001);
    assert_eq!(late_errors.len(), 1);
    assert_eq!(late_errors[0].location.line, Some(1002));
    assert_eq!(late_errors[0].field, "activity");
    assert!(
        late_errors[0].reason.contains("UTF-8"),
        "{}",
        late_errors[0]
    );
    assert_eq!(
        late_errors[0].raw.as_deref(),
        Some("u4,d\u{fffd},2024-01-01,")
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].value, Some(1.5));
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.location.line, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(3), "(row)"),
            (Some(4), "user_id"),
            (Some(5), "activity"),
            (Some(6), "value"),
        ]
    );
    assert!(
        errors[0].reason.contains("expected 4 fields"),
        "{}",
        errors[0]
    );
}

#[test]
fn csv_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "cols.csv", "customer_id,when\nc1,2024-01-01\n");
    let (file, line, reason) = malformed(read_fails(&path));
    assert_eq!(file, path);
    assert_eq!(line, None);
    assert!(reason.starts_with("no event column"), "{reason}");
    assert!(reason.contains("\"customer_id\", \"when\""), "{reason}");
}

#[test]
fn csv_header_only_is_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "header.csv", "customer_id,event,timestamp\n");
    let (events, errors) = read(&path, &ImportOptions::default());
    assert!(events.is_empty() && errors.is_empty());
}

#[test]
fn jsonl_wrong_types_and_bad_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "events.jsonl",
        concat!(
            r#"{"type":"track","event":"a","userId":"u1","timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n\n",
            r#"{"type":"track","event":"a","userId":true,"timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"type":"track","event":"a","userId":"u1""#,
            "\r\n",
            r#"{"type":"page","anonymousId":"x","timestamp":"2024-01-01"}"#,
            "\n"
        ),
    );
    let (events, errors) = read(&path, &ImportOptions::default());
    assert_eq!(events.len(), 2);
    assert_eq!(errors.len(), 2);
    let e = &errors[0];
    assert_eq!(e.file, path);
    assert_eq!(
        e.location,
        Location {
            line: Some(3),
            record: 2
        }
    );
    assert_eq!(e.field, "userId");
    assert!(e.reason.contains("string or a number"), "{e}");
    assert!(e.raw.as_deref().unwrap().contains("\"userId\":true"));
    let e = &errors[1];
    assert_eq!(e.location.line, Some(4));
    assert_eq!(e.field, "(json)");
    assert!(e.reason.contains("column"), "{e}");
    assert!(!e.raw.as_deref().unwrap().ends_with('\r'));
}

#[test]
fn empty_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["e.csv", "e.xes", "e.jsonl", "e.parquet", "e.xes.gz"] {
        let path = write(dir.path(), name, "");
        match read_fails(&path) {
            ImportError::EmptyFile { file } => assert_eq!(file, path),
            other => panic!("{name}: expected EmptyFile, got {other:?}"),
        }
    }
    assert!(
        read_fails(&dir.path().join("e.csv"))
            .to_string()
            .ends_with("e.csv: the file is empty")
    );
}

#[test]
fn binary_junk_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic pseudo-random bytes, with a NUL among them.
    let mut x: u32 = 0x1234_5678;
    let junk: Vec<u8> = (0..4096)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i == 100 { 0 } else { (x >> 24) as u8 }
        })
        .collect();
    for name in ["junk.csv", "junk.jsonl", "junk.xes", "junk.json"] {
        let path = write(dir.path(), name, &junk);
        let (file, line, reason) = malformed(read_fails(&path));
        assert_eq!(file, path);
        assert!(line.is_some(), "{name}");
        assert!(
            reason.contains("binary") || reason.contains("UTF-8"),
            "{name}: {reason}"
        );
    }
    // Text that is mostly fine but has a NUL early.
    let path = write(dir.path(), "nul.csv", "a,b,c\n1,2\u{0},3\n");
    let (_, line, reason) = malformed(read_fails(&path));
    assert_eq!(line, Some(2));
    assert!(reason.contains("NUL"), "{reason}");

    let path = write(dir.path(), "junk.parquet", &junk);
    let (_, _, reason) = malformed(read_fails(&path));
    assert!(reason.contains("Parquet"), "{reason}");
}

#[test]
fn gz_that_is_not_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "plain.csv.gz", "customer_id,event,timestamp\n");
    let (file, _, reason) = malformed(read_fails(&path));
    assert_eq!(file, path);
    assert!(reason.contains("not a gzip file"), "{reason}");
    // Corrupt gzip data after a valid magic.
    let path = write(
        dir.path(),
        "corrupt.xes.gz",
        b"\x1f\x8b\x08\x00junkjunkjunkjunk",
    );
    let e = read_fails(&path);
    assert!(matches!(e, ImportError::Malformed { .. }), "{e:?}");
}

#[test]
fn unknown_format_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "notes.txt", "hello");
    assert!(matches!(
        open(&path, &ImportOptions::default()),
        Err(ImportError::UnknownFormat { .. })
    ));
    let missing = dir.path().join("missing.csv");
    match open(&missing, &ImportOptions::default()) {
        Err(ImportError::Io { file, .. }) => assert_eq!(file, missing),
        Err(other) => panic!("expected Io, got {other:?}"),
        Ok(_) => panic!("opened a missing file"),
    }
}
