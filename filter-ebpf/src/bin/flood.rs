//! Attack generator for the test rig (not part of the filter). Run through
//! BPF_PROG_TEST_RUN with live frames on the attacker's interface: each run
//! takes the template Ethernet/IPv4/TCP frame, gives it a random source
//! address (within a mask), source port and sequence number, recomputes the
//! IPv4 and TCP checksums, and sends it out with XDP_TX.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::map, macros::xdp, maps::Array,
    programs::XdpContext,
};
use filter_common::FloodConfig;

/// Written by the generator's userspace before the run.
#[map]
static FLOOD: Array<FloodConfig> = Array::with_max_entries(1, 0);

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const TCP_LEN: usize = 20;
const FRAME_LEN: usize = ETH_LEN + IP_LEN + TCP_LEN;

#[xdp]
pub fn flood(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    // verifier: the whole template must be there
    if start + FRAME_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    let Some(cfg) = FLOOD.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let frame = unsafe { &mut *(start as *mut [u8; FRAME_LEN]) };
    let rnd = unsafe { bpf_get_prandom_u32() };
    let src = (cfg.src_base & !cfg.src_random_mask) | (rnd & cfg.src_random_mask);
    frame[26..30].copy_from_slice(&src.to_be_bytes());
    if cfg.randomize_ports != 0 {
        let r2 = unsafe { bpf_get_prandom_u32() };
        let port = 1024 + (r2 % (65536 - 1024)) as u16;
        frame[34..36].copy_from_slice(&port.to_be_bytes());
        frame[38..42].copy_from_slice(&rnd.rotate_left(13).to_be_bytes());
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
    // TCP checksum: pseudo header (addresses, protocol, length) + header.
    frame[50] = 0;
    frame[51] = 0;
    let mut sum = 6u32 + TCP_LEN as u32;
    let mut i = 26;
    while i < 34 {
        sum += u16::from_be_bytes([frame[i], frame[i + 1]]) as u32;
        i += 2;
    }
    let mut i = ETH_LEN + IP_LEN;
    while i < FRAME_LEN {
        sum += u16::from_be_bytes([frame[i], frame[i + 1]]) as u32;
        i += 2;
    }
    frame[50..52].copy_from_slice(&fold(sum).to_be_bytes());
    xdp_action::XDP_TX
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
