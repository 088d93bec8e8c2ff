//! The allocator settings behind invariant 8 (memory bounded by the cap, and given back after a
//! burst), for glibc's malloc; elsewhere these are no-ops.
//!
//! - Large buffers (load bodies, big frames) always come from `mmap`: glibc otherwise raises its
//!   mmap threshold to the size of each large block freed (up to 32 MiB), after which bodies grow
//!   by copying inside the heap (old and new copy at once) and leave it fragmented.
//! - Two arenas at most: each thread that allocates (the loads run curl on tokio's blocking
//!   threads, one per table loading) would otherwise get an arena of its own, up to 8 per core,
//!   each keeping its freed memory to itself.
//! - When the pipeline goes idle after holding a lot, the heap's free pages are returned
//!   (`malloc_trim`): freed small blocks otherwise stay resident at the burst's peak.

/// Requests at least this large are served by `mmap` and returned on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Fixes the mmap threshold (see the module docs). Call once, before the pipeline allocates.
pub(crate) fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters; it is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap pages to the system.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}
