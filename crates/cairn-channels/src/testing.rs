//! Test support: a local HTTP receiver that answers POSTs with scripted statuses and keeps
//! every request, and a real SMTP server process (Python's `aiosmtpd`, installed by
//! tests/channels/setup.sh). Used by the channel tests and the runner's tests; not for
//! production.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Listens on a free loopback port; answers the first requests with `script`, then 200.
    pub fn start(script: Vec<u16>) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let r = Receiver {
            port: listener.local_addr()?.port(),
            requests: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || {
                    let _ = me.serve(stream);
                });
            }
        });
        Ok(r)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_len, path, headers) = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(len)) = req.parse(&buf) {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (len, req.path.unwrap_or("/").to_string(), headers);
            }
        };
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let status = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(200);
        let body = buf[head_len..].to_vec();
        if let Ok(mut r) = self.requests.lock() {
            r.push(Request {
                path,
                headers,
                body,
                status,
            });
        }
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        stream.flush()
    }
}

/// A real SMTP server process (aiosmtpd, see tests/channels/smtp_server.py), killed on drop.
pub struct SmtpServer {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Installs aiosmtpd if needed (tests/channels/setup.sh) and starts it on a free port;
    /// messages are written to `dir/mail.jsonl`. Panics when that cannot be done: tests only.
    pub fn start(dir: &std::path::Path) -> SmtpServer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/channels");
        let setup = Command::new("bash")
            .arg(here.join("setup.sh"))
            .output()
            .expect("cannot run tests/channels/setup.sh");
        assert!(
            setup.status.success(),
            "tests/channels/setup.sh failed (it needs python3 with venv and PyPI access):\n{}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = dir.join("mail.jsonl");
        let mut child = Command::new(here.join(".cache/venv/bin/python"))
            .arg(here.join("smtp_server.py"))
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the SMTP server");
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        }
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        SmtpServer { child, port, out }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The messages received so far, one JSON object each (see smtp_server.py).
    pub fn mails(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
