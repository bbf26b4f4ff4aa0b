//! `syn_cookie` verification, listener-bound route: a SYN from an
//! unverified source to a listening port is answered here, with a SYN-ACK
//! whose sequence number is the listener's own syncookie
//! (`bpf_tcp_gen_syncookie`, which also marks the listener as using
//! cookies so the kernel accepts the ACK), sent back out with XDP_TX. The
//! SYN never reaches the listener's queue; the client's ACK goes up to the
//! kernel, which validates the cookie and creates the connection, and the
//! source is verified. The SYN-ACK carries the MSS only (a connection made
//! through a cookie has no window scaling, SACK or timestamps; a verified
//! source's later SYNs reach the kernel and get all of them).
//!
//! Only plain layouts are answered: no VLAN tag, no IPv4 options, no IPv6
//! extension headers, no data (TCP Fast Open). Anything else passes.
//!
//! This runs as its own program (`challenge`), which the filter enters by
//! tail call once it has decided to challenge a SYN: the cookie helper's
//! header-length dispatch would otherwise multiply the filter's verifier
//! paths past the kernel's budget.

use aya_ebpf::{
    bindings::{bpf_sock, tcphdr},
    helpers::generated::{bpf_tcp_gen_syncookie, bpf_xdp_adjust_tail},
    macros::xdp,
    programs::XdpContext,
};
use core::ffi::c_void;
use filter_common::Reason;

use crate::{
    conn::listener,
    parse::{ptr_at, Malformed},
};

/// The challenge: answer the plain SYN with a cookie SYN-ACK if a
/// listener gives a cookie; else let it pass, as the filter would have.
#[xdp]
pub fn challenge(ctx: XdpContext) -> u32 {
    let reason = match try_challenge(&ctx) {
        Ok(true) => Reason::ChallengeSent,
        Ok(false) => Reason::Passed,
        Err(_) => Reason::Malformed,
    };
    crate::stats::record(&ctx, reason)
}

#[inline(always)]
fn try_challenge(ctx: &XdpContext) -> Result<bool, Malformed> {
    let eth = ptr_at::<[u8; 14]>(ctx, 0)?;
    // SAFETY: bounds-checked.
    let v6 = match unsafe { [(*eth)[12], (*eth)[13]] } {
        [0x86, 0xdd] => true,
        [0x08, 0x00] => false,
        _ => return Ok(false),
    };
    let l4 = if v6 { V6_L4 } else { V4_L4 };
    // The filter checked the layout; read what the look-up needs.
    let ip = ptr_at::<[u8; 40]>(ctx, ETH)?;
    let th = ptr_at::<[u8; 20]>(ctx, l4)?;
    // SAFETY: both bounds-checked.
    let (ip, th) = unsafe { (&*ip, &*th) };
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    if v6 {
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    } else {
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
    }
    let ports = (
        u16::from_ne_bytes([th[0], th[1]]),
        u16::from_ne_bytes([th[2], th[3]]),
    );
    let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let Some((cookie, mss)) = listener(ctx, v6, src, dst, ports, |sk| generate(ctx, sk, v6)) else {
        return Ok(false);
    };
    answer(ctx, v6, cookie, mss, seq)?;
    Ok(true)
}

const ETH: usize = 14;
/// Where the TCP header starts in a plain IPv4 / IPv6 frame.
pub const V4_L4: usize = ETH + 20;
pub const V6_L4: usize = ETH + 40;
/// Our SYN-ACK's TCP header: 20 bytes and the MSS option.
const SYNACK_TCP: usize = 24;

/// The listener's cookie for the SYN at the plain layout: (cookie, MSS).
#[inline(always)]
fn generate(ctx: &XdpContext, sk: *mut bpf_sock, v6: bool) -> Option<(u32, u16)> {
    let l4 = if v6 { V6_L4 } else { V4_L4 };
    let doff = match ptr_at::<[u8; 20]>(ctx, l4) {
        // SAFETY: bounds-checked for 20 bytes.
        Ok(th) => (unsafe { (*th)[12] }) >> 4,
        Err(_) => return None,
    };
    // The helper reads the whole header (options give the MSS) and wants
    // its exact length: one constant-size check per possible length.
    let r = match doff {
        5 => gen_n::<20>(ctx, sk, v6, l4),
        6 => gen_n::<24>(ctx, sk, v6, l4),
        7 => gen_n::<28>(ctx, sk, v6, l4),
        8 => gen_n::<32>(ctx, sk, v6, l4),
        9 => gen_n::<36>(ctx, sk, v6, l4),
        10 => gen_n::<40>(ctx, sk, v6, l4),
        11 => gen_n::<44>(ctx, sk, v6, l4),
        12 => gen_n::<48>(ctx, sk, v6, l4),
        13 => gen_n::<52>(ctx, sk, v6, l4),
        14 => gen_n::<56>(ctx, sk, v6, l4),
        15 => gen_n::<60>(ctx, sk, v6, l4),
        _ => -1,
    };
    if r < 0 {
        return None;
    }
    Some((r as u32, (r >> 32) as u16))
}

