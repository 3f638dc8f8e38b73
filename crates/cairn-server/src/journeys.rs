//! Journeys in the server: the live runner on a thread of `cairn serve --journeys`, and the
//! journey endpoints and metrics.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /v1/journeys?all=true` | admin token | applied journeys with totals (`all`: archived too) |
//! | `GET /v1/journeys/{id}` | admin token | `cairn journeys show ID --format json` |
//! | `POST /v1/journeys/validate` | admin token | `cairn journeys validate`: a definition as JSON |
//! | `POST /v1/journeys` | admin token | `cairn journeys apply`: a definition as JSON |
//! | `POST /v1/journeys/{id}/pause`, `/resume`, `/archive` | admin token | `cairn journeys pause` ... |
//! | `POST /v1/journeys/{id}/entries` | admin token | enter a customer into a journey with `entry: {api: true}` |
//!
//! Definitions over the API are the YAML structure written as JSON; an unusable one is
//! answered `400 invalid_journey` with the `line` and `column` in the JSON text and the
//! `reason`. Applying and changing status go through the same registry functions as the CLI
//! (`cairn_orchestrate::registry`), and wake the runner running here so it takes the change
//! up at once. Templates of a definition applied over the API come from
//! `DATA/journeys/templates/` (`<name>.toml`).
//!
//! An API entry is an event, not a shortcut into the engine: the endpoint appends a track
//! event `journey_entry_requested` (properties: the request's `properties` plus `journey`)
//! through the same validation and store append as `/v1/track`, answers once it is durable,
//! and the runner enters the customer when it reads the event from the log, as a replay or a
//! simulation would. Its `messageId` (given, or made unique per request) makes a retried
//! request a no-op. It takes the admin token, not a write key: a write key sits in browsers
//! and apps, and must not be enough to send messages to any customer.
//!
//! The runner (`cairn_orchestrate::runner`) works on the server's own store handle, so ingest
//! and journeys share the single writer; it watches the log's group-commit counter and so
//! starts on new events within a millisecond of their fsync. It stops at shutdown once the
//! HTTP requests are answered, before the store is flushed. When it is not running here (no
//! `--journeys`, still replaying its journal, or stopped on an error) the endpoints fold the
//! write-back events in the log instead: the same fold, so the figures are the same, only
//! slower to read. Prometheus gets the journey series only from a runner running here.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use cairn_orchestrate::view::{self, Source};
use cairn_orchestrate::{Runner, Shared};

use crate::App;
use crate::error::{ApiError, Code, ServerError, TextPosition};
use crate::ingest::{self, Endpoint};
use crate::routes::{check_admin, json_response, reject};
use cairn_journey::Journey;
use cairn_journey::definition::{API_ENTRY_EVENT, EntryOn};
use cairn_orchestrate::registry::{self, Applied, Registry, Status};
use serde_json::{Map, Value, json};

/// The runner's state as the handlers see it: set once its journal is replayed.
#[derive(Default)]
pub struct Journeys {
    shared: OnceLock<Arc<Shared>>,
}

impl Journeys {
    /// The running runner's shared state, if one runs here and has not failed.
    fn live(&self) -> Option<&Arc<Shared>> {
        self.shared.get().filter(|s| !s.failed())
    }
}

/// The runner thread; [`RunnerThread::stop`] ends it.
pub struct RunnerThread {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts the runner of the applied journeys on `app`'s store, on its own thread.
pub fn start(app: &Arc<App>) -> Result<RunnerThread, ServerError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (app, halt) = (Arc::clone(app), Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("cairn-journeys".into())
        .spawn(move || {
            if let Err(e) = run(&app, &halt) {
                eprintln!("cairn serve: the journey runner stopped: {e}");
                if let Some(s) = app.journeys.shared.get() {
                    s.set_failed();
                }
            }
        })
        .map_err(|e| ServerError::Runtime(format!("starting the journey runner: {e}")))?;
    Ok(RunnerThread { stop, thread })
}

fn run(app: &App, stop: &AtomicBool) -> cairn_orchestrate::Result<()> {
    let started = Instant::now();
    let args = &app.config.journey_runner;
    let mut r = Runner::open(&app.config.data_dir, Arc::clone(&app.store), args)?;
    let _ = app.journeys.shared.set(r.shared());
    eprintln!("{}", r.start_summary(started.elapsed()));
    r.follow(Duration::from_millis(args.poll_ms), false, stop, || {
        app.store.log_sync_stats().syncs
    })
}

impl RunnerThread {
    /// Lets the round in progress finish (deliveries included), then ends the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if self.thread.join().is_err() {
            eprintln!("cairn serve: the journey runner panicked");
        }
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/journeys", get(list).post(apply))
        .route("/v1/journeys/validate", post(validate))
        .route("/v1/journeys/{id}", get(show))
        .route("/v1/journeys/{id}/pause", post(pause))
        .route("/v1/journeys/{id}/resume", post(resume))
        .route("/v1/journeys/{id}/archive", post(archive))
        .route("/v1/journeys/{id}/entries", post(enter))
}

