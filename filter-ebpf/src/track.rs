//! Per-source counting, designed for spoofed random-source floods.
//!
//! A known source (already in `SOURCES`) costs one hash look-up. An unknown
//! one first goes through a per-CPU count-min sketch: only once it has been
//! seen `track_min_packets` times in the current epoch does it get an exact
//! LRU entry. A flood of one-packet random sources therefore bumps two sketch
//! counters per packet instead of inserting (and evicting) an LRU entry.

use filter_common::{
    counter, flag, window, Bucket, Config, Event, RateLimit, Reason, SourceCounters, SourceKey,
    SKETCH_COLS, SKETCH_COLS_LOG2, SKETCH_COUNT_MASK, SKETCH_EPOCH_NS_SHIFT, SKETCH_EPOCH_SHIFT,
};

use crate::{
    clock::Clock,
    conn::Sock,
    maps::{COUNTERS, EVENTS, SCRATCH, SKETCH, SOURCES},
    parse::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// Which class a packet belongs to (at most one), or why it has none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Syn,
    SynAck,
    /// `data`: the segment carries payload.
    Ack {
        data: bool,
    },
    Rst,
    Fin,
    /// TCP we cannot classify (fragments, long IPv6 chains).
    Unparsed,
    /// A SYN or UDP datagram to a closed port (`port` in host order), which
    /// the caller drops.
    Closed {
        port: u16,
    },
    /// Not TCP (UDP to an open port, ICMP, ...): counted, never limited.
    None,
}

impl Class {
    /// Index into the per-class counters, buckets, limits and scope bits.
    #[inline(always)]
    fn index(self) -> Option<usize> {
        match self {
            Class::Syn => Some(flag::SYN),
            Class::SynAck => Some(flag::SYN_ACK),
            Class::Ack { .. } => Some(flag::ACK),
            Class::Rst => Some(flag::RST),
            Class::Fin => Some(flag::FIN),
            Class::Unparsed => Some(flag::UNPARSED),
            Class::Closed { .. } | Class::None => None,
        }
    }

    /// Classes a local socket can own: whether they are stray is decided by
    /// the socket look-up.
    #[inline(always)]
    pub fn needs_lookup(self) -> bool {
        matches!(
            self,
            Class::SynAck | Class::Ack { .. } | Class::Rst | Class::Fin
        )
    }

    /// RST wins over everything, then SYN (SYN-ACK if ACK is set), then FIN;
    /// anything else (ACK, with or without payload, or no flag at all) is ACK.
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
        } else {
            Class::Ack { data: payload > 0 }
        }
    }
}

/// Whether the class is one a restriction or a limit applies to, so that
/// its socket look-up decides something.
#[inline(always)]
pub fn restricted_on(class: Class, scope: u32) -> bool {
    match class.index() {
        Some(i) => scope & flag::bit(i) != 0,
        None => false,
    }
}

/// The source's counters for this packet: its `SOURCES` entry, or a fresh
/// one in this CPU's scratch slot when the sketch says it is heavy enough
/// to track (then `new`: [`commit`] inserts it), or none.
pub struct Entry {
    ptr: *mut SourceCounters,
    new: bool,
}

impl Entry {
    #[inline(always)]
    pub fn tracked(&self) -> bool {
        !self.ptr.is_null()
    }
}

/// Finds or starts the source's entry (see [`Entry`]).
#[inline(always)]
pub fn entry(key: &SourceKey, cfg: &Config, clock: &mut Clock) -> Entry {
    let now = clock.now();
    if let Some(c) = SOURCES.get_ptr_mut(key) {
        return Entry { ptr: c, new: false };
    }
    let untracked = Entry {
        ptr: core::ptr::null_mut(),
        new: false,
    };
    if cfg.track_min_packets > 1 && !heavy(key, cfg.track_min_packets, now) {
        return untracked;
    }
    let Some(c) = SCRATCH.get_ptr_mut(0) else {
        return untracked;
    };
    // SAFETY: this CPU's scratch slot, used only until `commit` copies it.
    unsafe { *c = SourceCounters::default() };
    Entry { ptr: c, new: true }
}