#[inline(always)]
fn gen_n<const N: usize>(ctx: &XdpContext, sk: *mut bpf_sock, v6: bool, l4: usize) -> i64 {
    let ip_len = if v6 { 40 } else { 20 };
    let (Ok(ip), Ok(th)) = (ptr_at::<[u8; 40]>(ctx, ETH), ptr_at::<[u8; N]>(ctx, l4)) else {
        return -1;
    };
    // SAFETY: the IP header (40 bytes read covers IPv4's 20: a frame with a
    // TCP header after it is at least that long) and the whole TCP header
    // are bounds-checked above for the sizes passed.
    unsafe {
        bpf_tcp_gen_syncookie(
            sk as *mut c_void,
            ip as *mut c_void,
            ip_len,
            th as *mut tcphdr,
            N as u32,
        )
    }
}

/// Turns the SYN into its SYN-ACK in place: MACs, addresses and ports
/// swapped, `seq` = the cookie, `ack` = the client's ISN + 1, the MSS
/// option, fresh checksums; the frame cut (or grown) to fit.
#[inline(always)]
fn answer(
    ctx: &XdpContext,
    v6: bool,
    cookie: u32,
    mss: u16,
    client_seq: u32,
) -> Result<(), Malformed> {
    let l4 = if v6 { V6_L4 } else { V4_L4 };
    let len = (ctx.data_end() - ctx.data()) as i32;
    let delta = (l4 + SYNACK_TCP) as i32 - len;
    if delta != 0 {
        // SAFETY: the context is the program's own.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return Err(Malformed);
        }
    }
    if v6 {
        let f = ptr_at::<[u8; V6_L4 + SYNACK_TCP]>(ctx, 0)? as *mut [u8; V6_L4 + SYNACK_TCP];
        // SAFETY: bounds-checked for the whole frame; we own the packet.
        let f = unsafe { &mut *f };
        swap_macs(f);
        f[18..20].copy_from_slice(&(SYNACK_TCP as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        for i in 0..16 {
            f.swap(22 + i, 38 + i);
        }
        let mut sum = 6 + SYNACK_TCP as u32;
        sum += words(&f[22..54]);
        write_tcp(&mut f[V6_L4..], cookie, mss, client_seq, sum);
    } else {
        let f = ptr_at::<[u8; V4_L4 + SYNACK_TCP]>(ctx, 0)? as *mut [u8; V4_L4 + SYNACK_TCP];
        // SAFETY: as above.
        let f = unsafe { &mut *f };
        swap_macs(f);
        let tot = (20 + SYNACK_TCP) as u16;
        f[14] = 0x45;
        f[15] = 0;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[18..22].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
        f[22] = 64;
        f[23] = 6;
        f[24..26].copy_from_slice(&[0, 0]);
        for i in 0..4 {
            f.swap(26 + i, 30 + i);
        }
        let ip_sum = fold(words(&f[14..34]));
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let mut sum = 6 + SYNACK_TCP as u32;
        sum += words(&f[26..34]);
        write_tcp(&mut f[V4_L4..], cookie, mss, client_seq, sum);
    }
    Ok(())
}

#[inline(always)]
fn swap_macs(f: &mut [u8]) {
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
}

/// The TCP header of the SYN-ACK; `pseudo` is the pseudo-header's sum.
#[inline(always)]
fn write_tcp(t: &mut [u8], cookie: u32, mss: u16, client_seq: u32, pseudo: u32) {
    for i in 0..2 {
        t.swap(i, 2 + i);
    }
    t[4..8].copy_from_slice(&cookie.to_be_bytes());
    t[8..12].copy_from_slice(&client_seq.wrapping_add(1).to_be_bytes());
    t[12] = ((SYNACK_TCP / 4) as u8) << 4;
    t[13] = 0x12; // SYN | ACK
    t[14..16].copy_from_slice(&[0xff, 0xff]); // window (unscaled: no wscale)
    t[16..20].copy_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    let m = mss.to_be_bytes();
    t[20..24].copy_from_slice(&[2, 4, m[0], m[1]]);
    let sum = fold(pseudo + words(&t[..SYNACK_TCP]));
    t[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// Sum of big-endian 16-bit words (an even number of bytes).
#[inline(always)]
fn words(b: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i + 1 < b.len() {
        s += u16::from_be_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    s
}

/// The one's-complement checksum of a sum of words.
#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}
