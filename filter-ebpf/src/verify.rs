//! Source verification for SYNs: a source proves it is real before its
//! SYNs reach the host's listeners. `first_syn_drop`: the first SYN of an
//! unknown source is dropped and remembered; a real TCP stack retransmits
//! it after about a second (a spoofed flood, sending each forged address
//! once, never does), and a retransmission inside the window verifies the
//! source for `verified_ttl_s`.

use filter_common::{counter, verify_mode, Config, Reason, SourceKey};

use aya_ebpf::programs::XdpContext;

use crate::{
    clock::Clock,
    maps::{COUNTERS, JUMP, PENDING, VERIFIED},
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

/// Whether the source is verified now.
#[inline(always)]
pub fn verified(key: &SourceKey, clock: &mut Clock) -> bool {
    // SAFETY: the value is read only; a concurrent writer makes this
    // packet see the old or the new expiry.
    match unsafe { VERIFIED.get(key) } {
        Some(&until) => clock.now() < until,
        None => false,
    }
}

/// Verifies the source for `verified_ttl_s` from now.
#[inline(always)]
pub fn mark(key: &SourceKey, cfg: &Config, clock: &mut Clock) {
    let until = clock.now() + cfg.verified_ttl_s as u64 * 1_000 * MS;
    let _ = VERIFIED.insert(key, &until, 0);
}

/// Whether `syn_cookie` verification is on now.
#[inline(always)]
pub fn cookies(cfg: &Config) -> bool {
    cfg.verify_active != 0 && cfg.verify_mode == verify_mode::SYN_COOKIE
}

/// Enters the `challenge` program (`cookie.rs`); returns only if it is not
/// loaded.
#[inline(always)]
pub fn challenge(ctx: &XdpContext) {
    // SAFETY: a tail call with our own context.
    unsafe { JUMP.tail_call(ctx, 0) };
}

/// The verdict on a SYN from an unverified source under `first_syn_drop`.
#[inline(always)]
pub fn first_syn_drop(key: &SourceKey, cfg: &Config, clock: &mut Clock) -> Option<Reason> {
    if cfg.verify_mode != verify_mode::FIRST_SYN_DROP {
        return None;
    }
    Some(first_syn_drop_step(key, cfg, clock))
}

#[inline(always)]
fn first_syn_drop_step(key: &SourceKey, cfg: &Config, clock: &mut Clock) -> Reason {
    let now = clock.now();
    // SAFETY: as above.
    let first = unsafe { PENDING.get(key) }.copied();
    let Some(first) = first else {
        let _ = PENDING.insert(key, &now, 0);
        return Reason::Unverified;
    };
    let waited = now.saturating_sub(first);
    if waited < cfg.retry_min_ms as u64 * MS {
        // Too soon for a retransmission: keep the first SYN's time.
        return Reason::ChallengeFailed;
    }
    if waited > cfg.retry_max_ms as u64 * MS {
        // Too late: this is a new first SYN.
        let _ = PENDING.insert(key, &now, 0);
        return Reason::ChallengeFailed;
    }
    mark(key, cfg, clock);
    let _ = PENDING.remove(key);
    Reason::Verified
}
