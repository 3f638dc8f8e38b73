//! `cairn serve --journeys`: the journey runner inside the server, on its store. Events sent
//! over HTTP with a write key enter customers into an applied journey; messages reach a local
//! webhook receiver; `GET /v1/journeys/{id}` and `/metrics` show the figures; after kill -9
//! and a restart the figures are the same and nothing is sent twice; once the wait is over
//! (the test clock jumps a day) the follow-ups go out, each once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_channels::testing::Receiver;
use serde_json::{Value, json};

use crate::ok;
use crate::serve::{Server, admin_get, create_key, post};

const JOURNEY: &str = "id: onboard\nversion: 1\nentry:\n  event: signup\nsteps:\n  - id: welcome\n    send:\n      channel: webhook\n      template: hello\n  - id: pause\n    wait:\n      duration: 1d\n  - id: followup\n    send:\n      channel: webhook\n      template: hello\n    next: done\n  - id: done\n    exit: finished\n";

/// Starts the server with the runner, webhook to `hook`, its clock frozen at `at`.
fn start(data: &Path, hook: &str, at: &str) -> Server {
    Server::start(
        data,
        &[
            "--journeys",
            "--webhook-url",
            hook,
            "--webhook-secret",
            "s",
            "--clock-start",
            at,
            "--clock-rate",
            "0",
        ],
    )
}

/// Idempotency key → copies received.
fn keys(r: &Receiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for q in r.requests() {
        *out.entry(q.header("idempotency-key").unwrap_or("").to_string())
            .or_default() += 1;
    }
    out
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn journey(server: &Server) -> Value {
    let a = admin_get(server, "/v1/journeys/onboard");
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
    a.json()
}

fn metrics(server: &Server) -> String {
    let a = admin_get(server, "/metrics");
    assert_eq!(a.status, 200);
    String::from_utf8(a.body).unwrap()
}

/// The value of one Prometheus series, by its exact name and labels.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn runner_up(server: &Server) -> bool {
    series(&metrics(server), "cairn_journey_runner_up") == Some(1.0)
}