/// Inserts a new entry (a no-op for an existing or no entry).
#[inline(always)]
pub fn commit(key: &SourceKey, e: &Entry) {
    if !e.new {
        return;
    }
    // SAFETY: the scratch slot `entry` filled; by reference, since a
    // by-value insert would copy the value onto the stack.
    let value: &SourceCounters = unsafe { &*e.ptr };
    // Fails only on memory pressure; the next packet tries again.
    if SOURCES.insert(key, value, 0).is_ok() {
        add(counter::SOURCES_ADDED);
    }
}

/// Adds one to this CPU's `COUNTERS` slot.
#[inline(always)]
fn add(slot: u32) {
    if let Some(n) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe { *n += 1 };
    }
}

/// Counts the packet in `e` and decides whether it is dropped. `sock` is
/// what the socket look-up found (`Sock::Unknown` where none was needed);
/// `scope` holds the classes the source is restricted on (0: none). An
/// untracked source is neither counted nor limited, but a restriction holds.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn account(
    key: &SourceKey,
    e: &Entry,
    class: Class,
    sock: Sock,
    bytes: u64,
    scope: u32,
    cfg: &Config,
    clock: &mut Clock,
) -> Option<Reason> {
    let i = class.index();
    if !e.tracked() {
        return match i {
            Some(i) if scope & flag::bit(i) != 0 && !sock.in_connection() => {
                Some(Reason::Restricted)
            }
            _ => None,
        };
    }
    // SAFETY: per-CPU value (or scratch slot) of this CPU; only this CPU
    // writes it while this program runs.
    let c = unsafe { &mut *e.ptr };
    let now = clock.now();
    touch(c, bytes, now);
    // The window metric this packet counts in, and the verdict.
    let (metric, verdict) = match sock.in_connection() {
        true => (in_connection(c, class, sock, cfg), None),
        false => stray(key, c, class, scope, cfg, now),
    };
    // One call site (`METRICS`: nothing to count): the window code is a
    // subprogram, and one call keeps it out of every class's branch.
    count_window(key, c, metric.unwrap_or(window::METRICS), cfg, now);
    verdict
}

/// A packet no connection of the host owns (or a SYN): counted by class,
/// restricted or limited.
#[inline(always)]
fn stray(
    key: &SourceKey,
    c: &mut SourceCounters,
    class: Class,
    scope: u32,
    cfg: &Config,
    now: u64,
) -> (Option<usize>, Option<Reason>) {
    match class {
        Class::Syn => c.syn += 1,
        Class::SynAck => c.syn_ack += 1,
        Class::Ack { .. } => c.ack += 1,
        Class::Rst => c.rst += 1,
        Class::Fin => c.fin += 1,
        Class::Unparsed => c.unparsed += 1,
        Class::Closed { port } => closed_port(key, c, port, cfg, now),
        Class::None => {}
    }
    let Some(i) = class.index() else {
        return (None, None);
    };
    add(counter::CLASSES + i as u32);
    if scope & flag::bit(i) != 0 {
        // Already restricted on it: nothing to report.
        return (None, Some(Reason::Restricted));
    }
    if limited(c, i, cfg, now) {
        return (Some(i), Some(Reason::RateLimited));
    }
    (Some(i), None)
}

#[inline(always)]
fn touch(c: &mut SourceCounters, bytes: u64, now: u64) {
    c.packets += 1;
    c.bytes += bytes;
    if c.first_seen_ns == 0 {
        c.first_seen_ns = now;
    }
    c.last_seen_ns = now;
}

