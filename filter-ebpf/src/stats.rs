//! The single exit: every verdict is counted by reason before it is returned.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use filter_common::Reason;

use crate::maps::STATS;

#[inline(always)]
pub fn record(ctx: &XdpContext, reason: Reason) -> u32 {
    if let Some(slot) = STATS.get_ptr_mut(reason as u32) {
        // Per-CPU slot: XDP runs in softirq on one CPU, no atomics needed.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += (ctx.data_end() - ctx.data()) as u64;
        }
    }
    if reason == Reason::ChallengeSent {
        xdp_action::XDP_TX
    } else if reason.drops() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
