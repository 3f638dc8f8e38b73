//! End-to-end tests of the `cairn` binary: real files, real processes, real SIGKILLs.

mod bad_input;
mod crash;
mod discovery;
mod forget;
mod journeys;
mod journeys_run;
mod profiles;
mod real_logs;
mod serve;
mod serve_crash;
mod serve_journeys;
mod serve_sdk;
mod stitching;

use std::path::Path;
use std::process::{Command, Output};

pub fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

/// Runs cairn with a data dir and arguments; returns the output whatever the exit status.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    cairn()
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("cannot start cairn")
}

/// Runs cairn and expects success.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs cairn and expects failure; returns stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        !out.status.success(),
        "cairn {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8 output")
}

pub fn stats(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(dir, &["stats", "--format", "json"])).expect("stats JSON")
}

pub fn shared_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// A small deterministic generator for test randomness (kill delays, choices).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

pub fn seed() -> u64 {
    let s = std::env::var("CAIRN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("random seed {s} (set CAIRN_TEST_SEED={s} to repeat)");
    s
}
