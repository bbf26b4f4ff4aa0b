//! Attack generator for the test rig (not part of the filter). Run through
//! BPF_PROG_TEST_RUN with live frames on the attacker's interface: each run
//! takes the template Ethernet/IPv4/TCP frame, gives it a random source
//! address (within a mask), source port and sequence number (and, for a
//! scan, destination port), recomputes the IPv4 and TCP checksums, and sends
//! it out with XDP_TX. The template may carry a payload, or be a tiny first
//! fragment (8 bytes of TCP, no checksum to fix).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::map, macros::xdp, maps::Array,
    programs::XdpContext,
};
use filter_test_common::{FloodConfig, FLOOD_MAX_FRAME};

/// Written by the generator's userspace before the run.
#[map]
static FLOOD: Array<FloodConfig> = Array::with_max_entries(1, 0);

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
/// Ethernet, IPv4 and the TCP ports and sequence number: every template
/// has at least these.
const MIN_FRAME: usize = ETH_LEN + IP_LEN + 8;
const MAX_FRAME: usize = FLOOD_MAX_FRAME as usize;

#[xdp]
pub fn flood(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let Some(cfg) = FLOOD.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let len = cfg.frame_len as usize;
    // verifier: a constant-length check; the checksum checks its own span
    // (a check against the variable `len` here would let the compiler drop
    // that one, and the verifier cannot follow a variable length)
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) || start + MIN_FRAME > end {
        return xdp_action::XDP_ABORTED;
    }
    if cfg.ipv6 != 0 {
        return flood_v6(start, end, cfg);
    }
    let frame = unsafe { &mut *(start as *mut [u8; MIN_FRAME]) };
    let rnd = unsafe { bpf_get_prandom_u32() };
    let src = (cfg.src_base & !cfg.src_random_mask) | (rnd & cfg.src_random_mask);
    frame[26..30].copy_from_slice(&src.to_be_bytes());
    if cfg.randomize_ports != 0 {
        let r2 = unsafe { bpf_get_prandom_u32() };
        let port = 1024 + (r2 % (65536 - 1024)) as u16;
        frame[34..36].copy_from_slice(&port.to_be_bytes());
        frame[38..42].copy_from_slice(&rnd.rotate_left(13).to_be_bytes());
    }
    if cfg.randomize_dport != 0 {
        let r3 = unsafe { bpf_get_prandom_u32() };
        let port = 1 + (r3 % 65535) as u16;
        frame[36..38].copy_from_slice(&port.to_be_bytes());
    }
    // IPv4 header checksum over the 20 bytes, check field zeroed.
    frame[24] = 0;
    frame[25] = 0;
    let mut sum = 0u32;
    let mut i = ETH_LEN;
    while i < ETH_LEN + IP_LEN {
        sum += u16::from_be_bytes([frame[i], frame[i + 1]]) as u32;
        i += 2;
    }
    frame[24..26].copy_from_slice(&fold(sum).to_be_bytes());
    if cfg.tcp_checksum != 0 {
        // The segment lengths the generator's templates use: a bare header,
        // and a header with one byte of payload.
        match len - ETH_LEN - IP_LEN {
            20 => tcp_checksum::<20>(start, end),
            21 => tcp_checksum::<21>(start, end),
            _ => return xdp_action::XDP_ABORTED,
        }
    }
    xdp_action::XDP_TX
}

/// An IPv6 SYN: Ethernet, IPv6 (40 bytes), a bare TCP header (20).
const V6_FRAME: usize = ETH_LEN + 40 + 20;

#[inline(always)]
fn flood_v6(start: usize, end: usize, cfg: &FloodConfig) -> u32 {
    // verifier: one check covers every byte read and written below
    if start + V6_FRAME > end {
        return xdp_action::XDP_ABORTED;
    }
    let f = unsafe { &mut *(start as *mut [u8; V6_FRAME]) };
    let rnd = unsafe { bpf_get_prandom_u32() };
    let word = (cfg.src_base & !cfg.src_random_mask) | (rnd & cfg.src_random_mask);
    f[26..30].copy_from_slice(&word.to_be_bytes());
    if cfg.randomize_ports != 0 {
        let r2 = unsafe { bpf_get_prandom_u32() };
        let port = 1024 + (r2 % (65536 - 1024)) as u16;
        f[54..56].copy_from_slice(&port.to_be_bytes());
        f[58..62].copy_from_slice(&rnd.rotate_left(13).to_be_bytes());
    }
    // TCP checksum: pseudo header (addresses, length 20, next header 6).
    f[70] = 0;
    f[71] = 0;
    let mut sum = 6u32 + 20;
    let mut i = 22;
    while i < V6_FRAME {
        sum += u16::from_be_bytes([f[i], f[i + 1]]) as u32;
        i += 2;
    }
    f[70..72].copy_from_slice(&fold(sum).to_be_bytes());
    xdp_action::XDP_TX
}

/// TCP checksum of an `N`-byte segment: pseudo header (addresses,
/// protocol, length) + segment.
#[inline(always)]
fn tcp_checksum<const N: usize>(start: usize, end: usize) {
    const TCP: usize = ETH_LEN + IP_LEN;
    // verifier: one check covers every byte read and written below
    if start + TCP + N > end {
        return;
    }
    let frame = unsafe { &mut *(start as *mut [u8; TCP]) };
    let seg = unsafe { &mut *((start + TCP) as *mut [u8; N]) };
    seg[16] = 0;
    seg[17] = 0;
    let mut sum = 6u32 + N as u32;
    let mut i = 26;
    while i < 34 {
        sum += u16::from_be_bytes([frame[i], frame[i + 1]]) as u32;
        i += 2;
    }
    let mut i = 0;
    while i < N {
        let lo = if i + 1 < N { seg[i + 1] } else { 0 };
        sum += u16::from_be_bytes([seg[i], lo]) as u32;
        i += 2;
    }
    seg[16..18].copy_from_slice(&fold(sum).to_be_bytes());
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
