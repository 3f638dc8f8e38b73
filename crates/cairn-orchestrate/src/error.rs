//! What can go wrong applying and running journeys; each message says what and where.

use std::path::PathBuf;

use cairn_channels::outbox::OutboxError;
use cairn_channels::template::TemplateError;
use cairn_journey::definition::DefinitionError;
use cairn_store::StoreError;

/// Causes are part of each message (fields named `cause`, not `source`), so printing the
/// error alone, as the server's log does, says everything, and printing its chain repeats
/// nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the journeys' state could not be read or written.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not a valid journey registry: {cause}")]
    Registry {
        path: PathBuf,
        cause: serde_json::Error,
    },
    /// A journey definition (a file being applied, or a stored version) does not parse.
    #[error("{what} is not a valid journey: {cause}")]
    Definition {
        what: String,
        cause: DefinitionError,
    },
    #[error("{context}: {cause}")]
    Template {
        context: String,
        cause: TemplateError,
    },
    #[error(
        "journey {versioned} is already applied with different content; a version never changes: raise `version` in {what}"
    )]
    VersionChanged { versioned: String, what: String },
    #[error("journey {id} is at version {current}; {version} is older (versions only go up)")]
    OlderVersion {
        id: String,
        current: u32,
        version: u32,
    },
    #[error("no journey {0:?} is applied (see `cairn journeys list --all`)")]
    NoJourney(String),
    #[error("--clock-start {value:?}: {reason}")]
    ClockStart { value: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to [`Error::Io`] naming the action and the path.
pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |cause| Error::Io {
        action,
        path,
        cause,
    }
}
