//! Applied journeys, kept in the data directory:
//!
//! ```text
//! DATA/journeys/registry.json               id → status, versions, current version
//! DATA/journeys/defs/ID@VERSION/journey.yaml the definition as applied (immutable)
//! DATA/journeys/defs/ID@VERSION/templates/   the templates its send steps use (copied)
//! DATA/journeys/templates/                   templates for definitions applied over the API
//! ```
//!
//! A definition comes from a YAML file (`cairn journeys apply`, templates from `templates/`
//! next to it) or as JSON over the API (`POST /v1/journeys`, templates from
//! `DATA/journeys/templates/`); both go through [`apply_definition`], and `pause`, `resume`
//! and `archive` through [`set_status`], whoever asks.
//!
//! A version, once applied, never changes: applying the same definition again is a no-op
//! (the same journey, however it is written: YAML or JSON, comments, key order), applying
//! different content under the same version is refused. A new version takes new entries;
//! customers in an older one finish it. `pause` and `archive` stop new entries (customers
//! already in go on); `resume` reopens. The runner reads the registry on every loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, io};
use cairn_channels::Templates;
use cairn_journey::Journey;
use cairn_journey::definition::StepKind;
use serde::{Deserialize, Serialize};

pub const DIR: &str = "journeys";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Paused,
    Archived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub status: Status,
    /// Every applied version, ascending; the last is current (takes new entries).
    pub versions: Vec<u32>,
}

impl Entry {
    pub fn current(&self) -> u32 {
        self.versions.last().copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub journeys: BTreeMap<String, Entry>,
}

pub fn dir(data: &Path) -> PathBuf {
    data.join(DIR)
}

fn registry_path(data: &Path) -> PathBuf {
    dir(data).join("registry.json")
}

pub fn def_dir(data: &Path, versioned: &str) -> PathBuf {
    dir(data).join("defs").join(versioned)
}

/// Where the templates of definitions applied over the API are taken from.
pub fn api_templates_dir(data: &Path) -> PathBuf {
    dir(data).join("templates")
}

impl Registry {
    pub fn load(data: &Path) -> Result<Registry> {
        let path = registry_path(data);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|cause| Error::Registry { path, cause })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }

