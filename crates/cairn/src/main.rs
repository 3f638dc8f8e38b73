//! `cairn`: the one binary. Parses the command line, wires the library crates together and
//! renders their results; no engine logic lives here.

mod analyze;
mod cli;
mod demo;
mod import;
mod journeys;
mod memory;
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
    keep_c_heap();
    // Every command but the server (which sets its own delay) is a job that ends soon:
    // memory it frees is worth keeping for its next allocations, since handing it back to the
    // kernel makes their pages fault and be zeroed again. Scan threads free the tables they
    // outgrow and the one thread finishing an analysis then allocates its own: 96 M events
    // as a process map 0.90x, variants 0.93x, funnel 0.95x wall.
    memory::keep_freed_memory(None);
    // And every command runs with 4 KB pages: with huge pages, the first touch of each 2 MB
    // page has the kernel zero all of it, used or not (see `memory`). Timed after reading
    // other files, as a command runs after other work (`bench/discovery.py`'s conditions):
    // 12 M events: funnel 0.91x, variants 0.78x, map 0.87x and 1.07x wall; 96 M: 0.99x, 0.95x,
    // 0.89x. Back to back on a machine doing nothing else, huge pages are a little faster
    // (12 M variants 1.06x without), but that is not how commands are run.
    memory::no_transparent_huge_pages();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// zstd (inside the Parquet writer) is C and allocates through glibc's malloc, not mimalloc:
/// a compression context of a few MB per column, made for every segment. glibc serves such
/// sizes with a fresh `mmap` and unmaps them on free, so each context faulted its pages in
/// again, and on this kind of VM the kernel's page zeroing was a fifth of an import's CPU time
/// (sys time of a 10 M-event CSV import: 6.1 s before, 2.8 s after). Serve them from the heap
/// and keep freed heap memory for the next context instead.
fn keep_c_heap() {
    const MMAP_THRESHOLD: libc::c_int = 32 << 20; // glibc's maximum on 64-bit
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;
    // SAFETY: mallopt only changes allocator settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
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
