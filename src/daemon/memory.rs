//! Memory: the daemon asks glibc's allocator to keep its resident set near
//! what it holds. Each thread that allocates gets an arena of its own
//! (the runtime's, the worker's, the visits reader's, the rules' threads),
//! and what an arena frees stays resident until its top is free: after a
//! large book's evaluation most of a gigabyte could stay so, freed. So:
//! at most two arenas, large blocks mapped on their own (freed, they go
//! back at once instead of leaving holes), and the freed pages handed
//! back after each evaluation and each full read; each time, what the
//! allocator holds is logged (debug: `memory given back`), so a trace can
//! tell what the program holds from what the allocator keeps. Touches
//! nothing but the allocator and /proc/self/status; a no-op where the C
//! library is not glibc.

/// Allocations from this size on are mapped on their own
/// ([`few_arenas`]).
pub const MMAP_THRESHOLD: i32 = 256 << 10;

/// At most two malloc arenas, and allocations from [`MMAP_THRESHOLD`] on
/// mapped on their own (glibc's threshold otherwise rises up to 32 MiB as
/// large blocks are freed, and the large arrays of an evaluation then
/// leave holes in the heap that stay resident: at 100,000 accounts the
/// peak was 61 MiB higher, the evaluations as fast). Call before the
/// runtime's threads start.
pub fn few_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tuning parameters of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// What the allocator holds, in bytes (glibc's `mallinfo2`, summed over
/// every arena).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// In live allocations, their chunk headers included.
    pub in_use: usize,
    /// Freed but kept in the arenas (resident unless given back).
    pub free: usize,
    /// In allocations served by mmap of their own (large ones).
    pub mapped: usize,
}

/// What the allocator holds now; None where the C library is not glibc.
pub fn held() -> Option<Held> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let m = unsafe { libc::mallinfo2() };
        Some(Held {
            in_use: m.uordblks,
            free: m.fordblks,
            mapped: m.hblkhd,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// The process's resident set in KiB (VmRSS of /proc/self/status).
pub fn resident_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Hands the pages freed in every arena back to the system and, when the
/// debug level is on, logs what the allocator holds after it and the
/// resident set before and after. Counting what it holds walks every free
/// chunk of every arena (`mallinfo2`: about 30 ms after an evaluation at
/// 100,000 accounts, on the worker's thread, before the next job), so it is
/// counted only for the log.
pub fn give_back() {
    let debug = tracing::enabled!(tracing::Level::DEBUG);
    let before = if debug { resident_kib() } else { None };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
    if !debug {
        return;
    }
    if let (Some(h), Some(rss)) = (held(), resident_kib()) {
        let mib = |b: usize| b >> 20;
        tracing::debug!(
            in_use_mib = mib(h.in_use),
            free_mib = mib(h.free),
            mapped_mib = mib(h.mapped),
            rss_before_mib = before.unwrap_or(0) >> 10,
            rss_mib = rss >> 10,
            "memory given back"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_held_grows_with_a_live_allocation_and_the_resident_set_is_read() {
        if held().is_none() {
            return; // not glibc: nothing to count
        }
        // Past glibc's largest mmap threshold (32 MiB), so mapped on its
        // own: counted whatever other tests' threads free meanwhile.
        let big: Vec<u8> = vec![1; 64 << 20];
        let during = held().expect("glibc");
        assert!(during.mapped >= 64 << 20, "{during:?}");
        assert!(big.iter().all(|b| *b == 1));
        assert!(resident_kib().expect("linux") > 0);
        drop(big);
        give_back();
    }
}
