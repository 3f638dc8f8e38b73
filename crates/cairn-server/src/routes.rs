//! The router and its handlers: the HTTP surface of Cairn.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/{track,identify,page,screen,group,alias}` | write key | one message |
//! | `POST /v1/batch`, `POST /v1/import` | write key | `{"batch": [...]}` |
//! | `POST /t /i /p /s /g /a /b` | write key | the same, under analytics.js's short paths |
//! | `GET /v1/stats` | admin token | `cairn stats --format json` |
//! | `GET /v1/customers/{id}/timeline?limit=N` | admin token | `cairn timeline --format json` |
//! | `GET /metrics` | admin token (none with `public_metrics`) | Prometheus text format |
//! | `GET`, `DELETE /v1/profiles/{identifier}`, `GET …/export` | admin token | see [`crate::profiles`] |
//! | `GET /v1/journeys`, `GET /v1/journeys/{id}` | admin token | see [`crate::journeys`] |
//! | `POST /v1/journeys[/validate]`, `POST /v1/journeys/{id}/{pause,resume,archive,entries}` | admin token | see [`crate::journeys`] |
//! | `GET /health` | none | `{"status": "available"}` |
//! | `GET /v1/projects/{writeKey}/settings` | the key itself | analytics.js settings pointing it here |
//!
//! An ingest request waits for a write slot (a bounded number of requests are validated and
//! written at once, sharing group-commit fsyncs); it waits at most `queue_timeout`, and at most
//! `max_queued_requests` wait at all. Beyond either it gets `503` with `Retry-After`. It is
//! answered `200 {"success": true}` only after `Store::append` returned, that is after the
//! log record holding its messages is fsynced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_model::EventKind;

use crate::App;
use crate::error::{ApiError, Code};
use crate::ingest::{self, Endpoint, Limits};
use crate::keys::{self, KeyStatus};

/// The whole HTTP surface, ready to serve (or to test with `tower::ServiceExt::oneshot`).
pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new();
    for kind in EventKind::ALL {
        let handler = post(
            move |State(app): State<Arc<App>>, req: Request| async move {
                ingest_request(app, Endpoint::Single(kind), req).await
            },
        );
        let short = format!("/{}", &kind.as_str()[..1]);
        r = r
            .route(&format!("/v1/{}", kind.as_str()), handler.clone())
            .route(&short, handler);
    }
    let batch = post(|State(app): State<Arc<App>>, req: Request| async move {
        ingest_request(app, Endpoint::Batch, req).await
    });
    r.route("/v1/batch", batch.clone())
        .route("/v1/import", batch.clone())
        .route("/b", batch)
        .route("/v1/stats", get(stats))
        .route("/v1/customers/{id}/timeline", get(timeline))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/v1/projects/{key}/settings", get(browser_settings))
        .merge(crate::profiles::routes())
        .merge(crate::journeys::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), cors_and_count))
        .with_state(app)
}

fn success() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"success":true}"#,
    )
        .into_response()
}

/// Marks a response with the error code it carries, for counting.
#[derive(Clone, Copy)]
struct Rejected(Code);

pub(crate) fn reject(e: ApiError) -> Response {
    let code = e.code;
    let mut res = e.into_response();
    res.extensions_mut().insert(Rejected(code));
    res
}

/// CORS for browsers (preflight answered here, for every path) and rejects counted by code.
async fn cors_and_count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let origin = HeaderValue::from_str(&app.config.cors_origin)
        .unwrap_or_else(|_| HeaderValue::from_static("*"));
    if req.method() == Method::OPTIONS {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        let requested = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_static("Content-Type, Content-Encoding, Authorization")
            });
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return res;
    }
    let mut res = next.run(req).await;
    if let Some(Rejected(code)) = res.extensions().get::<Rejected>().copied() {
        app.metrics.reject(code);
    }
    res.headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    res
}

async fn not_found() -> Response {
    reject(ApiError::new(
        Code::NotFound,
        "no such endpoint; ingest is POST /v1/{track,identify,page,screen,group,alias,batch,import}",
    ))
}

async fn method_not_allowed(method: Method) -> Response {
    reject(ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{method} is not allowed on this endpoint (ingest endpoints take POST, read endpoints GET)"
        ),
    ))
}

async fn health() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"available"}"#,
    )
        .into_response()
}

