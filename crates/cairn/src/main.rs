//! `cairn`: the one binary. Parses the command line, wires the library crates together and
//! renders their results; no engine logic lives here.

mod analyze;
mod cli;
mod demo;
mod import;
mod journeys;
mod profile;
mod render;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// Import moves gigabytes through large buffers that are freed and allocated again chunk
/// after chunk, on short-lived writer threads. glibc's allocator hands such memory back to the
/// kernel at once, so every chunk paid again for page faults and zeroing (a quarter of the
/// import's time went to the kernel clearing pages); mimalloc keeps and reuses it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    restore_sigpipe();
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
