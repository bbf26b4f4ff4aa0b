//! Helpers for the filter's tests and benchmark: crafted packets, network
//! namespaces and a private bpf filesystem, each cleaned up on drop (also
//! when a test panics).

pub mod netns;
pub mod packet;

/// Kernel and netns tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN).
/// CI runs as root; elsewhere this fails loudly rather than skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load BPF programs and create namespaces: run them as root (cargo xtask test does)"
    );
}
