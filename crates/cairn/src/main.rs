//! `cairn`: the one binary. Parses the command line, wires the library crates together and
//! renders their results; no engine logic lives here.

mod cli;
mod demo;
mod import;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    keep_freed_memory();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so `cairn stats | head` would end in a panic on a closed pipe.
/// Command-line tools die quietly instead, like every Unix tool does.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Import moves gigabytes through large buffers that are freed and allocated again chunk
/// after chunk. glibc hands such buffers back to the kernel at once (mmap/munmap), so every
/// chunk pays again for page faults and zeroing: about a quarter of import time. Keep them.
fn keep_freed_memory() {
    // SAFETY: mallopt only tunes the allocator; called before any allocation-heavy work.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 30);
    }
}
