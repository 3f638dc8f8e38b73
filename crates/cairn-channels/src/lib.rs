//! Channels: the part of Cairn that talks to the outside world on a journey's behalf.
//!
//! - [`template`]: message templates (subject and body) rendered with minijinja over the
//!   customer's profile traits and the entry event's properties.
//! - [`smtp`]: email over plain SMTP (EHLO, optional AUTH PLAIN, MAIL, RCPT, DATA).
//! - [`webhook`]: a JSON POST signed with HMAC-SHA256; [`sms`]: a Twilio-shaped HTTP API.
//! - [`outbox`]: delivery with retries and exponential backoff, a dead-letter file, and a
//!   durable record of every idempotency key delivered, so a restarted runner sends nothing
//!   twice.
//!
//! Every request carries the message's idempotency key (`Idempotency-Key` header for HTTP,
//! `Message-ID` for email), so a receiver can drop the one duplicate a crash between
//! "the receiver accepted it" and "the record of that is on disk" can cause.

pub mod http;
pub mod outbox;
pub mod sms;
pub mod smtp;
pub mod template;
#[doc(hidden)]
pub mod testing;
pub mod webhook;

pub use outbox::{Channels, Delivery, Outbound, Outbox, OutboxError, RetryPolicy, Status};
pub use template::{Rendered, TemplateError, Templates};

use std::time::Duration;

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The SMTP server answered `code` where the conversation expected success.
    #[error("smtp {stage}: server replied {code} {text}")]
    Smtp {
        stage: &'static str,
        code: u16,
        text: String,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: malformed HTTP response: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("bad url {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("{0}")]
    Config(String),
}

impl ChannelError {
    /// Worth trying again: the network, timeouts, server errors (HTTP 5xx and 429, SMTP 4xx).
    /// A permanent refusal (HTTP 4xx, SMTP 5xx: a bounce) is not.
    pub fn retryable(&self) -> bool {
        match self {
            ChannelError::Connect { .. }
            | ChannelError::Io { .. }
            | ChannelError::Timeout { .. } => true,
            ChannelError::Smtp { code, .. } => (400..500).contains(code),
            ChannelError::Status { status, .. } => *status >= 500 || *status == 429,
            ChannelError::BadResponse { .. } => true,
            ChannelError::BadUrl { .. } | ChannelError::Config(_) => false,
        }
    }

    /// A permanent refusal of the recipient by a mail server: the message bounced.
    pub fn is_bounce(&self) -> bool {
        matches!(self, ChannelError::Smtp { code, .. } if (500..600).contains(code))
    }
}

fn io_error(addr: &str, timeout: Duration, e: std::io::Error) -> ChannelError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ChannelError::Timeout {
            addr: addr.to_string(),
            timeout,
        },
        _ => ChannelError::Io {
            addr: addr.to_string(),
            source: e,
        },
    }
}

/// Connects to `addr` (host:port) with a timeout on connecting, reading and writing.
fn connect(addr: &str, timeout: Duration) -> Result<std::net::TcpStream, ChannelError> {
    use std::net::ToSocketAddrs;
    let connect_err = |source| ChannelError::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut last = None;
    for a in addr.to_socket_addrs().map_err(connect_err)? {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .and_then(|()| s.set_nodelay(true))
                    .map_err(connect_err)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(connect_err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
}
