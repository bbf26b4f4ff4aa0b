//! The TC-ingress half of the transparent cookie route
//! (`filter_common::cookie::route::KFUNC`). The XDP program answered the
//! client's SYN with a SYN-ACK carrying our own cookie and every option
//! the client offered; the client's ACK comes back through here. If it hits
//! a listener and carries a valid cookie, the connection is handed to that
//! listener with `bpf_sk_assign_tcp_reqsk`: the kernel builds the
//! connection from the attributes we decode (MSS, window scales, SACK,
//! timestamps) instead of from a cookie of its own, so the listener never
//! saw the SYN and the client sees an ordinary handshake.
//!
//! This is its own object: the kfunc exists only on kernels since 6.9 and
//! only for TC ingress, and the filter must load without it. It shares
//! `CONFIG`, `SYNCOOKIE` and `COUNTERS` with the filter through their pins.
//! It never drops: anything it does not hand over goes on as it came.
#![no_std]
#![no_main]
// aya-ebpf 0.3's `#[classifier]` makes a safe `pub` entry point that takes
// the kernel's raw `__sk_buff` pointer (its `#[xdp]` does not).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[path = "../options.rs"]
mod options;

use aya_ebpf::{
    bindings::{bpf_sock_tuple, TC_ACT_OK},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_sk_release, bpf_skb_load_bytes, bpf_skc_lookup_tcp, bpf_skc_to_tcp_sock},
    },
    macros::{classifier, map},
    maps::{Array, PerCpuArray},
    programs::TcContext,
    EbpfContext,
};
use core::ffi::c_void;
use filter_common::{
    cookie::{self, route, Settings, Tuple, NO_WSCALE, OPTIONS_MAX},
    counter, verify_mode, Config,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static SYNCOOKIE: Array<Settings> = Array::with_max_entries(1, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);

/// One slot a value passes through so that the verifier forgets how it
/// was computed (`forget`); not shared.
#[map]
static FORGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn forget(v: usize) -> usize {
    match FORGET.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, used only here.
        Some(slot) => unsafe {
            core::ptr::write_volatile(slot, v as u64);
            core::ptr::read_volatile(slot) as usize
        },
        None => v,
    }
}

/// `struct bpf_tcp_req_attrs` (include/net/tcp.h).
#[repr(C)]
struct ReqAttrs {
    rcv_tsval: u32,
    rcv_tsecr: u32,
    mss: u16,
    rcv_wscale: u8,
    snd_wscale: u8,
    ecn_ok: u8,
    wscale_ok: u8,
    sack_ok: u8,
    tstamp_ok: u8,
    usec_ts_ok: u8,
    reserved: [u8; 3],
}

unsafe extern "C" {
    /// `kfunc.c`: calls `bpf_sk_assign_tcp_reqsk`.
    fn filter_assign_tcp_reqsk(
        skb: *mut c_void,
        sk: *mut c_void,
        attrs: *mut ReqAttrs,
        size: i32,
    ) -> i32;
}

/// `BPF_F_CURRENT_NETNS`, and `TCP_LISTEN` (include/net/tcp_states.h).
const CURRENT_NETNS: u64 = u64::MAX;
const TCP_LISTEN: u32 = 10;
/// The smallest MSS the kfunc accepts, per family.
const MIN_MSS_V4: u16 = 536;
const MIN_MSS_V6: u16 = 1220;

#[classifier]
pub fn handover(ctx: TcContext) -> i32 {
    if let Some(slot) = try_handover(&ctx) {
        if let Some(n) = COUNTERS.get_ptr_mut(slot) {
            // SAFETY: this CPU's slot.
            unsafe { *n += 1 };
        }
    }
    TC_ACT_OK
}

/// An ACK from a client, as far as the cookie needs it.
struct Ack {
    v6: bool,
    tuple: Tuple,
    /// The cookie: the ACK's acknowledgement number - 1.
    cookie: u32,
    /// Where the TCP header starts, and its length.
    l4: usize,
    doff: usize,
}

/// The counter slot of what happened, or None if the packet was not ours.
#[inline(always)]
fn try_handover(ctx: &TcContext) -> Option<u32> {
    let s = SYNCOOKIE.get(0)?;
    let cfg = CONFIG.get(0)?;
    // Only while the answer is on: otherwise every ACK the host receives
    // would pay a socket look-up. (`auto` switches off only after `hold`
    // of calm, so a handshake still in flight then is rare; its client
    // gets a reset and tries again, and its SYN reaches the listener.)
    if s.route != route::KFUNC
        || cfg.verify_mode != verify_mode::SYN_COOKIE
        || cfg.verify_active == 0
    {
        return None;
    }
    let ack = parse(ctx)?;
    let (mut tuple, size) = sock_tuple(&ack);
    // SAFETY: the helper reads `size` bytes of the tuple on our stack.
    let sk = unsafe { bpf_skc_lookup_tcp(ctx.as_ptr(), &mut tuple, size, CURRENT_NETNS, 0) };
    if sk.is_null() {
        return None;
    }
    // SAFETY: a non-null socket from the look-up.
    let out = if unsafe { (*sk).state } == TCP_LISTEN {
        assign(ctx, s, &ack, sk as *mut c_void)
    } else {
        None
    };
    // SAFETY: releases the reference the look-up took.
    unsafe { bpf_sk_release(sk as *mut c_void) };
    out
}