/// Registry changes made over the API, one at a time (each reads, changes and rewrites
/// `registry.json`).
static REGISTRY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An orchestrate error as an answer: what the client can fix is said, the rest is internal.
fn journey_error(e: cairn_orchestrate::Error) -> ApiError {
    use cairn_orchestrate::Error as E;
    match e {
        E::Definition { cause, .. } => {
            let mut err = ApiError::new(
                Code::InvalidJourney,
                format!("the definition is not a valid journey: {cause}"),
            );
            err.at = Some(TextPosition {
                line: cause.line,
                column: cause.column,
                reason: cause.reason,
            });
            err
        }
        E::Template { .. } => ApiError::new(Code::InvalidJourney, e.to_string()),
        E::VersionChanged { .. } | E::OlderVersion { .. } => {
            ApiError::new(Code::JourneyConflict, e.to_string())
        }
        E::NoJourney(id) => ApiError::new(
            Code::NotFound,
            format!("no journey {id:?} is applied (see GET /v1/journeys?all=true)"),
        ),
        e => ApiError::internal(e),
    }
}

/// Runs a registry job on a blocking thread (file reads, fsyncs).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body)
        .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not UTF-8: {e}")))
}

/// `POST /v1/journeys/validate`: checks a definition (JSON), stores nothing.
async fn validate(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    // A large definition takes a while to parse: not on the async threads.
    let checked = blocking(move || {
        let j = Journey::from_json(body_text(&body)?).map_err(|cause| {
            journey_error(cairn_orchestrate::Error::Definition {
                what: "the definition".into(),
                cause,
            })
        })?;
        Ok(json!({
            "valid": true,
            "journey": j.id,
            "version": j.version,
            "steps": j.steps.len(),
        }))
    })
    .await;
    match checked {
        Ok(v) => json_response(&v),
        Err(e) => reject(e),
    }
}

/// `POST /v1/journeys`: applies a definition (JSON) as a new version, like `cairn journeys
/// apply`; answers its id and version, and whether it was new.
async fn apply(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    let work = Arc::clone(&app);
    let result = blocking(move || {
        let text = body_text(&body)?;
        let _one = REGISTRY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry::apply_json(&work.config.data_dir, text).map_err(journey_error)
    })
    .await;
    let (versioned, applied, previous) = match result {
        Ok(Applied::New {
            versioned,
            previous,
        }) => (versioned, "new", previous),
        Ok(Applied::Unchanged { versioned }) => (versioned, "unchanged", None),
        Err(e) => return reject(e),
    };
    wake(&app);
    let (id, version) = versioned.rsplit_once('@').unwrap_or((&versioned, ""));
    json_response(&json!({
        "journey": id,
        "version": version.parse::<u32>().ok(),
        "applied": applied,
        "previous": previous,
    }))
}

/// Tells the runner running here that the registry changed.
fn wake(app: &App) {
    if let Some(s) = app.journeys.shared.get() {
        s.registry_changed();
    }
}

async fn pause(state: State<Arc<App>>, headers: HeaderMap, id: Path<String>) -> Response {
    set_status(state, headers, id, Status::Paused).await
}

async fn resume(state: State<Arc<App>>, headers: HeaderMap, id: Path<String>) -> Response {
    set_status(state, headers, id, Status::Active).await
}

async fn archive(state: State<Arc<App>>, headers: HeaderMap, id: Path<String>) -> Response {
    set_status(state, headers, id, Status::Archived).await
}

/// `POST /v1/journeys/{id}/{pause,resume,archive}`, like the CLI's commands of those names.
async fn set_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    status: Status,
) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    let (work, wanted) = (Arc::clone(&app), id.clone());
    let result = blocking(move || {
        let _one = REGISTRY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry::set_status(&work.config.data_dir, &wanted, status).map_err(journey_error)
    })
    .await;
    match result {
        Ok(before) => {
            wake(&app);
            json_response(&json!({
                "journey": id,
                "status": status.as_str(),
                "was": before.as_str(),
            }))
        }
        Err(e) => reject(e),
    }
}

/// The body of `POST /v1/journeys/{id}/entries`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EntryRequest {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    anonymous_id: Option<Value>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
}

/// `POST /v1/journeys/{id}/entries`: appends the entry request event (see the module doc)
/// and answers once it is durable.
async fn enter(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match enter_inner(&app, &headers, id, body).await {
        Ok(v) => json_response(&v),
        Err(e) => reject(e),
    }
}

