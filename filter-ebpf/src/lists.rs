//! Allowlist and blocklist look-ups. Expiry is enforced here: an entry whose
//! `expires_ns` has passed no longer matches, whatever userspace is doing.

use aya_ebpf::maps::{lpm_trie::Key, HashMap, LpmTrie};
use filter_common::{net_lens, ListEntry, Reason};

use crate::{
    clock::Clock,
    maps::{NET_KEY, NET_LENS},
};

#[inline(always)]
fn live(entry: &ListEntry, clock: &mut Clock) -> bool {
    entry.expires_ns == 0 || clock.now() < entry.expires_ns
}

/// Expired prefix entries, nested inside one another, that a look-up sees
/// through before it gives up (the controller sweeps expired entries every
/// interval; this covers the time between, and a host with no controller).
const MAX_SHADOWS: usize = 4;

/// The longest *live* entry of a trie covering `addr`. An expired match
/// is looked past: the trie is asked again for prefixes shorter than the
/// expired entry's own (`ListEntry::prefix_len`).
#[inline(always)]
fn longest_in_trie<'a, const N: usize>(
    trie: &'a LpmTrie<[u8; N], ListEntry>,
    addr: [u8; N],
    live: &mut impl FnMut(&ListEntry) -> bool,
) -> Option<&'a ListEntry> {
    let mut len = (N * 8) as u32;
    for _ in 0..MAX_SHADOWS {
        let e = trie.get(&Key::new(len, addr))?;
        if live(e) {
            return Some(e);
        }
        let own = e.prefix_len as u32;
        // 0: a /0 (nothing is shorter) or an entry of an older build.
        if own == 0 || own > len {
            return None;
        }
        len = own - 1;
    }
    None
}

/// A CIDR block map of one family: hash look-ups of (length, masked
/// address) for the lengths present, longest first. One look-up per
/// length actually in use, where an LPM trie walks a node per bit; and an
/// expired entry is simply passed over for the next shorter length.
pub trait Nets<const N: usize> {
    /// The `NET_LENS` slots of the family, the longer lengths first, and
    /// the length of the first bit of each.
    const SLOTS: [(u32, u32); 2];
    /// The bits of a slot that can be set.
    const LEN_MASK: u64;
    /// This family's bits in the `net_lens::FLAGS` slot.
    const OVERFLOW: u64;
    const ALLOW: u64;
    const EXACT: u64;
    fn map(&self) -> &HashMap<Key<[u8; N]>, ListEntry>;
    /// The same entries in an LPM trie, for when more lengths are in use
    /// than the probes cover.
    fn trie(&self) -> &LpmTrie<[u8; N], ListEntry>;
    /// `addr` with all but its first `len` bits cleared.
    fn mask(addr: &[u8; N], len: u32) -> [u8; N];
}

pub struct V4<'a>(
    pub &'a HashMap<Key<[u8; 4]>, ListEntry>,
    pub &'a LpmTrie<[u8; 4], ListEntry>,
);
pub struct V6<'a>(
    pub &'a HashMap<Key<[u8; 16]>, ListEntry>,
    pub &'a LpmTrie<[u8; 16], ListEntry>,
);

impl Nets<4> for V4<'_> {
    // IPv4 uses one slot; the second is read as empty.
    const SLOTS: [(u32, u32); 2] = [(net_lens::V4, 0), (net_lens::SLOTS, 0)];
    const LEN_MASK: u64 = u32::MAX as u64;
    const OVERFLOW: u64 = net_lens::OVERFLOW_V4;
    const ALLOW: u64 = net_lens::ALLOW_V4;
    const EXACT: u64 = net_lens::EXACT_V4;
    fn map(&self) -> &HashMap<Key<[u8; 4]>, ListEntry> {
        self.0
    }
    fn trie(&self) -> &LpmTrie<[u8; 4], ListEntry> {
        self.1
    }
    #[inline(always)]
    fn mask(addr: &[u8; 4], len: u32) -> [u8; 4] {
        let a = u32::from_be_bytes(*addr);
        let m = match len {
            0 => 0,
            l => u32::MAX << (32 - l.min(32)),
        };
        (a & m).to_be_bytes()
    }
}

