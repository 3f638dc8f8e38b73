//! `cairn-loadgen`: drives `cairn serve` from a separate process on loopback, the way
//! BENCHMARKS.md measures it. Each connection is a keep-alive HTTP/1.1 client sending either
//! `/v1/batch` requests of `--batch` messages or single `/v1/track` calls, with unique
//! message ids (so every event is really stored).
//!
//! With `--rate`, requests follow a fixed schedule and latency is measured from the moment a
//! request was *due*, not when it was sent: a stalled server cannot hide its stall by delaying
//! the next request (coordinated omission). Without it, every connection sends as fast as
//! it is answered (the maximum rate).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

struct Args {
    addr: String,
    key: String,
    batch: usize,
    connections: usize,
    seconds: f64,
    /// Events per second over all connections; 0 = as fast as possible.
    rate: f64,
    json: bool,
    /// Where to write one line per answered request: when it was due (ms since the start),
    /// its latency (ms), status and connection number, to find when a server stalled and line it up with its logs.
    trace: Option<String>,
}

const USAGE: &str = "usage: cairn-loadgen --key WRITE_KEY [--addr 127.0.0.1:8240] [--batch N (1 = single /v1/track calls)] \
[--connections N] [--seconds S] [--rate EVENTS_PER_SEC] [--format json] [--trace FILE (one line per request: due_ms latency_ms status connection)]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:8240".into(),
        key: String::new(),
        batch: 100,
        connections: 16,
        seconds: 10.0,
        rate: 0.0,
        json: false,
        trace: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--addr" => a.addr = value,
            "--key" => a.key = value,
            "--batch" => a.batch = num(&value)?.max(1.0) as usize,
            "--connections" => a.connections = num(&value)?.max(1.0) as usize,
            "--seconds" => a.seconds = num(&value)?,
            "--rate" => a.rate = num(&value)?,
            "--format" => a.json = value == "json",
            "--trace" => a.trace = Some(value),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.key.is_empty() {
        return Err(format!("--key is required\n{USAGE}"));
    }
    Ok(a)
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(if i <= c.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A realistic track message (~300 bytes).
fn message(run: u64, conn: usize, n: u64) -> String {
    format!(
        r#"{{"type":"track","userId":"load-{c}-{u}","event":"Product Viewed","messageId":"{run:x}-{conn}-{n}","timestamp":"2024-06-01T12:00:00.000Z","properties":{{"sku":"SKU-{s}","price":{p}.99,"currency":"EUR"}},"context":{{"library":{{"name":"cairn-loadgen","version":"1"}},"page":{{"path":"/p/{s}"}}}}}}"#,
        c = conn,
        u = n % 1000,
        s = n % 977,
        p = n % 200
    )
}

struct Conn {
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    /// Sends one request and reads the answer; returns the status.
    fn send(&mut self, addr: &str, head: &str, body: &[u8]) -> std::io::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let r = self.exchange(head, body);
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn exchange(&mut self, head: &str, body: &[u8]) -> std::io::Result<u16> {
        let reader = self.stream.as_mut().expect("connected above");
        let s = reader.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("connection") && v.trim() == "close" {
                    close = true;
                }
            }
        }
        let mut sink = vec![0; length];
        reader.read_exact(&mut sink)?;
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    /// (due since the start, latency, status, connection) of every request, with `--trace`.
    trace: Vec<(Duration, Duration, u16, usize)>,
    events: u64,
    ok: u64,
    errors: u64,
    status_503: u64,
}

