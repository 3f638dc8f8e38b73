//! `GET /v1/journeys` and `GET /v1/journeys/{id}` through the router, with no runner in the
//! server: the figures come from folding the write-back events in the log.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::{answer, app};

const ADMIN: &str = "Bearer admin-token-for-tests-0123";

fn get(path: &str, auth: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.body(Body::empty()).unwrap()
}

/// A write-back event as the runner stores it (message id prefix, journey, entry, step).
fn progress(n: usize, customer: &str, name: &str, step: Option<&str>) -> Value {
    let mut props = json!({"journey": "welcome@1", "entry": 1});
    if let Some(s) = step {
        props["step"] = json!(s);
    }
    json!({"type": "track", "userId": customer, "event": name, "properties": props,
           "messageId": format!("cairn-journey:test/{n}"), "timestamp": "2026-03-01T00:00:00Z"})
}

#[tokio::test]
async fn journey_figures_come_from_the_log_when_no_runner_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |_| {});
    let file = dir.path().join("welcome.yaml");
    std::fs::write(
        &file,
        "id: welcome\nversion: 1\nentry:\n  event: signup\nsteps:\n  - id: pause\n    wait:\n      duration: 1h\n  - id: done\n    exit: finished\n",
    )
    .unwrap();
    cairn_orchestrate::registry::apply(dir.path(), &file, None).unwrap();

    let (status, _, body) = answer(&app, get("/v1/journeys", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = answer(&app, get("/v1/journeys/nope", Some(ADMIN))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.to_string().contains("no journey"), "{body}");
    let (status, _, body) = answer(&app, get("/v1/journeys?al=1", Some(ADMIN))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // a waits at the pause; b went through and exited.
    let events = vec![
        progress(1, "a", "journey_entered", None),
        progress(2, "a", "journey_step", Some("pause")),
        progress(3, "b", "journey_entered", None),
        progress(4, "b", "journey_step", Some("pause")),
        progress(5, "b", "journey_step", Some("done")),
        progress(6, "b", "journey_exited", Some("done")),
        progress(7, "b", "journey_closed", None),
    ];
    let req = Request::post("/v1/batch")
        .body(Body::from(
            json!({"writeKey": key, "batch": events}).to_string(),
        ))
        .unwrap();
    let (status, _, body) = answer(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, body) = answer(&app, get("/v1/journeys/welcome", Some(ADMIN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = &body["versions"]["welcome@1"];
    assert_eq!(
        (&v["entered"], &v["waiting"], &v["exited"]),
        (&json!(2), &json!(1), &json!(1)),
        "{body:#}"
    );
    assert_eq!(
        v["step_metrics"]["pause"],
        json!({"reached": 2, "waiting": 1, "passed": 1, "exited": 0, "converted": 0, "sent": 0, "failed": 0, "opened": 0, "clicked": 0})
    );
    assert_eq!(body["steps"], json!(["pause", "done"]));
    let (_, _, list) = answer(&app, get("/v1/journeys", Some(ADMIN))).await;
    assert_eq!(list[0]["id"], "welcome");
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["totals"]["entered"], 2, "{list:#}");

    // No runner here: /metrics says so and has no journey series.
    let res = tower::ServiceExt::oneshot(
        cairn_server::router(app.clone()),
        get("/metrics", Some(ADMIN)),
    )
    .await
    .unwrap();
    let text = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("cairn_journey_runner_up 0"), "{text}");
    assert!(!text.contains("cairn_journey_waiting{"), "{text}");
}

fn post(path: &str, auth: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(path).header("content-type", "application/json");
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

const API_JOURNEY: &str = r#"{
  "id": "vip", "version": 1,
  "entry": {"api": true},
  "steps": [
    {"id": "hello", "send": {"channel": "webhook", "template": "vip-hello"}},
    {"id": "done", "exit": "sent"}
  ]
}"#;

/// Definitions as JSON: validate, apply, pause/resume/archive, the same registry as the CLI;
/// errors with line and column; 401 without the token, 404 for an unknown journey.
#[tokio::test]
async fn journeys_are_validated_applied_and_managed_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), |_| {});
    let templates = cairn_orchestrate::registry::api_templates_dir(dir.path());
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("vip-hello.toml"),
        "body = \"hello {{ event.tier }}\"\n",
    )
    .unwrap();

    for path in [
        "/v1/journeys/validate",
        "/v1/journeys",
        "/v1/journeys/vip/pause",
    ] {
        let (status, _, body) = answer(&app, post(path, None, API_JOURNEY)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (status, _, body) = answer(
        &app,
        post("/v1/journeys/validate", Some(ADMIN), API_JOURNEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"valid": true, "journey": "vip", "version": 1, "steps": 2})
    );

    // A bad step reference: 400 with where (in the JSON text) and why.
    let bad = API_JOURNEY.replace(r#""vip-hello"}}"#, r#""vip-hello"}, "next": "nowhere"}"#);
    let (status, _, body) = answer(&app, post("/v1/journeys/validate", Some(ADMIN), &bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_journey");
    assert_eq!(
        (&body["line"], &body["column"]),
        (&json!(5), &json!(86)),
        "{body}"
    );
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no step with id \"nowhere\""),
        "{body}"
    );
    // Bad JSON syntax.
    let (status, _, body) = answer(
        &app,
        post("/v1/journeys", Some(ADMIN), "{\"id\": \"vip\",\n}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (&body["line"], &body["column"]),
        (&json!(2), &json!(1)),
        "{body}"
    );
    // Nothing was applied by the failures.
    assert!(
        cairn_orchestrate::registry::Registry::load(dir.path())
            .unwrap()
            .journeys
            .is_empty()
    );

    let (status, _, body) = answer(&app, post("/v1/journeys", Some(ADMIN), API_JOURNEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"journey": "vip", "version": 1, "applied": "new", "previous": null})
    );
    // The same journey again (written differently): unchanged. Different content: 409.
    let same = API_JOURNEY.replace('\n', " ");
    let (_, _, body) = answer(&app, post("/v1/journeys", Some(ADMIN), &same)).await;
    assert_eq!(body["applied"], "unchanged", "{body}");
    let changed = API_JOURNEY.replace(r#""exit": "sent""#, r#""exit": "done""#);
    let (status, _, body) = answer(&app, post("/v1/journeys", Some(ADMIN), &changed)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("raise `version`"),
        "{body}"
    );
    // A template that is not there: 400, naming it.
    let missing = API_JOURNEY
        .replace("vip-hello", "nope")
        .replace("\"version\": 1", "\"version\": 2");
    let (status, _, body) = answer(&app, post("/v1/journeys", Some(ADMIN), &missing)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"nope\""),
        "{body}"
    );

    // Applied where the CLI applies: the stored version loads back.
    let (j, _) = cairn_orchestrate::registry::load_version(dir.path(), "vip@1").unwrap();
    assert_eq!(j.steps.len(), 2);
    let (status, _, body) = answer(&app, get("/v1/journeys/vip", Some(ADMIN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, body) = answer(&app, post("/v1/journeys/vip/pause", Some(ADMIN), "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"journey": "vip", "status": "paused", "was": "active"})
    );
    let (_, _, body) = answer(&app, post("/v1/journeys/vip/resume", Some(ADMIN), "")).await;
    assert_eq!(body["was"], "paused");
    let (_, _, body) = answer(&app, post("/v1/journeys/vip/archive", Some(ADMIN), "")).await;
    assert_eq!(body["status"], "archived");
    let reg = cairn_orchestrate::registry::Registry::load(dir.path()).unwrap();
    assert_eq!(
        reg.journeys["vip"].status,
        cairn_orchestrate::registry::Status::Archived
    );
    let (status, _, body) = answer(&app, post("/v1/journeys/nope/pause", Some(ADMIN), "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// An API entry is a durable event in the log, idempotent by messageId; only for journeys
/// that enter by API.
#[tokio::test]
async fn an_entry_request_is_stored_as_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), |_| {});
    let templates = cairn_orchestrate::registry::api_templates_dir(dir.path());
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("vip-hello.toml"), "body = \"hi\"\n").unwrap();
    let (status, _, body) = answer(&app, post("/v1/journeys", Some(ADMIN), API_JOURNEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let entry = r#"{"userId": "u1", "properties": {"tier": "gold"}, "messageId": "e-1"}"#;
    let (status, _, _) = answer(&app, post("/v1/journeys/vip/entries", None, entry)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) =
        answer(&app, post("/v1/journeys/nope/entries", Some(ADMIN), entry)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = answer(
        &app,
        post(
            "/v1/journeys/vip/entries",
            Some(ADMIN),
            r#"{"properties": {}}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = answer(
        &app,
        post("/v1/journeys/vip/entries", Some(ADMIN), r#"{"user": "u1"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _, body) =
        answer(&app, post("/v1/journeys/vip/entries", Some(ADMIN), entry)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "journey": "vip", "messageId": "e-1", "duplicate": false, "status": "active"})
    );
    // A retry is a no-op.
    let (_, _, body) = answer(&app, post("/v1/journeys/vip/entries", Some(ADMIN), entry)).await;
    assert_eq!(body["duplicate"], true, "{body}");
    let snap = cairn_store::Snapshot::load(dir.path()).unwrap();
    let events = snap.timeline("u1").unwrap().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0].event;
    assert_eq!(e.event, cairn_journey::definition::API_ENTRY_EVENT);
    let props: Value = serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
    assert_eq!(props, json!({"tier": "gold", "journey": "vip"}));

    // A journey entered on an event takes no API entries.
    let other = r#"{"id": "cart", "version": 1, "entry": {"event": "add_to_cart"}, "steps": [{"id": "x", "exit": "done"}]}"#;
    let (status, _, body) = answer(&app, post("/v1/journeys", Some(ADMIN), other)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) =
        answer(&app, post("/v1/journeys/cart/entries", Some(ADMIN), entry)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("api: true"),
        "{body}"
    );
}