async fn enter_inner(
    app: &Arc<App>,
    headers: &HeaderMap,
    id: String,
    body: Bytes,
) -> Result<Value, ApiError> {
    check_admin(app, headers)?;
    if app.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            Code::ShuttingDown,
            "the server is shutting down; retry against its replacement",
        ));
    }
    let req: EntryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            Code::InvalidJson,
            format!("the body is not an entry request ({{\"userId\" or \"anonymousId\", \"properties\"}}): {e}"),
        )
    })?;
    // The journey must be applied and its current version enter by API.
    let (work, wanted) = (Arc::clone(app), id.clone());
    let status = blocking(move || {
        let data = &work.config.data_dir;
        let reg = Registry::load(data).map_err(ApiError::internal)?;
        let e = reg
            .journeys
            .get(&wanted)
            .ok_or_else(|| journey_error(cairn_orchestrate::Error::NoJourney(wanted.clone())))?;
        let (j, _) = registry::load_version(data, &format!("{wanted}@{}", e.current()))
            .map_err(ApiError::internal)?;
        if j.entry.on != EntryOn::Api {
            return Err(ApiError::new(
                Code::JourneyConflict,
                format!(
                    "journey {} does not enter by API (its definition needs `entry: {{api: true}}`)",
                    j.versioned_id()
                ),
            ));
        }
        Ok(e.status)
    })
    .await?;
    let received_at = crate::routes::now_micros();
    let customer = req
        .user_id
        .iter()
        .chain(&req.anonymous_id)
        .find_map(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut properties = req.properties.unwrap_or_default();
    match properties.get("journey") {
        None => {}
        Some(Value::String(j)) if *j == id => {}
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidMessage,
                "properties.journey is set by the endpoint (the journey id in the path)",
            ));
        }
    }
    properties.insert("journey".into(), Value::String(id.clone()));
    // Without a client messageId, one per request: a content hash would drop a later request
    // for the same customer with the same properties as a duplicate.
    let message_id = req
        .message_id
        .unwrap_or_else(|| Value::String(format!("cairn-entry:{id}:{customer}:{received_at}")));
    let mut msg = json!({
        "type": "track",
        "event": API_ENTRY_EVENT,
        "messageId": message_id,
        "properties": properties,
    });
    for (k, v) in [
        ("userId", req.user_id),
        ("anonymousId", req.anonymous_id),
        ("timestamp", req.timestamp),
    ] {
        if let Some(v) = v {
            msg[k] = v;
        }
    }
    // The validation /v1/track applies (ids, timestamp, sizes).
    let envelope = ingest::Envelope {
        write_key: None,
        messages: vec![(0, msg)],
        rejected: Vec::new(),
        sent_at: None,
    };
    let stamp = ingest::Stamp {
        received_at,
        ip: None,
    };
    let kind = Endpoint::Single(cairn_model::EventKind::Track);
    let (events, rejected) = ingest::validate(kind, envelope, Some("api"), &stamp);
    if !rejected.is_empty() {
        return Err(ingest::rejection(rejected, 1, 0));
    }
    let message_id = events[0].message_id.clone();
    // The append path of /v1/track: a write slot, then the store's append (fsynced).
    let permit = crate::routes::write_slot(app).await?;
    let work = Arc::clone(app);
    let outcome = blocking(move || {
        let r = crate::routes::append(&work, events);
        drop(permit);
        r
    })
    .await?;
    app.metrics
        .requests_ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(json!({
        "success": true,
        "journey": id,
        "messageId": message_id,
        "duplicate": outcome.accepted == 0,
        // A paused or archived journey takes no entries: the request is stored, no one enters.
        "status": status.as_str(),
    }))
}

/// `all=true|false` from a query string.
fn all_param(query: Option<&str>) -> Result<bool, ApiError> {
    let mut all = false;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("", _) => {}
            ("all", v) => {
                all = v.parse().map_err(|_| {
                    ApiError::new(
                        Code::InvalidQuery,
                        format!("all: expected true or false, got {v:?}"),
                    )
                })?;
            }
            (other, _) => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!("unknown query parameter {other:?}; this endpoint takes all"),
                ));
            }
        }
    }
    Ok(all)
}