/// The settings analytics.js (`@segment/analytics-next`) fetches before it sends anything, with
/// `cdnURL` set to this server. It reads `integrations["Segment.io"]` without a null check, so
/// a bare 200 would break it; `apiHost` points its events back here (it posts to
/// `{apiHost}/t`, `/i`, ... and `/b`).
async fn browser_settings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if let Err(e) = check_key(&app, &key) {
        return reject(e);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&app.config.listen)
        .to_string();
    json_response(&serde_json::json!({
        "integrations": {"Segment.io": {"apiKey": key, "apiHost": host, "protocol": "http"}},
        "plan": {"track": {"__default": {"enabled": true}}, "identify": {"__default": {"enabled": true}}},
        "edgeFunction": {},
    }))
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Decrements a gauge when dropped, however the request ends.
struct Gauge<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The client's address for `context.ip`: from the configured proxy header, else the
/// connection's peer (absent in tests without a socket).
fn client_ip(app: &App, parts: &axum::http::request::Parts) -> Option<String> {
    if !app.config.stamp_ip {
        return None;
    }
    if let Some(name) = &app.config.ip_header {
        return parts
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

async fn ingest_request(app: Arc<App>, endpoint: Endpoint, req: Request) -> Response {
    let started = Instant::now();
    let received_at = now_micros();
    let (parts, body) = req.into_parts();
    let ip = client_ip(&app, &parts);
    let stamp = ingest::Stamp { received_at, ip };
    match ingest_inner(&app, endpoint, parts.headers, body, stamp).await {
        Ok(res) => {
            app.metrics.request_seconds.observe(started.elapsed());
            res
        }
        Err(e) => {
            if e.code != Code::Overloaded {
                app.metrics.request_seconds.observe(started.elapsed());
            }
            reject(e)
        }
    }
}

async fn ingest_inner(
    app: &Arc<App>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
    stamp: ingest::Stamp,
) -> Result<Response, ApiError> {
    if app.shutting_down.load(SeqCst) {
        return Err(ApiError::new(
            Code::ShuttingDown,
            "the server is shutting down; retry against its replacement",
        ));
    }
    let header_key = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(keys::basic_user).ok_or_else(|| {
            ApiError::new(
                Code::InvalidWriteKey,
                "the Authorization header is not Basic auth with the write key as user name",
            )
        })?),
    };
    // A key in the header is checked before the body is even read.
    let key_status = match &header_key {
        Some(k) => Some(check_key(app, k)?),
        None => None,
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let queued = app.metrics.queued.fetch_add(1, Relaxed);
    let queue_gauge = Gauge(&app.metrics.queued);
    if queued as usize >= app.config.max_queued_requests {
        return Err(overloaded());
    }
    let limits = app.limits();
    // Room for a gzip body that inflates within the limit, and no more.
    let raw_limit = endpoint.body_limit(limits);
    let bytes = axum::body::to_bytes(body, raw_limit).await.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::new(
                match endpoint {
                    Endpoint::Single(_) => Code::MessageTooLarge,
                    Endpoint::Batch => Code::BatchTooLarge,
                },
                format!("the request body is larger than the limit of {raw_limit} bytes"),
            )
        } else {
            ApiError::new(
                Code::InvalidJson,
                format!("cannot read the request body: {e}"),
            )
        }
    })?;
    let permit = write_slot(app).await?;
    drop(queue_gauge);
    app.metrics.writing.fetch_add(1, Relaxed);
    let work = app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _writing = Gauge(&work.metrics.writing);
        let r = store_request(
            &work,
            endpoint,
            key_status,
            encoding.as_deref(),
            &bytes,
            &stamp,
        );
        drop(permit);
        r
    })
    .await
    .map_err(ApiError::internal)?;
    result.map(|()| success())
}

/// Appends validated events to the store (blocking: returns once they are durable) and
/// counts them; when storage stays behind for as long as a request may wait its turn: 503,
/// nothing stored.
pub(crate) fn append(
    app: &App,
    events: Vec<cairn_model::Event>,
) -> Result<cairn_store::Outcome, ApiError> {
    let started = Instant::now();
    let outcome = app
        .store
        .append_within(events, app.config.queue_timeout)
        .map_err(|e| match e {
            cairn_store::StoreError::Behind { .. } => overloaded(),
            e => ApiError::internal(e),
        })?;
    app.metrics.append_seconds.observe(started.elapsed());
    app.metrics
        .events_accepted
        .fetch_add(outcome.accepted, Relaxed);
    app.metrics
        .events_duplicate
        .fetch_add(outcome.duplicates, Relaxed);
    Ok(outcome)
}

/// A turn to write, waited for at most `queue_timeout` (then 503: nothing was stored): every
/// request that appends to the store takes one, so their number stays bounded.
pub(crate) async fn write_slot(app: &App) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    tokio::time::timeout(
        app.config.queue_timeout,
        app.write_slots.clone().acquire_owned(),
    )
    .await
    .map_err(|_| overloaded())?
    .map_err(|_| ApiError::new(Code::ShuttingDown, "the server is shutting down"))
}