impl Nets<16> for V6<'_> {
    const SLOTS: [(u32, u32); 2] = [(net_lens::V6_HIGH, 64), (net_lens::V6_LOW, 0)];
    const LEN_MASK: u64 = u64::MAX;
    const OVERFLOW: u64 = net_lens::OVERFLOW_V6;
    const ALLOW: u64 = net_lens::ALLOW_V6;
    const EXACT: u64 = net_lens::EXACT_V6;
    fn map(&self) -> &HashMap<Key<[u8; 16]>, ListEntry> {
        self.0
    }
    fn trie(&self) -> &LpmTrie<[u8; 16], ListEntry> {
        self.1
    }
    #[inline(always)]
    fn mask(addr: &[u8; 16], len: u32) -> [u8; 16] {
        let hi = u64::from_be_bytes([
            addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
        ]);
        let lo = u64::from_be_bytes([
            addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
        ]);
        let keep = |bits: u32| match bits {
            0 => 0,
            b => u64::MAX << (64 - b.min(64)),
        };
        let (hi_bits, lo_bits) = match len {
            0..64 => (len, 0),
            _ => (64, len - 64),
        };
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(hi & keep(hi_bits)).to_be_bytes());
        out[8..].copy_from_slice(&(lo & keep(lo_bits)).to_be_bytes());
        out
    }
}

/// What [`longest_blocked`] found: the longest live entry's scope with
/// [`FOUND`] set, or 0 for none.
const FOUND: u64 = 1 << 32;

/// The longest live CIDR entry covering `addr`, as its scope | [`FOUND`].
/// Not inlined, and it reads the clock itself: the verifier walks it once
/// per path that calls it. The probes cover [`net_lens::MAX_PROBED`]
/// lengths per slot; past that, userspace sets the family's overflow bit
/// and the trie holding the same entries answers instead.
#[inline(never)]
fn longest_blocked<const N: usize, M: Nets<N>>(nets: &M, addr: &[u8; N], flags: u64) -> u64 {
    let mut now = 0u64;
    let mut live = |e: &ListEntry| {
        if e.expires_ns == 0 {
            return true;
        }
        if now == 0 {
            // SAFETY: a helper without arguments.
            now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
        }
        now < e.expires_ns
    };
    if flags & M::OVERFLOW != 0 {
        return match longest_in_trie(nets.trie(), *addr, &mut live) {
            Some(e) => FOUND | e.scope as u64,
            None => 0,
        };
    }
    for (slot, base) in M::SLOTS {
        let Some(&lens) = NET_LENS.get(slot) else {
            continue;
        };
        let mut lens = lens & M::LEN_MASK;
        for _ in 0..net_lens::MAX_PROBED {
            if lens == 0 {
                break;
            }
            let bit = 63 - lens.leading_zeros();
            lens &= !(1u64 << bit);
            let len = base + bit;
            // The key is built in a per-CPU slot, not on the stack: the
            // caller's frame leaves this one little room.
            let Some(slot) = NET_KEY.get_ptr_mut(0) else {
                return 0;
            };
            let key = slot as *mut Key<[u8; N]>;
            // SAFETY: this CPU's 24-byte slot holds a Key of N <= 16 bytes;
            // the value found is only read (a concurrent update by
            // userspace can at worst make this packet see the old or the
            // new entry).
            let found = unsafe {
                key.write_unaligned(Key::new(len, M::mask(addr, len)));
                nets.map().get(&*key)
            };
            match found {
                Some(e) if live(e) => return FOUND | e.scope as u64,
                _ => {}
            }
        }
    }
    0
}

/// What the lists say about a source.
pub enum Listed {
    /// A verdict already: allowlisted, or blocked (exact or CIDR).
    Verdict(Reason),
    /// Restricted on these classes (bits of `ListEntry::scope`), or 0.
    Scope(u32),
}

/// Allowlist first, then exact blocks, then CIDR blocks. A restriction (an
/// entry with a scope) does not hide a block: both block maps are consulted
/// and restrictions found in either add up.
#[inline(always)]
pub fn check<const N: usize, M: Nets<N>>(
    allow: &LpmTrie<[u8; N], ListEntry>,
    exact: &HashMap<[u8; N], ListEntry>,
    nets: &M,
    addr: [u8; N],
    clock: &mut Clock,
) -> Listed {
    // Which maps hold anything (all of them if the slot cannot be read):
    // an empty list costs nothing.
    let flags = NET_LENS.get(net_lens::FLAGS).copied().unwrap_or(u64::MAX);
    if flags & M::ALLOW != 0 && longest_in_trie(allow, addr, &mut |e| live(e, clock)).is_some() {
        return Listed::Verdict(Reason::Allowlisted);
    }
    let mut scope = 0;
    if flags & M::EXACT != 0 {
        // SAFETY: as in `longest_blocked`.
        if let Some(e) = unsafe { exact.get(&addr) } {
            if live(e, clock) {
                if e.scope == 0 {
                    return Listed::Verdict(Reason::BlockedExact);
                }
                scope |= e.scope;
            }
        }
    }
    let found = longest_blocked(nets, &addr, flags);
    if found != 0 {
        let s = found as u32;
        if s == 0 {
            return Listed::Verdict(Reason::BlockedCidr);
        }
        scope |= s;
    }
    Listed::Scope(scope)
}