    /// Writes atomically: a temporary file, fsynced, renamed over the old one.
    fn save(&self, data: &Path) -> Result<()> {
        let path = registry_path(data);
        let tmp = path.with_extension("json.tmp");
        std::fs::create_dir_all(dir(data)).map_err(io("creating", &dir(data)))?;
        let text = serde_json::to_string_pretty(self).map_err(|cause| Error::Registry {
            path: path.clone(),
            cause,
        })? + "\n";
        write_synced(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        sync_dir(&dir(data))
    }

    /// Slots the runner should have: every applied version with whether it takes entries.
    pub fn versions(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for (id, e) in &self.journeys {
            for &v in &e.versions {
                let accepting = e.status == Status::Active && v == e.current();
                out.push((format!("{id}@{v}"), accepting));
            }
        }
        out
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io("creating", path))?;
    f.write_all(bytes).map_err(io("writing", path))?;
    f.sync_all().map_err(io("syncing", path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Loads a stored version: its definition and templates.
pub fn load_version(data: &Path, versioned: &str) -> Result<(Arc<Journey>, Templates)> {
    let d = def_dir(data, versioned);
    let text = std::fs::read_to_string(d.join("journey.yaml"))
        .map_err(io("reading the stored journey", &d.join("journey.yaml")))?;
    let j = Journey::from_yaml(&text).map_err(|cause| Error::Definition {
        what: format!("stored journey {versioned}"),
        cause,
    })?;
    let t = Templates::load(&d.join("templates")).map_err(|cause| Error::Template {
        context: format!("stored journey {versioned}"),
        cause,
    })?;
    Ok((Arc::new(j), t))
}

/// Templates used by a journey's send steps.
pub fn template_names(j: &Journey) -> Vec<String> {
    let mut names: Vec<String> = j
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Send { template, .. } => Some(template.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What `apply` did.
pub enum Applied {
    New {
        versioned: String,
        previous: Option<u32>,
    },
    Unchanged {
        versioned: String,
    },
}

/// Stores `file` (and the templates its sends use, from `templates`, default
/// `templates/` next to the file) as a new version.
pub fn apply(data: &Path, file: &Path, templates: Option<&Path>) -> Result<Applied> {
    let text = std::fs::read_to_string(file).map_err(io("reading", file))?;
    let what = file.display().to_string();
    let j = Journey::from_yaml(&text).map_err(|cause| Error::Definition {
        what: what.clone(),
        cause,
    })?;
    let tdir = match templates {
        Some(t) => t.to_path_buf(),
        None => file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("templates"),
    };
    apply_definition(data, &j, &text, &tdir, &what)
}

/// Stores a definition sent as JSON (the API), with templates from [`api_templates_dir`].
pub fn apply_json(data: &Path, text: &str) -> Result<Applied> {
    let what = "the definition".to_string();
    let j = Journey::from_json(text).map_err(|cause| Error::Definition {
        what: what.clone(),
        cause,
    })?;
    apply_definition(data, &j, text, &api_templates_dir(data), &what)
}

/// Stores a parsed definition `j` (its text as given, `what` naming it in errors) and the
/// templates its sends use, from `tdir`, as a new version.
pub fn apply_definition(
    data: &Path,
    j: &Journey,
    text: &str,
    tdir: &Path,
    what: &str,
) -> Result<Applied> {
    let all = Templates::load(tdir).map_err(|cause| Error::Template {
        context: format!("loading templates from {}", tdir.display()),
        cause,
    })?;
    let used = template_names(j);
    for name in &used {
        all.get(name).map_err(|cause| Error::Template {
            context: format!("journey {} uses template {name:?}", j.versioned_id()),
            cause,
        })?;
    }
    let versioned = j.versioned_id();
    let mut reg = Registry::load(data)?;
    let d = def_dir(data, &versioned);
    if let Some(e) = reg.journeys.get(&j.id)
        && e.versions.contains(&j.version)
    {
        // The same journey, however it is written (YAML or JSON, comments, key order).
        let stored = std::fs::read_to_string(d.join("journey.yaml")).unwrap_or_default();
        let same = Journey::from_yaml(&stored).is_ok_and(|s| s == *j);
        let same_templates = used.iter().all(|n| {
            let a = std::fs::read_to_string(tdir.join(format!("{n}.toml"))).ok();
            let b = std::fs::read_to_string(d.join("templates").join(format!("{n}.toml"))).ok();
            a == b
        });
        if same && same_templates {
            return Ok(Applied::Unchanged { versioned });
        }
        return Err(Error::VersionChanged {
            versioned,
            what: what.to_string(),
        });
    }
    if let Some(e) = reg.journeys.get(&j.id)
        && j.version < e.current()
    {
        return Err(Error::OlderVersion {
            id: j.id.clone(),
            current: e.current(),
            version: j.version,
        });
    }
    // The definition directory is complete before the registry names it.
    let tmp = d.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("templates")).map_err(io("creating", &tmp))?;
    write_synced(&tmp.join("journey.yaml"), text.as_bytes())?;
    for name in &used {
        let src = tdir.join(format!("{name}.toml"));
        let bytes = std::fs::read(&src).map_err(io("reading", &src))?;
        write_synced(&tmp.join("templates").join(format!("{name}.toml")), &bytes)?;
    }
    let _ = std::fs::remove_dir_all(&d);
    std::fs::rename(&tmp, &d).map_err(io("renaming", &tmp))?;
    sync_dir(d.parent().unwrap_or(data))?;
    let previous = reg.journeys.get(&j.id).map(Entry::current);
    let e = reg.journeys.entry(j.id.clone()).or_insert(Entry {
        status: Status::Active,
        versions: Vec::new(),
    });
    e.versions.push(j.version);
    reg.save(data)?;
    Ok(Applied::New {
        versioned,
        previous,
    })
}

/// Sets a journey's status (pause, resume, archive).
pub fn set_status(data: &Path, id: &str, status: Status) -> Result<Status> {
    let mut reg = Registry::load(data)?;
    let Some(e) = reg.journeys.get_mut(id) else {
        return Err(Error::NoJourney(id.to_string()));
    };
    let before = e.status;
    e.status = status;
    reg.save(data)?;
    Ok(before)
}