pub(crate) fn overloaded() -> ApiError {
    ApiError::new(
        Code::Overloaded,
        "storage is behind and this request waited too long for its turn; nothing was stored, retry after the Retry-After delay",
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn check_key(app: &App, key: &str) -> Result<KeyStatus, ApiError> {
    match app.keys.check(key).map_err(ApiError::internal)? {
        KeyStatus::Unknown => Err(ApiError::new(
            Code::InvalidWriteKey,
            "unknown write key (create one with `cairn keys create --source NAME`)",
        )),
        KeyStatus::Revoked => Err(ApiError::new(
            Code::RevokedWriteKey,
            "this write key was revoked",
        )),
        valid => Ok(valid),
    }
}

/// Decodes, authenticates, validates and stores one request. Blocking: runs on a blocking
/// thread, and returns only once the valid messages are durable.
fn store_request(
    app: &App,
    endpoint: Endpoint,
    key_status: Option<KeyStatus>,
    encoding: Option<&str>,
    body: &[u8],
    stamp: &ingest::Stamp,
) -> Result<(), ApiError> {
    let limits = app.limits();
    let json = ingest::decode_body(endpoint, encoding, body, limits)?;
    let envelope = ingest::parse_envelope(endpoint, &json, limits)?;
    let key_status = match key_status {
        Some(s) => s,
        None => {
            let key = envelope.write_key.as_deref().ok_or_else(|| {
                ApiError::new(
                    Code::MissingWriteKey,
                    "no write key: send it as the Basic auth user name or as \"writeKey\" in the body",
                )
            })?;
            check_key(app, key)?
        }
    };
    let channel = match &key_status {
        KeyStatus::Valid { channel, .. } => channel.clone(),
        _ => None,
    };
    let total = envelope.messages.len() + envelope.rejected.len();
    let (events, rejected) = ingest::validate(endpoint, envelope, channel.as_deref(), stamp);
    if !rejected.is_empty() {
        app.metrics
            .invalid_messages
            .fetch_add(rejected.len() as u64, Relaxed);
    }
    let mut stored = 0;
    if !events.is_empty() {
        let outcome = append(app, events)?;
        stored = outcome.accepted + outcome.duplicates;
    }
    if !rejected.is_empty() {
        return Err(ingest::rejection(rejected, total, stored));
    }
    app.metrics.requests_ok.fetch_add(1, Relaxed);
    Ok(())
}

pub(crate) fn check_admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            Code::MissingAdminToken,
            "this endpoint needs the admin token: Authorization: Bearer TOKEN",
        ));
    };
    let ok = value
        .to_str()
        .ok()
        .and_then(keys::bearer_token)
        .is_some_and(|t| keys::same_secret(t, &app.admin_token));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::InvalidAdminToken,
            "wrong admin token (write keys do not give read access)",
        ))
    }
}

pub(crate) fn json_response(v: &serde_json::Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_string_pretty(v).unwrap_or_default(),
    )
        .into_response()
}

async fn stats(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    let result = tokio::task::spawn_blocking(move || {
        app.store
            .shared_snapshot()
            .map(|s| crate::views::stats_json(&s.stats()))
    })
    .await;
    match result {
        Ok(Ok(v)) => json_response(&v),
        Ok(Err(e)) => reject(ApiError::internal(e)),
        Err(e) => reject(ApiError::internal(e)),
    }
}

/// `limit=N` from a query string.
fn limit_param(query: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                return v.parse().map(Some).map_err(|_| {
                    ApiError::new(
                        Code::InvalidQuery,
                        format!("limit: expected a non-negative integer, got {v:?}"),
                    )
                });
            }
            "" => {}
            other => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("unknown query parameter {other:?}; this endpoint takes limit"),
                ));
            }
        }
    }
    Ok(None)
}

async fn timeline(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    let limit = match limit_param(query.as_deref()) {
        Ok(l) => l,
        Err(e) => return reject(e),
    };
    let result = tokio::task::spawn_blocking(move || {
        let snap = app.store.shared_snapshot()?;
        Ok::<_, cairn_store::StoreError>(snap.timeline(&id)?.map(|mut events| {
            let total = events.len();
            if let Some(limit) = limit {
                events.truncate(limit);
            }
            crate::views::timeline_json(&id, &events, total)
        }))
    })
    .await;
    match result {
        Ok(Ok(Some(v))) => json_response(&v),
        Ok(Ok(None)) => reject(ApiError::new(
            Code::CustomerNotFound,
            "no events for this customer id (user id or anonymous id, as sent)",
        )),
        Ok(Err(e)) => reject(ApiError::internal(e)),
        Err(e) => reject(ApiError::internal(e)),
    }
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.config.public_metrics
        && let Err(e) = check_admin(&app, &headers)
    {
        return reject(e);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        {
            let mut text = app.metrics.render(app.store.log_sync_stats());
            crate::journeys::render_metrics(&app, &mut text);
            text
        },
    )
        .into_response()
}

impl App {
    fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.config.max_message_bytes,
            max_batch_bytes: self.config.max_batch_bytes,
        }
    }
}
