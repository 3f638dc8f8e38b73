use std::time::{Duration, Instant};

use cairn_channels::outbox::{Channels, Outbound, Outbox, RetryPolicy, Status};
use cairn_channels::smtp::SmtpConfig;
use cairn_channels::template::{Template, Templates};
use cairn_channels::testing::SmtpServer;
use serde_json::{Value, json};

fn mails(server: &SmtpServer) -> Vec<Value> {
    server.mails()
}

fn message(key: &str, to: &str, subject: &str, body: &str) -> Outbound {
    Outbound {
        key: key.to_string(),
        customer: "c1".to_string(),
        journey: "abandoned-cart@1".to_string(),
        step: "email".to_string(),
        channel: "email".to_string(),
        to: Some(to.to_string()),
        subject: Some(subject.to_string()),
        body: body.to_string(),
        payload: json!({}),
    }
}

#[test]
fn email_reaches_a_real_smtp_server_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path());
    let templates = Templates::from_map(
        [(
            "cart-reminder".to_string(),
            Template {
                subject: Some("{{ profile.first_name }}, your cart is waiting".to_string()),
                body: "Hi {{ profile.first_name | default(\"there\") }},\n\
                       you left {{ event.product }} ({{ event.price }} EUR) in your cart.\n\
                       .a line starting with a dot\nBye"
                    .to_string(),
            },
        )]
        .into(),
    )
    .unwrap();
    let ctx = json!({
        "customer": "c1",
        "profile": {"first_name": "Ada", "email": "ada@example.com"},
        "event": {"product": "Lamp", "price": 39.5},
    });
    let r = templates.render("cart-reminder", &ctx).unwrap();
    let channels = Channels {
        smtp: Some(SmtpConfig {
            server: server.addr(),
            from: "shop@example.com".to_string(),
            helo: "cairn.test".to_string(),
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        }),
        ..Channels::default()
    };
    let mut outbox = Outbox::open(&dir.path().join("outbox"), RetryPolicy::default()).unwrap();
    let key = "abandoned-cart@1/c1/email/1";
    outbox.enqueue(
        message(
            key,
            "ada@example.com",
            r.subject.as_deref().unwrap(),
            &r.body,
        ),
        Instant::now(),
    );
    // A recipient the server refuses for good: a bounce, recorded, not retried.
    outbox.enqueue(
        message("k-bounce", "bounce@example.com", "x", "y"),
        Instant::now(),
    );
    let done = outbox.run_due(&channels, Instant::now(), 0).unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(done[0].1.status, Status::Sent, "{done:?}");
    assert_eq!(done[1].1.status, Status::Bounced);
    assert_eq!(done[1].1.attempts, 1);

    let got = mails(&server);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["rcpt_tos"], json!(["ada@example.com"]));
    assert_eq!(m["mail_from"], "shop@example.com");
    assert_eq!(m["subject"], "Ada, your cart is waiting");
    assert_eq!(
        m["body"],
        "Hi Ada,\nyou left Lamp (39.5 EUR) in your cart.\n.a line starting with a dot\nBye\n"
    );
    assert_eq!(m["idempotency_key"], key);
    assert_eq!(m["message_id"], "<abandoned-cart.1.c1.email.1@cairn>");

    // The outbox remembers: reopened, the key is done and is not queued again.
    drop(outbox);
    let mut outbox = Outbox::open(&dir.path().join("outbox"), RetryPolicy::default()).unwrap();
    assert!(outbox.is_done(key) && outbox.is_done("k-bounce"));
    outbox.enqueue(message(key, "ada@example.com", "s", "b"), Instant::now());
    assert_eq!(outbox.pending(), 0);
}

#[test]
fn non_ascii_email_is_encoded_and_decodes_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path());
    let channels = Channels {
        smtp: Some(SmtpConfig {
            server: server.addr(),
            from: "shop@example.com".to_string(),
            helo: "cairn.test".to_string(),
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        }),
        ..Channels::default()
    };
    let mut outbox = Outbox::open(dir.path(), RetryPolicy::default()).unwrap();
    outbox.enqueue(
        message(
            "k1",
            "zoe@example.com",
            "Zoë, ton panier",
            "Déjà 2 articles: café ☕",
        ),
        Instant::now(),
    );
    let done = outbox.run_due(&channels, Instant::now(), 0).unwrap();
    assert_eq!(done[0].1.status, Status::Sent, "{done:?}");
    let got = mails(&server);
    assert_eq!(got[0]["subject"], "Zoë, ton panier");
    assert_eq!(got[0]["body"], "Déjà 2 articles: café ☕");
}
