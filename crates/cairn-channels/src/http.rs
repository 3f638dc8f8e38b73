//! A minimal HTTP/1.1 client for webhook and SMS-provider POSTs: one request per connection
//! (`Connection: close`), timeouts on connect, read and write, the status line parsed with
//! `httparse`. Plain `http://` only: TLS would bring a TLS stack into the build; run an
//! egress proxy or sidecar that terminates TLS when the endpoint is `https://`.

use std::io::{Read, Write};
use std::time::Duration;

use crate::{ChannelError, connect, io_error};

/// Host, `host:port` and path of an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub addr: String,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, ChannelError> {
    let bad = |reason| ChannelError::BadUrl {
        url: url.to_string(),
        reason,
    };
    if url.starts_with("https://") {
        return Err(bad(
            "https is not supported: no TLS stack is built in (use a TLS-terminating proxy)",
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
        return Err(bad("malformed host or path"));
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Url {
        host: authority.to_string(),
        addr,
        path: path.to_string(),
    })
}

/// POSTs `body` and returns the response status (any status: the caller decides).
pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, ChannelError> {
    let u = parse_url(url)?;
    let mut stream = connect(&u.addr, timeout)?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cairn\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        u.path,
        u.host,
        body.len()
    );
    for (k, v) in headers {
        if k.contains([':', '\r', '\n']) || v.contains(['\r', '\n']) {
            return Err(ChannelError::Config(format!(
                "header {k:?} is not one line"
            )));
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let io = |e| io_error(&u.addr, timeout, e);
    stream.write_all(req.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    // Read until the head is complete; the body is not needed.
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 && buf.is_empty() {
            return Err(ChannelError::BadResponse {
                url: url.to_string(),
                reason: "connection closed without a response".to_string(),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return resp.code.ok_or_else(|| ChannelError::BadResponse {
                    url: url.to_string(),
                    reason: "no status code".to_string(),
                });
            }
            Ok(httparse::Status::Partial) if n > 0 && buf.len() < 64 * 1024 => continue,
            Ok(httparse::Status::Partial) => {
                return Err(ChannelError::BadResponse {
                    url: url.to_string(),
                    reason: "incomplete response head".to_string(),
                });
            }
            Err(e) => {
                return Err(ChannelError::BadResponse {
                    url: url.to_string(),
                    reason: e.to_string(),
                });
            }
        }
    }
}

/// POSTs and turns a non-2xx status into an error.
pub fn post_ok(
    url: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(), ChannelError> {
    match post(url, headers, content_type, body, timeout)? {
        200..=299 => Ok(()),
        status => Err(ChannelError::Status {
            url: url.to_string(),
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:9000/hooks/a?x=1").unwrap();
        assert_eq!(u.addr, "127.0.0.1:9000");
        assert_eq!(u.host, "127.0.0.1:9000");
        assert_eq!(u.path, "/hooks/a?x=1");
        let u = parse_url("http://example.com").unwrap();
        assert_eq!((u.addr.as_str(), u.path.as_str()), ("example.com:80", "/"));
        assert!(parse_url("https://example.com/").is_err());
        assert!(parse_url("ftp://example.com/").is_err());
        assert!(parse_url("http://a b/").is_err());
    }
}
