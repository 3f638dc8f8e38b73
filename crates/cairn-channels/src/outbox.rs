//! Delivery: attempts with retries and exponential backoff, and a durable record of outcomes.
//!
//! `delivered.jsonl` gets one line per message whose delivery is over (sent, failed, bounced
//! or dead), written and fsynced right after the outcome is known. A restarted runner
//! regenerates its messages by replaying the event log; [`Outbox::is_done`] says which of them
//! to skip. The one window left, a crash after the receiver accepted a message and before its
//! line is on disk, resends that message with the same idempotency key, which the receiver
//! uses to drop it. Messages that exhaust their attempts, or are refused for good, also go to
//! `dead-letter.jsonl` with the full message and the last error, for a person to look at.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ChannelError;
use crate::sms::SmsConfig;
use crate::smtp::{Email, SmtpConfig};
use crate::webhook::WebhookConfig;

pub const DELIVERED_FILE: &str = "delivered.jsonl";
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";
const SYNC_EVERY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A rendered message ready for a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    pub key: String,
    pub customer: String,
    pub journey: String,
    pub step: String,
    /// `email`, `sms` or `webhook`.
    pub channel: String,
    /// Email address or phone number; none for webhooks.
    pub to: Option<String>,
    pub subject: Option<String>,
    pub body: String,
    /// The JSON a webhook posts (the message, rendered body included).
    pub payload: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Sent,
    /// Refused for good (HTTP 4xx, bad address, channel not configured).
    Failed,
    /// The mail server refused the recipient (SMTP 5xx).
    Bounced,
    /// Attempts exhausted on errors worth retrying.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Dead => "dead",
        }
    }
}

/// The outcome of one message's delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub key: String,
    pub status: Status,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a message goes to the dead-letter file.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each one after.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Channel settings; a channel left `None` fails its messages as not configured.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    pub smtp: Option<SmtpConfig>,
    pub webhook: Option<WebhookConfig>,
    pub sms: Option<SmsConfig>,
}

impl Channels {
    /// One attempt to deliver `o`. `unix_seconds` signs webhooks.
    pub fn attempt(&self, o: &Outbound, unix_seconds: u64) -> Result<(), ChannelError> {
        let missing = |what: &str| ChannelError::Config(format!("{what} is not configured"));
        let no_to = || ChannelError::Config(format!("message {} has no recipient", o.key));
        match o.channel.as_str() {
            "email" => {
                let cfg = self.smtp.as_ref().ok_or_else(|| missing("email (SMTP)"))?;
                let to = o.to.as_deref().ok_or_else(no_to)?;
                crate::smtp::send(
                    cfg,
                    &Email {
                        to,
                        subject: o.subject.as_deref().unwrap_or_default(),
                        body: &o.body,
                        key: &o.key,
                    },
                )
            }
            "sms" => {
                let cfg = self.sms.as_ref().ok_or_else(|| missing("sms"))?;
                let to = o.to.as_deref().ok_or_else(no_to)?;
                crate::sms::send(cfg, &o.key, to, &o.body)
            }
            "webhook" => {
                let cfg = self.webhook.as_ref().ok_or_else(|| missing("webhook"))?;
                let body = serde_json::to_vec(&o.payload).unwrap_or_default();
                crate::webhook::send(cfg, &o.key, &body, unix_seconds)
            }
            other => Err(ChannelError::Config(format!("unknown channel {other:?}"))),
        }
    }
}

struct Pending {
    item: Outbound,
    attempts: u32,
    next: Instant,
    last_error: Option<String>,
}

/// Messages waiting for (another) attempt, and the durable record of finished ones.
pub struct Outbox {
    dir: PathBuf,
    /// Finished keys: how each ended and after how many attempts.
    done: HashMap<String, (Status, u32)>,
    delivered: File,
    dead: File,
    queue: VecDeque<Pending>,
    policy: RetryPolicy,
    /// Global send rates by channel name; a channel without one is not limited.
    rates: HashMap<String, SendRate>,
}

