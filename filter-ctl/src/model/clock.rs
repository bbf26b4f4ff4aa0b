//! Clocks. The XDP program stamps and expires entries with
//! `bpf_ktime_get_ns`, which is CLOCK_MONOTONIC; userspace must use the same.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds since the Unix epoch.
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The `expires_ns` for an entry that should live `ttl` (None: forever).
pub fn expiry_after(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) => monotonic_ns().saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64),
    }
}
