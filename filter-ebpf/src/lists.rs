//! Allowlist and blocklist look-ups. Expiry is enforced here: an entry whose
//! `expires_ns` has passed no longer matches, whatever userspace is doing.

use aya_ebpf::maps::{lpm_trie::Key, HashMap, LpmTrie};
use filter_common::{ListEntry, Reason};

use crate::clock::Clock;

#[inline(always)]
fn live(entry: &ListEntry, clock: &mut Clock) -> bool {
    entry.expires_ns == 0 || clock.now() < entry.expires_ns
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
    let key = Key::new((N * 8) as u32, addr);
    if let Some(e) = allow.get(&key) {
        if live(e, clock) {
            return Listed::Verdict(Reason::Allowlisted);
        }
    }
    let mut scope = 0;
    // SAFETY: the value is only read; a concurrent update by userspace can at
    // worst make this packet see the old or the new entry.
    if let Some(e) = unsafe { exact.get(addr) } {
        if live(e, clock) {
            if e.scope == 0 {
                return Listed::Verdict(Reason::BlockedExact);
            }
            scope |= e.scope;
        }
    }
    if let Some(e) = net.get(&key) {
        if live(e, clock) {
            if e.scope == 0 {
                return Listed::Verdict(Reason::BlockedCidr);
            }
            scope |= e.scope;
        }
    }
    Listed::Scope(scope)
}
