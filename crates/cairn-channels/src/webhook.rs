//! Webhooks: the message as a JSON body, POSTed with an HMAC-SHA256 signature so the receiver
//! knows it came from us and was not altered.
//!
//! Header `X-Cairn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (Stripe's scheme: the timestamp is signed too, so a receiver can refuse old replays), and
//! `Idempotency-Key: <key>` so it can drop a duplicate.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ChannelError;

pub const SIGNATURE_HEADER: &str = "X-Cairn-Signature";

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
    pub timeout: Duration,
}

/// The signature header value for `body` signed at `unix_seconds`.
pub fn sign(secret: &str, unix_seconds: u64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex(&mac(secret, unix_seconds, body))
    )
}

/// Checks a signature header value (what a receiver does). Constant-time comparison.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = unhex(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut m =
        <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    m.verify_slice(&v1).is_ok()
}

fn mac(secret: &str, t: u64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m =
        <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// POSTs `body` (JSON) signed at `unix_seconds`.
pub fn send(
    config: &WebhookConfig,
    key: &str,
    body: &[u8],
    unix_seconds: u64,
) -> Result<(), ChannelError> {
    let signature = sign(&config.secret, unix_seconds, body);
    crate::http::post_ok(
        &config.url,
        &[(SIGNATURE_HEADER, &signature), ("Idempotency-Key", key)],
        "application/json",
        body,
        config.timeout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        // RFC 4231 test case 2 checks the HMAC itself: key "Jefe".
        let mut m = <Hmac<Sha256>>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let h = sign("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify("s3cret", &h, b"{\"a\":1}"));
        assert!(!verify("s3cret", &h, b"{\"a\":2}"));
        assert!(!verify("other", &h, b"{\"a\":1}"));
        assert!(!verify("s3cret", "t=1,v1=zz", b"{\"a\":1}"));
    }
}
