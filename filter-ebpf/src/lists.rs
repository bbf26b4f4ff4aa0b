//! Allowlist and blocklist look-ups. Expiry is enforced here: an entry whose
//! `expires_ns` has passed no longer matches, whatever userspace is doing.

use aya_ebpf::maps::{lpm_trie::Key, HashMap, LpmTrie};
use filter_common::{ListEntry, Reason};

use crate::clock::Clock;

#[inline(always)]
fn live(entry: &ListEntry, clock: &mut Clock) -> bool {
    entry.expires_ns == 0 || clock.now() < entry.expires_ns
}

/// Expired prefix entries, nested inside one another, that a look-up sees
/// through before it gives up (the controller sweeps expired entries every
/// interval; this covers the time between, and a host with no controller).
const MAX_SHADOWS: usize = 4;

/// The longest *live* prefix entry covering `addr`. An expired match is
/// looked past: the trie is asked again for prefixes shorter than the
/// expired entry's own (`ListEntry::prefix_len`).
#[inline(always)]
fn longest_live<'a, const N: usize>(
    trie: &'a LpmTrie<[u8; N], ListEntry>,
    addr: [u8; N],
    clock: &mut Clock,
) -> Option<&'a ListEntry> {
    let mut len = (N * 8) as u32;
    for _ in 0..MAX_SHADOWS {
        let e = trie.get(&Key::new(len, addr))?;
        if live(e, clock) {
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
pub fn check<const N: usize>(
    allow: &LpmTrie<[u8; N], ListEntry>,
    exact: &HashMap<[u8; N], ListEntry>,
    net: &LpmTrie<[u8; N], ListEntry>,
    addr: [u8; N],
    clock: &mut Clock,
) -> Listed {
    if longest_live(allow, addr, clock).is_some() {
        return Listed::Verdict(Reason::Allowlisted);
    }
    let mut scope = 0;
    // SAFETY: the value is only read; a concurrent update by userspace can at
    // worst make this packet see the old or the new entry.
    if let Some(e) = unsafe { exact.get(&addr) } {
        if live(e, clock) {
            if e.scope == 0 {
                return Listed::Verdict(Reason::BlockedExact);
            }
            scope |= e.scope;
        }
    }
    if let Some(e) = longest_live(net, addr, clock) {
        if e.scope == 0 {
            return Listed::Verdict(Reason::BlockedCidr);
        }
        scope |= e.scope;
    }
    Listed::Scope(scope)
}
