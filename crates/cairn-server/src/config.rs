//! The server's configuration, all in one place: command-line flags, environment variables and a
//! TOML config file (meilisearch's `option.rs` pattern).
//!
//! Every setting is one field of [`ServeOptions`], which is at once the clap argument group
//! (`--listen`, env `CAIRN_LISTEN`) and the config file's schema (`listen = "..."`). A flag wins
//! over its environment variable (clap), which wins over the file, which wins over the default.
//! The file is `--config FILE` (env `CAIRN_CONFIG`), else `DATA_DIR/cairn.toml` when it exists.
//! Unknown keys in the file are an error, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::error::ServerError;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8240";
/// The config file looked for in the data directory.
pub const CONFIG_FILE: &str = "cairn.toml";

/// Settings of `cairn serve`, as flags, environment variables and config-file keys.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// Address and port to listen on; port 0 picks a free one (the address is printed) [default: 127.0.0.1:8240].
    #[arg(long, env = "CAIRN_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// TOML config file with any of these settings (keys like `listen`, `queue_timeout_ms`) [default: DATA_DIR/cairn.toml if it exists].
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Token for the admin and read endpoints (`Authorization: Bearer TOKEN`). Prefer the
    /// environment variable over the flag. Without one, a token is generated at first start,
    /// printed, and kept in DATA_DIR/admin-token.
    #[arg(
        long,
        env = "CAIRN_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,

    /// Largest accepted message, in bytes (Segment's limit is 32 KB) [default: 32768].
    #[arg(long, env = "CAIRN_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Largest accepted request body (a batch), in bytes, after gunzip (Segment's limit is 500 KB) [default: 512000].
    #[arg(long, env = "CAIRN_MAX_BATCH_BYTES", value_name = "BYTES")]
    pub max_batch_bytes: Option<usize>,

    /// Requests validated and written at once; more wait their turn. Concurrent writes share
    /// one log fsync (group commit) [default: 32].
    #[arg(long, env = "CAIRN_WRITE_CONCURRENCY", value_name = "N")]
    pub write_concurrency: Option<usize>,

    /// Requests allowed to wait for a write turn; beyond that a request gets 503 at once [default: 512].
    #[arg(long, env = "CAIRN_MAX_QUEUED_REQUESTS", value_name = "N")]
    pub max_queued_requests: Option<usize>,

    /// How long a request waits for a write turn before it gets 503 with Retry-After [default: 5000].
    #[arg(long, env = "CAIRN_QUEUE_TIMEOUT_MS", value_name = "MS")]
    pub queue_timeout_ms: Option<u64>,

    /// Value of Access-Control-Allow-Origin for browsers [default: *].
    #[arg(long, env = "CAIRN_CORS_ORIGIN", value_name = "ORIGIN")]
    pub cors_origin: Option<String>,

    /// How long shutdown (SIGTERM, Ctrl-C) waits for requests in progress before closing them [default: 30000].
    #[arg(long, env = "CAIRN_SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,

    /// Threads serving HTTP [default: the number of cores].
    #[arg(long, env = "CAIRN_HTTP_THREADS", value_name = "N")]
    pub http_threads: Option<usize>,

    /// Events kept from the log in memory before a background thread writes them as a
    /// segment; requests wait (then get 503) only when three times this many are waiting to
    /// be written. Memory grows with it, about 1 KB an event [default: 250000].
    #[arg(long, env = "CAIRN_FLUSH_EVENTS", value_name = "N")]
    pub flush_events: Option<usize>,

    /// Memory for events not yet written into segments (the memtable and the flush in
    /// progress): requests wait, then get 503, when it is full. A flush starts when the
    /// memtable holds a third of it [default: 402653184, 384 MiB].
    #[arg(long, env = "CAIRN_MAX_PENDING_BYTES", value_name = "BYTES")]
    pub max_pending_bytes: Option<usize>,

    /// Set `context.ip` of messages that have none to the client's address, as Segment does.
    /// Server-side SDKs should send the end user's IP themselves: otherwise their server's is
    /// recorded [default: true].
    #[arg(long, env = "CAIRN_STAMP_IP", value_name = "BOOL")]
    pub stamp_ip: Option<bool>,

    /// Behind a proxy or load balancer: the header holding the client's address, such as
    /// X-Forwarded-For (its first entry is used) [default: none, the connection's address].
    #[arg(long, env = "CAIRN_IP_HEADER", value_name = "NAME")]
    pub ip_header: Option<String>,

    /// Serve GET /metrics without the admin token, for a Prometheus on a private network.
    /// Metrics show traffic volumes and error counts, never messages [default: false].
    #[arg(long, env = "CAIRN_PUBLIC_METRICS", value_name = "BOOL")]
    pub public_metrics: Option<bool>,

    /// Run the applied journeys (`cairn journeys apply`) live in this server: enter customers
    /// as their events arrive, fire timers, send messages, write progress back (like `cairn
    /// journeys run`, which cannot run beside the server). Channels and retries are set by the
    /// flags below (--smtp-server, --webhook-url, ...) or the config file's `[channels]` table
    /// (same names, `send_rates = { sms = 10 }`) [default: false].
    #[arg(
        long,
        env = "CAIRN_JOURNEYS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub journeys: Option<bool>,

    /// The journey runner's channel settings, from the config file's `[channels]` table (as
    /// flags and environment variables they are --smtp-server, ... below).
    #[arg(skip)]
    #[serde(default)]
    pub channels: cairn_orchestrate::ChannelsFile,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    /// `None`: use (or create) the one kept in the data directory.
    pub admin_token: Option<String>,
    pub max_message_bytes: usize,
    pub max_batch_bytes: usize,
    pub write_concurrency: usize,
    pub max_queued_requests: usize,
    pub queue_timeout: Duration,
    pub cors_origin: String,
    pub shutdown_timeout: Duration,
    pub http_threads: usize,
    /// Events buffered from the log before they are written as a segment.
    pub flush_events: usize,
    /// Bytes of events waiting for segments before requests wait (`Options::max_pending_bytes`).
    pub max_pending_bytes: usize,
    pub stamp_ip: bool,
    pub ip_header: Option<String>,
    pub public_metrics: bool,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Run the applied journeys live in the server.
    pub journeys: bool,
    /// The journey runner's channels, retries and clock (flags and environment only).
    pub journey_runner: cairn_orchestrate::LiveArgs,
    /// The config file's `[channels]` table, for [`Config::journey_runner`] to fall back on.
    pub channels: cairn_orchestrate::ChannelsFile,
}

