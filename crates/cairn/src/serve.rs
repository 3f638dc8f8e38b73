//! `cairn serve` and `cairn keys`: wiring the HTTP server and its write keys to the command line.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::cli::Format;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub options: cairn_server::ServeOptions,
    /// The journey runner's settings, used with --journeys.
    #[command(flatten, next_help_heading = "Journey runner (with --journeys)")]
    pub journeys: cairn_orchestrate::LiveArgs,
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a write key for a source (web, ios, call-center, ...).
    #[command(
        long_about = "Create a write key for a source (web, ios, call-center, ...).\n\n\
Clients send it as the HTTP Basic auth user name (Segment's SDKs do this with `writeKey`), or as \
`writeKey` in the body. A running `cairn serve` accepts it at once. Write keys only write: reading \
needs the admin token.",
        after_help = "Examples:\n  cairn keys create --source web\n  \
cairn keys create --source call-center --channel call_center --format json"
    )]
    Create {
        /// The source's name, shown in `cairn keys list`.
        #[arg(long, value_name = "NAME")]
        source: String,
        /// Channel of this source's events when a message sets none (e.g. web, ios, email, call_center)
        /// [default: derived from each message's context].
        #[arg(long, value_name = "CHANNEL")]
        channel: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List every write key, revoked ones included.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a write key: requests with it are refused (401) from now on.
    Revoke {
        /// The key, as `cairn keys create` printed it.
        key: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub fn serve(dir: &Path, args: ServeArgs) -> Result<()> {
    tune_memory_for_serving();
    let mut config = args.options.resolve(dir)?;
    config.journey_runner = args
        .journeys
        .with_file(&config.channels)
        .map_err(|e| anyhow::anyhow!("config file [channels] send_rates: {e}"))?;
    let stopped = cairn_server::run(config, |s| {
        if let Some(cfg) = &s.config_file {
            eprintln!("config file {}", cfg.display());
        }
        if let Some((file, bytes)) = &s.recovered_cut {
            eprintln!(
                "warning: cut a torn tail of {bytes} bytes from {} (a write interrupted by a crash, never acknowledged)",
                file.display()
            );
        }
        if let Some(token) = &s.new_admin_token {
            eprintln!(
                "admin token (generated now, kept in {}; set CAIRN_ADMIN_TOKEN to choose your own):\n  {token}",
                dir.join(cairn_server::keys::ADMIN_TOKEN_FILE).display()
            );
        }
        // On stdout, alone on its line, so scripts (and the tests) can read the port.
        println!("listening on http://{}", s.addr);
        eprintln!("store {}; stop with Ctrl-C or SIGTERM", dir.display());
    })
    .with_context(|| format!("cairn serve on the store in {}", dir.display()))?;
    eprintln!(
        "stopped: {} requests acknowledged, {} events stored, {} duplicates dropped; the log is flushed",
        stopped.requests, stopped.events_stored, stopped.events_duplicate
    );
    Ok(())
}

fn key_json(k: &cairn_server::keys::WriteKey) -> serde_json::Value {
    serde_json::json!({
        "key": k.key,
        "source": k.source,
        "channel": k.channel,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
}

pub fn keys(dir: &Path, args: KeysArgs) -> Result<()> {
    use cairn_server::keys;
    match args.command {
        KeysCommand::Create {
            source,
            channel,
            format,
        } => {
            let k = keys::create_key(dir, &source, channel.as_deref())?;
            match format {
                Format::Json => println!("{}", key_json(&k)),
                Format::Table => println!("{}", k.key),
            }
        }
        KeysCommand::List { format } => {
            let list = keys::list_keys(dir)?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&list.iter().map(key_json).collect::<Vec<_>>())?
                ),
                Format::Table => {
                    if list.is_empty() {
                        println!(
                            "no write keys yet (create one with `cairn keys create --source NAME`)"
                        );
                    }
                    for k in &list {
                        let status = match &k.revoked_at {
                            Some(t) => format!("revoked {t}"),
                            None => "active".to_string(),
                        };
                        println!(
                            "{}  {:<16} {:<12} created {}  {status}",
                            k.key,
                            k.source,
                            k.channel.as_deref().unwrap_or("-"),
                            k.created_at
                        );
                    }
                }
            }
        }
        KeysCommand::Revoke { key, format } => {
            let k = keys::revoke_key(dir, &key)?;
            match format {
                Format::Json => println!("{}", key_json(&k)),
                Format::Table => println!(
                    "revoked {} (source {}) at {}",
                    k.key,
                    k.source,
                    k.revoked_at.as_deref().unwrap_or("-")
                ),
            }
        }
    }
    Ok(())
}

/// Under load the server allocates its memtable's events (a dozen small strings each) and
/// frees them all when a background flush has written them as a segment, every few seconds.
/// Keep freed memory for 10 s (mimalloc's default is 10 ms: each cycle paid again for page
/// faults and zeroing): long enough to be reused by the next cycle at any rate where it
/// matters, short enough that an idle server gives it back. (Like every command, the server
/// runs without huge pages, set in `main`: zeroing 2 MB at a time stalled requests for hundreds
/// of milliseconds; see `crate::memory`.)
fn tune_memory_for_serving() {
    crate::memory::keep_freed_memory(Some(std::time::Duration::from_secs(10)));
}