/// A global send rate for one channel: a token bucket holding one second's worth, so a channel
/// sends at most `per_second` messages in any second after a quiet spell. A message over the
/// rate waits for its turn; it is never dropped.
#[derive(Debug, Clone)]
pub struct SendRate {
    per_second: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl SendRate {
    pub fn new(per_second: f64) -> SendRate {
        let per_second = per_second.max(f64::MIN_POSITIVE);
        SendRate {
            per_second,
            tokens: per_second.max(1.0),
            at: None,
        }
    }

    /// Takes one send at `now`, or says when the next one may go.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.per_second.max(1.0));
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
    }
}

impl Outbox {
    /// Limits each named channel (`email`, `sms`, `webhook`) to a global send rate.
    pub fn set_send_rates(&mut self, rates: impl IntoIterator<Item = (String, f64)>) {
        self.rates = rates
            .into_iter()
            .map(|(channel, r)| (channel, SendRate::new(r)))
            .collect();
    }

    /// Opens (creating) the outbox files in `dir` and loads the keys already delivered.
    pub fn open(dir: &Path, policy: RetryPolicy) -> Result<Outbox, OutboxError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutboxError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(DELIVERED_FILE);
        let mut delivered = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut done = HashMap::new();
        let mut good = 0u64;
        let mut line = String::new();
        let mut reader = BufReader::new(&delivered);
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io(&path))?;
            // A last line without its newline was torn by a crash: cut it (its message will
            // be attempted again, with the same key).
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            match serde_json::from_str::<Delivery>(&line) {
                Ok(d) => {
                    done.insert(d.key, (d.status, d.attempts));
                }
                Err(_) => break,
            }
            good += n as u64;
        }
        drop(reader);
        if delivered.seek(SeekFrom::End(0)).map_err(io(&path))? != good {
            delivered.set_len(good).map_err(io(&path))?;
        }
        let dead_path = dir.join(DEAD_LETTER_FILE);
        let dead = File::options()
            .create(true)
            .append(true)
            .open(&dead_path)
            .map_err(io(&dead_path))?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            done,
            delivered,
            dead,
            queue: VecDeque::new(),
            policy,
            rates: HashMap::new(),
        })
    }

    /// Delivery of this key is over (sent, or given up on).
    pub fn is_done(&self, key: &str) -> bool {
        self.done.contains_key(key)
    }

    /// How the delivery of this key ended, if it did (the error text is not kept).
    pub fn outcome(&self, key: &str) -> Option<Delivery> {
        let &(status, attempts) = self.done.get(key)?;
        Some(Delivery {
            key: key.to_string(),
            status,
            attempts,
            error: None,
        })
    }

    /// Messages queued and not finished.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    pub fn delivered_count(&self) -> usize {
        self.done.len()
    }

    /// Queues `item` for its first attempt now, unless its key is done or already queued.
    pub fn enqueue(&mut self, item: Outbound, now: Instant) {
        if self.is_done(&item.key) || self.queue.iter().any(|p| p.item.key == item.key) {
            return;
        }
        self.queue.push_back(Pending {
            item,
            attempts: 0,
            next: now,
            last_error: None,
        });
    }

    /// Records a message that will not be attempted (e.g. its template failed to render).
    pub fn give_up(&mut self, item: &Outbound, error: String) -> Result<Delivery, OutboxError> {
        let d = Delivery {
            key: item.key.clone(),
            status: Status::Failed,
            attempts: 0,
            error: Some(error),
        };
        self.record(item, &d)?;
        self.sync()?;
        Ok(d)
    }

    /// When the earliest queued attempt is due.
    pub fn next_attempt(&self) -> Option<Instant> {
        self.queue.iter().map(|p| p.next).min()
    }

    /// Makes every attempt due at `now`; returns the messages whose delivery finished, with
    /// the outcome (recorded durably before this returns).
    pub fn run_due(
        &mut self,
        channels: &Channels,
        now: Instant,
        unix_seconds: u64,
    ) -> Result<Vec<(Outbound, Delivery)>, OutboxError> {
        let mut finished = Vec::new();
        for _ in 0..self.queue.len() {
            let Some(mut p) = self.queue.pop_front() else {
                break;
            };
            if p.next > now {
                self.queue.push_back(p);
                continue;
            }
            if let Some(rate) = self.rates.get_mut(&p.item.channel)
                && let Err(turn) = rate.take(now)
            {
                p.next = turn;
                self.queue.push_back(p);
                continue;
            }
            p.attempts += 1;
            let status = match channels.attempt(&p.item, unix_seconds) {
                Ok(()) => Status::Sent,
                Err(e) if e.retryable() && p.attempts < self.policy.max_attempts => {
                    p.next = now + self.policy.delay(p.attempts);
                    p.last_error = Some(e.to_string());
                    self.queue.push_back(p);
                    continue;
                }
                Err(e) => {
                    p.last_error = Some(e.to_string());
                    if e.is_bounce() {
                        Status::Bounced
                    } else if e.retryable() {
                        Status::Dead
                    } else {
                        Status::Failed
                    }
                }
            };
            let d = Delivery {
                key: p.item.key.clone(),
                status,
                attempts: p.attempts,
                error: if status == Status::Sent {
                    None
                } else {
                    p.last_error.clone()
                },
            };
            self.record(&p.item, &d)?;
            finished.push((p.item, d));
            // One fsync per few messages: a crash resends at most that many (same keys).
            if finished.len().is_multiple_of(SYNC_EVERY) {
                self.sync()?;
            }
        }
        if !finished.is_empty() {
            self.sync()?;
        }
        Ok(finished)
    }

    /// Writes an outcome line. Not synced here: [`Outbox::sync`] makes a batch durable with
    /// one fsync. A line lost to a crash before that only means the message is sent again,
    /// with the same idempotency key.
    fn record(&mut self, item: &Outbound, d: &Delivery) -> Result<(), OutboxError> {
        if d.status != Status::Sent {
            let line = serde_json::json!({"delivery": d, "message": item}).to_string() + "\n";
            let path = self.dir.join(DEAD_LETTER_FILE);
            write(&mut self.dead, &line, &path)?;
        }
        let line = serde_json::to_string(d).unwrap_or_default() + "\n";
        let path = self.dir.join(DELIVERED_FILE);
        write(&mut self.delivered, &line, &path)?;
        self.done.insert(d.key.clone(), (d.status, d.attempts));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), OutboxError> {
        // The dead letters first: once an outcome is durable, its message is never retried.
        for (f, name) in [
            (&self.dead, DEAD_LETTER_FILE),
            (&self.delivered, DELIVERED_FILE),
        ] {
            f.sync_data().map_err(|source| OutboxError::Io {
                path: self.dir.join(name),
                source,
            })?;
        }
        Ok(())
    }
}

