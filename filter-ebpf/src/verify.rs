//! Source verification for SYNs: a source proves it is real before its
//! SYNs reach the host's listeners. `first_syn_drop`: the first SYN of an
//! unknown source is dropped and remembered; a real TCP stack retransmits
//! it after about a second (a spoofed flood, sending each forged address
//! once, never does), and a retransmission inside the window verifies the
//! source for `verified_ttl_s`.

use filter_common::{counter, verify_mode, Config, Reason, SourceKey};

use crate::{
    clock::Clock,
    maps::{COUNTERS, PENDING, VERIFIED},
};

const MS: u64 = 1_000_000;

/// Counts a SYN that reached verification (the controller's `auto` reads
/// the rate).
#[inline(always)]
pub fn count_syn() {
    if let Some(n) = COUNTERS.get_ptr_mut(counter::SYNS) {
        // SAFETY: this CPU's slot.
        unsafe { *n += 1 };
    }
}

/// The verdict on a SYN that would pass, when verification is on: None to
/// let it pass as it is (a verified source), else the reason.
#[inline(always)]
pub fn syn(key: &SourceKey, cfg: &Config, clock: &mut Clock) -> Option<Reason> {
    // SAFETY: the value is read only; a concurrent writer makes this
    // packet see the old or the new expiry.
    if let Some(&until) = unsafe { VERIFIED.get(key) } {
        if clock.now() < until {
            return None;
        }
    }
    match cfg.verify_mode {
        verify_mode::FIRST_SYN_DROP => Some(first_syn_drop(key, cfg, clock)),
        _ => None,
    }
}

#[inline(always)]
fn first_syn_drop(key: &SourceKey, cfg: &Config, clock: &mut Clock) -> Reason {
    let now = clock.now();
    // SAFETY: as above.
    let first = unsafe { PENDING.get(key) }.copied();
    let Some(first) = first else {
        let _ = PENDING.insert(key, now, 0);
        return Reason::Unverified;
    };
    let waited = now.saturating_sub(first);
    if waited < cfg.retry_min_ms as u64 * MS {
        // Too soon for a retransmission: keep the first SYN's time.
        return Reason::ChallengeFailed;
    }
    if waited > cfg.retry_max_ms as u64 * MS {
        // Too late: this is a new first SYN.
        let _ = PENDING.insert(key, now, 0);
        return Reason::ChallengeFailed;
    }
    let until = now + cfg.verified_ttl_s as u64 * 1_000 * MS;
    let _ = VERIFIED.insert(key, until, 0);
    let _ = PENDING.remove(key);
    Reason::Verified
}
