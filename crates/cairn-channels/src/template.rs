//! Message templates: one TOML file per template, `<name>.toml`, with a `body` and (for email)
//! a `subject`, both minijinja templates. They render over
//! `{customer, journey, step, profile: {traits…}, event: {entry event properties…}}`, e.g.
//! `Hi {{ profile.first_name | default("there") }}, your {{ event.product }} is waiting`.
//!
//! Templates are checked (parsed and compiled) when loaded, so `cairn journeys apply` rejects
//! a broken one before any customer reaches it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("template {name:?}, field {field}: {reason}")]
    Syntax {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("no template named {name:?} (looked for {name}.toml in {dir})")]
    Missing { name: String, dir: PathBuf },
    #[error("rendering template {name:?}, field {field}: {reason}")]
    Render {
        name: String,
        field: &'static str,
        reason: String,
    },
}

/// One template's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub subject: Option<String>,
    pub body: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body: String,
}

/// Every template of a directory, by name.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    dir: PathBuf,
    templates: BTreeMap<String, Template>,
}

impl Templates {
    /// Loads and checks every `*.toml` in `dir`. A missing directory holds no templates.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let mut templates = BTreeMap::new();
        let io = |source| TemplateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Templates {
                    dir: dir.to_path_buf(),
                    templates,
                });
            }
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|source| TemplateError::Io {
                path: path.clone(),
                source,
            })?;
            let t: Template = toml::from_str(&text).map_err(|e| TemplateError::Parse {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            check(name, &t)?;
            templates.insert(name.to_string(), t);
        }
        Ok(Templates {
            dir: dir.to_path_buf(),
            templates,
        })
    }

    pub fn from_map(templates: BTreeMap<String, Template>) -> Result<Templates, TemplateError> {
        for (name, t) in &templates {
            check(name, t)?;
        }
        Ok(Templates {
            dir: PathBuf::new(),
            templates,
        })
    }

    pub fn get(&self, name: &str) -> Result<&Template, TemplateError> {
        self.templates
            .get(name)
            .ok_or_else(|| TemplateError::Missing {
                name: name.to_string(),
                dir: self.dir.clone(),
            })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.templates.keys().map(String::as_str)
    }

    /// Renders template `name` over `context` (see the module doc for its shape).
    pub fn render(&self, name: &str, context: &Value) -> Result<Rendered, TemplateError> {
        let t = self.get(name)?;
        let env = Environment::new();
        let render = |field, src: &str| {
            env.render_str(src, context)
                .map_err(|e| TemplateError::Render {
                    name: name.to_string(),
                    field,
                    reason: e.to_string(),
                })
        };
        Ok(Rendered {
            subject: t
                .subject
                .as_deref()
                .map(|s| render("subject", s))
                .transpose()?,
            body: render("body", &t.body)?,
        })
    }
}

fn check(name: &str, t: &Template) -> Result<(), TemplateError> {
    let env = Environment::new();
    let fields = [("subject", t.subject.as_deref()), ("body", Some(&t.body))];
    for (field, src) in fields {
        if let Some(src) = src {
            env.template_from_str(src)
                .map_err(|e| TemplateError::Syntax {
                    name: name.to_string(),
                    field,
                    reason: e.to_string(),
                })?;
        }
    }
    Ok(())
}
