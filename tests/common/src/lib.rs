//! Types shared by the test-only eBPF programs (`tests/ebpf`) and the test
//! harness (`tests/`): kept out of the product's `filter-common`.
#![no_std]

/// Settings of the attack generator (`tests/ebpf/src/flood.rs`), a
/// test tool: it rewrites a template IPv4/TCP frame and sends it back out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodConfig {
    /// Source address, host byte order; bits set in `src_random_mask` are
    /// replaced by random bits in every frame (0: a fixed source).
    pub src_base: u32,
    pub src_random_mask: u32,
    /// Non-zero: a random source port (1024-65535) and sequence per frame.
    pub randomize_ports: u32,
    /// Non-zero: a random destination port (1-65535) per frame.
    pub randomize_dport: u32,
    /// Length of the template frame (Ethernet + IPv4 + TCP bytes), at most
    /// [`FLOOD_MAX_FRAME`].
    pub frame_len: u32,
    /// Non-zero: the frame holds a whole TCP segment whose checksum is
    /// recomputed; zero for a fragment (no checksum to fix).
    pub tcp_checksum: u32,
    /// Non-zero: the template is IPv6 (40-byte header, a bare 20-byte TCP
    /// header); the random bits go into the source's second 32-bit word,
    /// inside its /64, so every frame comes from another /64.
    pub ipv6: u32,
}

/// Longest template frame the generator rewrites.
pub const FLOOD_MAX_FRAME: u32 = 14 + 20 + 40;

#[cfg(feature = "user")]
// SAFETY: a #[repr(C)] struct of u32s, no implicit padding.
unsafe impl aya::Pod for FloodConfig {}
