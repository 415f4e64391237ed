//! Memory: the daemon asks glibc's allocator to keep its resident set near
//! what it holds. Each thread that allocates gets an arena of its own
//! (the runtime's, the worker's, the visits reader's, the rules' threads),
//! and what an arena frees stays resident until its top is free: after a
//! large book's evaluation most of a gigabyte could stay so, freed. So:
//! at most two arenas, and the freed pages handed back after each
//! evaluation and each full read. Touches nothing but the allocator; a
//! no-op where the C library is not glibc.

/// At most two malloc arenas; call before the runtime's threads start.
pub fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages freed in every arena back to the system.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}
