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