/// Validates the cookie and hands the ACK to the listener `sk`.
#[inline(always)]
fn assign(ctx: &TcContext, s: &Settings, ack: &Ack, sk: *mut c_void) -> Option<u32> {
    // SAFETY: a clock read.
    let now = unsafe { bpf_ktime_get_ns() };
    let opts = cookie::decode(s.keys, &ack.tuple, cookie::minute(now), ack.cookie)?;
    let ts = timestamps(ctx, ack);
    let wscale_ok = opts.wscale != NO_WSCALE;
    let min_mss = if ack.v6 { MIN_MSS_V6 } else { MIN_MSS_V4 };
    let mut attrs = ReqAttrs {
        rcv_tsval: ts.map_or(0, |t| t.0),
        rcv_tsecr: ts.map_or(0, |t| t.1),
        mss: if opts.mss < min_mss {
            min_mss
        } else {
            opts.mss
        },
        rcv_wscale: if wscale_ok { s.wscale } else { 0 },
        snd_wscale: if wscale_ok { opts.wscale } else { 0 },
        ecn_ok: 0,
        wscale_ok: wscale_ok as u8,
        sack_ok: opts.sack as u8,
        tstamp_ok: ts.is_some() as u8,
        usec_ts_ok: 0,
        reserved: [0; 3],
    };
    // SAFETY: `sk` is a listener we hold a reference to.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk) };
    if tp.is_null() {
        return Some(counter::HANDOVER_FAILED);
    }
    // SAFETY: the skb is ours; `tp` is the held listener as a tcp_sock.
    let rc = unsafe {
        filter_assign_tcp_reqsk(
            ctx.as_ptr(),
            tp as *mut c_void,
            &mut attrs,
            core::mem::size_of::<ReqAttrs>() as i32,
        )
    };
    Some(if rc == 0 {
        counter::HANDED_OVER
    } else {
        counter::HANDOVER_FAILED
    })
}

#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Ack> {
    let proto: [u8; 2] = ctx.load(12).ok()?;
    let (v6, l4, saddr, daddr) = match proto {
        [0x08, 0x00] => {
            let ip: [u8; 20] = ctx.load(14).ok()?;
            let fragment = ip[6] & 0x3f != 0 || ip[7] != 0;
            let ihl = (ip[0] & 0xf) as usize * 4;
            if ip[9] != 6 || fragment || ihl < 20 {
                return None;
            }
            let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
            s[..4].copy_from_slice(&ip[12..16]);
            d[..4].copy_from_slice(&ip[16..20]);
            (false, 14 + ihl, s, d)
        }
        [0x86, 0xdd] => {
            let ip: [u8; 40] = ctx.load(14).ok()?;
            if ip[6] != 6 {
                return None;
            }
            let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (true, 54, s, d)
        }
        _ => return None,
    };
    let th: [u8; 20] = ctx.load(l4).ok()?;
    // ACK, and no SYN, RST or FIN.
    if th[13] & 0x17 != 0x10 {
        return None;
    }
    let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let ack = u32::from_be_bytes([th[8], th[9], th[10], th[11]]);
    Some(Ack {
        v6,
        tuple: Tuple {
            saddr,
            daddr,
            sport: u16::from_ne_bytes([th[0], th[1]]),
            dport: u16::from_ne_bytes([th[2], th[3]]),
            isn: seq.wrapping_sub(1),
        },
        cookie: ack.wrapping_sub(1),
        l4,
        doff: (th[12] >> 4) as usize,
    })
}

/// The ACK's timestamps (all the handover needs of its options).
#[inline(always)]
fn timestamps(ctx: &TcContext, ack: &Ack) -> Option<(u32, u32)> {
    if ack.doff < 5 {
        return None;
    }
    // Forgotten and bounded again for the helper's length.
    let len = forget(ack.doff * 4 - 20);
    if len == 0 || len > OPTIONS_MAX {
        return None;
    }
    let w = options::scratch()?;
    // SAFETY: this CPU's slot; `len` is at most its buffer's size.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            (ack.l4 + 20) as u32,
            (*w).buf.as_mut_ptr() as *mut c_void,
            len as u32,
        )
    };
    if rc != 0 {
        return None;
    }
    options::run(w, len).timestamps()
}

/// The look-up's tuple and its size.
#[inline(always)]
fn sock_tuple(ack: &Ack) -> (bpf_sock_tuple, u32) {
    let t = &ack.tuple;
    let w = |a: &[u8; 16], i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    // SAFETY: a plain C union of integers; all-zero is a valid value.
    let mut out: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // SAFETY: writing the member whose size we return.
    unsafe {
        if ack.v6 {
            let v6 = &mut out.__bindgen_anon_1.ipv6;
            v6.saddr = [
                w(&t.saddr, 0),
                w(&t.saddr, 4),
                w(&t.saddr, 8),
                w(&t.saddr, 12),
            ];
            v6.daddr = [
                w(&t.daddr, 0),
                w(&t.daddr, 4),
                w(&t.daddr, 8),
                w(&t.daddr, 12),
            ];
            v6.sport = t.sport;
            v6.dport = t.dport;
        } else {
            let v4 = &mut out.__bindgen_anon_1.ipv4;
            v4.saddr = w(&t.saddr, 0);
            v4.daddr = w(&t.daddr, 0);
            v4.sport = t.sport;
            v4.dport = t.dport;
        }
    }
    let size = if ack.v6 {
        core::mem::size_of::<bpf_sock_tuple>() as u32
    } else {
        12
    };
    (out, size)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