#[test]
fn serve_runs_journeys_live_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("onboard.yaml");
    std::fs::write(&file, JOURNEY).unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/hello.toml"),
        "body = \"hello {{ customer }} from {{ step }}\"\n",
    )
    .unwrap();
    let key = create_key(&data, "web", None);
    let hook = Receiver::start(vec![]).unwrap();
    let url = hook.url("/hook");
    let t0 = "2026-03-01T00:00:00Z";

    let mut server = start(&data, &url, t0);
    wait_for("the runner", || runner_up(&server));
    // Applied while the server runs: the runner picks it up on its next round.
    ok(&data, &["journeys", "apply", file.to_str().unwrap()]);
    let before: Value = journey(&server);
    assert_eq!(before["versions"]["onboard@1"]["entered"], 0, "{before:#}");

    let signups: Vec<Value> = (0..3)
        .map(|i| {
            json!({"type": "track", "userId": format!("c{i}"), "event": "signup",
                        "messageId": format!("s{i}"), "timestamp": t0})
        })
        .collect();
    let sent_at = Instant::now();
    let a = post(&server, &key, "/v1/batch", &json!({ "batch": signups }));
    assert_eq!(a.status, 200);
    wait_for("3 welcome messages", || keys(&hook).len() == 3);
    let latency = sent_at.elapsed();
    eprintln!("serve --journeys: 3 events to 3 webhook deliveries in {latency:.1?}");
    let q = &hook.requests()[0];
    let body = String::from_utf8_lossy(&q.body);
    assert!(
        body.contains("hello c") && body.contains("from welcome"),
        "{body}"
    );

    // The figures, by API: everyone got the welcome and waits at the pause.
    wait_for("the figures", || {
        journey(&server)["versions"]["onboard@1"]["sent"] == 3
    });
    let live = journey(&server);
    let v = &live["versions"]["onboard@1"];
    assert_eq!(
        (v["entered"].as_u64(), v["waiting"].as_u64()),
        (Some(3), Some(3)),
        "{live:#}"
    );
    assert_eq!(
        v["step_metrics"]["welcome"],
        json!({"reached": 3, "waiting": 0, "passed": 3, "exited": 0, "converted": 0, "sent": 3, "failed": 0, "opened": 0, "clicked": 0}),
        "{live:#}"
    );
    assert_eq!(v["step_metrics"]["pause"]["waiting"], 3, "{live:#}");
    let list = admin_get(&server, "/v1/journeys").json();
    assert_eq!(list[0]["id"], "onboard");
    assert_eq!(list[0]["totals"]["entered"], 3, "{list:#}");
    assert_eq!(list[0]["totals"]["sent"], 3, "{list:#}");
    // ... and by Prometheus.
    let m = metrics(&server);
    let l = "journey=\"onboard\",version=\"1\"";
    assert_eq!(
        series(&m, &format!("cairn_journey_waiting{{{l},step=\"pause\"}}")),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            &format!("cairn_journey_customers_total{{{l},step=\"welcome\",state=\"entered\"}}")
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            &format!("cairn_journey_messages_total{{{l},step=\"welcome\",status=\"sent\"}}")
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        series(
            &m,
            &format!("cairn_journey_entries_total{{{l},state=\"entered\"}}")
        ),
        Some(3.0),
        "{m}"
    );
    assert!(m.contains("# TYPE cairn_journey_waiting gauge"), "{m}");

    // kill -9, restart at the same journey time: the replayed figures are the same, and
    // nothing is sent again.
    server.kill();
    let server = start(&data, &url, t0);
    wait_for("the runner after kill -9", || runner_up(&server));
    assert_eq!(journey(&server), live);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(keys(&hook).values().sum::<usize>(), 3, "{:?}", keys(&hook));

    // A day later the pause is over: the follow-ups, once each.
    drop(server);
    let server = start(&data, &url, "2026-03-02T00:00:01Z");
    wait_for("3 follow-ups", || keys(&hook).len() == 6);
    wait_for("the figures", || {
        journey(&server)["versions"]["onboard@1"]["sent"] == 6
    });
    let after = journey(&server);
    let v = &after["versions"]["onboard@1"];
    assert_eq!(v["step_metrics"]["pause"]["waiting"], 0, "{after:#}");
    assert_eq!(v["step_metrics"]["pause"]["passed"], 3, "{after:#}");
    assert_eq!(v["step_metrics"]["done"]["exited"], 3, "{after:#}");
    assert_eq!(
        v["waiting"], 0,
        "no goal: entries close at the exit: {after:#}"
    );
    let (clean, _) = server.terminate();
    assert!(clean, "graceful shutdown with the runner");
    assert!(keys(&hook).values().all(|&n| n == 1), "{:?}", keys(&hook));

    // Without a server, the CLI folds the log's write-backs into the same figures.
    let show: Value = serde_json::from_str(&ok(
        &data,
        &["journeys", "show", "onboard", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(show, after);
}

fn admin_post(server: &Server, path: &str, body: &Value) -> crate::serve::Answer {
    let auth = format!("Bearer {}", crate::serve::ADMIN);
    crate::serve::post_as(server, &auth, path, body)
}

/// Webhook bodies received for a journey (`id@version`), as JSON.
fn deliveries(r: &Receiver, journey: &str) -> Vec<Value> {
    r.requests()
        .iter()
        .filter_map(|q| serde_json::from_slice::<Value>(&q.body).ok())
        .filter(|v| v["journey"] == journey)
        .collect()
}

/// Journeys applied as JSON over the API of a running `cairn serve --journeys`, taken up by
/// its runner at once: a customer entered by API gets the webhook (rendered with the request's
/// properties) once, however often the request is retried; a weekly schedule fires at 09:00 in
/// each customer's timezone, after a restart at a later journey time.
#[test]
fn serve_takes_journeys_and_entries_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, "web", None);
    let templates = data.join("journeys/templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("vip-hello.toml"),
        "body = \"hello {{ customer }}, {{ event.tier }}\"\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("digest.toml"),
        "body = \"digest for {{ profile.email }}\"\n",
    )
    .unwrap();
    let hook = Receiver::start(vec![]).unwrap();
    let url = hook.url("/hook");
    // A Sunday.
    let server = start(&data, &url, "2026-03-01T00:00:00Z");
    wait_for("the runner", || runner_up(&server));

    let vip = json!({"id": "vip", "version": 1, "entry": {"api": true},
        "steps": [{"id": "hello", "send": {"channel": "webhook", "template": "vip-hello"}},
                  {"id": "done", "exit": "sent"}]});
    let a = admin_post(&server, "/v1/journeys", &vip);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["applied"], "new");
    let digest = json!({"id": "digest", "version": 1,
        "entry": {"schedule": {"cron": "0 9 * * 1"}, "where": [{"trait": "email", "exists": true}]},
        "steps": [{"id": "send", "send": {"channel": "webhook", "template": "digest"}},
                  {"id": "done", "exit": "sent"}]});
    let a = admin_post(&server, "/v1/journeys", &digest);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // A bad definition: where and why (`json!` sorts keys: the text starts
    // `{"entry":{"schedule":{"cron":"0 9 * *"}}`).
    let a = admin_post(
        &server,
        "/v1/journeys/validate",
        &json!({"id": "x", "version": 1, "entry": {"schedule": {"cron": "0 9 * *"}}, "steps": [{"id": "x", "exit": "d"}]}),
    );
    assert_eq!(a.status, 400);
    let err = a.json();
    assert_eq!(
        (&err["line"], &err["column"]),
        (&json!(1), &json!(30)),
        "{err}"
    );
    assert!(
        err["reason"].as_str().unwrap().contains("5 fields"),
        "{err}"
    );

    let identify = |id: &str, traits: Value| {
        json!({"type": "identify", "userId": id, "traits": traits,
               "messageId": format!("id-{id}"), "timestamp": "2026-03-01T00:00:00Z"})
    };
    let batch = json!({"batch": [
        identify("paris", json!({"email": "p@example.com", "timezone": "Europe/Paris"})),
        identify("utc", json!({"email": "u@example.com"})),
        identify("nomail", json!({"plan": "free"})),
    ]});
    assert_eq!(post(&server, &key, "/v1/batch", &batch).status, 200);

    // Entry by API: the request is an event in the log; the runner enters the customer.
    let entry = json!({"userId": "utc", "properties": {"tier": "gold"}, "messageId": "e-1"});
    let sent_at = Instant::now();
    let a = admin_post(&server, "/v1/journeys/vip/entries", &entry);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["duplicate"], false);
    wait_for("the vip webhook", || deliveries(&hook, "vip@1").len() == 1);
    eprintln!(
        "serve --journeys: API entry to webhook delivery in {:.1?}",
        sent_at.elapsed()
    );
    assert_eq!(deliveries(&hook, "vip@1")[0]["body"], "hello utc, gold");
    let a = admin_post(&server, "/v1/journeys/vip/entries", &entry);
    assert_eq!(a.json()["duplicate"], true);
    wait_for("the figures", || {
        journey_named(&server, "vip")["versions"]["vip@1"]["sent"] == 1
    });
    assert_eq!(
        journey_named(&server, "vip")["versions"]["vip@1"]["entered"],
        1
    );
    // Not Monday yet: no digest.
    std::thread::sleep(Duration::from_millis(300));
    assert!(deliveries(&hook, "digest@1").is_empty());
    assert_eq!(
        deliveries(&hook, "vip@1").len(),
        1,
        "a retried request enters no one again"
    );
    let (clean, _) = server.terminate();
    assert!(clean);

    // Monday 09:00:30 UTC: 09:00 has passed in Paris (08:00 UTC) and in UTC; each customer
    // with an email got one digest, at 09:00 their time.
    let server = start(&data, &url, "2026-03-02T09:00:30Z");
    wait_for("2 digests", || deliveries(&hook, "digest@1").len() == 2);
    let mut got: Vec<(String, String)> = deliveries(&hook, "digest@1")
        .iter()
        .map(|d| {
            (
                d["customer"].as_str().unwrap().to_string(),
                d["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("paris".to_string(), "2026-03-02T08:00:00Z".to_string()),
            ("utc".to_string(), "2026-03-02T09:00:00Z".to_string()),
        ]
    );
    // Paused over the API: no more entries by API (the request is still stored).
    let a = admin_post(&server, "/v1/journeys/vip/pause", &json!({}));
    assert_eq!(a.json()["status"], "paused");
    let a = admin_post(
        &server,
        "/v1/journeys/vip/entries",
        &json!({"userId": "paris", "messageId": "e-2"}),
    );
    assert_eq!(a.json()["status"], "paused");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(deliveries(&hook, "vip@1").len(), 1);
    let (clean, _) = server.terminate();
    assert!(clean);
}

fn journey_named(server: &Server, id: &str) -> Value {
    let a = admin_get(server, &format!("/v1/journeys/{id}"));
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
    a.json()
}