fn write(f: &mut File, line: &str, path: &Path) -> Result<(), OutboxError> {
    f.write_all(line.as_bytes())
        .map_err(|source| OutboxError::Io {
            path: path.to_path_buf(),
            source,
        })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let d: Vec<u128> = (1..=5).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
        assert_eq!(p.delay(200), Duration::from_millis(500));
    }

    #[test]
    fn a_send_rate_lets_a_second_burst_through_then_spaces_sends() {
        let t0 = Instant::now();
        let mut r = SendRate::new(2.0);
        assert_eq!(r.take(t0), Ok(()));
        assert_eq!(r.take(t0), Ok(()));
        // The bucket is empty: the next send may go half a second on.
        let turn = r.take(t0).unwrap_err();
        assert_eq!(turn - t0, Duration::from_millis(500));
        assert_eq!(r.take(t0 + Duration::from_millis(500)), Ok(()));
        // A quiet spell refills at most one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(r.take(later), Ok(()));
        assert_eq!(r.take(later), Ok(()));
        assert!(r.take(later).is_err());
        // Under one a second: one send, then the next after 1 / rate seconds.
        let mut slow = SendRate::new(0.5);
        assert_eq!(slow.take(t0), Ok(()));
        assert_eq!(slow.take(t0).unwrap_err() - t0, Duration::from_secs(2));
    }
}