impl Config {
    /// Defaults for a data directory, as `cairn serve` with no settings would run.
    pub fn new(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            listen: DEFAULT_LISTEN.to_string(),
            admin_token: None,
            max_message_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            write_concurrency: 32,
            max_queued_requests: 512,
            queue_timeout: Duration::from_millis(5000),
            cors_origin: "*".to_string(),
            shutdown_timeout: crate::DEFAULT_SHUTDOWN_TIMEOUT,
            http_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            flush_events: cairn_store::Options::default().memtable_events,
            max_pending_bytes: cairn_store::Options::default().max_pending_bytes,
            stamp_ip: true,
            ip_header: None,
            public_metrics: false,
            config_file: None,
            journeys: false,
            journey_runner: cairn_orchestrate::LiveArgs::default(),
            channels: cairn_orchestrate::ChannelsFile::default(),
        }
    }
}

impl ServeOptions {
    /// Layers flags and environment (already in `self`, by clap) over the config file over
    /// the defaults.
    pub fn resolve(self, data_dir: &Path) -> Result<Config, ServerError> {
        let (file, path) = match &self.config {
            Some(path) => (Some(read_file(path)?), Some(path.clone())),
            None => {
                let path = data_dir.join(CONFIG_FILE);
                if path.exists() {
                    (Some(read_file(&path)?), Some(path))
                } else {
                    (None, None)
                }
            }
        };
        let file = file.unwrap_or_default();
        let mut c = Config::new(data_dir);
        c.config_file = path;
        macro_rules! layer {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field.or(file.$field) {
                    c.$field = v;
                }
            )*};
        }
        layer!(
            listen,
            max_message_bytes,
            max_batch_bytes,
            write_concurrency,
            max_queued_requests,
            cors_origin,
            http_threads,
            flush_events,
            max_pending_bytes,
            stamp_ip,
            public_metrics,
            journeys
        );
        c.ip_header = self.ip_header.or(file.ip_header);
        c.channels = file.channels;
        c.admin_token = self.admin_token.or(file.admin_token);
        if let Some(ms) = self.queue_timeout_ms.or(file.queue_timeout_ms) {
            c.queue_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.shutdown_timeout_ms.or(file.shutdown_timeout_ms) {
            c.shutdown_timeout = Duration::from_millis(ms);
        }
        c.validate()?;
        Ok(c)
    }
}

