use std::path::PathBuf;

/// Everything that can go wrong in the store, each saying what and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path}: another cairn process is writing to this data directory (it holds the lock); \
         stop it or use a different --data-dir"
    )]
    Locked { path: PathBuf },

    #[error(
        "{path}: log record at byte {offset} is corrupt ({reason}) and {valid_after} valid record(s) follow it; \
         refusing to skip acknowledged data silently. `cairn repair` moves the damaged part aside and keeps the rest"
    )]
    CorruptLog {
        path: PathBuf,
        offset: u64,
        reason: String,
        valid_after: u64,
    },

    #[error("{path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },

    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    #[error(
        "{path}: data directory format {found} is newer than this cairn understands ({supported}); upgrade cairn"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{reason}")]
    Limit { reason: String },

    #[error(
        "storage is behind: the log waiting to be written into segments is at its memory limit, \
         and no room came free within {} ms; nothing of this batch was stored",
        waited.as_millis()
    )]
    Behind { waited: std::time::Duration },

    #[error("the thread writing segments stopped before its work was done")]
    WriterStopped,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Adds the path to an I/O error, which `std::io::Error` lacks.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })
    }
}
