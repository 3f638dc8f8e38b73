//! `GET /v1/profiles/{id}`, its export and `DELETE` (forget), through the router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::{answer, app};

const ADMIN: &str = "Bearer admin-token-for-tests-0123";

fn batch(key: &str, batch: Value) -> Request<Body> {
    Request::post("/v1/batch")
        .body(Body::from(
            json!({"writeKey": key, "batch": batch}).to_string(),
        ))
        .unwrap()
}

fn admin(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", ADMIN)
        .body(Body::empty())
        .unwrap()
}

fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test]
async fn a_profile_is_read_paged_exported_and_forgotten_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |_| {});
    let events = json!([
        {"type": "page", "anonymousId": "anon-laptop-77", "name": "Home", "messageId": "p1",
         "timestamp": "2026-01-01T10:00:00Z"},
        {"type": "identify", "userId": "user-ann-42", "anonymousId": "anon-laptop-77",
         "messageId": "i1", "timestamp": "2026-01-01T10:01:00Z",
         "traits": {"email": "ann.secret@example.com", "plan": "free"}},
        {"type": "track", "userId": "user-ann-42", "event": "purchase", "messageId": "t1",
         "timestamp": "2026-01-01T10:02:00Z", "properties": {"revenue": 12.5, "note": "blue-velvet-sofa"}},
        {"type": "track", "userId": "user-bob-7", "event": "purchase", "messageId": "t2",
         "timestamp": "2026-01-01T11:00:00Z"},
    ]);
    let (status, _, body) = answer(&app, batch(&key, events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Any identifier finds the profile; the timeline is paged, newest first.
    let (status, _, p) = answer(
        &app,
        admin(
            "GET",
            "/v1/profiles/email:ann.secret@example.com?limit=2&page=2",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["computed"]["event_count"], 3);
    assert_eq!(p["traits"]["plan"]["value"], "free");
    assert_eq!(p["merges"].as_array().unwrap().len(), 2);
    assert_eq!(p["timeline"]["pages"], 2);
    assert_eq!(p["timeline"]["events"][0]["messageId"], "p1");
    let (_, _, by_anon) = answer(&app, admin("GET", "/v1/profiles/anon-laptop-77")).await;
    assert_eq!(by_anon["identifiers"], p["identifiers"]);
    let (status, _, e) = answer(&app, admin("GET", "/v1/profiles/nobody")).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("customer_not_found"))
    );
    let (status, _, e) = answer(&app, admin("GET", "/v1/profiles/user-ann-42?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let unauthorised = Request::get("/v1/profiles/user-ann-42")
        .body(Body::empty())
        .unwrap();
    assert_eq!(answer(&app, unauthorised).await.0, StatusCode::UNAUTHORIZED);

    // The export holds every event with every field.
    let (status, _, x) = answer(&app, admin("GET", "/v1/profiles/user-ann-42/export")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(x["events"].as_array().unwrap().len(), 3);
    assert_eq!(x["events"][2]["properties"]["note"], "blue-velvet-sofa");

    // Forget: the profile, its events and identifiers leave every file; Bob stays.
    let (status, _, f) = answer(&app, admin("DELETE", "/v1/profiles/user-ann-42")).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["outcome"]["events_removed"], 3);
    for needle in [
        "user-ann-42",
        "anon-laptop-77",
        "ann.secret@example.com",
        "blue-velvet-sofa",
    ] {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let (status, _, _) = answer(&app, admin("GET", "/v1/profiles/user-ann-42")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.store.snapshot().unwrap().events(), 1);

    // A late event for Ann is acknowledged (clients must not retry it) but not stored.
    let late = json!([{"type": "track", "anonymousId": "anon-laptop-77", "event": "view",
                       "messageId": "late", "timestamp": "2026-01-02T10:00:00Z"}]);
    let (status, _, _) = answer(&app, batch(&key, late)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.store.snapshot().unwrap().events(), 1);
    assert_eq!(app.store.suppressed_events(), 1);
    assert!(files_containing(dir.path(), "anon-laptop-77").is_empty());
}