/// A packet of one of the host's connections: counted, never limited. It
/// also tells handshakes that complete, and connections closed before the
/// source sent any data (the mark of a connection flood; the socket look-up
/// asked the kernel's own counters, see `conn::Sock::Empty`). Returns the
/// window metric it counts in.
#[inline(always)]
fn in_connection(c: &mut SourceCounters, class: Class, sock: Sock, cfg: &Config) -> Option<usize> {
    c.in_conn += 1;
    match class {
        Class::Ack { .. } if sock.completes() => {
            c.new_conns += 1;
            refund_syn(c, cfg);
            Some(window::NEW_CONNS)
        }
        Class::Fin | Class::Rst if sock == Sock::Empty => {
            c.empty_conns += 1;
            Some(window::EMPTY_CONNS)
        }
        _ => None,
    }
}

/// Counts one of window metric `m` (`METRICS` or more: nothing) in the
/// window `now` is in, first moving the counts on if the window changed
/// (those of the one just before become `prev_win`). The count reaching
/// its trigger reports the source: once per window, or again on the next
/// packet if the ring had no room. Not inlined, and without branches where
/// arithmetic does: the verifier walks it once per path that reaches it.
#[inline(never)]
fn count_window(key: &SourceKey, c: &mut SourceCounters, m: usize, cfg: &Config, now: u64) {
    if m >= window::METRICS || cfg.window_ns == 0 {
        return;
    }
    let id = (now / cfg.window_ns) as u32;
    if c.win_id != id {
        // All ones if the counts are of the window just before, else 0.
        let keep = ((c.win_id.wrapping_add(1) == id) as u32).wrapping_neg();
        for j in 0..window::METRICS {
            let prev = c.win[j] & keep;
            // SAFETY: in-bounds fields of this CPU's entry. Volatile, so
            // that no `memcpy`/`memset` byte loop replaces the stores.
            unsafe {
                core::ptr::write_volatile(&mut c.prev_win[j], prev);
                core::ptr::write_volatile(&mut c.win[j], 0);
            }
        }
        c.win_sent = 0;
        c.win_id = id;
    }
    // A completed handshake: the SYN it answers no longer counts.
    let done = (m == window::NEW_CONNS) as u32;
    let syn = c.win[flag::SYN];
    c.win[flag::SYN] = syn - (done & (syn != 0) as u32);
    // verifier: both look-ups are bounds-checked (m < METRICS anyway)
    let (Some(n), Some(&trigger)) = (c.win.get_mut(m), cfg.trigger.get(m)) else {
        return;
    };
    *n = n.wrapping_add(1);
    let bit = 1u32 << m;
    if trigger == 0 || *n < trigger || c.win_sent & bit != 0 {
        return;
    }
    let count = *n;
    if report(key, m as u32, count, c.win_id) {
        c.win_sent |= bit;
    } else if c.win_sent & (bit << LOST_SHIFT) == 0 {
        // Counted once per window and metric, however many packets retry.
        c.win_sent |= bit << LOST_SHIFT;
        add(counter::EVENTS_LOST);
    }
}

/// `win_sent` holds the reports sent in its low bits and, this many bits
/// up, the reports the ring had no room for.
const LOST_SHIFT: u32 = 16;

/// Pushes an event to the controller; false if the ring is full.
#[inline(never)]
fn report(key: &SourceKey, metric: u32, count: u32, window: u32) -> bool {
    let event = Event {
        key: *key,
        metric,
        count,
        window,
    };
    EVENTS.output(&event, 0).is_ok()
}

/// A completed handshake gives its SYN's token back: the SYN bucket then
/// limits SYNs that go unanswered, not a busy client's new connections.
#[inline(always)]
fn refund_syn(c: &mut SourceCounters, cfg: &Config) {
    let (Some(limit), Some(b)) = (cfg.limits.get(flag::SYN), c.buckets.get_mut(flag::SYN)) else {
        return;
    };
    if limit.rate == 0 || b.last_ns == 0 {
        return;
    }
    let cap = (limit.burst.max(1) as u64) * 1000;
    b.tokens_milli = (b.tokens_milli + 1000).min(cap);
}