fn run_connection(args: &Args, run: u64, conn: usize, start: Instant, end: Instant) -> Tally {
    let path = if args.batch == 1 {
        "/v1/track"
    } else {
        "/v1/batch"
    };
    let auth = base64(format!("{}:", args.key).as_bytes());
    let per_request = args.batch as f64;
    let interval = (args.rate > 0.0)
        .then(|| Duration::from_secs_f64(per_request * args.connections as f64 / args.rate));
    // Spread the connections' schedules over one interval.
    let mut due = start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(conn as f64 / args.connections as f64)
        });
    let mut c = Conn { stream: None };
    let mut t = Tally::default();
    let mut n = 0u64;
    while due < end {
        if interval.is_some() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let sent = Instant::now();
        let body = if args.batch == 1 {
            n += 1;
            message(run, conn, n)
        } else {
            let mut b = String::with_capacity(args.batch * 320 + 64);
            b.push_str(r#"{"sentAt":"2024-06-01T12:00:01.000Z","batch":["#);
            for i in 0..args.batch {
                n += 1;
                if i > 0 {
                    b.push(',');
                }
                b.push_str(&message(run, conn, n));
            }
            b.push_str("]}");
            b
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            args.addr,
            body.len()
        );
        let status = c.send(&args.addr, &head, body.as_bytes());
        let done = Instant::now();
        let from = if interval.is_some() { due } else { sent };
        if args.trace.is_some() {
            let code = *status.as_ref().unwrap_or(&0);
            t.trace.push((
                from.duration_since(start),
                done.duration_since(from),
                code,
                conn,
            ));
        }
        match status {
            Ok(200) => {
                t.ok += 1;
                t.events += args.batch as u64;
                t.latencies_us
                    .push(done.duration_since(from).as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(503) => t.status_503 += 1,
            _ => t.errors += 1,
        }
        due = match interval {
            Some(i) => due + i,
            None => done,
        };
    }
    t
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // A trace file that cannot be written fails now, not after the whole load.
    let trace_file = args.trace.as_ref().map(|path| {
        std::fs::File::create(path).unwrap_or_else(|e| {
            eprintln!("--trace {path}: {e}");
            std::process::exit(2);
        })
    });
    let run = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.connections)
            .map(|c| {
                let args = &args;
                s.spawn(move || run_connection(args, run, c, start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        all.latencies_us.extend(t.latencies_us);
        all.trace.extend(t.trace);
        all.events += t.events;
        all.ok += t.ok;
        all.errors += t.errors;
        all.status_503 += t.status_503;
    }
    all.latencies_us.sort_unstable();
    if let (Some(mut file), Some(path)) = (trace_file, &args.trace) {
        all.trace.sort_unstable();
        let mut out = String::with_capacity(all.trace.len() * 24);
        for (due, latency, status, conn) in &all.trace {
            use std::fmt::Write as _;
            let _ = writeln!(
                out,
                "{:.3} {:.3} {status} {conn}",
                due.as_secs_f64() * 1e3,
                latency.as_secs_f64() * 1e3
            );
        }
        if let Err(e) = file.write_all(out.as_bytes()) {
            eprintln!("--trace {path}: {e}");
            std::process::exit(1);
        }
    }
    let eps = all.events as f64 / elapsed;
    let (p50, p99, max) = (
        percentile(&all.latencies_us, 0.5),
        percentile(&all.latencies_us, 0.99),
        percentile(&all.latencies_us, 1.0),
    );
    if args.json {
        println!(
            r#"{{"mode":"{}","batch":{},"connections":{},"target_rate":{},"seconds":{elapsed:.2},"events_per_second":{eps:.0},"requests_ok":{},"status_503":{},"errors":{},"p50_ms":{p50:.2},"p99_ms":{p99:.2},"max_ms":{max:.2}}}"#,
            if args.batch == 1 { "track" } else { "batch" },
            args.batch,
            args.connections,
            args.rate,
            all.ok,
            all.status_503,
            all.errors
        );
    } else {
        println!(
            "{} events/s acknowledged ({} requests of {} in {elapsed:.1} s, {} connections{}); latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; {} × 503, {} errors",
            eps.round(),
            all.ok,
            args.batch,
            args.connections,
            if args.rate > 0.0 {
                format!(", target {} events/s", args.rate)
            } else {
                String::new()
            },
            all.status_503,
            all.errors
        );
    }
}
