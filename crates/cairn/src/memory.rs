//! How the binary's allocator uses memory. Every setting here trades resident memory for
//! page faults: on the VMs Cairn is measured on, the kernel zeroing a freshly faulted page
//! costs about 2 ms per MB, often the largest single item in a profile.

/// Keep memory freed to mimalloc for `delay` before it is handed back to the kernel (`None`:
/// until the process ends). mimalloc's default is 10 ms, so memory freed and allocated again
/// in cycles (import chunks, the server's memtable between flushes) paid each time for
/// faults and zeroing.
pub fn keep_freed_memory(delay: Option<std::time::Duration>) {
    // Option number from the `mi_option_e` enum of the mimalloc v3 bundled with
    // libmimalloc-sys 0.1.49 (pinned in Cargo.lock): purge_delay = 15, in milliseconds, -1 =
    // never.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    let millis = delay.map_or(-1, |d| {
        d.as_millis().min(i32::MAX as u128) as std::ffi::c_long
    });
    // SAFETY: mi_option_set only stores a setting; any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, millis) }
}

/// Commit mimalloc's arenas when they are reserved, not page by page: for a bounded job that
/// will use the memory anyway (import).
pub fn commit_arenas_eagerly() {
    // arena_eager_commit = 4 in the same enum.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 1) }
}

/// Turn transparent huge pages off for this process. mimalloc asks for them, and the first
/// touch of each 2 MB page has the kernel zero all of it at once, on the thread that touched
/// it: for import, most of its CPU time on small inputs (62 % for the 21 K-event
/// helpdesk.xes.gz, against 8 % with 4 KB pages, and a third less memory); for the server,
/// stalls of hundreds of milliseconds on the request path whenever its memory grew (a fresh
/// server's first seconds at 67 k events/s: p99 395 ms, against 31 ms with 4 KB pages); for
/// analyses, a fifth of the time of a 12 M-event `variants` run after other work. Set for
/// every command in `main`. Best effort: on a kernel without `PR_SET_THP_DISABLE` huge pages stay on, which is slower
/// but correct.
pub fn no_transparent_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