/// Bits of [`SourceCounters::scan_bits`].
const SCAN_BITS: u32 = 128;

/// Remembers a closed port the source touched this epoch; the epoch in
/// which it passes `cfg.scan_ports` distinct ports counts one scan.
#[inline(always)]
fn closed_port(key: &SourceKey, c: &mut SourceCounters, port: u16, cfg: &Config, now: u64) {
    c.closed_ports += 1;
    if cfg.scan_ports == 0 {
        return;
    }
    let epoch = (now >> SKETCH_EPOCH_NS_SHIFT) as u32;
    if c.scan_epoch != epoch {
        c.scan_epoch = epoch;
        c.scan_bits = [0; 2];
        c.scan_count = 0;
    }
    // A multiplicative hash spreads neighbouring ports over the bits.
    let bit = ((port as u32).wrapping_mul(0x9e37_79b1) >> 25) & (SCAN_BITS - 1);
    // verifier: the word index is 0 or 1
    let word = (bit >> 6) as usize & 1;
    let mask = 1u64 << (bit & 63);
    if c.scan_bits[word] & mask != 0 {
        return;
    }
    c.scan_bits[word] |= mask;
    c.scan_count += 1;
    if c.scan_count == cfg.scan_ports.saturating_add(1) {
        c.scans += 1;
        if !report(key, window::SCAN, c.scan_count, epoch) {
            add(counter::EVENTS_LOST);
        }
    }
}

/// Takes a token from the source's bucket for class `i`; true if there was
/// none (and counts the drop).
#[inline(always)]
fn limited(c: &mut SourceCounters, i: usize, cfg: &Config, now: u64) -> bool {
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
const MAX_REFILL_NS: u64 = 10_000_000_000;

/// Token bucket in milli-tokens: refills at `rate`/s up to `burst`, and a
/// packet costs 1000. A bucket never used starts full. Time that has not
/// yet earned a whole milli-token is kept (`last_ns` advances only by the
/// time the tokens it adds are worth), so a stream of any speed still gets
/// `rate` per second.
#[inline(always)]
fn take(b: &mut Bucket, limit: &RateLimit, now: u64) -> bool {
    if limit.rate == 0 {
        return true;
    }
    let cap = (limit.burst.max(1) as u64) * 1000;
    // rate <= MAX_RATE_PPS (checked by userspace): at most 1e10 * 1e7.
    let rate = (limit.rate as u64).min(filter_common::MAX_RATE_PPS as u64);
    let mut tokens = cap;
    if b.last_ns == 0 {
        b.last_ns = now;
    } else {
        let elapsed = now.saturating_sub(b.last_ns).min(MAX_REFILL_NS);
        // rate/s is rate milli-tokens per ms: rate / 1e6 per ns.
        let gained = elapsed * rate / 1_000_000;
        let sum = b.tokens_milli + gained;
        if sum >= cap {
            b.last_ns = now;
        } else {
            tokens = sum;
            b.last_ns += gained * 1_000_000 / rate;
        }
    }
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

/// The sketch's hash key, drawn at random by the loader for each load
/// (`override_global`); read-only here. Without it an attacker could
/// compute addresses that share the counters of a source they target.
#[unsafe(no_mangle)]
static SKETCH_KEY: [u64; 2] = [0; 2];

/// SipHash-1-3 of the address, keyed by [`SKETCH_KEY`] (the family folded
/// into the key): a keyed function, so its outputs cannot be steered by
/// whoever does not know the key. The two 32-bit halves index the two rows.
#[inline(always)]
fn hash(key: &SourceKey) -> u64 {
    // SAFETY: reading our own read-only global.
    let k = unsafe { core::ptr::read_volatile(&SKETCH_KEY) };
    let a = &key.addr;
    let w0 = u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let w1 = u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    filter_common::siphash13_16([k[0], k[1] ^ key.family as u64], [w0, w1])
}
