//! SMS through an HTTP provider API shaped like Twilio's:
//! `POST {base_url}/2010-04-01/Accounts/{account}/Messages.json` with a form body
//! `To`, `From`, `Body`, HTTP basic auth `account:token`, and an `Idempotency-Key` header.
//! The base URL is configurable, so tests (and providers with Twilio-compatible APIs) point it
//! elsewhere. No real SMS gateway is reachable from the test machine; the suite checks the
//! request shape against a local receiver.

use std::time::Duration;

use base64::Engine as _;

use crate::ChannelError;

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub base_url: String,
    pub account: String,
    pub token: String,
    pub from: String,
    pub timeout: Duration,
}

pub fn send(config: &SmsConfig, key: &str, to: &str, body: &str) -> Result<(), ChannelError> {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        config.base_url.trim_end_matches('/'),
        form_encode(&config.account)
    );
    let form = format!(
        "To={}&From={}&Body={}",
        form_encode(to),
        form_encode(&config.from),
        form_encode(body)
    );
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.account, config.token))
    );
    crate::http::post_ok(
        &url,
        &[("Authorization", &auth), ("Idempotency-Key", key)],
        "application/x-www-form-urlencoded",
        form.as_bytes(),
        config.timeout,
    )
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_encoding() {
        assert_eq!(super::form_encode("+1 555/ü&"), "%2B1+555%2F%C3%BC%26");
    }
}
