//! The profile endpoints: the single customer view, its export, and the right to be forgotten.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /v1/profiles/{identifier}?page=N&limit=M` | admin token | `cairn profile --format json` |
//! | `GET /v1/profiles/{identifier}/export` | admin token | everything held on the person |
//! | `DELETE /v1/profiles/{identifier}` | admin token | `cairn forget --yes` |
//!
//! `{identifier}` is any identifier of the profile, typed as for `cairn profile`
//! (`email:ann@example.com`, `user_id:42`, or a bare value). Each request resolves identities
//! over the store as it is at that moment (splits and `identity.json` applied), on a blocking
//! thread.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use cairn_identity::{Config, ForgetPlan, IdentityGraph, Profile, ProfileId, Splits};
use cairn_store::{Snapshot, StoredEvent};
use serde_json::{Value, json};

use crate::App;
use crate::error::{ApiError, Code};
use crate::routes::{check_admin, json_response, reject};
use crate::views::event_json;

/// Timeline events per page unless `limit` says otherwise, and the most a page may hold.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/profiles/{identifier}", get(show).delete(forget))
        .route("/v1/profiles/{identifier}/export", get(export))
}

/// A profile with one page of its timeline, newest first: the shape `GET /v1/profiles/{id}`
/// answers and `cairn profile --format json` prints.
pub fn profile_json(profile: &Profile, events: &[StoredEvent], page: usize, limit: usize) -> Value {
    let limit = limit.max(1);
    let page = page.max(1);
    let mut out = serde_json::to_value(profile).unwrap_or(Value::Null);
    out["timeline"] = json!({
        "total_events": events.len(),
        "page": page,
        "pages": events.len().div_ceil(limit).max(1),
        "per_page": limit,
        "events": events
            .iter()
            .rev()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
            .map(event_json)
            .collect::<Vec<_>>(),
    });
    out
}

/// Everything held on a profile: the profile and every one of its events, oldest first.
pub fn export_json(profile: &Profile, events: &[StoredEvent]) -> Value {
    json!({
        "profile": profile,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

/// `page=N&limit=M`.
fn page_params(query: Option<&str>) -> Result<(usize, usize), ApiError> {
    let (mut page, mut limit) = (1, DEFAULT_LIMIT);
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |max: usize| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidQuery,
                        format!("{k}: expected an integer from 1 to {max}, got {v:?}"),
                    )
                })
        };
        match k {
            "page" => page = number(usize::MAX)?,
            "limit" => limit = number(MAX_LIMIT)?,
            "" => {}
            other => {
                return Err(ApiError::new(
                    Code::InvalidQuery,
                    format!(
                        "unknown query parameter {other:?}; this endpoint takes page and limit"
                    ),
                ));
            }
        }
    }
    Ok((page, limit))
}

#[derive(Debug, thiserror::Error)]
enum ProfileError {
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    #[error(transparent)]
    Config(#[from] cairn_identity::ConfigError),
    #[error(transparent)]
    Splits(#[from] cairn_identity::SplitsError),
    #[error("no profile has the identifier {0:?} (try kind:value, e.g. email:ann@example.com)")]
    NotFound(String),
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> ApiError {
        match e {
            ProfileError::NotFound(_) => ApiError::new(Code::CustomerNotFound, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// The resolved graph of a snapshot and the profile `identifier` names.
fn resolve(
    dir: &FsPath,
    snap: &Snapshot,
    identifier: &str,
) -> Result<(Arc<IdentityGraph>, ProfileId, Splits), ProfileError> {
    let splits = Splits::load(dir)?;
    let graph = graph_of(dir, snap, &Config::load(dir)?, &splits)?;
    let profile = graph
        .lookup(identifier)
        .ok_or_else(|| ProfileError::NotFound(identifier.to_string()))?;
    Ok((graph, profile, splits))
}

/// The identity graph of `snap` under these rules, built once per state of the data.
///
/// Building reads every stored event (seconds for millions of them); a lookup in a built graph
/// takes microseconds. The last graph is kept with its data directory and
/// [`cairn_identity::cache::data_stamp`]; any change to the data, rules or splits builds a new
/// one, so an answer never misses an acknowledged event. Under steady ingest that is every
/// request, until the graph is maintained incrementally.
fn graph_of(
    dir: &FsPath,
    snap: &Snapshot,
    config: &Config,
    splits: &Splits,
) -> Result<Arc<IdentityGraph>, ProfileError> {
    type Built = (PathBuf, u128, Arc<IdentityGraph>);
    static LAST: Mutex<Option<Built>> = Mutex::new(None);
    let stamp = cairn_identity::cache::data_stamp(snap, config, splits);
    // A panic elsewhere while holding the lock leaves at worst a stale entry that the stamp
    // check rejects, so a poisoned lock is still usable.
    let last = || LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((d, s, graph)) = last().as_ref()
        && d == dir
        && *s == stamp
    {
        return Ok(Arc::clone(graph));
    }
    let graph = Arc::new(cairn_identity::build(snap, config, splits)?);
    *last() = Some((dir.to_path_buf(), stamp, Arc::clone(&graph)));
    Ok(graph)
}

fn profile_and_events(
    app: &App,
    identifier: &str,
) -> Result<(Profile, Vec<StoredEvent>), ProfileError> {
    let snap = app.store.shared_snapshot()?;
    let (graph, p, _) = resolve(&app.config.data_dir, &snap, identifier)?;
    let events = cairn_identity::profile_events(&snap, &graph, p)?;
    Ok((Profile::build(&graph, p, &events), events))
}

/// Runs `work` on a blocking thread after the admin check, answering its JSON or its error.
async fn blocking(
    app: &App,
    headers: &HeaderMap,
    work: impl FnOnce() -> Result<Value, ApiError> + Send + 'static,
) -> Response {
    if let Err(e) = check_admin(app, headers) {
        return reject(e);
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => json_response(&v),
        Ok(Err(e)) => reject(e),
        Err(e) => reject(ApiError::internal(e)),
    }
}

async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(identifier): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (page, limit) = match page_params(query.as_deref()) {
        Ok(p) => p,
        Err(e) => return reject(e),
    };
    let app2 = Arc::clone(&app);
    blocking(&app, &headers, move || {
        let (profile, events) = profile_and_events(&app2, &identifier)?;
        Ok(profile_json(&profile, &events, page, limit))
    })
    .await
}

async fn export(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(identifier): Path<String>,
) -> Response {
    let app2 = Arc::clone(&app);
    blocking(&app, &headers, move || {
        let (profile, events) = profile_and_events(&app2, &identifier)?;
        Ok(export_json(&profile, &events))
    })
    .await
}

async fn forget(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(identifier): Path<String>,
) -> Response {
    let app2 = app.clone();
    blocking(&app, &headers, move || {
        let app = app2;
        let dir = app.config.data_dir.as_path();
        let snap = app.store.shared_snapshot().map_err(ProfileError::from)?;
        let (graph, p, mut splits) = resolve(dir, &snap, &identifier)?;
        let events =
            cairn_identity::profile_events(&snap, &graph, p).map_err(ProfileError::from)?;
        let plan = ForgetPlan::new(&graph, &snap, p, &events);
        drop(events);
        drop(snap);
        let outcome = app
            .store
            .forget(&plan.values())
            .map_err(ProfileError::from)?;
        if plan.scrub_splits(&mut splits) {
            splits.save(dir).map_err(ProfileError::from)?;
        }
        Ok(json!({"forgotten": plan, "outcome": outcome}))
    })
    .await
}
