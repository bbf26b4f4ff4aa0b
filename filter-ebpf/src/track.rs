//! Per-source counting, designed for spoofed random-source floods.
//!
//! A known source (already in `SOURCES`) costs one hash look-up. An unknown
//! one first goes through a per-CPU count-min sketch: only once it has been
//! seen `track_min_packets` times in the current epoch does it get an exact
//! LRU entry. A flood of one-packet random sources therefore bumps two sketch
//! counters per packet instead of inserting (and evicting) an LRU entry.

use filter_common::{
    flag, Bucket, Config, FlowKey, RateLimit, SourceCounters, SourceKey, SKETCH_COLS,
    SKETCH_COLS_LOG2, SKETCH_COUNT_MASK, SKETCH_EPOCH_NS_SHIFT, SKETCH_EPOCH_SHIFT,
};

use crate::{
    clock::Clock,
    maps::{FLOWS, SCRATCH, SKETCH, SOURCES},
    parse::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// What identifies the packet's flow, for handshake counting; the key is
/// only built when a look-up or insert needs it.
pub struct Flow<'a> {
    /// The source's full address (not masked to the IPv6 prefix).
    pub addr: &'a [u8; 16],
    /// TCP source and destination ports (wire order); None if not TCP.
    pub ports: Option<(u16, u16)>,
}

impl Flow<'_> {
    #[inline(always)]
    fn key(&self, family: u32) -> Option<FlowKey> {
        let (sport, dport) = self.ports?;
        Some(FlowKey {
            addr: *self.addr,
            family: family as u16,
            sport,
            dport,
            _pad: 0,
        })
    }
}

/// Which per-flag counter a packet increments (at most one).
#[derive(Clone, Copy)]
pub enum Class {
    Syn,
    SynAck,
    Ack,
    Rst,
    Fin,
    None,
}

impl Class {
    /// Index into the per-class counters, buckets and limits.
    #[inline(always)]
    fn index(self) -> Option<usize> {
        match self {
            Class::Syn => Some(flag::SYN),
            Class::SynAck => Some(flag::SYN_ACK),
            Class::Ack => Some(flag::ACK),
            Class::Rst => Some(flag::RST),
            Class::Fin => Some(flag::FIN),
            Class::None => None,
        }
    }

    /// RST wins over everything, then SYN (SYN-ACK if ACK is set), then FIN;
    /// a pure ACK is ACK alone with no payload.
    #[inline(always)]
    pub fn of(flags: u8, payload: usize) -> Class {
        if flags & TCP_RST != 0 {
            Class::Rst
        } else if flags & TCP_SYN != 0 {
            if flags & TCP_ACK != 0 {
                Class::SynAck
            } else {
                Class::Syn
            }
        } else if flags & TCP_FIN != 0 {
            Class::Fin
        } else if flags & TCP_ACK != 0 && payload == 0 {
            Class::Ack
        } else {
            Class::None
        }
    }
}

#[inline(always)]
fn apply(c: &mut SourceCounters, class: Class, bytes: u64, now: u64) {
    match class {
        Class::Syn => c.syn += 1,
        Class::SynAck => c.syn_ack += 1,
        Class::Ack => c.ack += 1,
        Class::Rst => c.rst += 1,
        Class::Fin => c.fin += 1,
        Class::None => {}
    }
    c.packets += 1;
    c.bytes += bytes;
    if c.first_seen_ns == 0 {
        c.first_seen_ns = now;
    }
    c.last_seen_ns = now;
}

/// Counts the packet for its source; returns true when the source is over
/// its rate limit for this packet's class and the packet must be dropped.
/// Only tracked sources have buckets: an untracked one is never limited.
#[inline(always)]
pub fn count(
    key: &SourceKey,
    class: Class,
    bytes: u64,
    flow: &Flow,
    cfg: &Config,
    clock: &mut Clock,
) -> bool {
    let now = clock.now();
    if let Some(c) = SOURCES.get_ptr_mut(key) {
        // SAFETY: per-CPU value of a preallocated LRU map, only this CPU
        // writes it while this program runs.
        let c = unsafe { &mut *c };
        apply(c, class, bytes, now);
        return finish(c, key.family, class, flow, cfg, now);
    }
    if cfg.track_min_packets > 1 && !heavy(key, cfg.track_min_packets, now) {
        return false;
    }
    let Some(c) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot, used only here and only until the
    // insert below copies it.
    let c = unsafe { &mut *c };
    *c = SourceCounters::default();
    apply(c, class, bytes, now);
    let over = finish(c, key.family, class, flow, cfg, now);
    // By reference: a by-value insert would copy the value onto the stack.
    let value: &SourceCounters = c;
    // Fails only on memory pressure; the next packet tries again.
    let _ = SOURCES.insert(key, value, 0);
    over
}

/// Rate limit, then (for a packet that passes) handshake tracking.
#[inline(always)]
fn finish(
    c: &mut SourceCounters,
    family: u32,
    class: Class,
    flow: &Flow,
    cfg: &Config,
    now: u64,
) -> bool {
    if limited(c, class, cfg, now) {
        return true;
    }
    handshake(c, family, class, flow, now);
    false
}

/// SYNs a source may have waiting for their ACK (per CPU) before its
/// further SYNs stop being recorded: a SYN flooder never completes, and
/// recording each of its SYNs would cost an LRU insert per packet.
const MAX_PENDING_SYNS: u64 = 32;

