//! Applied journeys with their figures, as JSON: `cairn journeys show --format json` and
//! `GET /v1/journeys/{id}` give the same document, `GET /v1/journeys` a list of summaries.
//!
//! The figures come from a running runner's [`Metrics`] when there is one in the process, else
//! from the same fold over the write-backs in the log ([`Metrics::from_log`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::Result;
use crate::metrics::{Metrics, VersionMetrics};
use crate::registry::{self, Entry, Registry};

/// Where figures come from.
pub enum Source {
    /// The live runner's figures ([`Metrics::snapshot`]).
    Live(BTreeMap<String, VersionMetrics>),
    /// The fold over the log of the data directory (read now).
    Log,
}

/// The figures of `versions` (`id@version`), zeros for versions nobody entered.
pub fn figures(
    data: &Path,
    source: Source,
    versions: &[String],
) -> Result<BTreeMap<String, VersionMetrics>> {
    let all = match source {
        Source::Live(figures) => figures,
        Source::Log if data.join(cairn_store::MANIFEST_FILE).exists() => {
            Metrics::from_log(&cairn_store::Snapshot::load(data)?, versions)?.snapshot()
        }
        Source::Log => BTreeMap::new(),
    };
    Ok(versions
        .iter()
        .map(|v| (v.clone(), all.get(v).cloned().unwrap_or_default()))
        .collect())
}

pub fn versions_of(id: &str, e: &Entry) -> Vec<String> {
    e.versions.iter().map(|v| format!("{id}@{v}")).collect()
}

/// One journey: status, versions with their figures, and the current version's step ids in
/// order. `None` when no journey `id` is applied.
pub fn journey_json(data: &Path, id: &str, source: Source) -> Result<Option<Value>> {
    let reg = Registry::load(data)?;
    let Some(e) = reg.journeys.get(id) else {
        return Ok(None);
    };
    let figures = figures(data, source, &versions_of(id, e))?;
    let (current, _) = registry::load_version(data, &format!("{id}@{}", e.current()))?;
    Ok(Some(json!({
        "id": id,
        "status": e.status.as_str(),
        "current": e.current(),
        "versions": figures,
        "steps": current.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
    })))
}

/// Every applied journey (archived ones with `all`): id, status, versions, and totals over
/// its versions.
pub fn list_json(data: &Path, all: bool, source: Source) -> Result<Value> {
    let reg = Registry::load(data)?;
    let rows: Vec<(&String, &Entry)> = reg
        .journeys
        .iter()
        .filter(|(_, e)| all || e.status != registry::Status::Archived)
        .collect();
    let versions: Vec<String> = rows.iter().flat_map(|(id, e)| versions_of(id, e)).collect();
    let figures = figures(data, source, &versions)?;
    let out = rows
        .iter()
        .map(|(id, e)| {
            let mut t = VersionMetrics::default();
            for v in versions_of(id, e) {
                if let Some(f) = figures.get(&v) {
                    t.entered += f.entered;
                    t.waiting += f.waiting;
                    t.converted += f.converted;
                    t.exited += f.exited;
                    t.sent += f.sent;
                    t.failed += f.failed;
                    t.bounced += f.bounced;
                    t.opened += f.opened;
                    t.clicked += f.clicked;
                }
            }
            json!({
                "id": id,
                "status": e.status.as_str(),
                "current": e.current(),
                "versions": e.versions,
                "totals": {
                    "entered": t.entered, "waiting": t.waiting, "converted": t.converted,
                    "exited": t.exited, "sent": t.sent, "failed": t.failed, "bounced": t.bounced,
                    "opened": t.opened, "clicked": t.clicked,
                },
            })
        })
        .collect();
    Ok(Value::Array(out))
}
