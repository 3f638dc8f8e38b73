//! The router without sockets (`tower::ServiceExt::oneshot`): backpressure and shutdown, which
//! need the server's internals held in a known state.

mod journeys;
mod profiles;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cairn_server::{App, Config, keys, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn app(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> (Arc<App>, String) {
    let key = keys::create_key(dir, "test", None).unwrap().key;
    let mut config = Config::new(dir);
    config.admin_token = Some("admin-token-for-tests-0123".into());
    tweak(&mut config);
    let (app, _) = App::open(config).unwrap();
    (Arc::new(app), key)
}

fn track(key: &str, id: &str) -> Request<Body> {
    let body = json!({"userId": "u", "event": "e", "messageId": id, "writeKey": key});
    Request::post("/v1/track")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn answer(app: &Arc<App>, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&bytes).unwrap())
}

fn stored(app: &App) -> u64 {
    app.store.snapshot().unwrap().events()
}

#[tokio::test]
async fn when_storage_is_behind_requests_wait_then_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |c| {
        c.write_concurrency = 1;
        c.queue_timeout = Duration::from_millis(200);
    });
    // Storage "falls behind": the only write slot is taken.
    let slot = app.write_slots.clone().acquire_owned().await.unwrap();
    let started = Instant::now();
    let (status, retry, body) = answer(&app, track(&key, "m1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited first"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(body["code"], "overloaded");
    assert_eq!(stored(&app), 0, "nothing of a 503 is stored");

    // A request that gets its turn within the wait is stored and acknowledged.
    let waiting = tokio::spawn({
        let app = app.clone();
        let key = key.clone();
        async move { answer(&app, track(&key, "m2")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(slot);
    let (status, _, body) = waiting.await.unwrap();
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    assert_eq!(stored(&app), 1);
}

#[tokio::test]
async fn beyond_the_queue_limit_requests_get_503_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |c| {
        c.max_queued_requests = 1;
        c.queue_timeout = Duration::from_secs(10);
    });
    app.metrics.queued.fetch_add(1, Ordering::Relaxed); // one request already waits
    let started = Instant::now();
    let (status, retry, body) = answer(&app, track(&key, "m1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(
        (retry.as_deref(), &body["code"]),
        (Some("1"), &json!("overloaded"))
    );
}

#[tokio::test]
async fn a_server_shutting_down_takes_no_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |_| {});
    app.shutting_down.store(true, Ordering::SeqCst);
    let (status, retry, body) = answer(&app, track(&key, "m1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (retry.as_deref(), &body["code"]),
        (Some("1"), &json!("shutting_down"))
    );
    assert_eq!(stored(&app), 0);
}

#[tokio::test]
async fn metrics_need_the_admin_token_unless_made_public() {
    let get = || Request::get("/metrics").body(Body::empty()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(dir.path(), |_| {});
    let res = router(app.clone()).oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    drop(app);
    let (app, _) = self::app(dir.path(), |c| c.public_metrics = true);
    let res = router(app).oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("cairn_ingest_events_total"));
}

/// Every group commit of the log lands in one bucket of the fsync histogram: its count is the
/// number of fsyncs, and its buckets never decrease.
#[tokio::test]
async fn the_log_fsync_histogram_counts_every_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |c| c.public_metrics = true);
    for i in 0..3 {
        let (status, _, body) = answer(&app, track(&key, &format!("m{i}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let res = router(app).oneshot(req).await.unwrap();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line[name.len()..].trim().parse().unwrap()
    };
    let fsyncs = value("cairn_log_fsyncs_total");
    assert!(fsyncs >= 1.0, "three writes, at least one fsync");
    assert_eq!(value("cairn_log_fsync_duration_seconds_count"), fsyncs);
    let buckets: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("cairn_log_fsync_duration_seconds_bucket{le="))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), cairn_store::SYNC_BOUNDS_MICROS.len() + 1);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last().copied(), Some(fsyncs));
}

/// The proxy header, when configured, names the client whose address is stamped.
#[tokio::test]
async fn context_ip_comes_from_the_configured_proxy_header() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = app(dir.path(), |c| c.ip_header = Some("X-Forwarded-For".into()));
    let mut req = track(&key, "m1");
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.7, 10.0.0.1".parse().unwrap());
    let (status, _, body) = answer(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let snap = app.store.snapshot().unwrap();
    let events = snap.timeline("u").unwrap().unwrap();
    let ctx: Value = serde_json::from_str(events[0].event.context.as_deref().unwrap()).unwrap();
    assert_eq!(ctx["ip"], "198.51.100.7");
}