/// Runs `f` on a blocking thread with the figures' source: the live runner's fold when one
/// runs here (a short lock), else the log.
async fn with_source(
    app: Arc<App>,
    f: impl FnOnce(&std::path::Path, Source) -> cairn_orchestrate::Result<Option<serde_json::Value>>
    + Send
    + 'static,
) -> Result<Option<serde_json::Value>, ApiError> {
    let result = tokio::task::spawn_blocking(move || {
        // A copy of the figures, so the runner's lock is not held during file reads.
        let live = app
            .journeys
            .live()
            .and_then(|s| s.metrics())
            .map(|m| m.snapshot());
        f(&app.config.data_dir, live.map_or(Source::Log, Source::Live))
    })
    .await;
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(e)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    let all = match all_param(query.as_deref()) {
        Ok(a) => a,
        Err(e) => return reject(e),
    };
    match with_source(app, move |dir, src| {
        view::list_json(dir, all, src).map(Some)
    })
    .await
    {
        Ok(Some(v)) => json_response(&v),
        Ok(None) => json_response(&serde_json::json!([])),
        Err(e) => reject(e),
    }
}

async fn show(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(e) = check_admin(&app, &headers) {
        return reject(e);
    }
    let wanted = id.clone();
    match with_source(app, move |dir, src| view::journey_json(dir, &wanted, src)).await {
        Ok(Some(v)) => json_response(&v),
        Ok(None) => reject(ApiError::new(
            Code::NotFound,
            format!("no journey {id:?} is applied (see GET /v1/journeys?all=true)"),
        )),
        Err(e) => reject(e),
    }
}

/// Appends the journey series to the Prometheus text, when a runner runs here.
pub fn render_metrics(app: &App, out: &mut String) {
    // A copy, so the runner's lock is held only while copying.
    let figures = app
        .journeys
        .live()
        .and_then(|s| s.metrics())
        .map(|m| m.snapshot());
    let _ = writeln!(
        out,
        "# HELP cairn_journey_runner_up Whether this server runs the applied journeys (1) or not (0: no --journeys, replaying its journal, or stopped on an error).\n\
         # TYPE cairn_journey_runner_up gauge\n\
         cairn_journey_runner_up {}",
        u8::from(figures.is_some())
    );
    let Some(figures) = figures else {
        return;
    };
    let _ = writeln!(
        out,
        "# HELP cairn_journey_entries_total Journey entries, by what happened to them (converted: reached the goal).\n\
         # TYPE cairn_journey_entries_total counter"
    );
    for (versioned, v) in &figures {
        let l = labels(versioned);
        for (state, n) in [
            ("entered", v.entered),
            ("exited", v.exited),
            ("converted", v.converted),
        ] {
            let _ = writeln!(
                out,
                "cairn_journey_entries_total{{{l},state=\"{state}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP cairn_journey_entries_open Journey entries not over (on their steps, or measuring their goal window).\n\
         # TYPE cairn_journey_entries_open gauge"
    );
    for (versioned, v) in &figures {
        let _ = writeln!(
            out,
            "cairn_journey_entries_open{{{}}} {}",
            labels(versioned),
            v.waiting
        );
    }
    let _ = writeln!(
        out,
        "# HELP cairn_journey_customers_total Customers per journey step: entered (reached it), passed, exited there, converted (reached the goal while there).\n\
         # TYPE cairn_journey_customers_total counter"
    );
    for (versioned, v) in &figures {
        let l = labels(versioned);
        for (step, m) in &v.step_metrics {
            let step = escape(step);
            for (state, n) in [
                ("entered", m.reached),
                ("passed", m.passed),
                ("exited", m.exited),
                ("converted", m.converted),
            ] {
                let _ = writeln!(
                    out,
                    "cairn_journey_customers_total{{{l},step=\"{step}\",state=\"{state}\"}} {n}"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP cairn_journey_waiting Customers waiting at a journey step now (a wait, or a message held back by quiet hours or the cap).\n\
         # TYPE cairn_journey_waiting gauge"
    );
    for (versioned, v) in &figures {
        let l = labels(versioned);
        for (step, m) in &v.step_metrics {
            let _ = writeln!(
                out,
                "cairn_journey_waiting{{{l},step=\"{}\"}} {}",
                escape(step),
                m.waiting
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP cairn_journey_messages_total Journey messages by delivery outcome (failed: refused or dead-lettered after retries; opened and clicked: as a provider reported, once per message).\n\
         # TYPE cairn_journey_messages_total counter"
    );
    for (versioned, v) in &figures {
        let l = labels(versioned);
        for (step, m) in &v.step_metrics {
            let step = escape(step);
            let outcomes = [
                ("sent", m.sent),
                ("failed", m.failed),
                ("opened", m.opened),
                ("clicked", m.clicked),
            ];
            for (status, n) in outcomes {
                let _ = writeln!(
                    out,
                    "cairn_journey_messages_total{{{l},step=\"{step}\",status=\"{status}\"}} {n}"
                );
            }
        }
    }
}

/// `journey="ID",version="V"` from `ID@V`.
fn labels(versioned: &str) -> String {
    let (id, version) = versioned.rsplit_once('@').unwrap_or((versioned, ""));
    format!("journey=\"{}\",version=\"{}\"", escape(id), escape(version))
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
