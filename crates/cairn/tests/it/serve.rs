//! `cairn serve` end to end: the real binary on a free port, spoken to over real sockets.
//! Every bad-input case gets its exact status and error body; reads through the CLI and the
//! API see what was acknowledged.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{cairn, ok};

pub const ADMIN: &str = "test-admin-token-0123456789";

/// A running `cairn serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = cairn()
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("CAIRN_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start cairn serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("cairn serve did not start: {line:?}\n{err}");
        };
        Server {
            addr: addr.to_string(),
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits; returns stderr and whether it exited cleanly.
    pub fn terminate(mut self) -> (bool, String) {
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so the tests need no HTTP crate.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The server may answer (413, 401) before reading the whole body and close: that is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header in the answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// `Basic base64("KEY:")`, as Segment's SDKs send it.
pub fn basic(key: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{key}:").into_bytes();
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

pub fn create_key(dir: &Path, source: &str, channel: Option<&str>) -> String {
    let mut args = vec!["keys", "create", "--source", source, "--format", "json"];
    if let Some(c) = channel {
        args.extend(["--channel", c]);
    }
    let out: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    out["key"].as_str().unwrap().to_string()
}

/// POSTs JSON with the write key as Basic auth.
pub fn post(server: &Server, key: &str, path: &str, body: &Value) -> Answer {
    post_as(server, &basic(key), path, body)
}

/// POSTs JSON with `auth` as the Authorization header.
pub fn post_as(server: &Server, auth: &str, path: &str, body: &Value) -> Answer {
    request(
        &server.addr,
        "POST",
        path,
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap()
}

pub fn admin_get(server: &Server, path: &str) -> Answer {
    let auth = format!("Bearer {ADMIN}");
    request(&server.addr, "GET", path, &[("Authorization", &auth)], b"").unwrap()
}

/// Every event of a customer through `cairn timeline --format json` (the CLI, not the API).
pub fn cli_timeline(dir: &Path, customer: &str) -> Vec<Value> {
    let out: Value =
        serde_json::from_str(&ok(dir, &["timeline", customer, "--format", "json"])).unwrap();
    out["events"].as_array().unwrap().clone()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

/// Asserts the status and the stable error code, and that the message says `needle`.
#[track_caller]
fn expect_error(a: &Answer, status: u16, code: &str, needle: &str) -> Value {
    let body = a.json();
    assert_eq!(a.status, status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{message:?} should say {needle:?}"
    );
    body
}

#[test]
fn bad_input_gets_the_right_status_and_a_precise_error() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let key = create_key(&dir, "web", None);
    let revoked = create_key(&dir, "old", None);
    ok(&dir, &["keys", "revoke", &revoked]);
    let server = Server::start(&dir, &[]);
    let auth = basic(&key);
    let send = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        request(&server.addr, "POST", path, headers, body).unwrap()
    };
    let with_key = [("Authorization", auth.as_str())];

    // Malformed JSON: where it broke.
    let a = send("/v1/track", &with_key, br#"{"userId": "u", "event": "#);
    expect_error(&a, 400, "invalid_json", "line 1 column");
    let a = send("/v1/batch", &with_key, br#"[{"type": "track"}]"#);
    expect_error(&a, 400, "invalid_json", "\"batch\" array");

    // Wrong types: the field and what was expected.
    let a = post(
        &server,
        &key,
        "/v1/track",
        &json!({"userId": ["u"], "event": "e"}),
    );
    let body = expect_error(&a, 400, "invalid_message", "userId");
    assert_eq!(
        body["errors"],
        json!([{"index": 0, "field": "userId", "reason": "expected a string or a number, got an array"}])
    );
    let a = post(
        &server,
        &key,
        "/v1/track",
        &json!({"userId": "u", "event": "e", "properties": "cheap"}),
    );
    let body = expect_error(&a, 400, "invalid_message", "properties");
    assert_eq!(
        body["errors"][0]["reason"],
        "expected an object, got a string"
    );
    let a = post(
        &server,
        &key,
        "/v1/track",
        &json!({"userId": "u", "event": "e", "timestamp": "yesterday"}),
    );
    expect_error(&a, 400, "invalid_message", "field \"timestamp\"");

    // Neither userId nor anonymousId.
    let a = post(&server, &key, "/v1/identify", &json!({"traits": {"a": 1}}));
    let body = expect_error(&a, 400, "invalid_message", "userId or an anonymousId");
    assert_eq!(body["errors"][0]["field"], "userId");

    // A batch with one bad message: it is named by index, the others are stored.
    let a = post(
        &server,
        &key,
        "/v1/batch",
        &json!({"batch": [
            {"type": "track", "userId": "mixed", "event": "ok-1", "messageId": "mixed-1"},
            {"type": "track", "userId": "mixed", "messageId": "mixed-2"},
            {"type": "track", "userId": "mixed", "event": "ok-3", "messageId": "mixed-3"},
        ]}),
    );
    let body = expect_error(&a, 400, "invalid_message", "message 1: field \"event\"");
    assert_eq!(
        body["errors"],
        json!([{"index": 1, "field": "event", "reason": "a track message needs an event name"}])
    );
    assert_eq!(body["stored"], 2);
    let ids: Vec<_> = cli_timeline(&dir, "mixed")
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["mixed-1", "mixed-3"]);

    // Oversize message (32 KB), alone and in a batch; oversize batch (500 KB).
    let big = "x".repeat(33 * 1024);
    let a = post(
        &server,
        &key,
        "/v1/track",
        &json!({"userId": "u", "event": big}),
    );
    expect_error(&a, 413, "message_too_large", "limit of 32768 bytes");
    let a = post(
        &server,
        &key,
        "/v1/batch",
        &json!({"batch": [
            {"type": "track", "userId": "big", "event": "small", "messageId": "big-0"},
            {"type": "track", "userId": "big", "event": big},
        ]}),
    );
    let body = expect_error(
        &a,
        413,
        "message_too_large",
        "message 1: field \"(message)\"",
    );
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["stored"], 1);
    let items: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "userId": "huge", "event": "e", "p": "y".repeat(30_000), "messageId": format!("huge-{i}")}))
        .collect();
    let a = post(&server, &key, "/v1/batch", &json!({ "batch": items }));
    expect_error(&a, 413, "batch_too_large", "limit of 512000 bytes");
    // The same batch gzipped is small on the wire, and still too large once inflated.
    let zipped = gzip(json!({ "batch": items }).to_string().as_bytes());
    assert!(zipped.len() < 100_000);
    let a = send(
        "/v1/batch",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
        &zipped,
    );
    expect_error(&a, 413, "batch_too_large", "once gunzipped");

    // Bad gzip.
    let a = send(
        "/v1/batch",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
        b"{\"batch\": []}",
    );
    expect_error(&a, 400, "invalid_gzip", "not valid gzip");

    // Write keys: missing, unknown, revoked (401); a key in the body works like the header.
    let msg = json!({"userId": "k", "event": "e"});
    let a = send("/v1/track", &[], msg.to_string().as_bytes());
    let body = expect_error(&a, 401, "missing_write_key", "Basic auth");
    assert_eq!(
        a.header("www-authenticate"),
        Some("Basic realm=\"cairn\""),
        "{body}"
    );
    let a = post(&server, "cwk_nope", "/v1/track", &msg);
    expect_error(&a, 401, "invalid_write_key", "unknown write key");
    let a = post(&server, &revoked, "/v1/track", &msg);
    expect_error(&a, 401, "revoked_write_key", "revoked");
    let a = send(
        "/v1/track",
        &[],
        json!({"userId": "k", "event": "e", "writeKey": revoked})
            .to_string()
            .as_bytes(),
    );
    expect_error(&a, 401, "revoked_write_key", "revoked");
    let a = send(
        "/v1/track",
        &[],
        json!({"userId": "k", "event": "e", "writeKey": key})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(a.status, 200, "{:?}", a.json());

    // Unknown path, wrong method.
    let a = send("/v1/trak", &with_key, b"{}");
    expect_error(&a, 404, "not_found", "no such endpoint");
    let a = request(&server.addr, "GET", "/v1/track", &with_key, b"").unwrap();
    expect_error(&a, 405, "method_not_allowed", "GET is not allowed");
    let a = request(&server.addr, "DELETE", "/v1/stats", &[], b"").unwrap();
    expect_error(&a, 405, "method_not_allowed", "DELETE");

    // Read endpoints need the admin token; a write key is not one.
    let a = request(&server.addr, "GET", "/v1/stats", &[], b"").unwrap();
    expect_error(&a, 401, "missing_admin_token", "Bearer");
    let a = request(&server.addr, "GET", "/v1/stats", &with_key, b"").unwrap();
    expect_error(&a, 401, "invalid_admin_token", "wrong admin token");
    let a = admin_get(&server, "/v1/customers/nobody/timeline");
    expect_error(&a, 404, "customer_not_found", "no events");
    let a = admin_get(&server, "/v1/customers/mixed/timeline?limit=x");
    expect_error(&a, 400, "invalid_query", "limit");

    // Every reject is counted by reason.
    let metrics = String::from_utf8(admin_get(&server, "/metrics").body).unwrap();
    for line in [
        "cairn_rejected_requests_total{reason=\"invalid_json\"} 2",
        "cairn_rejected_requests_total{reason=\"revoked_write_key\"} 2",
        "cairn_rejected_requests_total{reason=\"batch_too_large\"} 2",
        "cairn_ingest_events_total{result=\"stored\"} 4",
        "cairn_ingest_request_duration_seconds_count",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    // Three requests stored something; each waited for at least one log fsync.
    let fsyncs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_log_fsyncs_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((1..=3).contains(&fsyncs), "{fsyncs} fsyncs\n{metrics}");
}

#[test]
fn acknowledged_messages_are_stored_once_stamped_and_readable_while_serving() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let key = create_key(&dir, "call-center", Some("call_center"));
    let server = Server::start(&dir, &[]);

    let a = request(&server.addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!((a.status, a.json()), (200, json!({"status": "available"})));

    // Every single-message endpoint, then a batch with top-level sentAt and context.
    for (path, body) in [
        (
            "/v1/identify",
            json!({"userId": "ann", "traits": {"email": "ann@example.com"}, "messageId": "m-identify"}),
        ),
        (
            "/v1/track",
            json!({"userId": "ann", "event": "Called", "properties": {"minutes": 4}, "messageId": "m-track",
            "timestamp": "2024-05-01T10:00:00Z", "sentAt": "2024-05-01T10:00:30Z"}),
        ),
        (
            "/v1/page",
            json!({"userId": "ann", "name": "Pricing", "messageId": "m-page"}),
        ),
        (
            "/v1/screen",
            json!({"userId": "ann", "name": "Home", "messageId": "m-screen", "context": {"ip": "203.0.113.9"}}),
        ),
        (
            "/v1/group",
            json!({"userId": "ann", "groupId": "acme", "messageId": "m-group"}),
        ),
        (
            "/v1/alias",
            json!({"userId": "ann", "previousId": "anon-1", "messageId": "m-alias"}),
        ),
    ] {
        let a = post(&server, &key, path, &body);
        assert_eq!(
            (a.status, a.json()),
            (200, json!({"success": true})),
            "{path}"
        );
    }
    let batch = json!({
        "sentAt": "2024-05-01T11:00:10Z",
        "context": {"library": {"name": "test"}},
        "batch": [
            {"type": "track", "userId": "ann", "event": "Batched", "timestamp": "2024-05-01T11:00:00Z", "messageId": "m-b1"},
            {"type": "track", "userId": "ann", "event": "Batched", "timestamp": "2024-05-01T11:00:05Z", "messageId": "m-b2", "channel": "email"},
        ]
    });
    let before = now_micros();
    assert_eq!(post(&server, &key, "/v1/batch", &batch).status, 200);
    let after = now_micros();
    // Sent again (a client retry): acknowledged, not stored twice.
    assert_eq!(post(&server, &key, "/v1/import", &batch).status, 200);

    // The CLI reads the same store while the server holds its lock.
    let events = cli_timeline(&dir, "ann");
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "m-alias",
            "m-b1",
            "m-b2",
            "m-group",
            "m-identify",
            "m-page",
            "m-screen",
            "m-track"
        ]
    );
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["messageId"] == id)
            .unwrap()
            .clone()
    };
    // Clock skew: timestamp = receivedAt − (sentAt − timestamp); receivedAt is the server's.
    let track = by_id("m-track");
    let received = parse(&track["receivedAt"]);
    assert_eq!(parse(&track["timestamp"]), received - 30_000_000);
    assert_eq!(
        track["channel"], "call_center",
        "the key's channel is the default"
    );
    assert_eq!(track["properties"], json!({"minutes": 4}));
    let b1 = by_id("m-b1");
    let received = parse(&b1["receivedAt"]);
    assert!(before <= received && received <= after);
    assert_eq!(parse(&b1["timestamp"]), received - 10_000_000);
    assert_eq!(parse(&by_id("m-b2")["timestamp"]), received - 5_000_000);
    assert_eq!(
        by_id("m-b2")["channel"],
        "email",
        "the message's own channel wins"
    );
    assert_eq!(b1["context"]["library"]["name"], "test");
    // context.ip: stamped from the connection when the message has none, kept when it has.
    assert_eq!(b1["context"]["ip"], "127.0.0.1");
    assert_eq!(by_id("m-page")["context"]["ip"], "127.0.0.1");
    assert_eq!(by_id("m-screen")["context"]["ip"], "203.0.113.9");
    assert_eq!(by_id("m-group")["groupId"], "acme");
    assert_eq!(by_id("m-alias")["previousId"], "anon-1");

    // The API's reads say the same as the CLI's.
    let api = admin_get(&server, "/v1/customers/ann/timeline").json();
    assert_eq!(api["events"].as_array().unwrap(), &events);
    let cli_stats: Value = serde_json::from_str(&ok(&dir, &["stats", "--format", "json"])).unwrap();
    assert_eq!(admin_get(&server, "/v1/stats").json(), cli_stats);
    assert_eq!(cli_stats["events"], 8);
    let limited = admin_get(&server, "/v1/customers/ann/timeline?limit=2").json();
    assert_eq!(limited["events"].as_array().unwrap().len(), 2);
    assert_eq!(limited["total_events"], 8);

    // CORS: preflight and the header on answers.
    let a = request(
        &server.addr,
        "OPTIONS",
        "/v1/t",
        &[
            ("Origin", "https://shop.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(a.status, 204);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    assert!(
        a.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let a = post(
        &server,
        &key,
        "/t",
        &json!({"userId": "bob", "event": "Clicked"}),
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));

    // A graceful stop (SIGTERM) answers what is in flight and flushes the log into a segment.
    let (clean, stderr) = server.terminate();
    assert!(clean, "{stderr}");
    assert!(stderr.contains("the log is flushed"), "{stderr}");
    let stats: Value = serde_json::from_str(&ok(&dir, &["stats", "--format", "json"])).unwrap();
    assert_eq!(
        (stats["events"].as_u64(), stats["log_events"].as_u64()),
        (Some(9), Some(0))
    );
}

#[test]
fn keys_are_managed_from_the_command_line_and_apply_at_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let server = Server::start(&dir, &[]);
    // Created after the server started: accepted at once.
    let key = create_key(&dir, "ios", Some("ios"));
    assert!(key.starts_with("cwk_"));
    let msg = json!({"anonymousId": "a1", "event": "Opened"});
    assert_eq!(post(&server, &key, "/v1/track", &msg).status, 200);
    let list: Value =
        serde_json::from_str(&ok(&dir, &["keys", "list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["source"], "ios");
    assert_eq!(list[0]["revoked_at"], Value::Null);
    ok(&dir, &["keys", "revoke", &key]);
    assert_eq!(post(&server, &key, "/v1/track", &msg).status, 401);
    let table = ok(&dir, &["keys", "list"]);
    assert!(table.contains(&key) && table.contains("revoked"), "{table}");
    let err = crate::fails(&dir, &["keys", "revoke", "cwk_missing"]);
    assert!(err.contains("no write key \"cwk_missing\""), "{err}");
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// An RFC 3339 time from the API as epoch microseconds.
pub fn parse(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    cairn_model::parse_timestamp(s).unwrap()
}