impl Config {
    fn validate(&self) -> Result<(), ServerError> {
        let positive = [
            ("max_message_bytes", self.max_message_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
            ("write_concurrency", self.write_concurrency),
            ("http_threads", self.http_threads),
            ("flush_events", self.flush_events),
            ("max_pending_bytes", self.max_pending_bytes),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ServerError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.max_message_bytes > self.max_batch_bytes {
            return Err(ServerError::Invalid(format!(
                "max_message_bytes ({}) is larger than max_batch_bytes ({})",
                self.max_message_bytes, self.max_batch_bytes
            )));
        }
        if let Some(h) = &self.ip_header
            && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            return Err(ServerError::Invalid(format!(
                "ip_header {h:?} is not a valid HTTP header name"
            )));
        }
        if let Some(t) = &self.admin_token
            && t.trim().len() < 16
        {
            return Err(ServerError::Invalid(
                "the admin token must be at least 16 characters".into(),
            ));
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<ServeOptions, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServerError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    toml::from_str(&text).map_err(|e| ServerError::Config {
        path: path.to_path_buf(),
        reason: e.to_string().trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "listen = \"0.0.0.0:9000\"\nqueue_timeout_ms = 250\nwrite_concurrency = 4\n",
        )
        .unwrap();
        let opts = ServeOptions {
            write_concurrency: Some(8),
            ..Default::default()
        };
        let c = opts.resolve(dir.path()).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.queue_timeout, Duration::from_millis(250));
        assert_eq!(c.write_concurrency, 8);
        assert_eq!(c.max_batch_bytes, 500 * 1024);
        assert_eq!(c.config_file, Some(dir.path().join(CONFIG_FILE)));
    }

    #[test]
    fn journey_channels_come_from_the_config_files_channels_table() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "journeys = true\n[channels]\nwebhook_url = \"http://hooks.internal/cairn\"\nsmtp_from = \"shop@example.com\"\nsend_rates = { sms = 10 }\n",
        )
        .unwrap();
        let c = ServeOptions::default().resolve(dir.path()).unwrap();
        let live = cairn_orchestrate::LiveArgs {
            smtp_from: "news@example.com".to_string(),
            ..Default::default()
        }
        .with_file(&c.channels)
        .unwrap();
        // The file fills what no flag gave; a flag wins.
        assert_eq!(
            live.webhook_url.as_deref(),
            Some("http://hooks.internal/cairn")
        );
        assert_eq!(live.smtp_from, "news@example.com");
        assert_eq!(live.send_rates, [("sms".to_string(), 10.0)]);
        let plain = cairn_orchestrate::LiveArgs::default()
            .with_file(&c.channels)
            .unwrap();
        assert_eq!(plain.smtp_from, "shop@example.com");
        // A typo in the table is an error, not a silent default.
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[channels]\nwebhook_ulr = \"x\"\n",
        )
        .unwrap();
        let err = ServeOptions::default().resolve(dir.path()).unwrap_err();
        assert!(err.to_string().contains("webhook_ulr"), "{err}");
        // A bad rate says so.
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[channels]\nsend_rates = { fax = 1 }\n",
        )
        .unwrap();
        let c = ServeOptions::default().resolve(dir.path()).unwrap();
        let err = cairn_orchestrate::LiveArgs::default()
            .with_file(&c.channels)
            .unwrap_err();
        assert!(err.contains("email, sms or webhook"), "{err}");
    }

    #[test]
    fn journeys_are_off_unless_a_flag_or_the_file_turns_them_on() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            !ServeOptions::default()
                .resolve(dir.path())
                .unwrap()
                .journeys
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "journeys = true\n").unwrap();
        assert!(
            ServeOptions::default()
                .resolve(dir.path())
                .unwrap()
                .journeys
        );
        let off = ServeOptions {
            journeys: Some(false),
            ..Default::default()
        };
        assert!(!off.resolve(dir.path()).unwrap().journeys);
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = ServeOptions {
            config: Some(path),
            ..Default::default()
        }
        .resolve(dir.path())
        .unwrap_err()
        .to_string();
        assert!(err.contains("c.toml") && err.contains("lisen"), "{err}");
    }
}
