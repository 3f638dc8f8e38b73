//! Email over SMTP: a small client for the one conversation a journey needs (EHLO, optional
//! AUTH PLAIN, MAIL, RCPT, DATA, QUIT), one connection per message.
//!
//! Why not `lettre`: even without TLS its SMTP transport pulls `url` → `idna` → the ICU crates
//! (about fifty crates) for address handling we do not need, on a 2-core build machine. What
//! we need is 150 lines. There is no TLS here: point Cairn at a local relay (Postfix, an
//! MTA sidecar) that does STARTTLS/DKIM onward; an unencrypted AUTH is refused unless the
//! relay is on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{ChannelError, connect, io_error};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmtpConfig {
    /// `host:port` of the relay.
    pub server: String,
    /// The envelope and header sender, e.g. `shop@example.com`.
    pub from: String,
    /// The name given in EHLO.
    pub helo: String,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(with = "millis")]
    pub timeout: Duration,
}

mod millis {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

/// One email to send.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// The idempotency key; becomes the `Message-ID` (and `X-Cairn-Idempotency-Key`).
    pub key: &'a str,
}

/// Sends one email. On success the server has taken responsibility for it (250 after DATA).
pub fn send(config: &SmtpConfig, email: &Email<'_>) -> Result<(), ChannelError> {
    for (what, v) in [
        ("from", config.from.as_str()),
        ("to", email.to),
        ("subject", email.subject),
    ] {
        if v.contains(['\r', '\n'])
            || (what != "subject" && (v.contains(['<', '>']) || v.is_empty()))
        {
            return Err(ChannelError::Config(format!(
                "email {what} {v:?} is not a single-line address/subject"
            )));
        }
    }
    let stream = connect(&config.server, config.timeout)?;
    let mut c = Conversation {
        addr: &config.server,
        timeout: config.timeout,
        reader: BufReader::new(
            stream
                .try_clone()
                .map_err(|e| io_error(&config.server, config.timeout, e))?,
        ),
        writer: stream,
    };
    c.expect("greeting", None, &[220])?;
    c.expect("ehlo", Some(&format!("EHLO {}", config.helo)), &[250])?;
    if let (Some(user), Some(pass)) = (&config.username, &config.password) {
        let loopback = c.writer.peer_addr().is_ok_and(|a| a.ip().is_loopback());
        if !loopback {
            return Err(ChannelError::Config(format!(
                "refusing to send SMTP credentials unencrypted to {}: use a local relay",
                config.server
            )));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        c.expect("auth", Some(&format!("AUTH PLAIN {token}")), &[235])?;
    }
    c.expect(
        "mail from",
        Some(&format!("MAIL FROM:<{}>", config.from)),
        &[250],
    )?;
    c.expect(
        "rcpt to",
        Some(&format!("RCPT TO:<{}>", email.to)),
        &[250, 251],
    )?;
    c.expect("data", Some("DATA"), &[354])?;
    let message = format_message(&config.from, email);
    c.write(&message)?;
    c.expect("end of data", Some("."), &[250])?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = c.expect("quit", Some("QUIT"), &[221]);
    Ok(())
}

struct Conversation<'a> {
    addr: &'a str,
    timeout: Duration,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conversation<'_> {
    fn write(&mut self, data: &str) -> Result<(), ChannelError> {
        self.writer
            .write_all(data.as_bytes())
            .map_err(|e| io_error(self.addr, self.timeout, e))
    }

    /// Sends `command` (if any) and reads the reply, which must have one of `codes`.
    fn expect(
        &mut self,
        stage: &'static str,
        command: Option<&str>,
        codes: &[u16],
    ) -> Result<(), ChannelError> {
        if let Some(cmd) = command {
            self.write(&format!("{cmd}\r\n"))?;
        }
        // A reply is lines `250-...` ending with `250 ...`.
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| io_error(self.addr, self.timeout, e))?;
            if n == 0 {
                return Err(ChannelError::Io {
                    addr: self.addr.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("connection closed during {stage}"),
                    ),
                });
            }
            let line = line.trim_end();
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            let text = line.get(4..).unwrap_or_default().to_string();
            if line.as_bytes().get(3) != Some(&b'-') {
                if codes.contains(&code) {
                    return Ok(());
                }
                return Err(ChannelError::Smtp { stage, code, text });
            }
        }
    }
}

/// The message as sent after DATA: headers, a blank line, the body (base64 unless plain
/// ASCII with short lines), dot-stuffed, ending with the `.` line's CRLF before it.
pub fn format_message(from: &str, email: &Email<'_>) -> String {
    let subject = if email.subject.is_ascii() {
        email.subject.to_string()
    } else {
        // RFC 2047 encoded word.
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(email.subject)
        )
    };
    let plain = email.body.is_ascii() && email.body.lines().all(|l| l.len() <= 900);
    let mut m = String::with_capacity(email.body.len() * 4 / 3 + 512);
    m.push_str(&format!(
        "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\n",
        email.to
    ));
    m.push_str(&format!(
        "Message-ID: <{}@cairn>\r\nX-Cairn-Idempotency-Key: {}\r\nMIME-Version: 1.0\r\n",
        sanitize_id(email.key),
        email.key.replace(['\r', '\n'], "")
    ));
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    if plain {
        m.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
        for line in email.body.lines() {
            // Dot-stuffing: a line starting with '.' gets another, so it cannot end DATA.
            if line.starts_with('.') {
                m.push('.');
            }
            m.push_str(line);
            m.push_str("\r\n");
        }
    } else {
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(email.body);
        for chunk in b64.as_bytes().chunks(76) {
            // Base64 is ASCII, so every chunk is valid UTF-8.
            m.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            m.push_str("\r\n");
        }
    }
    m
}

/// A Message-ID local part: the key with characters not allowed there replaced.
fn sanitize_id(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect()
}
