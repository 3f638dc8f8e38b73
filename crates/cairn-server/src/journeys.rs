//! Journeys in the server: the live runner on a thread of `cairn serve --journeys`, and the
//! journey endpoints and metrics.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /v1/journeys?all=true` | admin token | applied journeys with totals (`all`: archived too) |
//! | `GET /v1/journeys/{id}` | admin token | `cairn journeys show ID --format json` |
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
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use cairn_orchestrate::view::{self, Source};
use cairn_orchestrate::{Runner, Shared};

use crate::App;
use crate::error::{ApiError, Code, ServerError};
use crate::routes::{check_admin, json_response, reject};

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
        .route("/v1/journeys", get(list))
        .route("/v1/journeys/{id}", get(show))
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
