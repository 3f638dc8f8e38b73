use std::time::{Duration, Instant};

use cairn_channels::outbox::{Channels, DEAD_LETTER_FILE, Outbound, Outbox, RetryPolicy, Status};
use cairn_channels::sms::SmsConfig;
use cairn_channels::testing::Receiver;
use cairn_channels::webhook::{self, SIGNATURE_HEADER, WebhookConfig};
use serde_json::{Value, json};

const SECRET: &str = "whsec_test";

fn hook(key: &str) -> Outbound {
    Outbound {
        key: key.to_string(),
        customer: "c7".to_string(),
        journey: "j@1".to_string(),
        step: "notify".to_string(),
        channel: "webhook".to_string(),
        to: None,
        subject: None,
        body: "cart of c7".to_string(),
        payload: json!({"key": key, "customer": "c7", "body": "cart of c7"}),
    }
}

fn channels(r: &Receiver) -> Channels {
    Channels {
        webhook: Some(WebhookConfig {
            url: r.url("/hooks/cairn"),
            secret: SECRET.to_string(),
            timeout: Duration::from_secs(5),
        }),
        sms: Some(SmsConfig {
            base_url: r.url("/twilio"),
            account: "AC123".to_string(),
            token: "tok".to_string(),
            from: "+15550000".to_string(),
            timeout: Duration::from_secs(5),
        }),
        ..Channels::default()
    }
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

/// Runs the outbox until nothing is queued; returns the finished deliveries.
fn drain(outbox: &mut Outbox, ch: &Channels) -> Vec<(Outbound, cairn_channels::Delivery)> {
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while outbox.pending() > 0 && Instant::now() < deadline {
        all.extend(outbox.run_due(ch, Instant::now(), 1_700_000_000).unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    all
}

#[test]
fn webhook_is_signed_and_retried_after_a_500() {
    let r = Receiver::start(vec![500]).unwrap();
    let ch = channels(&r);
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), policy(5)).unwrap();
    let started = Instant::now();
    outbox.enqueue(hook("j@1/c7/notify/1"), Instant::now());
    let done = drain(&mut outbox, &ch);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].1.status, done[0].1.attempts), (Status::Sent, 2));
    // The retry waited for the backoff.
    assert!(started.elapsed() >= Duration::from_millis(20));

    let reqs = r.requests();
    assert_eq!(
        reqs.iter().map(|q| q.status).collect::<Vec<_>>(),
        [500, 200]
    );
    for q in &reqs {
        assert_eq!(q.path, "/hooks/cairn");
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(q.header("idempotency-key"), Some("j@1/c7/notify/1"));
        let sig = q.header(SIGNATURE_HEADER).expect("signed");
        assert!(sig.starts_with("t=1700000000,v1="), "{sig}");
        assert!(
            webhook::verify(SECRET, sig, &q.body),
            "signature must verify"
        );
        assert!(!webhook::verify("wrong", sig, &q.body));
        let body: Value = serde_json::from_slice(&q.body).unwrap();
        assert_eq!(body["customer"], "c7");
    }
}

#[test]
fn webhook_goes_to_the_dead_letter_file_after_n_failures() {
    let r = Receiver::start(vec![500, 503, 502, 500, 500, 500]).unwrap();
    let ch = channels(&r);
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), policy(3)).unwrap();
    outbox.enqueue(hook("k-dead"), Instant::now());
    let done = drain(&mut outbox, &ch);
    assert_eq!((done[0].1.status, done[0].1.attempts), (Status::Dead, 3));
    assert!(
        done[0].1.error.as_deref().unwrap().contains("HTTP 502"),
        "{done:?}"
    );
    assert_eq!(r.requests().len(), 3, "exactly N attempts");

    let dead: Vec<Value> = std::fs::read_to_string(dir.path().join(DEAD_LETTER_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"]["key"], "k-dead");
    assert_eq!(dead[0]["delivery"]["status"], "dead");
    // Persisted: a reopened outbox does not try it again.
    let mut outbox = Outbox::open(dir.path(), policy(3)).unwrap();
    outbox.enqueue(hook("k-dead"), Instant::now());
    assert_eq!(outbox.pending(), 0);
}

#[test]
fn a_4xx_is_not_retried() {
    let r = Receiver::start(vec![400]).unwrap();
    let ch = channels(&r);
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), policy(5)).unwrap();
    outbox.enqueue(hook("k-400"), Instant::now());
    let done = drain(&mut outbox, &ch);
    assert_eq!((done[0].1.status, done[0].1.attempts), (Status::Failed, 1));
    assert_eq!(r.requests().len(), 1);
}

#[test]
fn an_unreachable_endpoint_is_retried_then_dead_lettered() {
    // A port nobody listens on: connection refused is worth retrying.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ch = Channels {
        webhook: Some(WebhookConfig {
            url: format!("http://127.0.0.1:{port}/x"),
            secret: SECRET.to_string(),
            timeout: Duration::from_millis(500),
        }),
        ..Channels::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), policy(2)).unwrap();
    outbox.enqueue(hook("k-down"), Instant::now());
    let done = drain(&mut outbox, &ch);
    assert_eq!((done[0].1.status, done[0].1.attempts), (Status::Dead, 2));
}

#[test]
fn sms_uses_the_twilio_request_shape() {
    let r = Receiver::start(vec![]).unwrap();
    let ch = channels(&r);
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), policy(3)).unwrap();
    let mut m = hook("k-sms");
    m.channel = "sms".to_string();
    m.to = Some("+33 6 12".to_string());
    m.body = "Last chance: 10% off & free shipping".to_string();
    outbox.enqueue(m, Instant::now());
    let done = drain(&mut outbox, &ch);
    assert_eq!(done[0].1.status, Status::Sent);
    let q = &r.requests()[0];
    assert_eq!(q.path, "/twilio/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(
        q.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // base64("AC123:tok")
    assert_eq!(q.header("authorization"), Some("Basic QUMxMjM6dG9r"));
    assert_eq!(
        String::from_utf8_lossy(&q.body),
        "To=%2B33+6+12&From=%2B15550000&Body=Last+chance%3A+10%25+off+%26+free+shipping"
    );
}

#[test]
fn a_send_rate_spaces_deliveries_and_drops_none() {
    let r = Receiver::start(vec![]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(dir.path(), policy(3)).unwrap();
    outbox.set_send_rates([("webhook".to_string(), 4.0)]);
    let started = Instant::now();
    for i in 0..8 {
        outbox.enqueue(hook(&format!("rate-{i}")), started);
    }
    let done = drain(&mut outbox, &channels(&r));
    let took = started.elapsed();
    assert_eq!(done.len(), 8);
    assert!(done.iter().all(|(_, d)| d.status == Status::Sent));
    // Four go at once (a second's worth), the other four one every 250 ms.
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert_eq!(r.requests().len(), 8);
}