/// Counts completed handshakes of a tracked source: a SYN records its flow,
/// the first pure ACK on that flow is a new connection. RSS keeps a flow on
/// one CPU, so the per-CPU `pending_syns` hint spares the look-up for the
/// ACKs of established flows; a miss resets it (this can only undercount).
#[inline(always)]
fn handshake(c: &mut SourceCounters, family: u32, class: Class, flow: &Flow, now: u64) {
    match class {
        Class::Syn if c.pending_syns < MAX_PENDING_SYNS => {
            let Some(flow) = flow.key(family) else {
                return;
            };
            if FLOWS.insert(flow, now, 0).is_ok() {
                c.pending_syns = c.pending_syns.saturating_add(1);
            }
        }
        Class::Ack if c.pending_syns > 0 => {
            let Some(flow) = flow.key(family) else {
                return;
            };
            if FLOWS.get_ptr(flow).is_some() {
                let _ = FLOWS.remove(flow);
                c.new_conns += 1;
                c.pending_syns -= 1;
            } else {
                c.pending_syns = 0;
            }
        }
        _ => {}
    }
}

/// Takes a token from the source's bucket for `class`; true if there was
/// none (and counts the drop).
#[inline(always)]
fn limited(c: &mut SourceCounters, class: Class, cfg: &Config, now: u64) -> bool {
    let Some(i) = class.index() else {
        return false;
    };
    // verifier: both look-ups are bounds-checked (i < flag::COUNT anyway)
    let (Some(limit), Some(bucket)) = (cfg.limits.get(i), c.buckets.get_mut(i)) else {
        return false;
    };
    if take(bucket, limit, now) {
        return false;
    }
    c.limited += 1;
    true
}

/// Most refill time credited at once: bounds the arithmetic, and a bucket
/// idle that long is full anyway for any burst/rate under 10 s.
const MAX_REFILL_US: u64 = 10_000_000;

/// Token bucket in milli-tokens: refills at `rate`/s up to `burst`, and a
/// packet costs 1000. A bucket never used starts full.
#[inline(always)]
fn take(b: &mut Bucket, limit: &RateLimit, now: u64) -> bool {
    if limit.rate == 0 {
        return true;
    }
    let cap = (limit.burst.max(1) as u64) * 1000;
    let tokens = if b.last_ns == 0 {
        cap
    } else {
        let elapsed_us = (now.saturating_sub(b.last_ns) / 1000).min(MAX_REFILL_US);
        // rate <= MAX_RATE_PPS (checked by userspace): at most 1e7 * 1e7.
        let rate = (limit.rate as u64).min(filter_common::MAX_RATE_PPS as u64);
        (b.tokens_milli + elapsed_us * rate / 1000).min(cap)
    };
    b.last_ns = now;
    if tokens >= 1000 {
        b.tokens_milli = tokens - 1000;
        true
    } else {
        b.tokens_milli = tokens;
        false
    }
}

/// Bumps the source in the sketch and says whether it is heavy: its
/// count-min estimate for this epoch must reach `min` plus twice the mean
/// counter load. Under a spoofed flood every counter rises together (by a
/// Poisson amount around the mean); requiring twice the mean keeps random
/// sources out however large the flood, while a real heavy hitter, which
/// sends many packets from one address, still stands out.
#[inline(always)]
fn heavy(key: &SourceKey, min: u32, now: u64) -> bool {
    let Some(sketch) = SKETCH.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: this CPU's slot; only this CPU touches it.
    let sketch = unsafe { &mut *sketch };
    let epoch = ((now >> SKETCH_EPOCH_NS_SHIFT) as u32) & 0xff;
    if sketch.epoch != epoch {
        sketch.epoch = epoch;
        sketch.total = 0;
    }
    sketch.total = sketch.total.saturating_add(1);
    let total = sketch.total;
    let h = hash(key);
    let mask = SKETCH_COLS as u32 - 1;
    // verifier: both indices are masked into their row
    let i0 = (h as u32 & mask) as usize;
    let i1 = SKETCH_COLS + ((h >> 32) as u32 & mask) as usize;
    let a = bump(&mut sketch.slots[i0], epoch);
    let b = bump(&mut sketch.slots[i1], epoch);
    let mean = total >> SKETCH_COLS_LOG2;
    a.min(b) >= min.saturating_add(mean.saturating_mul(2))
}

#[inline(always)]
fn bump(slot: &mut u32, epoch: u32) -> u32 {
    let v = *slot;
    let count = if v >> SKETCH_EPOCH_SHIFT == epoch {
        ((v & SKETCH_COUNT_MASK) + 1).min(SKETCH_COUNT_MASK)
    } else {
        1
    };
    *slot = (epoch << SKETCH_EPOCH_SHIFT) | count;
    count
}

/// Hash of the key: its words folded together, then MurmurHash3's 64-bit
/// finalizer so that every output bit depends on every input bit (the two
/// 32-bit halves index the two rows and must be independent).
#[inline(always)]
fn hash(key: &SourceKey) -> u64 {
    let a = &key.addr;
    let w0 = u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let w1 = u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let mut h = w0 ^ w1.rotate_left(29) ^ ((key.family as u64) << 56);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
