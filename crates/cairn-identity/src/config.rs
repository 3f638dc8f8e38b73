//! Merge rules: which identifiers are read, which kind wins, how many of a kind a profile holds.

use serde::{Deserialize, Serialize};

use crate::ident::IdKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Identifier kinds from highest to lowest priority. On each event the highest-priority
    /// identifier is the one every other identifier is linked to, and links are tried from the
    /// highest-priority identifier down, so when a limit is reached it is the lowest-priority
    /// identifiers of the event that stay out (Segment Unify's rule). Kinds not listed rank
    /// after the listed ones, external ids first.
    pub priority: Vec<IdKind>,
    /// The most identifiers of a kind one profile may hold. A link that would exceed a limit is
    /// refused and recorded as a conflict, visible in both profiles.
    pub limits: Vec<(IdKind, u32)>,
    /// External id types to read from `context.externalIds[].type` and from traits of the same
    /// name (e.g. `crm_id`, `loyalty_id`).
    pub external_ids: Vec<String>,
    /// Calling code put in front of national phone numbers (without `+`); empty to ignore
    /// numbers that are not international.
    pub phone_country_code: String,
    /// No profile grows beyond this many identifiers (Segment caps at 1,000): the guard
    /// against one giant profile built from a shared device or a hard-coded id.
    pub max_identifiers: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            priority: vec![
                IdKind::UserId,
                IdKind::Email,
                IdKind::Phone,
                IdKind::DeviceId,
                IdKind::AnonymousId,
            ],
            limits: vec![(IdKind::UserId, 1)],
            external_ids: Vec::new(),
            phone_country_code: "1".to_string(),
            max_identifiers: 1000,
        }
    }
}

impl Config {
    /// Position of a kind in the priority order; lower is stronger.
    pub fn rank(&self, kind: &IdKind) -> u32 {
        match self.priority.iter().position(|k| k == kind) {
            Some(i) => i as u32,
            None if matches!(kind, IdKind::External(_)) => self.priority.len() as u32,
            None => self.priority.len() as u32 + 1,
        }
    }

    pub fn limit(&self, kind: &IdKind) -> Option<u32> {
        self.limits.iter().find(|(k, _)| k == kind).map(|&(_, n)| n)
    }
}

/// Optional merge rules, in the data directory (JSON, the fields of [`Config`]).
pub const CONFIG_FILE: &str = "identity.json";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid identity rules: {source}")]
    Format {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

impl Config {
    /// The merge rules of a data directory: its `identity.json`, else the defaults.
    pub fn load(dir: &std::path::Path) -> Result<Config, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ConfigError::Format { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Io { path, source }),
        }
    }
}
